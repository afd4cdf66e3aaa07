//! What `/proc` says about a process: state and start time, shared by NVML sampling (process
//! identity across pid reuse) and cleanup (checking a target right before signalling it).

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Reads a process's state and start ticks; None if our `/proc` cannot see it.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of `/proc/<pid>/stat`. The name (field 2) may contain anything, spaces and
/// parentheses included, so the fields are read after the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_visible() {
        let s = proc_stat(std::process::id()).unwrap();
        assert!(s.start_ticks > 0 || s.state == 'R');
        assert!(proc_stat(u32::MAX).is_none());
    }

    #[test]
    fn names_with_parentheses_and_spaces() {
        let line =
            "42 (evil) name (x) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 98765);
        assert!(parse_stat("garbage").is_none());
    }
}
