//! The control plane under hostile and unlucky clients, on real sockets: concurrent
//! duplicates of one request id (a real echo agent counts its messages), the two
//! starvation attacks against a real `runloopd` (1,000 held connections with the daemon's
//! fds capped at 100; 64 slowloris clients), the socket directory's mode, a failed boot's
//! socket, and `subscribe` streams of typed snapshots.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runloop_actors::names::AgentName;
use runloop_client::wire::{frame_of, limits};
use runloop_client::{StatusItem, request, subscribe};
use runloop_kernel::Kernel;
use runloop_kernel::control::{ControlPlane, PeerPolicy, serve};
use runloop_proto::frame::decode_frame;
use runloop_proto::payloads::{
    ActorInfo, ControlCommand, ControlOutcome, ControlReply, ControlRequest, ErrorReport, RunEvent,
};
use runloop_proto::{Body, Clock, Frame, Kind, MsgId, SystemClock, TraceId};

mod common;
use common::{bundle, options};

/// The frame deadline the daemon tests run with (the default is 2 s).
const TEST_FRAME_DEADLINE_MS: u64 = 1_000;
/// How long the owner's status may take while an attack runs: the frame deadline, after
/// which the attacker's slots are freed, plus the client's longest busy back-off and slack.
const OWNER_STATUS_WITHIN_MS: u64 = 3_000;

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rl-ctlh-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn request_frame(id: &str, command: ControlCommand) -> Vec<u8> {
    let body = Body::from_payload(&ControlRequest {
        request_id: id.into(),
        command,
    });
    frame_of(body, SystemClock.now_ms(), TraceId(7), MsgId(1))
}

/// Reads one whole frame (blocking, bounded by the stream's read timeout).
fn read_frame(stream: &mut StdStream) -> Option<Frame> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Ok((frame, _)) = decode_frame(&buf, &limits(), SystemClock.now_ms()) {
            return Some(frame);
        }
    }
}

fn report_code(stream: &mut StdStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let frame = read_frame(stream).expect("a report before the close");
    assert_eq!(frame.body().kind(), Kind::ErrorReport);
    frame.body().payload_as::<ErrorReport>().unwrap().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_duplicates_run_the_command_once() {
    let kernel = Arc::new(Kernel::boot(options("ctl-dup")).await.unwrap());
    kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    let plane = Arc::new(ControlPlane::new(
        kernel.clone(),
        PeerPolicy::same_uid().unwrap(),
    ));
    let path = temp_dir("dup").join("rmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, plane.clone(), rx));
    let send = ControlCommand::AgentSend {
        agent: "echo".into(),
        port: "in".into(),
        input_json: r#"{"n": 1}"#.into(),
    };
    let frame = request_frame("dup-1", send);
    let replies = tokio::task::spawn_blocking(move || {
        // All eight connections are open and have sent the same request before any
        // answer is read.
        let mut streams: Vec<StdStream> =
            (0..8).map(|_| StdStream::connect(&path).unwrap()).collect();
        for stream in &mut streams {
            stream.write_all(&frame).unwrap();
        }
        streams
            .iter_mut()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let frame = read_frame(s).expect("a reply");
                frame.body().payload_as::<ControlReply>().unwrap()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        matches!(replies[0].outcome, ControlOutcome::AgentReplied { .. }),
        "{:?}",
        replies[0]
    );
    assert!(replies.iter().all(|r| *r == replies[0]), "{replies:?}");
    assert_eq!(plane.executed(), 1);
    let echo = AgentName::new("echo").unwrap();
    let metrics = kernel.agent_metrics(&echo).unwrap().snapshot();
    assert_eq!(metrics.messages_in, 1, "the agent got the message once");
    stop.send(true).unwrap();
    server.await.unwrap();
    drop(plane);
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_typed_snapshots_and_events_and_is_cleaned_up() {
    let kernel = Arc::new(Kernel::boot(options("ctl-sub")).await.unwrap());
    let plane = Arc::new(ControlPlane::new(
        kernel.clone(),
        PeerPolicy::same_uid().unwrap(),
    ));
    let path = temp_dir("sub").join("rmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, plane.clone(), rx));

    // Asked for 1 ms, the daemon clamps to its floor.
    let mut sub = subscribe(&path, "sub-1", 1).await.unwrap();
    assert_eq!(sub.interval_ms(), 100);
    let mut seqs = Vec::new();
    let mut started = false;
    let mut agent_seen = false;
    let mut starting = None;
    // Starting echo compiles it; a loaded machine and a debug build take a while.
    let deadline = Instant::now() + Duration::from_secs(90);
    while (seqs.len() < 3 || !started || !agent_seen) && Instant::now() < deadline {
        match sub.next().await.unwrap().expect("the stream goes on") {
            StatusItem::Snapshot(snapshot) => {
                let system = snapshot.tree.children.iter().find(|c| c.name == "system");
                let bus = system.unwrap().children.iter().find(|c| c.name == "bus");
                assert!(
                    matches!(bus.unwrap().info, Some(ActorInfo::Bus(_))),
                    "{:?}",
                    bus
                );
                let runs = snapshot.tree.children.iter().find(|c| c.name == "runs");
                agent_seen |= runs.unwrap().children.iter().any(|run| {
                    run.children.iter().any(|n| {
                        matches!(&n.info, Some(ActorInfo::Agent(a)) if a.name == "echo" && a.sandbox_pid.is_some())
                    })
                });
                seqs.push(snapshot.seq);
                if seqs.len() == 1 {
                    // An agent started between two snapshots shows as a run event. It
                    // starts on its own task, so the stream is read meanwhile.
                    let kernel = kernel.clone();
                    starting = Some(tokio::spawn(async move {
                        kernel.start_bundle(&bundle("echo"), None).await.unwrap();
                    }));
                }
            }
            StatusItem::Event(event) => {
                assert_eq!(
                    event,
                    RunEvent::AgentStarted {
                        agent: "echo".into()
                    }
                );
                started = true;
            }
            StatusItem::Progress(p) => panic!("no run was submitted, yet: {p:?}"),
        }
    }
    assert!(
        seqs.len() >= 3 && started && agent_seen,
        "{seqs:?} {started} {agent_seen}"
    );
    starting
        .expect("started after the first snapshot")
        .await
        .unwrap();
    // The first stream starts the shared sampler at snapshot 1; a stream's snapshots go
    // up (by one per period, more where it skipped one).
    assert_eq!(seqs[0], 1, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(plane.subscribers(), 1);

    // A plain request for subscribe outside the socket is turned away.
    let embedded = plane
        .answer(
            0,
            ControlRequest {
                request_id: "s".into(),
                command: ControlCommand::Subscribe { interval_ms: 100 },
            },
        )
        .await;
    assert!(
        matches!(embedded.outcome, ControlOutcome::Failed { ref code, .. } if code == "StreamOnly")
    );

    // The subscriber goes away: the daemon's side ends within a tick or two.
    drop(sub);
    let gone_by = Instant::now() + Duration::from_secs(5);
    while plane.subscribers() > 0 && Instant::now() < gone_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(plane.subscribers(), 0, "a closed subscriber is cleaned up");
    // Its slot is free: status still answers.
    request(&path, "after", ControlCommand::Status)
        .await
        .unwrap();
    stop.send(true).unwrap();
    server.await.unwrap();
    drop(plane);
    Arc::try_unwrap(kernel).unwrap().shutdown().await;
}

/// A real `runloopd` on a socket under a fresh directory, stopped on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    home: PathBuf,
}

impl Daemon {
    fn start(test: &str, nofile: Option<u64>) -> Daemon {
        let home = temp_dir(test);
        let socket = home.join("sock/rmp.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runloopd"));
        cmd.arg("--socket")
            .arg(&socket)
            .args(["--frame-deadline-ms", &TEST_FRAME_DEADLINE_MS.to_string()])
            .env("HOME", &home)
            .stderr(Stdio::piped());
        let mut child = match nofile {
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={n}"))
                    .arg("--")
                    .arg(cmd.get_program())
                    .args(cmd.get_args())
                    .env("HOME", &home)
                    .stderr(Stdio::piped());
                prlimit.spawn().unwrap()
            }
            None => cmd.spawn().unwrap(),
        };
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.starts_with("runloopd: listening on"), "{line}");
        Daemon {
            child,
            socket,
            home,
        }
    }

    /// Times the owner's own status request.
    fn owner_status(&self) -> (Result<ControlReply, runloop_client::ClientError>, Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let reply = runtime.block_on(request(&self.socket, "owner", ControlCommand::Status));
        (reply, started.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn assert_prompt_status(reply: Result<ControlReply, runloop_client::ClientError>, took: Duration) {
    let reply = reply.expect("the owner's status gets through");
    assert!(
        matches!(reply.outcome, ControlOutcome::Status { .. }),
        "{reply:?}"
    );
    assert!(
        took < Duration::from_millis(OWNER_STATUS_WITHIN_MS),
        "status took {took:?}"
    );
}

#[test]
fn a_thousand_held_connections_do_not_starve_the_owner() {
    // The daemon may hold 100 fds; the attacker opens 1,000 connections and sends nothing.
    let daemon = Daemon::start("held", Some(100));
    let mut held: Vec<StdStream> = (0..1_000)
        .map(|_| StdStream::connect(&daemon.socket).expect("connect"))
        .collect();
    let (reply, took) = daemon.owner_status();
    assert_prompt_status(reply, took);
    // The attack was real: the last connections were turned away at once as busy, the
    // first ones were served until the frame deadline closed them.
    assert_eq!(report_code(held.last_mut().unwrap()), "Busy");
    assert_eq!(report_code(&mut held[0]), "FrameDeadline");
}

#[test]
fn sixty_four_slowloris_clients_do_not_starve_the_owner() {
    let daemon = Daemon::start("slowloris", None);
    // Each client dribbles a valid request frame one byte at a time, well inside any
    // per-read timeout, so only a deadline on the whole frame ends them.
    let frame = request_frame("slow", ControlCommand::Status);
    let mut clients: Vec<StdStream> = (0..64)
        .map(|_| StdStream::connect(&daemon.socket).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<StdStream> = clients.iter().map(|c| c.try_clone().unwrap()).collect();
    let dribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut writers = writers;
            let mut at = 0;
            while !stop.load(Ordering::Relaxed) && at < frame.len() {
                for w in &mut writers {
                    let _ = w.write_all(&frame[at..at + 1]);
                }
                at += 1;
                std::thread::sleep(Duration::from_millis(TEST_FRAME_DEADLINE_MS / 5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(TEST_FRAME_DEADLINE_MS / 2));
    let (reply, took) = daemon.owner_status();
    stop.store(true, Ordering::Relaxed);
    dribbler.join().unwrap();
    assert_prompt_status(reply, took);
    assert_eq!(report_code(&mut clients[0]), "FrameDeadline");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_socket_directory_is_0700_and_the_socket_0660() {
    let daemon = Daemon::start("modes", None);
    assert_eq!(mode_of(daemon.socket.parent().unwrap()), 0o700);
    assert_eq!(mode_of(&daemon.socket), 0o660);
}

#[test]
fn a_failed_boot_removes_its_socket() {
    let home = temp_dir("failboot");
    let socket = home.join("sock/rmp.sock");
    // A corrupt quarantine file stops the boot after the socket is bound.
    std::fs::create_dir_all(home.join(".runloop")).unwrap();
    std::fs::write(home.join(".runloop/quarantine.msgpack"), b"not msgpack").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runloopd"))
        .arg("--socket")
        .arg(&socket)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(socket.parent().unwrap().exists(), "the bind happened");
    assert!(!socket.exists(), "the socket is removed");
    let _ = std::fs::remove_dir_all(&home);
}

/// The `control_answer` fuzz target's seeds: valid request frames stamped with the fuzz
/// kernel's clock (`UPDATE_SEEDS=1` rewrites them; the test fails while they are stale).
#[test]
fn fuzz_seeds_are_fresh() {
    const FUZZ_NOW_MS: u64 = 1_763_766_000_000;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/control_answer");
    let stamped = |id: &str, command: ControlCommand| {
        let body = Body::from_payload(&ControlRequest {
            request_id: id.into(),
            command,
        });
        frame_of(body, FUZZ_NOW_MS, TraceId(1), MsgId(1))
    };
    let mut two = stamped("s1", ControlCommand::Status);
    two.extend(stamped("s1", ControlCommand::AgentList));
    let seeds = [
        ("status", stamped("s1", ControlCommand::Status)),
        ("agent_list", stamped("l1", ControlCommand::AgentList)),
        (
            "release",
            stamped(
                "r1",
                ControlCommand::AgentRelease {
                    agent: "writer".into(),
                },
            ),
        ),
        (
            "stop",
            stamped(
                "p1",
                ControlCommand::AgentStop {
                    agent: "echo".into(),
                },
            ),
        ),
        (
            "send",
            stamped(
                "e1",
                ControlCommand::AgentSend {
                    agent: "echo".into(),
                    port: "in".into(),
                    input_json: r#"{"n": [1, "x", null]}"#.into(),
                },
            ),
        ),
        (
            "start_missing",
            stamped(
                "a1",
                ControlCommand::AgentStart {
                    bundle: "/nonexistent/bundle".into(),
                    name: Some("x".into()),
                },
            ),
        ),
        (
            "subscribe",
            stamped("u1", ControlCommand::Subscribe { interval_ms: 100 }),
        ),
        ("two_frames_same_id", two),
    ];
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let have = std::fs::read(&path).unwrap_or_default();
        assert!(
            have == bytes,
            "{} is stale: run `UPDATE_SEEDS=1 cargo test -p runloop-kernel --test control_hardening`",
            path.display()
        );
    }
}
