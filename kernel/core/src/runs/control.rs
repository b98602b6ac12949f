//! The run commands of the control plane, from wire strings to engine calls and back.

use std::path::Path;

use runloop_proto::payloads::ControlOutcome;

use super::{Engine, SubmitError};

fn failed(code: &str, message: String) -> ControlOutcome {
    ControlOutcome::Failed {
        code: code.into(),
        message,
    }
}

/// The stable code and text of a refused submission. Validation errors travel as one
/// `line:col: message` per line, so every client prints them the same way.
pub fn refusal(e: &SubmitError) -> ControlOutcome {
    match e {
        SubmitError::Invalid(errors) => failed("InvalidOpening", errors.to_string()),
        SubmitError::Params(_) | SubmitError::ParamsJson(_) => {
            failed("InvalidParams", e.to_string())
        }
        SubmitError::NotFound(_) | SubmitError::Record(super::record::RecordError::NotFound(_)) => {
            failed("NoSuchRun", e.to_string())
        }
        SubmitError::Finished(_) | SubmitError::Running { .. } | SubmitError::Live(_) => {
            failed("RunState", e.to_string())
        }
        SubmitError::BadRecord { .. } | SubmitError::Record(_) => {
            failed("RunRecord", e.to_string())
        }
        SubmitError::Start(_) => failed("Unavailable", e.to_string()),
    }
}

pub async fn submit(engine: &Engine, source: &str, dir: &str, params_json: &str) -> ControlOutcome {
    let params: serde_json::Value = match serde_json::from_str(params_json) {
        Ok(v) => v,
        Err(e) => return refusal(&SubmitError::ParamsJson(e.to_string())),
    };
    match engine.submit(source, Path::new(dir), &params).await {
        Ok(s) => ControlOutcome::RunSubmitted {
            trace_id: s.trace_id,
            run_id: s.run_id,
        },
        Err(e) => refusal(&e),
    }
}

pub async fn resume(engine: &Engine, trace_id: &str) -> ControlOutcome {
    match engine.resume(trace_id).await {
        Ok(s) => ControlOutcome::RunSubmitted {
            trace_id: s.trace_id,
            run_id: s.run_id,
        },
        Err(e) => refusal(&e),
    }
}

/// A run's progress so far, from its record (`run_show`).
pub async fn state(engine: &Engine, trace_id: &str) -> ControlOutcome {
    match engine.progress_so_far(trace_id).await {
        Ok(events) => ControlOutcome::RunState { events },
        Err(e) => refusal(&e),
    }
}

pub async fn wait(engine: &Engine, trace_id: &str) -> ControlOutcome {
    let mut rx = match engine.watch(trace_id).await {
        Ok(rx) => rx,
        Err(e) => return refusal(&e),
    };
    match rx.wait_for(Option::is_some).await {
        Ok(report) => ControlOutcome::RunFinished {
            report: report.clone().expect("waited for a report"),
        },
        Err(_) => failed("Unavailable", format!("run {trace_id}: the engine stopped")),
    }
}
