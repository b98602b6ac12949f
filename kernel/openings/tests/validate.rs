//! `validate`: one table row per rule (a small YAML, the one error it must give, where and
//! which rule), error collection and order, limits, and a full valid opening with every
//! default filled in.

mod common;

use common::Catalog;
use runloop_openings::expr::{Op, Path, Predicate};
use runloop_openings::model::{self, ParamType, Success};
use runloop_openings::template::{Piece, Template};
use runloop_openings::{Rule, ValidationError, validate};

/// A valid prefix: rows add to it or replace it.
const HEAD: &str = "version: 0\nname: t\n";
/// One node `a` of agent `echo` (lines 3–5 after HEAD).
const NODE_A: &str = "nodes:\n  - id: a\n    use: agent:echo\n";
/// Two nodes `a` and `b` of agent `echo` (lines 3–7 after HEAD).
const NODES_AB: &str = "nodes:\n  - id: a\n    use: agent:echo\n  - id: b\n    use: agent:echo\n";

fn errors(source: &str) -> Vec<ValidationError> {
    match validate(source, &Catalog::new()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    }
}

struct Row {
    what: &'static str,
    source: String,
    line: u32,
    col: u32,
    rule: Rule,
    message: &'static str,
}

fn row(what: &'static str, source: &str, at: (u32, u32), rule: Rule, message: &'static str) -> Row {
    Row {
        what,
        source: source.to_owned(),
        line: at.0,
        col: at.1,
        rule,
        message,
    }
}

/// HEAD + NODES_AB + more.
fn ab(more: &str) -> String {
    format!("{HEAD}{NODES_AB}{more}")
}

#[rustfmt::skip] // one row per line reads as a table
fn rows() -> Vec<Row> {
    let long_name = "n".repeat(65);
    vec![
        // The document.
        row("not yaml", "version: 0\nname: [t\n", (3, 1), Rule::Syntax, "yaml:"),
        row("not a mapping", "- a\n", (1, 1), Rule::Syntax, "expected a mapping at the top"),
        row("empty", "# nothing\n", (1, 1), Rule::Syntax, "empty document"),
        row("duplicate key", &format!("{HEAD}name: u\n{NODE_A}"), (3, 1), Rule::Syntax, "duplicate key name"),
        row("tag", &format!("{HEAD}description: !!str x\n{NODE_A}"), (3, 14), Rule::Syntax, "tags are not supported"),
        row("alias", &format!("version: &v 0\nname: t\ndescription: *v\n{NODE_A}"), (3, 14), Rule::Syntax, "aliases"),
        row("unknown top key", &format!("{HEAD}{NODE_A}colour: red\n"), (6, 1), Rule::UnknownKey, "unknown key colour in opening"),
        row("version missing", &format!("name: t\n{NODE_A}"), (1, 1), Rule::MissingKey, "version is required"),
        row("version 1", &format!("version: 1\nname: t\n{NODE_A}"), (1, 10), Rule::Version, "unsupported opening version 1; expected 0"),
        row("version string", &format!("version: \"0\"\nname: t\n{NODE_A}"), (1, 10), Rule::Version, "unsupported opening version \"0\"; expected 0"),
        row("name missing", &format!("version: 0\n{NODE_A}"), (1, 1), Rule::MissingKey, "name is required"),
        row("name grammar", &format!("version: 0\nname: Compose-Email\n{NODE_A}"), (2, 7), Rule::Name, "must match [a-z][a-z0-9_]{0,63}"),
        row("name too long", &format!("version: 0\nname: {long_name}\n{NODE_A}"), (2, 7), Rule::Limit, "longer than 64 bytes"),
        row("description type", &format!("{HEAD}description: [x]\n{NODE_A}"), (3, 14), Rule::WrongType, "description: expected a string, got sequence"),
        // params.
        row("param unknown key", &format!("{HEAD}params:\n  x: {{ type: string, secret: true }}\n{NODE_A}"), (4, 22), Rule::UnknownKey, "unknown key secret in param x"),
        row("param type missing", &format!("{HEAD}params:\n  x: {{ required: true }}\n{NODE_A}"), (4, 6), Rule::MissingKey, "param x: type is required"),
        row("param type unknown", &format!("{HEAD}params:\n  x: {{ type: text }}\n{NODE_A}"), (4, 14), Rule::Param, "unknown type text"),
        row("param default type", &format!("{HEAD}params:\n  x: {{ type: integer, default: 1.5 }}\n{NODE_A}"), (4, 32), Rule::Param, "param x: default is number; expected integer"),
        row("param required with default", &format!("{HEAD}params:\n  x: {{ type: string, required: true, default: a }}\n{NODE_A}"), (4, 38), Rule::Param, "cannot have a default"),
        row("param name", &format!("{HEAD}params:\n  X: {{ type: string }}\n{NODE_A}"), (4, 3), Rule::Param, "param X: \"X\" must match"),
        // policy.
        row("policy unknown key", &format!("{HEAD}policy:\n  retries: 3\n{NODE_A}"), (4, 3), Rule::UnknownKey, "unknown key retries in policy"),
        row("policy wrong type", &format!("{HEAD}policy:\n  timeout_ms: soon\n{NODE_A}"), (4, 15), Rule::WrongType, "policy.timeout_ms: expected an integer, got string"),
        row("policy max_parallel 0", &format!("{HEAD}policy: {{ max_parallel: 0 }}\n{NODE_A}"), (3, 25), Rule::Policy, "policy.max_parallel must be between 1 and 1024, got 0"),
        row("policy timeout 0", &format!("{HEAD}policy: {{ timeout_ms: 0 }}\n{NODE_A}"), (3, 23), Rule::Policy, "policy.timeout_ms must be between 1 and"),
        row("policy confirm type", &format!("{HEAD}policy: {{ confirm_external: yes }}\n{NODE_A}"), (3, 29), Rule::WrongType, "expected true or false"),
        // nodes.
        row("nodes missing", HEAD, (1, 1), Rule::MissingKey, "nodes is required"),
        row("nodes empty", &format!("{HEAD}nodes: []\n"), (3, 8), Rule::MissingKey, "at least one node"),
        row("node unknown key", &format!("{HEAD}{NODE_A}    colour: red\n"), (6, 5), Rule::UnknownKey, "unknown key colour in node a"),
        row("node id missing", &format!("{HEAD}nodes:\n  - use: agent:echo\n"), (4, 5), Rule::MissingKey, "node: id is required"),
        row("node id starts with a digit", &format!("{HEAD}nodes:\n  - id: 1a\n    use: agent:echo\n"), (4, 9), Rule::NodeId, "node id: \"1a\" must match"),
        row("node id not a string", &format!("{HEAD}nodes:\n  - id: 7\n    use: agent:echo\n"), (4, 9), Rule::WrongType, "node id: expected a string, got integer"),
        row("node id uppercase", &format!("{HEAD}nodes:\n  - id: Draft\n    use: agent:echo\n"), (4, 9), Rule::NodeId, "node id: \"Draft\" must match"),
        row("node id too long", &format!("{HEAD}nodes:\n  - id: {long_name}\n    use: agent:echo\n"), (4, 9), Rule::Limit, "longer than 64 bytes"),
        row("duplicate node", &format!("{HEAD}{NODE_A}  - id: a\n    use: agent:echo\n"), (6, 9), Rule::DuplicateNode, "duplicate node id a"),
        row("use missing", &format!("{HEAD}nodes:\n  - id: a\n"), (4, 5), Rule::MissingKey, "node a: use is required"),
        row("use syntax", &format!("{HEAD}nodes:\n  - id: a\n    use: echo\n"), (5, 10), Rule::Use, "expected agent:<name>[@<variant>]"),
        row("unknown agent", &format!("{HEAD}nodes:\n  - id: a\n    use: agent:nope@nightly\n"), (5, 10), Rule::UnknownAgent, "node a: unknown agent nope"),
        row("agent bundle invalid", &format!("{HEAD}nodes:\n  - id: a\n    use: agent:broken\n"), (5, 10), Rule::UnknownAgent, "node a: bundle broken: module digest mismatch"),
        row("with not a map", &format!("{HEAD}{NODE_A}    with: [1]\n"), (6, 11), Rule::WrongType, "node a: with: expected a mapping"),
        row("retry unknown key", &format!("{HEAD}{NODE_A}    retry: {{ attempts: 3 }}\n"), (6, 14), Rule::UnknownKey, "unknown key attempts in node a: retry"),
        row("retry attempts 0", &format!("{HEAD}{NODE_A}    retry: {{ max_attempts: 0 }}\n"), (6, 28), Rule::Retry, "retry.max_attempts must be between 1 and 32, got 0"),
        row("retry attempts over max", &format!("{HEAD}{NODE_A}    retry: {{ max_attempts: 33 }}\n"), (6, 28), Rule::Retry, "between 1 and 32"),
        row("retry multiplier", &format!("{HEAD}{NODE_A}    retry: {{ multiplier: 0.5 }}\n"), (6, 26), Rule::Retry, "retry.multiplier must be between 1 and 100"),
        row("retry jitter", &format!("{HEAD}{NODE_A}    retry: {{ jitter: 1.5 }}\n"), (6, 22), Rule::Retry, "retry.jitter must be between 0 and 1, got 1.5"),
        row("retry max_ms", &format!("{HEAD}{NODE_A}    retry: {{ max_ms: -1 }}\n"), (6, 22), Rule::Retry, "retry.max_ms must be between 0 and 3600000"),
        row("node timeout", &format!("{HEAD}{NODE_A}    timeout_ms: 0\n"), (6, 17), Rule::Policy, "node a: timeout_ms must be between 1 and"),
        row("node budget over run", &format!("{HEAD}policy: {{ budget_tokens: 8000 }}\n{NODE_A}    budget_tokens: 9000\n"), (7, 20), Rule::Budget, "node a: budget_tokens 9000 exceeds the run's budget_tokens 8000"),
        row("confirm missing", &format!("{HEAD}nodes:\n  - id: send\n    use: agent:mailer\n"), (5, 10), Rule::Confirm, "node send: agent mailer performs mail.send; set require_human_confirm: true"),
        row("confirm false", &format!("{HEAD}nodes:\n  - id: send\n    use: agent:mailer\n    require_human_confirm: false\n"), (6, 28), Rule::Confirm, "set require_human_confirm: true"),
        row("confirm type", &format!("{HEAD}{NODE_A}    require_human_confirm: 1\n"), (6, 28), Rule::WrongType, "require_human_confirm: expected true or false"),
        // Templates.
        row("template undeclared in with", &format!("{HEAD}{NODE_A}    with: {{ t: \"{{{{params.topic}}}}\" }}\n"), (6, 16), Rule::Template, "param topic is not declared"),
        row("template other form", &format!("{HEAD}params: {{ x: {{ type: string }} }}\n{NODE_A}    with: {{ t: [\"a {{{{ params.x }}}}\"] }}\n"), (7, 17), Rule::Template, "template {{ params.x }}: expected {{params.NAME}}"),
        row("template in goals", &format!("{HEAD}goals: [\"do {{{{env.home}}}}\"]\n{NODE_A}"), (3, 9), Rule::Template, "template {{env.home}}"),
        row("template never closed", &format!("{HEAD}goals: [\"do {{{{params.x\"]\n{NODE_A}"), (3, 9), Rule::Template, "never closed"),
        row("goal not a string", &format!("{HEAD}goals: [1]\n{NODE_A}"), (3, 9), Rule::WrongType, "goals: each goal: expected a string"),
        // Edges.
        row("edge unknown key", &ab("edges:\n  - { from: a.out, to: b.in, when: x }\n"), (9, 30), Rule::UnknownKey, "unknown key when in edge"),
        row("edge from missing", &ab("edges:\n  - { to: b.in }\n"), (9, 5), Rule::MissingKey, "edge: from is required"),
        row("edge from no port", &ab("edges:\n  - { from: a, to: b.in }\n"), (9, 13), Rule::Edge, "expected <node>.<port>"),
        row("edge from fields without guard", &ab("edges:\n  - { from: a.out.x, to: b.in }\n"), (9, 13), Rule::Edge, "fields only in a guard"),
        row("edge to with guard", &ab("edges:\n  - { from: a.out, to: b.in == 1 }\n"), (9, 24), Rule::Edge, "edge to \"b.in == 1\": expected <node>.<port>"),
        row("edge optional type", &ab("edges:\n  - { from: a.out, to: b.in, optional: 1 }\n"), (9, 40), Rule::WrongType, "edge: optional: expected true or false"),
        row("edge unknown from node", &ab("edges:\n  - { from: z.out, to: b.in }\n"), (9, 13), Rule::UnknownNode, "unknown node z"),
        row("edge unknown to node", &ab("edges:\n  - { from: a.out, to: z.in }\n"), (9, 24), Rule::UnknownNode, "unknown node z"),
        row("edge unknown out port", &ab("edges:\n  - { from: a.nope, to: b.in }\n"), (9, 13), Rule::UnknownPort, "node a (agent echo) has no output port nope; it has: out, other"),
        row("edge unknown in port", &ab("edges:\n  - { from: a.out, to: b.nope }\n"), (9, 24), Rule::UnknownPort, "node b (agent echo) has no input port nope; it has: in, a, b"),
        row("edge in port used as out", &ab("edges:\n  - { from: a.in, to: b.in }\n"), (9, 13), Rule::UnknownPort, "no output port in"),
        row("guard operator", &ab("edges:\n  - { from: a.out = 1, to: b.in }\n"), (9, 13), Rule::Guard, "unknown operator"),
        row("guard literal", &ab("edges:\n  - { from: a.out == yes, to: b.in }\n"), (9, 13), Rule::Guard, "literal \"yes\": expected true, false, null, a number or a quoted string"),
        row("cycle", &ab("edges:\n  - { from: a.out, to: b.in }\n  - { from: b.out, to: a.in }\n"), (9, 13), Rule::Cycle, "cycle: a → b → a"),
        row("self cycle", &ab("edges:\n  - { from: b.out == 1, to: b.a }\n"), (9, 13), Rule::Cycle, "cycle: b → b"),
        // Success.
        row("success unknown key", &format!("{HEAD}{NODE_A}success: {{ all_of: [\"exists(a.out)\"], none_of: [] }}\n"), (6, 39), Rule::UnknownKey, "unknown key none_of in success"),
        row("success both", &format!("{HEAD}{NODE_A}success: {{ all_of: [\"exists(a.out)\"], any_of: [\"exists(a.out)\"] }}\n"), (6, 10), Rule::Success, "exactly one of all_of, any_of"),
        row("success neither", &format!("{HEAD}{NODE_A}success: {{}}\n"), (6, 10), Rule::Success, "exactly one of all_of, any_of"),
        row("success empty", &format!("{HEAD}{NODE_A}success: {{ any_of: [] }}\n"), (6, 20), Rule::Success, "at least one predicate"),
        row("predicate syntax", &format!("{HEAD}{NODE_A}success: {{ all_of: [\"a.out\"] }}\n"), (6, 21), Rule::Success, "no operator"),
        row("predicate exists syntax", &format!("{HEAD}{NODE_A}success: {{ all_of: [\"exists(a)\"] }}\n"), (6, 21), Rule::Success, "not a path"),
        row("predicate unknown node", &format!("{HEAD}{NODE_A}success: {{ all_of: [\"z.out == 1\"] }}\n"), (6, 21), Rule::UnknownNode, "unknown node z"),
        row("predicate unknown port", &format!("{HEAD}{NODE_A}success: {{ any_of: [\"exists(a.nope.x)\"] }}\n"), (6, 21), Rule::UnknownPort, "has no output port nope"),
    ]
}

#[test]
fn every_rule_gives_its_error_at_its_position() {
    let mut failures = Vec::new();
    for r in rows() {
        let got = errors(&r.source);
        let ok = got.len() == 1
            && got[0].line == r.line
            && got[0].col == r.col
            && got[0].rule == r.rule
            && got[0].message.contains(r.message);
        if !ok {
            failures.push(format!(
                "{}: want {}:{} {:?} {:?}, got {got:#?}",
                r.what, r.line, r.col, r.rule, r.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_rule() {
    use std::collections::HashSet;
    let mut covered: HashSet<Rule> = rows().iter().map(|r| r.rule).collect();
    covered.insert(Rule::Limit); // also by `limits` below
    let all = [
        Rule::Syntax,
        Rule::UnknownKey,
        Rule::MissingKey,
        Rule::WrongType,
        Rule::Version,
        Rule::Name,
        Rule::Param,
        Rule::Policy,
        Rule::NodeId,
        Rule::DuplicateNode,
        Rule::Use,
        Rule::UnknownAgent,
        Rule::Retry,
        Rule::Budget,
        Rule::Confirm,
        Rule::Edge,
        Rule::UnknownNode,
        Rule::UnknownPort,
        Rule::Guard,
        Rule::Cycle,
        Rule::Template,
        Rule::Success,
        Rule::Limit,
    ];
    for rule in all {
        assert!(covered.contains(&rule), "no row for {rule:?}");
    }
}

#[test]
fn all_errors_are_collected_in_source_order() {
    let source = "\
version: 2
name: Bad
policy: { max_parallel: 0 }
nodes:
  - id: a
    use: agent:nope
  - id: a
    use: agent:echo
    retry: { jitter: 2 }
edges:
  - { from: a.out, to: zz.in }
colour: red
";
    let got: Vec<(u32, u32, Rule)> = errors(source)
        .iter()
        .map(|e| (e.line, e.col, e.rule))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 10, Rule::Version),
            (2, 7, Rule::Name),
            (3, 25, Rule::Policy),
            (6, 10, Rule::UnknownAgent),
            (7, 9, Rule::DuplicateNode),
            (9, 22, Rule::Retry),
            (11, 24, Rule::UnknownNode),
            (12, 1, Rule::UnknownKey),
        ]
    );
    let text = validate(source, &Catalog::new()).unwrap_err().to_string();
    assert!(text.starts_with("1:10: unsupported opening version 2; expected 0\n2:7: "));
}

#[test]
fn limits() {
    let many_nodes: String = (0..=model::NODES_MAX)
        .map(|i| format!("  - {{ id: n{i}, use: agent:echo }}\n"))
        .collect();
    let got = errors(&format!("{HEAD}nodes:\n{many_nodes}"));
    assert_eq!((got[0].line, got[0].col, got[0].rule), (4, 3, Rule::Limit));
    assert!(got[0].message.contains("257 nodes; at most 256"));
    assert_eq!(got.len(), 1);

    let many_edges = "  - { from: a.out, to: b.in, optional: true }\n".repeat(model::EDGES_MAX + 1);
    let got = errors(&ab(&format!("edges:\n{many_edges}")));
    assert_eq!((got[0].line, got[0].col, got[0].rule), (9, 3, Rule::Limit));
    assert!(got[0].message.contains("1025 edges; at most 1024"));
    assert_eq!(got.len(), 1);

    let big = format!(
        "{HEAD}{NODE_A}description: \"{}\"\n",
        "x".repeat(model::SOURCE_BYTES_MAX)
    );
    let got = errors(&big);
    assert_eq!((got[0].line, got[0].col, got[0].rule), (1, 1, Rule::Limit));
    assert!(got[0].message.contains("at most 262144"));
}

const COMPOSE_EMAIL: &str = r#"version: 0
name: compose_email
description: "write and send one email"
goals: ["email {{params.recipient}} about {{params.topic}}"]
params:
  recipient: { type: string, required: true, description: "who to write to" }
  topic:     { type: string, default: "Q4 plan" }
  words:     { type: integer, default: 120 }
policy:
  budget_tokens: 8000
nodes:
  - id: contacts
    use: agent:contacts
  - id: context
    use: agent:context
  - id: draft
    use: agent:writer@nightly
    with: { topic: "{{params.topic}}", words: "{{params.words}}", tone: neutral-friendly }
    retry: { max_attempts: 3, initial_ms: 100, max_ms: 2000, multiplier: 2.0, jitter: 0.2 }
    timeout_ms: 20000
    budget_tokens: 2000
  - id: review
    use: agent:reviewer
  - id: send
    use: agent:mailer
    require_human_confirm: true
edges:
  - from: contacts.out
    to: draft.recipients
  - from: context.out
    to: draft.context
    optional: true
  - from: draft.out
    to: review.draft
  - from: review.ok == true
    to: send.go
  - from: draft.out
    to: send.draft
success: { all_of: ["send.sent.status == 'ok'", "exists(review.notes)"] }
"#;

#[test]
fn a_full_opening_parses_with_defaults_filled() {
    let o = common::opening(COMPOSE_EMAIL);
    assert_eq!(o.name, "compose_email");
    assert_eq!(o.description.as_deref(), Some("write and send one email"));
    assert_eq!(o.digest, *blake3::hash(COMPOSE_EMAIL.as_bytes()).as_bytes());
    assert_eq!(
        o.goals,
        vec![Template::Text(vec![
            Piece::Text("email ".into()),
            Piece::Param("recipient".into()),
            Piece::Text(" about ".into()),
            Piece::Param("topic".into()),
        ])]
    );
    let names: Vec<_> = o
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.ty, p.required))
        .collect();
    assert_eq!(
        names,
        vec![
            ("recipient", ParamType::String, true),
            ("topic", ParamType::String, false),
            ("words", ParamType::Integer, false)
        ]
    );
    assert_eq!(o.params[1].default, Some(common::s("Q4 plan")));
    assert_eq!(o.params[0].description.as_deref(), Some("who to write to"));
    // Policy: only budget_tokens given.
    let p = &o.policy;
    assert_eq!(
        (p.timeout_ms, p.node_timeout_ms, p.max_parallel),
        (300_000, 30_000, 8)
    );
    assert_eq!(
        (p.budget_tokens, p.budget_usd_micros, p.confirm_external),
        (Some(8000), None, true)
    );

    let ids: Vec<&str> = o.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["contacts", "context", "draft", "review", "send"]);
    let draft = &o.nodes[2];
    assert_eq!(
        (draft.agent.name.as_str(), draft.agent.variant.as_deref()),
        ("writer", Some("nightly"))
    );
    assert_eq!(
        (
            draft.retry.max_attempts,
            draft.retry.initial_ms,
            draft.retry.max_ms
        ),
        (3, 100, 2000)
    );
    assert_eq!((draft.retry.multiplier, draft.retry.jitter), (2.0, 0.2));
    assert_eq!(
        (draft.timeout_ms, draft.budget_tokens),
        (20_000, Some(2000))
    );
    assert_eq!(
        draft.with,
        Template::Map(vec![
            ("topic".into(), Template::Whole("topic".into())),
            ("words".into(), Template::Whole("words".into())),
            (
                "tone".into(),
                Template::Literal(common::s("neutral-friendly"))
            ),
        ])
    );
    assert_eq!(draft.facts.ports_in, ["recipients", "context", "topic"]);
    // Defaults on a node that says nothing.
    let review = &o.nodes[3];
    assert_eq!(review.retry, model::Retry::default());
    assert_eq!(
        (
            review.retry.max_attempts,
            review.retry.initial_ms,
            review.retry.max_ms
        ),
        (1, 100, 10_000)
    );
    assert_eq!((review.retry.multiplier, review.retry.jitter), (2.0, 0.0));
    assert_eq!(
        (
            review.timeout_ms,
            review.budget_tokens,
            review.require_human_confirm
        ),
        (30_000, None, false)
    );
    assert_eq!(review.with, Template::Literal(rmpv::Value::Map(vec![])));
    assert!(o.nodes[4].require_human_confirm);
    assert_eq!(o.nodes[4].facts.external_effects, ["mail.send"]);

    assert_eq!(o.edges.len(), 5);
    let guard = &o.edges[3];
    assert_eq!(
        (guard.from_node, guard.to_node, guard.to_port.as_str()),
        (3, 4, "go")
    );
    assert_eq!(
        guard.from,
        Path {
            node: 3,
            port: "ok".into(),
            fields: vec![]
        }
    );
    let g = guard.guard.as_ref().unwrap();
    assert_eq!((g.op, &g.literal), (Op::Eq, &rmpv::Value::Boolean(true)));
    assert!(o.edges[1].optional && !o.edges[0].optional);
    assert_eq!(
        o.success,
        Some(Success::AllOf(vec![
            Predicate::Compare {
                path: Path {
                    node: 4,
                    port: "sent".into(),
                    fields: vec!["status".into()]
                },
                op: Op::Eq,
                literal: common::s("ok"),
            },
            Predicate::Exists(Path {
                node: 3,
                port: "notes".into(),
                fields: vec![]
            }),
        ]))
    );
}

#[test]
fn confirm_external_false_lifts_the_confirm_rule() {
    let source = format!(
        "{HEAD}policy: {{ confirm_external: false }}\nnodes:\n  - {{ id: send, use: agent:mailer }}\n"
    );
    let o = common::opening(&source);
    assert!(!o.policy.confirm_external && !o.nodes[0].require_human_confirm);
}
