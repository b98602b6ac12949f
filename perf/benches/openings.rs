//! The openings engine in a real kernel: engine overhead per node, 1-node run throughput,
//! many concurrent 3-node runs, and what durable recording costs — each beside a baseline
//! measured in the same run.
//!
//! Run: `cargo build -p runloop-sandbox-host --release` (alone, so it has no cranelift),
//! then `cargo bench -p runloop-kernel --bench openings`. The sandbox binary is
//! `$RUNLOOP_SANDBOX_HOST`, else `<target>/release/runloop-sandbox-host`.
//! `OPENINGS_CHAIN` (default 20) sets the chain length, `OPENINGS_RUNS` (default 200) the
//! 1-node runs per throughput round, `OPENINGS_IN_FLIGHT` (default 32) how many at a time,
//! `OPENINGS_CONCURRENT` (default 1000) the concurrent 3-node runs, `OPENINGS_WARM`
//! (default: the kernel's, 32) `runtime.warm_sandboxes`. `OPENINGS_PHASES` (default
//! `load,overhead,throughput,concurrent`) picks which measurements run, for profiling one
//! of them; `load` times what one agent start pays before its sandbox (`Bundle::load` and
//! its parts, the `.cwasm` cache lookup). `OPENINGS_RECORDING` (default
//! `durable,unrecorded`) picks the kernels the overhead and throughput phases run on.
//! Results are written up in `perf/openings.md`.
//!
//! - **Overhead per node.** A chain of N `echo` nodes, one run at a time, against the same
//!   work done directly on the kernel: per node, start the agent in a run, one round trip
//!   over the bus beside stopping the previous node's agent (as the engine does), and (at
//!   the end) stop the run, the bundle loaded once per run as a
//!   submit does — what the engine itself does per node,
//!   minus its DAG bookkeeping, events and recording. Also shown: N plain round trips to
//!   one already running agent (the spec's literal baseline, which starts no sandbox).
//! - **Throughput.** 1-node runs submitted with 32 in flight, runs per second, against the
//!   direct start + round trip + stop with the same concurrency.
//! - **Concurrency.** `OPENINGS_CONCURRENT` 3-node runs submitted at once; all must finish;
//!   wall time, the kernel's peak RSS and the machine's peak memory in use.
//! - **Recording.** The throughput round on a kernel with the POG (durable runs, group
//!   commit) and on one without (nothing recorded).

mod common;
#[path = "common/kernel.rs"]
mod kernel_common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use runloop_actors::names::{AgentName, OpeningId};
use runloop_kernel::agents::{AgentOptions, StartOptions};
use runloop_kernel::runs::Engine;
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use runloop_proto::payloads::{AgentInput, RunStatus};
use serde_json::json;

use common::{bundles, chain, env_choices, env_or, median, program};
use kernel_common::{engine_for, stop};

const ROUNDS: usize = 5;
const LOAD_SAMPLES: usize = 50;

/// Runs (or direct equivalents) in flight in the throughput phase (`OPENINGS_IN_FLIGHT`).
fn in_flight() -> usize {
    env_or("OPENINGS_IN_FLIGHT", 32)
}

/// The measurements `OPENINGS_PHASES` asks for (all when unset).
#[derive(Debug, Clone, Copy)]
struct Phases {
    load: bool,
    overhead: bool,
    throughput: bool,
    concurrent: bool,
}

impl Phases {
    fn from_env() -> Phases {
        let has = env_choices(
            "OPENINGS_PHASES",
            &["load", "overhead", "throughput", "concurrent"],
        );
        Phases {
            load: has("load"),
            overhead: has("overhead"),
            throughput: has("throughput"),
            concurrent: has("concurrent"),
        }
    }
}

/// Which kernels the overhead and throughput phases run on (`OPENINGS_RECORDING`, a
/// comma list of `durable` and `unrecorded`; both when unset), to profile one of them.
#[derive(Debug, Clone, Copy)]
struct Recording {
    durable: bool,
    unrecorded: bool,
}

impl Recording {
    fn from_env() -> Recording {
        let has = env_choices("OPENINGS_RECORDING", &["durable", "unrecorded"]);
        Recording {
            durable: has("durable"),
            unrecorded: has("unrecorded"),
        }
    }
}

const THREE: &str = r#"
version: 0
name: three
policy: { timeout_ms: 600000 }
nodes:
  - { id: a, use: "agent:echo" }
  - { id: b, use: "agent:echo" }
  - { id: c, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: b.out, to: c.in }
"#;

async fn boot(program: &Path, pog: Option<&Path>) -> (Arc<Kernel>, Arc<Engine>) {
    let options = KernelOptions {
        agents: AgentOptions {
            sandbox_host: Some(program.to_owned()),
            cwasm_dir: Some(std::env::temp_dir().join("runloop-openings-bench")),
            // `OPENINGS_WARM=0`: no warm sandboxes, every node start spawns.
            warm_sandboxes: env_or("OPENINGS_WARM", runloop_agent_actor::warm::WARM_MAX_DEFAULT),
            ..AgentOptions::default()
        },
        pog: pog.map(|dir| PogService {
            config: PogConfig::in_dir(dir),
            read_conns: 2,
        }),
        ..KernelOptions::default()
    };
    let kernel = Arc::new(Kernel::boot(options).await.expect("boot"));
    let engine = engine_for(&kernel);
    (kernel, engine)
}

/// One run to its end; panics unless it succeeded.
async fn run(engine: &Engine, yaml: &str) {
    let submitted = engine
        .submit(yaml, Path::new("/nonexistent"), &json!({}))
        .await
        .expect("submit");
    let mut rx = submitted.report.clone();
    let report = rx
        .wait_for(Option::is_some)
        .await
        .expect("report")
        .clone()
        .expect("finished");
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
}

/// What the engine does for one node, done directly: a run, its agent, one round trip.
/// Like a submit, it asks the kernel's bundle cache for the verified bundle once per run
/// (a load and verification when the directory changed), and starts each node's agent
/// from it.
async fn direct_nodes(kernel: &Kernel, n: usize) {
    let run = kernel.ids().run_id();
    let opening = OpeningId::new("direct").unwrap();
    kernel.start_run(run, &opening).await.expect("start run");
    let echo = kernel
        .bundle_cache()
        .load(&bundles().join("echo"), kernel.trust())
        .expect("echo");
    let mut finished: Option<AgentName> = None;
    for i in 0..n {
        let name = format!("n{i}");
        let options = StartOptions {
            name: Some(name.clone()),
            ..StartOptions::default()
        };
        kernel
            .start_verified_in(run, echo.clone(), options)
            .await
            .expect("start");
        let agent = AgentName::new(&name).unwrap();
        let input = AgentInput {
            port: "in".into(),
            payload: rmpv::Value::from(i as u64),
        };
        // As the engine does: the previous node's agent is stopped once this node's
        // agent is up (its sandbox given back to the warm pool), beside this round trip.
        let stop = async {
            if let Some(done) = &finished {
                kernel.stop_agent_in(run, done).await.expect("stop agent");
            }
        };
        let (_, sent) = tokio::join!(stop, kernel.send_in(run, &opening, &agent, input));
        sent.expect("send");
        finished = Some(agent);
    }
    kernel.stop_run(run).await.expect("stop run");
}

/// `count` calls of `f`, [`in_flight`] at a time — a rolling window: the next call starts
/// as soon as one ends — returns the wall seconds.
async fn with_in_flight<F, Fut>(count: usize, f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures_util::stream::iter((0..count).map(|_| f()))
        .buffer_unordered(in_flight())
        .for_each(|()| async {})
        .await;
    started.elapsed().as_secs_f64()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// MemTotal − MemAvailable, KiB.
fn machine_used_kib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    field("MemTotal:").saturating_sub(field("MemAvailable:"))
}

async fn overhead(kernel: &Kernel, engine: &Engine, n: usize) {
    let yaml = chain(n);
    run(engine, &yaml).await; // warm: compiled module cached
    direct_nodes(kernel, n).await;
    let mut engine_ms = Vec::new();
    let mut direct_ms = Vec::new();
    let mut trips_ms = Vec::new();
    // One agent already running, for plain round trips.
    kernel
        .start_bundle(&bundles().join("echo"), Some("bench-echo"))
        .await
        .expect("start echo");
    let echo = AgentName::new("bench-echo").unwrap();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        run(engine, &yaml).await;
        engine_ms.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
        let t = Instant::now();
        direct_nodes(kernel, n).await;
        direct_ms.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
        let t = Instant::now();
        for i in 0..n {
            let input = AgentInput {
                port: "in".into(),
                payload: rmpv::Value::from(i as u64),
            };
            kernel.send(&echo, input).await.expect("send");
        }
        trips_ms.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
    kernel.stop_agent(&echo).await.expect("stop echo");
    let (e, d, r) = (median(&engine_ms), median(&direct_ms), median(&trips_ms));
    println!("overhead: chain of {n} echo nodes, {ROUNDS} rounds, medians per node");
    println!("  engine run                        {e:8.3} ms/node");
    println!("  direct start+round trip+stop      {d:8.3} ms/node  (same kernel work, no engine)");
    println!("  direct round trip to running echo {r:8.3} ms/node  (no sandbox start)");
    println!("  engine overhead vs direct         {:8.3} ms/node", e - d);
}

/// Runs/s of 1-node runs with [`in_flight`] in flight, and of the direct equivalent.
async fn throughput(kernel: &Kernel, engine: &Engine, runs: usize, label: &str) -> f64 {
    let one = chain(1);
    let mut engine_rps = Vec::new();
    let mut direct_rps = Vec::new();
    for _ in 0..ROUNDS {
        let secs = with_in_flight(runs, || run(engine, &one)).await;
        engine_rps.push(runs as f64 / secs);
        let secs = with_in_flight(runs, || direct_nodes(kernel, 1)).await;
        direct_rps.push(runs as f64 / secs);
    }
    let (e, d) = (median(&engine_rps), median(&direct_rps));
    println!(
        "throughput ({label}): {runs} 1-node runs, {} in flight, {ROUNDS} rounds, medians",
        in_flight()
    );
    if let Some(pool) = kernel.warm() {
        let w = pool.stats();
        println!(
            "  warm pool since boot: {} starts took a waiting sandbox, {} spawned (missed), {} given back, {} spares, {} refused (pool full)",
            w.taken, w.missed, w.given, w.spares, w.refused
        );
    }
    println!("  engine runs/s                     {e:8.1}");
    println!(
        "  direct start+round trip+stop /s   {d:8.1}  ({:.0}% of direct)",
        e / d * 100.0
    );
    e
}

async fn concurrent(engine: &Engine, count: usize) {
    let pid = std::process::id();
    let peak_rss = Arc::new(AtomicU64::new(rss_kib(pid)));
    let peak_used = Arc::new(AtomicU64::new(machine_used_kib()));
    let before_used = machine_used_kib();
    let before_rss = rss_kib(pid);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_rss, peak_used, done) = (peak_rss.clone(), peak_used.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                peak_used.fetch_max(machine_used_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let params = json!({});
    let submits = (0..count).map(|_| engine.submit(THREE, Path::new("/nonexistent"), &params));
    let waits: Vec<_> = join_all(submits)
        .await
        .into_iter()
        .map(|s| s.expect("submit").report)
        .collect();
    let submitted = started.elapsed().as_secs_f64();
    let mut succeeded = 0usize;
    let mut why: std::collections::BTreeMap<String, usize> = Default::default();
    for mut rx in waits {
        let report = rx.wait_for(Option::is_some).await.expect("report").clone();
        match report {
            Some(r) if r.status == RunStatus::Succeeded => succeeded += 1,
            Some(r) => *why.entry(r.reason.unwrap_or_default()).or_default() += 1,
            None => {}
        }
    }
    let wall = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    println!("concurrent: {count} runs of a 3-node echo chain submitted at once");
    println!("  succeeded                         {succeeded} of {count}");
    println!("  all submitted after               {submitted:8.2} s");
    println!(
        "  all finished after                {wall:8.2} s  ({:.1} runs/s)",
        count as f64 / wall
    );
    println!(
        "  kernel RSS                        {} MiB before, {} MiB peak",
        before_rss / 1024,
        peak_rss.load(Ordering::Relaxed) / 1024
    );
    println!(
        "  machine memory in use             {} MiB before, {} MiB peak (+{} MiB)",
        before_used / 1024,
        peak_used.load(Ordering::Relaxed) / 1024,
        peak_used
            .load(Ordering::Relaxed)
            .saturating_sub(before_used)
            / 1024
    );
    for (reason, n) in &why {
        println!("  failed ({n}): {reason}");
    }
    assert_eq!(succeeded, count, "every run finishes and succeeds");
}

/// Median microseconds of `LOAD_SAMPLES` calls of `f`.
fn time_us(mut f: impl FnMut()) -> f64 {
    let samples: Vec<f64> = (0..LOAD_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(&samples)
}

/// What one agent start pays before its sandbox, step by step, on the `echo` bundle:
/// the whole `Bundle::load` and the parts of it that can be timed from outside, and the
/// `.cwasm` cache lookup.
fn load(cwasm_dir: &Path) {
    let echo = bundles().join("echo");
    let trust = runloop_bundle::TrustPolicy::default();
    let bundle = runloop_bundle::Bundle::load(&echo, &trust).expect("echo loads");
    let wasm = bundle.wasm().to_vec();
    let whole = time_us(|| {
        runloop_bundle::Bundle::load(&echo, &trust).expect("echo loads");
    });
    let read = time_us(|| {
        std::fs::read(echo.join("agent.wasm")).expect("read");
    });
    let digest = time_us(|| {
        runloop_bundle::Digest::of(&wasm);
    });
    let abi = time_us(|| runloop_bundle::abi::check(&wasm).expect("abi"));
    let compiler_new = time_us(|| {
        runloop_compile::Compiler::new(cwasm_dir).expect("compiler");
    });
    let compiler = runloop_compile::Compiler::new(cwasm_dir).expect("compiler");
    compiler.compile_bytes(&wasm).expect("compile");
    let lookup = time_us(|| {
        assert!(compiler.compile_bytes(&wasm).expect("lookup").cached);
    });
    let cache = runloop_bundle::cache::BundleCache::new();
    cache.load(&echo, &trust).expect("echo loads");
    let hit = time_us(|| {
        cache.load(&echo, &trust).expect("echo loads");
    });
    println!(
        "load: echo bundle ({} wasm bytes), {LOAD_SAMPLES} samples, medians",
        wasm.len()
    );
    println!("  Bundle::load, whole               {whole:8.1} µs");
    println!("  of it: read agent.wasm            {read:8.1} µs");
    println!("  of it: blake3 of the module       {digest:8.1} µs");
    println!("  ABI check (validate all)          {abi:8.1} µs  (a load pays it once per module)");
    println!("  Compiler::new (wasmtime Engine)   {compiler_new:8.1} µs");
    println!(
        "  .cwasm cache lookup (hit)         {lookup:8.1} µs  (a start now skips it: the kernel remembers the path)"
    );
    println!(
        "  BundleCache::load (hit)           {hit:8.1} µs  (a submit's load when the bundle is unchanged; {} loads)",
        cache.stats().loads
    );
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let n = env_or("OPENINGS_CHAIN", 20);
    let runs = env_or("OPENINGS_RUNS", 200);
    let count = env_or("OPENINGS_CONCURRENT", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let phases = Phases::from_env();
    let recording = Recording::from_env();
    if phases.load {
        load(&std::env::temp_dir().join("runloop-openings-bench"));
    }
    runtime.block_on(async {
        // Durable (the POG records every run) and unrecorded, then many runs at once last:
        // that phase grows the process, and a bigger process forks sandboxes slower.
        let mut rates = (None, None);
        if (phases.overhead || phases.throughput) && recording.durable {
            let pog = tempfile::tempdir().unwrap();
            let (kernel, engine) = boot(&program, Some(pog.path())).await;
            println!("== durable runs (POG recording, group commit)");
            if phases.overhead {
                overhead(&kernel, &engine, n).await;
            }
            if phases.throughput {
                rates.0 = Some(throughput(&kernel, &engine, runs, "durable").await);
            }
            stop(kernel, engine).await;
        }
        if (phases.overhead || phases.throughput) && recording.unrecorded {
            let (kernel, engine) = boot(&program, None).await;
            println!("== unrecorded runs (no POG)");
            if phases.overhead {
                overhead(&kernel, &engine, n).await;
            }
            if phases.throughput {
                rates.1 = Some(throughput(&kernel, &engine, runs, "unrecorded").await);
            }
            stop(kernel, engine).await;
        }
        if let (Some(durable), Some(volatile)) = rates {
            println!(
                "recording: durable runs/s are {:.0}% of unrecorded ({durable:.1} vs {volatile:.1})",
                durable / volatile * 100.0
            );
        }
        if phases.concurrent {
            let pog = tempfile::tempdir().unwrap();
            let (kernel, engine) = boot(&program, Some(pog.path())).await;
            println!("== many runs at once (durable)");
            concurrent(&engine, count).await;
            stop(kernel, engine).await;
        }
    });
}
