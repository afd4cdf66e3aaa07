//! A child process this program started and owns: its output read line by line by background
//! threads (kept, counted for panics, optionally copied to a log file), a bounded stop, and a kill
//! when dropped, so no test or tool leaves an exporter running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::procfs::signal;

/// How a process is started and kept.
#[derive(Debug, Clone, Default)]
pub struct Spawn {
    /// A file that receives a copy of every output line.
    pub log_file: Option<PathBuf>,
    /// Keep only the newest this many lines (all when `None`); long runs bound their memory.
    pub keep_lines: Option<usize>,
    /// SIGTERM the child when this program dies, even if killed.
    pub die_with_parent: bool,
    /// On drop: SIGCONT and SIGTERM first, then SIGKILL after 5 s (instead of SIGKILL at once).
    pub stop_gently: bool,
}

#[derive(Default)]
struct Lines {
    kept: VecDeque<String>,
    panics: u64,
}

#[derive(Default)]
struct Log {
    lines: Mutex<Lines>,
    grew: Condvar,
}

/// A running child process.
pub struct Running {
    pub name: String,
    child: Child,
    log: Arc<Log>,
    stop_gently: bool,
}

impl Running {
    /// Starts `cmd` with stdin closed and stdout and stderr captured line by line.
    pub fn spawn(name: &str, mut cmd: Command, how: &Spawn) -> Result<Running, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if how.die_with_parent {
            // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
            unsafe {
                use std::os::unix::process::CommandExt as _;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let file = match &how.log_file {
            Some(p) => Some(Arc::new(Mutex::new(
                std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
            ))),
            None => None,
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let log = Arc::new(Log::default());
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let (log, file, keep) = (log.clone(), file.clone(), how.keep_lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(f) = &file {
                        let _ = writeln!(f.lock().unwrap(), "{line}");
                    }
                    let mut l = log.lines.lock().unwrap();
                    if line.contains("panicked") {
                        l.panics += 1;
                    }
                    l.kept.push_back(line);
                    if keep.is_some_and(|k| l.kept.len() > k) {
                        l.kept.pop_front();
                    }
                    drop(l);
                    log.grew.notify_all();
                }
            });
        }
        Ok(Running {
            name: name.to_string(),
            child,
            log,
            stop_gently: how.stop_gently,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for an output line matching `pred` (lines already read count).
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.kept.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Every output line read so far (the newest ones only, with `keep_lines`).
    pub fn log(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap()
            .kept
            .iter()
            .cloned()
            .collect()
    }

    /// The last `n` output lines, joined.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log.lines.lock().unwrap();
        let skip = lines.kept.len().saturating_sub(n);
        let tail: Vec<&str> = lines.kept.iter().skip(skip).map(String::as_str).collect();
        tail.join("\n")
    }

    /// Output lines that reported a panic.
    pub fn panics(&self) -> u64 {
        self.log.lines.lock().unwrap().panics
    }

    /// SIGTERM, then waits up to `timeout` for the exit; SIGKILL and an error when it does not end.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(s) = self.exited() {
            return Ok(s);
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "{} did not stop on SIGTERM within {timeout:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stop_gently && self.exited().is_none() {
            signal(self.pid(), libc::SIGCONT);
            let _ = self.terminate(Duration::from_secs(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn output_lines_are_kept_counted_and_waited_for() {
        let dir = std::env::temp_dir().join(format!("vram-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("out.log");
        let how = Spawn {
            log_file: Some(file.clone()),
            keep_lines: Some(3),
            ..Spawn::default()
        };
        let mut p = Running::spawn(
            "sh",
            sh("echo one; echo 'thread main panicked' >&2; echo three; echo four; sleep 0.2; echo five; sleep 30"),
            &how,
        )
        .unwrap();
        assert_eq!(
            p.wait_log(|l| l == "five", Duration::from_secs(10))
                .as_deref(),
            Some("five")
        );
        assert_eq!(p.panics(), 1);
        assert_eq!(p.log().len(), 3, "only the newest 3 kept: {:?}", p.log());
        assert_eq!(p.log_tail(1), "five");
        assert!(p
            .wait_log(|l| l == "never", Duration::from_millis(100))
            .is_none());
        let status = p.terminate(Duration::from_secs(5)).unwrap();
        assert!(!status.success(), "killed by SIGTERM: {status}");
        let copied = std::fs::read_to_string(&file).unwrap();
        assert_eq!(copied.lines().count(), 5, "{copied}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_after_the_timeout() {
        let mut p = Running::spawn(
            "sh",
            sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"),
            &Spawn::default(),
        )
        .unwrap();
        assert!(p
            .wait_log(|l| l == "ready", Duration::from_secs(10))
            .is_some());
        let err = p.terminate(Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("did not stop"), "{err}");
        assert!(p.exited().is_some());
    }
}
