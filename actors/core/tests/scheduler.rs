//! Scheduler tests: a real scheduler actor, grants observed in order, no sleeps.

use ractor::Actor;
use runloop_actors::names::OpeningId;
use runloop_actors::scheduler::{
    Budget, Permit, ScheduleError, Scheduler, SchedulerConfig, SchedulerHandle, SchedulerStore,
};

async fn scheduler(concurrency_max: usize, opening_queue_max: usize) -> SchedulerHandle {
    let (actor, _) = Actor::spawn(
        None,
        Scheduler,
        SchedulerStore::new(SchedulerConfig {
            concurrency_max,
            opening_queue_max,
        }),
    )
    .await
    .unwrap();
    SchedulerHandle::new(actor)
}

fn opening(name: &str) -> OpeningId {
    OpeningId::new(name).unwrap()
}

const NONE: Budget = Budget {
    tokens: 0,
    micro_usd: 0,
};

/// Replays a workload: a greedy opening queues `greedy` requests, then a second opening
/// queues `modest`; slots are released one at a time, oldest grant first. Returns the
/// openings in grant order.
async fn grant_order(s: &SchedulerHandle, greedy: usize, modest: usize) -> Vec<String> {
    let (a, b) = (opening("greedy"), opening("modest"));
    let mut pending = Vec::new();
    for _ in 0..greedy {
        pending.push(s.request(&a, NONE).await.unwrap());
    }
    for _ in 0..modest {
        pending.push(s.request(&b, NONE).await.unwrap());
    }
    let mut waiting: Vec<_> = pending.into_iter().map(|p| Box::pin(p.granted())).collect();
    let mut held: std::collections::VecDeque<Permit> = Default::default();
    let mut order = Vec::new();
    while !waiting.is_empty() {
        // Collect every grant that is ready now (the scheduler already decided).
        let snapshot = s.snapshot().await.unwrap();
        let ready = snapshot.running - held.len();
        let mut got = 0;
        let mut index = 0;
        while got < ready {
            let fut = &mut waiting[index];
            if let Some(permit) = futures_poll(fut) {
                let permit = permit.unwrap();
                order.push(permit.opening().to_string());
                held.push_back(permit);
                drop(waiting.remove(index));
                got += 1;
            } else {
                index += 1;
            }
        }
        if let Some(oldest) = held.pop_front() {
            oldest.finish(NONE);
        }
    }
    order
}

/// Polls a future once without waiting.
fn futures_poll<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test]
async fn a_greedy_opening_cannot_starve_another() {
    let s = scheduler(2, 64).await;
    let order = grant_order(&s, 8, 2).await;
    // Both slots go to the greedy opening before the modest one asks; from then on the
    // opening with fewer running invokes gets each free slot.
    assert_eq!(
        order,
        [
            "greedy", "greedy", "modest", "greedy", "modest", "greedy", "greedy", "greedy",
            "greedy", "greedy"
        ]
    );
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.queued), (0, 0));
    let granted: Vec<_> = snap.openings.iter().map(|o| o.granted_total).collect();
    assert_eq!(granted, [8, 2]);
}

#[tokio::test]
async fn concurrency_stays_within_the_global_bound() {
    let s = scheduler(3, 64).await;
    let a = opening("a");
    let mut pending = Vec::new();
    for _ in 0..5 {
        pending.push(s.request(&a, NONE).await.unwrap());
    }
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.queued), (3, 2));
    let mut permits = Vec::new();
    for p in pending.drain(..3) {
        permits.push(p.granted().await.unwrap());
    }
    permits.pop().unwrap().finish(NONE);
    let fourth = pending.remove(0).granted().await.unwrap();
    assert_eq!(s.snapshot().await.unwrap().running, 3);
    drop(fourth);
    drop(permits);
    let _fifth = pending.remove(0).granted().await.unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.queued), (1, 0));
}

#[tokio::test]
async fn a_full_queue_pushes_back_instead_of_growing() {
    let s = scheduler(1, 2).await;
    let a = opening("a");
    let _running = s.request(&a, NONE).await.unwrap();
    let _q1 = s.request(&a, NONE).await.unwrap();
    let _q2 = s.request(&a, NONE).await.unwrap();
    let err = s.request(&a, NONE).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "schedule for opening a: 2 requests already wait (at most 2); try again later"
    );
    // Another opening has its own queue.
    s.request(&opening("b"), NONE).await.unwrap();
}

#[tokio::test]
async fn a_caller_that_gives_up_frees_its_place() {
    let s = scheduler(1, 8).await;
    let a = opening("a");
    let first = s.request(&a, NONE).await.unwrap().granted().await.unwrap();
    let abandoned = s.request(&a, NONE).await.unwrap();
    let next = s.request(&a, NONE).await.unwrap();
    drop(abandoned);
    first.finish(NONE);
    let _permit = next.granted().await.unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        (snap.running, snap.queued, snap.openings[0].granted_total),
        (1, 0, 2)
    );
}

#[tokio::test]
async fn a_grant_nobody_reads_frees_its_slot_and_reservation() {
    let s = scheduler(1, 8).await;
    let a = opening("a");
    let estimate = Budget {
        tokens: 10,
        micro_usd: 100,
    };
    let first = s.acquire(&a, estimate).await.unwrap();
    let late = s.request(&a, estimate).await.unwrap();
    // Finishing hands the slot to `late` at once; its caller drops it unread.
    first.finish(estimate);
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.openings[0].reserved.tokens), (1, 10));
    drop(late);
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        (
            snap.running,
            snap.openings[0].reserved,
            snap.openings[0].spent
        ),
        (0, NONE, estimate)
    );
    // The slot is free for the next caller.
    let _permit = s.acquire(&a, NONE).await.unwrap();
}

#[tokio::test]
async fn budgets_reserve_before_and_reconcile_after() {
    let s = scheduler(4, 8).await;
    let a = opening("a");
    let limit = Budget {
        tokens: 100,
        micro_usd: 1_000,
    };
    s.set_budget(&a, Some(limit)).await.unwrap();
    let est = |tokens| Budget {
        tokens,
        micro_usd: 100,
    };
    let first = s.acquire(&a, est(60)).await.unwrap();
    let err = s.request(&a, est(60)).await.unwrap_err();
    assert_eq!(
        err,
        ScheduleError::BudgetExceeded {
            opening: a.clone(),
            need_tokens: 60,
            need_micro_usd: 100,
            left_tokens: 40,
            left_micro_usd: 900,
        }
    );
    first.finish(Budget {
        tokens: 30,
        micro_usd: 50,
    });
    let second = s.acquire(&a, est(60)).await.unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.openings[0].spent,
        Budget {
            tokens: 30,
            micro_usd: 50
        }
    );
    assert_eq!(snap.openings[0].reserved, est(60));
    assert!(
        s.request(&a, est(20)).await.is_err(),
        "30 spent + 60 reserved + 20 > 100"
    );
    // A permit dropped without `finish` is charged its estimate.
    drop(second);
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.openings[0].spent,
        Budget {
            tokens: 90,
            micro_usd: 150
        }
    );
    assert_eq!(snap.openings[0].reserved, NONE);
    s.acquire(&a, est(10)).await.unwrap().finish(NONE);
}

#[tokio::test]
async fn a_free_slot_is_granted_straight_from_the_store_when_nobody_waits() {
    let store = SchedulerStore::new(SchedulerConfig {
        concurrency_max: 1,
        opening_queue_max: 8,
    });
    let a = opening("a");
    let estimate = Budget {
        tokens: 10,
        micro_usd: 100,
    };
    // No actor involved: the grant is made under the store's lock.
    let first = store.try_grant(&a, estimate).expect("a free slot").unwrap();
    // No slot left: the request has to queue at the actor.
    assert!(store.try_grant(&a, estimate).is_none());
    drop(first);
    let (actor, _) = Actor::spawn(None, Scheduler, store.clone()).await.unwrap();
    let s = SchedulerHandle::with_store(actor, store.clone());
    let snap = s.snapshot().await.unwrap();
    // The unread grant freed its slot and returned its reservation, as the actor's would.
    assert_eq!(
        (
            snap.running,
            snap.queued,
            snap.openings[0].reserved,
            snap.openings[0].spent
        ),
        (0, 0, NONE, NONE)
    );
    let held = s.acquire(&a, estimate).await.unwrap();
    let queued = s.request(&a, estimate).await.unwrap();
    // Someone waits: even with a slot free (after `held` finishes) the fast path stands
    // aside, and the waiter gets the slot.
    held.finish(estimate);
    let waiter = queued.granted().await.unwrap();
    assert!(store.try_grant(&a, estimate).is_none());
    waiter.finish(NONE);
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        (snap.running, snap.queued, snap.openings[0].granted_total),
        (0, 0, 3)
    );
    assert_eq!(snap.openings[0].spent, estimate);
}

#[tokio::test]
async fn the_fast_path_refuses_what_the_actor_refuses() {
    let store = SchedulerStore::new(SchedulerConfig {
        concurrency_max: 4,
        opening_queue_max: 8,
    });
    let (actor, _) = Actor::spawn(None, Scheduler, store.clone()).await.unwrap();
    let s = SchedulerHandle::with_store(actor, store.clone());
    let a = opening("a");
    s.set_budget(
        &a,
        Some(Budget {
            tokens: 100,
            micro_usd: 1_000,
        }),
    )
    .await
    .unwrap();
    let est = Budget {
        tokens: 60,
        micro_usd: 100,
    };
    let _first = s.acquire(&a, est).await.unwrap();
    let err = store.try_grant(&a, est).expect("a free slot").unwrap_err();
    assert_eq!(
        err,
        ScheduleError::BudgetExceeded {
            opening: a.clone(),
            need_tokens: 60,
            need_micro_usd: 100,
            left_tokens: 40,
            left_micro_usd: 900,
        }
    );
    let snap = s.snapshot().await.unwrap();
    assert_eq!((snap.running, snap.openings[0].reserved), (1, est));
}
