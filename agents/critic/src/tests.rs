//! Native tests: a draft as the writer makes it passes; each rule, broken alone, fails it.

use super::*;
use runloop_agent_sdk::testing::TestHost;
use runloop_agent_sdk::{HostCall, HostReply};

const GOOD_BODY: &str = "Hi John,\n\nQ4 plan goals: grow recurring revenue by 15 percent over \
    Q3 [1]. The Q4 plan budget is 480k, split between hiring and marketing [2].\n\n\
    Best regards,\n\nSources:\n[1] note:q4-plan-goals\n[2] note:q4-plan-budget";

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn draft_with(change: impl FnOnce(&mut Vec<(&'static str, Value)>)) -> Value {
    let mut entries: Vec<(&'static str, Value)> = vec![
        (
            "to",
            Value::Array(vec![map(vec![
                ("name", "John Smith".into()),
                ("email", "john.smith@example.com".into()),
            ])]),
        ),
        ("subject", "Q4 plan".into()),
        ("body", GOOD_BODY.into()),
        (
            "citations",
            Value::Array(vec![
                "note:q4-plan-goals".into(),
                "note:q4-plan-budget".into(),
            ]),
        ),
        ("passages_offered", 5.into()),
    ];
    change(&mut entries);
    map(entries)
}

fn set(entries: &mut [(&'static str, Value)], key: &str, value: Value) {
    entries.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value;
}

fn invoke(draft: Value, with: Vec<(&str, Value)>) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: map(vec![
            ("node", "review".into()),
            ("attempt", 1.into()),
            ("with", map(with)),
            ("inputs", map(vec![("draft", draft)])),
            ("goals", Value::Array(vec![])),
        ]),
    }
}

/// Runs the critic without a model; returns `ok` and the problems as `rule: message`.
fn review(draft: Value) -> (bool, Vec<String>) {
    let mut host = TestHost::not_available();
    host.invoke(&mut Critic, &invoke(draft, vec![])).unwrap();
    assert!(host.calls().is_empty(), "no host call without model_review");
    let outs = host.outputs();
    assert_eq!(
        (outs[0].port.as_str(), outs[1].port.as_str()),
        ("ok", "review")
    );
    let ok = outs[0].payload.as_bool().unwrap();
    assert_eq!(
        field(&outs[1].payload, "ok").and_then(Value::as_bool),
        Some(ok)
    );
    assert!(field(&outs[1].payload, "model_review").is_none());
    let problems = field(&outs[1].payload, "problems")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}: {}",
                field(p, "rule").unwrap().as_str().unwrap(),
                field(p, "message").unwrap().as_str().unwrap()
            )
        })
        .collect();
    (ok, problems)
}

fn problems(change: impl FnOnce(&mut Vec<(&'static str, Value)>)) -> Vec<String> {
    let (ok, problems) = review(draft_with(change));
    assert_eq!(ok, problems.is_empty());
    problems
}

#[test]
fn a_writer_draft_passes() {
    assert_eq!(review(draft_with(|_| {})), (true, vec![]));
}

#[test]
fn recipient_rule() {
    assert_eq!(
        problems(|d| set(d, "to", Value::Array(vec![]))),
        vec!["recipient: the draft has no recipient"]
    );
    let bad = problems(|d| {
        set(
            d,
            "to",
            Value::Array(vec![
                map(vec![("name", "J".into()), ("email", "john@example".into())]),
                map(vec![("name", "K".into())]),
            ]),
        )
    });
    assert_eq!(
        bad,
        vec![
            "recipient: recipient 1 (J): \"john@example\" is not a valid address",
            "recipient: recipient 2 (K) has no address",
        ]
    );
}

#[test]
fn subject_rule() {
    assert_eq!(
        problems(|d| set(d, "subject", " ".into())),
        vec!["subject: the subject is empty"]
    );
    assert_eq!(
        problems(|d| set(d, "subject", "Q4\r\nBcc: all@example.com".into())),
        vec!["subject: the subject has a line break or control character"]
    );
    assert_eq!(
        problems(|d| set(d, "subject", "s".repeat(201).into())),
        vec!["subject: the subject is over 200 characters"]
    );
    assert_eq!(problems(|d| d.retain(|(k, _)| *k != "subject")).len(), 1);
}

#[test]
fn body_length_rule() {
    let short = problems(|d| {
        set(
            d,
            "body",
            "Hi [1].\n\nSources:\n[1] note:q4-plan-goals\n[2] note:q4-plan-budget".into(),
        );
        set(
            d,
            "citations",
            Value::Array(vec!["note:q4-plan-goals".into()]),
        );
    });
    assert!(short.is_empty(), "the footer counts: {short:?}");
    let short = problems(|d| {
        set(d, "body", "Hi John.".into());
        set(d, "citations", Value::Array(vec![]));
        set(d, "passages_offered", 0.into());
    });
    assert_eq!(
        short,
        vec!["body_length: the body has 8 characters; expected 20..=5000"]
    );
    let long = problems(|d| {
        set(
            d,
            "body",
            format!("{}{GOOD_BODY}", "word ".repeat(1000)).into(),
        )
    });
    assert_eq!(long.len(), 1);
    assert!(
        long[0].starts_with("body_length: the body has 5"),
        "{long:?}"
    );
}

#[test]
fn placeholder_rule() {
    for (placeholder, expected) in [
        ("[TODO] add numbers", "\"todo\""),
        ("Dear {{name}}", "\"{{\""),
        ("Lorem ipsum dolor", "\"lorem ipsum\""),
        ("Budget: XXX", "\"xxx\""),
        ("Hi <first name>", "\"<first name>\""),
        ("Regards, [Your Name]", "\"[Your Name]\""),
    ] {
        let found = problems(|d| set(d, "body", format!("{placeholder}\n{GOOD_BODY}").into()));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("placeholder: the body") && p.ends_with(expected)),
            "{placeholder}: {found:?}"
        );
    }
    let found = problems(|d| set(d, "subject", "TODO subject".into()));
    assert_eq!(
        found,
        vec!["placeholder: the subject contains the placeholder \"todo\""]
    );
}

#[test]
fn citation_rule() {
    let unknown = problems(|d| {
        set(
            d,
            "body",
            GOOD_BODY.replace("[2].", "[2]. More [7].").into(),
        )
    });
    assert_eq!(
        unknown,
        vec!["citation: marker [7] names no citation (2 listed)"]
    );
    let none = problems(|d| {
        set(
            d,
            "body",
            "Hi John,\n\nThe plan is on track.\n\nBest regards,".into(),
        );
        set(d, "citations", Value::Array(vec![]));
    });
    assert_eq!(
        none,
        vec!["citation: 5 passages were offered but nothing is cited"]
    );
    let unused = problems(|d| set(d, "body", GOOD_BODY.replace(" [2]", "").into()));
    assert_eq!(
        unused,
        vec!["citation: citation [2] note:q4-plan-budget is never referenced in the text"]
    );
    let unlisted = problems(|d| {
        set(
            d,
            "body",
            GOOD_BODY.replace("\n[2] note:q4-plan-budget", "").into(),
        )
    });
    assert_eq!(
        unlisted,
        vec!["citation: citation [2] note:q4-plan-budget is not listed under Sources"]
    );
    let not_entity = problems(|d| {
        set(
            d,
            "body",
            GOOD_BODY
                .replace("note:q4-plan-budget", "budget.txt")
                .into(),
        );
        set(
            d,
            "citations",
            Value::Array(vec!["note:q4-plan-goals".into(), "budget.txt".into()]),
        );
    });
    assert_eq!(
        not_entity,
        vec!["citation: citation \"budget.txt\" is not a POG entity (kind:id)"]
    );
    // Nothing offered, nothing cited: fine.
    let uncited = problems(|d| {
        set(
            d,
            "body",
            "Hi John,\n\nCould we talk about the plan this week?".into(),
        );
        set(d, "citations", Value::Array(vec![]));
        set(d, "passages_offered", 0.into());
    });
    assert!(uncited.is_empty(), "{uncited:?}");
}

#[test]
fn model_review_is_added_and_never_changes_ok() {
    let mut host = TestHost::new(|call| match call {
        HostCall::ModelComplete { max_tokens, .. } => {
            assert_eq!(*max_tokens, Some(REVIEW_MAX_TOKENS_MAX));
            HostReply::Ok(map(vec![
                ("text", " Too terse; add a clear ask. ".into()),
                ("provider", "p".into()),
                ("model", "m".into()),
                ("tokens_in", 1.into()),
                ("tokens_out", 1.into()),
            ]))
        }
        other => panic!("unexpected {other:?}"),
    });
    let input = invoke(draft_with(|_| {}), vec![("model_review", true.into())]);
    host.invoke(&mut Critic, &input).unwrap();
    assert_eq!(host.outputs()[0].payload, Value::Boolean(true));
    let review = &host.outputs()[1].payload;
    assert_eq!(
        field(review, "model_review").and_then(Value::as_str),
        Some("Too terse; add a clear ask.")
    );
    let mut host = TestHost::not_available();
    let err = host.invoke(&mut Critic, &input).unwrap_err();
    assert!(
        err.message()
            .starts_with("retryable: critic: model review: ")
    );
    assert!(host.outputs().is_empty());
}

#[test]
fn a_missing_draft_fails_and_a_bare_draft_is_reviewed() {
    let mut host = TestHost::not_available();
    let input = AgentInput {
        port: "in".into(),
        payload: map(vec![("with", map(vec![])), ("inputs", map(vec![]))]),
    };
    let err = host.invoke(&mut Critic, &input).unwrap_err();
    assert_eq!(err.message(), "critic: inputs.draft is missing");
    let err = host
        .invoke(&mut Critic, &invoke("text".into(), vec![]))
        .unwrap_err();
    assert!(err.message().starts_with("critic: the draft is not a map"));
    let err = host
        .invoke(
            &mut Critic,
            &invoke(draft_with(|_| {}), vec![("model_reveiw", true.into())]),
        )
        .unwrap_err();
    assert!(err.message().contains("unknown field"));
    let mut host = TestHost::not_available();
    let bare = AgentInput {
        port: "draft".into(),
        payload: draft_with(|_| {}),
    };
    host.invoke(&mut Critic, &bare).unwrap();
    assert_eq!(host.outputs()[0].payload, Value::Boolean(true));
}
