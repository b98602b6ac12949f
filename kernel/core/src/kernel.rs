//! Boot and wiring: the supervisor tree, the same in `runloopd` and in embedded mode.
//!
//! ```text
//! root (one_for_one)
//! ├── system (one_for_one): bus, scheduler, breaker, quarantine, metrics,
//! │                         [pog slot], [broker slot]
//! └── runs (one_for_one, temporary children): one supervisor per run → agent actors
//! ```
//!
//! The control plane (the socket server) is not in the tree: it belongs to `runloopd`,
//! which owns the listening socket and stops accepting before the tree shuts down.
//! POG and broker are provided by their own crates; until they are wired in, `rlp status`
//! shows their slots as `empty`.
//!
//! Lifecycle: [`Kernel::boot`] starts the tree and returns once every system actor is
//! running; [`Kernel::shutdown`] stops the root, which stops runs first (they were
//! started last) and then the system actors, each waited for.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use runloop_actors::breaker::{BreakerActor, BreakerArgs, BreakerConfig, BreakerHandle};
use runloop_actors::bus::{BUS_INGRESS_FRAMES_MAX, Bus, BusArgs, BusConfig, BusHandle};
use runloop_actors::names::AgentName;
use runloop_actors::quarantine::{Quarantine, QuarantineError, QuarantineHandle, QuarantineRecord};
use runloop_actors::scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};
use runloop_actors::supervisor::{
    ChildKind, ChildSnapshot, ChildSpec, ChildState, Restart, Slot, Strategy, SupervisorArgs,
    SupervisorConfig, SupervisorMsg, SupervisorSnapshot, snapshot, spawn_root,
};
use runloop_proto::payloads::{ActorKind, ActorNode, ActorRunState};
use runloop_proto::{Clock, SystemClock};
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, MetricsMsg, ProcessSample};

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
        }
    }
}

#[derive(Default, Clone)]
struct Slots {
    bus: Slot<runloop_actors::bus::BusMsg>,
    scheduler: Slot<runloop_actors::scheduler::SchedulerMsg>,
    breaker: Slot<runloop_actors::breaker::BreakerMsg>,
    quarantine: Slot<runloop_actors::quarantine::QuarantineMsg>,
    metrics: Slot<MetricsMsg>,
}

/// Why the kernel did not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("boot: start the supervisor tree: {0}")]
    Tree(String),
}

/// A running kernel.
#[derive(Debug)]
pub struct Kernel {
    root: ActorRef<SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
    slots: Slots,
    bus_permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").finish_non_exhaustive()
    }
}

fn system_children(options: &KernelOptions, slots: &Slots) -> Vec<ChildSpec> {
    let (clock, bus, breaker, scheduler) = (
        options.clock.clone(),
        options.bus,
        options.breaker,
        options.scheduler,
    );
    let bus_clock = clock.clone();
    let breaker_clock = clock.clone();
    vec![
        ChildSpec::worker_published("bus", Restart::Permanent, slots.bus.clone(), move || {
            let args = BusArgs {
                config: bus,
                clock: bus_clock.clone(),
            };
            (Bus, args)
        }),
        ChildSpec::worker_published(
            "scheduler",
            Restart::Permanent,
            slots.scheduler.clone(),
            move || (Scheduler, scheduler),
        ),
        ChildSpec::worker_published(
            "breaker",
            Restart::Permanent,
            slots.breaker.clone(),
            move || {
                let args = BreakerArgs {
                    config: breaker,
                    clock: breaker_clock.clone(),
                };
                (BreakerActor, args)
            },
        ),
        ChildSpec::worker_published(
            "quarantine",
            Restart::Permanent,
            slots.quarantine.clone(),
            move || (Quarantine, clock.clone()),
        ),
        ChildSpec::worker_published("metrics", Restart::Permanent, slots.metrics.clone(), || {
            (Metrics, ())
        }),
    ]
}

impl Kernel {
    /// Starts the tree; returns once every system actor is running.
    pub async fn boot(options: KernelOptions) -> Result<Kernel, BootError> {
        let slots = Slots::default();
        let system = ChildSpec::supervisor(
            "system",
            Restart::Permanent,
            options.system,
            options.clock.clone(),
            system_children(&options, &slots),
        );
        let runs = ChildSpec::supervisor(
            "runs",
            Restart::Permanent,
            SupervisorConfig::new(Strategy::OneForOne),
            options.clock.clone(),
            Vec::new(),
        );
        let (root, join) = spawn_root(SupervisorArgs {
            name: "root".into(),
            config: options.root,
            clock: options.clock.clone(),
            children: vec![system, runs],
        })
        .await
        .map_err(|e| BootError::Tree(e.to_string()))?;
        Ok(Kernel {
            root,
            join,
            slots,
            bus_permits: Arc::new(Semaphore::new(BUS_INGRESS_FRAMES_MAX)),
        })
    }

    pub fn root(&self) -> &ActorRef<SupervisorMsg> {
        &self.root
    }

    pub fn bus(&self) -> Option<BusHandle> {
        let bus = self.slots.bus.get()?;
        Some(BusHandle::with_permits(bus, self.bus_permits.clone()))
    }

    pub fn scheduler(&self) -> Option<SchedulerHandle> {
        self.slots.scheduler.get().map(SchedulerHandle::new)
    }

    pub fn breakers(&self) -> Option<BreakerHandle> {
        self.slots.breaker.get().map(BreakerHandle::new)
    }

    pub fn quarantine(&self) -> Option<QuarantineHandle> {
        self.slots.quarantine.get().map(QuarantineHandle::new)
    }

    /// Releases a quarantined agent.
    pub async fn release(&self, agent: &AgentName) -> Result<QuarantineRecord, QuarantineError> {
        self.quarantine()
            .ok_or(QuarantineError::Down)?
            .release(agent)
            .await
    }

    /// Samples the kernel process.
    pub async fn sample(&self) -> Option<ProcessSample> {
        let metrics = self.slots.metrics.get()?;
        let timeout = Some(Duration::from_millis(STATUS_TIMEOUT_MS));
        match metrics.call(MetricsMsg::Sample, timeout).await {
            Ok(ractor::rpc::CallResult::Success(sample)) => sample,
            _ => None,
        }
    }

    /// The tree with each actor's state and a one-line detail per system actor.
    pub async fn status(&self) -> ActorNode {
        let tree = snapshot(&self.root, STATUS_TIMEOUT_MS).await;
        let mut root = match tree {
            Some(tree) => supervisor_node(&tree, ActorRunState::Running, 0, None),
            None => ActorNode {
                name: "root".into(),
                kind: ActorKind::Supervisor,
                state: ActorRunState::Stopped,
                restarts: 0,
                last_error: Some("the root supervisor did not answer".into()),
                detail: None,
                children: Vec::new(),
            },
        };
        if let Some(system) = root.children.iter_mut().find(|c| c.name == "system") {
            self.add_details(system).await;
            for slot in ["pog", "broker"] {
                system.children.push(ActorNode {
                    name: slot.into(),
                    kind: ActorKind::Slot,
                    state: ActorRunState::Empty,
                    restarts: 0,
                    last_error: None,
                    detail: Some("provided by its own crate; not wired in yet".into()),
                    children: Vec::new(),
                });
            }
        }
        root
    }

    async fn add_details(&self, system: &mut ActorNode) {
        for node in &mut system.children {
            node.detail = match node.name.as_str() {
                "bus" => match self.bus() {
                    Some(bus) => bus.stats().await.map(|s| {
                        format!(
                            "topics {}, subscribers {}, published {}, delivered {}, dropped {}, rejected {}",
                            s.topics,
                            s.subscribers,
                            s.published,
                            s.delivered,
                            s.dropped.total(),
                            s.rejected
                        )
                    }),
                    None => None,
                },
                "scheduler" => match self.scheduler() {
                    Some(s) => s.snapshot().await.map(|s| {
                        format!(
                            "running {}/{}, queued {}, openings {}",
                            s.running,
                            s.concurrency_max,
                            s.queued,
                            s.openings.len()
                        )
                    }),
                    None => None,
                },
                "quarantine" => match self.quarantine() {
                    Some(q) => q.list().await.ok().map(|l| format!("parked {}", l.len())),
                    None => None,
                },
                "metrics" => self.sample().await.map(|s| {
                    format!(
                        "kernel cpu {} ms, rss {} KiB",
                        s.cpu_ms,
                        s.rss_bytes / 1024
                    )
                }),
                _ => None,
            };
        }
    }

    /// Stops the whole tree and waits for it.
    pub async fn shutdown(self) {
        let timeout = Duration::from_millis(SHUTDOWN_TIMEOUT_MS);
        self.root.stop(Some("kernel shutdown".into()));
        let _ = tokio::time::timeout(timeout, self.join).await;
    }
}

fn state_of(state: ChildState) -> ActorRunState {
    match state {
        ChildState::Running => ActorRunState::Running,
        ChildState::Restarting => ActorRunState::Restarting,
        ChildState::Stopped => ActorRunState::Stopped,
    }
}

fn supervisor_node(
    tree: &SupervisorSnapshot,
    state: ActorRunState,
    restarts: u32,
    last_error: Option<String>,
) -> ActorNode {
    ActorNode {
        name: tree.name.clone(),
        kind: ActorKind::Supervisor,
        state,
        restarts,
        last_error,
        detail: Some(format!("strategy {}", strategy_name(tree.strategy))),
        children: tree.children.iter().map(child_node).collect(),
    }
}

fn child_node(child: &ChildSnapshot) -> ActorNode {
    let state = state_of(child.state);
    match (&child.supervisor, child.kind) {
        (Some(tree), _) => {
            let mut node = supervisor_node(tree, state, child.restarts, child.last_error.clone());
            node.name = child.id.clone();
            node
        }
        (None, kind) => ActorNode {
            name: child.id.clone(),
            kind: match kind {
                ChildKind::Supervisor => ActorKind::Supervisor,
                ChildKind::Worker => ActorKind::Worker,
            },
            state,
            restarts: child.restarts,
            last_error: child.last_error.clone(),
            detail: None,
            children: Vec::new(),
        },
    }
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::OneForOne => "one_for_one",
        Strategy::OneForAll => "one_for_all",
        Strategy::RestForOne => "rest_for_one",
    }
}
