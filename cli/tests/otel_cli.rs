//! An embedded `rlp run` with `observability.traces` on exports the kernel's own spans
//! (`node.attempt`, `agent.start`) in the run's trace, beside its crossings — through the
//! kernel-span layer `rlp` installs at start and binds once its config turns export on.
//! Against a real OTLP receiver on loopback (`packaging/scripts/otlp-receiver.sh`, built
//! on the official OTLP protobuf definitions).

mod common;
#[path = "../../kernel/core/tests/common/servers.rs"]
mod servers;

use std::time::{Duration, Instant};

use common::{example, json_of, rlp_command, text};
use serde_json::Value;
use servers::OtlpReceiver;

/// Longest wait for the spans to reach the receiver after `rlp` exited (it flushed them).
const RECEIVE_WAIT_MS: u64 = 10_000;

/// The spans of one trace, waiting until `want` of scope `scope` arrived.
fn spans_of(receiver: &OtlpReceiver, trace_id: &str, scope: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_millis(RECEIVE_WAIT_MS);
    loop {
        let spans = receiver.spans(trace_id);
        let of_scope = spans.iter().filter(|s| s["scope"] == scope).count();
        if of_scope >= want || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_embedded_run_exports_the_kernels_own_spans_in_its_trace() {
    let receiver = OtlpReceiver::start();
    let home = common::home("rlp-otel", "embedded-kernel-spans");
    let endpoint = receiver.grpc_endpoint();
    let out = rlp_command(
        &home,
        None,
        &[
            "run",
            &example("fan_out.yaml"),
            "--param",
            "text=hi",
            "--json",
        ],
    )
    .env("RUNLOOP__OBSERVABILITY__TRACES__ENABLED", "true")
    .env("RUNLOOP__OBSERVABILITY__TRACES__OTLP_ENDPOINT", &endpoint)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("kernel spans not exported"),
        "{}",
        text(&out)
    );
    let report = json_of(&out);
    assert_eq!(report["source"], "embedded", "{report}");
    let trace_id = report["trace_id"].as_str().unwrap();
    let nodes = report["nodes"].as_array().unwrap().len();
    assert_eq!(nodes, 5, "{report}");

    // One node.attempt per node and one agent.start inside each: 2 × 5.
    let spans = spans_of(&receiver, trace_id, "runloop.kernel", 2 * nodes);
    let trace = u128::from_str_radix(trace_id, 16).unwrap();
    let root = runloop_kernel::otel::root_span_id(trace).to_string();
    assert!(
        spans
            .iter()
            .any(|s| s["scope"] == "runloop.crossings" && s["span_id"] == root.as_str()),
        "the run's root crossing is exported: {spans:#?}"
    );
    let kernel: Vec<&Value> = spans
        .iter()
        .filter(|s| s["scope"] == "runloop.kernel")
        .collect();
    let attempts: Vec<&&Value> = kernel
        .iter()
        .filter(|s| s["name"] == "node.attempt")
        .collect();
    assert_eq!(attempts.len(), nodes, "{kernel:#?}");
    let mut ids: Vec<&str> = Vec::new();
    for s in &attempts {
        assert_eq!(s["parent_span_id"], root.as_str(), "{s:#}");
        assert_eq!(s["attributes"]["runloop.trace_id"], trace_id, "{s:#}");
        ids.push(s["attributes"]["runloop.node"].as_str().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, ["join", "left", "middle", "right", "split"]);
    let starts: Vec<&&Value> = kernel
        .iter()
        .filter(|s| s["name"] == "agent.start")
        .collect();
    assert_eq!(starts.len(), nodes, "{kernel:#?}");
    for s in &starts {
        assert!(
            attempts.iter().any(|a| a["span_id"] == s["parent_span_id"]),
            "agent.start outside an attempt: {s:#}"
        );
    }
}
