//! `/api/v1/history`: its query parameters (bounded, validated) and its response, an edge type
//! copied out of the history under its lock and serialised after.

use std::time::Duration;

use serde::Serialize;

use super::events::{Event, MAX_EVENTS};
use super::series::{self, MAX_WINDOW_S, PROCESS_STEP_S};
use super::Store;
use crate::base::input::parse_duration_within;

/// The shortest window a query may ask for.
pub const MIN_WINDOW_S: u64 = 60;
/// The window when none is given: the fine series' span.
pub const DEFAULT_WINDOW_S: u64 = series::FINE_WINDOW_S;
/// Events returned when `events` is not given.
pub const DEFAULT_EVENTS: usize = 50;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    /// How far back, seconds (1 minute to 1 hour).
    pub window_s: u64,
    /// Only this GPU (by index).
    pub gpu: Option<u32>,
    /// At most this many events, the newest (0 to 256).
    pub events: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            window_s: DEFAULT_WINDOW_S,
            gpu: None,
            events: DEFAULT_EVENTS,
        }
    }
}

impl Query {
    /// Parses `window`, `gpu` and `events`; anything else, a repeated key or a bad value is a
    /// one-line reason (the handler answers 400 with it).
    pub fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
        let mut q = Query::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if seen.contains(&key.as_str()) {
                return Err(format!("query parameter {key:?} is given more than once"));
            }
            match key.as_str() {
                "window" => {
                    let d = parse_duration_within(
                        "window",
                        value,
                        Duration::from_secs(MIN_WINDOW_S),
                        Duration::from_secs(MAX_WINDOW_S),
                    )
                    .map_err(|e| e.to_string())?;
                    q.window_s = d.as_secs();
                }
                "gpu" => {
                    q.gpu = Some(value.parse().map_err(|_| {
                        format!("gpu: invalid value {value:?}: must be a GPU index (0, 1, ...)")
                    })?);
                }
                "events" => {
                    q.events =
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n <= MAX_EVENTS)
                            .ok_or_else(|| {
                                format!(
                                    "events: invalid value {value:?}: must be 0 to {MAX_EVENTS}"
                                )
                            })?;
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?} (known: window, gpu, events)"
                    ))
                }
            }
            seen.push(key);
        }
        Ok(q)
    }
}

/// The body of `/api/v1/history`. Series are columns: the i-th entries of `t`, `allocated`, ...
/// belong to one step.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryResponse {
    /// Unix seconds of the newest snapshot in the history; null before the first poll.
    pub now: Option<f64>,
    pub window_seconds: u64,
    /// The width of a GPU step in this window (5 s up to 10 minutes, 30 s beyond).
    pub step_seconds: u64,
    pub process_step_seconds: u64,
    /// The most memory one GPU's series can take.
    pub max_bytes_per_gpu: usize,
    /// What the whole history holds now (every GPU's series and state, the events), bytes.
    pub held_bytes: usize,
    /// Events held, of at most 256.
    pub events_held: usize,
    pub gpus: Vec<GpuHistory>,
    /// The newest events in the window, oldest first.
    pub events: Vec<EventEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuHistory {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    /// Unix seconds at the start of each step.
    pub t: Vec<u64>,
    /// The peak allocation in each step.
    pub allocated: Vec<u64>,
    pub soft: Vec<u64>,
    pub hard: Vec<u64>,
    /// The worst level in each step: 0 ok, 1 soft, 2 hard.
    pub level: Vec<u8>,
    pub leak_rate_bytes_per_second: Vec<f32>,
    /// Null where nothing grows.
    pub hard_limit_eta_seconds: Vec<Option<f32>>,
    /// The largest processes (at most 16), largest first.
    pub processes: Vec<ProcessHistory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessHistory {
    pub pid: u32,
    pub name: String,
    pub t: Vec<u64>,
    pub allocated: Vec<u64>,
    pub leak_rate_bytes_per_second: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventEntry {
    pub id: u64,
    pub t: f64,
    pub gpu: u32,
    /// soft_started, soft_ended, hard_started, hard_ended, leak_started, leak_ended,
    /// process_arrived, process_exited, gpu_lost, gpu_back, cleanup.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Allocated bytes (the GPU's, or the process's for process events).
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leak_rate_bytes_per_second: Option<f64>,
    /// Cleanups: "hard" (in hard breach) or "predicted" (`[cleanup.predict]`).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub trigger: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub action: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub result: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimed_bytes: Option<u64>,
}

impl HistoryResponse {
    pub(super) fn copy(s: &Store, q: &Query) -> Self {
        let from = (s.now as u64).saturating_sub(q.window_s);
        let mut step_seconds = series::FINE_STEP_S;
        let gpus = s
            .gpus
            .iter()
            .filter(|h| q.gpu.is_none_or(|i| i == h.index))
            .map(|h| {
                let (step, points) = h.series.for_window(q.window_s);
                step_seconds = step;
                let points: Vec<_> = points.into_iter().filter(|p| p.t >= from).collect();
                GpuHistory {
                    index: h.index,
                    uuid: h.uuid.clone(),
                    model: h.model.clone(),
                    t: points.iter().map(|p| p.t).collect(),
                    allocated: points.iter().map(|p| p.allocated).collect(),
                    soft: points.iter().map(|p| p.soft).collect(),
                    hard: points.iter().map(|p| p.hard).collect(),
                    level: points.iter().map(|p| p.level).collect(),
                    leak_rate_bytes_per_second: points.iter().map(|p| p.leak_rate).collect(),
                    hard_limit_eta_seconds: points
                        .iter()
                        .map(|p| (p.eta >= 0.0).then_some(p.eta))
                        .collect(),
                    processes: h
                        .processes
                        .iter()
                        .map(|p| {
                            let pts: Vec<_> = p.points.iter().filter(|x| x.t >= from).collect();
                            ProcessHistory {
                                pid: p.pid,
                                name: p.name.clone(),
                                t: pts.iter().map(|x| x.t).collect(),
                                allocated: pts.iter().map(|x| x.allocated).collect(),
                                leak_rate_bytes_per_second: pts
                                    .iter()
                                    .map(|x| x.leak_rate)
                                    .collect(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let mut events: Vec<EventEntry> = s
            .events
            .iter()
            .rev()
            .filter(|e| e.t >= from as f64 && q.gpu.is_none_or(|i| i == e.gpu))
            .take(q.events)
            .map(EventEntry::from)
            .collect();
        events.reverse();
        HistoryResponse {
            now: (s.now > 0.0).then_some(s.now),
            window_seconds: q.window_s,
            step_seconds,
            process_step_seconds: PROCESS_STEP_S,
            max_bytes_per_gpu: series::BYTES_PER_GPU,
            held_bytes: s.held_bytes(),
            events_held: s.events.len(),
            gpus,
            events,
        }
    }
}

impl From<&Event> for EventEntry {
    fn from(e: &Event) -> Self {
        use super::events::Kind;
        let leak = matches!(e.kind, Kind::LeakStarted | Kind::LeakEnded);
        EventEntry {
            id: e.id,
            t: e.t,
            gpu: e.gpu,
            kind: e.kind.as_str(),
            pid: e.pid,
            name: e.name.clone(),
            bytes: e.bytes,
            leak_rate_bytes_per_second: leak.then_some(e.rate),
            trigger: e.trigger,
            action: e.action,
            result: e.result,
            detail: e.detail.clone(),
            reclaimed_bytes: e.reclaimed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<Query, String> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&pairs)
    }

    #[test]
    fn queries_are_bounded() {
        assert_eq!(parse(&[]).unwrap(), Query::default());
        let q = parse(&[("window", "1h"), ("gpu", "3"), ("events", "0")]).unwrap();
        assert_eq!((q.window_s, q.gpu, q.events), (3600, Some(3), 0));
        for (bad, word) in [
            (vec![("window", "2h")], "window"),
            (vec![("window", "10")], "window"),
            (vec![("window", "30s")], "window"),
            (vec![("gpu", "-1")], "gpu"),
            (vec![("events", "257")], "events"),
            (vec![("limit", "1")], "unknown"),
            (vec![("gpu", "1"), ("gpu", "2")], "more than once"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(word) && !e.contains('\n'), "{bad:?}: {e}");
        }
    }
}
