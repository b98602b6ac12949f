//! Real Rust agents (the committed canonical bundles of `agents/bundles/`, built for
//! wasm32-wasip1 with the SDK) end to end: bundle verified, compiled, run in a real
//! sandbox-host process in a real cgroup.

mod common;

use std::path::Path;

use common::{TestCgroup, limits, program};
use runloop_compile::Compiler;
use runloop_proto::SystemClock;
use runloop_proto::payloads::{AgentInput, InvokeError};
use runloop_sandbox::{CgroupLimits, LocalHandler, OsRandom, Sandbox, SpawnConfig};

fn bundle_sandbox(name: &str, tag: &str) -> (TestCgroup, Sandbox) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agents/bundles")
        .join(name);
    let bundle = runloop_bundle::Bundle::load(&dir, &runloop_bundle::TrustPolicy::default())
        .expect("committed bundle verifies against the project key");
    let cache = std::env::temp_dir().join(format!("runloop-sbx-test-{}", std::process::id()));
    let compiled = Compiler::new(cache)
        .unwrap()
        .compile_bytes(bundle.wasm())
        .unwrap();
    let cg = TestCgroup::new(
        tag,
        &CgroupLimits {
            memory_bytes_max: Some(256 * 1024 * 1024),
            cpu_percent_max: None,
            pids_max: Some(16),
        },
    );
    let mut l = limits();
    l.invoke_wall_ms_max = 5_000;
    let config = SpawnConfig {
        program: program(),
        extra_args: Vec::new(),
        agent: name.into(),
        module_path: compiled.path,
        limits: l,
    };
    let sandbox = Sandbox::spawn(&config, Some(cg.group())).expect("spawn");
    (cg, sandbox)
}

fn input(entries: Vec<(&str, rmpv::Value)>) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect()),
    }
}

#[test]
fn rust_echo_agent_round_trips_with_host_calls() {
    let (_cg, mut sandbox) = bundle_sandbox("echo", "rust-echo");
    let mut handler = LocalHandler::new(runloop_proto::ManualClock::new(1_234), OsRandom);
    let plain = input(vec![("text", "hi".into())]);
    let report = sandbox.invoke(plain.clone(), &mut handler).unwrap();
    assert_eq!(report.outcome.error, None);
    assert_eq!(report.outcome.host_calls, 0);
    assert_eq!(report.outputs.len(), 1);
    assert_eq!(report.outputs[0].port, "out");
    assert_eq!(report.outputs[0].payload, plain.payload);

    let logged = input(vec![("text", "hi".into()), ("log", true.into())]);
    let report = sandbox.invoke(logged, &mut handler).unwrap();
    assert_eq!(report.outcome.error, None, "{:?}", report.outcome);
    assert_eq!(report.outcome.host_calls, 2);
    let rmpv::Value::Map(entries) = &report.outputs[0].payload else {
        panic!("map payload");
    };
    assert!(
        entries
            .iter()
            .any(|(k, v)| k.as_str() == Some("logged_at_ms") && v.as_u64() == Some(1_234))
    );
    assert_eq!(handler.logs().len(), 1);
    assert_eq!(handler.logs()[0].message, "echo: hi");
    assert_eq!(
        sandbox.shutdown().status,
        runloop_sandbox::ExitStatus::Exited(0)
    );
}

#[test]
fn rust_panicking_agent_traps_with_its_panic_message() {
    let (_cg, mut sandbox) = bundle_sandbox("panicker", "rust-panic");
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    let report = sandbox.invoke(input(vec![]), &mut handler).unwrap();
    let Some(InvokeError::Trap { message }) = report.outcome.error else {
        panic!("want Trap, got {:?}", report.outcome.error);
    };
    assert!(message.contains("deliberate panic"), "{message}");
}

#[test]
fn rust_alloc_bomb_hits_the_memory_limit() {
    let (_cg, mut sandbox) = bundle_sandbox("alloc_bomb", "rust-bomb");
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    let report = sandbox.invoke(input(vec![]), &mut handler).unwrap();
    assert_eq!(
        report.outcome.error,
        Some(InvokeError::MemoryLimit {
            limit_bytes: 16 * 1024 * 1024
        })
    );
    assert!(report.outputs.is_empty());
}

#[test]
fn pipelined_invokes_complete_in_order_with_their_host_calls() {
    let (_cg, mut sandbox) = bundle_sandbox("echo", "rust-pipeline");
    let mut handler = LocalHandler::new(runloop_proto::ManualClock::new(7), OsRandom);
    // Plain and host-calling invokes interleaved: the sandbox must set pipelined invokes
    // aside while a host call waits for its reply, and answer them in order.
    let inputs: Vec<AgentInput> = (0..40)
        .map(|i| {
            let text = rmpv::Value::from(format!("m{i}"));
            if i % 3 == 0 {
                input(vec![("text", text), ("log", true.into())])
            } else {
                input(vec![("text", text)])
            }
        })
        .collect();
    let mut ids = Vec::new();
    for one in &inputs {
        ids.push(sandbox.submit(one.clone()).expect("room in the pipeline"));
    }
    assert_eq!(sandbox.outstanding(), inputs.len());
    let mut done = Vec::new();
    while done.len() < inputs.len() {
        sandbox.drive(&mut handler, None, &mut done).unwrap();
    }
    assert_eq!(sandbox.outstanding(), 0);
    let got: Vec<u64> = done.iter().map(|c| c.invoke_id).collect();
    assert_eq!(got, ids, "outcomes arrive in submission order");
    for (i, (completed, sent)) in done.iter().zip(&inputs).enumerate() {
        let report = &completed.report;
        assert_eq!(report.outcome.error, None, "{i}: {:?}", report.outcome);
        assert_eq!(report.outcome.host_calls, if i % 3 == 0 { 2 } else { 0 });
        let rmpv::Value::Map(got) = &report.outputs[0].payload else {
            panic!("map payload");
        };
        let rmpv::Value::Map(want) = &sent.payload else {
            unreachable!()
        };
        assert_eq!(got.first(), want.first(), "{i}: its own text came back");
    }
    assert_eq!(
        handler.logs().len(),
        14,
        "one log line per host-calling invoke"
    );
    assert_eq!(
        sandbox.shutdown().status,
        runloop_sandbox::ExitStatus::Exited(0)
    );
}

#[test]
fn the_pipeline_is_bounded_and_an_oversized_input_is_refused_without_a_kill() {
    use runloop_proto::payloads::PIPELINE_INVOKES_MAX;
    use runloop_sandbox::SubmitError;
    let (_cg, mut sandbox) = bundle_sandbox("echo", "rust-bounded");
    let pid = sandbox.pid();
    let huge = "x".repeat(3 * 1024 * 1024);
    let err = sandbox
        .submit(input(vec![("text", huge.into())]))
        .unwrap_err();
    assert!(matches!(err, SubmitError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("BodyTooLarge"), "{err}");
    for i in 0..PIPELINE_INVOKES_MAX {
        sandbox
            .submit(input(vec![("text", format!("{i}").into())]))
            .unwrap();
    }
    let err = sandbox.submit(input(vec![("text", "one more".into())]));
    assert!(matches!(err, Err(SubmitError::PipelineFull)), "{err:?}");
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    let mut done = Vec::new();
    while done.len() < PIPELINE_INVOKES_MAX {
        sandbox.drive(&mut handler, None, &mut done).unwrap();
    }
    assert!(done.iter().all(|c| c.report.outcome.error.is_none()));
    assert_eq!(sandbox.pid(), pid, "the same sandbox served them all");
    assert_eq!(
        sandbox.shutdown().status,
        runloop_sandbox::ExitStatus::Exited(0)
    );
}

#[test]
fn an_output_nesting_too_deep_is_a_guest_fault_not_a_dead_sandbox() {
    let (_cg, mut sandbox) = bundle_sandbox("echo", "rust-deep");
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    let nested = |depth: usize| {
        (1..depth).fold(rmpv::Value::from(1), |v, _| {
            rmpv::Value::Map(vec![("a".into(), v)])
        })
    };
    let deep = AgentInput {
        port: "in".into(),
        payload: nested(runloop_proto::VALUE_DEPTH_MAX + 1),
    };
    let report = sandbox.invoke(deep, &mut handler).unwrap();
    let Some(InvokeError::Trap { message }) = report.outcome.error else {
        panic!("want Trap, got {:?}", report.outcome.error);
    };
    assert!(message.contains("nests deeper than 56 levels"), "{message}");
    assert!(report.outputs.is_empty());
    // The same sandbox answers the next invoke.
    let fits = AgentInput {
        port: "in".into(),
        payload: nested(runloop_proto::VALUE_DEPTH_MAX),
    };
    let report = sandbox.invoke(fits.clone(), &mut handler).unwrap();
    assert_eq!(report.outcome.error, None);
    assert_eq!(report.outputs[0].payload, fits.payload);
}
