//! Parsing import files into events: NDJSON (one event object per line, e.g. an export)
//! and CSV (one contact per row by default). Rows get idempotency keys derived from the
//! file's content hash and the line, so importing the same file twice appends nothing.
//!
//! Input is read once, as a stream, and every read is bounded while it happens: the whole
//! input by [`IMPORT_FILE_BYTES_MAX`], one NDJSON line by [`IMPORT_LINE_BYTES_MAX`], one
//! CSV record by [`IMPORT_RECORD_BYTES_MAX`] (its fields by [`IMPORT_FIELDS_MAX`]), the row
//! count by [`IMPORT_ROWS_MAX`]. An endless or hostile input (`/dev/zero`, one 100 MB
//! field) is refused after at most one limit's worth of bytes, never buffered whole. The
//! file hash is known only at the end, so rows are validated into events after the last
//! byte is read.

use std::io::{BufRead, BufReader, Read};

use serde_json::{Map, Value, json};

use crate::event::{NewEvent, Provenance, ValidationError};
use crate::ids::{ActorName, IdempotencyKey, Scope};
use crate::kind::{EventKind, FieldType};

/// Most lines/rows one import file may hold.
pub const IMPORT_ROWS_MAX: usize = 1_000_000;
/// Longest single NDJSON line, in bytes (without its newline).
pub const IMPORT_LINE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Longest single CSV record (all its unquoted field bytes together), in bytes.
pub const IMPORT_RECORD_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Most fields in one CSV record.
pub const IMPORT_FIELDS_MAX: usize = 256;
/// Largest import input, in bytes.
pub const IMPORT_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Bytes read from the input per refill.
const READ_BUFFER_BYTES: usize = 64 * 1024;

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
    /// Too many rows, a too-long line or record, or too many fields.
    #[error("line {line}: {what} over the limit of {max} ({limit})")]
    TooBig {
        line: u64,
        what: &'static str,
        max: usize,
        limit: &'static str,
    },
    /// The whole input is over [`IMPORT_FILE_BYTES_MAX`].
    #[error("input is over the limit of {IMPORT_FILE_BYTES_MAX} bytes (IMPORT_FILE_BYTES_MAX)")]
    FileTooBig,
}

/// Where the rows came from; becomes every event's provenance.
#[derive(Debug, Clone)]
pub struct ImportContext {
    /// Provenance for rows that carry none (trace id of the import run, agent `rlp`); its
    /// `inputs_hash` is replaced by the file's hash once the whole file is read.
    pub provenance: Provenance,
    /// Actor written on each event.
    pub actor: ActorName,
    /// Scope for rows that name none.
    pub scope: Scope,
    /// Kind each CSV row becomes.
    pub csv_kind: EventKind,
}

/// The events of one import file and the file's hash.
#[derive(Debug)]
pub struct Parsed {
    /// One event per row, in file order.
    pub events: Vec<NewEvent>,
    /// Hex BLAKE3 of the whole input (the idempotency keys and `inputs_hash` derive from it).
    pub file_hash: String,
}

/// The input, cut at [`IMPORT_FILE_BYTES_MAX`] + 1 bytes, hashed as it streams by.
struct Hashing<R> {
    inner: std::io::Take<R>,
    hasher: blake3::Hasher,
    read: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner: inner.take(IMPORT_FILE_BYTES_MAX + 1),
            hasher: blake3::Hasher::new(),
            read: 0,
        }
    }

    /// The hash, or `FileTooBig` when the cut was reached.
    fn finish(&self) -> Result<String, ImportError> {
        if self.read > IMPORT_FILE_BYTES_MAX {
            return Err(ImportError::FileTooBig);
        }
        Ok(self.hasher.finalize().to_hex().to_string())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn key(file_hash: &str, line: u64) -> IdempotencyKey {
    IdempotencyKey::new(&format!("import:{}:{line}", &file_hash[..32]))
        .expect("hex and digits are valid key characters")
}

fn provenance(ctx: &ImportContext, file_hash: &str) -> Provenance {
    Provenance {
        inputs_hash: file_hash.to_owned(),
        ..ctx.provenance.clone()
    }
}

fn too_many_rows(line: u64) -> ImportError {
    ImportError::TooBig {
        line,
        what: "row count",
        max: IMPORT_ROWS_MAX,
        limit: "IMPORT_ROWS_MAX",
    }
}

/// Parses NDJSON: each non-blank line is `{kind, payload, provenance?, actor?, scope?, idempotency_key?}`;
/// a line without provenance gets the import's.
pub fn parse_ndjson(input: impl Read, ctx: &ImportContext) -> Result<Parsed, ImportError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, Hashing::new(input));
    let mut rows: Vec<(u64, Value)> = Vec::new();
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    loop {
        buf.clear();
        // One byte more than a line may hold, plus its newline: a longer line is cut here.
        let cap = IMPORT_LINE_BYTES_MAX as u64 + 2;
        if (&mut reader).take(cap).read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() > IMPORT_LINE_BYTES_MAX {
            return Err(ImportError::TooBig {
                line: lineno,
                what: "line length",
                max: IMPORT_LINE_BYTES_MAX,
                limit: "IMPORT_LINE_BYTES_MAX",
            });
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if rows.len() == IMPORT_ROWS_MAX {
            return Err(too_many_rows(lineno));
        }
        let v: Value = serde_json::from_slice(&buf).map_err(|e| ImportError::Json {
            line: lineno,
            message: e.to_string(),
        })?;
        rows.push((lineno, v));
    }
    let file_hash = reader.get_ref().finish()?;
    let prov = provenance(ctx, &file_hash).to_json();
    let mut events = Vec::with_capacity(rows.len());
    for (line, mut v) in rows {
        if let Value::Object(m) = &mut v {
            m.entry("provenance").or_insert_with(|| prov.clone());
            if m.get("idempotency_key").is_none_or(Value::is_null) {
                m.insert(
                    "idempotency_key".into(),
                    json!(key(&file_hash, line).as_str()),
                );
            }
        }
        events.push(
            NewEvent::from_json(&v, &ctx.actor, &ctx.scope)
                .map_err(|source| ImportError::Invalid { line, source })?,
        );
    }
    Ok(Parsed { events, file_hash })
}

/// CSV records read one at a time into fixed buffers: a record longer than
/// [`IMPORT_RECORD_BYTES_MAX`] or wider than [`IMPORT_FIELDS_MAX`] is refused as soon as
/// the buffer fills, before the rest of it is read.
struct CsvRecords<R> {
    core: csv_core::Reader,
    input: BufReader<Hashing<R>>,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: Read> CsvRecords<R> {
    fn new(input: R) -> Self {
        CsvRecords {
            core: csv_core::Reader::new(),
            input: BufReader::with_capacity(READ_BUFFER_BYTES, Hashing::new(input)),
            out: vec![0; IMPORT_RECORD_BYTES_MAX + 1],
            ends: vec![0; IMPORT_FIELDS_MAX + 1],
        }
    }

    /// The next record's line (as the `csv` crate counts it: the line after the previous
    /// record) and its trimmed fields; `None` at the end of the input.
    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>)>, ImportError> {
        let line = self.core.line();
        let (mut outlen, mut endlen) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..]);
            self.input.consume(nin);
            outlen += nout;
            endlen += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    return Err(ImportError::TooBig {
                        line,
                        what: "record length",
                        max: IMPORT_RECORD_BYTES_MAX,
                        limit: "IMPORT_RECORD_BYTES_MAX",
                    });
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    return Err(ImportError::TooBig {
                        line,
                        what: "field count",
                        max: IMPORT_FIELDS_MAX,
                        limit: "IMPORT_FIELDS_MAX",
                    });
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
        if outlen > IMPORT_RECORD_BYTES_MAX || endlen > IMPORT_FIELDS_MAX {
            let (what, max, limit) = if endlen > IMPORT_FIELDS_MAX {
                ("field count", IMPORT_FIELDS_MAX, "IMPORT_FIELDS_MAX")
            } else {
                (
                    "record length",
                    IMPORT_RECORD_BYTES_MAX,
                    "IMPORT_RECORD_BYTES_MAX",
                )
            };
            return Err(ImportError::TooBig {
                line,
                what,
                max,
                limit,
            });
        }
        let mut fields = Vec::with_capacity(endlen);
        let mut start = 0;
        for &end in &self.ends[..endlen] {
            let text =
                std::str::from_utf8(&self.out[start..end]).map_err(|e| ImportError::Csv {
                    line,
                    message: format!("field {} is not UTF-8: {e}", fields.len() + 1),
                })?;
            fields.push(text.trim().to_owned());
            start = end;
        }
        Ok(Some((line, fields)))
    }
}

/// Parses CSV with a header row whose columns are the kind's payload fields (plus an
/// optional `scope`). Empty cells are omitted; list fields (`tags`, `to`) split on `;`;
/// integer fields are parsed. For contacts without `contact_id`, the lowercased email is used.
pub fn parse_csv(input: impl Read, ctx: &ImportContext) -> Result<Parsed, ImportError> {
    let mut records = CsvRecords::new(input);
    let header = records.next_record()?.map(|(_, h)| h).unwrap_or_default();
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
    let mut rows: Vec<(u64, Scope, Map<String, Value>)> = Vec::new();
    while let Some((line, rec)) = records.next_record()? {
        if rec.len() != header.len() {
            return Err(ImportError::Csv {
                line,
                message: format!(
                    "found record with {} fields, but the header has {} fields",
                    rec.len(),
                    header.len()
                ),
            });
        }
        if rows.len() == IMPORT_ROWS_MAX {
            return Err(too_many_rows(line));
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
        rows.push((line, scope, payload));
    }
    let file_hash = records.input.get_ref().finish()?;
    let prov = provenance(ctx, &file_hash);
    let mut events = Vec::with_capacity(rows.len());
    for (line, scope, payload) in rows {
        events.push(
            NewEvent::new(
                ctx.csv_kind,
                ctx.actor.clone(),
                scope,
                Value::Object(payload),
                prov.clone(),
                Some(key(&file_hash, line)),
            )
            .map_err(|source| ImportError::Invalid { line, source })?,
        );
    }
    Ok(Parsed { events, file_hash })
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
