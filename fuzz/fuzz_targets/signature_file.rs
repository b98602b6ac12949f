//! Fuzzes `signature.toml`, the one untrusted file a bundle's signature check parses,
//! through the loader itself (`Bundle::load`): the committed echo bundle's manifest,
//! policy and module beside fuzzer-written signature bytes.
//!
//! Oracles: nothing panics; the load that asks no trust (`load_untrusted`) and the one
//! under the default policy agree: the same refusal when the signature file is refused,
//! and, when a signature verifies, `Trusted` exactly when its key is the project key
//! (else `Untrusted`).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runloop_bundle::{Bundle, Provenance, SIGNATURE_FILE, TrustPolicy};

/// The bundle whose files stay fixed (only `signature.toml` is fuzzed).
const BUNDLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agents/bundles/echo");

/// A private copy of the echo bundle without its signature.
fn bundle_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("runloop-fuzz-signature-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch bundle directory");
        for file in ["manifest.toml", "policy.caps", "agent.wasm"] {
            std::fs::copy(PathBuf::from(BUNDLE).join(file), dir.join(file))
                .expect("copy the echo bundle");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = bundle_dir();
    std::fs::write(dir.join(SIGNATURE_FILE), data).expect("write signature.toml");
    let strict = Bundle::load(dir, &TrustPolicy::default());
    match Bundle::load_untrusted(dir) {
        Err(refused) => {
            let strict = strict.expect_err("a refused signature is refused under any policy");
            assert_eq!(strict.name(), refused.name(), "{strict} / {refused}");
            assert!(
                !refused.is_untrusted(),
                "integrity-only never asks trust: {refused}"
            );
        }
        Ok(bundle) => {
            let Provenance::Verified { key_id } = bundle.provenance() else {
                panic!(
                    "a present signature that loads is verified: {:?}",
                    bundle.provenance()
                );
            };
            let project = runloop_bundle::trust::project_key().id();
            match strict {
                Ok(b) => {
                    assert_eq!(key_id, &project, "only the project key is a default root");
                    assert!(matches!(b.provenance(), Provenance::Trusted { .. }));
                }
                Err(e) => {
                    assert_ne!(key_id, &project, "the project key is always trusted: {e}");
                    assert_eq!(e.name(), "Untrusted", "{e}");
                }
            }
        }
    }
});
