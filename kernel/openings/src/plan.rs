//! The pure run plan: which nodes are ready, which run and which are skipped, what each
//! attempt's input is, and the run's outcome. The kernel's run actor drives it; a resumed
//! run rebuilds it by replaying recorded finishes in their recorded order.

use crate::model::{Opening, Retry};
use crate::params::BoundParams;
use std::sync::Arc;

/// A node's state in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// Waiting for inbound edges.
    Waiting,
    /// Handed out by [`Plan::step`] to run; not finished yet.
    Running,
    Succeeded {
        outputs: Vec<(String, rmpv::Value)>,
        output_hash: [u8; 32],
    },
    Failed {
        reason: String,
    },
    Skipped,
    Cancelled,
}

/// How a node ended, as the run actor reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEnd {
    Succeeded { outputs: Vec<(String, rmpv::Value)> },
    Failed { reason: String },
    Cancelled,
}

/// What became of waiting nodes after a finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Node indexes to start now, in declaration order (the caller applies
    /// `max_parallel`; these stay `Running` in the plan until finished).
    pub run: Vec<usize>,
    /// Node indexes skipped (declaration order), with the reason: which edge skipped.
    pub skipped: Vec<(usize, String)>,
}

/// The run's outcome once every node is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A node failed, or the success predicate did not hold (the reason names it).
    Failed {
        reason: String,
    },
}

/// The plan of one run.
#[derive(Debug)]
pub struct Plan {
    opening: Arc<Opening>,
    states: Vec<NodeState>,
}

impl Plan {
    pub fn new(opening: Arc<Opening>) -> Plan {
        let states = vec![NodeState::Waiting; opening.nodes.len()];
        Plan { opening, states }
    }

    pub fn opening(&self) -> &Arc<Opening> {
        &self.opening
    }

    pub fn state(&self, node: usize) -> &NodeState {
        &self.states[node]
    }

    /// Marks ready nodes: those whose inbound edges are all resolved either run (returned
    /// in `run`, now `Running`) or are skipped (and so, in turn, their outbound edges).
    /// Call once at start and after each [`Plan::finish`].
    pub fn step(&mut self) -> Step {
        todo!("helper: step")
    }

    /// Records how a running node ended. Panics if the node is not `Running`.
    pub fn finish(&mut self, node: usize, end: NodeEnd) {
        let _ = (node, end);
        todo!("helper: finish")
    }

    /// Marks every `Waiting` node `Cancelled` (run failed, timed out or was cancelled).
    pub fn cancel_waiting(&mut self) -> Vec<usize> {
        todo!("helper: cancel_waiting")
    }

    /// No node is `Waiting` or `Running`.
    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|s| !matches!(s, NodeState::Waiting | NodeState::Running))
    }

    /// The invoke payload of an attempt of `node` (agent ABI: `docs/agent-abi.md`, "node
    /// invokes"): a map `{node, attempt, with, inputs, goals}` where `with` is the rendered
    /// `with`, `inputs` maps each input port that received something to its value (an
    /// array, in edge order, when more than one delivered edge feeds it) and `goals` the
    /// rendered goals.
    pub fn input(&self, node: usize, attempt: u32, params: &BoundParams) -> rmpv::Value {
        let _ = (node, attempt, params);
        todo!("helper: input")
    }

    /// The outcome once [`Plan::is_done`]: failed if a node failed, else the success
    /// predicate.
    pub fn outcome(&self) -> Outcome {
        todo!("helper: outcome")
    }

    /// The run's result hash (spec: Outputs and hashes).
    pub fn result_hash(&self) -> [u8; 32] {
        todo!("helper: result_hash")
    }
}

/// The wait before attempt `attempt` (≥ 2) of a node:
/// `min(max_ms, initial_ms · multiplier^(attempt−2))` scaled by `1 − jitter + 2·jitter·unit`,
/// where `unit` is a uniform draw in `[0, 1)` from the run's seeded RNG.
pub fn backoff_ms(retry: &Retry, attempt: u32, unit: f64) -> u64 {
    let _ = (retry, attempt, unit);
    todo!("helper: backoff_ms")
}
