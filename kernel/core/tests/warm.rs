//! Warm sandboxes (`runloop_agent_actor::warm`) in a real kernel: real sandbox-host
//! processes, real cgroups (root, this machine), the committed `echo` bundle. A run's
//! node gives its idle sandbox back and the next node of the same module takes it with its
//! group, renamed; a restart after SIGKILL takes the spare; idle ones end on the
//! injected clock; different limits never share; a full pool refuses (and counts) a
//! sandbox given back; `runtime.warm_sandboxes: 0` turns it off; shutdown leaves nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runloop_actors::names::{AgentName, OpeningId};
use runloop_agent_actor::warm::IDLE_MS;
use runloop_kernel::Kernel;
use runloop_kernel::agents::StartOptions;
use runloop_proto::payloads::{AgentInput, SandboxLimits};

mod common;
use common::{bundle, options};

/// Longest wait for a process or pool change the kernel makes in the background.
const WAIT_MS: u64 = 10_000;

fn name(s: &str) -> AgentName {
    AgentName::new(s).unwrap()
}

fn input(text: &str) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: runloop_proto::json::json_to_msgpack(&serde_json::json!({ "text": text }), "in")
            .unwrap(),
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn cgroup_dir(path: &str) -> PathBuf {
    if Path::new("/sys/fs/cgroup/memory").exists() {
        PathBuf::from(format!("/sys/fs/cgroup/memory/{path}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{path}"))
    }
}

/// The group `pid` is in, in the memory hierarchy (v1) or the unified one (v2).
fn group_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers.split(',').any(|c| c == "memory") || controllers.is_empty())
                .then(|| path.trim_start_matches('/').to_owned())
        })
        .unwrap_or_default()
}

/// The warm pool's counters as the kernel's status gives them (with the kernel process).
async fn warm_in_status(kernel: &Kernel) -> Option<runloop_proto::payloads::WarmInfo> {
    fn find(
        node: &runloop_proto::payloads::ActorNode,
    ) -> Option<&runloop_proto::payloads::ActorNode> {
        if node.name == "metrics" {
            return Some(node);
        }
        node.children.iter().find_map(find)
    }
    let root = kernel.status().await;
    match &find(&root).expect("the metrics actor is in the tree").info {
        Some(runloop_proto::payloads::ActorInfo::Kernel { warm, .. }) => *warm,
        other => panic!("the metrics actor says {other:?}"),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_millis(WAIT_MS),
            "waited {WAIT_MS} ms for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

async fn answered(kernel: &Kernel, run: runloop_proto::RunId, agent: &str, text: &str) {
    let opening = OpeningId::new("warm").unwrap();
    let reply = kernel
        .send_in(run, &opening, &name(agent), input(text))
        .await
        .unwrap();
    let out = runloop_proto::json::msgpack_to_json(&reply.outputs[0].payload);
    assert_eq!(out["text"], text, "{out}");
}

/// A new run of the `warm` opening, started.
async fn new_run(kernel: &Kernel) -> runloop_proto::RunId {
    let run = kernel.ids().run_id();
    kernel
        .start_run(run, &OpeningId::new("warm").unwrap())
        .await
        .unwrap();
    run
}

/// Starts `echo` in `run` as the agent `agent`.
async fn start_echo(
    kernel: &Kernel,
    run: runloop_proto::RunId,
    agent: &str,
) -> runloop_proto::payloads::AgentStatus {
    let start = StartOptions {
        name: Some(agent.to_owned()),
        ..StartOptions::default()
    };
    kernel
        .start_bundle_in(run, &bundle("echo"), start)
        .await
        .unwrap()
}

/// A run's node gives its idle sandbox back when it stops; the next node of the same
/// module takes that very process with its group, renamed for the new instance (the
/// process is not moved), and it answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_nodes_sandbox_serves_the_next_node_in_its_own_group() {
    let kernel = Kernel::boot(options("warm-give")).await.unwrap();
    let pool = kernel.warm().expect("on by default").clone();
    let run = new_run(&kernel).await;
    let first = start_echo(&kernel, run, "first").await;
    let pid = first.sandbox_pid.unwrap();
    let first_group = first.cgroup.clone().expect("cgroups work here (root)");
    // The spare the start asked for is parked before the give-back below, so the
    // given-back one is the most recent (a start takes the most recent of its key).
    wait_until("the spare", || pool.stats().spares == 1).await;
    answered(&kernel, run, "first", "one").await;
    kernel.stop_agent_in(run, &name("first")).await.unwrap();
    wait_until("the node's sandbox given back", || {
        pool.waiting_pids().contains(&pid)
    })
    .await;
    assert!(alive(pid));
    assert_eq!(pool.stats().given, 1, "{:?}", pool.stats());

    let second = start_echo(&kernel, run, "second").await;
    assert_eq!(
        second.sandbox_pid,
        Some(pid),
        "the given-back process is taken"
    );
    let group = second.cgroup.clone().unwrap();
    assert_ne!(group, first_group);
    assert_eq!(group_of(pid), group, "its group, renamed for the taker");
    answered(&kernel, run, "second", "two").await;
    assert!(!cgroup_dir(&first_group).exists(), "renamed, not copied");
    assert!(!pool.waiting_pids().contains(&pid));
    assert!(pool.stats().taken >= 1, "{:?}", pool.stats());
    // `rlp status` and agtop show the pool's counters with the kernel process.
    let warm = warm_in_status(&kernel)
        .await
        .expect("the kernel keeps a pool");
    assert!(
        warm.given >= 1 && warm.taken >= 1 && warm.spares >= 1,
        "{warm:?}"
    );
    let now = pool.stats();
    assert_eq!(
        (warm.given, warm.evicted, warm.expired),
        (now.given, now.evicted, now.expired)
    );
    kernel.shutdown().await;
    assert!(!alive(pid), "shutdown ends the sandbox");
    assert!(!cgroup_dir(&group).exists(), "{group} left behind");
}

/// A restart after SIGKILL takes the spare the first start asked for: the new instance
/// runs in the spare's process, in a fresh group, and the message is redelivered. A
/// standalone agent's stop takes its process with it (not given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_the_spare() {
    let kernel = Kernel::boot(options("warm-spare")).await.unwrap();
    let pool = kernel.warm().unwrap().clone();
    let status = kernel
        .start_bundle(&bundle("echo"), Some("spared"))
        .await
        .unwrap();
    let first = status.sandbox_pid.unwrap();
    wait_until("a spare", || !pool.waiting_pids().is_empty()).await;
    let spare = pool.waiting_pids()[0];
    assert_ne!(spare, first);
    assert_eq!(pool.stats().spares, 1);

    sigkill(first);
    let opening = OpeningId::new(runloop_kernel::agents::AGENTS_RUN).unwrap();
    wait_until("the restart", || !alive(first)).await;
    let reply = kernel
        .send_in(
            runloop_proto::RunId::STANDALONE,
            &opening,
            &name("spared"),
            input("again"),
        )
        .await
        .unwrap();
    assert_eq!(reply.outputs.len(), 1);
    let ls = kernel.agents().await;
    let a = ls.iter().find(|a| a.name == "spared").unwrap();
    assert_eq!(a.restarts, 1, "{a:?}");
    assert_eq!(a.sandbox_pid, Some(spare), "the restart took the spare");
    assert_eq!(group_of(spare), a.cgroup.clone().unwrap());

    kernel.stop_agent(&name("spared")).await.unwrap();
    wait_until("a standalone agent's sandbox ends with it", || {
        !alive(spare)
    })
    .await;
    assert_eq!(pool.stats().given, 0, "{:?}", pool.stats());
    kernel.shutdown().await;
}

/// Sandboxes idle for [`IDLE_MS`] on the kernel's clock end at the next sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ones_end_on_the_injected_clock() {
    let clock = Arc::new(runloop_proto::ManualClock::new(1_000_000));
    let mut opts = options("warm-idle");
    opts.clock = clock.clone();
    let kernel = Kernel::boot(opts).await.unwrap();
    let pool = kernel.warm().unwrap().clone();
    kernel
        .start_bundle(&bundle("echo"), Some("idle"))
        .await
        .unwrap();
    wait_until("a spare", || !pool.waiting_pids().is_empty()).await;
    let spare = pool.waiting_pids()[0];
    let groups = pool.waiting_groups();
    assert_eq!(groups.len(), 1, "a spare waits in a group of its own");
    assert!(cgroup_dir(&groups[0]).exists(), "{groups:?}");
    assert_eq!(group_of(spare), groups[0]);
    clock.advance_ms(IDLE_MS - 1);
    pool.sweep();
    assert!(
        pool.waiting_pids().contains(&spare),
        "not yet idle too long"
    );
    clock.advance_ms(1);
    pool.sweep();
    assert!(pool.waiting_pids().is_empty());
    wait_until("the idle spare ends", || !alive(spare)).await;
    wait_until("its group removed", || !cgroup_dir(&groups[0]).exists()).await;
    assert_eq!(pool.stats().expired, 1, "{:?}", pool.stats());
    kernel.shutdown().await;
}

/// Only the same module, host and limits share: an agent with other sandbox limits
/// neither takes the spare of another's key nor gives its own to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_limits_never_share() {
    let kernel = Kernel::boot(options("warm-keys")).await.unwrap();
    let pool = kernel.warm().unwrap().clone();
    kernel
        .start_bundle(&bundle("echo"), Some("plain"))
        .await
        .unwrap();
    wait_until("a spare", || pool.waiting_pids().len() == 1).await;
    let spare = pool.waiting_pids()[0];
    let limits = SandboxLimits {
        memory_bytes_max: SandboxLimits::default().memory_bytes_max / 2,
        ..SandboxLimits::default()
    };
    let other = kernel
        .start_bundle_in(
            runloop_proto::RunId::STANDALONE,
            &bundle("echo"),
            StartOptions {
                name: Some("tight".into()),
                limits: Some(limits),
                ..StartOptions::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(other.sandbox_pid, Some(spare));
    assert!(
        pool.waiting_pids().contains(&spare),
        "the other key's spare stays"
    );
    answered(&kernel, runloop_proto::RunId::STANDALONE, "tight", "x").await;
    kernel.shutdown().await;
    assert!(!alive(spare), "shutdown ends the spares");
}

/// A pool of one, full with the spare the first start asked for: the node's sandbox given
/// back finds no room (its own bundle fills the pool), so it ends, and the pool counts it
/// as refused — what `rlp status` shows to say the pool is too small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_refuses_a_given_back_sandbox_and_counts_it() {
    let mut opts = options("warm-full");
    opts.agents.warm_sandboxes = 1;
    let kernel = Kernel::boot(opts).await.unwrap();
    let pool = kernel.warm().unwrap().clone();
    let run = new_run(&kernel).await;
    let started = start_echo(&kernel, run, "node").await;
    let pid = started.sandbox_pid.unwrap();
    wait_until("the spare fills the pool", || {
        pool.stats().spares == 1 && pool.stats().waiting == 1
    })
    .await;
    let spare = pool.waiting_pids()[0];
    answered(&kernel, run, "node", "x").await;
    kernel.stop_agent_in(run, &name("node")).await.unwrap();
    wait_until("the node's sandbox ends", || !alive(pid)).await;
    let stats = pool.stats();
    assert_eq!(
        (stats.refused, stats.given, stats.evicted),
        (1, 0, 0),
        "{stats:?}"
    );
    assert_eq!(pool.waiting_pids(), vec![spare], "the spare keeps its room");
    let warm = warm_in_status(&kernel).await.unwrap();
    assert_eq!(warm.refused, 1, "{warm:?}");
    kernel.shutdown().await;
}

/// `runtime.warm_sandboxes: 0`: no pool, every start spawns, nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_it_off() {
    let mut opts = options("warm-off");
    opts.agents.warm_sandboxes = 0;
    let kernel = Kernel::boot(opts).await.unwrap();
    assert!(kernel.warm().is_none());
    let run = new_run(&kernel).await;
    let status = start_echo(&kernel, run, "cold").await;
    let pid = status.sandbox_pid.unwrap();
    kernel.stop_agent_in(run, &name("cold")).await.unwrap();
    wait_until("the sandbox ends with its agent", || !alive(pid)).await;
    assert_eq!(warm_in_status(&kernel).await, None, "no pool, no counters");
    kernel.shutdown().await;
}
