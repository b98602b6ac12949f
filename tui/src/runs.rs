//! The runs reducer: run progress events (from the daemon's stream or an `--events`
//! file), run lists and final reports in; per run its DAG with each node's state and
//! attempts, its outputs, and a bounded log out. Pure: its only clock is the events' own
//! `ts_ms`.

use std::collections::{HashMap, VecDeque};

use runloop_proto::payloads::{
    ActionInfo, NodeStatus, RunEvent, RunProgress, RunReport, RunStatus, RunSummary,
};

/// Most runs kept; the oldest finished ones are forgotten first.
pub const RUNS_MAX: usize = 64;
/// Most nodes kept per run (the openings spec allows 256).
pub const NODES_MAX: usize = 256;
/// Most log lines kept, all runs and agents together.
pub const LOG_LINES_MAX: usize = 2_000;
/// Longest log line kept, in characters.
pub const LOG_CHARS_MAX: usize = 400;
/// Longest output text kept per node, in bytes of its JSON.
pub const OUTPUT_BYTES_MAX: usize = 64 * 1024;

/// What a node is doing, as the Plan pane shows it (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not started yet.
    Waiting,
    Running,
    /// Its effect waits for a person's yes.
    Confirming,
    /// An attempt failed; the next one starts after a delay.
    Retrying,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Waiting => "waiting",
            NodeState::Running => "running",
            NodeState::Confirming => "confirming",
            NodeState::Retrying => "retrying",
            NodeState::Succeeded => "succeeded",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
            NodeState::Cancelled => "cancelled",
        }
    }

    /// One glyph for the plan.
    pub fn mark(self) -> char {
        match self {
            NodeState::Waiting => '·',
            NodeState::Running => '▶',
            NodeState::Confirming => '?',
            NodeState::Retrying => '↻',
            NodeState::Succeeded => '✓',
            NodeState::Failed => '✗',
            NodeState::Skipped => '-',
            NodeState::Cancelled => '■',
        }
    }

    fn of(status: NodeStatus) -> NodeState {
        match status {
            NodeStatus::Waiting => NodeState::Waiting,
            NodeStatus::Running => NodeState::Running,
            NodeStatus::Succeeded => NodeState::Succeeded,
            NodeStatus::Failed => NodeState::Failed,
            NodeStatus::Skipped => NodeState::Skipped,
            NodeStatus::Cancelled => NodeState::Cancelled,
        }
    }
}

/// One node of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub state: NodeState,
    /// The attempt running or last run (0 before the first).
    pub attempt: u32,
    pub started_at_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub output_hash: Option<String>,
    /// `[[port, payload], …]` as JSON text (from the final report), cut at
    /// [`OUTPUT_BYTES_MAX`].
    pub outputs_json: Option<String>,
    /// Why it failed, was skipped, cancelled or is retrying; or what it waits for.
    pub note: Option<String>,
    /// The confirmation request it waits on, while [`NodeState::Confirming`].
    pub request: Option<String>,
}

/// One run as agtop knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    pub trace_id: String,
    pub opening: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub started_at_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub resumed: bool,
    pub nodes: Vec<NodeView>,
    /// `[from, to]` node ids.
    pub edges: Vec<[String; 2]>,
    /// The final report was folded in (outputs known).
    pub reported: bool,
    /// Its `run.started` (nodes and edges) was seen, live or from `run_show`.
    pub planned: bool,
    /// When it was last touched, by the events' clock (for forgetting old runs).
    touched_ms: u64,
}

impl RunView {
    fn new(trace_id: &str) -> RunView {
        RunView {
            trace_id: trace_id.to_owned(),
            opening: String::new(),
            status: RunStatus::Running,
            reason: None,
            started_at_ms: None,
            duration_ms: None,
            resumed: false,
            nodes: Vec::new(),
            edges: Vec::new(),
            reported: false,
            planned: false,
            touched_ms: 0,
        }
    }

    pub fn node(&self, id: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn node_mut(&mut self, id: &str) -> Option<&mut NodeView> {
        if self.node(id).is_none() {
            if self.nodes.len() >= NODES_MAX {
                return None;
            }
            self.nodes.push(blank(id));
        }
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    /// Each node's depth in the DAG: 0 for nodes nothing points at, else one more than
    /// the deepest node pointing at it. Cycles (none in a valid opening) stop at the
    /// node count.
    pub fn depths(&self) -> HashMap<&str, usize> {
        let mut depth: HashMap<&str, usize> =
            self.nodes.iter().map(|n| (n.id.as_str(), 0)).collect();
        for _ in 0..self.nodes.len() {
            let mut changed = false;
            for [from, to] in &self.edges {
                let d = depth.get(from.as_str()).copied().unwrap_or(0) + 1;
                if let Some(t) = depth.get_mut(to.as_str())
                    && *t < d
                {
                    *t = d;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        depth
    }

    /// The nodes pointing at `id`.
    pub fn needs(&self, id: &str) -> Vec<&str> {
        self.edges
            .iter()
            .filter(|[_, to]| to == id)
            .map(|[from, _]| from.as_str())
            .collect()
    }

    /// Nodes in plan order: by depth, then as the opening lists them.
    pub fn plan_order(&self) -> Vec<(usize, &NodeView)> {
        let depths = self.depths();
        let mut out: Vec<(usize, usize, &NodeView)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (depths.get(n.id.as_str()).copied().unwrap_or(0), i, n))
            .collect();
        out.sort_by_key(|&(d, i, _)| (d, i));
        out.into_iter().map(|(d, _, n)| (d, n)).collect()
    }
}

fn blank(id: &str) -> NodeView {
    NodeView {
        id: id.to_owned(),
        state: NodeState::Waiting,
        attempt: 0,
        started_at_ms: None,
        duration_ms: None,
        output_hash: None,
        outputs_json: None,
        note: None,
        request: None,
    }
}

/// One line of the Log pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// By the sender's clock; `None` for agent events (which carry none).
    pub ts_ms: Option<u64>,
    /// The run it belongs to, if any.
    pub trace_id: Option<String>,
    pub text: String,
}

/// The runs reducer.
#[derive(Debug, Default)]
pub struct Runs {
    runs: Vec<RunView>,
    log: VecDeque<LogLine>,
    /// Lines ever logged (the log keeps the last [`LOG_LINES_MAX`]).
    logged: u64,
    /// The latest event time seen.
    now_ms: u64,
}

impl Runs {
    pub fn new() -> Runs {
        Runs::default()
    }

    /// Newest first (by start, then by when first seen).
    pub fn runs(&self) -> &[RunView] {
        &self.runs
    }

    pub fn get(&self, trace_id: &str) -> Option<&RunView> {
        self.runs.iter().find(|r| r.trace_id == trace_id)
    }

    pub fn log(&self) -> &VecDeque<LogLine> {
        &self.log
    }

    pub fn logged(&self) -> u64 {
        self.logged
    }

    pub fn running(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .count()
    }

    fn run_mut(&mut self, trace_id: &str) -> &mut RunView {
        if let Some(i) = self.runs.iter().position(|r| r.trace_id == trace_id) {
            return &mut self.runs[i];
        }
        if self.runs.len() >= RUNS_MAX {
            // Forget the least recently touched finished run, else the least recent.
            let victim = self
                .runs
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| (r.status == RunStatus::Running, r.touched_ms))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.runs.remove(victim);
        }
        self.runs.insert(0, RunView::new(trace_id));
        &mut self.runs[0]
    }

    fn push_log(&mut self, ts_ms: Option<u64>, trace_id: Option<&str>, text: String) {
        if self.log.len() >= LOG_LINES_MAX {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            ts_ms,
            trace_id: trace_id.map(str::to_owned),
            text: text.chars().take(LOG_CHARS_MAX).collect(),
        });
        self.logged += 1;
    }

    /// An agent's lifecycle event, as a log line.
    pub fn on_agent_event(&mut self, event: &RunEvent) {
        let text = agent_event_text(event);
        self.push_log(None, None, text);
    }

    /// One progress event.
    pub fn apply(&mut self, event: &RunProgress) {
        self.fold(event, true);
    }

    fn fold(&mut self, event: &RunProgress, log: bool) {
        let ts = event_ts(event);
        self.now_ms = self.now_ms.max(ts);
        let trace = event.trace_id().to_owned();
        let text = progress_text(event);
        let run = self.run_mut(&trace);
        run.touched_ms = ts;
        match event {
            RunProgress::RunStarted {
                opening,
                nodes,
                edges,
                resumed,
                ts_ms,
                ..
            } => {
                run.opening = opening.clone();
                run.resumed = *resumed;
                run.status = RunStatus::Running;
                run.started_at_ms.get_or_insert(*ts_ms);
                for id in nodes.iter().take(NODES_MAX) {
                    run.node_mut(id);
                }
                run.edges = edges.clone();
                run.planned = true;
            }
            RunProgress::NodeStarted {
                node,
                attempt,
                ts_ms,
                ..
            } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::Running;
                    n.attempt = *attempt;
                    n.started_at_ms.get_or_insert(*ts_ms);
                    n.note = None;
                }
            }
            RunProgress::NodeRetrying {
                node,
                attempt,
                delay_ms,
                error,
                ..
            } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::Retrying;
                    n.attempt = *attempt;
                    n.note = Some(format!(
                        "attempt {attempt} failed: {error}; next in {delay_ms} ms"
                    ));
                }
            }
            RunProgress::NodeWaiting {
                node,
                request_id,
                effect,
                ..
            } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::Confirming;
                    n.note = Some(format!("{effect} waits for a yes ({request_id})"));
                    n.request = Some(request_id.clone());
                }
            }
            RunProgress::NodeDecided {
                node, decision, by, ..
            } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::Running;
                    n.note = Some(format!("{decision} by {by}"));
                    n.request = None;
                }
            }
            RunProgress::NodeSkipped { node, reason, .. } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::Skipped;
                    n.note = Some(reason.clone());
                }
            }
            RunProgress::NodeFinished {
                node,
                status,
                attempts,
                duration_ms,
                output_hash,
                reason,
                ..
            } => {
                if let Some(n) = run.node_mut(node) {
                    n.state = NodeState::of(*status);
                    n.attempt = *attempts;
                    n.duration_ms = Some(*duration_ms);
                    n.output_hash = output_hash.clone();
                    n.note = reason.clone();
                }
            }
            RunProgress::RunFinished {
                status,
                reason,
                duration_ms,
                ..
            } => {
                run.status = *status;
                run.reason = reason.clone();
                run.duration_ms = Some(*duration_ms);
            }
        }
        if log {
            self.push_log(Some(ts), Some(&trace), text);
        }
    }

    /// A run's progress so far as the daemon rebuilt it from its record (`run_state`),
    /// for a run agtop did not see start: it fills in the plan (nodes, edges) and what
    /// agtop does not know yet — a node's start where agtop has nothing, a node's end, the
    /// run's end — without undoing what live events said since (a node waiting for a
    /// person stays so). Not logged: these are not new events.
    pub fn on_state(&mut self, events: &[RunProgress]) {
        for event in events {
            let run = self.run_mut(event.trace_id());
            match event {
                RunProgress::RunStarted {
                    opening,
                    nodes,
                    edges,
                    ts_ms,
                    run_id: _,
                    ..
                } => {
                    if run.opening.is_empty() {
                        run.opening = opening.clone();
                    }
                    run.started_at_ms.get_or_insert(*ts_ms);
                    for id in nodes.iter().take(NODES_MAX) {
                        run.node_mut(id);
                    }
                    if run.edges.is_empty() {
                        run.edges = edges.clone();
                    }
                    run.planned = true;
                }
                RunProgress::NodeStarted { node, attempt, .. } => {
                    if let Some(n) = run.node_mut(node)
                        && n.state == NodeState::Waiting
                    {
                        n.state = NodeState::Running;
                        n.attempt = *attempt;
                    }
                }
                RunProgress::NodeFinished { .. } | RunProgress::RunFinished { .. } => {
                    let finished = match event {
                        RunProgress::NodeFinished { node, .. } => run.node(node).is_some_and(|n| {
                            matches!(
                                n.state,
                                NodeState::Succeeded
                                    | NodeState::Failed
                                    | NodeState::Skipped
                                    | NodeState::Cancelled
                            )
                        }),
                        _ => run.status != RunStatus::Running,
                    };
                    if !finished {
                        self.fold(event, false);
                    }
                }
                _ => {}
            }
        }
    }

    /// The pending confirmations: a node whose request is listed waits for a person; one
    /// whose request is no longer listed was decided (it runs on).
    pub fn on_pending(&mut self, pending: &[ActionInfo]) {
        for run in &mut self.runs {
            for n in &mut run.nodes {
                if n.state == NodeState::Confirming
                    && let Some(request) = &n.request
                    && !pending.iter().any(|a| &a.request_id == request)
                {
                    n.state = NodeState::Running;
                    n.request = None;
                    n.note = Some("decided".into());
                }
            }
        }
        for ActionInfo {
            trace_id,
            node_id: node,
            request_id: request,
            effect,
            ..
        } in pending
        {
            let Some(i) = self.runs.iter().position(|r| &r.trace_id == trace_id) else {
                continue;
            };
            if let Some(n) = self.runs[i].node_mut(node)
                && matches!(n.state, NodeState::Running | NodeState::Waiting)
            {
                n.state = NodeState::Confirming;
                n.note = Some(format!("{effect} waits for a yes ({request})"));
                n.request = Some(request.clone());
            }
        }
    }

    /// A line of the daemon's run list: a run agtop has no events for is added; a known
    /// one takes the list's status (the list is the daemon's word on how it ended).
    pub fn on_summary(&mut self, summary: &RunSummary) {
        let known = self.get(&summary.trace_id).is_some();
        let run = self.run_mut(&summary.trace_id);
        if !known {
            run.touched_ms = summary.started_at_ms.unwrap_or(0);
        }
        if run.opening.is_empty() {
            run.opening = summary.opening.clone();
        }
        run.status = summary.status;
        if summary.reason.is_some() {
            run.reason = summary.reason.clone();
        }
        if run.started_at_ms.is_none() {
            run.started_at_ms = summary.started_at_ms;
        }
        if summary.duration_ms.is_some() {
            run.duration_ms = summary.duration_ms;
        }
    }

    /// The run list, newest first as the daemon sends it; runs agtop already knows
    /// keep their place.
    pub fn on_list(&mut self, summaries: &[RunSummary]) {
        for s in summaries.iter().rev() {
            self.on_summary(s);
        }
    }

    /// A run's final report: every node's status, attempts, times and outputs.
    pub fn on_report(&mut self, report: &RunReport) {
        let run = self.run_mut(&report.trace_id);
        run.opening = report.opening.clone();
        run.status = report.status;
        run.reason = report.reason.clone();
        run.started_at_ms = Some(report.started_at_ms);
        run.duration_ms = Some(report.duration_ms);
        for node in report.nodes.iter().take(NODES_MAX) {
            if let Some(n) = run.node_mut(&node.id) {
                n.state = NodeState::of(node.status);
                n.attempt = node.attempts;
                n.started_at_ms = node.started_at_ms.or(n.started_at_ms);
                n.duration_ms = node.duration_ms.or(n.duration_ms);
                n.output_hash = node.output_hash.clone().or(n.output_hash.take());
                n.outputs_json = node.outputs_json.as_ref().map(|o| cut(o, OUTPUT_BYTES_MAX));
                if node.reason.is_some() {
                    n.note = node.reason.clone();
                }
            }
        }
        run.reported = true;
    }

    /// Finished runs whose report (with outputs) agtop has not folded in yet.
    pub fn unreported(&self) -> impl Iterator<Item = &str> {
        self.runs
            .iter()
            .filter(|r| r.status != RunStatus::Running && !r.reported)
            .map(|r| r.trace_id.as_str())
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn event_ts(event: &RunProgress) -> u64 {
    match event {
        RunProgress::RunStarted { ts_ms, .. }
        | RunProgress::NodeStarted { ts_ms, .. }
        | RunProgress::NodeRetrying { ts_ms, .. }
        | RunProgress::NodeWaiting { ts_ms, .. }
        | RunProgress::NodeDecided { ts_ms, .. }
        | RunProgress::NodeSkipped { ts_ms, .. }
        | RunProgress::NodeFinished { ts_ms, .. }
        | RunProgress::RunFinished { ts_ms, .. } => *ts_ms,
    }
}

/// An agent event in words.
pub fn agent_event_text(event: &RunEvent) -> String {
    match event {
        RunEvent::AgentStarted { agent } => format!("agent {agent} started"),
        RunEvent::AgentStopped { agent } => format!("agent {agent} stopped"),
        RunEvent::AgentRestarted { agent, restarts } => {
            format!("agent {agent} restarted ({restarts} restarts)")
        }
        RunEvent::AgentQuarantined { agent, reason } => {
            format!("agent {agent} quarantined: {reason}")
        }
        RunEvent::AgentReleased { agent } => format!("agent {agent} released"),
    }
}

/// A progress event in words (without its time and run).
pub fn progress_text(event: &RunProgress) -> String {
    match event {
        RunProgress::RunStarted {
            opening,
            nodes,
            resumed,
            ..
        } => format!(
            "run {opening} {} ({} nodes)",
            if *resumed { "resumed" } else { "started" },
            nodes.len()
        ),
        RunProgress::NodeStarted { node, attempt, .. } => {
            format!("{node}: attempt {attempt} started")
        }
        RunProgress::NodeRetrying {
            node,
            attempt,
            delay_ms,
            error,
            ..
        } => format!("{node}: attempt {attempt} failed ({error}); retrying in {delay_ms} ms"),
        RunProgress::NodeWaiting {
            node,
            request_id,
            effect,
            summary,
            ..
        } => format!("{node}: {effect} waits for a yes ({request_id}): {summary}"),
        RunProgress::NodeDecided {
            node,
            request_id,
            decision,
            by,
            reason,
            ..
        } => match reason {
            Some(r) => format!("{node}: {request_id} {decision} by {by} ({r})"),
            None => format!("{node}: {request_id} {decision} by {by}"),
        },
        RunProgress::NodeSkipped { node, reason, .. } => format!("{node}: skipped ({reason})"),
        RunProgress::NodeFinished {
            node,
            status,
            attempts,
            duration_ms,
            reason,
            ..
        } => match reason {
            Some(r) => format!(
                "{node}: {} after {attempts} attempt(s), {duration_ms} ms ({r})",
                status.as_str()
            ),
            None => format!(
                "{node}: {} after {attempts} attempt(s), {duration_ms} ms",
                status.as_str()
            ),
        },
        RunProgress::RunFinished {
            status,
            reason,
            duration_ms,
            ..
        } => match reason {
            Some(r) => format!("run {} in {duration_ms} ms ({r})", status.as_str()),
            None => format!("run {} in {duration_ms} ms", status.as_str()),
        },
    }
}

/// Why a line of an `--events` file was not taken (closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventLineError {
    TooLong { bytes: usize },
    NotAnEvent { message: String },
}

impl std::fmt::Display for EventLineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventLineError::TooLong { bytes } => {
                write!(
                    f,
                    "{bytes} bytes, over the {EVENT_LINE_BYTES_MAX}-byte limit"
                )
            }
            EventLineError::NotAnEvent { message } => write!(f, "not a run event: {message}"),
        }
    }
}

/// Longest line of an `--events` file taken.
pub const EVENT_LINE_BYTES_MAX: usize = 1024 * 1024;

/// One NDJSON line of `rlp run --events` as an event; blank lines are `Ok(None)`.
pub fn parse_event_line(line: &str) -> Result<Option<RunProgress>, EventLineError> {
    if line.len() > EVENT_LINE_BYTES_MAX {
        return Err(EventLineError::TooLong { bytes: line.len() });
    }
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(line)
        .map(Some)
        .map_err(|e| EventLineError::NotAnEvent {
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{progress, report};

    #[test]
    fn events_build_the_plan_with_depths_and_states() {
        let mut runs = Runs::new();
        for e in progress() {
            runs.apply(&e);
        }
        let run = runs.get(crate::fixtures::RUN).unwrap();
        assert_eq!(run.opening, "compose_email");
        let order: Vec<(usize, &str, NodeState)> = run
            .plan_order()
            .into_iter()
            .map(|(d, n)| (d, n.id.as_str(), n.state))
            .collect();
        assert_eq!(
            order,
            vec![
                (0, "contact", NodeState::Succeeded),
                (0, "context", NodeState::Succeeded),
                (1, "draft", NodeState::Succeeded),
                (2, "review", NodeState::Succeeded),
                (3, "send", NodeState::Confirming),
            ]
        );
        assert_eq!(run.needs("send"), vec!["draft", "review"]);
        assert_eq!(run.node("draft").unwrap().attempt, 2, "retried once");
        assert_eq!(runs.running(), 1);
        assert_eq!(runs.log().len(), progress().len());
        assert!(
            runs.log()[6].text.contains("retrying in 200 ms"),
            "{:?}",
            runs.log()[6]
        );
    }

    #[test]
    fn the_report_brings_outputs_and_the_list_adds_unknown_runs() {
        let mut runs = Runs::new();
        for e in progress() {
            runs.apply(&e);
        }
        runs.on_list(&[RunSummary {
            trace_id: "bb".into(),
            opening: "other".into(),
            status: RunStatus::Failed,
            reason: Some("node x failed".into()),
            started_at_ms: Some(5),
            duration_ms: Some(9),
        }]);
        assert_eq!(runs.runs().len(), 2);
        assert_eq!(runs.unreported().collect::<Vec<_>>(), vec!["bb"]);
        runs.on_report(&report());
        let run = runs.get(crate::fixtures::RUN).unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(run.reported);
        let send = run.node("send").unwrap();
        assert_eq!(send.state, NodeState::Succeeded);
        assert!(send.outputs_json.as_deref().unwrap().contains("message_id"));
    }

    #[test]
    fn a_run_seen_late_gets_its_plan_from_its_state_without_undoing_live_events() {
        let mut runs = Runs::new();
        // Live: only the send's wait was seen (agtop started mid-run).
        runs.apply(&progress()[12]);
        assert_eq!(runs.get(crate::fixtures::RUN).unwrap().nodes.len(), 1);
        // The daemon's rebuilt state: the plan, starts, ends.
        let mut state = vec![progress()[0].clone()];
        state.extend(progress().into_iter().filter(|e| match e {
            RunProgress::NodeFinished { .. } => true,
            RunProgress::NodeStarted { node, .. } => node == "send",
            _ => false,
        }));
        runs.on_state(&state);
        let run = runs.get(crate::fixtures::RUN).unwrap();
        assert_eq!(run.nodes.len(), 5);
        assert_eq!(run.edges.len(), 5);
        assert_eq!(run.node("draft").unwrap().state, NodeState::Succeeded);
        assert_eq!(
            run.node("send").unwrap().state,
            NodeState::Confirming,
            "a start from the record does not undo the live wait"
        );
        assert_eq!(runs.log().len(), 1, "state is not logged as new events");
        // The request decided elsewhere: gone from the pending list, the node runs on.
        runs.on_pending(&[]);
        let send = runs
            .get(crate::fixtures::RUN)
            .unwrap()
            .node("send")
            .unwrap();
        assert_eq!(send.state, NodeState::Running);
        // Listed again (a new request): waiting once more.
        runs.on_pending(&[ActionInfo {
            request_id: "cf-2".into(),
            ..crate::fixtures::action()
        }]);
        let send = runs
            .get(crate::fixtures::RUN)
            .unwrap()
            .node("send")
            .unwrap();
        assert_eq!(send.state, NodeState::Confirming);
        assert_eq!(send.request.as_deref(), Some("cf-2"));
    }

    #[test]
    fn the_log_and_the_runs_stay_bounded() {
        let mut runs = Runs::new();
        for i in 0..(RUNS_MAX + 10) {
            runs.apply(&RunProgress::RunFinished {
                ts_ms: i as u64,
                trace_id: format!("{i:032x}"),
                status: RunStatus::Succeeded,
                reason: None,
                duration_ms: 1,
                result_hash: String::new(),
            });
        }
        assert_eq!(runs.runs().len(), RUNS_MAX);
        assert!(
            runs.get(&format!("{:032x}", 0)).is_none(),
            "the oldest went first"
        );
        for _ in 0..LOG_LINES_MAX {
            runs.on_agent_event(&RunEvent::AgentStarted {
                agent: "a".repeat(1_000),
            });
        }
        assert_eq!(runs.log().len(), LOG_LINES_MAX);
        assert!(
            runs.log()
                .iter()
                .all(|l| l.text.chars().count() <= LOG_CHARS_MAX)
        );
        assert_eq!(runs.logged(), (RUNS_MAX + 10 + LOG_LINES_MAX) as u64);
    }

    #[test]
    fn event_lines_parse_or_say_why_not() {
        let line = serde_json::to_string(&progress()[0]).unwrap();
        assert_eq!(
            parse_event_line(&line).unwrap(),
            Some(progress()[0].clone())
        );
        assert_eq!(parse_event_line("  ").unwrap(), None);
        let err = parse_event_line("{\"event\":\"run.exploded\"}").unwrap_err();
        assert!(err.to_string().starts_with("not a run event: "), "{err}");
        let long = "x".repeat(EVENT_LINE_BYTES_MAX + 1);
        assert_eq!(
            parse_event_line(&long).unwrap_err(),
            EventLineError::TooLong {
                bytes: EVENT_LINE_BYTES_MAX + 1
            }
        );
    }
}
