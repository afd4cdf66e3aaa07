//! Which process a connection speaks for, in the pid namespace NVML lists pids in.
//!
//! Two ways, and the trust each gives (docs/client-protocol.md, "Identity"):
//! - **peer**: the kernel's credentials of the connecting socket (`SO_PEERCRED`), when the peer's
//!   pid is visible in the exporter's namespace (host PID namespace, or the same container). The
//!   kernel vouches for the pid: a process can only speak for itself. Its report's own pid must
//!   be that pid or that process's pid in its own namespace, and its start time must match.
//! - **claimed**: when the peer's pid is not visible (a DaemonSet without `hostPID`: the kernel
//!   reports pid 0), the report's own pid and start time are looked up in `<proc_root>/*/status`
//!   (`NSpid`, innermost) and `stat`: exactly one process must match. Anyone allowed to connect
//!   (the socket's mode and group) could claim another process by knowing its namespaced pid and
//!   start time; such a claim can only colour that process's allocator figures, never widen what
//!   cleanup may touch, and counts only for a pid NVML lists on the reported GPU.
//!
//! Resolution reads files; the listener runs it on the blocking pool, once per connection.

use std::path::Path;

use super::config::IdentityMode;
use crate::source::procfs;

/// A resolved identity: the pid as NVML lists it and the process's start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    pub start_ticks: u64,
    /// The pid and start time the client claims: later messages must repeat them.
    pub claimed_pid: u32,
    pub claimed_start: u64,
}

/// The most `<proc_root>` entries scanned for one claimed identity.
const MAX_SCAN: usize = 1 << 20;

/// Resolves a connection's identity from the kernel's peer pid (`peer`, 0 or negative when not
/// visible) and the first message's claimed pid and start time.
pub fn resolve(
    mode: IdentityMode,
    proc_root: &Path,
    peer: Option<i32>,
    claimed_pid: u32,
    claimed_start: u64,
) -> Result<Identity, &'static str> {
    let visible = peer.and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0);
    match (mode, visible) {
        (IdentityMode::Peer | IdentityMode::Auto, Some(pid)) => {
            peer_identity(pid, claimed_pid, claimed_start)
        }
        (IdentityMode::Peer, None) => Err("the peer's pid is not visible (identity = \"peer\")"),
        (IdentityMode::Claimed | IdentityMode::Auto, _) => {
            claimed_identity(proc_root, claimed_pid, claimed_start)
        }
    }
}

fn peer_identity(pid: u32, claimed_pid: u32, claimed_start: u64) -> Result<Identity, &'static str> {
    let own = Path::new("/proc");
    let stat = procfs::proc_stat_at(own, pid).ok_or("the peer has exited")?;
    let inner = procfs::innermost_pid_at(own, pid).unwrap_or(pid);
    if claimed_pid != pid && claimed_pid != inner {
        return Err("the report speaks for another pid than the peer's");
    }
    if claimed_start != stat.start_ticks {
        return Err("the report's start time is not the peer's");
    }
    Ok(Identity {
        pid,
        start_ticks: stat.start_ticks,
        claimed_pid,
        claimed_start,
    })
}

fn claimed_identity(
    root: &Path,
    claimed_pid: u32,
    claimed_start: u64,
) -> Result<Identity, &'static str> {
    let entries = std::fs::read_dir(root).map_err(|_| "the proc root cannot be read")?;
    let mut found = None;
    for entry in entries.take(MAX_SCAN).flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if procfs::innermost_pid_at(root, pid) != Some(claimed_pid) {
            continue;
        }
        let Some(stat) = procfs::proc_stat_at(root, pid) else {
            continue;
        };
        if stat.start_ticks != claimed_start || matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        if found.is_some() {
            return Err("more than one process matches the claimed pid and start time");
        }
        found = Some(Identity {
            pid,
            start_ticks: stat.start_ticks,
            claimed_pid,
            claimed_start,
        });
    }
    found.ok_or("no process matches the claimed pid and start time")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> (u32, u64) {
        let pid = std::process::id();
        (pid, procfs::proc_stat(pid).unwrap().start_ticks)
    }

    #[test]
    fn a_peer_speaks_only_for_itself() {
        let (pid, start) = own();
        let peer = Some(pid as i32);
        let id = resolve(IdentityMode::Auto, Path::new("/proc"), peer, pid, start).unwrap();
        assert_eq!((id.pid, id.start_ticks), (pid, start));
        for (p, s) in [(1, start), (pid, start + 1)] {
            assert!(resolve(IdentityMode::Peer, Path::new("/proc"), peer, p, s).is_err());
        }
        assert!(resolve(IdentityMode::Peer, Path::new("/proc"), Some(0), pid, start).is_err());
    }

    #[test]
    fn a_claim_is_matched_by_nspid_and_start_time_in_the_proc_root() {
        let root = tempfile::tempdir().unwrap();
        let fake = |host: u32, ns: &str, start: u64| {
            let d = root.path().join(host.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("status"), format!("Name:\tx\nNSpid:\t{ns}\n")).unwrap();
            let stat =
                format!("{host} (a) b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n");
            std::fs::write(d.join("stat"), stat).unwrap();
        };
        fake(4242, "4242\t7", 1000);
        fake(4343, "4343\t7", 2000);
        fake(4444, "4444", 1000);
        let r = |pid, start| resolve(IdentityMode::Claimed, root.path(), Some(99), pid, start);
        assert_eq!(r(7, 1000).unwrap().pid, 4242);
        assert_eq!(r(7, 2000).unwrap().pid, 4343);
        assert_eq!(r(4444, 1000).unwrap().pid, 4444);
        assert!(r(7, 3000).is_err());
        assert!(r(8, 1000).is_err());
        fake(4545, "4545\t7", 1000);
        assert!(r(7, 1000).is_err(), "ambiguous claims are refused");
    }
}
