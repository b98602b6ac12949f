//! The run actor: one per run, under the run's supervisor beside the run's agents.
//!
//! Lifecycle: `pre_start` builds the plan — fresh on the first start, or from the run's
//! record in the POG when the actor restarts or the run was resumed (finished nodes keep
//! their outputs; nodes that were running run again). `post_start` announces the run,
//! starts the nodes that are ready and arms the whole-run deadline. Each attempt is a task:
//! start the node's agent instance if it is not running, send the invoke over the bus
//! (scheduler permit, per-attempt timeout) and report back as a [`RunMsg::Done`]. The
//! attempt's `node.started` is handed to the POG before the invoke and rides the next group
//! commit; nothing waits for it but the run's [`Announcer`], which publishes each progress
//! event once the records before it are durable. Retries wait their backoff, and the failed
//! attempt's record, in a task that sends [`RunMsg::Retry`]. The run ends when every node
//! is finished, a node fails, the deadline passes or it is cancelled; the actor then
//! records the end, hands the report to the engine and stops (the engine stops the run's
//! supervisor, which stops the agents).
//!
//! A finished node's agent is never invoked again; its sandbox is stopped as soon as no
//! agent start of the run is in flight (each attempt's task reports [`RunMsg::AgentUp`]),
//! so the stop does not compete with the next node's start for the CPU. At most the run's
//! `max_parallel` finished sandboxes wait; `end` (success, failure, cancel, deadline) stops
//! every one still waiting, and the run's supervisor stops whatever is left of the run
//! when the engine stops it (also at shutdown, and after a restart of this actor, which
//! forgets its waiting list).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runloop_actors::names::{AgentName, OpeningId};
use runloop_openings::params::BoundParams;
use runloop_openings::plan::{NodeEnd, NodeState, Outcome, Plan, backoff_ms};
use runloop_openings::{Opening, hash};
use runloop_pog::EventKind;
use runloop_proto::RunId;
use runloop_proto::payloads::{NodeReport, NodeStatus, RunProgress, RunReport, RunStatus};
use serde_json::json;
use tracing::Instrument as _;

use super::Engine;
use super::announce::Announcer;
pub use super::attempt::{AttemptError, backoff_unit};
use super::attempt::{attempt_until_decided, ensure_agent};
use super::policy::{
    close_budgets, close_confirmations, register_budgets, register_confirm_policy,
};
use super::record::{RunRecord, outputs_from_json, outputs_to_json, read_record};

/// What a run's actor is built from (the same at every restart).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub trace_id: String,
    pub run_id: RunId,
    pub opening_id: OpeningId,
    pub opening: Arc<Opening>,
    pub params: BoundParams,
    /// Each node's bundle as the submit loaded and verified it (and its directory), in
    /// node order: a node's agent starts from it without loading the bundle again.
    pub loaded: Vec<Arc<runloop_bundle::Bundle>>,
    /// Each node's bundle's wasm digest (hex), in node order, as recorded with its invokes.
    pub digests: Vec<String>,
    /// Each node's share of the run's recording, in node order.
    pub tapes: Vec<Arc<crate::trace::NodeTape>>,
    pub seed: u64,
    /// Continued from the record (not a fresh run).
    pub resumed: bool,
}

/// Shared by every instance of one run's actor.
#[derive(Debug)]
pub struct RunShared {
    spec: RunSpec,
    engine: Weak<Engine>,
    /// Set by the first `pre_start`; later starts rebuild from the record.
    started_once: AtomicBool,
    /// Publishes the run's progress, each event once the records before it are durable:
    /// one for the run, shared by every instance of its actor (and their attempts).
    announce: Announcer,
}

impl RunShared {
    /// Starts the run's announcer task: call within the runtime.
    pub fn new(spec: RunSpec, engine: Weak<Engine>) -> Self {
        Self {
            announce: Announcer::start(engine.clone(), &spec.trace_id),
            spec,
            engine,
            started_once: AtomicBool::new(false),
        }
    }
}

/// The run actor's messages (closed).
#[derive(Debug)]
pub enum RunMsg {
    /// An attempt ended.
    Done {
        node: usize,
        attempt: u32,
        result: Result<Vec<(String, rmpv::Value)>, AttemptError>,
    },
    /// An attempt's agent start ended (started, already running, or failed): one per
    /// attempt, before its invoke.
    AgentUp,
    /// A retry's backoff passed.
    Retry { node: usize, attempt: u32 },
    /// `rlp cancel`.
    Cancel,
    /// `policy.timeout_ms` passed.
    Deadline,
}

/// The run actor.
#[derive(Debug)]
pub struct RunActor;

/// The run's state.
#[derive(Debug)]
pub struct RunState {
    shared: Arc<RunShared>,
    plan: Plan,
    attempts: Vec<u32>,
    started_ms: Vec<Option<u64>>,
    duration_ms: Vec<Option<u64>>,
    reasons: Vec<Option<String>>,
    queue: VecDeque<usize>,
    running: usize,
    /// Attempts whose agent start is in flight (sent [`RunMsg::AgentUp`] not yet).
    starting: usize,
    /// Finished nodes' agents whose sandboxes are still to be stopped: at most the run's
    /// `max_parallel` (see [`RunState::stop_finished`]).
    finished_agents: VecDeque<AgentName>,
    run_started_ms: u64,
    ended: bool,
    /// Set when restoring found the run already failed.
    restored_failure: Option<String>,
    /// The run's first start (not a resume or a restart): its submission is recorded.
    fresh: bool,
    /// The task that casts [`RunMsg::Deadline`], aborted when this state goes (however
    /// the run ends): a finished run leaves no timer sleeping out the opening's
    /// `timeout_ms` with its actor's cell held.
    deadline: Option<AbortOnDrop>,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for RunActor {
    type Msg = RunMsg;
    type State = RunState;
    type Arguments = Arc<RunShared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RunMsg>,
        shared: Arc<RunShared>,
    ) -> Result<RunState, ActorProcessingErr> {
        let engine = shared.engine.upgrade().ok_or("the engine is gone")?;
        let n = shared.spec.opening.nodes.len();
        let mut state = RunState {
            plan: Plan::new(shared.spec.opening.clone()),
            attempts: vec![0; n],
            started_ms: vec![None; n],
            duration_ms: vec![None; n],
            reasons: vec![None; n],
            queue: VecDeque::new(),
            running: 0,
            starting: 0,
            finished_agents: VecDeque::new(),
            run_started_ms: engine.kernel().clock().now_ms(),
            ended: false,
            restored_failure: None,
            fresh: false,
            deadline: None,
            shared: shared.clone(),
        };
        let restore = shared.started_once.swap(true, Ordering::SeqCst) || shared.spec.resumed;
        state.fresh = !restore;
        let step = state.plan.step();
        state.queue.extend(step.run);
        if restore && engine.recorder().is_durable() {
            let events = engine.recorder().run_events(&shared.spec.trace_id).await?;
            let record = read_record(&shared.spec.trace_id, &events)?;
            state.restore(&record)?;
        }
        register_budgets(&engine, &shared.spec)?;
        register_confirm_policy(&engine, &shared.spec);
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<RunMsg>,
        state: &mut RunState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(engine) = state.shared.engine.upgrade() else {
            myself.stop(None);
            return Ok(());
        };
        let spec = &state.shared.spec;
        // Through the announcer: after a restart, after the old instance's events.
        state.shared.announce.publish(RunProgress::RunStarted {
            ts_ms: engine.kernel().clock().now_ms(),
            trace_id: spec.trace_id.clone(),
            run_id: spec.run_id.to_string(),
            opening: spec.opening.name.clone(),
            nodes: spec
                .opening
                .nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect(),
            edges: edges_of(&spec.opening),
            resumed: spec.resumed,
        });
        if state.fresh {
            let bytes = spec.params.to_json().to_string().len() as u64;
            engine.crossings().simple(
                &spec.trace_id,
                "rlp",
                "run",
                "run.submit",
                None,
                bytes,
                state.run_started_ms,
                state.run_started_ms,
                None,
                false,
            );
        }
        let deadline = Duration::from_millis(spec.opening.policy.timeout_ms);
        let me = myself.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            let _ = me.cast(RunMsg::Deadline);
        });
        state.deadline = Some(AbortOnDrop(timer.abort_handle()));
        if let Some(reason) = state.restored_failure.take() {
            state
                .end(&engine, &myself, RunStatus::Failed, Some(reason))
                .await;
            return Ok(());
        }
        state.pump(&engine, &myself).await;
        state.maybe_finish(&engine, &myself).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RunMsg>,
        msg: RunMsg,
        state: &mut RunState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(engine) = state.shared.engine.upgrade() else {
            myself.stop(None);
            return Ok(());
        };
        if state.ended {
            return Ok(());
        }
        match msg {
            RunMsg::Done {
                node,
                attempt,
                result,
            } => {
                state.done(&engine, &myself, node, attempt, result).await;
                state.stop_finished(&engine, false);
            }
            RunMsg::AgentUp => {
                debug_assert!(state.starting > 0, "one AgentUp per attempt started");
                state.starting = state.starting.saturating_sub(1);
                state.stop_finished(&engine, false);
            }
            RunMsg::Retry { node, attempt } => {
                if *state.plan.state(node) == NodeState::Running
                    && state.attempts[node] + 1 == attempt
                {
                    state.start_attempt(&engine, &myself, node).await;
                }
            }
            RunMsg::Cancel => {
                let reason = Some("cancelled by request".to_owned());
                state
                    .end(&engine, &myself, RunStatus::Cancelled, reason)
                    .await;
            }
            RunMsg::Deadline => {
                let ms = state.shared.spec.opening.policy.timeout_ms;
                let reason = Some(format!("the run passed its timeout of {ms} ms"));
                state
                    .end(&engine, &myself, RunStatus::TimedOut, reason)
                    .await;
            }
        }
        Ok(())
    }
}

impl RunState {
    fn spec(&self) -> &RunSpec {
        &self.shared.spec
    }

    fn node_id(&self, node: usize) -> String {
        self.spec().opening.nodes[node].id.to_string()
    }

    /// Rebuilds the plan from the record: recorded finishes replayed in log order.
    fn restore(&mut self, record: &RunRecord) -> Result<(), ActorProcessingErr> {
        // The run keeps its first start (its duration spans any downtime); its timeout
        // counts again from this start.
        if record.started_ms > 0 {
            self.run_started_ms = record.started_ms;
        }
        let opening = self.spec().opening.clone();
        for (id, attempt) in &record.attempts {
            if let Some(i) = opening.node_index(id) {
                self.attempts[i] = *attempt;
            }
        }
        for f in &record.finished {
            let Some(i) = opening.node_index(&f.node_id) else {
                return Err(
                    format!("the record names node {} the opening lacks", f.node_id).into(),
                );
            };
            let end = match f.status.as_str() {
                "succeeded" | "ok" => {
                    let outputs = outputs_from_json(f.outputs.as_ref())?;
                    NodeEnd::Succeeded { outputs }
                }
                "failed" => NodeEnd::Failed {
                    reason: f.error.clone().unwrap_or_default(),
                },
                _ => continue,
            };
            if *self.plan.state(i) != NodeState::Running {
                return Err(
                    format!("the record finishes node {} before it could run", f.node_id).into(),
                );
            }
            if let NodeEnd::Failed { reason } = &end {
                self.restored_failure = Some(format!("node {} failed: {reason}", f.node_id));
            }
            self.plan.finish(i, end);
            self.attempts[i] = self.attempts[i].max(f.attempt);
            self.duration_ms[i] = f.duration_ms;
            self.queue.retain(|q| *q != i);
            let step = self.plan.step();
            self.queue.extend(step.run);
        }
        Ok(())
    }

    /// Starts queued nodes while `max_parallel` allows.
    async fn pump(&mut self, engine: &Arc<Engine>, myself: &ActorRef<RunMsg>) {
        let max = self.spec().opening.policy.max_parallel as usize;
        while self.running < max && !self.ended {
            let Some(node) = self.queue.pop_front() else {
                break;
            };
            self.running += 1;
            self.start_attempt(engine, myself, node).await;
        }
    }

    async fn start_attempt(
        &mut self,
        engine: &Arc<Engine>,
        myself: &ActorRef<RunMsg>,
        node: usize,
    ) {
        self.attempts[node] += 1;
        let attempt = self.attempts[node];
        let now = engine.kernel().clock().now_ms();
        self.started_ms[node].get_or_insert(now);
        // The spec is shared (an `Arc`), not copied, while `self` is borrowed mutably.
        let shared = self.shared.clone();
        let spec = &shared.spec;
        let node_def = &spec.opening.nodes[node];
        let trace_id = spec.trace_id.clone();
        let payload = json!({
            "trace_id": trace_id,
            "node_id": node_def.id.as_str(),
            "agent": node_def.agent.name,
            "attempt": attempt,
        });
        // The attempt is handed to the POG now, in order after everything this run
        // recorded before it and before anything its invoke records (a host call's
        // record, an effect's request: none is durable before the start is). Nothing
        // waits for its commit but the announcer: `node.started` is published once it is
        // durable.
        self.shared.announce.record(EventKind::NodeStarted, payload);
        let node_started = RunProgress::NodeStarted {
            ts_ms: now,
            trace_id: trace_id.clone(),
            node: node_def.id.to_string(),
            attempt,
        };
        let input = self.plan.input(node, attempt, &spec.params);
        let timeout_ms = node_def.timeout_ms;
        let engine = engine.clone();
        let me = myself.clone();
        self.starting += 1;
        // The kernel's own span of this attempt (agent start, invoke, a person's wait), in
        // the run's trace when it is exported (`docs/observability.md`).
        let span = tracing::info_span!(
            "node.attempt",
            runloop.trace_id = %trace_id,
            runloop.node = node_def.id.as_str(),
            runloop.agent = %node_def.agent.name,
            runloop.attempt = i64::from(attempt),
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        if let Some(otel) = engine.kernel().otel() {
            otel.adopt(&span, &trace_id);
        }
        let attempt_task = async move {
            let spec = &shared.spec;
            let agent = ensure_agent(&engine, spec, node).await;
            let _ = me.cast(RunMsg::AgentUp);
            let announce = &shared.announce;
            announce.publish(node_started);
            let result = match agent {
                Ok(()) => {
                    attempt_until_decided(&engine, announce, spec, node, input, timeout_ms).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_message", e.message.as_str());
            }
            let _ = me.cast(RunMsg::Done {
                node,
                attempt,
                result,
            });
        };
        tokio::spawn(attempt_task.instrument(span));
    }

    async fn done(
        &mut self,
        engine: &Arc<Engine>,
        myself: &ActorRef<RunMsg>,
        node: usize,
        attempt: u32,
        result: Result<Vec<(String, rmpv::Value)>, AttemptError>,
    ) {
        if *self.plan.state(node) != NodeState::Running || self.attempts[node] != attempt {
            return;
        }
        let now = engine.kernel().clock().now_ms();
        let duration = now.saturating_sub(self.started_ms[node].unwrap_or(now));
        match result {
            Ok(outputs) => {
                self.duration_ms[node] = Some(duration);
                self.finish_node(engine, node, NodeEnd::Succeeded { outputs });
                self.running -= 1;
                self.after_finish(engine, myself).await;
            }
            Err(e) => {
                let retry = &self.spec().opening.nodes[node].retry;
                if e.retryable && attempt < retry.max_attempts {
                    let unit = backoff_unit(self.spec().seed, &self.node_id(node), attempt + 1);
                    let delay = backoff_ms(retry, attempt + 1, unit);
                    engine.crossings().simple(
                        &self.spec().trace_id,
                        "run",
                        "run",
                        "node.retry",
                        Some(&self.node_id(node)),
                        0,
                        now,
                        now + delay,
                        Some(&format!(
                            "attempt {attempt} failed, attempt {} in {delay} ms: {}",
                            attempt + 1,
                            e.message
                        )),
                        false,
                    );
                    self.shared.announce.publish(RunProgress::NodeRetrying {
                        ts_ms: now,
                        trace_id: self.spec().trace_id.clone(),
                        node: self.node_id(node),
                        attempt,
                        delay_ms: delay,
                        error: e.message,
                    });
                    let me = myself.clone();
                    // The retry waits for the failed attempt's record too, so attempts stay
                    // counted across a crash.
                    let recorded = self.shared.announce.mark();
                    tokio::spawn(async move {
                        let _ = tokio::join!(
                            tokio::time::sleep(Duration::from_millis(delay)),
                            recorded
                        );
                        let _ = me.cast(RunMsg::Retry {
                            node,
                            attempt: attempt + 1,
                        });
                    });
                    return;
                }
                self.duration_ms[node] = Some(duration);
                let reason = e.message;
                self.finish_node(
                    engine,
                    node,
                    NodeEnd::Failed {
                        reason: reason.clone(),
                    },
                );
                self.running -= 1;
                let why = format!("node {} failed: {reason}", self.node_id(node));
                self.end(engine, myself, RunStatus::Failed, Some(why)).await;
            }
        }
    }

    /// Records a node's end and tells the plan.
    fn finish_node(&mut self, engine: &Arc<Engine>, node: usize, end: NodeEnd) {
        let shared = self.shared.clone();
        let spec = &shared.spec;
        let node_def = &spec.opening.nodes[node];
        let mut payload = json!({
            "trace_id": spec.trace_id,
            "node_id": node_def.id.as_str(),
            "agent": node_def.agent.name,
            "attempt": self.attempts[node],
            "duration_ms": self.duration_ms[node].unwrap_or(0),
        });
        let (status, output_hash, reason) = match &end {
            NodeEnd::Succeeded { outputs } => {
                let h = hex::encode(hash::output_hash(outputs));
                payload["outputs"] = outputs_to_json(outputs);
                payload["output_hash"] = json!(h);
                (NodeStatus::Succeeded, Some(h), None)
            }
            NodeEnd::Failed { reason } => {
                payload["error"] = json!(reason);
                (NodeStatus::Failed, None, Some(reason.clone()))
            }
            NodeEnd::Cancelled => (NodeStatus::Cancelled, None, None),
        };
        payload["status"] = json!(status.as_str());
        self.shared
            .announce
            .record(EventKind::NodeFinished, payload);
        // A finished node is not invoked again in this run: its sandbox goes, once no
        // start of the run is in flight (`stop_finished`; cancelled ones are stopped by
        // `end`).
        if !matches!(end, NodeEnd::Cancelled)
            && let Ok(agent) = AgentName::new(node_def.id.as_str())
        {
            self.finished_agents.push_back(agent);
            let max = (spec.opening.policy.max_parallel as usize).max(1);
            while self.finished_agents.len() > max {
                let oldest = self.finished_agents.pop_front().expect("more than max");
                stop_agent(engine, spec.run_id, oldest);
            }
        }
        self.reasons[node] = reason.clone();
        self.plan.finish(node, end);
        self.shared.announce.publish(RunProgress::NodeFinished {
            ts_ms: engine.kernel().clock().now_ms(),
            trace_id: spec.trace_id.clone(),
            node: node_def.id.to_string(),
            status,
            attempts: self.attempts[node],
            duration_ms: self.duration_ms[node].unwrap_or(0),
            output_hash,
            reason,
        });
    }

    async fn after_finish(&mut self, engine: &Arc<Engine>, myself: &ActorRef<RunMsg>) {
        let step = self.plan.step();
        for (node, reason) in step.skipped {
            self.skipped(engine, node, reason);
        }
        self.queue.extend(step.run);
        self.pump(engine, myself).await;
        self.maybe_finish(engine, myself).await;
    }

    fn skipped(&mut self, engine: &Arc<Engine>, node: usize, reason: String) {
        let shared = self.shared.clone();
        let spec = &shared.spec;
        let node_def = &spec.opening.nodes[node];
        let payload = json!({
            "trace_id": spec.trace_id,
            "node_id": node_def.id.as_str(),
            "agent": node_def.agent.name,
            "status": "skipped",
            "error": reason,
        });
        self.shared
            .announce
            .record(EventKind::NodeFinished, payload);
        self.reasons[node] = Some(reason.clone());
        self.shared.announce.publish(RunProgress::NodeSkipped {
            ts_ms: engine.kernel().clock().now_ms(),
            trace_id: spec.trace_id.clone(),
            node: node_def.id.to_string(),
            reason,
        });
    }

    async fn maybe_finish(&mut self, engine: &Arc<Engine>, myself: &ActorRef<RunMsg>) {
        if self.ended || !self.plan.is_done() {
            return;
        }
        match self.plan.outcome() {
            Outcome::Succeeded => self.end(engine, myself, RunStatus::Succeeded, None).await,
            Outcome::Failed { reason } => {
                self.end(engine, myself, RunStatus::Failed, Some(reason))
                    .await;
            }
        }
    }

    /// Ends the run: running nodes are cancelled (their agents stopped), waiting ones
    /// marked cancelled, the end recorded and the report handed to the engine.
    async fn end(
        &mut self,
        engine: &Arc<Engine>,
        myself: &ActorRef<RunMsg>,
        status: RunStatus,
        reason: Option<String>,
    ) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.queue.clear();
        let shared = self.shared.clone();
        let spec = &shared.spec;
        for node in 0..spec.opening.nodes.len() {
            if *self.plan.state(node) == NodeState::Running {
                self.finish_node(engine, node, NodeEnd::Cancelled);
                if let Ok(agent) = AgentName::new(spec.opening.nodes[node].id.as_str()) {
                    stop_agent(engine, spec.run_id, agent);
                }
            }
        }
        self.stop_finished(engine, true);
        for node in self.plan.cancel_waiting() {
            self.reasons[node] = reason.clone();
        }
        let now = engine.kernel().clock().now_ms();
        let duration = now.saturating_sub(self.run_started_ms);
        let result_hash = hex::encode(self.plan.result_hash());
        let mut payload = json!({
            "trace_id": spec.trace_id,
            "status": status.as_str(),
            "duration_ms": duration,
            "result_hash": result_hash,
        });
        if let Some(r) = &reason {
            payload["error"] = json!(r);
        }
        // The end asks for a commit, which takes every record before it along; the report
        // goes out once it is durable and every event before it is published.
        self.shared.announce.record(EventKind::RunFinished, payload);
        self.shared.announce.publish(RunProgress::RunFinished {
            ts_ms: now,
            trace_id: spec.trace_id.clone(),
            status,
            reason: reason.clone(),
            duration_ms: duration,
            result_hash: result_hash.clone(),
        });
        let _ = self.shared.announce.mark().await;
        let report = self.report(status, reason, duration, result_hash);
        let report_bytes = rmp_serde::to_vec_named(&report).map_or(0, |b| b.len() as u64);
        let last = engine.crossings().simple(
            &spec.trace_id,
            "run",
            "rlp",
            "run.report",
            None,
            report_bytes,
            now,
            now,
            Some(status.as_str()),
            status != RunStatus::Succeeded,
        );
        engine.crossings().flush(&spec.trace_id, last).await;
        engine.crossings().close(&spec.trace_id);
        // Budgets and confirmations go here, before the report is out (whoever reads it
        // finds them forgotten), not in post_stop: the report makes the engine stop the
        // run's supervisor, and a supervisor that stops first kills its children without
        // their post_stop (a soak found 1 run in 200 left in the gate that way).
        close_budgets(engine, &spec.trace_id);
        close_confirmations(engine, &spec.trace_id);
        engine.finished(report);
        myself.stop(None);
    }

    /// Stops the sandboxes of finished nodes once no agent start of this run is in flight
    /// (`all`: now, whatever is starting — the run's end). A sandbox's stop (its exit, the
    /// removal of its cgroup, its namespaces' teardown) beside the next node's start slowed
    /// that start by 1.5–7 ms on two cores (`perf/openings.md`); deferred, it overlaps the
    /// next node's invoke instead. At most `max_parallel` wait (`finish_node` stops the
    /// oldest past that), and `end` stops every one: none outlives its run.
    fn stop_finished(&mut self, engine: &Arc<Engine>, all: bool) {
        if self.starting > 0 && !all {
            return;
        }
        let run = self.spec().run_id;
        for agent in self.finished_agents.drain(..) {
            stop_agent(engine, run, agent);
        }
    }

    fn report(
        &self,
        status: RunStatus,
        reason: Option<String>,
        duration_ms: u64,
        result_hash: String,
    ) -> RunReport {
        let spec = self.spec();
        let nodes = (0..spec.opening.nodes.len())
            .map(|i| {
                let (status, output_hash, outputs) = match self.plan.state(i) {
                    NodeState::Succeeded {
                        outputs,
                        output_hash,
                    } => (
                        NodeStatus::Succeeded,
                        Some(hex::encode(output_hash)),
                        Some(outputs_to_json(outputs).to_string()),
                    ),
                    NodeState::Failed { .. } => (NodeStatus::Failed, None, None),
                    NodeState::Skipped => (NodeStatus::Skipped, None, None),
                    NodeState::Cancelled => (NodeStatus::Cancelled, None, None),
                    NodeState::Waiting => (NodeStatus::Waiting, None, None),
                    NodeState::Running => (NodeStatus::Running, None, None),
                };
                NodeReport {
                    id: spec.opening.nodes[i].id.to_string(),
                    status,
                    attempts: self.attempts[i],
                    started_at_ms: self.started_ms[i],
                    duration_ms: self.duration_ms[i],
                    output_hash,
                    outputs_json: outputs,
                    reason: self.reasons[i].clone(),
                }
            })
            .collect();
        RunReport {
            trace_id: spec.trace_id.clone(),
            run_id: spec.run_id.to_string(),
            opening: spec.opening.name.clone(),
            status,
            reason,
            started_at_ms: self.run_started_ms,
            duration_ms,
            result_hash,
            nodes,
        }
    }
}

/// Stops `agent` of `run` in a task of its own: the run actor does not wait for it.
fn stop_agent(engine: &Arc<Engine>, run: RunId, agent: AgentName) {
    let kernel = engine.kernel().clone();
    tokio::spawn(async move {
        let _ = kernel.stop_agent_in(run, &agent).await;
    });
}

/// The opening's edges as `[from, to]` node ids, one per distinct pair, in edge order.
pub(crate) fn edges_of(opening: &Opening) -> Vec<[String; 2]> {
    let mut out: Vec<[String; 2]> = Vec::new();
    for edge in &opening.edges {
        let pair = [
            opening.nodes[edge.from_node].id.to_string(),
            opening.nodes[edge.to_node].id.to_string(),
        ];
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}
