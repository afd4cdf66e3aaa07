//! The log sink: log lines go to stderr through a bounded queue and one writer thread, so a log
//! line can never block, fail or kill the thread that wrote it.
//!
//! A stderr whose reader went away (`EPIPE`), a full disk (`ENOSPC`) or a pipe nobody reads (the
//! write blocks forever) only affects the writer thread: every other thread hands its formatted
//! line to the queue with `try_send` and carries on. When the queue is full (the writer is stuck)
//! or a write fails, the line is dropped and counted ([`dropped`], exported as
//! `vram_exporter_log_lines_dropped_total`). Write errors are never reported anywhere else:
//! tracing-subscriber's own fallback (`eprintln!`) panics on a failing stderr, which is what this
//! sink exists to avoid. Shutdown waits for the queue at most [`flush`]'s bound.
//!
//! The queue holds at most [`QUEUE_LINES`] lines and [`QUEUE_BYTES`] bytes; a line longer than
//! [`MAX_LINE_BYTES`] is cut there (and still ends in a newline).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The most lines waiting for the writer.
pub const QUEUE_LINES: usize = 1024;
/// The most bytes waiting for the writer.
pub const QUEUE_BYTES: u64 = 1 << 20;
/// The longest line written; longer ones are cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines dropped since start (queue full, line refused, or the write failed).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines dropped since start because stderr was gone, full or too slow.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// What the producers and the writer share.
#[derive(Debug, Default)]
struct Shared {
    /// Lines handed to the queue.
    queued: AtomicU64,
    /// Lines the writer finished with (written or dropped).
    done: AtomicU64,
    /// Bytes waiting in the queue.
    bytes: AtomicU64,
}

/// The sending side; cloned into every [`LineWriter`].
#[derive(Debug, Clone)]
pub struct Sink {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// The sink installed for the process (by [`Sink::stderr`]), for [`flush`].
static INSTALLED: OnceLock<Sink> = OnceLock::new();

impl Sink {
    /// A sink writing to a duplicate of stderr from its own thread. Falls back to dropping every
    /// line (counted) when stderr cannot be duplicated or the thread cannot start.
    pub fn stderr() -> Sink {
        let out = io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from);
        let sink = Sink::to(out);
        let _ = INSTALLED.set(sink.clone());
        sink
    }

    fn to(out: Option<File>) -> Sink {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE_LINES);
        let shared = Arc::new(Shared::default());
        let sink = Sink {
            tx,
            shared: shared.clone(),
        };
        let writer = move || {
            let mut out = out;
            for line in rx {
                shared.bytes.fetch_sub(line.len() as u64, Ordering::Relaxed);
                let written = match &mut out {
                    // A failed write drops this line; the next one is tried again (a full
                    // disk may empty, a journal may come back).
                    Some(f) => f.write_all(&line).is_ok(),
                    None => false,
                };
                if !written {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                shared.done.fetch_add(1, Ordering::Release);
            }
        };
        // Without a writer thread the receiver is gone: every send fails and is counted.
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(writer);
        sink
    }

    /// Queues one line without waiting; drops and counts it when the queue is full or gone.
    fn send(&self, mut line: Vec<u8>) {
        if line.len() > MAX_LINE_BYTES {
            line.truncate(MAX_LINE_BYTES - 1);
            line.push(b'\n');
        }
        let len = line.len() as u64;
        if self.shared.bytes.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.shared.bytes.fetch_sub(len, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.bytes.fetch_sub(len, Ordering::Relaxed);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every queued line is written or dropped, or `wait` has passed.
    fn flush(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let queued = self.shared.queued.load(Ordering::Acquire);
            if self.shared.done.load(Ordering::Acquire) >= queued {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Waits at most `wait` for the installed sink's queue to empty (before the process exits); a
/// stuck stderr costs `wait`, never more. Returns whether everything was written or dropped.
pub fn flush(wait: Duration) -> bool {
    INSTALLED.get().is_none_or(|s| s.flush(wait))
}

/// Queues `text` as written (no log formatting) on the installed sink, without waiting; false
/// when no sink is installed yet (then the caller may write to stderr directly: nothing else does).
pub fn emit(text: &str) -> bool {
    match INSTALLED.get() {
        Some(sink) => {
            sink.send(text.as_bytes().to_vec());
            true
        }
        None => false,
    }
}

/// One event's bytes, collected by tracing-subscriber and queued when dropped.
#[derive(Debug)]
pub struct LineWriter {
    sink: Sink,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.len() < MAX_LINE_BYTES {
            self.buf.extend_from_slice(buf);
        }
        // Always "written": a failing sink must never reach tracing's error path.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sink: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Writes `text` to stdout or stderr directly (the short-lived `--check-config`, `--version` and
/// error paths, before or without the sink); never panics, returns the write's result.
pub fn write_direct(mut out: impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe(2) just opened both descriptors and nothing else owns them.
        unsafe {
            use std::os::fd::FromRawFd as _;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        }
    }

    fn log(sink: &Sink, text: &str) {
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(sink);
        w.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_whole_and_in_order() {
        let (mut read, write) = pipe();
        let sink = Sink::to(Some(write));
        log(&sink, "one\n");
        log(&sink, "two\n");
        assert!(sink.flush(Duration::from_secs(5)));
        drop(sink);
        let mut got = vec![0; 8];
        read.read_exact(&mut got).unwrap();
        assert_eq!(got, b"one\ntwo\n");
    }

    #[test]
    fn a_stuck_reader_drops_and_counts_lines_without_blocking() {
        let (_read, write) = pipe();
        let sink = Sink::to(Some(write));
        let before = dropped();
        let line = "x".repeat(1000) + "\n";
        // A pipe holds 64 KiB and the queue 1,024 lines: the rest is dropped, never waited on
        // (a blocking send would hang this test).
        for _ in 0..(QUEUE_LINES * 3) {
            log(&sink, &line);
        }
        assert!(dropped() - before >= QUEUE_LINES as u64, "{}", dropped());
        assert!(!sink.flush(Duration::from_millis(50)));
    }

    #[test]
    fn a_gone_reader_counts_every_line_and_never_panics() {
        let (read, write) = pipe();
        drop(read);
        let sink = Sink::to(Some(write));
        let before = dropped();
        log(&sink, "lost\n");
        assert!(sink.flush(Duration::from_secs(5)));
        assert!(dropped() > before);
    }

    #[test]
    fn long_lines_are_cut_and_still_end_a_line() {
        let (mut read, write) = pipe();
        let sink = Sink::to(Some(write));
        log(&sink, &"y".repeat(MAX_LINE_BYTES * 2));
        assert!(sink.flush(Duration::from_secs(5)));
        drop(sink);
        let mut got = vec![0; MAX_LINE_BYTES];
        read.read_exact(&mut got).unwrap();
        assert_eq!(got.last(), Some(&b'\n'));
    }
}
