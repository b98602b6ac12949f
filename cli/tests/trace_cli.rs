//! `rlp trace`, `rlp replay` and `rlp runs export|import` end to end: a real embedded run
//! (real sandboxes, the real POG in a temp `HOME`), its ladder in every format, its replay,
//! and the same replay on "another machine" (a second `HOME`) after export and import;
//! with a daemon, the same answers through its socket, and an import through a daemon that
//! owns the POG; bad input exits 2, unknown runs 1.

mod common;

use common::{example, json_of, rlp, text};
use serde_json::Value;

#[test]
fn trace_replay_export_and_import_of_a_real_run() {
    let home = common::home("rlp-trace", "main");
    let out = rlp(&home, None, &["run", &example("retry.yaml"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json_of(&out);
    let trace = report["trace_id"].as_str().unwrap().to_owned();

    // No id: the recent runs, this one with its crossings counted.
    let out = rlp(&home, None, &["trace", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list = json_of(&out);
    let row = &list["traces"][0];
    assert_eq!(row["trace_id"], trace.as_str());
    assert!(row["crossings"].as_u64().unwrap() >= 10, "{list}");

    // The ladder fits 80 columns and uses 200.
    for width in ["80", "200"] {
        let out = rlp(
            &home,
            None,
            &["trace", &trace, "--width", width, "--relative"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let ladder = String::from_utf8(out.stdout).unwrap();
        let w: usize = width.parse().unwrap();
        assert!(ladder.lines().all(|l| l.chars().count() <= w), "{ladder}");
        assert!(!ladder.contains('\u{1b}'), "no colour off a terminal");
        // Kinds are shortened to fit 80 columns, written out in 200.
        if w == 200 {
            for kind in ["run.submit", "agent.invoke", "node.retry", "run.report"] {
                assert!(ladder.contains(kind), "{kind} in {ladder}");
            }
        }
    }
    let out = rlp(&home, None, &["trace", &trace, "--json"]);
    let view = json_of(&out);
    assert_eq!(view["trace_id"], trace.as_str());
    let crossings = view["crossings"].as_array().unwrap();
    assert!(crossings.iter().any(|c| c["kind"] == "node.retry"));
    let out = rlp(
        &home,
        None,
        &["trace", &trace, "--kind", "agent.invoke", "--json"],
    );
    let only = json_of(&out);
    let only = only["crossings"].as_array().unwrap();
    assert_eq!(only.len(), 3, "three attempts: {only:?}");
    assert!(only.iter().all(|c| c["kind"] == "agent.invoke"));
    let out = rlp(&home, None, &["trace", &trace, "--format", "mermaid"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sequenceDiagram"));
    let out = rlp(&home, None, &["trace", &trace, "--format", "chrome"]);
    let chrome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(chrome["traceEvents"].as_array().unwrap().len() > crossings.len());

    // Replay: every node identical, nothing performed.
    let out = rlp(&home, None, &["replay", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let replay = json_of(&out);
    assert_eq!(replay["identical"], true, "{replay}");
    assert_eq!(replay["effects_performed"], 0);
    assert_eq!(replay["nodes"][0]["invokes"], 3, "{replay}");
    let out = rlp(&home, None, &["replay", &trace]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("identical"), "{}", text(&out));

    // Another machine: export, import into a fresh HOME, replay there.
    let file = home.join("run.ndjson");
    let out = rlp(
        &home,
        None,
        &["runs", "export", &trace, "--out", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let other = common::home("rlp-trace", "other");
    let out = rlp(
        &other,
        None,
        &["runs", "import", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let imported = json_of(&out);
    assert_eq!(imported["runs"][0], trace.as_str());
    assert!(imported["appended"].as_u64().unwrap() > 10);
    let out = rlp(
        &other,
        None,
        &["runs", "import", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        json_of(&out)["appended"],
        0,
        "a second import appends nothing"
    );
    let out = rlp(&other, None, &["replay", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["identical"], true);
    let out = rlp(&other, None, &["kb", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Bad input exits 2, an unknown run 1, each named.
    let out = rlp(&home, None, &["trace", "not-a-trace", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"], "BadInput");
    let unknown = "0123456789abcdef0123456789abcdef";
    for args in [vec!["trace", unknown], vec!["replay", unknown]] {
        let mut args = args.clone();
        args.push("--json");
        let out = rlp(&home, None, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert_eq!(json_of(&out)["error"], "NoSuchRun");
    }
    let out = rlp(&home, None, &["trace", &trace, "--node", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"], "NoMatch");
    let not_a_run = home.join("x.ndjson");
    std::fs::write(&not_a_run, "{\"kind\":\"note.added\"}\n").unwrap();
    let out = rlp(
        &other,
        None,
        &["runs", "import", not_a_run.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"], "NotARun");
    let out = rlp(&home, None, &["runs", "export", unknown, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["error"], "NoSuchRun");

    // Through a daemon on the same HOME: the same trace and replay, and import refused.
    let socket = home.join("d.sock");
    let _daemon = common::runloopd(&home, &socket);
    let out = rlp(&home, Some(&socket), &["trace", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["crossings"], view["crossings"]);
    let out = rlp(&home, Some(&socket), &["replay", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["identical"], true);
    // The run is already here: importing it through the daemon appends nothing.
    let args = ["runs", "import", file.to_str().unwrap(), "--json"];
    let out = rlp(&home, Some(&socket), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["appended"], 0);
    // A third HOME with its own daemon gets the run through that daemon (it owns the
    // POG's writer) and replays it identically.
    let third = common::home("rlp-trace", "third");
    let socket3 = third.join("d.sock");
    let daemon3 = common::runloopd(&third, &socket3);
    let out = rlp(&third, Some(&socket3), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let imported = json_of(&out);
    assert_eq!(imported["runs"][0], trace.as_str());
    assert_eq!(imported["duplicates"], 0);
    assert!(imported["appended"].as_u64().unwrap() > 10);
    let out = rlp(&third, Some(&socket3), &["replay", &trace, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["identical"], true);
    let bad = ["runs", "import", not_a_run.to_str().unwrap(), "--json"];
    let out = rlp(&third, Some(&socket3), &bad);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["error"], "NotARun");
    drop(daemon3);
    let _ = std::fs::remove_dir_all(&third);
    let _ = std::fs::remove_dir_all(&other);
}
