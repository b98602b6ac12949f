//! Fuzzes config v1 as `security.trust_roots` reaches it: arbitrary bytes as the config
//! file, through the real loader (`runloop_kernel::config::load`), which checks the schema
//! and builds the `TrustPolicy` every bundle load is checked against.
//!
//! Oracles: nothing panics; a config that loads has the built-in project key first, with
//! scope `*`, and every root has between 1 and `SCOPES_MAX` scopes, each a valid glob; the
//! error of one that does not load prints.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runloop_bundle::Scope;
use runloop_bundle::trust::{ROOTS_MAX, SCOPES_MAX};
use runloop_kernel::config::{self, LoadOptions, Mode};

/// A scratch home holding the config file each input is written to.
fn home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("runloop-fuzz-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("a scratch home");
        home
    })
}

fuzz_target!(|data: &[u8]| {
    let home = home();
    let file = home.join("config.yaml");
    std::fs::write(&file, data).expect("write config.yaml");
    let loaded = config::load(&LoadOptions {
        mode: Mode::User { home: home.clone() },
        file: Some(file),
        env: Vec::new(),
        flags: Vec::new(),
    });
    match loaded {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(config) => {
            let roots = config.trust.roots();
            assert!(roots[0].is_builtin() && roots[0].scopes()[0].as_str() == "*");
            assert!(roots.len() <= ROOTS_MAX + 1);
            for root in roots {
                assert!((1..=SCOPES_MAX).contains(&root.scopes().len()), "{root:?}");
                for scope in root.scopes() {
                    assert_eq!(Scope::parse(scope.as_str()).as_ref(), Ok(scope));
                }
            }
        }
    }
});
