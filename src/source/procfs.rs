//! What `/proc` says about a process: state, start time and name, shared by NVML sampling (process
//! identity across pid reuse) and cleanup (checking a target right before signalling it).
//!
//! Everything is read as bytes. A process chooses its own name (`prctl(PR_SET_NAME)`, its
//! executable's file name): any byte but NUL, `)`, spaces and newlines included. A name must
//! never make a process invisible, so nothing here requires UTF-8; names become text only for
//! display ([`display_name`]), never for finding or checking a process.

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// `/proc/<pid>/stat` is one line of at most a few hundred bytes; more is not a stat line.
const STAT_LIMIT: u64 = 4096;

/// Reads a process's state and start ticks; None if our `/proc` cannot see it.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&read_proc(pid, "stat", STAT_LIMIT)?)
}

/// The process's name (`/proc/<pid>/comm`, at most 15 bytes from the kernel), as display text.
pub fn proc_name(pid: u32) -> Option<String> {
    let comm = read_proc(pid, "comm", 256)?;
    // The kernel ends the file with one newline; anything before it belongs to the name.
    let name = comm.strip_suffix(b"\n").unwrap_or(&comm);
    Some(display_name(name))
}

/// Reads a process's state and start ticks under another proc root (the host's /proc as mounted).
pub fn proc_stat_at(root: &std::path::Path, pid: u32) -> Option<ProcStat> {
    parse_stat(&read_at(root, pid, "stat", STAT_LIMIT)?)
}

/// The process's pid in its own (innermost) PID namespace: the last `NSpid:` field of
/// `<root>/<pid>/status`; None when the file or the field cannot be read.
pub fn innermost_pid_at(root: &std::path::Path, pid: u32) -> Option<u32> {
    let status = read_at(root, pid, "status", 16 * 1024)?;
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"NSpid:"))?;
    let last = line
        .split(|b| b.is_ascii_whitespace())
        .rfind(|f| !f.is_empty())?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

fn read_proc(pid: u32, file: &str, limit: u64) -> Option<Vec<u8>> {
    read_at(std::path::Path::new("/proc"), pid, file, limit)
}

fn read_at(root: &std::path::Path, pid: u32, file: &str, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(root.join(pid.to_string()).join(file)).ok()?;
    let mut bytes = Vec::with_capacity(512);
    f.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Parses `/proc/<pid>/stat`. The name (field 2) may contain any byte but NUL — `)`, spaces,
/// newlines and invalid UTF-8 included — so the fields are read after the last `)`, which the
/// kernel always writes after the name.
fn parse_stat(bytes: &[u8]) -> Option<ProcStat> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let mut fields = bytes[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = char::from(*fields.next()?.first()?);
    let start_ticks = std::str::from_utf8(fields.nth(18)?).ok()?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// A process name as display text (metric label, JSON, logs): invalid UTF-8 replaced by U+FFFD,
/// control characters (newlines, tabs, escapes) dropped, at most 64 characters; "unknown" when
/// nothing printable is left.
pub fn display_name(name: &[u8]) -> String {
    let cleaned: String = String::from_utf8_lossy(name)
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if cleaned.trim().is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_visible() {
        let s = proc_stat(std::process::id()).unwrap();
        assert!(s.start_ticks > 0 || s.state == 'R');
        assert!(proc_stat(u32::MAX).is_none());
        assert!(proc_name(std::process::id()).is_some());
    }

    #[test]
    fn names_with_parentheses_spaces_newlines_and_invalid_utf8() {
        let line =
            "42 (evil) name (x) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let s = parse_stat(line.as_bytes()).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 98765);
        let hostile =
            b"42 (\xff) x\ny) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1000 10\n";
        assert_eq!(parse_stat(hostile).unwrap().start_ticks, 777);
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn display_names_are_printable_and_short() {
        assert_eq!(display_name(b"py\nthon"), "python");
        assert_eq!(display_name(b"\xff)"), "\u{fffd})");
        assert_eq!(display_name(b""), "unknown");
        assert_eq!(display_name(b"\n\t"), "unknown");
        assert_eq!(display_name(&[b'x'; 100]).len(), 64);
    }
}
