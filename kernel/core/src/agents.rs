//! Agents in the tree: start one from a bundle directory, send it messages, stop it,
//! list them with their state and metrics.
//!
//! An agent belongs to a run: standalone agents (`rlp agent start`) to
//! [`RunId::STANDALONE`], shown as `agents`, and an opening's agents to that run, so the
//! same bundle in two runs gives two instances. Each lives as
//! `runs → run-<run> → agent-<name> (its own supervisor, the given intensity) → agent`.
//! Messages reach it over the bus under a scheduler permit (see [`crate::deliver`]).
//! The bundle is loaded (signature against the kernel's trust roots, digest and ABI
//! verified: a tampered or untrusted bundle never starts) — or handed in already loaded
//! ([`Kernel::start_verified_in`], a run's nodes: only the trust decision is asked again) —
//! compiled to `.cwasm` (cached), and the agent actor spawns its sandbox in
//! `runloop-k<kernel pid>/<name>-<generation>`. When
//! its supervisor gives up, the agent is parked in quarantine and every invoke still in
//! flight is answered with an error and recorded as a dead letter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runloop_actors::breaker::BreakerHandle;
use runloop_actors::delivery::DeadLetterReason;
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::scheduler::{Budget, ScheduleError};
use runloop_actors::supervisor::{ChildSpec, Intensity, Restart, Slot};
use runloop_agent_actor::{
    AgentActor, AgentConfig, AgentError, AgentMsg, AgentReply, AgentShared, AgentState, CgroupPlan,
    HandlerFactory, Links,
};
use runloop_bundle::Bundle;
use runloop_proto::payloads::{AgentInput, AgentStatus, SandboxLimits};
use runloop_proto::{RunId, TraceId};
use runloop_sandbox::CgroupLimits;

use crate::deliver::{self, Pump};
use crate::kernel::{Kernel, RunError};

mod status;

pub(crate) use status::StatusCache;

/// The opening standalone agents are scheduled under (fair share between openings).
pub const AGENTS_RUN: &str = "agents";
/// Most agents one kernel runs.
pub const AGENTS_MAX: usize = 4_096;
/// How long `send` waits for a restarting agent to come back.
pub const AGENT_RESTART_WAIT_MS: u64 = 5_000;
/// Times `Kernel::send` hands one message to an agent whose instance keeps failing before
/// admitting it.
pub const SEND_TRIES_MAX: u32 = 3;
/// Time one delivery may take past the sandbox watchdog (reaping, the restart's spawn).
const DELIVERY_SLACK_MS: u64 = 2_000;
/// Memory the sandbox process needs beside the guest's linear memory.
const SANDBOX_OVERHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// Threads the sandbox may run (main + epoch ticker, with slack).
const SANDBOX_PIDS_MAX: u64 = 8;

/// The answer to one message.
pub type AgentReplyResult = Result<AgentReply, AgentOpError>;

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
    /// Refuse to start an agent whose sandbox cannot have its own cgroup
    /// (`runtime.require_cgroups`), instead of running it with a notice.
    pub require_cgroups: bool,
    /// The trust roots every bundle is checked against when it is loaded (config's
    /// `security.trust_roots`; default: the project key only, unsigned refused).
    pub trust: runloop_bundle::TrustPolicy,
    /// What capability grants may extend, and for how long (`security.grants`).
    pub grants: runloop_bundle::grants::GrantRules,
    /// Most warm sandboxes kept ready (`runtime.warm_sandboxes`; 0: none, every start
    /// spawns). See `runloop_agent::warm`.
    pub warm_sandboxes: usize,
}

impl AgentOptions {
    /// The defaults with what config v1 says: `security.trust_roots`,
    /// `security.grants` and `runtime.require_cgroups` (default: on in system mode).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            trust: config.trust.clone(),
            grants: config.grants.clone(),
            require_cgroups: config.require_cgroups(),
            warm_sandboxes: config.warm_sandboxes(),
            ..Self::default()
        }
    }
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
            require_cgroups: false,
            trust: runloop_bundle::TrustPolicy::default(),
            grants: runloop_bundle::grants::GrantRules::default(),
            warm_sandboxes: runloop_agent_actor::warm::WARM_MAX_DEFAULT,
        }
    }
}

/// One agent the kernel started.
#[derive(Debug, Clone)]
pub(crate) struct AgentEntry {
    pub(crate) shared: AgentShared,
    pub(crate) slot: Slot<AgentMsg>,
    bundle: PathBuf,
    /// The task moving the agent's inbox frames from the bus to its instance.
    pump: Option<Arc<tokio::task::AbortHandle>>,
}

/// How one agent is started beyond its bundle.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The name in the run (default: the manifest's).
    pub name: Option<String>,
    /// Wraps the kernel's host-call handler (recording, replay, faults); default: none.
    pub handlers: Option<Arc<dyn HandlerFactory>>,
    /// This agent's sandbox limits instead of the kernel's (a drill's bomb).
    pub limits: Option<SandboxLimits>,
    /// This agent's cgroup memory limit instead of its wasm limit plus the sandbox's
    /// overhead (a drill makes the cgroup the tighter of the two).
    pub cgroup_memory_bytes_max: Option<u64>,
    /// This agent's sandbox program instead of the kernel's (a drill's hostile sandbox).
    pub sandbox_host: Option<PathBuf>,
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
    #[error("scheduler: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("bus: {0}")]
    Bus(String),
    #[error("the bus dropped the message on {topic}: {reason}")]
    Dropped { topic: String, reason: String },
    #[error("busy: {0}")]
    Busy(String),
    #[error(
        "agent {agent} needs a cgroup of its own (runtime.require_cgroups is on) and cannot \
         have one: {reason}; make cgroups writable for this user, or set \
         runtime.require_cgroups: false to run agents without"
    )]
    CgroupsRequired { agent: AgentName, reason: String },
}

/// `runtime.require_cgroups`: whether an agent may start, given whether this kernel puts
/// sandboxes in cgroups at all and what the machine offers. `Err` is the reason it may not.
pub fn check_cgroups_required(
    cgroups_on: bool,
    support: &runloop_sandbox::CgroupSupport,
) -> Result<(), String> {
    if !cgroups_on {
        return Err("this kernel runs its agents without cgroups".into());
    }
    match support {
        runloop_sandbox::CgroupSupport::V1 | runloop_sandbox::CgroupSupport::V2 => Ok(()),
        runloop_sandbox::CgroupSupport::Unavailable(reason) => Err(reason.clone()),
    }
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
            AgentOpError::Schedule(ScheduleError::BudgetExceeded { .. }) => "BudgetExceeded",
            AgentOpError::Schedule(_) => "ScheduleRefused",
            AgentOpError::Bus(_) => "BusDown",
            AgentOpError::Dropped { .. } => "Dropped",
            AgentOpError::Busy(_) => "Busy",
            AgentOpError::CgroupsRequired { .. } => "CgroupsRequired",
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

impl Kernel {
    /// Loads, compiles and starts the standalone agent in `dir` (named `name`, else the
    /// manifest's).
    pub async fn start_bundle(
        &self,
        dir: &Path,
        name: Option<&str>,
    ) -> Result<AgentStatus, AgentOpError> {
        let options = StartOptions {
            name: name.map(str::to_owned),
            ..StartOptions::default()
        };
        self.start_bundle_in(RunId::STANDALONE, dir, options).await
    }

    /// Loads, compiles and starts the agent in `dir` as an agent of `run` (which must have
    /// been started with [`Kernel::start_run`], except the standalone run).
    pub async fn start_bundle_in(
        &self,
        run: RunId,
        dir: &Path,
        start: StartOptions,
    ) -> Result<AgentStatus, AgentOpError> {
        let bundle = self
            .modules
            .bundles()
            .load(dir, &self.agent_options.trust)
            .map_err(|e| AgentOpError::Bundle {
                dir: dir.to_owned(),
                message: e.to_string(),
            })?;
        self.start_verified_in(run, bundle, start).await
    }

    /// Compiles and starts `bundle`, already loaded (its signature, digest and ABI verified
    /// when it was), as an agent of `run`: what [`Kernel::start_bundle_in`] does after its
    /// load. A run starts each node's agent this way from the bundle its submit verified,
    /// so a node's start reads and parses no file of the bundle again. The trust decision
    /// is asked again, of this kernel's trust roots ([`Bundle::trusted_under`], no I/O): a
    /// bundle loaded under another policy starts only if this one vouches for it too.
    pub async fn start_verified_in(
        &self,
        run: RunId,
        bundle: Arc<Bundle>,
        start: StartOptions,
    ) -> Result<AgentStatus, AgentOpError> {
        bundle
            .trusted_under(&self.agent_options.trust)
            .map_err(|e| AgentOpError::Bundle {
                dir: bundle.dir().to_owned(),
                message: e.to_string(),
            })?;
        let name = start
            .name
            .as_deref()
            .unwrap_or(bundle.manifest().name().as_str());
        let agent = AgentName::new(name).map_err(|e| AgentOpError::InvalidName(e.to_string()))?;
        if let Some(entry) = self.agent_entry(run, &agent)
            && entry.slot.get().is_some()
        {
            return Err(AgentOpError::Exists(agent));
        }
        if self.agents.lock().expect("agents lock").len() >= AGENTS_MAX {
            return Err(AgentOpError::TooMany);
        }
        // At most AGENT_STARTS_MAX starts at once; the rest queue here, not in timeouts.
        let _start = self
            .starts
            .acquire()
            .await
            .expect("the start semaphore is never closed");
        let options = self.agent_options.clone();
        if options.require_cgroups {
            check_cgroups_required(options.cgroups, &runloop_sandbox::cgroup::detect()).map_err(
                |reason| AgentOpError::CgroupsRequired {
                    agent: agent.clone(),
                    reason,
                },
            )?;
        }
        let program = match start
            .sandbox_host
            .as_ref()
            .or(options.sandbox_host.as_ref())
        {
            Some(p) => p.clone(),
            None => runloop_sandbox::locate_sandbox_host().map_err(|tried| {
                let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
                AgentOpError::NoSandboxHost(tried.join(", "))
            })?,
        };
        let module_path = self
            .modules
            .compiled(
                &bundle,
                options
                    .cwasm_dir
                    .clone()
                    .unwrap_or_else(runloop_compile::Compiler::default_dir),
            )
            .await
            .map_err(|message| AgentOpError::Compile {
                agent: agent.to_string(),
                message,
            })?;
        let limits = start.limits.unwrap_or(options.limits);
        let cgroup_memory = start
            .cgroup_memory_bytes_max
            .unwrap_or(limits.memory_bytes_max + SANDBOX_OVERHEAD_BYTES);
        let cgroup = options.cgroups.then(|| CgroupPlan {
            parent: self.cgroup_parent.clone(),
            limits: CgroupLimits {
                memory_bytes_max: Some(cgroup_memory),
                cpu_percent_max: Some(100),
                pids_max: Some(SANDBOX_PIDS_MAX),
            },
        });
        let config = AgentConfig {
            name: agent.clone(),
            bundle_name: bundle.manifest().name().as_str().to_owned(),
            cgroup_name: if run.is_standalone() {
                agent.to_string()
            } else {
                format!("{run}.{agent}")
            },
            program,
            module_path,
            policy: bundle.policy().clone(),
            limits,
            cgroup,
        };
        let mut shared = AgentShared::new(
            config,
            self.services.clone(),
            Links {
                breaker: self.slots.breaker.clone(),
                quarantine: self.slots.quarantine.clone(),
                dead_letters: self.slots.dead_letters.clone(),
            },
            self.clock.clone(),
        );
        if let Some(factory) = start.handlers {
            shared = shared.with_handlers(factory);
        }
        if let Some(pool) = &self.warm {
            shared = shared.with_warm(pool.clone(), !run.is_standalone());
        }
        let slot = Slot::default();
        let spec_shared = shared.clone();
        let worker = ChildSpec::worker_published("agent", Restart::Transient, slot.clone(), {
            move || (AgentActor, spec_shared.clone())
        });
        if run.is_standalone() {
            let opening = OpeningId::new(AGENTS_RUN).expect("a valid opening id");
            match self.start_run(run, &opening).await {
                Ok(()) | Err(RunError::RunExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A parked agent's supervisor stays with no running child; forget it first.
        let _ = self.stop_agent_supervisor(run, &agent).await;
        if let Some(old) = self
            .agents
            .lock()
            .expect("agents lock")
            .remove(&(run, agent.clone()))
        {
            old.stop_pump();
        }
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
        let mut entry = AgentEntry {
            shared,
            slot,
            bundle: bundle.dir().to_owned(),
            pump: None,
        };
        let task = self.pump(entry.clone(), &agent)?.start(run).await?;
        entry.pump = Some(Arc::new(task.abort_handle()));
        self.agents
            .lock()
            .expect("agents lock")
            .insert((run, agent.clone()), entry.clone());
        if let Err(e) = self
            .start_agent_with(run, &agent, options.intensity, worker, Some(on_give_up))
            .await
        {
            if let Some(entry) = self
                .agents
                .lock()
                .expect("agents lock")
                .remove(&(run, agent))
            {
                entry.stop_pump();
            }
            return Err(e.into());
        }
        Ok(self.agent_status(&agent, &entry).await)
    }

    /// The `policy.caps` of a running instance of bundle `bundle_name`, if one runs.
    pub(crate) fn running_policy(&self, bundle_name: &str) -> Option<runloop_bundle::Policy> {
        self.agents
            .lock()
            .expect("agents lock")
            .values()
            .find(|entry| entry.shared.config.bundle_name == bundle_name)
            .map(|entry| entry.shared.config.policy.clone())
    }

    /// Whether `agent` of `run` is known (no copy of its entry, for the send path).
    fn has_agent(&self, run: RunId, agent: &AgentName) -> bool {
        self.agents
            .lock()
            .expect("agents lock")
            .contains_key(&(run, agent.clone()))
    }

    pub(crate) fn agent_entry(&self, run: RunId, agent: &AgentName) -> Option<AgentEntry> {
        self.agents
            .lock()
            .expect("agents lock")
            .get(&(run, agent.clone()))
            .cloned()
    }

    /// The pump that moves `agent`'s messages from the bus into its running instance.
    fn pump(&self, entry: AgentEntry, agent: &AgentName) -> Result<Pump, AgentOpError> {
        let bus = self
            .bus()
            .ok_or_else(|| AgentOpError::Bus("the bus is not running".into()))?;
        let wait_ms = self.message_wait_ms();
        Ok(Pump {
            entry,
            agent: agent.clone(),
            quarantine: self.slots.quarantine.clone(),
            bus,
            clock: self.clock.clone(),
            waited_ms: wait_ms,
            ttl_ms: wait_ms,
        })
    }

    /// The longest one message may take: every delivery up to the sandbox watchdog of its
    /// time limit, plus slack and the wait for a restart.
    fn message_wait_ms(&self) -> u64 {
        let limit = self.agent_options.limits.invoke_wall_ms_max;
        let delivery = runloop_sandbox::invoke_watchdog_ms(limit) + DELIVERY_SLACK_MS;
        delivery * u64::from(runloop_agent_actor::INVOKE_ATTEMPTS_MAX) + AGENT_RESTART_WAIT_MS
    }

    /// Sends one message to the standalone agent `agent` and waits for its reply
    /// (redelivered after a crash).
    pub async fn send(
        &self,
        agent: &AgentName,
        input: AgentInput,
    ) -> Result<AgentReply, AgentOpError> {
        let opening = OpeningId::new(AGENTS_RUN).expect("a valid opening id");
        self.send_in(RunId::STANDALONE, &opening, agent, input)
            .await
    }

    /// Sends one message to `agent` of `run` over the bus, under a scheduler permit of
    /// `opening` (fair share between openings), and waits for its answer from the bus.
    pub async fn send_in(
        &self,
        run: RunId,
        opening: &OpeningId,
        agent: &AgentName,
        input: AgentInput,
    ) -> Result<AgentReply, AgentOpError> {
        let trace_id = self.ids.trace_id();
        self.send_traced(run, opening, agent, input, trace_id).await
    }

    /// [`Kernel::send_in`] under a given trace id (a run's node invokes carry the run's).
    pub async fn send_traced(
        &self,
        run: RunId,
        opening: &OpeningId,
        agent: &AgentName,
        input: AgentInput,
        trace_id: TraceId,
    ) -> Result<AgentReply, AgentOpError> {
        if !self.has_agent(run, agent) {
            return Err(AgentOpError::NoSuchAgent(agent.clone()));
        }
        // Refused here, named, rather than as a frame the sandbox cannot decode.
        if runloop_proto::value_depth(&input.payload) > runloop_proto::VALUE_DEPTH_MAX {
            return Err(AgentOpError::BadInput(format!(
                "the payload nests deeper than {} levels",
                runloop_proto::VALUE_DEPTH_MAX
            )));
        }
        let scheduler = self
            .scheduler()
            .ok_or(AgentOpError::Schedule(ScheduleError::Down))?;
        let bus = self
            .bus()
            .ok_or_else(|| AgentOpError::Bus("the bus is not running".into()))?;
        let router = self
            .router
            .clone()
            .ok_or_else(|| AgentOpError::Bus("the kernel's reply router is not running".into()))?;
        let permit = scheduler.acquire(opening, Budget::default()).await?;
        let msg_id = self.ids.msg_id();
        let waited_ms = self.message_wait_ms();
        let frame =
            deliver::delivery_frame(input, self.clock.now_ms(), waited_ms, trace_id, msg_id)?;
        let answer = router.wait(msg_id)?;
        if let Err(e) = bus
            .publish(&deliver::inbox_topic(run, agent), Arc::new(frame))
            .await
        {
            router.forget(msg_id);
            return Err(AgentOpError::Bus(e.to_string()));
        }
        // The pump answers within `waited_ms` (it times the agent out itself); the margin
        // covers the two bus crossings.
        let wait = Duration::from_millis(waited_ms + 2_000);
        let result = match tokio::time::timeout(wait, answer).await {
            Ok(Ok(Ok(answer))) => deliver::from_answer(agent, answer),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(AgentOpError::Bus("the reply router stopped".into())),
            Err(_) => {
                router.forget(msg_id);
                Err(AgentOpError::Timeout {
                    agent: agent.clone(),
                    waited_ms,
                })
            }
        };
        permit.finish(Budget::default());
        result
    }

    /// Hands one message straight to the standalone agent's instance: no bus, no
    /// scheduler permit. Kept only so `perf/benches/agents.rs` can measure what the bus
    /// and the scheduler cost beside it in the same run; nothing else uses it.
    #[doc(hidden)]
    pub async fn send_direct(
        &self,
        agent: &AgentName,
        input: AgentInput,
    ) -> Result<AgentReply, AgentOpError> {
        let entry = self
            .agent_entry(RunId::STANDALONE, agent)
            .ok_or_else(|| AgentOpError::NoSuchAgent(agent.clone()))?;
        let pump = self.pump(entry, agent)?;
        let trace_id = self.ids.trace_id();
        pump.deliver(trace_id, self.ids.msg_id(), Arc::new(input))
            .await
    }

    /// Forgets every agent of `run` (whose supervisor is stopping them): pumps stopped,
    /// in-flight callers answered. Without this a daemon would count the agents of every
    /// finished run against [`AGENTS_MAX`].
    pub(crate) fn forget_run_agents(&self, run: RunId) {
        let gone: Vec<(AgentName, AgentEntry)> = {
            let mut map = self.agents.lock().expect("agents lock");
            let keys: Vec<_> = map.keys().filter(|(r, _)| *r == run).cloned().collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|e| (k.1, e)))
                .collect()
        };
        for (agent, entry) in gone {
            entry.stop_pump();
            entry.shared.metrics.set_state(AgentState::Stopped);
            entry.shared.fail_in_flight(
                &AgentError::Stopped {
                    agent: agent.to_string(),
                },
                &DeadLetterReason::AgentStopped,
            );
        }
    }

    /// Stops an agent and forgets it.
    pub async fn stop_agent(&self, agent: &AgentName) -> Result<(), AgentOpError> {
        self.stop_agent_in(RunId::STANDALONE, agent).await
    }

    /// Stops an agent of `run` and forgets it.
    pub async fn stop_agent_in(&self, run: RunId, agent: &AgentName) -> Result<(), AgentOpError> {
        let entry = self
            .agents
            .lock()
            .expect("agents lock")
            .remove(&(run, agent.clone()))
            .ok_or_else(|| AgentOpError::NoSuchAgent(agent.clone()))?;
        entry.stop_pump();
        let _ = self.stop_agent_supervisor(run, agent).await;
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
}

impl AgentEntry {
    /// Ends the task moving the agent's inbox frames (dropping its subscription).
    pub(crate) fn stop_pump(&self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
    }
}
