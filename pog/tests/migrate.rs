//! Schema migrations: a store created at every earlier version upgrades to the current one
//! with its events intact and its views re-projected.

mod common;

use std::sync::Arc;

use common::*;
use runloop_pog::migrate::{self, DbFile, EVENTS_VERSION, VIEWS_VERSION};
use runloop_pog::{OpenError, PogConfig, Store, SystemClock, verify};

/// Builds a store, then rewinds each file to an earlier schema by recreating it at that
/// version with the same rows (events keep their hashes: the schema does not change them).
fn store_at(
    ev_version: u32,
    views_version: u32,
) -> (tempfile::TempDir, PogConfig, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.write_batch(vec![contact("ada", "Ada"), note("n1", "engine notes")])
        .unwrap();
    let views = dump_views(&s);
    let cfg = s.config().clone();
    drop(s);
    let old = dir.path().join("old.sqlite");
    let c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    c.execute("VACUUM INTO ?1", [old.display().to_string()])
        .unwrap();
    drop(c);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", cfg.events_path().display()));
    }
    let mut c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    migrate::migrate_to(&mut c, DbFile::Events, ev_version).unwrap();
    if ev_version >= 1 {
        c.execute("ATTACH DATABASE ?1 AS old", [old.display().to_string()])
            .unwrap();
        c.execute_batch("INSERT INTO main.events SELECT * FROM old.events; DETACH DATABASE old;")
            .unwrap();
    }
    drop(c);
    std::fs::remove_file(cfg.view_path()).unwrap();
    let mut v = rusqlite::Connection::open(cfg.view_path()).unwrap();
    migrate::migrate_to(&mut v, DbFile::Views, views_version).unwrap();
    (dir, cfg, views)
}

#[test]
fn upgrades_from_every_earlier_version() {
    for ev in 1..=EVENTS_VERSION {
        for vv in 0..=VIEWS_VERSION {
            let (_dir, cfg, views_before) = store_at(ev, vv);
            let stale = ev < EVENTS_VERSION || (vv > 0 && vv < VIEWS_VERSION);
            let opened = Store::open(&cfg, Arc::new(SystemClock));
            if stale {
                assert!(
                    matches!(opened, Err(OpenError::NeedsMigration { .. })),
                    "ev {ev} views {vv}: {opened:?}"
                );
                drop(opened);
                let (ev_from, v_from) = Store::migrate(&cfg).unwrap();
                assert_eq!((ev_from, v_from), (ev, vv));
            } else {
                drop(opened);
            }
            let s = Store::open(&cfg, Arc::new(SystemClock)).unwrap();
            assert_eq!(s.head().seq, 2, "ev {ev} views {vv}");
            assert_eq!(dump_views(&s), views_before, "ev {ev} views {vv}");
            drop(s);
            assert!(verify(&cfg).unwrap().ok());
        }
    }
}

#[test]
fn a_fresh_file_migrates_from_zero_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PogConfig::in_dir(dir.path());
    assert_eq!(Store::migrate(&cfg).unwrap(), (0, 0));
    assert_eq!(
        Store::migrate(&cfg).unwrap(),
        (EVENTS_VERSION, VIEWS_VERSION)
    );
    let c = rusqlite::Connection::open(cfg.events_path()).unwrap();
    c.pragma_update(None, "user_version", EVENTS_VERSION + 1)
        .unwrap();
    drop(c);
    let err = Store::open(&cfg, Arc::new(SystemClock)).unwrap_err();
    assert!(
        err.to_string().contains("newer than this build supports"),
        "{err}"
    );
}
