//! The kernel side against a hostile or dying sandbox: bad modules, garbage frames,
//! oversized frames, SIGKILL, and seccomp killing a forbidden syscall.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{config, input, limits, spawn};
use runloop_proto::SystemClock;
use runloop_sandbox::{ExitStatus, LocalHandler, OsRandom, Sandbox, SandboxError, SpawnConfig};

#[test]
fn a_module_without_the_abi_is_refused_as_bad_module() {
    let err = Sandbox::spawn(&config("no_abi.wat", limits()), None).unwrap_err();
    let SandboxError::BadModule { message, exit } = err else {
        panic!("want BadModule, got {err}");
    };
    assert!(message.contains("runloop_abi_v1"), "{message}");
    assert_eq!(exit, ExitStatus::Exited(72));
}

#[test]
fn a_module_too_big_for_its_limits_is_refused_with_the_real_cause() {
    // 1 GiB of memory at start against a 16 MiB limit; a 100,000-element table against
    // the pool's 20,000.
    let cases = [
        ("(memory (export \"memory\") 16384)", "minimum byte size"),
        (
            "(memory (export \"memory\") 1) (table 100000 funcref)",
            "minimum element size",
        ),
    ];
    for (decls, want) in cases {
        let wat = format!(
            r#"(module {decls}
              (func (export "runloop_abi_v1"))
              (func (export "runloop_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "runloop_handle") (param i32 i32) (result i32) (i32.const 0)))"#
        );
        let mut config = config("echo.wat", limits());
        config.module_path = common::cwasm_of(&wat);
        let err = Sandbox::spawn(&config, None).unwrap_err();
        let SandboxError::BadModule { message, .. } = &err else {
            panic!("want BadModule, got {err}");
        };
        assert!(
            message.contains("does not fit the sandbox's limits") && message.contains(want),
            "{message}"
        );
        assert!(!message.contains("failed deserialization"), "{message}");
    }
}

/// A fake sandbox: a bash script (dash cannot redirect to fds above 9) that writes `bytes` (printf escapes) to the socket
/// named by `--socket-fd N`, then waits to be killed. Real process, real socket.
fn fake_sandbox(tag: &str, bytes: &str) -> SpawnConfig {
    let path: PathBuf =
        std::env::temp_dir().join(format!("runloop-fake-{}-{tag}.sh", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "#!/bin/bash\nfd=$2\nprintf '{bytes}' >&$fd\nexec sleep 10"
    )
    .unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = config("echo.wat", limits());
    config.program = path;
    config
}

#[test]
fn malformed_and_oversized_frames_are_rejected_with_their_rmp_error() {
    let cases = [
        // frame_len 0x7fffffff: above the 2 MiB cap before any body byte is read.
        ("oversized", r"\177\377\377\377", "BodyTooLarge"),
        // frame_len 8: cannot hold a header.
        ("truncated", r"\000\000\000\010", "TruncatedHeader"),
        // frame_len 64, then a header starting with JUNK.
        (
            "magic",
            r"\000\000\000\100JUNKxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "InvalidMagic",
        ),
    ];
    for (tag, bytes, want) in cases {
        let err = Sandbox::spawn(&fake_sandbox(tag, bytes), None).unwrap_err();
        assert_eq!(err.frame_error_name(), Some(want), "{tag}: {err}");
        assert!(err.to_string().contains(want), "{err}");
        // The kernel killed it at once.
        assert_eq!(
            err.exit(),
            Some(ExitStatus::Signaled(libc_sigkill())),
            "{tag}"
        );
    }
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

#[test]
fn a_sigkilled_sandbox_is_detected_with_its_signal() {
    let (_cg, mut sandbox) = spawn("echo.wat", limits(), "sigkill");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sandbox.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = sandbox
        .invoke(input("x"), &mut LocalHandler::new(SystemClock, OsRandom))
        .unwrap_err();
    assert_eq!(
        err.exit(),
        Some(ExitStatus::Signaled(libc_sigkill())),
        "{err}"
    );
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    assert_eq!(
        sandbox.facts().exit,
        Some(ExitStatus::Signaled(libc_sigkill()))
    );
}

#[test]
fn seccomp_kills_a_forbidden_syscall() {
    // After the whole jail (the jail this process would give its sandboxes) and without it.
    for jail in [
        runloop_sandbox::Jail::for_this_process(),
        runloop_sandbox::Jail::Off,
    ] {
        let status = Command::new(common::program())
            .args(["--socket-fd", "0", "--module-fd", "1", "--jail"])
            .arg(jail.arg())
            .arg("--test-forbidden-syscall")
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGSYS as i32),
            "{jail:?}: {status:?}"
        );
    }
}

#[test]
fn the_sandbox_refuses_to_start_without_a_socket_argument() {
    let status = Command::new(common::program()).status().unwrap();
    assert_eq!(status.code(), Some(64));
}

/// Starts the sandbox-host by hand with a socket, a module fd and `--parent-pidfd` naming
/// `parent`; returns its exit status and what it wrote to the socket.
fn host_with_parent_pidfd(parent: &std::os::fd::OwnedFd) -> (std::process::ExitStatus, Vec<u8>) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let module = std::fs::File::open(common::cwasm("echo.wat")).unwrap();
    let inherit = |fd: i32| {
        // SAFETY: clears FD_CLOEXEC on a live fd this function owns or borrows.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    };
    for fd in [theirs.as_raw_fd(), module.as_raw_fd(), parent.as_raw_fd()] {
        inherit(fd);
    }
    let mut host = Command::new(common::program())
        .arg("--socket-fd")
        .arg(theirs.as_raw_fd().to_string())
        .arg("--module-fd")
        .arg(module.as_raw_fd().to_string())
        .arg("--jail")
        .arg(runloop_sandbox::Jail::for_this_process().arg())
        .arg("--parent-pidfd")
        .arg(parent.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    drop((theirs, module));
    // A host that got past its confinement waits for the hello: closing our end after a
    // while ends it (a clean end between invokes).
    ours.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut said = Vec::new();
    let _ = ours.read_to_end(&mut said);
    drop(ours);
    (host.wait().unwrap(), said)
}

/// A pidfd of a process that has exited (and been reaped).
fn pidfd_of_a_dead_process() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let mut child = Command::new("true").spawn().unwrap();
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; the child is
    // not reaped yet, so its pid is still ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    child.wait().unwrap();
    // SAFETY: a fresh descriptor we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

#[test]
fn a_sandbox_whose_kernel_died_before_it_set_the_death_signal_again_stops() {
    // The uid change clears the parent-death signal the kernel's child set; the host
    // sets it again and then asks the kernel's pidfd whether the kernel already died. A
    // dead one: it reports the step and exits 70 without reading any hello.
    let (status, said) = host_with_parent_pidfd(&pidfd_of_a_dead_process());
    assert_eq!(status.code(), Some(70), "{status:?}");
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.contains("ConfineFailed") && said.contains("die with the kernel"),
        "{said}"
    );
    // A live one (this test process): confinement goes on, and the host waits for its
    // hello until the socket closes.
    // SAFETY: pidfd_open of our own pid; a fresh fd or -1.
    let me = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id() as i32, 0) };
    assert!(me >= 0);
    // SAFETY: a fresh descriptor we own.
    let me = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(me as i32) };
    let (status, said) = host_with_parent_pidfd(&me);
    assert_ne!(status.code(), Some(70), "{status:?}");
    assert!(!String::from_utf8_lossy(&said).contains("ConfineFailed"));
}
