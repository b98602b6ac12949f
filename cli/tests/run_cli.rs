//! `rlp validate|run|runs|cancel|resume` end to end: the real `rlp`, the real `runloopd`
//! (its own process, control socket), real sandboxes, the real POG in a temp `HOME`.
//! Exit codes (0 valid/succeeded, 1 any other end, 2 invalid opening or params), the
//! `--json` shapes, NDJSON `--events`, the shipped examples, and a `runloopd` SIGKILLed
//! mid-run whose run finishes after the restart without re-running its finished node.
//! Needs `runloopd` and `runloop-sandbox-host` built next to `rlp`:
//! `cargo build -p runloop-kernel --bin runloopd -p runloop-sandbox-host`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{example, json_of, rlp, rlp_command, runloopd, text};

fn home(test: &str) -> PathBuf {
    common::home("rl-run", test)
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn node<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {report}"))
}

const BROKEN: &str = "version: 0\nname: broken\nnodes:\n  - { id: a, use: \"agent:nope\" }\n  - { id: a, use: \"agent:echo\", colour: red }\n";

#[test]
fn validate_says_where_and_exits_2_on_any_error() {
    let home = home("validate");
    let socket = None;
    let ok = rlp(&home, socket, &["validate", &example("fan_out.yaml")]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));
    let ok = rlp(
        &home,
        socket,
        &["validate", &example("retry.yaml"), "--json"],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert_eq!(
        json_of(&ok),
        serde_json::json!({"valid": true, "errors": []})
    );

    let file = write(&home, "broken.yaml", BROKEN);
    let bad = rlp(&home, socket, &["validate", &file]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&format!("{file}:4:")), "{err}");
    assert!(err.contains("nope"), "an unknown agent is named: {err}");
    assert!(
        err.contains(&format!("{file}:5:")),
        "every error, not the first: {err}"
    );
    let bad = rlp(&home, socket, &["validate", &file, "--json"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let v = json_of(&bad);
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{v}");
    assert!(
        errors
            .iter()
            .all(|e| e["line"].is_u64() && e["col"].is_u64() && e["message"].is_string())
    );

    let yaml = write(&home, "syntax.yaml", "version: 0\nname: [unclosed\n");
    let bad = rlp(&home, socket, &["validate", &yaml]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(&format!("{yaml}:")),
        "{}",
        text(&bad)
    );

    // `agents.search_dirs` comes before the shipped bundles: a broken `echo` there is an
    // error naming it, never skipped; `rlp agent ls --installed` shows it unusable.
    let extra = home.join("extra");
    std::fs::create_dir_all(extra.join("echo")).unwrap();
    std::fs::write(
        extra.join("echo/manifest.toml"),
        "abi = 1\nname = \"echo\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(home.join(".runloop")).unwrap();
    std::fs::write(
        home.join(".runloop/config.yaml"),
        "version: 1\nagents:\n  search_dirs: [\"~/extra\"]\n",
    )
    .unwrap();
    let out = rlp(&home, socket, &["agent", "ls", "--installed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    let echo = v["installed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "echo")
        .unwrap();
    assert_eq!(echo["dir"], extra.join("echo").display().to_string(), "{v}");
    assert!(echo["error"].is_string(), "{v}");
    let flaky = v["installed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "flaky")
        .unwrap();
    assert!(is_hex(flaky["blake3"].as_str().unwrap(), 64), "{v}");
    assert_eq!(flaky["ports_in"], serde_json::json!(["in"]));
    let out = rlp(&home, socket, &["validate", &example("fan_out.yaml")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&extra.join("echo").display().to_string()),
        "{err}"
    );
    std::fs::remove_file(home.join(".runloop/config.yaml")).unwrap();

    let missing = rlp(&home, socket, &["validate", "/nonexistent/opening.yaml"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/opening.yaml"));
}

#[test]
fn embedded_runs_print_the_report_events_and_list_and_refuse_bad_input() {
    let home = home("embedded");
    let socket = None;
    let events = home.join("events.ndjson");
    let out = rlp(
        &home,
        socket,
        &[
            "run",
            &example("fan_out.yaml"),
            "--param",
            "text=hi",
            "--json",
            "--events",
            events.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(report["source"], "embedded", "{report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["opening"], "fan_out");
    let trace = report["trace_id"].as_str().unwrap().to_owned();
    assert!(is_hex(&trace, 32), "{report}");
    assert!(is_hex(report["result_hash"].as_str().unwrap(), 64));
    assert!(report["run_id"].is_string() && report["started_at_ms"].is_u64());
    assert!(report["duration_ms"].is_u64());
    assert_eq!(report["nodes"].as_array().unwrap().len(), 5);
    for id in ["split", "left", "middle", "right", "join"] {
        let n = node(&report, id);
        assert_eq!(n["status"], "succeeded", "{n}");
        assert_eq!(n["attempts"], 1);
        assert!(is_hex(n["output_hash"].as_str().unwrap(), 64));
    }
    // The param reached the first node, and the join got the three branches in edge order.
    assert_eq!(
        node(&report, "split")["outputs"][0][1]["with"]["text"],
        "hi",
        "{report}"
    );
    let joined = &node(&report, "join")["outputs"][0][1]["inputs"]["in"];
    let from: Vec<&str> = joined
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["node"].as_str().unwrap())
        .collect();
    assert_eq!(from, ["left", "middle", "right"], "{joined}");

    let lines: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["event"], "run.started");
    assert_eq!(lines.last().unwrap()["event"], "run.finished");
    assert!(
        lines
            .iter()
            .all(|e| e["trace_id"] == trace.as_str() && e["ts_ms"].is_u64())
    );
    let finished = lines
        .iter()
        .filter(|e| e["event"] == "node.finished")
        .count();
    assert_eq!(finished, 5);

    // The record is durable: `rlp runs` lists it, `rlp runs <id>` shows it again.
    let runs = rlp(&home, socket, &["runs", "--json"]);
    assert_eq!(runs.status.code(), Some(0), "{}", text(&runs));
    let listed = json_of(&runs);
    let row = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row["status"], "succeeded");
    let again = rlp(&home, socket, &["runs", &trace, "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(json_of(&again)["result_hash"], report["result_hash"]);
    let unknown = rlp(&home, socket, &["runs", &"0".repeat(32)]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("NoSuchRun"),
        "{}",
        text(&unknown)
    );

    // The retry example: succeeds on attempt 3 after two waits.
    let out = rlp(&home, socket, &["run", &example("retry.yaml"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(node(&json_of(&out), "wobbly")["attempts"], 3);

    // A run that fails: exit 1, the reason names the node.
    let failing = write(
        &home,
        "fails.yaml",
        "version: 0\nname: fails\nnodes:\n  - { id: w, use: \"agent:flaky\", with: { fail_attempts: 9 } }\n",
    );
    let out = rlp(&home, socket, &["run", &failing, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "failed");
    assert!(
        v["reason"].as_str().unwrap().contains("node w failed"),
        "{v}"
    );

    // Bad input: nothing runs, exit 2, a specific message.
    let before = json_of(&rlp(&home, socket, &["runs", "--json"]))["runs"]
        .as_array()
        .unwrap()
        .len();
    let cases: [(&[&str], &str); 4] = [
        (&["--params", "{not json"], "not JSON"),
        (&["--param", "nope=1"], "nope"),
        (&["--params", "{\"text\": 3}"], "text"),
        (&["--param", "novalue"], "novalue"),
    ];
    for (extra, says) in cases {
        let file = example("fan_out.yaml");
        let mut args = vec!["run", file.as_str()];
        args.extend_from_slice(extra);
        let out = rlp(&home, socket, &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{extra:?}: {}",
            text(&out)
        );
    }
    let broken = write(&home, "broken.yaml", BROKEN);
    let out = rlp(&home, socket, &["run", &broken]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = rlp(
        &home,
        socket,
        &["run", &example("fan_out.yaml"), "--detach"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--detach needs runloopd: {}",
        text(&out)
    );
    let after = json_of(&rlp(&home, socket, &["runs", "--json"]))["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "refused runs leave no record");
}

/// A chain whose second node spins for seconds: time to kill the daemon in the middle.
const CHAIN: &str = r#"
version: 0
name: chain
nodes:
  - { id: first, use: "agent:echo", with: { n: 1 } }
  - { id: slow, use: "agent:flaky", with: { spin: 120000000 } }
  - { id: last, use: "agent:echo" }
edges:
  - { from: first.out, to: slow.in }
  - { from: slow.out, to: last.in }
"#;

/// Waits until the NDJSON file has an event matching `pred`.
fn wait_for_event(file: &Path, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(body) = std::fs::read_to_string(file) {
            for line in body.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && pred(&v)
                {
                    return v;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no such event in {}", file.display());
}

/// Starts `rlp run CHAIN --json --events FILE` and returns it with the run's trace id
/// once the `slow` node has started (`first` has finished by then).
fn run_until_slow_starts(
    home: &Path,
    socket: Option<&Path>,
    chain: &str,
    events: &Path,
) -> (Child, String) {
    let child = rlp_command(
        home,
        socket,
        &["run", chain, "--json", "--events", events.to_str().unwrap()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = wait_for_event(events, |e| e["event"] == "run.started");
    let trace = started["trace_id"].as_str().unwrap().to_owned();
    wait_for_event(events, |e| {
        e["event"] == "node.started" && e["node"] == "slow"
    });
    (child, trace)
}

/// A run of CHAIN continued after a kill: succeeded, `first` (finished before the kill)
/// not run again, `slow` (its start durable before it ran) run again as attempt 2.
fn assert_continued(report: &Value) {
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(node(report, "first")["attempts"], 1, "{report}");
    assert_eq!(node(report, "slow")["attempts"], 2, "{report}");
}

#[test]
fn daemon_runs_detach_cancel_and_survive_a_sigkill() {
    let home = home("daemon");
    let socket_path = home.join("rmp.sock");
    let socket = Some(socket_path.as_path());
    let mut daemon = runloopd(&home, &socket_path);

    // Through the daemon, and it says so.
    let out = rlp(&home, socket, &["run", &example("retry.yaml"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["source"], "daemon", "{v}");
    assert_eq!(node(&v, "wobbly")["attempts"], 3);

    // --detach returns at once with the trace id; cancel ends the run.
    let chain = write(&home, "chain.yaml", CHAIN);
    let out = rlp(&home, socket, &["run", &chain, "--detach", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trace = json_of(&out)["trace_id"].as_str().unwrap().to_owned();
    assert!(is_hex(&trace, 32));
    let out = rlp(&home, socket, &["cancel", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["cancelled"], trace.as_str());
    let out = rlp(&home, socket, &["runs", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_ne!(node(&v, "last")["status"], "succeeded", "{v}");
    let out = rlp(&home, socket, &["cancel", &trace]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a finished run cannot be cancelled: {}",
        text(&out)
    );

    // SIGKILL the daemon while `slow` runs; the restarted daemon finishes the run without
    // running `first` again.
    let events = home.join("killed.ndjson");
    let (mut watcher, trace) = run_until_slow_starts(&home, socket, &chain, &events);
    nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    daemon.0.wait().unwrap();
    let lost = watcher.wait().unwrap();
    assert_ne!(lost.code(), Some(0), "the watcher lost its daemon");
    let finished = std::fs::read_to_string(&events).unwrap();
    assert!(
        !finished.contains("run.finished"),
        "killed before the end: {finished}"
    );

    daemon = runloopd(&home, &socket_path);
    let out = rlp(&home, socket, &["runs", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_continued(&v);
    assert_eq!(node(&v, "last")["attempts"], 1);
    drop(daemon);
}

#[test]
fn an_embedded_run_killed_mid_run_is_interrupted_and_resumes() {
    let home = home("interrupted");
    let socket = None;
    let chain = write(&home, "chain.yaml", CHAIN);
    let events = home.join("events.ndjson");
    let (mut child, trace) = run_until_slow_starts(&home, socket, &chain, &events);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();

    // Its owner is gone: `rlp runs` says interrupted and how to continue.
    let out = rlp(&home, socket, &["runs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = json_of(&out);
    let row = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trace_id"] == trace.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row["status"], "interrupted", "{listed}");
    let text_out = rlp(&home, socket, &["runs"]);
    assert!(
        String::from_utf8_lossy(&text_out.stdout).contains(&format!("rlp resume {trace}")),
        "{}",
        text(&text_out)
    );

    let out = rlp(&home, socket, &["resume", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_continued(&v);
    // Finished now: a second resume is refused, and says why.
    let again = rlp(&home, socket, &["resume", &trace]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("RunState"),
        "{}",
        text(&again)
    );
}
