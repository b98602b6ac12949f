//! The `pog-restore` drill: an online backup of the POG in the middle of a run, restored
//! over the live files with the kernel stopped; it must verify, boot, and replay a run
//! recorded before the backup identically.

use std::time::{Duration, Instant};

use runloop_proto::payloads::RunProgress;

use super::faults::Found;
use super::lab::{self, Lab, LabOptions, workload_outcome};
use super::{Checks, Drill, DrillEnv, DrillReport, ms};

pub(super) async fn pog_restore(env: &DrillEnv) -> Result<DrillReport, String> {
    use runloop_pog_actor::PogMsg;
    let lab = Lab::boot(env, LabOptions::default()).await?;
    // Run A is recorded whole before the backup; run B is in the middle of it.
    let a = lab.submit_workload().await?;
    let a_report = lab::finish(&a).await;
    let a_ok = workload_outcome(a_report.as_ref()).ok;
    let mut progress = lab.engine.progress();
    let b = lab.submit_workload().await?;
    let mid_run = async {
        loop {
            match progress.recv().await {
                Ok(event)
                    if event.trace_id() == b.trace_id
                        && matches!(event, RunProgress::NodeFinished { .. }) =>
                {
                    return true;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    };
    let in_time = tokio::time::timeout(Duration::from_millis(lab::RUN_TIMEOUT_MS), mid_run).await;
    if !matches!(in_time, Ok(true)) {
        return Err("run B never finished a node".into());
    }
    let backup_dir = lab.state_dir().join("backup");
    let pog = lab.kernel.pog().ok_or("the lab has no POG")?;
    let t = Instant::now();
    let backup = ractor::call_t!(pog, PogMsg::Backup, 60_000, backup_dir.clone())
        .map_err(|e| format!("ask the POG for a backup: {e}"))?
        .map_err(|e| format!("online backup: {e}"))?;
    let backup_took = t.elapsed();
    let b_report = lab::finish(&b).await;
    let b_ok = workload_outcome(b_report.as_ref()).ok;
    let emails_before = lab.emails();
    let cfg = lab.pog_config();
    let state = lab.stop_keeping_state().await;
    // Restore over the live files (the kernel is stopped), verify, boot on it, replay A.
    let t = Instant::now();
    let restored =
        runloop_pog::restore(&backup_dir, &cfg, true).map_err(|e| format!("restore: {e}"))?;
    let verified = runloop_pog::verify(&cfg).map_err(|e| format!("verify: {e}"))?;
    let lab = Lab::boot_on(env, state, LabOptions::default()).await?;
    let restore_took = t.elapsed();
    let replay = crate::trace::replay::replay(&lab.engine, &a.trace_id).await;
    let runs = lab.engine.list(16).await;
    lab.stop().await;
    let mut checks = Checks::default();
    checks.expect(
        verified.first_bad.is_none(),
        format!("the restored POG does not verify: {:?}", verified.first_bad),
    );
    checks.expect(
        verified.head_seq == backup.verify.head_seq,
        format!(
            "the restored head is seq {}, the backup's {}",
            verified.head_seq, backup.verify.head_seq
        ),
    );
    let (identical, replay_text) = match &replay {
        Ok(r) => (
            r.identical && r.effects_performed == 0,
            format!(
                "{} of {} nodes identical, {} effects performed",
                r.nodes.iter().filter(|n| n.identical).count(),
                r.nodes.len(),
                r.effects_performed
            ),
        ),
        Err(e) => (false, format!("replay failed: {e}")),
    };
    checks.expect(
        identical,
        format!("run A did not replay identically: {replay_text}"),
    );
    let b_after = match &runs {
        Ok(list) => list
            .iter()
            .find(|r| r.trace_id == b.trace_id)
            .map(|r| r.status.as_str().to_owned())
            .unwrap_or_else(|| "absent".into()),
        Err(e) => format!("unknown ({e})"),
    };
    checks.expect(
        b_after != "absent",
        "run B, started before the backup, is missing from the restored POG",
    );
    Ok(Found {
        drill: Drill::PogRestore,
        injected: "an online backup of the POG in the middle of a run, restored over the live \
                   files after the kernel stopped"
            .into(),
        detect: Some(backup_took),
        restore: Some(restore_took),
        lost: u64::from(a_report.is_none()) + u64::from(b_report.is_none()),
        duplicated: emails_before.saturating_sub(2),
        runs_ok: u64::from(a_ok) + u64::from(b_ok),
        runs_total: 2,
        story: format!(
            "run A finished, run B was mid-run when the backup was taken ({:.1} ms, head seq \
             {}, detect is that time); both finished; the backup was restored over the POG \
             ({} events) and verified (head seq {}, no bad event), a kernel booted on it \
             (restore: restore + verify + boot); run A replayed: {replay_text}; run B shows as \
             {b_after} (its later part is not in the backup); {emails_before} email(s) for the \
             two runs",
            ms(backup_took),
            backup.verify.head_seq,
            restored.events,
            verified.head_seq
        ),
        checks,
    }
    .report())
}
