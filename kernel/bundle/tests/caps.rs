//! policy.caps: the grammar, every bad line with its number, and the checks on host calls.

use runloop_bundle::caps::{CapsErrorKind, Denied, Grant, Op, Policy, Verdict};
use runloop_bundle::effects::EffectKind;
use runloop_proto::payloads::{ChatMessage, HostCall, LogLevel};

const FULL: &str = "\
# every op, with restrictions
runloop-caps 1

allow clock.now
allow random.bytes max_len=32   # small
allow log
allow model.complete models=smollm2-135m,gpt-4o-mini max_tokens=256
allow model.embed models=smollm2-135m
allow kb.query scopes=personal,work
allow kb.write_event kinds=contact.seen,note scopes=personal confirm=required
allow confirm.request
allow effect kind=mail.send confirm=required
allow effect kind=artifact.save
";

#[test]
fn a_full_policy_parses() {
    let policy = Policy::parse(FULL).unwrap();
    assert_eq!(policy.ops().collect::<Vec<_>>(), Op::ALL.to_vec());
    assert_eq!(
        policy.grant(Op::RandomBytes),
        Some(&Grant::RandomBytes { max_len: Some(32) })
    );
    let Some(Grant::KbWriteEvent {
        kinds,
        scopes,
        confirm_required,
    }) = policy.grant(Op::KbWriteEvent)
    else {
        panic!("kb.write_event grant missing");
    };
    assert_eq!(kinds.as_ref().unwrap().len(), 2);
    assert!(scopes.as_ref().unwrap().contains("personal"));
    assert!(confirm_required);
    let scopes: Vec<&str> = policy
        .kb_query_scopes()
        .unwrap()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(scopes, ["personal", "work"]);
}

fn query() -> HostCall {
    HostCall::KbQuery {
        sql: "SELECT * FROM contacts".into(),
        params: vec![],
    }
}

#[test]
fn kb_query_scopes_are_handed_out_not_judged_from_the_sql() {
    let scoped = Policy::parse("runloop-caps 1\nallow kb.query scopes=work\n").unwrap();
    // The call itself is allowed: which rows it sees is the POG's business.
    assert_eq!(scoped.check(&query()), Ok(Verdict::Allowed));
    assert_eq!(
        scoped.grant(Op::KbQuery),
        Some(&Grant::KbQuery {
            scopes: Some(["work".to_owned()].into())
        })
    );
    let only: Vec<&String> = scoped.kb_query_scopes().unwrap().unwrap().iter().collect();
    assert_eq!(only, ["work"]);

    let open = Policy::parse("runloop-caps 1\nallow kb.query\n").unwrap();
    assert_eq!(open.check(&query()), Ok(Verdict::Allowed));
    assert_eq!(
        open.kb_query_scopes(),
        Ok(None),
        "no scopes= reads every row"
    );

    let none = Policy::parse("runloop-caps 1\nallow log\n").unwrap();
    let not_granted = Denied::NotGranted { op: Op::KbQuery };
    assert_eq!(none.check(&query()), Err(not_granted.clone()));
    assert_eq!(none.kb_query_scopes(), Err(not_granted), "fails closed");
}

#[test]
fn the_header_alone_allows_nothing() {
    let policy = Policy::parse("runloop-caps 1\n").unwrap();
    assert_eq!(policy.ops().count(), 0);
    assert_eq!(
        policy.check(&HostCall::ClockNow),
        Err(Denied::NotGranted { op: Op::ClockNow })
    );
}

fn error_of(text: &str) -> (usize, CapsErrorKind) {
    let error = Policy::parse(text).unwrap_err();
    (error.line, error.kind)
}

#[test]
fn every_bad_line_is_named() {
    let h = "runloop-caps 1\n";
    let cases: Vec<(String, usize, CapsErrorKind)> = vec![
        ("".into(), 1, CapsErrorKind::Empty),
        ("# only a comment\n".into(), 1, CapsErrorKind::Empty),
        (
            "allow log\n".into(),
            1,
            CapsErrorKind::MissingHeader {
                found: "allow log".into(),
            },
        ),
        (
            "runloop-caps 2\n".into(),
            1,
            CapsErrorKind::MissingHeader {
                found: "runloop-caps 2".into(),
            },
        ),
        (
            format!("{h}deny log\n"),
            2,
            CapsErrorKind::UnknownStatement {
                word: "deny".into(),
            },
        ),
        (format!("{h}\nallow\n"), 3, CapsErrorKind::MissingOp),
        (
            format!("{h}allow fs.read\n"),
            2,
            CapsErrorKind::UnknownOp {
                op: "fs.read".into(),
            },
        ),
        (
            format!("{h}allow log\nallow clock.now\nallow log\n"),
            4,
            CapsErrorKind::DuplicateOp {
                op: Op::Log,
                first_line: 2,
            },
        ),
        (
            format!("{h}allow model.complete gpt\n"),
            2,
            CapsErrorKind::NotAnOption { word: "gpt".into() },
        ),
        (
            format!("{h}allow log models=a\n"),
            2,
            CapsErrorKind::UnknownOption {
                op: Op::Log,
                key: "models".into(),
            },
        ),
        (
            format!("{h}allow model.embed models=a models=b\n"),
            2,
            CapsErrorKind::DuplicateOption {
                key: "models".into(),
            },
        ),
        (
            format!("{h}allow random.bytes max_len=5000\n"),
            2,
            CapsErrorKind::BadValue {
                key: "max_len".into(),
                value: "5000".into(),
                reason: "out of range",
            },
        ),
        (
            format!("{h}allow random.bytes max_len=0\n"),
            2,
            CapsErrorKind::BadValue {
                key: "max_len".into(),
                value: "0".into(),
                reason: "out of range",
            },
        ),
        (
            format!("{h}allow model.complete max_tokens=+5\n"),
            2,
            CapsErrorKind::BadValue {
                key: "max_tokens".into(),
                value: "+5".into(),
                reason: "expected a decimal number",
            },
        ),
        (
            format!("{h}allow kb.write_event kinds=a,,b\n"),
            2,
            CapsErrorKind::BadValue {
                key: "kinds".into(),
                value: "a,,b".into(),
                reason: "items are 1 to 128 of a-z A-Z 0-9 . _ - : /, comma-separated",
            },
        ),
        (
            format!("{h}allow kb.write_event kinds=a,a\n"),
            2,
            CapsErrorKind::BadValue {
                key: "kinds".into(),
                value: "a,a".into(),
                reason: "an item is listed twice",
            },
        ),
        (
            format!("{h}allow kb.write_event confirm=yes\n"),
            2,
            CapsErrorKind::BadValue {
                key: "confirm".into(),
                value: "yes".into(),
                reason: "the only value is \"required\"",
            },
        ),
        (
            format!("{h}allow log\nallow kb.query scopes=\n"),
            3,
            CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: "".into(),
                reason: "items are 1 to 128 of a-z A-Z 0-9 . _ - : /, comma-separated",
            },
        ),
        (
            format!("{h}allow kb.query scopes=work,,home\n"),
            2,
            CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: "work,,home".into(),
                reason: "items are 1 to 128 of a-z A-Z 0-9 . _ - : /, comma-separated",
            },
        ),
        (
            format!("{h}allow kb.query scopes=work,home,work\n"),
            2,
            CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: "work,home,work".into(),
                reason: "an item is listed twice",
            },
        ),
        (
            format!("{h}\n\nallow kb.query scopes=Work\n"),
            4,
            CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: "Work".into(),
                reason: "scopes are lowercase",
            },
        ),
        (
            format!("{h}allow kb.write_event scopes=personal,Work\n"),
            2,
            CapsErrorKind::BadValue {
                key: "scopes".into(),
                value: "personal,Work".into(),
                reason: "scopes are lowercase",
            },
        ),
        (
            format!("{h}allow kb.query scopes=a scopes=b\n"),
            2,
            CapsErrorKind::DuplicateOption {
                key: "scopes".into(),
            },
        ),
        (
            format!("{h}allow kb.query kinds=note\n"),
            2,
            CapsErrorKind::UnknownOption {
                op: Op::KbQuery,
                key: "kinds".into(),
            },
        ),
        (
            format!("{h}allow kb.query scopes=work\nallow kb.query\n"),
            3,
            CapsErrorKind::DuplicateOp {
                op: Op::KbQuery,
                first_line: 2,
            },
        ),
        (
            format!("{h}allow log\n{}\n", "#".repeat(1025)),
            3,
            CapsErrorKind::LineTooLong { bytes: 1025 },
        ),
    ];
    for (text, line, kind) in cases {
        assert_eq!(error_of(&text), (line, kind), "{text:?}");
    }
}

#[test]
fn oversized_files_and_lists_are_refused() {
    let big = format!("runloop-caps 1\n{}", "# padding\n".repeat(2000));
    assert!(matches!(
        error_of(&big),
        (1, CapsErrorKind::FileTooLarge { .. })
    ));
    let items: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    for line in ["kb.write_event kinds", "kb.query scopes"] {
        let many = format!("runloop-caps 1\nallow {line}={}\n", items.join(","));
        assert!(
            matches!(
                error_of(&many),
                (
                    2,
                    CapsErrorKind::BadValue {
                        reason: "more than 64 items",
                        ..
                    }
                )
            ),
            "{line}"
        );
    }
}

#[test]
fn the_error_message_carries_the_line() {
    let error = Policy::parse("runloop-caps 1\nallow teleport\n").unwrap_err();
    assert_eq!(error.to_string(), "line 2: unknown op \"teleport\"");
}

fn complete(model: Option<&str>, max_tokens: Option<u32>) -> HostCall {
    HostCall::ModelComplete {
        model: model.map(str::to_owned),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        max_tokens,
        temperature: None,
    }
}

fn write(kind: &str, scope: Option<&str>) -> HostCall {
    HostCall::KbWriteEvent {
        kind: kind.into(),
        scope: scope.map(str::to_owned),
        payload: rmpv::Value::Nil,
        idempotency_key: None,
    }
}

#[test]
fn checks_apply_the_restrictions() {
    let policy = Policy::parse(FULL).unwrap();
    let allowed = Ok(Verdict::Allowed);
    assert_eq!(policy.check(&HostCall::ClockNow), allowed);
    assert_eq!(policy.check(&HostCall::RandomBytes { len: 32 }), allowed);
    assert_eq!(
        policy.check(&HostCall::RandomBytes { len: 33 }),
        Err(Denied::TooManyBytes {
            op: Op::RandomBytes,
            asked: 33,
            max: 32
        })
    );
    let log = HostCall::Log {
        level: LogLevel::Info,
        message: "x".into(),
    };
    assert_eq!(policy.check(&log), allowed);
    assert_eq!(
        policy.check(&complete(Some("smollm2-135m"), Some(256))),
        allowed
    );
    assert_eq!(
        policy.check(&complete(Some("llama-70b"), Some(10))),
        Err(Denied::ModelNotAllowed {
            op: Op::ModelComplete,
            model: Some("llama-70b".into())
        })
    );
    assert_eq!(
        policy.check(&complete(None, Some(10))),
        Err(Denied::ModelNotAllowed {
            op: Op::ModelComplete,
            model: None
        })
    );
    assert_eq!(
        policy.check(&complete(Some("gpt-4o-mini"), Some(257))),
        Err(Denied::TooManyTokens {
            op: Op::ModelComplete,
            asked: Some(257),
            max: 256
        })
    );
    assert_eq!(
        policy.check(&complete(Some("gpt-4o-mini"), None)),
        Err(Denied::TooManyTokens {
            op: Op::ModelComplete,
            asked: None,
            max: 256
        })
    );
    let embed = |model: &str| HostCall::ModelEmbed {
        model: Some(model.into()),
        input: vec![],
    };
    assert_eq!(policy.check(&embed("smollm2-135m")), allowed);
    assert!(matches!(
        policy.check(&embed("gpt-4o-mini")),
        Err(Denied::ModelNotAllowed { .. })
    ));
    assert_eq!(
        policy.check(&write("note", Some("personal"))),
        Ok(Verdict::AllowedAfterConfirm)
    );
    assert_eq!(
        policy.check(&write("email.sent", Some("personal"))),
        Err(Denied::KindNotAllowed {
            op: Op::KbWriteEvent,
            kind: "email.sent".into()
        })
    );
    assert_eq!(
        policy.check(&write("note", None)),
        Err(Denied::ScopeNotAllowed {
            op: Op::KbWriteEvent,
            scope: None
        })
    );
}

#[test]
fn unrestricted_grants_allow_any_arguments() {
    let policy = Policy::parse(
        "runloop-caps 1\nallow model.complete\nallow kb.write_event\nallow random.bytes\n",
    )
    .unwrap();
    assert_eq!(policy.check(&complete(None, None)), Ok(Verdict::Allowed));
    assert_eq!(policy.check(&write("any", None)), Ok(Verdict::Allowed));
    assert_eq!(
        policy.check(&HostCall::RandomBytes { len: 4096 }),
        Ok(Verdict::Allowed)
    );
    assert_eq!(
        policy.check(&HostCall::ConfirmRequest {
            action: "a".into(),
            summary: "b".into()
        }),
        Err(Denied::NotGranted {
            op: Op::ConfirmRequest
        })
    );
}

fn effect(kind: &str) -> HostCall {
    HostCall::EffectPerform {
        kind: kind.into(),
        payload: rmpv::Value::Nil,
        idempotency_key: "k".into(),
    }
}

#[test]
fn effect_grants_are_per_kind_with_their_own_confirm() {
    let policy = Policy::parse(FULL).unwrap();
    let kinds: Vec<(EffectKind, bool)> = policy
        .effects()
        .map(|(k, g)| (k, g.confirm_required))
        .collect();
    assert_eq!(
        kinds,
        [
            (EffectKind::MailSend, true),
            (EffectKind::ArtifactSave, false)
        ]
    );
    assert_eq!(
        policy.check(&effect("mail.send")),
        Ok(Verdict::AllowedAfterConfirm)
    );
    assert_eq!(policy.check(&effect("artifact.save")), Ok(Verdict::Allowed));
    let denied = policy.check(&effect("artifact.delete")).unwrap_err();
    assert_eq!(
        denied,
        Denied::EffectNotAllowed {
            op: Op::EffectPerform,
            kind: EffectKind::ArtifactDelete
        }
    );
    assert!(
        denied
            .to_string()
            .contains("allow effect kind=artifact.delete")
    );
    assert!(matches!(
        policy.check(&effect("wire.transfer")),
        Err(Denied::UnknownEffect { .. })
    ));
    // No effect grant at all: denied as an op.
    let none = Policy::parse("runloop-caps 1\nallow log\n").unwrap();
    assert_eq!(
        none.check(&effect("mail.send")),
        Err(Denied::NotGranted {
            op: Op::EffectPerform
        })
    );
}

#[test]
fn bad_effect_lines_name_their_line() {
    let cases: [(&str, usize, &str); 4] = [
        ("allow effect", 2, "needs kind="),
        ("allow effect kind=wire.transfer", 2, "not an effect kind"),
        (
            "allow effect kind=mail.send confirm=maybe",
            2,
            "the only value",
        ),
        (
            "allow effect kind=mail.send\nallow effect kind=mail.send confirm=required",
            3,
            "already allowed on line 2",
        ),
    ];
    for (body, line, needle) in cases {
        let text = format!("runloop-caps 1\n{body}\n");
        let e = Policy::parse(&text).unwrap_err();
        assert_eq!(e.line, line, "{body}: {e}");
        assert!(e.to_string().contains(needle), "{body}: {e}");
    }
    assert!(matches!(
        Policy::parse("runloop-caps 1\nallow effect kind=mail.send scopes=x\n")
            .unwrap_err()
            .kind,
        CapsErrorKind::UnknownOption { .. }
    ));
}
