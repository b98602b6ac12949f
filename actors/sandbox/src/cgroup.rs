//! Per-agent cgroups: create under a Runloop parent, limit, read, remove.
//!
//! Works on cgroup v1 (separate `memory`, `cpu`, `cpuacct`, `pids` hierarchies, as on the
//! project's machines) and v2 (one unified tree, systemd laptops with delegation), through
//! cgroups-rs. Where neither is writable, [`detect`] says why and [`notice_once`] prints it
//! once; callers then run sandboxes without a cgroup and keep every other limit.
//!
//! Where the groups go ([`AgentBase`]): under the process's *own* cgroup, read from
//! `/proc/self/cgroup` ([`OwnCgroup`]), when it may write there — what `Delegate=yes`
//! hands a systemd service — and at the root of each hierarchy otherwise (own group `/`,
//! or not writable while the root is: a root kernel, as before). On v2 a group with a
//! process in it cannot enable controllers for its children ("no internal processes"), so
//! before its first agent group a process whose own group is not the root moves itself
//! into the leaf `<own>/supervisor` and enables `+memory +cpu +pids` in
//! `<own>/cgroup.subtree_control`. Details and the systemd side: `docs/sandbox.md`.
//!
//! Every Runloop group carries its owner's pid in its name (`runloop-k<pid>` for a
//! kernel's agents, `runloop/invoke-<pid>` for one `rlp agent invoke`,
//! `runloop-test-<pid>-<tag>` for tests). An owner that was SIGKILLed cannot remove its
//! groups, so every start calls [`sweep_orphans`], which removes the groups whose owner
//! is gone (killing any task still in them first) and leaves every other group alone.

use std::path::PathBuf;
use std::sync::Once;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, MaxValue, hierarchies};

mod own;

pub use self::own::{AgentBase, LineProblem, OwnCgroup, OwnCgroupError, SUPERVISOR_LEAF};

/// The CFS period quotas are expressed in.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Tries to remove a group whose last task is still being torn down by the kernel.
const REMOVE_TRIES_MAX: u32 = 50;

/// Which cgroup interface this machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    V1,
    V2,
    /// Neither is usable; the reason, for one clear notice.
    Unavailable(String),
}

/// Finds out whether cgroups can be created here, without creating any: whether this
/// process has an [`AgentBase`] (worked out once per process, then remembered).
pub fn detect() -> CgroupSupport {
    match AgentBase::current() {
        Ok(base) if base.v2 => CgroupSupport::V2,
        Ok(_) => CgroupSupport::V1,
        Err(reason) => CgroupSupport::Unavailable(reason.to_owned()),
    }
}

/// Whether the root of the hierarchies is writable (the probe of a root kernel).
fn root_writable(v2: bool) -> Result<(), String> {
    let probe = if v2 {
        PathBuf::from(CGROUP_ROOT).join("cgroup.procs")
    } else {
        PathBuf::from(CGROUP_ROOT).join("memory/cgroup.procs")
    };
    match std::fs::OpenOptions::new().write(true).open(&probe) {
        Ok(_) => Ok(()),
        Err(err) => Err(format!("{} not writable: {err}", probe.display())),
    }
}

/// Prints `reason` to stderr the first time it is called in this process.
pub fn notice_once(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "runloop: notice: {reason}; sandboxes run without cgroup limits, other limits \
             still apply (runtime.require_cgroups: true refuses to start them instead)"
        )
    });
}

/// Limits for one agent's group; `None` leaves the parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    pub memory_bytes_max: Option<u64>,
    /// Percent of one CPU (100 = one full core).
    pub cpu_percent_max: Option<u32>,
    pub pids_max: Option<u64>,
}

/// What a group has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupStats {
    pub cpu_usage_us: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub pids: u64,
    pub oom_kills: u64,
}

/// Why a cgroup operation failed, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups unavailable: {0}")]
    Unavailable(String),
    #[error("bad cgroup name {0:?} (want [a-zA-Z0-9_.-]+, not . or ..)")]
    BadName(String),
    #[error("create cgroup {path}: {source}")]
    Create {
        path: String,
        source: cgroups_rs::fs::error::Error,
    },
    #[error("set {what} on cgroup {path}: {source}")]
    Limit {
        what: &'static str,
        path: String,
        source: cgroups_rs::fs::error::Error,
    },
    #[error("read {what} of cgroup {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: cgroups_rs::fs::error::Error,
    },
    #[error("rename cgroup {} to {name}: {source}", path.display())]
    Rename {
        path: PathBuf,
        name: String,
        source: std::io::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: String,
        source: cgroups_rs::fs::error::Error,
    },
    #[error("sweep orphaned cgroup {path}: {step}: {source}")]
    Sweep {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("prepare own cgroup {path} for agent groups: {step}: {source}")]
    Prepare {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
}

/// One agent's group, at `<parent>/<name>` in every controller used.
#[derive(Debug)]
pub struct AgentCgroup {
    cgroup: Cgroup,
    path: String,
    v2: bool,
}

/// The controllers an agent group uses (cpu and cpuacct are separate in v1).
fn controllers(v2: bool) -> Vec<String> {
    let names: &[&str] = if v2 {
        &["memory", "cpu", "pids"]
    } else {
        &["memory", "cpu", "cpuacct", "pids"]
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(CgroupError::BadName(name.to_owned()))
    }
}

impl AgentCgroup {
    /// Creates `<parent>/<name>` (the parent too if missing) under this process's
    /// [`AgentBase`] and applies `limits`.
    pub fn create(parent: &str, name: &str, limits: &CgroupLimits) -> Result<Self, CgroupError> {
        let base = AgentBase::current().map_err(|r| CgroupError::Unavailable(r.to_owned()))?;
        Self::create_in(base, parent, name, limits)
    }

    /// Creates `<base>/<parent>/<name>` and applies `limits`; a v2 base below the root is
    /// prepared first (this process moves into its supervisor leaf, see the module doc).
    pub fn create_in(
        base: &AgentBase,
        parent: &str,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<Self, CgroupError> {
        for part in parent.split('/') {
            check_name(part)?;
        }
        check_name(name)?;
        base.prepare()?;
        let v2 = base.v2;
        let path = base.join(&format!("{parent}/{name}"));
        let cgroup =
            Cgroup::new_with_specified_controllers(hierarchy(), &path, Some(controllers(v2)))
                .map_err(|source| CgroupError::Create {
                    path: path.clone(),
                    source,
                })?;
        let group = Self { cgroup, path, v2 };
        if let Err(err) = group.apply(limits) {
            let _ = group.cgroup.delete();
            return Err(err);
        }
        Ok(group)
    }

    fn apply(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let err = |what| {
            let path = self.path.clone();
            move |source| CgroupError::Limit { what, path, source }
        };
        if let Some(bytes) = limits.memory_bytes_max {
            let mem: &MemController = self.controller("memory")?;
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            mem.set_limit(bytes).map_err(err("memory limit"))?;
        }
        if let Some(percent) = limits.cpu_percent_max {
            let cpu: &CpuController = self.controller("cpu")?;
            let quota = CPU_PERIOD_US * u64::from(percent) / 100;
            cpu.set_cfs_quota_and_period(Some(quota as i64), Some(CPU_PERIOD_US))
                .map_err(err("cpu quota"))?;
        }
        if let Some(max) = limits.pids_max {
            let pids: &PidController = self.controller("pids")?;
            pids.set_pid_max(MaxValue::Value(i64::try_from(max).unwrap_or(i64::MAX)))
                .map_err(err("pids limit"))?;
        }
        Ok(())
    }

    fn controller<'a, T>(&'a self, what: &'static str) -> Result<&'a T, CgroupError>
    where
        &'a T: From<&'a cgroups_rs::fs::Subsystem>,
        T: cgroups_rs::fs::Controller + cgroups_rs::fs::ControllIdentifier,
    {
        self.cgroup
            .controller_of::<T>()
            .ok_or_else(|| CgroupError::Unavailable(format!("no {what} controller")))
    }

    /// The group's path relative to each controller's root, base included
    /// (`runloop/<agent>`, `system.slice/runloopd.service/runloop-k<pid>/<agent>-1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this is a v2 group.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The `cgroup.procs` file of every controller, for a child to join before exec.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        if self.v2 {
            return vec![
                PathBuf::from(CGROUP_ROOT)
                    .join(&self.path)
                    .join("cgroup.procs"),
            ];
        }
        self.cgroup
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().join("cgroup.procs"))
            .collect()
    }

    /// Renames the group to `name` within its parent, in every controller, keeping its
    /// processes, limits and counters: how a warm sandbox's group becomes the group of the
    /// instance that takes it, without moving the process (a move into a memory group
    /// waits for an RCU grace period when the machine was idle: 4–14 ms measured on this
    /// kind of machine). cgroup v1 allows it; v2 does not, and the error says so (the
    /// group is unchanged: a half-done rename is undone).
    pub fn rename(&mut self, name: &str) -> Result<(), CgroupError> {
        check_name(name)?;
        let mut dirs: Vec<PathBuf> = self
            .procs_files()
            .iter()
            .filter_map(|f| f.parent().map(std::path::Path::to_owned))
            .collect();
        // Controllers mounted together share a directory.
        dirs.sort();
        dirs.dedup();
        let mut done: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let to = dir.with_file_name(name);
            if let Err(source) = std::fs::rename(&dir, &to) {
                for (from, to) in done.iter().rev() {
                    if let Err(e) = std::fs::rename(to, from) {
                        tracing::warn!("undo rename {} -> {}: {e}", from.display(), to.display());
                    }
                }
                return Err(CgroupError::Rename {
                    path: dir,
                    name: name.to_owned(),
                    source,
                });
            }
            done.push((dir, to));
        }
        let path = match self.path.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{name}"),
            None => name.to_owned(),
        };
        self.cgroup =
            Cgroup::load_with_specified_controllers(hierarchy(), &path, controllers(self.v2));
        self.path = path;
        Ok(())
    }

    /// Current usage, peak memory and OOM kills.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let read = |what| {
            let path = self.path.clone();
            move |source| CgroupError::Read { what, path, source }
        };
        let mem: &MemController = self.controller("memory")?;
        let memory = mem.memory_stat();
        let pids: &PidController = self.controller("pids")?;
        let cpu_usage_us = if self.v2 {
            let cpu: &CpuController = self.controller("cpu")?;
            cpu.cpu()
                .stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        } else {
            let acct: &CpuAcctController = self.controller("cpuacct")?;
            acct.cpuacct().usage / 1_000
        };
        Ok(CgroupStats {
            cpu_usage_us,
            memory_bytes: memory.usage_in_bytes,
            memory_peak_bytes: memory.max_usage_in_bytes,
            pids: pids.get_pid_current().map_err(read("pids.current"))?,
            oom_kills: memory.oom_control.oom_kill,
        })
    }

    /// Removes the group; its processes must have exited (the caller reaps them first).
    pub fn remove(self) -> Result<(), CgroupError> {
        let mut last = None;
        for _ in 0..REMOVE_TRIES_MAX {
            match self.cgroup.delete() {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
            // The kernel detaches an exited task asynchronously; this is bounded.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(CgroupError::Remove {
            path: self.path,
            source: last.expect("at least one try"),
        })
    }
}

/// Removes an empty Runloop parent group (e.g. a test's `runloop-test-<pid>`) under this
/// process's [`AgentBase`].
pub fn remove_parent(parent: &str) -> Result<(), CgroupError> {
    let base = AgentBase::current().map_err(|r| CgroupError::Unavailable(r.to_owned()))?;
    remove_parent_in(base, parent)
}

/// The cgroup hierarchy of this machine, as `hierarchies::auto()` gives it, read once per
/// process: `auto()` parses `/proc/self/mountinfo` at every call, which was ~4% of the CPU
/// of a run's node start (a group's create and a warm group's rename each asked for it).
/// Cgroup mounts do not move under a running kernel; one mounted later is not seen.
fn hierarchy() -> Box<dyn cgroups_rs::fs::Hierarchy> {
    #[derive(Debug, Clone)]
    enum Known {
        V1(hierarchies::V1),
        V2(hierarchies::V2),
    }
    static KNOWN: std::sync::OnceLock<Known> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        if hierarchies::is_cgroup2_unified_mode() {
            Known::V2(hierarchies::V2::new())
        } else {
            Known::V1(hierarchies::V1::new())
        }
    });
    match known.clone() {
        Known::V1(h) => Box::new(h),
        Known::V2(h) => Box::new(h),
    }
}

/// Removes the empty group `<base>/<parent>`.
pub fn remove_parent_in(base: &AgentBase, parent: &str) -> Result<(), CgroupError> {
    for part in parent.split('/') {
        check_name(part)?;
    }
    let path = base.join(parent);
    let cgroup = Cgroup::load_with_specified_controllers(hierarchy(), &path, controllers(base.v2));
    cgroup
        .delete()
        .map_err(|source| CgroupError::Remove { path, source })
}

/// Where each controller's hierarchy is mounted (v1); the unified tree is the root (v2).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The shared parent of `rlp agent invoke` groups (`runloop/invoke-<pid>`).
pub const INVOKE_PARENT: &str = "runloop";
/// Prefix of an invoke's group under [`INVOKE_PARENT`], before the owner's pid.
pub const INVOKE_GROUP_PREFIX: &str = "invoke-";
/// Prefix of a kernel's parent group, before the owner's pid.
pub const KERNEL_GROUP_PREFIX: &str = "runloop-k";
/// Prefix of a test's parent group, before the owner's pid and a tag.
pub const TEST_GROUP_PREFIX: &str = "runloop-test-";
/// Tries to remove one orphaned group while its killed tasks exit (2 ms apart).
const SWEEP_REMOVE_TRIES_MAX: u32 = 250;
/// Most groups one sweep looks at per hierarchy: bounded work at every start.
const SWEEP_GROUPS_MAX: usize = 4096;

/// What [`sweep_orphans`] did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Groups removed, as absolute paths (one per hierarchy).
    pub removed: Vec<PathBuf>,
    /// Leftover tasks killed with SIGKILL before their group was removed.
    pub killed: u32,
    /// Groups that could not be removed, and why.
    pub failed: Vec<CgroupError>,
}

impl Swept {
    /// Prints one notice per group that could not be removed (nothing when all went).
    pub fn notice(&self) {
        for err in &self.failed {
            eprintln!("runloop: notice: {err}");
        }
    }
}

/// The owner's pid in a Runloop group name relative to a hierarchy's root
/// (`runloop-k<pid>`, `runloop/invoke-<pid>`, `runloop-test-<pid>-<tag>`); `None` for
/// any other name, which a sweep never touches.
pub fn owner_pid(group: &str) -> Option<i32> {
    let digits = if let Some(rest) = group.strip_prefix(KERNEL_GROUP_PREFIX) {
        rest
    } else if let Some(rest) = group.strip_prefix(TEST_GROUP_PREFIX) {
        rest.split_once('-').map_or(rest, |(pid, _tag)| pid)
    } else {
        group
            .strip_prefix(INVOKE_PARENT)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(INVOKE_GROUP_PREFIX))?
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|pid| *pid > 0)
}

/// Whether process `pid` is alive. A zombie is not: a SIGKILLed owner stays one until
/// its parent reaps it (and in a container whose init never reaps, for ever).
fn alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => !zombie(pid),
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists and belongs to someone else.
        Err(_) => true,
    }
}

/// Whether `/proc/<pid>/stat` says the process has exited (`Z` zombie, `X` dead).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    })
}

/// The directories Runloop groups live in: this process's [`AgentBase`] in the unified
/// tree or in each v1 controller's hierarchy (co-mounted controllers such as
/// `cpu,cpuacct` counted once); the hierarchies' roots when it has no base.
fn hierarchy_roots() -> Vec<PathBuf> {
    let v2 = hierarchies::is_cgroup2_unified_mode();
    let base = AgentBase::current().map_or("", AgentBase::path);
    if v2 {
        return vec![under(PathBuf::from(CGROUP_ROOT), base)];
    }
    let mut roots: Vec<PathBuf> = controllers(false)
        .iter()
        .filter_map(|c| std::fs::canonicalize(PathBuf::from(CGROUP_ROOT).join(c)).ok())
        .map(|root| under(root, base))
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// `dir/rel`, or `dir` itself for an empty `rel` (no trailing separator).
fn under(dir: PathBuf, rel: &str) -> PathBuf {
    if rel.is_empty() { dir } else { dir.join(rel) }
}

/// Names of the sub-directories of `dir` (none when it does not exist), at most
/// [`SWEEP_GROUPS_MAX`].
fn sub_groups(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .take(SWEEP_GROUPS_MAX)
        .collect()
}

/// Removes every Runloop group whose owner process is gone, in every hierarchy, under
/// this process's [`AgentBase`]: tasks left in it (a sandbox whose parent died before it
/// could be told) are killed first, child groups go before their parent. Groups of live
/// owners and groups with other names are never touched. Called at every start (kernel
/// boot, `rlp agent invoke`).
pub fn sweep_orphans() -> Swept {
    let mut swept = Swept::default();
    for root in hierarchy_roots() {
        let mut orphans: Vec<PathBuf> = Vec::new();
        for name in sub_groups(&root) {
            if owner_pid(&name).is_some_and(|pid| !alive(pid)) {
                orphans.push(root.join(&name));
            }
        }
        for name in sub_groups(&root.join(INVOKE_PARENT)) {
            let group = format!("{INVOKE_PARENT}/{name}");
            if owner_pid(&group).is_some_and(|pid| !alive(pid)) {
                orphans.push(root.join(group));
            }
        }
        for dir in orphans {
            match remove_tree(&dir, &mut swept.killed, 0) {
                Ok(()) => swept.removed.push(dir),
                Err(err) => swept.failed.push(err),
            }
        }
    }
    swept
}

/// How deep an orphan's tree may go (`runloop-k<pid>/<agent>` is two levels).
const SWEEP_DEPTH_MAX: u32 = 4;

/// Kills the tasks of `dir` and its sub-groups, then removes them, deepest first.
fn remove_tree(dir: &std::path::Path, killed: &mut u32, depth: u32) -> Result<(), CgroupError> {
    let fail = |step, source| CgroupError::Sweep {
        path: dir.to_owned(),
        step,
        source,
    };
    if depth > SWEEP_DEPTH_MAX {
        return Err(fail("descend", std::io::Error::other("nested too deep")));
    }
    for name in sub_groups(dir) {
        remove_tree(&dir.join(name), killed, depth + 1)?;
    }
    let mut tries = 0;
    loop {
        let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(procs) => procs,
            // Another sweep (another hierarchy's view of a co-mounted one) removed it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(fail("read cgroup.procs", err)),
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let sent = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok();
            if sent && tries == 0 {
                *killed += 1;
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if tries >= SWEEP_REMOVE_TRIES_MAX => return Err(fail("remove", err)),
            // Killed tasks leave the group asynchronously; this is bounded.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
        tries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_only_from_runloop_names() {
        assert_eq!(owner_pid("runloop-k4242"), Some(4242));
        assert_eq!(owner_pid("runloop/invoke-17"), Some(17));
        assert_eq!(owner_pid("runloop-test-99-echo"), Some(99));
        for other in [
            "runloop",
            "runloop-k",
            "runloop-k12x",
            "runloop-k-1",
            "runloop/invoke-",
            "runloop/other-12",
            "invoke-12",
            "system.slice",
            "runloop-k0",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn a_zombie_owner_is_dead_and_a_live_one_is_not() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: exited, so a zombie, which a sweep must treat as gone.
        let exited = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            zombie(pid)
        });
        assert!(exited && !alive(pid));
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(alive(std::process::id() as i32));
    }
}
