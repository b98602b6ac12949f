//! The `daemon-kill` drill: a real `runloopd` of the drill's own (its own `HOME`, socket
//! and POG), SIGKILLed in the middle of a compose_email run and again while the run's
//! email waits for a person's yes; each time it is started again and must resume the run
//! from the POG, and in the end exactly one email is sent and no finished node ran twice.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runloop_proto::payloads::{
    ActionInfo, ControlCommand, ControlOutcome, NodeStatus, RunProgress, RunReport,
};

use super::lab::{self, WORKLOAD_OPENING, workload_outcome};
use super::{Checks, Drill, DrillEnv, DrillReport, ms};

/// Longest wait for the daemon to listen, and for each step of the run.
const LISTEN_MS: u64 = 30_000;
const STEP_MS: u64 = 90_000;
/// How often the drill asks the daemon while it waits for a step.
const POLL_MS: u64 = 10;
/// Longest wait for a SIGTERMed daemon to exit before it is SIGKILLed.
const STOP_MS: u64 = 30_000;
/// What the drill signs its decisions with.
const PEER: &str = "drill";

/// A `runloopd` the drill started; its stderr lines kept with the time each arrived.
struct Daemon {
    child: Option<Child>,
    started: Instant,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Daemon {
    fn spawn(
        bin: &Path,
        home: &Path,
        socket: &Path,
        bundles: &Path,
        cwasm: &Path,
    ) -> Result<Daemon, String> {
        // A socket file left by the killed daemon is replaced by the next one.
        let started = Instant::now();
        let mut child = Command::new(bin)
            .arg("--socket")
            .arg(socket)
            .env("HOME", home)
            .env("RUNLOOP_BUNDLES_DIR", bundles)
            // The drill's compile cache, not one in the fresh HOME: no recompiling per start.
            .env(runloop_compile::CACHE_DIR_ENV, cwasm)
            .env_remove("RUNLOOP__RUNTIME__SOCKET_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines
                        .lock()
                        .expect("daemon lines")
                        .push((Instant::now(), line));
                }
            });
        }
        Ok(Daemon {
            child: Some(child),
            started,
            lines,
        })
    }

    /// When a stderr line containing `needle` arrived, waiting up to `within`.
    async fn line(&self, needle: &str, within: Duration) -> Option<Instant> {
        let end = Instant::now() + within;
        loop {
            let found = self
                .lines
                .lock()
                .expect("daemon lines")
                .iter()
                .find(|(_, l)| l.contains(needle))
                .map(|(t, _)| *t);
            if found.is_some() {
                return found;
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    fn log(&self) -> String {
        let lines = self.lines.lock().expect("daemon lines");
        let tail: Vec<_> = lines.iter().rev().take(5).map(|(_, l)| l.clone()).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn pid(&self) -> Option<nix::unistd::Pid> {
        let id = self.child.as_ref()?.id();
        Some(nix::unistd::Pid::from_raw(i32::try_from(id).ok()?))
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) -> Result<(), String> {
        let pid = self.pid().ok_or("the daemon is not running")?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| format!("SIGKILL runloopd: {e}"))?;
        if let Some(mut child) = self.child.take() {
            child.wait().map_err(|e| format!("reap runloopd: {e}"))?;
        }
        Ok(())
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        let Some(pid) = self.pid() else { return };
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
            return;
        }
        let end = Instant::now() + Duration::from_millis(STOP_MS);
        while Instant::now() < end {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(_))) | None => {
                    self.child = None;
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One control request; a `Failed` answer is an error naming its code.
async fn ask(socket: &Path, command: ControlCommand) -> Result<ControlOutcome, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("drill-{}-{n}", std::process::id());
    let reply = runloop_client::request(socket, &id, command)
        .await
        .map_err(|e| e.to_string())?;
    match reply.outcome {
        ControlOutcome::Failed { code, message } => Err(format!("{code}: {message}")),
        other => Ok(other),
    }
}

async fn run_events(socket: &Path, trace: &str) -> Vec<RunProgress> {
    match ask(
        socket,
        ControlCommand::RunShow {
            trace_id: trace.into(),
        },
    )
    .await
    {
        Ok(ControlOutcome::RunState { events }) => events,
        _ => Vec::new(),
    }
}

async fn pending(socket: &Path, trace: &str) -> Option<ActionInfo> {
    match ask(socket, ControlCommand::ConfirmList).await {
        Ok(ControlOutcome::Actions { actions }) => {
            actions.into_iter().find(|a| a.trace_id == trace)
        }
        _ => None,
    }
}

/// Polls `probe` every [`POLL_MS`] until it gives something, up to [`STEP_MS`].
async fn until<T, F, Fut>(mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_millis(STEP_MS);
    while Instant::now() < end {
        if let Some(found) = probe().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    None
}

/// One kill and restart: how long until the restarted daemon resumed the run.
struct Restart {
    /// From the restart (spawn) to the daemon saying it resumed the run.
    resumed: Option<Duration>,
    /// From the SIGKILL to that line.
    from_kill: Option<Duration>,
}

async fn kill_and_restart(
    daemon: &mut Daemon,
    start: impl Fn() -> Result<Daemon, String>,
    trace: &str,
) -> Result<Restart, String> {
    let killed_at = Instant::now();
    daemon.kill()?;
    *daemon = start()?;
    let resumed = daemon
        .line(
            &format!("resumed run {trace}"),
            Duration::from_millis(LISTEN_MS),
        )
        .await;
    daemon
        .line("listening on", Duration::from_millis(LISTEN_MS))
        .await
        .ok_or_else(|| format!("the restarted runloopd did not listen: {}", daemon.log()))?;
    Ok(Restart {
        resumed: resumed.map(|t| t.saturating_duration_since(daemon.started)),
        from_kill: resumed.map(|t| t.saturating_duration_since(killed_at)),
    })
}

fn emails(home: &Path) -> u64 {
    let outbox = home.join(".runloop/outbox");
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(outbox.join(sub)).ok())
        .map(|d| d.flatten().count() as u64)
        .sum()
}

pub(super) async fn daemon_kill(env: &DrillEnv) -> Result<DrillReport, String> {
    let bin = env.runloopd.clone().ok_or(
        "no runloopd binary to drill (build it: cargo build -p runloop-kernel --bin runloopd)",
    )?;
    if !bin.is_file() {
        return Err(format!("no runloopd at {}", bin.display()));
    }
    let bundles = env
        .search_dirs
        .iter()
        .find(|d| d.join("mailer/manifest.toml").is_file())
        .cloned()
        .ok_or("the compose_email bundles are not on the search path")?;
    let home = tempfile::Builder::new()
        .prefix("runloop-drill-daemon-")
        .tempdir()
        .map_err(|e| format!("create a HOME for the daemon: {e}"))?;
    lab::seed_sample_pog(&home.path().join(".runloop/pog"))?;
    let socket: PathBuf = home.path().join("rmp.sock");
    let cwasm = env
        .cwasm_dir
        .clone()
        .unwrap_or_else(runloop_compile::Compiler::default_dir);
    let start = || Daemon::spawn(&bin, home.path(), &socket, &bundles, &cwasm);
    let mut daemon = start()?;
    let listening = daemon
        .line("listening on", Duration::from_millis(LISTEN_MS))
        .await
        .ok_or_else(|| format!("runloopd did not listen: {}", daemon.log()))?;
    // The baseline: a daemon with nothing to resume, from its start to listening.
    let cold = listening.saturating_duration_since(daemon.started);

    let submitted = ask(
        &socket,
        ControlCommand::RunSubmit {
            source: WORKLOAD_OPENING.into(),
            dir: "/nonexistent".into(),
            params_json: "{}".into(),
            watch: false,
        },
    )
    .await?;
    let ControlOutcome::RunSubmitted {
        trace_id: trace, ..
    } = submitted
    else {
        return Err(format!("run_submit answered {submitted:?}"));
    };
    // Kill 1: once a node has finished and the run goes on.
    let finished_before = until(|| async {
        let events = run_events(&socket, &trace).await;
        let done: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                RunProgress::NodeFinished { node, .. } => Some(node.clone()),
                _ => None,
            })
            .collect();
        let over = events
            .iter()
            .any(|e| matches!(e, RunProgress::RunFinished { .. }));
        (!done.is_empty() && !over).then_some(done)
    })
    .await
    .ok_or("no node finished while the run ran")?;
    let first = kill_and_restart(&mut daemon, start, &trace).await?;
    // Kill 2: while the email waits for a person's yes.
    until(|| pending(&socket, &trace))
        .await
        .ok_or("the resumed run never asked for its email's yes")?;
    let second = kill_and_restart(&mut daemon, start, &trace).await?;
    let action = until(|| pending(&socket, &trace))
        .await
        .ok_or("after the second restart the email was not asked for again")?;
    ask(
        &socket,
        ControlCommand::ConfirmDecide {
            request_id: action.request_id.clone(),
            approve: true,
            payload_hash: action.payload_hash.clone(),
            by: PEER.into(),
            reason: None,
        },
    )
    .await?;
    let report: Option<RunReport> = match ask(
        &socket,
        ControlCommand::RunWatch {
            trace_id: trace.clone(),
            watch: false,
        },
    )
    .await
    {
        Ok(ControlOutcome::RunFinished { report }) => Some(report),
        _ => None,
    };
    daemon.stop();
    let outcome = workload_outcome(report.as_ref());
    let sent = emails(home.path());
    let mut checks = Checks::default();
    let mut rerun = Vec::new();
    let mut lost = u64::from(report.is_none());
    if let Some(report) = &report {
        for node in &report.nodes {
            let ended = matches!(node.status, NodeStatus::Succeeded | NodeStatus::Skipped);
            lost += u64::from(!ended);
            if finished_before.contains(&node.id) && node.attempts > 1 {
                rerun.push(node.id.clone());
            }
        }
    }
    checks.expect(
        rerun.is_empty(),
        format!("nodes finished before the kill ran again: {rerun:?}"),
    );
    for (n, r) in [(1, &first), (2, &second)] {
        checks.expect(
            r.resumed.is_some(),
            format!("restart {n}: the daemon did not resume the run"),
        );
    }
    let resumed: Vec<Duration> = [&first, &second].iter().filter_map(|r| r.resumed).collect();
    let from_kill: Vec<Duration> = [&first, &second]
        .iter()
        .filter_map(|r| r.from_kill)
        .collect();
    let fmt = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.1} ms", ms(*d)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    Ok(super::faults::Found {
        drill: Drill::DaemonKill,
        injected: "SIGKILL of runloopd mid-run, and again while the email waited for a yes".into(),
        detect: resumed.iter().max().copied(),
        restore: from_kill.iter().max().copied(),
        lost,
        duplicated: sent.saturating_sub(1),
        runs_ok: u64::from(outcome.ok && sent == 1),
        runs_total: 1,
        story: format!(
            "runloopd was killed after {} had finished, and again while the email waited; \
             each restarted daemon resumed the run from the POG after {} (detect: from its \
             start, the worst of the two; the first daemon, with nothing to resume, listened \
             {:.1} ms after its start; restore: from the kill, {}); the email was asked \
             again and approved once; {}, {sent} email(s) in the outbox",
            finished_before.join(", "),
            fmt(&resumed),
            ms(cold),
            fmt(&from_kill),
            outcome.summary
        ),
        checks,
    }
    .report())
}
