//! Crash safety: a real child process writing batches is killed with SIGKILL mid-batch;
//! the reopened log verifies, and every batch is either fully present or absent.
//!
//! The child is this same test binary re-executed with `POG_CRASH_CHILD_DIR` set, running
//! `crash_child_writer` (which does nothing when the variable is absent).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use runloop_pog::{ActorName, EventKind, IdempotencyKey, NewEvent, Scope, Store, verify};
use serde_json::json;

const CHILD_ENV: &str = "POG_CRASH_CHILD_DIR";
const BATCH_EVENTS: usize = 300;
const CHILD_BATCHES_MAX: usize = 10_000;
/// Batches the parent lets complete before killing the child during the next one.
const BATCHES_BEFORE_KILL: usize = 3;

fn batch(n: usize) -> Vec<NewEvent> {
    (0..BATCH_EVENTS)
        .map(|i| {
            let payload = json!({"note_id": format!("b{n}-{i}"), "text": "crash test ".repeat(20)});
            let key = IdempotencyKey::new(&format!("b{n}-{i}")).unwrap();
            NewEvent::new(
                EventKind::NoteAdded,
                ActorName::new("crash").unwrap(),
                Scope::default_scope(),
                payload,
                prov(),
                Some(key),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut s = open(std::path::Path::new(&dir));
    let mut out = std::io::stdout();
    for n in 0..CHILD_BATCHES_MAX {
        writeln!(out, "begin {n}").unwrap();
        out.flush().unwrap();
        s.write_batch(batch(n)).unwrap();
        writeln!(out, "done {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_batch_leaves_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut killed_during = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line
            .strip_prefix("begin ")
            .and_then(|n| n.parse::<usize>().ok())
            && n >= BATCHES_BEFORE_KILL
        {
            child.kill().unwrap(); // SIGKILL on Unix.
            killed_during = Some(n);
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child must have been killed");
    let n = killed_during.expect("child started a batch");

    let r = verify(&runloop_pog::PogConfig::in_dir(dir.path())).unwrap();
    assert!(r.ok(), "{r:?}");
    let s = open(dir.path());
    let reads = s.reads();
    for b in 0..=n + 1 {
        let count = reads
            .query(
                "SELECT count(*) FROM events WHERE idempotency_key LIKE ?1",
                &[json!(format!("b{b}-%"))],
            )
            .unwrap()
            .rows[0][0]
            .as_u64()
            .unwrap();
        let expect_full = b < n;
        assert!(
            count == 0 || count == BATCH_EVENTS as u64,
            "batch {b} is partial: {count}"
        );
        if expect_full {
            assert_eq!(
                count, BATCH_EVENTS as u64,
                "batch {b} finished before the kill"
            );
        }
    }
    assert_eq!(s.head().seq % BATCH_EVENTS as u64, 0);
    // Views caught up on open and equal a rebuild from the log.
    let views = dump_views(&s);
    let cfg = s.config().clone();
    drop((reads, s));
    Store::rebuild(&cfg).unwrap();
    assert_eq!(dump_views(&open(dir.path())), views);
}
