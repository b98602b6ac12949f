//! Drawing the app's state with ratatui, on any backend (the terminal in `agtop`,
//! `TestBackend` in the golden tests): header, actor table, detail pane, status line and
//! key footer; the help overlay, the confirmation and yes/no modals, the run picker and
//! the trace pane. Colour only when [`App::color`]; the selection is shown reversed either
//! way, so it stays visible without colour. Fits 80×24.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};
use runloop_proto::payloads::ActorInfo;

use crate::app::{App, Overlay, Pane, Source};
use crate::model::{Row, Sample};
use crate::view::{Column, Line, Mode};

mod modals;
mod pane;

use modals::{draw_ask, draw_confirm, draw_help, draw_runs};
use pane::draw_pane;

/// Rows of the detail pane, its top border included.
const DETAIL_ROWS: u16 = 9;
/// Cells of a table row's CPU sparkline (wide terminals only).
const ROW_SPARK_COLS: u16 = 12;
/// Longest output text the artifacts pane shows per port, in characters.
const ARTIFACT_CHARS_MAX: usize = 2_000;
/// Below this width the table drops the message and breaker columns and the CPU
/// sparkline.
const WIDE_COLS: u16 = 110;
/// From this width the table shows an RSS sparkline as well.
const SPARK_RSS_COLS: u16 = 150;
/// Sparkline glyphs, lowest first.
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Most payload lines the confirmation modal shows.
const PAYLOAD_LINES_MAX: usize = 40;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    if app.zoom {
        draw_pane(frame, body, app);
    } else {
        let rows = match app.pane {
            Pane::Detail => DETAIL_ROWS.min(body.height / 2),
            _ => (body.height / 2).max(DETAIL_ROWS.min(body.height)),
        };
        let [table, pane] =
            Layout::vertical([Constraint::Min(2), Constraint::Length(rows)]).areas(body);
        draw_table(frame, table, app);
        draw_pane(frame, pane, app);
    }
    let status_text = match &app.filter_input {
        Some(text) => format!("filter: {text}_   (enter keeps it, esc clears)"),
        None => app.status.clone(),
    };
    frame.render_widget(
        Paragraph::new(status_text).style(app.accent(Color::Yellow)),
        status,
    );
    frame.render_widget(Paragraph::new(footer_text(app)).style(app.dim()), footer);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => draw_help(frame, app),
        Overlay::Confirm { index } => draw_confirm(frame, app, *index),
        Overlay::Ask { question, .. } => draw_ask(frame, app, question),
        Overlay::Runs { pick, index } => draw_runs(frame, app, *pick, *index),
    }
}

impl App {
    fn accent(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn selection(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn state_style(&self, state: &str) -> Style {
        match state {
            "running" => self.accent(Color::Green),
            "restarting" | "starting" => self.accent(Color::Yellow),
            "quarantined" | "stopped" => self.accent(Color::Red),
            _ => Style::new(),
        }
    }
}

fn footer_text(app: &App) -> &'static str {
    match &app.overlay {
        Overlay::Confirm { .. } => " y approve  n deny  ↑↓ other request  esc close",
        Overlay::Ask { .. } => " y yes  n no",
        Overlay::Runs { .. } => " ↑↓ choose  enter pick  esc close",
        Overlay::Help => " any key closes the help",
        Overlay::None if app.zoom => {
            " ↑↓ PgUp/Dn scroll  esc unzoom  1-5 pane  R run  f follow  ? help  q quit"
        }
        Overlay::None => {
            " q quit ? help ↑↓ move ⏎ fold t tree s sort / filter a confirm 1-5 pane z zoom"
        }
    }
}

/// `HH:MM:SS` UTC of a Unix time in milliseconds.
pub fn clock_text(ms: u64) -> String {
    let s = ms / 1_000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3_600, s / 60 % 60, s % 60)
}

/// A size in KiB as people read it.
pub fn size_text(kb: u64) -> String {
    match kb {
        0..1_024 => format!("{kb}K"),
        1_024..1_048_576 => format!("{:.1}M", kb as f64 / 1_024.0),
        _ => format!("{:.1}G", kb as f64 / 1_048_576.0),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// A sparkline of the last `width` values, scaled to the largest of them (at least `floor`).
pub fn sparkline(values: &[f64], width: usize, floor: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(floor, f64::max);
    tail.iter()
        .map(|&v| {
            let i = if max <= 0.0 {
                0.0
            } else {
                (v / max * 7.0).round()
            };
            SPARKS[(i.clamp(0.0, 7.0)) as usize]
        })
        .collect()
}

/// The last minute before `now_ms` in `cols` equal buckets, each the largest value in it
/// (0 where there is no sample), oldest first.
pub fn minute(
    history: &[Sample],
    now_ms: u64,
    cols: usize,
    value: impl Fn(&Sample) -> f64,
) -> Vec<f64> {
    let window = crate::model::HISTORY_WINDOW_MS;
    if cols == 0 || history.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0.0_f64; cols];
    let start = now_ms.saturating_sub(window);
    for sample in history
        .iter()
        .filter(|s| s.at_ms > start && s.at_ms <= now_ms)
    {
        let i = ((sample.at_ms - start - 1) * cols as u64 / window) as usize;
        let slot = &mut out[i.min(cols - 1)];
        *slot = slot.max(value(sample));
    }
    out
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let h = app.monitor.header();
    let title = TextLine::from(vec![
        Span::styled(
            "agtop",
            app.accent(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Span::raw(match &app.source {
            Source::Daemon(socket) => format!("  runloopd at {socket}"),
            Source::Events(file) => format!("  events from {file} (no daemon)"),
        }),
        Span::raw(if !app.live() {
            String::new()
        } else if h.seq == 0 {
            "  waiting for the first snapshot".to_owned()
        } else {
            format!("  #{} {}", h.seq, clock_text(h.taken_at_ms))
        }),
    ]);
    // Figures by importance; those that do not fit the width are left out.
    let mut figures = Vec::new();
    figures.extend([
        format!(
            "kernel {}% {}",
            pct(h.kernel_cpu_pct),
            h.kernel_rss_kb.map_or_else(|| "-".into(), size_text)
        ),
        format!(
            "agents {} ({} running, {} parked)",
            h.agents_total, h.agents_running, h.agents_parked
        ),
        format!("runs {}", h.runs_running.max(app.runs.running() as u64)),
        format!("pending {}", app.actions.len()),
    ]);
    if let Some([one, five, fifteen]) = app.load {
        figures.push(format!("load {one:.2} {five:.2} {fifteen:.2}"));
    }
    figures.push(format!("bus drops {}", opt(h.bus_dropped)));
    if !app.live() {
        figures = vec![
            format!(
                "runs {} ({} running)",
                app.runs.runs().len(),
                app.runs.running()
            ),
            format!("events {}", app.runs.logged()),
        ];
    }
    if let Some((r, max, q)) = h.scheduler {
        figures.push(format!("permits {r}/{max} queued {q}"));
    }
    if h.agents_cut > 0 {
        figures.insert(0, format!("{} agents not sent (over 1 MiB)", h.agents_cut));
    }
    if h.rows_cut > 0 {
        figures.insert(0, format!("{} rows cut", h.rows_cut));
    }
    let mut text = String::new();
    for f in figures {
        if text.chars().count() + f.chars().count() + 3 > area.width as usize {
            break;
        }
        if !text.is_empty() {
            text.push_str(" · ");
        }
        text.push_str(&f);
    }
    let second = vec![Span::raw(text)];
    frame.render_widget(Paragraph::new(vec![title, TextLine::from(second)]), area);
}

fn columns(width: u16) -> Vec<(Column, u16)> {
    let wide = width >= WIDE_COLS;
    Column::ALL
        .iter()
        .filter(|c| {
            wide || !matches!(
                c,
                Column::MsgsIn | Column::MsgsOut | Column::Breaker | Column::Tokens | Column::Cost
            )
        })
        .map(|&c| {
            let w = match c {
                Column::Name => 0,
                Column::Kind => 6,
                Column::State => 11,
                Column::Pid => 7,
                Column::Cpu => 6,
                Column::Rss => 7,
                Column::MsgsIn | Column::MsgsOut => 7,
                Column::Errors | Column::Restarts => 4,
                Column::Breaker => 9,
                Column::Tokens => 8,
                Column::Cost => 8,
            };
            (c, w)
        })
        .collect()
}

fn cell_text(row: &Row, column: Column, line: &Line, mode: Mode) -> String {
    let (indent, folded) = (line.indent, line.collapsed);
    match column {
        Column::Name => {
            let mark = match (mode, row.has_children, folded) {
                (Mode::Flat, ..) | (_, false, _) => "",
                (_, true, true) => "▸ ",
                (_, true, false) => "▾ ",
            };
            format!("{}{mark}{}", " ".repeat(indent), row.name)
        }
        Column::Kind => row.kind.as_str().into(),
        Column::State => row.state.clone(),
        Column::Pid => opt(row.pid),
        Column::Cpu => pct(row.cpu_pct),
        Column::Rss => row.rss_kb.map_or_else(|| "-".into(), size_text),
        Column::MsgsIn => opt(row.msgs_in),
        Column::MsgsOut => opt(row.msgs_out),
        Column::Errors => opt(row.errors),
        Column::Restarts => row.restarts.to_string(),
        Column::Breaker => row.breaker.clone().unwrap_or_else(|| "-".into()),
        Column::Tokens => opt(row.tokens),
        Column::Cost => opt(row.usd_micros),
    }
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let cols = columns(area.width);
    let titles: Vec<String> = cols
        .iter()
        .map(|&(c, _)| {
            let mark = match app.view.sort {
                Some(s) if s.column == c && s.descending => "▼",
                Some(s) if s.column == c => "▲",
                _ => "",
            };
            format!("{}{mark}", c.title())
        })
        .collect();
    // Sparklines of the last minute on wide terminals: CPU from WIDE_COLS, RSS as well
    // from SPARK_RSS_COLS.
    let sparks = match area.width {
        w if w >= SPARK_RSS_COLS => 2,
        w if w >= WIDE_COLS => 1,
        _ => 0,
    };
    let header = TableRow::new(
        titles
            .into_iter()
            .chain(
                ["CPU 60s".to_owned(), "RSS 60s".to_owned()]
                    .into_iter()
                    .take(sparks),
            )
            .map(Cell::from),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let lines = app.lines();
    let rows_data = app.monitor.rows();
    let now = app.monitor.header().taken_at_ms;
    // Only the rows that fit are built (a thousand agents would cost a frame budget):
    // the window ends at the selection when it is below the first screenful, as the
    // table widget itself would scroll with a fresh state.
    let visible = usize::from(area.height.saturating_sub(2)).max(1);
    let selected = app.selected_index(&lines);
    let offset = selected.map_or(0, |i| (i + 1).saturating_sub(visible));
    let rows = lines.iter().skip(offset).take(visible).map(|l| {
        let row = &rows_data[l.row];
        let mut cells: Vec<Cell<'_>> = cols
            .iter()
            .map(|&(c, _)| {
                let text = cell_text(row, c, l, app.view.mode);
                match c {
                    Column::State => Cell::from(text).style(app.state_style(&row.state)),
                    _ => Cell::from(text),
                }
            })
            .collect();
        if sparks > 0 {
            let history: Vec<Sample> = app.monitor.history(&row.key).copied().collect();
            // Actors without their own figures (supervisors, workers) get no line.
            let history = if row.cpu_ms.is_some() || row.rss_kb.is_some() {
                history
            } else {
                Vec::new()
            };
            let cpu = minute(&history, now, ROW_SPARK_COLS as usize, |s| s.cpu_pct);
            cells.push(
                Cell::from(sparkline(&cpu, ROW_SPARK_COLS as usize, 1.0))
                    .style(app.accent(Color::Green)),
            );
            if sparks > 1 {
                let rss = minute(&history, now, ROW_SPARK_COLS as usize, |s| s.rss_kb as f64);
                cells.push(
                    Cell::from(sparkline(&rss, ROW_SPARK_COLS as usize, 1.0))
                        .style(app.accent(Color::Magenta)),
                );
            }
        }
        TableRow::new(cells)
    });
    let widths = cols
        .iter()
        .map(|&(_, w)| {
            if w == 0 {
                Constraint::Min(12)
            } else {
                Constraint::Length(w)
            }
        })
        .chain((0..sparks).map(|_| Constraint::Length(ROW_SPARK_COLS)))
        .collect::<Vec<_>>();
    let mode = match app.view.mode {
        Mode::Tree => "tree",
        Mode::Flat => "flat",
    };
    let filter = match app.view.filter() {
        "" => String::new(),
        f => format!(" filter \"{f}\""),
    };
    let title = format!(" actors: {} shown, {mode}{filter} ", lines.len());
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(app.selection())
        // A mark as well as the style: the selection shows without colour or reverse video.
        .highlight_symbol("> ")
        .block(Block::new().borders(Borders::TOP).title(title));
    let mut state = TableState::default().with_selected(selected.map(|i| i - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

fn detail_lines(app: &App, row: &Row, width: usize) -> Vec<TextLine<'static>> {
    let parent = row
        .parent
        .as_deref()
        .map_or("", |p| p.rsplit('/').next().unwrap_or(p));
    let mut out = vec![TextLine::from(vec![
        Span::styled(row.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  {}  pid {}  restarts {}  under {parent}",
            row.kind.as_str(),
            row.state,
            opt(row.pid),
            row.restarts
        )),
    ])];
    match &row.info {
        Some(ActorInfo::Agent(a)) => {
            out.push(TextLine::from(format!(
                "cpu {}% ({} ms)  rss {}  in {} out {}  errors {}  denied {}  redeliv {}",
                pct(row.cpu_pct),
                a.cpu_ms,
                size_text(a.rss_kb),
                a.messages_in,
                a.messages_out,
                a.errors,
                a.denied,
                a.redelivered
            )));
            if a.tokens > 0 || a.usd_micros > 0 {
                out.push(TextLine::from(format!(
                    "model: {} tokens, {} µUSD (all agents named {})",
                    a.tokens, a.usd_micros, a.name
                )));
            }
            out.push(TextLine::from(format!(
                "breaker {}  bundle {}  cgroup {}",
                a.breaker,
                a.bundle,
                a.cgroup.as_deref().unwrap_or("-")
            )));
            if let Some(q) = &a.quarantine {
                out.push(TextLine::styled(
                    format!("quarantined: {q}"),
                    app.accent(Color::Red),
                ));
            }
            if let Some((path, u)) = &app.cgroup
                && Some(path) == a.cgroup.as_ref()
            {
                out.push(TextLine::from(cgroup_text(u)));
            }
        }
        Some(info) => out.push(TextLine::from(info_text(info))),
        None => {}
    }
    if let Some(e) = &row.last_error {
        out.push(TextLine::styled(
            format!("last error: {e}"),
            app.accent(Color::Red),
        ));
    }
    let history: Vec<Sample> = app.monitor.history(&row.key).copied().collect();
    if !history.is_empty() {
        let spark_width = width.saturating_sub(24).clamp(8, 60);
        let cpu: Vec<f64> = history.iter().map(|s| s.cpu_pct).collect();
        let rss: Vec<f64> = history.iter().map(|s| s.rss_kb as f64).collect();
        let max_cpu = cpu.iter().copied().fold(0.0, f64::max);
        out.push(TextLine::from(format!(
            "cpu 60s {} max {max_cpu:.1}%",
            sparkline(&cpu, spark_width, 1.0)
        )));
        let max_rss = history.iter().map(|s| s.rss_kb).max().unwrap_or(0);
        out.push(TextLine::from(format!(
            "rss 60s {} max {}",
            sparkline(&rss, spark_width, 1.0),
            size_text(max_rss)
        )));
    }
    // The agent's own lines from the log, newest last.
    if let Some(ActorInfo::Agent(a)) = &row.info {
        let needle = format!("agent {} ", a.name);
        let mine: Vec<&str> = app
            .runs
            .log()
            .iter()
            .rev()
            .filter(|l| l.text.starts_with(&needle))
            .take(3)
            .map(|l| l.text.as_str())
            .collect();
        out.extend(
            mine.into_iter()
                .rev()
                .map(|t| TextLine::styled(format!("log: {t}"), app.dim())),
        );
    }
    out
}

/// A cgroup's limits and usage in one line.
pub fn cgroup_text(u: &crate::cgroup::CgroupUsage) -> String {
    let bytes = |b: u64| size_text(b / 1_024);
    let mem = match (u.memory_bytes, u.memory_max) {
        (Some(used), Some(max)) => format!("{} of {}", bytes(used), bytes(max)),
        (Some(used), None) => format!("{} (no limit)", bytes(used)),
        (None, _) => "-".into(),
    };
    let cpu = match u.cpu_quota {
        Some((quota, period)) if period > 0 => {
            format!("{:.0}% of a core", quota as f64 * 100.0 / period as f64)
        }
        _ => "no quota".into(),
    };
    let pids = match (u.pids, u.pids_max) {
        (Some(n), Some(max)) => format!("{n} of {max}"),
        (Some(n), None) => format!("{n} (no limit)"),
        (None, _) => "-".into(),
    };
    format!(
        "cgroup {}: memory {mem}  cpu {cpu}  pids {pids}",
        if u.v2 { "v2" } else { "v1" }
    )
}

/// One line about a system actor's own figures.
fn info_text(info: &ActorInfo) -> String {
    match info {
        ActorInfo::Supervisor { strategy } => format!("strategy {strategy:?}"),
        ActorInfo::Bus(b) => format!(
            "topics {}  subscribers {}  published {}  delivered {}  dropped {}  rejected {}",
            b.topics, b.subscribers, b.published, b.delivered, b.dropped, b.rejected
        ),
        ActorInfo::Scheduler(s) => format!(
            "permits {}/{}  queued {}  openings {}",
            s.running, s.concurrency_max, s.queued, s.openings
        ),
        ActorInfo::Quarantine { parked } => format!("parked agents {parked}"),
        ActorInfo::DeadLetters { records, dropped } => {
            format!("dead letters kept {records}  dropped {dropped}")
        }
        ActorInfo::Kernel {
            cpu_ms,
            rss_kb,
            warm,
        } => {
            let mut text = format!(
                "kernel process: cpu {cpu_ms} ms  rss {}",
                size_text(*rss_kb)
            );
            if let Some(w) = warm {
                text.push_str(&format!("  warm sandboxes: {}", w.summary("  ")));
            }
            text
        }
        ActorInfo::Agent(a) => format!("agent {}", a.name),
        ActorInfo::EmptySlot => {
            "empty slot: runloopd starts this actor, this kernel does not".into()
        }
    }
}

/// A duration as people read it.
pub fn ms_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_window_and_keeps_the_tail() {
        assert_eq!(sparkline(&[0.0, 50.0, 100.0], 10, 1.0), "▁▅█");
        assert_eq!(sparkline(&[100.0, 0.0, 0.0], 2, 1.0), "▁▁");
        // A floor keeps tiny noise from filling the line.
        assert_eq!(sparkline(&[0.1, 0.1], 2, 1.0), "▂▂");
        assert_eq!(sparkline(&[], 5, 1.0), "");
    }

    #[test]
    fn a_minute_in_buckets_keeps_each_buckets_peak_and_drops_older_samples() {
        let s = |at_ms: u64, cpu_pct: f64| Sample {
            at_ms,
            cpu_pct,
            rss_kb: 0,
        };
        let now = 100_000;
        // 60 s in 6 buckets of 10 s: (40, 50], (50, 60], … (90, 100].
        let history = [
            s(39_000, 99.0),
            s(45_000, 10.0),
            s(49_000, 30.0),
            s(95_000, 5.0),
            s(100_000, 7.0),
        ];
        assert_eq!(
            minute(&history, now, 6, |x| x.cpu_pct),
            vec![30.0, 0.0, 0.0, 0.0, 0.0, 7.0]
        );
        assert!(minute(&[], now, 6, |x| x.cpu_pct).is_empty());
        assert_eq!(sparkline(&[], 6, 1.0), "");
    }

    #[test]
    fn sizes_and_clock() {
        assert_eq!(size_text(512), "512K");
        assert_eq!(size_text(51_200), "50.0M");
        assert_eq!(size_text(3 * 1_048_576), "3.0G");
        assert_eq!(clock_text(1_763_766_000_000), "23:00:00");
    }
}
