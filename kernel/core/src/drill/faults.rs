//! One function per drill: set up, inject, measure, check. See [`super::Drill`] for what
//! each one means.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runloop_agent_actor::AgentState;
use runloop_proto::payloads::SandboxLimits;

use super::lab::{self, Lab, LabOptions, Probe, input, workload_outcome};
use super::{Checks, Drill, DrillEnv, DrillReport, ms};
use crate::Kernel;
use crate::agents::{AgentOptions, StartOptions};

/// Longest wait for an agent to get back to a settled state after a fault.
pub(super) const SETTLE_MS: u64 = 30_000;
/// Round trips of the neighbour agent per measurement.
const NEIGHBOUR_SENDS: usize = 200;
/// The spinning agent's time limit per invoke.
const SPIN_LIMIT_MS: u64 = 250;
/// Spin iterations asked for: far more than fit in [`SPIN_LIMIT_MS`].
const SPIN_COUNT: u64 = 2_000_000_000;
/// The cgroup memory of an agent meant to meet the OOM killer (the sandbox-host itself
/// needs a few tens of MiB), and the wasm limit above it.
const OOM_CGROUP_BYTES: u64 = 96 * 1024 * 1024;
const OOM_WASM_BYTES: u64 = 1024 * 1024 * 1024;
/// The flapping drill's breaker: opens after two failures, half-opens after this.
const FLAP_OPEN_MS: u64 = 300;

/// The parts every report has, filled in by each drill.
pub(super) struct Found {
    pub(super) drill: Drill,
    pub(super) injected: String,
    pub(super) detect: Option<Duration>,
    pub(super) restore: Option<Duration>,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) runs_ok: u64,
    pub(super) runs_total: u64,
    pub(super) story: String,
    pub(super) checks: Checks,
}

impl Found {
    pub(super) fn report(mut self) -> DrillReport {
        self.checks
            .expect(self.lost == 0, format!("{} lost", self.lost));
        self.checks.expect(
            self.duplicated == 0,
            format!("{} effects performed twice", self.duplicated),
        );
        self.checks.expect(
            self.runs_ok == self.runs_total,
            format!(
                "{} of {} runs finished correctly",
                self.runs_ok, self.runs_total
            ),
        );
        let failures = self.checks.into_failures();
        let passed = failures.is_empty();
        let verdict = if passed {
            "Passed.".to_owned()
        } else {
            format!("FAILED: {}.", failures.join("; "))
        };
        let timing = match (self.detect, self.restore) {
            (Some(d), Some(r)) => format!(
                " Detected after {:.1} ms, restored after {:.1} ms.",
                ms(d),
                ms(r)
            ),
            (Some(d), None) => format!(" Detected after {:.1} ms.", ms(d)),
            _ => " Never detected.".to_owned(),
        };
        DrillReport {
            name: self.drill.name().into(),
            passed,
            injected: self.injected,
            detect_ms: self.detect.map(ms),
            restore_ms: self.restore.map(ms),
            lost: self.lost,
            duplicated_effects: self.duplicated,
            runs_ok: self.runs_ok,
            runs_total: self.runs_total,
            report: format!(
                "{}: {}{timing} Lost {}, effects done twice {}, runs correct {} of {}. {verdict}",
                self.drill.name(),
                self.story,
                self.lost,
                self.duplicated,
                self.runs_ok,
                self.runs_total
            ),
            failures,
        }
    }
}

/// The workload's end, counted: runs correct, lost, emails beyond one per sent run.
pub(super) struct Tally {
    pub(super) runs_ok: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) summary: String,
}

pub(super) async fn workload_tally(lab: &Lab, submitted: &crate::runs::Submitted) -> Tally {
    let report = lab::finish(submitted).await;
    let outcome = workload_outcome(report.as_ref());
    let emails = lab.emails();
    let sent = u64::from(outcome.sent);
    Tally {
        runs_ok: u64::from(outcome.ok && emails == 1),
        lost: u64::from(report.is_none()),
        duplicated: emails.saturating_sub(sent.max(1)),
        summary: format!("{}, {emails} email(s) in the outbox", outcome.summary),
    }
}

/// Sends `n` echo messages to `agent` one at a time; the round trips of those answered
/// and how many were not.
async fn echo_round_trips(kernel: &Kernel, agent: &str, n: usize) -> (Vec<Duration>, u64) {
    let Ok(name) = runloop_actors::names::AgentName::new(agent) else {
        return (Vec::new(), n as u64);
    };
    let mut times = Vec::with_capacity(n);
    let mut failed = 0;
    for i in 0..n {
        let Ok(message) = input(serde_json::json!({ "text": format!("m{i}") })) else {
            failed += 1;
            continue;
        };
        let t = Instant::now();
        match kernel.send(&name, message).await {
            Ok(reply) if reply.outputs.len() == 1 => times.push(t.elapsed()),
            _ => failed += 1,
        }
    }
    (times, failed)
}

fn p50(times: &mut [Duration]) -> Option<Duration> {
    times.sort();
    times.get(times.len() / 2).copied()
}

fn agent_name(name: &str) -> Result<runloop_actors::names::AgentName, String> {
    runloop_actors::names::AgentName::new(name).map_err(|e| e.to_string())
}

pub(super) fn sigkill(pid: u32) -> Result<(), String> {
    let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("SIGKILL {pid}: {e}"))
}

pub(super) async fn oom_wasm(env: &DrillEnv) -> Result<DrillReport, String> {
    let lab = Lab::boot(env, LabOptions::default()).await?;
    lab.start("echo", "neighbour", StartOptions::default())
        .await?;
    let bomb = lab
        .start("alloc_bomb", "bomb", StartOptions::default())
        .await?;
    let limit = lab.kernel.agent_options.limits.memory_bytes_max;
    let pid = bomb.sandbox_pid;
    let submitted = lab.submit_workload().await?;
    let kernel = lab.kernel.clone();
    let neighbour =
        tokio::spawn(
            async move { echo_round_trips(&kernel, "neighbour", NEIGHBOUR_SENDS / 4).await },
        );
    let t0 = Instant::now();
    let sent = lab
        .kernel
        .send(&agent_name("bomb")?, input(serde_json::json!({}))?)
        .await;
    let detected = t0.elapsed();
    let probe = Probe::of(&lab.kernel, "bomb").ok_or("the bomb has no metrics")?;
    let t1 = Instant::now();
    let settled = probe
        .until(Duration::from_millis(SETTLE_MS), |s| {
            s.state == AgentState::Running
        })
        .await;
    let (_, neighbour_failed) = neighbour.await.map_err(|e| e.to_string())?;
    let tally = workload_tally(&lab, &submitted).await;
    let after = probe.now();
    let mut checks = Checks::default();
    let error = match &sent {
        Ok(_) => "an answer (the bomb was not stopped)".to_owned(),
        Err(e) => format!("{} ({e})", e.code()),
    };
    checks.expect(
        error.contains("GuestFailed") && error.contains("MemoryLimit"),
        format!("the bomb's invoke ended with {error}, not GuestFailed with MemoryLimit"),
    );
    checks.expect(
        after.sandbox_pid == pid && after.restarts == 0,
        "the sandbox did not survive the guest's limit",
    );
    checks.expect(settled.is_some(), "the bomb did not run again");
    lab.stop().await;
    Ok(Found {
        drill: Drill::OomWasm,
        injected: format!(
            "alloc_bomb grows its heap past its {} MiB wasm limit",
            limit >> 20
        ),
        detect: Some(detected),
        restore: settled.map(|t| t.saturating_duration_since(t1)),
        lost: neighbour_failed + tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story: format!(
            "the guest was stopped with {error} after {:.1} ms in the same sandbox (detect \
             counts from the send, allocation included); the neighbour answered {} of {} \
             messages meanwhile; {}",
            ms(detected),
            NEIGHBOUR_SENDS as u64 / 4 - neighbour_failed,
            NEIGHBOUR_SENDS / 4,
            tally.summary
        ),
        checks,
    }
    .report())
}

/// The bomb's start options: a wasm limit far above a small cgroup.
fn cgroup_bomb() -> StartOptions {
    StartOptions {
        limits: Some(SandboxLimits {
            memory_bytes_max: OOM_WASM_BYTES,
            invoke_wall_ms_max: 10_000,
            ..SandboxLimits::default()
        }),
        cgroup_memory_bytes_max: Some(OOM_CGROUP_BYTES),
        ..StartOptions::default()
    }
}

fn cgroups_usable() -> Result<(), String> {
    use runloop_sandbox::cgroup::{CgroupSupport, detect};
    match detect() {
        CgroupSupport::V1 | CgroupSupport::V2 => Ok(()),
        other => Err(format!(
            "this drill needs cgroups (v1 or v2, writable): {other:?}"
        )),
    }
}

pub(super) async fn oom_cgroup(env: &DrillEnv) -> Result<DrillReport, String> {
    cgroups_usable()?;
    let lab = Lab::boot(env, LabOptions::default()).await?;
    lab.start("echo", "neighbour", StartOptions::default())
        .await?;
    let bomb = lab.start("alloc_bomb", "bomb", cgroup_bomb()).await?;
    let first_pid = bomb.sandbox_pid.ok_or("the bomb has no sandbox")?;
    let submitted = lab.submit_workload().await?;
    let kernel = lab.kernel.clone();
    let neighbour =
        tokio::spawn(
            async move { echo_round_trips(&kernel, "neighbour", NEIGHBOUR_SENDS / 4).await },
        );
    let probe = Probe::of(&lab.kernel, "bomb").ok_or("the bomb has no metrics")?;
    let t0 = Instant::now();
    let kernel = lab.kernel.clone();
    let send = tokio::spawn(async move {
        let name = agent_name("bomb")?;
        Ok::<_, String>(
            kernel
                .send(&name, input(serde_json::json!({}))?)
                .await
                .map_err(|e| format!("{} ({e})", e.code())),
        )
    });
    let settle = Duration::from_millis(SETTLE_MS);
    let detected = probe
        .until(settle, |s| s.sandbox_pid != Some(first_pid))
        .await;
    let answer = send.await.map_err(|e| e.to_string())??;
    let settled = probe
        .until(settle, |s| {
            matches!(s.state, AgentState::Running | AgentState::Quarantined)
        })
        .await;
    let (_, neighbour_failed) = neighbour.await.map_err(|e| e.to_string())?;
    let tally = workload_tally(&lab, &submitted).await;
    let after = probe.now();
    let reason = after.last_error.clone().unwrap_or_default();
    let mut checks = Checks::default();
    checks.expect(detected.is_some(), "the bomb's sandbox was never ended");
    checks.expect(answer.is_err(), "the bomb's invoke got an answer");
    checks.expect(
        reason.contains("out of memory"),
        format!("the agent's last error does not say out of memory: {reason:?}"),
    );
    checks.expect(
        settled.is_some(),
        "the bomb never settled (running or parked)",
    );
    let answer_text = match &answer {
        Ok(_) => "an answer".to_owned(),
        Err(e) => e.clone(),
    };
    lab.stop().await;
    Ok(Found {
        drill: Drill::OomCgroup,
        injected: format!(
            "alloc_bomb with a {} MiB wasm limit in a {} MiB cgroup",
            OOM_WASM_BYTES >> 20,
            OOM_CGROUP_BYTES >> 20
        ),
        detect: detected.map(|t| t.saturating_duration_since(t0)),
        restore: match (detected, settled) {
            (Some(d), Some(s)) => Some(s.saturating_duration_since(d)),
            _ => None,
        },
        lost: neighbour_failed + tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story: format!(
            "the cgroup's OOM killer ended the bomb's sandbox (detect counts from the send, \
             allocation included); the agent said {reason:?}, its message ended with \
             {answer_text}, and it is {:?} after {} restart(s); the neighbour answered {} of \
             {} messages meanwhile; {}",
            after.state,
            after.restarts,
            NEIGHBOUR_SENDS as u64 / 4 - neighbour_failed,
            NEIGHBOUR_SENDS / 4,
            tally.summary
        ),
        checks,
    }
    .report())
}

pub(super) async fn cpu_spin(env: &DrillEnv) -> Result<DrillReport, String> {
    let lab = Lab::boot(env, LabOptions::default()).await?;
    lab.start("echo", "neighbour", StartOptions::default())
        .await?;
    lab.start_spinner(SPIN_LIMIT_MS).await?;
    // Warm up, then the neighbour's baseline with nothing else running.
    echo_round_trips(&lab.kernel, "neighbour", 20).await;
    let (mut base, base_failed) = echo_round_trips(&lab.kernel, "neighbour", NEIGHBOUR_SENDS).await;
    let base_p50 = p50(&mut base).ok_or("no baseline round trip")?;
    // The spinner loops until told to stop; each invoke runs into its time limit.
    let stop = Arc::new(AtomicBool::new(false));
    let first: Arc<Mutex<Option<(Duration, String)>>> = Arc::new(Mutex::new(None));
    let spinner = {
        let (kernel, stop, first) = (lab.kernel.clone(), stop.clone(), first.clone());
        tokio::spawn(async move {
            let name = agent_name("spinner")?;
            let mut spins = SpinCount::default();
            while !stop.load(Ordering::Relaxed) {
                let message = input(serde_json::json!({
                    "node": "spin", "attempt": 1, "with": { "spin": SPIN_COUNT }
                }))?;
                let t = Instant::now();
                let res = kernel.send(&name, message).await;
                spins.invokes += 1;
                match res {
                    Ok(_) => spins.answered += 1,
                    // Its breaker opened after a few failures: it fails fast now.
                    Err(e) if e.code() == "BreakerOpen" => {
                        spins.fast_failed += 1;
                        tokio::time::sleep(Duration::from_millis(SPIN_LIMIT_MS / 5)).await;
                    }
                    Err(e) => {
                        let text = format!("{} ({e})", e.code());
                        if text.contains("TimeLimit") {
                            spins.time_limited += 1;
                        } else {
                            spins.other = Some(text.clone());
                        }
                        let mut f = first.lock().expect("first stop");
                        if f.is_none() {
                            *f = Some((t.elapsed(), text));
                        }
                    }
                }
            }
            Ok::<_, String>(spins)
        })
    };
    // Let the spinner get going, then measure the neighbour beside it.
    tokio::time::sleep(Duration::from_millis(SPIN_LIMIT_MS / 2)).await;
    let (mut during, during_failed) =
        echo_round_trips(&lab.kernel, "neighbour", NEIGHBOUR_SENDS).await;
    let during_p50 = p50(&mut during).ok_or("no round trip beside the spinner")?;
    // The workload runs beside the spinner too.
    let submitted = lab.submit_workload().await?;
    let tally = workload_tally(&lab, &submitted).await;
    stop.store(true, Ordering::Relaxed);
    let spins = spinner.await.map_err(|e| e.to_string())??;
    let probe = Probe::of(&lab.kernel, "spinner").ok_or("the spinner has no metrics")?;
    let t1 = Instant::now();
    let settled = probe
        .until(Duration::from_millis(SETTLE_MS), |s| {
            s.state == AgentState::Running
        })
        .await;
    let first = first.lock().expect("first stop").clone();
    let mut checks = Checks::default();
    checks.expect(
        spins.answered == 0 && spins.other.is_none(),
        format!(
            "a spinning invoke ended otherwise than by its time limit or its breaker: {} \
             answered, {:?}",
            spins.answered, spins.other
        ),
    );
    let error = first
        .as_ref()
        .map(|f| f.1.clone())
        .unwrap_or_else(|| "none".into());
    checks.expect(
        spins.time_limited > 0 && error.contains("TimeLimit"),
        format!("the spinner was not stopped by its time limit: {error}"),
    );
    checks.expect(
        during_p50 <= base_p50 * 2,
        format!(
            "the neighbour's p50 went from {:.3} ms to {:.3} ms (more than 2x)",
            base_p50.as_secs_f64() * 1e3,
            during_p50.as_secs_f64() * 1e3
        ),
    );
    checks.expect(settled.is_some(), "the spinner did not run again");
    lab.stop().await;
    Ok(Found {
        drill: Drill::CpuSpin,
        injected: format!(
            "flaky spinning {SPIN_COUNT} iterations per invoke with a {SPIN_LIMIT_MS} ms limit"
        ),
        detect: first.as_ref().map(|f| f.0),
        restore: settled.map(|t| t.saturating_duration_since(t1)),
        lost: base_failed + during_failed + tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story: format!(
            "of {} spinning invokes, {} were stopped by their time limit, the first with \
             {error} (detect: from its send to that answer), and {} failed fast once its \
             breaker opened; the neighbour's p50 round trip was \
             {:.3} ms alone and {:.3} ms beside the spinner ({:.2}x, {} sends each); {}",
            spins.invokes,
            spins.time_limited,
            spins.fast_failed,
            base_p50.as_secs_f64() * 1e3,
            during_p50.as_secs_f64() * 1e3,
            during_p50.as_secs_f64() / base_p50.as_secs_f64().max(1e-9),
            NEIGHBOUR_SENDS,
            tally.summary
        ),
        checks,
    }
    .report())
}

/// How the spinner's invokes ended.
#[derive(Debug, Default)]
struct SpinCount {
    invokes: u64,
    time_limited: u64,
    fast_failed: u64,
    answered: u64,
    other: Option<String>,
}

/// A hostile sandbox-host (bash: dash cannot write to fds above 9): writes `bytes` to the
/// socket named by `--socket-fd N` and waits to be killed.
pub(super) fn hostile_sandbox(dir: &Path, name: &str, bytes: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("hostile-{name}.sh"));
    std::fs::write(
        &path,
        format!("#!/bin/bash\nfd=$2\nprintf '{bytes}' >&$fd\nexec sleep 30\n"),
    )
    .map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(path)
}

/// The frames the hostile sandboxes send, and the RMP error each must be rejected with.
pub(super) const BAD_FRAMES: [(&str, &str, &str); 3] = [
    (
        "bad-magic",
        r"\000\000\000\100JUNKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "InvalidMagic",
    ),
    ("oversized", r"\177\377\377\377RMP0", "BodyTooLarge"),
    (
        "truncated",
        r"\000\000\000\012RMP0xxxxxx",
        "TruncatedHeader",
    ),
];

/// A valid `control.ready.v1` frame sent twice with the same `(trace_id, msg_id)`, as
/// `printf` octal escapes: the handshake takes the first, the repeat must be refused as
/// `Duplicate` (rmp-v0 validation step 10).
fn duplicate_ready() -> String {
    use runloop_proto::payloads::{SANDBOX_PROTOCOL_VERSION, SandboxReady};
    let ready = SandboxReady {
        protocol: SANDBOX_PROTOCOL_VERSION,
        wasmtime: "hostile".into(),
        startup_us: 1,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let frame = runloop_client::wire::frame_of(
        runloop_proto::Body::from_payload(&ready),
        now_ms,
        runloop_proto::TraceId(0xd0d0),
        runloop_proto::MsgId(1),
    );
    frame
        .iter()
        .chain(frame.iter())
        .map(|b| format!("\\{b:03o}"))
        .collect()
}

/// Every hostile sandbox of the drill: [`BAD_FRAMES`] and the duplicate.
fn bad_frame_cases() -> Vec<(&'static str, String, &'static str)> {
    let mut cases: Vec<_> = BAD_FRAMES
        .iter()
        .map(|(name, bytes, want)| (*name, (*bytes).to_owned(), *want))
        .collect();
    cases.push(("duplicate", duplicate_ready(), "Duplicate"));
    cases
}

pub(super) async fn bad_frames(env: &DrillEnv) -> Result<DrillReport, String> {
    let lab = Lab::boot(env, LabOptions::default()).await?;
    let submitted = lab.submit_workload().await?;
    let mut checks = Checks::default();
    let mut seen = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, bytes, want) in bad_frame_cases() {
        let program = hostile_sandbox(lab.state_dir(), name, &bytes)?;
        let t = Instant::now();
        let status = lab
            .start(
                "echo",
                name,
                StartOptions {
                    sandbox_host: Some(program),
                    ..StartOptions::default()
                },
            )
            .await?;
        // A duplicate passes the handshake; the repeat is read by the idle instance next.
        let status = if name == "duplicate" {
            lab.wait_quarantined(name, Duration::from_secs(5)).await?
        } else {
            status
        };
        slowest = slowest.max(t.elapsed());
        let reason = status.quarantine.clone().unwrap_or_default();
        checks.expect(
            status.state == "quarantined" && reason.contains(want),
            format!(
                "{name}: state {} with reason {reason:?}, want {want}",
                status.state
            ),
        );
        let refused = lab
            .kernel
            .send(&agent_name(name)?, input(serde_json::json!({"text": "x"}))?)
            .await;
        checks.expect(
            matches!(&refused, Err(e) if e.code() == "Quarantined"),
            format!("{name}: a message to the parked agent was not refused as Quarantined"),
        );
        seen.push(format!("{name} → {}", first_word(&reason)));
    }
    let tally = workload_tally(&lab, &submitted).await;
    lab.stop().await;
    Ok(Found {
        drill: Drill::BadFrames,
        injected: "four hostile sandboxes: a bad magic, a 2 GiB frame length, a 10-byte \
                   header, a valid ready frame sent twice with the same msg_id"
            .into(),
        detect: Some(slowest),
        restore: None,
        lost: tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story: format!(
            "each agent was quarantined at its handshake, the duplicate at the repeat right \
             after it ({}); detect is the slowest start to quarantine; nothing to restore: a parked agent stays parked until `rlp agent \
             release`; {}",
            seen.join(", "),
            tally.summary
        ),
        checks,
    }
    .report())
}

/// The RMP error name a quarantine reason starts with (`MalformedFrame: InvalidMagic …`).
fn first_word(reason: &str) -> String {
    [
        "InvalidMagic",
        "BodyTooLarge",
        "TruncatedHeader",
        "Duplicate",
    ]
    .into_iter()
    .find(|n| reason.contains(n))
    .unwrap_or("?")
    .to_owned()
}

pub(super) async fn flapping(env: &DrillEnv) -> Result<DrillReport, String> {
    cgroups_usable()?;
    let agents = AgentOptions {
        intensity: runloop_actors::supervisor::Intensity {
            restarts_max: 4,
            period_ms: 60_000,
        },
        ..AgentOptions::default()
    };
    let breaker = runloop_actors::breaker::BreakerConfig {
        failures_max: 2,
        window_ms: 60_000,
        open_ms: FLAP_OPEN_MS,
    };
    let lab = Lab::boot(
        env,
        LabOptions {
            agents: Some(agents),
            breaker: Some(breaker),
            ..LabOptions::default()
        },
    )
    .await?;
    // Its sandbox meets the OOM killer on every invoke: a crash each time.
    lab.start("alloc_bomb", "flapper", cgroup_bomb()).await?;
    let submitted = lab.submit_workload().await?;
    let name = agent_name("flapper")?;
    let breaker_of = |k: Arc<Kernel>| async move {
        k.agents()
            .await
            .into_iter()
            .find(|a| a.name == "flapper")
            .map(|a| (a.breaker, a.state, a.quarantine))
    };
    let mut checks = Checks::default();
    let t0 = Instant::now();
    let first = lab.kernel.send(&name, input(serde_json::json!({}))?).await;
    let after_first = breaker_of(lab.kernel.clone()).await;
    let opened = t0.elapsed();
    checks.expect(first.is_err(), "the flapper's first message was answered");
    checks.expect(
        after_first.as_ref().is_some_and(|a| a.0 == "open"),
        format!("the breaker is not open after the crashes: {after_first:?}"),
    );
    let fast = lab.kernel.send(&name, input(serde_json::json!({}))?).await;
    checks.expect(
        matches!(&fast, Err(e) if e.code() == "BreakerOpen"),
        "a message while open did not fail fast with BreakerOpen",
    );
    tokio::time::sleep(Duration::from_millis(FLAP_OPEN_MS + 50)).await;
    let probe = lab.kernel.send(&name, input(serde_json::json!({}))?).await;
    let probe_text = match &probe {
        Ok(_) => "an answer".to_owned(),
        Err(e) => format!("{} ({e})", e.code()),
    };
    checks.expect(
        !probe_text.starts_with("BreakerOpen"),
        format!("no probe was let through after {FLAP_OPEN_MS} ms: {probe_text}"),
    );
    let metrics = Probe::of(&lab.kernel, "flapper").ok_or("the flapper has no metrics")?;
    let parked = metrics
        .until(Duration::from_millis(SETTLE_MS), |s| {
            s.state == AgentState::Quarantined
        })
        .await;
    let last = breaker_of(lab.kernel.clone()).await;
    checks.expect(
        parked.is_some(),
        format!("the crash loop did not end in quarantine: {last:?}"),
    );
    let reason = last.and_then(|l| l.2).unwrap_or_default();
    let tally = workload_tally(&lab, &submitted).await;
    lab.stop().await;
    Ok(Found {
        drill: Drill::Flapping,
        injected: format!(
            "alloc_bomb in a {} MiB cgroup: its sandbox dies on every invoke",
            OOM_CGROUP_BYTES >> 20
        ),
        detect: Some(opened),
        restore: parked.map(|t| t.saturating_duration_since(t0)),
        lost: tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story: format!(
            "the breaker was open after the first message's crashes (detect: from that send); \
             the next message failed fast; after {FLAP_OPEN_MS} ms one probe went through \
             (half-open) and ended with {probe_text}; the crash loop was parked in quarantine \
             (restore: from the first send) with {reason:?}; {}",
            tally.summary
        ),
        checks,
    }
    .report())
}
