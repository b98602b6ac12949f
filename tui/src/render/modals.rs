//! What draws over the rest: the help overlay, the confirmation and yes/no modals, and
//! the run picker.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line as TextLine;
use ratatui::widgets::{Block, Clear, Paragraph, Row as TableRow, Table, TableState, Wrap};

use super::{PAYLOAD_LINES_MAX, clock_text};
use crate::app::{App, Pick};

/// A centred box of at most `width`×`height` cells, cleared.
fn modal(frame: &mut Frame<'_>, width: u16, height: u16, title: String, app: &App) -> Rect {
    let area = frame.area();
    let w = width.min(area.width);
    let h = height.min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(title)
        .border_style(app.accent(Color::Cyan));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    inner
}

const HELP: &[(&str, &str)] = &[
    (
        "↑ ↓  j k",
        "move (PgUp PgDn by ten); scroll the pane when zoomed",
    ),
    ("enter space", "fold or unfold the selected node"),
    ("t", "tree or flat list"),
    ("s / S", "sort by the next column / reverse"),
    ("/", "filter by name, state or kind (esc clears)"),
    ("1-5 tab", "pane: detail, plan, log, trace, artifacts"),
    ("p l T o", "plan, log, trace, artifacts (outputs)"),
    ("R", "which run the panes show (default: newest running)"),
    ("z", "zoom the pane to the whole screen (esc back)"),
    ("[ ]", "scroll the pane; f follows the log's tail"),
    ("a", "pending confirmations: y approve, n deny"),
    ("x", "stop the selected agent (asks first)"),
    ("r", "release the selected agent from quarantine"),
    ("c", "cancel a running run (asks first)"),
    ("?", "this help"),
    ("q", "quit"),
];

pub(super) fn draw_help(frame: &mut Frame<'_>, app: &App) {
    let inner = modal(frame, 64, HELP.len() as u16 + 4, " keys ".into(), app);
    let mut lines: Vec<TextLine<'_>> = HELP
        .iter()
        .map(|(k, what)| TextLine::from(format!("{k:<12} {what}")))
        .collect();
    lines.push(TextLine::from(""));
    lines.push(TextLine::from(if app.color {
        "Colours on (NO_COLOR turns them off). Any key closes this."
    } else {
        "Colours off (NO_COLOR is set). Any key closes this."
    }));
    frame.render_widget(Paragraph::new(lines), inner);
}

pub(super) fn draw_confirm(frame: &mut Frame<'_>, app: &App, index: usize) {
    let Some(a) = app.actions.get(index) else {
        return;
    };
    let title = format!(
        " confirm {}/{}: {} ",
        index + 1,
        app.actions.len(),
        a.effect
    );
    let now = app.monitor.header().taken_at_ms;
    let expires = if now == 0 {
        clock_text(a.expires_ms)
    } else {
        format!(
            "{} (in {} s)",
            clock_text(a.expires_ms),
            a.expires_ms.saturating_sub(now) / 1_000
        )
    };
    let mut lines = vec![
        TextLine::from(format!("request  {}", a.request_id)),
        TextLine::from(format!(
            "effect   {}  by agent {} (node {})",
            a.effect, a.agent, a.node_id
        )),
        TextLine::from(format!("run      {}", a.trace_id)),
        TextLine::styled(
            format!("summary  {}", a.summary),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        TextLine::from(format!("hash     {}", a.payload_hash)),
        TextLine::from(format!("expires  {expires}")),
        TextLine::from("payload:"),
    ];
    let pretty = serde_json::from_str::<serde_json::Value>(&a.payload_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| a.payload_json.clone());
    lines.extend(
        pretty
            .lines()
            .take(PAYLOAD_LINES_MAX)
            .map(|l| TextLine::from(format!("  {l}"))),
    );
    let area = frame.area();
    let width = area.width.saturating_sub(4).min(100);
    let height = (lines.len() as u16 + 4).min(area.height.saturating_sub(2));
    let inner = modal(frame, width, height, title, app);
    let [body, keys] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
    frame.render_widget(
        Paragraph::new("y approve   n deny   esc later").style(app.accent(Color::Yellow)),
        keys,
    );
}

pub(super) fn draw_ask(frame: &mut Frame<'_>, app: &App, question: &str) {
    let inner = modal(frame, 60, 5, " are you sure? ".into(), app);
    let lines = vec![
        TextLine::from(question.to_owned()),
        TextLine::from(""),
        TextLine::from("y yes   n no"),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

pub(super) fn draw_runs(frame: &mut Frame<'_>, app: &App, pick: Pick, index: usize) {
    let runs = app.pickable(pick);
    let title = match pick {
        Pick::Show => " show which run? ",
        Pick::Cancel => " cancel which run? ",
    };
    let inner = modal(frame, 76, runs.len() as u16 + 2, title.into(), app);
    let rows = runs.iter().map(|r| {
        TableRow::new([
            r.trace_id.clone(),
            r.opening.clone(),
            r.status.as_str().to_owned(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(32),
            Constraint::Min(8),
            Constraint::Length(11),
        ],
    )
    .row_highlight_style(app.selection());
    let mut state = TableState::default().with_selected(Some(index));
    frame.render_stateful_widget(table, inner, &mut state);
}
