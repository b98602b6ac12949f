//! The agent actor: one sandbox-host process and its cgroup, at-least-once invokes.
//!
//! Lifecycle:
//! - `pre_start` creates the cgroup `<parent>/<agent>-<generation>` (a fresh name per
//!   instance, so a restart never races the previous instance's removal), spawns the
//!   sandbox into it on a blocking thread and waits for `control.ready.v1`. It then asks
//!   the shared [`InFlight`] ledger what the previous instance left unanswered: each such
//!   invoke is cast back to itself (`Redeliver`), or, past its attempts, answered with an
//!   error and recorded as a dead letter. A sandbox that sends a malformed frame during
//!   the handshake parks the agent in quarantine and the instance stops at once.
//! - `Invoke`: breaker admission, ledger `begin`, then the invoke runs on a blocking
//!   thread (the sandbox API is blocking) with host calls answered by
//!   [`KernelHandler`]. A reply (or a guest error such as `Trap`) completes the ledger entry
//!   and is sent once. A sandbox that dies mid-invoke (SIGKILL, OOM kill, watchdog) fails
//!   the actor: the entry stays in the ledger for the next instance. Malformed frames park
//!   the agent in quarantine (reason names the RMP error) and stop it normally.
//! - `post_stop` (normal stop) shuts the sandbox down politely; on failure ractor skips
//!   `post_stop`, and the state's `Drop` kills the sandbox and removes the cgroup.
//!
//! Mailbox bound: callers of `Invoke` wait for their reply (call), and `Redeliver` casts
//! are bounded by the ledger ([`runloop_actors::delivery::IN_FLIGHT_MAX`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_actors::breaker::{Admission, BreakerHandle, BreakerMsg, CallOutcome};
use runloop_actors::delivery::{
    DeadLetter, DeadLetterMsg, DeadLetterReason, InFlight, InFlightError,
};
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::{QuarantineHandle, QuarantineMsg, QuarantineReason};
use runloop_actors::supervisor::Slot;
use runloop_bundle::caps::Policy;
use runloop_proto::payloads::{AgentInput, AgentOutput, SandboxLimits};
use runloop_proto::{Clock, MsgId, TraceId};
use runloop_sandbox::cgroup::{self, AgentCgroup, CgroupLimits, CgroupSupport};
use runloop_sandbox::{LocalHandler, Sandbox, SandboxError, SpawnConfig};

use crate::handler::{KernelHandler, Services};
use crate::metrics::{AgentMetrics, AgentState};

/// Times one invoke is handed to a sandbox before it becomes a dead letter.
pub const INVOKE_ATTEMPTS_MAX: u32 = 3;
/// How often an idle agent checks that its sandbox process is still alive.
pub const WATCH_INTERVAL_MS: u64 = 200;

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
    pub links: Links,
    pub clock: Arc<dyn Clock>,
    generation: Arc<AtomicU64>,
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
            links,
            clock,
            generation: Arc::new(AtomicU64::new(0)),
        }
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
            None => eprintln!("runloop: dead letter (no dead-letter actor): {record:?}"),
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
    Guest { agent: String, error: String },
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

/// An invoke in the ledger: its input and the waiting caller's port (taken once).
#[derive(Debug, Clone)]
pub struct Pending {
    input: AgentInput,
    reply: Arc<Mutex<Option<RpcReplyPort<InvokeResult>>>>,
}

impl Pending {
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
        input: AgentInput,
        reply: RpcReplyPort<InvokeResult>,
    },
    /// Internal (timer): is the idle sandbox still alive?
    Watch,
    /// Internal: an invoke the previous instance left unanswered.
    Redeliver {
        trace_id: TraceId,
        msg_id: MsgId,
        pending: Pending,
        attempt: u32,
    },
}

/// The sandbox and its cgroup; dropping kills the one and removes the other.
#[derive(Debug, Default)]
pub struct Confined {
    sandbox: Option<Sandbox>,
    cgroup: Option<AgentCgroup>,
}

impl Drop for Confined {
    fn drop(&mut self) {
        if let Some(mut sandbox) = self.sandbox.take() {
            sandbox.kill();
        }
        if let Some(group) = self.cgroup.take() {
            let path = group.path().to_owned();
            if let Err(e) = group.remove() {
                eprintln!("runloop: remove cgroup {path}: {e}");
            }
        }
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
    let mut confined = Confined::default();
    if let Some(plan) = &config.cgroup {
        match cgroup_support() {
            CgroupSupport::V1 | CgroupSupport::V2 => {
                let name = format!("{}-{generation}", config.name);
                confined.cgroup = Some(AgentCgroup::create(&plan.parent, &name, &plan.limits)?);
            }
            CgroupSupport::Unavailable(reason) => cgroup::notice_once(&reason),
        }
    }
    let spawn = SpawnConfig {
        program: config.program.clone(),
        extra_args: Vec::new(),
        agent: config.name.to_string(),
        module_path: config.module_path.clone(),
        limits: config.limits,
    };
    let group = confined.cgroup.take();
    let (group, result) = tokio::task::spawn_blocking(move || {
        let result = Sandbox::spawn(&spawn, group.as_ref());
        (group, result)
    })
    .await?;
    confined.cgroup = group;
    match result {
        Ok(sandbox) => Ok((confined, sandbox)),
        Err(e) => Err(Box::new(SpawnFailed(e))),
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
                state.confined.sandbox = Some(sandbox);
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
        // Watch the idle sandbox: a death between invokes restarts the agent at once
        // instead of failing the next message. The timer ends with this instance.
        myself.send_interval(std::time::Duration::from_millis(WATCH_INTERVAL_MS), || {
            AgentMsg::Watch
        });
        let redelivery = shared.inflight.redeliver();
        for (trace_id, msg_id, pending) in redelivery.exhausted {
            let last_error = shared
                .metrics
                .snapshot()
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
        for (trace_id, msg_id, pending, attempt) in redelivery.again {
            shared.metrics.redelivered();
            myself.cast(AgentMsg::Redeliver {
                trace_id,
                msg_id,
                pending,
                attempt,
            })?;
        }
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
                let shared = state.shared.clone();
                shared.metrics.message_in();
                let agent = shared.config.name.clone();
                if let Some(message) = &state.parked {
                    let _ = reply.send(Err(AgentError::Quarantined {
                        agent: agent.to_string(),
                        message: message.clone(),
                    }));
                    return Ok(());
                }
                let mut probe = false;
                if let Some(breaker) = shared.links.breaker.get() {
                    match BreakerHandle::new(breaker).admit(&agent).await {
                        Ok(admission) => probe = admission == Admission::Probe,
                        Err(e) => {
                            shared.dead_letter(
                                trace_id,
                                msg_id,
                                DeadLetterReason::BreakerOpen {
                                    message: e.to_string(),
                                },
                            );
                            let _ = reply.send(Err(AgentError::BreakerOpen(e.to_string())));
                            return Ok(());
                        }
                    }
                }
                let pending = Pending {
                    input,
                    reply: Arc::new(Mutex::new(Some(reply))),
                };
                if let Err(e) = shared.inflight.begin(trace_id, msg_id, pending.clone()) {
                    // A duplicate of an invoke in flight or answered: the first delivery
                    // answers; this caller is told why it gets nothing.
                    let refused = match e {
                        InFlightError::Full { .. }
                        | InFlightError::AlreadyInFlight { .. }
                        | InFlightError::AlreadyDone { .. } => AgentError::Refused(e.to_string()),
                    };
                    pending.answer(Err(refused));
                    return Ok(());
                }
                self.run(&myself, state, trace_id, msg_id, pending, 1, probe)
                    .await
            }
            AgentMsg::Watch => {
                let Some(sandbox) = state.confined.sandbox.as_mut() else {
                    return Ok(());
                };
                if process_alive(sandbox.pid()) {
                    return Ok(());
                }
                let exit = sandbox.kill().status;
                let shared = &state.shared;
                shared.metrics.sandbox_gone();
                let text = format!("sandbox died while idle: {exit}");
                shared.metrics.error(text.clone());
                shared.metrics.set_state(AgentState::Restarting);
                Err(format!("agent {}: {text}", shared.config.name).into())
            }
            AgentMsg::Redeliver {
                trace_id,
                msg_id,
                pending,
                attempt,
            } => {
                if let Some(message) = &state.parked {
                    let _ = message;
                    return Ok(());
                }
                // A redelivery was admitted once already; record its outcome as a probe's
                // so a success also closes a breaker that opened meanwhile.
                self.run(&myself, state, trace_id, msg_id, pending, attempt, true)
                    .await
            }
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<AgentMsg>,
        state: &mut AgentActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.metrics.sandbox_gone();
        if state.parked.is_none() {
            state.shared.metrics.set_state(AgentState::Stopped);
        }
        if let Some(sandbox) = state.confined.sandbox.take() {
            let _ = tokio::task::spawn_blocking(move || sandbox.shutdown()).await;
        }
        Ok(())
    }
}

/// False once the process has exited (a zombie awaiting our `wait4`) or is gone.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Parks the agent: quarantine record, every invoke in flight answered and dead-lettered,
/// the sandbox killed, and this instance stopped (normally: no restart).
async fn park(myself: &ActorRef<AgentMsg>, state: &mut AgentActorState, reason: QuarantineReason) {
    let shared = state.shared.clone();
    let message = reason.to_string();
    shared.metrics.error(format!("quarantined: {message}"));
    shared.metrics.set_state(AgentState::Quarantined);
    if let Some(q) = shared.links.quarantine.get() {
        let _ = QuarantineHandle::new(q)
            .park(&shared.config.name, reason)
            .await;
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
    if let Some(mut sandbox) = state.confined.sandbox.take() {
        sandbox.kill();
    }
    myself.stop(Some(format!("quarantined: {message}")));
}

impl AgentActor {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        myself: &ActorRef<AgentMsg>,
        state: &mut AgentActorState,
        trace_id: TraceId,
        msg_id: MsgId,
        pending: Pending,
        attempt: u32,
        probe: bool,
    ) -> Result<(), ActorProcessingErr> {
        let shared = state.shared.clone();
        let agent = shared.config.name.clone();
        let Some(mut sandbox) = state.confined.sandbox.take() else {
            return Err(format!("agent {agent}: no sandbox to invoke").into());
        };
        let input = pending.input.clone();
        let runtime = tokio::runtime::Handle::current();
        let worker = shared.clone();
        let (sandbox, result) = tokio::task::spawn_blocking(move || {
            let mut handler = KernelHandler {
                policy: &worker.config.policy,
                services: &worker.services,
                metrics: &worker.metrics,
                runtime,
                trace_hex: trace_id.to_string(),
                local: LocalHandler::new(
                    worker.services.clock.clone(),
                    worker.services.random.clone(),
                ),
            };
            let result = sandbox.invoke(input, &mut handler);
            (sandbox, result)
        })
        .await?;
        let breaker = shared.links.breaker.get().map(BreakerHandle::new);
        match result {
            Ok(report) => {
                state.confined.sandbox = Some(sandbox);
                shared.inflight.complete(trace_id, msg_id);
                let answer = match report.outcome.error {
                    None => {
                        // A success only changes a half-open breaker (closed: no-op), so
                        // only probes pay for the round trip to the breaker actor.
                        if probe && let Some(b) = &breaker {
                            b.record(&agent, CallOutcome::Success).await;
                        }
                        shared.metrics.message_out();
                        Ok(AgentReply {
                            outputs: report.outputs,
                            attempt,
                            round_trip_us: report.round_trip_us,
                            stdout: report.outcome.stdout,
                            stderr: report.outcome.stderr,
                        })
                    }
                    Some(error) => {
                        let text = error.to_string();
                        if let Some(b) = &breaker {
                            b.record(&agent, CallOutcome::Failure(text.clone())).await;
                        }
                        shared.metrics.error(text.clone());
                        Err(AgentError::Guest {
                            agent: agent.to_string(),
                            error: text,
                        })
                    }
                };
                pending.answer(answer);
                Ok(())
            }
            Err(e) => {
                drop(sandbox);
                shared.metrics.sandbox_gone();
                if let Some(b) = &breaker {
                    b.record(&agent, CallOutcome::Failure(e.to_string())).await;
                }
                if let Some(reason) = malformed(&e) {
                    park(myself, state, reason).await;
                    return Ok(());
                }
                let text = format!("sandbox failed mid-invoke (attempt {attempt}): {e}");
                shared.metrics.error(text.clone());
                shared.metrics.set_state(AgentState::Restarting);
                // The invoke stays in the ledger: the next instance redelivers it.
                Err(format!("agent {agent}: {text}").into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_invoke_is_answered_once() {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let pending = Pending {
            input: AgentInput {
                port: "in".into(),
                payload: rmpv::Value::Nil,
            },
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
    fn liveness_follows_the_real_process() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid), "a reaped child is not alive");
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
