//! Starting a sandbox-host process: `clone(CLONE_VM | CLONE_VFORK)` into a fresh pid
//! namespace on one long-lived spawner thread, the async-signal-safe steps before exec,
//! `execve`.
//!
//! The jail's steps are listed in order in `runloop_sandbox_host::confine` and
//! `docs/sandbox.md`; the ones here run in the child between clone and exec, where only
//! async-signal-safe calls on values prepared before the clone are allowed (the kernel
//! process has many threads, whose locks may be held). Everything the child needs — the
//! program path, argv, envp, the id-map texts, the fds — is built before the clone; the
//! child only calls `prctl`, `poll`, `write`, `setns`, `open`, `close`, `fcntl`,
//! `sigaction`, `sigprocmask`, `execve` and `_exit`, and writes only to its own stack
//! (and `errno`).
//!
//! Why `CLONE_VM | CLONE_VFORK` (what `posix_spawn` does) and not a fork-like copy: a copy
//! of the kernel's address space marks every writable page copy-on-write, and until the
//! child execs each page any kernel thread then writes faults and flushes the TLB of every
//! CPU running the process. In the openings bench that was a quarter of all CPU
//! (`native_write_msr` / `flush_tlb_mm_range` under `do_wp_page`, `perf/openings.md`).
//! Sharing the address space costs nothing to set up; the spawner thread waits (vfork)
//! until the child execs or exits, the child runs on a stack of its own, and the spawner
//! thread keeps every signal blocked so no handler of the kernel's can run in the child
//! before it has set them back to their defaults.
//!
//! Why a clone with `CLONE_NEWPID` and not `fork` + `unshare`: a pid namespace made by
//! `unshare` only holds the caller's *children*, so the sandbox would not be in it;
//! `CLONE_NEWPID` puts the new process itself there, as its pid 1. The kernel still knows
//! it by its pid in the kernel's namespace (what `clone` returns): that is the pid it
//! signals, reaps with `wait4` and reads under `/proc`.
//!
//! A root kernel's sandboxes have no network through one **shared, empty network
//! namespace** ([`shared_netns`]): made once per kernel process, joined with `setns` by
//! each child before exec. Making a namespace per sandbox cost 0.5–0.8 ms of every cold
//! start, and its teardown more CPU after exit (`perf/sandbox.md`); joining one costs a
//! few µs. Its only device is a `lo` that is down, and no sandbox can bring it up: the
//! namespace belongs to the kernel's user namespace, while each sandbox's capabilities
//! live only in the user namespace it makes after dropping to its unprivileged uid
//! (`runloop_sandbox_host::confine`). An unprivileged kernel's child cannot join one:
//! `setns` needs `CAP_SYS_ADMIN` over the user namespace owning the network namespace,
//! and the child's own user namespace (made at clone) is not that one nor above it. So
//! there each sandbox still makes its own.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc::SyncSender;

/// Spawn requests waiting for the spawner thread.
const SPAWN_QUEUE_MAX: usize = 64;
/// The uid and gid of `nobody`, used by a root kernel when no `runloop` user exists.
pub const NOBODY_ID: u32 = 65534;
/// The system user a root kernel runs sandboxes as, when it exists (the `.deb` makes it).
pub const RUNLOOP_USER: &std::ffi::CStr = c"runloop";
/// Bytes of a `getpwnam_r` string buffer.
const PASSWD_BUF_BYTES: usize = 4096;

/// How far a sandbox is jailed (see `runloop_sandbox_host::confine` for each step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jail {
    /// A root kernel: a fresh pid namespace at clone, the kernel's shared empty network
    /// namespace joined before exec; the sandbox-host then drops to `uid`/`gid`
    /// (`runloop`, else 65534) and makes its own user, mount and IPC namespaces, and an
    /// empty root.
    Drop { uid: u32, gid: u32 },
    /// An unprivileged kernel cannot change uid: fresh user and pid namespaces at clone,
    /// 0 inside mapped to the kernel's own `uid`/`gid` (written by the child before exec);
    /// the rest as with `Drop`, but with a network namespace of its own (made by the
    /// sandbox-host). Seen from the host the sandbox runs as the kernel's user.
    UserNamespace { uid: u32, gid: u32 },
    /// None of the jail's steps (cgroup, rlimits, no_new_privs and seccomp only): the
    /// benchmark's same-run baseline. The kernel never uses it.
    Off,
}

impl Jail {
    /// The jail for sandboxes of this process: `Drop` to `runloop` (else `nobody`) when it
    /// runs as root, `UserNamespace` otherwise.
    pub fn for_this_process() -> Self {
        static JAIL: OnceLock<Jail> = OnceLock::new();
        *JAIL.get_or_init(|| {
            // SAFETY: geteuid, getuid and getgid cannot fail and touch no memory.
            let (euid, uid, gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
            if euid == 0 {
                let (uid, gid) = user_ids(RUNLOOP_USER).unwrap_or((NOBODY_ID, NOBODY_ID));
                Jail::Drop { uid, gid }
            } else {
                Jail::UserNamespace { uid, gid }
            }
        })
    }

    /// The sandbox-host's `--jail` value (parsed by `confine::Jail::parse`).
    pub fn arg(&self) -> String {
        match self {
            Jail::Drop { uid, gid } => format!("drop:{uid}:{gid}"),
            Jail::UserNamespace { .. } => "userns".into(),
            Jail::Off => "off".into(),
        }
    }

    /// The namespaces made at clone: pid, and user too when the kernel is unprivileged
    /// (an unprivileged process may only make a pid namespace inside a new user one).
    fn clone_flags(&self) -> u64 {
        match self {
            Jail::Drop { .. } => libc::CLONE_NEWPID as u64,
            Jail::UserNamespace { .. } => (libc::CLONE_NEWUSER | libc::CLONE_NEWPID) as u64,
            Jail::Off => 0,
        }
    }
}

/// The uid and gid of the user `name`, if it exists and is not root.
fn user_ids(name: &std::ffi::CStr) -> Option<(u32, u32)> {
    // SAFETY: an all-zero passwd is a valid value of this plain C struct.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; PASSWD_BUF_BYTES];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local of the right type and `buf.len()` is
    // the buffer's real size; getpwnam_r writes only into them.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null() && pwd.pw_uid != 0 && pwd.pw_gid != 0)
        .then_some((pwd.pw_uid, pwd.pw_gid))
}

/// A step of the child between clone and exec, as the error names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ChildStep {
    Clone = 1,
    DeathSignal,
    ParentGone,
    JoinCgroup,
    JoinNetns,
    KeepFds,
    IdMaps,
    Signals,
    Exec,
}

impl ChildStep {
    const ALL: [ChildStep; 9] = [
        ChildStep::Clone,
        ChildStep::DeathSignal,
        ChildStep::ParentGone,
        ChildStep::JoinCgroup,
        ChildStep::JoinNetns,
        ChildStep::KeepFds,
        ChildStep::IdMaps,
        ChildStep::Signals,
        ChildStep::Exec,
    ];

    /// What the step does, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ChildStep::Clone => "clone into a new pid namespace",
            ChildStep::DeathSignal => "set the parent-death signal",
            ChildStep::ParentGone => "check the parent is alive",
            ChildStep::JoinCgroup => "join the agent's cgroup",
            ChildStep::JoinNetns => "join the sandboxes' empty network namespace",
            ChildStep::KeepFds => "keep the socket, module and parent pidfd fds across exec",
            ChildStep::IdMaps => "write the user namespace's id maps",
            ChildStep::Signals => "reset the signal mask and SIGPIPE",
            ChildStep::Exec => "execve the sandbox-host",
        }
    }
}

/// A failed step before the sandbox-host ran.
#[derive(Debug)]
pub struct ChildError {
    pub step: ChildStep,
    pub source: io::Error,
}

/// Everything the child needs, prepared before the clone.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    program: CString,
    argv: Vec<CString>,
    /// `cgroup.procs` files to write `0` into (open in the parent, closed after spawn).
    procs_fds: Vec<RawFd>,
    /// The socket, module and parent pidfd fds that must survive exec.
    keep_fds: [RawFd; 3],
    clone_flags: u64,
    /// `uid_map` and `gid_map` texts, when the child maps its own user namespace.
    id_maps: Option<(CString, CString)>,
    /// The shared empty network namespace to join ([`shared_netns`]; a root kernel only).
    netns_fd: Option<RawFd>,
}

impl ChildPlan {
    pub(crate) fn new(
        program: &Path,
        args: &[String],
        procs_fds: Vec<RawFd>,
        keep_fds: [RawFd; 3],
        jail: Jail,
    ) -> io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let cstring = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let program = cstring(program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for arg in args {
            argv.push(cstring(arg.as_bytes())?);
        }
        let id_maps = match jail {
            Jail::UserNamespace { uid, gid } => Some((
                cstring(format!("0 {uid} 1").as_bytes())?,
                cstring(format!("0 {gid} 1").as_bytes())?,
            )),
            _ => None,
        };
        let netns_fd = match jail {
            Jail::Drop { .. } => Some(shared_netns()?),
            _ => None,
        };
        Ok(Self {
            program,
            argv,
            procs_fds,
            keep_fds,
            clone_flags: jail.clone_flags(),
            id_maps,
            netns_fd,
        })
    }
}

/// The one empty network namespace of this process's sandboxes (a root kernel's): an fd
/// of it, made on first use and kept open for the process's life.
///
/// It is made by `unshare(CLONE_NEWNET)` on a thread of its own, which exits at once (a
/// network namespace is per thread, and no other thread of the kernel must change); the
/// fd keeps the namespace alive. Needs `CAP_SYS_ADMIN`: only a root kernel asks.
fn shared_netns() -> io::Result<RawFd> {
    static NETNS: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    let netns = NETNS.get_or_init(|| {
        std::thread::Builder::new()
            .name("sandbox-netns".into())
            .spawn(make_empty_netns)
            .map_err(|e| format!("start a thread: {e}"))?
            .join()
            .map_err(|_| "the thread panicked".to_owned())?
    });
    match netns {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(why) => Err(io::Error::other(format!(
            "make the sandboxes' network namespace: {why}"
        ))),
    }
}

/// On a thread that ends right after: moves it into a new network namespace and opens
/// that namespace (close-on-exec: no sandbox-host inherits it).
fn make_empty_netns() -> Result<OwnedFd, String> {
    // SAFETY: unshare takes flags only; CLONE_NEWNET changes this thread's namespace
    // alone, and this thread ends once it has opened it.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", io::Error::last_os_error()));
    }
    // SAFETY: a NUL-terminated literal path and plain flags.
    let fd = unsafe {
        libc::open(
            c"/proc/thread-self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "open /proc/thread-self/ns/net: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One clone for the spawner thread, and where its pid goes.
struct SpawnRequest {
    plan: ChildPlan,
    reply: SyncSender<Result<i32, ChildError>>,
}

/// The spawner thread's queue.
struct Spawner {
    requests: SyncSender<SpawnRequest>,
}

/// A pidfd of this process, opened once and kept for its life (close-on-exec: a child
/// clears the flag on its own copy). A child polls it before exec to learn whether its
/// parent already died, and hands it to the sandbox-host (`--parent-pidfd`), which polls
/// it again after its uid change: that change clears the parent-death signal, so the
/// sandbox-host sets it again and must then check it was not too late.
pub(crate) fn parent_pidfd() -> io::Result<RawFd> {
    static PIDFD: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    let fd = PIDFD.get_or_init(|| {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd (close-on-exec)
        // or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        if fd < 0 {
            return Err(format!("pidfd_open: {}", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own; the static keeps it for the process's life.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    });
    match fd {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(why) => Err(io::Error::other(why.clone())),
    }
}

/// Runs the clone on the spawner thread, which lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the thread that forked the child exits, not the
/// process: a sandbox forked from a short-lived thread (tokio's blocking pool retires
/// idle threads after seconds) would be killed with it. Cloning on one thread that never
/// exits makes "dies with its parent" mean "dies with the kernel process".
pub(crate) fn spawn(plan: ChildPlan) -> Result<i32, ChildError> {
    static SPAWNER: OnceLock<Result<Spawner, String>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(start_spawner);
    let spawner = spawner.as_ref().map_err(|why| ChildError {
        step: ChildStep::Clone,
        source: io::Error::other(why.clone()),
    })?;
    let gone = || ChildError {
        step: ChildStep::Clone,
        source: io::Error::other("the sandbox spawner thread is gone"),
    };
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    spawner
        .requests
        .send(SpawnRequest { plan, reply })
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

fn start_spawner() -> Result<Spawner, String> {
    let parent = parent_pidfd().map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<SpawnRequest>(SPAWN_QUEUE_MAX);
    std::thread::Builder::new()
        .name("sandbox-spawner".into())
        .spawn(move || {
            // Every signal stays blocked on this thread: a child cloned with `CLONE_VM`
            // starts with this mask, so none of the process's handlers can run in it
            // (on memory it shares with the kernel) before it resets them.
            // SAFETY: `all` is a live local sigset filled by sigfillset; pthread_sigmask
            // changes this thread's mask only.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            }
            let mut stack = vec![0u8; CHILD_STACK_BYTES];
            for request in rx {
                let result = clone_and_exec(&request.plan, parent, &mut stack);
                // A caller that gave up is no reason to stop serving the others.
                let _ = request.reply.send(result);
            }
        })
        .map_err(|e| format!("start the sandbox spawner thread: {e}"))?;
    Ok(Spawner { requests: tx })
}

/// Bytes of the stack the child runs on between clone and exec (its frames are small: a
/// few locals and the system calls' wrappers).
const CHILD_STACK_BYTES: usize = 256 * 1024;

/// Bytes the child writes to the error pipe: the step, then errno.
const CHILD_REPORT_BYTES: usize = 8;

/// Clones the child, which runs the plan's steps and execs; returns its pid once exec
/// succeeded (the close-on-exec error pipe reads end-of-file), or the failed step.
fn clone_and_exec(
    plan: &ChildPlan,
    parent_pidfd: RawFd,
    stack: &mut [u8],
) -> Result<i32, ChildError> {
    let fail = |step| ChildError {
        step,
        source: io::Error::last_os_error(),
    };
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: `pipe` is a live array of two fds for pipe2 to fill.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(fail(ChildStep::Clone));
    }
    // SAFETY: both fds are fresh and ours.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let mut handoff = ChildHandoff {
        plan,
        argv: &argv,
        envp: &envp,
        parent_pidfd,
        report: write_end.as_raw_fd(),
    };
    // The stack grows down: the child starts at its top, 16-byte aligned.
    let top = stack.as_mut_ptr_range().end as usize & !0xf;
    let flags = i32::try_from(plan.clone_flags | (libc::CLONE_VM | libc::CLONE_VFORK) as u64)
        .expect("clone flags fit in an int")
        | libc::SIGCHLD;
    // The child shares this address space (CLONE_VM), makes only async-signal-safe
    // calls that write to its own stack and errno, and never returns (execve or _exit).
    // SAFETY: `child_entry` runs on `stack` (ours, untouched while the child runs) with a
    // pointer to `handoff`; CLONE_VFORK suspends this thread until the child exec'd or
    // exited, so both outlive the child's use of them.
    let pid = unsafe {
        libc::clone(
            child_entry,
            top as *mut libc::c_void,
            flags,
            (&mut handoff as *mut ChildHandoff<'_>).cast(),
        )
    };
    if pid < 0 {
        return Err(fail(ChildStep::Clone));
    }
    drop(write_end);
    let mut report = [0u8; CHILD_REPORT_BYTES];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reads into the unfilled tail of a live local buffer.
        let n = unsafe {
            libc::read(
                read_end.as_raw_fd(),
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(pid);
    }
    // The child failed before (or at) exec and exits 127: reap it here.
    let mut status = 0;
    // SAFETY: `pid` is our own unreaped child; `status` a live local.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let step_code = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
    let step = ChildStep::ALL
        .into_iter()
        .find(|s| *s as u32 == step_code)
        .unwrap_or(ChildStep::Exec);
    Err(ChildError {
        step,
        source: io::Error::from_raw_os_error(errno),
    })
}

/// What the child reads, on the spawner thread's stack (shared: `CLONE_VM`).
struct ChildHandoff<'a> {
    plan: &'a ChildPlan,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    parent_pidfd: RawFd,
    report: RawFd,
}

/// Where the cloned child starts, on its own stack.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildHandoff` the spawner thread passed to clone, alive while
    // the spawner waits for this child's exec or exit (CLONE_VFORK); `child` never returns.
    unsafe {
        let handoff = &*(arg as *const ChildHandoff<'_>);
        child(
            handoff.plan,
            handoff.argv,
            handoff.envp,
            handoff.parent_pidfd,
            handoff.report,
        )
    }
}

/// The child between clone and exec. Only async-signal-safe calls; any failure writes
/// `[step, errno]` to `report` and exits 127.
///
/// # Safety
/// Must only be called in the child right after the clone, with `argv`/`envp`
/// NULL-terminated arrays of pointers into `plan`.
unsafe fn child(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    parent_pidfd: RawFd,
    report: RawFd,
) -> ! {
    let die = |step: ChildStep| -> ! {
        // SAFETY: errno is thread-local and readable in the child.
        let errno = unsafe { *libc::__errno_location() };
        let mut bytes = [0u8; CHILD_REPORT_BYTES];
        bytes[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        bytes[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `bytes` is a live local.
        unsafe {
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    // SAFETY: every call below is an async-signal-safe system call on integers, on live
    // locals, or on NUL-terminated strings prepared before the clone.
    unsafe {
        // The sandbox dies with the process that spawned it (a SIGKILLed `rlp` or runloopd
        // must not leave a guest spinning). The signal follows the death of the forking
        // *thread*, hence the long-lived spawner thread; it reaches a pid-namespace init
        // because it comes from an ancestor namespace.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            die(ChildStep::DeathSignal);
        }
        // A parent that died before the prctl sends no signal. `getppid()` is 0 in a new
        // pid namespace (the parent lives outside it), so ask the parent's pidfd instead:
        // it is readable once the parent has exited.
        let mut pfd = libc::pollfd {
            fd: parent_pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            *libc::__errno_location() = libc::ESRCH;
            die(ChildStep::ParentGone);
        }
        for fd in &plan.procs_fds {
            // Writing 0 to cgroup.procs moves the writer: the child joins the agent's
            // group before exec, so no sandbox code runs outside it.
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                die(ChildStep::JoinCgroup);
            }
        }
        if let Some(fd) = plan.netns_fd {
            // The kernel's one empty network namespace instead of a new one per sandbox
            // (see the module doc): joined while the child is still root, which it must
            // be (CAP_SYS_ADMIN over the namespace's owner). The sandbox-host checks it
            // has no device up before it goes on.
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                die(ChildStep::JoinNetns);
            }
        }
        for fd in plan.keep_fds {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                die(ChildStep::KeepFds);
            }
        }
        if let Some((uid_map, gid_map)) = &plan.id_maps {
            // An unprivileged process may map exactly its own ids into the user namespace
            // it made, and its gid only once setgroups is denied.
            let writes = [
                (c"/proc/self/setgroups".as_ptr(), c"deny".as_ptr()),
                (c"/proc/self/uid_map".as_ptr(), uid_map.as_ptr()),
                (c"/proc/self/gid_map".as_ptr(), gid_map.as_ptr()),
            ];
            for (path, text) in writes {
                let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
                let len = libc::strlen(text);
                if fd < 0 || libc::write(fd, text.cast(), len) != len as isize {
                    die(ChildStep::IdMaps);
                }
                libc::close(fd);
            }
        }
        // Every signal is still blocked (the spawner thread's mask). The handlers are a
        // copy of the kernel's (no CLONE_SIGHAND): back to their defaults before anything
        // is unblocked, so none runs here on memory shared with the kernel. Ignored ones
        // stay ignored across exec, as with std's Command, except SIGPIPE (Rust programs
        // ignore it), which goes back to its default too.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
                && libc::sigaction(sig, &default, std::ptr::null_mut()) != 0
            {
                die(ChildStep::Signals);
            }
        }
        // What std's Command does too: no signal blocked.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            die(ChildStep::Signals);
        }
        libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        die(ChildStep::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_arguments_are_what_the_sandbox_host_parses() {
        assert_eq!(
            Jail::Drop {
                uid: 65534,
                gid: 65534
            }
            .arg(),
            "drop:65534:65534"
        );
        assert_eq!(
            Jail::UserNamespace {
                uid: 1000,
                gid: 1000
            }
            .arg(),
            "userns"
        );
        assert_eq!(Jail::Off.arg(), "off");
    }

    #[test]
    fn a_root_kernel_drops_and_an_unprivileged_one_uses_a_user_namespace() {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        match Jail::for_this_process() {
            Jail::Drop { uid, gid } => {
                assert!(root);
                assert!(uid != 0 && gid != 0);
                let want = user_ids(RUNLOOP_USER).unwrap_or((NOBODY_ID, NOBODY_ID));
                assert_eq!((uid, gid), want);
            }
            Jail::UserNamespace { .. } => assert!(!root),
            Jail::Off => panic!("the kernel never runs sandboxes without the jail"),
        }
    }

    #[test]
    fn root_is_never_the_user_to_drop_to() {
        assert_eq!(user_ids(c"root"), None);
    }
}
