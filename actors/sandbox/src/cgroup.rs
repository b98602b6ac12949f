//! Per-agent cgroups: create under a Runloop parent, limit, read, remove.
//!
//! Works on cgroup v1 (separate `memory`, `cpu`, `cpuacct`, `pids` hierarchies, as on the
//! project's machines) and v2 (one unified tree, systemd laptops with delegation), through
//! cgroups-rs. Where neither is writable, [`detect`] says why and [`notice_once`] prints it
//! once; callers then run sandboxes without a cgroup and keep every other limit.

use std::path::PathBuf;
use std::sync::Once;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, MaxValue, hierarchies};

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

/// Finds out whether cgroups can be created here, without creating any.
pub fn detect() -> CgroupSupport {
    let v2 = hierarchies::is_cgroup2_unified_mode();
    let probe = if v2 {
        PathBuf::from("/sys/fs/cgroup/cgroup.procs")
    } else {
        PathBuf::from("/sys/fs/cgroup/memory/cgroup.procs")
    };
    match std::fs::OpenOptions::new().write(true).open(&probe) {
        Ok(_) if v2 => CgroupSupport::V2,
        Ok(_) => CgroupSupport::V1,
        Err(err) => CgroupSupport::Unavailable(format!(
            "cgroups unusable ({} not writable: {err}); sandboxes run without cgroup limits, \
             other limits still apply",
            probe.display()
        )),
    }
}

/// Prints `reason` to stderr the first time it is called in this process.
pub fn notice_once(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| eprintln!("runloop: notice: {reason}"));
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
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: String,
        source: cgroups_rs::fs::error::Error,
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
    /// Creates `<parent>/<name>` (the parent too if missing) and applies `limits`.
    pub fn create(parent: &str, name: &str, limits: &CgroupLimits) -> Result<Self, CgroupError> {
        for part in parent.split('/') {
            check_name(part)?;
        }
        check_name(name)?;
        let v2 = match detect() {
            CgroupSupport::V1 => false,
            CgroupSupport::V2 => true,
            CgroupSupport::Unavailable(reason) => return Err(CgroupError::Unavailable(reason)),
        };
        let path = format!("{parent}/{name}");
        let cgroup = Cgroup::new_with_specified_controllers(
            hierarchies::auto(),
            &path,
            Some(controllers(v2)),
        )
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

    /// The group's path relative to each controller's root (`runloop/<agent>`).
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
                PathBuf::from("/sys/fs/cgroup")
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

/// Removes an empty Runloop parent group (e.g. a test's `runloop-test-<pid>`).
pub fn remove_parent(parent: &str) -> Result<(), CgroupError> {
    for part in parent.split('/') {
        check_name(part)?;
    }
    let v2 = hierarchies::is_cgroup2_unified_mode();
    let cgroup =
        Cgroup::load_with_specified_controllers(hierarchies::auto(), parent, controllers(v2));
    cgroup.delete().map_err(|source| CgroupError::Remove {
        path: parent.to_owned(),
        source,
    })
}
