//! `kb.query` read-only enforcement: every write form is refused by SQLite (authorizer,
//! read-only statement check, read-only connection), and the data is unchanged after.

mod common;

use common::*;
use runloop_pog::QueryError;
use serde_json::json;

#[test]
fn every_write_form_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write(contact("ada", "Ada")).unwrap();
    let r = s.reads();
    let attach_target = dir.path().join("evil.sqlite");
    let forms = [
        "INSERT INTO events(seq) VALUES (99)".to_owned(),
        "INSERT INTO contacts(contact_id, name, created_seq, updated_seq) VALUES ('x', 'x', 1, 1)".into(),
        "UPDATE contacts SET name = 'Mallory'".into(),
        "UPDATE views.contacts SET name = 'Mallory'".into(),
        "DELETE FROM events".into(),
        "DELETE FROM contacts".into(),
        "DROP TABLE contacts".into(),
        "DROP TABLE events".into(),
        "CREATE TABLE t(x)".into(),
        "CREATE TEMP TABLE t(x)".into(),
        "ALTER TABLE contacts ADD COLUMN x".into(),
        format!("ATTACH DATABASE '{}' AS evil", attach_target.display()),
        "DETACH DATABASE views".into(),
        "PRAGMA query_only = 0".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA user_version = 7".into(),
        "PRAGMA writable_schema = 1".into(),
        "WITH x AS (SELECT 1) DELETE FROM contacts".into(),
        "WITH x AS (SELECT 1) INSERT INTO contacts SELECT * FROM contacts".into(),
        "REPLACE INTO contacts(contact_id, name, created_seq, updated_seq) VALUES ('ada', 'M', 1, 1)".into(),
        "VACUUM".into(),
        "REINDEX".into(),
        "ANALYZE".into(),
        "BEGIN IMMEDIATE".into(),
        "SELECT load_extension('/tmp/x.so')".into(),
        "SELECT 1; DELETE FROM contacts".into(),
    ];
    for sql in &forms {
        match r.query(sql, &[]) {
            Err(QueryError::Refused { .. }) => {}
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
    assert!(!attach_target.exists());
    let rows = r.query("SELECT name FROM contacts", &[]).unwrap().rows;
    assert_eq!(rows, vec![vec![json!("Ada")]]);
    assert_eq!(s.head().seq, 1);
}

#[test]
fn reads_work_with_params_ctes_and_introspection() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(vec![contact("ada", "Ada"), contact("bob", "Bob")])
        .unwrap();
    let r = s.reads();
    let q = r
        .query(
            "WITH c AS (SELECT * FROM contacts WHERE name = ?1) SELECT contact_id FROM c",
            &[json!("Bob")],
        )
        .unwrap();
    assert_eq!(q.rows, vec![vec![json!("bob")]]);
    let q = r
        .query("SELECT seq, hex(hash) FROM events ORDER BY seq", &[])
        .unwrap();
    assert_eq!(q.rows.len(), 2);
    assert!(
        r.query("PRAGMA table_info(contacts)", &[])
            .unwrap()
            .rows
            .len()
            > 3
    );
    assert!(matches!(
        r.query("SELEC nope", &[]),
        Err(QueryError::Prepare(_))
    ));
    assert!(matches!(
        r.query("  ", &[]),
        Err(QueryError::SqlSize { .. })
    ));
}

#[test]
fn runaway_queries_are_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // An unbounded recursive CTE runs until the time budget interrupts it.
    let err = s.reads().query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n", &[]).unwrap_err();
    assert!(matches!(err, QueryError::Run(_)), "{err:?}");
}
