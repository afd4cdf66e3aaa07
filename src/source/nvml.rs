//! The only module that talks to NVML: initialisation with backoff, and one poll → [`PollSample`].
//!
//! It runs on the poller's own thread (NVML calls block, sometimes for seconds). One device's error
//! never stops the others; a lost GPU keeps the identity it had at the last good poll; a library
//! that cannot be loaded or initialised is retried with exponential backoff and its reason logged
//! once per change.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};

use crate::base::operation::Operation;
use crate::source::sample::{
    DeviceIdentity, DeviceSample, Memory, MigSample, PollError, PollSample, ProcessList,
    ProcessSample,
};

/// The `[nvml]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNvml {
    /// Path of libnvidia-ml.so.1; by default the dynamic loader's search path is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
}

/// The longest wait between two attempts to initialise NVML.
pub const MAX_INIT_BACKOFF: Duration = Duration::from_secs(30);

/// After this many polls in a row whose device count failed, the NVML session is shut down and
/// initialised again: after a driver reload the old session never answers again.
pub const REINIT_AFTER_FAILED_POLLS: u32 = 3;

/// Reads NVML. Holds the library handle, the known device identities and a small process-name cache.
pub struct NvmlSource {
    library: Option<PathBuf>,
    nvml: Option<Nvml>,
    driver_version: String,
    next_attempt: Instant,
    backoff: Duration,
    initial_backoff: Duration,
    last_init_error: Option<String>,
    /// Identity of each index seen so far, reused while a device is lost.
    known: HashMap<u32, DeviceIdentity>,
    /// pid → (start time, name) for processes /proc can see, so `comm` is read once per process.
    names: HashMap<u32, (u64, String)>,
    started: Instant,
    /// Consecutive polls whose device count failed.
    failed_counts: u32,
}

impl NvmlSource {
    /// `library`: the path of libnvidia-ml.so.1, or None for the loader's search path.
    /// `initial_backoff`: the first retry delay after a failed init (the poll interval).
    pub fn new(library: Option<PathBuf>, initial_backoff: Duration) -> Self {
        NvmlSource {
            library,
            nvml: None,
            driver_version: String::new(),
            next_attempt: Instant::now(),
            backoff: initial_backoff,
            initial_backoff,
            last_init_error: None,
            known: HashMap::new(),
            names: HashMap::new(),
            started: Instant::now(),
            failed_counts: 0,
        }
    }

    /// Polls every device once. Never panics on NVML errors.
    pub fn poll(&mut self) -> PollSample {
        let mut errors = Vec::new();
        self.ensure_initialised(&mut errors);
        let taken_at = SystemTime::now();
        let monotonic_ms = self.started.elapsed().as_millis() as u64;
        let devices = match &self.nvml {
            Some(nvml) => poll_devices(nvml, &mut self.known, &mut self.names, &mut errors),
            None => Vec::new(),
        };
        self.reinit_if_stuck(&errors);
        PollSample {
            taken_at,
            monotonic_ms,
            nvml_up: self.nvml.is_some(),
            driver_version: self.driver_version.clone(),
            devices,
            errors,
        }
    }

    /// Shuts a session down whose device count keeps failing, so the next poll initialises NVML
    /// again; the identities of known GPUs are kept meanwhile.
    fn reinit_if_stuck(&mut self, errors: &[PollError]) {
        if self.nvml.is_none() {
            return;
        }
        if !errors.iter().any(|e| e.operation == Operation::DeviceCount) {
            self.failed_counts = 0;
            return;
        }
        self.failed_counts += 1;
        if self.failed_counts >= REINIT_AFTER_FAILED_POLLS {
            tracing::warn!(
                failed_polls = self.failed_counts,
                "NVML stopped answering (the driver may have been reloaded); initialising it again"
            );
            // Dropping the handle calls nvmlShutdown.
            self.nvml = None;
            self.failed_counts = 0;
            self.last_init_error = None;
            self.next_attempt = Instant::now();
        }
    }

    fn ensure_initialised(&mut self, errors: &mut Vec<PollError>) {
        if self.nvml.is_some() || Instant::now() < self.next_attempt {
            return;
        }
        let mut builder = Nvml::builder();
        if let Some(path) = &self.library {
            builder.lib_path(OsStr::new(path.as_os_str()));
        }
        match builder.init() {
            Ok(nvml) => {
                self.driver_version = nvml.sys_driver_version().unwrap_or_default();
                tracing::info!(driver_version = %self.driver_version, "NVML initialised");
                self.nvml = Some(nvml);
                self.backoff = self.initial_backoff;
                self.last_init_error = None;
            }
            Err(e) => {
                let reason = describe(&e);
                if self.last_init_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        reason = %reason,
                        library = %self.library.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "libnvidia-ml.so.1".into()),
                        "NVML cannot be initialised; serving vram_nvml_up 0 and retrying with backoff"
                    );
                    self.last_init_error = Some(reason);
                }
                errors.push(PollError {
                    gpu: None,
                    operation: Operation::Init,
                });
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_INIT_BACKOFF);
            }
        }
    }
}

fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => {
            format!("the NVML library could not be loaded: {inner}")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_string(),
        other => other.to_string(),
    }
}

fn poll_devices(
    nvml: &Nvml,
    known: &mut HashMap<u32, DeviceIdentity>,
    names: &mut HashMap<u32, (u64, String)>,
    errors: &mut Vec<PollError>,
) -> Vec<DeviceSample> {
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(_) => {
            errors.push(PollError {
                gpu: None,
                operation: Operation::DeviceCount,
            });
            // Report what we knew, down, rather than nothing.
            let mut lost: Vec<DeviceSample> = known.values().cloned().map(down).collect();
            lost.sort_by_key(|d| d.identity.index);
            return lost;
        }
    };
    known.retain(|index, _| *index < count);
    let mut seen_pids: HashSet<u32> = HashSet::new();
    let mut devices = Vec::with_capacity(count as usize);
    for index in 0..count {
        let fail = |errors: &mut Vec<PollError>, operation| {
            errors.push(PollError {
                gpu: Some(index),
                operation,
            })
        };
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(_) => {
                fail(errors, Operation::Handle);
                devices.push(down(identity_or_placeholder(known, index)));
                continue;
            }
        };
        let identity = match read_identity(&device, index, known.get(&index)) {
            Ok(id) => {
                known.insert(index, id.clone());
                id
            }
            Err(_) => {
                fail(errors, Operation::Identity);
                devices.push(down(identity_or_placeholder(known, index)));
                continue;
            }
        };
        let memory = match device.memory_info() {
            Ok(m) => Some(Memory {
                total: m.total,
                reserved: m.reserved,
                free: m.free,
                allocated: m.used,
            }),
            Err(NvmlError::GpuLost) => {
                fail(errors, Operation::Memory);
                devices.push(down(identity));
                continue;
            }
            Err(_) => {
                fail(errors, Operation::Memory);
                None
            }
        };
        let processes = match read_processes(nvml, &device, names) {
            Ok(p) => ProcessList::Listed(p),
            Err(NvmlError::NotSupported) => ProcessList::NotSupported,
            Err(NvmlError::GpuLost) => {
                fail(errors, Operation::Processes);
                devices.push(down(identity));
                continue;
            }
            Err(_) => {
                fail(errors, Operation::Processes);
                ProcessList::Failed
            }
        };
        seen_pids.extend(processes.listed().iter().map(|p| p.pid));
        let migs = read_migs(&device).unwrap_or_else(|_| {
            fail(errors, Operation::Mig);
            Vec::new()
        });
        devices.push(DeviceSample {
            identity,
            up: true,
            memory,
            processes,
            migs,
            allocations: Default::default(),
        });
    }
    names.retain(|pid, _| seen_pids.contains(pid));
    devices
}

fn down(identity: DeviceIdentity) -> DeviceSample {
    DeviceSample {
        identity,
        up: false,
        memory: None,
        processes: ProcessList::Listed(Vec::new()),
        migs: Vec::new(),
        allocations: Default::default(),
    }
}

/// The MIG instances of a GPU in MIG mode; empty for a GPU without MIG or with MIG disabled.
fn read_migs(device: &Device<'_>) -> Result<Vec<MigSample>, NvmlError> {
    match device.mig_mode() {
        Ok(mode) if mode.current == 1 => {}
        Ok(_) | Err(NvmlError::NotSupported) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let slots = device.mig_device_count()?;
    let mut migs = Vec::new();
    for slot in 0..slots {
        let mig = match device.mig_device_by_index(slot) {
            Ok(m) => m,
            // An empty slot: no MIG device was created there.
            Err(NvmlError::NotFound) | Err(NvmlError::InvalidArg) => continue,
            Err(e) => return Err(e),
        };
        let name = mig.name().unwrap_or_default();
        let profile = name
            .rsplit_once("MIG ")
            .map(|(_, p)| p.trim().to_string())
            .unwrap_or(name);
        migs.push(MigSample {
            index: mig.index().unwrap_or(slot),
            uuid: mig.uuid()?,
            profile,
            memory: mig.memory_info().ok().map(|m| Memory {
                total: m.total,
                reserved: m.reserved,
                free: m.free,
                allocated: m.used,
            }),
        });
    }
    Ok(migs)
}

fn identity_or_placeholder(known: &HashMap<u32, DeviceIdentity>, index: u32) -> DeviceIdentity {
    known.get(&index).cloned().unwrap_or(DeviceIdentity {
        index,
        uuid: String::new(),
        model: String::new(),
        pci_bus_id: String::new(),
        minor: None,
    })
}

/// Reads the UUID every poll (a replaced device must not inherit another's identity); the name and
/// PCI address only when the UUID changed.
fn read_identity(
    device: &Device<'_>,
    index: u32,
    cached: Option<&DeviceIdentity>,
) -> Result<DeviceIdentity, NvmlError> {
    let uuid = device.uuid()?;
    if let Some(c) = cached {
        if c.uuid == uuid {
            return Ok(c.clone());
        }
    }
    let model = device.name().unwrap_or_default();
    let pci_bus_id = device.pci_info().map(|p| p.bus_id).unwrap_or_default();
    Ok(DeviceIdentity {
        index,
        uuid,
        model,
        pci_bus_id,
        minor: device.minor_number().ok(),
    })
}

/// Compute, graphics and MPS client processes merged by pid (a process in several lists is counted
/// once, with the larger figure), sorted by allocation, largest first. Under MPS the compute list
/// shows the MPS server (`nvidia-cuda-mps-server`) and the MPS list the clients users run.
fn read_processes(
    nvml: &Nvml,
    device: &Device<'_>,
    names: &mut HashMap<u32, (u64, String)>,
) -> Result<Vec<ProcessSample>, NvmlError> {
    let compute = device.running_compute_processes()?;
    let graphics = match device.running_graphics_processes() {
        Ok(g) => g,
        Err(NvmlError::NotSupported) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mps = match device.mps_running_compute_processes() {
        Ok(m) => m,
        Err(NvmlError::NotSupported | NvmlError::FunctionNotFound) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut merged: Vec<ProcessSample> =
        Vec::with_capacity(compute.len() + graphics.len() + mps.len());
    // pid → position in `merged`, so merging stays linear with thousands of processes.
    let mut position: HashMap<u32, usize> = HashMap::with_capacity(merged.capacity());
    for info in compute.into_iter().chain(graphics).chain(mps) {
        let bytes = match info.used_gpu_memory {
            UsedGpuMemory::Used(b) => b,
            UsedGpuMemory::Unavailable => 0,
        };
        if let Some(&i) = position.get(&info.pid) {
            merged[i].allocated = merged[i].allocated.max(bytes);
            continue;
        }
        position.insert(info.pid, merged.len());
        let (start_ticks, name) = process_identity(nvml, info.pid, names);
        merged.push(ProcessSample {
            pid: info.pid,
            name,
            start_ticks,
            allocated: bytes,
            workload: None,
            allocator: None,
        });
    }
    merged.sort_by(|a, b| b.allocated.cmp(&a.allocated).then(a.pid.cmp(&b.pid)));
    Ok(merged)
}

/// The process's start time and name: from /proc when it can see the process, else from NVML.
fn process_identity(
    nvml: &Nvml,
    pid: u32,
    names: &mut HashMap<u32, (u64, String)>,
) -> (u64, String) {
    if let Some(start) = crate::source::procfs::proc_stat(pid).map(|s| s.start_ticks) {
        if let Some((cached_start, name)) = names.get(&pid) {
            if *cached_start == start {
                return (start, name.clone());
            }
        }
        if let Some(name) = crate::source::procfs::proc_name(pid) {
            names.insert(pid, (start, name.clone()));
            return (start, name);
        }
    }
    // Not visible in our /proc (another PID namespace, or a simulated process): ask NVML.
    let name = nvml
        .sys_process_name(pid, 256)
        .ok()
        .map(|path| sanitize_name(path.rsplit('/').next().unwrap_or(&path)))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    (0, name)
}

/// Process names become label values: keep them printable and short.
fn sanitize_name(name: &str) -> String {
    crate::source::procfs::display_name(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("py\nthon"), "python");
        assert_eq!(sanitize_name(""), "unknown");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn missing_library_is_reported_not_panicked() {
        let mut source = NvmlSource::new(
            Some("/nonexistent/libnvidia-ml.so.1".into()),
            Duration::from_millis(10),
        );
        let sample = source.poll();
        assert!(!sample.nvml_up);
        assert!(sample.devices.is_empty());
        assert_eq!(sample.errors[0].operation, Operation::Init);
    }
}
