//! Online backup and restore with SQLite's backup API.
//!
//! A backup copies the view file first and the log second, each in a single backup step
//! (one read transaction, so each copy is a consistent snapshot while writes go on). The
//! views can then only be behind the log copy, never ahead, and open catches them up.
//! A restore verifies the backup's chain before it overwrites anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use crate::config::PogConfig;
use crate::verify::{VerifyError, VerifyReport, verify};

/// Pages per backup step: -1 copies the whole file in one step, i.e. one consistent snapshot.
const BACKUP_PAGES_PER_STEP: i32 = -1;
/// Attempts when the source or destination is locked.
const BACKUP_LOCK_RETRIES_MAX: u32 = 500;
/// Pause between those attempts.
const BACKUP_LOCK_RETRY_MS: u64 = 10;
/// Name of the manifest written next to the two files.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A failed backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination exists and is not empty.
    #[error("backup destination {0} exists and is not empty")]
    DestinationNotEmpty(String),
    /// Creating the destination.
    #[error("create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// Opening a source or destination file.
    #[error("open {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    /// The copy itself.
    #[error("copy {path}: {source}")]
    Copy {
        path: String,
        source: rusqlite::Error,
    },
    /// Checking the copy.
    #[error("verify the copy: {0}")]
    Verify(#[from] VerifyError),
    /// The copy does not verify (the source was already damaged).
    #[error("the copy fails verification at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// Writing the manifest.
    #[error("write manifest {path}: {source}")]
    Manifest {
        path: String,
        source: std::io::Error,
    },
}

/// What a backup produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Directory holding the copy.
    pub dir: PathBuf,
    /// Verification of the copy.
    pub verify: VerifyReport,
    /// Wall time of the copy (for the perf figures), in ms.
    pub elapsed_ms: u64,
}

/// A failed restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup is missing its log.
    #[error("no backup at {0}")]
    Missing(String),
    /// The backup does not verify.
    #[error("backup fails verification at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// Checking the backup.
    #[error("verify the backup: {0}")]
    Verify(#[from] VerifyError),
    /// The target already has events and `force` was not given.
    #[error("target {path} already holds {events} events: pass --force to overwrite")]
    TargetNotEmpty { path: String, events: u64 },
    /// Creating the target directory.
    #[error("create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// Opening a file.
    #[error("open {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    /// The copy.
    #[error("copy into {path}: {source}")]
    Copy {
        path: String,
        source: rusqlite::Error,
    },
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Events in the restored log.
    pub events: u64,
    /// Head hash of the restored log (hex).
    pub head_hash: String,
}

fn copy_db(src: &Path, dst: &Path) -> Result<(), (String, rusqlite::Error, bool)> {
    fn open_err(p: &Path) -> impl Fn(rusqlite::Error) -> (String, rusqlite::Error, bool) + '_ {
        move |e| (p.display().to_string(), e, true)
    }
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err(src))?;
    from.busy_timeout(Duration::from_millis(crate::store::BUSY_TIMEOUT_MS))
        .map_err(open_err(src))?;
    let mut to = Connection::open(dst).map_err(open_err(dst))?;
    to.busy_timeout(Duration::from_millis(crate::store::BUSY_TIMEOUT_MS))
        .map_err(open_err(dst))?;
    let copy_err = |e| (dst.display().to_string(), e, false);
    let b = rusqlite::backup::Backup::new(&from, &mut to).map_err(copy_err)?;
    let mut tries = 0;
    loop {
        use rusqlite::backup::StepResult;
        match b.step(BACKUP_PAGES_PER_STEP).map_err(copy_err)? {
            StepResult::Done => break,
            // With -1 pages a step either finishes or could not lock: retry, bounded.
            StepResult::More | StepResult::Busy | StepResult::Locked
                if tries < BACKUP_LOCK_RETRIES_MAX =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(BACKUP_LOCK_RETRY_MS));
            }
            _ => {
                return Err(copy_err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("backup could not lock the source".into()),
                )));
            }
        }
    }
    drop(b);
    // Keep the copy as a single self-contained file.
    to.pragma_update(None, "journal_mode", "DELETE")
        .map_err(copy_err)?;
    Ok(())
}

/// Backs up the store under `cfg` into the new or empty directory `dest`.
pub fn backup(cfg: &PogConfig, dest: &Path) -> Result<BackupReport, BackupError> {
    let started = std::time::Instant::now();
    if dest.exists()
        && std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BackupError::DestinationNotEmpty(dest.display().to_string()));
    }
    std::fs::create_dir_all(dest).map_err(|source| BackupError::CreateDir {
        path: dest.display().to_string(),
        source,
    })?;
    let out = PogConfig {
        root_dir: dest.to_path_buf(),
        ..cfg.clone()
    };
    let map = |(path, source, open): (String, rusqlite::Error, bool)| {
        if open {
            BackupError::Open { path, source }
        } else {
            BackupError::Copy { path, source }
        }
    };
    if cfg.view_path().exists() {
        copy_db(&cfg.view_path(), &out.view_path()).map_err(map)?;
    }
    copy_db(&cfg.events_path(), &out.events_path()).map_err(map)?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let report = verify(&out)?;
    if let Some(bad) = &report.first_bad {
        return Err(BackupError::Corrupt {
            seq: bad.seq,
            reason: bad.reason.clone(),
        });
    }
    let manifest = json!({
        "format": "runloop-pog-backup-v1",
        "events_db": cfg.events_db,
        "view_db": cfg.view_db,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
    });
    let mpath = dest.join(MANIFEST_FILE);
    std::fs::write(&mpath, format!("{manifest:#}\n")).map_err(|source| BackupError::Manifest {
        path: mpath.display().to_string(),
        source,
    })?;
    Ok(BackupReport {
        dir: dest.to_path_buf(),
        verify: report,
        elapsed_ms,
    })
}

/// Restores the backup in `src` (made with the same file names) into `cfg`. Refuses to
/// overwrite a log that holds events unless `force`. No writer may have `cfg` open.
pub fn restore(src: &Path, cfg: &PogConfig, force: bool) -> Result<RestoreReport, RestoreError> {
    let from = PogConfig {
        root_dir: src.to_path_buf(),
        ..cfg.clone()
    };
    if !from.events_path().exists() {
        return Err(RestoreError::Missing(src.display().to_string()));
    }
    let report = verify(&from)?;
    if let Some(bad) = report.first_bad {
        return Err(RestoreError::Corrupt {
            seq: bad.seq,
            reason: bad.reason,
        });
    }
    if cfg.events_path().exists() && !force {
        let existing = verify(cfg).map(|r| r.events_checked).unwrap_or(0);
        if existing > 0 {
            return Err(RestoreError::TargetNotEmpty {
                path: cfg.events_path().display().to_string(),
                events: existing,
            });
        }
    }
    std::fs::create_dir_all(&cfg.root_dir).map_err(|source| RestoreError::CreateDir {
        path: cfg.root_dir.display().to_string(),
        source,
    })?;
    let map = |(path, source, open): (String, rusqlite::Error, bool)| {
        if open {
            RestoreError::Open { path, source }
        } else {
            RestoreError::Copy { path, source }
        }
    };
    copy_db(&from.events_path(), &cfg.events_path()).map_err(map)?;
    if from.view_path().exists() {
        copy_db(&from.view_path(), &cfg.view_path()).map_err(map)?;
    } else {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", cfg.view_path().display()));
        }
    }
    Ok(RestoreReport {
        events: report.head_seq,
        head_hash: report.head_hash,
    })
}
