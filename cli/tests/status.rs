//! `rlp status` end to end: the real binary, embedded mode, a real daemon socket served
//! in-process, and an explicit socket that does not answer.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use runloop_kernel::control::{ControlPlane, PeerPolicy, serve};
use runloop_kernel::{Kernel, KernelOptions};

fn home(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rl-status-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rlp(home: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlp"));
    cmd.args(args).env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn without_a_daemon_status_boots_the_kernel_embedded() {
    let home = home("embedded");
    let out = rlp(&home, &["status"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("source: embedded kernel (no daemon answered at "),
        "{text}"
    );
    assert!(text.contains("\n    bus "), "{text}");
    // The warm sandbox pool (on by default) is counted with the kernel process.
    assert!(
        text.contains("; warm sandboxes waiting "),
        "the pool's counters: {text}"
    );
    let out = rlp(&home, &["status", "--json"], &[]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["source"], "embedded");
    assert_eq!(value["tree"]["children"][0]["name"], "system");
    assert_eq!(
        value["tree"]["children"][0]["children"][0]["state"],
        "running"
    );
}

#[test]
fn with_a_daemon_status_asks_it() {
    let home = home("daemon");
    let socket = home.join("rmp.sock");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, server, kernel) = runtime.block_on(async {
        let kernel = Arc::new(Kernel::boot(KernelOptions::default()).await.unwrap());
        let plane = Arc::new(ControlPlane::new(
            kernel.clone(),
            PeerPolicy::same_uid().unwrap(),
        ));
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        (stop, tokio::spawn(serve(listener, plane, rx)), kernel)
    });
    let socket_text = socket.display().to_string();
    let env = [("RUNLOOP__RUNTIME__SOCKETS_DIR", home.to_str().unwrap())];
    let out = rlp(&home, &["status", "--json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["source"], "daemon");
    assert_eq!(value["socket"], socket_text.as_str());
    let out = rlp(&home, &["status"], &env);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("source: daemon at {socket_text}\n")),
        "{text}"
    );
    runtime.block_on(async {
        stop.send(true).unwrap();
        server.await.unwrap();
        Arc::try_unwrap(kernel).unwrap().shutdown().await;
    });
}

#[test]
fn an_explicit_socket_that_does_not_answer_is_an_error() {
    let home = home("explicit");
    let missing = home.join("none.sock");
    let env = [("RUNLOOP__RUNTIME__SOCKET_PATH", missing.to_str().unwrap())];
    let out = rlp(&home, &["status", "--json"], &env);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["error"], "DaemonUnreachable");
    let out = rlp(&home, &["status"], &[("RUNLOOP__RUNTIME__SOKET", "x")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "rlp: Config: config: unknown key runtime.soket (from env RUNLOOP__RUNTIME__SOKET)"
    );
}
