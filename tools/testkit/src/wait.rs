//! The one "wait until" of the test kit: tests never assert timings, so everything that happens
//! "soon" (a log line, a metric, a daemon's readiness, an alert) is polled for with a generous
//! timeout, and a timeout says what was awaited and the last thing seen.

use std::time::{Duration, Instant};

/// One look at what is awaited.
#[derive(Debug)]
pub enum Poll<T> {
    /// It happened: stop waiting with this value.
    Ready(T),
    /// Not yet; the text is what was seen, shown if the wait times out.
    Pending(String),
    /// It can no longer happen (the process exited, say): stop waiting with this reason.
    Failed(String),
}

impl<T> From<Option<T>> for Poll<T> {
    fn from(value: Option<T>) -> Poll<T> {
        value.map_or_else(|| Poll::Pending(String::new()), Poll::Ready)
    }
}

/// A wait: what is awaited, for how long, and how often to look.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    timeout: Duration,
    every: Duration,
}

impl Wait {
    /// Awaits `what` for at most `timeout`, looking every 50 ms.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            timeout,
            every: Duration::from_millis(50),
        }
    }

    /// Looks every `every` instead (for probes that cost something, such as a query).
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// Looks with `probe` until it is ready (its value), it fails or the timeout passes (an error
    /// naming what was awaited, the timeout and the last thing seen). It looks at least twice: once
    /// at once and once at or after the deadline.
    pub fn until<T>(&self, mut probe: impl FnMut() -> Poll<T>) -> Result<T, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match probe() {
                Poll::Ready(value) => return Ok(value),
                Poll::Failed(why) => {
                    return Err(format!("gave up waiting for {}: {why}", self.what))
                }
                Poll::Pending(last) => last,
            };
            if Instant::now() >= deadline {
                let seen = if last.is_empty() {
                    String::new()
                } else {
                    format!("; last seen:\n{last}")
                };
                return Err(format!(
                    "timed out after {:?} waiting for {}{seen}",
                    self.timeout, self.what
                ));
            }
            std::thread::sleep(self.every);
        }
    }

    /// [`Wait::until`] for tests: the value, or a panic with the message.
    #[track_caller]
    pub fn must<T>(&self, probe: impl FnMut() -> Poll<T>) -> T {
        self.until(probe).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_probe_returns_its_value_and_a_timeout_names_the_wait_and_the_last_sight() {
        let mut n = 0;
        let got = Wait::new("three looks", Duration::from_secs(60)).until(|| {
            n += 1;
            if n == 3 {
                Poll::Ready(n)
            } else {
                Poll::Pending(format!("look {n}"))
            }
        });
        assert_eq!(got, Ok(3));
        let err = Wait::new("never", Duration::ZERO)
            .until(|| Poll::<()>::Pending("still nothing".into()))
            .unwrap_err();
        assert!(
            err.contains("waiting for never; last seen:\nstill nothing"),
            "{err}"
        );
        let err = Wait::new("a dead thing", Duration::from_secs(60))
            .until(|| Poll::<()>::Failed("it exited".into()))
            .unwrap_err();
        assert_eq!(err, "gave up waiting for a dead thing: it exited");
        let none: Option<u8> = None;
        assert!(Wait::new("none", Duration::ZERO)
            .until(|| none.into())
            .is_err());
    }
}
