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
    }
}

#[test]
fn csv_rows_become_events_with_stable_keys() {
    let csv =
        "contact_id,name,email,tags,scope\nada,Ada,ada@x.org,a;b,work\n,Grace,Grace@X.org,,\n";
    let parsed = parse_csv(csv.as_bytes(), &ctx(EventKind::ContactUpserted)).unwrap();
    assert_eq!(
        parsed.file_hash,
        blake3::hash(csv.as_bytes()).to_hex().to_string()
    );
    let ev = parsed.events;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].provenance().inputs_hash, parsed.file_hash);
    let hash32 = &parsed.file_hash[..32];
    assert_eq!(
        ev[0].idempotency_key().unwrap().as_str(),
        format!("import:{hash32}:2"),
        "keys name the line as before: the first row is line 2"
    );
    assert_eq!(
        ev[0].payload_jcs(),
        r#"{"contact_id":"ada","email":"ada@x.org","name":"Ada","tags":["a","b"]}"#
    );
    assert_eq!(ev[0].scope().as_str(), "work");
    assert_eq!(ev[1].payload()["contact_id"], "grace@x.org");
    let again = parse_csv(csv.as_bytes(), &ctx(EventKind::ContactUpserted))
        .unwrap()
        .events;
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
    .unwrap()
    .events;
    assert_eq!(ok[0].provenance().agent, "tester");
    assert!(
        ok[0]
            .idempotency_key()
            .unwrap()
            .as_str()
            .starts_with("import:")
    );
}

/// A reader that counts the bytes pulled from it, to show how much of an endless or huge
/// input the parser read before refusing it.
struct Counted<R> {
    inner: R,
    pulled: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pulled.set(self.pulled.get() + n as u64);
        Ok(n)
    }
}

fn counted<R: std::io::Read>(inner: R) -> (Counted<R>, std::rc::Rc<std::cell::Cell<u64>>) {
    let pulled = std::rc::Rc::new(std::cell::Cell::new(0));
    (
        Counted {
            inner,
            pulled: pulled.clone(),
        },
        pulled,
    )
}

/// The most an import may pull past a limit before refusing: its read buffer and slack.
const READ_SLACK_BYTES: u64 = 256 * 1024;

#[test]
fn endless_ndjson_is_refused_after_one_line_limit() {
    use runloop_pog::import::IMPORT_LINE_BYTES_MAX;
    // Like /dev/zero: no newline, ever.
    let (input, pulled) = counted(std::io::repeat(0));
    let err = parse_ndjson(input, &ctx(EventKind::NoteAdded)).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::TooBig {
                line: 1,
                limit: "IMPORT_LINE_BYTES_MAX",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "line 1: line length over the limit of {IMPORT_LINE_BYTES_MAX} (IMPORT_LINE_BYTES_MAX)"
        )
    );
    assert!(
        pulled.get() <= IMPORT_LINE_BYTES_MAX as u64 + READ_SLACK_BYTES,
        "pulled {}",
        pulled.get()
    );
}

#[test]
fn endless_csv_is_refused_after_one_record_limit() {
    use runloop_pog::import::IMPORT_RECORD_BYTES_MAX;
    let (input, pulled) = counted(std::io::repeat(0));
    let err = parse_csv(input, &ctx(EventKind::ContactUpserted)).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::TooBig {
                line: 1,
                limit: "IMPORT_RECORD_BYTES_MAX",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        pulled.get() <= IMPORT_RECORD_BYTES_MAX as u64 + READ_SLACK_BYTES,
        "pulled {}",
        pulled.get()
    );
}

#[test]
fn a_100_mb_csv_field_is_refused_while_streaming() {
    use runloop_pog::import::IMPORT_RECORD_BYTES_MAX;
    use std::io::Read;
    const FIELD_BYTES: u64 = 100 * 1024 * 1024;
    // A quoted field may hold newlines, so only the record limit can stop it.
    let head = std::io::Cursor::new(b"contact_id,name\nada,\"".to_vec());
    let body = std::io::repeat(b'x').take(FIELD_BYTES);
    let tail = std::io::Cursor::new(b"\"\n".to_vec());
    let (input, pulled) = counted(head.chain(body).chain(tail));
    let err = parse_csv(input, &ctx(EventKind::ContactUpserted)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "line 2: record length over the limit of {IMPORT_RECORD_BYTES_MAX} (IMPORT_RECORD_BYTES_MAX)"
        )
    );
    assert!(
        pulled.get() <= IMPORT_RECORD_BYTES_MAX as u64 + READ_SLACK_BYTES,
        "pulled {}",
        pulled.get()
    );
}

#[test]
fn csv_width_and_shape_are_checked() {
    use runloop_pog::import::IMPORT_FIELDS_MAX;
    let wide = format!("name\n{}\n", ",".repeat(IMPORT_FIELDS_MAX + 5));
    let err = parse_csv(wide.as_bytes(), &ctx(EventKind::ContactUpserted)).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::TooBig {
                line: 2,
                limit: "IMPORT_FIELDS_MAX",
                ..
            }
        ),
        "{err}"
    );
    let err = parse_csv(
        "contact_id,name\nada,Ada,extra\n".as_bytes(),
        &ctx(EventKind::ContactUpserted),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: found record with 3 fields, but the header has 2 fields"
    );
    // Quoted fields, blank lines and a CRLF ending parse as the csv crate did.
    let parsed = parse_csv(
        " contact_id , name \r\n\r\n\"ada\",\"Ada, \"\"the first\"\"\"\r\n".as_bytes(),
        &ctx(EventKind::ContactUpserted),
    )
    .unwrap();
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(parsed.events[0].payload()["name"], "Ada, \"the first\"");
}
