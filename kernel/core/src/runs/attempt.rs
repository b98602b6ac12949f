//! One attempt of one node: the node's own agent instance in the run (started when it is
//! not running), the invoke over the bus under the run's trace id, bounded by the node's
//! timeout; attempts again while the node's effect waits for a person's decision; which
//! failures are retryable; the seeded backoff draw.

use std::sync::Arc;
use std::time::Duration;

use runloop_actors::names::AgentName;
use runloop_proto::TraceId;
use runloop_proto::payloads::{AgentInput, RunProgress};

use serde_json::json;
use tracing::Instrument as _;

use super::Engine;
use super::actor::RunSpec;
use super::announce::Announcer;
use crate::agents::{AgentOpError, StartOptions};
use crate::trace::tape::{agent_participant, detail, outputs_value, value_bytes};

/// How one attempt went wrong.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub message: String,
    pub retryable: bool,
}

/// The node's agent instance in the run, started if it is not running (every host call
/// of the instance recorded on the node's tape), from the bundle the submit verified.
pub(super) async fn ensure_agent(
    engine: &Arc<Engine>,
    spec: &RunSpec,
    node: usize,
) -> Result<(), AttemptError> {
    let kernel = engine.kernel();
    let id = spec.opening.nodes[node].id.as_str();
    let agent = node_agent(id)?;
    if kernel.agent_entry(spec.run_id, &agent).is_some() {
        return Ok(());
    }
    let options = StartOptions {
        name: Some(id.to_owned()),
        handlers: Some(Arc::new(runloop_agent_actor::RecordingHandlers {
            sink: spec.tapes[node].clone(),
            clock: kernel.clock().clone(),
        })),
        ..StartOptions::default()
    };
    let start = kernel
        .start_verified_in(spec.run_id, spec.loaded[node].clone(), options)
        .instrument(tracing::info_span!(
            "agent.start",
            runloop.node = id,
            runloop.agent = %spec.opening.nodes[node].agent.name,
        ));
    match start.await {
        Ok(_) | Err(AgentOpError::Exists(_)) => Ok(()),
        Err(e) => Err(AttemptError {
            message: format!("start agent: {e}"),
            retryable: false,
        }),
    }
}

/// The agent name of node `id` (node ids are valid agent names; checked, not assumed).
fn node_agent(id: &str) -> Result<AgentName, AttemptError> {
    AgentName::new(id).map_err(|e| AttemptError {
        message: e.to_string(),
        retryable: false,
    })
}

/// One attempt: the node's agent instance (started if it is not running), the invoke over
/// the bus, bounded by the node's timeout.
pub(super) async fn run_attempt(
    engine: &Arc<Engine>,
    spec: &RunSpec,
    node: usize,
    input: rmpv::Value,
    timeout_ms: u64,
) -> Result<Vec<(String, rmpv::Value)>, AttemptError> {
    let kernel = engine.kernel();
    let id = spec.opening.nodes[node].id.as_str();
    let agent = node_agent(id)?;
    let tape = &spec.tapes[node];
    ensure_agent(engine, spec, node).await?;
    let trace_id: TraceId = spec.trace_id.parse().map_err(|_| AttemptError {
        message: "bad trace id".into(),
        retryable: false,
    })?;
    let input = AgentInput {
        port: "in".into(),
        payload: input,
    };
    let (invoke, seq) = tape.begin();
    let started_ms = kernel.clock().now_ms();
    let recorded_input = tape.log().is_recording().then(|| {
        let bytes = value_bytes(&input.payload);
        (bytes.len(), hex::encode(bytes))
    });
    let send = kernel.send_traced(spec.run_id, &spec.opening_id, &agent, input, trace_id);
    let result: Result<Vec<(String, rmpv::Value)>, AttemptError> =
        match tokio::time::timeout(Duration::from_millis(timeout_ms), send).await {
            Ok(Ok(reply)) => Ok(reply
                .outputs
                .into_iter()
                .map(|o| (o.port, o.payload))
                .collect()),
            Ok(Err(e)) => Err(AttemptError {
                retryable: retryable(&e),
                message: e.to_string(),
            }),
            Err(_) => {
                // The sandbox may still be busy with the invoke: a fresh instance for the next
                // attempt.
                let _ = kernel.stop_agent_in(spec.run_id, &agent).await;
                let ended = kernel.clock().now_ms();
                tape.log().simple(
                    &spec.trace_id,
                    "run",
                    &agent_participant(id),
                    "node.timeout",
                    Some(id),
                    0,
                    ended,
                    ended,
                    Some(&format!("attempt timed out after {timeout_ms} ms")),
                    true,
                );
                Err(AttemptError {
                    message: format!("attempt timed out after {timeout_ms} ms"),
                    retryable: true,
                })
            }
        };
    if let Some((bytes, request)) = recorded_input {
        let mut p = json!({
            "trace_id": spec.trace_id,
            "seq": seq,
            "from": "run",
            "to": agent_participant(id),
            "kind": "agent.invoke",
            "node_id": id,
            "invoke": invoke,
            "bytes": bytes,
            "start_ms": started_ms,
            "end_ms": kernel.clock().now_ms().max(started_ms),
            "status": "ok",
            "request": request,
            "bundle_digest": spec.digests[node],
            "bundle": spec.loaded[node].dir().display().to_string(),
        });
        match &result {
            Ok(outputs) => {
                let bytes = value_bytes(&outputs_value(outputs));
                p["reply_bytes"] = json!(bytes.len());
                p["reply"] = json!(hex::encode(bytes));
            }
            Err(e) => {
                p["status"] = json!("error");
                p["detail"] = json!(detail(&e.message));
            }
        }
        tape.log().write(&spec.trace_id, p);
    }
    result
}

/// Runs attempts of `node` until one ends without waiting for a person: an attempt whose
/// effect answered `ConfirmationPending` is not counted; the node waits for the decision
/// (published as `node.waiting` / `node.decided`) and is invoked again with the same
/// input, and its effect then finds the decision recorded.
pub(super) async fn attempt_until_decided(
    engine: &Arc<Engine>,
    announce: &Announcer,
    spec: &RunSpec,
    node: usize,
    input: rmpv::Value,
    timeout_ms: u64,
) -> Result<Vec<(String, rmpv::Value)>, AttemptError> {
    let node_id = spec.opening.nodes[node].id.to_string();
    loop {
        let result = run_attempt(engine, spec, node, input.clone(), timeout_ms).await;
        let Some(effects) = engine.kernel().effects() else {
            return result;
        };
        for decided in effects.shared.take_decided(&spec.trace_id, &node_id) {
            announce.publish(RunProgress::NodeDecided {
                ts_ms: engine.kernel().clock().now_ms(),
                trace_id: spec.trace_id.clone(),
                node: node_id.clone(),
                request_id: decided.request_id,
                decision: decided.decision.as_str().to_owned(),
                by: decided.by,
                reason: decided.reason,
            });
        }
        let Some(request_id) = effects.shared.take_waiting(&spec.trace_id, &node_id) else {
            return result;
        };
        let Some(gate) = effects.gate.get() else {
            return result;
        };
        let pending = effects.shared.subscribe().borrow().clone();
        if let Some(request) = pending.iter().find(|r| r.request_id == request_id) {
            announce.publish(RunProgress::NodeWaiting {
                ts_ms: engine.kernel().clock().now_ms(),
                trace_id: spec.trace_id.clone(),
                node: node_id.clone(),
                request_id: request_id.clone(),
                effect: request.effect.clone(),
                summary: request.summary.clone(),
                payload_hash: request.payload_hash.clone(),
                expires_ms: request.expires_ms,
            });
        }
        // No timeout here: the gate decides every request by its expiry.
        let decided = gate
            .call(
                |reply| crate::effects::gate::GateMsg::Wait(request_id.clone(), reply),
                None,
            )
            .instrument(tracing::info_span!(
                "confirmation.wait",
                runloop.node = node_id.as_str(),
                runloop.request_id = request_id.as_str(),
            ))
            .await;
        if let Ok(ractor::rpc::CallResult::Success(Some(decision))) = decided {
            announce.publish(RunProgress::NodeDecided {
                ts_ms: engine.kernel().clock().now_ms(),
                trace_id: spec.trace_id.clone(),
                node: node_id.clone(),
                request_id,
                decision: decision.decision.as_str().to_owned(),
                by: decision.by,
                reason: decision.reason,
            });
        }
    }
}

/// Spec: guest trap, time limit, sandbox lost and errors the agent marks are retryable.
fn retryable(e: &AgentOpError) -> bool {
    use runloop_agent_actor::AgentError as E;
    match e {
        AgentOpError::Agent(E::Guest { retryable, .. }) => *retryable,
        AgentOpError::Agent(E::AttemptsExhausted { .. }) => true,
        AgentOpError::NotRunning(_) | AgentOpError::Timeout { .. } => true,
        _ => false,
    }
}

/// The uniform draw in `[0, 1)` for the backoff before `attempt` of `node`: keyed by the
/// run's seed, the node and the attempt, so a resumed or replayed run waits the same
/// whatever order its nodes ran in.
pub fn backoff_unit(seed: u64, node: &str, attempt: u32) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(node.as_bytes());
    h.update(&attempt.to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().expect("8 bytes");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
