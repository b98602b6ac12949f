//! `rlp agent invoke` refusing bad input with its specific error and exit status 2, before
//! any sandbox is started; and, with real sandboxes and cgroups, what happens around a
//! run: a long time limit under a CPU hog, a SIGKILLed `rlp` or `runloopd` (the sandbox
//! dies with it, the next start sweeps its cgroups). Those need `runloop-sandbox-host`
//! and `runloopd` built next to `rlp`:
//! `cargo build -p runloop-sandbox-host -p runloop-kernel --bin runloopd`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Every start of `rlp agent invoke` or `runloopd` sweeps the Runloop groups whose owner
/// is dead, on the whole machine. The SIGKILL tests check that a killed owner's group is
/// still there before their own next start sweeps it, which a start in a test running
/// beside them would undo (seen in CI: the group was gone at the check). So the tests of
/// this file run one at a time; a failed one does not stop the others (poison ignored).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static STARTS: Mutex<()> = Mutex::new(());
    STARTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    let _one = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("runloop-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_wat = dir.join("bad.wat");
    std::fs::write(&bad_wat, "(module").unwrap();
    let bad_wat = bad_wat.to_str().unwrap();
    let empty_bundle = dir.join("bundle");
    std::fs::create_dir_all(&empty_bundle).unwrap();
    let empty_bundle = empty_bundle.to_str().unwrap();
    let random_wasm = dir.join("random.wasm");
    let random: Vec<u8> = (0..512u32).map(|i| (i * 167 + 13) as u8).collect();
    std::fs::write(&random_wasm, random).unwrap();
    let random_wasm = random_wasm.to_str().unwrap();
    let (code, _out, err) = rlp(&["agent", "invoke", random_wasm, "--input", "{}"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("BadModule") && err.contains("not a valid wasm module"),
        "{err}"
    );
    assert!(!err.contains("parse wat"), "{err}");
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

/// A guest that spins until its time limit.
const LOOP_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "runloop_abi_v1"))
  (func (export "runloop_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "runloop_handle") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))"#;

/// The v1 controllers (or the v2 root) a Runloop group lives in.
fn cgroup_roots() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").is_file() {
        return vec![root.to_owned()];
    }
    ["memory", "cpu", "cpuacct", "pids"]
        .iter()
        .map(|c| root.join(c))
        .collect()
}

/// Polls `what` every 10 ms for up to `limit`; whether it became true.
fn eventually(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    what()
}

/// Whether `pid` is gone (reaped, or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// CPU time `pid` has used (user and system), in ms; 0 once it is gone.
fn cpu_ms(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // After the command's ")": state is field 3, utime and stime fields 14 and 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // /proc counts in USER_HZ, which is 100 on every Linux this runs on.
    ticks * 10
}

fn sigkill(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
}

/// Processes this test started, SIGKILLed and reaped on drop (also when it fails).
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
    }
}

fn test_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runloop-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rlp_command(dir: &Path) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_rlp"));
    assert!(
        bin.with_file_name("runloop-sandbox-host").is_file(),
        "build it first: cargo build -p runloop-sandbox-host"
    );
    let mut command = Command::new(bin);
    command
        .env("RUNLOOP_CWASM_DIR", dir.join("cwasm"))
        .env("HOME", dir);
    command
}

#[test]
fn a_20_s_limit_under_a_cpu_hog_ends_as_time_limit_not_a_watchdog_kill() {
    let _one = one_at_a_time();
    let dir = test_dir("hog");
    let wat = dir.join("loop.wat");
    std::fs::write(&wat, LOOP_WAT).unwrap();
    // Busy processes on every core (and one more), killed when the test ends.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs = Started(
        (0..=cores)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let started = Instant::now();
    let out = rlp_command(&dir)
        .args(["agent", "invoke", wat.to_str().unwrap(), "--input", "{}"])
        .args(["--timeout-ms", "20000", "--json"])
        .output()
        .unwrap();
    let took = started.elapsed();
    drop(hogs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout} {stderr}");
    // The report (outputs, error, facts) is the first line; the failure line follows.
    let report = stdout.lines().next().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(json["error"]["error"], "TimeLimit", "{stdout}");
    assert!(!stdout.contains("silent") && !stderr.contains("silent"));
    assert!(took >= Duration::from_secs(20), "took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sigkilled_invoke_takes_its_sandbox_along_and_the_next_one_sweeps_its_cgroup() {
    let _one = one_at_a_time();
    let dir = test_dir("kill");
    let wat = dir.join("loop.wat");
    std::fs::write(&wat, LOOP_WAT).unwrap();
    let mut invoke = Started(vec![
        rlp_command(&dir)
            .args(["agent", "invoke", wat.to_str().unwrap(), "--input", "{}"])
            .args(["--timeout-ms", "600000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ]);
    let rlp_pid = invoke.0[0].id();
    let group = format!("runloop/invoke-{rlp_pid}");
    let procs = cgroup_roots()[0].join(&group).join("cgroup.procs");
    let mut sandbox = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            sandbox = std::fs::read_to_string(&procs)
                .ok()
                .and_then(|p| p.lines().next().and_then(|l| l.parse::<u32>().ok()));
            sandbox.is_some()
        }),
        "no sandbox appeared in {}",
        procs.display()
    );
    let sandbox = sandbox.unwrap();
    // Kill rlp only once the guest spins: after the sandbox-host's uid change (which
    // clears the parent-death signal the child set before exec; it must set it again) and
    // with the invoke already handed over, so only that signal can end it — not a read
    // of the closed socket, nor the signal from before exec.
    assert!(
        eventually(Duration::from_secs(60), || cpu_ms(sandbox) >= 300),
        "sandbox {sandbox} never spun its guest (cpu {} ms)",
        cpu_ms(sandbox)
    );
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        let status = std::fs::read_to_string(format!("/proc/{sandbox}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace().skip(1).all(|id| id != "0"),
            "the sandbox still runs as root: {uid}"
        );
    }
    sigkill(&mut invoke.0[0]);
    assert!(
        eventually(Duration::from_secs(5), || dead(sandbox)),
        "sandbox {sandbox} outlived its SIGKILLed rlp"
    );
    // The killed rlp could not remove its group; the next invoke does.
    assert!(cgroup_roots().iter().any(|r| r.join(&group).is_dir()));
    let out = rlp_command(&dir)
        .args(["agent", "invoke", wat.to_str().unwrap(), "--input", "{}"])
        .args(["--timeout-ms", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // The socket is bound before the kernel boots (and sweeps), so listening alone does
    // not say the sweep ran: wait for it.
    for root in cgroup_roots() {
        assert!(
            eventually(Duration::from_secs(10), || !root.join(&group).exists()),
            "{} left behind",
            root.join(&group).display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sigkilled_runloopd_takes_its_sandboxes_along_and_the_next_boot_sweeps_its_cgroups() {
    let _one = one_at_a_time();
    let dir = test_dir("daemon");
    let socket = dir.join("rmp.sock");
    let runloopd = Path::new(env!("CARGO_BIN_EXE_rlp")).with_file_name("runloopd");
    assert!(
        runloopd.is_file(),
        "build it first: cargo build -p runloop-kernel --bin runloopd"
    );
    let start_daemon = || {
        Command::new(&runloopd)
            .arg("--socket")
            .arg(&socket)
            .env("HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let listening = || std::os::unix::net::UnixStream::connect(&socket).is_ok();
    let mut first = Started(vec![start_daemon()]);
    assert!(
        eventually(Duration::from_secs(30), listening),
        "runloopd did not listen"
    );
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/bundles/echo");
    let out = rlp_command(&dir)
        .env("RUNLOOP__RUNTIME__SOCKET_PATH", &socket)
        .args(["agent", "start", bundle.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "daemon", "{v}");
    let sandbox = v["agent"]["sandbox_pid"].as_u64().unwrap() as u32;
    let group = format!("runloop-k{}", first.0[0].id());
    assert!(cgroup_roots().iter().all(|r| r.join(&group).is_dir()));

    sigkill(&mut first.0[0]);
    assert!(
        eventually(Duration::from_secs(5), || dead(sandbox)),
        "sandbox {sandbox} outlived its SIGKILLed runloopd"
    );
    assert!(cgroup_roots().iter().any(|r| r.join(&group).is_dir()));
    let _ = std::fs::remove_file(&socket);
    let mut second = Started(vec![start_daemon()]);
    assert!(
        eventually(Duration::from_secs(30), listening),
        "runloopd did not listen"
    );
    // The socket is bound before the kernel boots (and sweeps), so listening alone does
    // not say the sweep ran: wait for it.
    for root in cgroup_roots() {
        assert!(
            eventually(Duration::from_secs(10), || !root.join(&group).exists()),
            "{} left behind",
            root.join(&group).display()
        );
    }
    // A clean stop for the second one, which removes its own (empty) parent group.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.0[0].id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(second.0[0].wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
