//! compose_email from the command line, as a user runs it: the sample data imported with
//! `rlp kb import`, `rlp run` embedded without a terminal (denied at once, and it says how
//! to approve), `--approve` (exactly one message in the Maildir outbox), `--deny`; then
//! through a real `runloopd`: the request waits for `rlp confirm`, a decision for another
//! payload hash is refused, the daemon SIGKILLed while the request waits comes back with
//! the request still pending and nothing sent, and `rlp confirm approve` sends it once.
//! Needs `runloopd` and `runloop-sandbox-host` built next to `rlp`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{json_of, rlp, runloopd, text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opening() -> String {
    repo()
        .join("examples/openings/compose_email.yaml")
        .display()
        .to_string()
}

fn import(home: &Path) {
    let sample = repo().join("examples/pog/sample.ndjson");
    let out = rlp(home, None, &["kb", "import", sample.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn outbox(home: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(dir) = std::fs::read_dir(home.join(".runloop/outbox").join(sub)) {
            for entry in dir.flatten() {
                out.push(std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }
    out
}

fn send_result(report: &Value) -> Value {
    let send = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "send")
        .unwrap_or_else(|| panic!("no send node: {report}"));
    send["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|p| p[0] == "result"))
        .map(|p| p[1].clone())
        .unwrap_or_else(|| panic!("send emitted no result: {report}"))
}

#[test]
fn embedded_runs_deny_without_a_terminal_and_approve_or_deny_by_flag() {
    let home = common::home("rl-confirm", "embedded");
    import(&home);

    // Not on a terminal and no flag: denied at once, and the report says how to approve.
    let out = rlp(&home, None, &["run", &opening(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(report["status"], "failed", "{report}");
    let result = send_result(&report);
    assert_eq!(result["status"], "declined", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("not on a terminal"), "{reason}");
    assert!(reason.contains("--approve"), "{reason}");
    let decisions = report["decisions"]
        .as_array()
        .expect("the report lists decisions");
    assert_eq!(decisions.len(), 1, "{report}");
    assert_eq!(decisions[0]["node"], "send");
    assert_eq!(decisions[0]["decision"], "denied");
    assert_eq!(decisions[0]["by"], "no terminal");
    assert!(outbox(&home).is_empty());

    // --deny: denied by the flag.
    let out = rlp(&home, None, &["run", &opening(), "--deny", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let result = send_result(&json_of(&out));
    assert!(
        result["reason"].as_str().unwrap().contains("flag --deny"),
        "{result}"
    );
    assert!(outbox(&home).is_empty());

    // --approve: sent once, to the resolved address, with its citations.
    let out = rlp(&home, None, &["run", &opening(), "--approve", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(send_result(&report)["status"], "sent", "{report}");
    let sent = outbox(&home);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("john.smith@example.com"), "{}", sent[0]);
    assert!(sent[0].contains("Sources:"), "{}", sent[0]);

    // Without a daemon there is nothing to confirm from another terminal.
    let out = rlp(&home, None, &["confirm", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no runloopd answers"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&home);
}

/// Polls `rlp confirm ls --json` until one action waits.
fn wait_for_action(home: &Path, socket: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let out = rlp(home, Some(socket), &["confirm", "ls", "--json"]);
        if out.status.code() == Some(0) {
            let v = json_of(&out);
            if let Some(first) = v["actions"].as_array().and_then(|a| a.first()) {
                return first.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no action waited for a decision");
}

#[test]
fn through_the_daemon_the_request_waits_survives_a_sigkill_and_is_approved_once() {
    let home = common::home("rl-confirm", "daemon");
    import(&home);
    let socket = home.join("rmp.sock");
    let mut daemon = runloopd(&home, &socket);

    let out = rlp(
        &home,
        Some(&socket),
        &["run", &opening(), "--detach", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trace = json_of(&out)["trace_id"].as_str().unwrap().to_owned();

    let action = wait_for_action(&home, &socket);
    let id = action["request_id"].as_str().unwrap().to_owned();
    assert_eq!(action["trace_id"], trace.as_str());
    assert_eq!(action["node"], "send");
    assert_eq!(action["effect"], "mail.send");
    assert!(
        action["summary"]
            .as_str()
            .unwrap()
            .contains("john.smith@example.com"),
        "{action}"
    );
    let out = rlp(&home, Some(&socket), &["confirm", "show", &id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = json_of(&out);
    assert_eq!(shown["payload"]["to"][0]["email"], "john.smith@example.com");

    // A decision for a payload the person did not see is refused; nothing is sent.
    let zero = "0".repeat(64);
    let out = rlp(
        &home,
        Some(&socket),
        &["confirm", "approve", &id, "--hash", &zero],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs a new yes"), "{}", text(&out));
    assert!(outbox(&home).is_empty());

    // SIGKILL the daemon while the request waits: after the restart it still waits.
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    daemon.0.wait().unwrap();
    daemon = runloopd(&home, &socket);
    let again = wait_for_action(&home, &socket);
    assert_eq!(
        again["request_id"],
        id.as_str(),
        "the same request: {again}"
    );
    assert_eq!(again["payload_hash"], action["payload_hash"]);
    assert!(outbox(&home).is_empty(), "nothing sent while it waited");

    let out = rlp(&home, Some(&socket), &["confirm", "approve", &id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let decided = json_of(&out);
    assert_eq!(decided["decision"], "approved");
    assert_eq!(decided["by"], "rlp confirm");

    let out = rlp(&home, Some(&socket), &["runs", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(send_result(&report)["status"], "sent", "{report}");
    assert_eq!(outbox(&home).len(), 1, "exactly one message");
    let out = rlp(&home, Some(&socket), &["confirm", "approve", &id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "decided already: {}",
        text(&out)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&home);
}

/// On a terminal (a pty from util-linux's `script`), `rlp run` shows the draft and asks;
/// the person's `yes` is recorded as by `tty` and the message is sent once.
#[test]
fn on_a_terminal_rlp_run_shows_the_draft_and_sends_after_yes() {
    let home = common::home("rl-confirm", "tty");
    import(&home);
    let command = format!("{} run {}", env!("CARGO_BIN_EXE_rlp"), opening());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", &home)
        .env_remove("RUNLOOP__RUNTIME__SOCKET_PATH")
        .env_remove("RUNLOOP_BUNDLES_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux's `script` gives rlp a terminal");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Typed ahead: the terminal holds it until rlp asks.
        stdin.write_all(b"yes\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(shown.contains("Approve?"), "{shown}");
    assert!(
        shown.contains("subject: Q4 plan"),
        "the draft is shown: {shown}"
    );
    assert!(shown.contains("approved by tty"), "{shown}");
    assert!(shown.contains("trace id:"), "{shown}");
    assert_eq!(outbox(&home).len(), 1);
    let _ = std::fs::remove_dir_all(&home);
}
