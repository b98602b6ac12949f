//! `rlp trace --format mermaid`: a Mermaid `sequenceDiagram` of a run, for any site that
//! renders Mermaid in Markdown.
//!
//! Participants get aliases `P0`, `P1`, … (ids such as `agent:writer` are not valid
//! Mermaid names) with their label after `as`. Each crossing is one message,
//! `P2->>P7: model.complete (1.2s, 3.1K→1.9K)`; an error uses the cross arrow `-x` and
//! carries its detail after `✗`, a detail of a successful crossing (a decision) follows a
//! `—`. Text is one line each, with `;` and `#` written as Mermaid's entity codes
//! (`#59;`, `#35;`): a raw `;` ends a statement. `packaging/scripts/trace-tools.sh
//! check-mermaid` parses the output with the real Mermaid parser (see
//! `tests/trace_render.rs`).

use std::fmt::Write as _;

use runloop_proto::payloads::{CrossingStatus, TraceView};

use super::text::{clean, fit};
use super::{columns, total_ms, units};

/// Columns of a crossing's detail kept in its message (the rest is cut with `…`).
const DETAIL_CHARS_MAX: usize = 120;
/// Columns of a participant label kept after `as`.
const LABEL_CHARS_MAX: usize = 60;

/// The Mermaid text of `view`, `\n`-terminated.
pub fn mermaid(view: &TraceView) -> String {
    let (cols, ends) = columns(view);
    let mut out = String::from("sequenceDiagram\n");
    // A comment (`%%` to the end of the line) keeps the run's identity with the diagram.
    let _ = writeln!(
        out,
        "    %% rlp trace {}: {}, {}, {}, {}",
        clean(&view.trace_id),
        clean(&view.opening),
        clean(&view.status),
        units::crossings(view.crossings.len()),
        units::span(total_ms(view)),
    );
    for (i, col) in cols.iter().enumerate() {
        let label = fit(clean(col.label).trim(), LABEL_CHARS_MAX);
        let label = if label.is_empty() {
            format!("P{i}")
        } else {
            label
        };
        let _ = writeln!(out, "    participant P{i} as {}", escape(&label));
    }
    for (c, &(from, to)) in view.crossings.iter().zip(&ends) {
        let arrow = match c.status {
            CrossingStatus::Ok => "->>",
            CrossingStatus::Error => "-x",
        };
        let mut text = format!(
            "{} ({}, {})",
            clean(&c.kind).trim(),
            units::latency(c.end_ms.saturating_sub(c.start_ms)),
            units::sizes(c.bytes, c.reply_bytes),
        );
        if let Some(detail) = &c.detail {
            let mark = match c.status {
                CrossingStatus::Ok => '—',
                CrossingStatus::Error => '✗',
            };
            let detail = fit(clean(detail).trim(), DETAIL_CHARS_MAX);
            let _ = write!(text, " {mark} {detail}");
        }
        let _ = writeln!(out, "    P{from}{arrow}P{to}: {}", escape(&text));
    }
    out
}

/// Text safe on one Mermaid line: `#` and `;` as entity codes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use runloop_proto::payloads::{Crossing, Participant, ParticipantKind};

    use super::*;

    #[test]
    fn aliases_arrows_and_escapes() {
        let view = TraceView {
            trace_id: "t1".into(),
            opening: "o".into(),
            status: "failed".into(),
            started_ms: 0,
            participants: vec![
                Participant {
                    id: "agent:writer".into(),
                    kind: ParticipantKind::Agent,
                    label: "writer; #1".into(),
                },
                Participant {
                    id: "broker".into(),
                    kind: ParticipantKind::Broker,
                    label: "broker".into(),
                },
            ],
            crossings: vec![Crossing {
                seq: 0,
                from: "agent:writer".into(),
                to: "broker".into(),
                kind: "model.complete".into(),
                node: Some("draft".into()),
                bytes: 3_200,
                reply_bytes: Some(0),
                start_ms: 10,
                end_ms: 1_210,
                status: CrossingStatus::Error,
                detail: Some("timed out;\nretry #2".into()),
            }],
        };
        let text = mermaid(&view);
        assert_eq!(
            text,
            "sequenceDiagram\n\
             \x20   %% rlp trace t1: o, failed, 1 crossing, 1.210s\n\
             \x20   participant P0 as writer#59; #35;1\n\
             \x20   participant P1 as broker\n\
             \x20   P0-xP1: model.complete (1.2s, 3.1K→0B) ✗ timed out#59; retry #35;2\n"
        );
    }
}
