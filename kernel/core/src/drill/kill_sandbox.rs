//! The `kill-sandbox` drill: SIGKILL of the mailer's sandbox in the middle of its invoke,
//! right after its email was sent; the invoke must be redelivered and answered once, from
//! the effects journal.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use runloop_agent_actor::AgentState;
use runloop_proto::payloads::RunProgress;

use super::faults::{Found, sigkill, workload_tally};
use super::lab::{self, Lab, LabOptions, Probe, running_anew, workload_outcome};
use super::{Checks, Drill, DrillEnv, DrillReport, ms};
use crate::Kernel;

/// Longest wait for the agent to get back to a settled state after the kill.
const SETTLE_MS: u64 = super::faults::SETTLE_MS;

/// What the kill hook did: when, which sandbox, which agent.
type Killed = Arc<Mutex<Option<(Instant, u32, String)>>>;

pub(super) async fn kill_sandbox(env: &DrillEnv) -> Result<DrillReport, String> {
    let target: Arc<OnceLock<Weak<Kernel>>> = Arc::new(OnceLock::new());
    let killed: Killed = Arc::new(Mutex::new(None));
    let failed_kill: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    // Runs on the mailer's driver thread right after its email's result is recorded and
    // before the guest hears of it: the middle of the invoke.
    let hook: crate::effects::AfterEffect = {
        let (target, killed, failed_kill) = (target.clone(), killed.clone(), failed_kill.clone());
        Arc::new(move |site| {
            let mut done = killed.lock().expect("kill record");
            if done.is_some() {
                return;
            }
            let Some(kernel) = target.get().and_then(Weak::upgrade) else {
                return;
            };
            let pid = kernel
                .metrics_named(site.agent)
                .and_then(|m| m.counters().sandbox_pid);
            drop(kernel);
            let Some(pid) = pid else {
                *failed_kill.lock().expect("kill error") =
                    Some(format!("no sandbox pid for {}", site.agent));
                return;
            };
            let at = Instant::now();
            match sigkill(pid) {
                Ok(()) => *done = Some((at, pid, site.agent.to_owned())),
                Err(e) => *failed_kill.lock().expect("kill error") = Some(e),
            }
        })
    };
    let lab = Lab::boot(
        env,
        LabOptions {
            after_effect: Some(hook),
            ..LabOptions::default()
        },
    )
    .await?;
    let _ = target.set(Arc::downgrade(&lab.kernel));
    let mut progress = lab.engine.progress();
    let submitted = lab.submit_workload().await?;
    let trace = submitted.trace_id.clone();
    // Watch for the kill, then for the agent noticing, a new sandbox, and the answer.
    let watch = async {
        let end = Instant::now() + Duration::from_millis(lab::RUN_TIMEOUT_MS);
        let (at, pid, agent) = loop {
            if let Some(k) = killed.lock().expect("kill record").clone() {
                break k;
            }
            if Instant::now() >= end || failed_kill.lock().expect("kill error").is_some() {
                return None;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let probe = Probe::of(&lab.kernel, &agent)?;
        let settle = Duration::from_millis(SETTLE_MS);
        let detected = probe
            .until(settle, |s| {
                s.state != AgentState::Running || s.sandbox_pid != Some(pid)
            })
            .await;
        let ready = probe.until(settle, |s| running_anew(s, pid)).await;
        Some((at, pid, agent, detected, ready))
    };
    let answered = async {
        let end = tokio::time::Instant::now() + Duration::from_millis(lab::RUN_TIMEOUT_MS);
        loop {
            match tokio::time::timeout_at(end, progress.recv()).await {
                Ok(Ok(event)) => {
                    let send_done =
                        matches!(&event, RunProgress::NodeFinished { node, .. } if node == "send");
                    if send_done && event.trace_id() == trace {
                        return Some(Instant::now());
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                _ => return None,
            }
        }
    };
    let (watched, answered_at) = tokio::join!(watch, answered);
    let tally = workload_tally(&lab, &submitted).await;
    let outcome_recalled = lab::finish(&submitted)
        .await
        .map(|r| workload_outcome(Some(&r)).recalled)
        .unwrap_or(false);
    let mut checks = Checks::default();
    if let Some(e) = failed_kill.lock().expect("kill error").clone() {
        checks.expect(false, format!("the kill failed: {e}"));
    }
    let (injected, detect, restore, story) = match watched {
        Some((at, pid, agent, detected, ready)) => {
            checks.expect(
                detected.is_some(),
                "the kernel never noticed the dead sandbox",
            );
            checks.expect(ready.is_some(), "no new sandbox ran");
            checks.expect(answered_at.is_some(), "the send node never finished");
            checks.expect(
                outcome_recalled,
                "the redelivered invoke was not answered from the journal",
            );
            let restore = answered_at.map(|t| t.saturating_duration_since(at));
            let ready_ms = ready
                .map(|t| format!("{:.1} ms", ms(t.saturating_duration_since(at))))
                .unwrap_or_else(|| "never".into());
            (
                format!("SIGKILL of {agent}'s sandbox (pid {pid}) right after its email was sent"),
                detected.map(|t| t.saturating_duration_since(at)),
                restore,
                format!(
                    "the mailer's sandbox was killed mid-invoke after the send; a new sandbox ran \
                     after {ready_ms} and the redelivered invoke was answered from the effects \
                     journal ({}recalled); restore counts until that answer; {}",
                    if outcome_recalled { "" } else { "not " },
                    tally.summary
                ),
            )
        }
        None => {
            checks.expect(false, "the sandbox was never killed");
            (
                "nothing (the hook did not fire)".into(),
                None,
                None,
                tally.summary.clone(),
            )
        }
    };
    lab.stop().await;
    Ok(Found {
        drill: Drill::KillSandbox,
        injected,
        detect,
        restore,
        lost: tally.lost,
        duplicated: tally.duplicated,
        runs_ok: tally.runs_ok,
        runs_total: 1,
        story,
        checks,
    }
    .report())
}
