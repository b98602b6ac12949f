//! The verified-bundle cache: a settled, unchanged bundle is loaded once; any change to
//! its directory loads (and verifies) it again, so a tampered module is refused, not handed
//! out from memory; every hit asks the trust decision again. Real files in a temporary
//! directory, real waits for the settle time.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runloop_bundle::cache::{BundleCache, CacheStats, SETTLED};
use runloop_bundle::{LoadError, TrustPolicy};

/// A copy of the committed, project-signed echo bundle.
fn echo_copy() -> (tempfile::TempDir, PathBuf) {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles/echo");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("echo");
    fs::create_dir(&dir).unwrap();
    for entry in fs::read_dir(&committed).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (tmp, dir)
}

/// Waits until everything written so far counts as settled.
fn settle() {
    std::thread::sleep(SETTLED + Duration::from_millis(100));
}

#[test]
fn a_settled_bundle_loads_once_and_any_change_loads_it_again() {
    let (_tmp, dir) = echo_copy();
    let trust = TrustPolicy::default();
    let cache = BundleCache::new();

    // Just written: not settled yet, so loaded at each use.
    cache.load(&dir, &trust).unwrap();
    cache.load(&dir, &trust).unwrap();
    assert_eq!(cache.stats(), CacheStats { hits: 0, loads: 2 });

    settle();
    let first = cache.load(&dir, &trust).unwrap();
    let again = cache.load(&dir, &trust).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "a hit hands out the same bundle"
    );
    assert_eq!(cache.stats(), CacheStats { hits: 1, loads: 3 });

    // A file added to the directory: loaded again.
    fs::write(dir.join("notes.txt"), "x").unwrap();
    cache.load(&dir, &trust).unwrap();
    assert_eq!(cache.stats(), CacheStats { hits: 1, loads: 4 });

    // Settled again, then the module tampered with in place, same size: the load fails
    // with the digest's error instead of handing out the remembered bundle.
    fs::remove_file(dir.join("notes.txt")).unwrap();
    settle();
    cache.load(&dir, &trust).unwrap();
    cache.load(&dir, &trust).unwrap();
    assert_eq!(cache.stats(), CacheStats { hits: 2, loads: 5 });
    let wasm = dir.join("agent.wasm");
    let mut bytes = fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&wasm, &bytes).unwrap();
    let err = cache.load(&dir, &trust).unwrap_err();
    assert!(
        matches!(err, LoadError::DigestMismatch { .. }),
        "a tampered module must not load from the cache: {err}"
    );
}

#[test]
fn a_hit_asks_the_trust_decision_again() {
    let (_tmp, dir) = echo_copy();
    let cache = BundleCache::new();
    settle();
    cache.load(&dir, &TrustPolicy::default()).unwrap();
    cache.load(&dir, &TrustPolicy::default()).unwrap();
    assert_eq!(cache.stats(), CacheStats { hits: 1, loads: 1 });
    // A policy without the project key: the remembered bundle is not lent to it.
    let err = cache
        .load(&dir, &TrustPolicy::only(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(err, LoadError::Untrusted { .. }),
        "a bundle the policy does not vouch for must be refused from the cache too: {err}"
    );
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn a_missing_directory_is_the_loader_s_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = BundleCache::new()
        .load(&tmp.path().join("absent"), &TrustPolicy::default())
        .unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}
