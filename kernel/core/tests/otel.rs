//! OpenTelemetry export against a real OTLP receiver on loopback
//! (`packaging/scripts/otlp-receiver.sh`: the official OTLP protobuf definitions behind
//! gRPC and HTTP servers), real sandboxes, the real POG in a temp dir and the committed
//! bundles: one run's spans arrive with the run's trace id, one per recorded crossing, each
//! under the run's root; metrics arrive too; sampling and a dead receiver behave as
//! documented.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::options;
use common::servers::OtlpReceiver;
use runloop_kernel::config::{self, LoadOptions, Mode};
use runloop_kernel::otel::{Otel, OtelConfig, Protocol, Sampling, crossing_span_id, root_span_id};
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::{EventKind, PogConfig};
use runloop_proto::payloads::{ControlCommand, ControlOutcome, RunReport, RunStatus};
use serde_json::{Value, json};

/// The POG actor's name is registered once per process: one kernel with a POG at a time.
static ONE_POG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest the receiver may take to show what a flushed export sent, in milliseconds.
const RECEIVE_WAIT_MS: u64 = 10_000;

const OPENING: &str = r#"
version: 0
name: otel_fan
nodes:
  - { id: a, use: "agent:echo" }
  - { id: b, use: "agent:flaky", with: { spin: 1000 } }
  - { id: c, use: "agent:echo" }
edges:
  - { from: a.out, to: b.in }
  - { from: b.out, to: c.in }
"#;

/// The spans of one trace, waiting until `want` arrived (or the wait is over).
async fn spans_of(receiver: &OtlpReceiver, trace_id: &str, want: usize) -> Vec<Value> {
    spans_where(receiver, trace_id, |_| true, want).await
}

/// The spans of one trace, waiting until `want` of them pass `counted`.
async fn spans_where(
    receiver: &OtlpReceiver,
    trace_id: &str,
    counted: impl Fn(&Value) -> bool,
    want: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_millis(RECEIVE_WAIT_MS);
    loop {
        let spans = receiver.spans(trace_id);
        let have = spans.iter().filter(|s| counted(s)).count();
        if have >= want || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles")
}

fn otel_config(endpoint: String, protocol: Protocol, sampling: Sampling) -> OtelConfig {
    OtelConfig {
        endpoint,
        protocol,
        sampling,
        metrics_interval_ms: 200,
    }
}

/// Boots a kernel with the POG and `otel`, runs the opening, flushes the export and stops.
async fn run_once(tag: &str, otel: Option<Arc<Otel>>) -> (RunReport, Vec<Value>) {
    let pog = tempfile::tempdir().unwrap();
    let opts = KernelOptions {
        pog: Some(PogService {
            config: PogConfig::in_dir(pog.path()),
            read_conns: 2,
        }),
        otel: otel.clone(),
        ..options(tag)
    };
    let kernel = Arc::new(Kernel::boot(opts).await.unwrap());
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs: vec![bundles_dir()],
            host: RunHost::Daemon,
        },
    );
    let submitted = engine
        .submit(OPENING, Path::new("/nonexistent"), &json!({}))
        .await
        .unwrap();
    let mut rx = submitted.report.clone();
    let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    let crossings: Vec<Value> = engine
        .recorder_events(&report.trace_id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::CrossingRecorded)
        .map(|e| e.payload)
        .collect();
    if let Some(otel) = &otel {
        // An agent that is surely running when the last sample is taken (the run's own
        // agents may all have come and gone between two samples).
        kernel
            .start_bundle(&common::bundle("echo"), None)
            .await
            .unwrap();
        otel.sample_now(&kernel).await;
        otel.shutdown_async().await;
    }
    kernel.root().stop(Some("test over".into()));
    while ractor::registry::where_is("runloop.pog").is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (report, crossings)
}

/// Every span of the run is one of its crossings, under the run's root, with attributes.
fn check_spans(report: &RunReport, crossings: &[Value], spans: &[Value], transport: &str) {
    assert!(
        crossings.len() >= 8,
        "crossings recorded: {}",
        crossings.len()
    );
    assert_eq!(
        spans.len(),
        crossings.len(),
        "one span per crossing: {spans:#?}"
    );
    let trace: u128 = u128::from_str_radix(&report.trace_id, 16).unwrap();
    let root = root_span_id(trace).to_string();
    for c in crossings {
        let seq = c["seq"].as_u64().unwrap();
        let kind = c["kind"].as_str().unwrap();
        let want_id = if kind == "run.submit" {
            root.clone()
        } else {
            crossing_span_id(trace, seq).to_string()
        };
        let span = spans
            .iter()
            .find(|s| s["span_id"] == want_id.as_str())
            .unwrap_or_else(|| panic!("no span for crossing {seq} {kind}"));
        assert_eq!(span["trace_id"], report.trace_id.as_str());
        assert_eq!(span["name"], kind);
        assert_eq!(span["transport"], transport);
        assert_eq!(span["service"], "runloop");
        let parent = if kind == "run.submit" {
            ""
        } else {
            root.as_str()
        };
        assert_eq!(span["parent_span_id"], parent, "parent of {seq} {kind}");
        let a = &span["attributes"];
        assert_eq!(a["runloop.run_id"], report.run_id.as_str());
        assert_eq!(a["runloop.kind"], kind);
        assert_eq!(a["runloop.seq"], seq);
        assert_eq!(a["runloop.request_bytes"], c["bytes"].as_u64().unwrap_or(0));
        assert_eq!(
            a["runloop.reply_bytes"],
            c["reply_bytes"].as_u64().unwrap_or(0)
        );
        assert_eq!(
            span["start_unix_nano"].as_u64().unwrap(),
            c["start_ms"].as_u64().unwrap() * 1_000_000
        );
        assert_eq!(
            span["end_unix_nano"].as_u64().unwrap(),
            c["end_ms"].as_u64().unwrap() * 1_000_000
        );
        if let Some(node) = c["node_id"].as_str() {
            assert_eq!(a["runloop.node"], node);
            let agent = if node == "b" { "flaky" } else { "echo" };
            assert_eq!(a["runloop.agent"], agent, "agent of {seq} {kind}");
        }
        // status_code 2 is STATUS_CODE_ERROR.
        assert_eq!(
            span["status_code"] == 2,
            c["status"] == "error",
            "{seq} {kind}"
        );
    }
    let invokes = spans.iter().filter(|s| s["name"] == "agent.invoke").count();
    assert_eq!(invokes, 3, "one agent.invoke per node");
}

async fn spans_arrive_over(protocol: Protocol) {
    let _one = ONE_POG.lock().await;
    let receiver = OtlpReceiver::start();
    let endpoint = match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        Protocol::HttpProtobuf => receiver.http_endpoint(),
    };
    let otel = Otel::start(otel_config(endpoint, protocol, Sampling::Parent)).unwrap();
    let (report, crossings) = run_once("otel-spans", Some(otel)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let spans = spans_of(&receiver, &report.trace_id, crossings.len()).await;
    let transport = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf => "http",
    };
    check_spans(&report, &crossings, &spans, transport);
    // The metrics went the same way; the last export carries the final sample.
    let metrics = receiver.lines("metrics.jsonl");
    for name in [
        "runloop.agents",
        "runloop.restarts",
        "runloop.bus.dropped",
        "runloop.broker.tokens",
        "runloop.broker.cost",
    ] {
        assert!(
            metrics
                .iter()
                .any(|m| m["name"] == name && m["transport"] == transport),
            "metric {name} not received: {metrics:?}"
        );
    }
    assert!(
        metrics
            .iter()
            .any(|m| m["name"] == "runloop.agents" && m["value"].as_u64() > Some(0)),
        "the last sample did not see the running agent: {metrics:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_spans_arrive_over_grpc_with_its_trace_id_and_parentage() {
    spans_arrive_over(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_spans_arrive_over_http_with_its_trace_id_and_parentage() {
    spans_arrive_over(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_exports_no_span() {
    let _one = ONE_POG.lock().await;
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.grpc_endpoint();
    let otel = Otel::start(otel_config(endpoint, Protocol::Grpc, Sampling::Ratio(0.0))).unwrap();
    let (report, crossings) = run_once("otel-ratio0", Some(otel)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(!crossings.is_empty(), "the run is still recorded");
    assert!(receiver.lines("spans.jsonl").is_empty());
    // Metrics are not sampled away: the receiver was reachable all along.
    assert!(!receiver.lines("metrics.jsonl").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_costs_the_run_nothing() {
    let _one = ONE_POG.lock().await;
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let endpoint = format!("http://127.0.0.1:{port}");
        let otel = Otel::start(otel_config(endpoint, protocol, Sampling::AlwaysOn)).unwrap();
        let started = Instant::now();
        let (report, crossings) = run_once("otel-dead", Some(otel)).await;
        assert_eq!(
            report.status,
            RunStatus::Succeeded,
            "{protocol:?}: {report:?}"
        );
        assert!(!crossings.is_empty());
        // Run, flush attempts and stop stay well inside the export timeouts added up.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}

fn load(flags: &[&str]) -> Result<config::Config, String> {
    let home = tempfile::tempdir().unwrap();
    config::load(&LoadOptions {
        mode: Mode::User {
            home: home.path().to_owned(),
        },
        file: None,
        env: Vec::new(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
    })
    .map_err(|e| e.to_string())
}

#[test]
fn config_turns_export_on_and_off_and_names_a_bad_key() {
    let off = load(&["observability.traces.otlp_endpoint=http://127.0.0.1:4317"]).unwrap();
    assert_eq!(
        OtelConfig::from_config(&off).unwrap(),
        None,
        "disabled: nothing exported"
    );
    let on = load(&[
        "observability.traces.enabled=true",
        "observability.traces.otlp_endpoint=http://127.0.0.1:9999/v1/traces",
        "observability.traces.sampling=ratio:0.25",
    ])
    .unwrap();
    let on = OtelConfig::from_config(&on).unwrap().unwrap();
    assert_eq!(on.protocol, Protocol::HttpProtobuf);
    assert_eq!(on.endpoint, "http://127.0.0.1:9999");
    assert_eq!(on.sampling, Sampling::Ratio(0.25));
    for (flag, key) in [
        ("observability.traces.sampling=ratio:2", "sampling"),
        ("observability.traces.sampling=sometimes", "sampling"),
        ("observability.traces.enabled=yes", "enabled"),
        ("observability.traces.protocol=udp", "protocol"),
    ] {
        let config = load(&["observability.traces.enabled=true", flag]).unwrap();
        let e = OtelConfig::from_config(&config).unwrap_err();
        assert_eq!(e.key, key, "{flag}");
        assert!(
            e.to_string()
                .starts_with(&format!("config observability.traces.{key}: ")),
            "{e}"
        );
    }
}

/// `runloopd` with export on, SIGTERMed (its exit flushes the export) and reaped when
/// dropped; its stderr goes to a file shown when the test fails.
struct ExportingDaemon {
    child: std::process::Child,
    log: PathBuf,
}

impl ExportingDaemon {
    fn start(home: &Path, socket: &Path, endpoint: &str) -> Self {
        let log = home.join("runloopd.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_runloopd"))
            .arg("--socket")
            .arg(socket)
            .arg("--set")
            .arg("observability.traces.enabled=true")
            .arg("--set")
            .arg(format!("observability.traces.otlp_endpoint={endpoint}"))
            .env("HOME", home)
            .env("RUNLOOP_BUNDLES_DIR", bundles_dir())
            .env_remove("RUNLOOP__RUNTIME__SOCKET_PATH")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit (the export is flushed before it).
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().unwrap()
    }
}

impl Drop for ExportingDaemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

async fn ask(socket: &Path, id: &str, command: ControlCommand) -> ControlOutcome {
    runloop_client::request(socket, id, command)
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .outcome
}

/// The kernel's own `tracing` spans go out through `runloopd`'s `tracing-opentelemetry`
/// layer in the run's trace: a run submitted to a real daemon exporting over gRPC gives,
/// beside its crossings, one `node.attempt` span per attempt under the run's root span and
/// one `agent.start` span inside each attempt that started its node's agent — scope
/// `runloop.kernel`, the run's trace id, the node and agent as attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernels_own_spans_join_the_runs_trace_in_runloopd() {
    let receiver = OtlpReceiver::start();
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("rmp.sock");
    let endpoint = receiver.grpc_endpoint();
    let mut daemon = ExportingDaemon::start(home.path(), &socket, &endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "runloopd did not listen: {}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let submitted = ask(
        &socket,
        "otel-kernel-spans-submit",
        ControlCommand::RunSubmit {
            source: OPENING.into(),
            dir: "/nonexistent".into(),
            params_json: "{}".into(),
            watch: false,
        },
    )
    .await;
    let ControlOutcome::RunSubmitted { trace_id, .. } = submitted else {
        panic!("run_submit answered {submitted:?}: {}", daemon.log());
    };
    let finished = ask(
        &socket,
        "otel-kernel-spans-watch",
        ControlCommand::RunWatch {
            trace_id: trace_id.clone(),
            watch: false,
        },
    )
    .await;
    let ControlOutcome::RunFinished { report } = finished else {
        panic!("run_watch answered {finished:?}: {}", daemon.log());
    };
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let attempts: u64 = report.nodes.iter().map(|n| u64::from(n.attempts)).sum();
    assert_eq!(attempts, 3, "{report:?}");
    let status = daemon.stop();
    assert!(status.success(), "runloopd: {status:?}: {}", daemon.log());

    // Every node.attempt and agent.start span: 3 + 3, beside the crossings.
    let spans = spans_where(&receiver, &trace_id, |s| s["scope"] == "runloop.kernel", 6).await;
    let trace: u128 = u128::from_str_radix(&trace_id, 16).unwrap();
    let root = root_span_id(trace).to_string();
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
    let named = |name: &str| -> Vec<&Value> {
        kernel
            .iter()
            .copied()
            .filter(|s| s["name"] == name)
            .collect()
    };
    let attempt_spans = named("node.attempt");
    assert_eq!(attempt_spans.len(), 3, "{kernel:#?}");
    let mut nodes: Vec<&str> = Vec::new();
    for s in &attempt_spans {
        assert_eq!(s["parent_span_id"], root.as_str(), "{s:#}");
        assert_eq!(s["service"], "runloop");
        let a = &s["attributes"];
        let node = a["runloop.node"].as_str().unwrap();
        let agent = if node == "b" { "flaky" } else { "echo" };
        assert_eq!(a["runloop.agent"], agent, "{s:#}");
        assert_eq!(a["runloop.trace_id"], trace_id.as_str());
        assert_eq!(a["runloop.attempt"], 1, "{s:#}");
        nodes.push(node);
    }
    nodes.sort_unstable();
    assert_eq!(nodes, ["a", "b", "c"]);
    let starts = named("agent.start");
    assert_eq!(starts.len(), 3, "{kernel:#?}");
    for s in &starts {
        let parent = attempt_spans
            .iter()
            .find(|a| a["span_id"] == s["parent_span_id"])
            .unwrap_or_else(|| panic!("agent.start outside an attempt: {s:#}"));
        assert_eq!(
            s["attributes"]["runloop.node"],
            parent["attributes"]["runloop.node"]
        );
        assert!(s["end_unix_nano"].as_u64() >= s["start_unix_nano"].as_u64());
    }
}
