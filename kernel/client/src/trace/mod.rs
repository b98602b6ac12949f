//! Renderers of `rlp trace`: a run's recorded crossings ([`TraceView`]) drawn as a text
//! ladder, a Mermaid sequence diagram or Chrome Trace Event JSON, the table of recent
//! traces, and the filter the CLI applies before drawing.
//!
//! Pure functions of their input: no clock, no terminal query, no I/O, so each output is
//! deterministic and golden-tested (`tests/trace_render.rs`); the caller picks the width
//! and whether to colour. Every function accepts any view, including one whose crossings
//! name a participant it does not list (such a participant gets a column of its own, after
//! the listed ones, labelled with its id).
//!
//! - [`filter`]: keep the crossings of one node and/or one kind of message;
//! - [`ladder`]: the sequence diagram as text, fitted to a terminal width;
//! - [`mermaid`]: a `sequenceDiagram` for Markdown renderers;
//! - [`chrome`]: Trace Event Format JSON for Perfetto or `chrome://tracing`;
//! - [`list`]: the table `rlp trace` prints without an id.

mod chrome;
mod filter;
mod ladder;
mod list;
mod mermaid;
mod text;
mod units;

use std::collections::HashMap;

use runloop_proto::payloads::{ParticipantKind, TraceView};

pub use chrome::chrome;
pub use filter::filter;
pub use ladder::{LadderOptions, ladder};
pub use list::list;
pub use mermaid::mermaid;

/// One column of a rendering: a listed participant, or an id only a crossing names.
#[derive(Debug)]
struct Column<'a> {
    id: &'a str,
    label: &'a str,
    /// `None` for an id the view's participants do not list.
    kind: Option<ParticipantKind>,
}

/// The view's columns in order, then any participant only crossings name (in order of
/// first appearance), and each crossing's `(from, to)` column indices, in crossing order.
fn columns(view: &TraceView) -> (Vec<Column<'_>>, Vec<(usize, usize)>) {
    let mut columns: Vec<Column<'_>> = Vec::with_capacity(view.participants.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(view.participants.len());
    for p in &view.participants {
        // A repeated id keeps its first column.
        index.entry(p.id.as_str()).or_insert_with(|| {
            columns.push(Column {
                id: &p.id,
                label: &p.label,
                kind: Some(p.kind),
            });
            columns.len() - 1
        });
    }
    let mut ends = Vec::with_capacity(view.crossings.len());
    for c in &view.crossings {
        let from = column_of(&mut columns, &mut index, &c.from);
        let to = column_of(&mut columns, &mut index, &c.to);
        ends.push((from, to));
    }
    (columns, ends)
}

/// The column of `id`, appending one for an id seen first here.
fn column_of<'a>(
    columns: &mut Vec<Column<'a>>,
    index: &mut HashMap<&'a str, usize>,
    id: &'a str,
) -> usize {
    *index.entry(id).or_insert_with(|| {
        columns.push(Column {
            id,
            label: id,
            kind: None,
        });
        columns.len() - 1
    })
}

/// The earliest time a rendering counts from: the run's start, or an earlier crossing's
/// (a clock step can record one before it).
fn origin_ms(view: &TraceView) -> u64 {
    view.crossings
        .iter()
        .map(|c| c.start_ms)
        .fold(view.started_ms, u64::min)
}

/// From the run's start to the end of its last crossing, in milliseconds.
fn total_ms(view: &TraceView) -> u64 {
    view.crossings
        .iter()
        .map(|c| c.end_ms.max(c.start_ms))
        .max()
        .map_or(0, |end| end.saturating_sub(view.started_ms))
}
