//! Reads for durable runs: one run's events in log order (to continue it), and the runs
//! view (recent and unfinished runs for `rlp runs` and resume at boot).

use crate::read::{Reads, WhyError};
use crate::store::{EVENT_COLUMNS, event_from_row};
use crate::{Event, TraceId};

/// Most events one run may have read back (its start, node attempts, finish).
pub const RUN_EVENTS_MAX: usize = 100_000;
/// Most runs one listing returns.
pub const RUNS_LIST_MAX: usize = 10_000;

/// One row of the runs view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub trace_id: String,
    pub opening: Option<String>,
    /// `running` until the run's finish is in the log.
    pub status: String,
    pub error: Option<String>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub duration_ms: Option<u64>,
}

/// Which runs a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFilter {
    /// Every run, newest first.
    All,
    /// Runs without a finish in the log (running, or left unfinished by a crash).
    Unfinished,
}

impl Reads {
    /// The events of one run (kinds `run.*`, `node.*`, and any other event naming the run),
    /// oldest first; at most [`RUN_EVENTS_MAX`].
    pub fn run_events(&self, trace_id: &TraceId) -> Result<Vec<Event>, WhyError> {
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM main.events WHERE seq IN
               (SELECT seq FROM views.entity_events WHERE entity = ?1)
             ORDER BY seq LIMIT ?2"
        ))?;
        let entity = format!("run:{trace_id}");
        let rows = stmt.query_map(
            rusqlite::params![entity, RUN_EVENTS_MAX as i64],
            event_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs from the runs view, newest start first, at most `limit` (capped at
    /// [`RUNS_LIST_MAX`]).
    pub fn runs(&self, filter: RunFilter, limit: usize) -> Result<Vec<RunRow>, WhyError> {
        let conn = self.lease().ok_or(WhyError::PoolTimeout)?;
        let sql = match filter {
            RunFilter::All => {
                "SELECT trace_id, opening, status, error, started_ms, finished_ms, duration_ms
                 FROM views.runs ORDER BY started_seq DESC LIMIT ?1"
            }
            RunFilter::Unfinished => {
                "SELECT trace_id, opening, status, error, started_ms, finished_ms, duration_ms
                 FROM views.runs WHERE status = 'running' ORDER BY started_seq LIMIT ?1"
            }
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let limit = limit.min(RUNS_LIST_MAX) as i64;
        let u = |v: Option<i64>| v.map(|x| x.max(0) as u64);
        let rows = stmt.query_map([limit], |r| {
            Ok(RunRow {
                trace_id: r.get(0)?,
                opening: r.get(1)?,
                status: r.get(2)?,
                error: r.get(3)?,
                started_ms: u(r.get(4)?),
                finished_ms: u(r.get(5)?),
                duration_ms: u(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
