//! Where the POG keeps its two files; filled by the kernel's config loader (config-v1 `kb`).

use std::path::{Path, PathBuf};

/// Default file name of the append-only event log (config-v1 `kb.events_db`).
pub const EVENTS_DB_DEFAULT: &str = "events.sqlite";
/// Default file name of the materialised views (config-v1 `kb.view_db`).
pub const VIEW_DB_DEFAULT: &str = "pog.sqlite";

/// The `kb` section of config v1, already resolved (no `~`, no env lookups here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PogConfig {
    /// Directory holding both files; created on open if missing.
    pub root_dir: PathBuf,
    /// Event log file name, relative to `root_dir` (absolute paths are used as is).
    pub events_db: PathBuf,
    /// View file name, relative to `root_dir` (absolute paths are used as is).
    pub view_db: PathBuf,
}

impl PogConfig {
    /// A config with the default file names under `root_dir`.
    pub fn in_dir(root_dir: impl Into<PathBuf>) -> Self {
        PogConfig {
            root_dir: root_dir.into(),
            events_db: PathBuf::from(EVENTS_DB_DEFAULT),
            view_db: PathBuf::from(VIEW_DB_DEFAULT),
        }
    }

    /// Full path of the event log.
    pub fn events_path(&self) -> PathBuf {
        self.root_dir.join(&self.events_db)
    }

    /// Full path of the view file.
    pub fn view_path(&self) -> PathBuf {
        self.root_dir.join(&self.view_db)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root_dir
    }
}
