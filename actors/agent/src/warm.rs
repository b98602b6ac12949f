//! Warm sandboxes: ready `runloop-sandbox-host` processes an agent instance takes instead
//! of spawning its own, so a restart after a crash or the start of a run's node skips
//! fork, exec, confinement, the engine and the module load (a cold start is 3–5 ms on a
//! quiet machine of this kind, several times that under load).
//!
//! Where they come from:
//! - **given back**: a run's node agent that stops normally (its node finished) leaves an
//!   idle, healthy sandbox ([`Sandbox::is_reusable`]); it waits here, in its old group,
//!   for the next instance of the same module and limits (a standalone agent a person
//!   stops takes its process with it);
//! - **spares**: when an instance starts and nothing waits for its [`WarmKey`], one spare
//!   is spawned in the background (one in flight per key), in a group of its own
//!   (`.warm-<n>`, the key's limits), so the next start or restart of that key finds one.
//!
//! Why a sandbox can serve another instance: every invoke runs in a fresh instance of the
//! module (`sandbox-host`'s guest), the host keeps nothing per agent, and everything the
//! kernel keeps per agent (policy, ledger, metrics, breaker) belongs to the actor that
//! takes it. The key is everything the process was started with: the host binary, the
//! `.cwasm` (content-addressed), the sandbox limits and the group limits. A taker adopts
//! the sandbox's group, renamed to its own `<name>-<generation>` ([`Warm::enter`]): the
//! process is never moved between groups, because a move into a memory group waits for
//! an RCU grace period when the machine was idle (4–14 ms here, most of a restart).
//!
//! Bounds: at most `max` sandboxes wait in all (config `runtime.warm_sandboxes`; 0 turns
//! the pool off). One key may fill the pool while no other needs room — many runs of one
//! opening are the common load, and with 2 per key (the earlier rule) 40% of their node
//! starts spawned. When the pool is full, a key with fewer waiting takes the room of the
//! oldest sandbox of the key with the most ([`WarmPool::give`]), so the keys in use share
//! it. Each waits at most [`IDLE_MS`] by the injected
//! clock — swept at every take, give and spare, and by [`WarmPool::sweep`]. Teardown (kill,
//! reap, group removal) runs on a short-lived thread, never on the caller's. [`WarmPool::close`]
//! (kernel shutdown) refuses new ones, ends the waiting ones and waits for spares in flight.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use runloop_proto::Clock;
use runloop_proto::payloads::SandboxLimits;
use runloop_sandbox::cgroup::CgroupError;
use runloop_sandbox::cgroup::{AgentCgroup, CgroupLimits};
use runloop_sandbox::{Sandbox, SandboxError};

use crate::actor::AgentConfig;

/// Longest a sandbox waits before it is ended, in milliseconds of the kernel's clock.
pub const IDLE_MS: u64 = 30_000;
/// Default of `runtime.warm_sandboxes`: most sandboxes waiting in all. As many as a busy
/// daemon has runs in flight (32 one-node runs at once spawned for 10–12 % of their starts
/// with 8, for under 1 % with 32: `perf/openings.md`, 2026-12-04); a full pool is ≈ 50 MB
/// of machine memory (≈ 1.6 MB per idle sandbox), and only for [`IDLE_MS`] after the
/// load that filled it.
pub const WARM_MAX_DEFAULT: usize = 32;
/// Upper bound of `runtime.warm_sandboxes`.
pub const WARM_MAX_LIMIT: usize = 256;
/// Longest [`WarmPool::close`] waits for spares still being spawned.
const CLOSE_WAIT_MS: u64 = 5_000;

/// What a sandbox was started with; only an instance with the same key may take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmKey {
    program: PathBuf,
    module_path: PathBuf,
    limits: SandboxLimits,
    group: Option<(String, CgroupLimits)>,
}

impl WarmKey {
    /// The key of `config`'s sandboxes.
    pub fn of(config: &AgentConfig) -> Self {
        Self {
            program: config.program.clone(),
            module_path: config.module_path.clone(),
            limits: config.limits,
            group: config
                .cgroup
                .as_ref()
                .map(|plan| (plan.parent.clone(), plan.limits)),
        }
    }
}

/// Where a sandbox of `key` may take room in a full pool: the oldest entry of the key with
/// the most waiting, when that key holds at least two more than `key` (after the move it
/// still holds at least as many). `None`: `key` already has its share.
fn room_from_largest(waiting: &[(WarmKey, Warm)], key: &WarmKey) -> Option<usize> {
    let count = |k: &WarmKey| waiting.iter().filter(|(other, _)| other == k).count();
    let mine = count(key);
    let (largest, most) = waiting
        .iter()
        .map(|(k, _)| (k, count(k)))
        .max_by_key(|(_, n)| *n)?;
    if most < mine + 2 {
        return None;
    }
    // Entries are pushed as they arrive: the first of the key is its oldest.
    waiting.iter().position(|(k, _)| k == largest)
}

/// One waiting sandbox and the group it sits in (`None` for a spare, or where the machine
/// has no cgroups). Dropping it kills and reaps the process and removes the group.
#[derive(Debug)]
pub struct Warm {
    sandbox: Option<Sandbox>,
    group: Option<AgentCgroup>,
    since_ms: u64,
}

impl Warm {
    /// Hands the sandbox and its group to the instance that took it: the group is renamed
    /// `name` (the instance's `<name>-<generation>`) and becomes the instance's own; the
    /// process is not moved (see [`AgentCgroup::rename`]). Where the group cannot be
    /// renamed (cgroup v2) it keeps its name.
    pub fn enter(mut self, agent: &str, name: &str) -> (Sandbox, Option<AgentCgroup>) {
        let mut sandbox = self
            .sandbox
            .take()
            .expect("a waiting entry has its sandbox");
        let mut group = self.group.take();
        if let Some(group) = &mut group
            && let Err(e) = group.rename(name)
        {
            tracing::debug!("warm sandbox {}: keeps its group: {e}", sandbox.pid());
        }
        sandbox.reassign(agent, group.as_ref());
        (sandbox, group)
    }

    fn pid(&self) -> Option<u32> {
        self.sandbox.as_ref().map(Sandbox::pid)
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        if let Some(mut sandbox) = self.sandbox.take() {
            sandbox.kill();
        }
        if let Some(group) = self.group.take() {
            let path = group.path().to_owned();
            if let Err(e) = group.remove() {
                tracing::warn!("remove warm sandbox group {path}: {e}");
            }
        }
    }
}

/// Ends `warm` (kill, reap, remove its group) on a thread of its own.
fn teardown(warm: Warm) {
    if let Err(e) = std::thread::Builder::new()
        .name("warm-teardown".into())
        .spawn(move || drop(warm))
    {
        // The closure (and the entry in it) was dropped with the failed spawn: the
        // teardown ran on this thread after all.
        tracing::warn!("warm sandbox teardown on the caller's thread: {e}");
    }
}

/// Why a spare could not be made (logged; the next start spawns as before).
#[derive(Debug, thiserror::Error)]
pub enum SpareError {
    #[error("its group: {0}")]
    Group(#[from] CgroupError),
    #[error("its sandbox: {0}")]
    Sandbox(#[from] SandboxError),
}

/// The next spare group's number, `.warm-<n>`. Process-wide, not per pool: two kernels of
/// one process (tests) share the parent group `runloop-k<pid>`, and their spares' groups
/// must not collide. Names only; nothing recorded or replayed reads it.
static SPARE_GROUP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The name of a new spare's group, `.warm-<n>`: a name no agent instance has (agent names
/// start with a letter or digit), renamed when an instance takes it.
pub fn spare_group_name() -> String {
    format!(".warm-{}", SPARE_GROUP_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A sandbox [`WarmPool::give`] did not keep, handed back to be ended as before.
#[derive(Debug)]
pub struct Refused {
    pub sandbox: Sandbox,
    pub group: Option<AgentCgroup>,
}

/// How the pool has been used since boot, as the kernel's status gives it (`rlp status`,
/// agtop, tests, `perf/`); "expired" counts those ended unused after [`IDLE_MS`].
pub type WarmStats = runloop_proto::payloads::WarmInfo;

#[derive(Debug, Default)]
struct State {
    waiting: Vec<(WarmKey, Warm)>,
    /// Keys whose spare is being spawned.
    spawning: Vec<WarmKey>,
    closed: bool,
    stats: WarmStats,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Signalled when a spare's spawn ends (for [`WarmPool::close`]).
    spawned: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kernel's warm sandboxes; cheap to clone (every agent holds one).
#[derive(Debug, Clone)]
pub struct WarmPool {
    inner: Arc<Inner>,
}

/// A weak handle, for a task that must not keep the pool alive.
#[derive(Debug, Clone)]
pub struct WeakWarmPool(Weak<Inner>);

impl WeakWarmPool {
    pub fn upgrade(&self) -> Option<WarmPool> {
        self.0.upgrade().map(|inner| WarmPool { inner })
    }
}

impl WarmPool {
    /// A pool of at most `max` waiting sandboxes (clamped to [`WARM_MAX_LIMIT`]).
    pub fn new(max: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                max: max.min(WARM_MAX_LIMIT),
                clock,
                state: Mutex::new(State::default()),
                spawned: Condvar::new(),
            }),
        }
    }

    pub fn downgrade(&self) -> WeakWarmPool {
        WeakWarmPool(Arc::downgrade(&self.inner))
    }

    /// Takes the most recently parked sandbox for `key` that is still alive and idle, if
    /// any. Blocking (a `waitpid` and a `poll` per candidate): call it off the async threads.
    pub fn take(&self, key: &WarmKey) -> Option<Warm> {
        loop {
            let candidate = {
                let mut state = self.inner.lock();
                self.sweep_locked(&mut state);
                let found = state.waiting.iter().rposition(|(k, _)| k == key);
                match found {
                    Some(i) => Some(state.waiting.remove(i).1),
                    None => {
                        state.stats.missed += 1;
                        None
                    }
                }
            }?;
            let mut candidate = candidate;
            let reusable = candidate.sandbox.as_mut().is_some_and(Sandbox::is_reusable);
            let mut state = self.inner.lock();
            if reusable {
                state.stats.taken += 1;
                return Some(candidate);
            }
            state.stats.expired += 1;
            drop(state);
            teardown(candidate);
        }
    }

    /// Offers the idle sandbox of an instance that stopped normally. Refused — handed back
    /// for the caller to end as before — when the pool is closed, or full with no key
    /// holding at least two more than this one (else that key's oldest sandbox is ended
    /// to make room), or the sandbox is not reusable. Blocking, like [`WarmPool::take`].
    pub fn give(
        &self,
        key: WarmKey,
        mut sandbox: Sandbox,
        group: Option<AgentCgroup>,
    ) -> Result<(), Box<Refused>> {
        if !sandbox.is_reusable() {
            return Err(Box::new(Refused { sandbox, group }));
        }
        let mut state = self.inner.lock();
        self.sweep_locked(&mut state);
        if state.closed || self.inner.max == 0 {
            return Err(Box::new(Refused { sandbox, group }));
        }
        if state.waiting.len() >= self.inner.max {
            match room_from_largest(&state.waiting, &key) {
                Some(i) => {
                    let (_, evicted) = state.waiting.remove(i);
                    state.stats.evicted += 1;
                    teardown(evicted);
                }
                None => {
                    state.stats.refused += 1;
                    return Err(Box::new(Refused { sandbox, group }));
                }
            }
        }
        state.stats.given += 1;
        let since_ms = self.inner.clock.now_ms();
        state.waiting.push((
            key,
            Warm {
                sandbox: Some(sandbox),
                group,
                since_ms,
            },
        ));
        Ok(())
    }

    /// Spawns a spare for `key` in the background with `spawn`, unless one waits or is
    /// being spawned for it, the pool is full, or closed.
    pub fn want_spare<F>(&self, key: WarmKey, spawn: F)
    where
        F: FnOnce() -> Result<(Sandbox, Option<AgentCgroup>), SpareError> + Send + 'static,
    {
        {
            let mut state = self.inner.lock();
            self.sweep_locked(&mut state);
            let busy =
                state.waiting.iter().any(|(k, _)| *k == key) || state.spawning.contains(&key);
            if state.closed || busy || state.waiting.len() + state.spawning.len() >= self.inner.max
            {
                return;
            }
            state.spawning.push(key.clone());
        }
        let pool = self.clone();
        let thread_key = key.clone();
        let started = std::thread::Builder::new()
            .name("warm-spare".into())
            .spawn(move || pool.spare_spawned(thread_key, spawn()));
        if let Err(e) = started {
            tracing::warn!("cannot start a warm spare: {e}");
            let mut state = self.inner.lock();
            state.spawning.retain(|k| *k != key);
            self.inner.spawned.notify_all();
        }
    }

    fn spare_spawned(
        &self,
        key: WarmKey,
        spawned: Result<(Sandbox, Option<AgentCgroup>), SpareError>,
    ) {
        let mut state = self.inner.lock();
        if let Some(i) = state.spawning.iter().position(|k| *k == key) {
            state.spawning.remove(i);
        }
        self.inner.spawned.notify_all();
        let (sandbox, group) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                tracing::warn!("warm spare: {e}");
                return;
            }
        };
        let since_ms = self.inner.clock.now_ms();
        let warm = Warm {
            sandbox: Some(sandbox),
            group,
            since_ms,
        };
        if state.closed || state.waiting.len() >= self.inner.max {
            if !state.closed {
                state.stats.refused += 1;
            }
            drop(state);
            drop(warm);
            return;
        }
        state.stats.spares += 1;
        state.waiting.push((key, warm));
    }

    /// Ends the sandboxes that waited longer than [`IDLE_MS`].
    pub fn sweep(&self) {
        let mut state = self.inner.lock();
        self.sweep_locked(&mut state);
    }

    fn sweep_locked(&self, state: &mut State) {
        let now = self.inner.clock.now_ms();
        let mut i = 0;
        while i < state.waiting.len() {
            if now.saturating_sub(state.waiting[i].1.since_ms) >= IDLE_MS {
                let (_, warm) = state.waiting.remove(i);
                state.stats.expired += 1;
                teardown(warm);
            } else {
                i += 1;
            }
        }
    }

    /// Refuses new sandboxes, ends the waiting ones and waits (bounded) for spares still
    /// being spawned, which end as they arrive. Blocking: the kernel's shutdown calls it
    /// off the async threads, before it removes its parent group.
    pub fn close(&self) {
        let waiting = {
            let mut state = self.inner.lock();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        // Here, not on teardown threads: the caller removes the parent group next.
        drop(waiting);
        let state = self.inner.lock();
        let (state, timeout) = self
            .inner
            .spawned
            .wait_timeout_while(state, Duration::from_millis(CLOSE_WAIT_MS), |s| {
                !s.spawning.is_empty()
            })
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            tracing::warn!(
                "warm pool closed with {} spares still being spawned",
                state.spawning.len()
            );
        }
    }

    /// How the pool has been used, and how many wait now.
    pub fn stats(&self) -> WarmStats {
        let state = self.inner.lock();
        WarmStats {
            waiting: state.waiting.len() as u64,
            ..state.stats
        }
    }

    /// The pids of the sandboxes waiting now.
    pub fn waiting_pids(&self) -> Vec<u32> {
        self.inner
            .lock()
            .waiting
            .iter()
            .filter_map(|(_, w)| w.pid())
            .collect()
    }

    /// The groups the waiting sandboxes sit in (given-back ones; spares have none).
    pub fn waiting_groups(&self) -> Vec<String> {
        self.inner
            .lock()
            .waiting
            .iter()
            .filter_map(|(_, w)| w.group.as_ref().map(|g| g.path().to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(module: &str) -> WarmKey {
        WarmKey {
            program: PathBuf::from("/bin/sandbox-host"),
            module_path: PathBuf::from(module),
            limits: SandboxLimits::default(),
            group: None,
        }
    }

    /// A waiting entry without a process (nothing to end when dropped).
    fn idle(since_ms: u64) -> Warm {
        Warm {
            sandbox: None,
            group: None,
            since_ms,
        }
    }

    #[test]
    fn a_full_pool_makes_room_only_from_a_key_holding_two_more() {
        let (a, b) = (key("a.cwasm"), key("b.cwasm"));
        // Four of `a`, oldest first: `b` (none waiting) takes the oldest `a`'s room.
        let waiting: Vec<_> = (0..4).map(|t| (a.clone(), idle(t))).collect();
        assert_eq!(room_from_largest(&waiting, &b), Some(0));
        // `a` itself never evicts its own.
        assert_eq!(room_from_largest(&waiting, &a), None);

        // Two and two: even, `b` has its share.
        let mut waiting = vec![
            (a.clone(), idle(0)),
            (b.clone(), idle(1)),
            (a.clone(), idle(2)),
            (b.clone(), idle(3)),
        ];
        assert_eq!(room_from_largest(&waiting, &b), None);
        // Three `a`, one `b`: `b` may take the oldest `a` (position 0) — after it, two each.
        waiting[3].0 = a.clone();
        assert_eq!(room_from_largest(&waiting, &b), Some(0));
        assert_eq!(room_from_largest(&[], &a), None);
    }
}
