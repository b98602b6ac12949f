//! The openings engine end to end: real sandboxes, the real POG in a temp dir, the
//! committed bundles (`echo`, `flaky`, `panicker`). Parallel branches overlap; retries
//! wait exactly the seeded backoff; a failed node cancels the rest; cancel and the run's
//! timeout end runs; a run left unfinished by a dead kernel resumes without re-running
//! finished nodes; two runs of one opening run at once.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::options;
use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::runs::actor::backoff_unit;
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_openings::plan::backoff_ms;
use runloop_pog::PogConfig;
use runloop_proto::payloads::{NodeStatus, RunProgress, RunReport, RunStatus};
use serde_json::json;

/// The POG actor's name is registered once per process: one kernel with a POG at a time.
static ONE_POG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bundles_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles")
}

/// Stops a kernel's tree and waits until its POG's name is free for the next test.
async fn stop(kernel: &Kernel) {
    kernel.root().stop(Some("test over".into()));
    while ractor::registry::where_is("runloop.pog").is_some()
        || ractor::registry::where_is("runloop.broker").is_some()
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn engine(tag: &str, pog: &Path) -> (Arc<Kernel>, Arc<Engine>) {
    engine_with(tag, pog, None).await
}

/// The offline model provider (embedded defaults), labelled as such in its answers.
fn offline_broker() -> Arc<Broker> {
    let secrets = SecretResolver::with_env(SecretsConfig::default(), Default::default());
    let clock = Arc::new(runloop_broker::SystemClock);
    Arc::new(Broker::new(ModelsConfig::default(), &secrets, clock).unwrap())
}

async fn engine_with(
    tag: &str,
    pog: &Path,
    broker: Option<Arc<Broker>>,
) -> (Arc<Kernel>, Arc<Engine>) {
    let opts = KernelOptions {
        pog: Some(PogService {
            config: PogConfig::in_dir(pog),
            read_conns: 2,
        }),
        broker,
        ..options(tag)
    };
    let kernel = Arc::new(Kernel::boot(opts).await.unwrap());
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs: vec![bundles_dir()],
            host: RunHost::Daemon,
        },
    );
    (kernel, engine)
}

async fn run(engine: &Engine, yaml: &str) -> (RunReport, Vec<RunProgress>) {
    let mut events = engine.progress();
    let submitted = engine
        .submit(yaml, Path::new("/nonexistent"), &json!({}))
        .await
        .unwrap();
    let mut rx = submitted.report.clone();
    let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.trace_id() == submitted.trace_id {
            seen.push(e);
        }
    }
    (report, seen)
}

fn node<'a>(report: &'a RunReport, id: &str) -> &'a runloop_proto::payloads::NodeReport {
    report.nodes.iter().find(|n| n.id == id).unwrap()
}

const FAN: &str = r#"
version: 0
name: fan
nodes:
  - { id: a, use: "agent:echo" }
  - { id: b, use: "agent:flaky", with: { spin: 30000000 } }
  - { id: c, use: "agent:flaky", with: { spin: 30000000 } }
  - { id: d, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: a.out, to: c.in }
  - { from: b.out, to: d.in }
  - { from: c.out, to: d.in }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_branches_overlap_and_fan_in_gets_an_array_in_edge_order() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("fan", pog.path()).await;
    let (report, events) = run(&engine, FAN).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let span = |id: &str| {
        let start = events.iter().find_map(|e| match e {
            RunProgress::NodeStarted { node, ts_ms, .. } if node == id => Some(*ts_ms),
            _ => None,
        });
        let end = events.iter().find_map(|e| match e {
            RunProgress::NodeFinished { node, ts_ms, .. } if node == id => Some(*ts_ms),
            _ => None,
        });
        (start.unwrap(), end.unwrap())
    };
    let (b0, b1) = span("b");
    let (c0, c1) = span("c");
    assert!(b0 < c1 && c0 < b1, "b {b0}..{b1} and c {c0}..{c1} overlap");
    let d: serde_json::Value =
        serde_json::from_str(node(&report, "d").outputs_json.as_ref().unwrap()).unwrap();
    let arr = d[0][1]["inputs"]["in"].as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["node"], "b");
    assert_eq!(arr[1]["node"], "c");
    assert_eq!(report.result_hash.len(), 64);
    stop(&kernel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_the_seeded_backoff_and_failures_cancel_the_rest() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("retry", pog.path()).await;
    let yaml = r#"
version: 0
name: retry
nodes:
  - id: w
    use: "agent:flaky"
    with: { fail_attempts: 2 }
    retry: { max_attempts: 3, initial_ms: 50, max_ms: 1000, multiplier: 3.0, jitter: 0.5 }
"#;
    let (report, events) = run(&engine, yaml).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(node(&report, "w").attempts, 3);
    // The seed is in the run's record; the waits are exactly the formula's.
    let rec = engine.recorder_events(&report.trace_id).await;
    let seed = u64::from_str_radix(rec[0].payload["seed"].as_str().unwrap(), 16).unwrap();
    let retry = runloop_openings::Retry {
        max_attempts: 3,
        initial_ms: 50,
        max_ms: 1000,
        multiplier: 3.0,
        jitter: 0.5,
    };
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            RunProgress::NodeRetrying { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    let expected: Vec<u64> = (2..=3)
        .map(|n| backoff_ms(&retry, n, backoff_unit(seed, "w", n)))
        .collect();
    assert_eq!(delays, expected);

    // Not enough attempts: the node fails, its successor is cancelled, the run fails.
    let yaml = r#"
version: 0
name: fails
nodes:
  - id: w
    use: "agent:flaky"
    with: { fail_attempts: 5 }
    retry: { max_attempts: 2, initial_ms: 10 }
  - { id: after, use: "agent:echo" }
  - { id: side, use: "agent:panicker" }
edges:
  - { from: w.out, to: after.in }
"#;
    let (report, _) = run(&engine, yaml).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.reason.as_deref().unwrap().contains("node"),
        "{report:?}"
    );
    assert_eq!(node(&report, "after").status, NodeStatus::Cancelled);
    assert_eq!(
        node(&report, "after").attempts,
        0,
        "nothing starts after a failure"
    );
    stop(&kernel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeouts_end_runs() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("cancel", pog.path()).await;
    let slow = r#"
version: 0
name: slow
policy: { timeout_ms: 600000 }
nodes:
  - { id: long, use: "agent:flaky", with: { spin: 2000000000 }, timeout_ms: 600000 }
  - { id: next, use: "agent:echo" }
edges:
  - { from: long.out, to: next.in }
"#;
    let mut events = engine.progress();
    let s = engine
        .submit(slow, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    loop {
        if let RunProgress::NodeStarted { node, .. } = events.recv().await.unwrap()
            && node == "long"
        {
            break;
        }
    }
    engine.cancel(&s.trace_id).unwrap();
    let mut rx = s.report.clone();
    let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(node(&report, "long").status, NodeStatus::Cancelled);
    assert_eq!(node(&report, "next").status, NodeStatus::Cancelled);
    assert_eq!(node(&report, "next").attempts, 0);

    // A per-attempt timeout is retryable; the last one fails the node.
    let per_node = r#"
version: 0
name: node_timeout
nodes:
  - { id: long, use: "agent:flaky", with: { spin: 2000000000 }, timeout_ms: 300, retry: { max_attempts: 2, initial_ms: 1 } }
"#;
    let (report, _) = run(&engine, per_node).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(node(&report, "long").attempts, 2);
    assert!(report.reason.unwrap().contains("timed out after 300 ms"));

    // The whole run's timeout.
    let whole = r#"
version: 0
name: run_timeout
policy: { timeout_ms: 500 }
nodes:
  - { id: long, use: "agent:flaky", with: { spin: 2000000000 } }
"#;
    let (report, _) = run(&engine, whole).await;
    assert_eq!(report.status, RunStatus::TimedOut);
    stop(&kernel).await;
}

/// What a run announces is durable when it is announced: the run does not wait for its
/// records' commits, but at each `node.started`, `node.finished` and `run.finished` event
/// the event log on disk, read through a connection of its own (no commit asked for),
/// already holds the record. So a node anybody saw finish is never run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_announced_step_is_durable_when_announced() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("announced", pog.path()).await;
    let yaml = r#"
version: 0
name: announced
nodes:
  - { id: a, use: "agent:echo", with: { text: "one" } }
  - { id: b, use: "agent:echo" }
  - { id: c, use: "agent:echo" }
  - { id: d, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: b.out, to: c.in }
  - { from: c.out, to: d.in }
"#;
    let mut events = engine.progress();
    let submitted = engine
        .submit(yaml, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    let trace = submitted.trace_id.clone();
    let db = rusqlite::Connection::open_with_flags(
        PogConfig::in_dir(pog.path()).events_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let recorded = |kind: &str, node: Option<&str>| -> u32 {
        db.query_row(
            "SELECT count(*) FROM events WHERE kind = ?1
               AND json_extract(payload, '$.trace_id') = ?2
               AND (?3 IS NULL OR json_extract(payload, '$.node_id') = ?3)",
            rusqlite::params![kind, trace, node],
            |row| row.get(0),
        )
        .unwrap()
    };
    let mut checked = Vec::new();
    loop {
        let event = events.recv().await.unwrap();
        if event.trace_id() != trace {
            continue;
        }
        match &event {
            RunProgress::NodeStarted { node, attempt, .. } => {
                let n = recorded("node.started", Some(node));
                assert_eq!(
                    n, *attempt,
                    "{node} announced started, {n} start(s) on disk"
                );
            }
            RunProgress::NodeFinished { node, .. } => {
                let n = recorded("node.finished", Some(node));
                assert_eq!(n, 1, "{node} announced finished, {n} finish(es) on disk");
            }
            RunProgress::RunFinished { status, .. } => {
                assert_eq!(*status, RunStatus::Succeeded);
                assert_eq!(recorded("run.finished", None), 1, "the end is on disk");
                break;
            }
            _ => continue,
        }
        checked.push(event);
    }
    assert_eq!(
        checked.len(),
        8,
        "four starts and four finishes: {checked:?}"
    );
    stop(&kernel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_run_resumes_without_rerunning_finished_nodes() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let yaml = r#"
version: 0
name: resumable
nodes:
  - { id: first, use: "agent:echo", with: { text: "once" } }
  - { id: second, use: "agent:flaky", with: { spin: 200000000 } }
edges:
  - { from: first.out, to: second.in }
"#;
    let trace_id;
    {
        let (kernel, engine) = engine("resume-a", pog.path()).await;
        let mut events = engine.progress();
        let s = engine
            .submit(yaml, Path::new("/x"), &json!({}))
            .await
            .unwrap();
        trace_id = s.trace_id.clone();
        loop {
            if let RunProgress::NodeStarted { node, .. } = events.recv().await.unwrap()
                && node == "second"
            {
                break;
            }
        }
        // The kernel goes away mid-run as a SIGKILLed daemon would: every actor killed at
        // once, nothing recorded after this moment (a graceful stop would wait for
        // `second`'s invoke and record its end). What was announced is durable already:
        // `first` finished, `second` started.
        drop(engine);
        kernel.root().kill();
        while ractor::registry::where_is("runloop.pog").is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let (kernel, engine) = engine("resume-b", pog.path()).await;
    let listed = engine.list(10).await.unwrap();
    assert!(listed.iter().any(|r| r.trace_id == trace_id));
    let (resumed, failed) = engine.resume_unfinished().await;
    assert_eq!(
        resumed,
        vec![trace_id.clone()],
        "failed: {failed:?} {listed:?}"
    );
    let mut rx = engine.watch(&trace_id).await.unwrap();
    let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let events = engine.recorder_events(&trace_id).await;
    let starts = |id: &str| {
        events
            .iter()
            .filter(|e| e.kind == runloop_pog::EventKind::NodeStarted && e.payload["node_id"] == id)
            .count()
    };
    assert_eq!(starts("first"), 1, "a finished node is not run again");
    assert_eq!(starts("second"), 2, "the node that was running runs again");
    // The record names who continued it, so `rlp runs` elsewhere sees it owned.
    let resumed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == runloop_pog::EventKind::RunResumed)
        .collect();
    assert_eq!(resumed.len(), 1, "{events:?}");
    assert_eq!(resumed[0].payload["host"], "daemon");
    assert_eq!(resumed[0].payload["owner_pid"], std::process::id());
    let first = events
        .iter()
        .find(|e| e.kind == runloop_pog::EventKind::RunStarted)
        .unwrap();
    assert_ne!(resumed[0].payload["run_id"], first.payload["run_id"]);
    assert_eq!(report.started_at_ms, first.ts_ms, "the run keeps its start");
    stop(&kernel).await;
}

/// A crash of the run's actor (not of the kernel): its supervisor starts a new one, which
/// continues from the record. Nothing the first one announced is run again, and its events
/// are all out before the new one's `run.started`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_run_actor_continues_the_run_from_its_record() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let yaml = r#"
version: 0
name: restartable
nodes:
  - { id: first, use: "agent:echo", with: { text: "once" } }
  - { id: second, use: "agent:flaky", with: { spin: 200000000 } }
  - { id: third, use: "agent:echo", with: { text: "after" } }
edges:
  - { from: first.out, to: second.in }
  - { from: second.out, to: third.in }
"#;
    let (kernel, engine) = engine("restart-run", pog.path()).await;
    let mut events = engine.progress();
    let s = engine
        .submit(yaml, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let event = events.recv().await.unwrap();
        let second_started =
            matches!(&event, RunProgress::NodeStarted { node, .. } if node == "second");
        seen.push(event);
        if second_started {
            break;
        }
    }
    let first_actor = engine.run_actor(&s.trace_id).expect("the run is live");
    first_actor.kill();
    let mut report = s.report.clone();
    let wait = std::time::Duration::from_secs(60);
    let report = tokio::time::timeout(wait, report.wait_for(Option::is_some))
        .await
        .expect("the run's supervisor restarts its killed actor, which finishes the run")
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let restarted_at = seen
        .iter()
        .rposition(|e| matches!(e, RunProgress::RunStarted { .. }))
        .unwrap();
    assert!(
        restarted_at > 0,
        "the new actor announces the run again: {seen:?}"
    );
    let starts = |from: usize, id: &str| {
        seen[from..]
            .iter()
            .filter(|e| matches!(e, RunProgress::NodeStarted { node, .. } if node == id))
            .count()
    };
    assert_eq!(starts(restarted_at, "first"), 0, "{seen:?}");
    assert_eq!(starts(restarted_at, "second"), 1, "{seen:?}");
    assert_eq!(starts(restarted_at, "third"), 1, "{seen:?}");
    let recorded = engine.recorder_events(&s.trace_id).await;
    let count = |kind: runloop_pog::EventKind, id: &str| {
        recorded
            .iter()
            .filter(|e| e.kind == kind && e.payload["node_id"] == id)
            .count()
    };
    use runloop_pog::EventKind::{NodeFinished, NodeStarted};
    assert_eq!(
        count(NodeStarted, "first"),
        1,
        "a finished node is not run again"
    );
    assert_eq!(count(NodeFinished, "first"), 1);
    assert_eq!(
        count(NodeStarted, "second"),
        2,
        "the running node runs again"
    );
    assert_eq!(
        count(NodeFinished, "second"),
        1,
        "the dead actor's attempt is not recorded"
    );
    assert_eq!(count(NodeFinished, "third"), 1);
    assert!(
        report
            .nodes
            .iter()
            .all(|n| n.status == NodeStatus::Succeeded),
        "{report:?}"
    );
    stop(&kernel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_opening_run_at_once() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("two", pog.path()).await;
    let yaml = r#"
version: 0
name: twice
nodes:
  - { id: n, use: "agent:flaky", with: { spin: 100000000 } }
"#;
    let mut events = engine.progress();
    let a = engine
        .submit(yaml, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    let b = engine
        .submit(yaml, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    let mut started = 0;
    while started < 2 {
        if let RunProgress::NodeStarted { .. } = events.recv().await.unwrap() {
            started += 1;
        }
    }
    // Both runs' `n` started before either finished. That each run gets its own instance
    // rests on agents being keyed by (run, name); `groundwork.rs` asserts that directly.
    for s in [a, b] {
        let mut rx = s.report.clone();
        let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
        assert_eq!(report.status, RunStatus::Succeeded);
    }
    // Finished runs leave no agents behind (a daemon would otherwise hit AGENTS_MAX).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !kernel.agents().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            kernel.agents().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop(&kernel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_refuse_the_model_call_and_fail_the_node_naming_the_budget() {
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine_with("budget", pog.path(), Some(offline_broker())).await;
    // Within budget: the call is made (offline provider) and its tokens counted.
    let fits = r#"
version: 0
name: fits
policy: { budget_tokens: 100000 }
nodes:
  - { id: a, use: "agent:flaky", with: { model_max_tokens: 16 }, budget_tokens: 50000 }
"#;
    let (report, _) = run(&engine, fits).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let out: serde_json::Value =
        serde_json::from_str(node(&report, "a").outputs_json.as_ref().unwrap()).unwrap();
    assert!(out[0][1]["model_tokens_out"].as_u64().is_some(), "{out}");

    // The node's own budget is too small for the call: refused before it is made.
    let node_budget = r#"
version: 0
name: node_budget
policy: { budget_tokens: 100000 }
nodes:
  - { id: a, use: "agent:flaky", with: { model_max_tokens: 64 }, budget_tokens: 8 }
  - { id: b, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
"#;
    let (report, _) = run(&engine, node_budget).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let a = node(&report, "a");
    assert_eq!(a.status, NodeStatus::Failed);
    assert_eq!(a.attempts, 1, "a budget refusal is not retried");
    let why = a.reason.as_deref().unwrap();
    assert!(why.contains("node budget: needs"), "{why}");
    assert!(why.contains("of 8 already used"), "{why}");
    assert_eq!(node(&report, "b").status, NodeStatus::Cancelled);

    // The run's budget: each prompt is about 16 tokens; a reserves 16 + 30 of the 60 and
    // uses at least its prompt, so b's 16 + 40 no longer fits.
    let run_budget = r#"
version: 0
name: run_budget
policy: { budget_tokens: 60 }
nodes:
  - { id: a, use: "agent:flaky", with: { model_max_tokens: 30 } }
  - { id: b, use: "agent:flaky", with: { model_max_tokens: 40 } }
edges:
  - { from: a.out, to: b.in }
"#;
    let (report, _) = run(&engine, run_budget).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert_eq!(
        node(&report, "a").status,
        NodeStatus::Succeeded,
        "{report:?}"
    );
    let why = node(&report, "b").reason.as_deref().unwrap();
    assert!(why.contains("run budget: needs"), "{why}");
    assert!(why.contains("of 60 already used"), "{why}");
    // A finished run's budgets are forgotten.
    assert!(kernel.run_budgets().is_empty());
    stop(&kernel).await;
}

/// A `subscribe` stream carries every run's progress as it happens (what agtop's plan
/// and log panes show), `run.started` with the DAG's edges, up to `run.finished`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_subscriber_sees_each_runs_progress_with_its_edges() {
    use runloop_client::{StatusItem, subscribe};
    use runloop_kernel::control::{ControlLimits, ControlPlane, PeerPolicy, serve};
    let _one = ONE_POG.lock().await;
    let pog = tempfile::tempdir().unwrap();
    let (kernel, engine) = engine("sub-progress", pog.path()).await;
    let plane = Arc::new(ControlPlane::with_engine(
        engine.clone(),
        PeerPolicy::same_uid().unwrap(),
        ControlLimits::default(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop_server, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, plane.clone(), rx));
    let mut sub = subscribe(&path, "sub-progress", 100).await.unwrap();
    // The stream is open once its first snapshot arrives; a run submitted after that is
    // seen from its start.
    loop {
        if let StatusItem::Snapshot(_) = sub.next().await.unwrap().unwrap() {
            break;
        }
    }
    // The run goes on its own task: a subscriber that stops reading is cut off by the
    // daemon's write timeout, so this one keeps reading.
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { run(&engine, FAN).await.0 }
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(seen.last(), Some(RunProgress::RunFinished { .. })) {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("run.finished within 30 s")
            .unwrap()
            .expect("the stream goes on");
        if let StatusItem::Progress(event) = item {
            seen.push(*event);
        }
    }
    let report = running.await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(seen.iter().all(|e| e.trace_id() == report.trace_id));
    let RunProgress::RunStarted { nodes, edges, .. } = &seen[0] else {
        panic!("first: {:?}", seen[0]);
    };
    assert_eq!(nodes, &["a", "b", "c", "d"]);
    let pair = |a: &str, b: &str| [a.to_owned(), b.to_owned()];
    assert_eq!(
        edges,
        &[
            pair("a", "b"),
            pair("a", "c"),
            pair("b", "d"),
            pair("c", "d")
        ]
    );
    let finished = seen
        .iter()
        .filter(|e| matches!(e, RunProgress::NodeFinished { .. }))
        .count();
    assert_eq!(finished, 4, "{seen:?}");
    // A monitor that starts late asks for the run's state: the same plan, rebuilt from
    // the record, with every node's end and the run's.
    let reply = runloop_client::request(
        &path,
        "show-1",
        runloop_proto::payloads::ControlCommand::RunShow {
            trace_id: report.trace_id.clone(),
        },
    )
    .await
    .unwrap();
    let runloop_proto::payloads::ControlOutcome::RunState { events } = reply.outcome else {
        panic!("run_show: {:?}", reply.outcome);
    };
    let mut first = events[0].clone();
    if let RunProgress::RunStarted { ts_ms, .. } = &mut first {
        // The record's time of the start, not the engine's: not compared.
        *ts_ms = 0;
    }
    assert_eq!(
        first,
        RunProgress::RunStarted {
            ts_ms: 0,
            trace_id: report.trace_id.clone(),
            run_id: report.run_id.clone(),
            opening: "fan".into(),
            nodes: nodes.clone(),
            edges: edges.clone(),
            resumed: false,
        }
    );
    let ends: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RunProgress::NodeFinished { node, status, .. } if *status == NodeStatus::Succeeded => {
                Some(node.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 4, "{events:?}");
    assert!(
        matches!(
            events.last(),
            Some(RunProgress::RunFinished {
                status: RunStatus::Succeeded,
                ..
            })
        ),
        "{events:?}"
    );
    let unknown = runloop_client::request(
        &path,
        "show-2",
        runloop_proto::payloads::ControlCommand::RunShow {
            trace_id: "0".repeat(32),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(
            unknown.outcome,
            runloop_proto::payloads::ControlOutcome::Failed { .. }
        ),
        "{:?}",
        unknown.outcome
    );
    drop(sub);
    stop_server.send(true).unwrap();
    server.await.unwrap();
    stop(&kernel).await;
}
