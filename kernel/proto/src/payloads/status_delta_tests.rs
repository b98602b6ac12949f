//! The delta's round trip: every change a status tree sees between two snapshots is
//! rebuilt exactly, and a delta that does not fit its base is refused.

use super::*;
use crate::body::Body;
use crate::payloads::{AgentStatus, BusInfo};

fn node(name: &str, info: Option<ActorInfo>, children: Vec<ActorNode>) -> ActorNode {
    ActorNode {
        name: name.into(),
        kind: if children.is_empty() {
            ActorKind::Worker
        } else {
            ActorKind::Supervisor
        },
        state: ActorRunState::Running,
        restarts: 0,
        last_error: None,
        info,
        children,
    }
}

fn agent(name: &str, cpu_ms: u64) -> ActorNode {
    let status = AgentStatus {
        name: name.into(),
        bundle: format!("/bundles/{name}"),
        state: "running".into(),
        sandbox_pid: Some(4_000),
        breaker: "closed".into(),
        cpu_ms,
        rss_kb: 2_048,
        ..AgentStatus::default()
    };
    node(
        &format!("agent-{name}"),
        Some(ActorInfo::Agent(status)),
        vec![],
    )
}

fn bus(published: u64) -> ActorNode {
    node(
        "bus",
        Some(ActorInfo::Bus(BusInfo {
            topics: 1,
            subscribers: 1,
            published,
            delivered: published,
            dropped: 0,
            rejected: 0,
        })),
        vec![],
    )
}

/// A kernel's tree: system actors, and runs (name, agents) under `runs`.
fn snapshot(seq: u64, published: u64, runs: &[(&str, Vec<ActorNode>)]) -> StatusSnapshot {
    let runs = runs
        .iter()
        .map(|(name, agents)| node(name, None, agents.clone()))
        .collect();
    StatusSnapshot {
        seq,
        taken_at_ms: 1_000 + seq * 250,
        usage_at_ms: 1_000 + seq / 4 * 1_000,
        tree: node(
            "root",
            None,
            vec![
                node(
                    "system",
                    None,
                    vec![bus(published), node("metrics", None, vec![])],
                ),
                node("runs", None, runs),
            ],
        ),
        agents_cut: 0,
    }
}

/// Through the wire and back, as a client gets it.
fn wire(delta: &StatusDelta) -> StatusDelta {
    Body::from_payload(delta)
        .payload_as()
        .expect("a delta decodes")
}

fn agents(names: &[&str]) -> Vec<ActorNode> {
    names.iter().map(|n| agent(n, 1)).collect()
}

#[test]
fn a_rebuilt_snapshot_equals_the_whole_one() {
    let a = snapshot(1, 10, &[("agents", agents(&["a", "b", "c"]))]);
    let mut changed_agent = snapshot(2, 11, &[("agents", agents(&["a", "b", "c"]))]);
    changed_agent.tree.children[1].children[0].children[1] = agent("b", 70);
    let mut cut = changed_agent.clone();
    cut.seq = 9;
    cut.agents_cut = 4;
    cut.tree.children[1].children[0].children.pop();
    let cases = [
        (
            "nothing changed but the bus",
            snapshot(2, 11, &[("agents", agents(&["a", "b", "c"]))]),
        ),
        ("an agent's figures", changed_agent),
        (
            "an agent added",
            snapshot(2, 10, &[("agents", agents(&["a", "b", "c", "d"]))]),
        ),
        (
            "an agent added first",
            snapshot(2, 10, &[("agents", agents(&["z", "a", "b", "c"]))]),
        ),
        (
            "agents removed",
            snapshot(2, 10, &[("agents", agents(&["b"]))]),
        ),
        ("all agents removed", snapshot(2, 10, &[("agents", vec![])])),
        (
            "a run appeared",
            snapshot(
                2,
                10,
                &[
                    ("agents", agents(&["a", "b", "c"])),
                    ("run-1", agents(&["x", "a"])),
                ],
            ),
        ),
        (
            "the only run replaced",
            snapshot(2, 10, &[("run-2", agents(&["a", "b", "c"]))]),
        ),
        (
            "agents reordered",
            snapshot(2, 10, &[("agents", agents(&["c", "b", "a"]))]),
        ),
        ("agents cut to fit", cut),
    ];
    for (what, new) in cases {
        let delta = wire(&StatusDelta::between(&a, &new));
        assert_eq!(delta.apply(a.clone()).as_ref(), Ok(&new), "{what}");
    }
    // And back: a run disappearing, agents stopped.
    let two_runs = snapshot(
        5,
        10,
        &[("agents", agents(&["a"])), ("run-1", agents(&["x", "y"]))],
    );
    let one_run = snapshot(6, 12, &[("agents", agents(&["a", "b"]))]);
    for (from, to) in [
        (&two_runs, &one_run),
        (&one_run, &two_runs),
        (&two_runs, &a),
    ] {
        let delta = wire(&StatusDelta::between(from, to));
        assert_eq!(delta.apply(from.clone()).as_ref(), Ok(to));
    }
}

/// What makes deltas worth it: an unchanged agent costs nothing, a changed one one put.
#[test]
fn a_delta_carries_only_the_changed_nodes() {
    let names: Vec<String> = (0..1_000).map(|i| format!("idle-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = snapshot(1, 10, &[("agents", agents(&names))]);
    let mut b = snapshot(2, 11, &[("agents", agents(&names))]);
    b.tree.children[1].children[0].children[500] = agent("idle-500", 9);
    let delta = StatusDelta::between(&a, &b);
    let puts: Vec<&str> = delta
        .edits
        .iter()
        .filter_map(|e| match e {
            TreeEdit::Put { node, .. } => Some(node.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(puts, ["bus", "agent-idle-500"]);
    assert!(delta.edits.len() <= 7, "{:?}", delta.edits.len());
    let full = rmp_serde::to_vec_named(&b).unwrap().len();
    let small = rmp_serde::to_vec_named(&delta).unwrap().len();
    assert!(small * 100 < full, "delta {small} B, snapshot {full} B");
    assert_eq!(delta.apply(a), Ok(b));
}

#[test]
fn a_delta_that_does_not_fit_its_base_is_refused() {
    let a = snapshot(1, 10, &[("agents", agents(&["a", "b"]))]);
    let b = snapshot(2, 11, &[("agents", agents(&["a"]))]);
    let delta = StatusDelta::between(&a, &b);
    let mut other = a.clone();
    other.seq = 7;
    assert_eq!(
        delta.clone().apply(other),
        Err(DeltaError::Base { want: 1, have: 7 })
    );
    let bigger = snapshot(1, 10, &[("agents", agents(&["a", "b", "c"]))]);
    assert!(matches!(
        delta.clone().apply(bigger),
        Err(DeltaError::BaseLeft { .. })
    ));
    let mut past = delta.clone();
    past.edits.push(TreeEdit::Keep { count: 1 });
    assert!(matches!(
        past.apply(a.clone()),
        Err(DeltaError::PastBase { .. })
    ));
    let mut nested = delta.clone();
    nested.edits.push(TreeEdit::Put {
        node: node("x", None, vec![bus(1)]),
        children: 0,
    });
    assert_eq!(nested.apply(a.clone()), Err(DeltaError::NestedPut(1)));
    let two_roots = StatusDelta {
        edits: vec![
            TreeEdit::Skip { count: 8 },
            TreeEdit::Put {
                node: bus(1),
                children: 0,
            },
            TreeEdit::Put {
                node: bus(2),
                children: 0,
            },
        ],
        ..delta.clone()
    };
    assert_eq!(two_roots.apply(a.clone()), Err(DeltaError::NotATree));
    let short = StatusDelta {
        edits: vec![
            TreeEdit::Skip { count: 8 },
            TreeEdit::Put {
                node: node("root", None, vec![]),
                children: 2,
            },
        ],
        ..delta
    };
    assert_eq!(short.apply(a), Err(DeltaError::NotATree));
}

/// The count a sender checks its size bound with is the body's encoded length exactly.
#[test]
fn encoded_len_of_counts_the_body_exactly() {
    let names: Vec<String> = (0..300).map(|i| format!("idle-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = snapshot(1, 10, &[("agents", agents(&names))]);
    let b = snapshot(2, 11, &[("agents", agents(&names[..200]))]);
    let delta = StatusDelta::between(&a, &b);
    let len = |body: Body| {
        let mut out = Vec::new();
        body.encode(&mut out);
        out.len()
    };
    assert_eq!(Body::encoded_len_of(&a), len(Body::from_payload(&a)));
    assert_eq!(
        Body::encoded_len_of(&delta),
        len(Body::from_payload(&delta))
    );
    let example = StatusDelta::example();
    assert_eq!(
        Body::encoded_len_of(&example),
        len(Body::from_payload(&example))
    );
}
