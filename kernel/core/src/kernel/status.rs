//! The kernel's status: the supervision tree with each actor's state, and a one-line
//! detail per system actor and per agent (what `rlp status` and agtop show).

use std::time::Duration;

use runloop_actors::supervisor::{
    ChildKind, ChildSnapshot, ChildState, Strategy, SupervisorSnapshot, snapshot,
};
use runloop_proto::payloads::{
    ActorInfo, ActorKind, ActorNode, ActorRunState, BusInfo, SchedulerInfo, SupervisorStrategy,
};

use super::{Kernel, STATUS_TIMEOUT_MS};
use crate::metrics::{MetricsMsg, ProcessSample};

/// How long an agent's CPU and RSS reading (from `/proc/<sandbox pid>/stat`) serves every
/// status asked for: CPU % over a shorter window is mostly the 10 ms clock tick's noise,
/// and a thousand agents read every 250 ms was half of a status stream's cost.
pub const USAGE_SAMPLE_MS: u64 = 1_000;

impl Kernel {
    /// Samples the kernel process.
    pub async fn sample(&self) -> Option<ProcessSample> {
        let metrics = self.slots.metrics.get()?;
        let timeout = Some(Duration::from_millis(STATUS_TIMEOUT_MS));
        match metrics.call(MetricsMsg::Sample, timeout).await {
            Ok(ractor::rpc::CallResult::Success(sample)) => sample,
            _ => None,
        }
    }

    /// When the agents' CPU and RSS readings are taken, by the kernel's clock: the batch
    /// time of the last [`USAGE_SAMPLE_MS`] period, or now once that is as old (or the clock
    /// went back). Every agent's reading is reused within one batch and read again in the
    /// next, so all readings of a status carry this one time, and a CPU % is the rate
    /// between two batches (see `StatusSnapshot::usage_at_ms`).
    pub(crate) fn usage_batch_ms(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let now = self.clock.now_ms();
        let batch = self.usage_batch.load(Ordering::Acquire);
        if batch != 0 && batch <= now && now - batch < USAGE_SAMPLE_MS {
            return batch;
        }
        // Two statuses at once start one batch between them.
        match self
            .usage_batch
            .compare_exchange(batch, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => now,
            Err(theirs) => theirs,
        }
    }

    /// The tree with each actor's state and a one-line detail per system actor.
    pub async fn status(&self) -> ActorNode {
        self.status_sampled().await.0
    }

    /// [`Kernel::status`], and when its agents' CPU and RSS were read
    /// ([`Kernel::usage_batch_ms`]).
    pub async fn status_sampled(&self) -> (ActorNode, u64) {
        let usage_at = self.usage_batch_ms();
        let tree = snapshot(&self.root, STATUS_TIMEOUT_MS).await;
        let mut root = match tree {
            Some(tree) => supervisor_node(&tree, ActorRunState::Running, 0, None),
            None => ActorNode {
                name: "root".into(),
                kind: ActorKind::Supervisor,
                state: ActorRunState::Stopped,
                restarts: 0,
                last_error: Some("the root supervisor did not answer".into()),
                info: None,
                children: Vec::new(),
            },
        };
        if let Some(runs) = root.children.iter_mut().find(|c| c.name == "runs") {
            self.add_agent_details(runs, usage_at).await;
        }
        if let Some(system) = root.children.iter_mut().find(|c| c.name == "system") {
            self.add_details(system).await;
            for slot in ["pog", "broker"] {
                if system.children.iter().any(|c| c.name == slot) {
                    continue;
                }
                system.children.push(ActorNode {
                    name: slot.into(),
                    kind: ActorKind::Slot,
                    state: ActorRunState::Empty,
                    restarts: 0,
                    last_error: None,
                    info: Some(ActorInfo::EmptySlot),
                    children: Vec::new(),
                });
            }
        }
        (root, usage_at)
    }

    /// Each `agent-<name>` node gets the agent's status (state, pid, breaker, quarantine,
    /// CPU, RSS, messages, errors).
    async fn add_agent_details(&self, runs: &mut ActorNode, usage_at: u64) {
        let mut agents = self.agents_by_run(usage_at).await;
        for run in &mut runs.children {
            let Some(mut of_run) = agents.remove(run.name.as_str()) else {
                continue;
            };
            for node in &mut run.children {
                let Some(name) = node.name.strip_prefix("agent-") else {
                    continue;
                };
                if let Some(a) = of_run.remove(name) {
                    node.info = Some(ActorInfo::Agent(a));
                }
            }
        }
    }

    async fn add_details(&self, system: &mut ActorNode) {
        for node in &mut system.children {
            node.info = match node.name.as_str() {
                "bus" => match self.bus() {
                    Some(bus) => bus.stats().await.map(|s| {
                        ActorInfo::Bus(BusInfo {
                            topics: s.topics as u64,
                            subscribers: s.subscribers as u64,
                            published: s.published,
                            delivered: s.delivered,
                            dropped: s.dropped.total(),
                            rejected: s.rejected,
                        })
                    }),
                    None => None,
                },
                "scheduler" => match self.scheduler() {
                    Some(s) => s.snapshot().await.map(|s| {
                        ActorInfo::Scheduler(SchedulerInfo {
                            running: s.running as u64,
                            concurrency_max: s.concurrency_max as u64,
                            queued: s.queued as u64,
                            openings: s.openings.len() as u64,
                        })
                    }),
                    None => None,
                },
                "quarantine" => match self.quarantine() {
                    Some(q) => q.list().await.ok().map(|l| ActorInfo::Quarantine {
                        parked: l.len() as u64,
                    }),
                    None => None,
                },
                "dead_letters" => {
                    self.dead_letters()
                        .await
                        .map(|(records, dropped)| ActorInfo::DeadLetters {
                            records: records.len() as u64,
                            dropped,
                        })
                }
                "metrics" => self.sample().await.map(|s| ActorInfo::Kernel {
                    cpu_ms: s.cpu_ms,
                    rss_kb: s.rss_bytes / 1024,
                }),
                _ => None,
            };
        }
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
        info: Some(ActorInfo::Supervisor {
            strategy: strategy_of(tree.strategy),
        }),
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
            info: None,
            children: Vec::new(),
        },
    }
}

fn strategy_of(strategy: Strategy) -> SupervisorStrategy {
    match strategy {
        Strategy::OneForOne => SupervisorStrategy::OneForOne,
        Strategy::OneForAll => SupervisorStrategy::OneForAll,
        Strategy::RestForOne => SupervisorStrategy::RestForOne,
    }
}
