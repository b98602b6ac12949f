//! `kb.query` read-only enforcement: every write form is refused by SQLite (authorizer,
//! read-only statement check, read-only connection), and the data is unchanged after.

mod common;

use common::*;
use std::time::{Duration, Instant};

use runloop_pog::QueryError;
use runloop_pog::QueryLimits;
use runloop_pog::read::{QUERY_RESULT_BYTES_MAX, QUERY_TIME_MS_MAX, QUERY_VALUE_BYTES_MAX};
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
fn runaway_queries_are_interrupted_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // An unbounded recursive CTE runs until the time budget interrupts it.
    let sql =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
    let limits = QueryLimits::with_time_ms(200).unwrap();
    let started = Instant::now();
    let err = s.reads().query_within(sql, &[], limits).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, QueryError::TimeLimit { limit_ms: 200 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "exceeded the 200 ms query limit");
    assert!(
        took >= Duration::from_millis(200),
        "stopped early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "interrupted late: {took:?}"
    );
    // The default budget is the host call's, and says so in seconds.
    assert_eq!(QueryLimits::default().time_ms(), QUERY_TIME_MS_MAX);
    assert_eq!(
        QueryError::TimeLimit {
            limit_ms: QUERY_TIME_MS_MAX
        }
        .to_string(),
        "exceeded the 5 s query limit"
    );
    assert!(QueryLimits::with_time_ms(0).is_none());
    assert!(QueryLimits::with_time_ms(QUERY_TIME_MS_MAX + 1).is_none());
    // The connection is usable again afterwards.
    assert_eq!(
        s.reads().query("SELECT 1", &[]).unwrap().rows,
        vec![vec![json!(1)]]
    );
}

/// Peak resident set of this test process, from /proc.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn huge_values_and_results_are_refused_promptly_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let r = s.reads();
    for sql in [
        "SELECT randomblob(1000000000)",
        "SELECT randomblob(300000000)",
        "SELECT zeroblob(100000000)",
        "SELECT length(randomblob(9000000))",
        "SELECT printf('%.*c', 100000000, 'x')",
    ] {
        let started = Instant::now();
        let err = r.query(sql, &[]).unwrap_err();
        assert!(matches!(err, QueryError::ValueTooLarge), "{sql}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!("value exceeds SQLITE_LIMIT_LENGTH {QUERY_VALUE_BYTES_MAX} bytes")
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{sql} took {:?}",
            started.elapsed()
        );
    }
    // Values under the length limit, but too many bytes together.
    let err = r
        .query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT randomblob(1000000) FROM n",
            &[],
        )
        .unwrap_err();
    assert!(matches!(err, QueryError::ResultTooLarge), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("result exceeds {QUERY_RESULT_BYTES_MAX} bytes")
    );
    // Stored events still read whole: the largest payload is far below the length limit.
    assert_eq!(
        r.query("SELECT length(randomblob(2000000))", &[])
            .unwrap()
            .rows,
        vec![vec![json!(2_000_000)]]
    );
    let peak = peak_rss_bytes();
    assert!(peak < 200 * 1024 * 1024, "peak RSS {peak} bytes");
}
