//! The trace and replay commands of the control plane.

use runloop_proto::payloads::{ControlOutcome, TraceSummary};

use super::replay::ReplayError;
use crate::runs::Engine;
use crate::runs::record::RecordError;

/// Most traces one list shows.
pub const TRACE_LIST_MAX: usize = 200;

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

/// A trace id is 32 lowercase hex digits; anything else is refused before any read.
fn check_id(trace_id: &str) -> Option<ControlOutcome> {
    let ok = trace_id.len() == 32
        && trace_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        None
    } else {
        Some(failed(
            "BadInput",
            format!(
                "trace id {trace_id:?}: expected 32 lowercase hex digits (see `rlp trace` for recent ones)"
            ),
        ))
    }
}

fn record_refusal(e: &RecordError) -> ControlOutcome {
    match e {
        RecordError::NotFound(_) => failed("NoSuchRun", e.to_string()),
        RecordError::NoPog { .. } => failed("Unavailable", e.to_string()),
        _ => failed("RunRecord", e.to_string()),
    }
}

/// `trace_show`: one run's crossings.
pub async fn show(engine: &Engine, trace_id: &str) -> ControlOutcome {
    if let Some(refused) = check_id(trace_id) {
        return refused;
    }
    let events = match engine.recorder().run_events(trace_id).await {
        Ok(events) => events,
        Err(e) => return record_refusal(&e),
    };
    let live = engine.live_runs().iter().any(|t| t == trace_id);
    match super::view::build(trace_id, &events, live) {
        Ok(view) => ControlOutcome::Trace { view },
        Err(e) => record_refusal(&e),
    }
}

/// `trace_list`: recent runs with how many crossings each recorded.
pub async fn list(engine: &Engine, limit: usize) -> ControlOutcome {
    let runs = match engine.list(limit.clamp(1, TRACE_LIST_MAX)).await {
        Ok(runs) => runs,
        Err(e) => return crate::runs::control::refusal(&e),
    };
    let mut traces = Vec::with_capacity(runs.len());
    for run in runs {
        let crossings = engine
            .recorder()
            .run_events(&run.trace_id)
            .await
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e.kind == runloop_pog::EventKind::CrossingRecorded)
                    .count() as u64
            })
            .unwrap_or(0);
        traces.push(TraceSummary {
            trace_id: run.trace_id,
            opening: run.opening,
            status: run.status.as_str().to_owned(),
            started_ms: run.started_at_ms.unwrap_or(0),
            crossings,
        });
    }
    ControlOutcome::Traces { traces }
}

/// `run_replay`: the replay's verdict.
pub async fn replay(engine: &std::sync::Arc<Engine>, trace_id: &str) -> ControlOutcome {
    if let Some(refused) = check_id(trace_id) {
        return refused;
    }
    match super::replay::replay(engine, trace_id).await {
        Ok(report) => ControlOutcome::Replayed { report },
        Err(ReplayError::Record(e)) => record_refusal(&e),
        Err(e @ ReplayError::NotRecorded(_)) => failed("NotRecorded", e.to_string()),
        Err(e @ ReplayError::Kernel { .. }) => failed("Unavailable", e.to_string()),
    }
}
