//! Loading bundles: the committed canonical bundles load, and every way a bundle can be
//! wrong (tampered module, bad manifest, bad policy, oversized files, non-ABI modules)
//! gives its specific error. Real files in real temporary directories.

use std::fs;
use std::path::{Path, PathBuf};

use runloop_bundle::caps::CapsErrorKind;
use runloop_bundle::{
    AbiError, Bundle, Digest, LoadError, ManifestError, Op, Provenance, TrustPolicy,
    WASM_BYTES_MAX, abi, pack,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn committed(name: &str) -> PathBuf {
    repo().join("agents/bundles").join(name)
}

/// The policy for the unsigned scratch bundles below: these tests are about the checks
/// after the signature's (tests/signing.rs covers signatures).
fn unsigned_ok() -> TrustPolicy {
    TrustPolicy::permissive()
}

/// A scratch copy of the committed echo bundle, without its signature.
fn echo_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("echo");
    fs::create_dir(&dir).unwrap();
    for file in ["manifest.toml", "policy.caps", "agent.wasm"] {
        fs::copy(committed("echo").join(file), dir.join(file)).unwrap();
    }
    (tmp, dir)
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_committed_bundles_load() {
    let digests = fs::read_to_string(repo().join("agents/bundles/DIGESTS")).unwrap();
    for name in [
        "echo",
        "hostcalls",
        "panicker",
        "alloc_bomb",
        "flaky",
        "contact_resolver",
        "context_gatherer",
        "writer",
        "critic",
        "mailer",
    ] {
        // Signed by the project key, which the default policy trusts.
        let bundle = Bundle::load(&committed(name), &TrustPolicy::default()).unwrap();
        assert!(
            matches!(bundle.provenance(), Provenance::Trusted { root, .. } if root == "runloop-project"),
            "{name}: {:?}",
            bundle.provenance()
        );
        assert_eq!(bundle.manifest().name().as_str(), name);
        let line = format!("{}  {name}", bundle.manifest().wasm_blake3());
        assert!(digests.lines().any(|l| l == line), "DIGESTS lacks {line}");
    }
    let echo = Bundle::load(&committed("echo"), &TrustPolicy::default()).unwrap();
    assert_eq!(
        echo.policy().ops().collect::<Vec<_>>(),
        [Op::ClockNow, Op::Log]
    );
    assert_eq!(echo.manifest().ports_out()[0].as_str(), "out");
    assert_eq!(Digest::of(echo.wasm()), echo.manifest().wasm_blake3());
}

#[test]
fn a_tampered_module_never_loads() {
    let (_tmp, dir) = echo_copy();
    let path = dir.join("agent.wasm");
    let mut wasm = fs::read(&path).unwrap();
    let last = wasm.len() - 1;
    wasm[last] ^= 1;
    fs::write(&path, &wasm).unwrap();
    match Bundle::load(&dir, &unsigned_ok()) {
        Err(LoadError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_ne!(expected, actual);
            assert_eq!(actual, Digest::of(&wasm));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

#[test]
fn missing_files_are_read_errors() {
    for file in ["manifest.toml", "policy.caps", "agent.wasm"] {
        let (_tmp, dir) = echo_copy();
        fs::remove_file(dir.join(file)).unwrap();
        match Bundle::load(&dir, &unsigned_ok()) {
            Err(LoadError::Read { path, .. }) => assert!(path.ends_with(file)),
            other => panic!("{file}: expected a read error, got {other:?}"),
        }
    }
}

fn manifest_error(from: &str, to: &str) -> LoadError {
    let (_tmp, dir) = echo_copy();
    edit(&dir, "manifest.toml", from, to);
    Bundle::load(&dir, &unsigned_ok()).unwrap_err()
}

#[test]
fn bad_manifests_are_refused_by_field() {
    let cases: Vec<(&str, &str, ManifestError)> = vec![
        (
            "abi = 1",
            "abi = 2",
            ManifestError::AbiUnsupported { found: 2 },
        ),
        (
            "name = \"echo\"",
            "name = \"Echo\"",
            ManifestError::BadName {
                field: "name",
                value: "Echo".into(),
                reason: "must start with a lowercase letter",
            },
        ),
        (
            "version = \"0.1.0\"",
            "version = \"1\"",
            ManifestError::BadVersion { value: "1".into() },
        ),
        (
            "out = [\"out\"]",
            "out = []",
            ManifestError::NoPorts { direction: "out" },
        ),
        (
            "in = [\"in\"]",
            "in = [\"in\", \"in\"]",
            ManifestError::DuplicatePort {
                direction: "in",
                port: "in".into(),
            },
        ),
        (
            "caps = \"policy.caps\"",
            "caps = \"../policy.caps\"",
            ManifestError::BadFileName {
                field: "caps",
                value: "../policy.caps".into(),
            },
        ),
        (
            "wasm = \"agent.wasm\"",
            "wasm = \"/etc/passwd\"",
            ManifestError::BadFileName {
                field: "entry.wasm",
                value: "/etc/passwd".into(),
            },
        ),
        (
            "blake3 = \"",
            "blake3 = \"zz",
            ManifestError::BadDigest {
                value: String::new(),
            },
        ),
    ];
    for (from, to, expected) in cases {
        match manifest_error(from, to) {
            LoadError::Manifest { source, .. } => match (&source, &expected) {
                (ManifestError::BadDigest { .. }, ManifestError::BadDigest { .. }) => {}
                _ => assert_eq!(source, expected, "{to}"),
            },
            other => panic!("{to}: expected a manifest error, got {other:?}"),
        }
    }
}

#[test]
fn manifest_syntax_and_unknown_keys_are_refused() {
    for (from, to) in [
        ("abi = 1", "abi = 1\nsignature = \"x\""),
        ("abi = 1", "abi = "),
        ("[entry]", "[entry]\nsize = 3"),
        ("name = \"echo\"\n", ""),
    ] {
        match manifest_error(from, to) {
            LoadError::ManifestSyntax { path, .. } => assert!(path.ends_with("manifest.toml")),
            other => panic!("{to:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn a_bad_policy_line_is_refused_with_its_number() {
    let (_tmp, dir) = echo_copy();
    edit(
        &dir,
        "policy.caps",
        "allow clock.now",
        "allow clock.now\nallow fs.write",
    );
    match Bundle::load(&dir, &unsigned_ok()) {
        Err(LoadError::Caps { source, .. }) => {
            assert_eq!(source.line, 5);
            assert_eq!(
                source.kind,
                CapsErrorKind::UnknownOp {
                    op: "fs.write".into()
                }
            );
        }
        other => panic!("expected a caps error, got {other:?}"),
    }
}

#[test]
fn oversized_and_non_text_files_are_refused() {
    let (_tmp, dir) = echo_copy();
    fs::write(dir.join("manifest.toml"), vec![b'#'; 17 * 1024]).unwrap();
    assert!(matches!(
        Bundle::load(&dir, &unsigned_ok()),
        Err(LoadError::TooLarge { max: 16384, .. })
    ));

    let (_tmp, dir) = echo_copy();
    fs::write(dir.join("policy.caps"), [0xff, 0xfe, b'\n']).unwrap();
    assert!(matches!(
        Bundle::load(&dir, &unsigned_ok()),
        Err(LoadError::NotText { .. })
    ));

    let (_tmp, dir) = echo_copy();
    let file = fs::File::create(dir.join("agent.wasm")).unwrap();
    file.set_len(WASM_BYTES_MAX + 1).unwrap();
    assert!(matches!(
        Bundle::load(&dir, &unsigned_ok()),
        Err(LoadError::TooLarge {
            max: WASM_BYTES_MAX,
            ..
        })
    ));
}

/// A module with the ABI's shape, from WAT; `extra` is spliced into the module.
fn module(imports: &str, exports: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            {exports})"#
    ))
    .unwrap()
}

const GOOD_IMPORTS: &str = r#"
    (import "runloop" "output" (func (param i32 i32)))
    (import "runloop" "fail" (func (param i32 i32)))
    (import "runloop" "host_call" (func (param i32 i32) (result i32)))
    (import "runloop" "host_reply" (func (param i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;
const GOOD_EXPORTS: &str = r#"
    (func (export "runloop_abi_v1"))
    (func (export "runloop_alloc") (param i32) (result i32) i32.const 0)
    (func (export "runloop_handle") (param i32 i32) (result i32) i32.const 0)"#;

#[test]
fn the_abi_check_accepts_the_abi_and_nothing_else() {
    assert_eq!(abi::check(&module(GOOD_IMPORTS, GOOD_EXPORTS)), Ok(()));
    assert_eq!(abi::check(&module("", GOOD_EXPORTS)), Ok(()));

    assert!(matches!(
        abi::check(b"\0asm\x01\0\0\0\xff"),
        Err(AbiError::Invalid { .. })
    ));
    assert!(matches!(
        abi::check(b"not wasm"),
        Err(AbiError::Invalid { .. })
    ));

    let no_marker = GOOD_EXPORTS.replace("(export \"runloop_abi_v1\")", "");
    assert_eq!(
        abi::check(&module("", &no_marker)),
        Err(AbiError::MissingExport {
            name: "runloop_abi_v1"
        })
    );
    let bad_alloc = GOOD_EXPORTS.replace(
        "(param i32) (result i32) i32.const 0",
        "(param i64) (result i32) i32.const 0",
    );
    assert!(matches!(
        abi::check(&module("", &bad_alloc)),
        Err(AbiError::BadExport {
            name: "runloop_alloc",
            ..
        })
    ));
    let no_memory = wat::parse_str(format!("(module {GOOD_EXPORTS})")).unwrap();
    assert_eq!(
        abi::check(&no_memory),
        Err(AbiError::MissingExport { name: "memory" })
    );

    let socket = r#"(import "env" "connect" (func (param i32)))"#;
    assert_eq!(
        abi::check(&module(socket, GOOD_EXPORTS)),
        Err(AbiError::ForbiddenImport {
            module: "env".into(),
            name: "connect".into()
        })
    );
    let unknown = r#"(import "runloop" "exec" (func))"#;
    assert!(matches!(
        abi::check(&module(unknown, GOOD_EXPORTS)),
        Err(AbiError::ForbiddenImport { .. })
    ));
    let wrong_sig = r#"(import "runloop" "host_call" (func (param i32 i32)))"#;
    assert!(matches!(
        abi::check(&module(wrong_sig, GOOD_EXPORTS)),
        Err(AbiError::BadImport { .. })
    ));
    let wasi_memory = r#"(import "wasi_snapshot_preview1" "mem" (global i32))"#;
    assert!(matches!(
        abi::check(&module(wasi_memory, GOOD_EXPORTS)),
        Err(AbiError::BadImport { .. })
    ));
}

#[test]
fn the_committed_modules_speak_the_abi() {
    for name in ["echo", "hostcalls", "panicker", "alloc_bomb"] {
        let wasm = fs::read(committed(name).join("agent.wasm")).unwrap();
        assert_eq!(abi::check(&wasm), Ok(()), "{name}");
    }
}

#[test]
fn packing_writes_a_bundle_that_loads_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("echo");
    let wasm = committed("echo").join("agent.wasm");
    let bundle = pack::pack(&repo().join("agents/echo"), &wasm, &out).unwrap();
    let again = Bundle::load(&out, &unsigned_ok()).unwrap();
    assert_eq!(bundle.manifest(), again.manifest());
    assert_eq!(
        fs::read(out.join("manifest.toml")).unwrap(),
        fs::read(committed("echo").join("manifest.toml")).unwrap(),
        "packing is deterministic and matches the committed manifest"
    );

    let not_abi = tmp.path().join("plain.wasm");
    fs::write(&not_abi, wat::parse_str("(module)").unwrap()).unwrap();
    assert!(matches!(
        pack::pack(&repo().join("agents/echo"), &not_abi, &tmp.path().join("x")),
        Err(pack::PackError::Abi { .. })
    ));
    assert!(
        !tmp.path().join("x").exists(),
        "nothing is written for a bad module"
    );

    assert!(matches!(
        pack::pack(&tmp.path().join("no-crate"), &wasm, &tmp.path().join("y")),
        Err(pack::PackError::Read(LoadError::Read { .. }))
    ));
}

#[test]
fn the_abi_verdict_is_remembered_only_for_modules_that_passed() {
    // A module that fails the ABI check fails it at every load: a refusal is never
    // remembered, so nothing can turn it into a pass.
    let (_tmp, dir) = echo_copy();
    let plain = wat::parse_str("(module)").unwrap();
    fs::write(dir.join("agent.wasm"), &plain).unwrap();
    let echo_digest = Digest::of(&fs::read(committed("echo").join("agent.wasm")).unwrap());
    edit(
        &dir,
        "manifest.toml",
        &echo_digest.to_hex(),
        &Digest::of(&plain).to_hex(),
    );
    for _ in 0..2 {
        assert!(matches!(
            Bundle::load(&dir, &unsigned_ok()),
            Err(LoadError::Abi { .. })
        ));
        assert!(!abi::is_known(&Digest::of(&plain)));
    }
    // A module that passed is known by the digest of its bytes, and loads again.
    let echo = Bundle::load(&committed("echo"), &TrustPolicy::default()).unwrap();
    assert!(abi::is_known(&Digest::of(echo.wasm())));
    Bundle::load(&committed("echo"), &TrustPolicy::default()).unwrap();
    // Changed bytes are a different digest: refused by the digest check before the ABI's
    // verdict is looked up (a_tampered_module_never_loads), and unknown to it.
    let mut tampered = echo.wasm().to_vec();
    tampered[0] ^= 1;
    assert!(!abi::is_known(&Digest::of(&tampered)));
}
