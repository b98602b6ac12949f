//! Bundle signatures and trust roots: a signed bundle loads under a policy trusting its
//! key and scope; every covered byte changed after signing is refused; a wrong key, a
//! scope that misses the agent and an unsigned bundle are refused with their reasons
//! unless unsigned agents are allowed (never a broken signature). Real bundle files in
//! temporary directories, signed with keys made from fixed seeds.

use std::fs;
use std::path::{Path, PathBuf};

use runloop_bundle::sign::{self, SIGNATURE_FILE, TOOLS_FILE};
use runloop_bundle::{
    Bundle, Digest, LoadError, Provenance, PublicKey, Scope, SecretKey, TrustPolicy, TrustRoot,
    pack,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// Trusting only `key`, for `scopes` (none: every agent).
fn trusting(key: &SecretKey, scopes: &[&str]) -> TrustPolicy {
    let scopes = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
    TrustPolicy::only(vec![
        TrustRoot::new(key.public(), Some("test".into()), scopes).unwrap(),
    ])
}

/// An unsigned copy of the committed echo bundle, then signed with `signer` if given.
fn echo(signer: Option<&SecretKey>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("echo");
    fs::create_dir(&dir).unwrap();
    for file in ["manifest.toml", "policy.caps", "agent.wasm"] {
        fs::copy(
            repo().join("agents/bundles/echo").join(file),
            dir.join(file),
        )
        .unwrap();
    }
    if let Some(signer) = signer {
        assert_eq!(sign::sign(&dir, signer).unwrap(), signer.public().id());
    }
    (tmp, dir)
}

fn append(path: &Path, text: &str) {
    let mut bytes = fs::read(path).unwrap();
    bytes.extend_from_slice(text.as_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_signed_bundle_loads_under_its_root() {
    let signer = key(1);
    let (_tmp, dir) = echo(Some(&signer));
    let bundle = Bundle::load(&dir, &trusting(&signer, &["ech*"])).unwrap();
    assert_eq!(
        bundle.provenance(),
        &Provenance::Trusted {
            key_id: signer.public().id(),
            root: "test".into()
        }
    );
    assert_eq!(bundle.provenance().warning(), None);
    // Signing is deterministic: signing again writes the same file.
    let first = fs::read(dir.join(SIGNATURE_FILE)).unwrap();
    sign::sign(&dir, &signer).unwrap();
    assert_eq!(fs::read(dir.join(SIGNATURE_FILE)).unwrap(), first);
}

#[test]
fn every_covered_change_breaks_the_signature() {
    let signer = key(2);
    let policy = trusting(&signer, &[]);
    type Tamper = fn(&Path);
    let tampers: [(&str, Tamper); 6] = [
        ("manifest", |d| append(&d.join("manifest.toml"), "\n")),
        ("policy", |d| {
            append(&d.join("policy.caps"), "allow random.bytes\n")
        }),
        ("a tools.json added", |d| {
            fs::write(d.join(TOOLS_FILE), "[]").unwrap()
        }),
        ("a policy comment", |d| {
            append(&d.join("policy.caps"), "# hi\n")
        }),
        ("the signature's bytes", |d| {
            let path = d.join(SIGNATURE_FILE);
            let text = fs::read_to_string(&path).unwrap();
            let at = text.find("signature = \"").unwrap() + "signature = \"".len();
            let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
            fs::write(
                &path,
                format!("{}{flipped}{}", &text[..at], &text[at + 1..]),
            )
            .unwrap();
        }),
        ("module and its digest in the manifest", |d| {
            let wasm = d.join("agent.wasm");
            let mut bytes = fs::read(&wasm).unwrap();
            let old = Digest::of(&bytes).to_hex();
            // A custom section: still a valid module, another digest.
            bytes.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
            fs::write(&wasm, &bytes).unwrap();
            let manifest = d.join("manifest.toml");
            let text = fs::read_to_string(&manifest).unwrap();
            fs::write(&manifest, text.replace(&old, &Digest::of(&bytes).to_hex())).unwrap();
        }),
    ];
    for (what, tamper) in tampers {
        let (_tmp, dir) = echo(Some(&signer));
        tamper(&dir);
        let error = Bundle::load(&dir, &policy).unwrap_err();
        assert!(
            matches!(error, LoadError::BadSignature { .. }),
            "{what}: {error:?}"
        );
        assert_eq!(error.name(), "BadSignature");
        assert!(
            error.to_string().contains("changed after signing"),
            "{error}"
        );
        // Allowing unsigned agents never lets a broken signature through.
        let error = Bundle::load(&dir, &policy.clone().allowing_unsigned(true)).unwrap_err();
        assert!(matches!(error, LoadError::BadSignature { .. }), "{what}");
    }

    // A signed tools.json is covered too.
    let (_tmp, dir) = echo(None);
    fs::write(dir.join(TOOLS_FILE), "[]").unwrap();
    sign::sign(&dir, &signer).unwrap();
    Bundle::load(&dir, &policy).unwrap();
    fs::write(dir.join(TOOLS_FILE), "[{}]").unwrap();
    assert!(matches!(
        Bundle::load(&dir, &policy),
        Err(LoadError::BadSignature { .. })
    ));

    // The module alone changed: its digest no longer matches the signed manifest.
    let (_tmp, dir) = echo(Some(&signer));
    append(&dir.join("agent.wasm"), "\0");
    assert!(matches!(
        Bundle::load(&dir, &policy),
        Err(LoadError::DigestMismatch { .. })
    ));
}

#[test]
fn a_signature_naming_another_key_is_refused() {
    let (signer, other) = (key(3), key(4));
    let (_tmp, dir) = echo(Some(&signer));
    // Swap in the other key's public half: the id is made to match, the signature not.
    let path = dir.join(SIGNATURE_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let text = text
        .replace(&signer.public().to_text(), &other.public().to_text())
        .replace(signer.public().id().as_str(), other.public().id().as_str());
    fs::write(&path, text).unwrap();
    assert!(matches!(
        Bundle::load(&dir, &trusting(&other, &[])),
        Err(LoadError::BadSignature { .. })
    ));
    // A key id that is not its key's is a malformed file.
    let (_tmp, dir) = echo(Some(&signer));
    let path = dir.join(SIGNATURE_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace(signer.public().id().as_str(), "0000000000000000"),
    )
    .unwrap();
    assert!(matches!(
        Bundle::load(&dir, &trusting(&signer, &[])),
        Err(LoadError::SignatureFile { .. })
    ));
}

#[test]
fn a_key_that_is_no_root_is_untrusted() {
    let (signer, trusted) = (key(5), key(6));
    let (_tmp, dir) = echo(Some(&signer));
    let error = Bundle::load(&dir, &trusting(&trusted, &[])).unwrap_err();
    match &error {
        LoadError::Untrusted { key_id, .. } => assert_eq!(key_id, &signer.public().id()),
        other => panic!("expected untrusted, got {other:?}"),
    }
    assert!(error.is_untrusted());
    assert!(error.to_string().contains("rlp trust add"), "{error}");
    // The default policy trusts only the project key.
    assert!(matches!(
        Bundle::load(&dir, &TrustPolicy::default()),
        Err(LoadError::Untrusted { .. })
    ));
}

#[test]
fn a_root_signs_only_inside_its_scopes() {
    let signer = key(7);
    let (_tmp, dir) = echo(Some(&signer));
    let error = Bundle::load(&dir, &trusting(&signer, &["mail*", "writer"])).unwrap_err();
    match &error {
        LoadError::OutOfScope { agent, scopes, .. } => {
            assert_eq!(agent, "echo");
            assert_eq!(scopes, "mail*, writer");
        }
        other => panic!("expected out of scope, got {other:?}"),
    }
    assert!(error.to_string().contains("--scope echo"), "{error}");
    Bundle::load(&dir, &trusting(&signer, &["mail*", "e*o"])).unwrap();
}

#[test]
fn unsigned_is_refused_unless_allowed_and_then_warned() {
    let (_tmp, dir) = echo(None);
    let error = Bundle::load(&dir, &TrustPolicy::default()).unwrap_err();
    assert!(matches!(error, LoadError::Unsigned { .. }), "{error:?}");
    assert!(
        error.to_string().contains("security.allow_unsigned_agents"),
        "{error}"
    );
    let bundle = Bundle::load(&dir, &TrustPolicy::permissive()).unwrap();
    let warning = bundle.provenance().warning().expect("a warning");
    assert!(warning.contains("not signed"), "{warning}");

    // Signed by a stranger: loads with the warning when allowed.
    let (_tmp, dir) = echo(Some(&key(8)));
    let bundle = Bundle::load(&dir, &TrustPolicy::permissive()).unwrap();
    assert!(matches!(bundle.provenance(), Provenance::Allowed { .. }));
    // Inspecting (no trust asked) still checks the signature.
    assert!(matches!(
        Bundle::load_untrusted(&dir).unwrap().provenance(),
        Provenance::Verified { .. }
    ));
}

#[test]
fn packing_keeps_a_valid_signature_and_drops_a_stale_one() {
    let signer = key(9);
    let policy = trusting(&signer, &[]);
    let (_tmp, dir) = echo(Some(&signer));
    let crate_dir = repo().join("agents/echo");
    let wasm = repo().join("agents/bundles/echo/agent.wasm");
    // The same bytes again: still signed.
    pack::pack(&crate_dir, &wasm, &dir).unwrap();
    Bundle::load(&dir, &policy).unwrap();
    // Other bytes: the old signature no longer covers them and is removed.
    let other = dir.parent().unwrap().join("other.wasm");
    let mut bytes = fs::read(&wasm).unwrap();
    bytes.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
    fs::write(&other, bytes).unwrap();
    pack::pack(&crate_dir, &other, &dir).unwrap();
    assert!(!dir.join(SIGNATURE_FILE).exists());
    assert!(matches!(
        Bundle::load(&dir, &policy),
        Err(LoadError::Unsigned { .. })
    ));
}

#[test]
fn the_project_key_file_is_the_built_in_root() {
    let text = fs::read_to_string(repo().join("packaging/keys/runloop-project.pub")).unwrap();
    let key = PublicKey::parse(&text, "project key").unwrap();
    assert_eq!(key, runloop_bundle::trust::project_key());
    // Its secret half is never in the repository.
    let tracked = std::process::Command::new("git")
        .args([
            "-C",
            repo().to_str().unwrap(),
            "grep",
            "-l",
            "runloop-ed25519-secret:[0-9a-f]",
        ])
        .output();
    if let Ok(out) = tracked {
        assert!(
            out.stdout.is_empty(),
            "a secret key is committed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
