//! An agent's cgroup limits and usage, read from the cgroup filesystem of this machine
//! (the daemon's socket is local, so its cgroups are too): memory, CPU quota and pids,
//! for cgroup v2 (one unified tree) and v1 (one tree per controller). What cannot be read
//! is `None`; nothing here fails.

use std::path::Path;

/// Where the cgroup filesystem is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One cgroup's limits and usage; `None` where the file is missing or says "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupUsage {
    pub v2: bool,
    pub memory_bytes: Option<u64>,
    pub memory_max: Option<u64>,
    /// CPU quota per period, in µs.
    pub cpu_quota: Option<(u64, u64)>,
    pub pids: Option<u64>,
    pub pids_max: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A limit file's value: a number, or `None` for `max` (v2) and v1's "unlimited" (a value
/// near `i64::MAX`, page-rounded).
pub fn limit(text: &str) -> Option<u64> {
    let v: u64 = text.parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

/// v2's `cpu.max` (`"<quota|max> <period>"`).
pub fn cpu_max(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?.parse().ok()?;
    let period = parts.next()?.parse().ok()?;
    Some((quota, period))
}

/// Reads the cgroup at `rel` (as the daemon reports it, `runloop/<agent>`) under `root`.
/// `None` when no controller has it.
pub fn usage(root: &Path, rel: &str) -> Option<CgroupUsage> {
    let rel = rel.trim_start_matches('/');
    let unified = root.join(rel);
    if unified.join("cgroup.controllers").is_file() {
        let f = |name: &str| read(&unified.join(name));
        return Some(CgroupUsage {
            v2: true,
            memory_bytes: f("memory.current").and_then(|t| t.parse().ok()),
            memory_max: f("memory.max").and_then(|t| limit(&t)),
            cpu_quota: f("cpu.max").and_then(|t| cpu_max(&t)),
            pids: f("pids.current").and_then(|t| t.parse().ok()),
            pids_max: f("pids.max").and_then(|t| limit(&t)),
        });
    }
    let v1 = |controller: &str, name: &str| read(&root.join(controller).join(rel).join(name));
    let out = CgroupUsage {
        v2: false,
        memory_bytes: v1("memory", "memory.usage_in_bytes").and_then(|t| t.parse().ok()),
        memory_max: v1("memory", "memory.limit_in_bytes").and_then(|t| limit(&t)),
        cpu_quota: v1("cpu", "cpu.cfs_quota_us")
            .and_then(|q| q.parse::<i64>().ok())
            .and_then(|q| u64::try_from(q).ok())
            .zip(v1("cpu", "cpu.cfs_period_us").and_then(|p| p.parse().ok())),
        pids: v1("pids", "pids.current").and_then(|t| t.parse().ok()),
        pids_max: v1("pids", "pids.max").and_then(|t| limit(&t)),
    };
    (out != CgroupUsage::default()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v2_reads_one_tree_and_max_is_no_limit() {
        let root = tempfile::tempdir().unwrap();
        let g = root.path().join("runloop/writer");
        write(&g, "cgroup.controllers", "cpu memory pids\n");
        write(&g, "memory.current", "18874368\n");
        write(&g, "memory.max", "268435456\n");
        write(&g, "cpu.max", "50000 100000\n");
        write(&g, "pids.current", "3\n");
        write(&g, "pids.max", "max\n");
        let u = usage(root.path(), "runloop/writer").unwrap();
        assert_eq!(
            u,
            CgroupUsage {
                v2: true,
                memory_bytes: Some(18_874_368),
                memory_max: Some(268_435_456),
                cpu_quota: Some((50_000, 100_000)),
                pids: Some(3),
                pids_max: None,
            }
        );
    }

    #[test]
    fn v1_reads_each_controller_and_minus_one_is_no_quota() {
        let root = tempfile::tempdir().unwrap();
        write(
            &root.path().join("memory/runloop/w"),
            "memory.usage_in_bytes",
            "1024",
        );
        write(
            &root.path().join("memory/runloop/w"),
            "memory.limit_in_bytes",
            "9223372036854771712",
        );
        write(&root.path().join("cpu/runloop/w"), "cpu.cfs_quota_us", "-1");
        write(
            &root.path().join("cpu/runloop/w"),
            "cpu.cfs_period_us",
            "100000",
        );
        let u = usage(root.path(), "/runloop/w").unwrap();
        assert!(!u.v2);
        assert_eq!(u.memory_bytes, Some(1024));
        assert_eq!(u.memory_max, None, "v1's unlimited");
        assert_eq!(u.cpu_quota, None);
        assert_eq!(usage(root.path(), "runloop/gone"), None);
    }
}
