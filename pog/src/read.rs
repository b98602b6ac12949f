//! The read side: a bounded pool of read-only connections (event log with the view file
//! attached as `views`), the read-only SQL gate behind `kb.query`, `why`, and log scans.
//!
//! `kb.query` is made read-only by SQLite itself, three times over: connections are opened
//! `SQLITE_OPEN_READ_ONLY` with `query_only`, an authorizer refuses every action but reads,
//! and a prepared statement must report `sqlite3_stmt_readonly`. No string matching.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};

use crate::config::PogConfig;
use crate::event::Event;
use crate::ids::EntityRef;
use crate::store::{
    BUSY_TIMEOUT_MS, EVENT_COLUMNS, OpenError, event_from_row, register_vec_extension,
};

/// How long a reader waits for a free pooled connection.
pub const READ_CONN_WAIT_MS: u64 = 5_000;
/// Most rows `kb.query` returns; more are cut and the result says so.
pub const QUERY_ROWS_MAX: usize = 10_000;
/// Longest SQL text accepted by `kb.query`.
pub const QUERY_SQL_BYTES_MAX: usize = 64 * 1024;
/// Wall-clock budget of one `kb.query`; SQLite interrupts it after this.
pub const QUERY_TIME_MS_MAX: u64 = 5_000;
/// Largest string or blob any statement on a read connection may make or read
/// (`SQLITE_LIMIT_LENGTH`): well above the largest stored event (its payload is at most
/// `PAYLOAD_BYTES_MAX`, 1 MiB), far below what hurts. SQLite refuses a bigger value
/// (`randomblob(1e9)`) before it allocates it.
pub const QUERY_VALUE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most bytes of values one `kb.query` result may hold (text as is, blobs as hex).
pub const QUERY_RESULT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// SQLite VM steps between checks of the time budget.
const PROGRESS_STEPS: i32 = 1_000;
const _: () = assert!(QUERY_VALUE_BYTES_MAX >= 2 * crate::event::PAYLOAD_BYTES_MAX);
/// Most events `why` returns (direct plus evidence).
pub const WHY_EVENTS_MAX: usize = 1_000;

/// PRAGMAs a query may run with no argument: reads of a value (a value would set it).
/// `data_version` is read by FTS5 internally to notice changes.
const PRAGMAS_READ_NO_ARG: &[&str] = &["data_version", "user_version", "table_list"];
/// Introspection PRAGMAs whose argument is a table or index name, never a setting.
const PRAGMAS_INTROSPECT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// A failed `kb.query`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No pooled connection became free in time.
    #[error("no read connection free within {READ_CONN_WAIT_MS} ms")]
    PoolTimeout,
    /// SQL too long or empty.
    #[error("sql must be 1..={QUERY_SQL_BYTES_MAX} bytes, got {len}")]
    SqlSize { len: usize },
    /// The statement would write, attach, or change settings; refused before it ran.
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// SQLite could not prepare the statement (syntax, unknown table, ...).
    #[error("prepare: {0}")]
    Prepare(rusqlite::Error),
    /// The statement ran past its time budget and SQLite interrupted it.
    #[error("exceeded the {} query limit", Millis(*limit_ms))]
    TimeLimit { limit_ms: u64 },
    /// The statement made or read a string or blob longer than [`QUERY_VALUE_BYTES_MAX`].
    #[error("value exceeds SQLITE_LIMIT_LENGTH {QUERY_VALUE_BYTES_MAX} bytes")]
    ValueTooLarge,
    /// The rows so far hold more than [`QUERY_RESULT_BYTES_MAX`] bytes of values.
    #[error("result exceeds {QUERY_RESULT_BYTES_MAX} bytes")]
    ResultTooLarge,
    /// Running the statement failed.
    #[error("run: {0}")]
    Run(rusqlite::Error),
    /// A scoped query's reader could not be set up (see [`crate::scoped`]).
    #[error(transparent)]
    ScopedSetup(#[from] crate::scoped::SetupError),
}

/// A duration for messages: whole seconds as `5 s`, else `250 ms`.
struct Millis(u64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 1_000 && self.0.is_multiple_of(1_000) {
            write!(f, "{} s", self.0 / 1_000)
        } else {
            write!(f, "{} ms", self.0)
        }
    }
}

/// Limits of one `kb.query`; [`QueryLimits::default`] is the host call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    time_ms: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            time_ms: QUERY_TIME_MS_MAX,
        }
    }
}

impl QueryLimits {
    /// A time budget of `time_ms` (1..=[`QUERY_TIME_MS_MAX`]); `None` outside that range.
    pub fn with_time_ms(time_ms: u64) -> Option<Self> {
        (1..=QUERY_TIME_MS_MAX)
            .contains(&time_ms)
            .then_some(QueryLimits { time_ms })
    }

    /// The time budget in milliseconds.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }
}

/// Rows of a `kb.query`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows as JSON values (blobs as hex strings).
    pub rows: Vec<Vec<Value>>,
    /// True when rows beyond `QUERY_ROWS_MAX` were cut.
    pub truncated: bool,
}

/// A failed `kb.why`.
#[derive(Debug, thiserror::Error)]
pub enum WhyError {
    /// No pooled connection became free in time.
    #[error("no read connection free within {READ_CONN_WAIT_MS} ms")]
    PoolTimeout,
    /// No event ever touched the entity.
    #[error("no events for {0}")]
    Unknown(String),
    /// SQLite failed.
    #[error("read: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The chain of events behind an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct WhyReport {
    /// The entity asked about.
    pub entity: String,
    /// Events that touched the entity, oldest first.
    pub direct: Vec<Event>,
    /// Events cited as evidence (transitively), oldest first.
    pub evidence: Vec<Event>,
    /// True when `WHY_EVENTS_MAX` cut the chain.
    pub truncated: bool,
}

/// One recorded host-call result (for deterministic replay).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// Node of the run that made the call.
    pub node_id: String,
    /// Position of the call within the node.
    pub call_seq: u64,
    /// Host call name (`model`, `time`, ...).
    pub call: String,
    /// The recorded result.
    pub result: Value,
}

#[derive(Debug)]
struct Pool {
    conns: Mutex<Vec<Connection>>,
    free: Condvar,
    /// Where the files are, for the dedicated reader of a scoped query.
    cfg: PogConfig,
}

/// Cloneable handle to the read pool; every method borrows one connection for its duration.
#[derive(Debug, Clone)]
pub struct Reads {
    pool: Arc<Pool>,
}

/// A connection borrowed from the pool, returned on drop.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("lease holds a connection until drop")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("lease holds a connection until drop")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
            self.pool.free.notify_one();
        }
    }
}

/// `file:` URI for a path, escaping what URIs treat specially.
fn uri(path: &Path, mode: &str) -> String {
    let mut s = String::from("file:");
    for ch in path.display().to_string().chars() {
        match ch {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3f"),
            '#' => s.push_str("%23"),
            c => s.push(c),
        }
    }
    format!("{s}?mode={mode}")
}

/// Opens the log read-only with the views attached as `views`, then locks it down.
pub(crate) fn open_reader(cfg: &PogConfig) -> Result<Connection, OpenError> {
    register_vec_extension();
    let path = cfg.events_path();
    let err = |source| OpenError::Open {
        path: path.display().to_string(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(uri(&path, "ro"), flags).map_err(err)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(err)?;
    conn.execute("ATTACH DATABASE ?1 AS views", [uri(&cfg.view_path(), "ro")])
        .map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    let asked = i32::try_from(QUERY_VALUE_BYTES_MAX).expect("limit fits in an int");
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, asked)
        .map_err(err)?;
    assert_eq!(
        conn.limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH)
            .map_err(err)?,
        asked,
        "SQLite took the length limit"
    );
    conn.authorizer(Some(authorize)).map_err(err)?;
    Ok(conn)
}

thread_local! {
    /// The first action the authorizer denied on this thread, for a specific error message.
    /// The authorizer runs synchronously inside `prepare` on the caller's thread.
    static DENIED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Allows reading and nothing else. Runs at prepare time for every statement on a reader.
pub(crate) fn authorize(ctx: AuthContext<'_>) -> Authorization {
    let verdict = decide(&ctx.action);
    if verdict == Authorization::Deny {
        DENIED.with(|d| {
            d.borrow_mut().get_or_insert_with(|| describe(&ctx.action));
        });
    }
    verdict
}

/// A short description of a denied action for the error message.
fn describe(action: &AuthAction<'_>) -> String {
    match action {
        AuthAction::Insert { table_name } => format!("INSERT into {table_name}"),
        AuthAction::Update { table_name, .. } => format!("UPDATE of {table_name}"),
        AuthAction::Delete { table_name } => format!("DELETE from {table_name}"),
        AuthAction::DropTable { table_name } => format!("DROP TABLE {table_name}"),
        AuthAction::Attach { filename } => format!("ATTACH {filename:?}"),
        AuthAction::Detach { database_name } => format!("DETACH {database_name}"),
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(v),
        } => format!("PRAGMA {pragma_name} = {v}"),
        AuthAction::Pragma {
            pragma_name,
            pragma_value: None,
        } => format!("PRAGMA {pragma_name}"),
        AuthAction::Function { function_name } => format!("function {function_name}()"),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            "transaction control".into()
        }
        other => format!("{other:?}"),
    }
}

fn decide(action: &AuthAction<'_>) -> Authorization {
    match *action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name }
            if !function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Allow
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let named = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            let ok = match pragma_value {
                None => named(PRAGMAS_READ_NO_ARG),
                Some(_) => named(PRAGMAS_INTROSPECT),
            };
            if ok {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        _ => Authorization::Deny,
    }
}

fn value_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => json!(hex::encode(b)),
    }
}

impl Reads {
    /// Opens `n` read connections.
    pub(crate) fn open(cfg: &PogConfig, n: usize) -> Result<Reads, OpenError> {
        let conns = (0..n)
            .map(|_| open_reader(cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reads {
            pool: Arc::new(Pool {
                conns: Mutex::new(conns),
                free: Condvar::new(),
                cfg: cfg.clone(),
            }),
        })
    }

    /// Opens a standalone pool (for processes that only read, like `rlp kb query`).
    pub fn open_read_only(cfg: &PogConfig, n: usize) -> Result<Reads, OpenError> {
        Reads::open(cfg, n.max(1))
    }

    /// Borrows a connection, waiting up to `READ_CONN_WAIT_MS`.
    pub(crate) fn lease(&self) -> Option<Lease<'_>> {
        let deadline = Instant::now() + Duration::from_millis(READ_CONN_WAIT_MS);
        let mut conns = self.pool.conns.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = conns.pop() {
                return Some(Lease {
                    pool: &self.pool,
                    conn: Some(c),
                });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            conns = self
                .pool
                .free
                .wait_timeout(conns, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// `kb.query`: runs one read-only SQL statement with positional parameters, within
    /// the default [`QueryLimits`].
    pub fn query(&self, sql_text: &str, params: &[Value]) -> Result<QueryResult, QueryError> {
        self.query_within(sql_text, params, QueryLimits::default())
    }

    /// `kb.query` within `limits`. The time budget is checked every few SQLite VM steps and
    /// interrupts the statement itself; no step runs long, because no value may grow past
    /// [`QUERY_VALUE_BYTES_MAX`].
    pub fn query_within(
        &self,
        sql_text: &str,
        params: &[Value],
        limits: QueryLimits,
    ) -> Result<QueryResult, QueryError> {
        if sql_text.trim().is_empty() || sql_text.len() > QUERY_SQL_BYTES_MAX {
            return Err(QueryError::SqlSize {
                len: sql_text.len(),
            });
        }
        let mut conn = self.lease().ok_or(QueryError::PoolTimeout)?;
        let deadline = Instant::now() + Duration::from_millis(limits.time_ms);
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() > deadline))
            .map_err(QueryError::Run)?;
        let result = run_query(&conn, sql_text, params).map_err(|e| match e {
            QueryError::Run(e) => classify(e, limits).unwrap_or_else(QueryError::Run),
            QueryError::Prepare(e) => classify(e, limits).unwrap_or_else(QueryError::Prepare),
            other => other,
        });
        conn.progress_handler(0, None::<fn() -> bool>)
            .map_err(QueryError::Run)?;
        result
    }

    /// `kb.query` for a scope-limited reader (`allow kb.query scopes=…`): the same rules
    /// and limits as [`Reads::query`], but only rows of `scopes` are visible and tables
    /// that cannot be filtered are refused. Runs on a reader of its own, set up by
    /// [`crate::scoped`] and closed after the query.
    pub fn query_scoped(
        &self,
        sql_text: &str,
        params: &[Value],
        scopes: &[crate::ids::Scope],
    ) -> Result<QueryResult, QueryError> {
        if sql_text.trim().is_empty() || sql_text.len() > QUERY_SQL_BYTES_MAX {
            return Err(QueryError::SqlSize {
                len: sql_text.len(),
            });
        }
        let limits = QueryLimits::default();
        let mut conn = crate::scoped::open(&self.pool.cfg, sql_text, scopes)?;
        let deadline = Instant::now() + Duration::from_millis(limits.time_ms);
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() > deadline))
            .map_err(QueryError::Run)?;
        // The same named limits as an unscoped query (the connection is dropped after).
        crate::scoped::run(&conn, sql_text, params).map_err(|e| match e {
            QueryError::Run(e) => classify(e, limits).unwrap_or_else(QueryError::Run),
            QueryError::Prepare(e) => classify(e, limits).unwrap_or_else(QueryError::Prepare),
            other => other,
        })
    }

    /// `kb.why`: the events that produced `entity`, and the evidence they cite, with provenance.
    pub fn why(&self, entity: &EntityRef) -> Result<WhyReport, WhyError> {
        self.why_in(entity, None)
    }

    /// `kb.why` for a scope-limited reader: events outside `scope` are left out of both the
    /// direct list and the evidence (the chain stops at them).
    pub fn why_in(
        &self,
        entity: &EntityRef,
        scope: Option<&crate::ids::Scope>,
    ) -> Result<WhyReport, WhyError> {
        let in_scope = |e: &Event| scope.is_none_or(|s| e.scope == s.as_str());
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        let name = entity.to_string();
        let mut seqs: Vec<i64> = conn
            .prepare_cached(
                "SELECT seq FROM views.entity_events WHERE entity = ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(rusqlite::params![name, (WHY_EVENTS_MAX + 1) as i64], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
        if seqs.is_empty() {
            return Err(WhyError::Unknown(name));
        }
        let mut truncated = seqs.len() > WHY_EVENTS_MAX;
        seqs.truncate(WHY_EVENTS_MAX);
        let direct: Vec<Event> = seqs
            .iter()
            .map(|s| get_event(&conn, *s as u64))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .filter(|e| in_scope(e))
            .collect();
        if direct.is_empty() {
            return Err(WhyError::Unknown(name));
        }
        let mut seen: BTreeSet<u64> = direct.iter().map(|e| e.seq).collect();
        let mut frontier: Vec<u64> = direct.iter().flat_map(evidence_of).collect();
        let mut evidence = Vec::new();
        // Bounded walk: each seq is visited once and the total is capped.
        while let Some(s) = frontier.pop() {
            if !seen.insert(s) {
                continue;
            }
            if seen.len() > WHY_EVENTS_MAX {
                truncated = true;
                break;
            }
            if let Some(e) = get_event(&conn, s)?.filter(|e| in_scope(e)) {
                frontier.extend(evidence_of(&e));
                evidence.push(e);
            }
        }
        evidence.sort_by_key(|e| e.seq);
        Ok(WhyReport {
            entity: name,
            direct,
            evidence,
            truncated,
        })
    }

    /// One event by seq.
    pub fn event(&self, seq: u64) -> Result<Option<Event>, WhyError> {
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        Ok(get_event(&conn, seq)?)
    }

    /// Up to `limit` events with seq >= `from`, oldest first (export, tailing).
    pub fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>, WhyError> {
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM main.events WHERE seq >= ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(rusqlite::params![from as i64, limit as i64], event_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Recorded host-call results of one run, in `(node_id, call_seq)` order, for replay.
    pub fn hostcalls(&self, trace_id: &crate::ids::TraceId) -> Result<Vec<RecordedCall>, WhyError> {
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        let mut stmt = conn.prepare_cached(
            "SELECT node_id, call_seq, call, result FROM views.hostcalls WHERE trace_id = ?1 ORDER BY node_id, call_seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![trace_id.to_string(), QUERY_ROWS_MAX as i64],
            |r| {
                let result: String = r.get(3)?;
                Ok(RecordedCall {
                    node_id: r.get(0)?,
                    call_seq: r.get::<_, i64>(1)? as u64,
                    call: r.get(2)?,
                    result: serde_json::from_str(&result).unwrap_or(Value::Null),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn evidence_of(e: &Event) -> Vec<u64> {
    e.provenance
        .get("evidence")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn get_event(conn: &Connection, seq: u64) -> rusqlite::Result<Option<Event>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM main.events WHERE seq = ?1"
    ))?
    .query_row([seq as i64], event_from_row)
    .optional()
}

fn json_param(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(V::Integer)
            .unwrap_or_else(|| V::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => V::Text(s.clone()),
        other => V::Text(other.to_string()),
    }
}

/// Names the limit a failed statement hit: the interrupt is the time budget, `TOOBIG` is
/// the length limit; any other error is given back as it was.
fn classify(e: rusqlite::Error, limits: QueryLimits) -> Result<QueryError, rusqlite::Error> {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => Ok(QueryError::TimeLimit {
            limit_ms: limits.time_ms,
        }),
        Some(rusqlite::ErrorCode::TooBig) => Ok(QueryError::ValueTooLarge),
        _ => Err(e),
    }
}

/// Bytes a value adds to a result: text as is, blobs as hex, numbers as 8.
fn value_bytes(v: ValueRef<'_>) -> usize {
    match v {
        ValueRef::Null => 0,
        ValueRef::Integer(_) | ValueRef::Real(_) => 8,
        ValueRef::Text(t) => t.len(),
        ValueRef::Blob(b) => 2 * b.len(),
    }
}

fn collect_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[rusqlite::types::Value],
    ncols: usize,
) -> Result<(Vec<Vec<Value>>, bool), QueryError> {
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(QueryError::Run)?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(QueryError::Run)? {
        if out.len() == QUERY_ROWS_MAX {
            return Ok((out, true));
        }
        let mut values = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let v = row.get_ref(i).map_err(QueryError::Run)?;
            // Counted before converting, so an oversized value is never copied.
            bytes += value_bytes(v);
            if bytes > QUERY_RESULT_BYTES_MAX {
                return Err(QueryError::ResultTooLarge);
            }
            values.push(value_json(v));
        }
        out.push(values);
    }
    Ok((out, false))
}

/// Prepares (the authorizer runs here), checks read-only, and collects rows.
fn denied_action() -> String {
    DENIED
        .with(|d| d.borrow_mut().take())
        .unwrap_or_else(|| "not authorized".into())
}

pub(crate) fn run_query(
    conn: &Connection,
    sql_text: &str,
    params: &[Value],
) -> Result<QueryResult, QueryError> {
    DENIED.with(|d| d.borrow_mut().take());
    let refused = || QueryError::Refused {
        reason: format!("only reads are allowed; denied: {}", denied_action()),
    };
    let mut stmt = conn.prepare(sql_text).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            refused()
        }
        rusqlite::Error::SqlInputError { error, msg, .. }
            if error.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
                || msg.starts_with("not authorized") =>
        {
            refused()
        }
        rusqlite::Error::MultipleStatement => QueryError::Refused {
            reason: "exactly one statement is allowed".into(),
        },
        e => QueryError::Prepare(e),
    })?;
    if !stmt.readonly() {
        return Err(QueryError::Refused {
            reason: "statement is not read-only".into(),
        });
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let bound: Vec<rusqlite::types::Value> = params.iter().map(json_param).collect();
    let (rows, truncated) = collect_rows(&mut stmt, &bound, columns.len())?;
    Ok(QueryResult {
        columns,
        rows,
        truncated,
    })
}
