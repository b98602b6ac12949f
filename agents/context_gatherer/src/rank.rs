//! The pure half of the search: the FTS5 query text, vector decoding and similarity, and
//! reciprocal rank fusion.

use std::collections::BTreeMap;

/// RRF constant k (Cormack et al. 2009 use 60), the same as the POG's own `kb.search`.
pub(crate) const RRF_K: f64 = 60.0;
/// Most words of the topic used in the full-text query.
pub(crate) const FTS_TERMS_MAX: usize = 16;
/// Most dimensions a stored or returned vector may have (the POG's own bound).
pub(crate) const VECTOR_DIM_MAX: usize = 4096;

/// Words too common to say what a note is about; dropped from the full-text query unless
/// the topic has nothing else.
const STOP_WORDS: [&str; 24] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "our", "so", "that", "the", "this", "to", "we", "with",
];

/// The FTS5 query for a topic: its words, each double-quoted and OR-ed, so FTS syntax in
/// the topic (`"`, `*`, `NEAR(`, `AND`, `-`, `:`, `^`) is only ever a word or nothing.
/// `None` when the topic has no word at all.
pub(crate) fn fts_query(topic: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for word in topic.split(|c: char| !c.is_alphanumeric()) {
        let lower = word.to_lowercase();
        if !word.is_empty() && !words.contains(&lower) && words.len() < FTS_TERMS_MAX {
            words.push(lower);
        }
    }
    let content: Vec<&String> = words
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect();
    let chosen: Vec<&String> = if content.is_empty() {
        words.iter().collect()
    } else {
        content
    };
    (!chosen.is_empty()).then(|| {
        chosen
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" OR ")
    })
}

/// A stored vector: the POG keeps f32 little-endian blobs, which `kb.query` returns as
/// lowercase hex text (or, should that change, as binary). `None` for anything else.
pub(crate) fn decode_vector(bytes_or_hex: &[u8], is_hex: bool) -> Option<Vec<f32>> {
    let bytes: Vec<u8> = if is_hex {
        if !bytes_or_hex.len().is_multiple_of(2) {
            return None;
        }
        bytes_or_hex
            .chunks(2)
            .map(|pair| {
                let hi = (pair[0] as char).to_digit(16)?;
                let lo = (pair[1] as char).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()
            })
            .collect::<Option<Vec<u8>>>()?
    } else {
        bytes_or_hex.to_vec()
    };
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) || bytes.len() / 4 > VECTOR_DIM_MAX {
        return None;
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    floats.iter().all(|x| x.is_finite()).then_some(floats)
}

/// Cosine similarity; 0 for vectors of different length or zero length.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Reciprocal rank fusion of ranked lists of keys: each key scores the sum of
/// `1 / (RRF_K + rank)` over the lists it is in. Best first; ties by key, so the order
/// does not depend on map iteration.
pub(crate) fn rrf(lists: &[&[String]]) -> Vec<(String, f64)> {
    let mut score: BTreeMap<&str, f64> = BTreeMap::new();
    for list in lists {
        for (i, key) in list.iter().enumerate() {
            *score.entry(key).or_default() += 1.0 / (RRF_K + (i + 1) as f64);
        }
    }
    let mut out: Vec<(String, f64)> = score.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_words_and_drops_syntax() {
        assert_eq!(fts_query("Q4 plan").as_deref(), Some("\"q4\" OR \"plan\""));
        assert_eq!(
            fts_query("\"); DROP TABLE notes; --").as_deref(),
            Some("\"drop\" OR \"table\" OR \"notes\"")
        );
        assert_eq!(
            fts_query("NEAR(q4 plan, 2) AND budget*").as_deref(),
            Some("\"near\" OR \"q4\" OR \"plan\" OR \"2\" OR \"budget\"")
        );
        assert_eq!(
            fts_query("the plan for the Q4").as_deref(),
            Some("\"plan\" OR \"q4\"")
        );
        assert_eq!(fts_query("the of").as_deref(), Some("\"the\" OR \"of\""));
        assert_eq!(fts_query(" ^-:*\"() ").as_deref(), None);
    }

    #[test]
    fn fts_query_is_bounded() {
        let long: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            fts_query(&long).unwrap().matches(" OR ").count(),
            FTS_TERMS_MAX - 1
        );
    }

    #[test]
    fn vectors_decode_from_hex_and_binary() {
        let floats = [1.0f32, -0.5, 0.25];
        let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode_vector(hex.as_bytes(), true).unwrap(), floats);
        assert_eq!(decode_vector(&bytes, false).unwrap(), floats);
        assert_eq!(decode_vector(b"abc", true), None);
        assert_eq!(decode_vector(b"zz000000", true), None);
        assert_eq!(decode_vector(&[0, 0, 0], false), None);
        assert_eq!(decode_vector(&f32::NAN.to_le_bytes(), false), None);
    }

    #[test]
    fn cosine_and_rrf() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        let a = vec!["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let b = vec!["z".to_owned(), "y".to_owned()];
        let fused = rrf(&[&a, &b]);
        let order: Vec<&str> = fused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, vec!["z", "y", "x"]);
        assert!((fused[1].1 - 2.0 / 62.0).abs() < 1e-12);
    }
}
