//! The control plane over a real Unix socket: in-process server for the protocol cases,
//! and the real `runloopd` binary for boot, status and a clean SIGTERM shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runloop_actors::names::AgentName;
use runloop_actors::quarantine::QuarantineReason;
use runloop_client::{ClientError, request};
use runloop_kernel::control::{ControlPlane, PeerPolicy, serve};
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::frame::{Limits, decode_frame, encode_frame};
use runloop_proto::payloads::{ActorRunState, ControlCommand, ControlOutcome, ErrorReport, Ping};
use runloop_proto::{Body, Family, Frame, Header, MsgId, TraceId};

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rl-ctl-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Server {
    kernel: Arc<Kernel>,
    plane: Arc<ControlPlane>,
    path: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn server(test: &str, policy: PeerPolicy) -> Server {
    let path = temp_dir(test).join("rmp.sock");
    let kernel = Arc::new(Kernel::boot(KernelOptions::default()).await.unwrap());
    let plane = Arc::new(ControlPlane::new(kernel.clone(), policy));
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(listener, plane.clone(), rx));
    Server {
        kernel,
        plane,
        path,
        stop,
        task,
    }
}

impl Server {
    async fn close(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        drop(self.plane);
        Arc::try_unwrap(self.kernel).unwrap().shutdown().await;
    }
}

#[tokio::test]
async fn status_answers_with_the_tree() {
    let s = server("status", PeerPolicy::same_uid().unwrap()).await;
    let reply = request(&s.path, "r1", ControlCommand::Status)
        .await
        .unwrap();
    assert_eq!(reply.request_id, "r1");
    let ControlOutcome::Status { tree } = reply.outcome else {
        panic!("{:?}", reply.outcome)
    };
    assert_eq!(tree.name, "root");
    assert_eq!(tree.children[0].children[0].name, "bus");
    s.close().await;
}

#[tokio::test]
async fn requests_are_idempotent_by_request_id() {
    let s = server("idem", PeerPolicy::same_uid().unwrap()).await;
    let writer = AgentName::new("writer").unwrap();
    let reason = QuarantineReason::MalformedFrame {
        error: "InvalidMagic".into(),
        detail: "magic was XXXX".into(),
    };
    s.kernel
        .quarantine()
        .unwrap()
        .park(&writer, reason)
        .await
        .unwrap();
    let release = || ControlCommand::AgentRelease {
        agent: "writer".into(),
    };
    let first = request(&s.path, "rel-1", release()).await.unwrap();
    let ControlOutcome::Released { reason, .. } = &first.outcome else {
        panic!("{:?}", first.outcome)
    };
    assert!(
        reason.contains("sent a malformed frame (InvalidMagic)"),
        "{reason}"
    );
    // The same id again: the first answer, and the release is not executed twice.
    let again = request(&s.path, "rel-1", release()).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(s.plane.executed(), 1);
    // A new id executes, and now the agent is not quarantined.
    let second = request(&s.path, "rel-2", release()).await.unwrap();
    let ControlOutcome::Failed { code, message } = second.outcome else {
        panic!("{:?}", second.outcome)
    };
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("NotQuarantined", "agent writer is not quarantined")
    );
    let bad = request(
        &s.path,
        "rel-3",
        ControlCommand::AgentRelease {
            agent: "Bad Name".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(bad.outcome, ControlOutcome::Failed { ref code, .. } if code == "InvalidName")
    );
    let empty = request(&s.path, "", ControlCommand::Status).await.unwrap();
    assert!(
        matches!(empty.outcome, ControlOutcome::Failed { ref code, .. } if code == "BadRequestId")
    );
    s.close().await;
}

#[tokio::test]
async fn a_peer_with_another_uid_is_refused() {
    let own = PeerPolicy::same_uid().unwrap();
    let policy = PeerPolicy {
        uid: own.uid + 1,
        group: Some(own.uid + 12_345),
        root: false,
    };
    let s = server("peercred", policy).await;
    let err = request(&s.path, "r1", ControlCommand::Status)
        .await
        .unwrap_err();
    let ClientError::Refused { code, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(code, "PermissionDenied");
    assert!(message.contains("may not use this socket"), "{message}");
    assert_eq!(s.plane.executed(), 0);
    s.close().await;
}

fn read_one_frame(stream: &mut StdStream) -> Frame {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a frame");
        buf.extend_from_slice(&chunk[..n]);
        if let Ok((frame, _)) = decode_frame(&buf, &Limits::default(), 0) {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_reports_with_the_rmp_name() {
    let s = server("badframes", PeerPolicy::same_uid().unwrap()).await;
    let path = s.path.clone();
    tokio::task::spawn_blocking(move || {
        // A well-formed frame of the wrong kind: an error report, the connection goes on.
        let mut stream = StdStream::connect(&path).unwrap();
        let now_ms = runloop_proto::Clock::now_ms(&runloop_proto::SystemClock);
        let header = Header::new(Family::Control, now_ms, 60_000, TraceId(1), MsgId(1)).unwrap();
        let ping = Frame::new(header, Body::from_payload(&Ping { seq: 1 })).unwrap();
        stream
            .write_all(&encode_frame(&ping, &Limits::default()).unwrap())
            .unwrap();
        let report: ErrorReport = read_one_frame(&mut stream).body().payload_as().unwrap();
        assert_eq!(report.code, "BodyTypeMismatch");
        // Garbage: InvalidMagic, then the daemon closes the stream.
        let mut garbage = vec![0, 0, 0, 80];
        garbage.extend_from_slice(&[b'X'; 80]);
        stream.write_all(&garbage).unwrap();
        let report: ErrorReport = read_one_frame(&mut stream).body().payload_as().unwrap();
        assert_eq!(report.code, "InvalidMagic");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    })
    .await
    .unwrap();
    s.close().await;
}

#[test]
fn runloopd_serves_status_and_stops_cleanly_on_sigterm() {
    let dir = temp_dir("daemon");
    let socket = dir.join("sock/rmp.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .arg("--socket")
        .arg(&socket)
        .env("HOME", &dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("runloopd: listening on"), "{line}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = runtime
        .block_on(request(&socket, "d1", ControlCommand::Status))
        .unwrap();
    let ControlOutcome::Status { tree, .. } = reply.outcome else {
        panic!("status expected, got {:?}", reply.outcome)
    };
    // The daemon starts the POG and broker singletons in their slots, with the POG's
    // files under the (test) home's state dir.
    let system = tree
        .children
        .iter()
        .find(|c| c.name == "system")
        .expect("system supervisor");
    for slot in ["pog", "broker"] {
        let node = system
            .children
            .iter()
            .find(|c| c.name == slot)
            .unwrap_or_else(|| panic!("{slot} in {system:?}"));
        assert_eq!(node.state, ActorRunState::Running, "{slot}: {node:?}");
    }
    assert!(dir.join(".runloop/pog/events.sqlite").exists());
    // A second daemon on the same socket refuses to start.
    let second = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .arg("--socket")
        .arg(&socket)
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another runloopd already listens"), "{said}");
    // It names the daemon that holds the socket.
    assert!(
        said.contains(&format!("held by pid {} (runloopd)", child.id())),
        "{said}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("runloopd: stopped"), "{rest}");
    assert!(!socket.exists(), "the socket file is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listener held by something that is not a runloopd (as a killed daemon's sandbox,
/// caught between clone and exec, holds a copy of its socket for a moment) is waited for:
/// once it goes, the daemon replaces the stale socket and serves; one that stays is an
/// error naming who holds it.
#[test]
fn runloopd_waits_out_a_listener_left_by_another_process() {
    let dir = temp_dir("stale-listener");
    let socket = dir.join("rmp.sock");
    let runloopd = |home: &Path| {
        Command::new(env!("CARGO_BIN_EXE_runloopd"))
            .arg("--socket")
            .arg(&socket)
            .env("HOME", home)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Held for 600 ms by this test process, then closed (the file stays, as after a kill).
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(listener);
    });
    let started = Instant::now();
    let mut child = runloopd(&dir);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    holder.join().unwrap();
    assert!(line.starts_with("runloopd: listening on"), "{line}");
    assert!(started.elapsed() >= Duration::from_millis(600));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());

    // Held for longer than the daemon waits: it gives up and says by whom.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = runloopd(&dir).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("another runloopd already listens")
            && said.contains(&format!("held by pid {} (", std::process::id())),
        "{said}"
    );
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runloopd_rejects_bad_config_with_exit_2() {
    let dir = temp_dir("daemon-bad");
    let out = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .args(["--set", "runtime.nope=1"])
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "runloopd: config: unknown key runtime.nope (from flag --set runtime.nope=1)"
    );
}
