//! Native tests: the exact `mail.send` request, and each answer the kernel can give.

use super::*;
use runloop_agent_sdk::testing::TestHost;
use runloop_agent_sdk::{HostCall, HostReply};

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn draft(body: &str) -> Value {
    map(vec![
        (
            "to",
            Value::Array(vec![map(vec![
                ("name", "John Smith".into()),
                ("email", "john.smith@example.com".into()),
            ])]),
        ),
        ("subject", "Q4 plan".into()),
        ("body", body.into()),
        ("citations", Value::Array(vec!["note:q4-plan-goals".into()])),
        ("passages_offered", 5.into()),
    ])
}

fn invoke(draft: Value, go: Value) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: map(vec![
            ("node", "send".into()),
            ("attempt", 1.into()),
            ("with", map(vec![])),
            ("inputs", map(vec![("draft", draft), ("go", go)])),
            ("goals", Value::Array(vec![])),
        ]),
    }
}

fn sent(receipt: Value, recalled: bool) -> impl FnMut(&HostCall) -> HostReply {
    move |call| match call {
        HostCall::EffectPerform {
            idempotency_key, ..
        } => HostReply::Ok(map(vec![
            ("kind", "mail.send".into()),
            ("idempotency_key", idempotency_key.as_str().into()),
            ("recalled", recalled.into()),
            ("receipt", receipt.clone()),
        ])),
        HostCall::Log { .. } => HostReply::Ok(Value::Nil),
        other => panic!("unexpected host call {other:?}"),
    }
}

fn refused(code: HostErrorCode, message: &'static str) -> impl FnMut(&HostCall) -> HostReply {
    move |_| HostReply::Err {
        code,
        message: message.into(),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    field(v, key)
}

#[test]
fn sends_exactly_the_executor_payload_with_a_stable_key() {
    let receipt = map(vec![
        ("message_id", "<r1.abc@runloop>".into()),
        ("path", "/root/.runloop/outbox/new/r1.abc".into()),
    ]);
    let mut host = TestHost::new(sent(receipt, false));
    host.invoke(
        &mut Mailer,
        &invoke(draft("Hi John,\n\nThe plan [1]."), true.into()),
    )
    .unwrap();
    let HostCall::EffectPerform {
        kind,
        payload,
        idempotency_key,
    } = &host.calls()[0]
    else {
        panic!("expected effect.perform first");
    };
    assert_eq!(kind, "mail.send");
    assert_eq!(
        *payload,
        map(vec![
            (
                "to",
                Value::Array(vec![map(vec![
                    ("name", "John Smith".into()),
                    ("email", "john.smith@example.com".into()),
                ])]),
            ),
            ("cc", Value::Array(vec![])),
            ("subject", "Q4 plan".into()),
            ("body", "Hi John,\n\nThe plan [1].".into()),
        ])
    );
    assert!(idempotency_key.starts_with("mail-") && idempotency_key.len() == 21);
    assert!(matches!(host.calls()[1], HostCall::Log { .. }));
    let result = &host.outputs()[0];
    assert_eq!(result.port, "result");
    let r = &result.payload;
    assert_eq!(get(r, "status").and_then(Value::as_str), Some("sent"));
    assert_eq!(
        get(r, "message_id").and_then(Value::as_str),
        Some("<r1.abc@runloop>")
    );
    assert_eq!(
        get(r, "path").and_then(Value::as_str),
        Some("/root/.runloop/outbox/new/r1.abc")
    );
    assert_eq!(get(r, "recalled").and_then(Value::as_bool), Some(false));
    assert_eq!(
        get(r, "idempotency_key").and_then(Value::as_str),
        Some(idempotency_key.as_str())
    );
    assert!(get(r, "smtp").is_none());
}

#[test]
fn the_key_is_a_function_of_the_draft() {
    let key = |body: &str| {
        let (d, _) = parse(&map(vec![("draft", draft(body))])).unwrap();
        idempotency_key(&d)
    };
    assert_eq!(key("Hi John, one."), key("Hi John, one."));
    assert_ne!(key("Hi John, one."), key("Hi John, two."));
    // Fixed vector (computed independently): the key must never change for the same draft
    // across builds, or a resumed run would ask for a second send.
    assert_eq!(key("Hi John, one."), "mail-e47b3ec757b56069");
}

#[test]
fn a_recalled_smtp_send_is_reported_as_recalled() {
    let receipt = map(vec![
        ("message_id", "<r2@runloop>".into()),
        (
            "smtp",
            map(vec![
                ("server", "smtp.example.com".into()),
                ("code", 250.into()),
            ]),
        ),
    ]);
    let mut host = TestHost::new(sent(receipt, true));
    host.invoke(&mut Mailer, &invoke(draft("body"), true.into()))
        .unwrap();
    let r = &host.outputs()[0].payload;
    assert_eq!(get(r, "recalled").and_then(Value::as_bool), Some(true));
    assert!(get(r, "smtp").is_some());
    assert!(get(r, "path").is_none());
}

#[test]
fn a_pending_confirmation_is_returned_as_the_error() {
    let mut host = TestHost::new(refused(
        HostErrorCode::ConfirmationPending,
        "mail.send waits for a person's decision (rlp confirm)",
    ));
    let err = host
        .invoke(&mut Mailer, &invoke(draft("body"), true.into()))
        .unwrap_err();
    assert_eq!(
        err.message(),
        "effect.perform: ConfirmationPending: mail.send waits for a person's decision (rlp confirm)"
    );
    assert!(host.outputs().is_empty());
}

#[test]
fn a_decline_is_a_result_not_a_failure() {
    let mut host = TestHost::new(refused(
        HostErrorCode::Declined,
        "declined by ada at the TTY",
    ));
    host.invoke(&mut Mailer, &invoke(draft("body"), true.into()))
        .unwrap();
    let r = &host.outputs()[0].payload;
    assert_eq!(get(r, "status").and_then(Value::as_str), Some("declined"));
    assert_eq!(
        get(r, "reason").and_then(Value::as_str),
        Some("declined by ada at the TTY")
    );
    assert!(get(r, "message_id").is_none());
}

#[test]
fn other_errors_fail_without_retry() {
    for code in [
        HostErrorCode::OutcomeUnknown,
        HostErrorCode::CapabilityDenied,
        HostErrorCode::Failed,
        HostErrorCode::NotAvailable,
    ] {
        let mut host = TestHost::new(refused(code, "the executor said no"));
        let err = host
            .invoke(&mut Mailer, &invoke(draft("body"), true.into()))
            .unwrap_err();
        assert!(
            err.message().starts_with("mailer: effect.perform: "),
            "{}",
            err.message()
        );
        assert!(err.message().ends_with("the executor said no"));
        assert!(host.outputs().is_empty());
    }
    let receipt = map(vec![("path", "/x".into())]);
    let mut host = TestHost::new(sent(receipt, false));
    let err = host
        .invoke(&mut Mailer, &invoke(draft("body"), true.into()))
        .unwrap_err();
    assert!(
        err.message().contains("without a message_id"),
        "{}",
        err.message()
    );
}

#[test]
fn nothing_is_sent_without_go_or_a_good_draft() {
    for go in [Value::Boolean(false), Value::Nil, "true".into()] {
        let mut host = TestHost::not_available();
        let err = host
            .invoke(&mut Mailer, &invoke(draft("body"), go))
            .unwrap_err();
        assert!(
            err.message().contains("the review did not pass"),
            "{}",
            err.message()
        );
        assert!(host.calls().is_empty());
    }
    let no_to = map(vec![
        ("to", Value::Array(vec![])),
        ("subject", "s".into()),
        ("body", "b".into()),
    ]);
    let no_subject = map(vec![("to", Value::Array(vec![])), ("body", "b".into())]);
    for bad_draft in [no_to, no_subject, "text".into()] {
        let mut host = TestHost::not_available();
        let err = host
            .invoke(&mut Mailer, &invoke(bad_draft, true.into()))
            .unwrap_err();
        assert!(err.message().starts_with("mailer: "), "{}", err.message());
        assert!(host.calls().is_empty());
    }
    let mut host = TestHost::not_available();
    let missing = AgentInput {
        port: "in".into(),
        payload: map(vec![("inputs", map(vec![("go", true.into())]))]),
    };
    let err = host.invoke(&mut Mailer, &missing).unwrap_err();
    assert_eq!(err.message(), "mailer: inputs.draft is missing");
}
