//! The event timeline: what changed between two snapshots (episodes, leaks, processes, a GPU
//! lost or back) and what cleanup did, in bounded rings of [`MAX_EVENTS`] in all.

use super::series::{cut, MAX_NAME_BYTES};

/// Events kept, newest last; older ones are overwritten.
pub const MAX_EVENTS: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    SoftStarted,
    SoftEnded,
    HardStarted,
    HardEnded,
    LeakStarted,
    LeakEnded,
    ProcessArrived,
    ProcessExited,
    GpuLost,
    GpuBack,
    Cleanup,
}

impl Kind {
    /// The name the JSON API and the page use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SoftStarted => "soft_started",
            Kind::SoftEnded => "soft_ended",
            Kind::HardStarted => "hard_started",
            Kind::HardEnded => "hard_ended",
            Kind::LeakStarted => "leak_started",
            Kind::LeakEnded => "leak_ended",
            Kind::ProcessArrived => "process_arrived",
            Kind::ProcessExited => "process_exited",
            Kind::GpuLost => "gpu_lost",
            Kind::GpuBack => "gpu_back",
            Kind::Cleanup => "cleanup",
        }
    }
}

/// One event. Strings are short and cut: `name` to [`MAX_NAME_BYTES`], cleanup details to
/// [`MAX_DETAIL_BYTES`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// Numbered from 1 in order of recording, so a reader can ask for what is new.
    pub id: u64,
    /// Unix seconds.
    pub t: f64,
    pub gpu: u32,
    pub kind: Kind,
    /// The process, for process and process-leak events.
    pub pid: Option<u32>,
    pub name: String,
    /// Allocated bytes when it happened (episodes, processes, cleanups).
    pub bytes: u64,
    /// Leak rate for leak events, bytes per second.
    pub rate: f64,
    /// Cleanups: what started the run ("hard" or "predicted"), the action and its result
    /// ("signal", "dry_run").
    pub trigger: &'static str,
    pub action: &'static str,
    pub result: &'static str,
    pub detail: String,
    /// Cleanups that touched processes: how far allocation fell in the polls after.
    pub reclaimed: Option<u64>,
}

/// A cleanup detail is kept up to this many bytes.
pub const MAX_DETAIL_BYTES: usize = 160;

/// Process arrivals and exits are kept apart from the rest, half the events each, so a node whose
/// processes churn cannot push its episodes, leaks and cleanups off the timeline.
const PER_RING: usize = MAX_EVENTS / 2;

/// The events: two rings of [`PER_RING`] slots (reserved once), each an [`Event`] whose strings
/// are cut, so their size is bounded.
#[derive(Debug, Default)]
pub struct Events {
    /// Episodes, leaks, GPUs lost and back, cleanups.
    notable: Slots,
    /// Process arrivals and exits.
    processes: Slots,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Slots {
    ring: Vec<Event>,
    /// Index of the oldest event once the ring is full.
    start: usize,
}

impl Slots {
    fn new() -> Self {
        Slots {
            ring: Vec::with_capacity(PER_RING),
            start: 0,
        }
    }

    fn push(&mut self, e: Event) {
        if self.ring.len() < PER_RING {
            self.ring.push(e);
        } else {
            self.ring[self.start] = e;
            self.start = (self.start + 1) % PER_RING;
        }
    }
}

impl Events {
    pub fn new() -> Self {
        Events {
            notable: Slots::new(),
            processes: Slots::new(),
            next_id: 1,
        }
    }

    /// Records `e` (its strings cut), returning its id.
    pub fn push(&mut self, mut e: Event) -> u64 {
        e.id = self.next_id;
        self.next_id += 1;
        if e.name.len() > MAX_NAME_BYTES {
            e.name = cut(&e.name, MAX_NAME_BYTES).to_string();
        }
        if e.detail.len() > MAX_DETAIL_BYTES {
            e.detail = cut(&e.detail, MAX_DETAIL_BYTES).to_string();
        }
        let id = e.id;
        match e.kind {
            Kind::ProcessArrived | Kind::ProcessExited => self.processes.push(e),
            _ => self.notable.push(e),
        }
        id
    }

    /// The event numbered `id`, while it is still held.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Event> {
        self.notable
            .ring
            .iter_mut()
            .chain(self.processes.ring.iter_mut())
            .find(|e| e.id == id)
    }

    /// The rings' storage (their slots, reserved whole) and their strings.
    pub fn held_bytes(&self) -> usize {
        let slots = |s: &Slots| {
            s.ring.capacity() * std::mem::size_of::<Event>()
                + s.ring
                    .iter()
                    .map(|e| e.name.capacity() + e.detail.capacity())
                    .sum::<usize>()
        };
        slots(&self.notable) + slots(&self.processes)
    }

    pub fn len(&self) -> usize {
        self.notable.ring.len() + self.processes.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events oldest first (in the order they were recorded).
    pub fn iter(&self) -> std::vec::IntoIter<&Event> {
        let mut all: Vec<&Event> = self
            .notable
            .ring
            .iter()
            .chain(self.processes.ring.iter())
            .collect();
        all.sort_unstable_by_key(|e| e.id);
        all.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_with_cut_strings() {
        let mut ev = Events::new();
        ev.push(Event {
            kind: Kind::HardStarted,
            ..Event::default()
        });
        for i in 0..(MAX_EVENTS + 10) {
            ev.push(Event {
                gpu: i as u32,
                kind: Kind::ProcessArrived,
                name: "x".repeat(1000),
                ..Event::default()
            });
        }
        let all: Vec<_> = ev.iter().collect();
        assert_eq!(all.len(), PER_RING + 1);
        // Process churn did not push the episode out.
        assert_eq!(all[0].kind, Kind::HardStarted);
        assert_eq!(all[1].gpu, (MAX_EVENTS + 10 - PER_RING) as u32);
        assert_eq!(all.last().unwrap().id, (MAX_EVENTS + 11) as u64);
        assert!(all[1..].iter().all(|e| e.name.len() == MAX_NAME_BYTES));
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert!(ev.get_mut(2).is_none() && ev.get_mut(1).is_some());
    }
}
