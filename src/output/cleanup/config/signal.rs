//! Which signals a `signal` cleanup action may send, and how a written name becomes one.

use crate::base::input::ConfigError;

/// A signal by number and by the name the user wrote (normalised to `SIGXXX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub number: i32,
    pub name: &'static str,
}

/// Signals a `signal` action may send. Terminating ones need `allow_kill`.
const SIGNALS: &[(&str, i32, bool)] = &[
    ("SIGUSR1", libc::SIGUSR1, false),
    ("SIGUSR2", libc::SIGUSR2, false),
    ("SIGHUP", libc::SIGHUP, false),
    ("SIGWINCH", libc::SIGWINCH, false),
    ("SIGCONT", libc::SIGCONT, false),
    ("SIGALRM", libc::SIGALRM, false),
    ("SIGINT", libc::SIGINT, true),
    ("SIGTERM", libc::SIGTERM, true),
    ("SIGQUIT", libc::SIGQUIT, true),
];

/// Whether `signal` ends a process by intent (so sending it needs `allow_kill`).
pub(super) fn is_terminating(signal: Signal) -> bool {
    SIGNALS
        .iter()
        .any(|(n, _, terminating)| *n == signal.name && *terminating)
}

/// Parses "SIGUSR1", "USR1" or "sigusr1"; refuses what a signal action must never send.
pub fn parse_signal(key: &str, written: &str) -> Result<Signal, ConfigError> {
    let upper = written.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match name.as_str() {
        "SIGKILL" => {
            return Err(ConfigError::invalid(
                key,
                written,
                "SIGKILL cannot be handled, so it frees nothing gracefully; use a kill action \
                 (SIGTERM, then SIGKILL after grace; needs cleanup.allow_kill = true)",
            ))
        }
        "SIGSTOP" | "SIGTSTP" => {
            return Err(ConfigError::invalid(
                key,
                written,
                "stopping a process freezes it with its memory still allocated",
            ))
        }
        _ => {}
    }
    SIGNALS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, number, _)| Signal {
            number: *number,
            name: n,
        })
        .ok_or_else(|| {
            let names: Vec<&str> = SIGNALS.iter().map(|(n, _, _)| *n).collect();
            ConfigError::invalid(
                key,
                written,
                format!(
                    "is not a signal a signal action can send; use one of {}",
                    names.join(", ")
                ),
            )
        })
}
