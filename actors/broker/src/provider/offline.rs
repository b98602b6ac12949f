//! The offline default: a deterministic extractive writer and a feature-hashing embedder.
//!
//! Neither is a language model and every response says so in its provider label
//! ([`EngineKind::OfflineExtractiveWriter`], [`EngineKind::OfflineHashingEmbedder`]). The writer
//! picks the highest-scoring half of the last user message's sentences (word frequency over the
//! user and system messages, stop words ignored) and returns them in their original order within
//! `max_tokens`; the embedder hashes words and
//! character trigrams into a signed vector of [`EMBED_DIMS`] dimensions, L2-normalised, so texts
//! sharing words are closer than unrelated ones.

use super::estimate_tokens;
use crate::types::{
    CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse, EngineKind, FinishReason,
    ProviderLabel, Role, Usage,
};
use std::collections::HashMap;

/// Dimensions of the hashing embedder.
pub const EMBED_DIMS: usize = 256;
/// Model names the offline provider answers with.
pub const WRITER_MODEL: &str = "extractive-writer-v1";
pub const EMBEDDER_MODEL: &str = "hashing-embedder-v1";
pub const MODELS: [&str; 2] = [WRITER_MODEL, EMBEDDER_MODEL];
/// Most sentences considered from one prompt.
const SENTENCES_MAX: usize = 4096;

const STOP_WORDS: [&str; 40] = [
    "the", "and", "for", "that", "this", "with", "you", "your", "are", "was", "were", "but", "not",
    "have", "has", "had", "from", "they", "them", "their", "there", "what", "which", "when",
    "will", "would", "can", "could", "should", "about", "into", "than", "then", "its", "our",
    "out", "all", "any", "please", "write",
];

/// The offline provider (stateless).
#[derive(Debug, Clone)]
pub struct OfflineProvider {
    id: String,
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn sentences(text: &str) -> Vec<&str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(SENTENCES_MAX)
        .collect()
}

/// FNV-1a, 64 bit: fast, stable across platforms and releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl OfflineProvider {
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    fn label(&self, engine: EngineKind) -> ProviderLabel {
        ProviderLabel {
            id: self.id.clone(),
            engine,
        }
    }

    /// Extractive answer: the prompt's best sentences, original order, within `max_tokens`.
    pub fn complete(&self, req: &CompleteRequest) -> CompleteResponse {
        let source: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| matches!(m.role, Role::User | Role::System))
            .map(|m| m.content.as_str())
            .collect();
        let mut freq: HashMap<String, u32> = HashMap::new();
        for w in source.iter().flat_map(|t| words(t)) {
            if w.len() > 2 && !STOP_WORDS.contains(&w.as_str()) {
                *freq.entry(w).or_default() += 1;
            }
        }
        // The last user message is what is being asked; extract from it.
        let last = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let sents = sentences(last);
        let mut scored: Vec<(usize, u64)> = sents
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i,
                    words(s)
                        .map(|w| u64::from(freq.get(&w).copied().unwrap_or(0)))
                        .sum::<u64>(),
                )
            })
            .collect();
        // Highest score first; ties keep the earlier sentence (stable and deterministic).
        scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let budget = u64::from(req.max_tokens_or_default());
        let first = scored.first().copied();
        let mut chosen = Vec::new();
        let mut used = 0;
        let mut truncated = false;
        // An extract, not an echo: at most the better half of the sentences.
        let keep = sents.len().div_ceil(2);
        for (i, _) in scored.into_iter().take(keep) {
            let cost = estimate_tokens(sents[i]);
            if used + cost > budget {
                // Stop at the first sentence that does not fit: a shorter, weaker sentence must
                // not displace the order of importance.
                truncated = true;
                break;
            }
            used += cost;
            chosen.push(i);
        }
        chosen.sort_unstable();
        let mut content = chosen
            .iter()
            .map(|i| sents[*i])
            .collect::<Vec<_>>()
            .join(" ");
        if let (true, Some((best, _))) = (chosen.is_empty(), first) {
            // Even the best sentence is too long: cut it at a word boundary within the budget.
            for word in sents[best].split_whitespace() {
                let next = if content.is_empty() {
                    word.to_owned()
                } else {
                    format!("{content} {word}")
                };
                if estimate_tokens(&next) > budget {
                    break;
                }
                content = next;
            }
            used = estimate_tokens(&content);
        }
        let tokens_in = super::estimate_prompt_tokens(req);
        CompleteResponse {
            content,
            tool_calls: Vec::new(),
            finish_reason: if truncated {
                FinishReason::Length
            } else {
                FinishReason::Stop
            },
            provider: self.label(EngineKind::OfflineExtractiveWriter),
            model: WRITER_MODEL.to_owned(),
            usage: Usage {
                tokens_in,
                tokens_out: used,
                cost_usd_micros: 0,
                estimated: true,
            },
        }
    }

    /// Hashing embeddings, one per input.
    pub fn embed(&self, req: &EmbedRequest) -> EmbedResponse {
        let vectors: Vec<Vec<f32>> = req.inputs.iter().map(|t| embed_one(t)).collect();
        let tokens_in = req.inputs.iter().map(|t| estimate_tokens(t)).sum();
        EmbedResponse {
            vectors,
            provider: self.label(EngineKind::OfflineHashingEmbedder),
            model: EMBEDDER_MODEL.to_owned(),
            usage: Usage {
                tokens_in,
                tokens_out: 0,
                cost_usd_micros: 0,
                estimated: true,
            },
        }
    }
}

fn add_feature(v: &mut [f32], feature: &[u8], weight: f32) {
    let h = fnv1a(feature);
    let index = (h % EMBED_DIMS as u64) as usize;
    let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
    v[index] += sign * weight;
}

/// One L2-normalised hashing embedding (all zeros for text without words).
pub fn embed_one(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBED_DIMS];
    for w in words(text) {
        add_feature(&mut v, w.as_bytes(), 1.0);
        let padded: Vec<char> = format!("<{w}>").chars().collect();
        for tri in padded.windows(3) {
            let s: String = tri.iter().collect();
            add_feature(&mut v, s.as_bytes(), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}
