//! The kernel's metrics as OpenTelemetry instruments: a sampler task on the kernel's
//! runtime reads the kernel's status and the broker's totals into cells every interval,
//! and observable instruments report the cells when the periodic reader collects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use runloop_proto::payloads::{ActorInfo, ActorNode};

use crate::Kernel;

/// How long the sampler waits for the broker's totals.
const BROKER_STATS_TIMEOUT_MS: u64 = 2_000;

/// Metric names (docs/observability.md lists them).
pub mod name {
    pub const AGENTS: &str = "runloop.agents";
    pub const RESTARTS: &str = "runloop.restarts";
    pub const BUS_DROPPED: &str = "runloop.bus.dropped";
    pub const TOKENS: &str = "runloop.broker.tokens";
    pub const COST: &str = "runloop.broker.cost";
}

/// The last sample.
#[derive(Debug, Default)]
pub struct Cells {
    agents: AtomicU64,
    restarts: AtomicU64,
    bus_dropped: AtomicU64,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    cost_usd_micros: AtomicU64,
}

fn get(cell: &AtomicU64) -> u64 {
    cell.load(Ordering::Relaxed)
}

/// Registers the instruments on `meter`, each reading `cells`.
pub fn register(meter: &Meter, cells: &Arc<Cells>) {
    let c = cells.clone();
    meter
        .u64_observable_gauge(name::AGENTS)
        .with_description("agent instances running")
        .with_callback(move |o| o.observe(get(&c.agents), &[]))
        .build();
    let c = cells.clone();
    meter
        .u64_observable_gauge(name::RESTARTS)
        .with_description("restarts of the supervisor tree's children now in it")
        .with_callback(move |o| o.observe(get(&c.restarts), &[]))
        .build();
    let c = cells.clone();
    meter
        .u64_observable_counter(name::BUS_DROPPED)
        .with_description("bus messages dropped since boot")
        .with_callback(move |o| o.observe(get(&c.bus_dropped), &[]))
        .build();
    let c = cells.clone();
    meter
        .u64_observable_counter(name::TOKENS)
        .with_description("model tokens through the broker since boot")
        .with_unit("{token}")
        .with_callback(move |o| {
            o.observe(get(&c.tokens_in), &[KeyValue::new("direction", "in")]);
            o.observe(get(&c.tokens_out), &[KeyValue::new("direction", "out")]);
        })
        .build();
    let c = cells.clone();
    meter
        .u64_observable_counter(name::COST)
        .with_description("model spend through the broker since boot, in µUSD")
        .with_unit("uUSD")
        .with_callback(move |o| o.observe(get(&c.cost_usd_micros), &[]))
        .build();
}

fn walk(node: &ActorNode, cells: &mut (u64, u64, u64)) {
    cells.1 += u64::from(node.restarts);
    match &node.info {
        Some(ActorInfo::Agent(_)) => cells.0 += 1,
        Some(ActorInfo::Bus(bus)) => cells.2 = bus.dropped,
        _ => {}
    }
    for child in &node.children {
        walk(child, cells);
    }
}

async fn sample(kernel: &Kernel, cells: &Cells) {
    let mut counted = (0, 0, 0);
    walk(&kernel.status().await, &mut counted);
    cells.agents.store(counted.0, Ordering::Relaxed);
    cells.restarts.store(counted.1, Ordering::Relaxed);
    cells.bus_dropped.store(counted.2, Ordering::Relaxed);
    if let Some(broker) = kernel.broker() {
        let timeout = Some(Duration::from_millis(BROKER_STATS_TIMEOUT_MS));
        if let Ok(ractor::rpc::CallResult::Success(stats)) =
            broker.call(runloop_broker::BrokerMsg::Stats, timeout).await
        {
            cells
                .tokens_in
                .store(stats.total.tokens_in, Ordering::Relaxed);
            cells
                .tokens_out
                .store(stats.total.tokens_out, Ordering::Relaxed);
            cells
                .cost_usd_micros
                .store(stats.total.cost_usd_micros, Ordering::Relaxed);
        }
    }
}

/// Samples `kernel` into `cells` every `interval_ms` until the kernel is gone or `stop`
/// says so; runs on the caller's (the kernel's) runtime.
pub fn spawn_sampler(
    kernel: Weak<Kernel>,
    cells: Arc<Cells>,
    interval_ms: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("OpenTelemetry metrics: no async runtime to sample the kernel on");
        return;
    };
    let mut stop = stop;
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let Some(kernel) = kernel.upgrade() else {
                return;
            };
            sample(&kernel, &cells).await;
        }
    });
}

/// Samples once now (shutdown: the last export carries the final values).
pub async fn sample_now(kernel: &Kernel, cells: &Cells) {
    sample(kernel, cells).await;
}
