//! `rlp trace --node N --kind K`: the part of a view worth drawing.

use runloop_proto::payloads::{Crossing, TraceView};

/// The crossings of `view` that match both filters given, with only the participants
/// those crossings touch (in the view's order); `seq` values are kept, so a gap shows where
/// crossings were left out.
///
/// - `node`: crossings that belong to the node (`Crossing::node`) or that the node's agent
///   (`agent:<node>`) sends or receives;
/// - `kind`: crossings of exactly that kind, or of that family: `model` and `model.` both
///   match `model.complete`; the first word of a kind counts too, so `pog.write` matches
///   `pog.write node.started`.
pub fn filter(view: &TraceView, node: Option<&str>, kind: Option<&str>) -> TraceView {
    let agent = node.map(|n| format!("agent:{n}"));
    let crossings: Vec<Crossing> = view
        .crossings
        .iter()
        .filter(|c| {
            let node_ok = match (node, &agent) {
                (Some(n), Some(agent)) => {
                    c.node.as_deref() == Some(n) || &c.from == agent || &c.to == agent
                }
                _ => true,
            };
            node_ok && kind.is_none_or(|k| kind_matches(&c.kind, k))
        })
        .cloned()
        .collect();
    let participants = view
        .participants
        .iter()
        .filter(|p| crossings.iter().any(|c| c.from == p.id || c.to == p.id))
        .cloned()
        .collect();
    TraceView {
        trace_id: view.trace_id.clone(),
        opening: view.opening.clone(),
        status: view.status.clone(),
        started_ms: view.started_ms,
        participants,
        crossings,
    }
}

/// Whether a crossing's kind is `wanted` or of the family `wanted` names.
fn kind_matches(kind: &str, wanted: &str) -> bool {
    let family = wanted.strip_suffix('.').unwrap_or(wanted);
    if family.is_empty() {
        return true;
    }
    let op = kind.split(' ').next().unwrap_or(kind);
    kind == wanted
        || op == family
        || op
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use runloop_proto::payloads::{CrossingStatus, Participant, ParticipantKind};

    use super::*;

    fn crossing(seq: u64, from: &str, to: &str, kind: &str, node: Option<&str>) -> Crossing {
        Crossing {
            seq,
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
            node: node.map(Into::into),
            bytes: 10,
            reply_bytes: None,
            start_ms: 1000 + seq,
            end_ms: 1000 + seq,
            status: CrossingStatus::Ok,
            detail: None,
        }
    }

    fn view() -> TraceView {
        let p = |id: &str, kind| Participant {
            id: id.into(),
            kind,
            label: id.into(),
        };
        TraceView {
            trace_id: "t".into(),
            opening: "o".into(),
            status: "succeeded".into(),
            started_ms: 1000,
            participants: vec![
                p("rlp", ParticipantKind::Cli),
                p("run", ParticipantKind::Run),
                p("agent:draft", ParticipantKind::Agent),
                p("agent:review", ParticipantKind::Agent),
                p("broker", ParticipantKind::Broker),
                p("pog", ParticipantKind::Pog),
            ],
            crossings: vec![
                crossing(0, "rlp", "run", "run.submit", None),
                crossing(1, "run", "agent:draft", "agent.invoke", Some("draft")),
                crossing(2, "agent:draft", "broker", "model.complete", Some("draft")),
                crossing(3, "run", "pog", "pog.write node.succeeded", Some("draft")),
                crossing(4, "run", "agent:review", "agent.invoke", Some("review")),
                crossing(
                    5,
                    "agent:review",
                    "broker",
                    "model.complete",
                    Some("review"),
                ),
                crossing(6, "agent:review", "pog", "kb.query", Some("review")),
                crossing(7, "run", "rlp", "run.report", None),
            ],
        }
    }

    fn seqs(v: &TraceView) -> Vec<u64> {
        v.crossings.iter().map(|c| c.seq).collect()
    }

    fn ids(v: &TraceView) -> Vec<&str> {
        v.participants.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn no_filter_keeps_everything() {
        assert_eq!(filter(&view(), None, None), view());
    }

    #[test]
    fn by_node_keeps_its_crossings_and_their_participants() {
        let v = filter(&view(), Some("review"), None);
        assert_eq!(seqs(&v), [4, 5, 6]);
        assert_eq!(ids(&v), ["run", "agent:review", "broker", "pog"]);
        assert_eq!(v.trace_id, "t");
        assert_eq!(v.started_ms, 1000);
    }

    #[test]
    fn by_kind_matches_exact_kinds_and_families() {
        for wanted in ["model", "model.", "model.complete"] {
            let v = filter(&view(), None, Some(wanted));
            assert_eq!(seqs(&v), [2, 5], "{wanted}");
            assert_eq!(
                ids(&v),
                ["agent:draft", "agent:review", "broker"],
                "{wanted}"
            );
        }
        assert_eq!(seqs(&filter(&view(), None, Some("pog.write"))), [3]);
        assert_eq!(seqs(&filter(&view(), None, Some("pog"))), [3]);
        assert_eq!(seqs(&filter(&view(), None, Some("agent."))), [1, 4]);
        // A prefix that is not a whole family word matches nothing.
        assert!(filter(&view(), None, Some("mod")).crossings.is_empty());
        assert!(
            filter(&view(), None, Some("model.comp"))
                .crossings
                .is_empty()
        );
    }

    #[test]
    fn both_filters_combine() {
        let v = filter(&view(), Some("draft"), Some("model"));
        assert_eq!(seqs(&v), [2]);
        let none = filter(&view(), Some("nobody"), None);
        assert!(none.crossings.is_empty() && none.participants.is_empty());
    }
}
