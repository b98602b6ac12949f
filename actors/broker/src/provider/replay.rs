//! Replay: answers from a recorded run's responses, keyed by request hash.
//!
//! A request that was not recorded is an error naming its hash. Records whose hash does not
//! match their request are refused when the provider is built, so a tampered record never answers.

use super::ProviderError;
use crate::types::{
    CompleteRequest, CompleteResponse, EmbedRequest, EmbedResponse, ModelRequest, ModelResponse,
    Record, RequestHash,
};
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;

/// Most records one replay provider holds.
pub const REPLAY_RECORDS_MAX: usize = 1 << 20;
/// Longest line of a records file.
const RECORD_LINE_BYTES_MAX: usize = 64 << 20;

/// Why a set of records could not become a replay provider.
#[derive(Debug, thiserror::Error)]
pub enum ReplayLoadError {
    #[error("read records {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("records {path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("record {index}: hash {hash} does not match its request")]
    Inconsistent { index: usize, hash: RequestHash },
    #[error("more than {max} records")]
    TooMany { max: usize },
}

/// Recorded responses by request hash.
#[derive(Debug, Default)]
pub struct ReplayProvider {
    records: HashMap<RequestHash, ModelResponse>,
}

impl ReplayProvider {
    /// Builds from records; a later record for the same hash replaces an earlier one.
    pub fn from_records(
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Self, ReplayLoadError> {
        let mut map = HashMap::new();
        for (index, r) in records.into_iter().enumerate() {
            if !r.is_consistent() {
                return Err(ReplayLoadError::Inconsistent {
                    index,
                    hash: r.request_hash,
                });
            }
            if map.len() >= REPLAY_RECORDS_MAX {
                return Err(ReplayLoadError::TooMany {
                    max: REPLAY_RECORDS_MAX,
                });
            }
            map.insert(r.request_hash, r.response);
        }
        Ok(Self { records: map })
    }

    /// Reads a JSON-lines file of [`Record`]s (what `--record` writes).
    pub fn from_jsonl(path: &Path) -> Result<Self, ReplayLoadError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| ReplayLoadError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| ReplayLoadError::Read {
                path: shown.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > RECORD_LINE_BYTES_MAX {
                return Err(ReplayLoadError::Parse {
                    path: shown,
                    line: i + 1,
                    reason: "line too long".into(),
                });
            }
            let r: Record = serde_json::from_str(&line).map_err(|e| ReplayLoadError::Parse {
                path: shown.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            records.push(r);
        }
        Self::from_records(records)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn complete(&self, req: &CompleteRequest) -> Result<CompleteResponse, ProviderError> {
        let hash = ModelRequest::Complete(req.clone()).hash();
        match self.records.get(&hash) {
            Some(ModelResponse::Complete(r)) => Ok(r.clone()),
            Some(_) => Err(ProviderError::ReplayKind { hash }),
            None => Err(ProviderError::ReplayMiss { hash }),
        }
    }

    pub fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        let hash = ModelRequest::Embed(req.clone()).hash();
        match self.records.get(&hash) {
            Some(ModelResponse::Embed(r)) => Ok(r.clone()),
            Some(_) => Err(ProviderError::ReplayKind { hash }),
            None => Err(ProviderError::ReplayMiss { hash }),
        }
    }

    /// Models that served the recorded responses.
    pub fn models(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .records
            .values()
            .map(|r| match r {
                ModelResponse::Complete(c) => c.model.as_str(),
                ModelResponse::Embed(e) => e.model.as_str(),
            })
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }
}
