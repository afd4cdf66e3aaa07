//! A scenario process: where its pid comes from (made up, or a live process read from
//! `/proc/<pid>/stat`) and its memory over time (a curve, a replayed trace or a file it rewrites).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a process's pid comes from.
#[derive(Debug)]
pub enum PidSource {
    /// A made-up pid; present whenever its time window says so.
    Simulated(u32),
    /// A real process; present only while it exists and is not a zombie. `start_ticks` is its
    /// start time as seen at init, so a recycled pid does not bring the entry back.
    Live {
        /// The real pid.
        pid: u32,
        /// Field 22 of `/proc/<pid>/stat` at init, if the process existed then.
        start_ticks: Option<u64>,
    },
}

impl PidSource {
    /// A live source, remembering the process's current start time.
    pub fn live(pid: u32) -> Self {
        let start_ticks = proc_stat(pid).map(|s| s.start_ticks);
        PidSource::Live { pid, start_ticks }
    }

    /// The pid reported to clients.
    pub fn pid(&self) -> u32 {
        match self {
            PidSource::Simulated(p) | PidSource::Live { pid: p, .. } => *p,
        }
    }

    /// Whether this entry follows a real process.
    pub fn is_live(&self) -> bool {
        matches!(self, PidSource::Live { .. })
    }

    pub(crate) fn alive(&self) -> bool {
        match self {
            PidSource::Simulated(_) => true,
            PidSource::Live { pid, start_ticks } => match (proc_stat(*pid), start_ticks) {
                (Some(s), Some(t0)) => s.state != 'Z' && s.start_ticks == *t0,
                _ => false,
            },
        }
    }
}

struct ProcStat {
    state: char,
    start_ticks: u64,
}

/// Reads the state and start time of a real process; `None` if it does not exist. Read as bytes,
/// as the real driver does: a process name may hold any byte but NUL (invalid UTF-8, `)`,
/// newlines), and such a process is still listed.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything; fields after the
    // last ')' are space separated: state is field 3, starttime field 22.
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let after = String::from_utf8_lossy(&bytes[close + 1..]);
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// A process's memory over time, or a file it rewrites.
#[derive(Debug)]
pub enum MemorySource {
    /// A function of the process's age.
    Curve(Curve),
    /// Bytes read from a file on each evaluation. A missing, empty or unparsable file yields the
    /// last good value (0 before the first good read).
    File {
        /// The file (relative paths were resolved against the scenario's directory).
        path: PathBuf,
        /// Last value read successfully.
        last_good: AtomicU64,
    },
}

impl MemorySource {
    /// A file source with no good value yet.
    pub fn file(path: PathBuf) -> Self {
        MemorySource::File {
            path,
            last_good: AtomicU64::new(0),
        }
    }

    pub(crate) fn bytes(&self, age: f64) -> u64 {
        match self {
            MemorySource::Curve(c) => c.at(age),
            MemorySource::File { path, last_good } => {
                let parsed = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| crate::units::parse_size(t.trim()).ok());
                match parsed {
                    Some(v) => {
                        last_good.store(v, Ordering::Relaxed);
                        v
                    }
                    None => last_good.load(Ordering::Relaxed),
                }
            }
        }
    }
}

/// Memory as a function of the process's age (scenario seconds since its `start`).
#[derive(Debug, Clone, PartialEq)]
pub enum Curve {
    /// Always the same.
    Constant(u64),
    /// `start + rate * age`, floored at 0 and optionally capped.
    Linear {
        /// Bytes at age 0.
        start: u64,
        /// Bytes per second (may be negative).
        rate: f64,
        /// Upper bound.
        cap: Option<u64>,
    },
    /// Linear interpolation between `(age, bytes)` points; flat before the first and after the last.
    Points(Vec<(f64, u64)>),
    /// Rises linearly from `low` to `high` over `period`, then drops back to `low`.
    Sawtooth {
        /// Bytes at the start of each cycle.
        low: u64,
        /// Bytes just before the drop.
        high: u64,
        /// Cycle length in seconds.
        period: f64,
    },
    /// A recorded trace, replayed.
    Trace(Trace),
}

/// A recorded `(time, bytes)` trace replayed as a curve.
///
/// At process age `a` the trace is read at trace time `τ = offset + a × speed`. Before the first
/// row and after the last the first / last value holds; with `looped`, `τ` wraps around over
/// `[first time, last time)` instead, so the trace repeats every `last − first` trace seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(trace seconds, bytes)`, at least one row, times strictly increasing.
    pub rows: Vec<(f64, u64)>,
    /// How values between rows are read.
    pub interpolation: Interpolation,
    /// Whether the trace repeats.
    pub looped: bool,
    /// Trace seconds per scenario second (> 0).
    pub speed: f64,
    /// Trace time at process age 0.
    pub offset: f64,
}

/// How a trace is read between two rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// A row's value holds until the next row (what a sampler saw).
    Step,
    /// Straight lines between rows.
    Linear,
}

impl Trace {
    /// Bytes at process age `age`.
    pub fn at(&self, age: f64) -> u64 {
        let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) else {
            return 0;
        };
        let mut tau = self.offset + age * self.speed;
        let span = last.0 - first.0;
        if self.looped && span > 0.0 && tau.is_finite() {
            tau = first.0 + (tau - first.0).rem_euclid(span);
        }
        if tau.is_nan() || tau <= first.0 {
            return first.1;
        }
        if tau >= last.0 {
            return last.1;
        }
        // The first row later than tau; 1..len since first.0 < tau < last.0.
        let next = self.rows.partition_point(|r| r.0 <= tau);
        let (t0, b0) = self.rows[next - 1];
        match self.interpolation {
            Interpolation::Step => b0,
            Interpolation::Linear => {
                let (t1, b1) = self.rows[next];
                let f = (tau - t0) / (t1 - t0);
                to_bytes(b0 as f64 + (b1 as f64 - b0 as f64) * f)
            }
        }
    }
}

impl Curve {
    /// Bytes at `age` seconds.
    pub fn at(&self, age: f64) -> u64 {
        let age = age.max(0.0);
        match self {
            Curve::Constant(b) => *b,
            Curve::Linear { start, rate, cap } => {
                let v = to_bytes(*start as f64 + rate * age);
                cap.map_or(v, |c| v.min(c))
            }
            Curve::Points(points) => {
                let (first, last) = match (points.first(), points.last()) {
                    (Some(f), Some(l)) => (f, l),
                    _ => return 0,
                };
                if age <= first.0 {
                    return first.1;
                }
                if age >= last.0 {
                    return last.1;
                }
                for w in points.windows(2) {
                    let ((t0, b0), (t1, b1)) = (w[0], w[1]);
                    if age <= t1 {
                        let f = (age - t0) / (t1 - t0);
                        return to_bytes(b0 as f64 + (b1 as f64 - b0 as f64) * f);
                    }
                }
                last.1
            }
            Curve::Sawtooth { low, high, period } => {
                let phase = (age % period) / period;
                to_bytes(*low as f64 + (*high as f64 - *low as f64) * phase)
            }
            Curve::Trace(trace) => trace.at(age),
        }
    }
}

fn to_bytes(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v.round() as u64
    }
}

/// A process on a GPU or MIG device.
#[derive(Debug)]
pub struct Process {
    /// Its pid.
    pub pid: PidSource,
    /// Name returned by `nvmlSystemGetProcessName`.
    pub name: String,
    /// Listed by the compute-process queries.
    pub compute: bool,
    /// Listed by the graphics-process queries.
    pub graphics: bool,
    /// An MPS client: listed by the MPS compute-process queries only.
    pub mps: bool,
    /// Its memory.
    pub memory: MemorySource,
    /// Scenario time it appears.
    pub start: f64,
    /// Scenario time it disappears, if ever.
    pub stop: Option<f64>,
    /// `(gpuInstanceId, computeInstanceId)` for processes on MIG devices.
    pub instance: Option<(u32, u32)>,
}

impl Process {
    /// Whether the process is listed at scenario time `t` (time window and, if live, /proc).
    pub fn present(&self, t: f64) -> bool {
        t >= self.start && self.stop.is_none_or(|s| t < s) && self.pid.alive()
    }
}
