//! A daemon that sends agtop bad frames: the real `agtop` binary runs in a private `tmux`
//! server against a scripted socket (a stand-in for `runloopd`: no real daemon sends bad
//! frames on purpose, which is the point). Its first subscription gets a frame with a bad
//! magic after the `subscribed` reply, its second an oversized frame, its third a good
//! snapshot. agtop
//! names each error with its RMP name in the status line, keeps running, subscribes
//! again, and draws the good snapshot. And an `--events` file with a bad line: the plan
//! drawn, the bad line counted; a missing file refused with exit 1.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use runloop_client::wire::{frame_of, limits};
use runloop_proto::frame::{Limits, encode_frame};
use runloop_proto::payloads::{
    ActorInfo, ActorKind, ActorNode, ActorRunState, ControlCommand, ControlOutcome, ControlReply,
    ControlRequest, StatusSnapshot,
};
use runloop_proto::{Body, Frame, Header, MsgId, StreamDecoder, TraceId};

const TMUX: &str = "/usr/bin/tmux";
const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Reads one control request from a fresh connection.
fn read_request(stream: &mut UnixStream) -> Option<ControlRequest> {
    let mut decoder = StreamDecoder::new(limits());
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame(now_ms()).ok()? {
            return frame.body().payload_as().ok();
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        decoder.push(&buf[..n]);
    }
}

fn reply(request_id: &str, outcome: ControlOutcome) -> Vec<u8> {
    let body = Body::from_payload(&ControlReply {
        request_id: request_id.into(),
        outcome,
    });
    frame_of(body, now_ms(), TraceId(0), MsgId(1))
}

fn snapshot(last_error: Option<String>) -> StatusSnapshot {
    StatusSnapshot {
        seq: 1,
        agents_cut: 0,
        taken_at_ms: now_ms(),
        usage_at_ms: 0,
        tree: ActorNode {
            name: "root".into(),
            kind: ActorKind::Supervisor,
            state: ActorRunState::Running,
            restarts: 0,
            last_error,
            info: None,
            children: vec![ActorNode {
                name: "fine-after-all".into(),
                kind: ActorKind::Worker,
                state: ActorRunState::Running,
                restarts: 0,
                last_error: None,
                info: Some(ActorInfo::Kernel {
                    cpu_ms: 5,
                    rss_kb: 4_096,
                    warm: None,
                }),
                children: vec![],
            }],
        },
    }
}

/// A good snapshot frame with its magic (`RMP0`) overwritten.
fn bad_magic() -> Vec<u8> {
    let mut bytes = frame_of(
        Body::from_payload(&snapshot(None)),
        now_ms(),
        TraceId(0),
        MsgId(4),
    );
    let at = bytes
        .windows(4)
        .position(|w| w == b"RMP0")
        .expect("a frame carries its magic");
    bytes[at..at + 4].copy_from_slice(b"XXXX");
    bytes
}

/// A snapshot frame four times the control body cap (encoded with a larger cap).
fn oversized() -> Vec<u8> {
    let body = Body::from_payload(&snapshot(Some("x".repeat(4 * 1024 * 1024))));
    let header = Header::new(body.kind().family(), now_ms(), 60_000, TraceId(0), MsgId(2)).unwrap();
    let frame = Frame::new(header, body).unwrap();
    encode_frame(&frame, &Limits::new(8 * 1024 * 1024)).unwrap()
}

/// The scripted daemon: subscriptions in turn get a bad magic, an oversized frame, then a
/// good snapshot — each only after `go` says the screen showed the previous error.
/// Polls (confirmations, runs) get empty lists.
fn serve(listener: UnixListener, go: mpsc::Receiver<()>) {
    let mut subscriptions = 0;
    let mut held = Vec::new();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let Some(request) = read_request(&mut stream) else {
            continue;
        };
        let id = request.request_id.clone();
        let answer = match request.command {
            ControlCommand::Subscribe { .. } => {
                if subscriptions > 0 && go.recv().is_err() {
                    return;
                }
                subscriptions += 1;
                let mut bytes = reply(&id, ControlOutcome::Subscribed { interval_ms: 1_000 });
                match subscriptions {
                    1 => bytes.extend(bad_magic()),
                    2 => bytes.extend(oversized()),
                    _ => bytes.extend(frame_of(
                        Body::from_payload(&snapshot(None)),
                        now_ms(),
                        TraceId(0),
                        MsgId(3),
                    )),
                }
                bytes
            }
            ControlCommand::ConfirmList => reply(&id, ControlOutcome::Actions { actions: vec![] }),
            ControlCommand::RunList { .. } => reply(&id, ControlOutcome::Runs { runs: vec![] }),
            other => panic!("agtop asked for {other:?}"),
        };
        // A client gone already is fine; the stream is kept open like a daemon's.
        let _ = stream.write_all(&answer);
        held.push(stream);
    }
}

struct Tmux {
    server: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(TMUX)
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {TMUX}: {e} (install tmux: apt-get install tmux)"))
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "agtop"]).stdout)
            .into_owned()
    }

    /// Waits until the screen contains `text`; fails with the last screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut status_lines: Vec<String> = Vec::new();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            // The status line (above the footer), each new one kept for the failure.
            let lines: Vec<&str> = screen.trim_end().lines().collect();
            if let Some(status) = lines.len().checked_sub(2).map(|i| lines[i].to_owned())
                && status_lines.last() != Some(&status)
            {
                status_lines.push(status);
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} on agtop's screen within {WAIT:?}; status lines seen: \
                 {status_lines:#?}\nlast screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `command` in the session `agtop` of a `width`×`height` window.
    fn start(&self, width: &str, height: &str, command: &str) {
        let started = self.run(&[
            "new-session",
            "-d",
            "-s",
            "agtop",
            "-x",
            width,
            "-y",
            height,
            command,
        ]);
        assert!(started.status.success(), "tmux: {started:?}");
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "agtop"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn bad_and_oversized_frames_are_reported_and_agtop_subscribes_again() {
    assert!(
        Path::new(TMUX).is_file(),
        "{TMUX} is missing: packaging/scripts/test.sh installs it (apt-get install tmux)"
    );
    let dir = tempfile::Builder::new()
        .prefix("agb")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("s.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (go, gate) = mpsc::channel();
    std::thread::spawn(move || serve(listener, gate));

    let tmux = Tmux {
        server: format!("agtop-bad-{}", std::process::id()),
    };
    let command = format!(
        "{} --socket {} --interval-ms 100",
        env!("CARGO_BIN_EXE_agtop"),
        socket.display()
    );
    tmux.start("200", "30", &command);

    let screen = tmux.wait_for("InvalidMagic");
    assert!(screen.contains("status stream:"), "{screen}");
    assert!(tmux.alive(), "agtop ended on a bad frame:\n{screen}");
    go.send(()).unwrap();
    let screen = tmux.wait_for("BodyTooLarge");
    assert!(tmux.alive(), "agtop ended on an oversized frame:\n{screen}");
    go.send(()).unwrap();
    let screen = tmux.wait_for("fine-after-all");
    assert!(
        screen.contains("#1"),
        "the good snapshot is drawn:\n{screen}"
    );

    tmux.run(&["send-keys", "-t", "agtop", "q"]);
    let deadline = Instant::now() + WAIT;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "agtop did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `agtop --events FILE`: the run's plan from the file, a bad line named by its number,
/// and a missing file refused before the terminal is touched.
#[test]
fn an_events_file_is_shown_and_its_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.ndjson");
    let mut text = String::new();
    for (i, event) in runloop_tui::fixtures::progress().iter().enumerate() {
        if i == 3 {
            text.push_str("{\"event\":\"node.exploded\"}\n");
        }
        text.push_str(&serde_json::to_string(event).unwrap());
        text.push('\n');
    }
    std::fs::write(&file, text).unwrap();

    let tmux = Tmux {
        server: format!("agtop-events-{}", std::process::id()),
    };
    let command = format!(
        "{} --events {}",
        env!("CARGO_BIN_EXE_agtop"),
        file.display()
    );
    tmux.start("120", "30", &command);
    let screen = tmux.wait_for("end of the events: 14 lines, 1 not taken");
    assert!(
        screen.contains("events from") && screen.contains("(no daemon)"),
        "{screen}"
    );
    assert!(
        screen.lines().any(|l| l.contains("send")
            && l.contains("confirming")
            && l.contains("← draft, review")),
        "the plan:\n{screen}"
    );
    tmux.run(&["send-keys", "-t", "agtop", "3"]);
    let screen = tmux.wait_for("[3 log]");
    assert!(screen.contains("draft: attempt 1 failed"), "{screen}");
    tmux.run(&["send-keys", "-t", "agtop", "q"]);

    let missing = Command::new(env!("CARGO_BIN_EXE_agtop"))
        .args(["--events", "/nonexistent/run.ndjson"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("--events /nonexistent/run.ndjson") && err.contains("No such file"),
        "{err}"
    );
}
