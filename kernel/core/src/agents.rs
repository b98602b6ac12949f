//! Agents in the tree: start one from a bundle directory, send it messages, stop it,
//! list them with their state and metrics.
//!
//! Every agent started here lives under the run [`AGENTS_RUN`] as
//! `runs → run-agents → agent-<name> (its own supervisor, the given intensity) → agent`.
//! The bundle is loaded (digest and ABI verified), compiled to `.cwasm` (cached), and the
//! agent actor spawns its sandbox in `runloop-k<kernel pid>/<name>-<generation>`. When
//! its supervisor gives up, the agent is parked in quarantine and every invoke still in
//! flight is answered with an error and recorded as a dead letter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use runloop_actors::breaker::BreakerHandle;
use runloop_actors::delivery::DeadLetterReason;
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::supervisor::{ChildSpec, Intensity, Restart, Slot};
use runloop_agent_actor::{
    AgentActor, AgentConfig, AgentError, AgentMsg, AgentReply, AgentShared, AgentState, CgroupPlan,
    Links,
};
use runloop_bundle::Bundle;
use runloop_proto::payloads::{AgentInput, AgentStatus, SandboxLimits};
use runloop_proto::{MsgId, TraceId};
use runloop_sandbox::CgroupLimits;

use crate::kernel::{Kernel, RunError};

/// The run every agent started through [`Kernel::start_bundle`] belongs to.
pub const AGENTS_RUN: &str = "agents";
/// Most agents one kernel runs.
pub const AGENTS_MAX: usize = 4_096;
/// How long `send` waits for a restarting agent to come back.
pub const AGENT_RESTART_WAIT_MS: u64 = 5_000;
/// Times `Kernel::send` hands one message to an agent whose instance keeps failing before
/// admitting it.
pub const SEND_TRIES_MAX: u32 = 3;
/// Memory the sandbox process needs beside the guest's linear memory.
const SANDBOX_OVERHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// Threads the sandbox may run (main + epoch ticker, with slack).
const SANDBOX_PIDS_MAX: u64 = 8;

/// How agents are started.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `runloop-sandbox-host`; `None`: `runloop_sandbox::locate_sandbox_host()`.
    pub sandbox_host: Option<PathBuf>,
    /// The `.cwasm` cache; `None`: `Compiler::default_dir()`.
    pub cwasm_dir: Option<PathBuf>,
    pub limits: SandboxLimits,
    pub intensity: Intensity,
    /// Put each sandbox in its own cgroup (when the machine allows).
    pub cgroups: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            sandbox_host: None,
            cwasm_dir: None,
            limits: SandboxLimits::default(),
            intensity: Intensity {
                restarts_max: 3,
                period_ms: 5_000,
            },
            cgroups: true,
        }
    }
}

/// One agent the kernel started.
#[derive(Debug, Clone)]
pub(crate) struct AgentEntry {
    shared: AgentShared,
    slot: Slot<AgentMsg>,
    bundle: PathBuf,
}

/// Why an agent request failed; each variant has a stable code for the control plane.
#[derive(Debug, thiserror::Error)]
pub enum AgentOpError {
    #[error("{0}")]
    InvalidName(String),
    #[error("load bundle {dir}: {message}")]
    Bundle { dir: PathBuf, message: String },
    #[error("compile agent {agent}: {message}")]
    Compile { agent: String, message: String },
    #[error("find runloop-sandbox-host: tried {0}")]
    NoSandboxHost(String),
    #[error("agent {0} is already running; stop it first (`rlp agent stop {0}`)")]
    Exists(AgentName),
    #[error(
        "no agent {0} in this kernel (in embedded mode every rlp command is its own kernel: \
         start runloopd to keep agents between commands)"
    )]
    NoSuchAgent(AgentName),
    #[error("the kernel already runs {AGENTS_MAX} agents")]
    TooMany,
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("{0}")]
    Agent(AgentError),
    #[error("agent {0} is not running (restarting for longer than {AGENT_RESTART_WAIT_MS} ms)")]
    NotRunning(AgentName),
    #[error("agent {agent} did not answer within {waited_ms} ms")]
    Timeout { agent: AgentName, waited_ms: u64 },
}

impl AgentOpError {
    /// The stable code the control plane reports.
    pub fn code(&self) -> &'static str {
        match self {
            AgentOpError::InvalidName(_) => "InvalidName",
            AgentOpError::Bundle { .. } => "BadBundle",
            AgentOpError::Compile { .. } => "CompileFailed",
            AgentOpError::NoSandboxHost(_) => "NoSandboxHost",
            AgentOpError::Exists(_) => "AgentExists",
            AgentOpError::NoSuchAgent(_) => "NoSuchAgent",
            AgentOpError::TooMany => "TooManyAgents",
            AgentOpError::BadInput(_) => "BadInput",
            AgentOpError::Run(RunError::Quarantined { .. }) => "Quarantined",
            AgentOpError::Run(_) => "StartFailed",
            AgentOpError::Agent(AgentError::Quarantined { .. }) => "Quarantined",
            AgentOpError::Agent(AgentError::BreakerOpen(_)) => "BreakerOpen",
            AgentOpError::Agent(AgentError::Guest { .. }) => "GuestFailed",
            AgentOpError::Agent(AgentError::AttemptsExhausted { .. }) => "AttemptsExhausted",
            AgentOpError::Agent(_) => "AgentFailed",
            AgentOpError::NotRunning(_) => "NotRunning",
            AgentOpError::Timeout { .. } => "Timeout",
        }
    }

    /// True when the caller's input was at fault (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            AgentOpError::InvalidName(_)
                | AgentOpError::Bundle { .. }
                | AgentOpError::BadInput(_)
                | AgentOpError::NoSuchAgent(_)
                | AgentOpError::Exists(_)
        )
    }
}

static TRACE_SEQ: AtomicU64 = AtomicU64::new(1);

impl Kernel {
    /// Loads, compiles and starts the agent in `dir` (named `name`, else the manifest's).
    pub async fn start_bundle(
        &self,
        dir: &Path,
        name: Option<&str>,
    ) -> Result<AgentStatus, AgentOpError> {
        let bundle = Bundle::load(dir).map_err(|e| AgentOpError::Bundle {
            dir: dir.to_owned(),
            message: e.to_string(),
        })?;
        let name = name.unwrap_or(bundle.manifest().name().as_str());
        let agent = AgentName::new(name).map_err(|e| AgentOpError::InvalidName(e.to_string()))?;
        if let Some(entry) = self.agent_entry(&agent)
            && entry.slot.get().is_some()
        {
            return Err(AgentOpError::Exists(agent));
        }
        if self.agents.lock().expect("agents lock").len() >= AGENTS_MAX {
            return Err(AgentOpError::TooMany);
        }
        let options = self.agent_options.clone();
        let program = match &options.sandbox_host {
            Some(p) => p.clone(),
            None => runloop_sandbox::locate_sandbox_host().map_err(|tried| {
                let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
                AgentOpError::NoSandboxHost(tried.join(", "))
            })?,
        };
        let module_path = compile(&bundle, &agent, options.cwasm_dir.clone()).await?;
        let cgroup = options.cgroups.then(|| CgroupPlan {
            parent: self.cgroup_parent.clone(),
            limits: CgroupLimits {
                memory_bytes_max: Some(options.limits.memory_bytes_max + SANDBOX_OVERHEAD_BYTES),
                cpu_percent_max: Some(100),
                pids_max: Some(SANDBOX_PIDS_MAX),
            },
        });
        let config = AgentConfig {
            name: agent.clone(),
            program,
            module_path,
            policy: bundle.policy().clone(),
            limits: options.limits,
            cgroup,
        };
        let shared = AgentShared::new(
            config,
            self.services.clone(),
            Links {
                breaker: self.slots.breaker.clone(),
                quarantine: self.slots.quarantine.clone(),
                dead_letters: self.slots.dead_letters.clone(),
            },
            self.clock.clone(),
        );
        let slot = Slot::default();
        let spec_shared = shared.clone();
        let worker = ChildSpec::worker_published("agent", Restart::Transient, slot.clone(), {
            move || (AgentActor, spec_shared.clone())
        });
        let run = OpeningId::new(AGENTS_RUN).expect("a valid opening id");
        match self.start_run(&run).await {
            Ok(()) | Err(RunError::RunExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // A parked agent's supervisor stays with no running child; forget it first.
        let _ = self.stop_agent_supervisor(&run, &agent).await;
        let on_give_up = {
            let shared = shared.clone();
            Arc::new(move |message: String| {
                shared.metrics.set_state(AgentState::Quarantined);
                shared.fail_in_flight(
                    &AgentError::Quarantined {
                        agent: shared.config.name.to_string(),
                        message: message.clone(),
                    },
                    &DeadLetterReason::Quarantined { message },
                );
            }) as Arc<dyn Fn(String) + Send + Sync>
        };
        let entry = AgentEntry {
            shared,
            slot,
            bundle: dir.to_owned(),
        };
        self.agents
            .lock()
            .expect("agents lock")
            .insert(agent.clone(), entry.clone());
        if let Err(e) = self
            .start_agent_with(&run, &agent, options.intensity, worker, Some(on_give_up))
            .await
        {
            self.agents.lock().expect("agents lock").remove(&agent);
            return Err(e.into());
        }
        Ok(self.agent_status(&agent, &entry).await)
    }

    fn agent_entry(&self, agent: &AgentName) -> Option<AgentEntry> {
        self.agents.lock().expect("agents lock").get(agent).cloned()
    }

    /// Sends one message to `agent` and waits for its reply (redelivered after a crash).
    ///
    /// A message that reached an instance which then failed before admitting it (it was
    /// still in the mailbox, so it is in no ledger and nothing ran it) is sent again to
    /// the restarted instance, up to [`SEND_TRIES_MAX`] times; admitted messages are
    /// redelivered by the agent itself.
    pub async fn send(
        &self,
        agent: &AgentName,
        input: AgentInput,
    ) -> Result<AgentReply, AgentOpError> {
        let seq = TRACE_SEQ.fetch_add(1, Ordering::Relaxed);
        let trace_id = TraceId(
            u128::from(std::process::id()) << 96
                | u128::from(self.clock.now_ms()) << 32
                | u128::from(seq),
        );
        let limits = self.agent_options.limits;
        let waited_ms = (limits.invoke_wall_ms_max + 2_000)
            * u64::from(runloop_agent_actor::INVOKE_ATTEMPTS_MAX)
            + AGENT_RESTART_WAIT_MS;
        let timeout = Some(Duration::from_millis(waited_ms));
        let input = Arc::new(input);
        let mut tries = 0;
        let mut failed = None;
        loop {
            tries += 1;
            let entry = self
                .agent_entry(agent)
                .ok_or_else(|| AgentOpError::NoSuchAgent(agent.clone()))?;
            // A running instance answers a parked agent's messages itself; the
            // quarantine is asked only when none runs (it names the reason).
            let actor = match self.running_actor(agent, &entry, failed).await {
                Ok(actor) => actor,
                Err(not_running) => return Err(self.parked_or(agent, not_running).await),
            };
            let message = input.clone();
            let answer = actor
                .call(
                    |reply| AgentMsg::Invoke {
                        trace_id,
                        msg_id: MsgId(seq),
                        input: message,
                        reply,
                    },
                    timeout,
                )
                .await;
            return match answer {
                Ok(ractor::rpc::CallResult::Success(Ok(reply))) => Ok(reply),
                Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(AgentOpError::Agent(e)),
                Ok(ractor::rpc::CallResult::Timeout) => Err(AgentOpError::Timeout {
                    agent: agent.clone(),
                    waited_ms,
                }),
                // The instance stopped with the message in its mailbox: parked meanwhile
                // (then say why), restarting (then try the next instance) or stopped.
                _ => {
                    let stopped = AgentOpError::Agent(AgentError::Stopped {
                        agent: agent.to_string(),
                    });
                    let err = self.parked_or(agent, stopped).await;
                    let parked = matches!(err, AgentOpError::Agent(AgentError::Quarantined { .. }));
                    if !parked && tries < SEND_TRIES_MAX && self.agent_entry(agent).is_some() {
                        failed = Some(actor.get_id());
                        continue;
                    }
                    Err(err)
                }
            };
        }
    }

    /// `Quarantined` with the recorded reason when `agent` is parked, else `otherwise`.
    async fn parked_or(&self, agent: &AgentName, otherwise: AgentOpError) -> AgentOpError {
        if let Some(q) = self.quarantine()
            && let Ok(Some(record)) = q.check(agent).await
        {
            return AgentOpError::Agent(AgentError::Quarantined {
                agent: agent.to_string(),
                message: record.message,
            });
        }
        otherwise
    }

    /// The agent's running instance, waiting out a restart.
    async fn running_actor(
        &self,
        agent: &AgentName,
        entry: &AgentEntry,
        failed: Option<ractor::ActorId>,
    ) -> Result<ractor::ActorRef<AgentMsg>, AgentOpError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(AGENT_RESTART_WAIT_MS);
        loop {
            // An instance that already failed this message may still look alive for a
            // moment: wait for its successor.
            if let Some(actor) = entry.slot.get()
                && Some(actor.get_id()) != failed
            {
                return Ok(actor);
            }
            let state = entry.shared.metrics.snapshot().state;
            if matches!(state, AgentState::Stopped | AgentState::Quarantined)
                || tokio::time::Instant::now() >= deadline
            {
                return Err(AgentOpError::NotRunning(agent.clone()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops an agent and forgets it.
    pub async fn stop_agent(&self, agent: &AgentName) -> Result<(), AgentOpError> {
        let entry = self
            .agents
            .lock()
            .expect("agents lock")
            .remove(agent)
            .ok_or_else(|| AgentOpError::NoSuchAgent(agent.clone()))?;
        let run = OpeningId::new(AGENTS_RUN).expect("a valid opening id");
        let _ = self.stop_agent_supervisor(&run, agent).await;
        entry.shared.metrics.set_state(AgentState::Stopped);
        entry.shared.fail_in_flight(
            &AgentError::Stopped {
                agent: agent.to_string(),
            },
            &DeadLetterReason::AgentStopped,
        );
        if let Some(b) = self.breakers() {
            b.forget(agent).await;
        }
        Ok(())
    }

    /// Every agent with its state and metrics, by name.
    pub async fn agents(&self) -> Vec<AgentStatus> {
        let mut entries: Vec<_> = self
            .agents
            .lock()
            .expect("agents lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut out = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            out.push(self.agent_status(&name, &entry).await);
        }
        out
    }

    /// The metrics handle of an agent (tests and benches read counters from it).
    pub fn agent_metrics(&self, agent: &AgentName) -> Option<runloop_agent_actor::AgentMetrics> {
        self.agent_entry(agent).map(|e| e.shared.metrics)
    }

    async fn agent_status(&self, name: &AgentName, entry: &AgentEntry) -> AgentStatus {
        let snap = entry.shared.metrics.snapshot();
        let breaker = match self.breakers() {
            Some(b) => breaker_state(&b, name).await,
            None => "unknown".into(),
        };
        let quarantine = match self.quarantine() {
            Some(q) => q.check(name).await.ok().flatten().map(|r| r.message),
            None => None,
        };
        let state = if quarantine.is_some() {
            AgentState::Quarantined
        } else {
            snap.state
        };
        AgentStatus {
            name: name.to_string(),
            bundle: entry.bundle.display().to_string(),
            state: serde_json_name(state),
            sandbox_pid: snap.sandbox_pid,
            restarts: snap.restarts,
            breaker,
            quarantine,
            cpu_ms: snap.cpu_us / 1_000,
            rss_kb: snap.rss_kb,
            cgroup: snap.cgroup,
            messages_in: snap.messages_in,
            messages_out: snap.messages_out,
            errors: snap.errors,
            denied: snap.denied,
            redelivered: snap.redelivered,
            last_error: snap.last_error,
        }
    }
}

async fn breaker_state(breaker: &BreakerHandle, agent: &AgentName) -> String {
    match breaker.snapshot(agent).await {
        Some(s) => s.state.to_string(),
        None => "unknown".into(),
    }
}

fn serde_json_name(state: AgentState) -> String {
    match state {
        AgentState::Starting => "starting",
        AgentState::Running => "running",
        AgentState::Restarting => "restarting",
        AgentState::Quarantined => "quarantined",
        AgentState::Stopped => "stopped",
    }
    .into()
}

async fn compile(
    bundle: &Bundle,
    agent: &AgentName,
    dir: Option<PathBuf>,
) -> Result<PathBuf, AgentOpError> {
    let wasm = bundle.wasm().to_vec();
    let failed = |message: String| AgentOpError::Compile {
        agent: agent.to_string(),
        message,
    };
    let dir = dir.unwrap_or_else(runloop_compile::Compiler::default_dir);
    let result = tokio::task::spawn_blocking(move || {
        let compiler = runloop_compile::Compiler::new(dir).map_err(|e| e.to_string())?;
        compiler
            .compile_bytes(&wasm)
            .map(|c| c.path)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    result.map_err(failed)
}
