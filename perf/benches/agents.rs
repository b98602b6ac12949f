//! Agent actors in a real kernel: round trips, restart latency after SIGKILL, many idle
//! agents — each beside a baseline measured in the same run.
//!
//! Run: `cargo build -p runloop-sandbox-host --release` (alone, so it has no cranelift),
//! then `cargo bench -p runloop-kernel --bench agents`. The sandbox binary is
//! `$RUNLOOP_SANDBOX_HOST`, else `<target>/release/runloop-sandbox-host`.
//! `AGENTS_IDLE` sets how many idle agents to start (default 1000).
//! Every round-trip phase also prints what one message cost in CPU time and in context
//! switches (sleeps and wake-ups), for the kernel process (`getrusage`, every thread) and
//! for the echo agent's sandbox process (`/proc/<pid>/task/*`). `AGENTS_MARKS=1` prints
//! each phase's `CLOCK_MONOTONIC` bounds, to cut a `perf record -k CLOCK_MONOTONIC`
//! profile per phase (`perf report --time <start>,<end>`).
//! Results are written up in `perf/agents.md`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use runloop_actors::names::AgentName;
use runloop_kernel::agents::AgentOptions;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::AgentInput;

use common::{bundles, cpu_model, env_or, percentile, program};

const ROUND_TRIPS: usize = 5_000;
/// Concurrent senders in the pipelined round-trip measurement.
const SENDERS: usize = 64;
/// Messages per sender there.
const SENT_PER_SENDER: usize = 1_000;
/// Rounds of the pipelined measurement (the median is reported).
const PIPELINED_ROUNDS: usize = 5;
const PING_PONGS: usize = 100_000;
const RESTARTS: usize = 100;
/// Untimed pause between restarts (a spare takes a cold start to be ready).
const RESTART_PAUSE_MS: u64 = 50;
const IDLE_AGENTS_DEFAULT: usize = 1_000;

fn bundle(name: &str) -> PathBuf {
    bundles().join(name)
}

/// CPU time and context switches of a process, summed over its threads.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_us: f64,
    voluntary: u64,
    involuntary: u64,
}

impl Usage {
    /// This process, every thread (including those that ended).
    fn of_self() -> Usage {
        use nix::sys::resource::{UsageWho, getrusage};
        let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
        let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
        Usage {
            cpu_us: us(u.user_time()) + us(u.system_time()),
            voluntary: u.voluntary_context_switches() as u64,
            involuntary: u.involuntary_context_switches() as u64,
        }
    }

    /// Another process's live threads (`schedstat` run time, `status` switch counts).
    fn of_pid(pid: u32) -> Usage {
        let mut usage = Usage::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return usage;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            if let Ok(s) = std::fs::read_to_string(dir.join("schedstat"))
                && let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            {
                usage.cpu_us += ns / 1e3;
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                let field = |name: &str| {
                    s.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                usage.voluntary += field("voluntary_ctxt_switches:");
                usage.involuntary += field("nonvoluntary_ctxt_switches:");
            }
        }
        usage
    }
}

/// Kernel and sandbox usage at one moment.
#[derive(Debug, Clone, Copy)]
struct Mark {
    kernel: Usage,
    sandbox: Usage,
    at: Instant,
}

impl Mark {
    fn now(sandbox_pid: u32) -> Mark {
        Mark {
            kernel: Usage::of_self(),
            sandbox: Usage::of_pid(sandbox_pid),
            at: Instant::now(),
        }
    }

    /// Prints what each of `messages` cost since `self`.
    fn report(&self, phase: &str, messages: usize, sandbox_pid: u32) {
        let end = Mark::now(sandbox_pid);
        let n = messages as f64;
        let k = |f: fn(&Usage) -> f64| (f(&end.kernel) - f(&self.kernel)) / n;
        let s = |f: fn(&Usage) -> f64| (f(&end.sandbox) - f(&self.sandbox)) / n;
        let cpu = |u: &Usage| u.cpu_us;
        let vol = |u: &Usage| u.voluntary as f64;
        let invol = |u: &Usage| u.involuntary as f64;
        let mut line = format!(
            "  per message, {phase}: wall {:.1} µs; kernel CPU {:.1} µs, switches {:.2} \
             voluntary + {:.2} involuntary",
            end.at.duration_since(self.at).as_secs_f64() * 1e6 / n,
            k(cpu),
            k(vol),
            k(invol),
        );
        if sandbox_pid != 0 {
            line += &format!(
                "; sandbox CPU {:.1} µs, switches {:.2} + {:.2}",
                s(cpu),
                s(vol),
                s(invol)
            );
        }
        println!("{line}");
        if std::env::var_os("AGENTS_MARKS").is_some() {
            // On Linux an `Instant` is a CLOCK_MONOTONIC reading and prints as one.
            println!("  marks, {phase}: {:?} .. {:?}", self.at, end.at);
        }
    }
}

fn sandbox_pid(kernel: &Kernel, agent: &AgentName) -> u32 {
    kernel
        .agent_metrics(agent)
        .and_then(|m| m.snapshot().sandbox_pid)
        .unwrap_or(0)
}

fn input() -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![("text".into(), "hello".into())]),
    }
}

/// Raw Unix-socket round trips between two threads, 64-byte messages, `in_flight` of them
/// outstanding at once (1: plain ping-pong): round trips/s.
fn ping_pong(in_flight: usize) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..PING_PONGS {
            b.read_exact(&mut buf).unwrap();
            b.write_all(&buf).unwrap();
        }
    });
    let mut buf = [7u8; 64];
    let mark = Mark::now(0);
    let started = Instant::now();
    for _ in 0..in_flight {
        a.write_all(&buf).unwrap();
    }
    for i in 0..PING_PONGS {
        a.read_exact(&mut buf).unwrap();
        if i + in_flight < PING_PONGS {
            a.write_all(&buf).unwrap();
        }
    }
    let rate = PING_PONGS as f64 / started.elapsed().as_secs_f64();
    echo.join().unwrap();
    mark.report(&format!("raw, {in_flight} in flight"), PING_PONGS, 0);
    rate
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Which path a message takes: over the bus under a scheduler permit (what every caller
/// gets), or straight to the agent actor (kept only to price the bus and the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Bus,
    Direct,
}

async fn send(
    kernel: &Kernel,
    agent: &AgentName,
    route: Route,
) -> runloop_kernel::agents::AgentReplyResult {
    match route {
        Route::Bus => kernel.send(agent, input()).await,
        Route::Direct => kernel.send_direct(agent, input()).await,
    }
}

async fn round_trips(kernel: &Kernel, agent: &AgentName, route: Route) -> (f64, f64) {
    for _ in 0..200 {
        send(kernel, agent, route).await.unwrap();
    }
    let mut in_sandbox = Vec::with_capacity(ROUND_TRIPS);
    let pid = sandbox_pid(kernel, agent);
    let mark = Mark::now(pid);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let reply = send(kernel, agent, route).await.unwrap();
        in_sandbox.push(reply.round_trip_us as f64);
    }
    let rate = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();
    mark.report(&format!("one caller, {route:?}"), ROUND_TRIPS, pid);
    (rate, percentile(&mut in_sandbox, 0.5))
}

/// Round trips with `SENDERS` callers at once: the agent's sandbox gets invokes pipelined.
/// Every reply is checked (the echo agent returns the text it was sent).
async fn pipelined_round_trips(kernel: &Kernel, agent: &AgentName, route: Route) -> f64 {
    let mut rates = Vec::with_capacity(PIPELINED_ROUNDS);
    let pid = sandbox_pid(kernel, agent);
    let mark = Mark::now(pid);
    for _ in 0..PIPELINED_ROUNDS {
        let started = Instant::now();
        let senders = (0..SENDERS).map(|_| async {
            for _ in 0..SENT_PER_SENDER {
                let reply = send(kernel, agent, route).await.unwrap();
                assert_eq!(reply.outputs.len(), 1, "echo answers once");
            }
        });
        futures_util::future::join_all(senders).await;
        rates.push((SENDERS * SENT_PER_SENDER) as f64 / started.elapsed().as_secs_f64());
    }
    mark.report(
        &format!("{SENDERS} callers, {route:?}"),
        PIPELINED_ROUNDS * SENDERS * SENT_PER_SENDER,
        pid,
    );
    percentile(&mut rates, 0.5)
}

/// Kill → answered again, `RESTARTS` times, with `pause_ms` between one answer and the
/// next kill (0: back to back; a pause lets a warm spare be ready, as it is for crashes
/// that are not milliseconds apart). The pause is not timed.
async fn restart_latency(kernel: &Kernel, agent: &AgentName, pause_ms: u64) -> (f64, f64, f64) {
    let metrics = kernel.agent_metrics(agent).unwrap();
    let mut samples = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let pid = metrics.snapshot().sandbox_pid.unwrap();
        let started = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Either the send finds the dead sandbox (fail, restart, redeliver) or the idle
        // watch restarted it first; both are "killed → answering again".
        kernel.send(agent, input()).await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let p50 = percentile(&mut samples, 0.5);
    let p90 = percentile(&mut samples, 0.9);
    let p99 = percentile(&mut samples, 0.99);
    (p50, p90, p99)
}

async fn idle_agents(kernel: &Kernel, n: usize) -> usize {
    let started = Instant::now();
    let mut reached = 0;
    for i in 0..n {
        let name = format!("idle-{i}");
        match kernel.start_bundle(&bundle("echo"), Some(&name)).await {
            Ok(_) => reached += 1,
            Err(e) => {
                println!("idle agents: stopped at {reached}: {e}");
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let agents = kernel.agents().await;
    let sandboxes_kb: u64 = agents.iter().map(|a| a.rss_kb).sum();
    let kernel_kb = rss_kb(std::process::id());
    let (total, available) = meminfo();
    println!(
        "idle agents: {reached} started in {secs:.1} s ({:.1} ms each); kernel RSS {} MiB; \
         sandboxes RSS sum {} MiB ({} KiB each); machine memory used {} MiB of {} MiB",
        secs * 1e3 / reached.max(1) as f64,
        kernel_kb / 1024,
        sandboxes_kb / 1024,
        sandboxes_kb / reached.max(1) as u64,
        (total - available) / 1024,
        total / 1024
    );
    reached
}

/// (MemTotal, MemAvailable) in KiB.
fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let idle = env_or("AGENTS_IDLE", IDLE_AGENTS_DEFAULT);
    // The callers are tasks on the runtime's workers, as every sender inside the kernel
    // is (run actors, the control plane), not the thread that entered the runtime.
    let body = async move {
        let options = KernelOptions {
            agents: AgentOptions {
                sandbox_host: Some(program),
                cwasm_dir: Some(std::env::temp_dir().join("runloop-agents-bench")),
                // Every restart of the restart bench is deliberate (two rounds of them).
                intensity: runloop_actors::supervisor::Intensity {
                    restarts_max: 2 * RESTARTS as u32 + 10,
                    period_ms: 600_000,
                },
                ..AgentOptions::default()
            },
            // Nor should the breaker stop the deliberate crashes.
            breaker: runloop_actors::breaker::BreakerConfig {
                failures_max: runloop_actors::breaker::BREAKER_FAILURES_MAX as u32,
                window_ms: 1_000,
                open_ms: 1_000,
            },
            ..KernelOptions::default()
        };
        let cold_options = KernelOptions {
            agents: AgentOptions {
                warm_sandboxes: 0,
                ..options.agents.clone()
            },
            breaker: options.breaker,
            ..KernelOptions::default()
        };
        let kernel = Kernel::boot(options).await.unwrap();
        let echo = AgentName::new("echo").unwrap();
        let before_kb = rss_kb(std::process::id());
        kernel.start_bundle(&bundle("echo"), None).await.unwrap();

        println!("cpu: {}", cpu_model());
        // The raw ping-pong moves by ±20% from one measurement to the next on a VM: take
        // the median of three, before, between and after the two phases.
        let mut raws = vec![ping_pong(1)];
        let (rate, in_sandbox_p50) = round_trips(&kernel, &echo, Route::Bus).await;
        raws.push(ping_pong(1));
        let (direct, _) = round_trips(&kernel, &echo, Route::Direct).await;
        raws.push(ping_pong(1));
        let raw_each = raws
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let baseline = percentile(&mut raws, 0.5);
        println!(
            "round trips, one caller: over the bus with a scheduler permit {rate:.0}/s \
             ({:.0}% of raw; sandbox round trip p50 {in_sandbox_p50:.1} µs); direct to the \
             agent actor {direct:.0}/s; raw Unix-socket ping-pong {baseline:.0}/s (median of \
             {raw_each}; same run)",
            100.0 * rate / baseline
        );
        let raw_pipelined = ping_pong(SENDERS);
        let pipelined = pipelined_round_trips(&kernel, &echo, Route::Bus).await;
        let pipelined_direct = pipelined_round_trips(&kernel, &echo, Route::Direct).await;
        println!(
            "round trips, {SENDERS} callers (pipelined), median of {PIPELINED_ROUNDS} rounds of \
             {}: over the bus with scheduler permits {pipelined:.0}/s ({:.0}% of raw); direct \
             {pipelined_direct:.0}/s; raw Unix-socket echo with {SENDERS} in flight \
             {raw_pipelined:.0}/s (same run)",
            SENDERS * SENT_PER_SENDER,
            100.0 * pipelined / raw_pipelined
        );
        // Restart: a kernel with no warm sandboxes (every restart spawns) beside this one
        // (the default pool: a restart takes the spare), same pause, same run.
        let pause = env_or("AGENTS_RESTART_PAUSE_MS", RESTART_PAUSE_MS);
        let cold = Kernel::boot(cold_options).await.unwrap();
        cold.start_bundle(&bundle("echo"), None).await.unwrap();
        let (c50, c90, c99) = restart_latency(&cold, &echo, pause).await;
        cold.shutdown().await;
        let before = kernel.warm().map(|w| w.stats()).unwrap_or_default();
        let (p50, p90, p99) = restart_latency(&kernel, &echo, pause).await;
        let after = kernel.warm().map(|w| w.stats()).unwrap_or_default();
        let (b50, b90, b99) = restart_latency(&kernel, &echo, 0).await;
        println!(
            "restart after SIGKILL (kill → redelivered reply), {RESTARTS} runs each, \
             {pause} ms between: no warm sandboxes p50 {c50:.2} ms, p90 {c90:.2} ms, \
             p99 {c99:.2} ms; warm spare p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms \
             ({} taken, {} missed); back to back with the spare p50 {b50:.2} ms, p90 \
             {b90:.2} ms, p99 {b99:.2} ms (same run)",
            after.taken - before.taken,
            after.missed - before.missed,
        );
        println!("kernel RSS before agents: {} MiB", before_kb / 1024);
        idle_agents(&kernel, idle).await;
        let stop = Instant::now();
        kernel.shutdown().await;
        println!(
            "shutdown with all agents: {:.1} s",
            stop.elapsed().as_secs_f64()
        );
    };
    runtime.block_on(async { tokio::spawn(body).await.expect("the bench task") });
}
