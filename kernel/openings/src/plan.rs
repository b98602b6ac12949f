//! The pure run plan: which nodes are ready, which run and which are skipped, what each
//! attempt's input is, and the run's outcome. The kernel's run actor drives it; a resumed
//! run rebuilds it by replaying recorded finishes in their recorded order.
//!
//! A port's value (for guards, inputs and success predicates) is the payload of the LAST
//! emission on that port; earlier emissions count only in the output hash.

use crate::expr::{self, Predicate};
use crate::hash::{self, NodeHash};
use crate::model::{Edge, Opening, Retry, Success};
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
    /// Per node, the indexes of its inbound edges in edge order.
    inbound: Vec<Vec<usize>>,
}

impl Plan {
    pub fn new(opening: Arc<Opening>) -> Plan {
        let states = vec![NodeState::Waiting; opening.nodes.len()];
        let mut inbound = vec![Vec::new(); opening.nodes.len()];
        for (i, edge) in opening.edges.iter().enumerate() {
            inbound[edge.to_node].push(i);
        }
        Plan {
            opening,
            states,
            inbound,
        }
    }

    /// A node's inbound edges, in edge order.
    fn inbound(&self, node: usize) -> impl Iterator<Item = &Edge> + '_ {
        self.inbound[node].iter().map(|&i| &self.opening.edges[i])
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
        let mut step = Step::default();
        // A skip resolves the edges leaving the skipped node, which can make an earlier
        // declared node ready: sweep until a sweep changes nothing. Each sweep that goes on
        // settled at least one node, so there are at most `nodes + 1` sweeps.
        for _sweep in 0..=self.states.len() {
            let mut changed = false;
            for node in 0..self.states.len() {
                if self.states[node] != NodeState::Waiting {
                    continue;
                }
                match self.readiness(node) {
                    Readiness::Waiting => {}
                    Readiness::Run => {
                        self.states[node] = NodeState::Running;
                        step.run.push(node);
                    }
                    Readiness::Skip(reason) => {
                        self.states[node] = NodeState::Skipped;
                        step.skipped.push((node, reason));
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        step.run.sort_unstable();
        step.skipped.sort_unstable_by_key(|(node, _)| *node);
        step
    }

    /// Whether a waiting node can be settled now, and how.
    fn readiness(&self, node: usize) -> Readiness {
        if self
            .inbound(node)
            .any(|e| !is_finished(&self.states[e.from_node]))
        {
            return Readiness::Waiting;
        }
        match self
            .inbound(node)
            .find(|e| !e.optional && self.delivered(e).is_none())
        {
            Some(edge) => Readiness::Skip(format!(
                "edge {} was skipped",
                edge_text(&self.opening, edge)
            )),
            None => Readiness::Run,
        }
    }

    /// The value an edge delivers: its source port's value when the source succeeded,
    /// emitted that port and the guard (if any) holds; `None` when the edge is skipped or
    /// not resolved yet.
    fn delivered(&self, edge: &Edge) -> Option<&rmpv::Value> {
        let payload = self.port_value(edge.from_node, &edge.from.port)?;
        match &edge.guard {
            None => Some(payload),
            Some(guard) => expr::lookup(payload, &edge.from.fields)
                .filter(|v| expr::compare(v, guard.op, &guard.literal))
                .map(|_| payload),
        }
    }

    /// The payload of the last emission on `port` of a node that succeeded.
    pub fn port_value(&self, node: usize, port: &str) -> Option<&rmpv::Value> {
        match &self.states[node] {
            NodeState::Succeeded { outputs, .. } => outputs
                .iter()
                .rev()
                .find(|(p, _)| p == port)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Records how a running node ended. Panics if the node is not `Running`.
    pub fn finish(&mut self, node: usize, end: NodeEnd) {
        assert_eq!(
            self.states[node],
            NodeState::Running,
            "finish of node {node}, which is not running"
        );
        self.states[node] = match end {
            NodeEnd::Succeeded { outputs } => {
                let output_hash = hash::output_hash(&outputs);
                NodeState::Succeeded {
                    outputs,
                    output_hash,
                }
            }
            NodeEnd::Failed { reason } => NodeState::Failed { reason },
            NodeEnd::Cancelled => NodeState::Cancelled,
        };
    }

    /// Marks every `Waiting` node `Cancelled` (run failed, timed out or was cancelled).
    pub fn cancel_waiting(&mut self) -> Vec<usize> {
        let mut cancelled = Vec::new();
        for (node, state) in self.states.iter_mut().enumerate() {
            if *state == NodeState::Waiting {
                *state = NodeState::Cancelled;
                cancelled.push(node);
            }
        }
        cancelled
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
        let spec = &self.opening.nodes[node];
        // Ports in the order of their first delivered edge; each port's values in edge order.
        let mut ports: Vec<(&str, Vec<rmpv::Value>)> = Vec::new();
        for edge in self.inbound(node) {
            let Some(value) = self.delivered(edge) else {
                continue;
            };
            match ports.iter_mut().find(|(p, _)| *p == edge.to_port) {
                Some((_, values)) => values.push(value.clone()),
                None => ports.push((&edge.to_port, vec![value.clone()])),
            }
        }
        let inputs = ports
            .into_iter()
            .map(|(port, mut values)| {
                let value = if values.len() == 1 {
                    values.remove(0)
                } else {
                    rmpv::Value::Array(values)
                };
                (rmpv::Value::from(port), value)
            })
            .collect();
        let goals = self
            .opening
            .goals
            .iter()
            .map(|g| g.render(params))
            .collect();
        rmpv::Value::Map(vec![
            ("node".into(), spec.id.as_str().into()),
            ("attempt".into(), attempt.into()),
            ("with".into(), spec.with.render(params)),
            ("inputs".into(), rmpv::Value::Map(inputs)),
            ("goals".into(), rmpv::Value::Array(goals)),
        ])
    }

    /// The outcome once [`Plan::is_done`]: failed if a node failed (the first in
    /// declaration order names the reason), else the success predicate. A `Cancelled` node
    /// counts as one that did not run: the kernel reports such a run as cancelled or timed
    /// out whatever this says.
    pub fn outcome(&self) -> Outcome {
        assert!(self.is_done(), "outcome of a run that is not done");
        let failed = self
            .states
            .iter()
            .enumerate()
            .find_map(|(node, s)| match s {
                NodeState::Failed { reason } => Some((node, reason)),
                _ => None,
            });
        if let Some((node, reason)) = failed {
            let id = &self.opening.nodes[node].id;
            return Outcome::Failed {
                reason: format!("node {id} failed: {reason}"),
            };
        }
        let unmet = match &self.opening.success {
            None => None,
            Some(Success::AllOf(all)) => all.iter().find(|p| !self.holds(p)),
            Some(Success::AnyOf(any)) => (!any.iter().any(|p| self.holds(p)))
                .then(|| any.first())
                .flatten(),
        };
        match (unmet, &self.opening.success) {
            (None, _) => Outcome::Succeeded,
            (Some(_), Some(Success::AnyOf(any))) => Outcome::Failed {
                reason: format!(
                    "success predicate did not hold: any_of [{}]",
                    any.iter()
                        .map(|p| predicate_text(&self.opening, p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            (Some(p), _) => Outcome::Failed {
                reason: format!(
                    "success predicate did not hold: {}",
                    predicate_text(&self.opening, p)
                ),
            },
        }
    }

    /// Whether a success predicate holds: its node succeeded and emitted the port, and
    /// the field path exists (and, for a comparison, compares true).
    pub fn holds(&self, predicate: &Predicate) -> bool {
        let (path, compare) = match predicate {
            Predicate::Compare { path, op, literal } => (path, Some((*op, literal))),
            Predicate::Exists(path) => (path, None),
        };
        let Some(value) = self
            .port_value(path.node, &path.port)
            .and_then(|payload| expr::lookup(payload, &path.fields))
        else {
            return false;
        };
        compare.is_none_or(|(op, literal)| expr::compare(value, op, literal))
    }

    /// The run's result hash (spec: Outputs and hashes). Panics unless [`Plan::is_done`].
    pub fn result_hash(&self) -> [u8; 32] {
        assert!(self.is_done(), "result hash of a run that is not done");
        let nodes: Vec<(&str, NodeHash<'_>)> = self
            .opening
            .nodes
            .iter()
            .zip(&self.states)
            .map(|(node, state)| {
                let hash = match state {
                    NodeState::Succeeded { output_hash, .. } => NodeHash::Output(output_hash),
                    NodeState::Failed { .. } => NodeHash::Status("failed"),
                    NodeState::Skipped => NodeHash::Status("skipped"),
                    NodeState::Cancelled => NodeHash::Status("cancelled"),
                    NodeState::Waiting | NodeState::Running => unreachable!("the run is done"),
                };
                (node.id.as_str(), hash)
            })
            .collect();
        hash::result_hash(&nodes)
    }
}

/// What [`Plan::step`] can do with a waiting node.
enum Readiness {
    Waiting,
    Run,
    Skip(String),
}

fn is_finished(state: &NodeState) -> bool {
    !matches!(state, NodeState::Waiting | NodeState::Running)
}

/// An edge as text: `from[ op literal] → to`, e.g. `review.ok == true → send.go`.
pub fn edge_text(opening: &Opening, edge: &Edge) -> String {
    let from = expr::path_text(opening.nodes[edge.from_node].id.as_str(), &edge.from);
    let guard = edge.guard.as_ref().map_or_else(String::new, |g| {
        format!(" {} {}", g.op, expr::literal_text(&g.literal))
    });
    let to = &opening.nodes[edge.to_node].id;
    format!("{from}{guard} → {to}.{}", edge.to_port)
}

/// A predicate as text, normalised: `node.port[.field…] op literal` (one space around the
/// operator, the literal as compact JSON) or `exists(node.port[.field…])`.
pub fn predicate_text(opening: &Opening, predicate: &Predicate) -> String {
    match predicate {
        Predicate::Compare { path, op, literal } => format!(
            "{} {op} {}",
            expr::path_text(opening.nodes[path.node].id.as_str(), path),
            expr::literal_text(literal)
        ),
        Predicate::Exists(path) => format!(
            "exists({})",
            expr::path_text(opening.nodes[path.node].id.as_str(), path)
        ),
    }
}

/// Caps the exponent so its conversion to `i32` is total (attempts are at most
/// `ATTEMPTS_MAX` anyway, and `max_ms` bounds the wait long before this).
const BACKOFF_FACTOR_EXPONENT_MAX: u32 = 1024;

/// The wait before attempt `attempt` (≥ 2) of a node:
/// `min(max_ms, initial_ms · multiplier^(attempt−2))` scaled by `1 − jitter + 2·jitter·unit`,
/// where `unit` is a uniform draw in `[0, 1)` from the run's seeded RNG; rounded to the
/// nearest millisecond.
pub fn backoff_ms(retry: &Retry, attempt: u32, unit: f64) -> u64 {
    assert!(
        attempt >= 2,
        "backoff before attempt {attempt}; the first has none"
    );
    assert!((0.0..1.0).contains(&unit), "unit draw {unit} not in [0, 1)");
    let exponent = i32::try_from((attempt - 2).min(BACKOFF_FACTOR_EXPONENT_MAX))
        .expect("exponent bounded by BACKOFF_FACTOR_EXPONENT_MAX");
    // u64 → f64 is exact for every wait validation allows (at most BACKOFF_MS_MAX).
    let base = (retry.initial_ms as f64 * retry.multiplier.powi(exponent)).min(retry.max_ms as f64);
    let factor = 1.0 - retry.jitter + 2.0 * retry.jitter * unit;
    // Non-negative and at most 2·max_ms, so the cast neither wraps nor saturates.
    (base * factor).round() as u64
}
