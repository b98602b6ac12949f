//! The supervision tree's change counter: every change a supervisor makes to its children
//! (in a nested supervisor too) shows as a newer `tree_generation`, and asking for the
//! tree's snapshot does not. One test in a binary of its own, so no other test's
//! supervisors bump the process-wide counter while it reads it.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runloop_actors::supervisor::{
    ChildSpec, ChildState, Restart, Strategy, SupervisorArgs, SupervisorConfig, SupervisorMsg,
    SupervisorSnapshot, snapshot, spawn_root, tree_generation,
};
use runloop_proto::{Clock, ManualClock};
use tokio::sync::mpsc;

const STARTS_MAX: usize = 16;
const WAIT_MS: u64 = 10_000;

/// A worker that reports each start and fails on any message.
struct Worker(mpsc::Sender<ActorRef<()>>);

impl Actor for Worker {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        self.0.send(myself).await.expect("the test listens");
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err("boom".into())
    }
}

fn worker(id: &str, starts: &mpsc::Sender<ActorRef<()>>) -> ChildSpec {
    let starts = starts.clone();
    ChildSpec::worker(id, Restart::Permanent, move || (Worker(starts.clone()), ()))
}

async fn status(root: &ActorRef<SupervisorMsg>) -> SupervisorSnapshot {
    snapshot(root, WAIT_MS).await.expect("a snapshot")
}

async fn next_start(starts: &mut mpsc::Receiver<ActorRef<()>>) -> ActorRef<()> {
    tokio::time::timeout(Duration::from_millis(WAIT_MS), starts.recv())
        .await
        .expect("a start within the wait")
        .expect("a start")
}

#[tokio::test]
async fn every_change_to_the_tree_is_a_new_generation_and_a_status_is_not() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let (tx, mut starts) = mpsc::channel(STARTS_MAX);
    let config = SupervisorConfig::new(Strategy::OneForOne);
    let nested = ChildSpec::supervisor(
        "nested",
        Restart::Permanent,
        config,
        clock.clone(),
        vec![worker("inner", &tx)],
    );
    let (root, _join) = spawn_root(SupervisorArgs {
        name: "root".into(),
        config,
        clock,
        children: vec![nested],
        on_give_up: None,
    })
    .await
    .expect("root starts");
    let inner = next_start(&mut starts).await;

    // Asking is not changing.
    let before = tree_generation();
    let first = status(&root).await;
    assert_eq!(status(&root).await, first);
    assert_eq!(tree_generation(), before, "a status bumps nothing");

    // A child started, at the root.
    let added =
        ractor::call!(root, SupervisorMsg::StartChild, worker("added", &tx)).expect("root answers");
    added.expect("added starts");
    let _ = next_start(&mut starts).await;
    let after_start = tree_generation();
    assert!(after_start > before, "a start is a change");

    // A failure and its restart, in the nested supervisor: seen by the status after it.
    inner.cast(()).expect("inner takes the message");
    let _ = next_start(&mut starts).await;
    let restarted = status(&root).await;
    let nested = restarted.children[0]
        .supervisor
        .as_ref()
        .expect("nested subtree");
    assert_eq!(nested.children[0].restarts, 1);
    assert_eq!(nested.children[0].state, ChildState::Running);
    let after_restart = tree_generation();
    assert!(after_restart > after_start, "a nested restart is a change");

    // A child stopped.
    ractor::call!(root, SupervisorMsg::StopChild, "added".to_owned())
        .expect("root answers")
        .expect("added stops");
    let after_stop = tree_generation();
    assert!(after_stop > after_restart, "a stop is a change");
    assert_eq!(status(&root).await.children.len(), 1);
    assert_eq!(tree_generation(), after_stop, "a status bumps nothing");

    root.stop_and_wait(None, Some(Duration::from_millis(WAIT_MS)))
        .await
        .expect("root stops");
    assert!(
        tree_generation() > after_stop,
        "stopping the tree is a change"
    );
}
