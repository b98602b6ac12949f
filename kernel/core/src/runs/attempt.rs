//! One attempt of one node: the node's own agent instance in the run (started when it is
//! not running), the invoke over the bus under the run's trace id, bounded by the node's
//! timeout; which failures are retryable; the seeded backoff draw.

use std::sync::Arc;
use std::time::Duration;

use runloop_actors::names::AgentName;
use runloop_proto::TraceId;
use runloop_proto::payloads::AgentInput;

use super::Engine;
use super::actor::RunSpec;
use crate::agents::{AgentOpError, StartOptions};

/// How one attempt went wrong.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub message: String,
    pub retryable: bool,
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
    let agent = AgentName::new(id).map_err(|e| AttemptError {
        message: e.to_string(),
        retryable: false,
    })?;
    if kernel.agent_entry(spec.run_id, &agent).is_none() {
        let options = StartOptions {
            name: Some(id.to_owned()),
            handlers: None,
        };
        if let Err(e) = kernel
            .start_bundle_in(spec.run_id, &spec.bundles[node], options)
            .await
            && !matches!(e, AgentOpError::Exists(_))
        {
            return Err(AttemptError {
                message: format!("start agent: {e}"),
                retryable: false,
            });
        }
    }
    let trace_id: TraceId = spec.trace_id.parse().map_err(|_| AttemptError {
        message: "bad trace id".into(),
        retryable: false,
    })?;
    let input = AgentInput {
        port: "in".into(),
        payload: input,
    };
    let send = kernel.send_traced(spec.run_id, &spec.opening_id, &agent, input, trace_id);
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
            Err(AttemptError {
                message: format!("attempt timed out after {timeout_ms} ms"),
                retryable: true,
            })
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
