//! `kb.search`: full-text (FTS5, bm25) and vector (sqlite-vec cosine distance) candidates,
//! fused by reciprocal rank fusion into one ranking.

use std::collections::HashMap;

use rusqlite::params;

use crate::ids::Scope;
use crate::kind::VECTOR_DIM_MAX;
use crate::read::{READ_CONN_WAIT_MS, Reads};

/// RRF constant k (Cormack et al. 2009 use 60): damps the weight of the very top ranks.
pub const RRF_K: f64 = 60.0;
/// Candidates taken from each ranker before fusion.
pub const SEARCH_CANDIDATES_MAX: usize = 200;
/// Most fused hits returned.
pub const SEARCH_HITS_MAX: usize = 100;
/// Most terms taken from the query text.
pub const SEARCH_TERMS_MAX: usize = 32;

/// What to search for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// Free text; split into terms, any of which may match.
    pub text: String,
    /// Query embedding (same model as the stored ones); `None` for text-only search.
    pub vector: Option<Vec<f32>>,
    /// Only hits in this scope.
    pub scope: Option<Scope>,
    /// Hits wanted (capped at `SEARCH_HITS_MAX`).
    pub limit: usize,
}

/// One fused result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Entity reference (`contact:ada`).
    pub entity: String,
    /// RRF score: sum of 1/(k + rank) over the rankers that found it.
    pub score: f64,
    /// 1-based rank in the full-text list.
    pub text_rank: Option<usize>,
    /// 1-based rank in the vector list.
    pub vector_rank: Option<usize>,
    /// Cosine distance to the query vector.
    pub distance: Option<f64>,
    /// Title of the entity's document, if it has one.
    pub title: Option<String>,
}

/// A failed search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Neither terms nor a vector.
    #[error("nothing to search for: give text with at least one word or a vector")]
    Empty,
    /// Vector of the wrong size.
    #[error("query vector has {dim} dimensions, expected 1..={VECTOR_DIM_MAX}")]
    VectorDim { dim: usize },
    /// No pooled connection became free in time.
    #[error("no read connection free within {READ_CONN_WAIT_MS} ms")]
    PoolTimeout,
    /// The full-text query failed.
    #[error("full-text search: {0}")]
    Text(rusqlite::Error),
    /// The vector query failed.
    #[error("vector search: {0}")]
    Vector(rusqlite::Error),
}

/// Words of the query, each quoted so FTS5 syntax in user text is inert, joined with OR.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(SEARCH_TERMS_MAX)
        .map(|t| format!("\"{t}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// Reciprocal rank fusion of ranked entity lists.
pub fn rrf(lists: &[&[String]]) -> Vec<(String, f64)> {
    let mut score: HashMap<&str, f64> = HashMap::new();
    for list in lists {
        for (i, e) in list.iter().enumerate() {
            *score.entry(e).or_default() += 1.0 / (RRF_K + (i + 1) as f64);
        }
    }
    let mut out: Vec<(String, f64)> = score.into_iter().map(|(e, s)| (e.to_owned(), s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

impl Reads {
    /// Hybrid search: FTS5 and vector candidates fused by RRF.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, SearchError> {
        let terms = fts_query(&q.text);
        if terms.is_none() && q.vector.is_none() {
            return Err(SearchError::Empty);
        }
        if let Some(v) = &q.vector
            && (v.is_empty() || v.len() > VECTOR_DIM_MAX)
        {
            return Err(SearchError::VectorDim { dim: v.len() });
        }
        let conn = self.lease().ok_or(SearchError::PoolTimeout)?;
        let scope = q.scope.as_ref().map(|s| s.as_str().to_owned());
        let mut titles: HashMap<String, String> = HashMap::new();
        let mut text_list = Vec::new();
        if let Some(m) = &terms {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.entity, d.title FROM views.docs_fts f JOIN views.docs d ON d.id = f.rowid
                     WHERE docs_fts MATCH ?1 AND (?2 IS NULL OR d.scope = ?2) ORDER BY bm25(docs_fts) LIMIT ?3",
                )
                .map_err(SearchError::Text)?;
            let rows = stmt
                .query_map(params![m, scope, SEARCH_CANDIDATES_MAX as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(SearchError::Text)?;
            for row in rows {
                let (e, t) = row.map_err(SearchError::Text)?;
                titles.insert(e.clone(), t);
                text_list.push(e);
            }
        }
        let mut vec_list = Vec::new();
        let mut dist: HashMap<String, f64> = HashMap::new();
        if let Some(v) = &q.vector {
            let blob: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT entity, vec_distance_cosine(vec, ?1) AS d FROM views.vectors
                     WHERE dim = ?2 AND (?3 IS NULL OR scope = ?3) ORDER BY d LIMIT ?4",
                )
                .map_err(SearchError::Vector)?;
            let rows = stmt
                .query_map(
                    params![blob, v.len() as i64, scope, SEARCH_CANDIDATES_MAX as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)),
                )
                .map_err(SearchError::Vector)?;
            for row in rows {
                let (e, d) = row.map_err(SearchError::Vector)?;
                dist.insert(e.clone(), d);
                vec_list.push(e);
            }
        }
        let limit = q.limit.clamp(1, SEARCH_HITS_MAX);
        let fused = rrf(&[&text_list, &vec_list]);
        let mut hits = Vec::with_capacity(limit);
        for (entity, score) in fused.into_iter().take(limit) {
            let title = match titles.get(&entity) {
                Some(t) => Some(t.clone()),
                None => conn
                    .query_row(
                        "SELECT title FROM views.docs WHERE entity = ?1",
                        [&entity],
                        |r| r.get(0),
                    )
                    .ok(),
            };
            hits.push(SearchHit {
                text_rank: text_list.iter().position(|e| *e == entity).map(|i| i + 1),
                vector_rank: vec_list.iter().position(|e| *e == entity).map(|i| i + 1),
                distance: dist.get(&entity).copied(),
                title,
                score,
                entity,
            });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_terms_and_drops_syntax() {
        assert_eq!(
            fts_query("ada OR \"lovelace\"*").unwrap(),
            "\"ada\" OR \"OR\" OR \"lovelace\""
        );
        assert_eq!(fts_query("  -- ; "), None);
    }

    #[test]
    fn rrf_rewards_agreement_between_rankers() {
        let a = vec!["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let b = vec!["z".to_owned(), "y".to_owned()];
        let fused = rrf(&[&a, &b]);
        let order: Vec<&str> = fused.iter().map(|(e, _)| e.as_str()).collect();
        // y (2nd + 2nd) beats x (1st only) and z (3rd + 1st) ties above y? check numerically.
        let s = |e: &str| fused.iter().find(|(x, _)| x == e).unwrap().1;
        assert!((s("y") - (2.0 / 62.0)).abs() < 1e-12);
        assert!((s("z") - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(order, vec!["z", "y", "x"]);
    }
}
