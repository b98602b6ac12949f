//! What recording every crossing costs a run, how long a replay takes beside the run it
//! replays, and how long `rlp trace`'s read path takes on a run of 10,000 crossings — each
//! beside a baseline measured in the same process.
//!
//! Run: `cargo build -p runloop-sandbox-host --release` (alone, so it has no cranelift),
//! then `cargo bench -p runloop-kernel --bench replay`. The sandbox binary is
//! `$RUNLOOP_SANDBOX_HOST`, else `<target>/release/runloop-sandbox-host`. `REPLAY_RUNS`
//! (default 10) sets the runs per side of each on/off comparison and the rounds of the
//! read path. Results are written up in `perf/replay.md`.
//!
//! One state directory (POG seeded with `examples/pog/sample.ndjson`, Maildir outbox,
//! `.cwasm` cache), one kernel with the offline broker and the confirmation gate on
//! auto-approve (as `compose_email.rs` boots it):
//!
//! - **Recording overhead.** compose_email, and an opening of 100 `echo` nodes (one source
//!   fanned out to 99, `policy.max_parallel: 8`, the default), each warmed up, then
//!   `REPLAY_RUNS` runs with recording on and as many with it off
//!   (`Engine::crossings().set_enabled`), interleaved in pairs whose order alternates
//!   (on/off, off/on, …) so the machine's noise and the process's growth hit both sides.
//!   Wall time from `submit` to the report; crossings and POG events per run.
//! - **Replay.** Every recorded (on) run replayed with `trace::replay`; each must be
//!   `identical` (the bench fails otherwise), and the outbox must not grow.
//! - **`rlp trace` of 10,000 crossings.** No opening makes that many (at most 256 nodes,
//!   a few crossings each), so the run is synthetic: the crossings of one recorded
//!   compose_email run, their exact payloads copied round after round under a new trace id
//!   (node names cycled through three suffixes, times shifted), 10,000 `crossing.recorded`
//!   events between a `run.started` and a `run.finished`, appended with
//!   `runloop_pog::Store::write_batch` while no kernel runs. Then a new kernel on the same
//!   POG, and per round: the run's events through the POG actor (what `trace_show` reads;
//!   the baseline), `view::build`, the view's MsgPack encode + decode (the control frame's
//!   payload), and `ladder` at 80 and at 200 columns.

mod common;
#[path = "common/kernel.rs"]
mod kernel_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use runloop_client::trace::{LadderOptions, ladder};
use runloop_kernel::runs::Engine;
use runloop_kernel::trace::{replay, view};
use runloop_pog::{ActorName, Event, EventKind, NewEvent, PogConfig, Scope};
use runloop_proto::payloads::{ControlOutcome, RunStatus, TraceView};
use serde_json::{Value, json};

use common::{env_or, median, ms, program, repo};
use kernel_common::{boot, outbox_len, provenance, seed, stop};

/// The design target for `rlp trace` of 10,000 crossings: read, build, draw.
const TRACE_TARGET_MS: f64 = 200.0;
/// Crossings in the synthetic run.
const SYNTH_CROSSINGS: usize = 10_000;
/// Node names of the synthetic run cycle through this many suffixes per compose_email node.
const SYNTH_SUFFIXES: usize = 3;
/// Events per `write_batch` (the store takes at most `WRITE_BATCH_EVENTS_MAX`).
const SYNTH_BATCH: usize = 1_000;
/// The synthetic run's trace id (32 lowercase hex digits).
const SYNTH_TRACE: &str = "ace0000000000000000000000010000a";
/// Nodes of the fan-out opening, and how many run at once.
const FAN_NODES: usize = 100;
const FAN_PARALLEL: usize = 8;

/// One source `echo` node fanned out to `n - 1` more.
fn fan(n: usize) -> String {
    let mut y = format!(
        "version: 0\nname: fan{n}\npolicy: {{ timeout_ms: 600000, max_parallel: {FAN_PARALLEL} }}\nnodes:\n"
    );
    y.push_str("  - { id: src, use: \"agent:echo\" }\n");
    for i in 1..n {
        y.push_str(&format!("  - {{ id: n{i}, use: \"agent:echo\" }}\n"));
    }
    y.push_str("edges:\n");
    for i in 1..n {
        y.push_str(&format!("  - {{ from: src.out, to: n{i}.in }}\n"));
    }
    y
}

/// One opening to bench: its source and what one run of it leaves in the outbox.
struct Workload {
    name: &'static str,
    source: String,
    sends: usize,
}

/// One run: wall time submit → report, and what it left in the POG.
struct Sample {
    trace_id: String,
    wall: f64,
    events: usize,
    crossings: usize,
}

/// One run to its report; panics unless it succeeded.
async fn run_once(engine: &Engine, source: &str) -> Sample {
    let started = Instant::now();
    let submitted = engine
        .submit(source, Path::new("/nonexistent"), &json!({}))
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
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let events = engine.recorder_events(&submitted.trace_id).await;
    let crossings = events
        .iter()
        .filter(|e| e.kind == EventKind::CrossingRecorded)
        .count();
    Sample {
        trace_id: submitted.trace_id,
        wall,
        events: events.len(),
        crossings,
    }
}

/// Runs with recording on and off, interleaved.
struct Overhead {
    on: Vec<Sample>,
    off: Vec<Sample>,
}

/// One warm-up run per side, then `runs` pairs, the order within a pair alternating.
async fn overhead(engine: &Engine, w: &Workload, runs: usize) -> Overhead {
    for on in [true, false] {
        engine.crossings().set_enabled(on);
        run_once(engine, &w.source).await;
    }
    let (mut on_runs, mut off_runs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            engine.crossings().set_enabled(on);
            let s = run_once(engine, &w.source).await;
            if on {
                assert!(s.crossings > 0, "{}: a recorded run has crossings", w.name);
                on_runs.push(s);
            } else {
                assert_eq!(s.crossings, 0, "{}: recording was off", w.name);
                off_runs.push(s);
            }
        }
    }
    engine.crossings().set_enabled(true);
    let walls = |v: &[Sample]| {
        v.iter()
            .map(|s| format!("{:.0}", s.wall))
            .collect::<Vec<_>>()
    };
    println!(
        "{}: on {:?} ms, off {:?} ms",
        w.name,
        walls(&on_runs),
        walls(&off_runs)
    );
    Overhead {
        on: on_runs,
        off: off_runs,
    }
}

/// Each recorded run replayed: `(replay_ms, recorded_ms)`; panics unless identical.
async fn replays(engine: &Arc<Engine>, name: &str, recorded: &[Sample]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for s in recorded {
        let started = Instant::now();
        let report = replay(engine, &s.trace_id).await.expect("replay");
        let wall = ms(started);
        let why: Vec<_> = report
            .nodes
            .iter()
            .filter(|n| !n.identical)
            .map(|n| format!("{}: {}", n.id, n.reason.as_deref().unwrap_or("?")))
            .collect();
        assert!(report.identical, "{name} {} replays: {why:?}", s.trace_id);
        assert_eq!(report.effects_performed, 0);
        out.push((wall, report.recorded_ms as f64));
    }
    out
}

/// The crossings of one recorded run, their payloads copied round after round under
/// `trace` until there are [`SYNTH_CROSSINGS`], between a `run.started` and a
/// `run.finished`.
fn synthetic(templates: &[Value], trace: &str) -> Vec<NewEvent> {
    let num = |p: &Value, k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
    let first = templates.iter().map(|p| num(p, "start_ms")).min().unwrap();
    let last = templates.iter().map(|p| num(p, "end_ms")).max().unwrap();
    let span = last - first + 1;
    let event = |kind, payload| {
        NewEvent::new(
            kind,
            ActorName::new("kernel").unwrap(),
            Scope::default_scope(),
            payload,
            provenance(trace),
            None,
        )
        .expect("a valid event")
    };
    let mut out = vec![event(
        EventKind::RunStarted,
        json!({"trace_id": trace, "opening": "compose_email_synthetic", "host": "daemon"}),
    )];
    for seq in 0..SYNTH_CROSSINGS {
        let round = (seq / templates.len()) as u64;
        let mut p = templates[seq % templates.len()].clone();
        let suffix = round as usize % SYNTH_SUFFIXES;
        let shift = round * span;
        p["trace_id"] = json!(trace);
        p["seq"] = json!(seq);
        p["start_ms"] = json!(num(&p, "start_ms") + shift);
        p["end_ms"] = json!(num(&p, "end_ms") + shift);
        if let Some(node) = p.get("node_id").and_then(Value::as_str) {
            p["node_id"] = json!(format!("{node}{suffix}"));
        }
        for end in ["from", "to"] {
            if let Some(agent) = p[end].as_str().and_then(|a| a.strip_prefix("agent:")) {
                p[end] = json!(format!("agent:{agent}{suffix}"));
            }
        }
        out.push(event(EventKind::CrossingRecorded, p));
    }
    let rounds = SYNTH_CROSSINGS.div_ceil(templates.len()) as u64;
    out.push(event(
        EventKind::RunFinished,
        json!({"trace_id": trace, "status": "succeeded", "duration_ms": rounds * span}),
    ));
    out
}

/// Appends the synthetic run to the POG in `dir` (no kernel running on it), then times
/// reading it back straight from the store (no actor).
fn write_synthetic(dir: &Path, events: Vec<NewEvent>, rounds: usize) -> Direct {
    let cfg = PogConfig::in_dir(dir);
    let mut store = runloop_pog::Store::open(&cfg, Arc::new(runloop_pog::SystemClock)).unwrap();
    let mut events = events;
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(SYNTH_BATCH));
        store.write_batch(events).expect("write synthetic batch");
        events = rest;
    }
    // Closed and opened again, as the kernel that reads it next will find it.
    drop(store);
    let store = runloop_pog::Store::open(&cfg, Arc::new(runloop_pog::SystemClock)).unwrap();
    let trace = runloop_pog::parse_trace_id(SYNTH_TRACE).unwrap();
    let reads = store.reads();
    let mut samples = Vec::new();
    let mut read = Vec::new();
    for _ in 0..=rounds {
        let t = Instant::now();
        read = reads.run_events(&trace).expect("read");
        samples.push(ms(t));
    }
    samples.remove(0);
    // The floor under any read of these events: parsing their payloads' JSON text.
    let texts: Vec<String> = read.iter().map(|e| e.payload.to_string()).collect();
    let mut parse = Vec::new();
    for _ in 0..=rounds {
        let t = Instant::now();
        for text in &texts {
            let v: Value = serde_json::from_str(text).expect("JSON");
            std::hint::black_box(v);
        }
        parse.push(ms(t));
    }
    parse.remove(0);
    Direct {
        ms: median(&samples),
        parse_ms: median(&parse),
        events: read.len(),
        payload_bytes: texts.iter().map(String::len).sum(),
    }
}

/// The synthetic run read straight from the store.
struct Direct {
    /// Median read time.
    ms: f64,
    /// Median time to parse the events' payloads from JSON text alone.
    parse_ms: f64,
    events: usize,
    /// The events' payloads as JSON text.
    payload_bytes: usize,
}

/// One round of `rlp trace`'s read path, step by step (ms).
#[derive(Default)]
struct ReadPath {
    read: Vec<f64>,
    build: Vec<f64>,
    wire: Vec<f64>,
    ladder80: Vec<f64>,
    ladder200: Vec<f64>,
    total80: Vec<f64>,
    total200: Vec<f64>,
}

fn draw(view: &TraceView, width: usize) -> String {
    let opts = LadderOptions {
        width,
        relative: false,
        color: false,
    };
    ladder(view, &opts)
}

/// `rounds` rounds (after one warm-up) of: read the run's events through the POG actor,
/// build the view, encode + decode it as the control frame would, draw it at 80 and 200.
async fn read_path(engine: &Engine, rounds: usize) -> (ReadPath, TraceView, [usize; 2]) {
    let mut path = ReadPath::default();
    let mut last = None;
    for round in 0..=rounds {
        let t = Instant::now();
        let events: Vec<Event> = engine.recorder_events(SYNTH_TRACE).await;
        let read = ms(t);
        let t = Instant::now();
        let v = view::build(SYNTH_TRACE, &events, false).expect("view");
        let build = ms(t);
        let t = Instant::now();
        let bytes = rmp_serde::to_vec_named(&v).expect("encode view");
        let v: TraceView = rmp_serde::from_slice(&bytes).expect("decode view");
        let wire = ms(t);
        let t = Instant::now();
        let l80 = draw(&v, 80);
        let ladder80 = ms(t);
        let t = Instant::now();
        let l200 = draw(&v, 200);
        let ladder200 = ms(t);
        if round > 0 {
            path.read.push(read);
            path.build.push(build);
            path.wire.push(wire);
            path.ladder80.push(ladder80);
            path.ladder200.push(ladder200);
            path.total80.push(read + build + wire + ladder80);
            path.total200.push(read + build + wire + ladder200);
        }
        last = Some((v, [l80.len(), l200.len()]));
    }
    let (v, sizes) = last.expect("at least one round");
    (path, v, sizes)
}

fn pct(on: f64, off: f64) -> String {
    format!("{:+.1} ms ({:+.1}%)", on - off, (on - off) / off * 100.0)
}

fn overhead_rows(name: &str, o: &Overhead) {
    let wall = |v: &[Sample]| median(&v.iter().map(|s| s.wall).collect::<Vec<_>>());
    let (on, off) = (wall(&o.on), wall(&o.off));
    let paired: Vec<f64> =
        o.on.iter()
            .zip(&o.off)
            .map(|(a, b)| a.wall - b.wall)
            .collect();
    let count = |v: &[Sample], f: fn(&Sample) -> usize| {
        median(&v.iter().map(|s| f(s) as f64).collect::<Vec<_>>())
    };
    println!(
        "| {name}: wall submit → report, median | {on:.1} ms | {off:.1} ms | {} ; paired median {:+.1} ms |",
        pct(on, off),
        median(&paired)
    );
    println!(
        "| {name}: crossings / POG events per run | {:.0} / {:.0} | {:.0} / {:.0} | +{:.0} events |",
        count(&o.on, |s| s.crossings),
        count(&o.on, |s| s.events),
        count(&o.off, |s| s.crossings),
        count(&o.off, |s| s.events),
        count(&o.on, |s| s.events) - count(&o.off, |s| s.events),
    );
}

fn replay_row(name: &str, o: &Overhead, r: &[(f64, f64)]) {
    let run = median(&o.on.iter().map(|s| s.wall).collect::<Vec<_>>());
    let recorded = median(&r.iter().map(|x| x.1).collect::<Vec<_>>());
    let rep = median(&r.iter().map(|x| x.0).collect::<Vec<_>>());
    let ratios: Vec<f64> = o.on.iter().zip(r).map(|(s, x)| x.0 / s.wall).collect();
    println!(
        "| {name} | {run:.1} ms | {recorded:.0} ms | {rep:.1} ms | ×{:.2} | {} of {} |",
        median(&ratios),
        r.len(),
        r.len()
    );
}

fn trace_rows(p: &ReadPath, direct: &Direct, v: &TraceView, sizes: [usize; 2]) {
    println!(
        "| read path on {} crossings, {} participants ({} events, {:.1} MiB of payload JSON) | median | baseline | |",
        v.crossings.len(),
        v.participants.len(),
        direct.events,
        direct.payload_bytes as f64 / (1024.0 * 1024.0)
    );
    println!("| --- | --- | --- | --- |");
    let row = |step: &str, x: &[f64], note: String| {
        println!("| {step} | {:.1} ms | | {note} |", median(x));
    };
    println!(
        "| read the run's events through the POG actor (`trace_show`'s read) | {:.1} ms | baseline | straight from the store, no actor: {:.1} ms; parsing the payloads' JSON alone: {:.1} ms |",
        median(&p.read),
        direct.ms,
        direct.parse_ms
    );
    row("`view::build`", &p.build, String::new());
    row(
        "view MsgPack encode + decode (the control frame's payload)",
        &p.wire,
        String::new(),
    );
    row(
        "`ladder` at 80 columns",
        &p.ladder80,
        format!("{} bytes", sizes[0]),
    );
    row(
        "`ladder` at 200 columns",
        &p.ladder200,
        format!("{} bytes", sizes[1]),
    );
    for (width, total) in [(80, &p.total80), (200, &p.total200)] {
        let t = median(total);
        let verdict = if t <= TRACE_TARGET_MS {
            "met"
        } else {
            "**not met**"
        };
        println!(
            "| **total at {width} columns** (read + build + wire + ladder) | **{t:.1} ms** | | target ≤ {TRACE_TARGET_MS:.0} ms: {verdict} |"
        );
    }
}

async fn bench(program: &Path, state: &Path, runs: usize) {
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (kernel, engine) = boot(program, state).await;
    let workloads = [
        Workload {
            name: "compose_email",
            source: std::fs::read_to_string(repo().join("examples/openings/compose_email.yaml"))
                .expect("read compose_email.yaml"),
            sends: 1,
        },
        Workload {
            name: "fan of 100 echo",
            source: fan(FAN_NODES),
            sends: 0,
        },
    ];
    let mut results = Vec::new();
    let mut sent = 0;
    for w in &workloads {
        let o = overhead(&engine, w, runs).await;
        sent += (2 + 2 * runs) * w.sends;
        assert_eq!(outbox_len(state), sent, "one message per compose_email run");
        let r = replays(&engine, w.name, &o.on).await;
        assert_eq!(outbox_len(state), sent, "a replay sends nothing");
        results.push((w.name, o, r));
    }
    // The crossings of the last recorded compose_email run are the synthetic run's rows.
    let templates: Vec<Value> = engine
        .recorder_events(&results[0].1.on.last().expect("a run").trace_id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::CrossingRecorded)
        .map(|e| e.payload)
        .collect();
    stop(kernel, engine).await;

    let events = synthetic(&templates, SYNTH_TRACE);
    let direct = write_synthetic(&state.join("pog"), events, runs);
    assert_eq!(
        direct.events,
        SYNTH_CROSSINGS + 2,
        "the synthetic run reads back whole"
    );
    let (kernel, engine) = boot(program, state).await;
    match runloop_kernel::trace::control::show(&engine, SYNTH_TRACE).await {
        ControlOutcome::Trace { view } => assert_eq!(view.crossings.len(), SYNTH_CROSSINGS),
        other => panic!("trace_show: {other:?}"),
    }
    let (path, v, sizes) = read_path(&engine, runs).await;
    stop(kernel, engine).await;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "{runs} runs per side, interleaved; /proc/loadavg at the start: {}, at the end: {}",
        load_start.trim(),
        load.trim()
    );
    println!();
    println!("| figure | recording on | recording off (baseline) | difference |");
    println!("| --- | --- | --- | --- |");
    for (name, o, _) in &results {
        overhead_rows(name, o);
    }
    println!();
    println!(
        "| replayed run | recorded run, wall median | its `duration_ms`, median | replay, median | replay / run, median of pairs | identical |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, o, r) in &results {
        replay_row(name, o, r);
    }
    println!();
    trace_rows(&path, &direct, &v, sizes);
    println!();
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let runs = env_or("REPLAY_RUNS", 10);
    assert!(runs >= 1, "REPLAY_RUNS ≥ 1");
    let state = tempfile::tempdir().unwrap();
    seed(&state.path().join("pog"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&program, state.path(), runs));
}
