//! Shared helpers for the POG integration tests: real SQLite files in temp dirs.
#![allow(dead_code)]

use std::sync::Arc;

use runloop_pog::{
    ActorName, EventKind, ManualClock, NewEvent, PogConfig, Provenance, Scope, Store,
};
use serde_json::{Value, json};

pub const TRACE: &str = "0123456789abcdef0123456789abcdef";

pub fn prov() -> Provenance {
    Provenance::from_json(&json!({"trace_id": TRACE, "opening_id": "test", "agent": "tester", "inputs_hash": "ab".repeat(32)})).unwrap()
}

pub fn prov_with_evidence(seqs: &[u64]) -> Provenance {
    Provenance {
        evidence: seqs.to_vec(),
        rationale: Some("because".into()),
        ..prov()
    }
}

pub fn ev(kind: EventKind, payload: Value) -> NewEvent {
    NewEvent::new(
        kind,
        ActorName::new("user").unwrap(),
        Scope::default_scope(),
        payload,
        prov(),
        None,
    )
    .unwrap()
}

pub fn contact(id: &str, name: &str) -> NewEvent {
    ev(
        EventKind::ContactUpserted,
        json!({"contact_id": id, "name": name, "email": format!("{id}@example.com")}),
    )
}

pub fn note(id: &str, text: &str) -> NewEvent {
    ev(EventKind::NoteAdded, json!({"note_id": id, "text": text}))
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(
        &PogConfig::in_dir(dir),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .unwrap()
}

/// Every view table's rows, as JSON, for comparing two projections.
pub fn dump_views(store: &Store) -> Value {
    let r = store.reads();
    let mut out = serde_json::Map::new();
    for t in [
        "contacts",
        "notes",
        "artifacts",
        "emails",
        "runs",
        "nodes",
        "hostcalls",
        "traces",
        "audit",
        "entity_events",
        "docs",
        "vectors",
    ] {
        let q = r
            .query(&format!("SELECT * FROM views.{t} ORDER BY 1, 2"), &[])
            .unwrap();
        out.insert(t.into(), json!(q.rows));
    }
    let fts = r
        .query(
            "SELECT rowid, title, body FROM views.docs_fts ORDER BY rowid",
            &[],
        )
        .unwrap();
    out.insert("docs_fts".into(), json!(fts.rows));
    Value::Object(out)
}
