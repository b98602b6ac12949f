//! The screen's state and what each key does. Pure: a key changes the state and may ask
//! for one control command; the binary sends it and feeds the answer back through
//! [`App::on_outcome`]. No terminal, socket or clock here.

use runloop_proto::payloads::{
    ActionInfo, ControlCommand, ControlOutcome, RunEvent, RunProgress, RunStatus, StatusSnapshot,
    TraceView,
};

use crate::cgroup::CgroupUsage;
use crate::model::{Monitor, Row, RowKind};
use crate::runs::{RunView, Runs};
use crate::view::{Line, Mode, ViewState};

/// Who agtop says it is when it decides a confirmation.
pub const DECIDED_BY: &str = "agtop";
/// Most pending confirmations and runs kept from one answer.
pub const LIST_ITEMS_MAX: usize = 64;
/// Longest status line kept, in characters.
pub const STATUS_CHARS_MAX: usize = 240;
/// Most finished runs' reports asked for in one poll.
pub const REPORTS_PER_POLL: usize = 2;

/// A key, as the app understands it (the binary maps terminal events to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    PageUp,
    PageDown,
    Enter,
    Esc,
    Backspace,
    Char(char),
}

/// What a key asks the binary to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    Send(ControlCommand),
    Quit,
}

/// Why the run picker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The run the Plan, Log, Trace and Artifacts panes show.
    Show,
    Cancel,
}

/// The pane under the actor table (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    /// The selected actor: figures, cgroup limits and usage, last error, sparklines, log.
    #[default]
    Detail,
    /// The selected run's DAG, node states and attempts.
    Plan,
    /// Run and agent events, newest last (follow mode keeps the tail in view).
    Log,
    /// The selected run's ladder.
    Trace,
    /// The selected run's node outputs (drafts, results).
    Artifacts,
}

impl Pane {
    pub const ALL: [Pane; 5] = [
        Pane::Detail,
        Pane::Plan,
        Pane::Log,
        Pane::Trace,
        Pane::Artifacts,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Detail => "detail",
            Pane::Plan => "plan",
            Pane::Log => "log",
            Pane::Trace => "trace",
            Pane::Artifacts => "artifacts",
        }
    }

    fn next(self) -> Pane {
        let i = Pane::ALL.iter().position(|&p| p == self).unwrap_or(0);
        Pane::ALL[(i + 1) % Pane::ALL.len()]
    }
}

/// Where agtop's data comes from (closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A live daemon at this socket.
    Daemon(String),
    /// An `rlp run --events` NDJSON file (`-` for standard input); no daemon, read-only.
    Events(String),
}

/// What covers the main view (closed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Overlay {
    #[default]
    None,
    Help,
    /// The pending confirmations, one shown at a time.
    Confirm {
        index: usize,
    },
    /// A yes/no question before sending `command`.
    Ask {
        question: String,
        command: ControlCommand,
    },
    /// Choosing one of the known runs.
    Runs {
        pick: Pick,
        index: usize,
    },
}

/// The trace pane's data: one run's ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePane {
    pub trace_id: String,
    /// `None` while the daemon has not answered.
    pub view: Option<TraceView>,
}

/// Everything the screen shows.
#[derive(Debug, Default)]
pub struct App {
    pub monitor: Monitor,
    pub view: ViewState,
    /// The selected row's key (kept across snapshots and re-sorts).
    selected: Option<String>,
    pub overlay: Overlay,
    /// The ladder of the shown run, once asked for.
    pub trace: Option<TracePane>,
    /// The filter being typed (`/`), shown in the footer until Enter or Esc.
    pub filter_input: Option<String>,
    pub actions: Vec<ActionInfo>,
    pub runs: Runs,
    /// The run the panes show; `None`: the newest running run, else the newest.
    pub run: Option<String>,
    pub pane: Pane,
    /// The pane fills the screen (the table hidden); ↑↓ then scroll it.
    pub zoom: bool,
    /// Lines scrolled from the top of the pane.
    pub scroll: u16,
    /// The Log pane keeps its newest line in view.
    pub follow: bool,
    pub status: String,
    pub source: Source,
    /// `/proc/loadavg`'s three figures, read by the live loop.
    pub load: Option<[f64; 3]>,
    /// The selected agent's cgroup limits and usage, read by the live loop.
    pub cgroup: Option<(String, CgroupUsage)>,
    /// Fold the tree below the root when the first snapshot arrives (`--collapsed`).
    pub start_collapsed: bool,
    pub color: bool,
}

impl Default for Source {
    fn default() -> Source {
        Source::Daemon(String::new())
    }
}

impl App {
    /// Watching a daemon at `socket`.
    pub fn new(socket: String, color: bool) -> App {
        App {
            source: Source::Daemon(socket),
            follow: true,
            color,
            ..App::default()
        }
    }

    /// Reading an `--events` file: no daemon, the plan pane filling the screen.
    pub fn events(label: String, color: bool) -> App {
        App {
            source: Source::Events(label),
            pane: Pane::Plan,
            zoom: true,
            follow: true,
            color,
            ..App::default()
        }
    }

    pub fn live(&self) -> bool {
        matches!(self.source, Source::Daemon(_))
    }

    /// The run the panes show.
    pub fn shown_run(&self) -> Option<&RunView> {
        let runs = self.runs.runs();
        match &self.run {
            Some(id) => self.runs.get(id),
            None => runs
                .iter()
                .find(|r| r.status == RunStatus::Running)
                .or(runs.first()),
        }
    }

    /// What the live loop asks the daemon each poll: the pending confirmations, the run
    /// list, the shown run's ladder while the trace pane is open (again while it runs),
    /// and the report of each finished run whose outputs agtop has not seen.
    pub fn poll_commands(&self) -> Vec<ControlCommand> {
        if !self.live() {
            return Vec::new();
        }
        let mut out = vec![
            ControlCommand::ConfirmList,
            ControlCommand::RunList {
                limit: crate::live::RUNS_LIMIT,
            },
        ];
        if let Some(cmd) = self.trace_wanted() {
            out.push(cmd);
        }
        // The shown run's state from its record, once, when agtop did not see it start:
        // live events keep it current after that (the daemon rebuilds it from the POG and
        // validates the opening for each ask, so not every second).
        if let Some(run) = self.shown_run()
            && run.status == RunStatus::Running
            && !run.planned
        {
            out.push(ControlCommand::RunShow {
                trace_id: run.trace_id.clone(),
            });
        }
        for trace_id in self.runs.unreported().take(REPORTS_PER_POLL) {
            out.push(ControlCommand::RunWatch {
                trace_id: trace_id.to_owned(),
                watch: false,
            });
        }
        out
    }

    /// The trace the pane needs: none yet, or a newer one while the run runs.
    fn trace_wanted(&self) -> Option<ControlCommand> {
        if self.pane != Pane::Trace || !self.live() {
            return None;
        }
        let run = self.shown_run()?;
        let have = self
            .trace
            .as_ref()
            .is_some_and(|t| t.trace_id == run.trace_id && t.view.is_some());
        (!have || run.status == RunStatus::Running).then(|| ControlCommand::TraceShow {
            trace_id: run.trace_id.clone(),
        })
    }

    /// The table's lines as the view shows them now.
    pub fn lines(&self) -> Vec<Line> {
        self.view.lines(self.monitor.rows())
    }

    /// Where the selection is among `lines` (the first line when nothing is selected or
    /// the selected actor is gone).
    pub fn selected_index(&self, lines: &[Line]) -> Option<usize> {
        if lines.is_empty() {
            return None;
        }
        let rows = self.monitor.rows();
        let found = self
            .selected
            .as_deref()
            .and_then(|k| lines.iter().position(|l| rows[l.row].key == k));
        Some(found.unwrap_or(0))
    }

    pub fn selected_row(&self) -> Option<&Row> {
        let lines = self.lines();
        let i = self.selected_index(&lines)?;
        Some(&self.monitor.rows()[lines[i].row])
    }

    pub fn set_status(&mut self, text: impl Into<String>) {
        self.status = text.into().chars().take(STATUS_CHARS_MAX).collect();
    }

    pub fn on_snapshot(&mut self, snapshot: &StatusSnapshot) {
        self.monitor.apply(snapshot);
        if self.start_collapsed && !self.monitor.rows().is_empty() {
            self.view.collapse_all(self.monitor.rows());
            self.start_collapsed = false;
        }
    }

    pub fn on_event(&mut self, event: &RunEvent) {
        self.runs.on_agent_event(event);
        self.set_status(crate::runs::agent_event_text(event));
    }

    /// One run's progress (from the daemon's stream or an events file).
    pub fn on_progress(&mut self, event: &RunProgress) {
        self.runs.apply(event);
    }

    /// Folds in the daemon's answer to a command this app asked for.
    pub fn on_outcome(&mut self, outcome: ControlOutcome) {
        match outcome {
            ControlOutcome::Actions { mut actions } => {
                actions.truncate(LIST_ITEMS_MAX);
                self.runs.on_pending(&actions);
                self.actions = actions;
                if let Overlay::Confirm { index } = &mut self.overlay {
                    if self.actions.is_empty() {
                        self.overlay = Overlay::None;
                    } else {
                        *index = (*index).min(self.actions.len() - 1);
                    }
                }
            }
            ControlOutcome::Runs { mut runs } => {
                runs.truncate(LIST_ITEMS_MAX);
                self.runs.on_list(&runs);
            }
            ControlOutcome::RunFinished { report } => self.runs.on_report(&report),
            ControlOutcome::RunState { events } => self.runs.on_state(&events),
            ControlOutcome::Trace { view } => {
                if self
                    .shown_run()
                    .is_some_and(|r| r.trace_id == view.trace_id)
                {
                    self.trace = Some(TracePane {
                        trace_id: view.trace_id.clone(),
                        view: Some(view),
                    });
                }
            }
            ControlOutcome::Decided {
                request_id,
                decision,
                by,
            } => {
                self.actions.retain(|a| a.request_id != request_id);
                self.set_status(format!("{request_id}: {decision} by {by}"));
            }
            ControlOutcome::AgentStopped { agent } => self.set_status(format!("stopped {agent}")),
            ControlOutcome::Released { agent, reason } => {
                self.set_status(format!("released {agent} (was: {reason})"));
            }
            ControlOutcome::RunCancelled { trace_id } => {
                self.set_status(format!("cancel sent to run {trace_id}"));
            }
            ControlOutcome::Failed { code, message } => {
                self.set_status(format!("{code}: {message}"));
            }
            other => self.set_status(format!("unexpected answer: {other:?}")),
        }
    }

    /// One key.
    pub fn on_key(&mut self, key: Key) -> Effect {
        if let Some(text) = &mut self.filter_input {
            match key {
                Key::Enter => self.filter_input = None,
                Key::Esc => {
                    self.filter_input = None;
                    self.view.set_filter("");
                }
                Key::Backspace => {
                    text.pop();
                    let t = text.clone();
                    self.view.set_filter(&t);
                }
                Key::Char(c) => {
                    text.push(c);
                    let t = text.clone();
                    self.view.set_filter(&t);
                    *text = self.view.filter().to_owned();
                }
                _ => {}
            }
            return Effect::Nothing;
        }
        match std::mem::take(&mut self.overlay) {
            Overlay::None => {}
            Overlay::Help => return Effect::Nothing,
            Overlay::Confirm { index } => return self.confirm_key(index, key),
            Overlay::Ask { question, command } => {
                return match key {
                    Key::Char('y') => Effect::Send(command),
                    Key::Char('n') | Key::Esc | Key::Char('q') => Effect::Nothing,
                    _ => {
                        self.overlay = Overlay::Ask { question, command };
                        Effect::Nothing
                    }
                };
            }
            Overlay::Runs { pick, index } => return self.runs_key(pick, index, key),
        }
        if self.zoom {
            match key {
                Key::Up | Key::Char('k') => return self.scroll_by(-1),
                Key::Down | Key::Char('j') => return self.scroll_by(1),
                Key::PageUp => return self.scroll_by(-10),
                Key::PageDown => return self.scroll_by(10),
                Key::Esc => {
                    self.zoom = false;
                    return Effect::Nothing;
                }
                _ => {}
            }
        }
        self.main_key(key)
    }

    fn main_key(&mut self, key: Key) -> Effect {
        if !self.live() && matches!(key, Key::Char('a' | 'x' | 'r' | 'c')) {
            self.set_status("no daemon: agtop is reading an events file (read-only)");
            return Effect::Nothing;
        }
        match key {
            Key::Char('q') => return Effect::Quit,
            Key::Up | Key::Char('k') => self.move_by(-1),
            Key::Down | Key::Char('j') => self.move_by(1),
            Key::PageUp => self.move_by(-10),
            Key::PageDown => self.move_by(10),
            Key::Enter | Key::Char(' ') => {
                if let Some(row) = self.selected_row().filter(|r| r.has_children) {
                    let key = row.key.clone();
                    self.view.toggle_collapsed(&key);
                }
            }
            Key::Char('t') => {
                self.view.mode = match self.view.mode {
                    Mode::Tree => Mode::Flat,
                    Mode::Flat => Mode::Tree,
                };
            }
            Key::Char('s') => self.view.next_sort(),
            Key::Char('S') => self.view.reverse_sort(),
            Key::Char('/') => self.filter_input = Some(self.view.filter().to_owned()),
            Key::Esc => self.view.set_filter(""),
            Key::Char('?') => self.overlay = Overlay::Help,
            Key::Char('a') => {
                if self.actions.is_empty() {
                    self.set_status("no pending confirmations");
                } else {
                    self.overlay = Overlay::Confirm { index: 0 };
                }
            }
            Key::Char('x') => self.ask_agent(false),
            Key::Char('r') => self.ask_agent(true),
            Key::Char('c') => self.open_runs(Pick::Cancel),
            Key::Char('R') => self.open_runs(Pick::Show),
            Key::Char('\t') => return self.show_pane(self.pane.next()),
            Key::Char(c @ '1'..='5') => {
                return self.show_pane(Pane::ALL[c as usize - '1' as usize]);
            }
            Key::Char('T') => return self.show_pane(Pane::Trace),
            Key::Char('p') => return self.show_pane(Pane::Plan),
            Key::Char('l') => return self.show_pane(Pane::Log),
            Key::Char('o') => return self.show_pane(Pane::Artifacts),
            Key::Char('z') => self.zoom = !self.zoom,
            Key::Char('f') => {
                self.follow = !self.follow;
                self.set_status(if self.follow {
                    "log: following the newest line"
                } else {
                    "log: follow off (z, then ↑↓ scroll)"
                });
            }
            Key::Char('[') => return self.scroll_by(-1),
            Key::Char(']') => return self.scroll_by(1),
            _ => {}
        }
        Effect::Nothing
    }

    /// Shows `pane`; the trace pane asks for its ladder at once.
    fn show_pane(&mut self, pane: Pane) -> Effect {
        if self.pane != pane {
            self.scroll = 0;
        }
        self.pane = pane;
        match self.trace_wanted() {
            Some(cmd) => Effect::Send(cmd),
            None => Effect::Nothing,
        }
    }

    fn scroll_by(&mut self, delta: i32) -> Effect {
        if self.pane == Pane::Log && delta < 0 {
            self.follow = false;
        }
        self.scroll = self
            .scroll
            .saturating_add_signed(delta.clamp(-1_000, 1_000) as i16);
        Effect::Nothing
    }

    fn move_by(&mut self, delta: isize) {
        let lines = self.lines();
        let Some(i) = self.selected_index(&lines) else {
            return;
        };
        let j = i.saturating_add_signed(delta).min(lines.len() - 1);
        self.selected = Some(self.monitor.rows()[lines[j].row].key.clone());
    }

    fn ask_agent(&mut self, release: bool) {
        let agent = match self.selected_row() {
            Some(Row {
                kind: RowKind::Agent,
                info: Some(runloop_proto::payloads::ActorInfo::Agent(a)),
                ..
            }) => a.name.clone(),
            _ => {
                self.set_status("select an agent first");
                return;
            }
        };
        self.overlay = if release {
            Overlay::Ask {
                question: format!("release agent {agent} from quarantine?"),
                command: ControlCommand::AgentRelease { agent },
            }
        } else {
            Overlay::Ask {
                question: format!("stop agent {agent}? (its sandbox is shut down)"),
                command: ControlCommand::AgentStop { agent },
            }
        };
    }

    fn open_runs(&mut self, pick: Pick) {
        let candidates = self.pickable(pick);
        if candidates.is_empty() {
            self.set_status(match pick {
                Pick::Show => "no runs known yet",
                Pick::Cancel => "no running runs",
            });
            return;
        }
        self.overlay = Overlay::Runs { pick, index: 0 };
    }

    /// The runs the picker lists: every known run for a trace, running ones to cancel.
    pub fn pickable(&self, pick: Pick) -> Vec<&RunView> {
        self.runs
            .runs()
            .iter()
            .filter(|r| pick == Pick::Show || r.status == RunStatus::Running)
            .collect()
    }

    fn runs_key(&mut self, pick: Pick, index: usize, key: Key) -> Effect {
        let count = self.pickable(pick).len();
        match key {
            Key::Esc | Key::Char('q') => {}
            Key::Up | Key::Char('k') => {
                self.overlay = Overlay::Runs {
                    pick,
                    index: index.saturating_sub(1),
                };
            }
            Key::Down | Key::Char('j') => {
                self.overlay = Overlay::Runs {
                    pick,
                    index: (index + 1).min(count.saturating_sub(1)),
                };
            }
            Key::Enter => {
                let Some(run) = self.pickable(pick).get(index).map(|r| r.trace_id.clone()) else {
                    return Effect::Nothing;
                };
                match pick {
                    Pick::Show => {
                        self.run = Some(run);
                        self.scroll = 0;
                        return match self.trace_wanted() {
                            Some(cmd) => Effect::Send(cmd),
                            None => Effect::Nothing,
                        };
                    }
                    Pick::Cancel => {
                        self.overlay = Overlay::Ask {
                            question: format!("cancel run {run}?"),
                            command: ControlCommand::RunCancel { trace_id: run },
                        };
                    }
                }
            }
            _ => self.overlay = Overlay::Runs { pick, index },
        }
        Effect::Nothing
    }

    fn confirm_key(&mut self, index: usize, key: Key) -> Effect {
        let Some(action) = self.actions.get(index) else {
            return Effect::Nothing;
        };
        let decide = |approve: bool| ControlCommand::ConfirmDecide {
            request_id: action.request_id.clone(),
            approve,
            payload_hash: action.payload_hash.clone(),
            by: DECIDED_BY.into(),
            reason: None,
        };
        match key {
            Key::Char('y') => Effect::Send(decide(true)),
            Key::Char('n') => Effect::Send(decide(false)),
            Key::Esc | Key::Char('q') => Effect::Nothing,
            Key::Up | Key::Char('k') => {
                self.overlay = Overlay::Confirm {
                    index: index.saturating_sub(1),
                };
                Effect::Nothing
            }
            Key::Down | Key::Char('j') => {
                self.overlay = Overlay::Confirm {
                    index: (index + 1).min(self.actions.len() - 1),
                };
                Effect::Nothing
            }
            _ => {
                self.overlay = Overlay::Confirm { index };
                Effect::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{action, snapshot, tree};

    fn app() -> App {
        let mut app = App::new("/tmp/rmp.sock".into(), false);
        app.on_snapshot(&snapshot(1, 1_000, tree(0, 0)));
        app
    }

    fn select(app: &mut App, name: &str) {
        for _ in 0..64 {
            if app.selected_row().unwrap().name == name {
                return;
            }
            app.on_key(Key::Down);
        }
        panic!("no row {name}");
    }

    #[test]
    fn confirm_sends_the_shown_payload_hash_as_agtop() {
        let mut app = app();
        assert_eq!(app.on_key(Key::Char('a')), Effect::Nothing);
        assert_eq!(app.overlay, Overlay::None, "nothing pending yet");
        app.on_outcome(ControlOutcome::Actions {
            actions: vec![action()],
        });
        app.on_key(Key::Char('a'));
        assert_eq!(app.overlay, Overlay::Confirm { index: 0 });
        let Effect::Send(ControlCommand::ConfirmDecide {
            request_id,
            approve,
            payload_hash,
            by,
            ..
        }) = app.on_key(Key::Char('y'))
        else {
            panic!("no decision sent");
        };
        assert_eq!(request_id, "cf-7a1e");
        assert!(approve);
        assert_eq!(payload_hash, action().payload_hash);
        assert_eq!(by, DECIDED_BY);
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn stop_asks_first_and_only_for_an_agent() {
        let mut app = app();
        app.on_key(Key::Char('x'));
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.status, "select an agent first");
        select(&mut app, "agent-writer");
        app.on_key(Key::Char('x'));
        assert!(matches!(app.overlay, Overlay::Ask { .. }));
        assert_eq!(app.on_key(Key::Char('n')), Effect::Nothing);
        assert_eq!(app.overlay, Overlay::None);
        app.on_key(Key::Char('r'));
        assert_eq!(
            app.on_key(Key::Char('y')),
            Effect::Send(ControlCommand::AgentRelease {
                agent: "writer".into()
            })
        );
    }

    #[test]
    fn enter_folds_the_selected_node_and_selection_survives_resorting() {
        let mut app = app();
        select(&mut app, "system");
        let before = app.lines().len();
        app.on_key(Key::Enter);
        assert_eq!(app.lines().len(), before - 8);
        app.on_key(Key::Char('t'));
        app.on_key(Key::Char('s'));
        app.on_key(Key::Char('S'));
        assert_eq!(app.selected_row().unwrap().name, "system");
    }

    #[test]
    fn filter_typing_narrows_and_escape_clears() {
        let mut app = app();
        for k in [
            Key::Char('/'),
            Key::Char('c'),
            Key::Char('r'),
            Key::Char('i'),
        ] {
            app.on_key(k);
        }
        assert_eq!(app.view.filter(), "cri");
        // Keys go to the filter while it is typed, not to the commands.
        assert_eq!(app.on_key(Key::Char('q')), Effect::Nothing);
        app.on_key(Key::Backspace);
        app.on_key(Key::Enter);
        assert_eq!(app.view.filter(), "cri");
        app.on_key(Key::Esc);
        assert_eq!(app.view.filter(), "");
    }

    fn run(id: &str, status: RunStatus) -> runloop_proto::payloads::RunSummary {
        runloop_proto::payloads::RunSummary {
            trace_id: id.into(),
            opening: "compose_email".into(),
            status,
            reason: None,
            started_at_ms: Some(1),
            duration_ms: None,
        }
    }

    #[test]
    fn the_trace_pane_asks_for_the_shown_run_and_cancel_picks_a_running_one() {
        let mut app = app();
        app.on_key(Key::Char('R'));
        assert_eq!(app.status, "no runs known yet");
        assert_eq!(
            app.on_key(Key::Char('T')),
            Effect::Nothing,
            "no run to trace"
        );
        assert_eq!(app.pane, Pane::Trace);
        app.on_outcome(ControlOutcome::Runs {
            runs: vec![
                run("bb", RunStatus::Running),
                run("aa", RunStatus::Succeeded),
            ],
        });
        // The newest running run is shown by default; the pane asks for its ladder each
        // poll while it runs.
        assert_eq!(app.shown_run().unwrap().trace_id, "bb");
        let polls = app.poll_commands();
        assert!(polls.contains(&ControlCommand::TraceShow {
            trace_id: "bb".into()
        }));
        // Its plan, once: agtop did not see it start.
        let show = ControlCommand::RunShow {
            trace_id: "bb".into(),
        };
        assert!(polls.contains(&show));
        app.on_outcome(ControlOutcome::RunState {
            events: vec![RunProgress::RunStarted {
                ts_ms: 1,
                trace_id: "bb".into(),
                run_id: "r1".into(),
                opening: "compose_email".into(),
                nodes: vec!["send".into()],
                edges: vec![],
                resumed: false,
            }],
        });
        assert!(
            !app.poll_commands().contains(&show),
            "live events keep it current"
        );
        // A finished run's report (its outputs) is asked for once.
        assert!(polls.contains(&ControlCommand::RunWatch {
            trace_id: "aa".into(),
            watch: false
        }));
        app.on_key(Key::Char('R'));
        app.on_key(Key::Down);
        assert_eq!(
            app.on_key(Key::Enter),
            Effect::Send(ControlCommand::TraceShow {
                trace_id: "aa".into()
            })
        );
        assert_eq!(app.shown_run().unwrap().trace_id, "aa");
        app.on_outcome(ControlOutcome::Trace {
            view: TraceView {
                trace_id: "aa".into(),
                ..crate::fixtures::trace_view()
            },
        });
        assert!(
            !app.poll_commands()
                .iter()
                .any(|c| matches!(c, ControlCommand::TraceShow { .. })),
            "a finished run's ladder is asked for once"
        );
        app.on_key(Key::Char('c'));
        app.on_key(Key::Enter);
        assert_eq!(
            app.on_key(Key::Char('y')),
            Effect::Send(ControlCommand::RunCancel {
                trace_id: "bb".into()
            })
        );
    }

    #[test]
    fn panes_switch_by_number_and_tab_and_zoom_scrolls_instead_of_moving() {
        let mut app = app();
        app.on_key(Key::Char('2'));
        assert_eq!(app.pane, Pane::Plan);
        app.on_key(Key::Char('\t'));
        assert_eq!(app.pane, Pane::Log);
        app.on_key(Key::Char('5'));
        app.on_key(Key::Char('\t'));
        assert_eq!(app.pane, Pane::Detail, "tab wraps around");
        let before = app.selected_row().unwrap().key.clone();
        app.on_key(Key::Char('l'));
        app.on_key(Key::Char('z'));
        app.on_key(Key::Down);
        app.on_key(Key::Down);
        assert_eq!(app.selected_row().unwrap().key, before, "zoomed: ↓ scrolls");
        assert_eq!(app.scroll, 2);
        app.on_key(Key::Up);
        assert!(!app.follow, "scrolling the log up stops following");
        app.on_key(Key::Char('f'));
        assert!(app.follow);
        app.on_key(Key::Esc);
        assert!(!app.zoom);
        app.on_key(Key::Down);
        assert_ne!(app.selected_row().unwrap().key, before, "unzoomed: ↓ moves");
    }

    #[test]
    fn the_tree_can_start_collapsed() {
        let mut app = App::new("/tmp/rmp.sock".into(), false);
        app.start_collapsed = true;
        app.on_snapshot(&crate::fixtures::snapshot(
            1,
            1_000,
            crate::fixtures::tree(0, 0),
        ));
        let names: Vec<&str> = app
            .lines()
            .iter()
            .map(|l| app.monitor.rows()[l.row].name.as_str())
            .collect();
        assert_eq!(names, ["root", "system", "runs"]);
        // Only the first snapshot folds: what the person unfolds stays unfolded.
        select(&mut app, "runs");
        app.on_key(Key::Enter);
        app.on_snapshot(&crate::fixtures::snapshot(
            2,
            2_000,
            crate::fixtures::tree(0, 0),
        ));
        assert_eq!(
            app.lines().len(),
            5,
            "runs unfolded: its two run supervisors show"
        );
    }

    #[test]
    fn an_events_file_app_never_asks_a_daemon() {
        let mut app = App::events("run.ndjson".into(), false);
        for e in crate::fixtures::progress() {
            app.on_progress(&e);
        }
        assert_eq!(app.pane, Pane::Plan);
        assert!(app.zoom);
        assert!(app.poll_commands().is_empty());
        app.on_key(Key::Char('4'));
        assert!(app.poll_commands().is_empty());
        app.on_key(Key::Char('a'));
        assert!(app.status.starts_with("no daemon"), "{}", app.status);
        assert_eq!(app.shown_run().unwrap().trace_id, crate::fixtures::RUN);
    }
}
