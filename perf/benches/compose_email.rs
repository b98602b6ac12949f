//! compose_email's wall time in a real kernel — offline model provider, the confirmation
//! gate on auto-approve (no person's wait) — cold and warm, beside its five agents' own
//! invoke times measured in the same process.
//!
//! Run: `cargo build -p runloop-sandbox-host --release` (alone, so it has no cranelift),
//! then `cargo bench -p runloop-kernel --bench compose_email`. The sandbox binary is
//! `$RUNLOOP_SANDBOX_HOST`, else `<target>/release/runloop-sandbox-host`. `COMPOSE_RUNS`
//! (default 10) sets the warm runs and the rounds of each standalone measurement. Results
//! are written up in `perf/openings.md`.
//!
//! One state directory (POG seeded with `examples/pog/sample.ndjson`, Maildir outbox,
//! `.cwasm` cache), two kernels booted on it one after the other:
//!
//! - **Cold**: kernel A's first run, with an empty `.cwasm` cache: it compiles the five
//!   agents. **Cold, compiled**: kernel B's first run after A stopped (fresh process state,
//!   the `.cwasm` cache and the OS page cache warm).
//! - **Warm**: `COMPOSE_RUNS` further runs on B, one at a time, wall time from `submit` to
//!   the report; per node, the report's `duration_ms` (start of its sandbox + invoke).
//! - **Agents' own time**: each node's exact input, rebuilt from a warm run's report with
//!   the engine's own plan (`Plan::input`), sent to the five agents started in a run of
//!   their own on B, under a fresh trace each (its confirmation policy and budgets
//!   registered as the engine does, so the mailer really sends). *Fresh*: start the
//!   sandbox, then its first invoke (what a node does). *Warm*: round trips to running
//!   agents — the agents' own time.
//! - **Where a warm run's time goes**: its progress events cut the wall time into the
//!   nodes' spans and the engine's setup, handoffs and wrap-up; beside them, what one
//!   durable POG write costs (each node's span awaits one) and what validating the opening
//!   costs (the first step of every `submit`).
//!
//! Every message the mailer sends lands in the outbox: one per run, and one per standalone
//! invoke of the mailer; both counts are asserted.

mod common;
#[path = "common/kernel.rs"]
mod kernel_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use runloop_actors::names::{AgentName, OpeningId};
use runloop_agent_actor::RunLimits;
use runloop_broker::config::Limit;
use runloop_kernel::Kernel;
use runloop_kernel::agents::StartOptions;
use runloop_kernel::effects::gate::RunConfirmPolicy;
use runloop_kernel::runs::Engine;
use runloop_kernel::runs::record::Recorder;
use runloop_openings::Opening;
use runloop_openings::plan::{NodeEnd, Plan};
use runloop_pog::EventKind;
use runloop_proto::RunId;
use runloop_proto::json::{json_to_msgpack, msgpack_to_json};
use runloop_proto::payloads::{AgentInput, RunProgress, RunReport, RunStatus};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::TryRecvError;

use common::{bundles, env_or, median, ms, program, repo};
use kernel_common::{boot, outbox_len, seed, stop};

/// The design target: compose_email, warm, offline, without the person's wait.
const TARGET_MS: f64 = 50.0;
/// The opening's nodes, in declaration order.
const NODES: [&str; 5] = ["contact", "context", "draft", "review", "send"];

fn opening_source() -> String {
    std::fs::read_to_string(repo().join("examples/openings/compose_email.yaml"))
        .expect("read compose_email.yaml")
}

/// Nearest-rank 90th percentile.
fn p90(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    s[(s.len() * 9).div_ceil(10) - 1]
}

/// Imports `examples/pog/sample.ndjson` into a fresh POG in `dir` (as the compose_email
/// test does).
/// One run: its wall time, its report, and where its time went by the engine's own
/// progress events.
struct Sample {
    wall: f64,
    report: RunReport,
    phases: Phases,
}

/// A run's wall time cut at its progress events (kernel clock, whole ms): the engine's
/// work outside the nodes' spans (`node.started` → `node.finished` as the events' own
/// times say, which cover the sandbox start and the invoke; since `2564af3` nothing in
/// the run waits for a node's records).
#[derive(Default)]
struct Phases {
    /// Submit → the first `node.started`: validate, `run.started` recorded, the run's
    /// supervisor and actor started.
    setup: f64,
    /// Each `node.started` of draft, review, send → after the last upstream `node.finished`.
    handoffs: f64,
    /// send's `node.finished` → the report in hand: `run.finished` recorded.
    wrap_up: f64,
}

impl Phases {
    fn of(submit_ms: u64, report_ms: u64, events: &[RunProgress]) -> Phases {
        let at = |node: &str, started: bool| -> f64 {
            events
                .iter()
                .find_map(|e| match e {
                    RunProgress::NodeStarted { ts_ms, node: n, .. } if started && n == node => {
                        Some(*ts_ms)
                    }
                    RunProgress::NodeFinished { ts_ms, node: n, .. } if !started && n == node => {
                        Some(*ts_ms)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no event of {node}: {events:?}")) as f64
        };
        let first = at("contact", true).min(at("context", true));
        let handoffs = (at("draft", true) - at("contact", false).max(at("context", false)))
            + (at("review", true) - at("draft", false))
            + (at("send", true) - at("review", false));
        Phases {
            setup: first - submit_ms as f64,
            handoffs,
            wrap_up: report_ms as f64 - at("send", false),
        }
    }
}

/// One run of compose_email, submit to report; panics unless it sent its message.
async fn run_once(engine: &Engine) -> Sample {
    let source = opening_source();
    let clock = engine.kernel().clock().clone();
    let mut progress = engine.progress();
    let submit_ms = clock.now_ms();
    let started = Instant::now();
    let submitted = engine
        .submit(&source, Path::new("/nonexistent"), &json!({}))
        .await
        .expect("submit");
    let mut rx = submitted.report.clone();
    let report = rx
        .wait_for(Option::is_some)
        .await
        .expect("report")
        .clone()
        .expect("finished");
    let wall = ms(started);
    let report_ms = clock.now_ms();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let result = outputs(&report, "send")
        .into_iter()
        .find(|(port, _)| port == "result")
        .map(|(_, v)| msgpack_to_json(&v))
        .expect("send.result");
    assert_eq!(result["status"], "sent", "{result}");
    // Every event of the run was published before its report.
    let mut events = Vec::new();
    loop {
        match progress.try_recv() {
            Ok(e) if e.trace_id() == submitted.trace_id => events.push(e),
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    let phases = Phases::of(submit_ms, report_ms, &events);
    Sample {
        wall,
        report,
        phases,
    }
}

/// A node's outputs from the report, as the engine held them.
fn outputs(report: &RunReport, node: &str) -> Vec<(String, rmpv::Value)> {
    let n = report.nodes.iter().find(|n| n.id == node).expect("node");
    let json: Value = serde_json::from_str(n.outputs_json.as_deref().expect("outputs")).unwrap();
    json.as_array()
        .expect("[[port, payload], …]")
        .iter()
        .map(|o| {
            let port = o[0].as_str().expect("port").to_owned();
            (port, json_to_msgpack(&o[1], "outputs").expect("msgpack"))
        })
        .collect()
}

fn node_ms(report: &RunReport, node: &str) -> f64 {
    let n = report.nodes.iter().find(|n| n.id == node).expect("node");
    n.duration_ms.expect("a finished node has a duration") as f64
}

/// contact and context run side by side, then draft → review → send.
fn critical_path(t: impl Fn(&str) -> f64) -> f64 {
    t("contact").max(t("context")) + t("draft") + t("review") + t("send")
}

/// Each node's input of its first attempt, rebuilt from a finished run's report by the
/// engine's own plan, and the opening's budgets (as the engine registers them).
fn node_inputs(engine: &Engine, report: &RunReport) -> (Vec<rmpv::Value>, RunLimits) {
    let opening: Opening = engine
        .validate(&opening_source(), Path::new("/nonexistent"))
        .expect("valid");
    let bound = runloop_openings::params::bind(&opening, &json!({})).expect("params");
    let limits = RunLimits {
        run: Limit {
            tokens: opening.policy.budget_tokens,
            usd_micros: opening.policy.budget_usd_micros,
        },
        nodes: opening
            .nodes
            .iter()
            .filter_map(|n| {
                let tokens = n.budget_tokens?;
                Some((
                    n.id.to_string(),
                    Limit {
                        tokens: Some(tokens),
                        usd_micros: None,
                    },
                ))
            })
            .collect(),
    };
    let ids: Vec<String> = opening.nodes.iter().map(|n| n.id.to_string()).collect();
    assert_eq!(ids, NODES, "the opening's nodes");
    let mut plan = Plan::new(Arc::new(opening));
    for _round in 0..=NODES.len() {
        let step = plan.step();
        assert!(step.skipped.is_empty(), "{:?}", step.skipped);
        if step.run.is_empty() {
            break;
        }
        for node in step.run {
            let outputs = outputs(report, NODES[node]);
            plan.finish(node, NodeEnd::Succeeded { outputs });
        }
    }
    assert!(plan.is_done(), "every node replayed");
    let inputs = (0..NODES.len()).map(|i| plan.input(i, 1, &bound)).collect();
    (inputs, limits)
}

/// The five agents in a run of their own, invoked as the engine invokes nodes.
struct Agents {
    kernel: Arc<Kernel>,
    run: RunId,
    opening: OpeningId,
    inputs: Vec<rmpv::Value>,
    limits: RunLimits,
    mailer_sends: usize,
}

impl Agents {
    async fn start_run(&mut self) {
        self.run = self.kernel.ids().run_id();
        self.kernel
            .start_run(self.run, &self.opening)
            .await
            .expect("start run");
    }

    /// Starts node `i`'s agent (named as the node, as the engine names it); its ms.
    async fn start(&self, i: usize) -> f64 {
        let bundle = bundles().join(agent_of(i));
        let options = StartOptions {
            name: Some(NODES[i].to_owned()),
            ..StartOptions::default()
        };
        let t = Instant::now();
        self.kernel
            .start_bundle_in(self.run, &bundle, options)
            .await
            .expect("start agent");
        ms(t)
    }

    /// One invoke of node `i` with its recorded input, under a fresh trace whose budgets
    /// and confirmation policy are registered as a run's; wall ms and the agent actor's
    /// own `round_trip_us`.
    async fn invoke(&mut self, i: usize) -> (f64, u64) {
        let trace = self.kernel.ids().trace_id();
        let trace_text = trace.to_string();
        let effects = self.kernel.effects().expect("effects");
        let budgets = self.kernel.run_budgets();
        budgets
            .register(trace, self.limits.clone())
            .expect("budgets");
        let policy = RunConfirmPolicy {
            confirm_external: true,
            confirm_nodes: ["send".to_owned()].into_iter().collect(),
        };
        effects.shared.register_run(&trace_text, policy);
        let agent = AgentName::new(NODES[i]).unwrap();
        let input = AgentInput {
            port: "in".into(),
            payload: self.inputs[i].clone(),
        };
        let t = Instant::now();
        let reply = self
            .kernel
            .send_traced(self.run, &self.opening, &agent, input, trace)
            .await
            .unwrap_or_else(|e| panic!("invoke {}: {e}", NODES[i]));
        let wall = ms(t);
        effects.shared.forget_run(&trace_text);
        budgets.remove(trace);
        assert!(!reply.outputs.is_empty(), "{} answered nothing", NODES[i]);
        if NODES[i] == "send" {
            let result = msgpack_to_json(&reply.outputs[0].payload);
            assert_eq!(result["status"], "sent", "{result}");
            self.mailer_sends += 1;
        }
        (wall, reply.round_trip_us)
    }

    async fn stop_run(&self) {
        self.kernel.stop_run(self.run).await.expect("stop run");
    }
}

fn agent_of(i: usize) -> &'static str {
    [
        "contact_resolver",
        "context_gatherer",
        "writer",
        "critic",
        "mailer",
    ][i]
}

/// Per node: samples of one measurement.
type PerNode = [Vec<f64>; 5];

/// `rounds` times: a new run, each agent started, then its first invoke (what a node of a
/// run does, one after the other here). Returns (start ms, first invoke ms) per node.
async fn fresh(agents: &mut Agents, rounds: usize) -> (PerNode, PerNode) {
    let (mut starts, mut firsts) = (PerNode::default(), PerNode::default());
    for _ in 0..rounds {
        agents.start_run().await;
        for i in 0..NODES.len() {
            starts[i].push(agents.start(i).await);
            firsts[i].push(agents.invoke(i).await.0);
        }
        agents.stop_run().await;
    }
    (starts, firsts)
}

/// The agents running; one warm-up invoke each, then `rounds` rounds of one invoke per
/// agent. Returns (wall ms, round_trip ms) per node.
async fn warm(agents: &mut Agents, rounds: usize) -> (PerNode, PerNode) {
    agents.start_run().await;
    for i in 0..NODES.len() {
        agents.start(i).await;
        agents.invoke(i).await;
    }
    let (mut walls, mut trips) = (PerNode::default(), PerNode::default());
    for _ in 0..rounds {
        for i in 0..NODES.len() {
            let (wall, us) = agents.invoke(i).await;
            walls[i].push(wall);
            trips[i].push(us as f64 / 1e3);
        }
    }
    agents.stop_run().await;
    (walls, trips)
}

/// `rounds` durable writes of a `node.started`-sized event under fresh traces, each
/// awaited (what one commit costs; a run waits for its start's and its end's, not for its
/// nodes'); ms each.
async fn durable_writes(kernel: &Kernel, rounds: usize) -> Vec<f64> {
    let recorder = Recorder::new(kernel.pog());
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let trace = kernel.ids().trace_id().to_string();
        let payload = json!({
            "trace_id": trace, "node_id": "bench", "agent": "bench", "attempt": 1,
        });
        let t = Instant::now();
        recorder
            .write(&trace, EventKind::NodeStarted, payload)
            .await
            .expect("durable write");
        samples.push(ms(t));
    }
    samples
}

/// `rounds` validations of the opening as `submit` does first (parse, resolve the five
/// bundles through the catalog); ms each.
fn validations(engine: &Engine, rounds: usize) -> Vec<f64> {
    let source = opening_source();
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            engine
                .validate(&source, Path::new("/nonexistent"))
                .expect("valid");
            ms(t)
        })
        .collect()
}

/// What the runs measured.
struct Runs {
    cold: f64,
    cold_compiled: f64,
    warm: Vec<Sample>,
}

/// What was measured beside the runs: per node, the standalone agents; and the POG write.
struct Baselines {
    starts: PerNode,
    firsts: PerNode,
    walls: PerNode,
    trips: PerNode,
    writes: Vec<f64>,
    validations: Vec<f64>,
}

fn of_runs(runs: &Runs, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
    runs.warm.iter().map(f).collect()
}

fn print_table(runs: &Runs, base: &Baselines) {
    let n = runs.warm.len();
    let walls = of_runs(runs, |s| s.wall);
    let warm = median(&walls);
    let spans = of_runs(runs, |s| critical_path(|id| node_ms(&s.report, id)));
    let own = |i: usize| median(&base.walls[i]);
    let own_sum: f64 = (0..NODES.len()).map(own).sum();
    let own_path = critical_path(|id| own(NODES.iter().position(|n| *n == id).unwrap()));
    let verdict = if warm <= TARGET_MS {
        "**met**"
    } else {
        "**not met**"
    };
    let row = |figure: &str, measured: String| println!("| {figure} | {measured} |");
    println!();
    println!("| figure | measured |");
    println!("| --- | --- |");
    row(
        "cold run (empty `.cwasm` cache: compiles the five agents)",
        format!("{:.0} ms", runs.cold),
    );
    row(
        "cold, compiled (first run after a kernel restart, `.cwasm` cache warm)",
        format!("{:.0} ms", runs.cold_compiled),
    );
    row(
        &format!("warm run, median / p90 of {n}"),
        format!("**{warm:.1} ms** / {:.1} ms", p90(&walls)),
    );
    row(
        "sum of the five agents' own invoke times (warm agents, median each)",
        format!("**{own_sum:.1} ms**"),
    );
    row(
        "the same on the critical path (contact ‖ context → draft → review → send)",
        format!("{own_path:.1} ms"),
    );
    row(
        "→ engine + sandbox starts (warm median − agents' sum)",
        format!("{:.1} ms", warm - own_sum),
    );
    row(
        "warm run: node spans on the critical path, median",
        format!("{:.1} ms", median(&spans)),
    );
    row(
        "warm run: engine outside the nodes — setup / handoffs (3) / wrap-up, medians",
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            median(&of_runs(runs, |s| s.phases.setup)),
            median(&of_runs(runs, |s| s.phases.handoffs)),
            median(&of_runs(runs, |s| s.phases.wrap_up)),
        ),
    );
    row(
        "validating the opening (`submit`'s first step: parse, resolve five bundles), median",
        format!("{:.1} ms", median(&base.validations)),
    );
    row(
        "one awaited POG write (`node.started`-sized, one commit), median",
        format!("{:.1} ms", median(&base.writes)),
    );
    row(
        "target: warm, offline, no person's wait",
        format!("≤ {TARGET_MS:.0} ms — {verdict}"),
    );
    println!();
    println!(
        "| node (agent) | span in runs (`duration_ms`), median | sandbox start, median | first invoke in it, median | warm invoke, median | of which the agent actor's `round_trip_us` |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, node) in NODES.iter().enumerate() {
        println!(
            "| {node} ({}) | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms |",
            agent_of(i),
            median(&of_runs(runs, |s| node_ms(&s.report, node))),
            median(&base.starts[i]),
            median(&base.firsts[i]),
            median(&base.walls[i]),
            median(&base.trips[i]),
        );
    }
    println!();
}

/// The node spans of a run, for the log.
fn spans(report: &RunReport) -> String {
    NODES
        .iter()
        .map(|n| format!("{n} {:.0}", node_ms(report, n)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bench(program: &Path, state: &Path, rounds: usize) {
    // Kernel A, empty `.cwasm` cache: the first run compiles the five agents.
    let (kernel, engine) = boot(program, state).await;
    let cold = run_once(&engine).await;
    println!("cold run: {:.0} ms ({} ms)", cold.wall, spans(&cold.report));
    stop(kernel, engine).await;

    // Kernel B on the same state: the cache is warm, the process is new.
    let (kernel, engine) = boot(program, state).await;
    let cold_compiled = run_once(&engine).await;
    println!(
        "cold, compiled: {:.0} ms ({} ms)",
        cold_compiled.wall,
        spans(&cold_compiled.report)
    );
    let mut warm_runs = Vec::new();
    for _ in 0..rounds {
        warm_runs.push(run_once(&engine).await);
    }
    let walls: Vec<f64> = warm_runs.iter().map(|s| s.wall).collect();
    println!("warm runs: {walls:.1?} ms");
    let runs_done = 2 + rounds;
    assert_eq!(
        outbox_len(state),
        runs_done,
        "one message per run: the effect performed once per run"
    );

    let (inputs, limits) = node_inputs(&engine, &warm_runs[0].report);
    let mut agents = Agents {
        kernel: kernel.clone(),
        run: RunId::STANDALONE,
        opening: OpeningId::new("compose-agents").unwrap(),
        inputs,
        limits,
        mailer_sends: 0,
    };
    let (starts, firsts) = fresh(&mut agents, rounds).await;
    let (own_walls, trips) = warm(&mut agents, rounds).await;
    assert_eq!(
        outbox_len(state),
        runs_done + agents.mailer_sends,
        "one message per run and per standalone mailer invoke"
    );
    println!(
        "outbox: {} messages = {runs_done} runs + {} standalone mailer invokes",
        outbox_len(state),
        agents.mailer_sends
    );
    let writes = durable_writes(&kernel, rounds).await;
    let validations = validations(&engine, rounds);
    drop(agents);
    stop(kernel, engine).await;

    let runs = Runs {
        cold: cold.wall,
        cold_compiled: cold_compiled.wall,
        warm: warm_runs,
    };
    let base = Baselines {
        starts,
        firsts,
        walls: own_walls,
        trips,
        writes,
        validations,
    };
    print_table(&runs, &base);
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let rounds = env_or("COMPOSE_RUNS", 10);
    assert!(rounds >= 1, "COMPOSE_RUNS ≥ 1");
    let state = tempfile::tempdir().unwrap();
    seed(&state.path().join("pog"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&program, state.path(), rounds));
}
