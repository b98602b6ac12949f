//! What UI peers ask the confirmation gate through the control plane (`rlp confirm`,
//! `rlp run`'s prompt against a daemon, agtop): the pending actions, one of them, and a
//! decision bound to the payload hash that was shown.

use std::time::Duration;

use runloop_proto::payloads::{ActionInfo, ControlOutcome};

use super::gate::{ActionRequest, GateError, GateMsg};
use crate::kernel::Kernel;

/// How long a control request waits for the gate.
const GATE_TIMEOUT_MS: u64 = 10_000;

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

/// The wire form of a request.
pub fn info(r: &ActionRequest) -> ActionInfo {
    ActionInfo {
        request_id: r.request_id.clone(),
        trace_id: r.trace_id.clone(),
        node_id: r.node_id.clone(),
        agent: r.agent.clone(),
        effect: r.effect.clone(),
        idempotency_key: r.idempotency_key.clone(),
        summary: r.summary.clone(),
        payload_hash: r.payload_hash.clone(),
        payload_json: r.payload.to_string(),
        expires_ms: r.expires_ms,
    }
}

fn unavailable() -> ControlOutcome {
    failed(
        "Unavailable",
        "this kernel has no confirmation gate (it runs without the POG)".into(),
    )
}

async fn pending(kernel: &Kernel) -> Result<Vec<ActionRequest>, ControlOutcome> {
    let gate = kernel
        .effects()
        .and_then(|e| e.gate.get())
        .ok_or_else(unavailable)?;
    let timeout = Some(Duration::from_millis(GATE_TIMEOUT_MS));
    match gate.call(GateMsg::List, timeout).await {
        Ok(ractor::rpc::CallResult::Success(list)) => Ok(list),
        _ => Err(failed(
            "Unavailable",
            "the confirmation gate did not answer".into(),
        )),
    }
}

/// `confirm_list`.
pub async fn list(kernel: &Kernel) -> ControlOutcome {
    match pending(kernel).await {
        Ok(list) => ControlOutcome::Actions {
            actions: list.iter().map(info).collect(),
        },
        Err(outcome) => outcome,
    }
}

/// `confirm_show`.
pub async fn show(kernel: &Kernel, request_id: &str) -> ControlOutcome {
    match pending(kernel).await {
        Ok(list) => match list.iter().find(|r| r.request_id == request_id) {
            Some(r) => ControlOutcome::Action { action: info(r) },
            None => failed(
                "NoSuchRequest",
                GateError::NoSuchRequest(request_id.to_owned()).to_string(),
            ),
        },
        Err(outcome) => outcome,
    }
}

/// One decision from a UI peer.
#[derive(Debug, Clone)]
pub struct Decide {
    pub request_id: String,
    pub approve: bool,
    pub payload_hash: String,
    pub by: String,
    pub reason: Option<String>,
}

/// `confirm_decide`.
pub async fn decide(kernel: &Kernel, d: Decide) -> ControlOutcome {
    let Some(gate) = kernel.effects().and_then(|e| e.gate.get()) else {
        return unavailable();
    };
    let by = if d.by.trim().is_empty() {
        "a UI peer".to_owned()
    } else {
        d.by.chars().take(64).collect()
    };
    let timeout = Some(Duration::from_millis(GATE_TIMEOUT_MS));
    let answer = gate
        .call(
            |reply| GateMsg::Decide {
                request_id: d.request_id,
                approve: d.approve,
                payload_hash: d.payload_hash,
                by,
                reason: d.reason.map(|r| r.chars().take(1024).collect()),
                reply,
            },
            timeout,
        )
        .await;
    match answer {
        Ok(ractor::rpc::CallResult::Success(Ok(made))) => ControlOutcome::Decided {
            request_id: made.request_id,
            decision: made.decision.as_str().to_owned(),
            by: made.by,
        },
        Ok(ractor::rpc::CallResult::Success(Err(e))) => {
            let code = match e {
                GateError::NoSuchRequest(_) => "NoSuchRequest",
                GateError::StalePayload { .. } => "StalePayload",
                GateError::TooMany | GateError::Pog(_) => "Unavailable",
            };
            failed(code, e.to_string())
        }
        _ => failed("Unavailable", "the confirmation gate did not answer".into()),
    }
}
