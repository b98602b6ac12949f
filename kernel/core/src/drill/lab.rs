//! The drills' shared harness: a kernel of its own in a fresh state directory, the
//! compose_email workload, and probes of an agent's state.
//!
//! Time here is the machine's monotonic clock on purpose: a drill measures how long real
//! recovery takes, which an injected clock cannot tell. Nothing a drill measures feeds back
//! into a run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runloop_agent_actor::{AgentMetrics, AgentSnapshot, AgentState};
use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_proto::payloads::{AgentInput, RunReport, RunStatus};

use super::DrillEnv;
use crate::agents::{AgentOptions, StartOptions};
use crate::effects::EffectsConfig;
use crate::effects::gate::AutoDecide;
use crate::runs::{Engine, EngineConfig, RunHost, Submitted};
use crate::{Kernel, KernelOptions, PogService};

/// The workload every drill runs: the main job, as the demo runs it.
pub const WORKLOAD_OPENING: &str = include_str!("../../../../examples/openings/compose_email.yaml");
/// The sample contacts and notes the workload's agents read.
const SAMPLE_POG: &str = include_str!("../../../../examples/pog/sample.ndjson");
/// Who approves the workload's emails (the gate records it as the approver).
pub const APPROVER: &str = "drill";
/// Longest a workload run may take before the drill counts it lost.
pub const RUN_TIMEOUT_MS: u64 = 120_000;
/// How often a probe looks at an agent's state.
const PROBE_EVERY_US: u64 = 250;
/// Longest wait for the previous lab's singletons to leave the registry.
const SINGLETONS_GONE_MS: u64 = 10_000;
/// Longest a lab's stop waits for a run's last tasks to let its kernel go (2 s, as before).
const STOP_HOLDERS_WAIT_MS: u64 = 2_000;

/// One drill's kernel, its engine and its state directory (removed when dropped).
pub struct Lab {
    pub kernel: Arc<Kernel>,
    pub engine: Arc<Engine>,
    pub broker: Arc<Broker>,
    /// `Some` until the lab is stopped.
    state: Option<tempfile::TempDir>,
    search_dirs: Vec<PathBuf>,
    stopped: bool,
}

impl Drop for Lab {
    /// A drill that returns early (an error after the boot) drops its lab unstopped: its
    /// tree is told to stop, so the POG and broker names are free for the next lab (which
    /// waits for them).
    fn drop(&mut self) {
        if !self.stopped {
            self.kernel
                .root()
                .stop(Some("the drill ended early".into()));
        }
    }
}

/// How the lab's kernel differs from the default.
#[derive(Default)]
pub struct LabOptions {
    pub agents: Option<AgentOptions>,
    pub breaker: Option<runloop_actors::breaker::BreakerConfig>,
    pub after_effect: Option<crate::effects::AfterEffect>,
    /// The broker's `models` section (default: the offline provider only).
    pub models: Option<ModelsConfig>,
}

impl Lab {
    /// Boots a kernel with the POG (sample data imported), the offline broker and the
    /// effects journal (emails to a Maildir outbox, every action approved by the drill).
    pub async fn boot(env: &DrillEnv, options: LabOptions) -> Result<Lab, String> {
        let state = tempfile::Builder::new()
            .prefix("runloop-drill-")
            .tempdir()
            .map_err(|e| format!("create a state directory: {e}"))?;
        seed_sample_pog(&state.path().join("pog"))?;
        Lab::boot_on(env, state, options).await
    }

    /// Boots on a state directory a previous lab left ([`Lab::stop_keeping_state`]).
    pub async fn boot_on(
        env: &DrillEnv,
        state: tempfile::TempDir,
        options: LabOptions,
    ) -> Result<Lab, String> {
        singletons_gone().await?;
        let pog_dir = state.path().join("pog");
        let defaults = KernelOptions::default();
        let secrets = SecretResolver::with_env(SecretsConfig::default(), Default::default());
        let broker = Broker::new(
            options.models.unwrap_or_default(),
            &secrets,
            Arc::new(runloop_broker::SystemClock),
        )
        .map_err(|e| format!("the model broker: {e}"))?;
        let broker = Arc::new(broker);
        let mut agents = options.agents.unwrap_or_default();
        if agents.sandbox_host.is_none() {
            agents.sandbox_host = env.sandbox_host.clone();
        }
        if agents.cwasm_dir.is_none() {
            agents.cwasm_dir = env.cwasm_dir.clone();
        }
        let kernel_options = KernelOptions {
            pog: Some(PogService {
                config: runloop_pog::PogConfig::in_dir(&pog_dir),
                read_conns: 2,
            }),
            broker: Some(broker.clone()),
            effects: Some(EffectsConfig::in_state_dir(state.path())),
            after_effect: options.after_effect,
            breaker: options.breaker.unwrap_or(defaults.breaker),
            agents,
            ..defaults
        };
        let kernel = Kernel::boot(kernel_options)
            .await
            .map_err(|e| format!("boot the drill's kernel: {e}"))?;
        let kernel = Arc::new(kernel);
        if let Some(effects) = kernel.effects() {
            effects.shared.set_auto(AutoDecide::Approve {
                by: APPROVER.into(),
            });
        }
        let engine = Engine::new(
            kernel.clone(),
            EngineConfig {
                search_dirs: env.search_dirs.clone(),
                host: RunHost::Embedded,
            },
        );
        Ok(Lab {
            kernel,
            engine,
            broker,
            state: Some(state),
            search_dirs: env.search_dirs.clone(),
            stopped: false,
        })
    }

    /// The bundle directory of agent `name` on the search path.
    pub fn bundle(&self, name: &str) -> Result<PathBuf, String> {
        self.search_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|d| d.join("manifest.toml").is_file())
            .ok_or_else(|| {
                let dirs: Vec<_> = self
                    .search_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                format!("no bundle {name:?} in {}", dirs.join(", "))
            })
    }

    /// Starts the standalone agent `bundle` as `name`.
    pub async fn start(
        &self,
        bundle: &str,
        name: &str,
        mut start: StartOptions,
    ) -> Result<runloop_proto::payloads::AgentStatus, String> {
        let dir = self.bundle(bundle)?;
        start.name = Some(name.into());
        self.kernel
            .start_bundle_in(runloop_proto::RunId::STANDALONE, &dir, start)
            .await
            .map_err(|e| format!("start {name}: {e}"))
    }

    /// The status of agent `name` once it is quarantined, or as it is after `within`.
    pub async fn wait_quarantined(
        &self,
        name: &str,
        within: std::time::Duration,
    ) -> Result<runloop_proto::payloads::AgentStatus, String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let status = self
                .kernel
                .agents()
                .await
                .into_iter()
                .find(|a| a.name == name)
                .ok_or_else(|| format!("agent {name} is not known"))?;
            if status.state == "quarantined" || std::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Starts `flaky` as `spinner` with an invoke time limit of `limit_ms`: given
    /// `{attempt, with: {spin: N}}` it busy-loops until the limit stops it.
    pub async fn start_spinner(&self, limit_ms: u64) -> Result<(), String> {
        let limits = runloop_proto::payloads::SandboxLimits {
            invoke_wall_ms_max: limit_ms,
            ..self.kernel.agent_options.limits
        };
        let start = StartOptions {
            limits: Some(limits),
            ..StartOptions::default()
        };
        self.start("flaky", "spinner", start).await.map(drop)
    }

    /// Submits one compose_email run.
    pub async fn submit_workload(&self) -> Result<Submitted, String> {
        self.submit(WORKLOAD_OPENING).await
    }

    /// Submits a run of `opening` (YAML), without params.
    pub async fn submit(&self, opening: &str) -> Result<Submitted, String> {
        self.engine
            .submit(opening, Path::new("/nonexistent"), &serde_json::json!({}))
            .await
            .map_err(|e| format!("submit: {e}"))
    }

    /// Emails in the outbox.
    pub fn emails(&self) -> u64 {
        let outbox = self.state_dir().join("outbox");
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(outbox.join(sub)).ok())
            .map(|d| d.flatten().count() as u64)
            .sum()
    }

    /// The lab's state directory.
    pub fn state_dir(&self) -> &Path {
        self.state
            .as_ref()
            .expect("a lab has its state until stopped")
            .path()
    }

    /// The POG's files of this lab.
    pub fn pog_config(&self) -> runloop_pog::PogConfig {
        runloop_pog::PogConfig::in_dir(self.state_dir().join("pog"))
    }

    /// Stops the kernel and waits until its singletons are gone.
    pub async fn stop(self) {
        self.stop_keeping_state().await;
    }

    /// [`Lab::stop`], handing back the state directory for [`Lab::boot_on`].
    pub async fn stop_keeping_state(mut self) -> tempfile::TempDir {
        self.stopped = true;
        let state = self.state.take().expect("a lab is stopped once");
        let (kernel, engine) = (self.kernel.clone(), self.engine.clone());
        drop(self);
        stop_kernel(kernel, engine).await;
        state
    }
}

async fn stop_kernel(kernel: Arc<Kernel>, engine: Arc<Engine>) {
    drop(engine);
    let wait = Duration::from_millis(STOP_HOLDERS_WAIT_MS);
    if !Kernel::shutdown_shared(kernel, wait).await
        && let Err(e) = singletons_gone().await
    {
        // Something still held the kernel (a run's task), so its tree was stopped without
        // waiting; the next lab waits for the singletons again and fails with this if
        // they stay.
        tracing::warn!("drill: {e}");
    }
}

/// Waits for a finished run's report.
pub async fn finish(submitted: &Submitted) -> Option<RunReport> {
    let mut report = submitted.report.clone();
    let wait = report.wait_for(Option::is_some);
    match tokio::time::timeout(Duration::from_millis(RUN_TIMEOUT_MS), wait).await {
        Ok(Ok(r)) => r.clone(),
        _ => None,
    }
}

/// What a finished compose_email run says: succeeded, and its send node's result.
#[derive(Debug)]
pub struct WorkloadOutcome {
    pub ok: bool,
    pub sent: bool,
    pub recalled: bool,
    pub summary: String,
}

/// Reads a compose_email report: did it succeed and send (once).
pub fn workload_outcome(report: Option<&RunReport>) -> WorkloadOutcome {
    let Some(report) = report else {
        return WorkloadOutcome {
            ok: false,
            sent: false,
            recalled: false,
            summary: format!("the compose_email run did not finish within {RUN_TIMEOUT_MS} ms"),
        };
    };
    let result = report
        .nodes
        .iter()
        .find(|n| n.id == "send")
        .and_then(|n| n.outputs_json.as_deref())
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|outs| {
            outs.as_array()?
                .iter()
                .find(|o| o[0] == "result")
                .map(|o| o[1].clone())
        })
        .unwrap_or(serde_json::Value::Null);
    let sent = result["status"] == "sent";
    WorkloadOutcome {
        ok: report.status == RunStatus::Succeeded && sent,
        sent,
        recalled: result["recalled"] == true,
        summary: match &report.reason {
            Some(reason) => format!("compose_email {:?}: {reason}", report.status),
            None => format!("compose_email {:?}", report.status),
        },
    }
}

/// An agent's metrics, watched until a condition holds.
pub struct Probe {
    metrics: AgentMetrics,
}

impl Probe {
    /// The probe of the first agent called `name` (any run).
    pub fn of(kernel: &Kernel, name: &str) -> Option<Probe> {
        kernel.metrics_named(name).map(|metrics| Probe { metrics })
    }

    /// The agent's counters and state now (no /proc read).
    pub fn now(&self) -> AgentSnapshot {
        self.metrics.counters()
    }

    /// When `cond` first held, polling every [`PROBE_EVERY_US`], or `None` after `within`.
    pub async fn until(
        &self,
        within: Duration,
        cond: impl Fn(&AgentSnapshot) -> bool,
    ) -> Option<Instant> {
        let end = Instant::now() + within;
        loop {
            if cond(&self.now()) {
                return Some(Instant::now());
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_micros(PROBE_EVERY_US)).await;
        }
    }
}

/// Running with a sandbox other than `pid`.
pub fn running_anew(s: &AgentSnapshot, pid: u32) -> bool {
    s.state == AgentState::Running && s.sandbox_pid.is_some_and(|p| p != pid)
}

/// One message on port `in`.
pub fn input(json: serde_json::Value) -> Result<AgentInput, String> {
    Ok(AgentInput {
        port: "in".into(),
        payload: runloop_proto::json::json_to_msgpack(&json, "")
            .map_err(|e| format!("input: {e}"))?,
    })
}

/// Imports `examples/pog/sample.ndjson` (compiled in) into a fresh POG in `dir`, as `rlp
/// kb import` would. Public for the kernel's tests, which seed the same data.
pub fn seed_sample_pog(dir: &Path) -> Result<(), String> {
    use runloop_pog::import::{ImportContext, Parsed, parse_ndjson};
    let cfg = runloop_pog::PogConfig::in_dir(dir);
    let clock = Arc::new(runloop_pog::SystemClock);
    let mut store =
        runloop_pog::Store::open(&cfg, clock).map_err(|e| format!("open the POG: {e}"))?;
    let provenance = runloop_pog::Provenance::from_json(&serde_json::json!({
        "trace_id": "0".repeat(32), "opening_id": "drill.import", "agent": "drill",
        "inputs_hash": "0".repeat(64),
    }))
    .map_err(|e| format!("provenance: {e}"))?;
    let ctx = ImportContext {
        provenance,
        actor: runloop_pog::ActorName::new("user").map_err(|e| e.to_string())?,
        scope: runloop_pog::Scope::new("personal").map_err(|e| e.to_string())?,
        csv_kind: runloop_pog::EventKind::NoteAdded,
    };
    let Parsed { events, .. } =
        parse_ndjson(SAMPLE_POG.as_bytes(), &ctx).map_err(|e| format!("sample data: {e}"))?;
    store
        .write_batch(events)
        .map_err(|e| format!("import the sample data: {e}"))?;
    Ok(())
}

/// The POG and broker actors register their names once per process: one lab at a time.
async fn singletons_gone() -> Result<(), String> {
    let end = Instant::now() + Duration::from_millis(SINGLETONS_GONE_MS);
    while ractor::registry::where_is("runloop.pog").is_some()
        || ractor::registry::where_is("runloop.broker").is_some()
    {
        if Instant::now() >= end {
            return Err("the previous kernel's POG or broker did not stop".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
