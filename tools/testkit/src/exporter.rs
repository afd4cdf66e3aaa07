//! The one way tests, benchmarks and tools start the real `vram-exporter` binary: on nvml-sim, on a
//! free loopback port it picks itself (read back from its JSON "listening" log line), with its log
//! kept; stopped when dropped.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::Client;
use crate::process::{Running, Spawn};
use crate::wait::{Poll, Wait};

/// What to start and how.
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    args: Vec<OsString>,
    extra_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clean_env: bool,
    spawn: Spawn,
    start_timeout: Duration,
}

impl Launch {
    /// The exporter binary at `binary`, logging JSON at info level to stderr.
    pub fn new(binary: impl Into<PathBuf>) -> Launch {
        Launch {
            binary: binary.into(),
            args: Vec::new(),
            extra_args: Vec::new(),
            env: vec![("RUST_LOG".into(), "info".into())],
            clean_env: false,
            spawn: Spawn::default(),
            start_timeout: Duration::from_secs(30),
        }
    }

    /// NVML from `library` (nvml-sim, or a path to test a missing library), told the scenario
    /// through `NVML_SIM_SCENARIO`.
    pub fn sim_library(mut self, library: &Path, scenario: &Path) -> Launch {
        self.args.push("--nvml-library".into());
        self.args.push(library.into());
        self.env.push(("NVML_SIM_SCENARIO".into(), scenario.into()));
        self
    }

    /// `--simulate scenario`: the exporter finds nvml-sim itself.
    pub fn simulate(mut self, scenario: &Path) -> Launch {
        self.args.push("--simulate".into());
        self.args.push(scenario.into());
        self
    }

    /// `--config file`.
    pub fn config(mut self, file: &Path) -> Launch {
        self.args.push("--config".into());
        self.args.push(file.into());
        self
    }

    /// More flags, after the ones above.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Drops inherited `VRAM_EXPORTER_*` variables, so only this launch configures the exporter.
    pub fn clean_env(mut self) -> Launch {
        self.clean_env = true;
        self
    }

    /// How the process is kept (log file, lines kept, stop on drop).
    pub fn spawn(mut self, spawn: Spawn) -> Launch {
        self.spawn = spawn;
        self
    }

    /// How long to wait for the "listening" line (30 s unless set).
    pub fn start_timeout(mut self, timeout: Duration) -> Launch {
        self.start_timeout = timeout;
        self
    }

    /// Starts the exporter and waits until it listens.
    pub fn start(self) -> Result<Exporter, String> {
        let mut cmd = Command::new(&self.binary);
        if self.clean_env {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("VRAM_EXPORTER_") {
                    cmd.env_remove(&k);
                }
            }
        }
        cmd.args(&self.args)
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format",
                "json",
            ])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut process = Running::spawn("vram-exporter", cmd, &self.spawn)?;
        let listening = Wait::new("the exporter to listen", self.start_timeout)
            .every(Duration::ZERO) // wait_log itself waits up to 100 ms for a line
            .until(|| {
                if let Some(line) =
                    process.wait_log(|l| l.contains("\"listening\""), Duration::from_millis(100))
                {
                    return Poll::Ready(line);
                }
                match process.exited() {
                    Some(status) => {
                        // The reader threads may still hold the last lines: give them a moment.
                        std::thread::sleep(Duration::from_millis(100));
                        Poll::Failed(format!("it exited ({status})"))
                    }
                    None => Poll::Pending(String::new()),
                }
            })
            .map_err(|e| format!("{e}; its log:\n{}", process.log_tail(50)))?;
        let addr = address_of(&listening).ok_or_else(|| format!("no address in {listening}"))?;
        Ok(Exporter { process, addr })
    }
}

/// The `"address":"ip:port"` field of a JSON log line.
fn address_of(line: &str) -> Option<SocketAddr> {
    line.split("\"address\":\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

/// A running exporter; the process (log, signals, stop) through `Deref`.
pub struct Exporter {
    pub process: Running,
    pub addr: SocketAddr,
}

impl Exporter {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Polls `path` until it answers 200 with a body for which `ready` holds; on timeout or exit an
    /// error with the last body and the log.
    pub fn wait_for(
        &mut self,
        path: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        wait_for(&mut self.process, self.addr, path, timeout, ready)
    }
}

/// Polls `path` of a started server until it answers 200 with a body for which `ready` holds.
pub fn wait_for(
    process: &mut Running,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    ready: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let mut client = Client::new(addr).timeout(Duration::from_secs(10));
    let mut body = Vec::new();
    let name = process.name.clone();
    Wait::new(format!("{name} to be ready on {path}"), timeout)
        .every(Duration::from_millis(100))
        .until(|| {
            if let Some(status) = process.exited() {
                return Poll::Failed(format!("it exited ({status})"));
            }
            match client.get_into(path, &mut body) {
                Ok(200) if ready(&String::from_utf8_lossy(&body)) => Poll::Ready(()),
                _ => Poll::Pending(String::from_utf8_lossy(&body).into_owned()),
            }
        })
        .map_err(|e| format!("{e}\nlog:\n{}", process.log_tail(15)))
}

impl Deref for Exporter {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.process
    }
}

impl DerefMut for Exporter {
    fn deref_mut(&mut self) -> &mut Running {
        &mut self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = r#"{"ts":"x","level":"info","msg":"listening","address":"127.0.0.1:40123"}"#;
        assert_eq!(address_of(line), Some(([127, 0, 0, 1], 40123).into()));
        assert_eq!(address_of(r#"{"msg":"listening"}"#), None);
    }

    #[test]
    fn a_program_that_never_listens_is_reported_with_its_log() {
        let dir = std::env::temp_dir().join(format!("vram-testkit-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("refuses");
        std::fs::write(&script, "#!/bin/sh\necho \"refused: $*\" >&2\nexit 2\n").unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let err = match Launch::new(&script).args(["--extra"]).start() {
            Err(e) => e,
            Ok(_) => panic!("the script cannot listen"),
        };
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("exited"), "{err}");
        assert!(
            err.contains("refused: --web.listen-address 127.0.0.1:0 --log.format json --extra"),
            "{err}"
        );
    }
}
