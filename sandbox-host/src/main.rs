//! `runloop-sandbox-host`: confines itself, then runs one agent for the kernel.
//!
//! Started only by the kernel (`runloop-sandbox`) as `runloop-sandbox-host --socket-fd N`,
//! already inside the agent's cgroup, with the kernel socket on fd N. The hidden
//! `--test-forbidden-syscall` (after `--socket-fd N`) confines fully and then calls
//! `socket(2)`, which seccomp must answer by killing the process (tests check the SIGSYS).

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Instant;

use runloop_proto::Limits;
use runloop_sandbox_host::confine::{self, SOCKET_FD_ARG};
use runloop_sandbox_host::conn::Conn;
use runloop_sandbox_host::session::{self, SessionEnd, exit};

/// Body cap until the hello names the real one: the hello itself is small.
const HELLO_BODY_BYTES_MAX: u32 = 64 * 1024;
/// Exit status when the arguments are wrong (the kernel never does that).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).take(4).collect();
    let socket: RawFd = match args.as_slice() {
        [flag, fd, ..] if flag == SOCKET_FD_ARG => match fd.parse() {
            Ok(fd) if fd >= 0 => fd,
            _ => return ExitCode::from(EXIT_USAGE),
        },
        _ => return ExitCode::from(EXIT_USAGE),
    };
    let test_forbidden = args.get(2).map(String::as_str) == Some("--test-forbidden-syscall");
    if confine::close_inherited_fds(socket)
        .and_then(|()| confine::set_rlimits())
        .and_then(|()| confine::set_no_new_privs())
        .is_err()
    {
        return ExitCode::from(exit::CONFINE_FAILED);
    }
    if test_forbidden {
        return forbidden_syscall();
    }
    // One current-thread runtime for WASI p1's sync shims, entered for the process's life.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return ExitCode::from(exit::CONFINE_FAILED);
    };
    let _entered = runtime.enter();
    // SAFETY: `socket` is the kernel socket the parent left open across exec (named by
    // --socket-fd); close_inherited_fds kept it and nothing else in this process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(socket) };
    let conn = Conn::new(stream, Limits::new(HELLO_BODY_BYTES_MAX));
    match session::run(conn, started) {
        SessionEnd::Clean => ExitCode::from(exit::CLEAN),
        SessionEnd::BadModule => ExitCode::from(exit::BAD_MODULE),
        SessionEnd::Protocol(_) => ExitCode::from(exit::PROTOCOL),
        SessionEnd::Confine(_) => ExitCode::from(exit::CONFINE_FAILED),
    }
}

/// Installs seccomp, then makes a syscall outside the allowlist; reaching the end of this
/// function means the filter failed.
fn forbidden_syscall() -> ExitCode {
    if confine::seccomp_program()
        .and_then(|p| confine::install_seccomp(&p))
        .is_err()
    {
        return ExitCode::from(exit::CONFINE_FAILED);
    }
    // SAFETY: socket(2) takes no pointers; seccomp kills the process before it returns.
    let _fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    ExitCode::from(0x5a)
}
