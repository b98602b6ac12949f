//! What the kernel reports about its agents: `rlp agent ls`, the status tree's agents by
//! run, and the figures each status carries (state, breaker, quarantine, metrics, spend).

use super::*;

impl Kernel {
    /// Every standalone agent with its state and metrics, by name.
    pub async fn agents(&self) -> Vec<AgentStatus> {
        let mut entries: Vec<_> = self
            .agents
            .lock()
            .expect("agents lock")
            .iter()
            .filter(|((run, _), _)| run.is_standalone())
            .map(|((_, k), v)| (k.clone(), StatusSource::of(v)))
            .collect();
        entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let spend = self.spend_by_agent().await;
        let gates = self.gate_states().await;
        let usage_at = self.usage_batch_ms();
        let mut out = Vec::with_capacity(entries.len());
        for (name, source) in entries {
            let mut status = Self::agent_status_from(&name, source, &gates, usage_at);
            add_spend(&mut status, &spend);
            out.push(status);
        }
        out
    }

    /// Every agent of every run with its status, by its run supervisor's name
    /// (`run-<id>`) and then its own name — what the status tree's agent nodes show. The
    /// broker's spend per agent name is read once for all of them, and CPU and RSS as of
    /// `usage_at` ([`Kernel::usage_batch_ms`]). Only what a status needs is copied out
    /// under the agents lock ([`StatusSource`]), not each whole entry.
    pub(crate) async fn agents_by_run(&self, usage_at: u64) -> AgentsByRun {
        let entries: Vec<_> = self
            .agents
            .lock()
            .expect("agents lock")
            .iter()
            .map(|((run, name), v)| (*run, name.clone(), StatusSource::of(v)))
            .collect();
        let spend = self.spend_by_agent().await;
        let gates = self.gate_states().await;
        // By run id first: the supervisor's name is formatted once per run, not per agent.
        let mut by_run: std::collections::HashMap<RunId, std::collections::HashMap<_, _>> =
            Default::default();
        for (run, name, source) in entries {
            let mut status = Self::agent_status_from(&name, source, &gates, usage_at);
            add_spend(&mut status, &spend);
            by_run
                .entry(run)
                .or_default()
                .insert(name.as_str().to_owned(), status);
        }
        by_run
            .into_iter()
            .map(|(run, agents)| (format!("run-{run}"), agents))
            .collect()
    }

    /// Tokens and µUSD the broker accounted per agent name (empty without a broker).
    async fn spend_by_agent(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let Some(broker) = self.broker() else {
            return Default::default();
        };
        match ractor::call_t!(
            broker,
            runloop_broker::BrokerMsg::Stats,
            SPEND_CALL_TIMEOUT_MS
        ) {
            Ok(stats) => stats
                .by_agent
                .into_iter()
                .map(|(k, c)| (k, (c.tokens_in + c.tokens_out, c.cost_usd_micros)))
                .collect(),
            Err(_) => Default::default(),
        }
    }

    /// The metrics handle of an agent (tests and benches read counters from it).
    pub fn agent_metrics(&self, agent: &AgentName) -> Option<runloop_agent_actor::AgentMetrics> {
        self.agent_entry(RunId::STANDALONE, agent)
            .map(|e| e.shared.metrics)
    }

    /// The metrics handle of the first agent called `agent` in any run (a drill's probe:
    /// it runs one workload at a time).
    pub(crate) fn metrics_named(&self, agent: &str) -> Option<runloop_agent_actor::AgentMetrics> {
        self.agents
            .lock()
            .expect("agents lock")
            .iter()
            .find(|((_, name), _)| name.as_str() == agent)
            .map(|(_, entry)| entry.shared.metrics.clone())
    }

    /// The metrics handle of an agent of `run`.
    pub fn run_agent_metrics(
        &self,
        run: RunId,
        agent: &AgentName,
    ) -> Option<runloop_agent_actor::AgentMetrics> {
        self.agent_entry(run, agent).map(|e| e.shared.metrics)
    }

    pub(super) async fn agent_status(&self, name: &AgentName, entry: &AgentEntry) -> AgentStatus {
        let usage_at = self.usage_batch_ms();
        let breaker = match self.breakers() {
            Some(b) => breaker_state(&b, name).await,
            None => "unknown".into(),
        };
        let quarantine = match self.quarantine() {
            Some(q) => q.check(name).await.ok().flatten().map(|r| r.message),
            None => None,
        };
        Self::status_of(name, StatusSource::of(entry), breaker, quarantine, usage_at)
    }

    /// Every agent's breaker state and quarantine reason, one call to each actor.
    async fn gate_states(&self) -> GateStates {
        let breakers = match self.breakers() {
            Some(b) => b.snapshot_all().await,
            None => None,
        };
        let parked = match self.quarantine() {
            Some(q) => q
                .list()
                .await
                .ok()
                .map(|records| records.into_iter().map(|r| (r.agent, r.message)).collect()),
            None => None,
        };
        GateStates { breakers, parked }
    }

    /// An agent's status from the batched breaker and quarantine states.
    fn agent_status_from(
        name: &AgentName,
        source: StatusSource,
        gates: &GateStates,
        usage_at: u64,
    ) -> AgentStatus {
        let breaker = match &gates.breakers {
            Some(all) => all
                .get(name)
                .map_or_else(|| "closed".to_owned(), |s| s.state.to_string()),
            None => "unknown".into(),
        };
        let quarantine = gates
            .parked
            .as_ref()
            .and_then(|parked| parked.get(name).cloned());
        Self::status_of(name, source, breaker, quarantine, usage_at)
    }

    fn status_of(
        name: &AgentName,
        source: StatusSource,
        breaker: String,
        quarantine: Option<String>,
        usage_at: u64,
    ) -> AgentStatus {
        let snap = source
            .metrics
            .snapshot_at(usage_at, crate::kernel::USAGE_SAMPLE_MS);
        let state = if quarantine.is_some() {
            AgentState::Quarantined
        } else {
            snap.state
        };
        AgentStatus {
            name: name.to_string(),
            bundle: source.bundle,
            state: serde_json_name(state),
            sandbox_pid: snap.sandbox_pid,
            restarts: snap.restarts,
            breaker,
            quarantine,
            cpu_ms: snap.cpu_us / 1_000,
            rss_kb: snap.rss_kb,
            cgroup: snap.cgroup,
            messages_in: snap.messages_in,
            messages_out: snap.messages_out,
            errors: snap.errors,
            denied: snap.denied,
            redelivered: snap.redelivered,
            last_error: snap.last_error,
            tokens: 0,
            usd_micros: 0,
        }
    }
}

/// What an agent's status needs of its entry, copied out under the agents lock: the
/// metrics handle (an `Arc`) and the bundle's path as shown. A status of a thousand agents
/// cloned (and dropped) every whole entry, its `AgentShared` and `Vec`s included, per tick.
struct StatusSource {
    metrics: runloop_agent_actor::AgentMetrics,
    bundle: String,
}

impl StatusSource {
    fn of(entry: &AgentEntry) -> Self {
        Self {
            metrics: entry.shared.metrics.clone(),
            // `display` goes through the lossy UTF-8 decoder (≈ 6% of the daemon's CPU
            // per status stream at 1,000 agents); a UTF-8 path is copied as it is, the
            // same text.
            bundle: entry
                .bundle
                .to_str()
                .map_or_else(|| entry.bundle.display().to_string(), str::to_owned),
        }
    }
}

/// The breaker and quarantine states of every agent, read once per status; `None` where
/// the actor is down (breaker `unknown`; nobody shown parked).
struct GateStates {
    breakers:
        Option<std::collections::HashMap<AgentName, runloop_actors::breaker::BreakerSnapshot>>,
    parked: Option<std::collections::HashMap<AgentName, String>>,
}

/// Agents' statuses by run supervisor name (`run-<id>`), then agent name.
pub(crate) type AgentsByRun =
    std::collections::HashMap<String, std::collections::HashMap<String, AgentStatus>>;

/// How long a status waits for the broker's accounting.
const SPEND_CALL_TIMEOUT_MS: u64 = 500;

/// The broker's spend for this agent's name (agents of the same name share it).
fn add_spend(status: &mut AgentStatus, spend: &std::collections::BTreeMap<String, (u64, u64)>) {
    if let Some((tokens, usd_micros)) = spend.get(&status.name) {
        status.tokens = *tokens;
        status.usd_micros = *usd_micros;
    }
}

async fn breaker_state(breaker: &BreakerHandle, agent: &AgentName) -> String {
    match breaker.snapshot(agent).await {
        Some(s) => s.state.to_string(),
        None => "unknown".into(),
    }
}

fn serde_json_name(state: AgentState) -> String {
    match state {
        AgentState::Starting => "starting",
        AgentState::Running => "running",
        AgentState::Restarting => "restarting",
        AgentState::Quarantined => "quarantined",
        AgentState::Stopped => "stopped",
    }
    .into()
}
