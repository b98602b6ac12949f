//! `context_gatherer` (compose_email): finds the POG notes about `with.topic` by hybrid
//! search — full text and vectors, fused — and emits them as citable passages.
//!
//! Input: a node invoke whose `with` is `{topic: str, limit?: int (default 5, at most 20),
//! min_similarity?: number (default 0.2), model?: str (the embedder; default the broker's)}`;
//! a bare `{topic, …}` map works too. Output, on `passages`: an array, best first, of
//! `{id: "note:<note_id>", seq, text, score}` — `id` is the POG entity (`rlp kb why
//! note:<note_id>`), `seq` the `note.added` event that wrote the text, `score` the fused
//! score. No match is not an error: it emits `[]`.
//!
//! The search, in the order it runs:
//!
//! 1. Full text: the topic's words, each quoted and OR-ed (`"q4" OR "plan"`; common words
//!    dropped), `MATCH`ed against `docs_fts` restricted to note documents, bm25 order.
//!    Quoting makes any FTS5 syntax in the topic inert: a topic is never a query.
//! 2. Vectors: the topic is embedded with `model.embed`; stored vectors of notes for the
//!    same model and dimension come from the `vectors` table (f32 little-endian blobs,
//!    which `kb.query` returns as hex); notes without one — the full-text hits, then the
//!    [`RECENT_NOTES_MAX`] most recent — are embedded here, in batches, within
//!    [`EMBED_CHARS_TOTAL_MAX`] characters (embedding is charged to the token budgets).
//!    Notes below `min_similarity` (cosine) are dropped, the rest ranked.
//! 3. Reciprocal rank fusion (k = 60, as the POG's own `kb.search`) of the two rankings.
//!
//! When the broker is not running (`model.embed` answers `NotAvailable`, e.g. an embedded
//! `rlp agent send`) the search is full text only; any other refusal (a spent budget, a
//! denied capability) fails the node with the broker's reason.

mod rank;

use std::collections::BTreeMap;

use rank::{cosine, decode_vector, fts_query, rrf};
use runloop_agent_sdk::{
    Agent, AgentError, AgentInput, Ctx, HostCallError, HostErrorCode, KbQueryResult, Value,
    export_agent, from_payload,
};
use serde::{Deserialize, Serialize};

/// Passages emitted when `with.limit` is absent.
const LIMIT_DEFAULT: u64 = 5;
/// Most passages one invoke emits.
const LIMIT_MAX: u64 = 20;
/// Cosine similarity below which a note does not count as near the topic. Tuned for the
/// offline hashing embedder (the default provider), which gives notes sharing no word
/// with the topic about 0 ± 0.1 (see the tests, on `examples/pog/sample.ndjson`). A
/// semantic embedder scores unrelated text higher: with one, set `with.min_similarity`.
const MIN_SIMILARITY_DEFAULT: f64 = 0.2;
/// Longest topic accepted, in bytes.
const TOPIC_BYTES_MAX: usize = 512;
/// Characters of a note's text read and emitted.
const PASSAGE_CHARS_MAX: u64 = 2_000;
/// Candidates taken from the full-text index.
const TEXT_CANDIDATES_MAX: u64 = 50;
/// Stored vectors read (most recent notes first).
const STORED_VECTORS_MAX: u64 = 1_000;
/// Recent notes considered for the vector ranking even without a stored vector.
const RECENT_NOTES_MAX: u64 = 50;
/// Texts embedded in one `model.embed` call.
const EMBED_BATCH_MAX: usize = 32;
/// Characters of one note embedded here (its start says what it is about).
const EMBED_TEXT_CHARS_MAX: usize = 1_000;
/// Characters embedded here per invoke, all notes together: embedding is charged to the
/// node's and the run's token budgets (about 4 characters a token), so notes past this
/// are left to the full-text ranking. Full-text hits are embedded first, then recent
/// notes, newest first.
const EMBED_CHARS_TOTAL_MAX: usize = 24_000;
/// Candidates kept from the vector ranking.
const VECTOR_CANDIDATES_MAX: usize = 50;

const FTS_SQL: &str = "SELECT n.note_id, n.seq, substr(n.text, 1, ?3) FROM docs_fts \
     JOIN docs d ON d.id = docs_fts.rowid \
     JOIN notes n ON d.entity = 'note:' || n.note_id \
     WHERE docs_fts MATCH ?1 AND d.kind = 'note.added' \
     ORDER BY bm25(docs_fts), n.seq DESC LIMIT ?2";
const VECTORS_SQL: &str = "SELECT n.note_id, n.seq, substr(n.text, 1, ?3), v.vec FROM vectors v \
     JOIN notes n ON v.entity = 'note:' || n.note_id \
     WHERE v.model = ?1 AND v.dim = ?2 ORDER BY n.seq DESC LIMIT ?4";
const RECENT_SQL: &str = "SELECT n.note_id, n.seq, substr(n.text, 1, ?1) FROM notes n \
     ORDER BY n.seq DESC LIMIT ?2";

/// The gatherer; stateless.
#[derive(Debug, Default)]
pub struct ContextGatherer;

/// The node's `with`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    topic: String,
    limit: Option<u64>,
    min_similarity: Option<f64>,
    model: Option<String>,
}

/// One note as read from the POG.
#[derive(Debug, Clone, PartialEq)]
struct Note {
    note_id: String,
    seq: u64,
    text: String,
}

/// One emitted passage.
#[derive(Debug, Serialize)]
struct Passage<'a> {
    id: String,
    seq: u64,
    text: &'a str,
    score: f64,
}

/// The invoke's `with`, or the whole payload when it is not a node invoke.
fn with_of(payload: &Value) -> &Value {
    let entries = payload.as_map().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("with"))
        .map_or(payload, |(_, v)| v)
}

fn failed(error: HostCallError) -> AgentError {
    AgentError::new(format!("context_gatherer: {error}"))
}

fn note_of(row: &[Value]) -> Result<Note, AgentError> {
    match row {
        [Value::String(id), seq, Value::String(text), ..] if seq.as_u64().is_some() => Ok(Note {
            note_id: id.as_str().unwrap_or_default().to_owned(),
            seq: seq.as_u64().unwrap_or_default(),
            text: text.as_str().unwrap_or_default().to_owned(),
        }),
        other => Err(AgentError::new(format!(
            "context_gatherer: unexpected notes row {other:?}"
        ))),
    }
}

fn notes(result: &KbQueryResult) -> Result<Vec<Note>, AgentError> {
    result.rows.iter().map(|r| note_of(r)).collect()
}

/// The query vector, or `None` when no embedder is running.
fn embed_topic(
    ctx: &mut Ctx<'_>,
    model: Option<&str>,
    topic: &str,
) -> Result<Option<(String, Vec<f32>)>, AgentError> {
    match ctx.model_embed(model, vec![topic.to_owned()]) {
        Ok(mut answer) if answer.vectors.len() == 1 && !answer.vectors[0].is_empty() => {
            Ok(Some((answer.model, answer.vectors.remove(0))))
        }
        Ok(answer) => Err(AgentError::new(format!(
            "context_gatherer: model.embed returned {} vectors for one text",
            answer.vectors.len()
        ))),
        Err(e) if e.code() == Some(HostErrorCode::NotAvailable) => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

/// Similarity of every candidate note to `query`: stored vectors first, then the notes of
/// `pool` (in order) without one, embedded here within [`EMBED_CHARS_TOTAL_MAX`].
fn vector_ranking(
    ctx: &mut Ctx<'_>,
    with: &With,
    model: &str,
    query: &[f32],
    pool: &[Note],
) -> Result<(Vec<String>, BTreeMap<String, Note>), AgentError> {
    let stored = ctx
        .kb_query(
            VECTORS_SQL,
            vec![
                model.into(),
                (query.len() as u64).into(),
                PASSAGE_CHARS_MAX.into(),
                STORED_VECTORS_MAX.into(),
            ],
        )
        .map_err(failed)?;
    let mut seen: BTreeMap<String, Note> = BTreeMap::new();
    let mut scored: Vec<(String, u64, f64)> = Vec::new();
    for row in &stored.rows {
        let note = note_of(row)?;
        let vector = match row.get(3) {
            Some(Value::String(hex)) => decode_vector(hex.as_bytes(), true),
            Some(Value::Binary(bytes)) => decode_vector(bytes, false),
            _ => None,
        };
        // A malformed stored vector is treated as absent: the note is embedded below.
        if let Some(v) = vector {
            scored.push((note.note_id.clone(), note.seq, cosine(query, &v)));
            seen.insert(note.note_id.clone(), note);
        }
    }
    let mut budget = EMBED_CHARS_TOTAL_MAX;
    let mut missing: Vec<(&Note, String)> = Vec::new();
    for note in pool.iter().filter(|n| !seen.contains_key(&n.note_id)) {
        let text: String = note.text.chars().take(EMBED_TEXT_CHARS_MAX).collect();
        let chars = text.chars().count();
        if chars > budget {
            break;
        }
        budget -= chars;
        missing.push((note, text));
    }
    for batch in missing.chunks(EMBED_BATCH_MAX) {
        let texts = batch.iter().map(|(_, text)| text.clone()).collect();
        let answer = ctx
            .model_embed(with.model.as_deref(), texts)
            .map_err(failed)?;
        if answer.vectors.len() != batch.len() {
            return Err(AgentError::new(format!(
                "context_gatherer: model.embed returned {} vectors for {} texts",
                answer.vectors.len(),
                batch.len()
            )));
        }
        for ((note, _), v) in batch.iter().zip(&answer.vectors) {
            scored.push((note.note_id.clone(), note.seq, cosine(query, v)));
            seen.insert(note.note_id.clone(), (*note).clone());
        }
    }
    let floor = with.min_similarity.unwrap_or(MIN_SIMILARITY_DEFAULT);
    scored.retain(|(_, _, s)| *s >= floor);
    // Most similar first; ties to the newer note, then by id.
    scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    scored.truncate(VECTOR_CANDIDATES_MAX);
    Ok((scored.into_iter().map(|(id, _, _)| id).collect(), seen))
}

impl Agent for ContextGatherer {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: AgentInput) -> Result<(), AgentError> {
        let with: With = from_payload(with_of(&input.payload))
            .map_err(|e| AgentError::new(format!("context_gatherer: with: {e}")))?;
        let topic = with.topic.trim();
        if topic.is_empty() || topic.len() > TOPIC_BYTES_MAX {
            return Err(AgentError::new(format!(
                "context_gatherer: with.topic must be 1..={TOPIC_BYTES_MAX} bytes, got {}",
                topic.len()
            )));
        }
        let limit = with.limit.unwrap_or(LIMIT_DEFAULT).clamp(1, LIMIT_MAX) as usize;
        // Notes met so far by id, and the order they were met in (full-text rank, then
        // newest first): the order in which notes without a stored vector are embedded.
        let mut pool: BTreeMap<String, Note> = BTreeMap::new();
        let mut order: Vec<Note> = Vec::new();
        let mut text_list: Vec<String> = Vec::new();
        if let Some(fts) = fts_query(topic) {
            let params = vec![
                fts.into(),
                TEXT_CANDIDATES_MAX.into(),
                PASSAGE_CHARS_MAX.into(),
            ];
            for note in notes(&ctx.kb_query(FTS_SQL, params).map_err(failed)?)? {
                text_list.push(note.note_id.clone());
                pool.insert(note.note_id.clone(), note.clone());
                order.push(note);
            }
        }
        let mut vector_list: Vec<String> = Vec::new();
        if let Some((model, query)) = embed_topic(ctx, with.model.as_deref(), topic)? {
            let params = vec![PASSAGE_CHARS_MAX.into(), RECENT_NOTES_MAX.into()];
            for note in notes(&ctx.kb_query(RECENT_SQL, params).map_err(failed)?)? {
                if !pool.contains_key(&note.note_id) {
                    pool.insert(note.note_id.clone(), note.clone());
                    order.push(note);
                }
            }
            let (ranked, seen) = vector_ranking(ctx, &with, &model, &query, &order)?;
            vector_list = ranked;
            pool.extend(seen);
        }
        let fused = rrf(&[&text_list, &vector_list]);
        let passages: Vec<Passage<'_>> = fused
            .into_iter()
            .take(limit)
            .map(|(note_id, score)| {
                let note = &pool[&note_id];
                Passage {
                    id: format!("note:{note_id}"),
                    seq: note.seq,
                    text: &note.text,
                    score,
                }
            })
            .collect();
        ctx.emit("passages", &passages)?;
        Ok(())
    }
}

export_agent!(ContextGatherer);

#[cfg(test)]
mod tests;
