//! Per-agent metrics, shared by every instance of one agent's actor (they survive
//! restarts): counters updated by the actor, CPU and RSS sampled on demand from
//! `/proc/<sandbox pid>/stat`.
//!
//! A status of a thousand agents reads a thousand `stat` files, so the read is cheap (one
//! `open`, one `read` into a stack buffer, the bytes parsed in place) and
//! [`AgentMetrics::snapshot_at`] reuses an agent's sample while it is younger than the
//! caller's sampling period: CPU % over a shorter window is mostly the 10 ms tick's noise.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

/// Longest last-error text kept, in bytes.
pub const LAST_ERROR_BYTES_MAX: usize = 512;
/// Largest `/proc/<pid>/stat` read, in bytes: the fields up to RSS (24) take at most
/// ≈ 600 (a 64-byte command name and 23 twenty-digit numbers); the rest is not needed.
pub const PROC_STAT_BYTES_MAX: usize = 1_024;
/// Longest `/proc/<pid>/stat` path, in bytes (`/proc/` + 10 digits + `/stat`).
const PROC_STAT_PATH_BYTES_MAX: usize = 32;

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
    /// When `cpu_us` and `rss_kb` were read from `/proc`, by the caller's clock (ms);
    /// `None` when they were not (no sandbox, or it is gone).
    pub usage_at_ms: Option<u64>,
}

/// One `/proc` reading of a sandbox, kept for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    pid: u32,
    at_ms: u64,
    rss_kb: u64,
    cpu_us: u64,
}

#[derive(Debug, Default)]
struct Inner {
    snap: AgentSnapshot,
    usage: Option<Usage>,
}

/// One agent's metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AgentMetrics(Arc<Mutex<Inner>>);

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
        self.inner(|i| f(&mut i.snap))
    }

    fn inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
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

    /// The counters and state only: no `/proc` read (CPU and RSS as last sampled). For
    /// the message path and probes, which ask often and want no system call.
    pub fn counters(&self) -> AgentSnapshot {
        self.with(|m| m.clone())
    }

    /// The agent's state; no `/proc` read.
    pub fn state(&self) -> AgentState {
        self.with(|m| m.state)
    }

    /// The counters plus CPU and RSS sampled now (stamped `usage_at_ms: None`: the caller
    /// passed no clock).
    pub fn snapshot(&self) -> AgentSnapshot {
        let mut snap = self.with(|m| m.clone());
        if let Some((rss_kb, cpu_us)) = snap.sandbox_pid.and_then(|pid| proc_usage(Some(pid))) {
            snap.rss_kb = rss_kb;
            snap.cpu_us = cpu_us;
        }
        snap
    }

    /// The counters plus CPU and RSS as of `now_ms` (the caller's injected clock): the
    /// sample of the same sandbox taken less than `max_age_ms` before is reused, else
    /// `/proc` is read now (outside the lock) and kept for the next call.
    pub fn snapshot_at(&self, now_ms: u64, max_age_ms: u64) -> AgentSnapshot {
        let (mut snap, cached) = self.inner(|i| (i.snap.clone(), i.usage));
        let Some(pid) = snap.sandbox_pid else {
            return snap;
        };
        let fresh = |u: &Usage| u.pid == pid && u.at_ms <= now_ms && now_ms - u.at_ms < max_age_ms;
        let usage = match cached.filter(fresh) {
            Some(usage) => usage,
            None => {
                let Some((rss_kb, cpu_us)) = proc_usage(Some(pid)) else {
                    return snap;
                };
                let usage = Usage {
                    pid,
                    at_ms: now_ms,
                    rss_kb,
                    cpu_us,
                };
                self.inner(|i| i.usage = Some(usage));
                usage
            }
        };
        snap.rss_kb = usage.rss_kb;
        snap.cpu_us = usage.cpu_us;
        snap.usage_at_ms = Some(usage.at_ms);
        snap
    }
}

/// `(page size, clock ticks per second)`, asked of the system once.
fn proc_units() -> (u64, u64) {
    static UNITS: OnceLock<(u64, u64)> = OnceLock::new();
    *UNITS.get_or_init(|| (procfs::page_size(), procfs::ticks_per_second().max(1)))
}

/// `(VmRSS KiB, utime+stime µs)` of a live process (`None`: this process), or `None`
/// when /proc cannot say (the process is gone).
pub fn proc_usage(pid: Option<u32>) -> Option<(u64, u64)> {
    // One `open` and one `read` into a stack buffer: no directory handle, no probe read,
    // no `String`.
    let mut path = [0u8; PROC_STAT_PATH_BYTES_MAX];
    let len = {
        let mut out = &mut path[..];
        let written = match pid {
            Some(pid) => write!(out, "/proc/{pid}/stat"),
            None => out.write_all(b"/proc/self/stat"),
        };
        written.expect("a u32 pid fits the path buffer");
        PROC_STAT_PATH_BYTES_MAX - out.len()
    };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&path[..len]));
    let mut buf = [0u8; PROC_STAT_BYTES_MAX];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    let (utime, stime, rss_pages) = stat_fields(&buf[..n])?;
    let (page_size, hz) = proc_units();
    let rss_kb = rss_pages.saturating_mul(page_size) / 1024;
    let cpu_us = utime.saturating_add(stime).saturating_mul(1_000_000) / hz;
    Some((rss_kb, cpu_us))
}

/// `(utime, stime, rss)` of a `/proc/<pid>/stat` line: fields 14, 15 and 24, counted
/// after the command name in parentheses (which may itself hold spaces and parentheses).
/// `None` for anything else: a field missing or not a decimal number.
fn stat_fields(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    // The fields after the name start at field 3 (state).
    let mut fields = bytes[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let mut nth = |skip: usize| fields.nth(skip).and_then(decimal);
    let utime = nth(14 - 3)?;
    let stime = nth(0)?;
    let rss = nth(24 - 16)?;
    Some((utime, stime, rss))
}

/// A decimal `u64` of ASCII digits; `None` for anything else (a sign included).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    7 3 0 0 20 0 1 0 100 1000000 512 18446744073709551615\n";
        assert_eq!(stat_fields(line), Some((7, 3, 512)));
        assert_eq!(stat_fields(b"4242 (x) S 1"), None);
        assert_eq!(stat_fields(b"no parenthesis 1 2 3"), None);
        // A field that is not a decimal number is not read as one.
        let bad = b"1 (x) S 1 1 1 0 -1 0 0 0 0 0 7x 3 0 0 20 0 1 0 100 1 512";
        assert_eq!(stat_fields(bad), None);
        // A command name that looks like fields does not shift the count.
        let tricky = b"9 (1 2 3) 4 5) R 1 1 1 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 1 1 33";
        assert_eq!(stat_fields(tricky), Some((11, 22, 33)));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b""), None);
        let me = proc_usage(None).expect("this process");
        assert!(me.0 > 0, "{me:?}");
        let by_pid = proc_usage(Some(std::process::id())).expect("this process by pid");
        assert!(by_pid.0 > 0, "{by_pid:?}");
        assert_eq!(proc_usage(Some(u32::MAX)), None, "no such process");
    }

    /// A sample is reused while younger than the period, by the caller's clock, and read
    /// again once it is not, when the clock goes back, or when the sandbox changed.
    #[test]
    fn usage_samples_are_reused_by_age_on_the_callers_clock() {
        use runloop_proto::{Clock, ManualClock};
        let clock = ManualClock::new(10_000);
        let metrics = AgentMetrics::default();
        assert_eq!(metrics.snapshot_at(clock.now_ms(), 1_000).usage_at_ms, None);
        metrics.started(std::process::id(), None, false);
        let first = metrics.snapshot_at(clock.now_ms(), 1_000);
        assert_eq!(first.usage_at_ms, Some(10_000));
        assert!(first.rss_kb > 0);
        clock.advance_ms(999);
        let reused = metrics.snapshot_at(clock.now_ms(), 1_000);
        assert_eq!(reused.usage_at_ms, Some(10_000), "younger than the period");
        assert_eq!((reused.rss_kb, reused.cpu_us), (first.rss_kb, first.cpu_us));
        clock.advance_ms(1);
        let again = metrics.snapshot_at(clock.now_ms(), 1_000);
        assert_eq!(again.usage_at_ms, Some(11_000), "as old as the period");
        clock.set_ms(10_500);
        assert_eq!(
            metrics.snapshot_at(clock.now_ms(), 1_000).usage_at_ms,
            Some(10_500),
            "a clock gone back reads again"
        );
        metrics.started(std::process::id(), None, true);
        metrics.with(|m| m.sandbox_pid = Some(1));
        assert_eq!(
            metrics.snapshot_at(clock.now_ms(), 1_000).usage_at_ms,
            Some(10_500),
            "another sandbox reads again (pid 1 is there)"
        );
        metrics.with(|m| m.sandbox_pid = Some(u32::MAX));
        let gone = metrics.snapshot_at(clock.now_ms(), 1_000);
        assert_eq!(gone.usage_at_ms, None, "a sandbox /proc does not know");
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
