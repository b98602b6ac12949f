//! Authoring outside the checkout, end to end with real tools: `rlp agent scaffold` in a
//! temporary directory, the crate's own native test (`cargo test`), `rlp agent build` to
//! wasm32-wasip1 with the machine's wasm toolchain (CI installs Debian's route with
//! packaging/scripts/setup-wasm-toolchain.sh; without one this test fails, it does not
//! skip), signing with a fresh key, `rlp trust add`, `rlp agent install`, and a one-node
//! opening that runs the installed agent in a real sandbox. The SDK is the standalone copy
//! `packaging/scripts/stage-sdk.sh` stages, the one the .deb ships as
//! /usr/share/runloop/agent-sdk, so what ships is what this builds against.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{home, json_of, rlp, rlp_command, text};

/// The user's cargo home, kept when the test gives rlp a HOME of its own (the registry
/// cache lives there).
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"))
}

/// A target dir outside the temp crate (`~/.cache/<name>`), so the SDK's dependencies (and
/// for wasm, the standard library) build once per machine.
fn cache_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap())
        .join(".cache")
        .join(name)
}

#[test]
fn scaffold_build_sign_install_and_run_outside_the_checkout() {
    let home = home("rlp-scaffold", "e2e");
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let work_s = work.display().to_string();
    // The SDK as the package ships it, staged at a fixed place so the build caches stay warm.
    let staged = cache_dir("runloop-scaffold-sdk");
    let stage = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/scripts/stage-sdk.sh"))
        .arg(&staged)
        .output()
        .unwrap();
    assert!(stage.status.success(), "{}", text(&stage));
    let sdk_s = staged.join("sdk").display().to_string();

    // scaffold
    let out = rlp(
        &home,
        None,
        &[
            "agent",
            "scaffold",
            "greeter_x",
            "--dir",
            &work_s,
            "--sdk",
            &sdk_s,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let made = json_of(&out);
    assert_eq!(made["sdk"].as_str(), Some(sdk_s.as_str()), "{made}");
    let crate_dir = work.join("greeter_x");
    assert_eq!(
        made["dir"].as_str().map(Path::new),
        Some(crate_dir.as_path())
    );
    for file in ["Cargo.toml", "src/lib.rs", "policy.caps", "opening.yaml"] {
        assert!(crate_dir.join(file).is_file(), "{file} missing: {made}");
    }
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("export_agent!(GreeterX);"), "{lib}");
    // Scaffolding again never overwrites.
    let again = rlp(
        &home,
        None,
        &[
            "agent",
            "scaffold",
            "greeter_x",
            "--dir",
            &work_s,
            "--sdk",
            &sdk_s,
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("AlreadyExists"), "{}", text(&again));

    // The crate's own test, natively, as its author would run it.
    let native = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", cache_dir("runloop-scaffold-native"))
        .output()
        .unwrap();
    assert!(native.status.success(), "{}", text(&native));

    // build + sign
    let key = home.join("keys/author.key");
    let key_s = key.display().to_string();
    let out = rlp(&home, None, &["agent", "keygen", "--out", &key_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let key_id = json_of(&out)["key_id"].as_str().unwrap().to_owned();
    let crate_s = crate_dir.display().to_string();
    let target_s = cache_dir("runloop-scaffold-wasm").display().to_string();
    let build = rlp_command(
        &home,
        None,
        &[
            "agent",
            "build",
            &crate_s,
            "--key",
            &key_s,
            "--target-dir",
            &target_s,
            "--json",
        ],
    )
    .env("CARGO_HOME", cargo_home())
    .output()
    .unwrap();
    assert!(build.status.success(), "{}", text(&build));
    let built = json_of(&build);
    assert_eq!(built["name"], "greeter_x", "{built}");
    assert_eq!(
        built["signed_by"].as_str(),
        Some(key_id.as_str()),
        "{built}"
    );
    let bundle = crate_dir.join("bundle");
    assert!(bundle.join("agent.wasm").is_file());
    assert!(bundle.join("signature.toml").is_file());

    // Not trusted yet: install refuses, naming the key.
    let bundle_s = bundle.display().to_string();
    let refused = rlp(&home, None, &["agent", "install", &bundle_s, "--yes"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains(&key_id), "{}", text(&refused));

    // trust the author's key, install, run a one-node opening on the installed agent.
    let public = format!("{key_s}.pub");
    let out = rlp(&home, None, &["trust", "add", &public, "--name", "author"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = rlp(
        &home,
        None,
        &["agent", "install", &bundle_s, "--yes", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let installed = json_of(&out);
    assert_eq!(installed["name"], "greeter_x", "{installed}");

    // The opening lives outside the crate, so the agent resolves from ~/.runloop/agents.
    let opening = work.join("try.yaml");
    std::fs::copy(crate_dir.join("opening.yaml"), &opening).unwrap();
    let opening_s = opening.display().to_string();
    let run = rlp(
        &home,
        None,
        &["run", &opening_s, "--param", "text=hello", "--json"],
    );
    assert!(run.status.success(), "{}", text(&run));
    let report = json_of(&run);
    assert_eq!(report["status"], "succeeded", "{report}");
    let node = &report["nodes"][0];
    assert_eq!(node["status"], "succeeded", "{report}");
    assert!(
        node.to_string().contains("hello"),
        "the agent's output carries the param: {report}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn build_refuses_what_is_not_an_agent_crate() {
    let home = home("rlp-scaffold", "bad");
    let empty = home.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = rlp(
        &home,
        None,
        &["agent", "build", &empty.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("NotAnAgentCrate"), "{}", text(&out));

    let out = rlp(&home, None, &["agent", "scaffold", "Bad-Name", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(json_of(&out)["error"], "InvalidAgentName");

    let missing = home.join("no-sdk");
    let out = rlp(
        &home,
        None,
        &[
            "agent",
            "scaffold",
            "ok_name",
            "--dir",
            &home.display().to_string(),
            "--sdk",
            &missing.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SdkNotFound"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&home);
}
