//! Scope-limited `kb.query` on a real store: a scoped query sees only its scopes' rows, an
//! unrestricted one sees all, and every way around the filtered views is refused with the
//! table and the reason.

mod common;

use common::*;
use runloop_pog::{ActorName, EventKind, NewEvent, QueryError, Reads, Scope, Store};
use serde_json::{Value, json};

fn ev_in(scope: &str, kind: EventKind, payload: Value) -> NewEvent {
    NewEvent::new(
        kind,
        ActorName::new("user").unwrap(),
        Scope::new(scope).unwrap(),
        payload,
        prov(),
        None,
    )
    .unwrap()
}

const RUN: &str = "fedcba9876543210fedcba9876543210";

/// Ada and a note in `personal`; Bob, a note and an email in `work`; Carol created and
/// removed in `work` but renamed in `personal` in between (her row keeps the personal
/// name); a run started in `personal` and finished in `work`.
fn store(dir: &std::path::Path) -> Store {
    let mut s = open(dir);
    let events = [
        (
            "personal",
            EventKind::ContactUpserted,
            json!({"contact_id": "ada", "name": "Ada"}),
        ),
        (
            "work",
            EventKind::ContactUpserted,
            json!({"contact_id": "bob", "name": "Bob"}),
        ),
        (
            "personal",
            EventKind::NoteAdded,
            json!({"note_id": "n1", "text": "ada likes tea"}),
        ),
        (
            "work",
            EventKind::NoteAdded,
            json!({"note_id": "n2", "text": "bob ships friday"}),
        ),
        (
            "work",
            EventKind::EmailSent,
            json!({"message_id": "m1", "to": ["bob@example.com"], "subject": "ship", "contact_id": "bob"}),
        ),
        (
            "work",
            EventKind::ContactUpserted,
            json!({"contact_id": "carol", "name": "Carol"}),
        ),
        (
            "personal",
            EventKind::ContactUpserted,
            json!({"contact_id": "carol", "name": "Carol Secret"}),
        ),
        (
            "work",
            EventKind::ContactRemoved,
            json!({"contact_id": "carol"}),
        ),
        (
            "personal",
            EventKind::RunStarted,
            json!({"trace_id": RUN, "opening": "daily"}),
        ),
        (
            "work",
            EventKind::RunFinished,
            json!({"trace_id": RUN, "status": "ok"}),
        ),
    ];
    for (scope, kind, payload) in events {
        s.write(ev_in(scope, kind, payload)).unwrap();
    }
    s
}

fn scopes(names: &[&str]) -> Vec<Scope> {
    names.iter().map(|n| Scope::new(n).unwrap()).collect()
}

fn column(r: &Reads, sql: &str, only: Option<&[&str]>) -> Vec<Value> {
    let result = match only {
        None => r.query(sql, &[]),
        Some(names) => r.query_scoped(sql, &[], &scopes(names)),
    };
    let result = result.unwrap_or_else(|e| panic!("{sql:?} under {only:?}: {e}"));
    result
        .rows
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect()
}

#[test]
fn a_scoped_query_sees_only_its_scopes_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r = s.reads();
    let names = "SELECT name FROM contacts ORDER BY name";
    assert_eq!(column(&r, names, Some(&["personal"])), [json!("Ada")]);
    assert_eq!(column(&r, names, Some(&["work"])), [json!("Bob")]);
    assert_eq!(
        column(&r, names, Some(&["work", "personal"])),
        [json!("Ada"), json!("Bob"), json!("Carol Secret")],
        "both scopes see Carol, whose events span both"
    );
    assert_eq!(
        column(&r, names, None),
        [json!("Ada"), json!("Bob"), json!("Carol Secret")],
        "unrestricted"
    );
    let texts = "SELECT text FROM notes ORDER BY note_id";
    assert_eq!(
        column(&r, texts, Some(&["work"])),
        [json!("bob ships friday")]
    );
    assert_eq!(column(&r, texts, None).len(), 2);

    let kinds = "SELECT DISTINCT scope FROM events ORDER BY 1";
    assert_eq!(column(&r, kinds, Some(&["personal"])), [json!("personal")]);
    assert_eq!(column(&r, kinds, None), [json!("personal"), json!("work")]);
    let personal_events = "SELECT count(*) FROM events WHERE scope = 'personal'";
    assert_eq!(column(&r, personal_events, Some(&["work"])), [json!(0)]);
    assert_eq!(column(&r, personal_events, None), [json!(4)]);

    let docs = "SELECT entity FROM docs ORDER BY entity";
    assert_eq!(
        column(&r, docs, Some(&["work"])),
        [json!("contact:bob"), json!("email:m1"), json!("note:n2")],
    );
    let ent = "SELECT DISTINCT entity FROM entity_events WHERE entity LIKE 'contact:%' ORDER BY 1";
    assert_eq!(
        column(&r, ent, Some(&["personal"])),
        [json!("contact:ada"), json!("contact:carol")],
        "carol's personal rename is a personal event"
    );
    let runs = "SELECT count(*) FROM runs";
    assert_eq!(
        column(&r, runs, Some(&["personal"])),
        [json!(0)],
        "finished in work"
    );
    assert_eq!(
        column(&r, runs, Some(&["work"])),
        [json!(0)],
        "started in personal"
    );
    assert_eq!(column(&r, runs, Some(&["personal", "work"])), [json!(1)]);
    assert_eq!(
        column(&r, "SELECT count(*) FROM emails", Some(&["personal"])),
        [json!(0)]
    );
    assert_eq!(
        column(&r, "SELECT count(*) FROM emails", Some(&["work"])),
        [json!(1)]
    );
    assert_eq!(
        column(&r, "SELECT count(*) FROM events", Some(&[])),
        [json!(0)],
        "no scopes, no rows"
    );
}

#[test]
fn scoped_reads_compose_and_keep_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r = s.reads();
    let work = scopes(&["work"]);
    let joined = r
        .query_scoped(
            "WITH c AS (SELECT * FROM contacts) \
             SELECT c.name, e.kind FROM c \
             JOIN entity_events AS ee ON ee.entity = 'contact:' || c.contact_id \
             JOIN events AS e ON e.seq = ee.seq \
             WHERE e.kind = ?1 ORDER BY e.seq",
            &[json!("email.sent")],
            &work,
        )
        .unwrap();
    assert_eq!(joined.rows, vec![vec![json!("Bob"), json!("email.sent")]]);
    for (sql, expect) in [
        ("SELECT count(*) FROM temp.contacts", json!(1)),
        ("SELECT count(*) FROM (SELECT * FROM notes) AS x", json!(1)),
        (
            "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
            json!(1),
        ),
        (
            "SELECT count(*) FROM views.sqlite_master WHERE name = 'contacts'",
            json!(1),
        ),
        ("SELECT sum(value) FROM json_each('[1, 2, 3]')", json!(6)),
        ("SELECT 1", json!(1)),
        ("SELECT count(*) FROM contacts", json!(1)),
        (
            "WITH c AS (SELECT * FROM contacts) SELECT count(*) FROM c",
            json!(1),
        ),
        ("SELECT count(*) FROM (SELECT 1 FROM notes)", json!(1)),
        ("SELECT count(*) > 0 FROM sqlite_master", json!(1)),
    ] {
        assert_eq!(column(&r, sql, Some(&["work"])), [expect], "{sql}");
    }
    let info = r
        .query_scoped("PRAGMA table_info(contacts)", &[], &work)
        .unwrap();
    assert!(info.rows.len() >= 5, "introspection works: {info:?}");
}

fn refusal(r: &Reads, sql: &str) -> String {
    match r.query_scoped(sql, &[], &scopes(&["work"])) {
        Err(QueryError::Refused { reason }) => reason,
        other => panic!("{sql:?} was not refused: {other:?}"),
    }
}

#[test]
fn every_way_around_the_filtered_views_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let r = s.reads();
    let through_view = |t: &str| format!("is read only through the scope-filtered view {t}");
    let cases: Vec<(&str, String)> = vec![
        (
            "SELECT * FROM views.contacts",
            format!("views.contacts {}", through_view("contacts")),
        ),
        (
            "SELECT * FROM main.events",
            format!("main.events {}", through_view("events")),
        ),
        ("SELECT count(*) FROM main.events", through_view("events")),
        ("SELECT count(*) FROM views.notes", through_view("notes")),
        (
            "SELECT name FROM contacts WHERE contact_id IN (SELECT contact_id FROM views.contacts)",
            through_view("contacts"),
        ),
        (
            "SELECT * FROM (SELECT * FROM views.contacts) AS contacts",
            through_view("contacts"),
        ),
        (
            // A CTE named like the public view is reported as that view's accessor.
            "WITH contacts AS (SELECT * FROM views.contacts) SELECT name FROM contacts",
            through_view("contacts"),
        ),
        (
            "WITH events AS (SELECT * FROM main.events) SELECT * FROM events",
            through_view("events"),
        ),
        (
            "WITH RECURSIVE n(s) AS (SELECT 1 UNION ALL SELECT s + 1 FROM n WHERE s < 3) \
             SELECT e.payload FROM n JOIN main.events AS e ON e.seq = n.s",
            through_view("events"),
        ),
        (
            "SELECT c.name, n.text FROM contacts AS c JOIN views.notes AS n ON 1",
            through_view("notes"),
        ),
        (
            "SELECT name FROM contacts UNION SELECT text FROM views.notes",
            through_view("notes"),
        ),
        (
            "SELECT (SELECT scope FROM main.events WHERE seq = 1)",
            through_view("events"),
        ),
        (
            "SELECT * FROM traces",
            "views.traces is not readable by a scope-limited reader: counts and spans".into(),
        ),
        ("SELECT * FROM meta", "views.meta is not readable".into()),
        (
            // FTS5 reads its config table first while connecting, and that is refused.
            "SELECT * FROM docs_fts WHERE docs_fts MATCH 'tea'",
            "the full-text index's rows carry no scope".into(),
        ),
        (
            "SELECT * FROM docs_fts_content",
            "views.docs_fts_content is not readable".into(),
        ),
        (
            "SELECT * FROM sqlite_temp_master",
            "temp.sqlite_temp_master is not readable".into(),
        ),
        (
            "SELECT sql FROM temp.sqlite_master",
            "temp.sqlite_temp_master is not readable".into(),
        ),
        (
            "SELECT * FROM dbstat",
            "main.dbstat is not classified".into(),
        ),
        // No column used: reported as a read of column "" with no accessor.
        (
            "SELECT count(*) FROM traces",
            "views.traces is not readable".into(),
        ),
        (
            "SELECT count(*) FROM views.contacts",
            through_view("contacts"),
        ),
        (
            "WITH c AS (SELECT 1 FROM views.contacts) SELECT count(*) FROM c",
            through_view("contacts"),
        ),
        (
            "SELECT count(*) FROM (SELECT 1 FROM main.events)",
            through_view("events"),
        ),
        (
            "SELECT count(*) FROM sqlite_temp_master",
            "temp.sqlite_temp_master is not readable".into(),
        ),
        (
            "SELECT count(*) FROM dbstat",
            "main.dbstat is not classified".into(),
        ),
        (
            "SELECT name FROM pragma_table_list",
            "main.pragma_table_list is not classified".into(),
        ),
    ];
    for (sql, expect) in cases {
        let reason = refusal(&r, sql);
        assert!(reason.starts_with("scoped read: "), "{sql}: {reason}");
        assert!(
            reason.contains(&expect),
            "{sql}: {reason:?} lacks {expect:?}"
        );
    }
    // The reads themselves are still read-only, scoped or not.
    assert!(
        r.query_scoped("DELETE FROM contacts", &[], &scopes(&["work"]))
            .is_err()
    );
    for sql in [
        "DELETE FROM views.contacts",
        "DROP VIEW contacts",
        "CREATE TEMP VIEW contacts2 AS SELECT 1",
        "PRAGMA query_only = 0",
    ] {
        let reason = refusal(&r, sql);
        assert!(
            reason.starts_with("only reads are allowed"),
            "{sql}: {reason}"
        );
    }
    // The base tables of the view file are not in `main`.
    assert!(matches!(
        r.query_scoped("SELECT * FROM main.contacts", &[], &scopes(&["work"])),
        Err(QueryError::Prepare(_))
    ));
    // Nothing leaked into the pool: an unrestricted read still sees every row.
    assert_eq!(
        column(&r, "SELECT count(*) FROM contacts", None),
        [json!(3)]
    );
    assert_eq!(
        column(&r, "SELECT count(*) FROM main.events", None),
        [json!(10)]
    );
}
