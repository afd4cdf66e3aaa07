//! The `[clients]` section: whether the allocator-report socket listens, where, who may connect
//! (the socket file's mode and group) and how a connecting process is identified.
//!
//! Validated completely before anything starts (exit 2 naming the key, the value and why); with
//! `enabled = "auto"` (the default) a socket directory that does not exist turns the listener off
//! with one log line, so a host without the directory changes nothing.

use std::ffi::CString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::input::ConfigError;
use crate::source::kubernetes::Enabled;

/// Where the socket is made by default (the DaemonSet mounts the directory into jobs' pods).
pub const DEFAULT_SOCKET: &str = "/run/vram-exporter/clients.sock";

/// The `[clients]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClients {
    /// "auto" (default): listen when the socket's directory exists; true: it must; false: off.
    pub enabled: Enabled,
    /// The unix socket jobs connect to.
    pub socket: String,
    /// The socket file's permission bits, in octal ("0660"): who may connect.
    pub mode: String,
    /// The socket file's group (a name or a number); empty: the exporter's own group.
    pub group: String,
    /// How a report's process is identified: "auto" (the kernel's peer credentials when the
    /// peer's pid is visible here, else the report's own pid and start time matched in the proc
    /// root), "peer" (the kernel's only; others are refused) or "claimed" (the report's only).
    pub identity: String,
}

impl Default for RawClients {
    fn default() -> Self {
        RawClients {
            enabled: Enabled::Text("auto".into()),
            socket: DEFAULT_SOCKET.into(),
            mode: "0660".into(),
            group: String::new(),
            identity: "auto".into(),
        }
    }
}

/// How a connection's process is told (see `identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Auto,
    Peer,
    Claimed,
}

/// The validated section; `socket` None: no listener.
#[derive(Debug, Clone, Default)]
pub struct ClientsConfig {
    pub socket: Option<SocketConfig>,
    /// Why the listener is off, logged once at start.
    pub off: Option<String>,
}

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub path: PathBuf,
    pub mode: u32,
    pub group: Option<u32>,
    pub identity: IdentityMode,
    /// Where `/proc/<pid>/status` (NSpid) and `stat` are read for claimed identities: the
    /// `[kubernetes]` section's `proc_root`.
    pub proc_root: PathBuf,
    /// `enabled = true`: a socket that cannot be made stops the exporter; with "auto" the
    /// exporter logs why and runs without it.
    pub required: bool,
}

impl RawClients {
    /// Checks the keys; `proc_root` is the `[kubernetes]` section's (the host's /proc as mounted).
    pub fn validate(&self, proc_root: &str) -> Result<ClientsConfig, ConfigError> {
        let required = match &self.enabled {
            Enabled::Bool(false) => return Ok(ClientsConfig::default()),
            Enabled::Bool(true) => true,
            Enabled::Text(t) => match t.trim() {
                "auto" => false,
                "true" => true,
                "false" => return Ok(ClientsConfig::default()),
                _ => {
                    return Err(ConfigError::invalid(
                        "clients.enabled",
                        t,
                        "must be \"auto\", true or false",
                    ))
                }
            },
        };
        let path = PathBuf::from(&self.socket);
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(ConfigError::invalid(
                "clients.socket",
                &self.socket,
                "must be an absolute path to a file",
            ));
        }
        // sun_path holds 108 bytes with its terminating NUL.
        if self.socket.len() > 107 {
            return Err(ConfigError::invalid(
                "clients.socket",
                &self.socket,
                "is longer than a unix socket path may be (107 bytes)",
            ));
        }
        let mode = u32::from_str_radix(self.mode.trim().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "clients.mode",
                    &self.mode,
                    "must be octal permission bits like \"0660\"",
                )
            })?;
        if mode & 0o600 != 0o600 {
            return Err(ConfigError::invalid(
                "clients.mode",
                &self.mode,
                "must let the exporter's own user read and write (0600 at least)",
            ));
        }
        let group = match self.group.trim() {
            "" => None,
            g => Some(resolve_group(g).ok_or_else(|| {
                ConfigError::invalid("clients.group", &self.group, "is not a known group")
            })?),
        };
        let identity = match self.identity.trim() {
            "auto" => IdentityMode::Auto,
            "peer" => IdentityMode::Peer,
            "claimed" => IdentityMode::Claimed,
            _ => {
                return Err(ConfigError::invalid(
                    "clients.identity",
                    &self.identity,
                    "must be \"auto\", \"peer\" or \"claimed\"",
                ))
            }
        };
        let dir = path.parent().unwrap_or(&path);
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ConfigError::invalid(
                    "clients.socket",
                    &self.socket,
                    "its parent is not a directory",
                ))
            }
            Err(e) if required => {
                return Err(ConfigError::invalid(
                    "clients.socket",
                    &self.socket,
                    format!("its directory cannot be used: {e}"),
                ))
            }
            Err(e) => {
                return Ok(ClientsConfig {
                    socket: None,
                    off: Some(format!(
                        "allocator reports off: the directory of clients.socket {} cannot be used ({e})",
                        self.socket
                    )),
                })
            }
        }
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_socket() {
                return Err(ConfigError::invalid(
                    "clients.socket",
                    &self.socket,
                    "exists and is not a socket (it is never removed)",
                ));
            }
        }
        Ok(ClientsConfig {
            socket: Some(SocketConfig {
                path,
                mode,
                group,
                identity,
                proc_root: PathBuf::from(proc_root),
                required,
            }),
            off: None,
        })
    }
}

/// A group's id from its number or name (the system's group database).
fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let name = CString::new(group).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `grp`'s strings
    // (only `gr_gid` is read).
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawClients)) -> RawClients {
        let mut r = RawClients::default();
        f(&mut r);
        r
    }

    #[test]
    fn auto_without_the_directory_is_off_and_true_is_refused() {
        let r = raw(|r| r.socket = "/nonexistent-vram/clients.sock".into());
        let c = r.validate("/proc").unwrap();
        assert!(c.socket.is_none() && c.off.is_some());
        let r = raw(|r| {
            r.socket = "/nonexistent-vram/clients.sock".into();
            r.enabled = Enabled::Bool(true);
        });
        let e = r.validate("/proc").unwrap_err().to_string();
        assert!(e.starts_with("clients.socket: invalid value"), "{e}");
    }

    #[test]
    fn refusals_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock").display().to_string();
        type Edit = fn(&mut RawClients);
        let cases: [(&str, Edit); 5] = [
            ("clients.mode", |r| r.mode = "999".into()),
            ("clients.mode", |r| r.mode = "0066".into()),
            ("clients.group", |r| r.group = "no-such-group-vram".into()),
            ("clients.identity", |r| r.identity = "trust-me".into()),
            ("clients.enabled", |r| {
                r.enabled = Enabled::Text("maybe".into())
            }),
        ];
        for (key, f) in cases {
            let mut r = raw(|r| r.socket = sock.clone());
            f(&mut r);
            let e = r.validate("/proc").unwrap_err().to_string();
            assert!(e.starts_with(&format!("{key}: invalid value")), "{e}");
        }
        let r = raw(|r| r.socket = "relative.sock".into());
        assert!(r.validate("/proc").is_err());
        let r = raw(|r| {
            r.socket = sock.clone();
            r.group = "0".into();
        });
        assert_eq!(r.validate("/proc").unwrap().socket.unwrap().group, Some(0));
    }
}
