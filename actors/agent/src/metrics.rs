//! Per-agent metrics, shared by every instance of one agent's actor (they survive
//! restarts): counters updated by the actor, CPU and RSS sampled on demand from
//! `/proc/<sandbox pid>` and the agent's cgroup.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Longest last-error text kept, in bytes.
pub const LAST_ERROR_BYTES_MAX: usize = 512;

/// The agent actor's lifecycle state as `rlp agent ls` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Spawning its sandbox.
    #[default]
    Starting,
    Running,
    /// The sandbox died; the supervisor is restarting the actor.
    Restarting,
    /// Parked in quarantine.
    Quarantined,
    Stopped,
}

/// A point-in-time copy of one agent's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentSnapshot {
    pub state: AgentState,
    /// The current sandbox process, if one runs.
    pub sandbox_pid: Option<u32>,
    pub cgroup: Option<String>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub errors: u64,
    pub restarts: u64,
    pub redelivered: u64,
    pub denied: u64,
    pub last_error: Option<String>,
    /// CPU time of the current sandbox (user + system), microseconds.
    pub cpu_us: u64,
    /// Resident memory of the current sandbox, KiB.
    pub rss_kb: u64,
}

/// One agent's metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AgentMetrics(Arc<Mutex<AgentSnapshot>>);

fn clip(mut text: String) -> String {
    if text.len() > LAST_ERROR_BYTES_MAX {
        let mut cut = LAST_ERROR_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl AgentMetrics {
    fn with<T>(&self, f: impl FnOnce(&mut AgentSnapshot) -> T) -> T {
        // Every update is a plain field write; a poisoned lock is still consistent.
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set_state(&self, state: AgentState) {
        self.with(|m| m.state = state);
    }

    pub fn started(&self, pid: u32, cgroup: Option<String>, restart: bool) {
        self.with(|m| {
            m.state = AgentState::Running;
            m.sandbox_pid = Some(pid);
            m.cgroup = cgroup;
            if restart {
                m.restarts += 1;
            }
        });
    }

    pub fn sandbox_gone(&self) {
        self.with(|m| m.sandbox_pid = None);
    }

    pub fn message_in(&self) {
        self.with(|m| m.messages_in += 1);
    }

    pub fn message_out(&self) {
        self.with(|m| m.messages_out += 1);
    }

    pub fn redelivered(&self) {
        self.with(|m| m.redelivered += 1);
    }

    pub fn error(&self, text: String) {
        self.with(|m| {
            m.errors += 1;
            m.last_error = Some(clip(text));
        });
    }

    pub fn denied(&self, op: &str, reason: &str) {
        self.with(|m| {
            m.denied += 1;
            m.errors += 1;
            m.last_error = Some(clip(format!("{op} denied: {reason}")));
        });
    }

    /// The counters plus CPU and RSS sampled now.
    pub fn snapshot(&self) -> AgentSnapshot {
        let mut snap = self.with(|m| m.clone());
        if let Some(pid) = snap.sandbox_pid
            && let Some((rss_kb, cpu_us)) = proc_usage(Some(pid))
        {
            snap.rss_kb = rss_kb;
            snap.cpu_us = cpu_us;
        }
        snap
    }
}

/// `(VmRSS KiB, utime+stime µs)` of a live process (`None`: this process), or `None`
/// when /proc cannot say (the process is gone).
pub fn proc_usage(pid: Option<u32>) -> Option<(u64, u64)> {
    // One read of `/proc/<pid>/stat` (a status of a thousand agents reads a thousand of
    // them, so no directory handle first).
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let (utime, stime, rss_pages) = stat_fields(&text)?;
    let rss_kb = rss_pages.saturating_mul(procfs::page_size()) / 1024;
    let hz = procfs::ticks_per_second().max(1);
    let cpu_us = (utime + stime).saturating_mul(1_000_000) / hz;
    Some((rss_kb, cpu_us))
}

/// `(utime, stime, rss)` of a `/proc/<pid>/stat` line: fields 14, 15 and 24, counted
/// after the command name in parentheses (which may itself hold spaces and parentheses).
fn stat_fields(text: &str) -> Option<(u64, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(24)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    7 3 0 0 20 0 1 0 100 1000000 512 18446744073709551615";
        assert_eq!(stat_fields(line), Some((7, 3, 512)));
        assert_eq!(stat_fields("4242 (x) S 1"), None);
        let me = proc_usage(None).expect("this process");
        assert!(me.0 > 0, "{me:?}");
    }

    #[test]
    fn counters_survive_clones_and_usage_comes_from_proc() {
        let metrics = AgentMetrics::default();
        let other = metrics.clone();
        other.started(std::process::id(), None, true);
        other.message_in();
        other.error("x".repeat(LAST_ERROR_BYTES_MAX * 2));
        let snap = metrics.snapshot();
        assert_eq!((snap.restarts, snap.messages_in, snap.errors), (1, 1, 1));
        assert_eq!(snap.last_error.unwrap().len(), LAST_ERROR_BYTES_MAX);
        assert!(snap.rss_kb > 0, "sampled from /proc/self's pid");
        assert_eq!(snap.state, AgentState::Running);
    }
}
