//! Supervision tests: real ractor actors crashed on purpose, a manual clock for the
//! intensity window, tokio's paused clock for backoff. No sleeps.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runloop_actors::supervisor::{
    Backoff, ChildSpec, ChildState, Intensity, Restart, Strategy, SupervisorArgs, SupervisorConfig,
    SupervisorError, SupervisorMsg, SupervisorSnapshot, snapshot, spawn_root,
};
use runloop_proto::{Clock, ManualClock};
use tokio::sync::mpsc;

const EVENTS_MAX: usize = 64;
const START_WAIT_MS: u64 = 10_000;

#[derive(Debug)]
enum WorkerMsg {
    Crash,
    Exit,
}

type Started = (String, ActorRef<WorkerMsg>);

struct Worker {
    id: String,
    events: mpsc::Sender<Started>,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        self.events.send((self.id.clone(), myself)).await.unwrap();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Crash => Err("boom".into()),
            WorkerMsg::Exit => {
                myself.stop(None);
                Ok(())
            }
        }
    }
}

fn worker(id: &str, restart: Restart, events: &mpsc::Sender<Started>) -> ChildSpec {
    let events = events.clone();
    let id_owned = id.to_owned();
    ChildSpec::worker(id, restart, move || {
        (
            Worker {
                id: id_owned.clone(),
                events: events.clone(),
            },
            (),
        )
    })
}

struct Tree {
    root: ActorRef<SupervisorMsg>,
    events: mpsc::Receiver<Started>,
}

impl Tree {
    async fn next_start(&mut self) -> Started {
        // A bound so that a missing start fails the test instead of hanging it.
        let wait = Duration::from_millis(START_WAIT_MS);
        tokio::time::timeout(wait, self.events.recv())
            .await
            .expect("a start within the wait")
            .expect("a start event")
    }

    /// Waits for `ids` to start, in this order, and returns their refs.
    async fn expect_starts(&mut self, ids: &[&str]) -> Vec<ActorRef<WorkerMsg>> {
        let mut refs = Vec::new();
        for id in ids {
            let (got, actor) = self.next_start().await;
            assert_eq!(&got, id);
            refs.push(actor);
        }
        refs
    }

    async fn status(&self) -> SupervisorSnapshot {
        snapshot(&self.root, 5_000).await.expect("a snapshot")
    }

    /// A status round trip orders after every event sent before it; then nothing else
    /// may have started.
    async fn expect_no_more_starts(&mut self) {
        let _ = self.status().await;
        assert!(self.events.try_recv().is_err(), "unexpected start");
    }
}

async fn tree(
    config: SupervisorConfig,
    clock: Arc<dyn Clock>,
    specs: impl FnOnce(&mpsc::Sender<Started>) -> Vec<ChildSpec>,
) -> Tree {
    let (tx, rx) = mpsc::channel(EVENTS_MAX);
    let children = specs(&tx);
    let (root, _join) = spawn_root(SupervisorArgs {
        name: "root".into(),
        config,
        clock,
        children,
        on_give_up: None,
    })
    .await
    .unwrap();
    Tree { root, events: rx }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_000_000))
}

fn abc(restart: Restart) -> impl FnOnce(&mpsc::Sender<Started>) -> Vec<ChildSpec> {
    move |tx| {
        vec![
            worker("a", restart, tx),
            worker("b", restart, tx),
            worker("c", restart, tx),
        ]
    }
}

fn restarts(snap: &SupervisorSnapshot) -> Vec<(String, u32)> {
    snap.children
        .iter()
        .map(|c| (c.id.clone(), c.restarts))
        .collect()
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let mut t = tree(
        SupervisorConfig::new(Strategy::OneForOne),
        clock(),
        abc(Restart::Permanent),
    )
    .await;
    let refs = t.expect_starts(&["a", "b", "c"]).await;
    refs[1].cast(WorkerMsg::Crash).unwrap();
    t.expect_starts(&["b"]).await;
    t.expect_no_more_starts().await;
    let snap = t.status().await;
    assert_eq!(
        restarts(&snap),
        [("a".into(), 0), ("b".into(), 1), ("c".into(), 0)]
    );
    assert_eq!(snap.children[1].last_error.as_deref(), Some("boom"));
    assert!(snap.children.iter().all(|c| c.state == ChildState::Running));
    t.root.stop(None);
}

#[tokio::test]
async fn one_for_all_restarts_every_child_in_start_order() {
    let mut t = tree(
        SupervisorConfig::new(Strategy::OneForAll),
        clock(),
        abc(Restart::Permanent),
    )
    .await;
    let refs = t.expect_starts(&["a", "b", "c"]).await;
    refs[1].cast(WorkerMsg::Crash).unwrap();
    t.expect_starts(&["a", "b", "c"]).await;
    t.expect_no_more_starts().await;
    let snap = t.status().await;
    assert_eq!(
        restarts(&snap),
        [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]
    );
    // The old siblings were stopped, not left running beside the new ones.
    assert!(refs[0].get_status() == ractor::ActorStatus::Stopped);
    assert!(refs[2].get_status() == ractor::ActorStatus::Stopped);
    t.root.stop(None);
}

#[tokio::test]
async fn rest_for_one_restarts_the_child_and_those_started_after_it() {
    let mut t = tree(
        SupervisorConfig::new(Strategy::RestForOne),
        clock(),
        abc(Restart::Permanent),
    )
    .await;
    let refs = t.expect_starts(&["a", "b", "c"]).await;
    refs[1].cast(WorkerMsg::Crash).unwrap();
    t.expect_starts(&["b", "c"]).await;
    t.expect_no_more_starts().await;
    assert_eq!(
        restarts(&t.status().await),
        [("a".into(), 0), ("b".into(), 1), ("c".into(), 1)]
    );
    assert_eq!(refs[0].get_status(), ractor::ActorStatus::Running);
    t.root.stop(None);
}

#[tokio::test]
async fn restart_types_decide_who_comes_back() {
    let mut t = tree(SupervisorConfig::new(Strategy::OneForOne), clock(), |tx| {
        vec![
            worker("perm", Restart::Permanent, tx),
            worker("trans", Restart::Transient, tx),
            worker("temp", Restart::Temporary, tx),
        ]
    })
    .await;
    let refs = t.expect_starts(&["perm", "trans", "temp"]).await;
    // A permanent child comes back even after a normal exit.
    refs[0].cast(WorkerMsg::Exit).unwrap();
    t.expect_starts(&["perm"]).await;
    // A transient child comes back after a failure ...
    refs[1].cast(WorkerMsg::Crash).unwrap();
    let trans = t.expect_starts(&["trans"]).await;
    // ... and after being killed ...
    trans[0].kill();
    let trans = t.expect_starts(&["trans"]).await;
    // ... but not after a normal exit.
    trans[0].cast(WorkerMsg::Exit).unwrap();
    // A temporary child never comes back and is forgotten.
    refs[2].cast(WorkerMsg::Crash).unwrap();
    t.expect_no_more_starts().await;
    let snap = t.status().await;
    let states: Vec<_> = snap
        .children
        .iter()
        .map(|c| (c.id.as_str(), c.state))
        .collect();
    assert_eq!(
        states,
        [
            ("perm", ChildState::Running),
            ("trans", ChildState::Stopped)
        ]
    );
    t.root.stop(None);
}

fn config(strategy: Strategy, restarts_max: u32, period_ms: u64) -> SupervisorConfig {
    SupervisorConfig {
        strategy,
        intensity: Intensity {
            restarts_max,
            period_ms,
        },
        backoff: Backoff::NONE,
    }
}

#[tokio::test]
async fn restarts_outside_the_window_do_not_count() {
    let clock = clock();
    let mut t = tree(config(Strategy::OneForOne, 2, 1_000), clock.clone(), |tx| {
        vec![worker("w", Restart::Permanent, tx)]
    })
    .await;
    let mut w = t.expect_starts(&["w"]).await.remove(0);
    for round in 0..5 {
        for _ in 0..2 {
            w.cast(WorkerMsg::Crash).unwrap();
            w = t.expect_starts(&["w"]).await.remove(0);
        }
        // Two restarts per window, the bound is two: never exceeded.
        clock.advance_ms(1_000);
        assert_eq!(t.status().await.children[0].restarts, 2 * (round + 1));
    }
    t.root.stop(None);
}

#[tokio::test]
async fn exceeding_intensity_escalates_to_the_parent() {
    let clock = clock();
    let (tx, rx) = mpsc::channel(EVENTS_MAX);
    let run = ChildSpec::supervisor(
        "run",
        Restart::Permanent,
        config(Strategy::OneForOne, 2, 1_000),
        clock.clone(),
        vec![worker("w", Restart::Permanent, &tx)],
    );
    let (root, _join) = spawn_root(SupervisorArgs {
        name: "root".into(),
        config: config(Strategy::OneForOne, 5, 1_000),
        clock: clock.clone(),
        children: vec![run],
        on_give_up: None,
    })
    .await
    .unwrap();
    let mut t = Tree { root, events: rx };
    let mut w = t.expect_starts(&["w"]).await.remove(0);
    // Two crashes are within the bound ...
    for _ in 0..2 {
        w.cast(WorkerMsg::Crash).unwrap();
        w = t.expect_starts(&["w"]).await.remove(0);
    }
    let snap = t.status().await;
    assert_eq!(snap.children[0].restarts, 0);
    assert_eq!(
        snap.children[0].supervisor.as_ref().unwrap().children[0].restarts,
        2
    );
    // ... the third is not: `run` gives up, the root restarts it with a fresh `w`.
    w.cast(WorkerMsg::Crash).unwrap();
    t.expect_starts(&["w"]).await;
    t.expect_no_more_starts().await;
    let snap = t.status().await;
    let run = &snap.children[0];
    assert_eq!(run.restarts, 1);
    let err = run.last_error.as_deref().unwrap();
    assert!(
        err.contains("restart intensity exceeded (3 restarts within 1000 ms, at most 2)"),
        "{err}"
    );
    assert!(err.contains("child w: boom"), "{err}");
    assert_eq!(run.supervisor.as_ref().unwrap().children[0].restarts, 0);
    t.root.stop(None);
}

#[tokio::test]
async fn a_root_that_gives_up_stops_its_children_and_fails() {
    let (tx, mut rx) = mpsc::channel(EVENTS_MAX);
    let (root, join) = spawn_root(SupervisorArgs {
        name: "root".into(),
        config: config(Strategy::OneForOne, 0, 1_000),
        clock: clock(),
        children: vec![
            worker("a", Restart::Permanent, &tx),
            worker("b", Restart::Permanent, &tx),
        ],
        on_give_up: None,
    })
    .await
    .unwrap();
    let (_, a) = rx.recv().await.unwrap();
    let (_, b) = rx.recv().await.unwrap();
    a.cast(WorkerMsg::Crash).unwrap();
    join.await.unwrap();
    assert_eq!(root.get_status(), ractor::ActorStatus::Stopped);
    assert_eq!(b.get_status(), ractor::ActorStatus::Stopped);
}

#[tokio::test(start_paused = true)]
async fn restarts_back_off_exponentially() {
    let backoff = Backoff {
        base_ms: 100,
        max_ms: 250,
    };
    assert_eq!(
        [1, 2, 3, 4].map(|n| backoff.delay_ms(n)),
        [100, 200, 250, 250]
    );
    let mut t = tree(
        SupervisorConfig {
            strategy: Strategy::OneForOne,
            intensity: Intensity {
                restarts_max: 10,
                period_ms: 60_000,
            },
            backoff,
        },
        clock(),
        |tx| vec![worker("w", Restart::Permanent, tx)],
    )
    .await;
    let mut w = t.expect_starts(&["w"]).await.remove(0);
    for want_ms in [100, 200, 250] {
        let before = tokio::time::Instant::now();
        w.cast(WorkerMsg::Crash).unwrap();
        // The failure is seen at once; the restart waits for the backoff.
        let snap = loop {
            let snap = t.status().await;
            if snap.children[0].state == ChildState::Restarting {
                break snap;
            }
            tokio::task::yield_now().await;
        };
        assert!(snap.children[0].supervisor.is_none());
        w = t.expect_starts(&["w"]).await.remove(0);
        assert_eq!(before.elapsed(), Duration::from_millis(want_ms));
    }
    t.root.stop(None);
}

async fn start_child(t: &Tree, spec: ChildSpec) -> Result<(), SupervisorError> {
    let timeout = Some(Duration::from_secs(5));
    let reply = t.root.call(|r| SupervisorMsg::StartChild(spec, r), timeout);
    reply.await.unwrap().unwrap()
}

async fn stop_child(t: &Tree, id: &str) -> Result<(), SupervisorError> {
    let timeout = Some(Duration::from_secs(5));
    let reply = t
        .root
        .call(|r| SupervisorMsg::StopChild(id.into(), r), timeout);
    reply.await.unwrap().unwrap()
}

#[tokio::test]
async fn children_can_be_added_and_removed_at_run_time() {
    let mut t = tree(
        SupervisorConfig::new(Strategy::OneForOne),
        clock(),
        |_| vec![],
    )
    .await;
    let (tx, mut rx) = mpsc::channel(EVENTS_MAX);
    let spec = worker("x", Restart::Permanent, &tx);
    start_child(&t, spec.clone()).await.unwrap();
    let (_, x) = rx.recv().await.unwrap();
    let err = start_child(&t, spec).await.unwrap_err();
    assert!(
        matches!(err, SupervisorError::DuplicateChild { .. }),
        "{err}"
    );
    let err = start_child(&t, worker("", Restart::Permanent, &tx))
        .await
        .unwrap_err();
    assert!(matches!(err, SupervisorError::BadChildId { .. }), "{err}");
    stop_child(&t, "x").await.unwrap();
    assert_eq!(x.get_status(), ractor::ActorStatus::Stopped);
    assert!(t.status().await.children.is_empty());
    let err = stop_child(&t, "x").await.unwrap_err();
    assert_eq!(err.to_string(), "supervisor root: no child \"x\"");
    assert!(rx.try_recv().is_err(), "a stopped child is not restarted");
    t.events.close();
    t.root.stop(None);
}
