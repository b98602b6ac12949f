//! `rlp agent invoke` refusing bad input with its specific error and exit status 2, before
//! any sandbox is started. (Runs through a real sandbox are covered by the
//! sandbox-host's integration tests, which own the binary; see docs/sandbox.md.)

use std::process::Command;

fn rlp(args: &[&str]) -> (Option<i32>, String, String) {
    let cache = std::env::temp_dir().join(format!("runloop-cli-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_rlp"))
        .args(args)
        .env("RUNLOOP_CWASM_DIR", cache)
        .output()
        .expect("run rlp");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_targets_and_inputs_exit_2_with_their_names() {
    let dir = std::env::temp_dir().join(format!("runloop-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_wat = dir.join("bad.wat");
    std::fs::write(&bad_wat, "(module").unwrap();
    let bad_wat = bad_wat.to_str().unwrap();
    let empty_bundle = dir.join("bundle");
    std::fs::create_dir_all(&empty_bundle).unwrap();
    let empty_bundle = empty_bundle.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["agent", "invoke", "/nonexistent.wat", "--input", "{}"],
            "NoSuchTarget",
        ),
        (
            &["agent", "invoke", bad_wat, "--input", "{bad"],
            "InvalidInput",
        ),
        (&["agent", "invoke", bad_wat, "--input", "{}"], "BadModule"),
        (
            &["agent", "invoke", empty_bundle, "--input", "{}"],
            "BadBundle",
        ),
    ];
    for (args, name) in cases {
        let (code, _out, err) = rlp(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(name), "{args:?}: want {name}, got {err}");
    }
    let (code, out, _) = rlp(&[
        "agent",
        "invoke",
        "/nonexistent.wat",
        "--input",
        "{}",
        "--json",
    ]);
    assert_eq!(code, Some(2));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["error"], "NoSuchTarget");
    std::fs::remove_dir_all(&dir).unwrap();
}
