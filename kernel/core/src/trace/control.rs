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

/// Events per write when importing (each write is one group commit).
const IMPORT_BATCH_EVENTS: usize = 1_000;

/// The trace ids of the runs an export starts (its `run.started` lines).
pub fn runs_in(ndjson: &str) -> Vec<String> {
    ndjson
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v.get("kind").and_then(serde_json::Value::as_str) == Some("run.started"))
        .filter_map(|v| {
            v.pointer("/payload/trace_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The lines of an export that belong to none of the `known` runs (by their
/// provenance's or payload's trace id), and how many were left out: a run already in a
/// POG is not imported again (its events would get new idempotency keys and count twice).
pub fn without_runs(ndjson: &str, known: &[String]) -> (String, u64) {
    if known.is_empty() {
        return (ndjson.to_owned(), 0);
    }
    let mut kept = String::with_capacity(ndjson.len());
    let mut skipped = 0;
    for line in ndjson.lines() {
        let trace = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                ["/provenance/trace_id", "/payload/trace_id"]
                    .iter()
                    .find_map(|p| {
                        v.pointer(p)
                            .and_then(serde_json::Value::as_str)
                            .map(str::to_owned)
                    })
            });
        if trace.is_some_and(|t| known.contains(&t)) {
            skipped += 1;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    (kept, skipped)
}

/// `run_import`: an exported run's events appended through the POG actor (its one
/// writer), in batches; refused before any write when the text starts no run; the events
/// of a run already here are counted as duplicates, not written again.
pub async fn import(engine: &Engine, ndjson: &str) -> ControlOutcome {
    let runs = runs_in(ndjson);
    if runs.is_empty() {
        return failed(
            "NotARun",
            "the file holds no run.started event: not a `rlp runs export` file (nothing imported)"
                .into(),
        );
    }
    let mut known = Vec::new();
    for run in &runs {
        if let Ok(events) = engine.recorder().run_events(run).await
            && events
                .iter()
                .any(|e| e.kind == runloop_pog::EventKind::RunStarted)
        {
            known.push(run.clone());
        }
    }
    let (ndjson, skipped) = without_runs(ndjson, &known);
    let ndjson = ndjson.as_str();
    let Some(pog) = engine.kernel().pog() else {
        return failed("Unavailable", "this kernel has no POG".into());
    };
    let provenance = runloop_pog::Provenance::from_json(&serde_json::json!({
        "trace_id": engine.kernel().ids().trace_id().to_string(),
        "opening_id": "cli.import", "agent": "rlp", "inputs_hash": "0".repeat(64),
        "rationale": "rlp runs import",
    }));
    let (Ok(provenance), Ok(actor)) = (provenance, runloop_pog::ActorName::new("user")) else {
        return failed("Unavailable", "import provenance".into());
    };
    let ctx = runloop_pog::import::ImportContext {
        provenance,
        actor,
        scope: runloop_pog::Scope::default_scope(),
        csv_kind: runloop_pog::EventKind::NoteAdded,
    };
    let parsed = match runloop_pog::import::parse_ndjson(ndjson.as_bytes(), &ctx) {
        Ok(p) => p,
        Err(e) => return failed("BadInput", e.to_string()),
    };
    let rows = parsed.events.len() as u64 + skipped;
    let (mut appended, mut duplicates) = (0u64, skipped);
    let mut events = parsed.events.into_iter().peekable();
    let timeout = Some(std::time::Duration::from_millis(
        crate::runs::record::RECORD_TIMEOUT_MS,
    ));
    while events.peek().is_some() {
        let chunk: Vec<_> = events.by_ref().take(IMPORT_BATCH_EVENTS).collect();
        match pog
            .call(|r| runloop_pog_actor::PogMsg::Write(chunk, r), timeout)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(written))) => {
                for w in written {
                    if w.duplicate {
                        duplicates += 1;
                    } else {
                        appended += 1;
                    }
                }
            }
            Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                return failed(
                    "BadInput",
                    format!("import: {e} ({appended} appended before)"),
                );
            }
            Ok(_) | Err(_) => {
                return failed("Unavailable", "import: the POG did not answer".into());
            }
        }
    }
    ControlOutcome::Imported {
        rows,
        appended,
        duplicates,
        runs,
    }
}
