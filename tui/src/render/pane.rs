//! The run pane below the actor table: its tabs (plan, log, trace, artifact) for the run
//! the pane shows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use runloop_client::trace::{LadderOptions, ladder};

use super::{ARTIFACT_CHARS_MAX, clock_text, detail_lines, ms_text};
use crate::app::{App, Pane};
use crate::runs::{NodeState, RunView};

/// The pane's tabs as its title; the shown one bracketed (visible without colour too).
fn pane_title(app: &App, extra: &str) -> TextLine<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (i, pane) in Pane::ALL.iter().enumerate() {
        let text = format!("{} {}", i + 1, pane.title());
        if *pane == app.pane {
            spans.push(Span::styled(
                format!("[{text}]"),
                app.accent(Color::Cyan).add_modifier(Modifier::BOLD),
            ));
        } else {
            spans.push(Span::styled(format!(" {text} "), app.dim()));
        }
    }
    if !extra.is_empty() {
        spans.push(Span::raw(format!(" {extra} ")));
    }
    TextLine::from(spans)
}

pub(super) fn draw_pane(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let run = app.shown_run();
    let extra = match (app.pane, run) {
        (Pane::Detail, _) => String::new(),
        (Pane::Log, _) if app.follow => "following".into(),
        (Pane::Log, _) => format!("line {}", app.scroll + 1),
        (_, Some(r)) => format!(
            "{} {} {}{}",
            r.opening,
            short(&r.trace_id),
            r.status.as_str(),
            r.duration_ms
                .map_or_else(String::new, |d| format!(" {}", ms_text(d)))
        ),
        (_, None) => String::new(),
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .title(pane_title(app, &extra));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = match app.pane {
        Pane::Detail => match app.selected_row() {
            Some(row) => detail_lines(app, row, inner.width as usize),
            None if app.live() => vec![TextLine::from("no actors yet")],
            None => vec![TextLine::from("no actors: agtop is reading an events file")],
        },
        Pane::Log => log_lines(app, inner.height as usize),
        _ => match run {
            None => vec![TextLine::from(if app.live() {
                "no runs yet: start one with `rlp run <opening.yaml>`"
            } else {
                "no run events read yet"
            })],
            Some(run) => match app.pane {
                Pane::Plan => plan_lines(app, run),
                Pane::Trace => trace_lines(app, run, inner.width as usize),
                _ => artifact_lines(app, run),
            },
        },
    };
    let scroll = if app.pane == Pane::Log { 0 } else { app.scroll };
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
}

/// The first eight digits of a trace id.
fn short(trace_id: &str) -> &str {
    trace_id.get(..8).unwrap_or(trace_id)
}

impl App {
    fn node_style(&self, state: NodeState) -> Style {
        match state {
            NodeState::Succeeded => self.accent(Color::Green),
            NodeState::Running => self.accent(Color::Cyan),
            NodeState::Confirming | NodeState::Retrying => self.accent(Color::Yellow),
            NodeState::Failed | NodeState::Cancelled => self.accent(Color::Red),
            NodeState::Waiting | NodeState::Skipped => self.dim(),
        }
    }
}

/// The DAG: one line per node in plan order, indented by depth, with its state, attempt,
/// duration, the nodes it needs, and what it waits for or why it ended.
fn plan_lines(app: &App, run: &RunView) -> Vec<TextLine<'static>> {
    let order = run.plan_order();
    if order.is_empty() {
        return vec![TextLine::from(
            "no plan yet: the run's nodes arrive with its run.started event",
        )];
    }
    let name_width = order
        .iter()
        .map(|(d, n)| d * 2 + n.id.chars().count() + 2)
        .max()
        .unwrap_or(8)
        .min(40);
    let mut out = Vec::with_capacity(order.len() + 1);
    if let Some(reason) = &run.reason {
        out.push(TextLine::styled(
            format!("reason: {reason}"),
            app.accent(Color::Red),
        ));
    }
    for (depth, node) in order {
        let name = format!("{}{} {}", "  ".repeat(depth), node.state.mark(), node.id);
        let attempt = if node.attempt == 0 {
            "-".to_owned()
        } else {
            format!("#{}", node.attempt)
        };
        let took = node.duration_ms.map_or_else(|| "-".into(), ms_text);
        let needs = run.needs(&node.id);
        let needs = if needs.is_empty() {
            String::new()
        } else {
            format!("← {}", needs.join(", "))
        };
        let mut spans = vec![
            Span::styled(format!("{name:<name_width$}"), app.node_style(node.state)),
            Span::raw(format!(
                " {:<10} {attempt:>3} {took:>8}  {needs}",
                node.state.as_str()
            )),
        ];
        if let Some(note) = &node.note {
            spans.push(Span::styled(format!("  {note}"), app.dim()));
        }
        out.push(TextLine::from(spans));
    }
    out
}

/// The log's lines that fit `rows`: the newest when following, else from the scroll.
fn log_lines(app: &App, rows: usize) -> Vec<TextLine<'static>> {
    let log = app.runs.log();
    if log.is_empty() {
        return vec![TextLine::from("no events yet")];
    }
    let start = if app.follow {
        log.len().saturating_sub(rows)
    } else {
        (app.scroll as usize).min(log.len().saturating_sub(1))
    };
    log.iter()
        .skip(start)
        .take(rows)
        .map(|l| {
            let ts = l.ts_ms.map_or_else(|| "--:--:--".into(), clock_text);
            let run = l.trace_id.as_deref().map_or("agent   ", short);
            TextLine::from(vec![
                Span::styled(format!("{ts} {run:<8} "), app.dim()),
                Span::raw(l.text.clone()),
            ])
        })
        .collect()
}

fn trace_lines(app: &App, run: &RunView, width: usize) -> Vec<TextLine<'static>> {
    let view = app
        .trace
        .as_ref()
        .filter(|t| t.trace_id == run.trace_id)
        .and_then(|t| t.view.as_ref());
    let Some(view) = view else {
        return vec![TextLine::from(if app.live() {
            "asking the daemon for the trace…"
        } else {
            "no trace without a daemon: `rlp trace <id>` reads it from the POG"
        })];
    };
    ladder(
        view,
        &LadderOptions {
            width,
            relative: false,
            // The ladder's colours are ANSI escapes; ratatui draws styles, not escapes.
            color: false,
        },
    )
    .lines()
    .map(|l| TextLine::from(l.to_owned()))
    .collect()
}

/// Each node's outputs, port by port, as compact JSON cut to a readable length.
fn artifact_lines(app: &App, run: &RunView) -> Vec<TextLine<'static>> {
    let mut out = Vec::new();
    if !run.reported {
        out.push(TextLine::styled(
            if run.status == runloop_proto::payloads::RunStatus::Running {
                "outputs arrive with the run's report when it ends; hashes so far:"
            } else {
                "asking the daemon for the run's report…"
            },
            app.dim(),
        ));
    }
    for node in &run.nodes {
        let head = format!(
            "{} {} {}",
            node.state.mark(),
            node.id,
            node.output_hash.as_deref().map_or_else(
                || "-".into(),
                |h| format!("blake3 {}", h.get(..16).unwrap_or(h))
            )
        );
        out.push(TextLine::styled(
            head,
            app.node_style(node.state).add_modifier(Modifier::BOLD),
        ));
        let Some(json) = &node.outputs_json else {
            continue;
        };
        let ports: Vec<(String, serde_json::Value)> =
            serde_json::from_str(json).unwrap_or_default();
        if ports.is_empty() {
            out.push(TextLine::from(format!(
                "  {}",
                cut_chars(json, ARTIFACT_CHARS_MAX)
            )));
        }
        for (port, value) in ports {
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let text = cut_chars(&text, ARTIFACT_CHARS_MAX);
            let mut lines = text.lines();
            out.push(TextLine::from(format!(
                "  {port}: {}",
                lines.next().unwrap_or("")
            )));
            out.extend(lines.map(|l| TextLine::from(format!("    {l}"))));
        }
    }
    out
}

fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}
