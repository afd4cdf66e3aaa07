//! Self-metrics whose value is read when a scrape gathers them rather than counted as events
//! happen: the process collector with exact CPU seconds, and counters kept elsewhere as atomics
//! (the log sink's dropped lines) that this crate's registry cannot hold directly.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, MetricFamily};
use prometheus::{IntCounter, Opts};

/// The family whose value the prometheus crate rounds down to whole seconds.
const CPU_FAMILY: &str = "process_cpu_seconds_total";

/// The prometheus crate's process collector, with `process_cpu_seconds_total` replaced by the
/// exact user + system CPU time from `getrusage(2)` (microseconds; the crate divides clock ticks
/// by the tick rate in integers, so 30 s of light work could still read 0).
pub struct ExactProcess {
    inner: ProcessCollector,
}

impl ExactProcess {
    pub fn for_self() -> ExactProcess {
        ExactProcess {
            inner: ProcessCollector::for_self(),
        }
    }
}

/// User + system CPU seconds this process used so far, to the microsecond.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

impl Collector for ExactProcess {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        if let Some(exact) = cpu_seconds() {
            for family in families.iter_mut().filter(|f| f.name() == CPU_FAMILY) {
                for metric in family.mut_metric() {
                    let mut counter = Counter::default();
                    counter.set_value(exact);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

/// A counter whose total lives elsewhere (an atomic another module owns), brought up to date
/// from `read` at each gather; it never goes down.
pub struct ReadCounter {
    counter: IntCounter,
    read: fn() -> u64,
    update: Mutex<()>,
}

impl ReadCounter {
    pub fn new(name: &str, help: &str, read: fn() -> u64) -> prometheus::Result<ReadCounter> {
        Ok(ReadCounter {
            counter: IntCounter::with_opts(Opts::new(name, help))?,
            read,
            update: Mutex::new(()),
        })
    }
}

impl Collector for ReadCounter {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // One update at a time, so two concurrent scrapes cannot both add the same difference.
        let guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let now = (self.read)();
        let before = self.counter.get();
        if now > before {
            self.counter.inc_by(now - before);
        }
        drop(guard);
        self.counter.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_fractional_and_grow() {
        let before = cpu_seconds().unwrap();
        // Burn a little CPU; the value must move by less than a whole second and be seen.
        let mut x = 0u64;
        while cpu_seconds().unwrap() - before < 0.01 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_seconds().unwrap();
        assert!(after > before && after.fract() != 0.0, "{before} {after}");
        let families = ExactProcess::for_self().collect();
        let cpu = families.iter().find(|f| f.name() == CPU_FAMILY).unwrap();
        assert!(cpu.get_metric()[0].get_counter().get_value() >= after);
    }

    #[test]
    fn a_read_counter_follows_its_source() {
        static SOURCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let c = ReadCounter::new("t_total", "test", || {
            SOURCE.load(std::sync::atomic::Ordering::Relaxed)
        })
        .unwrap();
        let value = |c: &ReadCounter| c.collect()[0].get_metric()[0].get_counter().get_value();
        assert_eq!(value(&c), 0.0);
        SOURCE.store(5, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(value(&c), 5.0);
        assert_eq!(value(&c), 5.0);
    }
}
