//! Circuit breakers, one per agent: closed → open after N failures in a window →
//! half-open probe → closed.
//!
//! - **Closed**: calls pass. Each failure is recorded at the injected clock's time; once
//!   [`BreakerConfig::failures_max`] failures fall within [`BreakerConfig::window_ms`] the
//!   breaker opens.
//! - **Open**: calls fail fast with [`BreakerError::Open`], which says how long until a
//!   probe is allowed. After [`BreakerConfig::open_ms`] the next call is admitted as the
//!   single probe and the breaker is half-open.
//! - **Half-open**: only the probe is in flight; other calls fail fast. The probe's
//!   success closes the breaker (and forgets past failures); its failure opens it again
//!   for another `open_ms`.
//!
//! The state machine is the plain [`Breaker`] (no actor, no time source of its own); the
//! [`BreakerActor`] holds one per agent, at most [`BREAKERS_MAX`].
//!
//! Lifecycle: the breakers live in a [`BreakerStore`] created once outside the actor (the
//! kernel captures it in the child spec) and handed in [`BreakerArgs`]; a breaker is
//! created on an agent's first call. A restarted breaker actor continues with the same
//! store, so an open breaker stays open (with its failures and last error) across the
//! restart instead of letting a crash-looping agent's calls through.
//! Mailbox bound: every request is a call whose sender waits for the answer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::Clock;
use serde::Serialize;

use crate::names::AgentName;

/// Most agents with a breaker.
pub const BREAKERS_MAX: usize = 65_536;
/// Most failures remembered per breaker; `failures_max` may not exceed it.
pub const BREAKER_FAILURES_MAX: usize = 1_024;
/// Longest last-error text kept, in bytes.
pub const BREAKER_ERROR_BYTES_MAX: usize = 512;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BreakerConfig {
    pub failures_max: u32,
    pub window_ms: u64,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_max: 5,
            window_ms: 30_000,
            open_ms: 10_000,
        }
    }
}

/// A breaker's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// How a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Pass,
    /// The breaker is half-open and this call is its probe.
    Probe,
}

/// A call refused by an open breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    #[error(
        "circuit breaker for agent {agent} is open after {failures} failures within {window_ms} ms (last: {last_error}); next probe in {retry_in_ms} ms"
    )]
    Open {
        agent: AgentName,
        failures: u32,
        window_ms: u64,
        retry_in_ms: u64,
        last_error: String,
    },
    #[error("circuit breaker for agent {agent} is half-open and its probe is still running")]
    ProbeInFlight { agent: AgentName },
    #[error("circuit breakers: already tracking {BREAKERS_MAX} agents")]
    TooManyBreakers,
    #[error("circuit breaker actor is not running")]
    Down,
}

/// What a breaker looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub failures_in_window: u32,
    pub opened_at_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// One breaker's state machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    failures: VecDeque<u64>,
    opened_at_ms: u64,
    probe_in_flight: bool,
    last_error: Option<String>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        assert!(config.failures_max >= 1, "a breaker must allow one failure");
        assert!((config.failures_max as usize) <= BREAKER_FAILURES_MAX);
        Self {
            config,
            state: BreakerState::Closed,
            failures: VecDeque::new(),
            opened_at_ms: 0,
            probe_in_flight: false,
            last_error: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go ahead at `now_ms`.
    pub fn admit(&mut self, agent: &AgentName, now_ms: u64) -> Result<Admission, BreakerError> {
        match self.state {
            BreakerState::Closed => Ok(Admission::Pass),
            BreakerState::Open => {
                let reopen_ms = self.opened_at_ms.saturating_add(self.config.open_ms);
                if now_ms >= reopen_ms {
                    self.state = BreakerState::HalfOpen;
                    self.probe_in_flight = true;
                    return Ok(Admission::Probe);
                }
                Err(BreakerError::Open {
                    agent: agent.clone(),
                    failures: u32::try_from(self.failures.len()).unwrap_or(u32::MAX),
                    window_ms: self.config.window_ms,
                    retry_in_ms: reopen_ms - now_ms,
                    last_error: self.last_error.clone().unwrap_or_default(),
                })
            }
            BreakerState::HalfOpen if self.probe_in_flight => Err(BreakerError::ProbeInFlight {
                agent: agent.clone(),
            }),
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                Ok(Admission::Probe)
            }
        }
    }

    /// Records a call's success.
    pub fn success(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.state = BreakerState::Closed;
            self.failures.clear();
        }
        self.probe_in_flight = false;
    }

    /// Records a call's failure at `now_ms`.
    pub fn failure(&mut self, error: &str, now_ms: u64) {
        let mut error = error.to_owned();
        if error.len() > BREAKER_ERROR_BYTES_MAX {
            let mut cut = BREAKER_ERROR_BYTES_MAX;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        self.last_error = Some(error);
        self.probe_in_flight = false;
        match self.state {
            BreakerState::HalfOpen | BreakerState::Open => {
                self.state = BreakerState::Open;
                self.opened_at_ms = now_ms;
            }
            BreakerState::Closed => {
                self.prune(now_ms);
                self.failures.push_back(now_ms);
                if self.failures.len() >= self.config.failures_max as usize {
                    self.state = BreakerState::Open;
                    self.opened_at_ms = now_ms;
                }
            }
        }
        assert!(self.failures.len() <= BREAKER_FAILURES_MAX);
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(&at_ms) = self.failures.front() {
            if now_ms.saturating_sub(at_ms) < self.config.window_ms {
                break;
            }
            self.failures.pop_front();
        }
    }

    pub fn snapshot(&mut self, now_ms: u64) -> BreakerSnapshot {
        if self.state == BreakerState::Closed {
            self.prune(now_ms);
        }
        BreakerSnapshot {
            state: self.state,
            failures_in_window: u32::try_from(self.failures.len()).unwrap_or(u32::MAX),
            opened_at_ms: (self.state != BreakerState::Closed).then_some(self.opened_at_ms),
            last_error: self.last_error.clone(),
        }
    }
}

/// A call's result, as the breaker counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    Failure(String),
}

/// The breaker actor's requests (closed).
#[derive(Debug)]
pub enum BreakerMsg {
    Admit(AgentName, RpcReplyPort<Result<Admission, BreakerError>>),
    Record(AgentName, CallOutcome, RpcReplyPort<()>),
    Snapshot(AgentName, RpcReplyPort<BreakerSnapshot>),
    /// Every agent's breaker at once (a status of a thousand agents asks once, not a
    /// thousand times); agents without one are closed.
    SnapshotAll(RpcReplyPort<HashMap<AgentName, BreakerSnapshot>>),
    /// Forgets an agent's breaker (the agent was removed).
    Forget(AgentName, RpcReplyPort<()>),
}

/// The breakers of every agent, shared by the breaker actor's instances.
#[derive(Clone, Default)]
pub struct BreakerStore {
    breakers: Arc<Mutex<HashMap<AgentName, Breaker>>>,
}

impl fmt::Debug for BreakerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerStore")
            .field("breakers", &self.len())
            .finish()
    }
}

impl BreakerStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Agents with a breaker.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentName, Breaker>> {
        // A panic while the lock was held left a breaker mid-update at worst, and each
        // update leaves a valid state machine: keep going with it.
        self.breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the breaker actor is started with.
#[derive(Clone)]
pub struct BreakerArgs {
    pub config: BreakerConfig,
    pub clock: Arc<dyn Clock>,
    /// The breakers, kept across restarts of the actor.
    pub store: BreakerStore,
}

impl fmt::Debug for BreakerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerArgs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The breaker actor's state: its config and clock, and the store of breakers.
pub struct BreakerActorState {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    store: BreakerStore,
}

impl fmt::Debug for BreakerActorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerActorState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The breaker actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct BreakerActor;

impl Actor for BreakerActor {
    type Msg = BreakerMsg;
    type State = BreakerActorState;
    type Arguments = BreakerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<BreakerMsg>,
        args: BreakerArgs,
    ) -> Result<BreakerActorState, ActorProcessingErr> {
        let _ = Breaker::new(args.config);
        Ok(BreakerActorState {
            config: args.config,
            clock: args.clock,
            store: args.store,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<BreakerMsg>,
        message: BreakerMsg,
        state: &mut BreakerActorState,
    ) -> Result<(), ActorProcessingErr> {
        let now_ms = state.clock.now_ms();
        let config = state.config;
        let mut breakers = state.store.lock();
        match message {
            BreakerMsg::Admit(agent, reply) => {
                let result = match breaker(&mut breakers, config, &agent) {
                    Some(breaker) => breaker.admit(&agent, now_ms),
                    None => Err(BreakerError::TooManyBreakers),
                };
                let _ = reply.send(result);
            }
            BreakerMsg::Record(agent, outcome, reply) => {
                if let Some(breaker) = breaker(&mut breakers, config, &agent) {
                    match outcome {
                        CallOutcome::Success => breaker.success(),
                        CallOutcome::Failure(error) => breaker.failure(&error, now_ms),
                    }
                }
                let _ = reply.send(());
            }
            BreakerMsg::Snapshot(agent, reply) => {
                let snap = match breakers.get_mut(&agent) {
                    Some(breaker) => breaker.snapshot(now_ms),
                    None => Breaker::new(config).snapshot(now_ms),
                };
                let _ = reply.send(snap);
            }
            BreakerMsg::SnapshotAll(reply) => {
                let all = breakers
                    .iter_mut()
                    .map(|(agent, breaker)| (agent.clone(), breaker.snapshot(now_ms)))
                    .collect();
                let _ = reply.send(all);
            }
            BreakerMsg::Forget(agent, reply) => {
                breakers.remove(&agent);
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// `agent`'s breaker, created closed on first use; `None` when [`BREAKERS_MAX`] are tracked.
fn breaker<'a>(
    breakers: &'a mut HashMap<AgentName, Breaker>,
    config: BreakerConfig,
    agent: &AgentName,
) -> Option<&'a mut Breaker> {
    if !breakers.contains_key(agent) && breakers.len() == BREAKERS_MAX {
        return None;
    }
    Some(
        breakers
            .entry(agent.clone())
            .or_insert_with(|| Breaker::new(config)),
    )
}

/// How long a caller waits for the breaker actor.
pub const BREAKER_CALL_TIMEOUT_MS: u64 = 5_000;

/// A cloneable client of the breaker actor.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    actor: ActorRef<BreakerMsg>,
}

impl BreakerHandle {
    pub fn new(actor: ActorRef<BreakerMsg>) -> Self {
        Self { actor }
    }

    pub fn actor(&self) -> &ActorRef<BreakerMsg> {
        &self.actor
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> BreakerMsg,
    ) -> Option<T> {
        let timeout = Some(Duration::from_millis(BREAKER_CALL_TIMEOUT_MS));
        match self.actor.call(msg, timeout).await {
            Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
            _ => None,
        }
    }

    /// Whether a call to `agent` may go ahead; an open breaker fails fast.
    pub async fn admit(&self, agent: &AgentName) -> Result<Admission, BreakerError> {
        let agent = agent.clone();
        self.ask(|r| BreakerMsg::Admit(agent, r))
            .await
            .unwrap_or(Err(BreakerError::Down))
    }

    pub async fn record(&self, agent: &AgentName, outcome: CallOutcome) {
        let agent = agent.clone();
        let _ = self.ask(|r| BreakerMsg::Record(agent, outcome, r)).await;
    }

    pub async fn snapshot(&self, agent: &AgentName) -> Option<BreakerSnapshot> {
        let agent = agent.clone();
        self.ask(|r| BreakerMsg::Snapshot(agent, r)).await
    }

    pub async fn forget(&self, agent: &AgentName) {
        let agent = agent.clone();
        let _ = self.ask(|r| BreakerMsg::Forget(agent, r)).await;
    }

    /// Every agent's breaker that has one (`None` when the actor is down).
    pub async fn snapshot_all(&self) -> Option<HashMap<AgentName, BreakerSnapshot>> {
        self.ask(BreakerMsg::SnapshotAll).await
    }
}
