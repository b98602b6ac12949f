//! The budgets of the runs in progress, as the `model.*` host calls see them.
//!
//! The openings engine registers a run's `policy.budget_tokens`/`budget_usd_micros` and
//! each node's `budget_tokens` when the run starts, and forgets them when it ends. A model
//! call made under a registered run's trace id, by one of its nodes, carries those limits to
//! the broker ([`runloop_broker::RunBudget`]), which reserves before the call and refuses
//! one that would exceed them, naming the budget.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use runloop_broker::RunBudget;
use runloop_broker::config::Limit;
use runloop_proto::TraceId;

/// Most runs with registered budgets at once (the live runs of one kernel).
pub const RUN_BUDGETS_MAX: usize = 65_536;

/// One run's limits: the run's own and its nodes' (by node id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    pub run: Limit,
    pub nodes: HashMap<String, Limit>,
}

impl RunLimits {
    /// Whether any limit is set at all (runs without budgets are not registered).
    pub fn is_limited(&self) -> bool {
        let set = |l: &Limit| l.tokens.is_some() || l.usd_micros.is_some();
        set(&self.run) || self.nodes.values().any(set)
    }
}

/// Too many runs registered.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many runs with budgets registered ({max})")]
pub struct TooManyRuns {
    pub max: usize,
}

/// The registry, shared by the kernel (writer) and every agent's host-call handler.
#[derive(Clone, Debug, Default)]
pub struct RunBudgets(Arc<RwLock<HashMap<TraceId, RunLimits>>>);

impl RunBudgets {
    /// Registers (or replaces) a run's limits.
    pub fn register(&self, trace: TraceId, limits: RunLimits) -> Result<(), TooManyRuns> {
        let mut map = self.0.write().expect("run budgets lock");
        if !map.contains_key(&trace) && map.len() >= RUN_BUDGETS_MAX {
            return Err(TooManyRuns {
                max: RUN_BUDGETS_MAX,
            });
        }
        map.insert(trace, limits);
        Ok(())
    }

    /// Forgets a run's limits.
    pub fn remove(&self, trace: TraceId) {
        self.0.write().expect("run budgets lock").remove(&trace);
    }

    /// The budget a model call by `node` under `trace` is held to, if its run has one.
    pub fn for_call(&self, trace: TraceId, node: &str) -> Option<RunBudget> {
        let map = self.0.read().expect("run budgets lock");
        let limits = map.get(&trace)?;
        Some(RunBudget {
            run: trace.to_string(),
            node: node.to_owned(),
            run_limit: limits.run,
            node_limit: limits.nodes.get(node).copied().unwrap_or_default(),
        })
    }

    /// How many runs are registered.
    pub fn len(&self) -> usize {
        self.0.read().expect("run budgets lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u64) -> Limit {
        Limit {
            tokens: Some(n),
            usd_micros: None,
        }
    }

    #[test]
    fn a_call_sees_its_runs_limits_and_its_nodes_share() {
        let budgets = RunBudgets::default();
        let trace = TraceId(7);
        let limits = RunLimits {
            run: tokens(100),
            nodes: HashMap::from([("writer".to_owned(), tokens(40))]),
        };
        assert!(limits.is_limited());
        budgets.register(trace, limits).unwrap();
        let writer = budgets.for_call(trace, "writer").unwrap();
        assert_eq!(writer.run, trace.to_string());
        assert_eq!(writer.run_limit, tokens(100));
        assert_eq!(writer.node_limit, tokens(40));
        assert_eq!(
            budgets.for_call(trace, "critic").unwrap().node_limit,
            Limit::default()
        );
        assert_eq!(budgets.for_call(TraceId(8), "writer"), None);
        budgets.remove(trace);
        assert!(budgets.is_empty());
        assert!(!RunLimits::default().is_limited());
    }
}
