//! A run's record → the ladder's data ([`TraceView`]).
//!
//! Rows are the run's `crossing.recorded` events, plus the confirmation gate's own record
//! (`action.requested` → a `confirm.ask` to the person, `action.decided` → their
//! `confirm.decision`), ordered by start time and then by the order they were numbered
//! in, and numbered again from 0.

use runloop_pog::{Event, EventKind};
use runloop_proto::payloads::{Crossing, CrossingStatus, Participant, ParticipantKind, TraceView};
use serde_json::Value;

use super::tape::participant_of_op;
use crate::runs::record::{RecordError, read_record};

/// Most crossings one view holds; a longer run's view is cut (and says so in its status).
pub const VIEW_CROSSINGS_MAX: usize = 100_000;

fn s<'a>(p: &'a Value, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}
fn n(p: &Value, k: &str) -> Option<u64> {
    p.get(k).and_then(Value::as_u64)
}

/// Builds the view of one run from its events (oldest first). `live` says the run is
/// running in this kernel now (else an unfinished run is `interrupted`).
pub fn build(trace_id: &str, events: &[Event], live: bool) -> Result<TraceView, RecordError> {
    let rec = read_record(trace_id, events)?;
    // (start_ms, numbered-in order, tie) → crossing.
    let mut rows: Vec<((u64, u64, u64), Crossing)> = Vec::new();
    let mut last_seq = 0u64;
    let mut agents: Vec<String> = Vec::new();
    let mut note_agent = |node: &str| {
        if !agents.iter().any(|a| a == node) {
            agents.push(node.to_owned());
        }
    };
    for e in events {
        let p = &e.payload;
        match e.kind {
            EventKind::NodeStarted => {
                if let Some(node) = s(p, "node_id") {
                    note_agent(node);
                }
            }
            EventKind::CrossingRecorded => {
                let seq = n(p, "seq").unwrap_or(0);
                last_seq = last_seq.max(seq);
                let start = n(p, "start_ms").unwrap_or(e.ts_ms);
                let crossing = Crossing {
                    seq,
                    from: s(p, "from").unwrap_or("?").to_owned(),
                    to: s(p, "to").unwrap_or("?").to_owned(),
                    kind: s(p, "kind").unwrap_or("?").to_owned(),
                    node: s(p, "node_id").map(str::to_owned),
                    bytes: n(p, "bytes").unwrap_or(0),
                    reply_bytes: n(p, "reply_bytes"),
                    start_ms: start,
                    end_ms: n(p, "end_ms").unwrap_or(start).max(start),
                    status: if s(p, "status") == Some("error") {
                        CrossingStatus::Error
                    } else {
                        CrossingStatus::Ok
                    },
                    detail: s(p, "detail").map(str::to_owned),
                };
                if let Some(node) = &crossing.node {
                    note_agent(node);
                }
                rows.push(((start, seq, 0), crossing));
            }
            EventKind::ActionRequested => {
                let effect = s(p, "effect").unwrap_or("action");
                let summary = s(p, "summary").unwrap_or_default();
                rows.push((
                    (e.ts_ms, last_seq, 1),
                    Crossing {
                        seq: 0,
                        from: "gate".into(),
                        to: "rlp".into(),
                        kind: "confirm.ask".into(),
                        node: s(p, "node_id").map(str::to_owned),
                        bytes: e.payload.to_string().len() as u64,
                        reply_bytes: None,
                        start_ms: e.ts_ms,
                        end_ms: e.ts_ms,
                        status: CrossingStatus::Ok,
                        detail: Some(super::tape::detail(&format!("{effect}: {summary}"))),
                    },
                ));
            }
            EventKind::ActionDecided => {
                let decision = s(p, "decision").unwrap_or("decided");
                let by = s(p, "by").unwrap_or("?");
                let mut line = format!("{decision} by {by}");
                if let Some(reason) = s(p, "reason") {
                    line.push_str(&format!(": {reason}"));
                }
                rows.push((
                    (e.ts_ms, last_seq, 2),
                    Crossing {
                        seq: 0,
                        from: "rlp".into(),
                        to: "gate".into(),
                        kind: "confirm.decision".into(),
                        node: s(p, "node_id").map(str::to_owned),
                        bytes: e.payload.to_string().len() as u64,
                        reply_bytes: None,
                        start_ms: e.ts_ms,
                        end_ms: e.ts_ms,
                        status: if decision == "approve" || decision == "approved" {
                            CrossingStatus::Ok
                        } else {
                            CrossingStatus::Error
                        },
                        detail: Some(super::tape::detail(&line)),
                    },
                ));
            }
            _ => {}
        }
    }
    rows.sort_by_key(|(key, _)| *key);
    let cut = rows.len() > VIEW_CROSSINGS_MAX;
    rows.truncate(VIEW_CROSSINGS_MAX);
    let crossings: Vec<Crossing> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut c))| {
            c.seq = i as u64;
            c
        })
        .collect();
    let participants = participants(&rec.opening, &agents, &crossings);
    let mut status = match &rec.end {
        Some((status, _, _)) => status.clone(),
        None if live => "running".into(),
        None => "interrupted".into(),
    };
    if cut {
        status.push_str(&format!(" (first {VIEW_CROSSINGS_MAX} crossings)"));
    }
    Ok(TraceView {
        trace_id: trace_id.to_owned(),
        opening: rec.opening.clone(),
        status,
        started_ms: rec.started_ms,
        participants,
        crossings,
    })
}

/// Columns: the client, the run, the agents in the order they first ran, then the
/// services, each only when a crossing touches it.
fn participants(opening: &str, agents: &[String], crossings: &[Crossing]) -> Vec<Participant> {
    let touched = |id: &str| crossings.iter().any(|c| c.from == id || c.to == id);
    let mut out = Vec::new();
    for (id, kind, label) in [
        ("rlp", ParticipantKind::Cli, "rlp".to_owned()),
        ("run", ParticipantKind::Run, format!("run {opening}")),
    ] {
        if touched(id) {
            out.push(Participant {
                id: id.into(),
                kind,
                label,
            });
        }
    }
    for node in agents {
        let id = super::tape::agent_participant(node);
        if touched(&id) {
            out.push(Participant {
                id,
                kind: ParticipantKind::Agent,
                label: node.clone(),
            });
        }
    }
    for op in ["model", "kb", "confirm", "effect", "clock"] {
        let (id, kind) = participant_of_op(op);
        if touched(id) {
            out.push(Participant {
                id: id.into(),
                kind,
                label: id.into(),
            });
        }
    }
    // Anything else a record names (an older or foreign recording) still gets a column.
    for c in crossings {
        for id in [&c.from, &c.to] {
            if !out.iter().any(|p| &p.id == id) {
                out.push(Participant {
                    id: id.clone(),
                    kind: ParticipantKind::Kernel,
                    label: id.clone(),
                });
            }
        }
    }
    out
}
