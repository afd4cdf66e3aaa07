//! The event timeline: what changed between two snapshots (episodes, leaks, processes, a GPU
//! lost or back) and what cleanup did, in one bounded ring of [`MAX_EVENTS`].

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
    /// Cleanups: the action and its result ("signal", "dry_run").
    pub action: &'static str,
    pub result: &'static str,
    pub detail: String,
    /// Cleanups that touched processes: how far allocation fell in the polls after.
    pub reclaimed: Option<u64>,
}

/// A cleanup detail is kept up to this many bytes.
pub const MAX_DETAIL_BYTES: usize = 160;

/// The ring of events: at most [`MAX_EVENTS`] slots (allocated once), each an [`Event`] whose
/// strings are cut, so its size is bounded.
#[derive(Debug, Default)]
pub struct Events {
    ring: Vec<Event>,
    start: usize,
    next_id: u64,
}

impl Events {
    pub fn new() -> Self {
        Events {
            ring: Vec::with_capacity(MAX_EVENTS),
            start: 0,
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
        if self.ring.len() < MAX_EVENTS {
            self.ring.push(e);
        } else {
            self.ring[self.start] = e;
            self.start = (self.start + 1) % MAX_EVENTS;
        }
        id
    }

    /// The event numbered `id`, while it is still held.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Event> {
        self.ring.iter_mut().find(|e| e.id == id)
    }

    /// The ring's storage (its slots, reserved whole) and its strings.
    pub fn held_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<Event>()
            + self
                .ring
                .iter()
                .map(|e| e.name.capacity() + e.detail.capacity())
                .sum::<usize>()
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Events oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> + '_ {
        let n = self.ring.len();
        (0..n).map(move |i| &self.ring[(self.start + i) % n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_with_cut_strings() {
        let mut ev = Events::new();
        for i in 0..(MAX_EVENTS + 10) {
            ev.push(Event {
                gpu: i as u32,
                name: "x".repeat(1000),
                ..Event::default()
            });
        }
        let all: Vec<_> = ev.iter().collect();
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0].gpu, 10);
        assert_eq!(all.last().unwrap().id, (MAX_EVENTS + 10) as u64);
        assert!(all.iter().all(|e| e.name.len() == MAX_NAME_BYTES));
        assert!(ev.get_mut(1).is_none() && ev.get_mut(20).is_some());
    }
}
