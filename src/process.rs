//! This process's own CPU time, memory, threads and open files, read from /proc
//! (Linux), for `/api/process`: the load generator reports server cost from it.

use serde::{Deserialize, Serialize};

/// One reading of the process's resource use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time since start, seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    /// Tasks alive on the async runtime (when read from inside it): a leak shows here.
    #[serde(default)]
    pub tasks: u64,
}

/// Clock ticks per second of /proc/*/stat times (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads /proc/self; fields that cannot be read stay 0.
pub fn read_self() -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are the 14th
        // and 15th fields overall, the 12th and 13th after it.
        if let Some((_, after)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            stats.cpu_seconds = (ticks(11) + ticks(12)) / TICKS_PER_SECOND;
            stats.threads = ticks(17) as u64;
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if let Some(kb) = line.strip_prefix("VmRSS:") {
                let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                stats.rss_bytes = kb * 1024;
            }
        }
    }
    stats.open_fds = open_fds();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        stats.tasks = runtime.metrics().num_alive_tasks() as u64;
    }
    stats
}

/// Entries of /proc/self/fd, counted with readdir(3): `std::fs::read_dir` allocates a
/// name per entry, and the load generator polls `/api/process` once a second.
fn open_fds() -> u64 {
    // SAFETY: a NUL-terminated path; the stream is read until readdir's end and closed
    // once, and no entry is used beyond the call that returned it.
    unsafe {
        let dir = libc::opendir(c"/proc/self/fd".as_ptr());
        if dir.is_null() {
            return 0;
        }
        let mut entries = 0u64;
        while !libc::readdir(dir).is_null() {
            entries += 1;
        }
        libc::closedir(dir);
        // Less "." and "..".
        entries.saturating_sub(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_something_plausible() {
        let stats = read_self();
        assert!(stats.rss_bytes > 1_000_000);
        assert!(stats.threads >= 1);
        assert!(stats.open_fds >= 3);
    }

    #[test]
    fn open_files_count_as_the_fd_directory_lists_them() {
        let listed = || std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        let (before, listed_before) = (open_fds(), listed());
        let files: Vec<_> = (0..8).map(|_| std::fs::File::open("/proc/self/stat").unwrap()).collect();
        let (after, listed_after) = (open_fds(), listed());
        // Other tests open files meanwhile: within a few of the listing, 8 more.
        assert!(before.abs_diff(listed_before) <= 2 && after.abs_diff(listed_after) <= 2);
        assert!(after >= before + 8 - 2, "{before} → {after} with 8 more open");
        drop(files);
    }
}
