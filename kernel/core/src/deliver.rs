//! Messages to agents over the bus: every message to an agent and every answer it gives
//! cross the bus actor as RMP frames, under a scheduler permit.
//!
//! ```text
//! send ─ permit (scheduler: global bound, fair share per opening)
//!      ─ publish intent.agent_message.v1 on agent/<run>/<name>/in ──▶ bus ──▶ pump
//!                                                                          │ call the agent actor
//!  waiter ◀── router (a sink of the bus) ◀── bus ◀── artifact.agent_answer.v1 on kernel/replies ┘
//! ```
//!
//! - [`Pump`]: one task per agent, subscribed to the agent's inbox topic. Each delivery
//!   is handed to the agent's running instance (waiting out a restart — woken when the
//!   supervisor fills the agent's slot — and re-sending to the successor when an instance
//!   failed before admitting it), in the pump task itself or, while that one is busy with
//!   another delivery, in a task of its own, and the
//!   answer — outputs or a typed failure — is published on the delivery's reply topic
//!   with the delivery's trace id and message id.
//! - [`Router`]: one per kernel. Its table of waiting senders is subscribed to
//!   [`REPLY_TOPIC`] as a bus [`DeliverySink`]: the bus, during its drain and after its
//!   TTL check and dedupe, completes the waiting sender by message id — no router task
//!   between the bus and the sender, so one wake-up less per message. A task subscribed to
//!   the bus's drops topic fails a sender at once when the bus reports its frame dropped
//!   (expired, back-pressure, no subscriber); the sink routes while that task runs.
//!
//! Frames therefore go through the bus's TTL check, dedupe, bounded subscriber mailboxes
//! and drop accounting, and `rlp status` sees the bus counters move with every message.
//! Bounds: the scheduler's permits bound the messages in flight (each sender holds one
//! until its answer arrives), so the pumps' mailboxes ([`PUMP_MAILBOX_FRAMES`]) never hold
//! more than that; the router's waiting table is capped at [`WAITING_MAX`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runloop_actors::bus::{BusHandle, DROPS_TOPIC, DeliverySink, Subscription, Topic};
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::QuarantineHandle;
use runloop_actors::supervisor::Slot;
use runloop_agent_actor::{AgentError, AgentMsg, AgentReply, AgentState};
use runloop_proto::payloads::{
    AgentAnswer, AgentDelivery, AgentFailure, AgentFailureKind, AgentInput, DropNotice,
};
use runloop_proto::{Clock, Frame, Kind, MsgId, RunId, TraceId};
use tokio::sync::oneshot;

use crate::agents::{AGENT_RESTART_WAIT_MS, AgentEntry, AgentOpError, SEND_TRIES_MAX};

/// The topic every answer to a kernel sender is published on.
pub const REPLY_TOPIC: &str = "kernel/replies";
/// Frames an agent's pump may have waiting (far above the scheduler's permits).
pub const PUMP_MAILBOX_FRAMES: usize = 4_096;
/// Drop notices the router may have waiting.
pub const DROPS_MAILBOX_FRAMES: usize = 1_024;
/// Senders waiting for an answer at once.
pub const WAITING_MAX: usize = 65_536;
/// While a pump waits out a restart (woken by the supervisor's write of the new
/// instance), how often it looks whether the agent was stopped or parked instead.
pub const STATE_CHECK_MS: u64 = 10;

/// The inbox topic of `agent` in `run`.
pub fn inbox_topic(run: RunId, agent: &AgentName) -> Topic {
    Topic::new(&format!("agent/{run}/{agent}/in")).expect("agent names make valid topics")
}

fn reply_topic() -> Topic {
    Topic::new(REPLY_TOPIC).expect("a valid topic")
}

/// What a waiting sender gets.
pub(crate) type Answer = Result<AgentAnswer, AgentOpError>;

/// Routes answers from the bus to waiting senders.
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    waiting: Arc<Mutex<HashMap<MsgId, oneshot::Sender<Answer>>>>,
}

impl Router {
    /// Subscribes the waiting table to the reply topic (a sink the bus completes senders
    /// through) and starts the task that reads the drops topic. The sink routes while
    /// that task runs: aborting it stops the routing.
    pub(crate) async fn start(
        bus: &BusHandle,
    ) -> Result<(Router, tokio::task::JoinHandle<()>), String> {
        let router = Router::default();
        let running = Arc::new(());
        let sink = {
            let router = router.clone();
            let running = Arc::downgrade(&running);
            DeliverySink::new(move |delivery| {
                if running.strong_count() == 0 {
                    return false;
                }
                router.answered(&delivery.frame);
                true
            })
        };
        bus.subscribe_sink(&reply_topic(), sink)
            .await
            .map_err(|e| e.to_string())?;
        let drops_topic = Topic::new(DROPS_TOPIC).expect("a valid topic");
        let drops = bus
            .subscribe(&drops_topic, DROPS_MAILBOX_FRAMES)
            .await
            .map_err(|e| e.to_string())?;
        let task = tokio::spawn(router.clone().run(drops, running));
        Ok((router, task))
    }

    /// Registers a sender waiting for the answer to `msg`.
    pub(crate) fn wait(&self, msg: MsgId) -> Result<oneshot::Receiver<Answer>, AgentOpError> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= WAITING_MAX {
            return Err(AgentOpError::Busy(format!(
                "{WAITING_MAX} messages are already waiting for answers"
            )));
        }
        waiting.insert(msg, tx);
        Ok(rx)
    }

    /// Forgets a sender that gave up.
    pub(crate) fn forget(&self, msg: MsgId) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&msg);
    }

    fn complete(&self, msg: MsgId, answer: Answer) {
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&msg);
        if let Some(tx) = waiter {
            // The sender may have given up meanwhile.
            let _ = tx.send(answer);
        }
    }

    /// Completes the sender waiting for the answer in `frame` (called by the bus).
    fn answered(&self, frame: &Frame) {
        let msg = frame.header().msg_id();
        match frame.body().payload_as::<AgentAnswer>() {
            Ok(answer) => self.complete(msg, Ok(answer)),
            Err(e) => self.complete(
                msg,
                Err(AgentOpError::Bus(format!(
                    "the answer to message {msg} is malformed: {e}"
                ))),
            ),
        }
    }

    /// Fails the senders whose frames the bus reports dropped; `_running` keeps the reply
    /// sink routing for as long as this runs.
    async fn run(self, mut drops: Subscription, _running: Arc<()>) {
        while let Some(notice) = drops.rx.recv().await {
            let Ok(drop) = notice.frame.body().payload_as::<DropNotice>() else {
                continue;
            };
            if drop.topic.starts_with("agent/") || drop.topic == REPLY_TOPIC {
                let reason = format!("{:?}", drop.reason);
                self.complete(
                    drop.msg_id,
                    Err(AgentOpError::Dropped {
                        topic: drop.topic,
                        reason,
                    }),
                );
            }
        }
    }
}

/// One delivery being served: decode, hand to the agent, publish the answer.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What woke the pump.
enum Next {
    /// The delivery served inline is done.
    Served,
    /// A delivery from the inbox (`None`: unsubscribed).
    Delivery(Option<runloop_actors::bus::Delivery>),
}

/// The delivery a pump serves inline. When the pump task ends — its inbox closed, or
/// aborted when the agent is stopped — the delivery goes on in a task of its own, as the
/// others do, so its sender still gets its answer.
struct Inline(Option<Serving>);

impl Drop for Inline {
    fn drop(&mut self) {
        if let Some(serving) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(serving);
        }
    }
}

/// What an agent's pump needs to hand a message to the agent's running instance.
#[derive(Clone)]
pub(crate) struct Pump {
    pub(crate) entry: AgentEntry,
    pub(crate) agent: AgentName,
    pub(crate) quarantine: Slot<runloop_actors::quarantine::QuarantineMsg>,
    pub(crate) bus: BusHandle,
    pub(crate) clock: Arc<dyn Clock>,
    /// How long one message may take, restarts and redeliveries included.
    pub(crate) waited_ms: u64,
    /// The TTL of answer frames.
    pub(crate) ttl_ms: u64,
}

impl Pump {
    /// Subscribes to the agent's inbox and starts the pump task.
    pub(crate) async fn start(
        self,
        run: RunId,
    ) -> Result<tokio::task::JoinHandle<()>, AgentOpError> {
        let topic = inbox_topic(run, &self.agent);
        let inbox = self
            .bus
            .subscribe(&topic, PUMP_MAILBOX_FRAMES)
            .await
            .map_err(|e| AgentOpError::Bus(e.to_string()))?;
        Ok(tokio::spawn(Arc::new(self).run(inbox)))
    }

    /// Serves one delivery at a time inside the pump task (no task spawn and wake-up
    /// per message for a lone caller); a delivery that arrives while another is being
    /// served gets a task of its own, so deliveries still overlap (pipelining).
    async fn run(self: Arc<Self>, mut inbox: Subscription) {
        let mut inline = Inline(None);
        loop {
            let next = match inline.0.as_mut() {
                None => Next::Delivery(inbox.rx.recv().await),
                Some(serving) => tokio::select! {
                    biased;
                    () = serving => Next::Served,
                    delivery = inbox.rx.recv() => Next::Delivery(delivery),
                },
            };
            let delivery = match next {
                Next::Served => {
                    inline.0 = None;
                    continue;
                }
                Next::Delivery(None) => return,
                Next::Delivery(Some(delivery)) => delivery,
            };
            let serving: Serving = Box::pin(Arc::clone(&self).serve(delivery.frame));
            if inline.0.is_none() {
                inline.0 = Some(serving);
            } else {
                tokio::spawn(serving);
            }
        }
    }

    async fn serve(self: Arc<Self>, frame: Arc<Frame>) {
        let trace = frame.header().trace_id();
        let msg = frame.header().msg_id();
        let (answer, reply_topic) = match frame.body().payload_as::<AgentDelivery>() {
            Ok(delivery) => {
                let topic = Topic::new(&delivery.reply_topic);
                let result = self.deliver(trace, msg, Arc::new(delivery.input)).await;
                (to_answer(&self.agent, result), topic)
            }
            Err(e) => {
                tracing::warn!(agent = %self.agent, "malformed delivery {msg}: {e}");
                return;
            }
        };
        let Ok(topic) = reply_topic else {
            tracing::warn!(agent = %self.agent, "delivery {msg} names an invalid reply topic");
            return;
        };
        let now = self.clock.now_ms();
        match Frame::of(&answer, now, self.ttl_ms, trace, msg) {
            Ok(frame) => {
                if let Err(e) = self.bus.publish(&topic, Arc::new(frame)).await {
                    tracing::warn!(agent = %self.agent, "publish the answer to {msg}: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(agent = %self.agent, "the answer to {msg} does not fit a frame: {e}")
            }
        }
    }

    /// Hands one message to the running instance and waits for its reply (redelivered
    /// by the agent after a crash). A message that reached an instance which then failed
    /// before admitting it is sent again to the successor, up to [`SEND_TRIES_MAX`] times.
    pub(crate) async fn deliver(
        &self,
        trace_id: TraceId,
        msg_id: MsgId,
        input: Arc<AgentInput>,
    ) -> Result<AgentReply, AgentOpError> {
        let agent = &self.agent;
        let timeout = Some(Duration::from_millis(self.waited_ms));
        let mut tries = 0;
        let mut failed = None;
        loop {
            tries += 1;
            let actor = match self.running_actor(failed).await {
                Ok(actor) => actor,
                Err(not_running) => return Err(self.parked_or(not_running).await),
            };
            let message = input.clone();
            let answer = actor
                .call(
                    |reply| AgentMsg::Invoke {
                        trace_id,
                        msg_id,
                        input: message,
                        reply,
                    },
                    timeout,
                )
                .await;
            return match answer {
                Ok(ractor::rpc::CallResult::Success(Ok(reply))) => Ok(reply),
                Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(AgentOpError::Agent(e)),
                Ok(ractor::rpc::CallResult::Timeout) => Err(AgentOpError::Timeout {
                    agent: agent.clone(),
                    waited_ms: self.waited_ms,
                }),
                // The instance stopped with the message in its mailbox: parked meanwhile
                // (then say why), restarting (then try the next instance) or stopped.
                _ => {
                    let stopped = AgentOpError::Agent(AgentError::Stopped {
                        agent: agent.to_string(),
                    });
                    let err = self.parked_or(stopped).await;
                    let parked = matches!(err, AgentOpError::Agent(AgentError::Quarantined { .. }));
                    let state = self.entry.shared.metrics.state();
                    if !parked && tries < SEND_TRIES_MAX && state != AgentState::Stopped {
                        failed = Some(actor.get_id());
                        continue;
                    }
                    Err(err)
                }
            };
        }
    }

    /// `Quarantined` with the recorded reason when the agent is parked, else `otherwise`.
    async fn parked_or(&self, otherwise: AgentOpError) -> AgentOpError {
        if let Some(q) = self.quarantine.get().map(QuarantineHandle::new)
            && let Ok(Some(record)) = q.check(&self.agent).await
        {
            return AgentOpError::Agent(AgentError::Quarantined {
                agent: self.agent.to_string(),
                message: record.message,
            });
        }
        otherwise
    }

    /// The agent's running instance, waiting out a restart: woken when the supervisor
    /// writes the restarted instance into the agent's slot, and every
    /// [`STATE_CHECK_MS`] to see whether the agent was stopped or parked meanwhile.
    async fn running_actor(
        &self,
        failed: Option<ractor::ActorId>,
    ) -> Result<ractor::ActorRef<AgentMsg>, AgentOpError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(AGENT_RESTART_WAIT_MS);
        loop {
            // An instance that already failed this message may still look alive for a
            // moment: wait for its successor.
            if let Some(actor) = self.entry.slot.get()
                && Some(actor.get_id()) != failed
            {
                return Ok(actor);
            }
            let state = self.entry.shared.metrics.state();
            let now = tokio::time::Instant::now();
            if matches!(state, AgentState::Stopped | AgentState::Quarantined) || now >= deadline {
                return Err(AgentOpError::NotRunning(self.agent.clone()));
            }
            let left_ms =
                u64::try_from(deadline.duration_since(now).as_millis()).unwrap_or(u64::MAX);
            if let Some(actor) = self
                .entry
                .slot
                .wait_running(failed, left_ms.clamp(1, STATE_CHECK_MS))
                .await
            {
                return Ok(actor);
            }
        }
    }
}

fn failure(kind: AgentFailureKind, agent: &str, message: String, count: u64) -> AgentAnswer {
    // Sandbox lost (redeliveries used up, instance gone) and time running out may go
    // better next time; guest failures say for themselves (`failure_retryable`).
    let retryable = matches!(
        kind,
        AgentFailureKind::AttemptsExhausted
            | AgentFailureKind::NotRunning
            | AgentFailureKind::Timeout
    );
    failure_retryable(kind, agent, message, count, retryable)
}

fn failure_retryable(
    kind: AgentFailureKind,
    agent: &str,
    message: String,
    count: u64,
    retryable: bool,
) -> AgentAnswer {
    AgentAnswer {
        outputs: Vec::new(),
        attempt: 0,
        round_trip_us: 0,
        stdout: String::new(),
        stderr: String::new(),
        failure: Some(AgentFailure {
            kind,
            agent: agent.to_owned(),
            message,
            count,
            retryable,
        }),
    }
}

/// An agent's result as it crosses the bus.
pub(crate) fn to_answer(
    agent: &AgentName,
    result: Result<AgentReply, AgentOpError>,
) -> AgentAnswer {
    use AgentFailureKind as K;
    let name = agent.as_str();
    match result {
        Ok(reply) => AgentAnswer {
            outputs: reply.outputs,
            attempt: reply.attempt,
            round_trip_us: reply.round_trip_us,
            stdout: reply.stdout,
            stderr: reply.stderr,
            failure: None,
        },
        Err(AgentOpError::Agent(e)) => match e {
            AgentError::BreakerOpen(m) => failure(K::BreakerOpen, name, m, 0),
            AgentError::Quarantined { message, .. } => failure(K::Quarantined, name, message, 0),
            AgentError::Guest {
                error, retryable, ..
            } => failure_retryable(K::Guest, name, error, 0, retryable),
            AgentError::AttemptsExhausted {
                attempts,
                last_error,
                ..
            } => failure(K::AttemptsExhausted, name, last_error, u64::from(attempts)),
            AgentError::Stopped { .. } => failure(K::Stopped, name, String::new(), 0),
            AgentError::Refused(m) => failure(K::Refused, name, m, 0),
        },
        Err(AgentOpError::NoSuchAgent(_)) => failure(K::NoSuchAgent, name, String::new(), 0),
        Err(AgentOpError::NotRunning(_)) => failure(K::NotRunning, name, String::new(), 0),
        Err(AgentOpError::Timeout { waited_ms, .. }) => {
            failure(K::Timeout, name, String::new(), waited_ms)
        }
        Err(other) => failure(K::Refused, name, other.to_string(), 0),
    }
}

/// The sender's view of an answer from the bus.
pub(crate) fn from_answer(
    agent: &AgentName,
    answer: AgentAnswer,
) -> Result<AgentReply, AgentOpError> {
    use AgentFailureKind as K;
    let Some(f) = answer.failure else {
        return Ok(AgentReply {
            outputs: answer.outputs,
            attempt: answer.attempt,
            round_trip_us: answer.round_trip_us,
            stdout: answer.stdout,
            stderr: answer.stderr,
        });
    };
    let name = agent.to_string();
    Err(match f.kind {
        K::BreakerOpen => AgentOpError::Agent(AgentError::BreakerOpen(f.message)),
        K::Quarantined => AgentOpError::Agent(AgentError::Quarantined {
            agent: name,
            message: f.message,
        }),
        K::Guest => AgentOpError::Agent(AgentError::Guest {
            agent: name,
            error: f.message,
            retryable: f.retryable,
        }),
        K::AttemptsExhausted => AgentOpError::Agent(AgentError::AttemptsExhausted {
            agent: name,
            attempts: u32::try_from(f.count).unwrap_or(u32::MAX),
            last_error: f.message,
        }),
        K::Stopped => AgentOpError::Agent(AgentError::Stopped { agent: name }),
        K::Refused => AgentOpError::Agent(AgentError::Refused(f.message)),
        K::NoSuchAgent => AgentOpError::NoSuchAgent(agent.clone()),
        K::NotRunning => AgentOpError::NotRunning(agent.clone()),
        K::Timeout => AgentOpError::Timeout {
            agent: agent.clone(),
            waited_ms: f.count,
        },
    })
}

/// The frame of one message to an agent.
pub(crate) fn delivery_frame(
    input: AgentInput,
    now_ms: u64,
    ttl_ms: u64,
    trace: TraceId,
    msg: MsgId,
) -> Result<Frame, AgentOpError> {
    let delivery = AgentDelivery {
        input,
        reply_topic: REPLY_TOPIC.to_owned(),
    };
    debug_assert_eq!(
        Kind::AgentDelivery,
        <AgentDelivery as runloop_proto::KindPayload>::KIND
    );
    Frame::of(&delivery, now_ms, ttl_ms, trace, msg)
        .map_err(|e| AgentOpError::BadInput(format!("the message does not fit a frame: {e}")))
}
