//! What OpenTelemetry export costs a run: the same chain of `echo` nodes run on a kernel
//! with the POG (every crossing recorded) without export, with every crossing exported as
//! a span to a real OTLP receiver on loopback over gRPC and over HTTP, and with export on
//! but every run sampled out (`ratio:0`: the kernel-side cost of building the spans, no
//! traffic) — rounds interleaved (off, gRPC, HTTP, ratio:0, off, …) in one process so
//! drift hits all four alike. Medians and minimums per mode are printed (the minimum is
//! the figure least disturbed by other load on the machine).
//!
//! Run: `cargo build -p runloop-sandbox-host --release`, `packaging/scripts/otlp-receiver.sh
//! install`, then `cargo bench -p runloop-kernel --bench otel`. `OTEL_CHAIN` (default 10)
//! sets the chain length, `OTEL_RUNS` (default 20) the runs per round, `OTEL_ROUNDS`
//! (default 4) the rounds per mode. Results are written up in `perf/otel.md`.

mod common;
#[path = "common/kernel.rs"]
mod kernel_common;
#[path = "../../kernel/core/tests/common/servers.rs"]
mod servers;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use runloop_kernel::agents::AgentOptions;
use runloop_kernel::otel::{Otel, OtelConfig, Protocol, Sampling};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use runloop_proto::payloads::RunStatus;
use serde_json::json;

use common::{chain, env_or, loadavg, median, program};
use kernel_common::{engine_for, stop};
use servers::OtlpReceiver;

/// One round: a fresh kernel (POG in a temp dir, `otel` or none), `runs` chains one at a
/// time; returns ms per run. Export is flushed before the kernel stops, outside the timing.
async fn round(program: &Path, otel: Option<Arc<Otel>>, yaml: &str, runs: usize) -> f64 {
    let pog = tempfile::tempdir().unwrap();
    let options = KernelOptions {
        agents: AgentOptions {
            sandbox_host: Some(program.to_owned()),
            cwasm_dir: Some(std::env::temp_dir().join("runloop-otel-bench")),
            ..AgentOptions::default()
        },
        pog: Some(PogService {
            config: PogConfig::in_dir(pog.path()),
            read_conns: 2,
        }),
        otel: otel.clone(),
        ..KernelOptions::default()
    };
    let kernel = Arc::new(Kernel::boot(options).await.expect("boot"));
    let engine = engine_for(&kernel);
    let started = Instant::now();
    for _ in 0..runs {
        let submitted = engine
            .submit(yaml, Path::new("/nonexistent"), &json!({}))
            .await
            .expect("submit");
        let mut rx = submitted.report.clone();
        let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    if let Some(otel) = &otel {
        otel.shutdown_async().await;
    }
    stop(kernel, engine).await;
    ms
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let n = env_or("OTEL_CHAIN", 10);
    let runs = env_or("OTEL_RUNS", 20);
    let rounds = env_or("OTEL_ROUNDS", 4);
    let yaml = chain(n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = OtlpReceiver::start();
    println!("load before: {}", loadavg());
    let (mut off, mut grpc, mut http, mut zero) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        // A warm-up round compiles the bundle into the cwasm cache.
        round(&program, None, &yaml, 2).await;
        for _ in 0..rounds {
            off.push(round(&program, None, &yaml, runs).await);
            for (protocol, endpoint, sampling, out) in [
                (
                    Protocol::Grpc,
                    &receiver.grpc_endpoint(),
                    Sampling::AlwaysOn,
                    &mut grpc,
                ),
                (
                    Protocol::HttpProtobuf,
                    &receiver.http_endpoint(),
                    Sampling::AlwaysOn,
                    &mut http,
                ),
                (
                    Protocol::Grpc,
                    &receiver.grpc_endpoint(),
                    Sampling::Ratio(0.0),
                    &mut zero,
                ),
            ] {
                let otel = Otel::start(OtelConfig {
                    endpoint: endpoint.clone(),
                    protocol,
                    sampling,
                    metrics_interval_ms: 10_000,
                })
                .expect("start export");
                out.push(round(&program, Some(otel), &yaml, runs).await);
            }
        }
    });
    println!("load after: {}", loadavg());
    println!(
        "rounds (ms per {n}-node run): off {off:.1?} grpc {grpc:.1?} http {http:.1?} ratio:0 {zero:.1?}"
    );
    println!("{n}-node chain, {runs} runs per round, {rounds} rounds per mode:");
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (off_min, off_med) = (min(&off), median(&off));
    println!("  export off         median {off_med:8.1} ms/run   min {off_min:8.1} ms/run");
    for (label, v) in [
        ("export gRPC", &grpc),
        ("export HTTP", &http),
        ("on, ratio:0", &zero),
    ] {
        let (lo, med) = (min(v), median(v));
        println!(
            "  {label:<18} median {med:8.1} ms/run ({:+.1}%)   min {lo:8.1} ms/run ({:+.1}%)",
            (med / off_med - 1.0) * 100.0,
            (lo / off_min - 1.0) * 100.0
        );
    }
}
