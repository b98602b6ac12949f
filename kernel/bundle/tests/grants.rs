//! Capability grants without a kernel: parsing, narrow vs extend, admission under config,
//! the book's newest-wins lookup and expiry, the remedies denials carry.

use runloop_bundle::grants::{
    Capability, Change, GrantBook, GrantError, GrantRecord, GrantRules, Rule, human_ms,
    parse_duration_ms,
};
use runloop_bundle::{Op, Policy, Verdict};
use runloop_proto::payloads::HostCall;

fn policy(text: &str) -> Policy {
    Policy::parse(&format!("runloop-caps 1\n{text}")).unwrap()
}

fn record(id: &str, agent: &str, capability: &str, granted: u64, expires: u64) -> GrantRecord {
    let parsed = Capability::parse(capability).unwrap();
    GrantRecord {
        grant_id: id.into(),
        agent: agent.into(),
        capability: parsed.text().into(),
        rule: parsed.rule,
        change: Change::Extend,
        granted_ms: granted,
        expires_ms: expires,
        by: "test".into(),
        reason: None,
    }
}

fn mail() -> HostCall {
    HostCall::EffectPerform {
        kind: "mail.send".into(),
        payload: rmpv::Value::Map(vec![]),
        idempotency_key: "k".into(),
    }
}

#[test]
fn capabilities_parse_with_or_without_allow_and_deny_takes_only_an_effect_kind() {
    let c = Capability::parse("effect kind=mail.send confirm=required").unwrap();
    assert_eq!((c.rule, c.op), (Rule::Allow, Op::EffectPerform));
    assert_eq!(c.text(), "allow effect kind=mail.send confirm=required");
    assert_eq!(c.pattern(), "effect:mail.send");
    let c = Capability::parse("  allow   model.complete max_tokens=9 ").unwrap();
    assert_eq!(c.text(), "allow model.complete max_tokens=9");
    assert_eq!(c.pattern(), "model.complete");
    let c = Capability::parse("deny effect").unwrap();
    assert_eq!(
        (c.rule, c.op, c.kind),
        (Rule::Deny, Op::EffectPerform, None)
    );
    let c = Capability::parse("deny effect kind=artifact.save").unwrap();
    assert!(c.kind.is_some());
    assert_eq!(Capability::parse("   ").unwrap_err(), GrantError::Empty);
    for bad in [
        "allow frob",
        "deny",
        "effect",
        "effect kind=mail.fax",
        "model.complete max_tokens=0",
        "deny effect kind=mail.fax",
        "random.bytes colour=red",
    ] {
        assert!(
            matches!(Capability::parse(bad), Err(GrantError::Syntax(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        Capability::parse("deny kb.query scopes=work"),
        Err(GrantError::DenyOptions { .. })
    ));
    assert!(matches!(
        Capability::parse(&"x".repeat(2000)),
        Err(GrantError::TooLong { .. })
    ));
}

#[test]
fn narrow_or_extend_is_judged_against_the_bundles_line() {
    let bundle = policy(
        "allow model.complete models=a,b max_tokens=256\nallow kb.query\n\
         allow effect kind=mail.send confirm=required\nallow kb.write_event kinds=note scopes=work confirm=required",
    );
    let change = |text: &str| Capability::parse(text).unwrap().change(&bundle);
    // Narrowing: fewer models, fewer tokens, scopes on an unscoped read, any deny.
    assert_eq!(
        change("model.complete models=a max_tokens=100"),
        Change::Narrow
    );
    assert_eq!(
        change("model.complete models=a,b max_tokens=256"),
        Change::Narrow
    );
    assert_eq!(change("kb.query scopes=work"), Change::Narrow);
    assert_eq!(
        change("effect kind=mail.send confirm=required"),
        Change::Narrow
    );
    assert_eq!(change("deny kb.query"), Change::Narrow);
    assert_eq!(change("deny clock.now"), Change::Narrow);
    assert_eq!(
        change("kb.write_event kinds=note scopes=work confirm=required"),
        Change::Narrow
    );
    // Extending: a new model, more tokens, no token bound, dropping a confirmation, an
    // op or effect kind the bundle lacks, a wider write.
    assert_eq!(
        change("model.complete models=a,c max_tokens=10"),
        Change::Extend
    );
    assert_eq!(
        change("model.complete models=a max_tokens=257"),
        Change::Extend
    );
    assert_eq!(change("model.complete models=a"), Change::Extend);
    assert_eq!(change("effect kind=mail.send"), Change::Extend);
    assert_eq!(change("effect kind=artifact.save"), Change::Extend);
    assert_eq!(change("clock.now"), Change::Extend);
    assert_eq!(
        change("kb.write_event kinds=note scopes=work"),
        Change::Extend
    );
    assert_eq!(
        change("kb.write_event kinds=note,contact.seen scopes=work confirm=required"),
        Change::Extend
    );
}

#[test]
fn config_decides_which_extensions_are_admitted_and_for_how_long() {
    let bundle = policy("allow log");
    let defaults = GrantRules::default();
    let admit = |rules: &GrantRules, text: &str, ttl: u64| {
        rules.admit("a", &Capability::parse(text).unwrap(), &bundle, ttl)
    };
    assert_eq!(admit(&defaults, "clock.now", 1_000), Ok(Change::Extend));
    assert_eq!(admit(&defaults, "deny log", 1_000), Ok(Change::Narrow));
    let refused = admit(&defaults, "effect kind=mail.send", 1_000).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("add \"effect:mail.send\" to security.grants.extend"),
        "{refused}"
    );
    assert!(matches!(
        admit(&defaults, "log", 0),
        Err(GrantError::BadTtl { .. })
    ));
    assert!(matches!(
        admit(&defaults, "log", defaults.max_ttl_ms + 1),
        Err(GrantError::BadTtl { .. })
    ));
    let rules = GrantRules {
        extend: vec!["effect:*".into(), "model.*".into()],
        max_ttl_ms: 10_000,
    };
    assert_eq!(
        admit(&rules, "effect kind=mail.send", 10_000),
        Ok(Change::Extend)
    );
    assert_eq!(admit(&rules, "model.embed", 1), Ok(Change::Extend));
    assert!(matches!(
        admit(&rules, "clock.now", 1),
        Err(GrantError::ExtendNotAllowed { .. })
    ));
    // Narrowing needs no config at all.
    let none = GrantRules {
        extend: vec![],
        max_ttl_ms: 10_000,
    };
    assert_eq!(admit(&none, "deny log", 1), Ok(Change::Narrow));
    assert_eq!(admit(&none, "log", 1), Ok(Change::Narrow));
}

#[test]
fn the_newest_governing_grant_decides_until_it_expires() {
    let bundle = policy("allow clock.now\nallow effect kind=mail.send confirm=required");
    let book = GrantBook::new(GrantRules::default());
    // No grant: the bundle's line decides.
    let (verdict, effective) = book.check("a", &bundle, &mail(), 0).unwrap();
    assert_eq!(verdict, Verdict::AllowedAfterConfirm);
    assert!(effective.grant().is_none());
    book.insert(record("g1", "a", "effect kind=mail.send", 0, 100), 0)
        .unwrap();
    book.insert(record("g2", "a", "deny effect", 10, 50), 10)
        .unwrap();
    book.insert(record("g3", "b", "deny clock.now", 0, 1_000), 0)
        .unwrap();
    // g2 (newest, governs every effect kind) denies until 50.
    let refusal = book.check("a", &bundle, &mail(), 20).unwrap_err();
    assert!(
        refusal.rule.starts_with("grant g2 \"deny effect\""),
        "{refusal}"
    );
    assert_eq!(
        refusal.remedy.as_deref(),
        Some("to allow it again: rlp cap revoke g2")
    );
    // Other agents' grants do not apply; other ops fall through to the bundle.
    assert!(book.check("a", &bundle, &HostCall::ClockNow, 20).is_ok());
    assert!(book.check("b", &bundle, &HostCall::ClockNow, 20).is_err());
    // g2 expired: g1 allows without confirmation.
    let (verdict, effective) = book.check("a", &bundle, &mail(), 50).unwrap();
    assert_eq!(verdict, Verdict::Allowed);
    assert_eq!(effective.grant().unwrap().grant_id, "g1");
    // g1 expired at exactly 100: the bundle again.
    let (verdict, effective) = book.check("a", &bundle, &mail(), 100).unwrap();
    assert_eq!(verdict, Verdict::AllowedAfterConfirm);
    assert!(effective.grant().is_none());
    assert_eq!(book.list(100).len(), 1, "only b's grant is left");
    // Revocation.
    assert_eq!(book.remove("g3", 100).unwrap().agent, "b");
    assert!(book.remove("g3", 100).is_none());
    assert!(book.check("b", &bundle, &HostCall::ClockNow, 100).is_ok());
    // An expired record is not put in force.
    book.insert(record("old", "a", "deny clock.now", 0, 5), 10)
        .unwrap();
    assert!(book.get("old", 10).is_none());
}

#[test]
fn denials_name_the_line_and_a_command_that_allows_the_call() {
    let bundle =
        policy("allow model.complete models=a max_tokens=16\nallow random.bytes max_len=4");
    let book = GrantBook::new(GrantRules::default());
    let call = HostCall::ModelComplete {
        model: Some("b".into()),
        messages: vec![],
        max_tokens: Some(64),
        temperature: None,
    };
    let refusal = book.check("agent_x", &bundle, &call, 0).unwrap_err();
    assert_eq!(refusal.rule, "policy.caps line 2");
    let remedy = refusal.remedy.unwrap();
    assert!(
        remedy.contains("rlp cap grant agent_x 'model.complete models=a,b max_tokens=64' --ttl 1h"),
        "{remedy}"
    );
    assert!(remedy.contains("security.grants.extend first"), "{remedy}");
    let refusal = book
        .check("agent_x", &bundle, &HostCall::RandomBytes { len: 8 }, 0)
        .unwrap_err();
    assert_eq!(refusal.rule, "policy.caps line 3");
    let remedy = refusal.remedy.unwrap();
    assert_eq!(
        remedy,
        "to allow it for a while: rlp cap grant agent_x 'random.bytes max_len=8' --ttl 1h"
    );
    let refusal = book.check("agent_x", &bundle, &mail(), 0).unwrap_err();
    assert!(
        refusal.rule.contains("no line allows it"),
        "{}",
        refusal.rule
    );
    assert!(
        refusal
            .remedy
            .unwrap()
            .contains("'effect kind=mail.send confirm=required'")
    );
}

#[test]
fn durations_read_and_print_for_people() {
    assert_eq!(parse_duration_ms("90s"), Some(90_000));
    assert_eq!(parse_duration_ms("30 min"), Some(1_800_000));
    assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
    assert_eq!(parse_duration_ms("250ms"), Some(250));
    for bad in ["", "h", "1", "1 week", "-1h", "99999999999999999999d"] {
        assert_eq!(parse_duration_ms(bad), None, "{bad}");
    }
    assert_eq!(human_ms(45_000), "45 s");
    assert_eq!(human_ms(600_000), "10 min");
    assert_eq!(human_ms(3 * 3_600_000 + 300_000), "3 h 5 min");
    assert_eq!(human_ms(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
}

#[test]
fn new_grants_stop_at_the_limit_but_recorded_ones_always_come_back() {
    use runloop_bundle::grants::ACTIVE_GRANTS_MAX;
    let book = GrantBook::new(GrantRules::default());
    for n in 0..ACTIVE_GRANTS_MAX {
        book.insert(record(&format!("g{n}"), "a", "log", 0, 100), 0)
            .unwrap();
    }
    assert!(!book.has_room(0));
    assert_eq!(
        book.insert(record("over", "a", "log", 0, 100), 0),
        Err(GrantError::TooMany)
    );
    // Read back at boot: admitted when it was granted, so it is put in force.
    book.restore(record("over", "a", "log", 0, 100), 0).unwrap();
    assert!(book.get("over", 0).is_some());
    // Expired ones free the room.
    assert!(book.has_room(100));
}
