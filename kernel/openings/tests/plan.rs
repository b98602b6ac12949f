//! The run plan driven by hand: fan-out and fan-in, guards, skip cascades, optional
//! edges, failure and cancellation, success predicates, the result hash, and backoff.

mod common;

use common::{map, s};
use rmpv::Value as V;
use runloop_openings::hash::{self, NodeHash};
use runloop_openings::model::Retry;
use runloop_openings::params::{BoundParams, bind};
use runloop_openings::plan::{NodeEnd, NodeState, Outcome, Plan, Step, backoff_ms};
use serde_json::json;

fn ok(outputs: &[(&str, V)]) -> NodeEnd {
    NodeEnd::Succeeded {
        outputs: outputs
            .iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect(),
    }
}

fn no_params() -> BoundParams {
    BoundParams { values: vec![] }
}

fn run(nodes: &[usize]) -> Step {
    Step {
        run: nodes.to_vec(),
        skipped: vec![],
    }
}

const FAN: &str = r#"version: 0
name: fan
goals: ["join {{params.n}}"]
params: { n: { type: integer, default: 2 } }
nodes:
  - { id: join, use: "agent:echo", with: { n: "{{params.n}}" } }
  - { id: src, use: "agent:echo" }
  - { id: l, use: "agent:echo" }
  - { id: r, use: "agent:echo" }
edges:
  - { from: src.out, to: l.in }
  - { from: src.out, to: r.in }
  - { from: l.out, to: join.a }
  - { from: src.other, to: join.b }
  - { from: r.out, to: join.a }
"#;

#[test]
fn fan_out_and_fan_in_with_array_inputs_in_edge_order() {
    let o = common::opening(FAN);
    let params = bind(&o, &json!({})).unwrap();
    let mut plan = Plan::new(o);
    let (join, src, l, r) = (0, 1, 2, 3);
    assert_eq!(plan.step(), run(&[src]));
    assert_eq!(
        plan.step(),
        Step::default(),
        "nothing new until src finishes"
    );
    // Two emissions on `out`: the port's value is the last one.
    plan.finish(
        src,
        ok(&[("out", 1.into()), ("other", s("x")), ("out", 2.into())]),
    );
    assert_eq!(plan.step(), run(&[l, r]));
    assert_eq!(
        plan.input(l, 1, &params),
        map(&[
            ("node", s("l")),
            ("attempt", 1.into()),
            ("with", map(&[])),
            ("inputs", map(&[("in", 2.into())])),
            ("goals", V::Array(vec![s("join 2")])),
        ])
    );
    plan.finish(r, ok(&[("out", s("right"))]));
    assert_eq!(plan.step(), Step::default(), "join still waits for l");
    plan.finish(l, ok(&[("out", s("left"))]));
    assert_eq!(plan.step(), run(&[join]));
    // Port a is fed by two delivered edges: an array in edge order (l's edge first);
    // ports in the order of their first delivered edge.
    assert_eq!(
        plan.input(join, 3, &params),
        map(&[
            ("node", s("join")),
            ("attempt", 3.into()),
            ("with", map(&[("n", 2.into())])),
            (
                "inputs",
                map(&[("a", V::Array(vec![s("left"), s("right")])), ("b", s("x"))])
            ),
            ("goals", V::Array(vec![s("join 2")])),
        ])
    );
    plan.finish(join, ok(&[]));
    assert!(plan.is_done());
    assert_eq!(plan.outcome(), Outcome::Succeeded);
    let NodeState::Succeeded { output_hash, .. } = plan.state(src) else {
        panic!("src succeeded")
    };
    assert_eq!(
        *output_hash,
        hash::output_hash(&[
            ("out".into(), 1.into()),
            ("other".into(), s("x")),
            ("out".into(), 2.into())
        ])
    );
}

/// Declared last-first so the skip cascade needs more than one sweep.
const GUARD: &str = r#"version: 0
name: guard
nodes:
  - { id: last, use: "agent:echo" }
  - { id: after, use: "agent:echo" }
  - { id: send, use: "agent:echo" }
  - { id: review, use: "agent:echo" }
edges:
  - { from: review.out.ok == true, to: send.in }
  - { from: send.out, to: after.in }
  - { from: after.out, to: last.in }
success: { any_of: ["last.out == 1", "exists(review.out.notes)"] }
"#;

#[test]
fn a_false_guard_skips_its_target_and_the_skip_cascades() {
    let mut plan = Plan::new(common::opening(GUARD));
    let (last, after, send, review) = (0, 1, 2, 3);
    assert_eq!(plan.step(), run(&[review]));
    plan.finish(review, ok(&[("out", map(&[("ok", false.into())]))]));
    let step = plan.step();
    assert_eq!(step.run, Vec::<usize>::new());
    assert_eq!(
        step.skipped,
        vec![
            (last, "edge after.out → last.in was skipped".to_owned()),
            (after, "edge send.out → after.in was skipped".to_owned()),
            (
                send,
                "edge review.out.ok == true → send.in was skipped".to_owned()
            ),
        ]
    );
    assert!(plan.is_done());
    assert_eq!(plan.state(send), &NodeState::Skipped);
    // Neither predicate holds: `last` did not run, review has no `notes`.
    assert_eq!(
        plan.outcome(),
        Outcome::Failed {
            reason:
                "success predicate did not hold: any_of [last.out == 1, exists(review.out.notes)]"
                    .into()
        }
    );
}

#[test]
fn a_true_guard_delivers_the_whole_port_value() {
    let mut plan = Plan::new(common::opening(GUARD));
    let (last, after, send, review) = (0, 1, 2, 3);
    plan.step();
    let verdict = map(&[("ok", true.into()), ("notes", s("fine"))]);
    plan.finish(review, ok(&[("out", verdict.clone())]));
    assert_eq!(plan.step(), run(&[send]));
    let input = plan.input(send, 1, &no_params());
    assert_eq!(
        runloop_openings::expr::lookup(&input, &["inputs".into(), "in".into()]),
        Some(&verdict)
    );
    plan.finish(send, ok(&[("out", 1.into())]));
    assert_eq!(plan.step(), run(&[after]));
    plan.finish(after, ok(&[("out", 1.into())]));
    assert_eq!(plan.step(), run(&[last]));
    plan.finish(last, ok(&[("other", 1.into())]));
    // `last.out == 1` does not hold (port not emitted) but exists(review.out.notes) does.
    assert_eq!(plan.outcome(), Outcome::Succeeded);
}

const OPTIONAL: &str = r#"version: 0
name: optional
nodes:
  - { id: src, use: "agent:echo" }
  - { id: ctx, use: "agent:echo" }
  - { id: w, use: "agent:echo" }
edges:
  - { from: src.out, to: w.a }
  - { from: ctx.out, to: w.b, optional: true }
  - { from: ctx.other == "go", to: w.in, optional: true }
success: { all_of: ["w.out.n >= 2", "exists(src.out)"] }
"#;

#[test]
fn an_optional_edge_that_delivers_nothing_leaves_the_port_out() {
    let mut plan = Plan::new(common::opening(OPTIONAL));
    let (src, ctx, w) = (0, 1, 2);
    assert_eq!(plan.step(), run(&[src, ctx]));
    plan.finish(ctx, ok(&[("other", s("stop"))])); // no `out`; the guard is false
    assert_eq!(plan.step(), Step::default());
    plan.finish(src, ok(&[("out", s("data"))]));
    assert_eq!(plan.step(), run(&[w]));
    let input = plan.input(w, 1, &no_params());
    assert_eq!(
        runloop_openings::expr::lookup(&input, &["inputs".into()]),
        Some(&map(&[("a", s("data"))]))
    );
    plan.finish(w, ok(&[("out", map(&[("n", V::F64(1.5))]))]));
    assert_eq!(
        plan.outcome(),
        Outcome::Failed {
            reason: "success predicate did not hold: w.out.n >= 2".into()
        }
    );
}

#[test]
fn all_of_holds_when_every_predicate_does() {
    let mut plan = Plan::new(common::opening(OPTIONAL));
    plan.step();
    plan.finish(0, ok(&[("out", s("data"))]));
    plan.finish(1, ok(&[("out", 1.into())]));
    assert_eq!(plan.step(), run(&[2]));
    plan.finish(2, ok(&[("out", map(&[("n", 2.into())]))]));
    assert_eq!(plan.outcome(), Outcome::Succeeded);
}

#[test]
fn a_failed_node_fails_the_run_and_waiting_nodes_are_cancelled() {
    let mut plan = Plan::new(common::opening(OPTIONAL));
    let (src, ctx, w) = (0, 1, 2);
    plan.step();
    plan.finish(
        src,
        NodeEnd::Failed {
            reason: "guest trap".into(),
        },
    );
    assert_eq!(plan.step(), Step::default(), "w waits for ctx");
    assert_eq!(plan.cancel_waiting(), vec![w]);
    assert!(!plan.is_done(), "ctx is still running");
    plan.finish(ctx, NodeEnd::Cancelled);
    assert!(plan.is_done());
    assert_eq!(
        plan.outcome(),
        Outcome::Failed {
            reason: "node src failed: guest trap".into()
        }
    );
    let want = hash::result_hash(&[
        ("src", NodeHash::Status("failed")),
        ("ctx", NodeHash::Status("cancelled")),
        ("w", NodeHash::Status("cancelled")),
    ]);
    assert_eq!(plan.result_hash(), want);
}

#[test]
#[should_panic(expected = "not running")]
fn finishing_a_node_that_is_not_running_panics() {
    let mut plan = Plan::new(common::opening(OPTIONAL));
    plan.finish(2, ok(&[]));
}

/// The GUARD run with review's verdict given; every other node that runs emits nothing.
fn guard_run(verdict: bool) -> [u8; 32] {
    let mut plan = Plan::new(common::opening(GUARD));
    plan.step();
    plan.finish(3, ok(&[("out", map(&[("ok", verdict.into())]))]));
    for _ in 0..4 {
        for node in plan.step().run {
            plan.finish(node, ok(&[]));
        }
    }
    assert!(plan.is_done());
    plan.result_hash()
}

#[test]
fn result_hash_is_stable_and_follows_the_documented_encoding() {
    let review = hash::output_hash(&[("out".into(), map(&[("ok", false.into())]))]);
    let want = hash::result_hash(&[
        ("last", NodeHash::Status("skipped")),
        ("after", NodeHash::Status("skipped")),
        ("send", NodeHash::Status("skipped")),
        ("review", NodeHash::Output(&review)),
    ]);
    assert_eq!(guard_run(false), want);
    assert_eq!(guard_run(false), guard_run(false));
    assert_ne!(guard_run(false), guard_run(true));
    assert_eq!(
        blake3::Hash::from(guard_run(false)).to_hex().as_str(),
        "13ec4d668fddb788b178bd2815ee516ac85be6548fda99af7712587a21ad31e5"
    );
}

#[test]
fn backoff_follows_the_formula_exactly() {
    let retry = Retry {
        max_attempts: 6,
        initial_ms: 100,
        max_ms: 1000,
        multiplier: 3.0,
        jitter: 0.2,
    };
    // min(1000, 100·3^(n−2)) · (0.8 + 0.4·unit), rounded.
    let rows = [
        (2, 0.0, 80),
        (2, 0.5, 100),
        (2, 0.999, 120),
        (3, 0.0, 240),
        (3, 0.25, 270),
        (4, 0.5, 900),
        (5, 0.5, 1000), // 2700 capped at max_ms
        (5, 0.0, 800),
        (6, 0.75, 1100),
        (32, 0.5, 1000),
    ];
    for (attempt, unit, want) in rows {
        assert_eq!(
            backoff_ms(&retry, attempt, unit),
            want,
            "attempt {attempt} unit {unit}"
        );
    }
    let plain = Retry::default(); // 100 ms doubling to 10 s, no jitter
    let waits: Vec<u64> = (2..=9).map(|n| backoff_ms(&plain, n, 0.9)).collect();
    assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10_000]);
    let odd = Retry {
        initial_ms: 3,
        multiplier: 1.5,
        jitter: 0.0,
        ..Retry::default()
    };
    assert_eq!(
        backoff_ms(&odd, 3, 0.0),
        5,
        "4.5 rounds half away from zero"
    );
}

#[test]
#[should_panic(expected = "backoff before attempt 1")]
fn backoff_before_the_second_attempt_panics() {
    backoff_ms(&Retry::default(), 1, 0.5);
}
