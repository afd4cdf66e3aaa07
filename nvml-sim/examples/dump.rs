//! Prints what nvml-wrapper sees through a given NVML library as JSON, so other clients (the
//! pynvml cross-client test) can be compared with it number for number.
//!
//! Usage: `NVML_SIM_SCENARIO=scenario.toml dump <path to libnvidia-ml.so.1>`

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde_json::{json, Value};

fn processes(
    nvml: &Nvml,
    list: Result<Vec<nvml_wrapper::struct_wrappers::device::ProcessInfo>, NvmlError>,
) -> Value {
    match list {
        Ok(list) => Value::Array(
            list.into_iter()
                .map(|p| {
                    let used = match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    };
                    json!({
                        "pid": p.pid,
                        "used_bytes": used,
                        "name": nvml.sys_process_name(p.pid, 256).ok(),
                        "gpu_instance_id": p.gpu_instance_id,
                        "compute_instance_id": p.compute_instance_id,
                    })
                })
                .collect(),
        ),
        Err(e) => json!({ "error": format!("{e:?}") }),
    }
}

fn device(nvml: &Nvml, d: &Device<'_>) -> Value {
    let memory = match d.memory_info() {
        Ok(m) => {
            json!({ "total": m.total, "reserved": m.reserved, "free": m.free, "used": m.used })
        }
        Err(e) => json!({ "error": format!("{e:?}") }),
    };
    json!({
        "index": d.index().ok(),
        "name": d.name().ok(),
        "uuid": d.uuid().ok(),
        "pci_bus_id": d.pci_info().ok().map(|p| p.bus_id),
        "memory_v2": memory,
        "compute_processes": processes(nvml, d.running_compute_processes()),
        "graphics_processes": processes(nvml, d.running_graphics_processes()),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lib = std::env::args_os()
        .nth(1)
        .ok_or("usage: dump <path to libnvidia-ml.so.1>")?;
    let nvml = Nvml::builder().lib_path(&lib).init()?;
    let mut devices = Vec::new();
    for i in 0..nvml.device_count()? {
        let d = nvml.device_by_index(i)?;
        let mut v = device(&nvml, &d);
        let mut migs = Vec::new();
        if d.mig_mode().map(|m| m.current == 1).unwrap_or(false) {
            for m in 0..d.mig_device_count()? {
                match d.mig_device_by_index(m) {
                    Ok(mig) => migs.push(device(&nvml, &mig)),
                    Err(NvmlError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        v["mig_devices"] = Value::Array(migs);
        devices.push(v);
    }
    let out = json!({
        "driver_version": nvml.sys_driver_version()?,
        "cuda_driver_version": nvml.sys_cuda_driver_version()?,
        "device_count": devices.len(),
        "devices": devices,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
