//! A run's record in the POG, and reading it back to continue the run.
//!
//! Everything needed to continue a run is written as it happens: `run.started` (the
//! opening's source and digest, its directory, params, seed, run id, which process runs
//! it), `node.started` per attempt, `node.finished` with the node's outputs and hash, and
//! `run.finished`. A node's start and finish are queued for the POG's next group commit
//! without asking for one ([`Commit::Later`]); the run's start and end, and an effect's
//! journal entries, are awaited ([`Commit::Now`]). The POG actor commits what arrives
//! together, in arrival order, so concurrent runs share transactions instead of one fsync
//! per crossing, what is durable of a run is always a prefix of what it recorded, and an
//! awaited event commits after everything queued before it. The run's progress events
//! wait for their records' commits (`super::announce`), the run itself does not.

use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use runloop_pog::{ActorName, Event, EventKind, NewEvent, Provenance, Scope};
use runloop_pog_actor::PogMsg;
use runloop_proto::json::{json_to_msgpack, msgpack_to_json};
use runloop_proto::payloads::{NodeReport, NodeStatus, RunReport, RunStatus};
use serde_json::{Value, json};

use super::Engine;

/// How long one record waits for the POG actor.
pub const RECORD_TIMEOUT_MS: u64 = 10_000;

/// Why a run's record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record {what}: the POG is not running")]
    NoPog { what: &'static str },
    #[error("record {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("record {what}: the POG did not answer: {message}")]
    Pog { what: &'static str, message: String },
    #[error("read run {trace_id}: {message}")]
    Read { trace_id: String, message: String },
    #[error("run {0} has no record in the POG")]
    NotFound(String),
}

/// What the POG actor answers once an event is committed.
type WriteResult = Result<Vec<runloop_pog::Written>, runloop_pog::WriteError>;

/// The answer of the POG actor once an event is committed.
type Committed = ractor::concurrency::OneshotReceiver<WriteResult>;

/// One event handed to the POG actor, not yet known to be committed.
#[derive(Debug)]
#[must_use = "a write is durable only once `committed` answered"]
pub struct PendingWrite {
    what: &'static str,
    /// `None` without a POG (nothing to wait for).
    committed: Option<Committed>,
    /// Bytes of the canonical payload handed over (0 without a POG).
    bytes: u64,
}

impl PendingWrite {
    /// Waits until the event is committed (at most [`RECORD_TIMEOUT_MS`]).
    pub async fn committed(self) -> Result<(), RecordError> {
        let what = self.what;
        let Some(committed) = self.committed else {
            return Ok(());
        };
        let timeout = Duration::from_millis(RECORD_TIMEOUT_MS);
        match tokio::time::timeout(timeout, committed).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(RecordError::Pog {
                what,
                message: e.to_string(),
            }),
            Ok(Err(_)) | Err(_) => Err(RecordError::Pog {
                what,
                message: "no answer".into(),
            }),
        }
    }
}

/// When a handed-over event asks the POG to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Commit now (with whatever else arrived): `PogMsg::Write`.
    Now,
    /// Ride the next commit somebody asks for, or the POG's `LATER_FLUSH_MS` timer:
    /// `PogMsg::WriteLater`.
    Later,
}

/// Writes a run's events to the POG actor, when the kernel has one.
#[derive(Debug, Clone)]
pub struct Recorder {
    pog: Option<ActorRef<PogMsg>>,
}

impl Recorder {
    pub fn new(pog: Option<ActorRef<PogMsg>>) -> Self {
        Self { pog }
    }

    /// Durable runs need the POG; without it a run still runs, but cannot continue after a
    /// crash.
    pub fn is_durable(&self) -> bool {
        self.pog.is_some()
    }

    /// Appends one event and waits until it is committed (no-op without a POG).
    pub async fn write(
        &self,
        trace_id: &str,
        kind: EventKind,
        payload: Value,
    ) -> Result<(), RecordError> {
        self.begin(trace_id, kind, payload, Commit::Now)?
            .committed()
            .await
    }

    /// Hands one event to the POG now (its place in the commit order is fixed here) and
    /// returns what waits for its commit, so the caller can do other work meanwhile.
    /// Events handed over (and written) from one task reach the POG in order, so a later
    /// awaited [`Recorder::write`] commits after them.
    pub fn begin(
        &self,
        trace_id: &str,
        kind: EventKind,
        payload: Value,
        commit: Commit,
    ) -> Result<PendingWrite, RecordError> {
        let write = match commit {
            Commit::Now => PogMsg::Write,
            Commit::Later => PogMsg::WriteLater,
        };
        let sent = self.send(trace_id, kind, payload, write)?;
        Ok(PendingWrite {
            what: kind.as_str(),
            bytes: sent.as_ref().map_or(0, |(_, bytes)| *bytes),
            committed: sent.map(|(committed, _)| committed),
        })
    }

    /// Validates one event and hands it to the POG actor's mailbox (in order with every
    /// other event sent from this task); the receiver answers once it is committed. With
    /// it, the bytes of the canonical payload. `None` without a POG.
    fn send(
        &self,
        trace_id: &str,
        kind: EventKind,
        payload: Value,
        write: fn(Vec<NewEvent>, RpcReplyPort<WriteResult>) -> PogMsg,
    ) -> Result<Option<(Committed, u64)>, RecordError> {
        let what = kind.as_str();
        let Some(pog) = &self.pog else {
            return Ok(None);
        };
        let event = new_event(kind, trace_id, payload)
            .map_err(|message| RecordError::Invalid { what, message })?;
        let bytes = event.payload_jcs().len() as u64;
        let (tx, rx) = ractor::concurrency::oneshot();
        pog.send_message(write(vec![event], tx.into()))
            .map_err(|e| RecordError::Pog {
                what,
                message: e.to_string(),
            })?;
        Ok(Some((rx, bytes)))
    }

    /// One run's events, oldest first, once everything handed to the POG before is
    /// committed.
    pub async fn run_events(&self, trace_id: &str) -> Result<Vec<Event>, RecordError> {
        let pog = self
            .pog
            .as_ref()
            .ok_or(RecordError::NoPog { what: "run" })?;
        let read = |message: String| RecordError::Read {
            trace_id: trace_id.to_owned(),
            message,
        };
        let trace = runloop_pog::parse_trace_id(trace_id).map_err(|e| read(e.to_string()))?;
        let timeout = Some(Duration::from_millis(RECORD_TIMEOUT_MS));
        // What was handed over without waiting (a node's finish, crossings) is committed
        // first, so a restarted run actor sees every node that finished before it.
        match pog.call(PogMsg::Sync, timeout).await {
            Ok(ractor::rpc::CallResult::Success(())) => {}
            Ok(_) | Err(_) => return Err(read("the POG did not commit what it holds".into())),
        }
        match pog.call(|r| PogMsg::RunEvents(trace, r), timeout).await {
            Ok(ractor::rpc::CallResult::Success(Ok(events))) => Ok(events),
            Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(read(e.to_string())),
            Ok(_) | Err(_) => Err(read("the POG did not answer".into())),
        }
    }

    /// Rows of the runs view.
    pub async fn runs(
        &self,
        filter: runloop_pog::RunFilter,
        limit: usize,
    ) -> Result<Vec<runloop_pog::RunRow>, RecordError> {
        let pog = self
            .pog
            .as_ref()
            .ok_or(RecordError::NoPog { what: "runs" })?;
        let timeout = Some(Duration::from_millis(RECORD_TIMEOUT_MS));
        match pog.call(|r| PogMsg::Runs(filter, limit, r), timeout).await {
            Ok(ractor::rpc::CallResult::Success(Ok(rows))) => Ok(rows),
            Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(RecordError::Pog {
                what: "runs",
                message: e.to_string(),
            }),
            Ok(_) | Err(_) => Err(RecordError::Pog {
                what: "runs",
                message: "no answer".into(),
            }),
        }
    }
}

/// One event of a run, written by the kernel under the run's trace id.
pub(crate) fn new_event(
    kind: EventKind,
    trace_id: &str,
    payload: Value,
) -> Result<NewEvent, String> {
    // What `Provenance::from_json` would give for these fields, without building and
    // walking the JSON for every record (the only field that can be wrong is the id).
    let provenance = Provenance {
        trace_id: runloop_pog::parse_trace_id(trace_id)
            .map_err(|e| format!("provenance.trace_id: {e}"))?,
        opening_id: "run".into(),
        agent: "kernel".into(),
        inputs_hash: "0".repeat(64),
        rationale: None,
        evidence: Vec::new(),
    };
    let actor = ActorName::new("kernel").map_err(|e| e.to_string())?;
    NewEvent::new(
        kind,
        actor,
        Scope::default_scope(),
        payload,
        provenance,
        None,
    )
    .map_err(|e| e.to_string())
}

/// A node's end as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedNode {
    pub node_id: String,
    /// `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// `[[port, payload], …]` (lossless JSON form), for a succeeded node.
    pub outputs: Option<Value>,
    pub attempt: u32,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
}

/// What the log says about one run.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub opening: String,
    pub run_id: Option<String>,
    pub source: Option<String>,
    pub dir: Option<String>,
    pub params: Option<Value>,
    pub seed: Option<u64>,
    pub host: Option<String>,
    pub owner_pid: Option<u32>,
    pub started_ms: u64,
    /// Node ends in log order.
    pub finished: Vec<RecordedNode>,
    /// Attempts started per node id (the highest attempt number seen).
    pub attempts: Vec<(String, u32)>,
    /// `(status, error, result_hash)` when the run finished.
    pub end: Option<(String, Option<String>, Option<String>)>,
}

/// Reads a run's events into a [`RunRecord`].
pub fn read_record(trace_id: &str, events: &[Event]) -> Result<RunRecord, RecordError> {
    let mut record = RunRecord::default();
    let mut started = false;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    for e in events {
        let p = &e.payload;
        match e.kind {
            EventKind::RunStarted => {
                started = true;
                record.opening = s(p, "opening").unwrap_or_default();
                record.run_id = s(p, "run_id");
                record.source = s(p, "source");
                record.dir = s(p, "dir");
                record.params = p.get("params").cloned();
                record.seed = s(p, "seed").and_then(|x| u64::from_str_radix(&x, 16).ok());
                record.host = s(p, "host");
                record.owner_pid = n(p, "owner_pid").and_then(|x| u32::try_from(x).ok());
                record.started_ms = e.ts_ms;
            }
            // The last host to continue the run owns it now.
            EventKind::RunResumed => {
                record.host = s(p, "host").or(record.host.take());
                record.owner_pid = n(p, "owner_pid").and_then(|x| u32::try_from(x).ok());
            }
            EventKind::NodeStarted => {
                let node = s(p, "node_id").unwrap_or_default();
                let attempt = n(p, "attempt").unwrap_or(1) as u32;
                match record.attempts.iter_mut().find(|(id, _)| *id == node) {
                    Some((_, a)) => *a = (*a).max(attempt),
                    None => record.attempts.push((node, attempt)),
                }
            }
            EventKind::NodeFinished => record.finished.push(RecordedNode {
                node_id: s(p, "node_id").unwrap_or_default(),
                status: s(p, "status").unwrap_or_default(),
                outputs: p.get("outputs").cloned(),
                attempt: n(p, "attempt").unwrap_or(0) as u32,
                error: s(p, "error"),
                duration_ms: n(p, "duration_ms"),
            }),
            EventKind::RunFinished => {
                record.end = Some((
                    s(p, "status").unwrap_or_default(),
                    s(p, "error"),
                    s(p, "result_hash"),
                ));
            }
            _ => {}
        }
    }
    if !started {
        return Err(RecordError::NotFound(trace_id.to_owned()));
    }
    Ok(record)
}

/// `[[port, payload], …]` in the lossless JSON form.
pub(super) fn outputs_to_json(outputs: &[(String, rmpv::Value)]) -> Value {
    Value::Array(
        outputs
            .iter()
            .map(|(port, payload)| json!([port, msgpack_to_json(payload)]))
            .collect(),
    )
}

pub(super) fn outputs_from_json(
    json: Option<&Value>,
) -> Result<Vec<(String, rmpv::Value)>, String> {
    let Some(Value::Array(items)) = json else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (Some(port), Some(payload)) = (item.get(0).and_then(Value::as_str), item.get(1)) else {
            return Err("a recorded output is not [port, payload]".to_owned());
        };
        let value = json_to_msgpack(payload, "outputs").map_err(|e| e.to_string())?;
        out.push((port.to_owned(), value));
    }
    Ok(out)
}

/// A report from the record alone (a run not live in this process).
pub fn report_from_record(trace_id: &str, rec: &RunRecord, unfinished: RunStatus) -> RunReport {
    let (status, reason, result_hash) = match &rec.end {
        Some((s, e, h)) => (
            RunStatus::parse(s).unwrap_or(RunStatus::Failed),
            e.clone(),
            h.clone().unwrap_or_default(),
        ),
        None => (unfinished, None, String::new()),
    };
    let nodes = rec
        .finished
        .iter()
        .map(|f| NodeReport {
            id: f.node_id.clone(),
            status: match f.status.as_str() {
                "succeeded" | "ok" => NodeStatus::Succeeded,
                "skipped" => NodeStatus::Skipped,
                "cancelled" => NodeStatus::Cancelled,
                _ => NodeStatus::Failed,
            },
            attempts: f.attempt,
            started_at_ms: None,
            duration_ms: f.duration_ms,
            output_hash: None,
            outputs_json: f.outputs.as_ref().map(Value::to_string),
            reason: f.error.clone(),
        })
        .collect();
    RunReport {
        trace_id: trace_id.to_owned(),
        run_id: rec.run_id.clone().unwrap_or_default(),
        opening: rec.opening.clone(),
        status,
        reason,
        started_at_ms: rec.started_ms,
        duration_ms: 0,
        result_hash,
        nodes,
    }
}

/// One event of the run handed to the POG (its place in the commit order fixed), and its
/// write timed as a crossing once [`InFlightRecord::committed`] has waited for it. A
/// failed write is logged there, not fatal: the run goes on, and at worst a resume repeats
/// the step whose record is missing.
pub(super) struct InFlightRecord {
    trace_id: String,
    kind: EventKind,
    node: Option<String>,
    bytes: u64,
    started_ms: u64,
    write: Result<PendingWrite, RecordError>,
}

/// Hands one event of the run to the POG. A node's start and finish ride the next group
/// commit ([`Commit::Later`]): nothing in the run waits for them, and what is durable of
/// the run stays a prefix of what it recorded (a crash loses at most its last steps, whose
/// nodes run again on resume). Every other event asks for a commit ([`Commit::Now`]).
pub(super) fn begin_record(
    engine: &Engine,
    trace_id: &str,
    kind: EventKind,
    payload: Value,
) -> InFlightRecord {
    let recorder = engine.recorder();
    let node = payload
        .get("node_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // The payload's size: its canonical text's, which the POG writes (serialised here
    // only when there is no POG).
    let unrecorded_bytes = (!recorder.is_durable()).then(|| payload.to_string().len() as u64);
    let started_ms = engine.kernel().clock().now_ms();
    let commit = match kind {
        EventKind::NodeStarted | EventKind::NodeFinished => Commit::Later,
        _ => Commit::Now,
    };
    let write = recorder.begin(trace_id, kind, payload, commit);
    let bytes = unrecorded_bytes.unwrap_or_else(|| write.as_ref().map_or(0, |w| w.bytes));
    InFlightRecord {
        trace_id: trace_id.to_owned(),
        kind,
        node,
        bytes,
        started_ms,
        write,
    }
}

impl InFlightRecord {
    /// Waits for the write's commit, then records it as a crossing of its own: run → POG,
    /// from the hand-over until durable.
    pub(super) async fn committed(self, engine: &Engine) {
        let result = match self.write {
            Ok(pending) => pending.committed().await,
            Err(e) => Err(e),
        };
        let kind = self.kind;
        let error = result.as_ref().err().map(ToString::to_string);
        engine.crossings().simple(
            &self.trace_id,
            "run",
            "pog",
            &format!("pog.write {kind}"),
            self.node.as_deref(),
            self.bytes,
            self.started_ms,
            engine.kernel().clock().now_ms(),
            error.as_deref(),
            error.is_some(),
        );
        if let Err(e) = result {
            tracing::warn!(trace_id = %self.trace_id, "record {kind}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_event_s_provenance_is_what_its_json_form_parses_to() {
        let trace_id = "0123456789abcdef0123456789abcdef";
        let payload = json!({"trace_id": trace_id, "status": "succeeded"});
        let event = new_event(EventKind::RunFinished, trace_id, payload);
        let want = Provenance::from_json(&json!({
            "trace_id": trace_id,
            "opening_id": "run",
            "agent": "kernel",
            "inputs_hash": "0".repeat(64),
        }))
        .unwrap();
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.provenance(), &want);
        assert_eq!(
            event.provenance_jcs(),
            runloop_pog::canon::jcs(&want.to_json()).unwrap()
        );
        let payload = json!({"trace_id": trace_id, "status": "succeeded"});
        let bad = new_event(EventKind::RunFinished, "not-a-trace-id", payload);
        assert!(bad.unwrap_err().starts_with("provenance.trace_id: "));
    }
}
