//! What the server learns of the machine it runs on: memory (the cgroup's limit when there is
//! one), the open-files limit, free disk space.

use std::path::Path;

/// Memory this process may use: the machine's, or its cgroup's limit when lower.
pub(crate) fn memory_bytes() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    let cgroup = cgroup_limit();
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`; none when unlimited.
fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .find_map(|text| text.trim().parse::<u64>().ok())
    // v1 says "unlimited" with a huge number.
    .filter(|&n| n < 1 << 60)
}

/// Raises the soft limit of open files to the hard one and returns the limit now in force:
/// every connection is a file, and with the usual soft limit of 1024 a flood of idle
/// connections left `accept` failing, `/healthz` included.
pub(crate) fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if limit.current == limit.maximum {
        return current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(limit = ?limit.maximum, "raised the open-files limit");
            limit.maximum.unwrap_or(u64::MAX)
        }
        Err(e) => {
            tracing::warn!("could not raise the open-files limit: {e}");
            current
        }
    }
}

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
pub(crate) fn free_disk_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_from_meminfo() {
        let text = "MemTotal:        8048204 kB\nMemFree:          123 kB\n";
        assert_eq!(mem_total(text), Some(8_048_204 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}
