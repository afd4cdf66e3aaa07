//! Readings from /proc about a process: resident memory (total, private, by mapping) and CPU time,
//! and signalling it; the benchmarks and the soak tool measure the exporter with these.

use std::path::Path;
use std::time::Duration;

/// Resident memory of a process, in KiB, from /proc/<pid>/status.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: everything resident, shared library and executable pages included.
    pub rss_kib: u64,
    /// RssAnon: private (heap, stacks, written data) pages only.
    pub anon_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        anon_kib: field("RssAnon:")?,
    })
}

/// The median of `n` memory readings taken `gap` apart (RSS moves a little between polls).
pub fn steady_memory(pid: u32, n: usize, gap: Duration) -> Option<Memory> {
    let mut rss = Vec::with_capacity(n);
    let mut anon = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(gap);
        }
        let m = memory(pid)?;
        rss.push(m.rss_kib);
        anon.push(m.anon_kib);
    }
    rss.sort_unstable();
    anon.sort_unstable();
    Some(Memory {
        rss_kib: rss[n / 2],
        anon_kib: anon[n / 2],
    })
}

/// User + system CPU time of a process (all its threads, living and exited), in seconds, from
/// fields 14 and 15 of /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the command: state is field 3, so utime (14) is the 12th here and stime (15) the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// On-CPU time of a process's living threads, in seconds, from /proc/<pid>/task/*/schedstat
/// (nanoseconds; threads that exited are not counted, so use it over windows without thread churn).
pub fn cpu_seconds_precise(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 / 1e9)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The resolution of `cpu_seconds`, in seconds.
pub fn cpu_resolution() -> f64 {
    1.0 / clock_ticks()
}

/// Sends a signal to a process this program started (errors, such as it being gone, are ignored).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid of a child we own; errors (already gone) are ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Where a process's resident memory lies, in KiB, by kind of mapping (from /proc/<pid>/smaps):
/// private pages, then file-backed pages of the program (executable, or the Python interpreter
/// library), the NVML library, the C runtime, and everything else.
pub fn breakdown(pid: u32, nvml_library: &Path) -> Vec<(String, u64)> {
    const PRIVATE: &str = "private: heap, stacks, written data (RssAnon)";
    const PROGRAM: &str = "file: the program (executable; libpython for Python)";
    const NVML: &str = "file: the NVML library (libnvml_sim.so)";
    const CRT: &str = "file: C runtime (libc, libm, libgcc_s, ld-linux)";
    const OTHER: &str = "file: other libraries and mapped files";
    let order = [PRIVATE, PROGRAM, NVML, CRT, OTHER];
    let mut sums = [0u64; 5];
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut current = OTHER;
    let mut rss = 0u64;
    let flush = |kind: &str, rss: u64, anon: u64, sums: &mut [u64; 5]| {
        let file = rss.saturating_sub(anon);
        sums[0] += anon;
        if let Some(i) = order.iter().position(|k| *k == kind) {
            sums[i] += file;
        }
    };
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            let base = path.rsplit('/').next().unwrap_or("");
            current = if path.is_empty() || path.starts_with('[') {
                PRIVATE
            } else if exe
                .as_deref()
                .map(|e| e.as_os_str() == path)
                .unwrap_or(false)
                || base.starts_with("libpython")
            {
                PROGRAM
            } else if Path::new(path) == nvml_library {
                NVML
            } else if [
                "libc.so",
                "libm.so",
                "libgcc_s.so",
                "ld-linux",
                "libpthread",
                "libdl.so",
                "librt.so",
            ]
            .iter()
            .any(|p| base.starts_with(p))
            {
                CRT
            } else {
                OTHER
            };
        } else if first == "Rss:" {
            rss = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Anonymous:" {
            let anon = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            flush(current, rss, anon, &mut sums);
            rss = 0;
        }
    }
    order.iter().map(|k| k.to_string()).zip(sums).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let pid = std::process::id();
        let m = memory(pid).expect("own /proc/<pid>/status");
        assert!(
            m.rss_kib > 0 && m.anon_kib > 0 && m.anon_kib <= m.rss_kib,
            "{m:?}"
        );
        let s = steady_memory(pid, 3, Duration::from_millis(1)).unwrap();
        assert!(s.rss_kib > 0);
        // Burn a little CPU so both clocks have something to show.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds_precise(pid).unwrap() > 0.0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let parts = breakdown(pid, Path::new("/nonexistent/libnvml_sim.so"));
        assert_eq!(parts.len(), 5);
        assert!(parts[0].1 > 0, "private pages: {parts:?}");
        assert!(memory(u32::MAX).is_none());
    }
}
