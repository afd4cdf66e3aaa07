//! Building `[[fault]]` tables: each kind accepts only the keys it uses, and errors name the
//! exact key.

use std::time::Duration;

use super::raw::{KeyErr, RawFault};
use crate::faults::{CallClass, Fault, FaultKind, InitFailure, Window};
use crate::units::Secs;

/// A built `[[fault]]`: a per-call fault, or the one init failure.
pub(super) enum Built {
    Fault(Fault),
    Init(InitFailure),
}

fn window(from: Option<Secs>, until: Option<Secs>) -> Result<Window, KeyErr> {
    let w = Window {
        from: from.map_or(0.0, |s| s.0),
        until: until.map(|s| s.0),
    };
    if w.until.is_some_and(|u| u <= w.from) {
        return Err((".until".into(), "must be later than from".into()));
    }
    Ok(w)
}

fn check_device(device: Option<usize>, count: usize) -> Result<(), KeyErr> {
    match device {
        Some(d) if d >= count => Err((
            ".device".into(),
            format!("no device with index {d} (the scenario has {count})"),
        )),
        _ => Ok(()),
    }
}

fn calls(list: Option<Vec<String>>) -> Result<Vec<CallClass>, KeyErr> {
    let list = list.unwrap_or_else(|| vec!["all".to_string()]);
    if list.is_empty() {
        return Err((".calls".into(), "must name at least one call class".into()));
    }
    list.iter()
        .map(|c| CallClass::parse(c).map_err(|e| (".calls".to_string(), e)))
        .collect()
}

/// Builds one fault, checking the keys its kind uses; error keys are relative (`.device`).
pub(super) fn build_fault(f: RawFault, device_count: usize) -> Result<Built, KeyErr> {
    const WINDOW: [&str; 3] = ["device", "from", "until"];
    let allowed: &[&str] = match f.kind.as_str() {
        "device_lost" | "processes_not_supported" => &WINDOW,
        "init_failure" => &["attempts", "for"],
        "latency" => &["device", "from", "until", "calls", "delay"],
        "process_churn" => &["device", "from", "until", "extra"],
        "internal_error" => &["device", "from", "until", "calls"],
        "driver_reset" => &["from"],
        other => {
            return Err((
                ".kind".into(),
                format!(
                    "unknown fault kind {other:?}; expected device_lost, processes_not_supported, \
                     init_failure, latency, process_churn, internal_error or driver_reset"
                ),
            ))
        }
    };
    if let Some(k) = f.given().into_iter().find(|k| !allowed.contains(k)) {
        return Err((
            format!(".{k}"),
            format!("not used by faults of kind {}", f.kind),
        ));
    }
    check_device(f.device, device_count)?;
    let fault = |kind| {
        Ok(Built::Fault(Fault {
            device: f.device,
            kind,
            window: window(f.from, f.until)?,
        }))
    };
    match f.kind.as_str() {
        "device_lost" => {
            if f.device.is_none() {
                return Err((".device".into(), "missing: which device is lost".into()));
            }
            fault(FaultKind::DeviceLost)
        }
        "processes_not_supported" => fault(FaultKind::ProcessesNotSupported),
        "driver_reset" => {
            if f.from.is_none() {
                return Err((".from".into(), "missing: when the driver is reset".into()));
            }
            fault(FaultKind::DriverReset)
        }
        "init_failure" => {
            if f.attempts.is_none() && f.for_secs.is_none() {
                return Err((
                    String::new(),
                    "init_failure needs attempts and/or for".into(),
                ));
            }
            Ok(Built::Init(InitFailure {
                attempts: f.attempts,
                for_secs: f.for_secs.map(|s| s.0),
            }))
        }
        "latency" => {
            let delay = f.delay.ok_or_else(|| {
                (
                    ".delay".to_string(),
                    "missing: how long to delay".to_string(),
                )
            })?;
            fault(FaultKind::Latency {
                delay: Duration::from_secs_f64(delay.0),
                calls: calls(f.calls.clone())?,
            })
        }
        "process_churn" => {
            let extra = f.extra.ok_or_else(|| {
                (
                    ".extra".to_string(),
                    "missing: how many processes appear".to_string(),
                )
            })?;
            if extra == 0 || extra > 1024 {
                return Err((".extra".into(), "must be between 1 and 1024".into()));
            }
            fault(FaultKind::ProcessChurn { extra })
        }
        _ => fault(FaultKind::InternalError {
            calls: calls(f.calls.clone())?,
        }),
    }
}
