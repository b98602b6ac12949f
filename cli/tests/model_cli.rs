//! End-to-end tests of the `rlp model …` / `rlp broker stats` surface as a real process
//! (the real `rlp` binary), offline and against the REAL llama.cpp server.

#[path = "../../actors/broker/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("runloop-broker-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rlp(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlp"));
    cmd.args(args)
        .env("RUNLOOP_STATE_DIR", dir)
        .env("RUNLOOP_CONFIG", dir.join("config.yaml"))
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{:?}", text(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn offline_complete_record_replay_embed_ls_and_stats() {
    let d = Dir::new("offline");
    std::fs::write(d.0.join("config.yaml"), "version: 1\n").unwrap();
    let prompt = "Ada needs the Q3 report. The report is due Friday. Lunch was fine.";
    let o = rlp(&d.0, &["model", "complete", prompt], None);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        text(&o).0.trim(),
        "Ada needs the Q3 report. The report is due Friday."
    );

    let rec = d.0.join("run.jsonl");
    let rec_s = rec.to_str().unwrap();
    let live = json(&rlp(
        &d.0,
        &["model", "complete", "--json", "--record", rec_s],
        Some(prompt),
    ));
    assert_eq!(
        live["response"]["provider"]["engine"],
        "offline_extractive_writer"
    );
    assert_eq!(live["served_by"], "provider");
    let replayed = json(&rlp(
        &d.0,
        &["model", "complete", "--json", "--replay", rec_s, prompt],
        None,
    ));
    assert_eq!(
        replayed["response"], live["response"],
        "replay reproduces the recorded response"
    );
    assert_eq!(replayed["served_by"], "replay");

    let miss = rlp(
        &d.0,
        &["model", "complete", "--replay", rec_s, "never recorded"],
        None,
    );
    assert_eq!(miss.status.code(), Some(1));
    assert!(
        text(&miss)
            .1
            .contains("replay has no recorded response for request "),
        "{:?}",
        text(&miss)
    );

    let e = json(&rlp(
        &d.0,
        &["model", "embed", "--json", "the cat sat", "a cat sat"],
        None,
    ));
    assert_eq!(e["response"]["vectors"].as_array().unwrap().len(), 2);
    let stdin_embed = rlp(&d.0, &["model", "embed"], Some("one\ntwo\n\nthree\n"));
    assert!(
        text(&stdin_embed).0.contains("3 vectors"),
        "{:?}",
        text(&stdin_embed)
    );

    let ls = json(&rlp(&d.0, &["model", "ls", "--json"], None));
    assert_eq!(ls[0]["provider"], "offline");
    assert_eq!(ls[0]["models"][0], "extractive-writer-v1");

    let stats = json(&rlp(&d.0, &["broker", "stats", "--json"], None));
    assert_eq!(stats["by_provider"]["offline"]["requests"], 4);
    assert_eq!(stats["by_provider"]["replay"]["requests"], 2);
    assert_eq!(stats["by_provider"]["replay"]["errors"], 1);
    assert_eq!(stats["by_agent"]["rlp"]["requests"], 6);
    let table = rlp(&d.0, &["broker", "stats"], None);
    assert!(
        text(&table).0.contains("provider   offline"),
        "{:?}",
        text(&table)
    );
}

#[test]
fn bad_input_gets_specific_errors_and_exit_codes() {
    let d = Dir::new("bad");
    /// (config, args, stdin, exit code, expected text in stderr)
    type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            "version: 1\n",
            vec!["model", "complete"],
            Some("\n"),
            2,
            "empty prompt",
        ),
        (
            "version: 1\n",
            vec!["model", "complete", "--provider", "nope", "x"],
            None,
            2,
            "unknown provider \"nope\"",
        ),
        (
            "models:\n  broker:\n    cache:\n      ttl: 1\n",
            vec!["model", "complete", "x"],
            None,
            2,
            "unknown field `ttl`",
        ),
        (
            "models:\n  default: \"ghost:m\"\n",
            vec!["model", "ls"],
            None,
            2,
            "unknown provider \"ghost\"",
        ),
        (
            "models:\n  broker:\n    budgets:\n      default_tokens: 10\n",
            vec!["model", "complete", "x"],
            None,
            3,
            "request budget",
        ),
        (
            "version: 1\n",
            vec!["model", "embed"],
            Some(""),
            2,
            "nothing to embed",
        ),
        (
            "version: 1\n",
            vec!["model", "complete", "--max-tokens", "0", "x"],
            None,
            2,
            "max_tokens 0",
        ),
        (
            "models:\n  broker:\n    providers:\n      - id: k\n        kind: http\n        base_url: http://127.0.0.1:9\n        secret_id: runloop/models/absent\n",
            vec!["model", "complete", "--provider", "k", "x"],
            None,
            2,
            "provider unavailable: secret \"runloop/models/absent\" not found: set RUNLOOP_MODELS_ABSENT",
        ),
    ];
    for (config, args, stdin, code, needle) in cases {
        std::fs::write(d.0.join("config.yaml"), config).unwrap();
        let o = rlp(&d.0, &args, stdin);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
    }
    std::fs::write(d.0.join("config.yaml"), "version: 1\n").unwrap();
    let o = rlp(
        &d.0,
        &["model", "complete", "--json", "--provider", "nope", "x"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["error"], "UnknownProvider",
        "--json failures print one JSON shape on stdout"
    );
    let usage = rlp(
        &d.0,
        &["model", "complete", "--stream", "--json", "x"],
        None,
    );
    assert_eq!(
        usage.status.code(),
        Some(2),
        "clap rejects conflicting flags"
    );
}

#[test]
fn real_server_through_the_cli() {
    let server = common::RealServer::start();
    let d = Dir::new("real");
    let config = format!(
        "models:\n  default: \"local:smollm2-135m\"\n  broker:\n    providers:\n      - id: local\n        kind: http\n        base_url: \"{}\"\n        secret_id: runloop/models/local\n",
        server.base_url()
    );
    std::fs::write(d.0.join("config.yaml"), config).unwrap();
    // Secret through the environment's upper-snake form; a missing one is a clear error.
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlp"));
        cmd.args(args)
            .env("RUNLOOP_STATE_DIR", &d.0)
            .env("RUNLOOP_CONFIG", d.0.join("config.yaml"))
            .env("RUNLOOP_MODELS_LOCAL", common::TEST_KEY);
        cmd.output().unwrap()
    };
    let ls = json(&run(&["model", "ls", "--provider", "local", "--json"]));
    assert_eq!(ls[0]["models"][0], "smollm2-135m");
    let started = std::time::Instant::now();
    let plain = run(&[
        "model",
        "complete",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "Name a colour.",
    ]);
    println!(
        "real server pid {} port {}: `rlp model complete` answered in {} ms: {:?}",
        server.pid,
        server.port,
        started.elapsed().as_millis(),
        text(&plain).0.trim()
    );
    let streamed = run(&[
        "model",
        "complete",
        "--stream",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "Name a colour.",
    ]);
    assert!(
        plain.status.success() && streamed.status.success(),
        "{:?} {:?}",
        text(&plain),
        text(&streamed)
    );
    assert!(!text(&plain).0.trim().is_empty());
    assert_eq!(
        text(&plain).0.trim(),
        text(&streamed).0.trim(),
        "streamed text equals the plain answer"
    );
    let e = json(&run(&["model", "embed", "--json", "hello"]));
    assert_eq!(e["response"]["vectors"][0].as_array().unwrap().len(), 576);
    let stats = json(&run(&["broker", "stats", "--json"]));
    assert_eq!(stats["by_provider"]["local"]["requests"], 3);
    assert!(
        stats["by_provider"]["local"]["tokens_out"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut wrong = Command::new(env!("CARGO_BIN_EXE_rlp"));
    wrong
        .args(["model", "complete", "hi"])
        .env("RUNLOOP_STATE_DIR", &d.0)
        .env("RUNLOOP_CONFIG", d.0.join("config.yaml"))
        .env("RUNLOOP_MODELS_LOCAL", "wrong-key");
    let o = wrong.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("authentication failed (http 401)")
            && !text(&o).1.contains("wrong-key"),
        "{:?}",
        text(&o)
    );
}
