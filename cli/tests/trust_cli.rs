//! Signed bundles from the command line, as a person uses them: `rlp agent keygen`, `sign`,
//! `rlp trust add|ls|remove`, `rlp agent install` (directory and `.tar.gz`), upgrade and
//! `rollback`, and every refusal with exit 2 and its reason: unsigned, untrusted,
//! tampered, unconfirmed. Each test has its own `HOME`; no daemon, no sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn home(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlp-trust-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rlp_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rlp"));
    command
        .args(args)
        .env("HOME", home)
        .env_remove("RUNLOOP_BUNDLES_DIR")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run rlp")
}

fn rlp(home: &Path, args: &[&str]) -> Output {
    rlp_env(home, args, &[])
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Exit 2, with `name` and `reason` on stderr.
fn refused(out: &Output, name: &str, reason: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(name), "want {name}: {}", text(out));
    assert!(err.contains(reason), "want {reason:?}: {}", text(out));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An unsigned copy of the committed echo bundle at `to`, with `version`.
fn echo(to: &Path, version: &str) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/bundles/echo");
    std::fs::create_dir_all(to).unwrap();
    for file in ["manifest.toml", "policy.caps", "agent.wasm"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    let manifest = to.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("version = \"0.1.0\"", &format!("version = \"{version}\"")),
    )
    .unwrap();
}

fn installed_version(home: &Path) -> String {
    let out = rlp(home, &["agent", "ls", "--installed", "--json"]);
    let v = ok(&out);
    let echo = v["installed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(
        echo["dir"],
        p(&home.join(".runloop/agents/echo")),
        "the installed echo comes first on the search path: {echo}"
    );
    echo["version"].as_str().unwrap().to_owned()
}

#[test]
fn keygen_sign_trust_install_upgrade_and_rollback() {
    let home = home("flow");
    let key = home.join("keys/dev.key");
    let keys = ok(&rlp(
        &home,
        &["agent", "keygen", "--out", p(&key), "--json"],
    ));
    let key_id = keys["key_id"].as_str().unwrap().to_owned();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    refused(
        &rlp(&home, &["agent", "keygen", "--out", p(&key)]),
        "KeyExists",
        "--force",
    );

    let v1 = home.join("src/v1/echo");
    echo(&v1, "0.1.0");
    refused(
        &rlp(&home, &["agent", "install", p(&v1), "--yes"]),
        "Unsigned",
        "security.allow_unsigned_agents",
    );
    ok(&rlp(&home, &["agent", "sign", p(&v1), "--key", p(&key)]));
    refused(
        &rlp(&home, &["agent", "install", p(&v1), "--yes"]),
        "Untrusted",
        "rlp trust add",
    );

    // Trusted for `ech*` only.
    let pub_key = format!("{}.pub", p(&key));
    ok(&rlp(
        &home,
        &["trust", "add", &pub_key, "--name", "dev", "--scope", "ech*"],
    ));
    let roots = ok(&rlp(&home, &["trust", "ls", "--json"]));
    let roots = roots["roots"].as_array().unwrap();
    assert!(roots.iter().any(|r| r["builtin"] == true), "{roots:?}");
    assert!(
        roots
            .iter()
            .any(|r| r["key_id"] == key_id.as_str() && r["scopes"] == serde_json::json!(["ech*"])),
        "{roots:?}"
    );

    // Without a terminal, installing needs --yes; the capabilities were shown.
    let out = rlp(&home, &["agent", "install", p(&v1)]);
    refused(&out, "NotConfirmed", "--yes");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allow clock.now"),
        "{}",
        text(&out)
    );

    let done = ok(&rlp(
        &home,
        &["agent", "install", p(&v1), "--yes", "--json"],
    ));
    assert_eq!(done["name"], "echo");
    assert_eq!(done["signed_by"], key_id.as_str());
    assert_eq!(done["root"], "dev");
    assert_eq!(installed_version(&home), "0.1.0");
    let listed = ok(&rlp(&home, &["agent", "ls", "--installed", "--json"]));
    let rows = listed["installed"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    assert_eq!(row("echo")["trust_root"], "dev");
    assert_eq!(row("mailer")["trust_root"], "runloop-project");
    ok(&rlp(
        &home,
        &["agent", "verify", p(&home.join(".runloop/agents/echo"))],
    ));

    // Upgrade, from a .tar.gz this time: the previous version is kept.
    let v2 = home.join("src/v2/echo");
    echo(&v2, "0.2.0");
    ok(&rlp(&home, &["agent", "sign", p(&v2), "--key", p(&key)]));
    let tarball = home.join("echo-0.2.0.tar.gz");
    let tar = Command::new("tar")
        .args(["-czf", p(&tarball), "-C", p(v2.parent().unwrap()), "echo"])
        .status()
        .unwrap();
    assert!(tar.success());
    let up = ok(&rlp(
        &home,
        &["agent", "install", p(&tarball), "--yes", "--json"],
    ));
    assert_eq!(up["version"], "0.2.0");
    assert!(
        up["previous"].as_str().unwrap().starts_with("0.1.0-"),
        "{up}"
    );
    assert_eq!(installed_version(&home), "0.2.0");

    ok(&rlp(&home, &["agent", "rollback", "echo"]));
    assert_eq!(installed_version(&home), "0.1.0");
    ok(&rlp(&home, &["agent", "rollback", "echo"]));
    assert_eq!(installed_version(&home), "0.2.0");
    refused(
        &rlp(&home, &["agent", "rollback", "writer"]),
        "NoPrevious",
        "no previous version",
    );

    // A bundle changed after signing is refused at install, directory or archive…
    let tampered = home.join("src/bad/echo");
    echo(&tampered, "0.3.0");
    ok(&rlp(
        &home,
        &["agent", "sign", p(&tampered), "--key", p(&key)],
    ));
    let caps = tampered.join("policy.caps");
    let widened = std::fs::read_to_string(&caps).unwrap() + "allow random.bytes\n";
    std::fs::write(&caps, widened).unwrap();
    refused(
        &rlp(&home, &["agent", "install", p(&tampered), "--yes"]),
        "BadSignature",
        "changed after signing",
    );
    let bad_tar = home.join("bad.tar.gz");
    let tar = Command::new("tar")
        .args([
            "-czf",
            p(&bad_tar),
            "-C",
            p(tampered.parent().unwrap()),
            "echo",
        ])
        .status()
        .unwrap();
    assert!(tar.success());
    refused(
        &rlp(&home, &["agent", "install", p(&bad_tar), "--yes"]),
        "BadSignature",
        "changed after signing",
    );
    assert_eq!(installed_version(&home), "0.2.0", "nothing was installed");

    // …and after install: the installed copy changed is refused when loaded.
    let installed = std::fs::canonicalize(home.join(".runloop/agents/echo")).unwrap();
    let caps = installed.join("policy.caps");
    let widened = std::fs::read_to_string(&caps).unwrap() + "allow random.bytes\n";
    std::fs::write(&caps, widened).unwrap();
    refused(
        &rlp(
            &home,
            &["agent", "verify", p(&home.join(".runloop/agents/echo"))],
        ),
        "BadSignature",
        "changed after signing",
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn unsigned_bundles_install_only_when_config_allows_and_are_warned() {
    let home = home("unsigned");
    let src = home.join("src/echo");
    echo(&src, "0.1.0");
    refused(
        &rlp(&home, &["agent", "install", p(&src), "--yes"]),
        "Unsigned",
        "rlp agent sign",
    );
    let config = home.join("allow.yaml");
    std::fs::write(&config, "security:\n  allow_unsigned_agents: true\n").unwrap();
    let out = rlp(
        &home,
        &["agent", "install", p(&src), "--yes", "--config", p(&config)],
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("allow_unsigned_agents"),
        "{}",
        text(&out)
    );
    // Every later load warns too; without the flag the installed bundle is refused.
    let out = rlp_env(
        &home,
        &["agent", "verify", p(&home.join(".runloop/agents/echo"))],
        &[("RUNLOOP__SECURITY__ALLOW_UNSIGNED_AGENTS", "true")],
    );
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        text(&out)
    );
    refused(
        &rlp(
            &home,
            &["agent", "verify", p(&home.join(".runloop/agents/echo"))],
        ),
        "Unsigned",
        "not signed",
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn trust_add_and_remove_edit_the_config_and_refuse_bad_input() {
    let home = home("roots");
    let key = home.join("k.key");
    let keys = ok(&rlp(
        &home,
        &["agent", "keygen", "--out", p(&key), "--json"],
    ));
    let id = keys["key_id"].as_str().unwrap().to_owned();
    let public = keys["public_key"].as_str().unwrap().to_owned();
    // The key text works as well as its file; adding again replaces.
    ok(&rlp(&home, &["trust", "add", &public, "--scope", "mail*"]));
    ok(&rlp(
        &home,
        &["trust", "add", &public, "--name", "mail team"],
    ));
    let roots = ok(&rlp(&home, &["trust", "ls", "--json"]));
    let mine: Vec<_> = roots["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{roots}");
    assert_eq!(mine[0]["name"], "mail team");
    assert_eq!(mine[0]["scopes"], serde_json::json!(["*"]));

    refused(
        &rlp(&home, &["trust", "add", "runloop-ed25519:abcd"]),
        "BadKey",
        "64 hex",
    );
    refused(
        &rlp(&home, &["trust", "add", &public, "--scope", "Mail/*"]),
        "BadScope",
        "glob",
    );
    let builtin = roots["roots"][0]["key_id"].as_str().unwrap().to_owned();
    refused(
        &rlp(&home, &["trust", "remove", &builtin]),
        "BuiltIn",
        "cannot be removed",
    );
    ok(&rlp(&home, &["trust", "remove", &id]));
    refused(
        &rlp(&home, &["trust", "remove", &id]),
        "NoSuchKey",
        "rlp trust ls",
    );
    let roots = ok(&rlp(&home, &["trust", "ls", "--json"]));
    assert_eq!(roots["roots"].as_array().unwrap().len(), 1, "{roots}");
    let _ = std::fs::remove_dir_all(&home);
}

/// `rlp agent install` on a terminal: the capabilities, then a question; `y` installs,
/// anything else refuses. The terminal is a real pty made by util-linux's `script`.
#[test]
fn install_asks_on_a_terminal() {
    let home = home("tty");
    let on_tty = |bundle: &str, answer: &str| {
        let command = format!("{} agent install {bundle}", env!("CARGO_BIN_EXE_rlp"));
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("HOME", &home)
            .env_remove("RUNLOOP_BUNDLES_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux script");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/bundles");
    let out = on_tty(p(&bundles.join("writer")), "n\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("allow model.complete"), "{screen}");
    assert!(screen.contains("install writer 0.1.0? [y/N]"), "{screen}");
    assert!(!home.join(".runloop/agents/writer").exists());
    let out = on_tty(p(&bundles.join("writer")), "y\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(home.join(".runloop/agents/writer/manifest.toml").is_file());
    let _ = std::fs::remove_dir_all(&home);
}

/// The text of the public key whose secret seed is 32 bytes of `seed` (test keys only).
fn test_key(seed: u8) -> (String, String) {
    let public = runloop_bundle::SecretKey::from_seed([seed; 32]).public();
    (public.to_text(), public.id().to_string())
}

/// Every line of `text` holding a comment.
fn comments(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains('#')).collect()
}

/// `rlp trust ls --json --config FILE`: the key ids of the roots from config.
fn config_roots(home: &Path, config: &Path) -> Vec<String> {
    let roots = ok(&rlp(
        home,
        &["trust", "ls", "--json", "--config", p(config)],
    ));
    roots["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["builtin"] == false)
        .map(|r| r["key_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `trust add|remove` edit only `security.trust_roots`: every comment, before, after and
/// inside other sections and inside the list itself, stays where it was; where the list
/// is block YAML, adding a key and removing it again gives the file back byte for byte.
#[test]
fn trust_add_and_remove_keep_comments_and_layout() {
    let home = home("comments");
    let (kept, kept_id) = test_key(3);
    let (added, added_id) = test_key(4);
    let (other, other_id) = test_key(5);
    let full = format!(
        "# Runloop config: the header comment\nversion: 1   # always 1\n\n\
         runtime:\n  # a comment inside runtime\n  require_cgroups: false\n\n\
         security:\n  # before the list\n  confirm_external_actions: true  # ask first\n  \
         trust_roots:   # the keys we trust\n    # about every key below\n    \
         - key: \"{kept}\"\n      # inside an entry\n      name: kept   # trailing\n      \
         scopes: [\"mail*\"]\n  # about the switch\n  allow_unsigned_agents: false\n\
         # between sections\nrouter:\n  allowlist: [\"ls\"]  # shell words\n# the last line\n"
    );
    let same_indent = format!(
        "security:\n  trust_roots:\n  # the kept key\n  - key: \"{kept}\"\n  \
         allow_unsigned_agents: false # after\n# end\n"
    );
    let no_roots = "# top\nsecurity:\n  # only the switch\n  allow_unsigned_agents: false\n\n\
                    # after security\nlogging:\n  level: info # loud enough\n"
        .to_owned();
    let no_security =
        "# nothing about trust here\nlogging:\n  level: info  # quiet\n# end".to_owned();
    let inline =
        "security:\n  trust_roots: []\n  allow_unsigned_agents: false  # keep\n# end\n".to_owned();
    // (name, text, the file comes back byte for byte after add and remove)
    let cases = [
        ("full", full, true),
        ("same_indent", same_indent, true),
        ("no_roots", no_roots, false),
        ("no_security", no_security, false),
        ("inline", inline, true),
    ];
    for (name, text, round_trips) in cases {
        let config = home.join(format!("{name}.yaml"));
        std::fs::write(&config, &text).unwrap();
        let before = config_roots(&home, &config);
        ok(&rlp(
            &home,
            &[
                "trust",
                "add",
                &added,
                "--name",
                "new one",
                "--scope",
                "echo",
                "--config",
                p(&config),
            ],
        ));
        // Adding a key again replaces its entry; adding another appends.
        ok(&rlp(
            &home,
            &["trust", "add", &added, "--config", p(&config)],
        ));
        ok(&rlp(
            &home,
            &["trust", "add", &other, "--config", p(&config)],
        ));
        let edited = std::fs::read_to_string(&config).unwrap();
        for line in comments(&text) {
            assert!(
                edited.lines().any(|l| l == line),
                "{name}: lost {line:?}:\n{edited}"
            );
        }
        let mut want = before.clone();
        want.extend([added_id.clone(), other_id.clone()]);
        assert_eq!(config_roots(&home, &config), want, "{name}:\n{edited}");
        ok(&rlp(
            &home,
            &["trust", "remove", &other_id, "--config", p(&config)],
        ));
        ok(&rlp(
            &home,
            &["trust", "remove", &added_id, "--config", p(&config)],
        ));
        let after = std::fs::read_to_string(&config).unwrap();
        assert_eq!(config_roots(&home, &config), before, "{name}:\n{after}");
        for line in comments(&text) {
            assert!(
                after.lines().any(|l| l == line),
                "{name}: lost {line:?}:\n{after}"
            );
        }
        if round_trips {
            assert_eq!(after, text, "{name}: add then remove changed the file");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    }
    assert_eq!(config_roots(&home, &home.join("full.yaml")), vec![kept_id]);

    // A layout not edited in place (flow-style security) still gets a valid file, with a
    // note that its comments went.
    let flow = home.join("flow.yaml");
    std::fs::write(&flow, "# gone\nsecurity: {allow_unsigned_agents: false}\n").unwrap();
    let out = rlp(&home, &["trust", "add", &added, "--config", p(&flow)]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without its comments"),
        "{}",
        text(&out)
    );
    assert_eq!(config_roots(&home, &flow), vec![added_id.clone()]);

    // A file the config loader refuses is left as it was.
    let bad = home.join("bad.yaml");
    let bad_text = "# mine\nsecurity:\n  colour: red\n";
    std::fs::write(&bad, bad_text).unwrap();
    refused(
        &rlp(&home, &["trust", "add", &added, "--config", p(&bad)]),
        "Config",
        "security.colour",
    );
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), bad_text);
    let _ = std::fs::remove_dir_all(&home);
}

/// Two `rlp agent install`s of the same agent at once take turns on the agents
/// directory's lock: both finish, one version is current and the other previous, and
/// only those two are kept.
#[test]
fn concurrent_installs_of_one_agent_take_turns() {
    let home = home("concurrent");
    let key = home.join("dev.key");
    ok(&rlp(&home, &["agent", "keygen", "--out", p(&key)]));
    ok(&rlp(&home, &["trust", "add", &format!("{}.pub", p(&key))]));
    for round in [["0.1.0", "0.2.0"], ["0.3.0", "0.4.0"]] {
        let dirs: Vec<PathBuf> = round
            .iter()
            .map(|version| {
                let dir = home.join(format!("src/{version}/echo"));
                echo(&dir, version);
                ok(&rlp(&home, &["agent", "sign", p(&dir), "--key", p(&key)]));
                dir
            })
            .collect();
        let children: Vec<_> = dirs
            .iter()
            .map(|dir| {
                Command::new(env!("CARGO_BIN_EXE_rlp"))
                    .args(["agent", "install", p(dir), "--yes", "--json"])
                    .env("HOME", &home)
                    .env_remove("RUNLOOP_BUNDLES_DIR")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run rlp")
            })
            .collect();
        for child in children {
            ok(&child.wait_with_output().unwrap());
        }
        let current = installed_version(&home);
        let store = home.join(".runloop/agents/.store/echo");
        let previous = std::fs::read_link(store.join("previous")).unwrap();
        let previous = previous.to_str().unwrap();
        let other = if current == round[0] {
            round[1]
        } else {
            round[0]
        };
        assert!(round.contains(&current.as_str()), "{current} {round:?}");
        assert!(
            previous.starts_with(&format!("{other}-")),
            "{previous} {current}"
        );
        let mut versions: Vec<String> = std::fs::read_dir(&store)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        versions.sort();
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert!(
            versions
                .iter()
                .all(|v| round.iter().any(|r| v.starts_with(r))),
            "{versions:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}
