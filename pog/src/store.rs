//! The writer side: opening both files, appending batches to the hash chain, keeping the
//! views caught up, migrating and rebuilding. One `Store` per root dir is the single writer.

use std::path::Path;
use std::sync::{Arc, Once};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::canon::{GENESIS_HASH, HashInput, event_hash};
use crate::clock::Clock;
use crate::config::PogConfig;
use crate::event::{Event, Hash32, NewEvent};
use crate::kind::EventKind;
use crate::migrate::{self, DbFile, MigrateError, VIEW_TABLES};
use crate::read::Reads;
use crate::views::{self, ViewError};

/// How long a connection waits on a lock held by another process before giving up.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Read connections in the pool by default.
pub const READ_CONNS_DEFAULT: usize = 4;
/// Events projected per view transaction during catch-up and rebuild.
pub const CATCH_UP_BATCH_EVENTS: usize = 2_000;
/// Most events one write call may carry.
pub const WRITE_BATCH_EVENTS_MAX: usize = 10_000;

/// A failure to open the store, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Creating the root directory.
    #[error("create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// Opening or configuring a file.
    #[error("open {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    /// Schema check or first-time creation.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// An existing file is at an older schema version.
    #[error(
        "{file} schema is at version {found}, this build needs {current}: run `rlp kb migrate` (take a backup first)"
    )]
    NeedsMigration {
        file: &'static str,
        found: u32,
        current: u32,
    },
    /// The views claim events the log does not have (truncated or replaced log).
    #[error(
        "views reflect seq {applied_seq} with hash {applied_hash} but the log {detail}: run `rlp kb verify`, then `rlp kb rebuild`"
    )]
    ViewsDiverged {
        applied_seq: u64,
        applied_hash: String,
        detail: String,
    },
    /// Reading the head or projecting missing events.
    #[error("catch up views: {0}")]
    CatchUp(#[from] CatchUpError),
}

/// A failed write, naming the event (index within its batch) and the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The batch is empty or too large.
    #[error("batch of {len} events is outside 1..={WRITE_BATCH_EVENTS_MAX}")]
    BatchSize { len: usize },
    /// Evidence points at an event that does not exist.
    #[error("event {index}: provenance.evidence: seq {seq} does not exist (log head is {head})")]
    MissingEvidence { index: usize, seq: u64, head: u64 },
    /// The key was used before for a different write.
    #[error(
        "event {index}: idempotency key {key:?} was already used by seq {seq} for a different {what}"
    )]
    IdempotencyConflict {
        index: usize,
        key: String,
        seq: u64,
        what: &'static str,
    },
    /// SQLite failed; nothing of this batch was committed.
    #[error("{step}: {message}")]
    Sql { step: &'static str, message: String },
    /// The events were committed but projecting them failed; views catch up on the next write or open.
    #[error("events committed through seq {committed_through} but views lag: {message}")]
    ViewsLag {
        committed_through: u64,
        message: String,
    },
}

fn sql(step: &'static str) -> impl Fn(rusqlite::Error) -> WriteError {
    move |e| WriteError::Sql {
        step,
        message: e.to_string(),
    }
}

/// Failure while projecting log events into the views.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// Reading events from the log.
    #[error("read events from the log: {0}")]
    Read(rusqlite::Error),
    /// Writing the view file.
    #[error("write views: {0}")]
    Write(rusqlite::Error),
    /// Projecting one event.
    #[error(transparent)]
    Project(#[from] ViewError),
}

/// Outcome of one group of `write_groups`.
pub type GroupResult = Result<Vec<Written>, WriteError>;

/// One appended (or deduplicated) event.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The event as stored.
    pub event: Event,
    /// True when the idempotency key matched an earlier write and nothing was appended.
    pub duplicate: bool,
}

/// The end of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Last seq (0 when empty).
    pub seq: u64,
    /// Its hash (zeros when empty).
    pub hash: Hash32,
    /// Its timestamp; new events never get an earlier one.
    pub ts_ms: u64,
}

/// The single writer of one POG root dir.
#[derive(Debug)]
pub struct Store {
    cfg: PogConfig,
    events: Connection,
    views: Connection,
    clock: Arc<dyn Clock>,
    head: Head,
    reads: Reads,
}

/// Registers sqlite-vec with every connection opened afterwards in this process.
pub(crate) fn register_vec_extension() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `sqlite3_vec_init` is an SQLite extension entry point (db, errmsg, api) -> int that
        // the crate declares as `fn()` to avoid a typed dependency.
        // SAFETY: the transmute restores its real type; `sqlite3_auto_extension` only stores
        // the pointer and is thread-safe.
        unsafe {
            let init: unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int =
                std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(init));
        }
    });
}

/// Prepared statements each connection keeps (rusqlite's default is 16; the view
/// projection alone repeats more than that).
const STATEMENT_CACHE: usize = 64;

/// Opens a file read-write with WAL and the given `synchronous` level.
pub(crate) fn open_rw(path: &Path, synchronous: &str) -> Result<Connection, OpenError> {
    register_vec_extension();
    let err = |source| OpenError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(err)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(err)?;
    // Room for every statement the writer and the view projection repeat.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Brings a file to the current schema if it is new; refuses older existing files.
fn ensure_schema(conn: &mut Connection, file: DbFile) -> Result<(), OpenError> {
    let found = migrate::version(conn, file)?;
    if found == 0 {
        migrate::migrate_to(conn, file, file.current())?;
    } else if found < file.current() {
        return Err(OpenError::NeedsMigration {
            file: file.as_str(),
            found,
            current: file.current(),
        });
    } else if found > file.current() {
        return Err(MigrateError::TooNew {
            file: file.as_str(),
            found,
            current: file.current(),
        }
        .into());
    }
    Ok(())
}

/// Reads an `events` row selected as `seq, ts_ms, kind, actor, scope, payload, provenance,
/// idempotency_key, prev_hash, hash`.
pub(crate) fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let bad = |i: usize, msg: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, msg.into())
    };
    let kind: String = row.get(2)?;
    let payload: String = row.get(5)?;
    let provenance: String = row.get(6)?;
    let prev: Vec<u8> = row.get(8)?;
    let hash: Vec<u8> = row.get(9)?;
    Ok(Event {
        seq: row.get::<_, i64>(0)? as u64,
        ts_ms: row.get::<_, i64>(1)? as u64,
        kind: EventKind::parse(&kind).map_err(|e| bad(2, e.to_string()))?,
        actor: row.get(3)?,
        scope: row.get(4)?,
        payload: serde_json::from_str(&payload).map_err(|e| bad(5, e.to_string()))?,
        provenance: serde_json::from_str(&provenance).map_err(|e| bad(6, e.to_string()))?,
        idempotency_key: row.get(7)?,
        prev_hash: Hash32::from_slice(&prev)
            .ok_or_else(|| bad(8, "prev_hash is not 32 bytes".into()))?,
        hash: Hash32::from_slice(&hash).ok_or_else(|| bad(9, "hash is not 32 bytes".into()))?,
    })
}

/// Column list matching `event_from_row`.
pub(crate) const EVENT_COLUMNS: &str =
    "seq, ts_ms, kind, actor, scope, payload, provenance, idempotency_key, prev_hash, hash";

fn read_head(conn: &Connection) -> rusqlite::Result<Head> {
    let row = conn
        .prepare_cached("SELECT seq, hash, ts_ms FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    Ok(match row {
        None => Head {
            seq: 0,
            hash: GENESIS_HASH,
            ts_ms: 0,
        },
        Some((seq, hash, ts)) => Head {
            seq: seq as u64,
            hash: Hash32::from_slice(&hash).unwrap_or(GENESIS_HASH),
            ts_ms: ts as u64,
        },
    })
}

impl Store {
    /// Opens (creating if new) the store under `cfg` with the default read pool size.
    pub fn open(cfg: &PogConfig, clock: Arc<dyn Clock>) -> Result<Store, OpenError> {
        Store::open_with(cfg, clock, READ_CONNS_DEFAULT)
    }

    /// Opens with `read_conns` pooled readers (at least 1).
    pub fn open_with(
        cfg: &PogConfig,
        clock: Arc<dyn Clock>,
        read_conns: usize,
    ) -> Result<Store, OpenError> {
        std::fs::create_dir_all(&cfg.root_dir).map_err(|source| OpenError::CreateDir {
            path: cfg.root_dir.display().to_string(),
            source,
        })?;
        // The log is the source of truth: fsync every commit. Views are rebuildable: NORMAL.
        let mut events = open_rw(&cfg.events_path(), "FULL")?;
        ensure_schema(&mut events, DbFile::Events)?;
        let mut views = open_rw(&cfg.view_path(), "NORMAL")?;
        ensure_schema(&mut views, DbFile::Views)?;
        let head = read_head(&events).map_err(CatchUpError::Read)?;
        check_views_against_log(&events, &views)?;
        let reads = Reads::open(cfg, read_conns.max(1))?;
        let mut store = Store {
            cfg: cfg.clone(),
            events,
            views,
            clock,
            head,
            reads,
        };
        store.catch_up()?;
        Ok(store)
    }

    /// The config this store was opened with.
    pub fn config(&self) -> &PogConfig {
        &self.cfg
    }

    /// The end of the chain.
    pub fn head(&self) -> Head {
        self.head
    }

    /// A cloneable handle to the read pool.
    pub fn reads(&self) -> Reads {
        self.reads.clone()
    }

    /// Appends one event (see `write_batch`).
    pub fn write(&mut self, event: NewEvent) -> Result<Written, WriteError> {
        let mut out = self.write_batch(vec![event])?;
        Ok(out.remove(0))
    }

    /// Appends a batch atomically: all events are committed in one transaction, or none.
    pub fn write_batch(&mut self, events: Vec<NewEvent>) -> Result<Vec<Written>, WriteError> {
        self.write_groups(vec![events]).remove(0)
    }

    /// Appends several independent groups in one SQLite transaction (one fsync). Each group
    /// is atomic on its own (a savepoint): a bad group is rolled back, the others commit.
    pub fn write_groups(
        &mut self,
        groups: Vec<Vec<NewEvent>>,
    ) -> Vec<Result<Vec<Written>, WriteError>> {
        let n = groups.len();
        match self.append_groups(groups) {
            Err(e) => vec![Err(e); n],
            Ok((results, appended)) => {
                if let Err(e) = self.project(&appended) {
                    let lag = WriteError::ViewsLag {
                        committed_through: self.head.seq,
                        message: e.to_string(),
                    };
                    return results
                        .into_iter()
                        .map(|r| r.and(Err(lag.clone())))
                        .collect();
                }
                results
            }
        }
    }

    fn append_groups(
        &mut self,
        groups: Vec<Vec<NewEvent>>,
    ) -> Result<(Vec<GroupResult>, Vec<Event>), WriteError> {
        // IMMEDIATE takes the write lock up front; re-reading the head under it keeps the
        // chain correct even if another process (a CLI next to the daemon) appended meanwhile.
        let mut tx = self
            .events
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin events transaction"))?;
        let mut head = read_head(&tx).map_err(sql("read head"))?;
        let mut results = Vec::with_capacity(groups.len());
        let mut appended = Vec::new();
        for group in groups {
            let mut local = head;
            // A group of one event needs no savepoint: every refusal comes before its
            // insert, and a failed insert changes nothing (a statement is atomic). A longer
            // group is undone whole when a later event of it is refused.
            let appended_group = if group.len() == 1 {
                append_group(&tx, &*self.clock, &mut local, &group)
            } else {
                let sp = tx.savepoint().map_err(sql("savepoint"))?;
                let written = append_group(&sp, &*self.clock, &mut local, &group);
                if written.is_ok() {
                    sp.commit().map_err(sql("release savepoint"))?;
                }
                // Dropping the savepoint otherwise rolls it back.
                written
            };
            match appended_group {
                Ok(written) => {
                    head = local;
                    appended.extend(
                        written
                            .iter()
                            .filter(|w| !w.duplicate)
                            .map(|w| w.event.clone()),
                    );
                    results.push(Ok(written));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        tx.commit().map_err(sql("commit events"))?;
        self.head = head;
        Ok((results, appended))
    }

    fn project(&mut self, events: &[Event]) -> Result<(), CatchUpError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let tx = self
            .views
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(CatchUpError::Write)?;
        let (applied, _) = views::applied(&tx).map_err(CatchUpError::Write)?;
        if applied + 1 != events[0].seq {
            // Views were behind before this batch (an earlier projection failed): replay from the log.
            drop(tx);
            return self.catch_up().map(|_| ());
        }
        for e in events {
            views::apply(&tx, e)?;
        }
        views::set_applied(&tx, last.seq, &last.hash).map_err(CatchUpError::Write)?;
        tx.commit().map_err(CatchUpError::Write)
    }

    /// Projects every logged event the views have not seen yet.
    pub fn catch_up(&mut self) -> Result<u64, CatchUpError> {
        catch_up(&self.events, &mut self.views)
    }

    /// Migrates both files of `cfg` to the current schema. An upgraded view file is cleared
    /// and re-projected from the log. Returns `(events_from, views_from)` versions.
    pub fn migrate(cfg: &PogConfig) -> Result<(u32, u32), OpenError> {
        std::fs::create_dir_all(&cfg.root_dir).map_err(|source| OpenError::CreateDir {
            path: cfg.root_dir.display().to_string(),
            source,
        })?;
        let mut events = open_rw(&cfg.events_path(), "FULL")?;
        let ev_from = migrate::migrate_to(&mut events, DbFile::Events, DbFile::Events.current())?;
        let mut views = open_rw(&cfg.view_path(), "NORMAL")?;
        let v_from = migrate::migrate_to(&mut views, DbFile::Views, DbFile::Views.current())?;
        if v_from != 0 && v_from != DbFile::Views.current() {
            clear_views(&mut views).map_err(CatchUpError::Write)?;
        }
        catch_up(&events, &mut views)?;
        Ok((ev_from, v_from))
    }

    /// Regenerates the view file from the log: all projected rows are dropped and every
    /// event is replayed, in one transaction per `CATCH_UP_BATCH_EVENTS`. A view file that is
    /// not a database at all is deleted and recreated. Returns the number of events replayed.
    pub fn rebuild(cfg: &PogConfig) -> Result<u64, OpenError> {
        let events = open_rw(&cfg.events_path(), "FULL")?;
        ensure_schema_ro(&events, DbFile::Events)?;
        let path = cfg.view_path();
        let mut views = match open_rw(&path, "NORMAL")
            .and_then(|mut v| ensure_schema(&mut v, DbFile::Views).map(|()| v))
        {
            Ok(v) => v,
            Err(OpenError::Open { .. } | OpenError::Migrate(_)) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                let mut v = open_rw(&path, "NORMAL")?;
                ensure_schema(&mut v, DbFile::Views)?;
                v
            }
            Err(e) => return Err(e),
        };
        clear_views(&mut views).map_err(CatchUpError::Write)?;
        Ok(catch_up(&events, &mut views)?)
    }
}

fn ensure_schema_ro(conn: &Connection, file: DbFile) -> Result<(), OpenError> {
    let found = migrate::version(conn, file)?;
    if found != file.current() {
        return Err(OpenError::NeedsMigration {
            file: file.as_str(),
            found,
            current: file.current(),
        });
    }
    Ok(())
}

fn clear_views(views: &mut Connection) -> rusqlite::Result<()> {
    let tx = views.transaction()?;
    for t in VIEW_TABLES {
        tx.execute(&format!("DELETE FROM {t}"), [])?;
    }
    tx.execute(
        "DELETE FROM meta WHERE key IN ('applied_seq', 'applied_hash')",
        [],
    )?;
    tx.commit()
}

fn check_views_against_log(events: &Connection, views: &Connection) -> Result<(), OpenError> {
    let (applied_seq, applied_hash) = views::applied(views).map_err(CatchUpError::Read)?;
    if applied_seq == 0 {
        return Ok(());
    }
    let logged: Option<Vec<u8>> = events
        .query_row(
            "SELECT hash FROM events WHERE seq = ?1",
            [applied_seq as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(CatchUpError::Read)?;
    let detail = match logged {
        None => format!("has no seq {applied_seq}"),
        Some(h) if h != applied_hash.0 => format!("has hash {} there", hex::encode(h)),
        Some(_) => return Ok(()),
    };
    Err(OpenError::ViewsDiverged {
        applied_seq,
        applied_hash: applied_hash.to_hex(),
        detail,
    })
}

fn catch_up(events: &Connection, views: &mut Connection) -> Result<u64, CatchUpError> {
    let mut total = 0u64;
    let mut stmt = events
        .prepare(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .map_err(CatchUpError::Read)?;
    // Each round holds the view write lock while it reads the watermark, so two processes
    // catching up at once never project the same event twice.
    loop {
        let tx = views
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(CatchUpError::Write)?;
        let (applied, _) = views::applied(&tx).map_err(CatchUpError::Write)?;
        let batch: Vec<Event> = stmt
            .query_map(
                params![applied as i64, CATCH_UP_BATCH_EVENTS as i64],
                event_from_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(CatchUpError::Read)?;
        let Some(last) = batch.last() else {
            return Ok(total);
        };
        for e in &batch {
            views::apply(&tx, e)?;
        }
        views::set_applied(&tx, last.seq, &last.hash).map_err(CatchUpError::Write)?;
        tx.commit().map_err(CatchUpError::Write)?;
        total += batch.len() as u64;
    }
}

fn append_group(
    tx: &Connection,
    clock: &dyn Clock,
    head: &mut Head,
    group: &[NewEvent],
) -> Result<Vec<Written>, WriteError> {
    if group.is_empty() || group.len() > WRITE_BATCH_EVENTS_MAX {
        return Err(WriteError::BatchSize { len: group.len() });
    }
    let mut out = Vec::with_capacity(group.len());
    let mut find = tx
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE idempotency_key = ?1"
        ))
        .map_err(sql("prepare idempotency lookup"))?;
    let mut insert = tx
        .prepare_cached(&format!(
            "INSERT INTO events({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .map_err(sql("prepare insert"))?;
    for (index, e) in group.iter().enumerate() {
        if let Some(key) = e.idempotency_key() {
            let prior = find
                .query_row([key.as_str()], event_from_row)
                .optional()
                .map_err(sql("idempotency lookup"))?;
            if let Some(prior) = prior {
                out.push(Written {
                    duplicate: true,
                    event: same_write(index, key.as_str(), prior, e)?,
                });
                continue;
            }
        }
        if let Some(&seq) = e.provenance().evidence.iter().find(|s| **s > head.seq) {
            return Err(WriteError::MissingEvidence {
                index,
                seq,
                head: head.seq,
            });
        }
        let seq = head.seq + 1;
        let ts_ms = clock.now_ms().max(head.ts_ms);
        let key = e.idempotency_key().map(|k| k.as_str());
        let input = HashInput {
            seq,
            ts_ms,
            kind: e.kind().as_str(),
            actor: e.actor().as_str(),
            scope: e.scope().as_str(),
            payload_jcs: e.payload_jcs(),
            provenance_jcs: e.provenance_jcs(),
            idempotency_key: key,
        };
        let hash = event_hash(&head.hash, &input);
        insert
            .execute(params![
                seq as i64,
                ts_ms as i64,
                input.kind,
                input.actor,
                input.scope,
                input.payload_jcs,
                input.provenance_jcs,
                key,
                &head.hash.0[..],
                &hash.0[..]
            ])
            .map_err(sql("insert event"))?;
        let event = Event {
            seq,
            ts_ms,
            kind: e.kind(),
            actor: input.actor.to_owned(),
            scope: input.scope.to_owned(),
            payload: e.payload().clone(),
            provenance: e.provenance().to_json(),
            idempotency_key: key.map(str::to_owned),
            prev_hash: head.hash,
            hash,
        };
        *head = Head { seq, hash, ts_ms };
        out.push(Written {
            event,
            duplicate: false,
        });
    }
    Ok(out)
}

/// A repeated key is the same write when kind, scope and payload match. Provenance may
/// differ (a retry runs under a new trace), so it is not compared.
fn same_write(index: usize, key: &str, prior: Event, e: &NewEvent) -> Result<Event, WriteError> {
    let what = if prior.kind != e.kind() {
        "kind"
    } else if prior.scope != e.scope().as_str() {
        "scope"
    } else if &prior.payload != e.payload() {
        "payload"
    } else {
        return Ok(prior);
    };
    Err(WriteError::IdempotencyConflict {
        index,
        key: key.to_owned(),
        seq: prior.seq,
        what,
    })
}
