//! Writing, idempotency, validation, evidence, views, why and rebuild against real files.

mod common;

use common::*;
use runloop_pog::{
    ActorName, EntityRef, EventKind, IdempotencyKey, NewEvent, PogConfig, Scope, Store, WriteError,
};
use serde_json::json;

#[test]
fn writes_chain_hashes_and_project_views() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let w = s
        .write_batch(vec![
            contact("ada", "Ada Lovelace"),
            note("n1", "met Ada at the engine demo"),
        ])
        .unwrap();
    assert_eq!(w[0].event.seq, 1);
    assert_eq!(w[1].event.prev_hash, w[0].event.hash);
    assert_eq!(s.head().seq, 2);
    let q = s
        .reads()
        .query("SELECT name, email FROM contacts", &[])
        .unwrap();
    assert_eq!(
        q.rows,
        vec![vec![json!("Ada Lovelace"), json!("ada@example.com")]]
    );
    drop(s);
    // Reopen: head and views survive.
    let s = open(dir.path());
    assert_eq!(s.head().seq, 2);
    assert_eq!(
        s.reads()
            .query("SELECT count(*) FROM notes", &[])
            .unwrap()
            .rows[0][0],
        json!(1)
    );
}

#[test]
fn repeated_key_returns_the_original_and_a_different_payload_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let keyed = |name: &str| {
        let c = contact("ada", name);
        NewEvent::new(
            c.kind(),
            c.actor().clone(),
            c.scope().clone(),
            c.payload().clone(),
            prov_with_evidence(&[]),
            Some(IdempotencyKey::new("k1").unwrap()),
        )
        .unwrap()
    };
    let first = s.write(keyed("Ada")).unwrap();
    assert!(!first.duplicate);
    let again = s.write(keyed("Ada")).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.event, first.event);
    assert_eq!(s.head().seq, 1);
    let err = s.write(keyed("Grace")).unwrap_err();
    assert_eq!(
        err,
        WriteError::IdempotencyConflict {
            index: 0,
            key: "k1".into(),
            seq: 1,
            what: "payload"
        }
    );
    // Within one batch too.
    let w = s.write_batch(vec![note("n", "x"), keyed("Ada")]).unwrap();
    assert!(w[1].duplicate);
    assert_eq!(s.head().seq, 2);
}

#[test]
fn missing_evidence_rejects_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write(contact("ada", "Ada")).unwrap();
    let cites = |seqs: &[u64]| {
        NewEvent::new(
            EventKind::NoteAdded,
            ActorName::new("user").unwrap(),
            Scope::default_scope(),
            json!({"note_id": "n", "text": "t"}),
            prov_with_evidence(seqs),
            None,
        )
        .unwrap()
    };
    let err = s
        .write_batch(vec![note("ok", "fine"), cites(&[1, 9])])
        .unwrap_err();
    assert_eq!(
        err,
        WriteError::MissingEvidence {
            index: 1,
            seq: 9,
            head: 2
        }
    );
    assert_eq!(s.head().seq, 1, "nothing of the failed batch was kept");
    // Evidence may cite an event earlier in the same batch.
    s.write_batch(vec![note("a", "first"), cites(&[2])])
        .unwrap();
    assert_eq!(s.head().seq, 3);
}

#[test]
fn groups_commit_independently() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let bad = NewEvent::new(
        EventKind::NoteAdded,
        ActorName::new("user").unwrap(),
        Scope::default_scope(),
        json!({"note_id": "b", "text": "t"}),
        prov_with_evidence(&[99]),
        None,
    )
    .unwrap();
    let r = s.write_groups(vec![
        vec![note("a", "x")],
        vec![note("c", "y"), bad],
        vec![note("d", "z")],
    ]);
    assert!(r[0].is_ok() && r[2].is_ok());
    assert!(matches!(
        r[1],
        Err(WriteError::MissingEvidence { index: 1, .. })
    ));
    assert_eq!(s.head().seq, 2);
    assert_eq!(r[2].as_ref().unwrap()[0].event.seq, 2);
}

#[test]
fn why_follows_entities_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write(contact("ada", "Ada")).unwrap(); // 1
    s.write(note("n0", "unrelated")).unwrap(); // 2
    let n = NewEvent::new(
        EventKind::NoteAdded,
        ActorName::new("agent:writer").unwrap(),
        Scope::default_scope(),
        json!({"note_id": "n1", "text": "t"}),
        prov_with_evidence(&[2]),
        None,
    )
    .unwrap();
    s.write(n).unwrap(); // 3
    let e = NewEvent::new(EventKind::EmailSent, ActorName::new("agent:mailer").unwrap(), Scope::default_scope(),
        json!({"message_id": "m1", "to": ["ada@example.com"], "subject": "hi", "contact_id": "ada"}), prov_with_evidence(&[3]), None).unwrap();
    s.write(e).unwrap(); // 4
    let why = s
        .reads()
        .why(&EntityRef::parse("contact:ada").unwrap())
        .unwrap();
    assert_eq!(
        why.direct.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert_eq!(
        why.evidence.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(why.direct[1].provenance["rationale"], json!("because"));
    assert!(
        s.reads()
            .why(&EntityRef::parse("contact:nobody").unwrap())
            .is_err()
    );
}

#[test]
fn rebuild_gives_identical_views() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let t = TRACE;
    let batch = vec![
        contact("ada", "Ada"),
        contact("bob", "Bob"),
        ev(
            EventKind::ContactUpserted,
            json!({"contact_id": "ada", "name": "Ada L.", "tags": ["math", "engines"]}),
        ),
        ev(EventKind::ContactRemoved, json!({"contact_id": "bob"})),
        note("n1", "notes about the analytical engine"),
        ev(
            EventKind::ArtifactCreated,
            json!({"artifact_id": "a1", "name": "draft.txt", "media_type": "text/plain", "digest": "cd".repeat(32), "size_bytes": 12, "trace_id": t}),
        ),
        ev(
            EventKind::RunStarted,
            json!({"trace_id": t, "opening": "compose_email", "params": {"to": "ada"}}),
        ),
        ev(
            EventKind::HostcallRecorded,
            json!({"trace_id": t, "node_id": "writer", "call_seq": 0, "call": "model", "request_hash": "ef".repeat(32), "result": {"text": "Dear Ada"}}),
        ),
        ev(
            EventKind::NodeFinished,
            json!({"trace_id": t, "node_id": "writer", "agent": "writer", "status": "ok", "duration_ms": 5}),
        ),
        ev(
            EventKind::EmailSent,
            json!({"message_id": "m1", "to": ["ada@example.com"], "subject": "hello", "contact_id": "ada", "trace_id": t}),
        ),
        ev(
            EventKind::RunFinished,
            json!({"trace_id": t, "status": "ok", "duration_ms": 9}),
        ),
        ev(
            EventKind::CapAudit,
            json!({"agent": "mailer", "cap": "net", "decision": "deny", "reason": "no network"}),
        ),
        ev(
            EventKind::EmbeddingSet,
            json!({"entity": "note:n1", "model": "m", "vector": [0.1, 0.2, 0.3]}),
        ),
    ];
    s.write_batch(batch).unwrap();
    let before = dump_views(&s);
    let cfg = s.config().clone();
    drop(s);
    assert_eq!(Store::rebuild(&cfg).unwrap(), 13);
    let s = open(dir.path());
    assert_eq!(dump_views(&s), before);
    // Deleting the view file entirely also regenerates it on open.
    drop(s);
    std::fs::remove_file(cfg.view_path()).unwrap();
    let s = open(dir.path());
    assert_eq!(dump_views(&s), before);
    let hc = s
        .reads()
        .hostcalls(&runloop_pog::parse_trace_id(t).unwrap())
        .unwrap();
    assert_eq!(hc[0].result, json!({"text": "Dear Ada"}));
}

#[test]
fn views_ahead_of_a_truncated_log_refuse_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PogConfig::in_dir(dir.path());
    let mut s = open(dir.path());
    s.write_batch(vec![note("a", "1"), note("b", "2")]).unwrap();
    drop(s);
    let c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    c.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 2;")
        .unwrap();
    drop(c);
    let err = Store::open(&cfg, std::sync::Arc::new(runloop_pog::SystemClock)).unwrap_err();
    assert!(err.to_string().contains("views reflect seq 2"), "{err}");
}

#[test]
fn search_fuses_text_and_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(vec![
        note("engine", "the analytical engine computes bernoulli numbers"),
        note("garden", "tomatoes and basil in the garden"),
        note("loom", "jacquard loom punched cards"),
        ev(
            EventKind::EmbeddingSet,
            json!({"entity": "note:engine", "model": "m", "vector": [1.0, 0.0, 0.0]}),
        ),
        ev(
            EventKind::EmbeddingSet,
            json!({"entity": "note:garden", "model": "m", "vector": [0.0, 1.0, 0.0]}),
        ),
        ev(
            EventKind::EmbeddingSet,
            json!({"entity": "note:loom", "model": "m", "vector": [0.9, 0.1, 0.0]}),
        ),
    ])
    .unwrap();
    let r = s.reads();
    let q = |text: &str, v: Option<Vec<f32>>| {
        r.search(&runloop_pog::SearchQuery {
            text: text.into(),
            vector: v,
            scope: None,
            limit: 10,
        })
        .unwrap()
    };
    let text_only = q("engine", None);
    assert_eq!(text_only[0].entity, "note:engine");
    assert_eq!(text_only.len(), 1);
    let vec_only = q("", Some(vec![0.9, 0.1, 0.0]));
    assert_eq!(
        vec_only
            .iter()
            .map(|h| h.entity.as_str())
            .collect::<Vec<_>>(),
        vec!["note:loom", "note:engine", "note:garden"]
    );
    // Both rankers agree on "engine"-ish: it wins the fusion over loom (vector-only).
    let hybrid = q("analytical engine", Some(vec![0.9, 0.1, 0.0]));
    assert_eq!(hybrid[0].entity, "note:engine");
    assert_eq!(
        (hybrid[0].text_rank, hybrid[0].vector_rank),
        (Some(1), Some(2))
    );
    assert!(
        r.search(&runloop_pog::SearchQuery {
            text: " ;; ".into(),
            ..Default::default()
        })
        .is_err()
    );
}

#[test]
fn validation_errors_name_the_field() {
    let err = NewEvent::new(
        EventKind::EmailSent,
        ActorName::new("u").unwrap(),
        Scope::default_scope(),
        json!({"message_id": "m", "to": "ada", "subject": "s"}),
        prov(),
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "payload.to: expected a list of strings");
}

#[test]
fn two_writers_on_one_dir_keep_one_chain() {
    // E.g. `rlp kb write` next to a running daemon: the head is re-read under the write lock.
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path());
    let mut b = open(dir.path());
    a.write(note("a1", "x")).unwrap();
    let w = b.write(note("b1", "y")).unwrap();
    assert_eq!(w.event.seq, 2);
    a.write(note("a2", "z")).unwrap();
    let cfg = a.config().clone();
    assert!(runloop_pog::verify(&cfg).unwrap().ok());
    let r = a.reads();
    assert_eq!(
        r.query("SELECT count(*) FROM notes", &[]).unwrap().rows[0][0],
        json!(3)
    );
    assert_eq!(
        r.query("SELECT events FROM traces", &[]).unwrap().rows[0][0],
        json!(3)
    );
}

#[test]
fn why_in_a_scope_hides_other_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let in_scope = |scope: &str, payload: serde_json::Value, evidence: &[u64]| {
        NewEvent::new(
            EventKind::NoteAdded,
            ActorName::new("user").unwrap(),
            Scope::new(scope).unwrap(),
            payload,
            prov_with_evidence(evidence),
            None,
        )
        .unwrap()
    };
    s.write(in_scope(
        "home",
        json!({"note_id": "secret", "text": "private"}),
        &[],
    ))
    .unwrap(); // 1
    s.write(in_scope(
        "work",
        json!({"note_id": "w", "text": "t", "about": "contact:ada"}),
        &[1],
    ))
    .unwrap(); // 2
    s.write(in_scope(
        "home",
        json!({"note_id": "h", "text": "t", "about": "contact:ada"}),
        &[],
    ))
    .unwrap(); // 3
    let ada = EntityRef::parse("contact:ada").unwrap();
    let all = s.reads().why(&ada).unwrap();
    assert_eq!((all.direct.len(), all.evidence.len()), (2, 1));
    let work = s
        .reads()
        .why_in(&ada, Some(&Scope::new("work").unwrap()))
        .unwrap();
    assert_eq!(
        work.direct.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(
        work.evidence.is_empty(),
        "evidence in another scope is not shown"
    );
    assert!(
        s.reads()
            .why_in(
                &EntityRef::parse("note:secret").unwrap(),
                Some(&Scope::new("work").unwrap())
            )
            .is_err()
    );
}

#[test]
fn views_that_lag_the_log_catch_up_on_open() {
    // Same log, a second (empty) view file: opening projects every logged event into it,
    // exactly as after a crash between the log commit and the view commit.
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(vec![contact("ada", "Ada"), note("n1", "text")])
        .unwrap();
    s.write(note("n2", "more")).unwrap();
    let before = dump_views(&s);
    drop(s);
    let mut cfg = PogConfig::in_dir(dir.path());
    cfg.view_db = "other-views.sqlite".into();
    let s = Store::open(&cfg, std::sync::Arc::new(runloop_pog::ManualClock::new(0))).unwrap();
    assert_eq!(dump_views(&s), before);
}
