//! Tamper detection: edit, delete or reorder rows in the real file; `verify` names the first bad seq.

mod common;

use common::*;
use runloop_pog::{PogConfig, verify};

fn store_with(n: usize) -> (tempfile::TempDir, PogConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(
        (0..n)
            .map(|i| note(&format!("n{i}"), &format!("text {i}")))
            .collect(),
    )
    .unwrap();
    let cfg = s.config().clone();
    drop(s);
    (dir, cfg)
}

/// Opens the log as an attacker would: drop the append-only triggers, then run `sql`.
fn tamper(cfg: &PogConfig, sql: &str) {
    let c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    c.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
        .unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn intact_log_verifies() {
    let (_d, cfg) = store_with(10);
    let r = verify(&cfg).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        (r.events_checked, r.head_seq, r.views_applied_seq),
        (10, 10, Some(10))
    );
}

#[test]
fn triggers_block_plain_updates() {
    let (_d, cfg) = store_with(2);
    let c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    let err = c
        .execute("UPDATE events SET actor = 'x' WHERE seq = 1", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(c.execute("DELETE FROM events WHERE seq = 1", []).is_err());
}

#[test]
fn edited_payload_is_named() {
    let (_d, cfg) = store_with(10);
    tamper(
        &cfg,
        r#"UPDATE events SET payload = '{"note_id":"n4","text":"forged"}' WHERE seq = 5"#,
    );
    let bad = verify(&cfg).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 5);
    assert!(bad.reason.contains("hash does not match"), "{}", bad.reason);
}

#[test]
fn non_canonical_edit_is_named() {
    let (_d, cfg) = store_with(10);
    tamper(
        &cfg,
        r#"UPDATE events SET payload = '{"text":"text 2","note_id":"n2"}' WHERE seq = 3"#,
    );
    let bad = verify(&cfg).unwrap().first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.reason.as_str()),
        (3, "payload is not canonical JSON")
    );
}

#[test]
fn edited_metadata_and_rehashed_row_is_caught_by_the_next_link() {
    let (_d, cfg) = store_with(10);
    // The attacker also rewrites the hash of seq 4 (random bytes): seq 4 fails its own check.
    tamper(
        &cfg,
        "UPDATE events SET actor = 'mallory', hash = randomblob(32) WHERE seq = 4",
    );
    assert_eq!(verify(&cfg).unwrap().first_bad.unwrap().seq, 4);
}

#[test]
fn deleted_row_is_named() {
    let (_d, cfg) = store_with(10);
    tamper(&cfg, "DELETE FROM events WHERE seq = 7");
    let bad = verify(&cfg).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 7);
    assert!(bad.reason.contains("missing"), "{}", bad.reason);
}

#[test]
fn deleted_tail_is_caught_by_the_view_watermark() {
    let (_d, cfg) = store_with(10);
    tamper(&cfg, "DELETE FROM events WHERE seq >= 9");
    let bad = verify(&cfg).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 9);
    assert!(
        bad.reason.contains("removed from the end"),
        "{}",
        bad.reason
    );
}

#[test]
fn reordered_rows_are_named() {
    let (_d, cfg) = store_with(10);
    // Swap rows 3 and 6 by moving them through a free seq.
    tamper(
        &cfg,
        "UPDATE events SET seq = 100 WHERE seq = 3; UPDATE events SET seq = 3 WHERE seq = 6; UPDATE events SET seq = 6 WHERE seq = 100;",
    );
    let bad = verify(&cfg).unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 3);
    assert!(bad.reason.contains("prev_hash"), "{}", bad.reason);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Tamper {
        EditText,
        EditTs,
        Delete,
        SwapWithNext,
    }

    fn apply(cfg: &PogConfig, t: Tamper, k: u64) {
        let sql = match t {
            Tamper::EditText => format!(
                r#"UPDATE events SET payload = '{{"note_id":"n{}","text":"forged"}}' WHERE seq = {k}"#,
                k - 1
            ),
            Tamper::EditTs => format!("UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = {k}"),
            Tamper::Delete => format!("DELETE FROM events WHERE seq = {k}"),
            Tamper::SwapWithNext => format!(
                "UPDATE events SET seq = -1 WHERE seq = {k}; UPDATE events SET seq = {k} WHERE seq = {n}; UPDATE events SET seq = {n} WHERE seq = -1;",
                n = k + 1
            ),
        };
        tamper(cfg, &sql);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Whatever row is edited, deleted or swapped, verify names exactly that seq.
        #[test]
        fn verify_names_the_tampered_seq(n in 2usize..20, pick in 0usize..1000, t in 0usize..4) {
            let t = [Tamper::EditText, Tamper::EditTs, Tamper::Delete, Tamper::SwapWithNext][t];
            let max = if matches!(t, Tamper::SwapWithNext) { n - 1 } else { n };
            let k = (pick % max) as u64 + 1;
            let (_d, cfg) = store_with(n);
            prop_assert!(verify(&cfg).unwrap().ok());
            apply(&cfg, t, k);
            let bad = verify(&cfg).unwrap().first_bad;
            prop_assert_eq!(bad.map(|b| b.seq), Some(k), "{:?} at {} of {}", t, k, n);
        }
    }
}
