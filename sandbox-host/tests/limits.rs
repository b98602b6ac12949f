//! WAT fixtures through a real sandbox-host process in a real cgroup: each limit → its
//! typed error; echo and host calls work.

mod common;

use std::time::Instant;

use common::{input, limits, spawn};
use runloop_proto::payloads::{HostErrorCode, HostReply, InvokeError, OutputLimitKind};
use runloop_proto::{ManualClock, SystemClock};
use runloop_sandbox::{LocalHandler, OsRandom};

fn handler() -> LocalHandler<SystemClock, OsRandom> {
    LocalHandler::new(SystemClock, OsRandom)
}

#[test]
fn echo_returns_its_input_and_the_sandbox_shuts_down_cleanly() {
    let (cg, mut sandbox) = spawn("echo.wat", limits(), "echo");
    let facts = sandbox.facts();
    assert!(facts.cold_start_us > 0);
    assert_eq!(facts.cgroup_path.as_deref(), Some(cg.group().path()));
    let procs = std::fs::read_to_string(&cg.group().procs_files()[0]).unwrap();
    assert!(
        procs.lines().any(|l| l == sandbox.pid().to_string()),
        "sandbox is in its cgroup"
    );
    for text in ["hello", "again"] {
        let report = sandbox.invoke(input(text), &mut handler()).unwrap();
        assert_eq!(report.outcome.error, None);
        assert_eq!(report.outputs.len(), 1);
        assert_eq!(report.outputs[0].port, "in");
        assert_eq!(report.outputs[0].payload, input(text).payload);
    }
    let stats = cg.group().stats().unwrap();
    assert!(
        stats.memory_peak_bytes > 0 && stats.cpu_usage_us > 0,
        "{stats:?}"
    );
    let reaped = sandbox.shutdown();
    assert_eq!(reaped.status, runloop_sandbox::ExitStatus::Exited(0));
    assert!(reaped.peak_rss_kb > 0);
}

#[test]
fn a_time_limit_still_fires_after_the_idle_ticker_parked() {
    let (_cg, mut sandbox) = spawn("loop.wat", limits(), "loop-parked");
    // Idle for longer than the ticker keeps ticking (TICKER_IDLE_TICKS_MAX × 2 ms): the
    // invoke must wake it, or the guest would spin until the kernel's watchdog.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = Instant::now();
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    let took_ms = started.elapsed().as_millis();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::TimeLimit { limit_ms: 300 })
    );
    assert!((300..800).contains(&took_ms), "took {took_ms} ms");
}

#[test]
fn infinite_loop_ends_with_time_limit_within_the_bound() {
    let (_cg, mut sandbox) = spawn("loop.wat", limits(), "loop");
    let started = Instant::now();
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    let took_ms = started.elapsed().as_millis();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::TimeLimit { limit_ms: 300 })
    );
    assert!(
        (300..800).contains(&took_ms),
        "took {took_ms} ms for a 300 ms limit"
    );
    // The sandbox survives its guest's timeout and serves the next invoke.
    let again = sandbox.invoke(input("y"), &mut handler()).unwrap();
    assert!(matches!(
        again.outcome.error,
        Some(InvokeError::TimeLimit { .. })
    ));
}

#[test]
fn memory_bomb_ends_with_memory_limit() {
    let (_cg, mut sandbox) = spawn("bomb.wat", limits(), "bomb");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::MemoryLimit {
            limit_bytes: 16 * 1024 * 1024
        })
    );
}

#[test]
fn huge_output_ends_with_output_limit() {
    let mut l = limits();
    l.memory_bytes_max = 8 * 1024 * 1024;
    let (_cg, mut sandbox) = spawn("huge_output.wat", l, "huge");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::OutputLimit {
            what: OutputLimitKind::Bytes,
            limit: 1024 * 1024
        })
    );
    assert!(report.outputs.is_empty());
}

#[test]
fn host_call_flood_ends_with_host_call_limit() {
    let (_cg, mut sandbox) = spawn("flood.wat", limits(), "flood");
    let mut h = LocalHandler::new(ManualClock::new(7), OsRandom);
    let report = sandbox.invoke(input("x"), &mut h).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::HostCallLimit { limit: 32 })
    );
    assert_eq!(report.outcome.host_calls, 32);
}

#[test]
fn kernel_ops_answer_not_available_without_a_kernel() {
    let (_cg, mut sandbox) = spawn("ask.wat", limits(), "ask");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(report.outcome.error, None);
    assert_eq!(report.outcome.host_calls, 1);
    let rmpv::Value::Binary(bytes) = &report.outputs[0].payload else {
        panic!("payload is the raw reply: {:?}", report.outputs[0].payload);
    };
    let reply: HostReply = rmp_serde::from_slice(bytes).unwrap();
    assert_eq!(
        reply,
        HostReply::Err {
            code: HostErrorCode::NotAvailable,
            message: "kb.query is not available in this mode (no kernel)".into(),
        }
    );
}

#[test]
fn guest_failure_trap_and_log_limit_are_typed() {
    let (_cg, mut sandbox) = spawn("fail.wat", limits(), "fail");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::GuestFailed {
            message: "no can do".into()
        })
    );
    drop(sandbox);

    let (_cg2, mut sandbox) = spawn("trap.wat", limits(), "trap");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    let Some(InvokeError::Trap { message }) = report.outcome.error else {
        panic!("want Trap, got {:?}", report.outcome.error);
    };
    assert!(message.contains("unreachable"), "{message}");
    drop(sandbox);

    let (_cg3, mut sandbox) = spawn("wasi_log.wat", limits(), "log");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::LogLimit { limit: 4096 })
    );
    // WASI writes what fits (the pipe holds limit + 1 bytes), the sandbox counts it.
    assert!(report.outcome.stdout.starts_with("hello\n"));
    assert_eq!(report.outcome.stdout.len(), 4096);
}

#[test]
fn fuel_bounds_a_loop_deterministically() {
    let mut l = limits();
    l.invoke_fuel_max = Some(100_000);
    l.invoke_wall_ms_max = 10_000;
    let (_cg, mut sandbox) = spawn("loop.wat", l, "fuel");
    let report = sandbox.invoke(input("x"), &mut handler()).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::FuelExhausted { limit: 100_000 })
    );
    assert_eq!(report.outcome.fuel_used, Some(100_000));
}
