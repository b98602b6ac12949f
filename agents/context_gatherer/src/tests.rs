//! Native tests over the sample knowledge base of `examples/pog/sample.ndjson`.
//!
//! Stand-ins, because neither real part can run in the agents' workspace: the POG (SQLite,
//! in the kernel's workspace) is replaced by a host that answers the gatherer's three
//! statements, recognised by their exact text, from the sample file's notes; the broker's
//! offline embedder is replaced by [`offline_embed`], a copy of
//! `actors/broker/src/provider/offline.rs`'s `embed_one` (same hashing, dimensions and
//! weights), so the similarity floor is checked against the vectors the default provider
//! really makes. The SQL itself was run against a real store made with
//! `rlp kb import examples/pog/sample.ndjson`.

use super::*;
use runloop_agent_sdk::testing::TestHost;
use runloop_agent_sdk::{HostCall, HostReply};
use std::cell::RefCell;
use std::rc::Rc;

const SAMPLE: &str = include_str!("../../../examples/pog/sample.ndjson");
const EMBEDDER: &str = "hashing-embedder-v1";
const DIMS: usize = 256;

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The offline provider's hashing embedder (a copy; see the module doc).
fn offline_embed(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    let mut add = |feature: &[u8], weight: f32| {
        let h = fnv1a(feature);
        let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
        v[(h % DIMS as u64) as usize] += sign * weight;
    };
    for w in words(text) {
        add(w.as_bytes(), 1.0);
        let padded: Vec<char> = format!("<{w}>").chars().collect();
        for tri in padded.windows(3) {
            add(tri.iter().collect::<String>().as_bytes(), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The sample's notes, with their event seq (one event per line).
fn sample_notes() -> Vec<Note> {
    SAMPLE
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            (event["kind"] == "note.added").then(|| Note {
                note_id: event["payload"]["note_id"].as_str().unwrap().to_owned(),
                seq: i as u64 + 1,
                text: event["payload"]["text"].as_str().unwrap().to_owned(),
            })
        })
        .collect()
}

/// What the stand-in host saw and holds.
#[derive(Default)]
struct World {
    notes: Vec<Note>,
    /// Stored vectors by note id (the `vectors` table).
    stored: BTreeMap<String, Vec<f32>>,
    /// `model.embed` answers `NotAvailable`.
    no_broker: bool,
    /// Texts embedded, in order.
    embedded: Vec<String>,
    /// FTS queries seen.
    fts: Vec<String>,
}

fn table(rows: Vec<Vec<Value>>) -> HostReply {
    HostReply::Ok(Value::Map(vec![
        ("columns".into(), Value::Array(vec![])),
        (
            "rows".into(),
            Value::Array(rows.into_iter().map(Value::Array).collect()),
        ),
    ]))
}

fn row(n: &Note) -> Vec<Value> {
    vec![
        n.note_id.as_str().into(),
        n.seq.into(),
        n.text.as_str().into(),
    ]
}

fn hex(v: &[f32]) -> String {
    v.iter()
        .flat_map(|f| f.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks an FTS5 query is only double-quoted words joined by OR; returns the words.
fn inert_terms(fts: &str) -> Vec<String> {
    fts.split(" OR ")
        .map(|term| {
            let word = term
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unquoted FTS term {term:?} in {fts:?}"));
            assert!(word.chars().all(char::is_alphanumeric), "{fts:?}");
            word.to_owned()
        })
        .collect()
}

/// FTS5's bm25 (k1 = 1.2, b = 0.75) over the two columns the POG indexes for a note:
/// `title` (its first line, at most 80 chars) and `body` (its text), summed.
fn bm25(notes: &[Note], note: &Note, terms: &[String]) -> f64 {
    let title = |n: &Note| -> String {
        n.text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect()
    };
    let columns: [fn(&Note) -> String; 2] = [title, |n| n.text.clone()];
    let total = notes.len() as f64;
    let mut score = 0.0;
    for column in columns {
        let docs: Vec<Vec<String>> = notes.iter().map(|n| words(&column(n)).collect()).collect();
        let avg = docs.iter().map(Vec::len).sum::<usize>() as f64 / total;
        let doc: Vec<String> = words(&column(note)).collect();
        for t in terms {
            let with_term = docs.iter().filter(|d| d.contains(t)).count() as f64;
            let idf = ((total - with_term + 0.5) / (with_term + 0.5) + 1.0).ln();
            let tf = doc.iter().filter(|w| *w == t).count() as f64;
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * doc.len() as f64 / avg));
        }
    }
    score
}

fn answer(world: &Rc<RefCell<World>>, call: &HostCall) -> HostReply {
    let mut w = world.borrow_mut();
    match call {
        HostCall::KbQuery { sql, params } if sql == FTS_SQL => {
            let terms = inert_terms(params[0].as_str().unwrap());
            w.fts.push(params[0].as_str().unwrap().to_owned());
            let mut hits: Vec<(f64, &Note)> = w
                .notes
                .iter()
                .map(|n| (bm25(&w.notes, n, &terms), n))
                .filter(|(s, _)| *s > 0.0)
                .collect();
            hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.seq.cmp(&a.1.seq)));
            table(hits.into_iter().map(|(_, n)| row(n)).collect())
        }
        HostCall::KbQuery { sql, params } if sql == VECTORS_SQL => {
            assert_eq!(params[0].as_str(), Some(EMBEDDER));
            assert_eq!(params[1].as_u64(), Some(DIMS as u64));
            let rows = w
                .notes
                .iter()
                .rev()
                .filter_map(|n| {
                    let v = w.stored.get(&n.note_id)?;
                    let mut r = row(n);
                    r.push(hex(v).into());
                    Some(r)
                })
                .collect();
            table(rows)
        }
        HostCall::KbQuery { sql, .. } if sql == RECENT_SQL => {
            table(w.notes.iter().rev().map(row).collect())
        }
        HostCall::ModelEmbed { input, .. } => {
            if w.no_broker {
                return HostReply::Err {
                    code: HostErrorCode::NotAvailable,
                    message: "model.embed is not available: no broker".into(),
                };
            }
            w.embedded.extend(input.iter().cloned());
            let vectors = input
                .iter()
                .map(|t| Value::Array(offline_embed(t).into_iter().map(Value::F32).collect()))
                .collect();
            HostReply::Ok(Value::Map(vec![
                ("vectors".into(), Value::Array(vectors)),
                ("provider".into(), "offline".into()),
                ("model".into(), EMBEDDER.into()),
            ]))
        }
        other => panic!("unexpected host call {other:?}"),
    }
}

fn invoke(with: Vec<(&str, Value)>) -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: Value::Map(vec![
            ("node".into(), "context".into()),
            ("attempt".into(), 1.into()),
            (
                "with".into(),
                Value::Map(with.into_iter().map(|(k, v)| (k.into(), v)).collect()),
            ),
            ("inputs".into(), Value::Map(vec![])),
            ("goals".into(), Value::Array(vec![])),
        ]),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Runs the gatherer; returns the emitted passages' ids and the world.
fn gather(world: World, with: Vec<(&str, Value)>) -> (Vec<String>, Rc<RefCell<World>>) {
    let world = Rc::new(RefCell::new(world));
    let shared = Rc::clone(&world);
    let mut host = TestHost::new(move |call| answer(&shared, call));
    host.invoke(&mut ContextGatherer, &invoke(with)).unwrap();
    assert_eq!(host.outputs().len(), 1);
    let out = &host.outputs()[0];
    assert_eq!(out.port, "passages");
    let passages = out.payload.as_array().unwrap();
    let mut last = f64::INFINITY;
    let ids = passages
        .iter()
        .map(|p| {
            let score = get(p, "score").as_f64().unwrap();
            assert!(score <= last, "passages come best first");
            last = score;
            let id = get(p, "id").as_str().unwrap().to_owned();
            let note = world
                .borrow()
                .notes
                .iter()
                .find(|n| format!("note:{}", n.note_id) == id)
                .cloned()
                .unwrap();
            assert_eq!(get(p, "seq").as_u64(), Some(note.seq), "{id}");
            assert_eq!(get(p, "text").as_str(), Some(note.text.as_str()));
            id
        })
        .collect();
    (ids, world)
}

fn sample() -> World {
    World {
        notes: sample_notes(),
        ..World::default()
    }
}

#[test]
fn the_q4_plan_gathers_the_q4_notes() {
    let (ids, world) = gather(sample(), vec![("topic", "Q4 plan".into())]);
    // Every passage mentions the Q4 plan (or, for the Q3 retrospective, the plan); the
    // notes both rankers put high come first.
    assert_eq!(ids.len(), 5);
    for id in &ids {
        assert!(
            id.starts_with("note:q4-plan-") || id == "note:q3-retro",
            "{ids:?}"
        );
    }
    assert_eq!(
        ids[..3],
        [
            "note:q4-plan-goals",
            "note:q4-plan-hiring",
            "note:q4-plan-summary"
        ]
    );
    let w = world.borrow();
    assert_eq!(w.fts, vec!["\"q4\" OR \"plan\""]);
    // The topic, then every sample note once (none has a stored vector).
    assert_eq!(w.embedded.len(), 1 + w.notes.len());
}

#[test]
fn the_similarity_floor_keeps_unrelated_notes_out() {
    // The hashing embedder is no semantic model: notes sharing no word with the topic
    // score about 0 ± 0.1, and the floor must keep them out; notes that do share words
    // score 0.05 to 0.35, so the full-text ranking does most of the work.
    let topic = offline_embed("Q4 plan");
    for note in sample_notes() {
        let s = cosine(&topic, &offline_embed(&note.text));
        let shares = words(&note.text).any(|w| w == "q4" || w == "plan");
        if !shares {
            assert!(
                s < MIN_SIMILARITY_DEFAULT,
                "{} has similarity {s:.3}",
                note.note_id
            );
        }
        if ["q4-plan-goals", "q4-plan-hiring", "q4-plan-summary"].contains(&note.note_id.as_str()) {
            assert!(
                s >= MIN_SIMILARITY_DEFAULT,
                "{} has similarity {s:.3}",
                note.note_id
            );
        }
    }
}

#[test]
fn stored_vectors_are_used_instead_of_embedding() {
    let mut world = sample();
    for n in &world.notes {
        world
            .stored
            .insert(n.note_id.clone(), offline_embed(&n.text));
    }
    let (ids, world) = gather(world, vec![("topic", "Q4 plan".into())]);
    assert_eq!(ids[0], "note:q4-plan-goals");
    assert_eq!(world.borrow().embedded, vec!["Q4 plan"]);
}

#[test]
fn hostile_topics_never_reach_fts_as_syntax() {
    for topic in [
        "\"); DROP TABLE notes; --",
        "NEAR(q4 plan, 2)",
        "q4* AND -budget ^plan",
        "\"unbalanced",
        "plan:budget OR {hiring}",
    ] {
        let (ids, world) = gather(sample(), vec![("topic", topic.into())]);
        assert!(ids.len() <= 5, "{topic}");
        assert_eq!(world.borrow().fts.len(), 1, "{topic}");
    }
    // Punctuation only: no FTS query at all, still a vector search, still an answer.
    let (_, world) = gather(sample(), vec![("topic", "\"*()".into())]);
    assert!(world.borrow().fts.is_empty());
}

#[test]
fn nothing_relevant_emits_an_empty_list() {
    let (ids, _) = gather(sample(), vec![("topic", "zebra migration permits".into())]);
    // "migration" is in the risks note; nothing else matches.
    assert_eq!(ids, vec!["note:q4-plan-risks"]);
    let empty = World::default();
    let (ids, _) = gather(empty, vec![("topic", "Q4 plan".into())]);
    assert!(ids.is_empty());
}

#[test]
fn without_a_broker_the_search_is_full_text_only() {
    let mut world = sample();
    world.no_broker = true;
    let (ids, world) = gather(
        world,
        vec![("topic", "hiring budget".into()), ("limit", 2.into())],
    );
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"note:q4-plan-budget".to_owned()), "{ids:?}");
    assert!(world.borrow().embedded.is_empty());
}

#[test]
fn limit_is_defaulted_and_capped() {
    let (ids, _) = gather(
        sample(),
        vec![
            ("topic", "Q4 plan".into()),
            ("limit", 1000.into()),
            ("min_similarity", (-1.0).into()),
        ],
    );
    assert_eq!(ids.len(), 12, "every note, no more than LIMIT_MAX");
    let (ids, _) = gather(
        sample(),
        vec![("topic", "Q4 plan".into()), ("limit", 0.into())],
    );
    assert_eq!(ids.len(), 1);
}

#[test]
fn bad_input_and_refusals_fail() {
    let mut host = TestHost::not_available();
    let err = host
        .invoke(&mut ContextGatherer, &invoke(vec![("topic", " ".into())]))
        .unwrap_err();
    assert!(
        err.message().contains("with.topic must be"),
        "{}",
        err.message()
    );
    let err = host
        .invoke(
            &mut ContextGatherer,
            &invoke(vec![("topic", "x".into()), ("limt", 3.into())]),
        )
        .unwrap_err();
    assert!(err.message().contains("unknown field"), "{}", err.message());
    let err = host
        .invoke(&mut ContextGatherer, &invoke(vec![("topic", "Q4".into())]))
        .unwrap_err();
    assert!(
        err.message()
            .starts_with("context_gatherer: kb.query: NotAvailable")
    );
    // A spent budget on the embedder is the node's failure, with the broker's reason.
    let world = Rc::new(RefCell::new(sample()));
    let shared = Rc::clone(&world);
    let mut host = TestHost::new(move |call| match call {
        HostCall::ModelEmbed { .. } => HostReply::Err {
            code: HostErrorCode::LimitExceeded,
            message: "refused before the call: node budget".into(),
        },
        other => answer(&shared, other),
    });
    let err = host
        .invoke(
            &mut ContextGatherer,
            &invoke(vec![("topic", "Q4 plan".into())]),
        )
        .unwrap_err();
    assert!(err.message().contains("LimitExceeded"), "{}", err.message());
    assert!(host.outputs().is_empty());
}

#[test]
fn embedding_is_bounded_by_the_character_budget() {
    let long = "plan ".repeat(400); // 2,000 chars, embedded as its first 1,000
    let notes = (1..=60)
        .map(|i| Note {
            note_id: format!("n{i:02}"),
            seq: i,
            text: long.clone(),
        })
        .collect();
    let world = World {
        notes,
        ..World::default()
    };
    let (ids, world) = gather(world, vec![("topic", "plan".into())]);
    assert_eq!(ids.len(), 5);
    let w = world.borrow();
    // The topic, then as many notes as fit in EMBED_CHARS_TOTAL_MAX, each cut short.
    assert_eq!(
        w.embedded.len(),
        1 + EMBED_CHARS_TOTAL_MAX / EMBED_TEXT_CHARS_MAX
    );
    assert!(
        w.embedded[1..]
            .iter()
            .all(|t| t.chars().count() == EMBED_TEXT_CHARS_MAX)
    );
}
