//! `rlp cap grant|ls|revoke` from the command line, through an embedded kernel on a real
//! POG under a per-test `HOME` (each command boots one; grants persist between them):
//! human and `--json` output, config's `security.grants`, and every refusal with exit 2
//! and its reason. The grants' effect on host calls is tested on a live kernel in
//! kernel/core/tests/cap_grants.rs.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::{home, json_of, rlp_command, text};
use serde_json::Value;

fn rlp(home: &Path, args: &[&str]) -> Output {
    rlp_command(home, None, args)
        .env("USER", "tester")
        .stdin(Stdio::null())
        .output()
        .expect("run rlp")
}

fn json_ok(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    json_of(out)
}

/// Exit 2 with `{"error": name}` on stdout (`--json`) and `reason` in the detail.
fn refused_json(out: &Output, name: &str, reason: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], name, "{}", text(out));
    assert!(
        v["detail"].as_str().unwrap().contains(reason),
        "want {reason:?}: {}",
        text(out)
    );
}

#[test]
fn grant_list_revoke_and_every_refusal() {
    let home = home("rlp-cap", "flow");
    // Human output: the id, the change, the time left, how to revoke, which kernel.
    let out = rlp(
        &home,
        &[
            "cap",
            "grant",
            "echo",
            "random.bytes",
            "max_len=8",
            "--ttl",
            "10min",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("agent echo may now \"allow random.bytes max_len=8\" (extend) for 10 min"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("revoke with: rlp cap revoke cap-"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source: embedded kernel"),
        "{}",
        text(&out)
    );

    let deny = json_ok(&rlp(
        &home,
        &[
            "cap",
            "grant",
            "mailer",
            "deny effect kind=mail.send",
            "--ttl",
            "5min",
            "--reason",
            "on holiday",
            "--json",
        ],
    ));
    assert_eq!(deny["change"], "narrow");
    assert_eq!(deny["rule"], "deny");
    assert_eq!(deny["by"], "rlp cap (user tester)");
    assert_eq!(deny["reason"], "on holiday");
    assert_eq!(deny["left_ms"], 300_000);
    assert_eq!(deny["source"], "embedded");
    let deny_id = deny["grant_id"].as_str().unwrap().to_owned();

    // Both are listed by a later process: they were recorded in the POG.
    let listed = json_ok(&rlp(&home, &["cap", "ls", "--json"]));
    let grants = listed["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 2, "{listed}");
    assert_eq!(grants[1]["grant_id"], deny_id.as_str());
    let out = rlp(&home, &["cap", "ls"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("GRANT"), "{table}");
    assert!(table.contains("deny effect kind=mail.send"), "{table}");

    // Refusals: exit 2, a stable name, a reason that says what to do.
    refused_json(
        &rlp(
            &home,
            &["cap", "grant", "echo", "effect kind=mail.send", "--json"],
        ),
        "ExtendNotAllowed",
        "add \"effect:mail.send\" to security.grants.extend",
    );
    refused_json(
        &rlp(
            &home,
            &["cap", "grant", "echo", "log", "--ttl", "2w", "--json"],
        ),
        "BadTtl",
        "--ttl \"2w\"",
    );
    refused_json(
        &rlp(
            &home,
            &["cap", "grant", "echo", "log", "--ttl", "3d", "--json"],
        ),
        "BadTtl",
        "security.grants.max_ttl",
    );
    refused_json(
        &rlp(&home, &["cap", "grant", "echo", "allow frob", "--json"]),
        "BadCapability",
        "unknown op \"frob\"",
    );
    refused_json(
        &rlp(&home, &["cap", "grant", "nosuch", "log", "--json"]),
        "NoSuchAgent",
        "no bundle for agent nosuch",
    );
    refused_json(
        &rlp(&home, &["cap", "revoke", "cap-0000", "--json"]),
        "NoSuchGrant",
        "no active grant cap-0000",
    );

    // Revoked: gone from the list, and revoking again is refused.
    let revoked = json_ok(&rlp(&home, &["cap", "revoke", &deny_id, "--json"]));
    assert_eq!(revoked["revoked"], true);
    let listed = json_ok(&rlp(&home, &["cap", "ls", "--json"]));
    assert_eq!(listed["grants"].as_array().unwrap().len(), 1, "{listed}");
    refused_json(
        &rlp(&home, &["cap", "revoke", &deny_id, "--json"]),
        "NoSuchGrant",
        &deny_id,
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn config_security_grants_widens_what_may_be_extended() {
    let home = home("rlp-cap", "config");
    let config = home.join("config.yaml");
    std::fs::write(
        &config,
        "version: 1\nsecurity:\n  grants:\n    extend: [\"effect:*\", \"model.*\"]\n    max_ttl: 2h\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let granted = json_ok(&rlp(
        &home,
        &[
            "cap",
            "grant",
            "echo",
            "effect kind=mail.send",
            "--ttl",
            "2h",
            "--config",
            c,
            "--json",
        ],
    ));
    assert_eq!(granted["change"], "extend");
    refused_json(
        &rlp(
            &home,
            &[
                "cap", "grant", "echo", "log", "--ttl", "3h", "--config", c, "--json",
            ],
        ),
        "BadTtl",
        "2 h",
    );
    // A bad section is named with its key.
    std::fs::write(
        &config,
        "version: 1\nsecurity:\n  grants:\n    max_ttl: forever\n",
    )
    .unwrap();
    let out = rlp(&home, &["cap", "ls", "--config", c]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("security.grants.max_ttl"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&home);
}
