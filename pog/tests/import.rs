//! Import parsing: CSV and NDJSON rows become validated events; errors name the line.

mod common;

use common::*;
use runloop_pog::import::{ImportContext, ImportError, parse_csv, parse_ndjson};
use runloop_pog::{ActorName, EventKind, Scope};

fn ctx(kind: EventKind) -> ImportContext {
    ImportContext {
        provenance: prov(),
        actor: ActorName::new("user").unwrap(),
        scope: Scope::default_scope(),
        csv_kind: kind,
        file_hash: "ab".repeat(32),
    }
}

#[test]
fn csv_rows_become_events_with_stable_keys() {
    let csv =
        "contact_id,name,email,tags,scope\nada,Ada,ada@x.org,a;b,work\n,Grace,Grace@X.org,,\n";
    let ev = parse_csv(csv.as_bytes(), &ctx(EventKind::ContactUpserted)).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0].payload_jcs(),
        r#"{"contact_id":"ada","email":"ada@x.org","name":"Ada","tags":["a","b"]}"#
    );
    assert_eq!(ev[0].scope().as_str(), "work");
    assert_eq!(ev[1].payload()["contact_id"], "grace@x.org");
    let again = parse_csv(csv.as_bytes(), &ctx(EventKind::ContactUpserted)).unwrap();
    assert_eq!(ev[1].idempotency_key(), again[1].idempotency_key());
}

#[test]
fn csv_errors_name_line_and_field() {
    let err = parse_csv("name\nAda\n".as_bytes(), &ctx(EventKind::ContactUpserted)).unwrap_err();
    assert!(
        matches!(&err, ImportError::Invalid { line: 2, source } if source.field == "payload.contact_id"),
        "{err}"
    );
    let err = parse_csv(
        "artifact_id,name,media_type,digest,size_bytes\na,n,t/p,x,12\n".as_bytes(),
        &ctx(EventKind::ArtifactCreated),
    )
    .unwrap_err();
    assert!(err.to_string().contains("line 2: payload.digest"), "{err}");
    let err = parse_csv(
        "artifact_id,size_bytes\na,-3\n".as_bytes(),
        &ctx(EventKind::ArtifactCreated),
    )
    .unwrap_err();
    assert!(err.to_string().contains("payload.size_bytes"), "{err}");
}

#[test]
fn ndjson_lines_are_events_and_errors_name_the_line() {
    let nd = "{\"kind\":\"note.added\",\"payload\":{\"note_id\":\"a\",\"text\":\"x\"}}\n\n{\"kind\":\"note.added\",\"payload\":{\"note_id\":\"b\"}}\n";
    let err = parse_ndjson(nd.as_bytes(), &ctx(EventKind::NoteAdded)).unwrap_err();
    assert_eq!(err.to_string(), "line 3: payload.text: is required");
    let err = parse_ndjson("{oops\n".as_bytes(), &ctx(EventKind::NoteAdded)).unwrap_err();
    assert!(matches!(err, ImportError::Json { line: 1, .. }));
    let ok = parse_ndjson(
        nd.lines().next().unwrap().as_bytes(),
        &ctx(EventKind::NoteAdded),
    )
    .unwrap();
    assert_eq!(ok[0].provenance().agent, "tester");
    assert!(
        ok[0]
            .idempotency_key()
            .unwrap()
            .as_str()
            .starts_with("import:")
    );
}
