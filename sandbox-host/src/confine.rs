//! Confinement of the sandbox-host process, one function per step, in the order they run.
//!
//! Hostile party: the guest wasm, and therefore this whole process once guest code has run.
//! The steps (see `docs/sandbox.md`, written like a jailer's):
//!
//! 0. cgroup — done by the parent between fork and exec (it writes `0` into the agent
//!    group's `cgroup.procs` in `pre_exec`), so this process never runs outside it;
//! 1. [`close_inherited_fds`] — every fd but the kernel socket;
//! 2. [`set_rlimits`] — no core dumps, a handful of fds, no new processes via fork bombs;
//! 3. [`set_no_new_privs`] — `PR_SET_NO_NEW_PRIVS`, required for unprivileged seccomp;
//! 4. the hello is read and the `.cwasm` mapped (the last `openat`), the ticker started
//!    (the last `clone`);
//! 5. [`install_seccomp`] — the syscall allowlist [`SYSCALLS_ALLOWED`] on every thread;
//! 6. the guest runs.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use nix::sys::resource::{Resource, setrlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The argument naming the inherited socket's fd: `--socket-fd N`. (A fixed number would
/// need a `dup2` in the parent's `pre_exec` that can land on std's own exec-error pipe.)
pub const SOCKET_FD_ARG: &str = "--socket-fd";
/// Most open fds: the socket, the `.cwasm` while it is mapped, and slack for wasmtime.
pub const OPEN_FILES_MAX: u64 = 8;

/// Why a confinement step failed; the sandbox exits rather than run unconfined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("close inherited fds: {0}")]
    CloseFds(std::io::Error),
    #[error("set rlimit {resource}: {source}")]
    Rlimit {
        resource: &'static str,
        source: nix::Error,
    },
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("build seccomp filter: {0}")]
    SeccompBuild(seccompiler::BackendError),
    #[error("install seccomp filter: {0}")]
    SeccompInstall(seccompiler::Error),
}

/// Step 1: closes every fd except `socket` (stdin, stdout and stderr included: guest
/// stdio is captured in memory, sandbox errors go to the kernel as frames).
pub fn close_inherited_fds(socket: RawFd) -> Result<(), ConfineError> {
    assert!(socket >= 0, "fd numbers are not negative");
    let socket = socket as libc::c_uint;
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: close_range only closes descriptors; nothing in this process owns fds
        // other than the socket at this point (main calls this first thing), so no Rust
        // object is left holding a closed fd.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(ConfineError::CloseFds(std::io::Error::last_os_error()))
        }
    };
    if socket > 0 {
        close_range(0, socket - 1)?;
    }
    close_range(socket + 1, libc::c_uint::MAX)
}

/// Step 2: no core dumps (guest memory must not land on disk), few fds, no file writes.
pub fn set_rlimits() -> Result<(), ConfineError> {
    let set = |resource, name, value: u64| {
        setrlimit(resource, value, value).map_err(|source| ConfineError::Rlimit {
            resource: name,
            source,
        })
    };
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", OPEN_FILES_MAX)?;
    set(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", 0)?;
    Ok(())
}

/// Step 3: this process and its children can never gain privileges (setuid, caps).
pub fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(ConfineError::NoNewPrivs)
}

/// The syscalls the sandbox may make once the guest can run, each with its reason.
/// Anything else kills the whole process (`SECCOMP_RET_KILL_PROCESS`).
pub const SYSCALLS_ALLOWED: &[(i64, &str)] = &[
    (libc::SYS_read, "read frames from the kernel socket"),
    (libc::SYS_write, "write frames to the kernel socket"),
    (libc::SYS_recvfrom, "std's socket reads on some paths"),
    (libc::SYS_sendto, "std's socket writes on some paths"),
    (libc::SYS_close, "drop the .cwasm fd and per-invoke objects"),
    (libc::SYS_mmap, "wasm linear memory, code and the allocator"),
    (libc::SYS_munmap, "free wasm memories after each invoke"),
    (
        libc::SYS_mprotect,
        "make linear memory pages accessible as it grows",
    ),
    (
        libc::SYS_madvise,
        "reset linear memory pages between instances",
    ),
    (libc::SYS_mremap, "the allocator grows large buffers"),
    (libc::SYS_brk, "the allocator's heap"),
    (libc::SYS_futex, "ticker condvar and locks"),
    (libc::SYS_sched_yield, "spin loops in locks"),
    (
        libc::SYS_rt_sigaction,
        "wasmtime installs trap handlers lazily",
    ),
    (
        libc::SYS_rt_sigprocmask,
        "wasmtime masks signals around calls",
    ),
    (
        libc::SYS_rt_sigreturn,
        "return from the trap handler (traps are signals)",
    ),
    (
        libc::SYS_sigaltstack,
        "the trap handler runs on an alternate stack",
    ),
    (
        libc::SYS_clock_gettime,
        "wall time of an invoke; frame timestamps",
    ),
    (libc::SYS_clock_nanosleep, "the epoch ticker's sleep"),
    (
        libc::SYS_nanosleep,
        "the epoch ticker's sleep on older libcs",
    ),
    (
        libc::SYS_getrandom,
        "hash map seeds in the host (never seen by the guest)",
    ),
    (libc::SYS_exit, "a thread ends"),
    (libc::SYS_exit_group, "the process ends"),
    (libc::SYS_gettid, "wasmtime's per-thread trap state"),
    (libc::SYS_getpid, "abort paths"),
    (
        libc::SYS_tgkill,
        "abort() raising SIGABRT on a broken invariant",
    ),
    (libc::SYS_membarrier, "wasmtime's code publication barrier"),
    (libc::SYS_fstat, "std inspecting an fd"),
    (libc::SYS_newfstatat, "std inspecting an fd"),
    (libc::SYS_statx, "std inspecting an fd"),
    (libc::SYS_lseek, "std's buffered reads"),
    (
        libc::SYS_fcntl,
        "std and WASI query fd flags (F_GETFD/F_GETFL only, see rules)",
    ),
    (
        libc::SYS_sched_getaffinity,
        "glibc sizes malloc arenas when a thread first allocates",
    ),
    (
        libc::SYS_ioctl,
        "PAGEMAP_SCAN on /proc/self/pagemap: which wasm pages to reset (only that cmd, see rules)",
    ),
    (libc::SYS_poll, "std's stdio sanity paths"),
    (libc::SYS_ppoll, "std's stdio sanity paths"),
];

/// `PAGEMAP_SCAN`, `_IOWR('f', 16, struct pm_scan_arg)` (a 96-byte struct); Linux 6.7+.
/// Newer than the libc crate's constants, so spelled out here.
pub const PAGEMAP_SCAN: u64 = 0xC060_6610;

fn ioctl_cmd(cmd: u64) -> Result<SeccompRule, ConfineError> {
    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, cmd)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(ConfineError::SeccompBuild)
}

/// The BPF program for [`SYSCALLS_ALLOWED`].
pub fn seccomp_program() -> Result<BpfProgram, ConfineError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SYSCALLS_ALLOWED
        .iter()
        .map(|(nr, _reason)| (*nr, Vec::new()))
        .collect();
    // fcntl may only read flags: never F_SETFD, F_DUPFD, locks or signals.
    let fcntl_cmd = |cmd: libc::c_int| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, cmd as u64)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(ConfineError::SeccompBuild)
    };
    rules.insert(
        libc::SYS_fcntl,
        vec![fcntl_cmd(libc::F_GETFD)?, fcntl_cmd(libc::F_GETFL)?],
    );
    // ioctl may only ask the page map which pages are dirty.
    rules.insert(libc::SYS_ioctl, vec![ioctl_cmd(PAGEMAP_SCAN)?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::try_from(std::env::consts::ARCH).map_err(ConfineError::SeccompBuild)?,
    )
    .map_err(ConfineError::SeccompBuild)?;
    filter.try_into().map_err(ConfineError::SeccompBuild)
}

/// Step 5: installs the allowlist on every thread of the process (TSYNC).
pub fn install_seccomp(program: &BpfProgram) -> Result<(), ConfineError> {
    seccompiler::apply_filter_all_threads(program).map_err(ConfineError::SeccompInstall)
}
