//! `rlp agent ls|start|send|stop|release` end to end: the real `rlp`, the real `runloopd`
//! (its own process, control socket), real sandboxes and cgroups; and embedded mode.
//! Needs `runloopd` and `runloop-sandbox-host` built next to `rlp`:
//! `cargo build -p runloop-kernel --bin runloopd -p runloop-sandbox-host`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::runloopd;

fn home(test: &str) -> PathBuf {
    common::home("rl-agent", test)
}

fn bundle(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agents/bundles")
        .join(name)
        .display()
        .to_string()
}

fn rlp(home: &Path, args: &[&str], socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlp"))
        .args(args)
        .env("HOME", home)
        .env("RUNLOOP__RUNTIME__SOCKET_PATH", socket)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn agent_commands_through_a_real_runloopd() {
    let home = home("daemon");
    let socket = home.join("rmp.sock");
    let _daemon = runloopd(&home, &socket);

    let out = rlp(
        &home,
        &["agent", "start", &bundle("echo"), "--json"],
        &socket,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json_of(&out);
    assert_eq!(v["source"], "daemon");
    assert_eq!(v["agent"]["name"], "echo");
    assert_eq!(v["agent"]["state"], "running");
    let pid = v["agent"]["sandbox_pid"].as_u64().unwrap();

    // A second command reaches the agent the first one started.
    let input = r#"{"text":"hi"}"#;
    let out = rlp(
        &home,
        &["agent", "send", "echo", "--input", input, "--json"],
        &socket,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json_of(&out);
    assert_eq!(v["outputs"][0]["payload"]["text"], "hi");
    assert_eq!(v["attempt"], 1);
    let out = rlp(&home, &["agent", "send", "echo", "--input", input], &socket);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("source: daemon at "), "{text}");
    assert!(text.contains(r#"out: {"text":"hi"}"#), "{text}");

    let v = json_of(&rlp(&home, &["agent", "ls", "--json"], &socket));
    assert_eq!(v["agents"][0]["name"], "echo");
    assert_eq!(v["agents"][0]["sandbox_pid"], pid);
    assert_eq!(v["agents"][0]["messages_out"], 2);
    assert_eq!(v["agents"][0]["breaker"], "closed");
    assert!(v["agents"][0]["rss_kb"].as_u64().unwrap() > 0, "{v}");
    let out = rlp(&home, &["agent", "ls"], &socket);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("NAME") && text.contains("echo"), "{text}");

    // Bad input: each a specific error and exit 2.
    for (args, code) in [
        (
            vec!["agent", "send", "nope", "--input", "{}"],
            "NoSuchAgent",
        ),
        (
            vec!["agent", "send", "echo", "--input", "{nope"],
            "InvalidInput",
        ),
        (
            vec!["agent", "send", "Bad Name", "--input", "{}"],
            "InvalidName",
        ),
        (vec!["agent", "start", "/no/such/bundle"], "NoSuchBundle"),
        (vec!["agent", "start", &bundle("echo")], "AgentExists"),
        (vec!["agent", "release", "echo"], "NotQuarantined"),
    ] {
        let mut args = args.clone();
        args.push("--json");
        let out = rlp(&home, &args, &socket);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(json_of(&out)["error"], code, "{args:?}");
    }

    let out = rlp(&home, &["agent", "stop", "echo", "--json"], &socket);
    assert!(out.status.success());
    assert_eq!(json_of(&out)["stopped"], "echo");
    let v = json_of(&rlp(&home, &["agent", "ls", "--json"], &socket));
    assert_eq!(v["agents"].as_array().unwrap().len(), 0);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sandbox {pid} survived stop"
    );
}

#[test]
fn embedded_mode_says_agents_do_not_outlive_the_command() {
    let home = home("embedded");
    let socket = home.join("none.sock");
    // An explicit socket nobody listens on is an error; with the sockets dir instead,
    // rlp falls back to an embedded kernel.
    let embedded = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rlp"))
            .args(args)
            .env("HOME", &home)
            .env("RUNLOOP__RUNTIME__SOCKETS_DIR", &home)
            .output()
            .unwrap()
    };
    let out = embedded(&["agent", "start", &bundle("echo"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json_of(&out);
    assert_eq!(v["source"], "embedded");
    assert!(v["note"].as_str().unwrap().contains("runloopd"), "{v}");
    let out = embedded(&["agent", "send", "echo", "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("NoSuchAgent") && err.contains("runloopd"),
        "{err}"
    );
    let out = rlp(&home, &["agent", "ls"], &socket);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an explicit socket that does not answer"
    );
}
