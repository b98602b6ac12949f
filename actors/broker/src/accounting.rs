//! Accounting per provider, opening and agent: requests, tokens, cost, cache hits, errors, latency.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most keys per dimension; further keys are summed under [`OVERFLOW_KEY`].
pub const ACCOUNT_KEYS_MAX: usize = 1024;
/// Where keys beyond [`ACCOUNT_KEYS_MAX`] are counted.
pub const OVERFLOW_KEY: &str = "(other)";
/// Key for calls without an opening or agent.
pub const NONE_KEY: &str = "(none)";

/// Counters for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd_micros: u64,
    pub cache_hits: u64,
    pub errors: u64,
    pub latency_ms_total: u64,
    pub latency_ms_max: u64,
}

impl Counters {
    fn merge(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_usd_micros += o.cost_usd_micros;
        self.cache_hits += o.cache_hits;
        self.errors += o.errors;
        self.latency_ms_total += o.latency_ms_total;
        self.latency_ms_max = self.latency_ms_max.max(o.latency_ms_max);
    }

    /// Mean latency in ms over requests.
    pub fn latency_ms_mean(&self) -> u64 {
        self.latency_ms_total
            .checked_div(self.requests)
            .unwrap_or(0)
    }
}

/// One finished call, as accounting sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd_micros: u64,
    pub cache_hit: bool,
    pub error: bool,
    pub latency_ms: u64,
}

impl Outcome {
    fn counters(&self) -> Counters {
        Counters {
            requests: 1,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            cost_usd_micros: self.cost_usd_micros,
            cache_hits: u64::from(self.cache_hit),
            errors: u64::from(self.error),
            latency_ms_total: self.latency_ms,
            latency_ms_max: self.latency_ms,
        }
    }
}

/// A snapshot of all counters; what `rlp broker stats --json` prints and actor metrics expose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub total: Counters,
    pub by_provider: BTreeMap<String, Counters>,
    pub by_opening: BTreeMap<String, Counters>,
    pub by_agent: BTreeMap<String, Counters>,
}

fn bump(map: &mut BTreeMap<String, Counters>, key: &str, c: &Counters) {
    let key = if map.contains_key(key) || map.len() < ACCOUNT_KEYS_MAX {
        key
    } else {
        OVERFLOW_KEY
    };
    map.entry(key.to_owned()).or_default().merge(c);
}

impl Stats {
    pub fn record(
        &mut self,
        provider: &str,
        opening: Option<&str>,
        agent: Option<&str>,
        outcome: &Outcome,
    ) {
        let c = outcome.counters();
        self.total.merge(&c);
        bump(&mut self.by_provider, provider, &c);
        bump(&mut self.by_opening, opening.unwrap_or(NONE_KEY), &c);
        bump(&mut self.by_agent, agent.unwrap_or(NONE_KEY), &c);
    }

    /// Adds another snapshot (the CLI's ledger sums its runs this way).
    pub fn merge(&mut self, other: &Stats) {
        self.total.merge(&other.total);
        for (mine, theirs) in [
            (&mut self.by_provider, &other.by_provider),
            (&mut self.by_opening, &other.by_opening),
            (&mut self.by_agent, &other.by_agent),
        ] {
            for (k, c) in theirs {
                bump(mine, k, c);
            }
        }
    }
}
