//! Sandbox cold start, idle RSS and round trips, each beside a baseline from the same run.
//!
//! Run: `cargo build -p runloop-sandbox-host --release` (alone, so it has no cranelift),
//! then `cargo bench -p runloop-sandbox --bench sandbox` (optionally under `taskset -c 1`).
//! The binary is found through `RUNLOOP_SANDBOX_HOST`, else `<target>/release/`.
//! Results are written up in `perf/sandbox.md`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use runloop_compile::Compiler;
use runloop_proto::SystemClock;
use runloop_proto::payloads::{AgentInput, SandboxLimits};
use runloop_sandbox::{
    AgentCgroup, CgroupLimits, Jail, LocalHandler, OsRandom, Sandbox, SpawnConfig, cgroup,
};

use common::{percentile, program};

const COLD_RUNS: usize = 200;
const ROUND_TRIPS: usize = 5_000;
const ECHO_WAT: &str = include_str!("../../sandbox-host/tests/fixtures/echo.wat");

/// fork+exec+wait of `/bin/true`: (µs, peak RSS KiB from rusage).
#[allow(
    clippy::zombie_processes,
    reason = "reaped with wait4 below, for its rusage"
)]
fn bin_true() -> (f64, f64) {
    let started = Instant::now();
    let child = Command::new("/bin/true").spawn().expect("spawn /bin/true");
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pointers to live locals; pid is our unreaped child.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    (
        started.elapsed().as_secs_f64() * 1e6,
        usage.ru_maxrss as f64,
    )
}

/// VmRSS of a live `sleep`, the smallest idle process to compare a sandbox with.
fn sleep_rss_kb() -> f64 {
    let mut child = Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .expect("spawn sleep");
    // Wait until exec has replaced the forked image (VmRSS then stops being the parent's).
    let path = format!("/proc/{}/status", child.id());
    let mut rss = 0.0;
    for _ in 0..1000 {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("Name:") && l.contains("sleep"))
        {
            rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0.0);
            break;
        }
        std::thread::yield_now();
    }
    child.kill().expect("kill sleep");
    child.wait().expect("reap sleep");
    rss
}

/// One configuration's cold-start samples.
#[derive(Default)]
struct ColdSamples {
    ready_us: Vec<f64>,
    first_reply_us: Vec<f64>,
    inside_us: Vec<f64>,
    idle_rss: Vec<f64>,
    peak_rss: Vec<f64>,
}

impl ColdSamples {
    /// Spawn → ready → one invoke → shutdown, timed.
    fn sample(
        &mut self,
        config: &SpawnConfig,
        group: Option<&AgentCgroup>,
        jail: Jail,
        handler: &mut LocalHandler<SystemClock, OsRandom>,
    ) {
        let started = Instant::now();
        let mut sandbox = Sandbox::spawn_jailed(config, group, jail).unwrap();
        let ready = started.elapsed();
        let report = sandbox.invoke(input(), handler).unwrap();
        let first = started.elapsed();
        assert!(report.outcome.error.is_none());
        let facts = sandbox.facts();
        self.ready_us.push(ready.as_secs_f64() * 1e6);
        self.first_reply_us.push(first.as_secs_f64() * 1e6);
        self.idle_rss.push(facts.rss_kb as f64);
        self.inside_us.push(facts.startup_us as f64);
        self.peak_rss.push(sandbox.shutdown().peak_rss_kb as f64);
    }

    fn print(&mut self, what: &str) {
        println!(
            "{what:9} spawn → ready         : {:8.0} µs / {:8.0} µs",
            percentile(&mut self.ready_us, 0.5),
            percentile(&mut self.ready_us, 0.9)
        );
        println!(
            "{what:9} spawn → first reply   : {:8.0} µs / {:8.0} µs",
            percentile(&mut self.first_reply_us, 0.5),
            percentile(&mut self.first_reply_us, 0.9)
        );
        println!(
            "{what:9}   of which inside (main → ready): {:8.0} µs",
            percentile(&mut self.inside_us, 0.5)
        );
    }

    fn print_memory(&mut self, what: &str) {
        println!(
            "{what:9} idle RSS after 1 call : {:8.0} KiB",
            percentile(&mut self.idle_rss, 0.5)
        );
        println!(
            "{what:9} peak RSS              : {:8.0} KiB",
            percentile(&mut self.peak_rss, 0.5)
        );
    }
}

fn input() -> AgentInput {
    AgentInput {
        port: "in".into(),
        payload: rmpv::Value::Map(vec![("text".into(), "hello".into())]),
    }
}

fn main() {
    let program = program();
    assert!(program.is_file(), "build it first: {}", program.display());
    let dir = std::env::temp_dir().join(format!("runloop-bench-{}", std::process::id()));
    let module = Compiler::new(&dir)
        .unwrap()
        .compile_bytes(ECHO_WAT.as_bytes())
        .unwrap()
        .path;
    let limits = SandboxLimits::default();
    let config = SpawnConfig {
        program: program.clone(),
        extra_args: Vec::new(),
        agent: "echo".into(),
        module_path: module,
        limits,
    };
    let parent = format!("runloop-bench-{}", std::process::id());
    let group = match cgroup::detect() {
        cgroup::CgroupSupport::Unavailable(reason) => {
            cgroup::notice_once(&reason);
            None
        }
        _ => Some(
            AgentCgroup::create(
                &parent,
                "echo",
                &CgroupLimits {
                    memory_bytes_max: Some(256 * 1024 * 1024),
                    cpu_percent_max: None,
                    pids_max: Some(1024),
                },
            )
            .unwrap(),
        ),
    };
    println!(
        "sandbox-host: {} ({} bytes)",
        program.display(),
        program.metadata().unwrap().len()
    );
    println!(
        "cgroup: {}",
        group.as_ref().map(|g| g.path()).unwrap_or("none")
    );

    // Interleave the baselines and the sandbox runs so all see the same machine state:
    // `/bin/true`, the full jail (what the kernel runs), and the same sandbox with the
    // jail's steps off (`Jail::Off`: cgroup, rlimits, no_new_privs and seccomp only).
    let (mut true_us, mut true_rss) = (Vec::new(), Vec::new());
    let jail = Jail::for_this_process();
    println!("jail: {jail:?} (`--jail {}`)", jail.arg());
    let mut jailed = ColdSamples::default();
    let mut unjailed = ColdSamples::default();
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    for run in 0..COLD_RUNS {
        let (us, rss) = bin_true();
        true_us.push(us);
        true_rss.push(rss);
        // Alternate which goes first, so neither always runs on the warmer cache.
        if run % 2 == 0 {
            jailed.sample(&config, group.as_ref(), jail, &mut handler);
            unjailed.sample(&config, group.as_ref(), Jail::Off, &mut handler);
        } else {
            unjailed.sample(&config, group.as_ref(), Jail::Off, &mut handler);
            jailed.sample(&config, group.as_ref(), jail, &mut handler);
        }
    }
    println!("\n## cold start ({COLD_RUNS} runs, medians / p90)");
    println!(
        "fork+exec+wait /bin/true      : {:8.0} µs / {:8.0} µs",
        percentile(&mut true_us, 0.5),
        percentile(&mut true_us, 0.9)
    );
    unjailed.print("jail off");
    jailed.print("jailed");
    println!("\n## memory (medians)");
    // ru_maxrss of a forked child counts the parent's pages it held before exec, so this
    // baseline is an upper bound; `sleep`'s live VmRSS is the clean baseline.
    println!(
        "/bin/true peak RSS (rusage)   : {:8.0} KiB",
        percentile(&mut true_rss, 0.5)
    );
    println!("/bin/sleep idle RSS (VmRSS)   : {:8.0} KiB", sleep_rss_kb());
    unjailed.print_memory("jail off");
    jailed.print_memory("jailed");

    // Round trips through one sandbox, beside a raw Unix-socket ping-pong with `cat`.
    let mut sandbox = Sandbox::spawn(&config, group.as_ref()).unwrap();
    let mut rt = Vec::with_capacity(ROUND_TRIPS);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        sandbox.invoke(input(), &mut handler).unwrap();
        rt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let sandbox_rate = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();
    sandbox.shutdown();

    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let theirs_out = theirs.try_clone().unwrap();
    let mut cat = Command::new("/bin/cat")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
        .spawn()
        .unwrap();
    let msg = [7u8; 128];
    let mut back = [0u8; 128];
    let mut raw = Vec::with_capacity(ROUND_TRIPS);
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        ours.write_all(&msg).unwrap();
        ours.read_exact(&mut back).unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let raw_rate = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();
    drop(ours);
    cat.wait().unwrap();
    println!("\n## round trips ({ROUND_TRIPS}, one agent, echo)");
    println!(
        "raw unix socket ping-pong (cat, 128 B): median {:6.1} µs, {:8.0} /s",
        percentile(&mut raw, 0.5),
        raw_rate
    );
    println!(
        "kernel → sandbox → kernel invoke     : median {:6.1} µs, {:8.0} /s",
        percentile(&mut rt, 0.5),
        sandbox_rate
    );
    if let Some(g) = group {
        g.remove().unwrap();
        cgroup::remove_parent(&parent).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
