//! Model broker benchmarks: cache-hit latency (direct and through the actor) against the
//! uncached offline call and the bare request hash as baselines, and offline-provider throughput.
//! Run: `cargo bench -p runloop-broker --bench broker`; write-up in perf/broker.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runloop_broker::actor::BrokerHandle;
use runloop_broker::{
    Broker, BrokerActor, BrokerArgs, CallContext, CompleteRequest, EmbedRequest, ModelRequest,
    ModelsConfig, SecretResolver, SecretsConfig, SystemClock,
};
use std::hint::black_box;
use std::sync::Arc;

const PROMPT: &str = "Ada asked for the Q3 report by Friday. The numbers are in the shared sheet. \
    Bob reviewed the draft yesterday and found two typos. Please send Ada a short note with the link.";

fn broker(capacity: usize) -> Broker {
    let mut config = ModelsConfig::default();
    config.broker.cache.capacity = capacity;
    Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn request() -> CompleteRequest {
    CompleteRequest {
        temperature: Some(0.0),
        ..CompleteRequest::prompt("", PROMPT)
    }
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = CallContext {
        opening: Some("bench".into()),
        agent: Some("writer".into()),
        ..CallContext::default()
    };
    let cached = broker(1024);
    rt.block_on(cached.complete(request(), &ctx, None)).unwrap();
    let uncached = broker(0);
    let mut g = c.benchmark_group("cache_hit");
    g.bench_function("baseline_request_hash", |b| {
        b.iter(|| black_box(ModelRequest::Complete(request()).hash()))
    });
    g.bench_function("baseline_offline_uncached", |b| {
        b.iter(|| {
            rt.block_on(uncached.complete(request(), &ctx, None))
                .unwrap()
        })
    });
    g.bench_function("broker_cache_hit", |b| {
        b.iter(|| rt.block_on(cached.complete(request(), &ctx, None)).unwrap())
    });
    g.finish();

    let mrt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handle = mrt.block_on(async {
        let args = BrokerArgs::Config {
            config: Box::default(),
            secrets: SecretResolver::with_env(SecretsConfig::default(), Default::default()),
            clock: Arc::new(SystemClock),
        };
        let (actor, _) = BrokerActor::spawn_singleton(args).await.unwrap();
        let h = BrokerHandle::new(actor);
        h.complete(request(), ctx.clone(), None).await.unwrap();
        h
    });
    let mut g = c.benchmark_group("actor");
    g.bench_function("actor_cache_hit", |b| {
        b.iter(|| {
            mrt.block_on(handle.complete(request(), ctx.clone(), None))
                .unwrap()
        })
    });
    g.finish();
}

fn offline_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = CallContext::default();
    let b0 = broker(0);
    let mut g = c.benchmark_group("offline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("complete_uncached", |b| {
        b.iter(|| rt.block_on(b0.complete(request(), &ctx, None)).unwrap())
    });
    let inputs: Vec<String> = (0..32).map(|i| format!("{PROMPT} variant {i}")).collect();
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("embed_32_uncached", |b| {
        b.iter(|| {
            rt.block_on(b0.embed(
                EmbedRequest {
                    model: String::new(),
                    inputs: inputs.clone(),
                },
                &ctx,
            ))
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, cache_hit, offline_throughput);
criterion_main!(benches);
