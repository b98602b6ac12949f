//! Budgets per request, node, opening and UTC day, in tokens and micro-USD: reserve, then reconcile.
//!
//! A call reserves its estimate in every scope it belongs to before any network traffic; the
//! reservation is replaced by the reported usage afterwards, or released when the call fails.

use crate::config::{BudgetLimits, Limit};
use crate::types::CallContext;
use serde::Serialize;
use std::collections::HashMap;

/// Most openings (and, separately, nodes) tracked at once; `close_opening` frees them.
pub const BUDGET_KEYS_MAX: usize = 16_384;
/// Most reservations outstanding at once.
pub const RESERVATIONS_MAX: usize = 4096;
const DAY_MS: u64 = 86_400_000;

/// Tokens and micro-USD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spend {
    pub tokens: u64,
    pub usd_micros: u64,
}

impl Spend {
    fn add(&mut self, other: Spend) {
        self.tokens = self.tokens.saturating_add(other.tokens);
        self.usd_micros = self.usd_micros.saturating_add(other.usd_micros);
    }
    fn sub(&mut self, other: Spend) {
        self.tokens = self.tokens.saturating_sub(other.tokens);
        self.usd_micros = self.usd_micros.saturating_sub(other.usd_micros);
    }
}

/// Which budget refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Request,
    Node,
    Opening,
    Day,
    /// A run's `policy.budget_*`.
    Run,
    /// A node's `budget_tokens` within its run.
    RunNode,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Request => "request",
            Scope::Node => "node",
            Scope::Opening => "opening",
            Scope::Day => "day",
            Scope::Run => "run",
            Scope::RunNode => "node",
        })
    }
}

/// Why a reservation was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("{scope} budget: needs {needed} {unit}, {used} of {limit} already used or reserved")]
    Exceeded {
        scope: Scope,
        unit: &'static str,
        needed: u64,
        used: u64,
        limit: u64,
    },
    #[error("too many budget scopes tracked ({max}); close finished openings")]
    TooManyKeys { max: usize },
    #[error("too many reservations outstanding ({max})")]
    TooManyReservations { max: usize },
}

/// Handle to an outstanding reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservationId(u64);

#[derive(Debug)]
struct Reservation {
    node: Option<(String, String)>,
    opening: Option<String>,
    run: Option<String>,
    run_node: Option<(String, String)>,
    day: u64,
    amount: Spend,
}

/// Budget state; the broker keeps one behind its lock.
#[derive(Debug)]
pub struct Budgets {
    limits: BudgetLimits,
    nodes: HashMap<(String, String), Spend>,
    openings: HashMap<String, Spend>,
    runs: HashMap<String, Spend>,
    run_nodes: HashMap<(String, String), Spend>,
    day: u64,
    day_spend: Spend,
    reservations: HashMap<ReservationId, Reservation>,
    next_id: u64,
}

fn check(scope: Scope, limit: Limit, used: Spend, need: Spend) -> Result<(), BudgetError> {
    let pairs = [
        ("tokens", limit.tokens, used.tokens, need.tokens),
        (
            "usd_micros",
            limit.usd_micros,
            used.usd_micros,
            need.usd_micros,
        ),
    ];
    for (unit, limit, used, needed) in pairs {
        if let Some(limit) = limit
            && used.saturating_add(needed) > limit
        {
            return Err(BudgetError::Exceeded {
                scope,
                unit,
                needed,
                used,
                limit,
            });
        }
    }
    Ok(())
}

impl Budgets {
    pub fn new(limits: BudgetLimits) -> Self {
        Self {
            limits,
            nodes: HashMap::new(),
            openings: HashMap::new(),
            runs: HashMap::new(),
            run_nodes: HashMap::new(),
            day: 0,
            day_spend: Spend::default(),
            reservations: HashMap::new(),
            next_id: 0,
        }
    }

    fn roll_day(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.day = day;
            self.day_spend = Spend::default();
        }
    }

    /// Reserves `need` in every scope of `ctx`, or refuses naming the first scope that cannot fit.
    pub fn reserve(
        &mut self,
        ctx: &CallContext,
        need: Spend,
        now_ms: u64,
    ) -> Result<ReservationId, BudgetError> {
        self.roll_day(now_ms);
        if self.reservations.len() >= RESERVATIONS_MAX {
            return Err(BudgetError::TooManyReservations {
                max: RESERVATIONS_MAX,
            });
        }
        check(
            Scope::Request,
            self.limits.per_request,
            Spend::default(),
            need,
        )?;
        let node = match (&ctx.opening, &ctx.node) {
            (Some(o), Some(n)) => Some((o.clone(), n.clone())),
            _ => None,
        };
        if let Some(key) = &node {
            let used = self.nodes.get(key).copied().unwrap_or_default();
            check(Scope::Node, self.limits.per_node, used, need)?;
        }
        if let Some(o) = &ctx.opening {
            let used = self.openings.get(o).copied().unwrap_or_default();
            check(Scope::Opening, self.limits.per_opening, used, need)?;
        }
        let run = ctx.run.as_ref().map(|r| r.run.clone());
        let run_node = ctx.run.as_ref().map(|r| (r.run.clone(), r.node.clone()));
        if let (Some(budget), Some(key)) = (&ctx.run, &run_node) {
            let used = self.run_nodes.get(key).copied().unwrap_or_default();
            check(Scope::RunNode, budget.node_limit, used, need)?;
            let used = self.runs.get(&budget.run).copied().unwrap_or_default();
            check(Scope::Run, budget.run_limit, used, need)?;
        }
        check(Scope::Day, self.limits.per_day, self.day_spend, need)?;
        let new_node = node.as_ref().is_some_and(|k| !self.nodes.contains_key(k));
        let new_opening = ctx
            .opening
            .as_ref()
            .is_some_and(|o| !self.openings.contains_key(o));
        let new_run = run.as_ref().is_some_and(|r| !self.runs.contains_key(r));
        let new_run_node = run_node
            .as_ref()
            .is_some_and(|k| !self.run_nodes.contains_key(k));
        if (new_node && self.nodes.len() >= BUDGET_KEYS_MAX)
            || (new_opening && self.openings.len() >= BUDGET_KEYS_MAX)
            || (new_run && self.runs.len() >= BUDGET_KEYS_MAX)
            || (new_run_node && self.run_nodes.len() >= BUDGET_KEYS_MAX)
        {
            return Err(BudgetError::TooManyKeys {
                max: BUDGET_KEYS_MAX,
            });
        }
        if let Some(key) = &node {
            self.nodes.entry(key.clone()).or_default().add(need);
        }
        if let Some(o) = &ctx.opening {
            self.openings.entry(o.clone()).or_default().add(need);
        }
        if let Some(r) = &run {
            self.runs.entry(r.clone()).or_default().add(need);
        }
        if let Some(k) = &run_node {
            self.run_nodes.entry(k.clone()).or_default().add(need);
        }
        self.day_spend.add(need);
        self.next_id += 1;
        let id = ReservationId(self.next_id);
        let reservation = Reservation {
            node,
            opening: ctx.opening.clone(),
            run,
            run_node,
            day: self.day,
            amount: need,
        };
        self.reservations.insert(id, reservation);
        Ok(id)
    }

    /// Replaces a reservation by what the call really used (which may be more than reserved).
    pub fn reconcile(&mut self, id: ReservationId, actual: Spend, now_ms: u64) {
        self.settle(id, Some(actual), now_ms);
    }

    /// Drops a reservation whose call failed.
    pub fn release(&mut self, id: ReservationId, now_ms: u64) {
        self.settle(id, None, now_ms);
    }

    fn settle(&mut self, id: ReservationId, actual: Option<Spend>, now_ms: u64) {
        let r = self
            .reservations
            .remove(&id)
            .expect("reservation settled once");
        let actual = actual.unwrap_or_default();
        if let Some(key) = &r.node
            && let Some(s) = self.nodes.get_mut(key)
        {
            s.sub(r.amount);
            s.add(actual);
        }
        if let Some(o) = &r.opening
            && let Some(s) = self.openings.get_mut(o)
        {
            s.sub(r.amount);
            s.add(actual);
        }
        if let Some(run) = &r.run
            && let Some(s) = self.runs.get_mut(run)
        {
            s.sub(r.amount);
            s.add(actual);
        }
        if let Some(key) = &r.run_node
            && let Some(s) = self.run_nodes.get_mut(key)
        {
            s.sub(r.amount);
            s.add(actual);
        }
        self.roll_day(now_ms);
        if r.day == self.day {
            self.day_spend.sub(r.amount);
        }
        self.day_spend.add(actual);
    }

    /// Spent (plus reserved) so far by an opening.
    pub fn opening_spend(&self, opening: &str) -> Spend {
        self.openings.get(opening).copied().unwrap_or_default()
    }

    /// Reservations not yet reconciled or released (calls in flight).
    pub fn reservations_open(&self) -> usize {
        self.reservations.len()
    }

    /// Spent (plus reserved) so far today.
    pub fn day_spend(&self) -> Spend {
        self.day_spend
    }

    /// Spent (plus reserved) so far by a run.
    pub fn run_spend(&self, run: &str) -> Spend {
        self.runs.get(run).copied().unwrap_or_default()
    }

    /// Forgets a finished run and its nodes.
    pub fn close_run(&mut self, run: &str) {
        self.runs.remove(run);
        self.run_nodes.retain(|(r, _), _| r != run);
    }

    /// Forgets a finished opening and its nodes.
    pub fn close_opening(&mut self, opening: &str) {
        self.openings.remove(opening);
        self.nodes.retain(|(o, _), _| o != opening);
    }
}
