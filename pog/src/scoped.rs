//! Scope-limited `kb.query`: an arbitrary read-only SQL text that sees only rows of the
//! scopes an agent's policy grants (`allow kb.query scopes=…`), enforced by SQLite's name
//! resolution and authorizer, never by reading the SQL.
//!
//! The hostile party is the SQL text. The query runs on a reader connection of its own
//! (opened and locked down like every reader, closed after the query), prepared in three
//! steps:
//!
//! 1. [`TABLES`] decides, for every table a reader can name, how a scoped reader may see
//!    it: filtered by a scope column, filtered by the scope of the events that wrote each
//!    row, refused outright (with the reason), or open (it holds no rows of any scope).
//!    A table not listed is refused: the list fails closed when a migration adds a table.
//! 2. For each filtered table, two TEMP views. The inner one, with a name derived from a
//!    BLAKE3 hash of the SQL text, selects the table's rows whose scope is granted; the
//!    outer one takes the table's own name and selects from the inner one. SQLite resolves
//!    an unqualified name in `temp` first, so `contacts` or `events` means the filtered
//!    view (<https://sqlite.org/lang_naming.html>).
//! 3. The authorizer: a read of a `main` or `views` table is allowed only when the
//!    inner-most view responsible for it (the authorizer's 4th argument,
//!    <https://sqlite.org/c3ref/set_authorizer.html>) is one of the inner views. So
//!    `views.contacts`, `main.events`, a subquery, a CTE or a join naming a base table
//!    directly, and `count(*)` of one (reported as a read of column `""`), are refused
//!    with the table's reason. Everything else goes through the ordinary reader's rules
//!    ([`crate::read`]: reads only).
//!
//! A read of column `""` (a FROM item none of whose columns is used) is reported after
//! SQLite has flattened views into the query, with no accessor, and with no database when
//! the name was written unqualified (a table, a view or a CTE). So every filter uses a
//! column of its table (an empty scope list is written `('')`, which no scope equals,
//! rather than `()`, which SQLite's parser folds to a constant), and an unqualified name
//! is resolved as SQLite does (temp, main, views) against the names read when the reader
//! was opened; a name that is none of them is a CTE's or a subquery's, whose own reads are
//! checked one by one.
//!
//! Why the hashed inner name: SQLite reports a CTE's name as the accessor just as it
//! reports a view's (`resolveSelectStep` sets the authorizer context to the FROM item's
//! name), so `WITH contacts AS (SELECT * FROM views.contacts) …` would pass a check on the
//! public name. A query cannot contain the hash of its own text (that would be a BLAKE3
//! fixed point); names are resolved when the statement is prepared, so reading the temp
//! schema while it runs teaches it nothing it can use.
//!
//! Differences a scoped reader sees: views have no `rowid` (use the key columns), FTS5
//! (`docs_fts`) is refused (its rows carry no scope and `MATCH` cannot run through a view),
//! and `traces` and `meta` are refused (they aggregate events of every scope).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use serde_json::Value;

use crate::config::PogConfig;
use crate::ids::Scope;
use crate::kind::EventKind;
use crate::read::{QueryError, QueryResult};
use crate::store::OpenError;

/// Hex characters of the hash in an inner view's name (128 bits).
const NAME_HASH_HEX_CHARS: usize = 32;
/// BLAKE3 context of the inner views' names.
const NAME_HASH_CONTEXT: &str = "runloop pog scoped-view names v1";

/// How a scope-limited reader may see one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Each row carries the scope of the event that wrote it in this column.
    ScopeColumn(&'static str),
    /// Each row is written whole by the events whose seqs are in these columns (NULL: not
    /// written yet); a row is visible when every one of them is in a granted scope.
    WriterEvents(&'static [&'static str]),
    /// Rows patched by several events (a removal keeps the last upsert's fields): a row is
    /// visible when every event of `kinds` that touched entity `prefix || key` (per
    /// `views.entity_events`) is in a granted scope.
    EntityEvents {
        prefix: &'static str,
        key: &'static str,
        kinds: &'static [EventKind],
    },
    /// Holds no rows of any scope: readable directly.
    Open,
    /// Cannot be filtered by scope: refused.
    Refused,
}

/// One table a reader can name, with what a scoped reader may do and why.
#[derive(Debug, Clone, Copy)]
struct TableRule {
    db: &'static str,
    table: &'static str,
    access: Access,
    reason: &'static str,
}

const fn rule(
    db: &'static str,
    table: &'static str,
    access: Access,
    reason: &'static str,
) -> TableRule {
    TableRule {
        db,
        table,
        access,
        reason,
    }
}

const SEQ: Access = Access::WriterEvents(&["seq"]);
const FTS_REFUSED: &str = "the full-text index's rows carry no scope (its content table \
                           holds note and contact text) and MATCH cannot run through a view";

/// Every table of the two files (and the schema tables), decided one by one.
const TABLES: &[TableRule] = &[
    rule(
        "main",
        "events",
        Access::ScopeColumn("scope"),
        "each event names its scope",
    ),
    rule(
        "main",
        "sqlite_master",
        Access::Open,
        "schema text, no rows",
    ),
    rule(
        "main",
        "sqlite_schema",
        Access::Open,
        "schema text, no rows",
    ),
    rule(
        "views",
        "sqlite_master",
        Access::Open,
        "schema text, no rows",
    ),
    rule(
        "views",
        "sqlite_schema",
        Access::Open,
        "schema text, no rows",
    ),
    rule(
        "views",
        "meta",
        Access::Refused,
        "holds the log head the views reflect (seq and hash of the last event, of any scope)",
    ),
    rule(
        "views",
        "contacts",
        Access::EntityEvents {
            prefix: "contact:",
            key: "contact_id",
            kinds: &[EventKind::ContactUpserted, EventKind::ContactRemoved],
        },
        "a removal keeps fields of an earlier upsert, so every contact event must be in scope",
    ),
    rule("views", "notes", SEQ, "each row is one note.added event"),
    rule(
        "views",
        "artifacts",
        SEQ,
        "each row is one artifact.created event",
    ),
    rule("views", "emails", SEQ, "each row is one email.sent event"),
    rule(
        "views",
        "runs",
        Access::WriterEvents(&["started_seq", "finished_seq"]),
        "each row is the last run.started and run.finished of its trace",
    ),
    rule("views", "nodes", SEQ, "each row is one node.finished event"),
    rule(
        "views",
        "hostcalls",
        SEQ,
        "each row is one hostcall.recorded event",
    ),
    rule(
        "views",
        "traces",
        Access::Refused,
        "counts and spans the events of every scope in a trace, with no split by scope",
    ),
    rule("views", "audit", SEQ, "each row is one cap.audit event"),
    rule("views", "entity_events", SEQ, "each row names one event"),
    rule(
        "views",
        "docs",
        Access::ScopeColumn("scope"),
        "each row is one event's search document, with its scope",
    ),
    rule("views", "docs_fts", Access::Refused, FTS_REFUSED),
    rule("views", "docs_fts_data", Access::Refused, FTS_REFUSED),
    rule("views", "docs_fts_idx", Access::Refused, FTS_REFUSED),
    rule("views", "docs_fts_content", Access::Refused, FTS_REFUSED),
    rule("views", "docs_fts_docsize", Access::Refused, FTS_REFUSED),
    rule("views", "docs_fts_config", Access::Refused, FTS_REFUSED),
    rule(
        "views",
        "vectors",
        Access::ScopeColumn("scope"),
        "each row is one embedding.set event, with its scope",
    ),
    rule(
        "main",
        "json_each",
        Access::Open,
        "a table-valued function over its argument",
    ),
    rule(
        "main",
        "json_tree",
        Access::Open,
        "a table-valued function over its argument",
    ),
    rule(
        "temp",
        "sqlite_temp_master",
        Access::Refused,
        "the scoped views' own definitions",
    ),
    rule(
        "temp",
        "sqlite_temp_schema",
        Access::Refused,
        "the scoped views' own definitions",
    ),
];

/// Setting up a scoped reader failed (never the query's fault).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Opening the dedicated reader connection failed.
    #[error("open a scoped reader: {0}")]
    Open(#[from] OpenError),
    /// Creating the filtered views (or switching the connection's guards) failed.
    #[error("create the scope-filtered views: {0}")]
    Views(rusqlite::Error),
}

thread_local! {
    /// Why the scoped authorizer refused the statement being prepared on this thread.
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The names one scoped reader knows: its views, and the stored tables and modules an
/// unqualified name may resolve to.
#[derive(Debug, Clone, Default)]
struct ViewNames {
    /// Inner views (the only accessors allowed to read base tables), lowercase.
    inner: BTreeSet<String>,
    /// Every view created (public and inner), lowercase.
    all: BTreeSet<String>,
    /// Tables of `main` and `views` by lowercase name, with the first database (in
    /// SQLite's search order) that holds each.
    stored: BTreeMap<String, &'static str>,
    /// Virtual-table modules (eponymous tables such as `dbstat`), lowercase.
    modules: BTreeSet<String>,
}

impl ViewNames {
    /// The database an unqualified FROM name resolves to; `None` for a CTE or subquery.
    fn resolve(&self, table: &str) -> Option<&'static str> {
        let name = table.to_ascii_lowercase();
        if self.all.contains(&name) || name.starts_with("sqlite_temp_") {
            Some("temp")
        } else if let Some(db) = self.stored.get(&name) {
            Some(db)
        } else if self.modules.contains(&name)
            || name.starts_with("pragma_")
            || name.starts_with("sqlite_")
        {
            Some("main")
        } else {
            None
        }
    }

    /// Reads the stored tables and modules of `conn` (guards off).
    fn read_schema(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        for db in ["main", "views"] {
            let mut stmt = conn.prepare(&format!(
                "SELECT name FROM {db}.sqlite_master WHERE type = 'table'"
            ))?;
            for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
                self.stored.entry(name?.to_ascii_lowercase()).or_insert(db);
            }
        }
        let mut stmt = conn.prepare("SELECT name FROM pragma_module_list")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            self.modules.insert(name?.to_ascii_lowercase());
        }
        Ok(())
    }
}

/// A string literal for SQL; scopes are `[a-z0-9._:/@+-]` (see [`Scope`]), so quoting
/// never has anything to escape, and the assert keeps it that way.
fn literal(scope: &Scope) -> String {
    let text = scope.as_str();
    assert!(!text.contains('\''), "scopes never hold a quote");
    format!("'{text}'")
}

/// The SQL filter keeping rows of `list` (a parenthesised list of literals) for `access`
/// on a table aliased `t`; `None` for tables that are not filtered.
fn filter(access: Access, list: &str) -> Option<String> {
    let event_in = |seq: &str| {
        format!(
            "(t.{seq} IS NULL OR (SELECT e.scope FROM main.events AS e WHERE e.seq = t.{seq}) IN {list})"
        )
    };
    match access {
        Access::ScopeColumn(column) => Some(format!("t.{column} IN {list}")),
        Access::WriterEvents(columns) => Some(
            columns
                .iter()
                .map(|c| event_in(c))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
        Access::EntityEvents { prefix, key, kinds } => {
            let kinds = kinds
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            Some(format!(
                "NOT EXISTS (SELECT 1 FROM views.entity_events AS ee JOIN main.events AS e ON e.seq = ee.seq \
                 WHERE ee.entity = '{prefix}' || t.{key} AND e.kind IN ({kinds}) AND e.scope NOT IN {list})"
            ))
        }
        Access::Open | Access::Refused => None,
    }
}

/// The inner views' name prefix for one query: a hash of its text and scopes.
fn name_prefix(sql_text: &str, scopes: &[Scope]) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(NAME_HASH_CONTEXT);
    hasher.update(sql_text.as_bytes());
    for scope in scopes {
        hasher.update(b"\0");
        hasher.update(scope.as_str().as_bytes());
    }
    let hex = hasher.finalize().to_hex();
    format!("rl_scoped_{}_", &hex[..NAME_HASH_HEX_CHARS])
}

/// Creates the filtered views for `scopes` on `conn` (whose guards must be off).
fn create_views(conn: &Connection, prefix: &str, scopes: &[Scope]) -> rusqlite::Result<ViewNames> {
    let unique: BTreeSet<&Scope> = scopes.iter().collect();
    let list = if unique.is_empty() {
        // No scope is empty; `()` would be folded away with the filter's column use.
        "('')".to_owned()
    } else {
        let literals: Vec<String> = unique.into_iter().map(literal).collect();
        format!("({})", literals.join(", "))
    };
    let mut names = ViewNames::default();
    let mut ddl = String::new();
    for rule in TABLES {
        let Some(condition) = filter(rule.access, &list) else {
            continue;
        };
        let inner = format!("{prefix}{}", rule.table);
        ddl.push_str(&format!(
            "CREATE TEMP VIEW \"{inner}\" AS SELECT * FROM {db}.\"{table}\" AS t WHERE {condition};\n\
             CREATE TEMP VIEW \"{table}\" AS SELECT * FROM temp.\"{inner}\";\n",
            db = rule.db,
            table = rule.table,
        ));
        names.all.insert(rule.table.to_owned());
        names.all.insert(inner.clone());
        names.inner.insert(inner);
    }
    conn.execute_batch(&ddl)?;
    Ok(names)
}

/// The rule for `db.table`, if listed.
fn rule_of(db: &str, table: &str) -> Option<&'static TableRule> {
    TABLES
        .iter()
        .find(|r| r.db.eq_ignore_ascii_case(db) && r.table.eq_ignore_ascii_case(table))
}

/// Why a direct read of `db.table` by a scoped reader is refused; `None` when allowed.
fn refuse_read(names: &ViewNames, db: &str, table: &str, accessor: Option<&str>) -> Option<String> {
    let lower = |s: &str| s.to_ascii_lowercase();
    if accessor.is_some_and(|a| names.inner.contains(&lower(a))) {
        // Inside one of the inner views: their SQL is ours.
        return None;
    }
    if db.eq_ignore_ascii_case("temp") && names.all.contains(&lower(table)) {
        // One of the views themselves: filtered already.
        return None;
    }
    let Some(rule) = rule_of(db, table) else {
        return Some(format!(
            "{db}.{table} is not classified for scope-limited readers"
        ));
    };
    match rule.access {
        Access::Open => None,
        Access::Refused => Some(format!(
            "{db}.{table} is not readable by a scope-limited reader: {}",
            rule.reason
        )),
        Access::ScopeColumn(_) | Access::WriterEvents(_) | Access::EntityEvents { .. } => {
            Some(format!(
                "{db}.{table} is read only through the scope-filtered view {table} \
                 (name it unqualified; {})",
                rule.reason
            ))
        }
    }
}

/// The scoped authorizer: table reads by [`refuse_read`], every other action by the
/// ordinary reader's rules.
fn authorize(names: &ViewNames, ctx: AuthContext<'_>) -> Authorization {
    let AuthAction::Read { table_name, .. } = ctx.action else {
        return crate::read::authorize(ctx);
    };
    let db = match ctx.database_name {
        Some(db) => db,
        None => match names.resolve(table_name) {
            Some(db) => db,
            // A CTE or a subquery: its own reads are checked one by one.
            None => return Authorization::Allow,
        },
    };
    match refuse_read(names, db, table_name, ctx.accessor) {
        None => Authorization::Allow,
        Some(reason) => {
            REFUSED.with(|r| {
                r.borrow_mut().get_or_insert(reason);
            });
            Authorization::Deny
        }
    }
}

/// Opens a reader for one scoped query of `sql_text`: the views for `scopes` created,
/// then the reader's guards (query-only, authorizer) back on, with the scoped authorizer.
pub(crate) fn open(
    cfg: &PogConfig,
    sql_text: &str,
    scopes: &[Scope],
) -> Result<Connection, SetupError> {
    let mut conn = crate::read::open_reader(cfg)?;
    let views = SetupError::Views;
    // The guards are off only while our own DDL runs on this private connection; the
    // TEMP schema is the connection's own, so nothing reaches the two files.
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
        .map_err(views)?;
    conn.pragma_update(None, "query_only", false)
        .map_err(views)?;
    let mut names = create_views(&conn, &name_prefix(sql_text, scopes), scopes).map_err(views)?;
    names.read_schema(&conn).map_err(views)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(views)?;
    conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&names, ctx)))
        .map_err(views)?;
    Ok(conn)
}

/// Runs `sql_text` on a connection from [`open`]; a refusal by the scoped authorizer
/// names the table and the reason.
pub(crate) fn run(
    conn: &Connection,
    sql_text: &str,
    params: &[Value],
) -> Result<QueryResult, QueryError> {
    REFUSED.with(|r| r.borrow_mut().take());
    let result = crate::read::run_query(conn, sql_text, params);
    let refused = REFUSED.with(|r| r.borrow_mut().take());
    match (result, refused) {
        (Err(QueryError::Refused { .. }), Some(reason)) => Err(QueryError::Refused {
            reason: format!("scoped read: {reason}"),
        }),
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_both_files_is_decided() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PogConfig::in_dir(dir.path());
        let store =
            crate::store::Store::open(&cfg, std::sync::Arc::new(crate::clock::ManualClock::new(1)))
                .unwrap();
        drop(store);
        let conn = crate::read::open_reader(&cfg).unwrap();
        for db in ["main", "views"] {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM {db}.sqlite_master WHERE type = 'table'"
                ))
                .unwrap();
            let tables: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(!tables.is_empty(), "{db} has tables");
            for table in tables {
                assert!(
                    rule_of(db, &table).is_some(),
                    "{db}.{table} is not in TABLES"
                );
            }
        }
    }

    #[test]
    fn filters_are_built_for_filtered_tables_only() {
        let list = "('work')";
        for rule in TABLES {
            let built = filter(rule.access, list);
            let filtered = !matches!(rule.access, Access::Open | Access::Refused);
            assert_eq!(built.is_some(), filtered, "{}.{}", rule.db, rule.table);
            if let Some(sql) = built {
                assert!(sql.contains(list), "{sql}");
            }
        }
    }

    #[test]
    fn the_inner_names_depend_on_the_text_and_the_scopes() {
        let work = [Scope::new("work").unwrap()];
        let home = [Scope::new("home").unwrap()];
        let a = name_prefix("SELECT 1", &work);
        assert_eq!(a, name_prefix("SELECT 1", &work), "deterministic");
        assert_ne!(a, name_prefix("SELECT 2", &work));
        assert_ne!(a, name_prefix("SELECT 1", &home));
        assert_eq!(a.len(), "rl_scoped__".len() + NAME_HASH_HEX_CHARS);
    }
}
