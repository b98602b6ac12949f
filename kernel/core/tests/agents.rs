//! Agents in a real kernel: real sandbox-host processes, real cgroups (root, this machine),
//! the committed bundles in `agents/bundles/`. Needs the sandbox-host binary built next to
//! the test binaries: `cargo build -p runloop-sandbox-host` (or `$RUNLOOP_SANDBOX_HOST`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use runloop_actors::breaker::BreakerConfig;
use runloop_actors::names::AgentName;
use runloop_actors::supervisor::Intensity;
use runloop_agent_actor::{AgentError, SharedRandom};
use runloop_kernel::agents::AgentOpError;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::AgentInput;
use runloop_sandbox::RandomSource;

mod common;
use common::{bundle, options};

fn input(json: serde_json::Value) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: runloop_proto::json::json_to_msgpack(&json, "input").unwrap(),
    }
}

fn name(s: &str) -> AgentName {
    AgentName::new(s).unwrap()
}

fn cgroup_dir(path: &str) -> PathBuf {
    let v1 = PathBuf::from(format!("/sys/fs/cgroup/memory/{path}"));
    if Path::new("/sys/fs/cgroup/memory").exists() {
        v1
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{path}"))
    }
}

fn alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_then_stop_removes_sandbox_and_cgroup() {
    let kernel = Kernel::boot(options("echo")).await.unwrap();
    let status = kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    assert_eq!(status.name, "echo");
    assert_eq!(status.state, "running");
    assert_eq!(status.breaker, "closed");
    let pid = status.sandbox_pid.expect("a sandbox runs");
    let cgroup = status.cgroup.clone().expect("cgroups work here (root)");
    assert!(cgroup_dir(&cgroup).exists(), "{cgroup}");
    let procs = std::fs::read_to_string(cgroup_dir(&cgroup).join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    let reply = kernel
        .send(
            &name("echo"),
            input(serde_json::json!({"text": "hi", "log": true})),
        )
        .await
        .unwrap();
    assert_eq!(reply.attempt, 1);
    assert_eq!(reply.outputs.len(), 1);
    let out = runloop_proto::json::msgpack_to_json(&reply.outputs[0].payload);
    assert_eq!(out["text"], "hi");
    assert!(out["logged_at_ms"].as_u64().unwrap() > 0, "{out}");

    let ls = kernel.agents().await;
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].messages_in, 1);
    assert_eq!(ls[0].messages_out, 1);
    assert!(ls[0].rss_kb > 0, "{:?}", ls[0]);

    kernel.stop_agent(&name("echo")).await.unwrap();
    assert!(!alive(pid), "sandbox {pid} still alive after stop");
    assert!(!cgroup_dir(&cgroup).exists(), "{cgroup} left behind");
    let err = kernel
        .send(&name("echo"), input(serde_json::json!({"text": "x"})))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentOpError::NoSuchAgent(_)), "{err}");
    assert!(err.to_string().contains("runloopd"), "{err}");
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_killed_while_idle_is_restarted_before_the_next_message() {
    let kernel = Kernel::boot(options("idle")).await.unwrap();
    let status = kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    let pid = status.sandbox_pid.unwrap();
    let metrics = kernel.agent_metrics(&name("echo")).unwrap();
    sigkill(pid);
    let mut restarted = false;
    for _ in 0..2_500 {
        let snap = metrics.snapshot();
        if snap.restarts == 1 && snap.sandbox_pid.is_some_and(|p| p != pid) {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(restarted, "{:?}", metrics.snapshot());
    assert!(
        metrics
            .snapshot()
            .last_error
            .unwrap()
            .contains("died while idle"),
        "{:?}",
        metrics.snapshot()
    );
    let reply = kernel
        .send(&name("echo"), input(serde_json::json!({"text": "again"})))
        .await
        .unwrap();
    assert_eq!(reply.attempt, 1, "nothing was in flight");
    kernel.shutdown().await;
}

/// Randomness whose `n`-th `fill` blocks until the test has released `n` calls, so a
/// test can catch a sandbox inside a host call.
#[derive(Debug, Default)]
struct Gate {
    entered: AtomicU32,
    released: Mutex<u32>,
    cond: Condvar,
}

struct GatedRandom(Arc<Gate>);

impl RandomSource for GatedRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        let n = self.0.entered.fetch_add(1, Ordering::SeqCst) + 1;
        let released = self.0.released.lock().unwrap();
        let (_released, wait) = self
            .0
            .cond
            .wait_timeout_while(released, Duration::from_secs(10), |r| *r < n)
            .unwrap();
        assert!(!wait.timed_out(), "the test never released call {n}");
        buf.fill(7);
    }
}

impl Gate {
    /// Lets the first `n` calls through.
    fn release(&self, n: u32) {
        *self.released.lock().unwrap() = n;
        self.cond.notify_all();
    }

    fn open(&self) {
        self.release(u32::MAX);
    }

    async fn wait_entered(&self, n: u32) {
        for _ in 0..5_000 {
            if self.entered.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("no host call reached random.bytes");
    }
}

fn gated(tag: &str, gate: &Arc<Gate>, restarts_max: u32) -> KernelOptions {
    let mut options = options(tag);
    options.random = SharedRandom(Arc::new(Mutex::new(GatedRandom(gate.clone()))));
    options.agents.intensity = Intensity {
        restarts_max,
        period_ms: 60_000,
    };
    options
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_invoke_restarts_and_redelivers_with_one_reply() {
    let gate = Arc::new(Gate::default());
    let kernel = Arc::new(Kernel::boot(gated("kill", &gate, 3)).await.unwrap());
    let status = kernel
        .start_bundle(&bundle("hostcalls"), None)
        .await
        .unwrap();
    let first_pid = status.sandbox_pid.unwrap();
    let first_cgroup = status.cgroup.unwrap();

    let k = kernel.clone();
    let send = tokio::spawn(async move {
        k.send(&name("hostcalls"), input(serde_json::json!({})))
            .await
    });
    gate.wait_entered(1).await;
    // The guest is blocked inside random.bytes: kill its sandbox there.
    sigkill(first_pid);
    gate.open();
    let reply = send.await.unwrap().expect("redelivered and answered");
    assert_eq!(reply.attempt, 2, "answered by the second delivery");
    assert_eq!(reply.outputs.len(), 8, "one output per op");

    let ls = kernel.agents().await;
    let a = &ls[0];
    assert_eq!(a.state, "running");
    assert_eq!(a.restarts, 1);
    assert_eq!(a.redelivered, 1);
    assert_eq!(a.messages_in, 1);
    assert_eq!(a.messages_out, 1, "the reply went out once");
    assert_ne!(a.sandbox_pid, Some(first_pid));
    assert!(
        a.last_error.as_deref().unwrap().contains("SIGKILL"),
        "{a:?}"
    );
    assert!(!cgroup_dir(&first_cgroup).exists(), "old cgroup removed");
    // Nothing became a dead letter.
    let (dead, _) = kernel.dead_letters().await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    // The tree shows the restart.
    let tree = serde_json::to_string(&kernel.status().await).unwrap();
    assert!(tree.contains("agent-hostcalls"), "{tree}");
    assert!(
        tree.contains(r#""type":"agent","name":"hostcalls""#),
        "{tree}"
    );
    assert!(
        tree.contains(r#""state":"running","sandbox_pid":"#),
        "{tree}"
    );
    assert!(
        tree.contains(r#""restarts":1,"breaker":"closed""#),
        "{tree}"
    );
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_invokes_pipelined_redelivers_all_and_charges_only_the_running_one() {
    const SENDS: usize = 10;
    let gate = Arc::new(Gate::default());
    let kernel = Arc::new(Kernel::boot(gated("pipe", &gate, 3)).await.unwrap());
    let status = kernel
        .start_bundle(&bundle("hostcalls"), None)
        .await
        .unwrap();
    let sends: Vec<_> = (0..SENDS)
        .map(|_| {
            let k = kernel.clone();
            tokio::spawn(async move {
                k.send(&name("hostcalls"), input(serde_json::json!({})))
                    .await
            })
        })
        .collect();
    // The first invoke is blocked inside random.bytes; the others wait behind it in the
    // sandbox's pipeline. Kill the sandbox with all of them in flight.
    gate.wait_entered(1).await;
    let metrics = kernel.agent_metrics(&name("hostcalls")).unwrap();
    for _ in 0..1_000 {
        if metrics.snapshot().messages_in == SENDS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(metrics.snapshot().messages_in, SENDS as u64);
    sigkill(status.sandbox_pid.unwrap());
    gate.open();
    let mut attempts = Vec::new();
    for send in sends {
        let reply = send.await.unwrap().expect("redelivered and answered");
        assert_eq!(reply.outputs.len(), 8, "one output per op");
        attempts.push(reply.attempt);
    }
    attempts.sort_unstable();
    let mut want = vec![1; SENDS];
    want[SENDS - 1] = 2;
    assert_eq!(
        attempts, want,
        "only the invoke the dead sandbox was running is charged a second attempt"
    );
    let snap = metrics.snapshot();
    assert_eq!(snap.restarts, 1);
    assert_eq!(snap.messages_out, SENDS as u64, "each reply went out once");
    let (dead, _) = kernel.dead_letters().await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_right_after_a_kill_is_answered_by_the_next_instance() {
    const KILLS: u32 = 30;
    let mut options = options("kill-send");
    options.agents.intensity = Intensity {
        restarts_max: KILLS + 5,
        period_ms: 60_000,
    };
    // Every kill is deliberate: the breaker must not open on them.
    options.breaker = BreakerConfig {
        failures_max: KILLS + 5,
        window_ms: 60_000,
        open_ms: 1_000,
    };
    let kernel = Kernel::boot(options).await.unwrap();
    kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    let metrics = kernel.agent_metrics(&name("echo")).unwrap();
    for i in 0..KILLS {
        let pid = metrics.snapshot().sandbox_pid.unwrap();
        sigkill(pid);
        // The instance may fail with this message still in its mailbox (never admitted):
        // the kernel hands it to the restarted instance instead of answering `Stopped`.
        let reply = kernel
            .send(&name("echo"), input(serde_json::json!({"text": i})))
            .await
            .unwrap_or_else(|e| panic!("send {i} after a kill: {e}"));
        assert_eq!(reply.outputs.len(), 1);
    }
    assert_eq!(metrics.snapshot().restarts, u64::from(KILLS));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_past_intensity_quarantines_dead_letters_and_release_allows_a_restart() {
    let gate = Arc::new(Gate::default());
    let kernel = Arc::new(Kernel::boot(gated("loop", &gate, 1)).await.unwrap());
    kernel
        .start_bundle(&bundle("hostcalls"), None)
        .await
        .unwrap();
    let metrics = kernel.agent_metrics(&name("hostcalls")).unwrap();

    let k = kernel.clone();
    let send = tokio::spawn(async move {
        k.send(&name("hostcalls"), input(serde_json::json!({})))
            .await
    });
    for n in 1..=2 {
        gate.wait_entered(n).await;
        sigkill(metrics.snapshot().sandbox_pid.unwrap());
        gate.release(n);
    }
    let err = send.await.unwrap().unwrap_err();
    assert_eq!(err.code(), "Quarantined", "{err}");
    assert!(err.to_string().contains("crashed"), "{err}");

    let ls = kernel.agents().await;
    assert_eq!(ls[0].state, "quarantined");
    assert!(
        ls[0].quarantine.as_deref().unwrap().contains("SIGKILL"),
        "{ls:?}"
    );
    let (dead, _) = kernel.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(matches!(
        dead[0].reason,
        runloop_actors::delivery::DeadLetterReason::Quarantined { .. }
    ));
    // Parked agents are refused, with the way out in the message.
    let err = kernel
        .start_bundle(&bundle("hostcalls"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "Quarantined", "{err}");
    assert!(err.to_string().contains("rlp agent release"), "{err}");

    kernel.release(&name("hostcalls")).await.unwrap();
    gate.open();
    kernel
        .start_bundle(&bundle("hostcalls"), None)
        .await
        .unwrap();
    let reply = kernel
        .send(&name("hostcalls"), input(serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(reply.outputs.len(), 8);
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_host_calls_get_capability_denied_and_are_counted() {
    // hostcalls' module with a policy that allows only the clock and logs.
    let dir = tempfile::tempdir().unwrap();
    for file in ["manifest.toml", "agent.wasm"] {
        std::fs::copy(bundle("hostcalls").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("policy.caps"),
        "runloop-caps 1\nallow clock.now\nallow log\n",
    )
    .unwrap();
    common::sign(dir.path());
    let kernel = Kernel::boot(options("caps")).await.unwrap();
    kernel
        .start_bundle(dir.path(), Some("narrow"))
        .await
        .unwrap();
    let reply = kernel
        .send(&name("narrow"), input(serde_json::json!({})))
        .await
        .unwrap();
    let outs: Vec<_> = reply
        .outputs
        .iter()
        .map(|o| runloop_proto::json::msgpack_to_json(&o.payload))
        .collect();
    assert_eq!(outs.len(), 8);
    assert!(outs[0]["ok"]["now_ms"].as_u64().unwrap() > 0, "{outs:?}");
    for out in &outs[1..] {
        let op = out["op"].as_str().unwrap();
        if op == "log" {
            assert!(out.get("ok").is_some(), "{out}");
            continue;
        }
        assert_eq!(out["err"]["code"], "CapabilityDenied", "{out}");
        let message = out["err"]["message"].as_str().unwrap();
        assert!(
            message.contains("not allowed by the agent's policy"),
            "{message}"
        );
    }
    let ls = kernel.agents().await;
    assert_eq!(ls[0].denied, 6, "{:?}", ls[0]);
    assert!(ls[0].last_error.as_deref().unwrap().contains("denied"));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_failures_open_the_breaker_which_fails_fast() {
    let mut options = options("breaker");
    options.breaker = BreakerConfig {
        failures_max: 2,
        window_ms: 60_000,
        open_ms: 60_000,
    };
    let kernel = Kernel::boot(options).await.unwrap();
    kernel
        .start_bundle(&bundle("panicker"), None)
        .await
        .unwrap();
    for _ in 0..2 {
        let err = kernel
            .send(&name("panicker"), input(serde_json::json!({})))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "GuestFailed", "{err}");
        assert!(
            err.to_string().contains("Trap") || err.to_string().contains("trap"),
            "{err}"
        );
    }
    let ls = kernel.agents().await;
    assert_eq!(ls[0].breaker, "open");
    assert_eq!(ls[0].restarts, 0, "a guest trap does not kill the sandbox");
    let err = kernel
        .send(&name("panicker"), input(serde_json::json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BreakerOpen", "{err}");
    let (dead, _) = kernel.dead_letters().await.unwrap();
    assert!(matches!(
        dead.last().unwrap().reason,
        runloop_actors::delivery::DeadLetterReason::BreakerOpen { .. }
    ));
    kernel.shutdown().await;
}

/// A fake sandbox-host (bash: dash cannot write to fds above 9): writes `bytes` to the
/// socket named by `--socket-fd N`, then waits to be killed. Real process, real socket.
fn fake_sandbox(dir: &Path, bytes: &str) -> PathBuf {
    let path = dir.join("fake-sandbox.sh");
    std::fs::write(
        &path,
        format!("#!/bin/bash\nfd=$2\nprintf '{bytes}' >&$fd\nexec sleep 10\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_from_a_sandbox_quarantine_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options("garbage");
    options.agents.sandbox_host = Some(fake_sandbox(
        dir.path(),
        r"\000\000\000\100JUNKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ));
    let kernel = Kernel::boot(options).await.unwrap();
    let status = kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    assert_eq!(status.state, "quarantined", "{status:?}");
    let reason = status.quarantine.unwrap();
    assert!(reason.contains("InvalidMagic"), "{reason}");
    let err = kernel
        .send(&name("echo"), input(serde_json::json!({"text": "x"})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentOpError::Agent(AgentError::Quarantined { .. })),
        "{err}"
    );
    let record = kernel.release(&name("echo")).await.unwrap();
    assert!(record.message.contains("InvalidMagic"));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_goes_open_half_open_and_closed_on_the_injected_clock() {
    // echo with a policy that allows nothing: `log: true` inputs fail (the refused host
    // call fails the invoke), plain inputs succeed.
    let dir = tempfile::tempdir().unwrap();
    for file in ["manifest.toml", "agent.wasm"] {
        std::fs::copy(bundle("echo").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("policy.caps"), "runloop-caps 1\n").unwrap();
    common::sign(dir.path());
    let clock = Arc::new(runloop_proto::ManualClock::new(1_000_000));
    let mut options = options("halfopen");
    options.clock = clock.clone();
    options.breaker = BreakerConfig {
        failures_max: 2,
        window_ms: 10_000,
        open_ms: 1_000,
    };
    let kernel = Kernel::boot(options).await.unwrap();
    kernel
        .start_bundle(dir.path(), Some("picky"))
        .await
        .unwrap();
    let picky = name("picky");
    let bad = || input(serde_json::json!({"text": "x", "log": true}));
    let good = || input(serde_json::json!({"text": "ok"}));
    let breaker = |ls: &[runloop_proto::payloads::AgentStatus]| ls[0].breaker.clone();

    for _ in 0..2 {
        let err = kernel.send(&picky, bad()).await.unwrap_err();
        assert_eq!(err.code(), "GuestFailed", "{err}");
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
    assert_eq!(breaker(&kernel.agents().await), "open");
    let err = kernel.send(&picky, good()).await.unwrap_err();
    assert_eq!(err.code(), "BreakerOpen", "{err}");

    // After open_ms the next call is the half-open probe; a failed probe reopens.
    clock.advance_ms(1_001);
    let err = kernel.send(&picky, bad()).await.unwrap_err();
    assert_eq!(err.code(), "GuestFailed", "the probe ran: {err}");
    assert_eq!(breaker(&kernel.agents().await), "open");
    // A successful probe closes it.
    clock.advance_ms(1_001);
    let reply = kernel.send(&picky, good()).await.unwrap();
    assert_eq!(reply.outputs.len(), 1);
    assert_eq!(breaker(&kernel.agents().await), "closed");
    kernel.shutdown().await;
}

/// A payload nested `depth` deep (a scalar is 1).
fn nested(depth: usize) -> rmpv::Value {
    (1..depth).fold(rmpv::Value::from(1), |v, _| {
        rmpv::Value::Map(vec![("a".into(), v)])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_nesting_too_deep_is_refused_by_name_and_the_agent_lives_on() {
    let kernel = Kernel::boot(options("deep")).await.unwrap();
    let status = kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    let pid = status.sandbox_pid.unwrap();
    let deepest = runloop_proto::VALUE_DEPTH_MAX;
    // The deepest allowed payload crosses to the sandbox and back unchanged.
    let fits = AgentInput {
        port: "in".into(),
        payload: nested(deepest),
    };
    let reply = kernel.send(&name("echo"), fits.clone()).await.unwrap();
    assert_eq!(reply.outputs[0].payload, fits.payload);
    // One level more is bad input, named, before any frame is built; nothing restarts.
    let deeper = AgentInput {
        port: "in".into(),
        payload: nested(deepest + 1),
    };
    let err = kernel.send(&name("echo"), deeper).await.unwrap_err();
    assert!(matches!(err, AgentOpError::BadInput(_)), "{err:?}");
    assert!(
        err.to_string().contains("nests deeper than 56 levels"),
        "{err}"
    );
    let after = kernel.agents().await;
    let echo = after.iter().find(|a| a.name == "echo").unwrap();
    assert_eq!(echo.sandbox_pid, Some(pid), "the same sandbox still serves");
    assert_eq!(echo.restarts, 0);
    kernel.shutdown().await;
}

/// A copy of the committed `echo` bundle in `dir`, with its signature or without.
fn echo_copy(dir: &Path, signed: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = vec!["manifest.toml", "policy.caps", "agent.wasm"];
    if signed {
        files.push("signature.toml");
    }
    for file in files {
        std::fs::copy(bundle("echo").join(file), dir.join(file)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_bundle_handed_in_starts_without_reading_its_directory_again() {
    use runloop_kernel::agents::StartOptions;
    use runloop_proto::RunId;
    let kernel = Kernel::boot(options("verified")).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("echo");
    echo_copy(&dir, true);
    let loaded = Arc::new(runloop_bundle::Bundle::load(&dir, kernel.trust()).unwrap());
    // Gone from disk: a start that read the bundle again would fail.
    std::fs::remove_dir_all(&dir).unwrap();
    let start = |agent: &str| StartOptions {
        name: Some(agent.to_owned()),
        ..StartOptions::default()
    };
    let status = kernel
        .start_verified_in(RunId::STANDALONE, loaded.clone(), start("verified"))
        .await
        .unwrap();
    assert_eq!(status.state, "running");
    let reply = kernel
        .send(&name("verified"), input(serde_json::json!({"text": "hi"})))
        .await
        .unwrap();
    let out = runloop_proto::json::msgpack_to_json(&reply.outputs[0].payload);
    assert_eq!(out["text"], "hi");
    // The path that loads reads the directory, and finds nothing there now.
    let err = kernel
        .start_bundle_in(RunId::STANDALONE, &dir, start("again"))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentOpError::Bundle { .. }), "{err}");
    kernel.stop_agent(&name("verified")).await.unwrap();

    // The trust decision is asked again of the kernel's roots: a bundle loaded under a
    // policy that allowed it unsigned does not start on a kernel that refuses unsigned.
    let unsigned_dir = tmp.path().join("unsigned");
    echo_copy(&unsigned_dir, false);
    let permissive = runloop_bundle::TrustPolicy::permissive();
    let unsigned = Arc::new(runloop_bundle::Bundle::load(&unsigned_dir, &permissive).unwrap());
    let err = kernel
        .start_verified_in(RunId::STANDALONE, unsigned, start("unsigned"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentOpError::Bundle { .. }) && err.to_string().contains("not signed"),
        "{err}"
    );
    assert!(kernel.agents().await.is_empty());
    kernel.shutdown().await;
}
