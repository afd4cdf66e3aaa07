//! Readings from /proc: a process's resident memory and CPU time, and the machine's description.

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

/// nproc, CPU model, memory and kernel of this machine, for the report.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        mem_gib: mem_kib as f64 / (1024.0 * 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// The 1-minute load average, to show how busy the machine was around a run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Sends a signal to a process we started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid of a child we own; errors (already gone) are ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Where a process's resident memory lies, in KiB, by kind of mapping (from /proc/<pid>/smaps):
/// private pages, then file-backed pages of the program (executable, or the Python interpreter
/// library), the NVML library, the C runtime, and everything else.
pub fn breakdown(pid: u32, nvml_library: &std::path::Path) -> Vec<(String, u64)> {
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
            } else if std::path::Path::new(path) == nvml_library {
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
