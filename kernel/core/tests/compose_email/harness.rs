//! What every compose_email test shares: a kernel with the sample POG, the offline
//! broker and the effects journal; running the opening and answering its waits; reading
//! the run's events and the outbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::options;
use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::effects::gate::AutoDecide;
use runloop_kernel::effects::{AfterEffect, EffectsConfig};
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use runloop_proto::payloads::{RunProgress, RunReport};
use serde_json::{Value, json};

/// The POG actor's name is registered once per process: one kernel with a POG at a time.
pub static ONE_POG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn opening() -> String {
    std::fs::read_to_string(repo().join("examples/openings/compose_email.yaml")).unwrap()
}

pub fn offline_broker() -> Arc<Broker> {
    let secrets = SecretResolver::with_env(SecretsConfig::default(), Default::default());
    let clock = Arc::new(runloop_broker::SystemClock);
    Arc::new(Broker::new(ModelsConfig::default(), &secrets, clock).unwrap())
}

pub struct Setup {
    pub kernel: Arc<Kernel>,
    pub engine: Arc<Engine>,
    pub state: tempfile::TempDir,
}

impl Setup {
    pub fn outbox(&self) -> PathBuf {
        self.state.path().join("outbox")
    }

    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(dir) = std::fs::read_dir(self.outbox().join(sub)) {
                for entry in dir.flatten() {
                    out.push(std::fs::read_to_string(entry.path()).unwrap());
                }
            }
        }
        out
    }

    pub async fn stop(self) {
        self.kernel.root().stop(Some("test over".into()));
        while ractor::registry::where_is("runloop.pog").is_some()
            || ractor::registry::where_is("runloop.broker").is_some()
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

pub async fn setup(
    tag: &str,
    auto: AutoDecide,
    timeout_ms: u64,
    search: Vec<PathBuf>,
    after_effect: Option<AfterEffect>,
) -> Setup {
    setup_with(tag, auto, timeout_ms, search, after_effect, None).await
}

pub async fn setup_with(
    tag: &str,
    auto: AutoDecide,
    timeout_ms: u64,
    search: Vec<PathBuf>,
    after_effect: Option<AfterEffect>,
    smtp: Option<runloop_mail::SmtpConfig>,
) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let pog_dir = state.path().join("pog");
    crate::common::seed_sample_pog(&pog_dir);
    let mut effects = EffectsConfig::in_state_dir(state.path());
    effects.confirm_timeout_ms = timeout_ms;
    effects.smtp = smtp;
    let opts = KernelOptions {
        pog: Some(PogService {
            config: PogConfig::in_dir(&pog_dir),
            read_conns: 2,
        }),
        broker: Some(offline_broker()),
        effects: Some(effects),
        after_effect,
        // One `.cwasm` cache for the file: the five agents compile once, not per test.
        ..options("compose-email")
    };
    let _ = tag;
    let kernel = Arc::new(Kernel::boot(opts).await.unwrap());
    kernel.effects().unwrap().shared.set_auto(auto);
    let mut search_dirs = search;
    search_dirs.push(repo().join("agents/bundles"));
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs,
            host: RunHost::Daemon,
        },
    );
    Setup {
        kernel,
        engine,
        state,
    }
}

/// Runs compose_email; `on_waiting` answers each `node.waiting` event.
pub async fn run<F, Fut>(setup: &Setup, on_waiting: F) -> (RunReport, Vec<RunProgress>)
where
    F: FnMut(RunProgress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_with(setup, json!({}), on_waiting).await
}

/// [`run`] with params.
pub async fn run_with<F, Fut>(
    setup: &Setup,
    params: Value,
    mut on_waiting: F,
) -> (RunReport, Vec<RunProgress>)
where
    F: FnMut(RunProgress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut events = setup.engine.progress();
    let submitted = setup
        .engine
        .submit(&opening(), Path::new("/nonexistent"), &params)
        .await
        .unwrap();
    let mut report = submitted.report.clone();
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) if e.trace_id() == submitted.trace_id => {
                    seen.push(e.clone());
                    if matches!(e, RunProgress::NodeWaiting { .. }) {
                        on_waiting(e).await;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            },
            _ = report.wait_for(Option::is_some) => break,
        }
    }
    let report = report.borrow().clone().unwrap();
    (report, seen)
}

pub fn send_result(report: &RunReport) -> Value {
    let send = report.nodes.iter().find(|n| n.id == "send").unwrap();
    let outputs: Value = serde_json::from_str(send.outputs_json.as_deref().unwrap()).unwrap();
    outputs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o[0] == "result")
        .map(|o| o[1].clone())
        .unwrap_or(Value::Null)
}

pub async fn run_events(kernel: &Kernel, trace: &str) -> Vec<runloop_pog::Event> {
    runloop_kernel::runs::record::Recorder::new(kernel.pog())
        .run_events(trace)
        .await
        .unwrap()
}

pub fn kinds(events: &[runloop_pog::Event], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind.as_str() == kind)
        .map(|e| e.payload.clone())
        .collect()
}

/// One `effect.perform` asked straight of the effects journal by `agent` in run `trace`, as
/// the agent's host call would be once its capabilities allowed it (on a blocking thread:
/// the journal waits on the POG and the gate).
pub async fn perform_direct(
    effects: &runloop_kernel::effects::Effects,
    trace: runloop_proto::TraceId,
    agent: &'static str,
    kind: &str,
    payload: &Value,
    key: &str,
) -> runloop_proto::payloads::HostReply {
    use runloop_agent_actor::EffectsJournal;
    let call = runloop_proto::payloads::HostCall::EffectPerform {
        kind: kind.into(),
        payload: runloop_proto::json::json_to_msgpack(payload, "").unwrap(),
        idempotency_key: key.into(),
    };
    let effects = effects.clone();
    tokio::task::spawn_blocking(move || {
        let site = runloop_sandbox::CallSite {
            agent,
            invoke_id: 1,
            trace_id: trace,
            call_id: 0,
        };
        effects.perform(&site, &call, false)
    })
    .await
    .unwrap()
}

/// Registers `trace` as a run whose external effects need a yes.
pub fn register_run(effects: &runloop_kernel::effects::Effects, trace: runloop_proto::TraceId) {
    let policy = runloop_kernel::effects::gate::RunConfirmPolicy {
        confirm_external: true,
        confirm_nodes: Default::default(),
    };
    effects.shared.register_run(&trace.to_string(), policy);
}

pub async fn no_answer(_: RunProgress) {}

/// Once a run's report is out, the engine and the gate let go of it: no live run, no
/// crossing numbering, no budget, no policy, waiting node or cached decision (the gate
/// forgets on a message of its own, so this waits a little for it).
pub async fn assert_nothing_held(s: &Setup) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let held = s.engine.held_run_entries();
        if held == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{held} per-run entries held after the run ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
