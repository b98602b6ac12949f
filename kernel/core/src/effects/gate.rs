//! The confirmation gate: a singleton actor holding every action that waits for a person.
//!
//! A request ([`ActionRequest`]: run, node, agent, effect kind, a summary the kernel wrote
//! from the payload, and the BLAKE3 of the exact payload) is recorded in the POG as
//! `action.requested` and held until an `action.decision` arrives from a UI peer (`rlp
//! run`'s prompt, `rlp confirm`, agtop) through [`GateMsg::Decide`], or its time runs out
//! (`expires_ms` on the kernel's injected clock, checked every [`TICK_MS`]) and it is
//! denied. A decision names the payload hash the person was shown: if it is not the
//! request's, the decision is refused ([`GateError::StalePayload`]) and the request keeps
//! waiting. Every decision is recorded as `action.decided` before anyone hears of it.
//!
//! The POG is the truth, this actor's map a cache: after a restart (of the actor or the
//! daemon) a request comes back when the node asks again ([`GateMsg::Request`] with the
//! recorded expiry), so nothing is lost and nothing is decided twice. Agents cannot reach
//! this actor: only the kernel's effects service asks, and only the control plane decides.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_pog::EventKind;
use runloop_pog_actor::PogMsg;
use runloop_proto::Clock;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use runloop_actors::supervisor::Slot;

use crate::runs::record::Recorder;

/// How often expiries are checked against the injected clock.
pub const TICK_MS: u64 = 250;
/// Most requests waiting at once.
pub const PENDING_MAX: usize = 4_096;
/// The `effect` of a request that is an agent's question (`confirm.request`), not an
/// action: flags never approve it.
pub const QUESTION: &str = "confirm.request";
/// Most decisions kept in the gate's cache. A run's decisions leave it when the run ends
/// ([`GateMsg::WithdrawRun`]); this bounds the ones of traces that are not runs.
pub const DECIDED_CACHE_MAX: usize = 4_096;
/// Default time a person has to answer.
pub const CONFIRM_TIMEOUT_MS_DEFAULT: u64 = 120_000;

/// One action waiting for (or given) a person's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub request_id: String,
    pub trace_id: String,
    pub node_id: String,
    pub agent: String,
    pub effect: String,
    pub idempotency_key: String,
    pub summary: String,
    pub payload_hash: String,
    /// The exact payload, in its JSON form, for `rlp confirm show`.
    pub payload: serde_json::Value,
    pub expires_ms: u64,
}

/// What was decided (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Denied,
    TimedOut,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
            Decision::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Decision::Approved, Decision::Denied, Decision::TimedOut]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionDecision {
    pub request_id: String,
    pub decision: Decision,
    /// Who decided: `tty`, `rlp confirm`, `flag --approve`, `timeout`, …
    pub by: String,
    pub payload_hash: String,
    pub reason: Option<String>,
}

impl ActionDecision {
    /// One line for the agent and the run's report.
    pub fn describe(&self) -> String {
        let what = match self.decision {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
            Decision::TimedOut => "not answered in time (denied)",
        };
        match &self.reason {
            Some(reason) => format!("{what} by {}: {reason}", self.by),
            None => format!("{what} by {}", self.by),
        }
    }
}

/// How requests are decided when nobody is asked (embedded `rlp run` flags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AutoDecide {
    /// Requests wait for a UI peer.
    #[default]
    Ask,
    /// Every action is approved at once (`--approve`); an agent's question
    /// (`confirm.request`) is denied, since a flag cannot answer it.
    Approve { by: String },
    /// Every request is denied at once (`--deny`, or no terminal to ask).
    Deny { by: String, reason: String },
}

/// Why a request or decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("no pending action request {0} (see `rlp confirm ls`)")]
    NoSuchRequest(String),
    #[error(
        "action request {request_id}: the decision was for payload {shown} but the payload \
         is {current}; a changed payload needs a new yes (see `rlp confirm show {request_id}`)"
    )]
    StalePayload {
        request_id: String,
        shown: String,
        current: String,
    },
    #[error("{PENDING_MAX} action requests already wait")]
    TooMany,
    #[error("record in the POG: {0}")]
    Pog(String),
}

/// What a run's effects need: whether send/delete/spend effects need a yes, and which
/// nodes said `require_human_confirm: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfirmPolicy {
    pub confirm_external: bool,
    pub confirm_nodes: HashSet<String>,
}

/// State shared between the gate actor (and its restarts), the effects service and the
/// run actors: which nodes wait for which request, the runs' policies, the pending list
/// for UIs, the auto-decision mode and the timeout.
#[derive(Debug)]
pub struct GateShared {
    waiting_nodes: Mutex<HashMap<(String, String), String>>,
    /// Decisions made at once (auto mode) for a node's call, for the run to report.
    decided_nodes: Mutex<HashMap<(String, String), Vec<ActionDecision>>>,
    runs: Mutex<HashMap<String, RunConfirmPolicy>>,
    pending_tx: watch::Sender<Vec<ActionRequest>>,
    auto: Mutex<AutoDecide>,
    /// How many decisions the gate actor holds in its cache (it writes this).
    decided_cached: AtomicUsize,
    pub timeout_ms: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GateShared {
    pub fn new(timeout_ms: u64) -> Arc<Self> {
        let (pending_tx, _) = watch::channel(Vec::new());
        Arc::new(Self {
            waiting_nodes: Mutex::new(HashMap::new()),
            decided_nodes: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            pending_tx,
            auto: Mutex::new(AutoDecide::Ask),
            decided_cached: AtomicUsize::new(0),
            timeout_ms,
        })
    }

    /// The pending requests, updated on every change (for prompts and UIs).
    pub fn subscribe(&self) -> watch::Receiver<Vec<ActionRequest>> {
        self.pending_tx.subscribe()
    }

    pub fn set_auto(&self, auto: AutoDecide) {
        *lock(&self.auto) = auto;
    }

    pub fn auto(&self) -> AutoDecide {
        lock(&self.auto).clone()
    }

    /// Notes that `node` of `trace` waits for `request_id` (its attempt ends with
    /// `ConfirmationPending`; the run invokes it again once decided).
    pub fn mark_waiting(&self, trace: &str, node: &str, request_id: &str) {
        lock(&self.waiting_nodes).insert((trace.into(), node.into()), request_id.into());
    }

    /// The request `node` of `trace` waits for, taken (the run actor asks after each
    /// attempt).
    pub fn take_waiting(&self, trace: &str, node: &str) -> Option<String> {
        lock(&self.waiting_nodes).remove(&(trace.to_owned(), node.to_owned()))
    }

    /// Notes a decision made at once on a call of `node` (no wait), for the run's report.
    pub fn note_decided(&self, trace: &str, node: &str, decision: ActionDecision) {
        let mut map = lock(&self.decided_nodes);
        let list = map.entry((trace.into(), node.into())).or_default();
        if list.len() < 64 {
            list.push(decision);
        }
    }

    /// The decisions made at once on `node`'s calls since last asked.
    pub fn take_decided(&self, trace: &str, node: &str) -> Vec<ActionDecision> {
        lock(&self.decided_nodes)
            .remove(&(trace.to_owned(), node.to_owned()))
            .unwrap_or_default()
    }

    pub fn register_run(&self, trace: &str, policy: RunConfirmPolicy) {
        lock(&self.runs).insert(trace.to_owned(), policy);
    }

    pub fn forget_run(&self, trace: &str) {
        lock(&self.runs).remove(trace);
        lock(&self.waiting_nodes).retain(|(t, _), _| t != trace);
        lock(&self.decided_nodes).retain(|(t, _), _| t != trace);
    }

    pub fn run_policy(&self, trace: &str) -> Option<RunConfirmPolicy> {
        lock(&self.runs).get(trace).cloned()
    }

    /// Entries held for runs, live or ended: policies, waiting and decided nodes, and
    /// the gate's cached decisions. A soak checks that this does not grow with the runs
    /// it served.
    pub fn held_entries(&self) -> usize {
        lock(&self.runs).len()
            + lock(&self.waiting_nodes).len()
            + lock(&self.decided_nodes).len()
            + self.decided_cached.load(Ordering::Relaxed)
    }
}

/// Messages of the gate.
#[derive(Debug)]
pub enum GateMsg {
    /// Holds a request (idempotent by id). `recorded` says the POG already has its
    /// `action.requested` (a resumed run asking again). Answers the decision when one is
    /// made at once (auto mode, or already decided), else `None`: pending.
    Request {
        request: ActionRequest,
        recorded: bool,
        reply: RpcReplyPort<Result<Option<ActionDecision>, GateError>>,
    },
    /// A UI peer's decision on a pending request, bound to the payload hash it showed.
    Decide {
        request_id: String,
        approve: bool,
        payload_hash: String,
        by: String,
        reason: Option<String>,
        reply: RpcReplyPort<Result<ActionDecision, GateError>>,
    },
    /// Answers once the request is decided (at once when it is not pending).
    Wait(String, RpcReplyPort<Option<ActionDecision>>),
    /// The pending requests, oldest first.
    List(RpcReplyPort<Vec<ActionRequest>>),
    /// Denies every pending request of a run that ended, and forgets its decisions.
    WithdrawRun { trace_id: String, reason: String },
    /// Times out expired requests.
    Tick,
}

/// The gate's arguments (the same shared state across restarts).
#[derive(Debug, Clone)]
pub struct GateArgs {
    pub shared: Arc<GateShared>,
    pub clock: Arc<dyn Clock>,
    pub pog: Slot<PogMsg>,
}

/// The gate's state.
#[derive(Debug)]
pub struct GateState {
    args: GateArgs,
    pending: BTreeMap<String, ActionRequest>,
    waiters: HashMap<String, Vec<RpcReplyPort<Option<ActionDecision>>>>,
    /// Decisions made by this actor, by request id, with the trace they belong to (the
    /// POG has them all; this saves a read). Kept while their run lives.
    decided: HashMap<String, (String, ActionDecision)>,
}

/// The gate actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConfirmGateActor;

impl GateState {
    fn note_cached(&self) {
        self.args
            .shared
            .decided_cached
            .store(self.decided.len(), Ordering::Relaxed);
    }

    fn publish(&self) {
        let list: Vec<ActionRequest> = self.pending.values().cloned().collect();
        self.args.shared.pending_tx.send_replace(list);
    }

    async fn record(
        &self,
        trace_id: &str,
        kind: EventKind,
        payload: serde_json::Value,
    ) -> Result<(), GateError> {
        let recorder = Recorder::new(self.args.pog.get());
        if !recorder.is_durable() {
            return Err(GateError::Pog("the POG is not running".into()));
        }
        recorder
            .write(trace_id, kind, payload)
            .await
            .map_err(|e| GateError::Pog(e.to_string()))
    }

    async fn decide(
        &mut self,
        request: &ActionRequest,
        decision: Decision,
        by: String,
        reason: Option<String>,
    ) -> Result<ActionDecision, GateError> {
        let made = ActionDecision {
            request_id: request.request_id.clone(),
            decision,
            by,
            payload_hash: request.payload_hash.clone(),
            reason,
        };
        let mut payload = json!({
            "request_id": made.request_id,
            "trace_id": request.trace_id,
            "node_id": request.node_id,
            "decision": decision.as_str(),
            "by": made.by,
            "payload_hash": made.payload_hash,
        });
        if let Some(reason) = &made.reason {
            payload["reason"] = json!(reason);
        }
        self.record(&request.trace_id, EventKind::ActionDecided, payload)
            .await?;
        self.pending.remove(&made.request_id);
        // A cache only: the POG has every decision, and callers read it there first.
        if self.decided.len() >= DECIDED_CACHE_MAX {
            self.decided.clear();
        }
        self.decided.insert(
            made.request_id.clone(),
            (request.trace_id.clone(), made.clone()),
        );
        self.note_cached();
        for waiter in self.waiters.remove(&made.request_id).unwrap_or_default() {
            let _ = waiter.send(Some(made.clone()));
        }
        self.publish();
        Ok(made)
    }

    async fn request(
        &mut self,
        request: ActionRequest,
        recorded: bool,
    ) -> Result<Option<ActionDecision>, GateError> {
        if let Some((_, made)) = self.decided.get(&request.request_id) {
            return Ok(Some(made.clone()));
        }
        if self.pending.contains_key(&request.request_id) {
            return Ok(None);
        }
        if self.pending.len() >= PENDING_MAX {
            return Err(GateError::TooMany);
        }
        if !recorded {
            let payload = json!({
                "request_id": request.request_id,
                "trace_id": request.trace_id,
                "node_id": request.node_id,
                "agent": request.agent,
                "effect": request.effect,
                "idempotency_key": request.idempotency_key,
                "summary": request.summary,
                "payload_hash": request.payload_hash,
                "payload": request.payload,
                "expires_ms": request.expires_ms,
            });
            self.record(&request.trace_id, EventKind::ActionRequested, payload)
                .await?;
        }
        match self.args.shared.auto() {
            AutoDecide::Ask => {
                self.pending.insert(request.request_id.clone(), request);
                self.publish();
                // An expiry already past (the daemon was down) is handled at once.
                self.tick().await;
                Ok(None)
            }
            // A flag approves actions, never answers an agent's question (which contact
            // did you mean?): a question is denied, and only a person answers it.
            AutoDecide::Approve { by } if request.effect == QUESTION => {
                let reason = "--approve approves actions, it does not answer an agent's \
                              questions; answer on a terminal or with `rlp confirm`";
                self.decide(&request, Decision::Denied, by, Some(reason.into()))
                    .await
                    .map(Some)
            }
            AutoDecide::Approve { by } => self
                .decide(&request, Decision::Approved, by, None)
                .await
                .map(Some),
            AutoDecide::Deny { by, reason } => self
                .decide(&request, Decision::Denied, by, Some(reason))
                .await
                .map(Some),
        }
    }

    async fn tick(&mut self) {
        let now = self.args.clock.now_ms();
        let expired: Vec<ActionRequest> = self
            .pending
            .values()
            .filter(|r| r.expires_ms <= now)
            .cloned()
            .collect();
        for request in expired {
            let reason = format!(
                "no answer within {} s",
                self.args.shared.timeout_ms.div_ceil(1000)
            );
            if let Err(e) = self
                .decide(&request, Decision::TimedOut, "timeout".into(), Some(reason))
                .await
            {
                tracing::warn!(request = %request.request_id, "time out action request: {e}");
            }
        }
    }
}

impl Actor for ConfirmGateActor {
    type Msg = GateMsg;
    type State = GateState;
    type Arguments = GateArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GateMsg>,
        args: GateArgs,
    ) -> Result<GateState, ActorProcessingErr> {
        myself.send_interval(Duration::from_millis(TICK_MS), || GateMsg::Tick);
        let state = GateState {
            args,
            pending: BTreeMap::new(),
            waiters: HashMap::new(),
            decided: HashMap::new(),
        };
        state.note_cached();
        state.publish();
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<GateMsg>,
        message: GateMsg,
        state: &mut GateState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GateMsg::Request {
                request,
                recorded,
                reply,
            } => {
                let _ = reply.send(state.request(request, recorded).await);
            }
            GateMsg::Decide {
                request_id,
                approve,
                payload_hash,
                by,
                reason,
                reply,
            } => {
                let result = match state.pending.get(&request_id).cloned() {
                    None => Err(GateError::NoSuchRequest(request_id)),
                    Some(request) if request.payload_hash != payload_hash => {
                        Err(GateError::StalePayload {
                            request_id,
                            shown: payload_hash,
                            current: request.payload_hash,
                        })
                    }
                    Some(request) => {
                        let decision = if approve {
                            Decision::Approved
                        } else {
                            Decision::Denied
                        };
                        state.decide(&request, decision, by, reason).await
                    }
                };
                let _ = reply.send(result);
            }
            GateMsg::Wait(request_id, reply) => {
                if state.pending.contains_key(&request_id) {
                    state.waiters.entry(request_id).or_default().push(reply);
                } else {
                    let made = state.decided.get(&request_id).map(|(_, made)| made.clone());
                    let _ = reply.send(made);
                }
            }
            GateMsg::List(reply) => {
                let _ = reply.send(state.pending.values().cloned().collect());
            }
            GateMsg::WithdrawRun { trace_id, reason } => {
                let of_run: Vec<ActionRequest> = state
                    .pending
                    .values()
                    .filter(|r| r.trace_id == trace_id)
                    .cloned()
                    .collect();
                for request in of_run {
                    if let Err(e) = state
                        .decide(
                            &request,
                            Decision::Denied,
                            "kernel".into(),
                            Some(reason.clone()),
                        )
                        .await
                    {
                        tracing::warn!(request = %request.request_id, "withdraw action request: {e}");
                    }
                }
                // The run is over: nobody asks for its decisions again (a resumed run
                // reads them from the POG).
                state.decided.retain(|_, (trace, _)| *trace != trace_id);
                state.note_cached();
            }
            GateMsg::Tick => state.tick().await,
        }
        Ok(())
    }
}
