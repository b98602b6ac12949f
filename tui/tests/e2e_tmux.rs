//! agtop end to end, as a person uses it: a real `runloopd` runs the `compose_email`
//! opening until its send waits for a yes; `agtop` runs on a real terminal (a pane of a
//! private `tmux` server, read with `capture-pane`, typed into with `send-keys`); the
//! header counts the pending confirmation, `a` shows it, `y` approves it, and the message
//! lands in the Maildir outbox exactly once. And agtop where no daemon listens: exit 1,
//! saying how to start one.
//!
//! Needs `runloopd`, `rlp` and `runloop-sandbox-host` built next to `agtop` (the same
//! target dir and profile; a test of this package cannot build other packages' binaries),
//! and `tmux`. A missing part fails the test with the command that provides it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// From submitting compose_email to its send waiting for a yes: five sandboxes start in a
/// debug build and the offline writer runs (the CLI tests allow 90 s for the same wait).
const PENDING_WAIT_MS: u64 = 120_000;
/// From the yes to the run's report.
const RUN_END_WAIT_MS: u64 = 60_000;
/// From a key to what it draws (agtop redraws at once; a snapshot comes every 250 ms).
const SCREEN_WAIT_MS: u64 = 15_000;
/// From runloopd's start to its socket accepting.
const DAEMON_LISTEN_WAIT_MS: u64 = 20_000;
/// From SIGTERM to runloopd's exit, before it is SIGKILLed.
const DAEMON_STOP_WAIT_MS: u64 = 10_000;
const POLL_MS: u64 = 100;
/// The tail of runloopd's stderr a failure message shows.
const DAEMON_LOG_LINES_MAX: usize = 40;
/// The terminal agtop draws on.
const COLUMNS: u16 = 120;
const ROWS: u16 = 40;
/// The recipient compose_email resolves "John" to in the sample contacts.
const RECIPIENT: &str = "john.smith@example.com";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of another package, next to agtop; fails naming the build command if absent.
fn sibling(name: &str, package: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_agtop")).with_file_name(name);
    assert!(
        path.is_file(),
        "{name} is not built at {}: run `source packaging/scripts/env.sh && \
         cargo build -p {package} --bin {name}` first",
        path.display()
    );
    path
}

/// The parts the test drives.
struct Bins {
    agtop: PathBuf,
    runloopd: PathBuf,
    rlp: PathBuf,
    sandbox_host: PathBuf,
    tmux: PathBuf,
}

impl Bins {
    fn locate() -> Bins {
        let tmux = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("tmux"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("tmux is not installed (not on PATH): apt-get install tmux"));
        Bins {
            agtop: PathBuf::from(env!("CARGO_BIN_EXE_agtop")),
            runloopd: sibling("runloopd", "runloop-kernel"),
            rlp: sibling("rlp", "runloop-cli"),
            sandbox_host: sibling("runloop-sandbox-host", "runloop-sandbox-host"),
            tmux,
        }
    }
}

/// `program` with its own `HOME` and none of the caller's Runloop settings.
fn command(program: &Path, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("HOME", home).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNLOOP") {
            c.env_remove(key);
        }
    }
    c
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout {}\nstderr {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One test's world: a private directory with the `HOME` of every process, the sample
/// contacts and notes in its POG, and a real daemon on its own socket. Dropped in field
/// order: the daemon stops before the directory goes.
struct World {
    bins: Bins,
    home: PathBuf,
    socket: PathBuf,
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let bins = Bins::locate();
        let dir = tempfile::Builder::new()
            .prefix("agtop-e2e")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        // Straight into the POG: no daemon runs yet.
        let sample = repo().join("examples/pog/sample.ndjson");
        let out = command(&bins.rlp, &home)
            .args(["kb", "import"])
            .arg(&sample)
            .output()
            .expect("run rlp kb import");
        assert_eq!(out.status.code(), Some(0), "rlp kb import: {}", text(&out));
        let socket = dir.path().join("rmp.sock");
        let daemon = Daemon::start(&bins, &home, &socket, dir.path().join("runloopd.log"));
        World {
            bins,
            home,
            socket,
            daemon,
            dir,
        }
    }

    /// `rlp ARGS --json` against the daemon.
    fn rlp(&self, args: &[&str]) -> Output {
        command(&self.bins.rlp, &self.home)
            .env("RUNLOOP__RUNTIME__SOCKET_PATH", &self.socket)
            .args(args)
            .arg("--json")
            .output()
            .expect("run rlp")
    }

    /// `rlp ARGS --json` against the daemon, which must succeed, parsed.
    fn rlp_json(&self, args: &[&str]) -> Value {
        let out = self.rlp(args);
        assert_eq!(out.status.code(), Some(0), "rlp {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    /// The messages in the Maildir outbox.
    fn outbox(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(dir) = std::fs::read_dir(self.home.join(".runloop/outbox").join(sub)) {
                for entry in dir.flatten() {
                    out.push(std::fs::read_to_string(entry.path()).unwrap());
                }
            }
        }
        out
    }

    /// compose_email submitted detached: through the daemon its send waits for a
    /// decision from anyone (no terminal answers it). Returns the run's trace id.
    fn submit_compose_email(&self) -> String {
        let opening = repo().join("examples/openings/compose_email.yaml");
        let submitted = self.rlp_json(&["run", opening.to_str().unwrap(), "--detach"]);
        submitted["trace_id"].as_str().unwrap().to_owned()
    }

    /// Polls `rlp runs --json` (a snapshot) until the run is no longer running, then
    /// returns its report. Not `rlp runs TRACE`: that follows a live run to its end, and
    /// would wait out the opening's 30-minute timeout if the yes never arrived.
    fn wait_for_run_end(&self, trace: &str, tmux: &Tmux) -> Value {
        let deadline = Instant::now() + Duration::from_millis(RUN_END_WAIT_MS);
        loop {
            let listed = self.rlp_json(&["runs"]);
            let row = listed["runs"]
                .as_array()
                .and_then(|runs| runs.iter().find(|r| r["trace_id"] == trace))
                .unwrap_or_else(|| panic!("run {trace} is not listed: {listed}"));
            if row["status"] != "running" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the run did not end within {RUN_END_WAIT_MS} ms of the yes: {row}\n\
                 agtop:\n{}\nrunloopd:\n{}",
                framed(&tmux.screen()),
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        // Exit 1 is a run that failed: its report is still printed, and checked later.
        let out = self.rlp(&["runs", trace]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "rlp runs {trace}: {}",
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    /// The confirmation decisions recorded in the run's trace (the POG's record; the
    /// report's `decisions` lists only those its watcher saw live).
    fn recorded_decisions(&self, trace: &str) -> Vec<String> {
        let view = self.rlp_json(&["trace", trace]);
        view["crossings"]
            .as_array()
            .unwrap_or_else(|| panic!("a trace has crossings: {view}"))
            .iter()
            .filter(|c| c["kind"] == "confirm.decision")
            .map(|c| c["detail"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// agtop on the daemon's socket, in a private tmux server.
    fn agtop_in_tmux(&self) -> Tmux {
        let argv = [
            self.bins.agtop.as_os_str(),
            OsStr::new("--socket"),
            self.socket.as_os_str(),
            OsStr::new("--interval-ms"),
            OsStr::new("250"),
        ];
        Tmux::start(&self.bins.tmux, self.dir.path(), &self.home, &argv)
    }
}

/// The real daemon on its own socket, its stderr in a log file; SIGTERMed (SIGKILLed if
/// it does not stop) and reaped when dropped, also when the test fails.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(bins: &Bins, home: &Path, socket: &Path, log: PathBuf) -> Daemon {
        let stderr = std::fs::File::create(&log).unwrap();
        let child = command(&bins.runloopd, home)
            .arg("--socket")
            .arg(socket)
            .env("RUNLOOP_SANDBOX_HOST", &bins.sandbox_host)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start runloopd");
        let mut daemon = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_millis(DAEMON_LISTEN_WAIT_MS);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "runloopd exited ({status}) before listening:\n{}",
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        panic!(
            "runloopd did not listen on {} within {DAEMON_LISTEN_WAIT_MS} ms:\n{}",
            socket.display(),
            daemon.log()
        );
    }

    /// The last lines of the daemon's stderr, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(DAEMON_LOG_LINES_MAX)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_millis(DAEMON_STOP_WAIT_MS);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private tmux server (its own socket file in the test's directory, no user config)
/// with one session running one command; the server is killed when dropped, also when
/// the test fails. The pane stays after its command exits, so its last screen can be
/// read; its exit status is written to a file by the `sh` that runs it, because tmux
/// 3.3 can mark a pane dead at the terminal's hang-up and reap the process (and learn its
/// status) only much later.
struct Tmux {
    program: PathBuf,
    socket: PathBuf,
    status: PathBuf,
    home: PathBuf,
}

const SESSION: &str = "agtop";
/// Runs "$@", then writes its exit status to the file $0 (renamed into place, so a
/// reader never sees half of it).
const STATUS_SCRIPT: &str = r#""$@"; echo "$?" > "$0.tmp" && mv "$0.tmp" "$0""#;

impl Tmux {
    fn start(program: &Path, dir: &Path, home: &Path, argv: &[&OsStr]) -> Tmux {
        let config = dir.join("tmux.conf");
        // No status line: the pane is the whole COLUMNS x ROWS terminal.
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let tmux = Tmux {
            program: program.to_owned(),
            socket: dir.join("tmux.sock"),
            status: dir.join("pane.status"),
            home: home.to_owned(),
        };
        let mut c = tmux.command();
        c.arg("-f").arg(&config).args([
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &COLUMNS.to_string(),
            "-y",
            &ROWS.to_string(),
        ]);
        // More than one argument: tmux runs `sh` itself, no shell line to quote; `sh`
        // runs argv as given ("$@") and writes its status to the file named by $0. The
        // server, and so the command, inherits this client's environment.
        c.args(["sh", "-c", STATUS_SCRIPT])
            .arg(&tmux.status)
            .args(argv);
        let out = c.output().expect("run tmux new-session");
        assert!(out.status.success(), "tmux new-session: {}", text(&out));
        tmux
    }

    /// A tmux client of this server, outside any tmux the test itself runs in.
    fn command(&self) -> Command {
        let mut c = command(&self.program, &self.home);
        c.arg("-S").arg(&self.socket).env_remove("TMUX");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run tmux")
    }

    /// The pane's visible text, one line per row.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", SESSION]);
        assert!(out.status.success(), "tmux capture-pane: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, key: &str) {
        let out = self.run(&["send-keys", "-t", SESSION, key]);
        assert!(out.status.success(), "tmux send-keys {key}: {}", text(&out));
    }

    /// Polls the screen until `done` holds; fails with `what` and the last screen.
    fn wait_for(&self, what: &str, wait_ms: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "agtop did not show {what} within {wait_ms} ms; the last screen:\n{}",
                framed(&screen)
            );
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// The exit status of the pane's command once it has exited, else None.
    fn exit_status(&self) -> Option<i32> {
        let written = std::fs::read_to_string(&self.status).ok()?;
        Some(
            written
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}: {written:?}", self.status.display())),
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A screen between rules, so its blank lines and edges show in a failure message.
fn framed(screen: &str) -> String {
    let rule = "─".repeat(COLUMNS as usize);
    format!("{rule}\n{}\n{rule}", screen.trim_end_matches('\n'))
}

/// The header's count of pending confirmations is `n`.
fn pending(screen: &str, n: usize) -> bool {
    screen.contains(&format!("pending {n}"))
}

/// The `result` output of the run's `send` node.
fn send_result(report: &Value) -> Value {
    let send = report["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == "send"))
        .unwrap_or_else(|| panic!("no send node: {report}"));
    send["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|p| p[0] == "result"))
        .map(|p| p[1].clone())
        .unwrap_or_else(|| panic!("send emitted no result: {report}"))
}

/// The header counts the one pending confirmation (and the footer names `a`); returns
/// the request's payload hash, as `rlp confirm ls` reports it.
fn see_it_pending(world: &World, tmux: &Tmux, trace: &str) -> String {
    let screen = tmux.wait_for("`pending 1` in its header", PENDING_WAIT_MS, |s| {
        pending(s, 1)
    });
    assert!(
        screen.contains("a confirm"),
        "the footer names `a`:\n{}",
        framed(&screen)
    );
    let listed = world.rlp_json(&["confirm", "ls"]);
    let action = &listed["actions"][0];
    assert_eq!(action["trace_id"], trace, "{listed}");
    assert_eq!(action["effect"], "mail.send", "{listed}");
    action["payload_hash"].as_str().unwrap().to_owned()
}

/// `2` shows the run's plan: agtop started after the run, so the DAG comes from the
/// daemon's `run_show`; the send node waits for a person, after draft and review.
fn see_the_plan(tmux: &Tmux) {
    tmux.keys("2");
    let plan = tmux.wait_for("the plan with send waiting", SCREEN_WAIT_MS, |s| {
        s.contains("[2 plan]")
            && s.lines().any(|l| {
                l.contains("send") && l.contains("confirming") && l.contains("← draft, review")
            })
    });
    for node in ["contact", "context", "draft", "review"] {
        assert!(
            plan.lines()
                .any(|l| l.contains(&format!("✓ {node}")) && l.contains("succeeded")),
            "{node} succeeded in the plan:\n{}",
            framed(&plan)
        );
    }
}

/// `a` opens the confirmation: the effect, the recipient, the hash and the keys; `y`.
fn approve_in_the_modal(world: &World, tmux: &Tmux, hash: &str) {
    tmux.keys("a");
    let modal = tmux.wait_for("the confirmation of the send", SCREEN_WAIT_MS, |s| {
        s.contains("mail.send") && s.contains("y approve")
    });
    assert!(
        modal.contains(RECIPIENT),
        "the recipient:\n{}",
        framed(&modal)
    );
    // A prefix: the modal may wrap or shorten the hash on a narrow terminal.
    assert!(
        modal.contains(&hash[..16]),
        "the payload hash {hash}:\n{}",
        framed(&modal)
    );
    assert!(world.outbox().is_empty(), "nothing is sent before the yes");
    tmux.keys("y");
}

/// The run succeeded on agtop's one yes; one message went out; nothing waits any more,
/// on the daemon or on agtop's screen.
fn check_sent_once(world: &World, tmux: &Tmux, report: &Value) {
    assert_eq!(
        report["status"],
        "succeeded",
        "{report}\nagtop:\n{}\nrunloopd:\n{}",
        framed(&tmux.screen()),
        world.daemon.log()
    );
    assert_eq!(send_result(report)["status"], "sent", "{report}");
    let decisions = world.recorded_decisions(report["trace_id"].as_str().unwrap());
    assert!(
        matches!(&decisions[..], [one] if one.starts_with("approve") && one.ends_with("by agtop")),
        "one decision, a yes by agtop: {decisions:?}"
    );
    let sent = world.outbox();
    assert_eq!(sent.len(), 1, "exactly one message: {sent:#?}");
    assert!(sent[0].contains(RECIPIENT), "{}", sent[0]);
    let listed = world.rlp_json(&["confirm", "ls"]);
    assert_eq!(
        listed["actions"],
        serde_json::json!([]),
        "nothing pending: {listed}"
    );
    tmux.wait_for("`pending 0` after the yes", SCREEN_WAIT_MS, |s| {
        pending(s, 0)
    });
}

/// `q` ends agtop with status 0.
fn quit(tmux: &Tmux) {
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_millis(SCREEN_WAIT_MS);
    let status = loop {
        if let Some(status) = tmux.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "agtop did not quit on `q`:\n{}",
            framed(&tmux.screen())
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    assert_eq!(
        status,
        0,
        "agtop's exit status; its last screen:\n{}",
        framed(&tmux.screen())
    );
}

#[test]
fn agtop_in_tmux_approves_the_pending_send_and_the_email_goes_out_once() {
    let world = World::new();
    let trace = world.submit_compose_email();
    // Declared after the world, so dropped (its server killed) before the daemon stops.
    let tmux = world.agtop_in_tmux();
    let hash = see_it_pending(&world, &tmux, &trace);
    see_the_plan(&tmux);
    approve_in_the_modal(&world, &tmux, &hash);
    let report = world.wait_for_run_end(&trace, &tmux);
    check_sent_once(&world, &tmux, &report);
    quit(&tmux);
    assert_eq!(world.outbox().len(), 1, "still one message");
}

#[test]
fn without_a_daemon_agtop_exits_1_and_says_how_to_start_one() {
    let dir = tempfile::Builder::new()
        .prefix("agtop-e2e")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("nobody.sock");
    let out = command(Path::new(env!("CARGO_BIN_EXE_agtop")), dir.path())
        .arg("--socket")
        .arg(&socket)
        .output()
        .expect("run agtop");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&socket.display().to_string()),
        "where it looked: {stderr}"
    );
    assert!(
        stderr.contains("start one with `runloopd`"),
        "how to start one: {stderr}"
    );
    assert!(
        stderr.contains("--socket"),
        "how to point it at a daemon: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing drawn: {}", text(&out));
}
