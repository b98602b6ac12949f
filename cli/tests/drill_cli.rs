//! `rlp drill ls|run|all` through the real `rlp`: the list, bad names and repeats (exit 2
//! with the error named), and one drill end to end with its `--json` report (real
//! sandboxes in real cgroups; the drill boots its own kernel in a temp state directory).
//! Needs `runloop-sandbox-host` built next to `rlp`: `cargo build -p runloop-sandbox-host`.

mod common;

use common::{rlp, text};

fn home(test: &str) -> std::path::PathBuf {
    common::home("rl-drill", test)
}

#[test]
fn ls_lists_every_drill_with_a_description() {
    let home = home("ls");
    let out = rlp(&home, None, &["drill", "ls", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["description"].as_str().unwrap().len() > 40, "{v}");
            v["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "kill-sandbox",
            "oom-wasm",
            "oom-cgroup",
            "cpu-spin",
            "bad-frames",
            "flapping",
            "daemon-kill",
            "pog-restore",
            "slow-model"
        ]
    );
    let out = rlp(&home, None, &["drill", "ls"]);
    assert!(
        text(&out).contains("kill-sandbox  SIGKILL"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_unknown_drill_or_a_bad_repeat_is_refused_with_exit_2() {
    let home = home("bad");
    let out = rlp(&home, None, &["drill", "run", "kill_sandbox"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("UnknownDrill"), "{}", text(&out));
    assert!(
        text(&out).contains("kill-sandbox, oom-wasm"),
        "{}",
        text(&out)
    );
    let out = rlp(
        &home,
        None,
        &["drill", "run", "flapping", "--repeat", "0", "--json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "InvalidRepeat");
}

#[test]
fn bad_frames_runs_end_to_end_and_reports_json() {
    let home = home("frames");
    let out = rlp(&home, None, &["drill", "run", "bad-frames", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "bad-frames");
    assert_eq!(v["passed"], true, "{v}");
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicated_effects"], 0);
    assert_eq!(
        (v["runs_ok"].as_u64(), v["runs_total"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(v["detect_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["restore_ms"].is_null(), "{v}");
    let report = v["report"].as_str().unwrap();
    for name in ["InvalidMagic", "BodyTooLarge", "TruncatedHeader"] {
        assert!(report.contains(name), "{report}");
    }
    assert!(
        text(&out).contains("[1/1] bad-frames"),
        "progress on stderr: {}",
        text(&out)
    );
}
