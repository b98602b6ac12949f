//! Verified bundles remembered by directory, for as long as their files stay the same.
//!
//! [`Bundle::load`] costs a signature check, a BLAKE3 digest of the whole module and a
//! read of every file; a runtime that starts many runs of the same openings would pay it at
//! every submit. A [`BundleCache`] keeps each bundle it loaded beside a *fingerprint* of
//! its directory: for every entry, its name, device, inode, size, and modification and
//! change times in nanoseconds. A lookup takes the fingerprint again (a `read_dir` and a
//! `stat` per entry, no read of any content) and hands back the remembered bundle only when
//! it is identical; any change — a file rewritten, replaced, renamed, added or removed, or
//! the directory swapped for another — loads and verifies the bundle again.
//!
//! **Racy timestamps.** A file's times come from a coarse clock: a write within the same
//! tick as the read that verified it could leave size and times unchanged. So a bundle is
//! remembered only when every entry's change time lies at least [`SETTLED`] before the
//! fingerprint was taken (the rule git applies to its index); a bundle written just now is
//! loaded again at each use until it settles. This compares file times with the system's
//! wall clock on purpose: they are the file system's clock, not the runtime's.
//!
//! The trust decision is asked again on every hit ([`Bundle::trusted_under`], no I/O), so a
//! cache shared by callers with different trust policies never lends one's verdict to the
//! other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::{Bundle, LoadError, TrustPolicy};

/// Most bundle directories one cache remembers; a lookup past it loads without keeping.
pub const CACHED_BUNDLES_MAX: usize = 256;
/// Most entries a bundle directory may hold to be remembered (a bundle has five files).
pub const FINGERPRINT_ENTRIES_MAX: usize = 64;
/// How long before a fingerprint every entry's change time must lie to be trusted.
pub const SETTLED: Duration = Duration::from_secs(2);

/// One directory entry's identity and times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryStamp {
    name: std::ffi::OsString,
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// A directory's stamps, sorted by name, and the directory's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dir: EntryStamp,
    entries: Vec<EntryStamp>,
}

/// Why a directory was not fingerprinted (the bundle is then loaded, never remembered).
#[derive(Debug)]
enum Unstamped {
    Io,
    TooManyEntries,
    Unsettled,
}

fn stamp(name: std::ffi::OsString, meta: &std::fs::Metadata) -> EntryStamp {
    use std::os::unix::fs::MetadataExt;
    EntryStamp {
        name,
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    }
}

/// The fingerprint of `dir` now; entries are followed through symlinks, as the loader
/// reads them.
fn fingerprint(dir: &Path, now: SystemTime) -> Result<Fingerprint, Unstamped> {
    let meta = std::fs::metadata(dir).map_err(|_| Unstamped::Io)?;
    let dir_stamp = stamp(std::ffi::OsString::new(), &meta);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|_| Unstamped::Io)? {
        let entry = entry.map_err(|_| Unstamped::Io)?;
        if entries.len() == FINGERPRINT_ENTRIES_MAX {
            return Err(Unstamped::TooManyEntries);
        }
        let meta = std::fs::metadata(entry.path()).map_err(|_| Unstamped::Io)?;
        entries.push(stamp(entry.file_name(), &meta));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let settled_before = now
        .checked_sub(SETTLED)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    let unsettled = std::iter::once(&dir_stamp)
        .chain(&entries)
        .any(|e| e.ctime_ns.max(e.mtime_ns) >= settled_before);
    if unsettled {
        return Err(Unstamped::Unsettled);
    }
    Ok(Fingerprint {
        dir: dir_stamp,
        entries,
    })
}

/// What a cache did, for tests and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that loaded and verified the bundle.
    pub loads: u64,
}

/// Verified bundles by directory (see the module's text).
#[derive(Debug, Default)]
pub struct BundleCache {
    entries: Mutex<HashMap<PathBuf, (Fingerprint, Arc<Bundle>)>>,
    stats: Mutex<CacheStats>,
}

impl BundleCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bundle in `dir`, verified under `trust`: the remembered one when the directory's
    /// fingerprint is unchanged (and `trust` vouches for it), else [`Bundle::load`].
    pub fn load(&self, dir: &Path, trust: &TrustPolicy) -> Result<Arc<Bundle>, LoadError> {
        let before = fingerprint(dir, SystemTime::now());
        if let Ok(now) = &before {
            let known = self
                .entries
                .lock()
                .expect("bundle cache lock")
                .get(dir)
                .filter(|(print, _)| print == now)
                .map(|(_, bundle)| bundle.clone());
            if let Some(bundle) = known {
                bundle.trusted_under(trust)?;
                self.stats.lock().expect("bundle cache stats").hits += 1;
                return Ok(bundle);
            }
        }
        self.stats.lock().expect("bundle cache stats").loads += 1;
        let bundle = Arc::new(Bundle::load(dir, trust)?);
        // Remembered only when nothing changed while it loaded: the stamps taken before the
        // reads still hold after them.
        if let Ok(before) = before
            && fingerprint(dir, SystemTime::now()).is_ok_and(|after| after == before)
        {
            let mut entries = self.entries.lock().expect("bundle cache lock");
            if entries.len() < CACHED_BUNDLES_MAX || entries.contains_key(dir) {
                entries.insert(dir.to_owned(), (before, bundle.clone()));
            }
        }
        Ok(bundle)
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().expect("bundle cache stats")
    }
}
