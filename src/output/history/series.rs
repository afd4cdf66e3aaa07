//! The downsampled series of one GPU and of one process: polls are folded into fixed-width time
//! steps (a step keeps the peak allocation and the worst level seen in it), held in fixed rings.
//!
//! Budget per GPU, by construction (see [`BYTES_PER_GPU`]): the GPU's last 10 minutes at 5 s
//! and last hour at 30 s, and the last 10 minutes at 10 s of each of its
//! [`MAX_PROCESSES_PER_GPU`] largest processes, names cut to [`MAX_NAME_BYTES`].

use super::ring::Ring;
use crate::model::engine::{GpuView, ProcessView};

/// The fine GPU series: 120 steps of 5 s (10 minutes).
pub const FINE_STEP_S: u64 = 5;
const FINE_POINTS: usize = 120;
/// The coarse GPU series: 120 steps of 30 s (1 hour).
pub const COARSE_STEP_S: u64 = 30;
const COARSE_POINTS: usize = 120;
/// A process's series: 60 steps of 10 s (10 minutes).
pub const PROCESS_STEP_S: u64 = 10;
const PROCESS_POINTS: usize = 60;
/// The processes per GPU that have a series: the largest ones.
pub const MAX_PROCESSES_PER_GPU: usize = 16;
/// A process name is kept up to this many bytes (cut at a character boundary).
pub const MAX_NAME_BYTES: usize = 128;

/// The longest window a query can ask for: the coarse series' span.
pub const MAX_WINDOW_S: u64 = COARSE_STEP_S * COARSE_POINTS as u64;
/// The longest window the fine series covers.
pub const FINE_WINDOW_S: u64 = FINE_STEP_S * FINE_POINTS as u64;

/// The most a GPU's history holds, whatever runs on it.
pub const BYTES_PER_GPU: usize = std::mem::size_of::<GpuSeries>()
    + GpuSeries::RING_BYTES
    + MAX_PROCESSES_PER_GPU
        * (std::mem::size_of::<ProcessSeries>() + ProcessSeries::RING_BYTES + MAX_NAME_BYTES);

// The budget is checked when the exporter is compiled.
const _: () = assert!(
    BYTES_PER_GPU <= 48 * 1024,
    "a GPU's history must fit in 48 KiB"
);

/// One step of a GPU's series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuPoint {
    /// Unix seconds at the start of the step.
    pub t: u64,
    /// The highest allocation seen in the step.
    pub allocated: u64,
    pub soft: u64,
    pub hard: u64,
    /// The latest leak rate in the step, bytes per second.
    pub leak_rate: f32,
    /// The shortest time to the hard limit seen in the step, seconds; negative for none.
    pub eta: f32,
    /// The worst level in the step (0 ok, 1 soft, 2 hard).
    pub level: u8,
}

/// One step of a process's series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessPoint {
    pub t: u64,
    /// The highest allocation seen in the step.
    pub allocated: u64,
    pub leak_rate: f32,
}

/// A GPU's fine and coarse series.
#[derive(Debug, Clone, Default)]
pub struct GpuSeries {
    pub fine: Ring<GpuPoint, FINE_POINTS>,
    pub coarse: Ring<GpuPoint, COARSE_POINTS>,
}

/// A process's series; identified by pid and name within its GPU.
#[derive(Debug, Clone, Default)]
pub struct ProcessSeries {
    pub pid: u32,
    pub name: String,
    pub points: Ring<ProcessPoint, PROCESS_POINTS>,
}

impl GpuSeries {
    /// The rings' storage, allocated whole when the series is made.
    pub const RING_BYTES: usize = Ring::<GpuPoint, FINE_POINTS>::STORAGE_BYTES
        + Ring::<GpuPoint, COARSE_POINTS>::STORAGE_BYTES;

    /// Folds the GPU's state at unix second `t` in; a GPU that is down or unread adds nothing.
    pub fn record(&mut self, t: u64, g: &GpuView) {
        let (Some(mem), true) = (g.memory, g.up) else {
            return;
        };
        let (soft, hard) = g.limits.map_or((0, 0), |l| (l.soft, l.hard));
        let point = GpuPoint {
            t,
            allocated: mem.allocated,
            soft,
            hard,
            leak_rate: g.leak_rate as f32,
            eta: g.hard_limit_eta.map_or(-1.0, |e| e as f32),
            level: g.level.as_u8(),
        };
        fold_gpu(&mut self.fine, FINE_STEP_S, point);
        fold_gpu(&mut self.coarse, COARSE_STEP_S, point);
    }

    /// The series that covers `window_s` seconds at the finest step, with its step.
    pub fn for_window(&self, window_s: u64) -> (u64, Vec<GpuPoint>) {
        if window_s <= FINE_WINDOW_S {
            (FINE_STEP_S, self.fine.iter().copied().collect())
        } else {
            (COARSE_STEP_S, self.coarse.iter().copied().collect())
        }
    }
}

fn fold_gpu<const N: usize>(ring: &mut Ring<GpuPoint, N>, step: u64, mut p: GpuPoint) {
    p.t -= p.t % step;
    match ring.last_mut() {
        Some(last) if last.t == p.t => {
            last.allocated = last.allocated.max(p.allocated);
            last.level = last.level.max(p.level);
            last.soft = p.soft;
            last.hard = p.hard;
            last.leak_rate = p.leak_rate;
            last.eta = match (last.eta < 0.0, p.eta < 0.0) {
                (true, _) => p.eta,
                (false, true) => last.eta,
                (false, false) => last.eta.min(p.eta),
            };
        }
        _ => ring.push(p),
    }
}

impl ProcessSeries {
    /// The ring's storage, allocated whole when the series is made.
    pub const RING_BYTES: usize = Ring::<ProcessPoint, PROCESS_POINTS>::STORAGE_BYTES;

    pub fn new(p: &ProcessView) -> Self {
        ProcessSeries {
            pid: p.pid,
            name: cut(&p.name, MAX_NAME_BYTES).to_string(),
            points: Ring::default(),
        }
    }

    /// Whether `p` is this series' process.
    pub fn is(&self, p: &ProcessView) -> bool {
        self.pid == p.pid && self.name == cut(&p.name, MAX_NAME_BYTES)
    }

    pub fn record(&mut self, t: u64, p: &ProcessView) {
        let t = t - t % PROCESS_STEP_S;
        match self.points.last_mut() {
            Some(last) if last.t == t => {
                last.allocated = last.allocated.max(p.allocated);
                last.leak_rate = p.leak_rate as f32;
            }
            _ => self.points.push(ProcessPoint {
                t,
                allocated: p.allocated,
                leak_rate: p.leak_rate as f32,
            }),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_its_peak_and_worst_level() {
        let mut ring: Ring<GpuPoint, 4> = Ring::default();
        let p = |t, allocated, level, eta| GpuPoint {
            t,
            allocated,
            level,
            eta,
            ..GpuPoint::default()
        };
        fold_gpu(&mut ring, 5, p(100, 10, 0, -1.0));
        fold_gpu(&mut ring, 5, p(102, 30, 2, 50.0));
        fold_gpu(&mut ring, 5, p(104, 20, 1, -1.0));
        fold_gpu(&mut ring, 5, p(105, 5, 0, -1.0));
        let v: Vec<_> = ring.iter().copied().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].t, v[0].allocated, v[0].level, v[0].eta),
            (100, 30, 2, 50.0)
        );
        assert_eq!((v[1].t, v[1].allocated), (105, 5));
    }

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 8), "abc");
    }
}
