//! Rendering of `rlp kb` results: the human text and the `--json` form of each `KbReport`.

use serde_json::{Value, json};

use super::KbReport;

impl KbReport {
    /// The `--json` form.
    pub fn to_json(&self) -> Value {
        match self {
            KbReport::Migrated {
                events_from,
                views_from,
                events_to,
                views_to,
                head_seq,
            } => json!({
                "events_schema": {"from": events_from, "to": events_to},
                "views_schema": {"from": views_from, "to": views_to},
                "head_seq": head_seq,
            }),
            KbReport::Query(q) => {
                json!({"columns": q.columns, "rows": q.rows, "truncated": q.truncated})
            }
            KbReport::Search(hits) => json!({"hits": hits.iter().map(|h| json!({
                "entity": h.entity, "score": h.score, "text_rank": h.text_rank, "vector_rank": h.vector_rank,
                "distance": h.distance, "title": h.title,
            })).collect::<Vec<_>>()}),
            KbReport::Why(w) => json!({
                "entity": w.entity,
                "events": w.direct.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                "evidence": w.evidence.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                "truncated": w.truncated,
            }),
            KbReport::Written(w) => json!({"event": w.event.to_json(), "duplicate": w.duplicate}),
            KbReport::Verified(v) => json!({
                "ok": v.ok(), "events_checked": v.events_checked, "head_seq": v.head_seq, "head_hash": v.head_hash,
                "views_applied_seq": v.views_applied_seq,
                "first_bad": v.first_bad.as_ref().map(|b| json!({"seq": b.seq, "reason": b.reason})),
            }),
            KbReport::BackedUp(b) => {
                json!({"dir": b.dir, "head_seq": b.verify.head_seq, "head_hash": b.verify.head_hash, "elapsed_ms": b.elapsed_ms})
            }
            KbReport::Restored(r) => json!({"events": r.events, "head_hash": r.head_hash}),
            KbReport::Imported {
                rows,
                appended,
                duplicates,
                head_seq,
            } => {
                json!({"rows": rows, "appended": appended, "duplicates": duplicates, "head_seq": head_seq})
            }
            KbReport::Exported { events, out } => json!({"events": events, "out": out}),
            KbReport::Rebuilt { events } => json!({"events_replayed": events}),
        }
    }

    /// The human form.
    pub fn human(&self) -> String {
        match self {
            KbReport::Migrated {
                events_from,
                views_from,
                events_to,
                views_to,
                head_seq,
            } => format!(
                "events schema {events_from} -> {events_to}, views schema {views_from} -> {views_to}; {head_seq} events"
            ),
            KbReport::Query(q) => {
                let mut s = q.columns.join("\t");
                for row in &q.rows {
                    s.push('\n');
                    s.push_str(&row.iter().map(cell).collect::<Vec<_>>().join("\t"));
                }
                if q.truncated {
                    s.push_str("\n(truncated)");
                }
                s
            }
            KbReport::Search(hits) if hits.is_empty() => "no hits".into(),
            KbReport::Search(hits) => hits
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    format!(
                        "{:>2}. {:<32} {:.4}  {}",
                        i + 1,
                        h.entity,
                        h.score,
                        h.title.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            KbReport::Why(w) => {
                let mut s = format!("{}:", w.entity);
                for e in &w.direct {
                    s.push_str(&format!(
                        "\n  #{} {} by {} (trace {}, agent {}){}",
                        e.seq,
                        e.kind,
                        e.actor,
                        prov(e, "trace_id"),
                        prov(e, "agent"),
                        rationale(e)
                    ));
                }
                if !w.evidence.is_empty() {
                    s.push_str("\n evidence:");
                    for e in &w.evidence {
                        s.push_str(&format!(
                            "\n  #{} {} by {}{}",
                            e.seq,
                            e.kind,
                            e.actor,
                            rationale(e)
                        ));
                    }
                }
                s
            }
            KbReport::Written(w) => format!(
                "{} seq {} {}{}",
                if w.duplicate {
                    "already written:"
                } else {
                    "wrote"
                },
                w.event.seq,
                w.event.kind,
                format_args!(" hash {}", w.event.hash.to_hex())
            ),
            KbReport::Verified(v) => match &v.first_bad {
                None => format!(
                    "ok: {} events, head seq {} hash {}",
                    v.events_checked, v.head_seq, v.head_hash
                ),
                Some(b) => format!(
                    "TAMPERED at seq {}: {} (last good seq {})",
                    b.seq, b.reason, v.head_seq
                ),
            },
            KbReport::BackedUp(b) => format!(
                "backed up {} events to {} in {} ms (head {})",
                b.verify.head_seq,
                b.dir.display(),
                b.elapsed_ms,
                b.verify.head_hash
            ),
            KbReport::Restored(r) => format!("restored {} events (head {})", r.events, r.head_hash),
            KbReport::Imported {
                rows,
                appended,
                duplicates,
                head_seq,
            } => format!(
                "{rows} rows: {appended} appended, {duplicates} already present; head seq {head_seq}"
            ),
            KbReport::Exported { out: None, .. } => String::new(),
            KbReport::Exported {
                events,
                out: Some(p),
            } => format!("exported {events} events to {}", p.display()),
            KbReport::Rebuilt { events } => format!("rebuilt views from {events} events"),
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

fn prov(e: &runloop_pog::Event, k: &str) -> String {
    e.provenance
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

fn rationale(e: &runloop_pog::Event) -> String {
    e.provenance
        .get("rationale")
        .and_then(Value::as_str)
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}
