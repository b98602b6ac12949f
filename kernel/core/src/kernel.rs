//! Boot and wiring: the supervisor tree, the same in `runloopd` and in embedded mode.
//!
//! ```text
//! root (one_for_one)
//! ├── system (one_for_one): bus, scheduler, breaker, quarantine, metrics,
//! │                         dead_letters, [pog slot], [broker slot]
//! └── runs (one_for_one, temporary children): one supervisor per run → agent actors
//! ```
//!
//! The control plane (the socket server) is not in the tree: it belongs to `runloopd`,
//! which owns the listening socket and stops accepting before the tree shuts down.
//! The POG (`runloop.pog`) and the model broker (`runloop.broker`) are singletons from
//! their own crates, started in their slots when [`KernelOptions`] asks for them
//! (`runloopd` does; embedded `rlp` commands leave them out and `rlp status` shows the
//! slots as `empty`).
//!
//! The bus, scheduler, breaker and quarantine keep their state in stores created once per
//! boot and captured by their child specs, so a supervisor restart of one of them
//! continues where it was; the quarantine store is also kept in
//! [`KernelOptions::quarantine_file`] (runloopd: `<state dir>/quarantine.msgpack`), so
//! parked agents stay parked across a daemon restart until released.
//!
//! Lifecycle: [`Kernel::boot`] starts the tree and returns once every system actor is
//! running; [`Kernel::shutdown`] stops the root, which stops runs first (they were
//! started last) and then the system actors, each waited for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use runloop_actors::breaker::{
    BreakerActor, BreakerArgs, BreakerConfig, BreakerHandle, BreakerStore,
};
use runloop_actors::bus::{Bus, BusArgs, BusConfig, BusHandle, BusStore};
use runloop_actors::delivery::{DeadLetter, DeadLetterMsg, DeadLetters};
use runloop_actors::names::{AgentName, OpeningId};
use runloop_actors::quarantine::{
    Quarantine, QuarantineArgs, QuarantineError, QuarantineFileError, QuarantineHandle,
    QuarantineReason, QuarantineRecord, QuarantineStore,
};
use runloop_actors::scheduler::{Scheduler, SchedulerConfig, SchedulerHandle, SchedulerStore};
use runloop_actors::supervisor::{
    ChildSpec, GiveUpHook, Intensity, Restart, Slot, Strategy, SupervisorArgs, SupervisorConfig,
    SupervisorError, SupervisorMsg, spawn_root,
};
use runloop_proto::{Clock, Ids, RunId, SystemClock};

use crate::agents::{AgentEntry, AgentOptions};
use crate::deliver::Router;
use crate::metrics::{Metrics, MetricsMsg};
use runloop_agent_actor::{Services, SharedClock, SharedRandom};
use runloop_sandbox::OsRandom;

mod shutdown;
mod status;
pub mod trim;

pub use self::status::USAGE_SAMPLE_MS;

/// How long status waits for the tree's snapshot and each actor's detail.
pub const STATUS_TIMEOUT_MS: u64 = 2_000;
/// How long shutdown waits for the tree to stop.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

/// Everything the tree is booted with.
#[derive(Clone)]
pub struct KernelOptions {
    pub clock: Arc<dyn Clock>,
    pub root: SupervisorConfig,
    pub system: SupervisorConfig,
    pub bus: BusConfig,
    pub breaker: BreakerConfig,
    pub scheduler: SchedulerConfig,
    /// How agents started with [`Kernel::start_bundle`] run.
    pub agents: AgentOptions,
    /// The randomness `random.bytes` host calls get.
    pub random: SharedRandom,
    /// Start the POG singleton in the system supervisor's `pog` slot.
    pub pog: Option<PogService>,
    /// Start the model broker singleton, serving this broker, in the `broker` slot.
    pub broker: Option<Arc<runloop_broker::Broker>>,
    /// Where parked agents are kept across kernel restarts (`None`: in memory only).
    pub quarantine_file: Option<PathBuf>,
    /// Trace, run and message ids (default: seeded from the operating system at boot).
    pub ids: Ids,
    /// The effects journal and confirmation gate (they need the POG: without `pog` they
    /// are not started, and effects and confirmations are declined).
    pub effects: Option<crate::effects::EffectsConfig>,
    /// Called after each effect's result is recorded, before the agent hears (tests).
    pub after_effect: Option<crate::effects::AfterEffect>,
    /// OpenTelemetry export of crossings and metrics (`observability.traces`); flushed by
    /// [`Kernel::shutdown`].
    pub otel: Option<Arc<crate::otel::Otel>>,
}

/// Where the kernel's POG singleton keeps its files, and its read pool size.
#[derive(Debug, Clone)]
pub struct PogService {
    pub config: runloop_pog::PogConfig,
    pub read_conns: usize,
}

impl std::fmt::Debug for KernelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelOptions").finish_non_exhaustive()
    }
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            root: SupervisorConfig::new(Strategy::OneForOne),
            system: SupervisorConfig::new(Strategy::OneForOne),
            bus: BusConfig::default(),
            breaker: BreakerConfig::default(),
            scheduler: SchedulerConfig::default(),
            agents: AgentOptions::default(),
            random: SharedRandom(Arc::new(std::sync::Mutex::new(OsRandom))),
            pog: None,
            broker: None,
            quarantine_file: None,
            ids: Ids::seeded(os_seed()),
            effects: None,
            after_effect: None,
            otel: None,
        }
    }
}

/// A seed for the default id generator, from the operating system's random source.
fn os_seed() -> u64 {
    use runloop_sandbox::RandomSource;
    let mut bytes = [0u8; 8];
    OsRandom.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[derive(Default, Clone)]
pub(crate) struct Slots {
    bus: Slot<runloop_actors::bus::BusMsg>,
    scheduler: Slot<runloop_actors::scheduler::SchedulerMsg>,
    pub(crate) breaker: Slot<runloop_actors::breaker::BreakerMsg>,
    pub(crate) quarantine: Slot<runloop_actors::quarantine::QuarantineMsg>,
    metrics: Slot<MetricsMsg>,
    pub(crate) dead_letters: Slot<DeadLetterMsg>,
    pog: Slot<runloop_pog_actor::PogMsg>,
    broker: Slot<runloop_broker::BrokerMsg>,
    gate: Slot<crate::effects::gate::GateMsg>,
    runs: Slot<SupervisorMsg>,
}

/// Most runs one kernel supervises at once.
pub const RUNS_MAX: usize = 1_024;
/// How long run and agent requests wait for a supervisor.
pub const RUN_CALL_TIMEOUT_MS: u64 = 10_000;
/// Most agents starting at once (each spawns, confines and loads a sandbox): more wait
/// their turn instead of all timing out together when a thousand runs start at once.
pub const AGENT_STARTS_MAX: usize = 8;

/// Why a run or agent request failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run {run}: the runs supervisor is not running")]
    RunsDown { run: RunId },
    #[error("run {run}: its supervisor did not answer within {ms} ms")]
    Timeout { run: RunId, ms: u64 },
    #[error("run {run} is not running")]
    NoSuchRun { run: RunId },
    #[error("run {run} is already running")]
    RunExists { run: RunId },
    #[error("the kernel already supervises {RUNS_MAX} runs")]
    TooManyRuns,
    #[error("run {run}: {source}")]
    Supervisor { run: RunId, source: SupervisorError },
    #[error(
        "start agent {agent}: it is quarantined: {message}; release it with `rlp agent release {agent}`"
    )]
    Quarantined { agent: AgentName, message: String },
    #[error("start agent {agent}: {source}")]
    Quarantine {
        agent: AgentName,
        source: QuarantineError,
    },
}

/// Why the kernel did not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("boot: start the supervisor tree: {0}")]
    Tree(String),
    #[error("boot: {0}")]
    Quarantine(#[from] QuarantineFileError),
}

/// A running kernel.
pub struct Kernel {
    root: ActorRef<SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The supervisor of each run started through this kernel.
    runs: std::sync::Mutex<HashMap<RunId, (OpeningId, Slot<SupervisorMsg>)>>,
    pub(crate) slots: Slots,
    bus_store: BusStore,
    /// The scheduler's accounting, for its handles' fast path (a grant straight from the
    /// store when a slot is free and nobody waits).
    scheduler_store: SchedulerStore,
    pub(crate) agents: std::sync::Mutex<HashMap<(RunId, AgentName), AgentEntry>>,
    /// When the agents' current CPU and RSS readings were taken, by `clock` (ms; 0: never):
    /// see [`Kernel::usage_batch_ms`].
    pub(crate) usage_batch: std::sync::atomic::AtomicU64,
    /// Trace, run and message ids.
    pub(crate) ids: Ids,
    /// Completes senders waiting for agents' answers from the bus (`None`: the bus did
    /// not take the router's subscriptions at boot).
    pub(crate) router: Option<Router>,
    router_task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) agent_options: AgentOptions,
    pub(crate) services: Services,
    /// Parent cgroup of this kernel's agents: `runloop-k<pid>`.
    pub(crate) cgroup_parent: String,
    /// Bounds concurrent agent starts ([`AGENT_STARTS_MAX`]).
    pub(crate) starts: tokio::sync::Semaphore,
    /// The effects journal and confirmation gate, when this kernel has them.
    effects: Option<crate::effects::Effects>,
    /// OpenTelemetry export, when enabled.
    otel: Option<Arc<crate::otel::Otel>>,
    /// Ready sandboxes agents take instead of spawning (`runtime.warm_sandboxes`; `None`
    /// when 0), and the task that ends the ones idle too long.
    pub(crate) warm: Option<runloop_agent_actor::WarmPool>,
    warm_sweeper: Option<tokio::task::JoinHandle<()>>,
    /// The task that gives freed heap back to the system ([`trim`]).
    trimmer: Option<tokio::task::JoinHandle<()>>,
    /// Verified bundles and compiled modules kept across starts.
    pub(crate) modules: crate::modules::Modules,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").finish_non_exhaustive()
    }
}

/// The state of the system actors that outlives each one's restarts (created once per
/// boot, captured by the child specs).
#[derive(Clone)]
struct SystemStores {
    bus: BusStore,
    breaker: BreakerStore,
    quarantine: QuarantineStore,
    scheduler: SchedulerStore,
}

impl SystemStores {
    fn open(options: &KernelOptions) -> Result<Self, BootError> {
        Ok(Self {
            bus: BusStore::new(),
            breaker: BreakerStore::new(),
            quarantine: QuarantineStore::open(options.quarantine_file.clone())?,
            scheduler: SchedulerStore::new(options.scheduler),
        })
    }
}

fn system_children(
    options: &KernelOptions,
    slots: &Slots,
    stores: &SystemStores,
    shared_gate: Option<&Arc<crate::effects::gate::GateShared>>,
) -> Vec<ChildSpec> {
    let (clock, bus, breaker) = (options.clock.clone(), options.bus, options.breaker);
    let (bus_store, breaker_store) = (stores.bus.clone(), stores.breaker.clone());
    let bus_clock = clock.clone();
    let breaker_clock = clock.clone();
    let mut children = vec![
        ChildSpec::worker_published("bus", Restart::Permanent, slots.bus.clone(), move || {
            let args = BusArgs {
                config: bus,
                clock: bus_clock.clone(),
                store: bus_store.clone(),
            };
            (Bus, args)
        }),
        ChildSpec::worker_published("scheduler", Restart::Permanent, slots.scheduler.clone(), {
            let store = stores.scheduler.clone();
            move || (Scheduler, store.clone())
        }),
        ChildSpec::worker_published(
            "breaker",
            Restart::Permanent,
            slots.breaker.clone(),
            move || {
                let args = BreakerArgs {
                    config: breaker,
                    clock: breaker_clock.clone(),
                    store: breaker_store.clone(),
                };
                (BreakerActor, args)
            },
        ),
        ChildSpec::worker_published(
            "quarantine",
            Restart::Permanent,
            slots.quarantine.clone(),
            {
                let store = stores.quarantine.clone();
                move || {
                    let args = QuarantineArgs {
                        clock: clock.clone(),
                        store: store.clone(),
                    };
                    (Quarantine, args)
                }
            },
        ),
        ChildSpec::worker_published("metrics", Restart::Permanent, slots.metrics.clone(), || {
            (Metrics, ())
        }),
        ChildSpec::worker_published(
            "dead_letters",
            Restart::Permanent,
            slots.dead_letters.clone(),
            || (DeadLetters, ()),
        ),
    ];
    if let Some(pog) = options.pog.clone() {
        let pog_clock = options.clock.clone();
        children.push(ChildSpec::worker_registered(
            "pog",
            Some(runloop_pog_actor::POG_ACTOR_NAME.to_owned()),
            Restart::Permanent,
            slots.pog.clone(),
            move || {
                let args = runloop_pog_actor::PogArgs {
                    config: pog.config.clone(),
                    clock: pog_clock.clone(),
                    read_conns: pog.read_conns,
                    later_flush_ms: runloop_pog_actor::LATER_FLUSH_MS,
                };
                (runloop_pog_actor::PogActor, args)
            },
        ));
    }
    if let (Some(_), Some(gate)) = (&options.pog, shared_gate) {
        let args = crate::effects::gate::GateArgs {
            shared: gate.clone(),
            clock: options.clock.clone(),
            pog: slots.pog.clone(),
        };
        children.push(ChildSpec::worker_published(
            "confirm_gate",
            Restart::Permanent,
            slots.gate.clone(),
            move || (crate::effects::gate::ConfirmGateActor, args.clone()),
        ));
    }
    if let Some(broker) = options.broker.clone() {
        children.push(ChildSpec::worker_registered(
            "broker",
            Some(runloop_broker::actor::BROKER_ACTOR_NAME.to_owned()),
            Restart::Permanent,
            slots.broker.clone(),
            move || {
                let args = runloop_broker::BrokerArgs::Prebuilt(broker.clone());
                (runloop_broker::BrokerActor, args)
            },
        ));
    }
    children
}

impl Kernel {
    /// Starts the tree; returns once every system actor is running.
    pub async fn boot(options: KernelOptions) -> Result<Kernel, BootError> {
        // Cgroups (and sandboxes) left by SIGKILLed kernels and `rlp`s go before we start.
        runloop_sandbox::cgroup::sweep_orphans().notice();
        let slots = Slots::default();
        let stores = SystemStores::open(&options)?;
        let gate_shared = options
            .effects
            .as_ref()
            .filter(|_| options.pog.is_some())
            .map(|c| crate::effects::gate::GateShared::new(c.confirm_timeout_ms));
        let system = ChildSpec::supervisor(
            "system",
            Restart::Permanent,
            options.system,
            options.clock.clone(),
            system_children(&options, &slots, &stores, gate_shared.as_ref()),
        );
        let runs = ChildSpec::supervisor_published(
            Restart::Permanent,
            SupervisorArgs {
                name: "runs".into(),
                config: SupervisorConfig::new(Strategy::OneForOne),
                clock: options.clock.clone(),
                children: Vec::new(),
                on_give_up: None,
            },
            slots.runs.clone(),
        );
        let (root, join) = spawn_root(SupervisorArgs {
            name: "root".into(),
            config: options.root,
            clock: options.clock.clone(),
            children: vec![system, runs],
            on_give_up: None,
        })
        .await
        .map_err(|e| BootError::Tree(e.to_string()))?;
        let bus = slots
            .bus
            .get()
            .map(|bus| BusHandle::new(bus, stores.bus.clone()))
            .ok_or_else(|| BootError::Tree("the bus did not start".into()))?;
        let (router, router_task) = Router::start(&bus)
            .await
            .map_err(|e| BootError::Tree(format!("subscribe the reply router: {e}")))?;
        let mut services = Services {
            pog: slots.pog.clone(),
            broker: slots.broker.clone(),
            grants: runloop_bundle::grants::GrantBook::new(options.agents.grants.clone()),
            ..Services::local(SharedClock(options.clock.clone()), options.random.clone())
        };
        // The grants in force come back before any agent can start: a narrowing grant
        // that did not would leave an agent more than a person allowed.
        if let Some(pog) = slots.pog.get()
            && let Err(e) =
                crate::grants::load(&pog, &services.grants, options.clock.now_ms()).await
        {
            root.stop(Some("boot failed".into()));
            return Err(BootError::Tree(e.to_string()));
        }
        let effects = match (&options.effects, &gate_shared) {
            (Some(config), Some(shared)) if options.pog.is_some() => {
                let effects = crate::effects::Effects {
                    config: Arc::new(config.clone()),
                    shared: shared.clone(),
                    gate: slots.gate.clone(),
                    pog: slots.pog.clone(),
                    clock: options.clock.clone(),
                    runtime: tokio::runtime::Handle::current(),
                    after_effect: options.after_effect.clone(),
                };
                services.effects = Some(Arc::new(effects.clone()));
                services.confirm = Some(Arc::new(effects.clone()));
                Some(effects)
            }
            _ => None,
        };
        let warm = (options.agents.warm_sandboxes > 0).then(|| {
            runloop_agent_actor::WarmPool::new(options.agents.warm_sandboxes, options.clock.clone())
        });
        let warm_sweeper = warm
            .as_ref()
            .map(|pool| shutdown::spawn_warm_sweeper(pool.downgrade()));
        Ok(Kernel {
            warm,
            warm_sweeper,
            trimmer: trim::spawn_trimmer(),
            modules: crate::modules::Modules::default(),
            root,
            join,
            clock: options.clock.clone(),
            runs: std::sync::Mutex::new(HashMap::new()),
            slots,
            bus_store: stores.bus.clone(),
            scheduler_store: stores.scheduler.clone(),
            agents: std::sync::Mutex::new(HashMap::new()),
            usage_batch: std::sync::atomic::AtomicU64::new(0),
            ids: options.ids.clone(),
            router: Some(router),
            router_task: Some(router_task),
            agent_options: options.agents.clone(),
            services,
            cgroup_parent: format!("runloop-k{}", std::process::id()),
            starts: tokio::sync::Semaphore::new(AGENT_STARTS_MAX),
            effects,
            otel: options.otel.clone(),
        })
    }

    /// The effects journal and confirmation gate, when this kernel has them (it has a POG
    /// and was booted with [`KernelOptions::effects`]).
    pub fn effects(&self) -> Option<&crate::effects::Effects> {
        self.effects.as_ref()
    }

    /// The trust roots bundles are loaded under (`AgentOptions::trust`).
    pub fn trust(&self) -> &runloop_bundle::TrustPolicy {
        &self.agent_options.trust
    }

    /// The kernel's id generator.
    pub fn ids(&self) -> &Ids {
        &self.ids
    }

    pub fn root(&self) -> &ActorRef<SupervisorMsg> {
        &self.root
    }

    pub fn bus(&self) -> Option<BusHandle> {
        let bus = self.slots.bus.get()?;
        Some(BusHandle::new(bus, self.bus_store.clone()))
    }

    pub fn scheduler(&self) -> Option<SchedulerHandle> {
        let actor = self.slots.scheduler.get()?;
        Some(SchedulerHandle::with_store(
            actor,
            self.scheduler_store.clone(),
        ))
    }

    pub fn breakers(&self) -> Option<BreakerHandle> {
        self.slots.breaker.get().map(BreakerHandle::new)
    }

    pub fn quarantine(&self) -> Option<QuarantineHandle> {
        self.slots.quarantine.get().map(QuarantineHandle::new)
    }

    /// Records a message that could not be delivered.
    pub fn dead_letter(&self, record: DeadLetter) {
        if let Some(actor) = self.slots.dead_letters.get() {
            let _ = actor.cast(DeadLetterMsg::Record(record));
        }
    }

    /// The dead-letter records kept, oldest first, and how many older ones were dropped.
    pub async fn dead_letters(&self) -> Option<(Vec<DeadLetter>, u64)> {
        let actor = self.slots.dead_letters.get()?;
        let timeout = Some(Duration::from_millis(STATUS_TIMEOUT_MS));
        match actor.call(DeadLetterMsg::List, timeout).await {
            Ok(ractor::rpc::CallResult::Success(list)) => Some(list),
            _ => None,
        }
    }

    /// Releases a quarantined agent.
    pub async fn release(&self, agent: &AgentName) -> Result<QuarantineRecord, QuarantineError> {
        self.quarantine()
            .ok_or(QuarantineError::Down)?
            .release(agent)
            .await
    }

    /// Starts a run's supervisor (`run-<id>`, one_for_one) under `runs`. A run is
    /// temporary: when it ends or gives up it is not restarted.
    /// `opening` names what the run runs (the scheduler's fair-share key); the run id
    /// names this one run of it.
    pub async fn start_run(&self, run: RunId, opening: &OpeningId) -> Result<(), RunError> {
        let runs = self.slots.runs.get().ok_or(RunError::RunsDown { run })?;
        {
            let map = self.runs.lock().expect("runs lock");
            if map.contains_key(&run) {
                return Err(RunError::RunExists { run });
            }
            if map.len() >= RUNS_MAX {
                return Err(RunError::TooManyRuns);
            }
        }
        let slot = Slot::default();
        let spec = ChildSpec::supervisor_published(
            Restart::Temporary,
            SupervisorArgs {
                name: format!("run-{run}"),
                config: SupervisorConfig::new(Strategy::OneForOne),
                clock: self.clock.clone(),
                children: Vec::new(),
                on_give_up: None,
            },
            slot.clone(),
        );
        start_child(&runs, spec, run).await?;
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run, (opening.clone(), slot));
        Ok(())
    }

    /// Starts `spec` under run `run`'s supervisor (the run's own actor, beside its agents).
    pub(crate) async fn start_in_run(&self, run: RunId, spec: ChildSpec) -> Result<(), RunError> {
        let supervisor = self
            .runs
            .lock()
            .expect("runs lock")
            .get(&run)
            .and_then(|(_, slot)| slot.get())
            .ok_or(RunError::NoSuchRun { run })?;
        start_child(&supervisor, spec, run).await
    }

    /// The POG singleton, when it runs.
    pub fn pog(&self) -> Option<ActorRef<runloop_pog_actor::PogMsg>> {
        self.slots.pog.get()
    }

    /// The model broker singleton, when this kernel runs one.
    pub fn broker(&self) -> Option<ActorRef<runloop_broker::BrokerMsg>> {
        self.slots.broker.get()
    }

    /// The budgets of the runs in progress, seen by every agent's `model.*` host calls.
    pub fn run_budgets(&self) -> &runloop_agent_actor::RunBudgets {
        &self.services.budgets
    }

    /// The kernel's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Stops a run and everything under it.
    pub async fn stop_run(&self, run: RunId) -> Result<(), RunError> {
        let runs = self.slots.runs.get().ok_or(RunError::RunsDown { run })?;
        self.runs.lock().expect("runs lock").remove(&run);
        self.forget_run_agents(run);
        let id = format!("run-{run}");
        supervisor_call(&runs, run, |r| SupervisorMsg::StopChild(id, r))
            .await
            .map_err(|e| match e {
                RunError::Supervisor {
                    source: SupervisorError::NoSuchChild { .. },
                    ..
                } => RunError::NoSuchRun { run },
                other => other,
            })
    }

    /// Starts `worker` as agent `agent` of `run`, under its own supervisor
    /// (`agent-<name>`) with `intensity`. A quarantined agent is refused. When the agent
    /// crashes more often than `intensity` allows, its supervisor parks it in quarantine
    /// with the last error, and gives up; the run does not restart it (temporary).
    pub async fn start_agent(
        &self,
        run: RunId,
        agent: &AgentName,
        intensity: Intensity,
        worker: ChildSpec,
    ) -> Result<(), RunError> {
        self.start_agent_with(run, agent, intensity, worker, None)
            .await
    }

    /// [`Kernel::start_agent`], with `also` run after the agent is parked on give-up
    /// (given the quarantine message).
    pub async fn start_agent_with(
        &self,
        run: RunId,
        agent: &AgentName,
        intensity: Intensity,
        worker: ChildSpec,
        also: Option<Arc<dyn Fn(String) + Send + Sync>>,
    ) -> Result<(), RunError> {
        let quarantine = self.quarantine().ok_or_else(|| RunError::Quarantine {
            agent: agent.clone(),
            source: QuarantineError::Down,
        })?;
        let parked = quarantine
            .check(agent)
            .await
            .map_err(|source| RunError::Quarantine {
                agent: agent.clone(),
                source,
            })?;
        if let Some(record) = parked {
            return Err(RunError::Quarantined {
                agent: agent.clone(),
                message: record.message,
            });
        }
        let run_supervisor = self.run_supervisor(run)?;
        let spec = ChildSpec::supervisor_published(
            Restart::Temporary,
            SupervisorArgs {
                name: format!("agent-{agent}"),
                config: SupervisorConfig {
                    intensity,
                    ..SupervisorConfig::new(Strategy::OneForOne)
                },
                clock: self.clock.clone(),
                children: vec![worker],
                on_give_up: Some(park_on_give_up(quarantine, agent.clone(), also)),
            },
            Slot::default(),
        );
        start_child(&run_supervisor, spec, run).await
    }

    /// The running supervisor of `run`.
    fn run_supervisor(&self, run: RunId) -> Result<ActorRef<SupervisorMsg>, RunError> {
        self.runs
            .lock()
            .expect("runs lock")
            .get(&run)
            .and_then(|(_, slot)| slot.get())
            .ok_or(RunError::NoSuchRun { run })
    }

    /// Stops and forgets `agent-<name>` under `run`.
    pub(crate) async fn stop_agent_supervisor(
        &self,
        run: RunId,
        agent: &AgentName,
    ) -> Result<(), RunError> {
        let run_supervisor = self.run_supervisor(run)?;
        let id = format!("agent-{agent}");
        supervisor_call(&run_supervisor, run, |r| SupervisorMsg::StopChild(id, r)).await
    }

    /// OpenTelemetry export, when `observability.traces` enabled it.
    pub fn otel(&self) -> Option<&Arc<crate::otel::Otel>> {
        self.otel.as_ref()
    }

    /// The warm sandboxes, when this kernel keeps any (`runtime.warm_sandboxes` > 0).
    pub fn warm(&self) -> Option<&runloop_agent_actor::WarmPool> {
        self.warm.as_ref()
    }
}

async fn start_child(
    supervisor: &ActorRef<SupervisorMsg>,
    spec: ChildSpec,
    run: RunId,
) -> Result<(), RunError> {
    supervisor_call(supervisor, run, |r| SupervisorMsg::StartChild(spec, r)).await
}

/// One request to a run's supervisor (start or stop a child), bounded by
/// `RUN_CALL_TIMEOUT_MS`, its answer mapped to [`RunError`].
async fn supervisor_call(
    supervisor: &ActorRef<SupervisorMsg>,
    run: RunId,
    msg: impl FnOnce(ractor::RpcReplyPort<Result<(), SupervisorError>>) -> SupervisorMsg,
) -> Result<(), RunError> {
    let timeout = Some(Duration::from_millis(RUN_CALL_TIMEOUT_MS));
    match supervisor.call(msg, timeout).await {
        Ok(ractor::rpc::CallResult::Success(Ok(()))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(source))) => {
            Err(RunError::Supervisor { run, source })
        }
        Ok(ractor::rpc::CallResult::Timeout) => Err(RunError::Timeout {
            run,
            ms: RUN_CALL_TIMEOUT_MS,
        }),
        _ => Err(RunError::RunsDown { run }),
    }
}

/// The hook that parks `agent` when its supervisor gives up.
fn park_on_give_up(
    quarantine: QuarantineHandle,
    agent: AgentName,
    also: Option<Arc<dyn Fn(String) + Send + Sync>>,
) -> GiveUpHook {
    Arc::new(move |err: SupervisorError| {
        let (quarantine, agent, also) = (quarantine.clone(), agent.clone(), also.clone());
        Box::pin(async move {
            let reason = match err {
                SupervisorError::IntensityExceeded {
                    restarts,
                    period_ms,
                    reason,
                    ..
                } => QuarantineReason::CrashLoop {
                    restarts: u32::try_from(restarts).unwrap_or(u32::MAX),
                    period_ms,
                    last_error: reason,
                },
                other => QuarantineReason::CrashLoop {
                    restarts: 0,
                    period_ms: 0,
                    last_error: other.to_string(),
                },
            };
            // A quarantine that is down cannot park; the agent still is not restarted
            // (temporary), and the failure shows in the tree.
            let message = reason.to_string();
            let _ = quarantine.park(&agent, reason).await;
            if let Some(also) = also {
                also(message);
            }
        })
    })
}
