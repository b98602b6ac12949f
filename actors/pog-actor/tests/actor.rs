//! The POG actor against real files: group commit of concurrent writes, reads through the
//! pool, singleton naming, backup while writing, and a restart that picks up the log.

use std::sync::Arc;

use ractor::{ActorRef, call_t};
use runloop_pog::{
    ActorName, EntityRef, EventKind, IdempotencyKey, ManualClock, NewEvent, PogConfig, Provenance,
    Scope, SearchQuery,
};
use runloop_pog_actor::{POG_ACTOR_NAME, PogActor, PogArgs, PogMsg};
use serde_json::json;

const CALL_TIMEOUT_MS: u64 = 10_000;

fn prov() -> Provenance {
    Provenance::from_json(&json!({"trace_id": "0123456789abcdef0123456789abcdef", "opening_id": "t", "agent": "a", "inputs_hash": "ab".repeat(32)})).unwrap()
}

fn note(id: &str, key: Option<&str>) -> NewEvent {
    NewEvent::new(
        EventKind::NoteAdded,
        ActorName::new("agent:writer").unwrap(),
        Scope::default_scope(),
        json!({"note_id": id, "text": format!("note {id} about engines")}),
        prov(),
        key.map(|k| IdempotencyKey::new(k).unwrap()),
    )
    .unwrap()
}

fn args(dir: &std::path::Path) -> PogArgs {
    PogArgs {
        config: PogConfig::in_dir(dir),
        clock: Arc::new(ManualClock::new(1_000)),
        read_conns: 2,
        later_flush_ms: runloop_pog_actor::LATER_FLUSH_MS,
    }
}

async fn spawn(
    dir: &std::path::Path,
    name: Option<&str>,
) -> (ActorRef<PogMsg>, tokio::task::JoinHandle<()>) {
    ractor::Actor::spawn(name.map(str::to_owned), PogActor, args(dir))
        .await
        .unwrap()
}

/// An actor whose `WriteLater` writes wait at most `later_flush_ms` for a commit.
async fn spawn_later(
    dir: &std::path::Path,
    later_flush_ms: u64,
) -> (ActorRef<PogMsg>, tokio::task::JoinHandle<()>) {
    let args = PogArgs {
        later_flush_ms,
        ..args(dir)
    };
    ractor::Actor::spawn(None, PogActor, args).await.unwrap()
}

type Answer = ractor::concurrency::OneshotReceiver<
    Result<Vec<runloop_pog::Written>, runloop_pog::WriteError>,
>;

fn write_later(pog: &ActorRef<PogMsg>, id: &str) -> Answer {
    let (tx, rx) = ractor::concurrency::oneshot();
    pog.send_message(PogMsg::WriteLater(vec![note(id, None)], tx.into()))
        .unwrap();
    rx
}

async fn commits(pog: &ActorRef<PogMsg>) -> (u64, u64) {
    let s = call_t!(pog, PogMsg::Stats, CALL_TIMEOUT_MS).unwrap();
    (s.commits, s.head_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_writes_ride_the_next_commit_asked_for_in_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn_later(dir.path(), 60_000).await;
    let later: Vec<Answer> = (0..3)
        .map(|i| write_later(&pog, &format!("l{i}")))
        .collect();
    // Nobody asked for a commit (and the longest wait is a minute here): none is made.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(commits(&pog).await, (0, 0));
    let now = call_t!(pog, PogMsg::Write, CALL_TIMEOUT_MS, vec![note("now", None)])
        .unwrap()
        .unwrap();
    assert_eq!(now[0].event.seq, 4, "after the three written before it");
    for (i, rx) in later.into_iter().enumerate() {
        let w = rx.await.unwrap().unwrap();
        assert_eq!(w[0].event.seq, i as u64 + 1);
    }
    assert_eq!(commits(&pog).await, (1, 4), "all four in one commit");
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_write_alone_waits_its_bound_a_flush_or_the_stop_and_no_longer() {
    // Alone, it is committed once its longest wait is over.
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn_later(dir.path(), 300).await;
    let started = std::time::Instant::now();
    let w = write_later(&pog, "alone").await.unwrap().unwrap();
    let waited = started.elapsed();
    assert_eq!(w[0].event.seq, 1);
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    assert_eq!(commits(&pog).await, (1, 1));
    pog.stop(None);
    handle.await.unwrap();

    // A `Flush` commits it now, long before its bound.
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn_later(dir.path(), 60_000).await;
    let rx = write_later(&pog, "flushed");
    pog.cast(PogMsg::Flush).unwrap();
    let w = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
        .await
        .expect("committed at the flush, not after a minute")
        .unwrap()
        .unwrap();
    assert_eq!(w[0].event.seq, 1);

    // A stop commits what is still waiting: nothing taken is lost.
    let rx = write_later(&pog, "at stop");
    assert_eq!(
        commits(&pog).await,
        (1, 1),
        "taken (the mailbox is in order), waiting"
    );
    pog.stop(None);
    handle.await.unwrap();
    let w = rx.await.unwrap().unwrap();
    assert_eq!(w[0].event.seq, 2);
    let (pog, handle) = spawn_later(dir.path(), 60_000).await;
    assert_eq!(
        commits(&pog).await.1,
        2,
        "the log holds both after a restart"
    );
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn(dir.path(), None).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let pog = pog.clone();
        tasks.push(tokio::spawn(async move {
            call_t!(
                pog,
                PogMsg::Write,
                CALL_TIMEOUT_MS,
                vec![note(&format!("n{i}"), None)]
            )
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let w = t.await.unwrap().unwrap().unwrap();
        seqs.push(w[0].event.seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let stats = call_t!(pog, PogMsg::Stats, CALL_TIMEOUT_MS).unwrap();
    assert_eq!((stats.writes, stats.head_seq), (200, 200));
    assert!(stats.commits < 200, "writes were batched: {stats:?}");
    assert!(stats.max_requests_per_commit > 1, "{stats:?}");
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_through_the_pool_and_errors_come_back_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn(dir.path(), None).await;
    let w = call_t!(
        pog,
        PogMsg::Write,
        CALL_TIMEOUT_MS,
        vec![note("a", Some("k")), note("b", None)]
    )
    .unwrap()
    .unwrap();
    assert_eq!(w.len(), 2);
    let again = call_t!(
        pog,
        PogMsg::Write,
        CALL_TIMEOUT_MS,
        vec![note("a", Some("k"))]
    )
    .unwrap()
    .unwrap();
    assert!(again[0].duplicate);
    let q = call_t!(
        pog,
        PogMsg::Query,
        CALL_TIMEOUT_MS,
        "SELECT count(*) FROM notes".to_owned(),
        vec![],
        None
    )
    .unwrap()
    .unwrap();
    assert_eq!(q.rows[0][0], json!(2));
    // A scoped query sees only rows of its scopes (both notes are in `default`).
    for (scope, count) in [("default", 2), ("work", 0)] {
        let q = call_t!(
            pog,
            PogMsg::Query,
            CALL_TIMEOUT_MS,
            "SELECT count(*) FROM notes".to_owned(),
            vec![],
            Some(vec![Scope::new(scope).unwrap()])
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.rows[0][0], json!(count), "{scope}");
    }
    let refused = call_t!(
        pog,
        PogMsg::Query,
        CALL_TIMEOUT_MS,
        "DELETE FROM notes".to_owned(),
        vec![],
        None
    )
    .unwrap();
    assert!(refused.unwrap_err().to_string().starts_with("refused"));
    let hits = call_t!(
        pog,
        PogMsg::Search,
        CALL_TIMEOUT_MS,
        SearchQuery {
            text: "engines".into(),
            limit: 5,
            ..Default::default()
        }
    )
    .unwrap()
    .unwrap();
    assert_eq!(hits.len(), 2);
    let why = call_t!(
        pog,
        PogMsg::Why,
        CALL_TIMEOUT_MS,
        EntityRef::parse("note:a").unwrap(),
        None
    )
    .unwrap()
    .unwrap();
    assert_eq!(why.direct[0].seq, 1);
    let verify = call_t!(pog, PogMsg::Verify, CALL_TIMEOUT_MS)
        .unwrap()
        .unwrap();
    assert!(verify.ok());
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_singleton_name_is_taken_once_and_a_restart_resumes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = PogActor::spawn_singleton(args(dir.path())).await.unwrap();
    assert!(ractor::registry::where_is(POG_ACTOR_NAME).is_some());
    assert!(
        PogActor::spawn_singleton(args(dir.path())).await.is_err(),
        "a second singleton must not start"
    );
    call_t!(pog, PogMsg::Write, CALL_TIMEOUT_MS, vec![note("x", None)])
        .unwrap()
        .unwrap();
    pog.stop(None);
    handle.await.unwrap();
    let (pog, handle) = spawn(dir.path(), None).await;
    let w = call_t!(pog, PogMsg::Write, CALL_TIMEOUT_MS, vec![note("y", None)])
        .unwrap()
        .unwrap();
    assert_eq!(w[0].event.seq, 2);
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_runs_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn(dir.path(), None).await;
    let writer = {
        let pog = pog.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                call_t!(
                    pog,
                    PogMsg::Write,
                    CALL_TIMEOUT_MS,
                    vec![note(&format!("w{i}"), None)]
                )
                .unwrap()
                .unwrap();
            }
        })
    };
    let dest = dir.path().join("bk");
    let report = call_t!(pog, PogMsg::Backup, CALL_TIMEOUT_MS, dest.clone())
        .unwrap()
        .unwrap();
    assert!(report.verify.ok());
    writer.await.unwrap();
    assert!(report.verify.head_seq <= 300);
    assert!(dest.join("manifest.json").exists());
    pog.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_store_fails_the_spawn() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.sqlite"),
        b"this is not a database, just text that is long enough to be a header..........",
    )
    .unwrap();
    assert!(
        ractor::Actor::spawn(None, PogActor, args(dir.path()))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_answers_once_everything_taken_before_it_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (pog, handle) = spawn_later(dir.path(), 60_000).await;
    // Nothing held: answered at once.
    call_t!(pog, PogMsg::Sync, CALL_TIMEOUT_MS).unwrap();
    assert_eq!(commits(&pog).await, (0, 0));
    // Later writes held (for up to a minute here): a sync commits them before it answers.
    let later: Vec<Answer> = (0..3)
        .map(|i| write_later(&pog, &format!("s{i}")))
        .collect();
    call_t!(pog, PogMsg::Sync, CALL_TIMEOUT_MS).unwrap();
    assert_eq!(commits(&pog).await, (1, 3));
    for rx in later {
        rx.await.unwrap().unwrap();
    }
    // Taken while a commit is in flight: answered after the commit that holds them.
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let pog = pog.clone();
            tokio::spawn(async move {
                call_t!(
                    pog,
                    PogMsg::Write,
                    CALL_TIMEOUT_MS,
                    vec![note(&format!("w{i}"), None)]
                )
            })
        })
        .collect();
    let rx = write_later(&pog, "last");
    call_t!(pog, PogMsg::Sync, CALL_TIMEOUT_MS).unwrap();
    let head = commits(&pog).await.1;
    let last = rx.await.unwrap().unwrap();
    assert!(
        last[0].event.seq <= head,
        "{} after the sync at {head}",
        last[0].event.seq
    );
    for w in writers {
        w.await.unwrap().unwrap().unwrap();
    }
    pog.stop(None);
    handle.await.unwrap();
}
