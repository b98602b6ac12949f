//! Native tests. The broker cannot run in the agents' workspace, so the default provider
//! is stood in for by [`offline_complete`], a copy of the offline extractive writer of
//! `actors/broker/src/provider/offline.rs` (same sentence split, stop words, scoring,
//! "better half" and token estimate), so these tests see the text the default provider
//! really returns for the writer's prompt.

use super::*;
use runloop_agent_sdk::testing::TestHost;
use runloop_agent_sdk::{HostCall, HostReply};
use std::collections::HashMap;

const STOP_WORDS: [&str; 40] = [
    "the", "and", "for", "that", "this", "with", "you", "your", "are", "was", "were", "but", "not",
    "have", "has", "had", "from", "they", "them", "their", "there", "what", "which", "when",
    "will", "would", "can", "could", "should", "about", "into", "than", "then", "its", "our",
    "out", "all", "any", "please", "write",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The offline extractive writer (a copy; see the module doc).
fn offline_complete(messages: &[ChatMessage], max_tokens: u32) -> String {
    let mut freq: HashMap<String, u32> = HashMap::new();
    for m in messages
        .iter()
        .filter(|m| m.role == "user" || m.role == "system")
    {
        for w in words(&m.content) {
            if w.len() > 2 && !STOP_WORDS.contains(&w.as_str()) {
                *freq.entry(w).or_default() += 1;
            }
        }
    }
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| &m.content);
    let sents: Vec<&str> = last
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut scored: Vec<(usize, u64)> = sents
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                i,
                words(s)
                    .map(|w| u64::from(freq.get(&w).copied().unwrap_or(0)))
                    .sum(),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen = Vec::new();
    let mut used = 0;
    for (i, _) in scored.into_iter().take(sents.len().div_ceil(2)) {
        let cost = estimate_tokens(sents[i]);
        if used + cost > u64::from(max_tokens) {
            break;
        }
        used += cost;
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
        .iter()
        .map(|i| sents[*i])
        .collect::<Vec<_>>()
        .join(" ")
}

fn completion(text: &str) -> HostReply {
    HostReply::Ok(Value::Map(vec![
        ("text".into(), text.into()),
        ("provider".into(), "offline".into()),
        ("model".into(), "extractive-writer-v1".into()),
        ("tokens_in".into(), 120.into()),
        ("tokens_out".into(), 60.into()),
    ]))
}

fn offline_host() -> TestHost {
    TestHost::new(|call| match call {
        HostCall::ModelComplete {
            messages,
            max_tokens,
            ..
        } => completion(&offline_complete(messages, max_tokens.unwrap())),
        other => panic!("unexpected host call {other:?}"),
    })
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn john() -> Value {
    map(vec![
        ("contact_id", "john-smith".into()),
        ("name", "John Smith".into()),
        ("email", "john.smith@example.com".into()),
        ("matched_by", "name".into()),
    ])
}

fn passage(id: &str, seq: u64, text: &str) -> Value {
    map(vec![
        ("id", id.into()),
        ("seq", seq.into()),
        ("text", text.into()),
        ("score", Value::F64(0.03)),
    ])
}

/// The sample knowledge base's Q4 notes, as the gatherer emits them.
fn q4_passages() -> Value {
    Value::Array(vec![
        passage(
            "note:q4-plan-goals",
            10,
            "Q4 plan goals: grow recurring revenue by 15 percent over Q3. The plan focuses on the enterprise tier and on renewals.",
        ),
        passage(
            "note:q4-plan-budget",
            11,
            "The Q4 plan budget is 480k, split between hiring and marketing. John Smith approved the budget on September 12.",
        ),
        passage(
            "note:q4-plan-hiring",
            12,
            "Q4 hiring plan: two backend engineers and one account executive, all starting by mid-October.",
        ),
        passage(
            "note:q4-plan-summary",
            15,
            "John asked for a one-page summary of the Q4 plan before the board review on October 3.",
        ),
        passage(
            "note:q4-plan-risks",
            14,
            "The main risk to the Q4 plan is the data migration slipping into December. Jon Meyer tracks it every week.",
        ),
    ])
}

fn invoke(with: Vec<(&str, Value)>, inputs: Vec<(&str, Value)>) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: map(vec![
            ("node", "draft".into()),
            ("attempt", 1.into()),
            ("with", map(with)),
            ("inputs", map(inputs)),
            (
                "goals",
                Value::Array(vec!["email John about Q4 plan".into()]),
            ),
        ]),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    field(v, key).unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Markers `[n]` in the text before the sources footer.
fn markers(body: &str) -> Vec<usize> {
    let text = body.split("\n\nSources:").next().unwrap();
    text.split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn the_offline_writer_drafts_a_cited_email() {
    let mut host = offline_host();
    let input = invoke(
        vec![
            ("topic", "Q4 plan".into()),
            ("tone", "neutral-friendly".into()),
        ],
        vec![("contact", john()), ("context", q4_passages())],
    );
    host.invoke(&mut Writer, &input).unwrap();
    let HostCall::ModelComplete {
        messages,
        max_tokens,
        model,
        ..
    } = &host.calls()[0]
    else {
        panic!("expected one model call");
    };
    assert_eq!((*max_tokens, model.as_deref()), (Some(400), None));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, "system");
    assert!(
        messages[0]
            .content
            .contains("email to John Smith about Q4 plan")
    );
    // The last user message is facts only, each line ending in its marker.
    assert!(
        messages[1].content.lines().all(|l| l.ends_with("].")),
        "{}",
        messages[1].content
    );

    let draft = &host.outputs()[0];
    assert_eq!(draft.port, "draft");
    let d = &draft.payload;
    let to = get(d, "to").as_array().unwrap();
    assert_eq!(to.len(), 1);
    assert_eq!(
        get(&to[0], "email").as_str(),
        Some("john.smith@example.com")
    );
    assert_eq!(get(&to[0], "name").as_str(), Some("John Smith"));
    assert_eq!(get(d, "subject").as_str(), Some("Q4 plan"));
    assert_eq!(get(d, "passages_offered").as_u64(), Some(5));
    let citations = strings(get(d, "citations"));
    assert!(
        !citations.is_empty() && citations.len() <= 5,
        "{citations:?}"
    );
    assert!(citations.iter().all(|c| c.starts_with("note:q4-plan-")));
    let body = get(d, "body").as_str().unwrap();
    assert!(body.starts_with("Hi John,\n\n"), "{body}");
    assert!(
        body.contains("\n\nBest regards,\n\nSources:\n[1] note:q4-plan-"),
        "{body}"
    );
    // Every marker names a listed citation and every citation is used, numbered in order.
    let used = markers(body);
    assert!(
        used.iter().all(|&m| (1..=citations.len()).contains(&m)),
        "{body}"
    );
    let mut first_uses: Vec<usize> = Vec::new();
    for m in used {
        if !first_uses.contains(&m) {
            first_uses.push(m);
        }
    }
    assert_eq!(first_uses, (1..=citations.len()).collect::<Vec<_>>());
    for (i, c) in citations.iter().enumerate() {
        assert!(body.contains(&format!("\n[{}] {c}", i + 1)), "{body}");
    }
    // The extract is the Q4 facts themselves, not the instructions.
    assert!(body.contains("Q4 plan"));
    assert!(!body.contains("marker"));
    assert_eq!(get(get(d, "model"), "provider").as_str(), Some("offline"));
}

#[test]
fn without_passages_the_draft_has_no_citations() {
    let mut host = offline_host();
    let input = invoke(
        vec![("topic", "offsite agenda".into()), ("sender", "Ada".into())],
        vec![("contact", john()), ("context", Value::Array(vec![]))],
    );
    host.invoke(&mut Writer, &input).unwrap();
    let d = &host.outputs()[0].payload;
    assert!(strings(get(d, "citations")).is_empty());
    assert_eq!(get(d, "passages_offered").as_u64(), Some(0));
    let body = get(d, "body").as_str().unwrap();
    assert!(
        body.starts_with("Hi John,\n\nI would like to go through the offsite agenda"),
        "{body}"
    );
    assert!(body.ends_with("Best regards,\nAda"), "{body}");
    assert_eq!(get(d, "subject").as_str(), Some("Offsite agenda"));
}

#[test]
fn model_markers_are_renumbered_and_unknown_ones_dropped() {
    let mut host = TestHost::new(|_| {
        completion("Hi John,\nRisks first [5]. Budget is set [2]. Made up [9]. Risks again [5].")
    });
    let input = invoke(
        vec![("topic", "Q4 plan".into())],
        vec![
            ("contact", Value::Array(vec![john(), john()])),
            ("context", q4_passages()),
        ],
    );
    host.invoke(&mut Writer, &input).unwrap();
    let d = &host.outputs()[0].payload;
    assert_eq!(
        strings(get(d, "citations")),
        vec!["note:q4-plan-risks", "note:q4-plan-budget"]
    );
    assert_eq!(
        get(d, "body").as_str().unwrap(),
        "Hi John and John,\n\nRisks first [1]. Budget is set [2]. Made up. Risks again [1].\n\n\
         Best regards,\n\nSources:\n[1] note:q4-plan-risks\n[2] note:q4-plan-budget"
    );
    assert_eq!(get(d, "to").as_array().unwrap().len(), 2);
}

#[test]
fn refusals_fail_and_only_transient_ones_retry() {
    let refusal = |code| {
        let mut host = TestHost::new(move |_| HostReply::Err {
            code,
            message: "node budget: needs 900 tokens, 100 left".into(),
        });
        let input = invoke(vec![("topic", "Q4 plan".into())], vec![("contact", john())]);
        host.invoke(&mut Writer, &input)
            .unwrap_err()
            .message()
            .to_owned()
    };
    let budget = refusal(HostErrorCode::LimitExceeded);
    assert!(
        budget.starts_with("writer: model.complete: LimitExceeded: node budget"),
        "{budget}"
    );
    assert!(refusal(HostErrorCode::Failed).starts_with("retryable: writer: "));
    assert!(refusal(HostErrorCode::NotAvailable).starts_with("retryable: "));
    assert!(!refusal(HostErrorCode::CapabilityDenied).starts_with("retryable: "));
    let mut host = TestHost::new(|_| completion("  [1] "));
    let input = invoke(vec![("topic", "Q4 plan".into())], vec![("contact", john())]);
    let empty = host.invoke(&mut Writer, &input).unwrap_err();
    assert!(
        empty.message().contains("returned no text"),
        "{}",
        empty.message()
    );
}

#[test]
fn bad_input_fails_before_any_call() {
    let cases = [
        (
            vec![("topic", "Q4 plan".into())],
            vec![],
            "inputs.contact must name",
        ),
        (
            vec![("topic", " ".into())],
            vec![("contact", john())],
            "with.topic is empty",
        ),
        (
            vec![("topic", "Q4".into()), ("max_tokens", 5000.into())],
            vec![("contact", john())],
            "outside 1..=1024",
        ),
        (
            vec![("topic", "Q4".into()), ("tonee", "x".into())],
            vec![("contact", john())],
            "unknown field",
        ),
        (
            vec![("topic", "Q4".into())],
            vec![("contact", map(vec![("name", "No Mail".into())]))],
            "inputs:",
        ),
    ];
    for (with, inputs, expected) in cases {
        let mut host = TestHost::not_available();
        let err = host.invoke(&mut Writer, &invoke(with, inputs)).unwrap_err();
        assert!(err.message().contains(expected), "{}", err.message());
        assert!(host.calls().is_empty());
    }
}

#[test]
fn a_bare_map_is_with_and_inputs_at_once() {
    let mut host = offline_host();
    let bare = AgentInput {
        port: "in".into(),
        payload: map(vec![
            ("topic", "Q4 plan".into()),
            ("contact", john()),
            ("context", q4_passages()),
        ]),
    };
    host.invoke(&mut Writer, &bare).unwrap();
    assert_eq!(host.outputs().len(), 1);
}
