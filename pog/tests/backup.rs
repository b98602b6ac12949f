//! Online backup while a writer keeps writing, and restore with its guards.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use common::*;
use runloop_pog::{BackupError, PogConfig, RestoreError, backup, restore, verify};

#[test]
fn backup_is_consistent_while_writes_go_on_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(
        (0..500)
            .map(|i| note(&format!("pre{i}"), "before"))
            .collect(),
    )
    .unwrap();
    let cfg = s.config().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let writer = {
        let (stop, started) = (stop.clone(), started.clone());
        std::thread::spawn(move || {
            started.wait();
            let mut n = 0;
            // Bounded: at most 2000 batches, or until the backups are done.
            while !stop.load(Ordering::SeqCst) && n < 2_000 {
                s.write_batch(
                    (0..10)
                        .map(|i| note(&format!("live{n}-{i}"), "during"))
                        .collect(),
                )
                .unwrap();
                n += 1;
            }
            s
        })
    };
    started.wait();
    let mut heads = Vec::new();
    for i in 0..3 {
        let dest = dir.path().join(format!("bk{i}"));
        let r = backup(&cfg, &dest).unwrap();
        assert!(r.verify.ok(), "{:?}", r.verify);
        heads.push(r.verify.head_seq);
    }
    stop.store(true, Ordering::SeqCst);
    let s = writer.join().unwrap();
    assert!(
        heads.iter().all(|h| *h >= 500 && h % 10 == 0),
        "each copy holds whole batches: {heads:?}"
    );
    drop(s);

    // Restore the last backup into a fresh dir; views catch up and match a rebuild.
    let target = PogConfig::in_dir(dir.path().join("restored"));
    let rr = restore(&dir.path().join("bk2"), &target, false).unwrap();
    assert_eq!(rr.events, heads[2]);
    let restored = open(&target.root_dir);
    assert_eq!(restored.head().seq, heads[2]);
    let views = dump_views(&restored);
    drop(restored);
    runloop_pog::Store::rebuild(&target).unwrap();
    assert_eq!(dump_views(&open(&target.root_dir)), views);

    // Guards: a non-empty target needs --force; a non-empty backup dir is refused.
    let err = restore(&dir.path().join("bk0"), &target, false).unwrap_err();
    assert!(matches!(err, RestoreError::TargetNotEmpty { .. }), "{err}");
    restore(&dir.path().join("bk0"), &target, true).unwrap();
    assert_eq!(verify(&target).unwrap().head_seq, heads[0]);
    assert!(matches!(
        backup(&cfg, &dir.path().join("bk0")),
        Err(BackupError::DestinationNotEmpty(_))
    ));
}

#[test]
fn a_tampered_backup_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch((0..5).map(|i| note(&format!("n{i}"), "x")).collect())
        .unwrap();
    let cfg = s.config().clone();
    drop(s);
    let bk = dir.path().join("bk");
    backup(&cfg, &bk).unwrap();
    let c = rusqlite::Connection::open(bk.join("events.sqlite")).unwrap();
    c.execute_batch("DROP TRIGGER events_no_update; UPDATE events SET ts_ms = 1 WHERE seq = 2;")
        .unwrap();
    drop(c);
    let err = restore(&bk, &PogConfig::in_dir(dir.path().join("t")), false).unwrap_err();
    assert!(matches!(err, RestoreError::Corrupt { seq: 2, .. }), "{err}");
    assert!(matches!(
        restore(&dir.path().join("none"), &cfg, true),
        Err(RestoreError::Missing(_))
    ));
}
