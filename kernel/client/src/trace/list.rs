//! `rlp trace` without an id: the table of recent traces.

use runloop_proto::payloads::TraceSummary;

use super::text::{Line, Paint, clean, pad_left, pad_right, width};
use super::units;

/// Columns between two table columns.
const GAP: usize = 2;

/// The table's columns.
const HEADERS: [&str; 5] = ["TRACE", "OPENING", "STATUS", "STARTED UTC", "CROSSINGS"];

/// How a table too wide for its width gives way, one step after the other while it is.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Cut a column (0 trace id, 1 opening, 2 status) to at most this many columns.
    Narrow(usize, usize),
    /// Start times without seconds (`2026-11-30 14:03`).
    Minutes,
    /// Start times without the year either (`11-30 14:03`).
    NoYear,
}

/// Opening first, then the start times' precision; the trace id, which `rlp trace ID`
/// needs whole, gives way last.
const STEPS: [Step; 7] = [
    Step::Narrow(1, 12),
    Step::Minutes,
    Step::NoYear,
    Step::Narrow(1, 8),
    Step::Narrow(2, 7),
    Step::Narrow(0, 13),
    Step::Narrow(1, 5),
];

/// One line per trace (in the order given) under a header line, fitted to `width_max`:
/// while too wide, the opening is cut (to 12 columns), start times lose their seconds,
/// then their year, the opening is cut further (8), then the status (7), then the trace
/// id (13), then the opening again (5); a line still too wide is cut with `…`. Without
/// traces: one line saying so.
pub fn list(traces: &[TraceSummary], width_max: usize) -> String {
    let mut out = String::new();
    if traces.is_empty() {
        let mut line = Line::default();
        line.push_str("no traces recorded yet", Paint::Plain);
        line.truncate(width_max);
        line.render(false, &mut out);
        return out;
    }
    let mut cells: Vec<[String; 5]> = traces
        .iter()
        .map(|t| {
            [
                clean(&t.trace_id),
                clean(&t.opening),
                clean(&t.status),
                units::datetime_utc(t.started_ms),
                t.crossings.to_string(),
            ]
        })
        .collect();
    let natural = |cells: &[[String; 5]], i: usize| {
        cells
            .iter()
            .map(|row| width(&row[i]))
            .chain([width(HEADERS[i])])
            .max()
            .unwrap_or(0)
    };
    let mut widths: [usize; 5] = std::array::from_fn(|i| natural(&cells, i));
    let total = |w: &[usize; 5]| w.iter().sum::<usize>() + GAP * (w.len() - 1);
    for step in STEPS {
        let excess = total(&widths).saturating_sub(width_max);
        if excess == 0 {
            break;
        }
        match step {
            Step::Narrow(col, min) => widths[col] -= excess.min(widths[col].saturating_sub(min)),
            Step::Minutes | Step::NoYear => {
                // `YYYY-MM-DD HH:MM:SS` → `YYYY-MM-DD HH:MM` → `MM-DD HH:MM`.
                for (row, t) in cells.iter_mut().zip(traces) {
                    let full = units::datetime_utc(t.started_ms);
                    row[3] = match step {
                        Step::Minutes => full[..16].to_owned(),
                        _ => full[5..16].to_owned(),
                    };
                }
                widths[3] = natural(&cells, 3);
            }
        }
    }
    let mut emit = |row: [&str; 5]| {
        let mut line = Line::default();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str(&" ".repeat(GAP), Paint::Plain);
            }
            // Counts are right-aligned, and their header over them.
            let text = if i == 4 {
                pad_left(cell, widths[i])
            } else {
                pad_right(cell, widths[i])
            };
            line.push_str(&text, Paint::Plain);
        }
        line.truncate(width_max);
        line.render(false, &mut out);
    };
    emit(HEADERS);
    for row in &cells {
        emit([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(i: u64) -> TraceSummary {
        TraceSummary {
            trace_id: format!(
                "{:032x}",
                0x3f9c_0000_0000_0000_0000_0000_0000_0000_u128 + u128::from(i)
            ),
            opening: if i == 1 {
                "a_much_longer_opening_name".into()
            } else {
                "compose_email".into()
            },
            status: if i == 2 {
                "interrupted".into()
            } else {
                "succeeded".into()
            },
            started_ms: 1_796_047_387_120 + i * 60_000,
            crossings: 31 + i * 1000,
        }
    }

    #[test]
    fn wide_table_shows_everything() {
        let out = list(&[summary(0), summary(1), summary(2)], 200);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("TRACE "), "{out}");
        assert!(lines[0].ends_with("CROSSINGS"), "{out}");
        assert!(
            lines[1].contains("3f9c0000000000000000000000000000"),
            "{out}"
        );
        assert!(lines[2].contains("a_much_longer_opening_name"), "{out}");
        assert!(lines[3].contains("interrupted"), "{out}");
        assert!(lines[3].contains("2026-11-30 14:05:07"), "{out}");
        assert!(lines[3].ends_with(" 2031"), "{out}");
    }

    #[test]
    fn narrow_tables_fit_their_width() {
        let traces = [summary(0), summary(1), summary(2)];
        for w in [20, 40, 60, 80, 100] {
            let out = list(&traces, w);
            for line in out.lines() {
                assert!(width(line) <= w, "{w}: {line:?}");
            }
        }
        // At 80 the opening gives way first; the full trace id still fits.
        let out = list(&traces, 80);
        assert!(out.contains("3f9c0000000000000000000000000001"), "{out}");
        assert!(out.contains("a_much_l…"), "{out}");
        assert!(out.contains("  11-30 14:04  "), "{out}");
        assert!(out.lines().all(|l| width(l) <= 80), "{out}");
        assert_eq!(list(&[], 80), "no traces recorded yet\n");
    }
}
