//! In-kernel bus throughput (frames/s) beside a bare bounded tokio mpsc of the same frames,
//! measured in the same run. Run: `cargo bench -p runloop-actors --bench bus`.
//!
//! Each round moves `FRAMES_PER_ROUND` distinct frames (fresh msg ids, so the bus's dedupe
//! cache does real work) from one publisher task to one subscriber task; the report is the
//! median over `ROUNDS` rounds, on the multi-thread runtime with two workers. The
//! one-by-one path calls `BusHandle::publish` per frame, the batched path `publish_batch`.
//! With `BUS_BENCH_WAKES=1` each bus round also prints its rate and the bus's wake-ups.
//! The CPU model is printed with the figures, and each bus path as a share of the baseline.

mod common;

use std::sync::Arc;
use std::time::Instant;

use runloop_actors::bus::{
    BusArgs, BusConfig, BusStore, PUBLISH_BATCH_FRAMES_MAX, Topic, spawn_bus,
};
use runloop_proto::payloads::Ping;
use runloop_proto::{Body, Family, Frame, Header, MsgId, SystemClock, TraceId};
use tokio::sync::mpsc;

use common::{cpu_model, median};

const FRAMES_PER_ROUND: usize = 1 << 20;
const ROUNDS: usize = 7;
const MAILBOX_FRAMES: usize = 4_096;

fn frames() -> Vec<Arc<Frame>> {
    let now_ms = runloop_proto::Clock::now_ms(&SystemClock);
    (0..FRAMES_PER_ROUND as u64)
        .map(|m| {
            let header =
                Header::new(Family::Control, now_ms, 3_600_000, TraceId(1), MsgId(m + 1)).unwrap();
            Arc::new(Frame::new(header, Body::from_payload(&Ping { seq: m })).unwrap())
        })
        .collect()
}

async fn baseline_round(frames: &[Arc<Frame>]) -> f64 {
    let (tx, mut rx) = mpsc::channel::<Arc<Frame>>(MAILBOX_FRAMES);
    let n = frames.len();
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            rx.recv().await.unwrap();
        }
    });
    let start = Instant::now();
    for frame in frames {
        tx.send(frame.clone()).await.unwrap();
    }
    reader.await.unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

async fn bus_round(frames: &[Arc<Frame>], batch: usize) -> f64 {
    let bus = spawn_bus(
        BusArgs {
            config: BusConfig::default(),
            clock: Arc::new(SystemClock),
            store: BusStore::new(),
        },
        None,
    )
    .await
    .unwrap();
    let topic = Topic::new("bench/in").unwrap();
    let mut sub = bus.subscribe(&topic, MAILBOX_FRAMES).await.unwrap();
    let n = frames.len();
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            sub.rx.recv().await.unwrap();
        }
    });
    let start = Instant::now();
    if batch == 1 {
        for frame in frames {
            bus.publish(&topic, frame.clone()).await.unwrap();
        }
    } else {
        for chunk in frames.chunks(batch) {
            bus.publish_batch(&topic, chunk.to_vec()).await.unwrap();
        }
    }
    reader.await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let stats = bus.stats().await.unwrap();
    assert_eq!(stats.delivered, n as u64, "every frame delivered");
    if std::env::var_os("BUS_BENCH_WAKES").is_some() {
        eprintln!("batch {batch}: {rate:.0} frames/s, {} wakes", stats.wakes);
    }
    bus.actor().stop(None);
    rate
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frames = frames();
    runtime.block_on(async {
        let mut baseline = Vec::new();
        let mut single = Vec::new();
        let mut batched = Vec::new();
        for _ in 0..ROUNDS {
            baseline.push(baseline_round(&frames).await);
            single.push(bus_round(&frames, 1).await);
            batched.push(bus_round(&frames, PUBLISH_BATCH_FRAMES_MAX).await);
        }
        let (baseline, single, batched) = (median(&baseline), median(&single), median(&batched));
        println!("cpu: {}", cpu_model());
        println!("frames per round: {FRAMES_PER_ROUND}, rounds: {ROUNDS}, medians:");
        println!("baseline bounded tokio mpsc : {baseline:>12.0} frames/s");
        println!(
            "bus, publish one by one     : {single:>12.0} frames/s ({:.0}% of the baseline)",
            100.0 * single / baseline
        );
        println!(
            "bus, publish_batch({PUBLISH_BATCH_FRAMES_MAX})    : {batched:>12.0} frames/s ({:.0}% of \
             the baseline)",
            100.0 * batched / baseline
        );
    });
}
