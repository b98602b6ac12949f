//! Replaying a recorded run: every node's wasm again, in a fresh sandbox, with its
//! recorded inputs; every host call answered from the recording.
//!
//! The replay handler ([`ReplayHandlers`]) drops the kernel's handler it is given: no call
//! of a replayed guest reaches the live clock, RNG, model, knowledge base, gate or effect
//! executor. A guest that asks for anything other than the next recorded call (another op,
//! or the same op with a different request) is *diverged* at that call: it gets an error,
//! and the node is reported as diverged there, never answered with something else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runloop_actors::names::{AgentName, OpeningId};
use runloop_agent_actor::{HandlerFactory, KernelHandler};
use runloop_pog::{Event, EventKind};
use runloop_proto::payloads::{
    AgentInput, Divergence, HostCall, HostErrorCode, HostReply, ReplayNode, ReplayReport,
};
use runloop_sandbox::{CallSite, HostCallHandler};
use serde_json::Value;

use super::tape::{call_hash, decode_hex, outputs_value, to_json, value_bytes};
use crate::agents::StartOptions;
use crate::runs::Engine;
use crate::runs::record::{RecordError, read_record};

/// How long one replayed invoke may take.
pub const REPLAY_INVOKE_TIMEOUT_MS: u64 = 120_000;
/// Longest diff shown for a differing output, in lines.
pub const DIFF_LINES_MAX: usize = 40;

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(
        "run {0} recorded no crossings: it ran without recording (or before recording existed), so there is nothing to replay"
    )]
    NotRecorded(String),
    #[error("replay {trace_id}: {message}")]
    Kernel { trace_id: String, message: String },
}

/// One recorded host call.
#[derive(Debug, Clone)]
struct TapeCall {
    call: u64,
    op: String,
    request_hash: String,
    /// The reply's MsgPack bytes (hex).
    reply: String,
}

/// One recorded invoke of a node.
#[derive(Debug, Clone)]
struct TapeInvoke {
    invoke: u64,
    /// The input payload's MsgPack bytes (hex).
    input: String,
    /// `[[port, payload], …]` as MsgPack bytes (hex) when the invoke succeeded.
    outputs: Option<String>,
    error: Option<String>,
    bundle: Option<String>,
    bundle_digest: Option<String>,
    calls: Vec<TapeCall>,
}

/// One node's recording.
#[derive(Debug, Clone, Default)]
struct NodeRecording {
    agent: String,
    invokes: Vec<TapeInvoke>,
    /// `node.finished`'s status and output hash.
    status: Option<String>,
    output_hash: Option<String>,
}

/// Reads the recording of every node, in the order the nodes first started.
fn recordings(events: &[Event]) -> Vec<(String, NodeRecording)> {
    let mut order: Vec<String> = Vec::new();
    let mut nodes: BTreeMap<String, NodeRecording> = BTreeMap::new();
    // Calls by (node, invoke), in the order they were recorded.
    let mut calls: BTreeMap<(String, u64), Vec<TapeCall>> = BTreeMap::new();
    let s = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    for e in events {
        let p = &e.payload;
        let Some(node) = s(p, "node_id") else {
            continue;
        };
        match e.kind {
            EventKind::NodeStarted => {
                if !order.contains(&node) {
                    order.push(node.clone());
                }
                let rec = nodes.entry(node).or_default();
                rec.agent = s(p, "agent").unwrap_or_default();
            }
            EventKind::NodeFinished => {
                if !order.contains(&node) {
                    order.push(node.clone());
                }
                let rec = nodes.entry(node).or_default();
                rec.agent = s(p, "agent").unwrap_or_default();
                rec.status = s(p, "status");
                rec.output_hash = s(p, "output_hash");
            }
            EventKind::CrossingRecorded => {
                let Some(invoke) = p.get("invoke").and_then(Value::as_u64) else {
                    continue;
                };
                let kind = s(p, "kind").unwrap_or_default();
                if kind == "agent.invoke" {
                    nodes.entry(node).or_default().invokes.push(TapeInvoke {
                        invoke,
                        input: s(p, "request").unwrap_or_default(),
                        outputs: s(p, "reply"),
                        error: (s(p, "status").as_deref() == Some("error"))
                            .then(|| s(p, "detail").unwrap_or_default()),
                        bundle: s(p, "bundle"),
                        bundle_digest: s(p, "bundle_digest"),
                        calls: Vec::new(),
                    });
                } else {
                    let call = TapeCall {
                        call: p.get("call").and_then(Value::as_u64).unwrap_or(0),
                        op: kind,
                        request_hash: s(p, "request_hash").unwrap_or_default(),
                        reply: s(p, "reply").unwrap_or_default(),
                    };
                    let list = calls.entry((node, invoke)).or_default();
                    // A sandbox lost mid-invoke is redelivered to a new one, whose calls
                    // count from 0 again: the answer came from the last delivery.
                    if call.call == 0 {
                        list.clear();
                    }
                    list.push(call);
                }
            }
            _ => {}
        }
    }
    for ((node, invoke), list) in calls {
        if let Some(rec) = nodes.get_mut(&node)
            && let Some(inv) = rec.invokes.iter_mut().find(|i| i.invoke == invoke)
        {
            inv.calls = list;
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let mut rec = nodes.remove(&id)?;
            rec.invokes.sort_by_key(|i| i.invoke);
            Some((id, rec))
        })
        .collect()
}

/// What a replayed node's handler answers from, and what it saw.
#[derive(Debug, Default)]
struct TapeState {
    invokes: Vec<Vec<TapeCall>>,
    current: usize,
    /// Calls of the current invoke answered so far (the highest call id + 1).
    reached: usize,
    answered: u64,
    diverged: Option<Divergence>,
}

/// Builds replay handlers for one node: each answers from the node's recording.
#[derive(Debug, Clone)]
pub struct ReplayHandlers {
    state: Arc<Mutex<TapeState>>,
}

impl HandlerFactory for ReplayHandlers {
    fn wrap<'a>(&self, _kernel: KernelHandler<'a>) -> Box<dyn HostCallHandler + 'a> {
        // The kernel's handler is dropped here: nothing live answers a replayed guest.
        Box::new(ReplayHandler {
            state: self.state.clone(),
        })
    }
}

#[derive(Debug)]
struct ReplayHandler {
    state: Arc<Mutex<TapeState>>,
}

fn diverged_reply(d: &Divergence) -> HostReply {
    HostReply::Err {
        code: HostErrorCode::Failed,
        message: format!(
            "replay diverged at host call {}: recorded {}, got {}",
            d.call, d.recorded, d.got
        ),
    }
}

impl HostCallHandler for ReplayHandler {
    fn handle(&mut self, site: &CallSite<'_>, call: HostCall) -> HostReply {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = &st.diverged {
            return diverged_reply(d);
        }
        let invoke = st.current;
        let index = site.call_id as usize;
        let op = call.op();
        let recorded = st.invokes.get(invoke).and_then(|calls| calls.get(index));
        let divergence = |recorded: &str, got: String| Divergence {
            invoke: invoke as u64,
            call: index as u64 + 1,
            recorded: recorded.to_owned(),
            got,
        };
        let reply = match recorded {
            None => Err(divergence("end", op.to_owned())),
            Some(r) if r.op != op => Err(divergence(&r.op, op.to_owned())),
            Some(r) if r.request_hash != call_hash(&call) => {
                Err(divergence(&r.op, format!("{op} with a different request")))
            }
            Some(r) => decode_reply(&r.reply).map_err(|e| divergence(&r.op, e)),
        };
        match reply {
            Ok(reply) => {
                st.answered += 1;
                st.reached = st.reached.max(index + 1);
                reply
            }
            Err(d) => {
                let reply = diverged_reply(&d);
                st.diverged = Some(d);
                reply
            }
        }
    }
}

fn decode_reply(text: &str) -> Result<HostReply, String> {
    let bytes = hex::decode(text).map_err(|e| format!("unreadable recorded reply: {e}"))?;
    rmp_serde::from_slice(&bytes).map_err(|e| format!("unreadable recorded reply: {e}"))
}

fn hash_of(outputs: &[(String, rmpv::Value)]) -> String {
    hex::encode(runloop_openings::hash::output_hash(outputs))
}

/// The hash of recorded outputs (hex MsgPack of the list the hash is taken over).
fn recorded_hash_of(text: &str) -> Option<String> {
    let bytes = hex::decode(text).ok()?;
    Some(blake3::hash(&bytes).to_hex().to_string())
}

/// A unified-style diff of two JSON values' pretty forms, cut at [`DIFF_LINES_MAX`].
fn diff(recorded: &Value, replayed: &Value) -> String {
    let a = serde_json::to_string_pretty(recorded).unwrap_or_default();
    let b = serde_json::to_string_pretty(replayed).unwrap_or_default();
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Longest common subsequence table (outputs are small: bounded by the frame cap).
    let (n, m) = (a.len().min(2000), b.len().min(2000));
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = vec!["--- recorded".to_owned(), "+++ replayed".to_owned()];
    let (mut i, mut j) = (0, 0);
    while (i < n || j < m) && out.len() < DIFF_LINES_MAX + 2 {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out.join("\n")
}

/// Where a node's bundle is now, and its digest: the recorded directory when it still
/// holds a bundle, else the opening's agent resolved through the search path.
fn locate_bundle(
    engine: &Engine,
    recorded: Option<&str>,
    opening: Option<(&runloop_openings::Opening, &Path)>,
    node: &str,
) -> Result<(PathBuf, String), String> {
    if let Some(dir) = recorded
        && let Ok(b) = runloop_bundle::Bundle::load(Path::new(dir), engine.kernel().trust())
    {
        return Ok((PathBuf::from(dir), b.manifest().wasm_blake3().to_hex()));
    }
    let (opening, dir) = opening.ok_or_else(|| {
        format!(
            "its bundle is not at {} and the opening no longer validates here",
            recorded.unwrap_or("(unrecorded)")
        )
    })?;
    let def = opening
        .nodes
        .iter()
        .find(|n| n.id.as_str() == node)
        .ok_or_else(|| format!("the opening has no node {node} any more"))?;
    let (path, bundle) = engine
        .catalog(dir)
        .resolve(&def.agent)
        .map_err(|e| e.to_string())?;
    Ok((path, bundle.manifest().wasm_blake3().to_hex()))
}

/// Replays one recorded run; see the module docs.
pub async fn replay(engine: &Arc<Engine>, trace_id: &str) -> Result<ReplayReport, ReplayError> {
    let t0 = std::time::Instant::now();
    let events = engine.recorder().run_events(trace_id).await?;
    let rec = read_record(trace_id, &events)?;
    let nodes = recordings(&events);
    if !events.iter().any(|e| e.kind == EventKind::CrossingRecorded) {
        return Err(ReplayError::NotRecorded(trace_id.to_owned()));
    }
    let opening_dir = PathBuf::from(rec.dir.clone().unwrap_or_else(|| ".".into()));
    let opening = rec
        .source
        .as_deref()
        .and_then(|src| engine.validate(src, &opening_dir).ok());
    let kernel = engine.kernel().clone();
    let run_id = kernel.ids().run_id();
    let opening_id =
        OpeningId::new(&format!("replay-{}", rec.opening)).map_err(|e| ReplayError::Kernel {
            trace_id: trace_id.to_owned(),
            message: e.to_string(),
        })?;
    kernel
        .start_run(run_id, &opening_id)
        .await
        .map_err(|e| ReplayError::Kernel {
            trace_id: trace_id.to_owned(),
            message: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(nodes.len());
    for (id, node) in &nodes {
        let report = replay_node(
            engine,
            run_id,
            &opening_id,
            id,
            node,
            opening.as_ref().map(|o| (o, opening_dir.as_path())),
        )
        .await;
        out.push(report);
    }
    let _ = kernel.stop_run(run_id).await;
    // From the run's own record (an imported run's events carry the import's times).
    let recorded_ms = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::RunFinished)
        .and_then(|e| e.payload.get("duration_ms").and_then(Value::as_u64))
        .unwrap_or(0);
    Ok(ReplayReport {
        trace_id: trace_id.to_owned(),
        opening: rec.opening.clone(),
        identical: out.iter().all(|n| n.identical),
        nodes: out,
        effects_performed: 0,
        recorded_ms,
        replay_ms: t0.elapsed().as_millis() as u64,
    })
}

async fn replay_node(
    engine: &Arc<Engine>,
    run_id: runloop_proto::RunId,
    opening_id: &OpeningId,
    id: &str,
    node: &NodeRecording,
    opening: Option<(&runloop_openings::Opening, &Path)>,
) -> ReplayNode {
    let last = node.invokes.last();
    let recorded_hash = node
        .output_hash
        .clone()
        .or_else(|| {
            last.and_then(|i| i.outputs.as_deref())
                .and_then(recorded_hash_of)
        })
        .unwrap_or_default();
    let mut report = ReplayNode {
        id: id.to_owned(),
        agent: node.agent.clone(),
        recorded_hash,
        replayed_hash: String::new(),
        identical: false,
        invokes: 0,
        host_calls: 0,
        diverged_at: None,
        bundle_changed: None,
        diff: None,
        reason: None,
    };
    let Some(first) = node.invokes.first() else {
        // Skipped, or never invoked (its record holds no input): nothing ran, nothing to
        // compare.
        report.identical = true;
        report.reason = Some(format!(
            "{} in the recorded run: no invoke to replay",
            node.status.as_deref().unwrap_or("not run")
        ));
        return report;
    };
    let (dir, digest) = match locate_bundle(engine, first.bundle.as_deref(), opening, id) {
        Ok(found) => found,
        Err(e) => {
            report.reason = Some(format!("cannot replay: {e}"));
            return report;
        }
    };
    if let Some(recorded) = &first.bundle_digest
        && *recorded != digest
    {
        report.bundle_changed = Some((recorded.clone(), digest.clone()));
    }
    let state = Arc::new(Mutex::new(TapeState {
        invokes: node.invokes.iter().map(|i| i.calls.clone()).collect(),
        ..TapeState::default()
    }));
    let kernel = engine.kernel();
    let options = StartOptions {
        name: Some(id.to_owned()),
        handlers: Some(Arc::new(ReplayHandlers {
            state: state.clone(),
        })),
        ..StartOptions::default()
    };
    if let Err(e) = kernel.start_bundle_in(run_id, &dir, options).await {
        report.reason = Some(format!("cannot start the agent: {e}"));
        return report;
    }
    let agent = match AgentName::new(id) {
        Ok(a) => a,
        Err(e) => {
            report.reason = Some(e.to_string());
            return report;
        }
    };
    let trace = kernel.ids().trace_id();
    let mut all_same = true;
    for (k, inv) in node.invokes.iter().enumerate() {
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.current = k;
            st.reached = 0;
        }
        let payload = match decode_hex(&inv.input) {
            Ok(p) => p,
            Err(e) => {
                report.reason = Some(format!("invoke {k}: unreadable recorded input: {e}"));
                all_same = false;
                break;
            }
        };
        let input = AgentInput {
            port: "in".into(),
            payload,
        };
        let sent = kernel.send_traced(run_id, opening_id, &agent, input, trace);
        let result = tokio::time::timeout(Duration::from_millis(REPLAY_INVOKE_TIMEOUT_MS), sent)
            .await
            .map_err(|_| format!("timed out after {REPLAY_INVOKE_TIMEOUT_MS} ms"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(|reply| {
                reply
                    .outputs
                    .into_iter()
                    .map(|o| (o.port, o.payload))
                    .collect::<Vec<_>>()
            });
        report.invokes += 1;
        if let Some(d) = state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .diverged
            .clone()
        {
            report.reason = Some(format!(
                "node {id} diverged at host call {}: recorded {}, got {}",
                d.call, d.recorded, d.got
            ));
            report.diverged_at = Some(d);
            all_same = false;
            break;
        }
        // A guest that ended before the recorded calls ran out made fewer calls than
        // recorded: diverged at the first call it did not make.
        let reached = state.lock().unwrap_or_else(|p| p.into_inner()).reached;
        if let Some(missed) = inv.calls.get(reached) {
            let d = Divergence {
                invoke: k as u64,
                call: reached as u64 + 1,
                recorded: missed.op.clone(),
                got: "end".into(),
            };
            report.reason = Some(format!(
                "node {id} diverged at host call {}: recorded {}, got end (the guest finished)",
                d.call, d.recorded
            ));
            report.diverged_at = Some(d);
            all_same = false;
            break;
        }
        match (&result, &inv.outputs) {
            (Ok(outputs), Some(recorded)) => {
                let replayed = outputs_value(outputs);
                report.replayed_hash = hash_of(outputs);
                if hex::encode(value_bytes(&replayed)) != *recorded {
                    all_same = false;
                    if report.diff.is_none() {
                        let recorded = decode_hex(recorded)
                            .map(|v| to_json(&v))
                            .unwrap_or_default();
                        report.diff = Some(diff(&recorded, &to_json(&replayed)));
                    }
                }
            }
            (Err(_), None) => {
                // Failed again, as recorded (a pending confirmation, a denial, a trap).
            }
            (Ok(outputs), None) => {
                all_same = false;
                report.replayed_hash = hash_of(outputs);
                report.reason = Some(format!(
                    "invoke {k}: recorded a failure ({}), the replay succeeded",
                    inv.error.as_deref().unwrap_or("error")
                ));
            }
            (Err(e), Some(_)) => {
                all_same = false;
                report.reason = Some(format!(
                    "invoke {k}: recorded a success, the replay failed: {e}"
                ));
            }
        }
    }
    report.host_calls = state.lock().unwrap_or_else(|p| p.into_inner()).answered;
    let _ = kernel.stop_agent_in(run_id, &agent).await;
    report.identical = all_same && report.replayed_hash == report.recorded_hash;
    if !report.identical && report.reason.is_none() {
        report.reason = Some("the output differs".into());
    }
    report
}
