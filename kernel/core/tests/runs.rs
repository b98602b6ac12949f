//! Runs and agents under the kernel tree: an agent that crashes past its intensity is
//! quarantined and not restarted until released.
//!
//! Stand-in: the agent actor (one sandbox-host process per agent) is being built on the
//! `sandbox` branch; here a small ractor worker that crashes on request plays the agent,
//! which is all the supervision and quarantine path sees.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::quarantine::QuarantineReason;
use runloop_actors::supervisor::{ChildSpec, Intensity, Restart};
use runloop_kernel::kernel::RunError;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::ManualClock;
use tokio::sync::mpsc;

const WAIT_MS: u64 = 10_000;

struct Crashy {
    started: mpsc::Sender<ActorRef<()>>,
}

impl Actor for Crashy {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        self.started.send(me).await.unwrap();
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err("sandbox killed by SIGKILL".into())
    }
}

fn crashy(tx: &mpsc::Sender<ActorRef<()>>) -> ChildSpec {
    let tx = tx.clone();
    ChildSpec::worker("sandbox", Restart::Permanent, move || {
        (
            Crashy {
                started: tx.clone(),
            },
            (),
        )
    })
}

async fn next(rx: &mut mpsc::Receiver<ActorRef<()>>) -> ActorRef<()> {
    tokio::time::timeout(Duration::from_millis(WAIT_MS), rx.recv())
        .await
        .expect("a start in time")
        .expect("a start")
}

#[tokio::test]
async fn a_crash_looping_agent_is_quarantined_until_released() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let options = KernelOptions {
        clock: clock.clone(),
        ..KernelOptions::default()
    };
    let kernel = Kernel::boot(options).await.unwrap();
    let opening = OpeningId::new("compose_email").unwrap();
    let run = kernel.ids().run_id();
    let run_text = run.to_string();
    assert!(
        run_text.starts_with('r') && run_text.len() == 17,
        "{run_text}"
    );
    let writer = AgentName::new("writer").unwrap();
    let intensity = Intensity {
        restarts_max: 2,
        period_ms: 5_000,
    };
    kernel.start_run(run, &opening).await.unwrap();
    let err = kernel.start_run(run, &opening).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run {run_text} is already running")
    );
    let (tx, mut rx) = mpsc::channel(16);
    kernel
        .start_agent(run, &writer, intensity, crashy(&tx))
        .await
        .unwrap();
    // Two crashes are restarted in place ...
    let mut agent = next(&mut rx).await;
    for _ in 0..2 {
        agent.cast(()).unwrap();
        agent = next(&mut rx).await;
    }
    // ... the third exceeds the intensity: parked, not restarted.
    agent.cast(()).unwrap();
    let quarantine = kernel.quarantine().unwrap();
    let record = loop {
        if let Some(record) = quarantine.check(&writer).await.unwrap() {
            break record;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        record.reason,
        QuarantineReason::CrashLoop {
            restarts: 3,
            period_ms: 5_000,
            last_error: "sandbox killed by SIGKILL".into()
        }
    );
    assert!(
        rx.try_recv().is_err(),
        "a quarantined agent is not restarted"
    );
    let tree = kernel.status().await;
    let runs = &tree.children[1];
    assert_eq!(runs.children[0].name, format!("run-{run_text}"));
    assert!(
        runs.children[0].children.is_empty(),
        "{:?}",
        runs.children[0]
    );
    // Starting it again is refused with the reason ...
    let err = kernel
        .start_agent(run, &writer, intensity, crashy(&tx))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Quarantined { .. }), "{err}");
    assert!(
        err.to_string().contains("crashed 3 times within 5000 ms")
            && err
                .to_string()
                .ends_with("release it with `rlp agent release writer`"),
        "{err}"
    );
    // ... until a person releases it.
    kernel.release(&writer).await.unwrap();
    kernel
        .start_agent(run, &writer, intensity, crashy(&tx))
        .await
        .unwrap();
    next(&mut rx).await;
    let tree = kernel.status().await;
    let agent_node = &tree.children[1].children[0].children[0];
    assert_eq!(agent_node.name, "agent-writer");
    assert_eq!(agent_node.children[0].name, "sandbox");
    kernel.stop_run(run).await.unwrap();
    let err = kernel.stop_run(run).await.unwrap_err();
    assert_eq!(err.to_string(), format!("run {run_text} is not running"));
    let err = kernel
        .start_agent(run, &writer, intensity, crashy(&tx))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::NoSuchRun { .. }), "{err}");
    kernel.shutdown().await;
}
