//! Versioned schema migrations for both files, tracked in `PRAGMA user_version`.
//!
//! Each file has an ordered list of steps; version N means steps 1..=N ran. Steps never
//! change once released: a new shape is a new step. The view file is derived data, so after
//! upgrading an existing view file its contents are cleared and re-projected from the log.

use rusqlite::Connection;

/// Steps of the event log. v1: the table; v2: append-only triggers.
const EVENTS_STEPS: &[&str] = &[
    // v1
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        scope TEXT NOT NULL,
        payload TEXT NOT NULL,
        provenance TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
        hash BLOB NOT NULL CHECK (length(hash) = 32)
    ) STRICT;",
    // v2: the log is append-only; tampering must go around SQLite, and verify catches that.
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
     CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;",
];

/// Steps of the view file. v1: entity views; v2: search (FTS5 + vectors).
const VIEWS_STEPS: &[&str] = &[
    // v1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;
     CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT, phone TEXT,
        org TEXT, tags TEXT, notes TEXT, removed INTEGER NOT NULL DEFAULT 0,
        created_seq INTEGER NOT NULL, updated_seq INTEGER NOT NULL) STRICT;
     CREATE INDEX contacts_email ON contacts(email);
     CREATE TABLE notes (note_id TEXT PRIMARY KEY, text TEXT NOT NULL, about TEXT, tags TEXT,
        seq INTEGER NOT NULL) STRICT;
     CREATE TABLE artifacts (artifact_id TEXT PRIMARY KEY, name TEXT NOT NULL, media_type TEXT NOT NULL,
        digest TEXT NOT NULL, size_bytes INTEGER NOT NULL, uri TEXT, trace_id TEXT, seq INTEGER NOT NULL) STRICT;
     CREATE TABLE emails (message_id TEXT PRIMARY KEY, to_addrs TEXT NOT NULL, subject TEXT NOT NULL,
        body_digest TEXT, contact_id TEXT, trace_id TEXT, seq INTEGER NOT NULL) STRICT;
     CREATE TABLE runs (trace_id TEXT PRIMARY KEY, opening TEXT, params TEXT, status TEXT NOT NULL,
        error TEXT, started_seq INTEGER, finished_seq INTEGER, started_ms INTEGER, finished_ms INTEGER,
        duration_ms INTEGER) STRICT;
     CREATE TABLE nodes (trace_id TEXT NOT NULL, node_id TEXT NOT NULL, agent TEXT NOT NULL,
        status TEXT NOT NULL, output_hash TEXT, duration_ms INTEGER, attempt INTEGER, seq INTEGER NOT NULL,
        PRIMARY KEY (trace_id, node_id)) STRICT;
     CREATE TABLE hostcalls (trace_id TEXT NOT NULL, node_id TEXT NOT NULL, call_seq INTEGER NOT NULL,
        call TEXT NOT NULL, request_hash TEXT NOT NULL, result TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (trace_id, node_id, call_seq)) STRICT;
     CREATE TABLE traces (trace_id TEXT PRIMARY KEY, events INTEGER NOT NULL, first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL) STRICT;
     CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, agent TEXT NOT NULL,
        cap TEXT NOT NULL, decision TEXT NOT NULL, request TEXT, reason TEXT, trace_id TEXT) STRICT;
     CREATE TABLE entity_events (entity TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (entity, seq)) WITHOUT ROWID, STRICT;",
    // v2
    "CREATE TABLE docs (id INTEGER PRIMARY KEY, entity TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        scope TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, seq INTEGER NOT NULL) STRICT;
     CREATE VIRTUAL TABLE docs_fts USING fts5(title, body, tokenize = 'unicode61 remove_diacritics 2');
     CREATE TABLE vectors (entity TEXT PRIMARY KEY, scope TEXT NOT NULL, model TEXT NOT NULL,
        dim INTEGER NOT NULL, vec BLOB NOT NULL, seq INTEGER NOT NULL) STRICT;",
];

/// Tables of the view file that hold projected data (cleared by a rebuild).
pub(crate) const VIEW_TABLES: &[&str] = &[
    "contacts",
    "notes",
    "artifacts",
    "emails",
    "runs",
    "nodes",
    "hostcalls",
    "traces",
    "audit",
    "entity_events",
    "docs",
    "docs_fts",
    "vectors",
];

/// Current version of the event log schema.
pub const EVENTS_VERSION: u32 = EVENTS_STEPS.len() as u32;
/// Current version of the view schema.
pub const VIEWS_VERSION: u32 = VIEWS_STEPS.len() as u32;

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    /// `events.sqlite`.
    Events,
    /// `pog.sqlite`.
    Views,
}

impl DbFile {
    fn steps(self) -> &'static [&'static str] {
        match self {
            DbFile::Events => EVENTS_STEPS,
            DbFile::Views => VIEWS_STEPS,
        }
    }

    /// The newest version of this file's schema.
    pub fn current(self) -> u32 {
        match self {
            DbFile::Events => EVENTS_VERSION,
            DbFile::Views => VIEWS_VERSION,
        }
    }

    /// Name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DbFile::Events => "events",
            DbFile::Views => "views",
        }
    }
}

/// A migration failure, naming the file and step.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading `user_version`.
    #[error("read {file} schema version: {source}")]
    ReadVersion {
        file: &'static str,
        source: rusqlite::Error,
    },
    /// The file is newer than this build understands.
    #[error("{file} schema version {found} is newer than this build supports ({current})")]
    TooNew {
        file: &'static str,
        found: u32,
        current: u32,
    },
    /// A step failed (and was rolled back).
    #[error("apply {file} migration to version {version}: {source}")]
    Step {
        file: &'static str,
        version: u32,
        source: rusqlite::Error,
    },
}

/// The schema version recorded in the file (0 for a new file).
pub fn version(conn: &Connection, file: DbFile) -> Result<u32, MigrateError> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))
        .map_err(|source| MigrateError::ReadVersion {
            file: file.as_str(),
            source,
        })
}

/// Applies steps up to `target` (at most current), each in its own transaction together
/// with its version bump. Returns the version found before.
pub fn migrate_to(conn: &mut Connection, file: DbFile, target: u32) -> Result<u32, MigrateError> {
    assert!(
        target <= file.current(),
        "target version beyond the known steps"
    );
    let found = version(conn, file)?;
    if found > file.current() {
        return Err(MigrateError::TooNew {
            file: file.as_str(),
            found,
            current: file.current(),
        });
    }
    for v in found + 1..=target {
        let step = file.steps()[(v - 1) as usize];
        let err = |source| MigrateError::Step {
            file: file.as_str(),
            version: v,
            source,
        };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", v).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(found)
}
