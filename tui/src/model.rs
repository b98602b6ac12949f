//! The state reducer: successive status snapshots in, one row per actor out (with CPU %
//! from counter deltas, and bounded CPU/RSS histories for sparklines), plus the header's
//! figures. Pure: its only clock is the snapshots' own `taken_at_ms`.

use std::collections::{HashMap, VecDeque};

use runloop_proto::payloads::{ActorInfo, ActorKind, ActorNode, ActorRunState, StatusSnapshot};

/// How far back a row's CPU/RSS history reaches, in milliseconds.
pub const HISTORY_WINDOW_MS: u64 = 60_000;
/// Most samples a row keeps: one per 100 ms (the daemon's shortest interval) over the window.
pub const HISTORY_SAMPLES_MAX: usize = 600;
/// Most rows kept from one snapshot (a deeper or wider tree is cut, and says so).
pub const ROWS_MAX: usize = 4_096;
/// Deepest tree level shown.
pub const DEPTH_MAX: usize = 16;

/// The run supervisor of agents started outside an opening (`rlp agent start`).
pub const STANDALONE_RUN: &str = "run-agents";

/// What an actor is, as agtop groups them (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKind {
    Supervisor,
    /// A run's own supervisor (`run-<id>`).
    Run,
    Agent,
    Worker,
    Slot,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Supervisor => "sup",
            RowKind::Run => "run",
            RowKind::Agent => "agent",
            RowKind::Worker => "worker",
            RowKind::Slot => "slot",
        }
    }
}

/// One actor as a table row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The path of names from the root (`root/system/bus`): unique, stable across snapshots.
    pub key: String,
    pub name: String,
    pub depth: usize,
    /// The parent's key; `None` for the root.
    pub parent: Option<String>,
    pub has_children: bool,
    pub kind: RowKind,
    /// The agent's own state word when it is an agent, else the actor's.
    pub state: String,
    pub pid: Option<u32>,
    /// CPU since the previous snapshot, in percent of one core; `None` without a baseline.
    pub cpu_pct: Option<f64>,
    pub cpu_ms: Option<u64>,
    pub rss_kb: Option<u64>,
    pub msgs_in: Option<u64>,
    /// Model tokens and their cost in µUSD the broker accounted to this agent's name.
    pub tokens: Option<u64>,
    pub usd_micros: Option<u64>,
    pub msgs_out: Option<u64>,
    pub errors: Option<u64>,
    pub restarts: u64,
    pub breaker: Option<String>,
    pub quarantine: Option<String>,
    pub last_error: Option<String>,
    pub info: Option<ActorInfo>,
}

/// One point of a row's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub cpu_pct: f64,
    pub rss_kb: u64,
}

/// The header's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub seq: u64,
    pub taken_at_ms: u64,
    pub kernel_cpu_pct: Option<f64>,
    pub kernel_rss_kb: Option<u64>,
    pub agents_running: u64,
    pub agents_parked: u64,
    pub agents_total: u64,
    pub runs_running: u64,
    pub bus_dropped: Option<u64>,
    pub scheduler: Option<(u64, u64, u64)>,
    /// Rows cut by [`ROWS_MAX`] or [`DEPTH_MAX`].
    pub rows_cut: u64,
    /// Agents the daemon left out of the snapshot to fit one frame.
    pub agents_cut: u64,
}

/// The reducer: the latest rows and each row's bounded history.
#[derive(Debug, Default)]
pub struct Monitor {
    rows: Vec<Row>,
    header: Header,
    /// Previous reading per key, for CPU % deltas.
    last_cpu: HashMap<String, CpuReading>,
    history: HashMap<String, VecDeque<Sample>>,
}

/// A row's last CPU counter reading and the rate it gave.
#[derive(Debug, Clone, Copy)]
struct CpuReading {
    /// The snapshot's `usage_at_ms` (its `taken_at_ms` when it gives none).
    at_ms: u64,
    cpu_ms: u64,
    cpu_pct: Option<f64>,
}

/// CPU in percent of one core from two counter readings; `None` when time did not move
/// or the counter went back (a restarted sandbox starts at zero).
pub fn cpu_percent(prev: (u64, u64), now: (u64, u64)) -> Option<f64> {
    let (t0, c0) = prev;
    let (t1, c1) = now;
    if t1 <= t0 || c1 < c0 {
        return None;
    }
    Some((c1 - c0) as f64 * 100.0 / (t1 - t0) as f64)
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::default()
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// The row's samples within the window, oldest first.
    pub fn history(&self, key: &str) -> impl Iterator<Item = &Sample> {
        self.history.get(key).into_iter().flatten()
    }

    /// Folds one snapshot in. A snapshot older than the last one is ignored (`false`).
    pub fn apply(&mut self, snapshot: &StatusSnapshot) -> bool {
        let now = snapshot.taken_at_ms;
        if self.header.seq != 0 && now < self.header.taken_at_ms {
            return false;
        }
        let mut rows = Vec::new();
        let mut cut = 0u64;
        flatten(&snapshot.tree, None, 0, &mut rows, &mut cut);
        // The daemon reads the agents' counters once per sampling period and repeats them
        // in the snapshots between: a rate is taken between two readings, and a snapshot
        // that repeats one keeps the rate it gave.
        let usage_at = match snapshot.usage_at_ms {
            0 => now,
            at => at,
        };
        for row in &mut rows {
            let Some(cpu_ms) = row.cpu_ms else { continue };
            let prev = self.last_cpu.get(&row.key).copied();
            if let Some(prev) = prev.filter(|p| p.at_ms == usage_at) {
                row.cpu_pct = prev.cpu_pct;
                continue;
            }
            row.cpu_pct = prev.and_then(|p| cpu_percent((p.at_ms, p.cpu_ms), (usage_at, cpu_ms)));
            let reading = CpuReading {
                at_ms: usage_at,
                cpu_ms,
                cpu_pct: row.cpu_pct,
            };
            self.last_cpu.insert(row.key.clone(), reading);
            let ring = self.history.entry(row.key.clone()).or_default();
            if let Some(cpu_pct) = row.cpu_pct {
                ring.push_back(Sample {
                    at_ms: usage_at,
                    cpu_pct,
                    rss_kb: row.rss_kb.unwrap_or(0),
                });
            }
        }
        // Forget actors that are gone, and samples older than the window.
        let live: std::collections::HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        self.last_cpu.retain(|k, _| live.contains(k.as_str()));
        self.history.retain(|k, _| live.contains(k.as_str()));
        for ring in self.history.values_mut() {
            while ring
                .front()
                .is_some_and(|s| s.at_ms + HISTORY_WINDOW_MS < now)
                || ring.len() > HISTORY_SAMPLES_MAX
            {
                ring.pop_front();
            }
        }
        self.header = header_of(snapshot, &rows, cut);
        self.rows = rows;
        true
    }
}

fn header_of(snapshot: &StatusSnapshot, rows: &[Row], rows_cut: u64) -> Header {
    let mut h = Header {
        seq: snapshot.seq,
        taken_at_ms: snapshot.taken_at_ms,
        rows_cut,
        agents_cut: snapshot.agents_cut,
        ..Header::default()
    };
    for row in rows {
        match &row.info {
            Some(ActorInfo::Kernel { rss_kb, .. }) => {
                h.kernel_cpu_pct = row.cpu_pct;
                h.kernel_rss_kb = Some(*rss_kb);
            }
            Some(ActorInfo::Agent(a)) => {
                h.agents_total += 1;
                match a.state.as_str() {
                    "running" => h.agents_running += 1,
                    "quarantined" => h.agents_parked += 1,
                    _ => {}
                }
            }
            Some(ActorInfo::Bus(b)) => h.bus_dropped = Some(b.dropped),
            Some(ActorInfo::Scheduler(s)) => {
                h.scheduler = Some((s.running, s.concurrency_max, s.queued));
            }
            _ => {}
        }
        // `run-agents` holds the agents started outside any opening: not a run.
        if row.kind == RowKind::Run && row.state == "running" && row.name != STANDALONE_RUN {
            h.runs_running += 1;
        }
    }
    h
}

fn flatten(
    node: &ActorNode,
    parent: Option<&str>,
    depth: usize,
    out: &mut Vec<Row>,
    cut: &mut u64,
) {
    if out.len() >= ROWS_MAX || depth > DEPTH_MAX {
        *cut += 1;
        return;
    }
    let key = match parent {
        Some(p) => format!("{p}/{}", node.name),
        None => node.name.clone(),
    };
    let row = row_of(node, key.clone(), parent, depth);
    out.push(row);
    for child in &node.children {
        flatten(child, Some(&key), depth + 1, out, cut);
    }
}

fn state_word(state: ActorRunState) -> &'static str {
    match state {
        ActorRunState::Running => "running",
        ActorRunState::Restarting => "restarting",
        ActorRunState::Stopped => "stopped",
        ActorRunState::Empty => "empty",
    }
}

fn row_of(node: &ActorNode, key: String, parent: Option<&str>, depth: usize) -> Row {
    let is_run = node.kind == ActorKind::Supervisor
        && parent.is_some_and(|p| p.ends_with("/runs") || p == "runs")
        && node.name.starts_with("run-");
    let kind = match (&node.info, node.kind) {
        (Some(ActorInfo::Agent(_)), _) => RowKind::Agent,
        (_, ActorKind::Supervisor) if is_run => RowKind::Run,
        (_, ActorKind::Supervisor) => RowKind::Supervisor,
        (_, ActorKind::Slot) => RowKind::Slot,
        (_, ActorKind::Worker) => RowKind::Worker,
    };
    let mut row = Row {
        key,
        name: node.name.clone(),
        depth,
        parent: parent.map(str::to_owned),
        has_children: !node.children.is_empty(),
        kind,
        state: state_word(node.state).to_owned(),
        pid: None,
        cpu_pct: None,
        cpu_ms: None,
        rss_kb: None,
        msgs_in: None,
        tokens: None,
        usd_micros: None,
        msgs_out: None,
        errors: None,
        restarts: u64::from(node.restarts),
        breaker: None,
        quarantine: None,
        last_error: node.last_error.clone(),
        info: node.info.clone(),
    };
    match &node.info {
        Some(ActorInfo::Agent(a)) => {
            row.state = a.state.clone();
            row.pid = a.sandbox_pid;
            row.cpu_ms = Some(a.cpu_ms);
            row.rss_kb = Some(a.rss_kb);
            row.msgs_in = Some(a.messages_in);
            row.tokens = Some(a.tokens);
            row.usd_micros = Some(a.usd_micros);
            row.msgs_out = Some(a.messages_out);
            row.errors = Some(a.errors);
            row.restarts = row.restarts.max(a.restarts);
            row.breaker = Some(a.breaker.clone());
            row.quarantine = a.quarantine.clone();
            if a.last_error.is_some() {
                row.last_error = a.last_error.clone();
            }
        }
        Some(ActorInfo::Kernel { cpu_ms, rss_kb, .. }) => {
            row.cpu_ms = Some(*cpu_ms);
            row.rss_kb = Some(*rss_kb);
        }
        Some(ActorInfo::Bus(b)) => {
            row.msgs_in = Some(b.published);
            row.msgs_out = Some(b.delivered);
            row.errors = Some(b.dropped + b.rejected);
        }
        _ => {}
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{snapshot, tree};

    #[test]
    fn cpu_percent_is_the_counter_delta_over_the_time_delta() {
        assert_eq!(cpu_percent((1_000, 100), (2_000, 600)), Some(50.0));
        assert_eq!(cpu_percent((1_000, 100), (1_500, 1_100)), Some(200.0));
        // No time passed, or the counter restarted: no figure rather than a wrong one.
        assert_eq!(cpu_percent((1_000, 100), (1_000, 200)), None);
        assert_eq!(cpu_percent((1_000, 100), (2_000, 50)), None);
    }

    #[test]
    fn rows_carry_the_agents_figures_and_cpu_from_deltas() {
        let mut m = Monitor::new();
        m.apply(&snapshot(1, 10_000, tree(100, 1_000)));
        let w = m
            .row("root/runs/run-r0000000000000001/agent-writer")
            .unwrap();
        assert_eq!(w.kind, RowKind::Agent);
        assert_eq!(w.pid, Some(4242));
        assert_eq!(w.cpu_pct, None, "no baseline yet");
        m.apply(&snapshot(2, 11_000, tree(350, 1_200)));
        let w = m
            .row("root/runs/run-r0000000000000001/agent-writer")
            .unwrap();
        assert_eq!(w.cpu_pct, Some(25.0));
        let h = m.header();
        assert_eq!(h.kernel_cpu_pct, Some(20.0));
        assert_eq!(h.agents_running, 1);
        assert_eq!(h.agents_parked, 1);
        assert_eq!(h.runs_running, 1);
        assert_eq!(h.bus_dropped, Some(3));
    }

    /// Snapshots every 250 ms repeating the daemon's once-a-second counter readings give
    /// the rate between readings, held in between — not 0, 0, 0 and then four times it.
    #[test]
    fn cpu_is_a_rate_between_readings_and_held_while_a_reading_repeats() {
        let key = "root/runs/run-r0000000000000001/agent-writer";
        let mut m = Monitor::new();
        let mut seq = 0;
        let mut at = |m: &mut Monitor, taken: u64, usage: u64, cpu: u64| {
            seq += 1;
            let mut s = snapshot(seq, taken, tree(cpu, 1_000));
            s.usage_at_ms = usage;
            m.apply(&s);
            m.row(key).unwrap().cpu_pct
        };
        assert_eq!(at(&mut m, 10_000, 10_000, 100), None);
        assert_eq!(at(&mut m, 10_250, 10_000, 100), None, "the same reading");
        assert_eq!(at(&mut m, 11_000, 11_000, 600), Some(50.0));
        assert_eq!(at(&mut m, 11_250, 11_000, 600), Some(50.0), "held");
        assert_eq!(at(&mut m, 11_500, 11_000, 600), Some(50.0), "held");
        assert_eq!(at(&mut m, 12_000, 12_000, 600), Some(0.0), "idle since");
        assert_eq!(m.history(key).count(), 2, "one sample per reading");
    }

    #[test]
    fn history_keeps_the_last_sixty_seconds_only() {
        let mut m = Monitor::new();
        let key = "root/runs/run-r0000000000000001/agent-writer";
        for i in 0..100u64 {
            m.apply(&snapshot(i + 1, i * 1_000, tree(i * 10, 1_000 + i * 10)));
        }
        let h: Vec<_> = m.history(key).collect();
        // Samples at 39 s .. 99 s: the window's both ends included.
        assert_eq!(h.len(), 61);
        assert_eq!(h.first().unwrap().at_ms, 39_000);
        assert_eq!(h.last().unwrap().at_ms, 99_000);
        assert!(h.iter().all(|s| (s.cpu_pct - 1.0).abs() < 1e-9));
    }

    #[test]
    fn history_is_bounded_even_with_a_fast_stream() {
        let mut m = Monitor::new();
        let key = "root/runs/run-r0000000000000001/agent-writer";
        for i in 0..2_000u64 {
            m.apply(&snapshot(i + 1, i * 10, tree(i, 1_000)));
        }
        assert_eq!(m.history(key).count(), HISTORY_SAMPLES_MAX);
    }

    #[test]
    fn gone_actors_lose_their_history_and_old_snapshots_are_ignored() {
        let mut m = Monitor::new();
        m.apply(&snapshot(1, 1_000, tree(0, 1)));
        m.apply(&snapshot(2, 2_000, tree(10, 1)));
        let key = "root/runs/run-r0000000000000001/agent-writer";
        assert_eq!(m.history(key).count(), 1);
        let mut bare = tree(20, 1);
        bare.children.retain(|c| c.name != "runs");
        assert!(!m.apply(&snapshot(3, 500, bare.clone())));
        assert!(m.apply(&snapshot(3, 3_000, bare)));
        assert_eq!(m.history(key).count(), 0);
        assert!(m.row(key).is_none());
    }
}
