//! Every drill against real sandboxes, cgroups, the POG and the effects journal: each must
//! pass, with nothing lost or done twice, and report what the issue asks of it.

mod common;

use std::path::Path;

use runloop_kernel::drill::{self, Drill, DrillEnv, DrillReport};

fn env() -> DrillEnv {
    DrillEnv {
        search_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles")],
        sandbox_host: Some(common::sandbox_host()),
        cwasm_dir: Some(
            std::env::temp_dir().join(format!("runloop-agent-test-{}-drills", std::process::id())),
        ),
        runloopd: Some(env!("CARGO_BIN_EXE_runloopd").into()),
    }
}

/// The POG and broker actors register their names once per process: one drill at a time.
static ONE_KERNEL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn passes(d: Drill) -> DrillReport {
    let report = drill::run(d, &env()).await;
    assert!(report.passed, "{}\n{:#?}", report.report, report.failures);
    assert_eq!(report.name, d.name());
    assert_eq!(report.lost, 0, "{}", report.report);
    assert_eq!(report.duplicated_effects, 0, "{}", report.report);
    assert!(report.runs_total >= 1, "{}", report.report);
    assert_eq!(report.runs_ok, report.runs_total, "{}", report.report);
    assert!(report.detect_ms.is_some(), "{}", report.report);
    report
}

// The drills share one process-wide POG name: one at a time, in one test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drill_passes_and_reports_its_figures() {
    let _one = ONE_KERNEL.lock().await;
    let kill = passes(Drill::KillSandbox).await;
    assert!(kill.restore_ms.is_some(), "{}", kill.report);
    assert!(kill.report.contains("(recalled)"), "{}", kill.report);

    let wasm = passes(Drill::OomWasm).await;
    assert!(wasm.report.contains("MemoryLimit"), "{}", wasm.report);

    let cgroup = passes(Drill::OomCgroup).await;
    assert!(cgroup.report.contains("out of memory"), "{}", cgroup.report);

    let spin = passes(Drill::CpuSpin).await;
    assert!(spin.report.contains("p50"), "{}", spin.report);

    let frames = passes(Drill::BadFrames).await;
    for name in [
        "InvalidMagic",
        "BodyTooLarge",
        "TruncatedHeader",
        "Duplicate",
    ] {
        assert!(frames.report.contains(name), "{name}: {}", frames.report);
    }
    assert_eq!(frames.restore_ms, None);

    let flap = passes(Drill::Flapping).await;
    assert!(flap.report.contains("half-open"), "{}", flap.report);

    let restore = passes(Drill::PogRestore).await;
    assert_eq!(restore.runs_total, 2, "{}", restore.report);
    assert!(restore.report.contains("identical"), "{}", restore.report);

    let slow = passes(Drill::SlowModel).await;
    assert!(slow.report.contains("timed out"), "{}", slow.report);
    assert!(slow.report.contains("http 500"), "{}", slow.report);
    assert_eq!(slow.runs_total, 2, "{}", slow.report);

    let daemon = passes(Drill::DaemonKill).await;
    let resumed = daemon.detect_ms.unwrap();
    assert!(
        resumed > 0.0 && daemon.restore_ms.unwrap() >= resumed,
        "{}",
        daemon.report
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_kill_without_runloopd_fails_saying_so() {
    let _one = ONE_KERNEL.lock().await;
    let env = DrillEnv {
        runloopd: None,
        ..env()
    };
    let report = drill::run(Drill::DaemonKill, &env).await;
    assert!(!report.passed);
    assert!(report.report.contains("no runloopd"), "{}", report.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bundle_is_a_failed_report_not_a_panic() {
    let _one = ONE_KERNEL.lock().await;
    let env = DrillEnv {
        search_dirs: vec![std::env::temp_dir().join("runloop-no-bundles-here")],
        ..env()
    };
    // bad-frames needs only echo and the workload: neither is found.
    let report = drill::run(Drill::BadFrames, &env).await;
    assert!(!report.passed);
    assert!(report.report.contains("could not"), "{}", report.report);
    assert!(!report.failures.is_empty());
    // The lab it booted was stopped on the way out: the next drill boots.
    let env = DrillEnv {
        search_dirs: self::env().search_dirs,
        ..env
    };
    let again = drill::run(Drill::BadFrames, &env).await;
    assert!(again.passed, "{}", again.report);
}
