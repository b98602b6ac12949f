//! Recording a run's crossings into the POG as they happen.
//!
//! [`CrossingLog`] numbers each run's crossings and hands each one to the POG actor as a
//! `crossing.recorded` event without waiting: the POG group-commits what arrives together,
//! in arrival order, so recording costs one mailbox message per crossing, not one fsync.
//! [`NodeTape`] is one node's share: the invoke it is on (so each host call names its
//! invoke) and a [`RecordSink`] the node's recording handler writes host calls into.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use runloop_agent_actor::{HostCallRecord, RecordSink};
use runloop_pog::EventKind;
use runloop_pog_actor::PogMsg;
use runloop_proto::json::msgpack_to_json;
use runloop_proto::payloads::{HostCall, HostReply, ParticipantKind};
use serde_json::{Value, json};

use crate::runs::record::new_event;

/// Answers once a crossing is committed.
pub type Committed = ractor::concurrency::OneshotReceiver<
    Result<Vec<runloop_pog::Written>, runloop_pog::WriteError>,
>;

/// Longest `detail` kept on a crossing, in bytes.
pub const DETAIL_BYTES_MAX: usize = 512;

/// Which participant answers a host call op.
pub fn participant_of_op(op: &str) -> (&'static str, ParticipantKind) {
    match op.split('.').next().unwrap_or_default() {
        "model" => ("broker", ParticipantKind::Broker),
        "kb" => ("pog", ParticipantKind::Pog),
        "confirm" => ("gate", ParticipantKind::Gate),
        "effect" => ("effects", ParticipantKind::Effects),
        _ => ("kernel", ParticipantKind::Kernel),
    }
}

/// The participant id of a node's agent.
pub fn agent_participant(node: &str) -> String {
    format!("agent:{node}")
}

/// A value's MsgPack encoding (what crosses the wire), as bytes and as the hex a record
/// keeps: the exact bytes, so a replay gets map order and float widths back unchanged
/// (a JSON form would be re-ordered by the POG's canonical JSON).
pub fn encoded<T: serde::Serialize>(value: &T) -> (Vec<u8>, Value) {
    let bytes = rmp_serde::to_vec_named(value).unwrap_or_default();
    let text = hex::encode(&bytes);
    (bytes, Value::String(text))
}

/// An agent value's MsgPack bytes.
pub fn value_bytes(value: &rmpv::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail: its only error is the writer's.
    rmpv::encode::write_value(&mut bytes, value).expect("writing MsgPack into a Vec");
    bytes
}

/// A node's outputs as the list the output hash is taken over (`[[port, payload], …]`).
pub fn outputs_value(outputs: &[(String, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Array(
        outputs
            .iter()
            .map(|(port, payload)| {
                rmpv::Value::Array(vec![rmpv::Value::from(port.as_str()), payload.clone()])
            })
            .collect(),
    )
}

/// Hex of MsgPack bytes back into a value (a recording's `request` / `reply`).
pub fn decode_hex(text: &str) -> Result<rmpv::Value, String> {
    let bytes = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| format!("not MsgPack: {e}"))
}

/// A value in the lossless JSON form, for people (a diff).
pub fn to_json(value: &rmpv::Value) -> Value {
    msgpack_to_json(value)
}

/// One `detail` line, cut at [`DETAIL_BYTES_MAX`] on a character boundary.
pub fn detail(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.len() <= DETAIL_BYTES_MAX {
        return line.to_owned();
    }
    let mut end = DETAIL_BYTES_MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// Numbers crossings per run and writes them to the POG (none without a POG).
#[derive(Debug)]
pub struct CrossingLog {
    pog: Option<ractor::ActorRef<PogMsg>>,
    /// The next seq of each live run.
    next: Mutex<HashMap<String, u64>>,
    /// Crossings the POG could not take (validation or a stopped actor).
    failed: AtomicU64,
    /// Crossings handed to the POG.
    written: AtomicU64,
    enabled: AtomicBool,
    /// Where each crossing also goes as an OpenTelemetry span (`observability.traces`).
    export: Option<std::sync::Arc<crate::otel::Otel>>,
}

impl CrossingLog {
    /// A log writing to `pog` (recording nothing without one).
    pub fn new(pog: Option<ractor::ActorRef<PogMsg>>) -> Self {
        Self {
            pog,
            next: Mutex::new(HashMap::new()),
            failed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
            export: None,
        }
    }

    /// Also exports every crossing recorded from now on as an OpenTelemetry span.
    pub fn with_export(mut self, export: Option<std::sync::Arc<crate::otel::Otel>>) -> Self {
        self.export = export;
        self
    }

    /// Names a run's id and its nodes' agents for its exported spans (nothing without
    /// export).
    pub fn describe(&self, trace_id: &str, facts: impl FnOnce() -> crate::otel::RunFacts) {
        if let Some(export) = &self.export {
            export.open_run(trace_id, facts());
        }
    }

    /// Turns recording off or on for runs from now on (off: the recording-cost
    /// benchmark's baseline; such runs cannot be replayed or traced).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn is_recording(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) && self.pog.is_some()
    }

    /// Starts (or, resumed, continues at `next`) the numbering of a run.
    pub fn open(&self, trace_id: &str, next: u64) {
        let mut map = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(trace_id.to_owned()).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// Forgets a finished run's numbering.
    pub fn close(&self, trace_id: &str) {
        self.next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(trace_id);
        if let Some(export) = &self.export {
            export.close_run(trace_id);
        }
    }

    /// The next seq of a run (a crossing whose record is written later reserves its place
    /// when it starts, so a ladder shows it before what happened inside it).
    pub fn reserve(&self, trace_id: &str) -> u64 {
        let mut map = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(trace_id.to_owned()).or_insert(0);
        let seq = *slot;
        *slot += 1;
        seq
    }

    /// Runs whose numbering is held (open, or reserved into after they closed).
    pub fn open_runs(&self) -> usize {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// (handed to the POG, refused) since boot.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Writes one crossing (its `seq` already in `payload`) without waiting for the
    /// commit. Callable from any thread (the drivers' threads record host calls).
    pub fn write(&self, trace_id: &str, payload: Value) {
        let _ = self.send(trace_id, payload);
    }

    /// [`CrossingLog::write`], returning what answers once the crossing is committed.
    fn send(&self, trace_id: &str, payload: Value) -> Option<Committed> {
        if !self.is_recording() {
            return None;
        }
        let pog = self.pog.as_ref()?;
        if let Some(export) = &self.export {
            export.crossing(trace_id, &payload);
        }
        let event = match new_event(EventKind::CrossingRecorded, trace_id, payload) {
            Ok(e) => e,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(trace_id = %trace_id, "crossing not recorded: {e}");
                return None;
            }
        };
        let (tx, rx) = ractor::concurrency::oneshot();
        // Nobody waits on a crossing before going on: it goes with the run's next awaited
        // record (or within `LATER_FLUSH_MS`), never in a commit of its own.
        match pog.send_message(PogMsg::WriteLater(vec![event], tx.into())) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                Some(rx)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(trace_id = %trace_id, "crossing not recorded: {e}");
                None
            }
        }
    }

    /// Waits until everything this log handed to the POG before now is committed (the POG
    /// commits in arrival order): a run's last crossings are durable before its report is
    /// given out, so a process that exits on the report loses none.
    pub async fn flush(&self, trace_id: &str, last: Option<Committed>) {
        let Some(rx) = last else { return };
        // Crossings wait for a commit somebody asked for: ask for one now.
        if let Some(pog) = &self.pog {
            let _ = pog.cast(PogMsg::Flush);
        }
        let timeout = std::time::Duration::from_millis(crate::runs::record::RECORD_TIMEOUT_MS);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(trace_id = %trace_id, "crossing not recorded: {e}");
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(trace_id = %trace_id, "crossings: the POG did not answer");
            }
        }
    }

    /// A one-way or timed crossing with no exact payload (a record write, a retry).
    #[allow(clippy::too_many_arguments)]
    pub fn simple(
        &self,
        trace_id: &str,
        from: &str,
        to: &str,
        kind: &str,
        node: Option<&str>,
        bytes: u64,
        start_ms: u64,
        end_ms: u64,
        detail_line: Option<&str>,
        error: bool,
    ) -> Option<Committed> {
        if !self.is_recording() {
            return None;
        }
        let seq = self.reserve(trace_id);
        let mut p = json!({
            "trace_id": trace_id,
            "seq": seq,
            "from": from,
            "to": to,
            "kind": kind,
            "bytes": bytes,
            "start_ms": start_ms,
            "end_ms": end_ms.max(start_ms),
            "status": if error { "error" } else { "ok" },
        });
        if let Some(n) = node {
            p["node_id"] = json!(n);
        }
        if let Some(line) = detail_line {
            p["detail"] = json!(detail(line));
        }
        self.send(trace_id, p)
    }
}

/// One node's recording: which invoke it is on, and the sink its host calls go to.
#[derive(Debug)]
pub struct NodeTape {
    log: std::sync::Arc<CrossingLog>,
    trace_id: String,
    node: String,
    /// The invoke host calls belong to now (`u64::MAX` before the first).
    invoke: AtomicU64,
    /// The next invoke's number.
    next_invoke: AtomicU64,
}

impl NodeTape {
    pub fn new(
        log: std::sync::Arc<CrossingLog>,
        trace_id: &str,
        node: &str,
        next_invoke: u64,
    ) -> Self {
        Self {
            log,
            trace_id: trace_id.to_owned(),
            node: node.to_owned(),
            invoke: AtomicU64::new(u64::MAX),
            next_invoke: AtomicU64::new(next_invoke),
        }
    }

    pub fn log(&self) -> &CrossingLog {
        &self.log
    }

    /// Starts the node's next invoke: `(invoke number, reserved seq)`.
    pub fn begin(&self) -> (u64, u64) {
        let invoke = self.next_invoke.fetch_add(1, Ordering::SeqCst);
        self.invoke.store(invoke, Ordering::SeqCst);
        (invoke, self.log.reserve(&self.trace_id))
    }
}

impl RecordSink for NodeTape {
    fn record(&self, c: HostCallRecord) {
        if !self.log.is_recording() {
            return;
        }
        let invoke = self.invoke.load(Ordering::SeqCst);
        if invoke == u64::MAX {
            return;
        }
        let op = c.call.op();
        let (to, _) = participant_of_op(op);
        let (req_bytes, request) = encoded(&c.call);
        let (reply_bytes, reply) = encoded(&c.reply);
        let seq = self.log.reserve(&self.trace_id);
        let mut p = json!({
            "trace_id": self.trace_id,
            "seq": seq,
            "from": agent_participant(&self.node),
            "to": to,
            "kind": op,
            "node_id": self.node,
            "invoke": invoke,
            "call": c.call_id,
            "bytes": req_bytes.len(),
            "reply_bytes": reply_bytes.len(),
            "start_ms": c.started_ms,
            "end_ms": c.ended_ms.max(c.started_ms),
            "status": "ok",
            "request": request,
            "reply": reply,
            "request_hash": blake3::hash(&req_bytes).to_hex().to_string(),
        });
        if let HostReply::Err { code, message } = &c.reply {
            p["status"] = json!("error");
            p["detail"] = json!(detail(&format!("{code:?}: {message}")));
        }
        self.log.write(&self.trace_id, p);
    }
}

/// The request hash replay compares a guest's call with.
pub fn call_hash(call: &HostCall) -> String {
    let (bytes, _) = encoded(call);
    blake3::hash(&bytes).to_hex().to_string()
}
