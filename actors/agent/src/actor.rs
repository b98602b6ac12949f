//! The agent actor: one sandbox-host process and its cgroup, at-least-once invokes.
//!
//! Lifecycle:
//! - `pre_start`, on a blocking thread, takes a warm sandbox of the same key and renames
//!   its group `<parent>/<agent>-<generation>` ([`crate::warm`]), or else creates that
//!   group (a fresh name per instance, so a restart never races the previous instance's
//!   removal), spawns the sandbox into it and waits for `control.ready.v1`; it asks the
//!   pool for a spare of its key and starts the instance's [`Driver`] thread, which owns the sandbox from then on. It then asks the
//!   shared [`InFlight`] ledger what the previous instance left unanswered: each such
//!   invoke is handed to the driver again, oldest first, or, past its attempts, answered
//!   with an error and recorded as a dead letter (only the invoke the dead sandbox was
//!   running is charged an attempt). A sandbox that sends a malformed frame during the
//!   handshake parks the agent in quarantine and the instance stops at once.
//! - `Invoke`: quarantine check, breaker admission (no round trip while the breaker is
//!   known closed: it only opens on failures this agent reports), ledger `begin`, then the
//!   job goes to the driver and the actor is free for the next message. The driver answers
//!   the caller when the outcome arrives (a reply, or a guest error such as `Trap`).
//! - `SandboxFailed` (from the driver): the sandbox died mid-invoke or while idle (SIGKILL,
//!   OOM kill, deadline), which fails the actor so the supervisor restarts it — unanswered
//!   invokes stay in the ledger for the next instance — or it sent a malformed frame, which
//!   parks the agent in quarantine (the reason names the RMP error) and stops it normally.
//! - `post_stop` (normal stop) stops the driver after the invokes in the sandbox finish and
//!   gives a run node's idle sandbox, with its group, back to the warm pool — or, for a
//!   standalone agent, when the pool refuses it, or the agent was parked, shuts it down
//!   politely; on failure ractor skips `post_stop`, and the state's
//!   `Drop` ends the driver (which kills the sandbox) and removes the cgroup in the
//!   background, off the restart path.
//!
//! Mailbox bound: callers of `Invoke` wait for their reply (call), so the mailbox holds at
//! most one message per waiting caller, and the ledger bounds what is admitted
//! ([`runloop_actors::delivery::IN_FLIGHT_MAX`]); `SandboxFailed` is sent once per driver.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_actors::breaker::{Admission, BreakerHandle, BreakerMsg, CallOutcome};
use runloop_actors::delivery::{
    DeadLetter, DeadLetterMsg, DeadLetterReason, InFlight, InFlightError, Key,
};
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::{QuarantineHandle, QuarantineMsg, QuarantineReason};
use runloop_actors::supervisor::Slot;
use runloop_bundle::caps::Policy;
use runloop_proto::payloads::{AgentInput, AgentOutput, SandboxLimits};
use runloop_proto::{Clock, MsgId, TraceId};
use runloop_sandbox::cgroup::{self, AgentCgroup, CgroupLimits, CgroupSupport};
use runloop_sandbox::{Sandbox, SandboxError, SpawnConfig};

use crate::decorate::{HandlerFactory, PlainHandlers};
use crate::driver::{Driver, Job};
use crate::handler::Services;
use crate::metrics::{AgentMetrics, AgentState};
use crate::warm::{WarmKey, WarmPool};

/// Times one invoke may be running in a sandbox that dies before it becomes a dead letter.
pub const INVOKE_ATTEMPTS_MAX: u32 = 3;

/// Where an agent's cgroups go and their limits.
#[derive(Debug, Clone)]
pub struct CgroupPlan {
    /// Parent group under each controller's root (e.g. `runloop-k<pid>`).
    pub parent: String,
    pub limits: CgroupLimits,
}

/// Everything needed to (re)start one agent's sandbox.
#[derive(Debug)]
pub struct AgentConfig {
    pub name: AgentName,
    /// The bundle's name (an opening's instances are named by their node): what
    /// capability grants are keyed by.
    pub bundle_name: String,
    /// Its cgroups are `<parent>/<cgroup_name>-<generation>` (the name, prefixed by the
    /// run for an opening's agents, so two runs' instances never share a group).
    pub cgroup_name: String,
    /// The `runloop-sandbox-host` binary.
    pub program: PathBuf,
    /// The agent's compiled `.cwasm`.
    pub module_path: PathBuf,
    /// The bundle's `policy.caps`.
    pub policy: Policy,
    pub limits: SandboxLimits,
    /// `None`: run without a cgroup (cgroups unavailable here).
    pub cgroup: Option<CgroupPlan>,
}

/// The kernel actors an agent talks to; empty slots switch the feature off.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub breaker: Slot<BreakerMsg>,
    pub quarantine: Slot<QuarantineMsg>,
    pub dead_letters: Slot<DeadLetterMsg>,
}

/// What one agent's instances share across restarts; created once per agent.
#[derive(Debug, Clone)]
pub struct AgentShared {
    pub config: Arc<AgentConfig>,
    pub inflight: InFlight<Pending>,
    pub metrics: AgentMetrics,
    pub services: Services,
    /// Builds the host-call handler of each instance's driver.
    pub handlers: Arc<dyn HandlerFactory>,
    pub links: Links,
    pub clock: Arc<dyn Clock>,
    generation: Arc<AtomicU64>,
    /// The breaker answered `Pass` and no failure was reported since: admit without
    /// asking (a breaker only opens on failures, and this agent reports its own).
    breaker_closed: Arc<AtomicBool>,
    /// The invoke the last dead sandbox was running, charged an attempt at redelivery.
    blamed: Arc<Mutex<Option<Key>>>,
    /// The kernel's warm sandboxes, when it keeps any ([`crate::warm`]).
    warm: Option<WarmPool>,
    /// Whether a normal stop gives the idle sandbox back to `warm` (a run's node) or ends
    /// it (a standalone agent a person stopped: its process goes with it).
    give_back: bool,
}

impl AgentShared {
    pub fn new(
        config: AgentConfig,
        services: Services,
        links: Links,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let inflight = InFlight::new(config.name.clone(), INVOKE_ATTEMPTS_MAX, clock.clone());
        Self {
            config: Arc::new(config),
            inflight,
            metrics: AgentMetrics::default(),
            services,
            handlers: Arc::new(PlainHandlers),
            links,
            clock,
            generation: Arc::new(AtomicU64::new(0)),
            breaker_closed: Arc::new(AtomicBool::new(false)),
            blamed: Arc::new(Mutex::new(None)),
            warm: None,
            give_back: false,
        }
    }

    /// Instances take warm sandboxes from `pool` (and ask it for spares); with
    /// `give_back`, an instance that stops normally gives its idle sandbox back.
    pub fn with_warm(mut self, pool: WarmPool, give_back: bool) -> Self {
        self.warm = Some(pool);
        self.give_back = give_back;
        self
    }

    /// Host calls of every instance go through handlers built by `factory`.
    pub fn with_handlers(mut self, factory: Arc<dyn HandlerFactory>) -> Self {
        self.handlers = factory;
        self
    }

    /// A failure is being reported: the next message asks the breaker again.
    pub(crate) fn breaker_unknown(&self) {
        self.breaker_closed.store(false, Ordering::SeqCst);
    }

    /// Records which invoke the sandbox was running when it died (`None`: it was idle).
    pub(crate) fn blame(&self, running: Option<Key>) {
        *self.blamed.lock().unwrap_or_else(|p| p.into_inner()) = running;
    }

    fn take_blame(&self) -> Option<Key> {
        self.blamed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Answers every invoke still in flight with `error` and records each as a dead
    /// letter with `reason` (the agent will not run them).
    pub fn fail_in_flight(&self, error: &AgentError, reason: &DeadLetterReason) {
        for (trace_id, msg_id, pending) in self.inflight.drain() {
            self.dead_letter(trace_id, msg_id, reason.clone());
            pending.answer(Err(error.clone()));
        }
    }

    fn dead_letter(&self, trace_id: TraceId, msg_id: MsgId, reason: DeadLetterReason) {
        let record = DeadLetter {
            agent: self.config.name.clone(),
            trace_id,
            msg_id,
            reason,
            at_ms: self.clock.now_ms(),
        };
        match self.links.dead_letters.get() {
            Some(actor) => {
                let _ = actor.cast(DeadLetterMsg::Record(record));
            }
            None => tracing::warn!(?record, "dead letter (no dead-letter actor)"),
        }
    }
}

/// A successful invoke.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    pub outputs: Vec<AgentOutput>,
    /// 1 for a first delivery, more when redelivered after a sandbox died.
    pub attempt: u32,
    pub round_trip_us: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Why an invoke got no outputs (closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    BreakerOpen(String),
    #[error("agent {agent} is quarantined: {message}")]
    Quarantined { agent: String, message: String },
    #[error("agent {agent}: the guest failed: {error}")]
    Guest {
        agent: String,
        error: String,
        /// Another attempt may succeed (`InvokeError::retryable`).
        retryable: bool,
    },
    #[error("agent {agent}: given up after {attempts} deliveries: {last_error}")]
    AttemptsExhausted {
        agent: String,
        attempts: u32,
        last_error: String,
    },
    #[error("agent {agent} was stopped before answering")]
    Stopped { agent: String },
    #[error("{0}")]
    Refused(String),
}

/// The reply to one invoke.
pub type InvokeResult = Result<AgentReply, AgentError>;

/// An invoke in the ledger: its input and the waiting caller's port (taken once). Cheap to
/// clone: the ledger, the driver and a redelivery share one input.
#[derive(Debug, Clone)]
pub struct Pending {
    input: Arc<AgentInput>,
    reply: Arc<Mutex<Option<RpcReplyPort<InvokeResult>>>>,
}

impl Pending {
    /// The message to deliver.
    pub fn input(&self) -> &AgentInput {
        &self.input
    }

    /// Sends the answer if none was sent yet; `true` when this call sent it.
    pub fn answer(&self, result: InvokeResult) -> bool {
        let port = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take();
        port.is_some_and(|p| p.send(result).is_ok())
    }
}

/// The agent actor's requests (closed).
#[derive(Debug)]
pub enum AgentMsg {
    Invoke {
        trace_id: TraceId,
        msg_id: MsgId,
        /// Shared, so a sender can hand the same message to a restarted instance.
        input: Arc<AgentInput>,
        reply: RpcReplyPort<InvokeResult>,
    },
    /// Internal (from the driver): the sandbox failed, mid-invoke (`idle` false) or
    /// between invokes; the driver has ended.
    SandboxFailed { error: SandboxError, idle: bool },
}

/// The sandbox (through its driver) and its cgroup; dropping ends the one and removes the
/// other.
#[derive(Debug, Default)]
pub struct Confined {
    driver: Option<Driver>,
    cgroup: Option<AgentCgroup>,
}

impl Drop for Confined {
    fn drop(&mut self) {
        // Ends the driver thread, which kills and reaps the sandbox if it still runs.
        let driver = self.driver.take().and_then(Driver::abort);
        let group = self.cgroup.take();
        if driver.is_none() && group.is_none() {
            return;
        }
        // Off the restart path: wait for the driver to have reaped the sandbox, then
        // remove its (now empty) group.
        let spawned = std::thread::Builder::new()
            .name("agent-teardown".into())
            .spawn(move || {
                if let Some(thread) = driver {
                    let _ = thread.join();
                }
                if let Some(group) = group {
                    remove_cgroup(group);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start agent teardown: {e}");
        }
    }
}

fn remove_cgroup(group: AgentCgroup) {
    let path = group.path().to_owned();
    if let Err(e) = group.remove() {
        tracing::warn!("remove cgroup {path}: {e}");
    }
}

/// The actor's state.
#[derive(Debug)]
pub struct AgentActorState {
    shared: AgentShared,
    confined: Confined,
    /// Parked in quarantine: answer everything with `Quarantined` until stopped.
    parked: Option<String>,
}

/// The agent actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentActor;

fn cgroup_support() -> CgroupSupport {
    static SUPPORT: std::sync::OnceLock<CgroupSupport> = std::sync::OnceLock::new();
    SUPPORT.get_or_init(cgroup::detect).clone()
}

async fn spawn_confined(
    shared: &AgentShared,
    generation: u64,
) -> Result<(Confined, Sandbox), ActorProcessingErr> {
    let config = shared.config.clone();
    let name = format!("{}-{generation}", config.cgroup_name);
    let plan = group_plan(&config);
    let warm = shared.warm.clone().map(|pool| (pool, WarmKey::of(&config)));
    let (blocking_config, blocking_plan, blocking_warm) =
        (config.clone(), plan.clone(), warm.clone());
    let (group, result) = tokio::task::spawn_blocking(move || {
        let config = blocking_config;
        // A warm sandbox of this key, its group renamed for this instance, else a fresh
        // group and a spawn into it.
        if let Some((pool, key)) = &blocking_warm
            && let Some(taken) = pool.take(key)
        {
            let (sandbox, group) = taken.enter(config.name.as_str(), &name);
            return Ok((group, Ok(sandbox)));
        }
        let group = match &blocking_plan {
            Some(plan) => Some(AgentCgroup::create(&plan.parent, &name, &plan.limits)?),
            None => None,
        };
        let result = Sandbox::spawn(&spawn_config(&config, config.name.as_str()), group.as_ref());
        Ok::<_, cgroup::CgroupError>((group, result))
    })
    .await??;
    let confined = Confined {
        driver: None,
        cgroup: group,
    };
    let sandbox = match result {
        Ok(sandbox) => sandbox,
        Err(e) => return Err(Box::new(SpawnFailed(e))),
    };
    if let Some((pool, key)) = warm {
        // The next start or restart of this key finds one ready.
        let spare = config.clone();
        pool.want_spare(key, move || {
            let group = match &plan {
                Some(plan) => Some(AgentCgroup::create(
                    &plan.parent,
                    &crate::warm::spare_group_name(),
                    &plan.limits,
                )?),
                None => None,
            };
            let sandbox = Sandbox::spawn(&spawn_config(&spare, WARM_SPARE_AGENT), group.as_ref());
            match sandbox {
                Ok(sandbox) => Ok((sandbox, group)),
                Err(e) => {
                    if let Some(group) = group {
                        remove_cgroup(group);
                    }
                    Err(e.into())
                }
            }
        });
    }
    Ok((confined, sandbox))
}

/// Where this agent's groups go, when it has them and the machine can make them.
fn group_plan(config: &AgentConfig) -> Option<CgroupPlan> {
    let plan = config.cgroup.as_ref()?;
    match cgroup_support() {
        CgroupSupport::V1 | CgroupSupport::V2 => Some(plan.clone()),
        CgroupSupport::Unavailable(reason) => {
            cgroup::notice_once(&reason);
            None
        }
    }
}

/// The name a spare sandbox carries in its errors until an instance takes it.
const WARM_SPARE_AGENT: &str = "(warm spare)";

fn spawn_config(config: &AgentConfig, agent: &str) -> SpawnConfig {
    SpawnConfig {
        program: config.program.clone(),
        extra_args: Vec::new(),
        agent: agent.to_owned(),
        module_path: config.module_path.clone(),
        limits: config.limits,
    }
}

/// A failed spawn, kept whole so `pre_start` can tell malformed frames apart.
#[derive(Debug, thiserror::Error)]
#[error("spawn the sandbox: {0}")]
struct SpawnFailed(SandboxError);

fn malformed(err: &SandboxError) -> Option<QuarantineReason> {
    match err {
        SandboxError::BadFrame { error, exit } => Some(QuarantineReason::MalformedFrame {
            error: error.name().to_owned(),
            detail: format!("{error} (sandbox {exit})"),
        }),
        SandboxError::Protocol { detail, exit } => Some(QuarantineReason::MalformedFrame {
            error: "Protocol".to_owned(),
            detail: format!("{detail} (sandbox {exit})"),
        }),
        _ => None,
    }
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentActorState;
    type Arguments = AgentShared;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        shared: AgentShared,
    ) -> Result<AgentActorState, ActorProcessingErr> {
        let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
        shared.metrics.set_state(AgentState::Starting);
        let mut state = AgentActorState {
            shared: shared.clone(),
            confined: Confined::default(),
            parked: None,
        };
        match spawn_confined(&shared, generation).await {
            Ok((confined, sandbox)) => {
                let cgroup = confined.cgroup.as_ref().map(|g| g.path().to_owned());
                shared
                    .metrics
                    .started(sandbox.pid(), cgroup, generation > 0);
                state.confined = confined;
                let runtime = tokio::runtime::Handle::current();
                let driver = Driver::start(sandbox, shared.clone(), myself.clone(), runtime)?;
                state.confined.driver = Some(driver);
            }
            Err(e) => match e.downcast::<SpawnFailed>() {
                Ok(failed) => match malformed(&failed.0) {
                    Some(reason) => {
                        park(&myself, &mut state, reason).await;
                        return Ok(state);
                    }
                    None => {
                        shared.metrics.error(failed.to_string());
                        return Err(failed);
                    }
                },
                Err(other) => return Err(other),
            },
        }
        redeliver(&shared, &state);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        message: AgentMsg,
        state: &mut AgentActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgentMsg::Invoke {
                trace_id,
                msg_id,
                input,
                reply,
            } => {
                admit(state, trace_id, msg_id, input, reply).await;
                Ok(())
            }
            AgentMsg::SandboxFailed { error, idle } => {
                let shared = state.shared.clone();
                let agent = shared.config.name.clone();
                // The driver has ended (it sent this as its last act).
                if let Some(thread) = state.confined.driver.take().and_then(Driver::abort) {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
                shared.breaker_unknown();
                if let Some(b) = shared.links.breaker.get().map(BreakerHandle::new) {
                    b.record(&agent, CallOutcome::Failure(error.to_string()))
                        .await;
                }
                if let Some(reason) = malformed(&error) {
                    park(&myself, state, reason).await;
                    return Ok(());
                }
                let cause = oom_cause(&shared.config, state.confined.cgroup.as_ref());
                let text = if idle {
                    format!("sandbox died while idle: {error}{cause}")
                } else {
                    format!("sandbox failed mid-invoke: {error}{cause}")
                };
                shared.metrics.error(text.clone());
                shared.metrics.set_state(AgentState::Restarting);
                // Unanswered invokes stay in the ledger: the next instance redelivers them.
                Err(format!("agent {agent}: {text}").into())
            }
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<AgentMsg>,
        state: &mut AgentActorState,
    ) -> Result<(), ActorProcessingErr> {
        if state.parked.is_none() {
            state.shared.metrics.set_state(AgentState::Stopped);
        }
        // A healthy run node's sandbox goes back to the warm pool with its group (not a
        // parked one's: quarantine means the agent misbehaved).
        let warm = match (&state.parked, state.shared.give_back) {
            (None, true) => state.shared.warm.clone(),
            _ => None,
        };
        let key = WarmKey::of(&state.shared.config);
        let driver = state.confined.driver.take();
        let group = state.confined.cgroup.take();
        let _ = tokio::task::spawn_blocking(move || {
            let sandbox = driver.and_then(Driver::stop);
            let (sandbox, group) = match (sandbox, warm) {
                (Some(sandbox), Some(pool)) => match pool.give(key, sandbox, group) {
                    Ok(()) => return,
                    Err(refused) => (Some(refused.sandbox), refused.group),
                },
                (sandbox, _) => (sandbox, group),
            };
            if let Some(sandbox) = sandbox {
                sandbox.shutdown();
            }
            if let Some(group) = group {
                remove_cgroup(group);
            }
        })
        .await;
        state.shared.metrics.sandbox_gone();
        Ok(())
    }
}

/// `" (out of memory: …)"` when the instance's cgroup OOM-killed it (its group is fresh per
/// instance, so any OOM kill it counts is this instance's), else `""`. A SIGKILL says only
/// "killed"; the cgroup says why.
fn oom_cause(config: &AgentConfig, group: Option<&AgentCgroup>) -> String {
    let Some(stats) = group.and_then(|g| g.stats().ok()) else {
        return String::new();
    };
    if stats.oom_kills == 0 {
        return String::new();
    }
    let limit = config
        .cgroup
        .as_ref()
        .and_then(|c| c.limits.memory_bytes_max)
        .map(|b| format!(" of {} MiB", b >> 20))
        .unwrap_or_default();
    format!(" (out of memory: the cgroup's OOM killer, memory limit{limit})")
}

/// Hands what the previous instance left unanswered to the fresh driver, oldest first;
/// invokes past their attempts are answered with an error and dead-lettered.
fn redeliver(shared: &AgentShared, state: &AgentActorState) {
    let blamed = shared.take_blame();
    let redelivery = shared.inflight.redeliver(|key| Some(key) == blamed);
    for (trace_id, msg_id, pending) in redelivery.exhausted {
        let last_error = shared
            .metrics
            .counters()
            .last_error
            .unwrap_or_else(|| "sandbox died".into());
        shared.dead_letter(
            trace_id,
            msg_id,
            DeadLetterReason::AttemptsExhausted {
                attempts: INVOKE_ATTEMPTS_MAX,
                last_error: last_error.clone(),
            },
        );
        pending.answer(Err(AgentError::AttemptsExhausted {
            agent: shared.config.name.to_string(),
            attempts: INVOKE_ATTEMPTS_MAX,
            last_error,
        }));
    }
    let driver = state.confined.driver.as_ref().expect("started above");
    for (trace_id, msg_id, pending, attempt) in redelivery.again {
        shared.metrics.redelivered();
        // A redelivery was admitted once already; its outcome is reported as a probe's so
        // a success also closes a breaker that opened meanwhile.
        driver.push(Job {
            trace_id,
            msg_id,
            pending,
            attempt,
            probe: true,
        });
    }
}

/// Admits one message (quarantine, breaker, ledger) and hands it to the driver.
async fn admit(
    state: &mut AgentActorState,
    trace_id: TraceId,
    msg_id: MsgId,
    input: Arc<AgentInput>,
    reply: RpcReplyPort<InvokeResult>,
) {
    let shared = &state.shared;
    shared.metrics.message_in();
    let agent = &shared.config.name;
    if let Some(message) = &state.parked {
        let _ = reply.send(Err(AgentError::Quarantined {
            agent: agent.to_string(),
            message: message.clone(),
        }));
        return;
    }
    let mut probe = false;
    if !shared.breaker_closed.load(Ordering::SeqCst)
        && let Some(breaker) = shared.links.breaker.get()
    {
        match BreakerHandle::new(breaker).admit(agent).await {
            Ok(Admission::Pass) => shared.breaker_closed.store(true, Ordering::SeqCst),
            Ok(Admission::Probe) => probe = true,
            Err(e) => {
                shared.dead_letter(
                    trace_id,
                    msg_id,
                    DeadLetterReason::BreakerOpen {
                        message: e.to_string(),
                    },
                );
                let _ = reply.send(Err(AgentError::BreakerOpen(e.to_string())));
                return;
            }
        }
    }
    let pending = Pending {
        input,
        reply: Arc::new(Mutex::new(Some(reply))),
    };
    if let Err(e) = shared.inflight.begin(trace_id, msg_id, pending.clone()) {
        // A duplicate of an invoke in flight or answered: the first delivery answers;
        // this caller is told why it gets nothing.
        let refused = match e {
            InFlightError::Full { .. }
            | InFlightError::AlreadyInFlight { .. }
            | InFlightError::AlreadyDone { .. } => AgentError::Refused(e.to_string()),
        };
        pending.answer(Err(refused));
        return;
    }
    let Some(driver) = &state.confined.driver else {
        // Between a failure and the restart: the next instance redelivers it.
        return;
    };
    driver.push(Job {
        trace_id,
        msg_id,
        pending,
        attempt: 1,
        probe,
    });
}

/// Parks the agent: quarantine record, every invoke in flight answered and dead-lettered,
/// the sandbox killed, and this instance stopped (normally: no restart).
async fn park(myself: &ActorRef<AgentMsg>, state: &mut AgentActorState, reason: QuarantineReason) {
    let shared = state.shared.clone();
    let message = reason.to_string();
    shared.metrics.error(format!("quarantined: {message}"));
    match shared.links.quarantine.get() {
        Some(q) => {
            if let Err(e) = QuarantineHandle::new(q)
                .park(&shared.config.name, reason)
                .await
            {
                // Not recorded: this instance still parks itself and stops (no restart),
                // but a later start would not know. Say so where a person looks.
                let text = format!("quarantine did not record the park: {e}");
                shared.metrics.error(text.clone());
                tracing::error!(agent = %shared.config.name, "{text}");
            }
        }
        None => {
            let text = "no quarantine actor: the park is kept by this instance only".to_owned();
            shared.metrics.error(text.clone());
            tracing::warn!(agent = %shared.config.name, "{text}");
        }
    }
    // Shown as quarantined only once the record is there, and with its reason in the
    // same change: a status read between the quarantine actor's list and this agent's
    // metrics still says why.
    shared.metrics.quarantined(message.clone());
    // Aborting the driver kills the sandbox; parked invokes are answered below.
    if let Some(thread) = state.confined.driver.take().and_then(Driver::abort) {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    shared.fail_in_flight(
        &AgentError::Quarantined {
            agent: shared.config.name.to_string(),
            message: message.clone(),
        },
        &DeadLetterReason::Quarantined {
            message: message.clone(),
        },
    );
    state.parked = Some(message.clone());
    myself.stop(Some(format!("quarantined: {message}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_invoke_is_answered_once() {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let pending = Pending {
            input: Arc::new(AgentInput {
                port: "in".into(),
                payload: rmpv::Value::Nil,
            }),
            reply: Arc::new(Mutex::new(Some(RpcReplyPort::from(tx)))),
        };
        let again = pending.clone();
        assert!(pending.answer(Err(AgentError::Refused("first".into()))));
        assert!(!again.answer(Err(AgentError::Refused("second".into()))));
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(AgentError::Refused("first".into()))
        );
    }

    #[test]
    fn only_frame_and_protocol_errors_quarantine() {
        let exit = runloop_sandbox::ExitStatus::Signaled(9);
        let reason = malformed(&SandboxError::Protocol {
            detail: "x".into(),
            exit,
        })
        .unwrap();
        assert!(
            reason.to_string().contains("malformed frame (Protocol)"),
            "{reason}"
        );
        assert!(malformed(&SandboxError::Died { exit }).is_none());
        assert!(malformed(&SandboxError::Gone { exit }).is_none());
    }
}
