//! At-least-once delivery across a restart, with a real supervisor and a worker that dies
//! mid-invoke on its first attempt. Stand-in: the agent actor (sandbox-backed) is built on
//! the `sandbox` branch; this worker plays an agent whose sandbox is SIGKILLed once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runloop_actors::delivery::{
    DeadLetter, DeadLetterMsg, DeadLetterReason, DeadLetters, InFlight, InFlightError,
};
use runloop_actors::names::AgentName;
use runloop_actors::supervisor::{
    ChildSpec, Restart, Slot, Strategy, SupervisorArgs, SupervisorConfig, spawn_root,
};
use runloop_proto::{ManualClock, MsgId, TraceId};
use tokio::sync::mpsc;

const WAIT_MS: u64 = 10_000;

#[derive(Debug, Clone)]
struct Invoke {
    input: String,
}

struct Agent {
    in_flight: InFlight<Invoke>,
    replies: mpsc::Sender<(MsgId, String, u32)>,
    /// Deliveries left to die on (the "sandbox" is killed mid-invoke this many times).
    crashes_left: Arc<AtomicU32>,
}

#[derive(Debug)]
enum AgentMsg {
    Invoke(TraceId, MsgId, Invoke, u32),
}

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<AgentMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        // A fresh instance redelivers whatever its predecessor left in flight.
        let redelivery = self.in_flight.redeliver(|_| true);
        assert!(redelivery.exhausted.is_empty());
        for (trace, msg, invoke, attempt) in redelivery.again {
            me.cast(AgentMsg::Invoke(trace, msg, invoke, attempt))?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        msg: AgentMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let AgentMsg::Invoke(trace, msg_id, invoke, attempt) = msg;
        if self
            .crashes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("sandbox killed by SIGKILL mid-invoke".into());
        }
        self.replies
            .send((msg_id, invoke.input.to_uppercase(), attempt))
            .await?;
        self.in_flight.complete(trace, msg_id);
        Ok(())
    }
}

#[tokio::test]
async fn an_invoke_in_flight_is_redelivered_after_a_crash_and_answered_once() {
    let clock = Arc::new(ManualClock::new(1_000));
    let writer = AgentName::new("writer").unwrap();
    let in_flight: InFlight<Invoke> = InFlight::new(writer.clone(), 3, clock.clone());
    let (tx, mut rx) = mpsc::channel(16);
    let crashes_left = Arc::new(AtomicU32::new(1));
    let slot: Slot<AgentMsg> = Slot::default();
    let spec = {
        let (in_flight, crashes_left) = (in_flight.clone(), crashes_left.clone());
        ChildSpec::worker_published("writer", Restart::Permanent, slot.clone(), move || {
            let agent = Agent {
                in_flight: in_flight.clone(),
                replies: tx.clone(),
                crashes_left: crashes_left.clone(),
            };
            (agent, ())
        })
    };
    let (root, _) = spawn_root(SupervisorArgs {
        name: "run".into(),
        config: SupervisorConfig::new(Strategy::OneForOne),
        clock: clock.clone(),
        children: vec![spec],
        on_give_up: None,
    })
    .await
    .unwrap();
    let invoke = Invoke {
        input: "hello".into(),
    };
    in_flight
        .begin(TraceId(9), MsgId(1), invoke.clone())
        .unwrap();
    slot.get()
        .unwrap()
        .cast(AgentMsg::Invoke(TraceId(9), MsgId(1), invoke.clone(), 1))
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_millis(WAIT_MS), rx.recv())
        .await
        .unwrap()
        .unwrap();
    // Answered by the restarted instance, on the second attempt, exactly once.
    assert_eq!(reply, (MsgId(1), "HELLO".into(), 2));
    assert!(in_flight.is_empty());
    let again = in_flight.begin(TraceId(9), MsgId(1), invoke).unwrap_err();
    assert!(
        matches!(again, InFlightError::AlreadyDone { .. }),
        "{again}"
    );
    assert!(rx.try_recv().is_err());
    root.stop(None);
}

#[tokio::test]
async fn an_invoke_that_keeps_killing_its_sandbox_ends_as_a_dead_letter() {
    let clock = Arc::new(ManualClock::new(1_000));
    let writer = AgentName::new("writer").unwrap();
    let ledger: InFlight<&'static str> = InFlight::new(writer.clone(), 2, clock);
    ledger.begin(TraceId(1), MsgId(1), "a").unwrap();
    ledger.begin(TraceId(1), MsgId(2), "b").unwrap();
    let err = ledger.begin(TraceId(1), MsgId(2), "b").unwrap_err();
    assert!(
        matches!(err, InFlightError::AlreadyInFlight { .. }),
        "{err}"
    );
    ledger.complete(TraceId(1), MsgId(2));
    // First restart: "a" goes out again (attempt 2 of 2).
    let r = ledger.redeliver(|_| true);
    assert_eq!(r.again.len(), 1);
    assert_eq!(r.again[0].3, 2);
    // Second restart: "a" has used its attempts.
    let r = ledger.redeliver(|_| true);
    assert!(r.again.is_empty());
    assert_eq!(r.exhausted, [(TraceId(1), MsgId(1), "a")]);
    assert!(ledger.is_empty());

    let (dead, _) = Actor::spawn(None, DeadLetters, ()).await.unwrap();
    let record = DeadLetter {
        agent: writer,
        trace_id: TraceId(1),
        msg_id: MsgId(1),
        reason: DeadLetterReason::AttemptsExhausted {
            attempts: 2,
            last_error: "sandbox killed by SIGKILL".into(),
        },
        at_ms: 1_000,
    };
    dead.cast(DeadLetterMsg::Record(record.clone())).unwrap();
    let (records, dropped) = dead
        .call(DeadLetterMsg::List, Some(Duration::from_millis(WAIT_MS)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((records, dropped), (vec![record], 0));
    dead.stop(None);
}

#[test]
fn only_the_charged_invokes_use_up_attempts_at_redelivery() {
    let clock = Arc::new(ManualClock::new(1_000));
    let ledger: InFlight<&'static str> = InFlight::new(AgentName::new("writer").unwrap(), 2, clock);
    for (m, item) in [(1, "running"), (2, "queued"), (3, "queued too")] {
        ledger.begin(TraceId(9), MsgId(m), item).unwrap();
    }
    let running = (TraceId(9), MsgId(1));
    let r = ledger.redeliver(|key| key == running);
    let attempts: Vec<(&str, u32)> = r.again.iter().map(|e| (e.2, e.3)).collect();
    assert_eq!(
        attempts,
        [("running", 2), ("queued", 1), ("queued too", 1)],
        "oldest first; only the running one charged"
    );
    // The same one crashes its sandbox again: exhausted; the others are still fresh.
    let r = ledger.redeliver(|key| key == running);
    assert_eq!(r.exhausted, [(TraceId(9), MsgId(1), "running")]);
    assert_eq!(r.again.len(), 2);
    // A sandbox that died idle charges nobody.
    let r = ledger.redeliver(|_| false);
    assert!(r.exhausted.is_empty());
    assert!(r.again.iter().all(|e| e.3 == 1));
    assert_eq!(ledger.len(), 2);
}
