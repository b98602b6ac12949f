//! `runloop-sandbox-host`: confines itself, then runs one agent for the kernel.
//!
//! Started only by the kernel (`runloop-sandbox`) as
//! `runloop-sandbox-host --socket-fd N --module-fd M --jail J --parent-pidfd P`, already
//! inside the agent's cgroup and its own pid namespace, with the kernel socket on fd N,
//! the agent's `.cwasm` open on fd M and a pidfd of the kernel process on fd P. Started by
//! hand (tests), `--parent-pidfd` may be left out. The hidden `--test-forbidden-syscall`
//! (last) confines fully and then calls `socket(2)`, which seccomp must answer by killing
//! the process (tests check the SIGSYS). The steps and their order: `confine`'s module
//! doc.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Instant;

use runloop_proto::Limits;
use runloop_sandbox_host::confine::{
    self, ConfineError, JAIL_ARG, Jail, MODULE_FD_ARG, PARENT_PIDFD_ARG, SOCKET_FD_ARG,
};
use runloop_sandbox_host::conn::Conn;
use runloop_sandbox_host::session::{self, SessionEnd, exit};

/// Body cap until the hello names the real one: the hello itself is small.
const HELLO_BODY_BYTES_MAX: u32 = 64 * 1024;
/// Exit status when the arguments are wrong (the kernel never does that).
const EXIT_USAGE: u8 = 64;
/// Most arguments read: four `--flag value` pairs and the test flag.
const ARGS_MAX: usize = 9;

/// What the command line says.
struct Args {
    socket: RawFd,
    module: RawFd,
    jail: Jail,
    /// A pidfd of the kernel process (absent when started by hand).
    parent: Option<RawFd>,
    test_forbidden: bool,
}

fn parse_args() -> Option<Args> {
    let args: Vec<String> = std::env::args().skip(1).take(ARGS_MAX).collect();
    let fd = |s: &String| s.parse::<RawFd>().ok().filter(|fd| *fd >= 0);
    match args.as_slice() {
        [s, socket, m, module, j, jail, rest @ ..]
            if s == SOCKET_FD_ARG && m == MODULE_FD_ARG && j == JAIL_ARG =>
        {
            let (parent, rest) = match rest {
                [p, parent, rest @ ..] if p == PARENT_PIDFD_ARG => (Some(fd(parent)?), rest),
                _ => (None, rest),
            };
            let test_forbidden = match rest {
                [] => false,
                [flag] if flag == "--test-forbidden-syscall" => true,
                _ => return None,
            };
            Some(Args {
                socket: fd(socket)?,
                module: fd(module)?,
                jail: Jail::parse(jail)?,
                parent,
                test_forbidden,
            })
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    let Some(args) = parse_args() else {
        return ExitCode::from(EXIT_USAGE);
    };
    let mut keep = vec![args.socket, args.module];
    keep.extend(args.parent);
    let distinct = keep.len() == keep.iter().collect::<std::collections::BTreeSet<_>>().len();
    if !distinct {
        return ExitCode::from(EXIT_USAGE);
    }
    if confine::close_inherited_fds(&keep).is_err() {
        return ExitCode::from(exit::CONFINE_FAILED);
    }
    // SAFETY: `socket` is the kernel socket the parent left open across exec (named by
    // --socket-fd); close_inherited_fds kept it and nothing else in this process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(args.socket) };
    // SAFETY: likewise for the `.cwasm` named by --module-fd (a different fd, checked).
    let module = unsafe { File::from_raw_fd(args.module) };
    // SAFETY: likewise for the kernel's pidfd named by --parent-pidfd (checked distinct).
    let parent = args.parent.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let mut conn = Conn::new(stream, Limits::new(HELLO_BODY_BYTES_MAX));
    if let Err(err) = confine_early(args.jail, parent) {
        // The kernel hears which step failed; this process never runs unconfined.
        let _ = session::report_confine_failed(&mut conn, &err);
        return ExitCode::from(exit::CONFINE_FAILED);
    }
    if args.test_forbidden {
        return forbidden_syscall(args.jail, module);
    }
    // One current-thread runtime for WASI p1's sync shims, entered for the process's life.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return ExitCode::from(exit::CONFINE_FAILED);
    };
    let _entered = runtime.enter();
    match session::run(conn, module, args.jail, started) {
        SessionEnd::Clean => ExitCode::from(exit::CLEAN),
        SessionEnd::BadModule => ExitCode::from(exit::BAD_MODULE),
        SessionEnd::Protocol(_) => ExitCode::from(exit::PROTOCOL),
        SessionEnd::Confine(_) => ExitCode::from(exit::CONFINE_FAILED),
    }
}

/// Steps 2–5b, while the process is single-threaded and before the hello is read.
fn confine_early(jail: Jail, parent: Option<OwnedFd>) -> Result<(), ConfineError> {
    confine::set_rlimits()?;
    if let Jail::Drop { uid, gid } = jail {
        confine::drop_ids(uid, gid)?;
    }
    confine::enter_namespaces(jail)?;
    confine::set_no_new_privs()?;
    confine::die_with_parent_again(parent)
}

/// Finishes confinement (empty root, capabilities, seccomp), then makes a syscall outside
/// the allowlist; reaching the end of this function means the filter failed.
fn forbidden_syscall(jail: Jail, module: File) -> ExitCode {
    drop(module);
    let late = match jail {
        Jail::Off => Ok(()),
        _ => confine::enter_empty_root().and_then(|()| confine::drop_capabilities()),
    };
    if late
        .and_then(|()| confine::seccomp_program())
        .and_then(|p| confine::install_seccomp(&p))
        .is_err()
    {
        return ExitCode::from(exit::CONFINE_FAILED);
    }
    // SAFETY: socket(2) takes no pointers; seccomp kills the process before it returns.
    let _fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    ExitCode::from(0x5a)
}
