//! Per-agent metrics, shared by every instance of one agent's actor (they survive
//! restarts): counters updated by the actor, CPU and RSS sampled on demand from
//! `/proc/<sandbox pid>/stat`.
//!
//! A status of a thousand agents reads a thousand `stat` files, so the read is cheap (one
//! `open`, one `read` into a stack buffer, the bytes parsed in place) and
//! [`AgentMetrics::snapshot_at`] reuses an agent's sample while it is younger than the
//! caller's sampling period: CPU % over a shorter window is mostly the 10 ms tick's noise.
//!
//! An idle agent is not read every period either. When nothing happened to it since its
//! last reading (no message in or out, no error, redelivery, denial, restart or state
//! change; the same sandbox) and that reading showed no CPU used since the one before,
//! its sandbox has nothing to run, so its CPU figure cannot have moved: the reading is
//! kept for up to [`IDLE_REREAD_MS`] and only then taken again, because RSS can still
//! change slowly (the allocator giving pages back, the kernel reclaiming). An agent that
//! did anything, or whose last reading showed CPU used (a long message still running),
//! is read every period as before.
//!
//! Every change to the counters and state bumps a change count (reads do not), so a
//! caller that keeps what it built from a snapshot (the kernel's status sampler) asks
//! [`AgentMetrics::snapshot_since`] with the last [`SnapshotStamp`] and gets a copy only
//! when something a status shows moved.

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
/// Longest an idle agent's `/proc` reading is kept, in ms of the caller's clock (see the
/// module doc): its CPU does not move while idle, its RSS may, slowly.
pub const IDLE_REREAD_MS: u64 = 10_000;

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
    /// Why the agent was parked, while `state` is `Quarantined` (set with the state, so a
    /// snapshot that says quarantined always says why).
    pub parked: Option<String>,
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
    /// What had happened to the agent when it was taken.
    activity: Activity,
    /// Whether the CPU time moved since the reading before (of the same sandbox); a
    /// first reading counts as moved.
    cpu_moved: bool,
}

/// Everything that counts as the agent doing something, compared between two readings:
/// equal means no message, error or state change in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    state: AgentState,
    messages_in: u64,
    messages_out: u64,
    errors: u64,
    restarts: u64,
    redelivered: u64,
    denied: u64,
}

impl Activity {
    fn of(snap: &AgentSnapshot) -> Self {
        Self {
            state: snap.state,
            messages_in: snap.messages_in,
            messages_out: snap.messages_out,
            errors: snap.errors,
            restarts: snap.restarts,
            redelivered: snap.redelivered,
            denied: snap.denied,
        }
    }
}

impl Usage {
    /// Whether this reading of `pid` still serves at `now_ms`: younger than `max_age_ms`,
    /// or, for an idle agent (nothing happened since, no CPU used before it), younger than
    /// [`IDLE_REREAD_MS`]. A clock gone back serves nothing.
    fn serves(&self, pid: u32, activity: &Activity, now_ms: u64, max_age_ms: u64) -> bool {
        if self.pid != pid || self.at_ms > now_ms {
            return false;
        }
        let age_ms = now_ms - self.at_ms;
        let idle = self.activity == *activity && !self.cpu_moved;
        age_ms < max_age_ms || (idle && age_ms < IDLE_REREAD_MS)
    }
}

#[derive(Debug, Default)]
struct Inner {
    snap: AgentSnapshot,
    /// Bumped by every change to `snap` (never by a read): a caller that keeps what it
    /// built from a snapshot knows from it whether the counters moved since.
    changes: u64,
    usage: Option<Usage>,
}

/// What an agent's snapshot said, in a few words: its change count and the CPU and RSS it
/// showed. Two snapshots of one [`AgentMetrics`] with equal stamps are equal apart from
/// `usage_at_ms` (when the figures were read), so a status built from the first one
/// serves for the second ([`AgentMetrics::snapshot_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStamp {
    changes: u64,
    cpu_us: u64,
    rss_kb: u64,
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
    /// A change to the counters or state (bumps the change count).
    fn with<T>(&self, f: impl FnOnce(&mut AgentSnapshot) -> T) -> T {
        self.inner(|i| {
            i.changes += 1;
            f(&mut i.snap)
        })
    }

    /// A read of the counters and state (the change count stays).
    fn read<T>(&self, f: impl FnOnce(&AgentSnapshot) -> T) -> T {
        self.inner(|i| f(&i.snap))
    }

    /// Whether `self` and `other` are handles of the same agent's metrics.
    pub fn same(&self, other: &AgentMetrics) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // Every update is a plain field write; a poisoned lock is still consistent.
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set_state(&self, state: AgentState) {
        self.with(|m| {
            m.state = state;
            if state != AgentState::Quarantined {
                m.parked = None;
            }
        });
    }

    /// Parked in quarantine for `reason`: the state and its reason in one change.
    pub fn quarantined(&self, reason: String) {
        self.with(|m| {
            m.state = AgentState::Quarantined;
            m.parked = Some(clip(reason));
        });
    }

    pub fn started(&self, pid: u32, cgroup: Option<String>, restart: bool) {
        self.with(|m| {
            m.state = AgentState::Running;
            m.parked = None;
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
        self.read(|m| m.clone())
    }

    /// The agent's state; no `/proc` read.
    pub fn state(&self) -> AgentState {
        self.read(|m| m.state)
    }

    /// The counters plus CPU and RSS sampled now (stamped `usage_at_ms: None`: the caller
    /// passed no clock).
    pub fn snapshot(&self) -> AgentSnapshot {
        let mut snap = self.read(|m| m.clone());
        if let Some((rss_kb, cpu_us)) = snap.sandbox_pid.and_then(|pid| proc_usage(Some(pid))) {
            snap.rss_kb = rss_kb;
            snap.cpu_us = cpu_us;
        }
        snap
    }

    /// The counters plus CPU and RSS as of `now_ms` (the caller's injected clock): the
    /// sample of the same sandbox taken less than `max_age_ms` before is reused (an idle
    /// agent's for up to [`IDLE_REREAD_MS`], see the module doc), else `/proc` is read now
    /// (outside the lock) and kept for the next call. `usage_at_ms` says when the figures
    /// were read.
    pub fn snapshot_at(&self, now_ms: u64, max_age_ms: u64) -> AgentSnapshot {
        self.snapshot_since(now_ms, max_age_ms, None)
            .1
            .expect("a snapshot is given when no stamp is")
    }

    /// [`AgentMetrics::snapshot_at`] for a caller that keeps what it built from the last
    /// one: the stamp of the snapshot as of `now_ms`, and the snapshot itself only when
    /// that stamp is not `seen` (`None` when it is: nothing a status shows moved, and
    /// nothing is copied). The `/proc` reading is taken or reused exactly as by
    /// `snapshot_at`.
    pub fn snapshot_since(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        seen: Option<SnapshotStamp>,
    ) -> (SnapshotStamp, Option<AgentSnapshot>) {
        let stamp = |changes, usage: Option<&Usage>, snap: &AgentSnapshot| SnapshotStamp {
            changes,
            cpu_us: usage.map_or(snap.cpu_us, |u| u.cpu_us),
            rss_kb: usage.map_or(snap.rss_kb, |u| u.rss_kb),
        };
        // Under the lock: done when the kept reading serves (or there is no sandbox);
        // otherwise a copy to read `/proc` for outside it.
        let to_read = self.inner(|i| {
            let pid = i.snap.sandbox_pid;
            let serving = pid.and_then(|pid| {
                let activity = Activity::of(&i.snap);
                i.usage
                    .filter(|u| u.serves(pid, &activity, now_ms, max_age_ms))
            });
            match (pid, serving) {
                (Some(pid), None) => Step::Read(pid, i.changes, i.snap.clone(), i.usage),
                (_, usage) => {
                    let now = stamp(i.changes, usage.as_ref(), &i.snap);
                    let snap = (seen != Some(now)).then(|| with_usage(i.snap.clone(), usage));
                    Step::Done(now, snap)
                }
            }
        });
        let (pid, changes, snap, cached) = match to_read {
            Step::Done(now, snap) => return (now, snap),
            Step::Read(pid, changes, snap, cached) => (pid, changes, snap, cached),
        };
        let Some((rss_kb, cpu_us)) = proc_usage(Some(pid)) else {
            let now = stamp(changes, None, &snap);
            return (now, (seen != Some(now)).then_some(snap));
        };
        let before = cached.filter(|u| u.pid == pid);
        let usage = Usage {
            pid,
            at_ms: now_ms,
            rss_kb,
            cpu_us,
            activity: Activity::of(&snap),
            cpu_moved: before.is_none_or(|b| b.cpu_us != cpu_us),
        };
        self.inner(|i| i.usage = Some(usage));
        let now = stamp(changes, Some(&usage), &snap);
        (
            now,
            (seen != Some(now)).then(|| with_usage(snap, Some(usage))),
        )
    }
}

/// What [`AgentMetrics::snapshot_since`] found under the lock: the answer, or a sandbox to
/// read `/proc` for (its pid, the change count and counters as of then, the last reading).
enum Step {
    Done(SnapshotStamp, Option<AgentSnapshot>),
    Read(u32, u64, AgentSnapshot, Option<Usage>),
}

/// `snap` with the CPU and RSS of `usage` (as they are without one).
fn with_usage(mut snap: AgentSnapshot, usage: Option<Usage>) -> AgentSnapshot {
    if let Some(usage) = usage {
        snap.rss_kb = usage.rss_kb;
        snap.cpu_us = usage.cpu_us;
        snap.usage_at_ms = Some(usage.at_ms);
    }
    snap
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
    fn a_parked_snapshot_carries_its_reason_and_a_restart_clears_it() {
        let m = AgentMetrics::default();
        m.quarantined("malformed frame: Duplicate".into());
        let snap = m.counters();
        assert_eq!(snap.state, AgentState::Quarantined);
        assert_eq!(snap.parked.as_deref(), Some("malformed frame: Duplicate"));
        m.started(7, None, true);
        assert_eq!(m.counters().parked, None);
        m.quarantined("again".into());
        m.set_state(AgentState::Stopped);
        assert_eq!(m.counters().parked, None);
    }

    /// The idle rule, table-driven: a reading serves for the period, and for an agent
    /// that did nothing since and used no CPU before it, up to [`IDLE_REREAD_MS`].
    #[test]
    fn an_idle_agents_reading_serves_longer() {
        let quiet = Activity::of(&AgentSnapshot {
            state: AgentState::Running,
            messages_in: 3,
            messages_out: 3,
            ..AgentSnapshot::default()
        });
        let usage = |cpu_moved| Usage {
            pid: 7,
            at_ms: 10_000,
            rss_kb: 1,
            cpu_us: 2,
            activity: quiet,
            cpu_moved,
        };
        let changed = |f: fn(&mut Activity)| {
            let mut a = quiet;
            f(&mut a);
            a
        };
        let period = 1_000;
        let idle_end = 10_000 + IDLE_REREAD_MS;
        // (reading, pid now, activity now, now ms, serves, why)
        let cases = [
            (usage(false), 7, quiet, 10_999, true, "within the period"),
            (
                usage(true),
                7,
                quiet,
                10_999,
                true,
                "within the period, busy",
            ),
            (
                usage(true),
                7,
                quiet,
                11_000,
                false,
                "busy: CPU moved before it",
            ),
            (
                usage(false),
                7,
                quiet,
                11_000,
                true,
                "idle: kept past the period",
            ),
            (
                usage(false),
                7,
                quiet,
                idle_end - 1,
                true,
                "idle: kept until the re-read",
            ),
            (usage(false), 7, quiet, idle_end, false, "idle: RSS re-read"),
            (usage(false), 8, quiet, 11_000, false, "another sandbox"),
            (usage(false), 7, quiet, 9_999, false, "the clock went back"),
            (
                usage(false),
                7,
                changed(|a| a.messages_in += 1),
                11_000,
                false,
                "a message came in",
            ),
            (
                usage(false),
                7,
                changed(|a| a.messages_out += 1),
                11_000,
                false,
                "a message went out",
            ),
            (
                usage(false),
                7,
                changed(|a| a.errors += 1),
                11_000,
                false,
                "an error",
            ),
            (
                usage(false),
                7,
                changed(|a| a.state = AgentState::Restarting),
                11_000,
                false,
                "a state change",
            ),
        ];
        for (reading, pid, activity, now_ms, serves, why) in cases {
            assert_eq!(
                reading.serves(pid, &activity, now_ms, period),
                serves,
                "{why}"
            );
        }
    }

    /// End to end with a real idle process (a `sleep` child, blocked in its sleep): read
    /// every period until a reading shows its CPU did not move, then kept until
    /// [`IDLE_REREAD_MS`]; a message makes the next status read it again.
    #[test]
    fn an_idle_sandbox_is_read_again_only_after_the_idle_period_or_a_message() {
        use runloop_proto::{Clock, ManualClock};
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        // Its CPU time is final once it sleeps (state `S`); this waits for exec and the
        // loader, bounded, without sleeping.
        let stat_path = format!("/proc/{pid}/stat");
        let sleeping = (0..1_000_000).any(|_| {
            std::thread::yield_now();
            std::fs::read_to_string(&stat_path).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('S'))
            })
        });
        assert!(sleeping, "the sleep child never slept");
        let clock = ManualClock::new(10_000);
        let metrics = AgentMetrics::default();
        metrics.started(pid, None, false);
        let at = |metrics: &AgentMetrics, clock: &ManualClock| {
            metrics.snapshot_at(clock.now_ms(), 1_000).usage_at_ms
        };
        assert_eq!(at(&metrics, &clock), Some(10_000), "first reading");
        clock.advance_ms(1_000);
        assert_eq!(
            at(&metrics, &clock),
            Some(11_000),
            "a first reading counts as busy"
        );
        clock.advance_ms(1_000);
        assert_eq!(
            at(&metrics, &clock),
            Some(11_000),
            "idle: the reading is kept"
        );
        clock.set_ms(11_000 + IDLE_REREAD_MS - 1);
        assert_eq!(at(&metrics, &clock), Some(11_000), "still kept");
        clock.advance_ms(1);
        let reread = 11_000 + IDLE_REREAD_MS;
        assert_eq!(at(&metrics, &clock), Some(reread), "re-read for RSS");
        clock.advance_ms(1_000);
        assert_eq!(at(&metrics, &clock), Some(reread), "idle again");
        metrics.message_in();
        assert_eq!(
            at(&metrics, &clock),
            Some(reread + 1_000),
            "a message: read at the next status"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A stamp moves with what a status shows (counters, state, sandbox, CPU and RSS) and
    /// only then: reads do not move it, and an unmoved stamp copies nothing.
    #[test]
    fn a_snapshot_stamp_moves_only_with_the_snapshot() {
        use runloop_proto::{Clock, ManualClock};
        let clock = ManualClock::new(10_000);
        let metrics = AgentMetrics::default();
        let (none_yet, snap) = metrics.snapshot_since(clock.now_ms(), 1_000, None);
        assert_eq!(
            snap,
            Some(AgentSnapshot::default()),
            "no sandbox: no reading"
        );
        assert_eq!(
            metrics.snapshot_since(clock.now_ms(), 1_000, Some(none_yet)),
            (none_yet, None)
        );
        metrics.started(std::process::id(), None, false);
        let (stamp, snap) = metrics.snapshot_since(clock.now_ms(), 1_000, Some(none_yet));
        assert_ne!(stamp, none_yet, "a sandbox started");
        let snap = snap.expect("a moved stamp gives the snapshot");
        assert_eq!(snap.usage_at_ms, Some(10_000));
        assert_eq!(
            snap,
            metrics.snapshot_at(clock.now_ms(), 1_000),
            "as snapshot_at"
        );
        let _ = (metrics.counters(), metrics.state(), metrics.snapshot());
        clock.advance_ms(999);
        assert_eq!(
            metrics.snapshot_since(clock.now_ms(), 1_000, Some(stamp)),
            (stamp, None),
            "reads and the reading reused move nothing"
        );
        metrics.message_in();
        let (moved, snap) = metrics.snapshot_since(clock.now_ms(), 1_000, Some(stamp));
        assert_ne!(moved, stamp);
        assert_eq!(snap.map(|s| s.messages_in), Some(1));
        assert_eq!(
            metrics.snapshot_since(clock.now_ms(), 1_000, None).1,
            Some(metrics.snapshot_at(clock.now_ms(), 1_000)),
            "no stamp given: always the snapshot"
        );
        let other = AgentMetrics::default();
        assert!(metrics.same(&metrics.clone()) && !metrics.same(&other));
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
