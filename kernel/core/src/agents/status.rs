//! What the kernel reports about its agents: `rlp agent ls`, the status tree's agents by
//! run, and the figures each status carries (state, breaker, quarantine, metrics, spend).
//!
//! The status sampler asks for the tree's agents every tick (4 Hz for agtop), so it keeps
//! their statuses in a [`StatusCache`]: an agent whose inputs did not move keeps its
//! status, and one tick of a thousand idle agents builds none.

use runloop_agent_actor::metrics::SnapshotStamp;
use runloop_proto::payloads::{ActorInfo, ActorNode};

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

    /// Each `agent-<name>` node under the tree's `runs` gets the agent's status (state,
    /// pid, breaker, quarantine, CPU, RSS, messages, errors) as of `usage_at`, from
    /// `cache` brought up to date ([`Kernel::agent_statuses`]): a fresh cache builds every
    /// status, a kept one only those that moved.
    pub(crate) async fn add_agent_details(
        &self,
        root: &mut ActorNode,
        usage_at: u64,
        cache: &mut StatusCache,
    ) {
        let Some(runs) = root.children.iter_mut().find(|c| c.name == "runs") else {
            return;
        };
        self.agent_statuses(usage_at, cache).await;
        // The agent nodes come in the tree's order, which rarely changes: the status each
        // one got last time is tried first (two short compares), the index only on a miss.
        let mut visit = 0;
        for run in &mut runs.children {
            for node in &mut run.children {
                let Some(name) = node.name.strip_prefix("agent-") else {
                    continue;
                };
                let guess = cache.visited.get(visit).copied().filter(|&at| {
                    // Positions of the last tick: `kept` may have shrunk since.
                    cache.kept.get(at).is_some_and(|kept| {
                        kept.name.as_str() == name && kept.supervisor == run.name
                    })
                });
                let Some(at) = guess.or_else(|| cache.find(&run.name, name)) else {
                    continue;
                };
                node.info = Some(ActorInfo::Agent(cache.kept[at].status.clone()));
                match cache.visited.get_mut(visit) {
                    Some(slot) => *slot = at,
                    None => cache.visited.push(at),
                }
                visit += 1;
            }
        }
        cache.visited.truncate(visit);
    }

    /// Brings `cache` to every agent of every run with its status as of `usage_at`
    /// ([`Kernel::usage_batch_ms`]): what the status tree's agent nodes show. An agent
    /// whose inputs did not move since `cache` last built its status (the same entry and
    /// bundle, its metrics' [`SnapshotStamp`], breaker state, quarantine reason and spend)
    /// keeps that status: its metrics are not copied and the status is not built again.
    /// The broker's spend per agent name, the breakers and the quarantine are read once
    /// for all of them, and only the agents' keys, metrics handles and bundle paths are
    /// looked at under the agents lock.
    pub(crate) async fn agent_statuses(&self, usage_at: u64, cache: &mut StatusCache) {
        {
            let agents = self.agents.lock().expect("agents lock");
            cache.note_all(agents.iter());
        }
        let spend = self.spend_by_agent().await;
        let gates = self.gate_states().await;
        // One buffer for every agent's breaker state, compared before it is copied.
        let mut breaker = String::new();
        for kept in &mut cache.kept {
            kept.refresh(&gates, &spend, usage_at, &mut breaker);
        }
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
        Self::status_from_snapshot(name.to_string(), source.bundle, snap, breaker, quarantine)
    }

    /// An agent's status from its metrics' snapshot and its breaker and quarantine states
    /// (no spend: the caller adds it).
    fn status_from_snapshot(
        name: String,
        bundle: String,
        snap: runloop_agent_actor::AgentSnapshot,
        breaker: String,
        quarantine: Option<String>,
    ) -> AgentStatus {
        // The quarantine actor's list was read before this snapshot: an agent parked in
        // between says why from its own metrics.
        let quarantine = quarantine.or_else(|| {
            (snap.state == AgentState::Quarantined)
                .then(|| snap.parked.clone())
                .flatten()
        });
        let state = if quarantine.is_some() {
            AgentState::Quarantined
        } else {
            snap.state
        };
        AgentStatus {
            name,
            bundle,
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
            bundle: Self::bundle_of(entry),
        }
    }

    /// The bundle's path as shown. `display` goes through the lossy UTF-8 decoder (≈ 6%
    /// of the daemon's CPU per status stream at 1,000 agents); a UTF-8 path is copied as
    /// it is, the same text.
    fn bundle_of(entry: &AgentEntry) -> String {
        entry
            .bundle
            .to_str()
            .map_or_else(|| entry.bundle.display().to_string(), str::to_owned)
    }
}

/// The breaker and quarantine states of every agent, read once per status; `None` where
/// the actor is down (breaker `unknown`; nobody shown parked).
struct GateStates {
    breakers:
        Option<std::collections::HashMap<AgentName, runloop_actors::breaker::BreakerSnapshot>>,
    parked: Option<std::collections::HashMap<AgentName, String>>,
}

/// Every agent's status as a status stream last built it, with what it was built from:
/// the sampler keeps one across its ticks ([`Kernel::agent_statuses`]), so an agent that
/// did not move costs a few comparisons per tick, not a status built, hashed into maps and
/// moved. A fresh cache builds every status, which is the same as keeping none: the tests
/// check a kept cache gives exactly the statuses a fresh one does. It holds one entry per
/// agent of the agents table (at most [`AGENTS_MAX`]); an agent gone is forgotten at the
/// next pass.
#[derive(Debug, Default)]
pub(crate) struct StatusCache {
    /// Every agent's kept status, in the agents table's order as of the last pass: the
    /// table's order does not change while no agent is added or removed, so a pass pairs
    /// its entries with these by position (no hashing) until the first that differs.
    kept: Vec<KeptStatus>,
    /// `kept`'s positions by run supervisor name and agent name, built again when `kept`
    /// changed order or length.
    index: std::collections::HashMap<String, std::collections::HashMap<String, usize>>,
    /// The position in `kept` each agent node of the tree got in the last tick, in tree
    /// order (tried first: checked by name, so a stale one is only a miss).
    visited: Vec<usize>,
}

/// One agent's last status and what it was built from.
#[derive(Debug)]
struct KeptStatus {
    run: RunId,
    /// `run-<id>`, as the tree names the run's supervisor.
    supervisor: String,
    name: AgentName,
    /// The entry's handle, kept: while it is held no other entry can have its address,
    /// so [`runloop_agent_actor::AgentMetrics::same`] tells a new entry of the same name
    /// apart (each entry gets its own metrics when it is started).
    metrics: runloop_agent_actor::AgentMetrics,
    /// What `status` was built from; `None`: not built yet (or its bundle changed).
    stamp: Option<SnapshotStamp>,
    status: AgentStatus,
}

impl KeptStatus {
    fn new(run: RunId, name: &AgentName, entry: &AgentEntry) -> Self {
        let source = StatusSource::of(entry);
        Self {
            run,
            supervisor: format!("run-{run}"),
            name: name.clone(),
            metrics: source.metrics,
            stamp: None,
            status: AgentStatus {
                name: name.to_string(),
                bundle: source.bundle,
                ..AgentStatus::default()
            },
        }
    }

    /// Whether this is the status of `entry`, the table's agent `name` of `run`.
    fn is_of(&self, run: RunId, name: &AgentName, entry: &AgentEntry) -> bool {
        // `AgentName` is an `Arc<str>`: the kept clone compares by address first.
        self.run == run && self.name == *name && self.metrics.same(&entry.shared.metrics)
    }

    /// Marks the status unbuilt when the entry's bundle path is not the one it shows.
    fn check_bundle(&mut self, entry: &AgentEntry) {
        // The bytes are compared, not decoded: a UTF-8 path shows as itself; another one
        // (shown lossy) differs here and is built again each pass, which gives the same.
        if entry.bundle.as_os_str().as_encoded_bytes() != self.status.bundle.as_bytes() {
            self.status.bundle = StatusSource::bundle_of(entry);
            self.stamp = None;
        }
    }
}

impl StatusCache {
    /// Pairs the agents table's entries with the kept statuses: by position while they
    /// agree, then by key; new agents are kept unbuilt and gone ones forgotten.
    fn note_all<'a>(
        &mut self,
        table: impl Iterator<Item = (&'a (RunId, AgentName), &'a AgentEntry)>,
    ) {
        let mut at = 0;
        // The kept statuses not yet paired, by key, once the table's order disagrees.
        let mut rest: Option<std::collections::HashMap<(RunId, AgentName), KeptStatus>> = None;
        for ((run, name), entry) in table {
            if rest.is_none() {
                if let Some(kept) = self.kept.get_mut(at)
                    && kept.is_of(*run, name, entry)
                {
                    kept.check_bundle(entry);
                    at += 1;
                    continue;
                }
                rest = Some(
                    self.kept
                        .drain(at..)
                        .map(|kept| ((kept.run, kept.name.clone()), kept))
                        .collect(),
                );
            }
            let rest = rest.as_mut().expect("set above");
            let kept = match rest.remove(&(*run, name.clone())) {
                Some(mut kept) if kept.metrics.same(&entry.shared.metrics) => {
                    kept.check_bundle(entry);
                    kept
                }
                _ => KeptStatus::new(*run, name, entry),
            };
            self.kept.push(kept);
        }
        // Agents gone from the table's end (the rest: from anywhere) are dropped here.
        let changed = rest.is_some() || at < self.kept.len();
        if rest.is_none() {
            self.kept.truncate(at);
        }
        if changed {
            self.index.clear();
            for (at, kept) in self.kept.iter().enumerate() {
                self.index
                    .entry(kept.supervisor.clone())
                    .or_default()
                    .insert(kept.name.as_str().to_owned(), at);
            }
        }
    }

    /// The position in `kept` of agent `agent` of the run supervised by `supervisor`.
    fn find(&self, supervisor: &str, agent: &str) -> Option<usize> {
        self.index.get(supervisor)?.get(agent).copied()
    }

    /// The status of agent `agent` of the run supervised by `supervisor`, as last built.
    #[cfg(test)]
    fn get(&self, supervisor: &str, agent: &str) -> Option<&AgentStatus> {
        let kept = &self.kept[self.find(supervisor, agent)?];
        kept.stamp.is_some().then_some(&kept.status)
    }
}

impl KeptStatus {
    /// Builds the status again when any of its inputs moved: exactly what
    /// [`Kernel::status_of`] and the spend give for them.
    fn refresh(
        &mut self,
        gates: &GateStates,
        spend: &std::collections::BTreeMap<String, (u64, u64)>,
        usage_at: u64,
        breaker: &mut String,
    ) {
        breaker.clear();
        match &gates.breakers {
            Some(all) => match all.get(&self.name) {
                Some(s) => {
                    use std::fmt::Write;
                    write!(breaker, "{}", s.state).expect("a String takes any text");
                }
                None => breaker.push_str("closed"),
            },
            None => breaker.push_str("unknown"),
        }
        let quarantine = gates
            .parked
            .as_ref()
            .and_then(|parked| parked.get(&self.name));
        let (tokens, usd_micros) = spend.get(&self.status.name).copied().unwrap_or((0, 0));
        let status = &self.status;
        let gates_same = self.stamp.is_some()
            && status.breaker == *breaker
            && status.quarantine.as_ref() == quarantine
            && (status.tokens, status.usd_micros) == (tokens, usd_micros);
        let seen = if gates_same { self.stamp } else { None };
        let (stamp, snap) =
            self.metrics
                .snapshot_since(usage_at, crate::kernel::USAGE_SAMPLE_MS, seen);
        self.stamp = Some(stamp);
        let Some(snap) = snap else {
            return;
        };
        let name = std::mem::take(&mut self.status.name);
        let bundle = std::mem::take(&mut self.status.bundle);
        self.status =
            Kernel::status_from_snapshot(name, bundle, snap, breaker.clone(), quarantine.cloned());
        self.status.tokens = tokens;
        self.status.usd_micros = usd_micros;
    }
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kernel::KernelOptions;

    /// Every status a cache holds, by (run supervisor, agent); each also found by its key.
    fn all(cache: &StatusCache) -> BTreeMap<(String, String), AgentStatus> {
        let mut out = BTreeMap::new();
        for kept in &cache.kept {
            let status = cache
                .get(&kept.supervisor, kept.name.as_str())
                .expect("built");
            assert_eq!(status, &kept.status);
            let key = (kept.supervisor.clone(), kept.name.to_string());
            assert!(
                out.insert(key, status.clone()).is_none(),
                "one entry per agent"
            );
        }
        out
    }

    /// The statuses a kept cache gives, checked against a fresh cache's (every status
    /// built anew) at the same `usage_at`.
    async fn kept_equals_fresh(kernel: &Kernel, kept: &mut StatusCache, why: &str) {
        let usage_at = kernel.usage_batch_ms();
        kernel.agent_statuses(usage_at, kept).await;
        let mut fresh = StatusCache::default();
        kernel.agent_statuses(usage_at, &mut fresh).await;
        assert_eq!(all(kept), all(&fresh), "{why}");
        // The tree's agent nodes, filled from the kept cache (positions of the last
        // tick tried first) and from a fresh one.
        let (mut tree, usage_at) = kernel.walked(&mut Default::default()).await;
        let mut fresh_tree = tree.clone();
        kernel.add_agent_details(&mut tree, usage_at, kept).await;
        let mut fresh = StatusCache::default();
        kernel
            .add_agent_details(&mut fresh_tree, usage_at, &mut fresh)
            .await;
        assert_eq!(tree, fresh_tree, "{why}: the tree");
        fn agents_in(node: &ActorNode) -> usize {
            let own = usize::from(matches!(node.info, Some(ActorInfo::Agent(_))));
            own + node.children.iter().map(agents_in).sum::<usize>()
        }
        assert_eq!(
            agents_in(&tree),
            all(kept).len(),
            "{why}: every agent in the tree"
        );
    }

    fn name(s: &str) -> AgentName {
        AgentName::new(s).unwrap()
    }

    /// A kept cache gives exactly the statuses a full rebuild does for agents unchanged,
    /// changed (a message), added, removed and restarted (a killed sandbox), and builds
    /// again only the agents that moved. Real sandboxes: needs `runloop-sandbox-host`
    /// built (`cargo build -p runloop-sandbox-host`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_status_cache_gives_what_a_full_rebuild_gives() {
        // The compiled modules' cache, removed with the test.
        let cwasm = tempfile::tempdir().unwrap();
        let options = KernelOptions {
            agents: AgentOptions {
                sandbox_host: Some(
                    runloop_sandbox::locate_sandbox_host()
                        .expect("build it first: cargo build -p runloop-sandbox-host"),
                ),
                cwasm_dir: Some(cwasm.path().to_owned()),
                ..AgentOptions::default()
            },
            ..KernelOptions::default()
        };
        let kernel = Kernel::boot(options).await.unwrap();
        let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles/echo");
        for agent in ["a", "b", "c"] {
            kernel.start_bundle(&echo, Some(agent)).await.unwrap();
        }
        let mut kept = StatusCache::default();
        kept_equals_fresh(&kernel, &mut kept, "first pass: all built").await;
        assert_eq!(all(&kept).len(), 3);
        let state_at =
            |kept: &StatusCache, agent: &str| kept.get("run-agents", agent).unwrap().state.as_ptr();
        let before = state_at(&kept, "b");
        kept_equals_fresh(&kernel, &mut kept, "unchanged").await;
        assert_eq!(state_at(&kept, "b"), before, "an unchanged status is kept");

        let input = AgentInput {
            port: "in".into(),
            payload: runloop_proto::json::json_to_msgpack(&serde_json::json!({}), "in").unwrap(),
        };
        kernel.send(&name("a"), input).await.unwrap();
        kept_equals_fresh(&kernel, &mut kept, "a message to a").await;
        assert_eq!(kept.get("run-agents", "a").unwrap().messages_in, 1);
        assert_eq!(state_at(&kept, "b"), before, "b did not move");

        kernel.stop_agent(&name("b")).await.unwrap();
        kept_equals_fresh(&kernel, &mut kept, "b stopped").await;
        assert!(kept.get("run-agents", "b").is_none());

        kernel.start_bundle(&echo, Some("d")).await.unwrap();
        kept_equals_fresh(&kernel, &mut kept, "d started").await;
        assert!(kept.get("run-agents", "d").is_some());

        // c's sandbox killed: its supervisor restarts it (restarts and pid move).
        let metrics = kernel.agent_metrics(&name("c")).unwrap();
        let pid = metrics.counters().sandbox_pid.unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut restarted = false;
        for _ in 0..2_500 {
            let now = metrics.counters();
            if now.restarts == 1 && now.sandbox_pid.is_some_and(|p| p != pid) {
                restarted = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert!(restarted, "{:?}", metrics.counters());
        kept_equals_fresh(&kernel, &mut kept, "c restarted").await;
        let c = kept.get("run-agents", "c").unwrap();
        assert_eq!(
            (c.restarts, c.sandbox_pid.is_some_and(|p| p != pid)),
            (1, true)
        );
        kernel.shutdown().await;
    }
}
