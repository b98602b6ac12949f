//! Projection of events into the view file. `apply` is the only writer of view rows, used
//! both by live writes and by catch-up/rebuild, so a rebuild gives identical views.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::event::{Event, Hash32};
use crate::kind::EventKind;

/// Longest note title shown in search results.
const NOTE_TITLE_CHARS_MAX: usize = 80;

/// A projection failure (SQL error on the view file).
#[derive(Debug, thiserror::Error)]
#[error("project event {seq} ({kind}) into views: {source}")]
pub struct ViewError {
    /// The event being projected.
    pub seq: u64,
    /// Its kind.
    pub kind: &'static str,
    /// SQLite's error.
    pub source: rusqlite::Error,
}

/// Runs one statement through the connection's statement cache: a view projection runs the
/// same few statements for every event, and preparing them again was a third of its cost.
fn exec<P: rusqlite::Params>(
    tx: &rusqlite::Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// The last event the views reflect: `(seq, hash)`; `(0, zeros)` for empty views.
pub(crate) fn applied(conn: &Connection) -> rusqlite::Result<(u64, Hash32)> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'applied_seq'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'applied_hash'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let hash = hash
        .and_then(|h| Hash32::from_slice(&h))
        .unwrap_or(crate::canon::GENESIS_HASH);
    Ok((seq.unwrap_or(0) as u64, hash))
}

pub(crate) fn set_applied(tx: &Transaction<'_>, seq: u64, hash: &Hash32) -> rusqlite::Result<()> {
    exec(
        tx,
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('applied_seq', ?1)",
        [seq as i64],
    )?;
    exec(
        tx,
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('applied_hash', ?1)",
        [&hash.0[..]],
    )?;
    Ok(())
}

fn s<'a>(p: &'a Value, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}
fn n(p: &Value, k: &str) -> Option<i64> {
    p.get(k).and_then(Value::as_u64).map(|v| v as i64)
}
fn j(p: &Value, k: &str) -> Option<String> {
    p.get(k).filter(|v| !v.is_null()).map(Value::to_string)
}
fn req<'a>(p: &'a Value, k: &str) -> &'a str {
    // Payloads were validated on write; a missing required field here is a broken invariant.
    s(p, k).unwrap_or_else(|| panic!("validated payload lacks {k}"))
}

/// The entities an event touches (what `why` follows).
pub(crate) fn entities(e: &Event) -> Vec<String> {
    let p = &e.payload;
    let run = |k: &str| s(p, k).map(|t| format!("run:{t}"));
    let mut out: Vec<Option<String>> = match e.kind {
        EventKind::ContactUpserted | EventKind::ContactRemoved => {
            vec![Some(format!("contact:{}", req(p, "contact_id")))]
        }
        EventKind::NoteAdded => vec![
            Some(format!("note:{}", req(p, "note_id"))),
            s(p, "about").map(str::to_owned),
        ],
        EventKind::ArtifactCreated => vec![
            Some(format!("artifact:{}", req(p, "artifact_id"))),
            run("trace_id"),
        ],
        EventKind::EmailSent => vec![
            Some(format!("email:{}", req(p, "message_id"))),
            s(p, "contact_id").map(|c| format!("contact:{c}")),
            run("trace_id"),
        ],
        EventKind::RunStarted | EventKind::RunResumed | EventKind::RunFinished => {
            vec![run("trace_id")]
        }
        EventKind::NodeStarted | EventKind::NodeFinished => vec![
            Some(format!("node:{}/{}", req(p, "trace_id"), req(p, "node_id"))),
            run("trace_id"),
            Some(format!("agent:{}", req(p, "agent"))),
        ],
        EventKind::HostcallRecorded => vec![
            Some(format!("node:{}/{}", req(p, "trace_id"), req(p, "node_id"))),
            run("trace_id"),
        ],
        EventKind::CapAudit => vec![Some(format!("agent:{}", req(p, "agent"))), run("trace_id")],
        EventKind::CapGranted | EventKind::CapRevoked => {
            vec![Some(format!("agent:{}", req(p, "agent")))]
        }
        EventKind::EmbeddingSet => vec![Some(req(p, "entity").to_owned())],
        EventKind::ActionRequested | EventKind::ActionDecided => vec![
            Some(format!("action:{}", req(p, "request_id"))),
            Some(format!("node:{}/{}", req(p, "trace_id"), req(p, "node_id"))),
            run("trace_id"),
        ],
        EventKind::EffectIntent | EventKind::EffectResult => vec![
            Some(format!("node:{}/{}", req(p, "trace_id"), req(p, "node_id"))),
            run("trace_id"),
        ],
        EventKind::CrossingRecorded => vec![
            s(p, "node_id").map(|n| format!("node:{}/{n}", req(p, "trace_id"))),
            run("trace_id"),
        ],
    };
    let mut v: Vec<String> = out.drain(..).flatten().collect();
    v.sort();
    v.dedup();
    v
}

/// Projects one event. Runs inside the caller's view transaction.
pub(crate) fn apply(tx: &Transaction<'_>, e: &Event) -> Result<(), ViewError> {
    apply_inner(tx, e).map_err(|source| ViewError {
        seq: e.seq,
        kind: e.kind.as_str(),
        source,
    })
}

fn apply_inner(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let seq = e.seq as i64;
    for ent in entities(e) {
        exec(
            tx,
            "INSERT OR IGNORE INTO entity_events(entity, seq) VALUES (?1, ?2)",
            params![ent, seq],
        )?;
    }
    if let Some(t) = e.provenance.get("trace_id").and_then(Value::as_str) {
        exec(
        tx,
            "INSERT INTO traces(trace_id, events, first_seq, last_seq, first_ms, last_ms) VALUES (?1, 1, ?2, ?2, ?3, ?3)
             ON CONFLICT(trace_id) DO UPDATE SET events = events + 1, last_seq = ?2, last_ms = ?3",
            params![t, seq, e.ts_ms as i64],
        )?;
    }
    match e.kind {
        EventKind::RunStarted
        | EventKind::RunResumed
        | EventKind::RunFinished
        | EventKind::NodeStarted
        | EventKind::NodeFinished
        | EventKind::HostcallRecorded
        | EventKind::CapAudit => project_run(tx, e),
        // Read back through `entity_events` (a run's events); no view of their own.
        EventKind::ActionRequested
        | EventKind::ActionDecided
        | EventKind::CapGranted
        | EventKind::CapRevoked
        | EventKind::EffectIntent
        | EventKind::EffectResult
        | EventKind::CrossingRecorded => Ok(()),
        // Listed, not `_`, so a new kind is a compile error here rather than a panic below.
        EventKind::ContactUpserted
        | EventKind::ContactRemoved
        | EventKind::NoteAdded
        | EventKind::ArtifactCreated
        | EventKind::EmailSent
        | EventKind::EmbeddingSet => project_entity(tx, e),
    }
}

/// Entity views: contacts, notes, artifacts, emails, vectors (and their search docs).
fn project_entity(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let seq = e.seq as i64;
    let p = &e.payload;
    match e.kind {
        EventKind::ContactUpserted => contact_upserted(tx, e, p)?,
        EventKind::ContactRemoved => {
            let id = req(p, "contact_id");
            exec(
                tx,
                "UPDATE contacts SET removed = 1, updated_seq = ?2 WHERE contact_id = ?1",
                params![id, seq],
            )?;
            remove_doc(tx, &format!("contact:{id}"))?;
            exec(
                tx,
                "DELETE FROM vectors WHERE entity = ?1",
                [format!("contact:{id}")],
            )?;
        }
        EventKind::NoteAdded => {
            let id = req(p, "note_id");
            exec(
                tx,
                "INSERT OR REPLACE INTO notes(note_id, text, about, tags, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, req(p, "text"), s(p, "about"), j(p, "tags"), seq],
            )?;
            // The first line of the note, cut at a char boundary, is its title.
            let text = req(p, "text");
            let first = text.lines().next().unwrap_or(id);
            let title: String = first.chars().take(NOTE_TITLE_CHARS_MAX).collect();
            upsert_doc(tx, e, &format!("note:{id}"), &title, text)?;
        }
        EventKind::ArtifactCreated => {
            let id = req(p, "artifact_id");
            exec(
        tx,
                "INSERT OR REPLACE INTO artifacts(artifact_id, name, media_type, digest, size_bytes, uri, trace_id, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, req(p, "name"), req(p, "media_type"), req(p, "digest"), n(p, "size_bytes"), s(p, "uri"), s(p, "trace_id"), seq],
            )?;
            upsert_doc(
                tx,
                e,
                &format!("artifact:{id}"),
                req(p, "name"),
                req(p, "media_type"),
            )?;
        }
        EventKind::EmailSent => {
            let id = req(p, "message_id");
            let to = j(p, "to").unwrap_or_default();
            exec(
        tx,
                "INSERT OR REPLACE INTO emails(message_id, to_addrs, subject, body_digest, contact_id, trace_id, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, to, req(p, "subject"), s(p, "body_digest"), s(p, "contact_id"), s(p, "trace_id"), seq],
            )?;
            upsert_doc(tx, e, &format!("email:{id}"), req(p, "subject"), &to)?;
        }
        EventKind::EmbeddingSet => embedding_set(tx, e, p)?,
        _ => unreachable!("run kinds are projected by project_run"),
    }
    Ok(())
}

/// Run views: runs, nodes, recorded host calls, capability audit.
fn project_run(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let seq = e.seq as i64;
    let p = &e.payload;
    match e.kind {
        EventKind::RunStarted => {
            exec(
        tx,
                "INSERT INTO runs(trace_id, opening, params, status, started_seq, started_ms) VALUES (?1, ?2, ?3, 'running', ?4, ?5)
                 ON CONFLICT(trace_id) DO UPDATE SET opening = ?2, params = ?3, started_seq = ?4, started_ms = ?5",
                params![req(p, "trace_id"), req(p, "opening"), j(p, "params"), seq, e.ts_ms as i64],
            )?;
        }
        // The run's row keeps its start; who continues it is read from the log.
        EventKind::RunResumed => {}
        EventKind::RunFinished => {
            exec(
        tx,
                "INSERT INTO runs(trace_id, status, error, finished_seq, finished_ms, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(trace_id) DO UPDATE SET status = ?2, error = ?3, finished_seq = ?4, finished_ms = ?5, duration_ms = ?6",
                params![req(p, "trace_id"), req(p, "status"), s(p, "error"), seq, e.ts_ms as i64, n(p, "duration_ms")],
            )?;
        }
        EventKind::NodeStarted => {
            exec(
        tx,
                "INSERT OR REPLACE INTO nodes(trace_id, node_id, agent, status, output_hash, duration_ms, attempt, seq)
                 VALUES (?1, ?2, ?3, 'running', NULL, NULL, ?4, ?5)",
                params![req(p, "trace_id"), req(p, "node_id"), req(p, "agent"), n(p, "attempt"), seq],
            )?;
        }
        EventKind::NodeFinished => {
            exec(
        tx,
                "INSERT OR REPLACE INTO nodes(trace_id, node_id, agent, status, output_hash, duration_ms, attempt, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![req(p, "trace_id"), req(p, "node_id"), req(p, "agent"), req(p, "status"), s(p, "output_hash"), n(p, "duration_ms"), n(p, "attempt"), seq],
            )?;
        }
        EventKind::HostcallRecorded => {
            let result = p
                .get("result")
                .map(Value::to_string)
                .unwrap_or_else(|| "null".into());
            exec(
        tx,
                "INSERT OR REPLACE INTO hostcalls(trace_id, node_id, call_seq, call, request_hash, result, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![req(p, "trace_id"), req(p, "node_id"), n(p, "call_seq"), req(p, "call"), req(p, "request_hash"), result, seq],
            )?;
        }
        EventKind::CapAudit => {
            exec(
                tx,
                "INSERT INTO audit(seq, ts_ms, agent, cap, decision, request, reason, trace_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    seq,
                    e.ts_ms as i64,
                    req(p, "agent"),
                    req(p, "cap"),
                    req(p, "decision"),
                    s(p, "request"),
                    s(p, "reason"),
                    s(p, "trace_id")
                ],
            )?;
        }
        _ => unreachable!("entity kinds are projected by project_entity"),
    }
    Ok(())
}

fn contact_upserted(tx: &Transaction<'_>, e: &Event, p: &Value) -> rusqlite::Result<()> {
    let id = req(p, "contact_id");
    let seq = e.seq as i64;
    exec(
        tx,
        "INSERT INTO contacts(contact_id, name, email, phone, org, tags, notes, removed, created_seq, updated_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)
         ON CONFLICT(contact_id) DO UPDATE SET name = ?2, email = ?3, phone = ?4, org = ?5, tags = ?6, notes = ?7,
            removed = 0, updated_seq = ?8",
        params![id, req(p, "name"), s(p, "email"), s(p, "phone"), s(p, "org"), j(p, "tags"), s(p, "notes"), seq],
    )?;
    let tags: Vec<&str> = p
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let body = [s(p, "email"), s(p, "org"), s(p, "phone"), s(p, "notes")]
        .into_iter()
        .flatten()
        .chain(tags)
        .collect::<Vec<_>>()
        .join(" ");
    upsert_doc(tx, e, &format!("contact:{id}"), req(p, "name"), &body)
}

fn embedding_set(tx: &Transaction<'_>, e: &Event, p: &Value) -> rusqlite::Result<()> {
    let floats: Vec<f32> = p
        .get("vector")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default();
    let blob: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    exec(
        tx,
        "INSERT OR REPLACE INTO vectors(entity, scope, model, dim, vec, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            req(p, "entity"),
            e.scope,
            req(p, "model"),
            floats.len() as i64,
            blob,
            e.seq as i64
        ],
    )?;
    Ok(())
}

fn upsert_doc(
    tx: &Transaction<'_>,
    e: &Event,
    entity: &str,
    title: &str,
    body: &str,
) -> rusqlite::Result<()> {
    remove_doc(tx, entity)?;
    exec(
        tx,
        "INSERT INTO docs(entity, kind, scope, title, body, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![entity, e.kind.as_str(), e.scope, title, body, e.seq as i64],
    )?;
    let id = tx.last_insert_rowid();
    exec(
        tx,
        "INSERT INTO docs_fts(rowid, title, body) VALUES (?1, ?2, ?3)",
        params![id, title, body],
    )?;
    Ok(())
}

fn remove_doc(tx: &Transaction<'_>, entity: &str) -> rusqlite::Result<()> {
    let old: Option<i64> = tx
        .query_row("SELECT id FROM docs WHERE entity = ?1", [entity], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = old {
        exec(tx, "DELETE FROM docs_fts WHERE rowid = ?1", [id])?;
        exec(tx, "DELETE FROM docs WHERE id = ?1", [id])?;
    }
    Ok(())
}
