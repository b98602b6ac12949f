//! The ladder: a run's crossings as a text sequence diagram fitted to a terminal width.
//!
//! ```text
//! compose_email · succeeded · 34 crossings · 9.952s · trace 3f9c2a7e5b1d4c8fa0e6b…
//! R run compose_email   A1 contact_resolver   A2 context_gatherer   A3 writer
//! A4 critic   A5 mailer   B broker   G gate   E effects   K kernel
//! utc           rlp  R   A1  A2  A3  A4  A5  B  pog  G   E   K    took size
//! 14:03:10.090   │   │──────────▶│ agent.invoke  │   │   │   │    1.2s  11K→57B  ✗
//!                │   │   │   │   │ ↳ model.complete: timed out after 1200ms
//! 14:03:10.092   │   │   │   │   │─────── log.write ────────▶│     0ms  88B
//! ```
//!
//! (an excerpt of `tests/golden/ladder_80.txt`; `ladder_200.txt` is the same run at 200
//! columns, full labels and details beside their rows).
//!
//! Layout, left to right: the time (absolute UTC, or the offset from the run's start), the
//! diagram (one column per participant, one row per crossing, the kind on its arrow or
//! beside it), then the latency, the sizes, `✗` for an error and, when the line has room,
//! the crossing's detail (else on a line of its own under the row). Column widths come
//! from the labels; when they do not fit, wide columns are narrowed and their labels
//! shortened (truncated with `…`, or codes such as `A1`), with a legend under the header.
//! No line is wider than the width asked for: at very small widths the margins are dropped
//! one by one, and what still does not fit is cut with `…`.

use runloop_proto::payloads::{CrossingStatus, ParticipantKind, TraceView};

use super::text::{Line, Paint, clean, fit, pad_left, pad_right, width};
use super::{Column, columns, total_ms, units};

/// How to draw a ladder (the CLI's `--width`, `--relative` and colour choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderOptions {
    /// Columns no line may exceed (the terminal's width).
    pub width: usize,
    /// Times as offsets from the run's start (`+1.234s`) instead of UTC clock times.
    pub relative: bool,
    /// ANSI colours (arrows by sender kind, errors red); without it, no escape byte at all.
    pub color: bool,
}

/// Widest a column grows when the line has room to spare, in columns.
const COLUMN_WIDTH_MAX: usize = 24;
/// Narrowest a column may be while the margins are kept (a lifeline, a head, a space).
const COLUMN_WIDTH_MIN: usize = 3;
/// A shortened label is a truncation (`context…`) from this many columns up, else a code.
const TRUNCATED_LABEL_MIN: usize = 8;
/// The fewest columns a detail gets beside its row; with less, it gets a line of its own.
const DETAIL_INLINE_MIN: usize = 16;
/// The fewest columns a cut part of the title gets (else it is left out).
const TITLE_PART_MIN: usize = 12;
/// Columns between the time and the diagram, and between the diagram and the latency.
const GAP: usize = 1;

/// One crossing's row, its text cleaned and its numbers formatted.
struct Row {
    from: usize,
    to: usize,
    kind: String,
    time: String,
    took: String,
    size: String,
    reply: String,
    error: bool,
    detail: Option<String>,
}

/// Which margins a layout keeps (dropped in this order as the width shrinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Margins {
    detail_inline: bool,
    size: bool,
    took: bool,
    time: bool,
}

/// Where everything goes on a line.
struct Layout {
    margins: Margins,
    time_w: usize,
    took_w: usize,
    size_w: usize,
    reply_w: usize,
    mark_w: usize,
    detail_w: usize,
    /// Left edge and width of each column within the diagram, and the label it shows.
    starts: Vec<usize>,
    widths: Vec<usize>,
    names: Vec<String>,
    diagram_w: usize,
}

impl Layout {
    /// Column of the lifeline of participant `i` within the diagram.
    fn lifeline(&self, i: usize) -> usize {
        self.starts[i] + (self.widths[i] - 1) / 2
    }

    fn left_w(&self) -> usize {
        if self.margins.time {
            self.time_w + GAP
        } else {
            0
        }
    }

    fn right_w(&self) -> usize {
        right_w(self.margins, self)
    }
}

/// The widths of the right margin: latency, sizes, error mark and inline detail.
fn right_w(m: Margins, l: &Layout) -> usize {
    let mut w = 0;
    if m.took {
        w += GAP + l.took_w;
    }
    if m.size {
        w += GAP + l.size_w + l.reply_w;
    }
    w += l.mark_w;
    if m.detail_inline && l.detail_w > 0 {
        w += 1 + l.detail_w;
    }
    w
}

/// The ladder of `view`, one `\n`-terminated line per text line.
pub fn ladder(view: &TraceView, opts: &LadderOptions) -> String {
    let (cols, ends) = columns(view);
    let rows = rows(view, &ends, opts.relative);
    let layout = layout(&cols, &rows, opts);
    let mut out = String::new();
    let mut emit = |mut line: Line| {
        line.truncate(opts.width);
        line.render(opts.color, &mut out);
    };
    emit(title(view, opts.width));
    for line in legend(&cols, &layout.names, opts.width) {
        emit(line);
    }
    if cols.is_empty() {
        emit(text_line("(no crossings)", Paint::Dim));
        return out;
    }
    emit(header(&cols, &layout, opts.relative));
    for row in &rows {
        emit(row_line(row, &cols, &layout));
        if !layout.margins.detail_inline
            && let Some(detail) = &row.detail
        {
            emit(detail_line(row, detail, &layout, opts.width));
        }
    }
    out
}

fn rows(view: &TraceView, ends: &[(usize, usize)], relative: bool) -> Vec<Row> {
    view.crossings
        .iter()
        .zip(ends)
        .map(|(c, &(from, to))| Row {
            from,
            to,
            kind: clean(&c.kind),
            time: if relative {
                units::offset(i128::from(c.start_ms) - i128::from(view.started_ms))
            } else {
                units::clock_utc(c.start_ms)
            },
            took: units::latency(c.end_ms.saturating_sub(c.start_ms)),
            size: units::size(c.bytes),
            reply: c
                .reply_bytes
                .map_or_else(String::new, |r| format!("→{}", units::size(r))),
            error: c.status == CrossingStatus::Error,
            detail: c.detail.as_deref().map(clean).filter(|d| !d.is_empty()),
        })
        .collect()
}

fn max_w<'a>(items: impl Iterator<Item = &'a str>) -> usize {
    items.map(width).max().unwrap_or(0)
}

fn layout(cols: &[Column<'_>], rows: &[Row], opts: &LadderOptions) -> Layout {
    let labels: Vec<String> = cols.iter().map(|c| clean(c.label)).collect();
    let full: Vec<usize> = labels
        .iter()
        .map(|l| (width(l) + 2).max(COLUMN_WIDTH_MIN))
        .collect();
    let mut l = Layout {
        margins: Margins {
            detail_inline: true,
            size: true,
            took: true,
            time: true,
        },
        time_w: max_w(rows.iter().map(|r| r.time.as_str())).max(width(time_header(opts.relative))),
        took_w: max_w(rows.iter().map(|r| r.took.as_str())).max(width("took")),
        size_w: max_w(rows.iter().map(|r| r.size.as_str())).max(width("size")),
        reply_w: max_w(rows.iter().map(|r| r.reply.as_str())),
        mark_w: if rows.iter().any(|r| r.error) { 2 } else { 0 },
        detail_w: max_w(rows.iter().filter_map(|r| r.detail.as_deref())),
        starts: Vec::new(),
        widths: Vec::new(),
        names: Vec::new(),
        diagram_w: 0,
    };
    let n = cols.len();
    l.margins = margins(&mut l, n, full.iter().sum(), opts.width);
    l.diagram_w = opts.width.saturating_sub(l.left_w() + l.right_w()).max(n);
    let least: Vec<usize> = (0..n)
        .map(|i| (width(&code(cols, i)) + 1).max(COLUMN_WIDTH_MIN))
        .collect();
    l.widths = column_widths(&full, &least, l.diagram_w);
    l.starts = l
        .widths
        .iter()
        .scan(0, |at, w| {
            let start = *at;
            *at += w;
            Some(start)
        })
        .collect();
    l.names = names(cols, &labels, &l.widths);
    l
}

/// The margins kept, from all of them to none: the first whose diagram still gets
/// full-width labels (with the detail inline, which then takes at most what they leave)
/// or [`COLUMN_WIDTH_MIN`] per column. Sets `detail_w` to the inline detail's width, or 0.
fn margins(l: &mut Layout, n: usize, full_sum: usize, width_max: usize) -> Margins {
    let candidates = [
        (true, true, true, true),
        (false, true, true, true),
        (false, false, true, true),
        (false, false, false, true),
    ];
    for (detail_inline, size, took, time) in candidates {
        let m = Margins {
            detail_inline,
            size,
            took,
            time,
        };
        if detail_inline {
            let no_detail = Margins {
                detail_inline: false,
                ..m
            };
            let room =
                width_max.saturating_sub(l.time_w + GAP + right_w(no_detail, l) + full_sum + 1);
            if l.detail_w > 0 && room >= DETAIL_INLINE_MIN {
                l.detail_w = l.detail_w.min(room);
                return m;
            }
        } else {
            let outer = l.time_w + GAP + right_w(m, l);
            if width_max.saturating_sub(outer) >= n * COLUMN_WIDTH_MIN {
                l.detail_w = 0;
                return m;
            }
        }
    }
    // Nothing fits: the diagram alone (and the error mark), cut at the width if need be.
    l.detail_w = 0;
    Margins {
        detail_inline: false,
        size: false,
        took: false,
        time: false,
    }
}

/// Each column's width within `diagram` columns: the label's full width when they all fit
/// (and then a share of what is left, up to [`COLUMN_WIDTH_MAX`]); otherwise the widest
/// columns are narrowed to a common cap, as wide as the diagram allows, but none below
/// its `least` (room for its code) while those fit.
fn column_widths(full: &[usize], least: &[usize], diagram: usize) -> Vec<usize> {
    let n = full.len();
    let sum: usize = full.iter().sum();
    let least_sum: usize = least.iter().sum();
    let mut widths: Vec<usize> = if sum <= diagram {
        full.to_vec()
    } else {
        let floor = |i: usize| {
            if least_sum <= diagram {
                least[i].min(full[i])
            } else {
                1
            }
        };
        let capped = |cap: usize| (0..n).map(move |i| full[i].min(cap).max(floor(i)));
        // The largest cap whose narrowed widths still fit.
        let widest = full.iter().copied().max().unwrap_or(1);
        let cap = (1..=widest)
            .rev()
            .find(|&cap| capped(cap).sum::<usize>() <= diagram)
            .unwrap_or(1);
        capped(cap).collect()
    };
    let mut left = diagram.saturating_sub(widths.iter().sum());
    // Whole labels first, the cheapest first: each one spares a legend entry.
    let mut short: Vec<usize> = (0..n).filter(|&i| widths[i] < full[i]).collect();
    short.sort_by_key(|&i| (full[i] - widths[i], i));
    for i in short {
        let need = full[i] - widths[i];
        if need <= left {
            widths[i] = full[i];
            left -= need;
        }
    }
    // Then share what is left, one column at a time, narrowest first, up to the cap.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (widths[i], i));
    while left > 0 {
        let mut grew = false;
        for &i in &order {
            if left == 0 {
                break;
            }
            if widths[i] < COLUMN_WIDTH_MAX {
                widths[i] += 1;
                left -= 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    widths
}

/// What each column header shows: the label when it fits its column with a space to
/// spare, else a shortened name — the label truncated with `…` when there is room for a
/// recognisable and unambiguous one, else a code (a letter for the kind and, when that
/// kind has several participants, a number: `A1`, `A2`, `B`, `R`).
fn names(cols: &[Column<'_>], labels: &[String], widths: &[usize]) -> Vec<String> {
    let room = |i: usize| widths[i].saturating_sub(1);
    let mut names: Vec<Option<String>> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (width(l) <= room(i)).then(|| l.clone()))
        .collect();
    let truncated: Vec<Option<String>> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (room(i) >= TRUNCATED_LABEL_MIN).then(|| fit(l, room(i))))
        .collect();
    for i in 0..cols.len() {
        if names[i].is_some() {
            continue;
        }
        if let Some(t) = &truncated[i] {
            let clash = (0..cols.len()).any(|j| {
                j != i
                    && (names[j].as_ref() == Some(t)
                        || (names[j].is_none() && truncated[j].as_ref() == Some(t)))
            });
            if !clash {
                names[i] = Some(t.clone());
            }
        }
    }
    (0..cols.len())
        .map(|i| {
            names[i]
                .take()
                .unwrap_or_else(|| fit(&code(cols, i), room(i)))
        })
        .collect()
}

/// A column's code: its kind's letter, and its number among that kind when it has several.
fn code(cols: &[Column<'_>], i: usize) -> String {
    let letter = |kind: Option<ParticipantKind>| match kind {
        Some(ParticipantKind::Cli) => 'C',
        Some(ParticipantKind::Run) => 'R',
        Some(ParticipantKind::Agent) => 'A',
        Some(ParticipantKind::Broker) => 'B',
        Some(ParticipantKind::Pog) => 'P',
        Some(ParticipantKind::Gate) => 'G',
        Some(ParticipantKind::Effects) => 'E',
        Some(ParticipantKind::Kernel) => 'K',
        None => 'X',
    };
    let same: Vec<usize> = (0..cols.len())
        .filter(|&j| cols[j].kind == cols[i].kind)
        .collect();
    let l = letter(cols[i].kind);
    if same.len() == 1 {
        l.to_string()
    } else {
        let nth = same.iter().position(|&j| j == i).expect("i is of its kind") + 1;
        format!("{l}{nth}")
    }
}

fn paint_of(col: &Column<'_>) -> Paint {
    col.kind.map_or(Paint::Unknown, Paint::Kind)
}

fn text_line(text: &str, paint: Paint) -> Line {
    let mut line = Line::default();
    line.push_str(&clean(text), paint);
    line
}

/// `<opening> · <status> · N crossings · <total> · trace <id> · started <UTC>`, the parts
/// that fit `width_max` (a last part is cut with `…` when at least [`TITLE_PART_MIN`]
/// columns are left for it).
fn title(view: &TraceView, width_max: usize) -> Line {
    let parts = [
        clean(&view.opening),
        clean(&view.status),
        units::crossings(view.crossings.len()),
        units::span(total_ms(view)),
        format!("trace {}", clean(&view.trace_id)),
        format!(
            "started {} {} UTC",
            units::date_utc(view.started_ms),
            units::clock_utc(view.started_ms)
        ),
    ];
    let failed = view.status.contains("fail");
    let mut line = Line::default();
    for (i, part) in parts.iter().enumerate() {
        let sep = if i == 0 { "" } else { " · " };
        let room = width_max.saturating_sub(line.width() + width(sep));
        let text = if width(part) <= room {
            part.clone()
        } else if room >= TITLE_PART_MIN || i == 0 {
            fit(part, room)
        } else {
            break;
        };
        line.push_str(sep, Paint::Dim);
        let paint = if i == 1 && failed {
            Paint::Error
        } else {
            Paint::Plain
        };
        line.push_str(&text, paint);
        if width(&text) < width(part) {
            break;
        }
    }
    line
}

/// `A1 contact_resolver  A2 context_gatherer …`, wrapped at `width`: one entry per
/// shortened label.
fn legend(cols: &[Column<'_>], names: &[String], width_max: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut line = Line::default();
    for (col, name) in cols.iter().zip(names) {
        let label = clean(col.label);
        if *name == label {
            continue;
        }
        let sep = if line.width() == 0 { "" } else { "   " };
        let entry_w = width(sep) + width(name) + 1 + width(&label);
        if line.width() > 0 && line.width() + entry_w > width_max {
            lines.push(std::mem::take(&mut line));
        }
        if line.width() > 0 {
            line.push_str("   ", Paint::Plain);
        }
        line.push_str(name, paint_of(col));
        line.push_str(" ", Paint::Plain);
        line.push_str(&label, Paint::Plain);
    }
    if line.width() > 0 {
        lines.push(line);
    }
    lines
}

fn time_header(relative: bool) -> &'static str {
    if relative { "elapsed" } else { "utc" }
}

/// The time header, the column names over their lifelines, and the right margin's headers.
fn header(cols: &[Column<'_>], l: &Layout, relative: bool) -> Line {
    let mut line = Line::default();
    if l.margins.time {
        line.push_str(
            &pad_right(time_header(relative), l.time_w + GAP),
            Paint::Dim,
        );
    }
    let mut diagram = Line::blank(l.diagram_w);
    for (i, col) in cols.iter().enumerate() {
        let name = &l.names[i];
        // Centred over the lifeline, but never into the column's last cell: that one keeps
        // neighbouring names apart.
        let w = width(name);
        let centred = l.lifeline(i) - (w.max(1) - 1) / 2;
        let latest = (l.starts[i] + l.widths[i]).saturating_sub(w + 1);
        diagram.put(centred.min(latest).max(l.starts[i]), name, paint_of(col));
    }
    line.append(&diagram);
    if l.margins.took {
        line.push_str(&pad_left("took", GAP + l.took_w), Paint::Dim);
    }
    if l.margins.size {
        line.push_str(&" ".repeat(GAP), Paint::Plain);
        line.push_str(&pad_right("size", l.size_w + l.reply_w), Paint::Dim);
    }
    line
}

/// The diagram part of a row: lifelines, then the arrow (or a loop for a self-crossing)
/// and the kind on it or beside it.
fn diagram(row: &Row, cols: &[Column<'_>], l: &Layout) -> Line {
    let mut d = Line::blank(l.diagram_w);
    for i in 0..cols.len() {
        d.set(l.lifeline(i), '│', Paint::Plain);
    }
    let paint = if row.error {
        Paint::Error
    } else {
        paint_of(&cols[row.from])
    };
    let (a, b) = (l.lifeline(row.from), l.lifeline(row.to));
    if a == b {
        d.set(a, '↻', paint);
        place_beside(&mut d, &row.kind, a, a, paint);
        return d;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    // The shaft between the two lifelines, the head next to the receiver's.
    for x in lo + 1..hi {
        d.set(x, '─', paint);
    }
    if a < b {
        d.set(b - 1, '▶', paint);
    } else {
        d.set(b + 1, '◀', paint);
    }
    let first = if a < b { lo + 1 } else { lo + 2 };
    let shaft = (hi - lo).saturating_sub(2); // cells between the lifelines, less the head
    label_arrow(&mut d, &row.kind, (first, shaft), lo, hi, paint);
    d
}

/// Where an arrow's kind goes, first that fits whole: on the shaft with a space and a `─`
/// either side, on the shaft with a `─` either side, right of the right lifeline, left of
/// the left one; else the roomiest of these places, the kind cut with `…` to fit.
fn label_arrow(
    d: &mut Line,
    kind: &str,
    (first, shaft): (usize, usize),
    lo: usize,
    hi: usize,
    paint: Paint,
) {
    let w = width(kind);
    let beside = {
        let (right, left) = beside_room(d, lo, hi);
        right.max(left)
    };
    let on_shaft = shaft.saturating_sub(2);
    if w + 4 <= shaft {
        d.put(first + (shaft - w - 2) / 2, &format!(" {kind} "), paint);
    } else if w <= on_shaft || (w > beside && on_shaft > beside) {
        let text = fit(kind, on_shaft);
        d.put(first + (shaft - width(&text)) / 2, &text, paint);
    } else {
        place_beside(d, kind, lo, hi, paint);
    }
}

/// Columns free for a label right of `hi`'s lifeline and left of `lo`'s (a space apart
/// from the lifeline and from what follows).
fn beside_room(d: &Line, lo: usize, hi: usize) -> (usize, usize) {
    (d.width().saturating_sub(hi + 3), lo.saturating_sub(2))
}

/// Puts `kind` right of `hi`'s lifeline if it fits, else left of `lo`'s, else on the
/// wider side, cut with `…`; a blank cell separates it from both the lifeline and what
/// follows it.
fn place_beside(d: &mut Line, kind: &str, lo: usize, hi: usize, paint: Paint) {
    let w = width(kind);
    let (right_room, left_room) = beside_room(d, lo, hi);
    let right = w <= right_room || (w > left_room && right_room >= left_room);
    if right {
        let text = fit(kind, right_room);
        d.set(hi + 1, ' ', Paint::Plain);
        let end = d.put(hi + 2, &text, paint);
        d.set(end, ' ', Paint::Plain);
    } else {
        let text = fit(kind, left_room);
        let start = lo - 1 - width(&text);
        d.set(start - 1, ' ', Paint::Plain);
        d.put(start, &text, paint);
        d.set(lo - 1, ' ', Paint::Plain);
    }
}

fn row_line(row: &Row, cols: &[Column<'_>], l: &Layout) -> Line {
    let mut line = Line::default();
    if l.margins.time {
        line.push_str(&pad_right(&row.time, l.time_w + GAP), Paint::Plain);
    }
    line.append(&diagram(row, cols, l));
    if l.margins.took {
        line.push_str(&pad_left(&row.took, GAP + l.took_w), Paint::Plain);
    }
    if l.margins.size {
        line.push_str(&pad_left(&row.size, GAP + l.size_w), Paint::Plain);
        line.push_str(&pad_right(&row.reply, l.reply_w), Paint::Plain);
    }
    if l.mark_w > 0 {
        line.push_str(" ", Paint::Plain);
        line.push_str(if row.error { "✗" } else { " " }, Paint::Error);
    }
    if l.margins.detail_inline
        && let Some(detail) = &row.detail
    {
        let paint = if row.error { Paint::Error } else { Paint::Dim };
        line.push_str(" ", Paint::Plain);
        line.push_str(&fit(detail, l.detail_w), paint);
    }
    line
}

/// A row's detail on a line of its own: lifelines, and `↳ detail` from just right of the
/// receiver's lifeline (moved left as far as it must to fit); the note hides the lifelines
/// right of where it starts.
fn detail_line(row: &Row, detail: &str, l: &Layout, width_max: usize) -> Line {
    let mut line = Line::blank(l.left_w());
    let mut d = Line::blank(l.diagram_w);
    for i in 0..l.names.len() {
        d.set(l.lifeline(i), '│', Paint::Plain);
    }
    line.append(&d);
    let text = format!("↳ {detail}");
    let want = l.left_w() + l.lifeline(row.to) + 2;
    let at = want.min(width_max.saturating_sub(width(&text)));
    line.cut(at);
    line.push_str(&" ".repeat(at.saturating_sub(line.width())), Paint::Plain);
    let paint = if row.error { Paint::Error } else { Paint::Dim };
    line.push_str(&fit(&text, width_max.saturating_sub(at)), paint);
    line
}

#[cfg(test)]
mod tests {
    use runloop_proto::payloads::{Crossing, Participant};

    use super::*;

    type Send<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

    fn view(participants: &[(&str, ParticipantKind, &str)], sends: &[Send<'_>]) -> TraceView {
        TraceView {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            opening: "demo".into(),
            status: "failed".into(),
            started_ms: 1_000,
            participants: participants
                .iter()
                .map(|&(id, kind, label)| Participant {
                    id: id.into(),
                    kind,
                    label: label.into(),
                })
                .collect(),
            crossings: sends
                .iter()
                .enumerate()
                .map(|(i, &(from, to, kind, error))| Crossing {
                    seq: i as u64,
                    from: from.into(),
                    to: to.into(),
                    kind: kind.into(),
                    node: None,
                    bytes: 100 * i as u64,
                    reply_bytes: (i % 2 == 0).then_some(2_000),
                    start_ms: 1_000 + 7 * i as u64,
                    end_ms: 1_003 + 11 * i as u64,
                    status: if error.is_some() {
                        CrossingStatus::Error
                    } else {
                        CrossingStatus::Ok
                    },
                    detail: error.map(Into::into),
                })
                .collect(),
        }
    }

    fn plain(width: usize) -> LadderOptions {
        LadderOptions {
            width,
            relative: false,
            color: false,
        }
    }

    /// Six agents with long labels, a broker, and a CJK label (two columns a character).
    fn crowded() -> TraceView {
        use ParticipantKind::{Agent, Broker, Run};
        view(
            &[
                ("run", Run, "run a_long_opening_name"),
                ("agent:a", Agent, "contact_resolver"),
                ("agent:b", Agent, "context_gatherer"),
                ("agent:c", Agent, "writer_of_drafts"),
                ("agent:d", Agent, "critic_of_drafts"),
                ("agent:e", Agent, "mailer_of_drafts"),
                ("agent:f", Agent, "翻訳者_translator"),
                ("broker", Broker, "broker"),
            ],
            &[
                ("run", "agent:a", "agent.invoke", None),
                (
                    "agent:a",
                    "broker",
                    "model.complete",
                    Some("timed out after 1200ms; the provider did not answer"),
                ),
                ("agent:f", "agent:f", "node.retry", None),
                ("broker", "run", "a.kind.longer.than.any.column.here", None),
                (
                    "agent:f",
                    "run",
                    "agent.reply",
                    Some("失敗: 翻訳できません"),
                ),
            ],
        )
    }

    #[test]
    fn long_labels_get_codes_and_a_legend_at_80_and_stay_whole_at_200() {
        let text = ladder(&crowded(), &plain(80));
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("utc")).unwrap();
        for code in ["R", "A1", "A2", "A6", "broker"] {
            assert!(header.contains(code), "{code}:\n{text}");
        }
        let legend = lines[1..].iter().take_while(|l| !l.starts_with("utc"));
        let legend = legend.copied().collect::<Vec<_>>().join("\n");
        assert!(legend.contains("A1 contact_resolver"), "{text}");
        assert!(legend.contains("A6 翻訳者_translator"), "{text}");
        assert!(
            !legend.contains(" broker"),
            "broker fits, so no legend entry:\n{text}"
        );

        let text = ladder(&crowded(), &plain(200));
        let header = text.lines().nth(1).unwrap();
        assert!(header.starts_with("utc"), "no legend at 200:\n{text}");
        assert!(header.contains("contact_resolver") && header.contains("翻訳者_translator"));
    }

    #[test]
    fn labels_are_truncated_when_unambiguous_and_coded_when_not() {
        let col = |label| Column {
            id: "x",
            label,
            kind: Some(ParticipantKind::Agent),
        };
        let cols = [col("context_gatherer"), col("contact_resolver"), col("pog")];
        let labels: Vec<String> = cols.iter().map(|c| c.label.to_owned()).collect();
        assert_eq!(
            names(&cols, &labels, &[11, 11, 5]),
            ["context_g…", "contact_r…", "pog"]
        );
        // Cut to 6 columns both read `conte…`/`conta…`: below TRUNCATED_LABEL_MIN, so codes.
        assert_eq!(names(&cols, &labels, &[7, 7, 5]), ["A1", "A2", "pog"]);
        let cols = [col("agent_number_10"), col("agent_number_11")];
        let labels: Vec<String> = cols.iter().map(|c| c.label.to_owned()).collect();
        assert_eq!(
            names(&cols, &labels, &[11, 11]),
            ["A1", "A2"],
            "the same cut: codes"
        );
    }

    #[test]
    fn arrows_point_from_sender_to_receiver() {
        use ParticipantKind::{Agent, Broker};
        let v = view(
            &[("agent:w", Agent, "writer"), ("broker", Broker, "broker")],
            &[
                ("agent:w", "broker", "model.complete", None),
                ("broker", "agent:w", "model.chunk", None),
                ("agent:w", "agent:w", "node.retry", None),
            ],
        );
        let text = ladder(&v, &plain(100));
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert!(
            rows[0].contains("─ model.complete ─") && rows[0].contains("▶│"),
            "{text}"
        );
        assert!(
            rows[1].contains("│◀─") && rows[1].contains("model.chunk"),
            "{text}"
        );
        assert!(rows[2].contains("↻ node.retry"), "{text}");
        assert_eq!(rows.len(), 3, "{text}");
    }

    #[test]
    fn no_line_wider_than_the_width_even_with_wide_characters() {
        for w in [0, 5, 20, 40, 60, 80, 120, 200] {
            for relative in [false, true] {
                let text = ladder(
                    &crowded(),
                    &LadderOptions {
                        width: w,
                        relative,
                        color: false,
                    },
                );
                for line in text.lines() {
                    assert!(width(line) <= w, "{w}: {} columns: {line:?}", width(line));
                }
            }
        }
    }

    #[test]
    fn errors_are_marked_and_their_detail_shown() {
        for w in [80, 200] {
            let text = ladder(&crowded(), &plain(w));
            assert_eq!(text.matches('✗').count(), 2, "{text}");
            assert!(text.contains("timed out after"), "{text}");
        }
        // At 80 the detail gets a line of its own, marked `↳`.
        let text = ladder(&crowded(), &plain(80));
        assert!(
            text.lines().any(|l| l.contains("↳ timed out after 1200ms")),
            "{text}"
        );
    }

    #[test]
    fn ansi_only_with_colour() {
        let plain_text = ladder(&crowded(), &plain(120));
        assert!(!plain_text.contains('\x1b'));
        let colour = ladder(
            &crowded(),
            &LadderOptions {
                width: 120,
                relative: false,
                color: true,
            },
        );
        assert!(colour.contains("\x1b[1;31m"), "errors in red");
        assert!(colour.contains("\x1b[35m"), "the run's arrows in magenta");
        assert!(colour.contains("\x1b[0m"));
    }

    #[test]
    fn unknown_participants_get_a_column_and_empty_views_a_note() {
        let v = view(
            &[("run", ParticipantKind::Run, "run")],
            &[("run", "mystery", "x.y", None)],
        );
        let text = ladder(&v, &plain(60));
        assert!(text.lines().nth(1).unwrap().contains("mystery"), "{text}");
        let empty = view(&[], &[]);
        let text = ladder(&empty, &plain(60));
        assert_eq!(text.lines().nth(1), Some("(no crossings)"), "{text}");
    }
}
