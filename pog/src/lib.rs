//! POG: the personal ops graph — an append-only, hash-chained event log in SQLite with
//! materialised views, full-text and vector search. This is the only crate that speaks SQL.
//!
//! Two files live under `PogConfig::root_dir`: the event log (`events.sqlite`, the source of
//! truth) and the views (`pog.sqlite`, derived, rebuildable from the log at any time).

pub mod backup;
pub mod canon;
pub mod clock;
pub mod config;
pub mod event;
pub mod ids;
pub mod import;
pub mod kind;
pub mod migrate;
pub mod read;
pub mod runs;
pub mod scoped;
pub mod search;
pub mod store;
pub mod verify;
mod views;

pub use backup::{BackupError, BackupReport, RestoreError, RestoreReport, backup, restore};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::PogConfig;
pub use event::{Event, Hash32, NewEvent, Provenance, ValidationError};
pub use ids::{ActorName, EntityRef, IdempotencyKey, Scope, TraceId, parse_trace_id};
pub use kind::EventKind;
pub use read::{QueryError, QueryLimits, QueryResult, Reads, RecordedCall, WhyError, WhyReport};
pub use runs::{RunFilter, RunRow};
pub use search::{SearchError, SearchHit, SearchQuery};
pub use store::{OpenError, Store, WriteError, Written};
pub use verify::{VerifyError, VerifyReport, verify};

/// Bytes SQLite holds in this process now, over every connection (page caches, schema,
/// statements): what the POG's files cost in memory.
pub fn sqlite_memory_used() -> u64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's global memory counter (under its
    // own mutex) and takes no arguments.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}
