//! The breaker, quarantine and scheduler keep their state across a restart: each runs
//! under a real supervisor with its store captured by the child spec (as the kernel does),
//! the test kills the running instance and talks to the one the supervisor started.
//! A manual clock, no sleeps.

use std::sync::Arc;

use ractor::{Actor, ActorRef};
use runloop_actors::breaker::{
    BreakerActor, BreakerArgs, BreakerConfig, BreakerError, BreakerHandle, BreakerState,
    BreakerStore, CallOutcome,
};
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::quarantine::{
    Quarantine, QuarantineArgs, QuarantineHandle, QuarantineReason, QuarantineStore,
};
use runloop_actors::scheduler::{
    Budget, Scheduler, SchedulerConfig, SchedulerHandle, SchedulerStore,
};
use runloop_actors::supervisor::{
    ChildSpec, Restart, Slot, Strategy, SupervisorArgs, SupervisorConfig, SupervisorMsg, spawn_root,
};
use runloop_proto::{Clock, ManualClock};

const NOW_MS: u64 = 1_000_000;
/// Yields a waiting test gives the supervisor to restart a child.
const RESTART_YIELDS_MAX: usize = 100_000;

/// A root supervisor with one permanent child made by `make`; the child's slot.
async fn supervised<A, F>(make: F) -> (ActorRef<SupervisorMsg>, Slot<A::Msg>)
where
    A: Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    let slot = Slot::default();
    let child = ChildSpec::worker_published("child", Restart::Permanent, slot.clone(), make);
    let (root, _join) = spawn_root(SupervisorArgs {
        name: "root".into(),
        config: SupervisorConfig::new(Strategy::OneForOne),
        clock: Arc::new(ManualClock::new(NOW_MS)),
        children: vec![child],
        on_give_up: None,
    })
    .await
    .unwrap();
    (root, slot)
}

/// Kills the running instance and returns the one the supervisor starts in its place.
async fn kill_and_restart<M: ractor::Message>(slot: &Slot<M>) -> ActorRef<M> {
    let old = slot.get().expect("a running child");
    old.kill();
    for _ in 0..RESTART_YIELDS_MAX {
        match slot.get() {
            Some(new) if new.get_id() != old.get_id() => return new,
            _ => tokio::task::yield_now().await,
        }
    }
    panic!("the supervisor did not restart the child");
}

fn writer() -> AgentName {
    AgentName::new("writer").unwrap()
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_restart() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = BreakerStore::new();
    let config = BreakerConfig {
        failures_max: 3,
        window_ms: 1_000,
        open_ms: 5_000,
    };
    let (root, slot) = supervised({
        let (clock, store) = (clock.clone() as Arc<dyn Clock>, store.clone());
        move || {
            let args = BreakerArgs {
                config,
                clock: clock.clone(),
                store: store.clone(),
            };
            (BreakerActor, args)
        }
    })
    .await;
    let breakers = BreakerHandle::new(slot.get().unwrap());
    let agent = writer();
    for i in 0..3 {
        breakers
            .record(&agent, CallOutcome::Failure(format!("trap {i}")))
            .await;
    }
    clock.advance_ms(1_000);

    let breakers = BreakerHandle::new(kill_and_restart(&slot).await);
    let err = breakers.admit(&agent).await.unwrap_err();
    assert_eq!(
        err,
        BreakerError::Open {
            agent: agent.clone(),
            failures: 3,
            window_ms: 1_000,
            retry_in_ms: 4_000,
            last_error: "trap 2".into(),
        }
    );
    let snap = breakers.snapshot(&agent).await.unwrap();
    assert_eq!(
        (snap.state, snap.failures_in_window, snap.opened_at_ms),
        (BreakerState::Open, 3, Some(NOW_MS))
    );
    assert_eq!(store.len(), 1);
    root.stop(None);
}

#[tokio::test]
async fn a_parked_agent_stays_parked_across_a_restart() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = QuarantineStore::in_memory();
    let (root, slot) = supervised({
        let (clock, store) = (clock.clone() as Arc<dyn Clock>, store.clone());
        move || {
            let args = QuarantineArgs {
                clock: clock.clone(),
                store: store.clone(),
            };
            (Quarantine, args)
        }
    })
    .await;
    let q = QuarantineHandle::new(slot.get().unwrap());
    let agent = writer();
    let reason = QuarantineReason::CrashLoop {
        restarts: 4,
        period_ms: 5_000,
        last_error: "sandbox killed by SIGKILL".into(),
    };
    let record = q.park(&agent, reason.clone()).await.unwrap();

    let q = QuarantineHandle::new(kill_and_restart(&slot).await);
    let found = q.check(&agent).await.unwrap().expect("still parked");
    assert_eq!(found, record);
    assert_eq!(found.reason, reason);
    assert_eq!(q.list().await.unwrap(), vec![record.clone()]);
    assert_eq!(q.release(&agent).await.unwrap(), record);
    assert_eq!(q.check(&agent).await.unwrap(), None);
    root.stop(None);
}

#[tokio::test]
async fn the_scheduler_keeps_slots_waiters_and_budgets_across_a_restart() {
    let store = SchedulerStore::new(SchedulerConfig {
        concurrency_max: 2,
        opening_queue_max: 8,
    });
    let (root, slot) = supervised({
        let store = store.clone();
        move || (Scheduler, store.clone())
    })
    .await;
    let s = SchedulerHandle::new(slot.get().unwrap());
    let run = OpeningId::new("run1").unwrap();
    let budget = Budget {
        tokens: 1_000,
        micro_usd: 10_000,
    };
    let estimate = Budget {
        tokens: 100,
        micro_usd: 1_000,
    };
    s.set_budget(&run, Some(budget)).await.unwrap();
    let first = s.acquire(&run, estimate).await.unwrap();
    let _second = s.acquire(&run, estimate).await.unwrap();
    let third = s.request(&run, estimate).await.unwrap();

    let s = SchedulerHandle::new(kill_and_restart(&slot).await);
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.queued), (2, 1));
    let opening = &snap.openings[0];
    assert_eq!(opening.budget, Some(budget));
    assert_eq!(opening.reserved.tokens, 300);
    // A permit granted by the old instance still frees its slot, and the request that
    // waited through the restart gets it.
    first.finish(Budget {
        tokens: 40,
        micro_usd: 400,
    });
    let third = third.granted().await.unwrap();
    let snap = s.snapshot().await.unwrap();
    let opening = &snap.openings[0];
    assert_eq!((snap.running, snap.queued), (2, 0));
    assert_eq!((opening.reserved.tokens, opening.spent.tokens), (200, 40));
    // The budget still counts what was reserved before the restart.
    let err = s
        .request(
            &run,
            Budget {
                tokens: 800,
                micro_usd: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("budget exceeded"), "{err}");
    drop(third);
    root.stop(None);
}

#[tokio::test]
async fn a_reader_waiting_out_a_restart_is_woken_by_the_new_instance() {
    let store = SchedulerStore::new(SchedulerConfig::default());
    let (root, slot) = supervised({
        let store = store.clone();
        move || (Scheduler, store.clone())
    })
    .await;
    let old = slot.get().unwrap();
    // Waits for an instance other than `old`: the supervisor's write of the restarted one
    // wakes it (well within the bound; no polling).
    let waiting = tokio::spawn({
        let slot = slot.clone();
        let old = old.get_id();
        async move { slot.wait_running(Some(old), 60_000).await }
    });
    old.kill();
    let new = waiting.await.unwrap().expect("the restarted instance");
    assert_ne!(new.get_id(), old.get_id());
    assert_eq!(slot.get().map(|a| a.get_id()), Some(new.get_id()));
    // A running instance is returned at once.
    let now = slot.wait_running(None, 0).await.expect("running");
    assert_eq!(now.get_id(), new.get_id());
    root.stop(None);
}

#[tokio::test(start_paused = true)]
async fn a_slot_nobody_fills_gives_up_at_its_bound() {
    let slot: Slot<runloop_actors::scheduler::SchedulerMsg> = Slot::default();
    let started = tokio::time::Instant::now();
    assert!(slot.wait_running(None, 50).await.is_none());
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(50));
}
