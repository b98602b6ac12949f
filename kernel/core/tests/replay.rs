//! Recording and replay end to end: real sandboxes, the real POG in a temp dir, the
//! committed bundles and the offline model provider. Every crossing of a run is recorded;
//! runs of many shapes (chains, fan-out, retries, skipped nodes, failures, every host call)
//! replay identically in a kernel booted afresh on the same POG; a swapped bundle is named
//! with its digest and the node's divergence; an edited recording fails the POG's
//! verification at that event.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::options;
use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use runloop_proto::payloads::{ReplayReport, RunReport, RunStatus};
use serde_json::{Value, json};

/// The POG actor's name is registered once per process: one kernel with a POG at a time.
static ONE_POG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles")
}

fn offline_broker() -> Arc<Broker> {
    let secrets = SecretResolver::with_env(SecretsConfig::default(), Default::default());
    let clock = Arc::new(runloop_broker::SystemClock);
    Arc::new(Broker::new(ModelsConfig::default(), &secrets, clock).unwrap())
}

async fn boot(pog: &Path, search: Vec<PathBuf>) -> (Arc<Kernel>, Arc<Engine>) {
    let opts = KernelOptions {
        pog: Some(PogService {
            config: PogConfig::in_dir(pog),
            read_conns: 2,
        }),
        broker: Some(offline_broker()),
        ..options("replay")
    };
    let kernel = Arc::new(Kernel::boot(opts).await.unwrap());
    let mut search_dirs = search;
    search_dirs.push(bundles_dir());
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs,
            host: RunHost::Daemon,
        },
    );
    (kernel, engine)
}

async fn stop(kernel: &Kernel) {
    kernel.root().stop(Some("test over".into()));
    while ractor::registry::where_is("runloop.pog").is_some()
        || ractor::registry::where_is("runloop.broker").is_some()
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn run(engine: &Engine, yaml: &str, params: Value) -> RunReport {
    let submitted = engine
        .submit(yaml, Path::new("/nonexistent"), &params)
        .await
        .unwrap();
    let mut rx = submitted.report.clone();
    rx.wait_for(Option::is_some).await.unwrap().clone().unwrap()
}

async fn replay(engine: &Arc<Engine>, trace: &str) -> ReplayReport {
    runloop_kernel::trace::replay(engine, trace).await.unwrap()
}

const CHAIN: &str = r#"
version: 0
name: chain
params:
  word: { type: string, default: "hello" }
nodes:
  - { id: a, use: "agent:echo", with: { word: "{{params.word}}" } }
  - { id: b, use: "agent:echo" }
  - { id: c, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: b.out, to: c.in }
"#;

const FAN: &str = r#"
version: 0
name: fan
nodes:
  - { id: a, use: "agent:echo" }
  - { id: b, use: "agent:flaky", with: { spin: 1000 } }
  - { id: c, use: "agent:flaky", with: { spin: 2000 } }
  - { id: d, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: a.out, to: c.in }
  - { from: b.out, to: d.in }
  - { from: c.out, to: d.in }
"#;

const RETRY: &str = r#"
version: 0
name: retry
params:
  fails: { type: integer, default: 2 }
nodes:
  - id: f
    use: "agent:flaky"
    with: { fail_attempts: "{{params.fails}}" }
    retry: { max_attempts: 4, initial_ms: 5, max_ms: 20 }
  - { id: g, use: "agent:echo" }
edges:
  - { from: f.out, to: g.in }
"#;

const SKIP: &str = r#"
version: 0
name: skip
nodes:
  - { id: a, use: "agent:echo", with: { go: false } }
  - { id: b, use: "agent:echo" }
  - { id: c, use: "agent:echo" }
edges:
  - { from: a.out.with.go == true, to: b.in }
  - { from: a.out, to: c.in }
"#;

const HOSTCALLS: &str = r#"
version: 0
name: every_call
nodes:
  - { id: h, use: "agent:hostcalls" }
  - { id: e, use: "agent:echo" }
edges:
  - { from: h.out, to: e.in }
"#;

const FAILS: &str = r#"
version: 0
name: fails
nodes:
  - { id: a, use: "agent:echo" }
  - { id: p, use: "agent:panicker" }
edges:
  - { from: a.out, to: p.in }
"#;

/// Twenty runs of six shapes: recorded, then replayed in a kernel booted afresh on the
/// same POG (as after a daemon restart): every node identical, no live service asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_recorded_runs_replay_identically_after_a_restart() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = boot(pog.path(), Vec::new()).await;
    let mut runs: Vec<(String, RunStatus)> = Vec::new();
    let mut plan: Vec<(&str, Value)> = Vec::new();
    for word in [
        "hello", "bonjour", "hallo", "ciao", "hola", "ahoj", "hej", "moi",
    ] {
        plan.push((CHAIN, json!({ "word": word })));
    }
    for _ in 0..3 {
        plan.push((FAN, json!({})));
    }
    for fails in [0, 1, 2, 3] {
        plan.push((RETRY, json!({ "fails": fails })));
    }
    plan.push((SKIP, json!({})));
    plan.push((SKIP, json!({})));
    plan.push((HOSTCALLS, json!({})));
    plan.push((HOSTCALLS, json!({})));
    plan.push((FAILS, json!({})));
    assert_eq!(plan.len(), 20);
    for (yaml, params) in &plan {
        let report = run(&engine, yaml, params.clone()).await;
        runs.push((report.trace_id.clone(), report.status));
    }
    // The shapes really happened: retries, a skip, a failure.
    assert_eq!(
        runs.iter()
            .filter(|(_, s)| *s == RunStatus::Succeeded)
            .count(),
        19,
        "{runs:?}"
    );
    let (written, failed) = engine.crossings().counts();
    assert!(written > 200, "crossings recorded: {written}");
    assert_eq!(failed, 0);
    stop(&kernel).await;

    let (kernel, engine) = boot(pog.path(), Vec::new()).await;
    for (trace, _) in &runs {
        let r = replay(&engine, trace).await;
        assert!(r.identical, "{trace}: {r:#?}");
        assert_eq!(r.effects_performed, 0);
        assert!(r.nodes.iter().any(|n| n.invokes > 0), "{r:#?}");
    }
    // The retried run replays every attempt, failures included.
    let retried = &runs[8 + 3 + 2].0;
    let r = replay(&engine, retried).await;
    let f = r.nodes.iter().find(|n| n.id == "f").unwrap();
    assert_eq!(f.invokes, 3, "{r:#?}");
    // The skipped node is named, with nothing to replay.
    let skipped = &runs[8 + 3 + 4].0;
    let r = replay(&engine, skipped).await;
    let b = r.nodes.iter().find(|n| n.id == "b").unwrap();
    assert_eq!(b.invokes, 0);
    assert!(b.reason.as_deref().unwrap().contains("skipped"), "{b:?}");
    // Every host call of `hostcalls` was answered from the recording.
    let every = &runs[8 + 3 + 4 + 2].0;
    let r = replay(&engine, every).await;
    let h = r.nodes.iter().find(|n| n.id == "h").unwrap();
    assert_eq!(h.host_calls, 8, "{r:#?}");
    stop(&kernel).await;
}

/// The ladder's data: participants and crossings of a run with model, kb and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_view_has_every_participant_and_numbered_crossings() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = boot(pog.path(), Vec::new()).await;
    let report = run(&engine, HOSTCALLS, json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let retried = run(&engine, RETRY, json!({"fails": 1})).await;
    for (trace, want) in [
        (
            &report.trace_id,
            &[
                "run.submit",
                "agent.invoke",
                "clock.now",
                "random.bytes",
                "log",
                "model.complete",
                "model.embed",
                "kb.query",
                "kb.write_event",
                "confirm.request",
                "pog.write node.started",
                "pog.write node.finished",
                "pog.write run.finished",
                "run.report",
            ][..],
        ),
        (
            &retried.trace_id,
            &["node.retry", "agent.invoke", "run.report"][..],
        ),
    ] {
        let ControlOutcomeTrace(view) = show(&engine, trace).await;
        let kinds: Vec<&str> = view.crossings.iter().map(|c| c.kind.as_str()).collect();
        for k in want {
            assert!(kinds.contains(k), "{k} missing from {kinds:?}");
        }
        for (i, c) in view.crossings.iter().enumerate() {
            assert_eq!(c.seq, i as u64);
            assert!(c.end_ms >= c.start_ms);
            assert!(view.participants.iter().any(|p| p.id == c.from), "{c:?}");
            assert!(view.participants.iter().any(|p| p.id == c.to), "{c:?}");
        }
        assert_eq!(view.status, "succeeded");
    }
    let ControlOutcomeTrace(view) = show(&engine, &report.trace_id).await;
    let ids: Vec<&str> = view.participants.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "rlp", "run", "agent:h", "agent:e", "broker", "pog", "gate", "kernel"
        ]
    );
    // The invoke of `e` comes after the last host call of `h` (it needs h's output).
    let last_h = view
        .crossings
        .iter()
        .rposition(|c| c.from == "agent:h")
        .unwrap();
    let invoke_e = view
        .crossings
        .iter()
        .position(|c| c.to == "agent:e" && c.kind == "agent.invoke")
        .unwrap();
    assert!(last_h < invoke_e);
    stop(&kernel).await;
}

struct ControlOutcomeTrace(runloop_proto::payloads::TraceView);

async fn show(engine: &Engine, trace: &str) -> ControlOutcomeTrace {
    match runloop_kernel::trace::control::show(engine, trace).await {
        runloop_proto::payloads::ControlOutcome::Trace { view } => ControlOutcomeTrace(view),
        other => panic!("{other:?}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A bundle swapped after the run: its digest is named, and the node diverges at the
/// first host call the new module does not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_bundle_is_named_and_the_node_diverges_at_its_call() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let agents = tempfile::tempdir().unwrap();
    // The run's `hostcalls` bundle lives in its own directory…
    copy_dir(
        &bundles_dir().join("hostcalls"),
        &agents.path().join("hostcalls"),
    );
    let (kernel, engine) = boot(pog.path(), vec![agents.path().to_owned()]).await;
    let report = run(&engine, HOSTCALLS, json!({})).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let before = replay(&engine, &report.trace_id).await;
    assert!(before.identical, "{before:#?}");
    // …and is then rebuilt as a different module (the echo agent's wasm and manifest).
    let dir = agents.path().join("hostcalls");
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&bundles_dir().join("echo"), &dir);
    let after = replay(&engine, &report.trace_id).await;
    assert!(!after.identical);
    let h = after.nodes.iter().find(|n| n.id == "h").unwrap();
    let (recorded, now) = h.bundle_changed.clone().expect("digest change named");
    assert_ne!(recorded, now);
    let d = h.diverged_at.clone().expect("diverged");
    assert_eq!((d.invoke, d.call), (0, 1));
    assert_eq!(d.recorded, "clock.now");
    assert_eq!(d.got, "end");
    assert!(
        h.reason
            .as_deref()
            .unwrap()
            .starts_with("node h diverged at host call 1: recorded clock.now, got end"),
        "{h:?}"
    );
    // The untouched node is still identical.
    assert!(after.nodes.iter().find(|n| n.id == "e").unwrap().identical);
    stop(&kernel).await;
}

/// A module that makes the same (no) host calls but answers differently: no divergence,
/// the output differs, and the first differing output is shown as a diff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_output_is_shown_as_a_diff() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let agents = tempfile::tempdir().unwrap();
    copy_dir(&bundles_dir().join("echo"), &agents.path().join("echo"));
    let (kernel, engine) = boot(pog.path(), vec![agents.path().to_owned()]).await;
    let report = run(&engine, CHAIN, json!({"word": "diff"})).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    let dir = agents.path().join("echo");
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&bundles_dir().join("flaky"), &dir);
    let r = replay(&engine, &report.trace_id).await;
    assert!(!r.identical);
    let a = r.nodes.iter().find(|n| n.id == "a").unwrap();
    assert!(a.bundle_changed.is_some(), "{a:?}");
    assert!(a.diverged_at.is_none(), "{a:?}");
    assert_ne!(a.replayed_hash, a.recorded_hash);
    assert!(!a.replayed_hash.is_empty());
    let diff = a.diff.as_deref().expect("a diff");
    assert!(diff.starts_with("--- recorded\n+++ replayed"), "{diff}");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("with")),
        "{diff}"
    );
    stop(&kernel).await;
}

/// Editing a recorded crossing in the SQLite file behind the store's back fails the POG's
/// verification at exactly that event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_recording_fails_verification_at_that_event() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = boot(pog.path(), Vec::new()).await;
    let report = run(&engine, CHAIN, json!({"word": "edit"})).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    stop(&kernel).await;
    let cfg = PogConfig::in_dir(pog.path());
    assert!(runloop_pog::verify::verify(&cfg).unwrap().ok());
    let conn = rusqlite::Connection::open(cfg.events_path()).unwrap();
    let seq: i64 = conn
        .query_row(
            "SELECT seq FROM events WHERE kind = 'crossing.recorded' AND payload LIKE '%agent.invoke%' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update;")
        .unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET payload = replace(payload, '\"status\":\"ok\"', '\"status\":\"error\"') WHERE seq = ?1",
            [seq],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let verdict = runloop_pog::verify::verify(&cfg).unwrap();
    let bad = verdict.first_bad.expect("the edit is found");
    assert_eq!(bad.seq, seq as u64, "{bad:?}");
}
