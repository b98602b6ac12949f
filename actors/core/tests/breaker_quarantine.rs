//! Circuit breaker and quarantine tests: real actors, a manual clock, no sleeps.

use std::sync::Arc;

use ractor::Actor;
use runloop_actors::breaker::{
    Admission, Breaker, BreakerActor, BreakerArgs, BreakerConfig, BreakerError, BreakerHandle,
    BreakerState, BreakerStore, CallOutcome,
};
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::{
    Quarantine, QuarantineArgs, QuarantineError, QuarantineHandle, QuarantineReason,
    QuarantineStore,
};
use runloop_proto::ManualClock;

const NOW_MS: u64 = 1_000_000;

fn config() -> BreakerConfig {
    BreakerConfig {
        failures_max: 3,
        window_ms: 1_000,
        open_ms: 5_000,
    }
}

fn writer() -> AgentName {
    AgentName::new("writer").unwrap()
}

#[test]
fn failures_outside_the_window_do_not_open() {
    let mut b = Breaker::new(config());
    b.failure("e1", 0);
    b.failure("e2", 500);
    b.failure("e3", 1_000); // the first has left the window
    assert_eq!(b.state(), BreakerState::Closed);
    b.failure("e4", 1_400);
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_failed_probe_opens_again_for_a_full_period() {
    let agent = writer();
    let mut b = Breaker::new(config());
    for t in 0..3 {
        b.failure("boom", t);
    }
    assert!(
        b.admit(&agent, 5_001).is_err(),
        "opened at t=2, so open until 5_002"
    );
    assert_eq!(b.admit(&agent, 5_002), Ok(Admission::Probe));
    b.failure("still broken", 5_010);
    assert_eq!(b.state(), BreakerState::Open);
    let err = b.admit(&agent, 10_009).unwrap_err();
    assert!(
        matches!(err, BreakerError::Open { retry_in_ms: 1, .. }),
        "{err}"
    );
    assert_eq!(b.admit(&agent, 10_010), Ok(Admission::Probe));
}

#[tokio::test]
async fn breaker_actor_walks_closed_open_half_open_closed() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let (actor, _) = Actor::spawn(
        None,
        BreakerActor,
        BreakerArgs {
            config: config(),
            clock: clock.clone(),
            store: BreakerStore::new(),
        },
    )
    .await
    .unwrap();
    let breakers = BreakerHandle::new(actor);
    let agent = writer();
    let other = AgentName::new("critic").unwrap();
    for i in 0..2 {
        assert_eq!(breakers.admit(&agent).await, Ok(Admission::Pass));
        breakers
            .record(&agent, CallOutcome::Failure(format!("trap {i}")))
            .await;
    }
    assert_eq!(
        breakers.snapshot(&agent).await.unwrap().state,
        BreakerState::Closed
    );
    breakers
        .record(&agent, CallOutcome::Failure("trap 2".into()))
        .await;
    // Open: fail fast with a clear error; other agents are unaffected.
    let err = breakers.admit(&agent).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit breaker for agent writer is open after 3 failures within 1000 ms (last: trap 2); next probe in 5000 ms"
    );
    assert_eq!(breakers.admit(&other).await, Ok(Admission::Pass));
    let snap = breakers.snapshot(&agent).await.unwrap();
    assert_eq!(
        (snap.state, snap.opened_at_ms),
        (BreakerState::Open, Some(NOW_MS))
    );
    // After the open period: exactly one probe.
    clock.advance_ms(5_000);
    assert_eq!(breakers.admit(&agent).await, Ok(Admission::Probe));
    let err = breakers.admit(&agent).await.unwrap_err();
    assert!(matches!(err, BreakerError::ProbeInFlight { .. }), "{err}");
    assert_eq!(
        breakers.snapshot(&agent).await.unwrap().state,
        BreakerState::HalfOpen
    );
    // The probe succeeds: closed, failures forgotten.
    breakers.record(&agent, CallOutcome::Success).await;
    let snap = breakers.snapshot(&agent).await.unwrap();
    assert_eq!(
        (snap.state, snap.failures_in_window),
        (BreakerState::Closed, 0)
    );
    assert_eq!(breakers.admit(&agent).await, Ok(Admission::Pass));
    breakers.actor().stop(None);
}

#[tokio::test]
async fn quarantine_parks_until_released() {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let (actor, _) = Actor::spawn(
        None,
        Quarantine,
        QuarantineArgs {
            clock: clock.clone(),
            store: QuarantineStore::in_memory(),
        },
    )
    .await
    .unwrap();
    let q = QuarantineHandle::new(actor);
    let agent = writer();
    assert_eq!(q.check(&agent).await, Ok(None));
    let record = q
        .park(
            &agent,
            QuarantineReason::CrashLoop {
                restarts: 4,
                period_ms: 5_000,
                last_error: "sandbox killed by SIGKILL".into(),
            },
        )
        .await
        .unwrap();
    // The message is the reason alone: the errors that carry it name the agent, and
    // "agent writer is quarantined: agent writer is quarantined: ..." was printed twice.
    assert_eq!(
        record.message,
        "crashed 4 times within 5000 ms, more than its supervisor allows; last error: sandbox killed by SIGKILL"
    );
    assert_eq!(record.parked_at_ms, NOW_MS);
    // Parking again keeps the first reason.
    clock.advance_ms(10);
    let again = q
        .park(
            &agent,
            QuarantineReason::MalformedFrame {
                error: "InvalidMagic".into(),
                detail: "x".repeat(2_000),
            },
        )
        .await
        .unwrap();
    assert_eq!(again, record);
    let critic = AgentName::new("critic").unwrap();
    let malformed = q
        .park(
            &critic,
            QuarantineReason::MalformedFrame {
                error: "InvalidMagic".into(),
                detail: "y".repeat(2_000),
            },
        )
        .await
        .unwrap();
    assert!(
        malformed
            .message
            .starts_with("sent a malformed frame (InvalidMagic): yyy")
    );
    assert!(malformed.message.len() < 700, "details are clipped");
    assert_eq!(q.list().await.unwrap().len(), 2);
    assert_eq!(q.check(&agent).await.unwrap(), Some(record.clone()));
    assert_eq!(q.release(&agent).await.unwrap(), record);
    assert_eq!(q.check(&agent).await, Ok(None));
    let err = q.release(&agent).await.unwrap_err();
    assert_eq!(
        err,
        QuarantineError::NotQuarantined {
            agent: agent.clone()
        }
    );
    assert_eq!(err.to_string(), "agent writer is not quarantined");
    q.actor().stop(None);
}
