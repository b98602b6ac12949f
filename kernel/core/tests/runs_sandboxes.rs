//! No run leaves a sandbox behind: a finished node's sandbox is stopped (given back to the
//! kernel's warm pool, within its bound) while the run goes on (deferred only while another
//! node's agent starts), and every sandbox and agent cgroup of a run is gone or held by
//! the pool after the run succeeds, fails, is cancelled, passes its deadline, or the kernel
//! stops under it — and gone once the pool closes. Real sandboxes, real cgroups (where the machine
//! has them), the committed `echo` and `flaky` bundles, an unrecorded engine; one test function, so that this
//! process runs nothing else that could own a sandbox.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::options;
use runloop_kernel::Kernel;
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_proto::payloads::{RunProgress, RunStatus};
use serde_json::json;

/// How long the stops of a run's sandboxes may take after its end.
const CLEAN_WAIT_MS: u64 = 15_000;

fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles")
}

/// `(pid, ppid, comm, state)` of every process.
fn processes() -> Vec<(u32, u32, String, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, comm, state));
    }
    out
}

/// The sandbox-host processes descended from this test process (zombies included: a
/// sandbox not reaped is not gone).
fn sandboxes() -> Vec<u32> {
    let all = processes();
    let mut ours = vec![std::process::id()];
    let mut found = Vec::new();
    let mut i = 0;
    while i < ours.len() {
        for (pid, ppid, comm, _) in &all {
            if *ppid == ours[i] && !ours.contains(pid) {
                ours.push(*pid);
                if comm.starts_with("runloop-sandbox") {
                    found.push(*pid);
                }
            }
        }
        i += 1;
    }
    found
}

/// The agent groups under this kernel's parent group (`runloop-k<pid>`) in every v1
/// hierarchy this process belongs to (empty where the machine has no cgroups).
fn agent_cgroups() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let parent = format!("runloop-k{}", std::process::id());
    let mut out = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        for controller in controllers.split(',').filter(|c| !c.is_empty()) {
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller.trim_start_matches("name="))
                .join(path.trim_start_matches('/'))
                .join(&parent);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// The sandboxes and agent groups of this process that the kernel's warm pool does not
/// hold (a run node's idle sandbox is given back to it, with its group, and spares wait
/// there too).
fn outside_pool(kernel: &Kernel) -> (Vec<u32>, Vec<PathBuf>) {
    let (pids, groups) = match kernel.warm() {
        Some(pool) => (pool.waiting_pids(), pool.waiting_groups()),
        None => (Vec::new(), Vec::new()),
    };
    let left = sandboxes()
        .into_iter()
        .filter(|p| !pids.contains(p))
        .collect();
    let named = |dir: &PathBuf| {
        groups
            .iter()
            .any(|g| dir.file_name() == Path::new(g).file_name())
    };
    let left_groups = agent_cgroups().into_iter().filter(|d| !named(d)).collect();
    (left, left_groups)
}

/// Waits until no sandbox and no agent group of this process is left outside the warm
/// pool, and the pool within its bound; panics naming what is, past [`CLEAN_WAIT_MS`].
async fn assert_clean(kernel: &Kernel, after: &str) {
    let started = Instant::now();
    loop {
        let (left, groups) = outside_pool(kernel);
        let waiting = kernel.warm().map_or(0, |p| p.stats().waiting);
        assert!(
            waiting <= runloop_agent_actor::warm::WARM_MAX_DEFAULT as u64,
            "after {after}: {waiting} warm sandboxes"
        );
        if left.is_empty() && groups.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_millis(CLEAN_WAIT_MS),
            "after {after}: sandboxes {left:?} and agent groups {groups:?} are left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until exactly `count` sandboxes run outside the warm pool, while `what` still
/// runs.
async fn wait_sandboxes(kernel: &Kernel, count: usize, what: &str) {
    let started = Instant::now();
    while outside_pool(kernel).0.len() != count {
        assert!(
            started.elapsed() < Duration::from_millis(CLEAN_WAIT_MS),
            "{what}: {:?} sandboxes outside the warm pool, expected {count}",
            outside_pool(kernel).0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn boot() -> (Arc<Kernel>, Arc<Engine>) {
    let kernel = Arc::new(Kernel::boot(options("sandboxes")).await.unwrap());
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs: vec![bundles_dir()],
            host: RunHost::Daemon,
        },
    );
    (kernel, engine)
}

/// Submits `yaml` and waits for its node `long` to start (the nodes before it finished).
async fn run_until_long(engine: &Engine, yaml: &str) -> runloop_kernel::runs::Submitted {
    let mut events = engine.progress();
    let submitted = engine
        .submit(yaml, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    loop {
        if let RunProgress::NodeStarted { node, .. } = events.recv().await.unwrap()
            && node == "long"
        {
            return submitted;
        }
    }
}

async fn report(submitted: &runloop_kernel::runs::Submitted) -> RunStatus {
    let mut rx = submitted.report.clone();
    rx.wait_for(Option::is_some)
        .await
        .unwrap()
        .clone()
        .map(|r| {
            eprintln!("REPORT {r:?}");
            r
        })
        .unwrap()
        .status
}

/// Three echo nodes, then `long` (a spinning `flaky`), then one more echo; `policy` is
/// spliced into the opening's policy.
fn chain_with_long(policy: &str) -> String {
    format!(
        r#"
version: 0
name: long_chain
policy: {{ {policy} }}
nodes:
  - {{ id: e0, use: "agent:echo" }}
  - {{ id: e1, use: "agent:echo" }}
  - {{ id: e2, use: "agent:echo" }}
  - {{ id: long, use: "agent:flaky", with: {{ spin: 2000000000 }}, timeout_ms: 600000 }}
  - {{ id: after, use: "agent:echo" }}
edges:
  - {{ from: e0.out, to: e1.in }}
  - {{ from: e1.out, to: e2.in }}
  - {{ from: e2.out, to: long.in }}
  - {{ from: long.out, to: after.in }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_run_leaves_a_sandbox_or_cgroup_behind() {
    let (kernel, engine) = boot().await;
    assert_clean(&kernel, "boot").await;

    // Succeeded: a chain, and a fan-out wider than max_parallel.
    let mut chain = String::from("version: 0\nname: chain\nnodes:\n");
    for i in 0..6 {
        chain.push_str(&format!("  - {{ id: n{i}, use: \"agent:echo\" }}\n"));
    }
    chain.push_str("edges:\n");
    for i in 1..6 {
        chain.push_str(&format!("  - {{ from: n{}.out, to: n{i}.in }}\n", i - 1));
    }
    let s = engine
        .submit(&chain, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    assert_eq!(report(&s).await, RunStatus::Succeeded);
    assert_clean(&kernel, "a chain succeeded").await;
    let mut fan = String::from("version: 0\nname: fan\npolicy: { max_parallel: 2 }\nnodes:\n");
    fan.push_str("  - { id: root, use: \"agent:echo\" }\n");
    for i in 0..5 {
        fan.push_str(&format!("  - {{ id: b{i}, use: \"agent:echo\" }}\n"));
    }
    fan.push_str("edges:\n");
    for i in 0..5 {
        fan.push_str(&format!("  - {{ from: root.out, to: b{i}.in }}\n"));
    }
    let s = engine
        .submit(&fan, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    assert_eq!(report(&s).await, RunStatus::Succeeded);
    assert_clean(&kernel, "a fan-out succeeded").await;

    // Failed: a node that fails its attempt, no retry.
    let failing = r#"
version: 0
name: failing
nodes:
  - { id: e0, use: "agent:echo" }
  - { id: boom, use: "agent:flaky", with: { fail_attempts: 5 }, retry: { max_attempts: 1 } }
  - { id: after, use: "agent:echo" }
edges:
  - { from: e0.out, to: boom.in }
  - { from: boom.out, to: after.in }
"#;
    let s = engine
        .submit(failing, Path::new("/x"), &json!({}))
        .await
        .unwrap();
    assert_eq!(report(&s).await, RunStatus::Failed);
    assert_clean(&kernel, "a run failed").await;

    // Cancelled: the finished nodes' sandboxes are stopped while the run still runs (only
    // `long`'s is left), then the cancel stops that one.
    let s = run_until_long(&engine, &chain_with_long("timeout_ms: 600000")).await;
    wait_sandboxes(&kernel, 1, "while long runs").await;
    // The cgroup check sees groups where the machine has them (else it could not fail).
    if !matches!(
        runloop_sandbox::cgroup::detect(),
        runloop_sandbox::CgroupSupport::Unavailable(_)
    ) {
        assert!(!agent_cgroups().is_empty(), "long's group is found");
    }
    engine.cancel(&s.trace_id).unwrap();
    assert_eq!(report(&s).await, RunStatus::Cancelled);
    assert_clean(&kernel, "a run was cancelled").await;

    // Timed out (`long` spins 2.2 s on a quiet Intel Xeon of this kind, more elsewhere).
    let s = run_until_long(&engine, &chain_with_long("timeout_ms: 1500")).await;
    assert_eq!(report(&s).await, RunStatus::TimedOut);
    assert_clean(&kernel, "a run timed out").await;

    // Sequential runs reuse the sandboxes the finished ones gave back.
    let stats = kernel
        .warm()
        .expect("warm sandboxes are on by default")
        .stats();
    assert!(stats.given > 0 && stats.taken > 0, "{stats:?}");

    // The kernel stops under a running run; closing the pool (as `Kernel::shutdown`
    // does) ends the waiting sandboxes and their groups too.
    let _s = run_until_long(&engine, &chain_with_long("timeout_ms: 600000")).await;
    drop(engine);
    kernel.root().stop(Some("test over".into()));
    let pool = kernel.warm().unwrap().clone();
    tokio::task::spawn_blocking(move || pool.close())
        .await
        .unwrap();
    assert_clean(&kernel, "the kernel stopped").await;
    let (left, groups) = (sandboxes(), agent_cgroups());
    assert!(
        left.is_empty() && groups.is_empty(),
        "after the pool closed: sandboxes {left:?}, groups {groups:?}"
    );
}
