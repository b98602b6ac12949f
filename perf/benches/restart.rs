//! Supervisor restart latency: a child fails → the supervisor restarts it → the new
//! instance answers. This is the kernel's share of "restart after SIGKILL"; the sandbox
//! process spawn comes on top. Baseline in the same run: spawning a fresh unsupervised
//! actor and asking it once. Run: `cargo bench -p runloop-actors --bench restart`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_actors::supervisor::{
    ChildSpec, Intensity, Restart, Slot, Strategy, SupervisorArgs, SupervisorConfig, spawn_root,
};
use runloop_proto::SystemClock;

const ROUNDS: usize = 2_000;

#[derive(Debug)]
enum Msg {
    Crash,
    Ping(RpcReplyPort<()>),
}

struct Child;

impl Actor for Child {
    type Msg = Msg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Crash => Err("crash".into()),
            Msg::Ping(reply) => {
                let _ = reply.send(());
                Ok(())
            }
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

async fn ping(actor: &ActorRef<Msg>) {
    actor.call(Msg::Ping, None).await.unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let slot: Slot<Msg> = Slot::default();
        let spec =
            ChildSpec::worker_published("child", Restart::Permanent, slot.clone(), || (Child, ()));
        let (root, _) = spawn_root(SupervisorArgs {
            name: "bench".into(),
            config: SupervisorConfig {
                intensity: Intensity {
                    restarts_max: 1_000,
                    period_ms: 1,
                },
                ..SupervisorConfig::new(Strategy::OneForOne)
            },
            clock: Arc::new(SystemClock),
            children: vec![spec],
            on_give_up: None,
        })
        .await
        .unwrap();
        let mut restart = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let old = slot.get().unwrap();
            let start = Instant::now();
            old.cast(Msg::Crash).unwrap();
            let new = loop {
                match slot.get() {
                    Some(a) if a.get_id() != old.get_id() => break a,
                    _ => tokio::task::yield_now().await,
                }
            };
            ping(&new).await;
            restart.push(start.elapsed());
        }
        let mut fresh = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let (a, join) = Actor::spawn(None, Child, ()).await.unwrap();
            ping(&a).await;
            fresh.push(start.elapsed());
            a.stop(None);
            join.await.unwrap();
        }
        root.stop(None);
        println!("rounds: {ROUNDS}");
        println!(
            "supervised restart (fail → restarted → answers): p50 {:?}, p99 {:?}",
            percentile(&mut restart, 0.5),
            percentile(&mut restart, 0.99)
        );
        println!(
            "baseline: spawn fresh actor → answers:            p50 {:?}, p99 {:?}",
            percentile(&mut fresh, 0.5),
            percentile(&mut fresh, 0.99)
        );
    });
}
