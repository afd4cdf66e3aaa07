//! The process lists (compute, graphics, MPS; v1 and v2/v3 entry layouts). Safety: as in
//! `ffi.rs`.

use super::*;

// Processes.

#[derive(Clone, Copy)]
enum Which {
    Compute,
    Graphics,
    Mps,
}

trait ProcEntry {
    fn from_sample(s: &ProcSample) -> Self;
}

impl ProcEntry for nvmlProcessInfo_v1_t {
    fn from_sample(s: &ProcSample) -> Self {
        nvmlProcessInfo_v1_t {
            pid: s.pid,
            usedGpuMemory: s.bytes,
        }
    }
}

impl ProcEntry for nvmlProcessInfo_t {
    fn from_sample(s: &ProcSample) -> Self {
        nvmlProcessInfo_t {
            pid: s.pid,
            usedGpuMemory: s.bytes,
            gpuInstanceId: s.gpu_instance_id,
            computeInstanceId: s.compute_instance_id,
        }
    }
}

/// The NVML count-then-fill protocol. `*count` is the caller's capacity on entry and the number
/// of processes on return; a null `infos` (or too small a capacity) with processes present gives
/// INSUFFICIENT_SIZE. A `process_churn` fault adds transient processes to fill calls only.
fn process_list<T: ProcEntry>(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut T,
    which: Which,
) -> Ret {
    with_device(device, CallClass::Processes, |d| {
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if d.sim.scenario.processes_unsupported(d.gpu, d.t) {
            return Err(NOT_SUPPORTED);
        }
        // SAFETY: non-null; the caller passes a c_uint.
        let capacity = unsafe { count.read_unaligned() } as usize;
        let mut list: Vec<ProcSample> = d
            .sample()
            .processes
            .into_iter()
            .filter(|p| match which {
                Which::Compute => p.compute,
                Which::Graphics => p.graphics,
                Which::Mps => p.mps,
            })
            .collect();
        let is_fill = !infos.is_null() && capacity > 0;
        if is_fill {
            let (gi, ci) = match d.mig {
                Some(m) => {
                    let mig = &d.device().migs[m];
                    (mig.gpu_instance_id, mig.compute_instance_id)
                }
                None => (u32::MAX, u32::MAX),
            };
            for k in 0..d.sim.scenario.churn(d.gpu, d.t) {
                list.push(ProcSample {
                    pid: CHURN_PID_BASE + k,
                    bytes: 0,
                    compute: true,
                    graphics: true,
                    mps: false,
                    gpu_instance_id: gi,
                    compute_instance_id: ci,
                });
            }
        }
        let n = list.len();
        unsafe { put(count, n as c_uint) }?;
        if n == 0 {
            return Ok(());
        }
        if infos.is_null() || capacity < n {
            return Err(INSUFFICIENT_SIZE);
        }
        for (i, p) in list.iter().enumerate() {
            // SAFETY: `infos` has room for `capacity >= n` entries by the caller's contract.
            unsafe { infos.add(i).write_unaligned(T::from_sample(p)) };
        }
        Ok(())
    })
}

macro_rules! process_queries {
    ($($name:ident => $entry:ty, $which:expr;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            device: nvmlDevice_t,
            count: *mut c_uint,
            infos: *mut $entry,
        ) -> Ret {
            process_list(device, count, infos, $which)
        }
    )*};
}

process_queries! {
    nvmlDeviceGetComputeRunningProcesses_v3 => nvmlProcessInfo_t, Which::Compute;
    nvmlDeviceGetComputeRunningProcesses_v2 => nvmlProcessInfo_t, Which::Compute;
    nvmlDeviceGetComputeRunningProcesses => nvmlProcessInfo_v1_t, Which::Compute;
    nvmlDeviceGetGraphicsRunningProcesses_v3 => nvmlProcessInfo_t, Which::Graphics;
    nvmlDeviceGetGraphicsRunningProcesses_v2 => nvmlProcessInfo_t, Which::Graphics;
    nvmlDeviceGetGraphicsRunningProcesses => nvmlProcessInfo_v1_t, Which::Graphics;
    nvmlDeviceGetMPSComputeRunningProcesses_v3 => nvmlProcessInfo_t, Which::Mps;
    nvmlDeviceGetMPSComputeRunningProcesses_v2 => nvmlProcessInfo_t, Which::Mps;
    nvmlDeviceGetMPSComputeRunningProcesses => nvmlProcessInfo_v1_t, Which::Mps;
}
