//! Native tests over the sample knowledge base of `examples/pog/sample.ndjson`.
//!
//! The POG cannot run in the agents' workspace (it is SQLite in the kernel's), so the host
//! here is a stand-in: it projects the sample file's contact events as the POG's views
//! do and answers the resolver's three statements, recognised by their exact text (any
//! other SQL fails the test). The statements themselves were run against a real store
//! made with `rlp kb import examples/pog/sample.ndjson` (see the agent's docs section).

use super::*;
use runloop_agent_sdk::testing::TestHost;
use runloop_agent_sdk::{HostCall, HostErrorCode, HostReply};

const SAMPLE: &str = include_str!("../../../examples/pog/sample.ndjson");

/// One row of the stand-in `contacts` view plus its search document's words.
#[derive(Debug, Clone)]
struct Row {
    contact: Contact,
    removed: bool,
    doc_words: Vec<String>,
}

fn sample_contacts() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for line in SAMPLE.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = &event["payload"];
        let id = p["contact_id"].as_str().unwrap_or_default().to_owned();
        match event["kind"].as_str().unwrap() {
            "contact.upserted" => {
                let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                let tags: Vec<String> = p["tags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let doc = format!(
                    "{} {} {} {} {}",
                    text("name"),
                    text("email"),
                    text("org"),
                    text("notes"),
                    tags.join(" ")
                );
                rows.retain(|r| r.contact.contact_id != id);
                rows.push(Row {
                    contact: Contact {
                        contact_id: id,
                        name: text("name"),
                        email: p["email"].as_str().map(str::to_owned),
                    },
                    removed: false,
                    doc_words: doc
                        .split(|c: char| !c.is_alphanumeric())
                        .filter(|w| !w.is_empty())
                        .map(str::to_lowercase)
                        .collect(),
                });
            }
            "contact.removed" => {
                for r in rows.iter_mut().filter(|r| r.contact.contact_id == id) {
                    r.removed = true;
                    r.doc_words.clear();
                }
            }
            _ => {}
        }
    }
    rows
}

fn row_value(c: &Contact) -> Vec<Value> {
    vec![
        c.contact_id.as_str().into(),
        c.name.as_str().into(),
        c.email.as_deref().map_or(Value::Nil, Value::from),
    ]
}

fn table(contacts: Vec<&Contact>) -> HostReply {
    let rows = contacts
        .into_iter()
        .map(|c| Value::Array(row_value(c)))
        .collect();
    HostReply::Ok(Value::Map(vec![
        (
            "columns".into(),
            Value::Array(vec!["contact_id".into(), "name".into(), "email".into()]),
        ),
        ("rows".into(), Value::Array(rows)),
    ]))
}

/// Checks an FTS5 query is only double-quoted words, as the resolver promises.
fn assert_inert(fts: &str) -> Vec<String> {
    fts.split(' ')
        .map(|term| {
            let word = term
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unquoted FTS term {term:?} in {fts:?}"));
            assert!(word.chars().all(char::is_alphanumeric), "{fts:?}");
            word.to_lowercase()
        })
        .collect()
}

fn pog(rows: Vec<Row>) -> impl FnMut(&HostCall) -> HostReply {
    move |call| {
        if let HostCall::ConfirmRequest { .. } = call {
            // A kernel without a gate: nobody can be asked.
            return HostReply::Err {
                code: HostErrorCode::NotAvailable,
                message: "no confirmation gate".into(),
            };
        }
        let HostCall::KbQuery { sql, params } = call else {
            panic!("unexpected host call {call:?}");
        };
        let live = rows.iter().filter(|r| !r.removed);
        match sql.as_str() {
            EXACT_SQL => {
                let q = params[0].as_str().unwrap().to_lowercase();
                table(
                    live.filter(|r| {
                        r.contact.name.to_lowercase() == q
                            || r.contact.email.as_deref().map(str::to_lowercase) == Some(q.clone())
                    })
                    .map(|r| &r.contact)
                    .collect(),
                )
            }
            SCAN_SQL => table(live.map(|r| &r.contact).collect()),
            FTS_SQL => {
                let terms = assert_inert(params[0].as_str().unwrap());
                table(
                    live.filter(|r| terms.iter().all(|t| r.doc_words.contains(t)))
                        .map(|r| &r.contact)
                        .collect(),
                )
            }
            other => panic!("unexpected SQL {other}"),
        }
    }
}

fn invoke(recipient: &str) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: Value::Map(vec![
            ("node".into(), "contact".into()),
            ("attempt".into(), 1.into()),
            (
                "with".into(),
                Value::Map(vec![("recipient".into(), recipient.into())]),
            ),
            ("inputs".into(), Value::Map(vec![])),
            ("goals".into(), Value::Array(vec![])),
        ]),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Resolves on the sample; `Ok((contact_id, matched_by))` or the failure message.
fn resolve_in(rows: Vec<Row>, recipient: &str) -> Result<(String, String), String> {
    let mut host = TestHost::new(pog(rows));
    match host.invoke(&mut ContactResolver, &invoke(recipient)) {
        Ok(()) => {
            assert_eq!(host.outputs().len(), 1);
            let out = &host.outputs()[0];
            assert_eq!(out.port, "contact");
            let text = |k| field(&out.payload, k).as_str().unwrap().to_owned();
            assert!(text("email").contains('@'));
            Ok((text("contact_id"), text("matched_by")))
        }
        Err(e) => {
            assert!(host.outputs().is_empty());
            Err(e.message().to_owned())
        }
    }
}

fn resolve(recipient: &str) -> Result<(String, String), String> {
    resolve_in(sample_contacts(), recipient)
}

fn ok(id: &str, tier: &str) -> Result<(String, String), String> {
    Ok((id.to_owned(), tier.to_owned()))
}

#[test]
fn exact_name_or_address_in_any_case() {
    assert_eq!(resolve("John Smith"), ok("john-smith", "exact"));
    assert_eq!(resolve("  john smith "), ok("john-smith", "exact"));
    assert_eq!(
        resolve("JOHANNA.BERG@example.org"),
        ok("johanna-berg", "exact")
    );
}

#[test]
fn a_first_name_resolves_john_to_john_smith_alone() {
    // Jon Meyer (one edit away), Johanna (a prefix) and Maria (whose notes mention John)
    // are worse kinds of match than a whole first name, so they never make it ambiguous.
    assert_eq!(resolve("John"), ok("john-smith", "name"));
    assert_eq!(resolve("jon"), ok("jon-meyer", "name"));
    assert_eq!(resolve("Lovelace"), ok("ada-lovelace", "name"));
    assert_eq!(resolve("priya.patel"), ok("priya-patel", "name"));
}

#[test]
fn full_text_finds_org_and_notes() {
    assert_eq!(resolve("Contoso"), ok("sam-smith", "full_text"));
    assert_eq!(resolve("migration"), ok("jon-meyer", "full_text"));
    assert_eq!(resolve("launch calendar"), ok("maria-garcia", "full_text"));
}

#[test]
fn close_spellings_and_prefixes() {
    assert_eq!(resolve("Mariah"), ok("maria-garcia", "close"));
    assert_eq!(resolve("Lovelase"), ok("ada-lovelace", "close"));
    assert_eq!(resolve("Pri"), ok("priya-patel", "close"));
}

#[test]
fn several_candidates_fail_naming_them() {
    assert_eq!(
        resolve("Smith"),
        Err(
            "2 contacts match \"Smith\": John Smith <john.smith@example.com>, \
             Sam Smith <sam.smith@example.com>; name one exactly"
                .into()
        )
    );
    // A transposition is one edit from both John and Jon.
    let jhon = resolve("Jhon").unwrap_err();
    assert!(
        jhon.starts_with("2 contacts match \"Jhon\": John Smith"),
        "{jhon}"
    );
    let northwind = resolve("Northwind").unwrap_err();
    assert!(northwind.starts_with("4 contacts match"), "{northwind}");
    assert!(!northwind.starts_with("retryable: "));
}

#[test]
fn none_fails_naming_the_recipient_and_removed_contacts_never_match() {
    assert_eq!(
        resolve("Zed"),
        Err(
            "no contact matches \"Zed\" (by name or address, first or last name, full \
             text, or a close spelling)"
                .into()
        )
    );
    assert!(
        resolve("Tom Okafor")
            .unwrap_err()
            .starts_with("no contact matches")
    );
    assert!(resolve("tom.okafor@example.com").is_err());
}

#[test]
fn hostile_recipients_stay_words() {
    // The stand-in host panics on any FTS query that is not quoted words.
    for hostile in [
        "\"); DROP TABLE contacts; --",
        "NEAR(john smith",
        "jo* OR 1",
        "-:^",
    ] {
        let result = resolve(hostile);
        assert!(result.is_err(), "{hostile}: {result:?}");
    }
}

#[test]
fn a_match_without_an_address_fails() {
    let mut rows = sample_contacts();
    rows.push(Row {
        contact: Contact {
            contact_id: "nomail".into(),
            name: "Nora Nomail".into(),
            email: None,
        },
        removed: false,
        doc_words: vec!["nora".into(), "nomail".into()],
    });
    assert_eq!(
        resolve_in(rows, "Nora"),
        Err("contact nomail (Nora Nomail) matches \"Nora\" but has no email address".into())
    );
}

#[test]
fn bad_input_and_refused_queries_fail() {
    let err = resolve("  ").unwrap_err();
    assert!(err.contains("with.recipient is empty"), "{err}");
    let err = resolve(&"x".repeat(300)).unwrap_err();
    assert!(err.contains("at most 256"), "{err}");
    let mut host = TestHost::not_available();
    let err = host
        .invoke(&mut ContactResolver, &invoke("John"))
        .unwrap_err();
    assert!(
        err.message()
            .starts_with("contact_resolver: kb.query: NotAvailable")
    );
    let mut host = TestHost::new(|_| HostReply::Err {
        code: HostErrorCode::CapabilityDenied,
        message: "kb.query denied".into(),
    });
    assert!(host.invoke(&mut ContactResolver, &invoke("John")).is_err());
    let bare = AgentInput {
        port: "in".into(),
        payload: Value::Map(vec![("recipient".into(), "John".into())]),
    };
    let mut host = TestHost::new(pog(sample_contacts()));
    host.invoke(&mut ContactResolver, &bare).unwrap();
    let typo = AgentInput {
        port: "in".into(),
        payload: Value::Map(vec![(
            "with".into(),
            Value::Map(vec![("recipent".into(), "John".into())]),
        )]),
    };
    let err = TestHost::not_available()
        .invoke(&mut ContactResolver, &typo)
        .unwrap_err();
    assert!(err.message().contains("unknown field"), "{}", err.message());
}

/// The pog stand-in, with a person who answers the questions: yes to the candidate whose
/// summary contains `yes_to`, no to the others; `pending` answers nothing yet.
fn asking(yes_to: Option<&'static str>, pending: bool) -> impl FnMut(&HostCall) -> HostReply {
    let mut pog = pog(sample_contacts());
    move |call| match call {
        HostCall::ConfirmRequest { action, summary } => {
            assert_eq!(action, "choose.recipient");
            if pending {
                return HostReply::Err {
                    code: HostErrorCode::ConfirmationPending,
                    message: "waits for a person".into(),
                };
            }
            let approved = yes_to.is_some_and(|name| summary.contains(name));
            let value = runloop_agent_sdk::Value::Map(vec![("approved".into(), approved.into())]);
            HostReply::Ok(value)
        }
        other => pog(other),
    }
}

#[test]
fn several_candidates_are_put_to_the_person_one_at_a_time() {
    let mut host = TestHost::new(asking(Some("Sam Smith"), false));
    host.invoke(&mut ContactResolver, &invoke("Smith")).unwrap();
    let out = &host.outputs()[0];
    assert_eq!(
        field(&out.payload, "contact_id").as_str(),
        Some("sam-smith")
    );
    assert_eq!(field(&out.payload, "matched_by").as_str(), Some("chosen"));
    let questions: Vec<&HostCall> = host
        .calls()
        .iter()
        .filter(|c| matches!(c, HostCall::ConfirmRequest { .. }))
        .collect();
    assert_eq!(
        questions.len(),
        2,
        "John Smith first (no), then Sam Smith (yes)"
    );

    // Every answer no: the failure names the candidates.
    let mut host = TestHost::new(asking(None, false));
    let err = host
        .invoke(&mut ContactResolver, &invoke("Smith"))
        .unwrap_err();
    assert!(
        err.message().starts_with("2 contacts match \"Smith\""),
        "{}",
        err.message()
    );

    // Nobody has answered yet: the pending error goes back to the kernel.
    let mut host = TestHost::new(asking(None, true));
    let err = host
        .invoke(&mut ContactResolver, &invoke("Smith"))
        .unwrap_err();
    assert!(
        err.message().contains("ConfirmationPending"),
        "{}",
        err.message()
    );
    assert!(host.outputs().is_empty());
}
