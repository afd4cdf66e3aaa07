//! Building the model from the raw format: devices, MIG devices, memory pools, processes and
//! their memory curves, with every cross-field rule checked once, here.
//!
//! Errors are `(key path, problem)` pairs; `load_str` adds the file name.

use std::path::Path;

use super::raw::{KeyErr, RawDevice, RawMemory, RawProcess};
use super::trace;
use crate::model::{
    Curve, Device, MemoryPool, MemorySource, MigDevice, PciAddress, PidSource, Process,
};
use crate::units::Size;

/// Largest MIG device count a physical device reports (`nvmlDeviceGetMaxMigDeviceCount`).
pub const MAX_MIG_DEVICES: usize = 7;
/// Largest number of devices a scenario may declare (handles encode the index in 12 bits).
pub const MAX_DEVICES: usize = 64;
/// Largest number of processes per device or MIG device, which keeps every call bounded.
pub const MAX_PROCESSES: usize = 4096;

/// What building needs from outside the file: where relative paths start, and the environment.
pub(super) struct Ctx<'a> {
    /// The scenario file's directory.
    pub(super) base_dir: &'a Path,
    /// Environment lookup (`pid_env`, `memory_file_env`).
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

/// Checks a string that is copied into a fixed-size C buffer.
pub(super) fn check_c_string(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{what} must not contain NUL"));
    }
    if s.len() >= max {
        return Err(format!("{what} must be shorter than {max} bytes"));
    }
    Ok(())
}

/// Builds device `i` with its processes and MIG devices.
pub(super) fn build_device(
    i: usize,
    d: RawDevice,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<Device, KeyErr> {
    let key = |k: &str| format!("device[{i}].{k}");
    let name = d.name.unwrap_or_else(|| "NVIDIA Simulated GPU".to_string());
    check_c_string("name", &name, 96).map_err(|p| (key("name"), p))?;
    let uuid = d
        .uuid
        .unwrap_or_else(|| format!("GPU-6e766d6c-5349-4d00-8000-{i:012x}"));
    check_c_string("uuid", &uuid, 80).map_err(|p| (key("uuid"), p))?;
    let pci = match d.pci_bus_id {
        Some(s) => PciAddress::parse(&s).map_err(|p| (key("pci_bus_id"), p))?,
        None => PciAddress {
            domain: 0,
            bus: 0x10 + i as u32,
            device: 0,
            function: 0,
        },
    };
    for (k, v) in [
        ("gpu_utilization", d.gpu_utilization),
        ("memory_utilization", d.memory_utilization),
    ] {
        if v.is_some_and(|v| v > 100) {
            return Err((key(k), "must be a percentage 0..=100".into()));
        }
    }
    let pool = build_pool(
        &format!("device[{i}]"),
        d.total.0,
        d.reserved,
        d.overhead,
        d.process,
        None,
        ctx,
        notes,
    )?;
    if d.mig.len() > MAX_MIG_DEVICES {
        return Err((
            key("mig"),
            format!("at most {MAX_MIG_DEVICES} MIG devices per GPU"),
        ));
    }
    if d.mig_capable == Some(false) && !d.mig.is_empty() {
        return Err((
            key("mig_capable"),
            "is false but MIG devices are declared".into(),
        ));
    }
    let mut migs = Vec::with_capacity(d.mig.len());
    let mut mig_total = 0u64;
    for (m_i, m) in d.mig.into_iter().enumerate() {
        let mkey = format!("device[{i}].mig[{m_i}]");
        let gi = m.gpu_instance_id.unwrap_or(m_i as u32 + 1);
        let ci = m.compute_instance_id.unwrap_or(0);
        let mname = m
            .name
            .unwrap_or_else(|| format!("{name} MIG {}GiB", m.total.0 >> 30));
        check_c_string("name", &mname, 96).map_err(|p| (format!("{mkey}.name"), p))?;
        let muuid = m
            .uuid
            .unwrap_or_else(|| format!("MIG-6e766d6c-5349-4d00-8{m_i:03x}-{i:012x}"));
        check_c_string("uuid", &muuid, 80).map_err(|p| (format!("{mkey}.uuid"), p))?;
        mig_total = mig_total.saturating_add(m.total.0);
        let pool = build_pool(
            &mkey,
            m.total.0,
            m.reserved,
            m.overhead,
            m.process,
            Some((gi, ci)),
            ctx,
            notes,
        )?;
        migs.push(MigDevice {
            name: mname,
            uuid: muuid,
            gpu_instance_id: gi,
            compute_instance_id: ci,
            pool,
        });
    }
    if mig_total > pool.total - pool.reserved {
        return Err((
            key("mig"),
            "MIG device totals exceed the GPU's total minus reserved".into(),
        ));
    }
    Ok(Device {
        name,
        uuid,
        pci,
        pci_device_id: d.pci_device_id.unwrap_or(0x20B2_10DE),
        pci_subsystem_id: d.pci_subsystem_id.unwrap_or(0x1463_10DE),
        gpu_utilization: d.gpu_utilization.unwrap_or(0),
        memory_utilization: d.memory_utilization.unwrap_or(0),
        temperature: d.temperature.unwrap_or(40),
        mig_capable: d.mig_capable.unwrap_or(!migs.is_empty()),
        migs,
        pool,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_pool(
    prefix: &str,
    total: u64,
    reserved: Option<Size>,
    overhead: Option<Size>,
    raw_procs: Vec<RawProcess>,
    instance: Option<(u32, u32)>,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<MemoryPool, KeyErr> {
    let reserved = reserved.map_or(0, |s| s.0);
    let overhead = overhead.map_or(0, |s| s.0);
    if total == 0 {
        return Err((format!("{prefix}.total"), "must be greater than 0".into()));
    }
    if reserved >= total {
        return Err((
            format!("{prefix}.reserved"),
            "must be smaller than total".into(),
        ));
    }
    if overhead > total - reserved {
        return Err((
            format!("{prefix}.overhead"),
            "must not exceed total minus reserved".into(),
        ));
    }
    if raw_procs.len() > MAX_PROCESSES {
        return Err((
            format!("{prefix}.process"),
            format!("at most {MAX_PROCESSES} processes per device"),
        ));
    }
    let mut processes = Vec::with_capacity(raw_procs.len());
    for (p_i, p) in raw_procs.into_iter().enumerate() {
        let pkey = format!("{prefix}.process[{p_i}]");
        if let Some(p) = build_process(&pkey, p, instance, ctx, notes)? {
            processes.push(p);
        }
    }
    Ok(MemoryPool {
        total,
        reserved,
        overhead,
        processes,
    })
}

fn build_process(
    pkey: &str,
    p: RawProcess,
    instance: Option<(u32, u32)>,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<Option<Process>, KeyErr> {
    let key = |k: &str| format!("{pkey}.{k}");
    check_c_string("name", &p.name, 1024).map_err(|e| (key("name"), e))?;
    let pid = match (p.pid, &p.pid_env) {
        (Some(_), Some(_)) => {
            return Err((
                key("pid_env"),
                "give either pid or pid_env, not both".into(),
            ))
        }
        (None, None) => return Err((key("pid"), "missing: give pid or pid_env".into())),
        (Some(pid), None) => {
            if pid == 0 {
                return Err((key("pid"), "must be greater than 0".into()));
            }
            if p.live.unwrap_or(false) {
                PidSource::live(pid)
            } else {
                PidSource::Simulated(pid)
            }
        }
        (None, Some(var)) => {
            if p.live == Some(false) {
                return Err((key("live"), "pid_env entries are always live".into()));
            }
            match (ctx.env)(var) {
                None => {
                    notes.push(format!(
                        "nvml-sim: {pkey}: environment variable {var} is not set; entry skipped"
                    ));
                    return Ok(None);
                }
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(pid) if pid > 0 => PidSource::live(pid),
                    _ => return Err((key("pid_env"), format!("{var}={v:?} is not a process id"))),
                },
            }
        }
    };
    let (compute, graphics, mps) = match p.kind.as_deref() {
        None | Some("compute") => (true, false, false),
        Some("graphics") => (false, true, false),
        Some("both") => (true, true, false),
        Some("mps") => (false, false, true),
        Some(other) => {
            return Err((
                key("type"),
                format!("expected compute, graphics, both or mps, got {other:?}"),
            ))
        }
    };
    let file_path = match (&p.memory_file, &p.memory_file_env) {
        (Some(_), Some(_)) => {
            return Err((
                key("memory_file_env"),
                "give either memory_file or memory_file_env, not both".into(),
            ))
        }
        (Some(f), None) => Some(ctx.base_dir.join(f)),
        (None, Some(var)) => match (ctx.env)(var) {
            Some(f) => Some(ctx.base_dir.join(f)),
            None => {
                notes.push(format!(
                    "nvml-sim: {pkey}: environment variable {var} is not set; entry skipped"
                ));
                return Ok(None);
            }
        },
        (None, None) => None,
    };
    let memory = match (file_path, p.memory) {
        (Some(_), Some(_)) => {
            return Err((
                key("memory"),
                "give either memory or memory_file(_env), not both".into(),
            ))
        }
        (Some(path), None) => MemorySource::file(path),
        (None, Some(m)) => MemorySource::Curve(
            build_curve(m, ctx).map_err(|(k, e)| (format!("{}{k}", key("memory")), e))?,
        ),
        (None, None) => {
            return Err((
                key("memory"),
                "missing: give memory, memory_file or memory_file_env".into(),
            ))
        }
    };
    let start = p.start.map_or(0.0, |s| s.0);
    let stop = p.stop.map(|s| s.0);
    if stop.is_some_and(|s| s <= start) {
        return Err((key("stop"), "must be later than start".into()));
    }
    Ok(Some(Process {
        pid,
        name: p.name,
        compute,
        graphics,
        mps,
        memory,
        start,
        stop,
        instance,
    }))
}

/// Builds a memory curve; an error's key is relative to the `memory` key (`""` or `.trace.file`).
fn build_curve(m: RawMemory, ctx: &Ctx<'_>) -> Result<Curve, KeyErr> {
    let whole = |problem: &str| (String::new(), problem.to_string());
    let t = match m {
        RawMemory::Constant(b) => return Ok(Curve::Constant(b)),
        RawMemory::Table(t) => t,
    };
    let given = [
        t.constant.is_some(),
        t.linear.is_some(),
        t.points.is_some(),
        t.sawtooth.is_some(),
        t.trace.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    const ONE_OF: &str = "give exactly one of constant, linear, points, sawtooth, trace";
    if given != 1 {
        return Err(whole(ONE_OF));
    }
    if let Some(c) = t.constant {
        return Ok(Curve::Constant(c.0));
    }
    if let Some(l) = t.linear {
        if !l.rate.0.is_finite() {
            return Err(whole("linear.rate must be finite"));
        }
        return Ok(Curve::Linear {
            start: l.start.0,
            rate: l.rate.0,
            cap: l.cap.map(|c| c.0),
        });
    }
    if let Some(points) = t.points {
        if points.is_empty() {
            return Err(whole("points must not be empty"));
        }
        if points.windows(2).any(|w| w[1].0 .0 <= w[0].0 .0) {
            return Err(whole("points must have strictly increasing times"));
        }
        return Ok(Curve::Points(
            points.into_iter().map(|(t, s)| (t.0, s.0)).collect(),
        ));
    }
    if let Some(s) = t.sawtooth {
        if s.period.0 <= 0.0 {
            return Err(whole("sawtooth.period must be longer than 0s"));
        }
        if s.high.0 < s.low.0 {
            return Err(whole("sawtooth.high must be >= sawtooth.low"));
        }
        return Ok(Curve::Sawtooth {
            low: s.low.0,
            high: s.high.0,
            period: s.period.0,
        });
    }
    match t.trace {
        Some(raw) => trace::build(raw, ctx.base_dir).map(Curve::Trace),
        None => Err(whole(ONE_OF)),
    }
}
