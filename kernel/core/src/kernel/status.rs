//! The kernel's status: the supervision tree with each actor's state, and a one-line
//! detail per system actor and per agent (what `rlp status` and agtop show).
//!
//! Walking the tree is one call per supervisor (every agent has its own), so a caller
//! that asks often (the control plane's status sampler) keeps a [`TreeCache`]: the last
//! walk, reused while no supervisor changed its children
//! ([`runloop_actors::supervisor::tree_generation`]). The details (agents' counters,
//! CPU and RSS, the system actors' figures) are read fresh for every status; the sampler
//! also keeps every agent's last status and builds one again only when what it shows
//! moved (`agents::status`, `StatusCache`).

use std::time::Duration;

use runloop_actors::supervisor::{
    ChildKind, ChildSnapshot, ChildState, Strategy, SupervisorSnapshot, snapshot, tree_generation,
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

/// The supervision tree as last walked (states, restarts and errors; no details), and the
/// [`tree_generation`] read before that walk. Only a complete walk is kept: one where the
/// root and every running child supervisor answered.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    walked: Option<(u64, ActorNode)>,
}

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
        self.status_cached(&mut TreeCache::default()).await
    }

    /// [`Kernel::status_sampled`], with the tree walked only when a supervisor changed
    /// since the walk `cache` holds. Every agent's status is built (a caller that asks
    /// often keeps them too: the sampler's steps are these three, with its own agent
    /// statuses kept across calls).
    pub(crate) async fn status_cached(&self, cache: &mut TreeCache) -> (ActorNode, u64) {
        let (mut root, usage_at) = self.walked(cache).await;
        self.add_agent_details(&mut root, usage_at, &mut Default::default())
            .await;
        self.add_system_details(&mut root).await;
        (root, usage_at)
    }

    /// The tree without details (walked only when a supervisor changed since `cache`'s
    /// walk), and when its agents' CPU and RSS are read ([`Kernel::usage_batch_ms`]).
    pub(crate) async fn walked(&self, cache: &mut TreeCache) -> (ActorNode, u64) {
        let usage_at = self.usage_batch_ms();
        (self.tree(cache).await, usage_at)
    }

    /// The system actors' details, and the slots this kernel leaves empty.
    pub(crate) async fn add_system_details(&self, root: &mut ActorNode) {
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
    }

    /// The tree without details: `cache`'s walk while the tree generation is the one it
    /// was taken at, else a new walk (kept in `cache` when complete).
    async fn tree(&self, cache: &mut TreeCache) -> ActorNode {
        let generation = tree_generation();
        if let Some((walked_at, tree)) = &cache.walked
            && *walked_at == generation
        {
            return tree.clone();
        }
        let Some(tree) = snapshot(&self.root, STATUS_TIMEOUT_MS).await else {
            cache.walked = None;
            return ActorNode {
                name: "root".into(),
                kind: ActorKind::Supervisor,
                state: ActorRunState::Stopped,
                restarts: 0,
                last_error: Some("the root supervisor did not answer".into()),
                info: None,
                children: Vec::new(),
            };
        };
        let root = supervisor_node(&tree, ActorRunState::Running, 0, None);
        cache.walked = complete(&tree).then(|| (generation, root.clone()));
        root
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
                    warm: self.warm().map(|w| w.stats()),
                }),
                _ => None,
            };
        }
    }
}

/// Whether every running child supervisor under `tree` answered its snapshot (one that
/// did not, e.g. busy past its timeout, shows without children, and must be asked again).
fn complete(tree: &SupervisorSnapshot) -> bool {
    tree.children.iter().all(|child| match &child.supervisor {
        Some(sub) => complete(sub),
        None => child.kind != ChildKind::Supervisor || child.state != ChildState::Running,
    })
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

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};
    use runloop_actors::supervisor::{ChildSpec, Restart, SupervisorMsg};

    use super::*;
    use crate::kernel::KernelOptions;

    /// A child of no consequence, to change the tree with.
    struct Probe;

    impl Actor for Probe {
        type Msg = ();
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// Each node's name, state and restarts, in preorder (details left out: counters and
    /// the kernel's CPU move between two statuses).
    fn shape(node: &ActorNode, out: &mut Vec<(String, ActorRunState, u32)>) {
        out.push((node.name.clone(), node.state, node.restarts));
        for child in &node.children {
            shape(child, out);
        }
    }

    fn shape_of(node: &ActorNode) -> Vec<(String, ActorRunState, u32)> {
        let mut out = Vec::new();
        shape(node, &mut out);
        out
    }

    #[tokio::test]
    async fn a_cached_tree_is_the_walked_one_and_a_change_shows_in_the_next_status() {
        let kernel = Kernel::boot(KernelOptions::default()).await.unwrap();
        let mut cache = TreeCache::default();
        let (first, _) = kernel.status_cached(&mut cache).await;
        assert!(cache.walked.is_some(), "a complete walk is kept");
        let (again, _) = kernel.status_cached(&mut cache).await;
        assert_eq!(shape_of(&again), shape_of(&first));
        assert_eq!(shape_of(&again), shape_of(&kernel.status().await));
        let system = again.children.iter().find(|c| c.name == "system");
        let bus = system.and_then(|s| s.children.iter().find(|c| c.name == "bus"));
        assert!(
            matches!(bus.and_then(|b| b.info.as_ref()), Some(ActorInfo::Bus(_))),
            "details are added to a cached tree too"
        );

        let probe = ChildSpec::worker("probe", Restart::Temporary, || (Probe, ()));
        ractor::call!(kernel.root, SupervisorMsg::StartChild, probe)
            .unwrap()
            .unwrap();
        let (added, _) = kernel.status_cached(&mut cache).await;
        assert!(added.children.iter().any(|c| c.name == "probe"));
        assert_eq!(shape_of(&added), shape_of(&kernel.status().await));

        ractor::call!(kernel.root, SupervisorMsg::StopChild, "probe".to_owned())
            .unwrap()
            .unwrap();
        let (removed, _) = kernel.status_cached(&mut cache).await;
        assert_eq!(shape_of(&removed), shape_of(&first));
        kernel.shutdown().await;
    }
}
