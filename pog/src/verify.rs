//! `kb verify`: walks the whole hash chain and checks the view file's watermark against it.
//!
//! Detects an edited row (hash mismatch or non-canonical JSON), a deleted row (gap in seq),
//! reordered rows (prev_hash mismatch), and a truncated log (the views remember a later
//! event than the log has). Reads through its own read-only connection, so it runs safely
//! next to a live writer; memory use is constant in the log length.

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::canon::{GENESIS_HASH, HashInput, event_hash, jcs};
use crate::config::PogConfig;
use crate::event::Hash32;
use crate::migrate::{self, DbFile};

/// A verify run that could not complete (as opposed to one that found tampering).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The event file is missing.
    #[error("no event log at {0}")]
    Missing(String),
    /// Opening a file.
    #[error("open {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    /// Reading the schema version.
    #[error(transparent)]
    Schema(migrate::MigrateError),
    /// Reading rows.
    #[error("read events: {0}")]
    Read(rusqlite::Error),
}

/// What is wrong at the first bad event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent {
    /// The first seq that does not check out.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// Outcome of a verify run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows walked.
    pub events_checked: u64,
    /// Last good seq.
    pub head_seq: u64,
    /// Hash of the last good event (hex).
    pub head_hash: String,
    /// The views' watermark, if the view file exists.
    pub views_applied_seq: Option<u64>,
    /// The first problem, if any.
    pub first_bad: Option<BadEvent>,
}

impl VerifyReport {
    /// True when the chain and the watermark check out.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

fn open_ro(path: &std::path::Path) -> Result<Connection, VerifyError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| VerifyError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Verifies the store under `cfg`.
pub fn verify(cfg: &PogConfig) -> Result<VerifyReport, VerifyError> {
    let epath = cfg.events_path();
    if !epath.exists() {
        return Err(VerifyError::Missing(epath.display().to_string()));
    }
    // Views first: their watermark can only be behind the log read a moment later.
    let views_applied = read_watermark(cfg)?;
    let conn = open_ro(&epath)?;
    if migrate::version(&conn, DbFile::Events).map_err(VerifyError::Schema)? == 0 {
        return Ok(VerifyReport {
            events_checked: 0,
            head_seq: 0,
            head_hash: GENESIS_HASH.to_hex(),
            views_applied_seq: views_applied.map(|w| w.0),
            first_bad: None,
        });
    }
    let tx = conn.unchecked_transaction().map_err(VerifyError::Read)?;
    let (checked, head, hash, mut bad) = walk_chain(&tx)?;
    if bad.is_none()
        && let Some((vseq, vhash)) = views_applied
    {
        bad = check_watermark(&tx, head, vseq, &vhash)?;
    }
    Ok(VerifyReport {
        events_checked: checked,
        head_seq: head,
        head_hash: hash.to_hex(),
        views_applied_seq: views_applied.map(|w| w.0),
        first_bad: bad,
    })
}

fn read_watermark(cfg: &PogConfig) -> Result<Option<(u64, Hash32)>, VerifyError> {
    let vpath = cfg.view_path();
    if !vpath.exists() {
        return Ok(None);
    }
    let v = open_ro(&vpath)?;
    let has_meta: bool = v
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .unwrap_or(false);
    if !has_meta {
        return Ok(None);
    }
    crate::views::applied(&v)
        .map(Some)
        .map_err(VerifyError::Read)
}

fn check_watermark(
    conn: &Connection,
    head: u64,
    vseq: u64,
    vhash: &Hash32,
) -> Result<Option<BadEvent>, VerifyError> {
    if vseq == 0 {
        return Ok(None);
    }
    if vseq > head {
        return Ok(Some(BadEvent {
            seq: head + 1,
            reason: format!(
                "log ends at seq {head} but the views have seen seq {vseq}: events were removed from the end"
            ),
        }));
    }
    let h: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM events WHERE seq = ?1",
            [vseq as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(VerifyError::Read)?;
    if h.as_deref() != Some(&vhash.0[..]) {
        return Ok(Some(BadEvent {
            seq: vseq,
            reason: "hash differs from the one the views recorded".into(),
        }));
    }
    Ok(None)
}

type Walk = (u64, u64, Hash32, Option<BadEvent>);

fn walk_chain(conn: &Connection) -> Result<Walk, VerifyError> {
    let mut stmt = conn
        .prepare("SELECT seq, ts_ms, kind, actor, scope, payload, provenance, idempotency_key, prev_hash, hash FROM events ORDER BY rowid")
        .map_err(VerifyError::Read)?;
    let mut rows = stmt.query([]).map_err(VerifyError::Read)?;
    let (mut checked, mut last_seq, mut last_hash) = (0u64, 0u64, GENESIS_HASH);
    while let Some(r) = rows.next().map_err(VerifyError::Read)? {
        checked += 1;
        let expect = last_seq + 1;
        let fail = |reason: String| -> Result<Walk, VerifyError> {
            Ok((
                checked,
                last_seq,
                last_hash,
                Some(BadEvent {
                    seq: expect,
                    reason,
                }),
            ))
        };
        let seq = r.get::<_, i64>(0).map_err(VerifyError::Read)? as u64;
        if seq != expect {
            return fail(if seq > expect {
                format!("missing: next row is seq {seq}")
            } else {
                format!("out of order: found seq {seq}")
            });
        }
        let text = |i: usize| r.get::<_, String>(i).map_err(VerifyError::Read);
        let (payload, provenance) = (text(5)?, text(6)?);
        for (name, t) in [("payload", &payload), ("provenance", &provenance)] {
            let canonical = serde_json::from_str(t).ok().and_then(|v| jcs(&v).ok());
            if canonical.as_deref() != Some(t.as_str()) {
                return fail(format!("{name} is not canonical JSON"));
            }
        }
        let prev: Vec<u8> = r.get(8).map_err(VerifyError::Read)?;
        if prev != last_hash.0 {
            return fail("prev_hash does not match the previous event's hash (edited, deleted or reordered rows)".into());
        }
        let (kind, actor, scope) = (text(2)?, text(3)?, text(4)?);
        let key: Option<String> = r.get(7).map_err(VerifyError::Read)?;
        let input = HashInput {
            seq,
            ts_ms: r.get::<_, i64>(1).map_err(VerifyError::Read)? as u64,
            kind: &kind,
            actor: &actor,
            scope: &scope,
            payload_jcs: &payload,
            provenance_jcs: &provenance,
            idempotency_key: key.as_deref(),
        };
        let computed = event_hash(&last_hash, &input);
        let stored: Vec<u8> = r.get(9).map_err(VerifyError::Read)?;
        if stored != computed.0 {
            return fail("hash does not match the event's contents (edited row)".into());
        }
        last_seq = seq;
        last_hash = computed;
    }
    Ok((checked, last_seq, last_hash, None))
}
