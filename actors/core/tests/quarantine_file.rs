//! The quarantine file: real files in a temporary state directory, a real quarantine actor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ractor::Actor;
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::{
    Quarantine, QuarantineArgs, QuarantineError, QuarantineFileError, QuarantineHandle,
    QuarantineReason, QuarantineStore,
};
use runloop_proto::ManualClock;
use serde::Serialize;

const NOW_MS: u64 = 1_000_000;

async fn quarantine(store: QuarantineStore) -> QuarantineHandle {
    let args = QuarantineArgs {
        clock: Arc::new(ManualClock::new(NOW_MS)),
        store,
    };
    let (actor, _) = Actor::spawn(None, Quarantine, args).await.unwrap();
    QuarantineHandle::new(actor)
}

fn name(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}

fn crash_loop() -> QuarantineReason {
    QuarantineReason::CrashLoop {
        restarts: 4,
        period_ms: 5_000,
        last_error: "sandbox killed by SIGKILL".into(),
    }
}

fn file_in(dir: &Path) -> PathBuf {
    dir.join("state").join("quarantine.msgpack")
}

#[tokio::test]
async fn parked_agents_are_read_back_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path());
    let store = QuarantineStore::open(Some(path.clone())).unwrap();
    assert!(!path.exists(), "nothing parked, nothing written");
    let q = quarantine(store).await;
    let writer = q.park(&name("writer"), crash_loop()).await.unwrap();
    let malformed = QuarantineReason::MalformedFrame {
        error: "InvalidMagic".into(),
        detail: "first bytes were 'GET '".into(),
    };
    let critic = q.park(&name("critic"), malformed).await.unwrap();
    q.actor().stop(None);

    // A new process would open the same file: the same records, message included.
    let reopened = QuarantineStore::open(Some(path.clone())).unwrap();
    assert_eq!(reopened.file(), Some(path.clone()));
    let q = quarantine(reopened).await;
    assert_eq!(q.list().await.unwrap(), vec![critic, writer.clone()]);
    q.release(&name("critic")).await.unwrap();
    q.actor().stop(None);

    let q = quarantine(QuarantineStore::open(Some(path.clone())).unwrap()).await;
    assert_eq!(q.list().await.unwrap(), vec![writer]);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec!["quarantine.msgpack"],
        "no temporary file left"
    );
}

#[derive(Serialize)]
struct Record<'a> {
    agent: &'a str,
    reason: QuarantineReason,
    parked_at_ms: u64,
}

#[derive(Serialize)]
struct File<'a> {
    version: u32,
    records: Vec<Record<'a>>,
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn encoded(version: u32, agents: &[&str]) -> Vec<u8> {
    let records = agents
        .iter()
        .map(|agent| Record {
            agent,
            reason: crash_loop(),
            parked_at_ms: NOW_MS,
        })
        .collect();
    rmp_serde::to_vec_named(&File { version, records }).unwrap()
}

#[test]
fn a_bad_file_is_an_error_naming_it_not_an_empty_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path());
    let shown = path.display().to_string();
    write(&path, &encoded(1, &["writer"]));
    assert!(QuarantineStore::open(Some(path.clone())).is_ok());

    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"not messagepack at all".to_vec()),
        ("truncated", encoded(1, &["writer"])[..20].to_vec()),
        ("bad agent name", encoded(1, &["Writer!"])),
        ("listed twice", encoded(1, &["writer", "writer"])),
    ];
    for (case, bytes) in cases {
        write(&path, &bytes);
        let err = QuarantineStore::open(Some(path.clone())).unwrap_err();
        assert!(
            matches!(&err, QuarantineFileError::Corrupt { path: p, .. } if *p == path),
            "{case}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("quarantine file {shown} is corrupt (")),
            "{case}: {message}"
        );
        assert!(
            message.contains("restore the file or move it away"),
            "{case}"
        );
    }
    write(&path, &encoded(2, &["writer"]));
    let err = QuarantineStore::open(Some(path.clone())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("quarantine file {shown} has format version 2, this runloop reads 1")
    );
    // The state directory is a file: reading fails with the path and the OS error.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let inside = blocked.join("quarantine.msgpack");
    let err = QuarantineStore::open(Some(inside.clone())).unwrap_err();
    assert!(
        matches!(&err, QuarantineFileError::Read { path, .. } if *path == inside),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failed_write_keeps_the_agent_parked_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path());
    let q = quarantine(QuarantineStore::open(Some(path.clone())).unwrap()).await;
    let writer = q.park(&name("writer"), crash_loop()).await.unwrap();
    // The state directory turns into a file: no write can succeed now.
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path.parent().unwrap(), b"").unwrap();

    let err = q.park(&name("critic"), crash_loop()).await.unwrap_err();
    let QuarantineError::Persist { message } = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.starts_with(&format!(
            "write quarantine file {}: create its directory: ",
            path.display()
        )),
        "{message}"
    );
    // Refusing the agent is the safe side: parked in memory all the same.
    assert!(q.check(&name("critic")).await.unwrap().is_some());
    // A release that cannot be written is undone: it would not survive a restart.
    let err = q.release(&name("writer")).await.unwrap_err();
    assert!(matches!(err, QuarantineError::Persist { .. }), "{err:?}");
    assert_eq!(q.check(&name("writer")).await.unwrap(), Some(writer));
}
