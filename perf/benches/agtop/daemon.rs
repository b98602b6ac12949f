//! The daemon side of the agtop bench: a real `runloopd` with N real echo agents, and its
//! CPU time (`/proc/<pid>/stat`) over windows with no subscriber, with one `subscribe`
//! stream read by a small client, and with the real `agtop` in a detached tmux session
//! (whose own CPU, and the tmux server's, are read over the same window). The conditions
//! take turns, in a different order each round.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runloop_client::wire::CONTROL_BODY_BYTES_MAX;
use runloop_client::{StatusItem, request, subscribe};
use runloop_proto::payloads::{ActorInfo, ActorNode, ControlCommand, ControlOutcome};

use super::{
    AGTOP_CPU_TARGET_PCT, DAEMON_CPU_TARGET_PCT, TICK_MS, encode, env_or, loadavg, median, met,
};

/// Defaults of the daemon side.
const WINDOW_S_DEFAULT: u64 = 15;
const ROUNDS_DEFAULT: usize = 3;
/// Wait after a subscriber connects (or leaves) before a window opens.
const SETTLE_MS: u64 = 2_000;
/// Longest wait for the daemon's socket, and for it to stop after SIGTERM.
const DAEMON_START_MS: u64 = 10_000;
const DAEMON_STOP_MS: u64 = 60_000;

/// Another process's CPU time (utime + stime, threads that ended included), in seconds.
fn cpu_of_s(pid: u32) -> Option<f64> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

fn rss_mib(pid: u32) -> u64 {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmrss)
        .unwrap_or(0)
        / 1024
}

/// MemTotal − MemAvailable of MemTotal, in MiB.
fn memory_in_use() -> String {
    use procfs::Current;
    match procfs::Meminfo::current() {
        Ok(m) => {
            let used = m.mem_total - m.mem_available.unwrap_or(m.mem_free);
            format!("{} MiB of {} MiB", used >> 20, m.mem_total >> 20)
        }
        Err(e) => format!("unknown ({e})"),
    }
}

/// The real daemon, SIGTERMed (then reaped) on drop.
struct Daemon {
    child: Child,
    home: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(DAEMON_STOP_MS) {
            if let Ok(Some(_)) = self.child.try_wait() {
                println!("daemon stopped in {:.1} s", t.elapsed().as_secs_f64());
                let _ = std::fs::remove_dir_all(&self.home);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("daemon did not stop within {DAEMON_STOP_MS} ms: SIGKILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
        .join("release")
}

/// The `runloopd` measured: `AGTOP_RUNLOOPD` when set (e.g. a copy of an earlier build,
/// to compare two builds on the same machine and load), else the release build's.
fn runloopd_bin() -> PathBuf {
    std::env::var_os("AGTOP_RUNLOOPD")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("runloopd"))
}

fn start_daemon() -> (Daemon, PathBuf) {
    let bin = runloopd_bin();
    assert!(
        bin.is_file(),
        "build it first: cargo build --release -p runloop-kernel --bin runloopd"
    );
    println!("runloopd: {}", bin.display());
    let home = std::env::temp_dir().join(format!("agtop-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("bench home");
    let socket = home.join("rmp.sock");
    let log = std::fs::File::create(home.join("runloopd.log")).expect("daemon log");
    let child = Command::new(bin)
        .arg("--socket")
        .arg(&socket)
        .env("HOME", &home)
        .env_remove("RUNLOOP_BUNDLES_DIR")
        .env_remove("RUNLOOP__RUNTIME__SOCKET_PATH")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start runloopd");
    let daemon = Daemon { child, home };
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            t.elapsed() < Duration::from_millis(DAEMON_START_MS),
            "runloopd did not listen on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (daemon, socket)
}

/// Starts up to `n` echo agents, one request each; stops at the first refusal.
fn start_agents(rt: &tokio::runtime::Runtime, socket: &Path, n: usize) -> usize {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/bundles/echo");
    let bundle = bundle.display().to_string();
    let t = Instant::now();
    for i in 0..n {
        let command = ControlCommand::AgentStart {
            bundle: bundle.clone(),
            name: Some(format!("idle-{i}")),
        };
        let id = format!("agtop-bench-start-{i}");
        match rt
            .block_on(request(socket, &id, command))
            .map(|r| r.outcome)
        {
            Ok(ControlOutcome::AgentStarted { .. }) => {}
            other => {
                println!("agents: stopped at {i}: {other:?}");
                return i;
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "agents: {n} started in {s:.1} s ({:.1} ms each)",
        s * 1e3 / n as f64
    );
    n
}

/// A status stream read on a thread of its own, as agtop's stream task reads it.
struct Stream {
    stop: Arc<AtomicBool>,
    snapshots: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

fn start_stream(socket: PathBuf, round: usize) -> (Stream, usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop2, count) = (stop.clone(), snapshots.clone());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let id = format!("agtop-bench-sub-{round}");
            let mut sub = subscribe(&socket, &id, TICK_MS)
                .await
                .map_err(|e| e.to_string())?;
            while !stop2.load(Ordering::Relaxed) {
                match sub.next().await.map_err(|e| e.to_string())? {
                    Some(StatusItem::Snapshot(s)) => {
                        if count.fetch_add(1, Ordering::Relaxed) == 0 {
                            let agents = agents_in(&s.tree);
                            let _ = tx.send((encode(&s).len(), agents));
                        }
                    }
                    // Run events and progress: agtop shows them as a status line.
                    Some(_) => {}
                    None => return Err("the daemon ended the stream".into()),
                }
            }
            Ok(())
        })
    });
    let (bytes, agents) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a first snapshot within 30 s");
    let stream = Stream {
        stop,
        snapshots,
        thread,
    };
    (stream, bytes, agents)
}

impl Stream {
    fn end(self) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => println!("stream: {e}"),
            Err(_) => println!("stream: the thread panicked"),
        }
    }
}

fn agents_in(node: &ActorNode) -> usize {
    let own = usize::from(matches!(node.info, Some(ActorInfo::Agent(_))));
    own + node.children.iter().map(agents_in).sum::<usize>()
}

/// `tmux` on a server of this process's own (its socket named after our pid), with no
/// user config.
fn tmux(args: &[&str]) -> Option<String> {
    let server = format!("agtop-bench-{}", std::process::id());
    let out = Command::new("tmux")
        .args(["-L", &server, "-f", "/dev/null"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// This bench's own tmux server, ended on drop (a panic included).
struct TmuxServer;

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = tmux(&["kill-server"]);
    }
}

/// The real agtop at 200×50 in a detached tmux session (its own tmux server); `(agtop's
/// pid, the tmux server's pid)`.
fn start_agtop(agtop: &Path, socket: &Path) -> Option<(u32, u32)> {
    let command = format!(
        "exec {} --socket {} --interval-ms {TICK_MS}",
        agtop.display(),
        socket.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "agtop",
        "-x",
        "200",
        "-y",
        "50",
        &command,
    ])?;
    let pids = tmux(&["display-message", "-p", "-t", "agtop", "#{pane_pid} #{pid}"])?;
    let mut it = pids.split_whitespace().map(|p| p.parse().ok());
    let (pane, server) = (it.next()??, it.next()??);
    let comm = std::fs::read_to_string(format!("/proc/{pane}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "agtop", "the pane runs agtop itself");
    Some((pane, server))
}

fn stop_agtop(pid: u32) {
    let _ = tmux(&["kill-session", "-t", "agtop"]);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Idle,
    Stream,
    Agtop,
}

/// One window's figures, in percent of one core.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    daemon: f64,
    agtop: f64,
    tmux: f64,
    hz: f64,
    snapshot_bytes: usize,
    agents: usize,
}

/// CPU of each pid over `secs`, in percent of one core.
fn cpu_over(pids: &[u32], secs: u64) -> Vec<f64> {
    let before: Vec<f64> = pids.iter().map(|&p| cpu_of_s(p).unwrap_or(0.0)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&p, b)| 100.0 * (cpu_of_s(p).unwrap_or(b) - b) / wall)
        .collect()
}

fn window(c: Condition, daemon: u32, socket: &Path, secs: u64, round: usize) -> Option<Window> {
    let settle = Duration::from_millis(SETTLE_MS);
    match c {
        Condition::Idle => {
            std::thread::sleep(settle);
            let cpu = cpu_over(&[daemon], secs);
            Some(Window {
                daemon: cpu[0],
                ..Window::default()
            })
        }
        Condition::Stream => {
            let (stream, snapshot_bytes, agents) = start_stream(socket.to_owned(), round);
            std::thread::sleep(settle);
            let n0 = stream.snapshots.load(Ordering::Relaxed);
            let cpu = cpu_over(&[daemon], secs);
            let n = stream.snapshots.load(Ordering::Relaxed) - n0;
            stream.end();
            Some(Window {
                daemon: cpu[0],
                hz: n as f64 / secs as f64,
                snapshot_bytes,
                agents,
                ..Window::default()
            })
        }
        Condition::Agtop => {
            let agtop = target_dir().join("agtop");
            if !agtop.is_file() {
                return None;
            }
            let (pid, server) = start_agtop(&agtop, socket)?;
            std::thread::sleep(settle);
            let cpu = cpu_over(&[daemon, pid, server], secs);
            stop_agtop(pid);
            Some(Window {
                daemon: cpu[0],
                agtop: cpu[1],
                tmux: cpu[2],
                ..Window::default()
            })
        }
    }
}

/// Starts the daemon and `n` agents, measures every window, prints the table, stops it.
pub fn daemon_side(n: usize) {
    let secs = env_or("AGTOP_WINDOW_S", WINDOW_S_DEFAULT);
    let rounds = env_or("AGTOP_ROUNDS", ROUNDS_DEFAULT);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (daemon, socket) = start_daemon();
    let pid = daemon.child.id();
    let before = rss_mib(pid);
    let reached = start_agents(&rt, &socket, n);
    println!(
        "daemon RSS: {before} MiB before agents, {} MiB with {reached}; machine memory in \
         use: {}",
        rss_mib(pid),
        memory_in_use()
    );
    let server = TmuxServer;
    let order = [Condition::Idle, Condition::Stream, Condition::Agtop];
    let mut seen: Vec<(Condition, Window)> = Vec::new();
    for round in 0..rounds {
        for k in 0..order.len() {
            let c = order[(k + round) % order.len()];
            match window(c, pid, &socket, secs, round) {
                Some(w) => {
                    println!(
                        "round {round}: {c:?}: runloopd {:.2}%, agtop {:.2}%, tmux {:.2}%, \
                         {:.2} snapshots/s; load {}",
                        w.daemon,
                        w.agtop,
                        w.tmux,
                        w.hz,
                        loadavg()
                    );
                    seen.push((c, w));
                }
                None => println!("round {round}: {c:?} skipped (no agtop binary or tmux)"),
            }
        }
    }
    drop(server);
    report_daemon(&seen, reached, secs);
    drop(daemon);
}

fn of(seen: &[(Condition, Window)], c: Condition, f: impl Fn(&Window) -> f64) -> Vec<f64> {
    seen.iter()
        .filter(|(k, _)| *k == c)
        .map(|(_, w)| f(w))
        .collect()
}

fn report_daemon(seen: &[(Condition, Window)], agents: usize, secs: u64) {
    let idle = of(seen, Condition::Idle, |w| w.daemon);
    let stream = of(seen, Condition::Stream, |w| w.daemon);
    let agtop = of(seen, Condition::Agtop, |w| w.daemon);
    let hz = of(seen, Condition::Stream, |w| w.hz);
    let bytes = of(seen, Condition::Stream, |w| w.snapshot_bytes as f64);
    let counted = of(seen, Condition::Stream, |w| w.agents as f64);
    let fmt = |v: &[f64]| {
        let all: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
        format!("{:.2}% (windows: {})", median(v), all.join(", "))
    };
    println!();
    println!("daemon with {agents} agents, windows of {secs} s, runloopd CPU in % of one core:");
    println!();
    println!("| condition | runloopd CPU, median | extra over no subscriber | target |");
    println!("| --- | --- | --- | --- |");
    println!("| no subscriber (baseline) | {} | — | — |", fmt(&idle));
    if !stream.is_empty() {
        let extra = median(&stream) - median(&idle);
        let per_snapshot = extra / 100.0 / median(&hz) * 1e3;
        println!(
            "| one `subscribe` stream at {TICK_MS} ms ({:.2} snapshots/s, {:.0} bytes, {:.0} \
             agents each) | {} | {extra:.2}% (≈ {per_snapshot:.1} ms of CPU per snapshot) | \
             ≤ {DAEMON_CPU_TARGET_PCT}%: {} |",
            median(&hz),
            median(&bytes),
            median(&counted),
            fmt(&stream),
            met(extra <= DAEMON_CPU_TARGET_PCT)
        );
    }
    if !agtop.is_empty() {
        let extra = median(&agtop) - median(&idle);
        println!(
            "| the real agtop in tmux, 200×50, `--interval-ms {TICK_MS}` (stream + 1 Hz \
             polls) | {} | {extra:.2}% | ≤ {DAEMON_CPU_TARGET_PCT}%: {} |",
            fmt(&agtop),
            met(extra <= DAEMON_CPU_TARGET_PCT)
        );
        let own = of(seen, Condition::Agtop, |w| w.agtop);
        let tmux = of(seen, Condition::Agtop, |w| w.tmux);
        println!(
            "| — agtop's own CPU | {} | — | ≤ {AGTOP_CPU_TARGET_PCT}%: {} |",
            fmt(&own),
            met(median(&own) <= AGTOP_CPU_TARGET_PCT)
        );
        println!(
            "| — the tmux server (the terminal) | {} | — | — |",
            fmt(&tmux)
        );
    }
    if !bytes.is_empty() {
        let per_agent = median(&bytes) / median(&counted).max(1.0);
        println!();
        println!(
            "(the real snapshot: {per_agent:.0} B per agent, fixed part included, so the \
             {} KiB control cap is reached near {:.0} agents)",
            CONTROL_BODY_BYTES_MAX / 1024,
            f64::from(CONTROL_BODY_BYTES_MAX) / per_agent
        );
    }
}
