//! `security.trust_roots` and `security.allow_unsigned_agents` in config v1: parsed into
//! the loader's `TrustPolicy` (the project key always first), from the file and the
//! environment, and every bad entry refused with the key's path and the entry's number.

use std::path::{Path, PathBuf};

use runloop_bundle::SecretKey;
use runloop_kernel::config::{LoadOptions, Mode, load};

fn home(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "runloop-config-trust-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".runloop")).unwrap();
    dir
}

fn options(home: &Path, file: &str, env: &[(&str, &str)]) -> LoadOptions {
    std::fs::write(home.join(".runloop/config.yaml"), file).unwrap();
    LoadOptions {
        mode: Mode::User {
            home: home.to_owned(),
        },
        file: None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    }
}

#[test]
fn trust_roots_and_the_unsigned_switch_are_read() {
    let home = home("roots");
    let default = load(&options(&home, "version: 1\n", &[])).unwrap().trust;
    assert_eq!(default.roots().len(), 1);
    assert!(default.roots()[0].is_builtin());
    assert!(!default.allows_unsigned());

    let key = SecretKey::from_seed([3; 32]).public();
    let file = format!(
        "version: 1\nsecurity:\n  trust_roots:\n    - key: \"{}\"\n      name: mail team\n      \
         scopes: [\"mail*\", writer]\n    - key: \"{}\"\n  allow_unsigned_agents: true\n",
        key.to_text(),
        SecretKey::from_seed([4; 32]).public().to_text()
    );
    let trust = load(&options(&home, &file, &[])).unwrap().trust;
    assert!(trust.allows_unsigned());
    let roots = trust.roots();
    assert_eq!(roots.len(), 3);
    assert_eq!(roots[1].key(), &key);
    assert_eq!(roots[1].name(), Some("mail team"));
    assert!(roots[1].covers("mailer") && roots[1].covers("writer"));
    assert!(!roots[1].covers("echo"));
    assert!(roots[2].covers("echo"), "no scopes: every agent");

    // The environment layer switches unsigned agents off again.
    let env = [("RUNLOOP__SECURITY__ALLOW_UNSIGNED_AGENTS", "false")];
    assert!(
        !load(&options(&home, &file, &env))
            .unwrap()
            .trust
            .allows_unsigned()
    );
}

#[test]
fn bad_trust_entries_are_refused_by_path() {
    let home = home("bad");
    let key = SecretKey::from_seed([5; 32]).public().to_text();
    let cases = [
        (
            "security:\n  allow_unsigned_agents: maybe\n",
            "security.allow_unsigned_agents",
        ),
        (
            "security:\n  trust_roots:\n    - name: x\n",
            "entry 0: key is missing",
        ),
        (
            "security:\n  trust_roots:\n    - key: \"runloop-ed25519:00\"\n",
            "entry 0",
        ),
        (
            &format!("security:\n  trust_roots:\n    - key: \"{key}\"\n      scopes: [\"Mail\"]\n"),
            "scope",
        ),
        (
            &format!("security:\n  trust_roots:\n    - key: \"{key}\"\n      colour: red\n"),
            "security.trust_roots[0].colour",
        ),
    ];
    for (file, want) in cases {
        let err = load(&options(&home, file, &[])).unwrap_err().to_string();
        assert!(err.contains(want), "{file}: want {want:?}, got {err}");
    }
}
