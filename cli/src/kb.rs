//! `rlp kb ...`: the POG's command-line surface. Parses arguments, calls `runloop_pog`, and
//! renders typed results for humans or as JSON (`--json`). No SQL here: only `pog` speaks it.
//!
//! Exit codes: 0 ok; 1 store or I/O failure; 2 invalid input (bad arguments, validation,
//! refused query); 3 `verify` found tampering.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use runloop_kernel::config::{LoadOptions, Mode};
use runloop_pog::import::{ImportContext, ImportFormat, Parsed, parse_csv, parse_ndjson};
use runloop_pog::{
    ActorName, BackupReport, EntityRef, EventKind, IdempotencyKey, NewEvent, PogConfig, Provenance,
    QueryLimits, QueryResult, RestoreReport, Scope, SearchHit, SearchQuery, Store, SystemClock,
    TraceId, VerifyReport, WhyReport, Written, parse_trace_id,
};
use serde_json::{Value, json};

mod render;

/// Events written per transaction during import.
const IMPORT_BATCH_EVENTS: usize = 1_000;
/// Events read per page during export.
const EXPORT_PAGE_EVENTS: usize = 1_000;
/// Largest vector file read by `search --vector-file`.
const VECTOR_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Largest payload read from stdin.
const STDIN_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// Arguments of `rlp kb`.
#[derive(Debug, Args)]
pub struct KbArgs {
    /// POG directory (default: `kb.root_dir` of config v1, as `runloopd` reads it: file,
    /// then $RUNLOOP__KB__ROOT_DIR; else ~/.runloop/pog).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// System mode (/etc/runloop/config.yaml, /var/lib/runloop/pog).
    #[arg(long, global = true)]
    pub system: bool,
    /// Read this config file instead of the mode's default.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: KbCommand,
}

/// The `rlp kb` subcommands.
#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Create the store or upgrade both files to the current schema.
    Migrate,
    /// Run one read-only SQL statement (views are attached as `views`).
    Query {
        /// The SQL statement.
        sql: String,
        /// Positional parameter ?1, ?2, ... (JSON literal, or plain text).
        #[arg(long = "param", value_name = "VALUE")]
        params: Vec<String>,
        /// Time budget in milliseconds (at most the host call's 5000).
        #[arg(long, value_name = "MS", default_value_t = runloop_pog::read::QUERY_TIME_MS_MAX)]
        time_limit_ms: u64,
    },
    /// Hybrid full-text + vector search.
    Search {
        /// Search text.
        text: String,
        /// Query embedding as a JSON array of numbers.
        #[arg(long, value_name = "JSON", conflicts_with = "vector_file")]
        vector: Option<String>,
        /// File holding the query embedding as a JSON array.
        #[arg(long, value_name = "PATH")]
        vector_file: Option<PathBuf>,
        /// Only hits in this scope.
        #[arg(long)]
        scope: Option<String>,
        /// Hits to return.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// The events and provenance that produced an entity (`contact:ada`, `run:<trace>`, ...).
    Why {
        /// Entity reference `<type>:<id>`.
        entity: String,
    },
    /// Append one event.
    Write(WriteArgs),
    /// Check the hash chain and the views' watermark; names the first bad seq.
    Verify,
    /// Online backup into a new or empty directory.
    Backup {
        /// Destination directory.
        dir: PathBuf,
    },
    /// Restore a backup directory (stop the daemon first).
    Restore {
        /// Backup directory.
        dir: PathBuf,
        /// Overwrite a store that already holds events.
        #[arg(long)]
        force: bool,
    },
    /// Import events from CSV (one row per event, contacts by default) or NDJSON.
    Import {
        /// Input file.
        file: PathBuf,
        /// Format (default: from the extension: .csv, .ndjson/.jsonl).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Kind each CSV row becomes.
        #[arg(long, default_value = "contact.upserted")]
        kind: String,
        /// Scope for rows that name none.
        #[arg(long, default_value = "default")]
        scope: String,
    },
    /// Export events as NDJSON.
    Export {
        /// Output file (default: stdout).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// First seq to export.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Regenerate the view file from the event log.
    Rebuild,
}

/// Arguments of `rlp kb write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Event kind (e.g. note.added).
    #[arg(long)]
    pub kind: String,
    /// Payload JSON object (`-` reads it from stdin).
    #[arg(long, value_name = "JSON")]
    pub payload: String,
    /// Scope.
    #[arg(long, default_value = "default")]
    pub scope: String,
    /// Writer name.
    #[arg(long, default_value = "user")]
    pub actor: String,
    /// Idempotency key: repeating the write returns the original event.
    #[arg(long = "idempotency-key", value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Full provenance JSON (overrides the --trace-id/--opening-id/--agent/--rationale/--evidence flags).
    #[arg(long, value_name = "JSON")]
    pub provenance: Option<String>,
    /// Trace id, 32 lowercase hex (default: a new one).
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Opening id for provenance.
    #[arg(long, default_value = "cli.write")]
    pub opening_id: String,
    /// Agent for provenance.
    #[arg(long, default_value = "rlp")]
    pub agent: String,
    /// Why this event is written.
    #[arg(long)]
    pub rationale: Option<String>,
    /// Seq of an earlier event this one is based on (repeatable).
    #[arg(long = "evidence", value_name = "SEQ")]
    pub evidence: Vec<u64>,
}

/// Import formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Comma-separated values with a header row.
    Csv,
    /// Newline-delimited JSON.
    Ndjson,
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct KbError {
    /// Exit code (1 store/io, 2 invalid input, 3 tampering).
    pub code: u8,
    /// Short machine-readable class.
    pub kind: &'static str,
    /// Human message.
    pub message: String,
}

fn invalid(message: impl std::fmt::Display) -> KbError {
    KbError {
        code: 2,
        kind: "InvalidInput",
        message: message.to_string(),
    }
}
fn failed(message: impl std::fmt::Display) -> KbError {
    KbError {
        code: 1,
        kind: "StoreError",
        message: message.to_string(),
    }
}

/// Typed result of each command.
#[derive(Debug)]
pub enum KbReport {
    /// `migrate`.
    Migrated {
        events_from: u32,
        views_from: u32,
        events_to: u32,
        views_to: u32,
        head_seq: u64,
    },
    /// `query`.
    Query(QueryResult),
    /// `search`.
    Search(Vec<SearchHit>),
    /// `why`.
    Why(WhyReport),
    /// `write`.
    Written(Written),
    /// `verify`.
    Verified(VerifyReport),
    /// `backup`.
    BackedUp(BackupReport),
    /// `restore`.
    Restored(RestoreReport),
    /// `import`.
    Imported {
        rows: usize,
        appended: usize,
        duplicates: usize,
        head_seq: u64,
    },
    /// `export` (the events went to the output).
    Exported { events: u64, out: Option<PathBuf> },
    /// `rebuild`.
    Rebuilt { events: u64 },
}

/// Runs one `rlp kb` command, prints its result, and returns the exit code.
pub fn main(args: KbArgs) -> u8 {
    let json = args.json;
    match run(args) {
        Ok(report) => {
            let code = match &report {
                KbReport::Verified(v) if !v.ok() => 3,
                _ => 0,
            };
            if let KbReport::Exported { out: None, events } = &report {
                // stdout carries the NDJSON stream itself: the summary goes to stderr.
                eprintln!("exported {events} events");
            } else if json {
                println!("{}", report.to_json());
            } else {
                let text = report.human();
                if !text.is_empty() {
                    println!("{text}");
                }
            }
            code
        }
        Err(e) => {
            if json {
                println!("{}", json!({"error": e.kind, "detail": e.message}));
            } else {
                eprintln!("rlp: {}: {}", e.kind, e.message);
            }
            e.code
        }
    }
}

/// The store `runloopd` would open: config v1's `kb` section (file, then
/// `RUNLOOP__KB__*`), resolved by the daemon's own code; `--root` replaces the directory.
/// With `--root` and no `HOME`, the config file is not needed.
fn config(args: &KbArgs) -> Result<PogConfig, KbError> {
    let config_error = |e: runloop_kernel::config::ConfigError| KbError {
        code: 2,
        kind: "Config",
        message: e.to_string(),
    };
    let mode = if args.system {
        Mode::System
    } else {
        match Mode::user_from_env() {
            Ok(mode) => mode,
            Err(_) if args.root.is_some() && args.config.is_none() => {
                return Ok(PogConfig::in_dir(args.root.clone().expect("checked")));
            }
            Err(e) => return Err(config_error(e)),
        }
    };
    let loaded = runloop_kernel::config::load(&LoadOptions {
        mode,
        file: args.config.clone(),
        env: std::env::vars().collect(),
        flags: Vec::new(),
    })
    .map_err(config_error)?;
    let mut cfg = runloop_kernel::services::pog_service(&loaded).config;
    if let Some(root) = &args.root {
        cfg.root_dir = root.clone();
    }
    Ok(cfg)
}

fn open(cfg: &PogConfig) -> Result<Store, KbError> {
    Store::open(cfg, Arc::new(SystemClock)).map_err(failed)
}

/// Runs one command.
pub fn run(args: KbArgs) -> Result<KbReport, KbError> {
    let cfg = config(&args)?;
    match args.command {
        KbCommand::Migrate => {
            let (events_from, views_from) = Store::migrate(&cfg).map_err(failed)?;
            let head_seq = open(&cfg)?.head().seq;
            let (events_to, views_to) = (
                runloop_pog::migrate::EVENTS_VERSION,
                runloop_pog::migrate::VIEWS_VERSION,
            );
            Ok(KbReport::Migrated {
                events_from,
                views_from,
                events_to,
                views_to,
                head_seq,
            })
        }
        KbCommand::Query {
            sql,
            params,
            time_limit_ms,
        } => {
            let limits = QueryLimits::with_time_ms(time_limit_ms).ok_or_else(|| {
                invalid(format!(
                    "--time-limit-ms must be 1..={}",
                    runloop_pog::read::QUERY_TIME_MS_MAX
                ))
            })?;
            let params: Vec<Value> = params
                .iter()
                .map(|p| serde_json::from_str(p).unwrap_or_else(|_| json!(p)))
                .collect();
            let reads = open(&cfg)?.reads();
            reads
                .query_within(&sql, &params, limits)
                .map(KbReport::Query)
                .map_err(query_error)
        }
        KbCommand::Search {
            text,
            vector,
            vector_file,
            scope,
            limit,
        } => {
            let vector = read_vector(vector, vector_file)?;
            let scope = scope
                .map(|s| Scope::new(&s))
                .transpose()
                .map_err(|e| invalid(format!("--scope: {e}")))?;
            let reads = open(&cfg)?.reads();
            reads
                .search(&SearchQuery {
                    text,
                    vector,
                    scope,
                    limit,
                })
                .map(KbReport::Search)
                .map_err(|e| match e {
                    runloop_pog::SearchError::Empty
                    | runloop_pog::SearchError::VectorDim { .. } => invalid(e),
                    _ => failed(e),
                })
        }
        KbCommand::Why { entity } => {
            let entity = EntityRef::parse(&entity).map_err(invalid)?;
            let reads = open(&cfg)?.reads();
            reads.why(&entity).map(KbReport::Why).map_err(|e| match e {
                runloop_pog::WhyError::Unknown(_) => invalid(e),
                _ => failed(e),
            })
        }
        KbCommand::Write(w) => write(&cfg, w),
        KbCommand::Verify => runloop_pog::verify(&cfg)
            .map(KbReport::Verified)
            .map_err(failed),
        KbCommand::Backup { dir } => {
            open(&cfg)?;
            runloop_pog::backup(&cfg, &dir)
                .map(KbReport::BackedUp)
                .map_err(|e| match e {
                    runloop_pog::BackupError::DestinationNotEmpty(_) => invalid(e),
                    _ => failed(e),
                })
        }
        KbCommand::Restore { dir, force } => {
            let r = runloop_pog::restore(&dir, &cfg, force).map_err(|e| match e {
                runloop_pog::RestoreError::Missing(_)
                | runloop_pog::RestoreError::TargetNotEmpty { .. } => invalid(e),
                runloop_pog::RestoreError::Corrupt { .. } => KbError {
                    code: 3,
                    kind: "Tampered",
                    message: e.to_string(),
                },
                _ => failed(e),
            })?;
            open(&cfg)?; // brings the restored views up to the restored log
            Ok(KbReport::Restored(r))
        }
        KbCommand::Import {
            file,
            format,
            kind,
            scope,
        } => import(&cfg, &file, format, &kind, &scope),
        KbCommand::Export { out, from } => export(&cfg, out, from),
        KbCommand::Rebuild => Store::rebuild(&cfg)
            .map(|events| KbReport::Rebuilt { events })
            .map_err(failed),
    }
}

fn write(cfg: &PogConfig, w: WriteArgs) -> Result<KbReport, KbError> {
    let WriteArgs {
        kind,
        payload,
        scope,
        actor,
        idempotency_key,
        provenance,
        trace_id,
        opening_id,
        agent,
        rationale,
        evidence,
    } = w;
    let payload = if payload == "-" {
        read_stdin()?
    } else {
        payload
    };
    let payload: Value = serde_json::from_str(&payload)
        .map_err(|e| invalid(format!("--payload is not JSON: {e}")))?;
    let prov = match provenance {
        Some(p) => Provenance::from_json(
            &serde_json::from_str(&p)
                .map_err(|e| invalid(format!("--provenance is not JSON: {e}")))?,
        ),
        None => cli_provenance(
            trace_id.as_deref(),
            &opening_id,
            &agent,
            rationale,
            evidence,
            &payload,
        ),
    }
    .map_err(invalid)?;
    let event = NewEvent::new(
        EventKind::parse(&kind).map_err(invalid)?,
        ActorName::new(&actor).map_err(|e| invalid(format!("--actor: {e}")))?,
        Scope::new(&scope).map_err(|e| invalid(format!("--scope: {e}")))?,
        payload,
        prov,
        idempotency_key
            .map(|k| IdempotencyKey::new(&k))
            .transpose()
            .map_err(|e| invalid(format!("--idempotency-key: {e}")))?,
    )
    .map_err(invalid)?;
    open(cfg)?
        .write(event)
        .map(KbReport::Written)
        .map_err(write_error)
}

fn read_stdin() -> Result<String, KbError> {
    let mut text = String::new();
    std::io::stdin()
        .take(STDIN_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| invalid(format!("read --payload from stdin: {e}")))?;
    if text.len() as u64 > STDIN_BYTES_MAX {
        return Err(invalid(format!(
            "--payload on stdin is over {STDIN_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

fn query_error(e: runloop_pog::QueryError) -> KbError {
    use runloop_pog::QueryError as Q;
    match e {
        Q::TimeLimit { .. } | Q::ValueTooLarge | Q::ResultTooLarge => KbError {
            code: 2,
            kind: "QueryLimit",
            message: e.to_string(),
        },
        Q::Run(_) | Q::PoolTimeout | Q::ScopedSetup(_) => failed(e),
        Q::SqlSize { .. } | Q::Refused { .. } | Q::Prepare(_) => invalid(e),
    }
}

fn write_error(e: runloop_pog::WriteError) -> KbError {
    use runloop_pog::WriteError as W;
    match e {
        W::MissingEvidence { .. } | W::IdempotencyConflict { .. } | W::BatchSize { .. } => {
            invalid(e)
        }
        W::Sql { .. } | W::ViewsLag { .. } => failed(e),
    }
}

/// A new trace id from the clock, pid and a hash (the CLI is the edge: no injected RNG).
fn new_trace_id() -> TraceId {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = blake3::Hasher::new();
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    TraceId(u128::from_le_bytes(b))
}

fn cli_provenance(
    trace: Option<&str>,
    opening: &str,
    agent: &str,
    rationale: Option<String>,
    evidence: Vec<u64>,
    inputs: &Value,
) -> Result<Provenance, runloop_pog::ValidationError> {
    let trace_id = match trace {
        Some(t) => parse_trace_id(t)
            .map_err(|e| runloop_pog::ValidationError::new("--trace-id", e.to_string()))?,
        None => new_trace_id(),
    };
    let inputs_hash = blake3::hash(
        runloop_pog::canon::jcs(inputs)
            .unwrap_or_default()
            .as_bytes(),
    )
    .to_hex()
    .to_string();
    let mut p = json!({"trace_id": trace_id.to_string(), "opening_id": opening, "agent": agent, "inputs_hash": inputs_hash, "evidence": evidence});
    if let Some(r) = rationale {
        p["rationale"] = json!(r);
    }
    Provenance::from_json(&p)
}

fn read_vector(vector: Option<String>, file: Option<PathBuf>) -> Result<Option<Vec<f32>>, KbError> {
    let text = match (vector, file) {
        (Some(v), _) => v,
        (None, Some(f)) => {
            // The read itself is cut: a file's reported size says nothing for /dev/zero.
            let mut text = String::new();
            std::fs::File::open(&f)
                .and_then(|file| {
                    file.take(VECTOR_FILE_BYTES_MAX + 1)
                        .read_to_string(&mut text)
                })
                .map_err(|e| invalid(format!("--vector-file {}: {e}", f.display())))?;
            if text.len() as u64 > VECTOR_FILE_BYTES_MAX {
                return Err(invalid(format!(
                    "--vector-file {} is over VECTOR_FILE_BYTES_MAX ({VECTOR_FILE_BYTES_MAX} bytes)",
                    f.display()
                )));
            }
            text
        }
        (None, None) => return Ok(None),
    };
    let v: Vec<f32> = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("vector is not a JSON array of numbers: {e}")))?;
    Ok(Some(v))
}

fn import(
    cfg: &PogConfig,
    file: &Path,
    format: Option<FormatArg>,
    kind: &str,
    scope: &str,
) -> Result<KbReport, KbError> {
    let format = match format {
        Some(FormatArg::Csv) => ImportFormat::Csv,
        Some(FormatArg::Ndjson) => ImportFormat::Ndjson,
        None => match file.extension().and_then(|e| e.to_str()) {
            Some("csv") => ImportFormat::Csv,
            Some("ndjson" | "jsonl") => ImportFormat::Ndjson,
            _ => {
                return Err(invalid(format!(
                    "cannot tell the format of {}: pass --format csv|ndjson",
                    file.display()
                )));
            }
        },
    };
    let input =
        std::fs::File::open(file).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    import_from(cfg, input, file, format, kind, scope)
}

/// [`import`] of an already opened input (`file` names it in messages).
fn import_from(
    cfg: &PogConfig,
    input: impl std::io::Read,
    file: &Path,
    format: ImportFormat,
    kind: &str,
    scope: &str,
) -> Result<KbReport, KbError> {
    // The parser streams the file, bounded as it reads; `inputs_hash` becomes the file's hash.
    let provenance = Provenance::from_json(&json!({
        "trace_id": new_trace_id().to_string(), "opening_id": "cli.import", "agent": "rlp",
        "inputs_hash": "0".repeat(64), "rationale": format!("import {}", file.display()),
    }))
    .map_err(failed)?;
    let ctx = ImportContext {
        provenance,
        actor: ActorName::new("user").expect("valid"),
        scope: Scope::new(scope).map_err(|e| invalid(format!("--scope: {e}")))?,
        csv_kind: EventKind::parse(kind).map_err(invalid)?,
    };
    let Parsed { events, .. } = match format {
        ImportFormat::Csv => parse_csv(input, &ctx),
        ImportFormat::Ndjson => parse_ndjson(input, &ctx),
    }
    .map_err(|e| match e {
        runloop_pog::import::ImportError::Io(_) => failed(format!("read {}: {e}", file.display())),
        _ => invalid(format!("{}: {e}", file.display())),
    })?;
    let rows = events.len();
    let mut store = open(cfg)?;
    let (mut appended, mut duplicates) = (0, 0);
    let mut it = events.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<NewEvent> = it.by_ref().take(IMPORT_BATCH_EVENTS).collect();
        for w in store.write_batch(chunk).map_err(write_error)? {
            if w.duplicate {
                duplicates += 1
            } else {
                appended += 1
            }
        }
    }
    Ok(KbReport::Imported {
        rows,
        appended,
        duplicates,
        head_seq: store.head().seq,
    })
}

/// Imports NDJSON events (an export, already read from `file`) into the POG at `cfg`:
/// `(rows, appended, duplicates)`.
pub(crate) fn import_ndjson(
    cfg: &PogConfig,
    text: &str,
    file: &Path,
) -> Result<(usize, usize, usize), KbError> {
    let report = import_from(
        cfg,
        text.as_bytes(),
        file,
        ImportFormat::Ndjson,
        "note.added",
        "default",
    )?;
    match report {
        KbReport::Imported {
            rows,
            appended,
            duplicates,
            ..
        } => Ok((rows, appended, duplicates)),
        _ => Err(failed("import answered something else".to_owned())),
    }
}

fn export(cfg: &PogConfig, out: Option<PathBuf>, from: u64) -> Result<KbReport, KbError> {
    let reads = open(cfg)?.reads();
    let mut sink: Box<dyn Write> = match &out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| invalid(format!("--out {}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (mut next, mut total) = (from.max(1), 0u64);
    loop {
        let page = reads.events(next, EXPORT_PAGE_EVENTS).map_err(failed)?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for e in &page {
            writeln!(sink, "{}", e.to_json()).map_err(|e| failed(format!("write export: {e}")))?;
        }
        total += page.len() as u64;
    }
    sink.flush()
        .map_err(|e| failed(format!("write export: {e}")))?;
    Ok(KbReport::Exported { events: total, out })
}
