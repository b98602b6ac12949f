//! Parsing import files into events: NDJSON (one event object per line, e.g. an export)
//! and CSV (one contact per row by default). Rows get idempotency keys derived from the
//! file's content hash and the line, so importing the same file twice appends nothing.

use std::io::BufRead;

use serde_json::{Map, Value, json};

use crate::event::{NewEvent, Provenance, ValidationError};
use crate::ids::{ActorName, IdempotencyKey, Scope};
use crate::kind::{EventKind, FieldType};

/// Most lines/rows one import file may hold.
pub const IMPORT_ROWS_MAX: usize = 1_000_000;
/// Longest single NDJSON line.
pub const IMPORT_LINE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// Comma-separated with a header row.
    Csv,
    /// Newline-delimited JSON events.
    Ndjson,
}

/// A bad import file, naming the line (1-based, header is line 1 in CSV).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input.
    #[error("read input: {0}")]
    Io(#[from] std::io::Error),
    /// A CSV syntax error.
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    /// A line that is not JSON.
    #[error("line {line}: not JSON: {message}")]
    Json { line: u64, message: String },
    /// A row that is not a valid event.
    #[error("line {line}: {source}")]
    Invalid { line: u64, source: ValidationError },
    /// Too many rows or a too-long line.
    #[error("line {line}: {what} over the limit of {max}")]
    TooBig {
        line: u64,
        what: &'static str,
        max: usize,
    },
}

/// Where the rows came from; becomes every event's provenance.
#[derive(Debug, Clone)]
pub struct ImportContext {
    /// Provenance for each event (trace id of the import run, agent `rlp`, inputs hash).
    pub provenance: Provenance,
    /// Actor written on each event.
    pub actor: ActorName,
    /// Scope for rows that name none.
    pub scope: Scope,
    /// Kind each CSV row becomes.
    pub csv_kind: EventKind,
    /// Hex BLAKE3 of the whole file, for idempotency keys.
    pub file_hash: String,
}

fn key(ctx: &ImportContext, line: u64) -> IdempotencyKey {
    IdempotencyKey::new(&format!("import:{}:{line}", &ctx.file_hash[..32]))
        .expect("hex and digits are valid key characters")
}

/// Parses NDJSON: each non-blank line is `{kind, payload, provenance?, actor?, scope?, idempotency_key?}`;
/// a line without provenance gets the import's.
pub fn parse_ndjson(
    input: impl BufRead,
    ctx: &ImportContext,
) -> Result<Vec<NewEvent>, ImportError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let lineno = i as u64 + 1;
        let line = line?;
        if line.len() > IMPORT_LINE_BYTES_MAX {
            return Err(ImportError::TooBig {
                line: lineno,
                what: "line length",
                max: IMPORT_LINE_BYTES_MAX,
            });
        }
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == IMPORT_ROWS_MAX {
            return Err(ImportError::TooBig {
                line: lineno,
                what: "row count",
                max: IMPORT_ROWS_MAX,
            });
        }
        let mut v: Value = serde_json::from_str(&line).map_err(|e| ImportError::Json {
            line: lineno,
            message: e.to_string(),
        })?;
        if let Value::Object(m) = &mut v {
            m.entry("provenance")
                .or_insert_with(|| ctx.provenance.to_json());
            if m.get("idempotency_key").is_none_or(Value::is_null) {
                m.insert("idempotency_key".into(), json!(key(ctx, lineno).as_str()));
            }
        }
        out.push(
            NewEvent::from_json(&v, &ctx.actor, &ctx.scope).map_err(|source| {
                ImportError::Invalid {
                    line: lineno,
                    source,
                }
            })?,
        );
    }
    Ok(out)
}

/// Parses CSV with a header row whose columns are the kind's payload fields (plus an
/// optional `scope`). Empty cells are omitted; list fields (`tags`, `to`) split on `;`;
/// integer fields are parsed. For contacts without `contact_id`, the lowercased email is used.
pub fn parse_csv(
    input: impl std::io::Read,
    ctx: &ImportContext,
) -> Result<Vec<NewEvent>, ImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| ImportError::Csv {
            line: 1,
            message: e.to_string(),
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    let schema = ctx.csv_kind.schema();
    if let Some(col) = header
        .iter()
        .find(|h| h.as_str() != "scope" && !schema.iter().any(|f| f.name == h.as_str()))
    {
        let known: Vec<&str> = schema.iter().map(|f| f.name).collect();
        return Err(ImportError::Invalid {
            line: 1,
            source: ValidationError::new(
                format!("header.{col}"),
                format!(
                    "not a field of {} (known: {}, scope)",
                    ctx.csv_kind,
                    known.join(", ")
                ),
            ),
        });
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| ImportError::Csv {
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        if out.len() == IMPORT_ROWS_MAX {
            return Err(ImportError::TooBig {
                line,
                what: "row count",
                max: IMPORT_ROWS_MAX,
            });
        }
        let invalid = |source| ImportError::Invalid { line, source };
        let mut payload = Map::new();
        let mut scope = ctx.scope.clone();
        for (col, cell) in header.iter().zip(rec.iter()) {
            if cell.is_empty() {
                continue;
            }
            if col == "scope" {
                scope = Scope::new(cell)
                    .map_err(|e| invalid(ValidationError::new("scope", e.to_string())))?;
                continue;
            }
            let ty = schema
                .iter()
                .find(|f| f.name == col.as_str())
                .map(|f| f.ty)
                .expect("header checked above");
            payload.insert(col.clone(), cell_value(col, ty, cell).map_err(invalid)?);
        }
        if ctx.csv_kind == EventKind::ContactUpserted
            && !payload.contains_key("contact_id")
            && let Some(email) = payload.get("email").and_then(Value::as_str)
        {
            payload.insert("contact_id".into(), json!(email.to_lowercase()));
        }
        let e = NewEvent::new(
            ctx.csv_kind,
            ctx.actor.clone(),
            scope,
            Value::Object(payload),
            ctx.provenance.clone(),
            Some(key(ctx, line)),
        )
        .map_err(invalid)?;
        out.push(e);
    }
    Ok(out)
}

fn cell_value(col: &str, ty: FieldType, cell: &str) -> Result<Value, ValidationError> {
    Ok(match ty {
        FieldType::StrList => json!(
            cell.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        ),
        FieldType::U64 => json!(cell.parse::<u64>().map_err(|_| ValidationError::new(
            format!("payload.{col}"),
            format!("{cell:?} is not a non-negative integer")
        ))?),
        FieldType::Object | FieldType::Any | FieldType::Vector => serde_json::from_str(cell)
            .map_err(|e| {
                ValidationError::new(format!("payload.{col}"), format!("not JSON: {e}"))
            })?,
        _ => json!(cell),
    })
}
