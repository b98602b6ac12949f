//! Confinement of the sandbox-host process, one function per step, in the order they run.
//!
//! Hostile party: the guest wasm, and therefore this whole process once guest code has run.
//! Modelled on Firecracker's jailer; the steps (see `docs/sandbox.md`):
//!
//! Before exec, in the kernel's child (`runloop_sandbox::spawn`, async-signal-safe only):
//!
//! 0. a fresh **pid namespace** (`clone(CLONE_NEWPID)`, this process is its pid 1; the
//!    kernel still sees and kills it by its own pid), the agent's **cgroup** (the child
//!    writes `0` into `cgroup.procs`), death with the parent (`PR_SET_PDEATHSIG`). A root
//!    kernel's child joins the kernel's one empty **network namespace** (`setns`; made
//!    once per kernel, shared by its sandboxes). An unprivileged kernel adds
//!    `CLONE_NEWUSER` at clone instead and maps 0 inside to its own uid/gid.
//!
//! After exec, here, each a function:
//!
//! 1. [`close_inherited_fds`] — every fd but the kernel socket, the `.cwasm` the kernel
//!    opened for us (this process never opens a file by path) and the kernel's pidfd;
//! 2. [`set_rlimits`] — no core dumps, a handful of fds, no file writes;
//! 3. [`drop_ids`] — ([`Jail::Drop`], a root kernel) the unprivileged uid/gid the kernel
//!    chose (`runloop`, else 65534), no supplementary groups. It comes before the user
//!    namespace, so that the namespace belongs to that uid and not to root;
//! 4. [`enter_namespaces`] — fresh **user** (root kernel: made here, 0 inside mapped to
//!    the uid of step 3), **mount**, **network** (unprivileged kernel; a root kernel's
//!    sandbox is in the shared one of step 0, and makes its own only if it finds a
//!    device up there) and **IPC** namespaces; every network device must be down (there
//!    is only a `lo`), checked once ([`check_no_network`]);
//! 5. [`set_no_new_privs`] — `PR_SET_NO_NEW_PRIVS`, required for unprivileged seccomp;
//!    then [`die_with_parent_again`] — the uid change of step 3 cleared the parent-death
//!    signal of step 0 (Linux clears it on any change of effective or filesystem ids), so
//!    it is set again, and the kernel's pidfd (`--parent-pidfd`) is polled to catch a
//!    kernel that died in between, then closed;
//! 6. the hello is read, the engine built (it opens `/proc/self/pagemap`, the last
//!    `openat`) and the `.cwasm` mapped from its fd;
//! 7. [`enter_empty_root`] — a fresh read-only, empty tmpfs becomes `/` (`pivot_root`) and
//!    the old root is detached: no file system is reachable any more;
//! 8. [`drop_capabilities`] — the capabilities this process holds in its own user
//!    namespace (needed for step 7) are dropped, before any second thread exists;
//! 9. the epoch ticker thread is started (the last `clone`);
//! 10. [`install_seccomp`] — the syscall allowlist [`SYSCALLS_ALLOWED`] on every thread;
//! 11. the guest runs.
//!
//! [`Jail::Off`] skips 3, 4, 7 and 8 (the confinement before the jail steps existed); only
//! the benchmark's same-run baseline asks for it. Every failed step is fatal: the process
//! reports the step to the kernel (`error.report.v1`, code `ConfineFailed`) and exits 70.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::resource::{Resource, setrlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::syscalls::{TARGET_ARCH, nr};

/// The argument naming the inherited socket's fd: `--socket-fd N`. (A fixed number would
/// need a `dup2` in the kernel's child that can land on its own exec-error pipe.)
pub const SOCKET_FD_ARG: &str = "--socket-fd";
/// The argument naming the `.cwasm` the kernel opened for us: `--module-fd N`.
pub const MODULE_FD_ARG: &str = "--module-fd";
/// The argument saying how far to jail: `--jail drop:<uid>:<gid> | userns | off`.
pub const JAIL_ARG: &str = "--jail";
/// The argument naming a pidfd of the kernel process: `--parent-pidfd N` (left out when
/// the process is started by hand).
pub const PARENT_PIDFD_ARG: &str = "--parent-pidfd";
/// Most open fds: the socket, the `.cwasm`, `/proc/self/pagemap`, and slack for wasmtime.
pub const OPEN_FILES_MAX: u64 = 8;
/// Where the empty root is mounted before it becomes `/` (like bubblewrap: a directory
/// every system has; the mount lives in this process's own mount namespace only).
pub const EMPTY_ROOT_MOUNT_POINT: &CStr = c"/tmp";

/// How far the sandbox jails itself, as the kernel says with `--jail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jail {
    /// The kernel runs as root: become `uid`/`gid` (step 3), then make a user namespace
    /// whose 0 is that uid/gid.
    Drop { uid: u32, gid: u32 },
    /// The kernel is not root and cannot change uid: the user namespace was made at clone
    /// (its 0 mapped to the kernel's own uid/gid), so the guest runs as the kernel's user
    /// seen from outside, and as an id without any privilege over the host inside.
    UserNamespace,
    /// No namespaces, no uid change, no new root: the benchmark's baseline only.
    Off,
}

impl Jail {
    /// Parses the value of `--jail`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "userns" => Some(Jail::UserNamespace),
            "off" => Some(Jail::Off),
            _ => {
                let rest = value.strip_prefix("drop:")?;
                let (uid, gid) = rest.split_once(':')?;
                let (uid, gid) = (uid.parse().ok()?, gid.parse().ok()?);
                // Dropping to root would be no drop at all.
                (uid != 0 && gid != 0).then_some(Jail::Drop { uid, gid })
            }
        }
    }
}

/// Why a confinement step failed; the sandbox exits rather than run unconfined. Each
/// variant names its step.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("close inherited fds: {0}")]
    CloseFds(std::io::Error),
    #[error("set rlimit {resource}: {source}")]
    Rlimit {
        resource: &'static str,
        source: nix::Error,
    },
    #[error("drop to uid {uid} gid {gid}: {call}: {source}")]
    DropIds {
        uid: u32,
        gid: u32,
        call: &'static str,
        source: std::io::Error,
    },
    #[error("enter namespaces: {call}: {source}")]
    Namespaces {
        call: &'static str,
        source: std::io::Error,
    },
    #[error("check the sandbox has no network: {call}: {source}")]
    Network {
        call: &'static str,
        source: std::io::Error,
    },
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("die with the kernel: {call}: {source}")]
    ParentDeath {
        call: &'static str,
        source: std::io::Error,
    },
    #[error("enter the empty root: {call}: {source}")]
    EmptyRoot {
        call: &'static str,
        source: std::io::Error,
    },
    #[error("drop capabilities: {0}")]
    Capabilities(std::io::Error),
    #[error("build seccomp filter: {0}")]
    SeccompBuild(seccompiler::BackendError),
    #[error("install seccomp filter: {0}")]
    SeccompInstall(seccompiler::Error),
}

/// `Ok` when a libc call returned 0, else the OS error.
fn check(rc: libc::c_int) -> Result<(), std::io::Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Step 1: closes every fd except those in `keep` (stdin, stdout and stderr included:
/// guest stdio is captured in memory, sandbox errors go to the kernel as frames).
pub fn close_inherited_fds(keep: &[RawFd]) -> Result<(), ConfineError> {
    let mut keep: Vec<libc::c_uint> = keep
        .iter()
        .map(|fd| {
            assert!(*fd >= 0, "fd numbers are not negative");
            *fd as libc::c_uint
        })
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: close_range only closes descriptors; nothing in this process owns fds
        // other than the kept ones at this point (main calls this first thing), so no
        // Rust object is left holding a closed fd.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(ConfineError::CloseFds(std::io::Error::last_os_error()))
        }
    };
    let mut first: libc::c_uint = 0;
    for fd in keep {
        if fd > first {
            close_range(first, fd - 1)?;
        }
        first = fd + 1;
    }
    close_range(first, libc::c_uint::MAX)
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

/// Step 3 (a root kernel only): becomes `uid`/`gid` with no supplementary groups, in the
/// host's own user namespace, so the process holds no privilege over the host from here
/// on. The process is then marked dumpable again: changing uid clears that flag, which
/// would make `/proc/self/*` root's and keep step 4 from writing its own id maps.
pub fn drop_ids(uid: u32, gid: u32) -> Result<(), ConfineError> {
    let fail = |call| {
        let source = std::io::Error::last_os_error();
        ConfineError::DropIds {
            uid,
            gid,
            call,
            source,
        }
    };
    // SAFETY: setgroups with a zero count reads no memory; the process is single-threaded
    // here, so glibc's all-threads broadcast has nothing to race.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: plain integer arguments; single-threaded (see above).
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(fail("setresgid"));
    }
    // SAFETY: plain integer arguments; single-threaded (see above).
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(fail("setresuid"));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
        return Err(fail("prctl(PR_SET_DUMPABLE)"));
    }
    Ok(())
}

/// Step 4: fresh mount and IPC namespaces, and (after [`drop_ids`]) a fresh user
/// namespace that owns them, in which 0 is the dropped uid/gid. Needs a single-threaded
/// process (`unshare` of a user namespace refuses otherwise), so it runs before any
/// thread starts. The network is checked once, every device must be down: before the
/// `unshare` in a root kernel's sandbox (see below), after it otherwise
/// ([`check_no_network`]).
///
/// The network namespace: a root kernel's child already joined the kernel's one empty
/// network namespace before exec (`runloop_sandbox::spawn`), which costs a `setns`
/// instead of ≈ 0.8 ms for a new one. That namespace belongs to the kernel's user
/// namespace, not to the one made here, so the capabilities this process holds until
/// [`drop_capabilities`] give it no power over it (`CAP_NET_ADMIN` there is what it would
/// take to bring `lo` up). A sandbox-host that finds a device up there (it was not
/// started by the kernel) makes its own network namespace instead. An unprivileged
/// kernel's sandbox (`Jail::UserNamespace`) always makes its own here: joining one needs
/// `CAP_SYS_ADMIN` over the user namespace that owns it, which an unprivileged kernel
/// could only give by owning that user namespace and nesting every sandbox's inside it,
/// not with one `clone`. Either way there is only a `lo`, down: no network at all, even
/// before seccomp forbids `socket(2)`.
pub fn enter_namespaces(jail: Jail) -> Result<(), ConfineError> {
    let fail = |call| ConfineError::Namespaces {
        call,
        source: std::io::Error::last_os_error(),
    };
    let (flags, maps) = match jail {
        Jail::Off => return Ok(()),
        // The kernel's child joined its shared empty network namespace before exec. A
        // sandbox-host started another way (by hand, by a test) finds a network there and
        // makes its own namespace: the `--jail` argument alone cannot tell.
        Jail::Drop { uid, gid } => {
            let own_netns = if has_network()? {
                libc::CLONE_NEWNET
            } else {
                0
            };
            (libc::CLONE_NEWUSER | own_netns, Some((uid, gid)))
        }
        // The kernel's child made the user namespace at clone and wrote its maps.
        Jail::UserNamespace => (libc::CLONE_NEWNET, None),
    };
    let flags = flags | libc::CLONE_NEWNS | libc::CLONE_NEWIPC;
    // SAFETY: unshare takes flags only; the process is single-threaded here.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(fail("unshare"));
    }
    if let Some((uid, gid)) = maps {
        // An unprivileged process may map exactly its own ids, and its gid only once
        // setgroups is denied.
        write_proc_self("/proc/self/setgroups", "deny")?;
        write_proc_self("/proc/self/uid_map", &format!("0 {uid} 1"))?;
        write_proc_self("/proc/self/gid_map", &format!("0 {gid} 1"))?;
    }
    // Checked once: after a new namespace was made here, or before, for the kernel's.
    if flags & libc::CLONE_NEWNET != 0 {
        check_no_network()?;
    }
    Ok(())
}

fn write_proc_self(path: &'static str, text: &str) -> Result<(), ConfineError> {
    std::fs::write(path, text).map_err(|source| ConfineError::Namespaces { call: path, source })
}

/// Most network devices `has_network` looks at (an empty namespace has one, `lo`); more
/// count as a network.
const NETWORK_DEVICES_MAX: usize = 16;
/// Bytes of `/proc/self/net/dev` read: two header lines and a line per device.
const NET_DEV_BYTES_MAX: usize = 4096;

/// Step 4's check: every network device of this process's network namespace is down, so
/// it can reach nothing, not even another sandbox of the same namespace (a device that
/// is down has no address, and `connect(2)` to any finds no route).
pub fn check_no_network() -> Result<(), ConfineError> {
    if has_network()? {
        let why = "a network device is up: this sandbox would have a network";
        return Err(ConfineError::Network {
            call: "list network devices",
            source: std::io::Error::other(why),
        });
    }
    Ok(())
}

/// Whether this process's network namespace has a device that is up, or more devices
/// than an empty namespace has (its one `lo`, down). Cheap: a read of `/proc/self/net/dev`
/// and one `ioctl` per device.
fn has_network() -> Result<bool, ConfineError> {
    let fail = |call, source| ConfineError::Network { call, source };
    let mut buf = [0u8; NET_DEV_BYTES_MAX];
    let Some(text) = read_net_dev(&mut buf).map_err(|e| fail("read /proc/self/net/dev", e))? else {
        return Ok(true);
    };
    // SAFETY: socket takes integers only; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own; dropping it closes it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Two header lines, then `<name>: <counters>` per device.
    let names = text.lines().skip(2).filter_map(|l| l.split_once(':'));
    for (count, (name, _)) in names.enumerate() {
        if count == NETWORK_DEVICES_MAX
            || device_is_up(&sock, name.trim()).map_err(|e| fail("ioctl(SIOCGIFFLAGS)", e))?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `/proc/self/net/dev` in `buf`, read to its end in one buffer (procfs hands out a page
/// per read; `read_to_string` would probe with small reads first); `None` when it does
/// not fit, i.e. lists far more devices than an empty namespace.
fn read_net_dev(buf: &mut [u8]) -> std::io::Result<Option<&str>> {
    let mut file = std::fs::File::open("/proc/self/net/dev")?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(None);
        }
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    std::str::from_utf8(&buf[..len])
        .map(Some)
        .map_err(std::io::Error::other)
}

/// Whether the network device `name` is up (`SIOCGIFFLAGS` through `sock`).
fn device_is_up(sock: &OwnedFd, name: &str) -> std::io::Result<bool> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!(
            "device name too long: {name}"
        )));
    }
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a live ifreq whose name is NUL-terminated (shorter than IFNAMSIZ,
    // checked, in a zeroed array); SIOCGIFFLAGS writes only its flags member.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// Step 5: this process and its children can never gain privileges (setuid, caps).
pub fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(ConfineError::NoNewPrivs)
}

/// Step 5b: the parent-death signal again. The kernel's child set it before exec (step 0),
/// but Linux clears it when the effective or filesystem uid or gid changes, which
/// [`drop_ids`] does: without this, a SIGKILLed kernel would leave a sandbox spinning
/// until its time limit. Set again after the last id change; then `parent` (a pidfd of
/// the kernel process, readable once it exited) says whether the kernel died before the
/// signal was armed, which the signal would never report. The pidfd is closed either way.
pub fn die_with_parent_again(parent: Option<OwnedFd>) -> Result<(), ConfineError> {
    let fail = |call, source| ConfineError::ParentDeath { call, source };
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc != 0 {
        return Err(fail(
            "prctl(PR_SET_PDEATHSIG)",
            std::io::Error::last_os_error(),
        ));
    }
    let Some(parent) = parent else {
        return Ok(());
    };
    let mut pfd = libc::pollfd {
        fd: parent.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let call = "poll the kernel's pidfd";
    // SAFETY: `pfd` is a live local array of one pollfd; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    match ready {
        0 => Ok(()),
        n if n < 0 => Err(fail(call, std::io::Error::last_os_error())),
        // Readable: the kernel process has exited.
        _ if pfd.revents & libc::POLLIN != 0 => {
            Err(fail(call, std::io::Error::from_raw_os_error(libc::ESRCH)))
        }
        // POLLNVAL or POLLERR: the fd named by --parent-pidfd is no pidfd.
        _ => Err(fail(call, std::io::Error::from_raw_os_error(libc::EBADF))),
    }
}

/// Step 7: a fresh tmpfs — empty, read-only, no devices, no exec — becomes `/`, and the
/// old root is detached, so no file of the host is reachable by any path. Runs after the
/// last open (the `.cwasm` came as an fd, `/proc/self/pagemap` was opened by the engine).
/// Mounting needs `CAP_SYS_ADMIN` in the user namespace owning the mount namespace, which
/// this process holds until [`drop_capabilities`].
pub fn enter_empty_root() -> Result<(), ConfineError> {
    let fail = |call| ConfineError::EmptyRoot {
        call,
        source: std::io::Error::last_os_error(),
    };
    let none: *const libc::c_char = std::ptr::null();
    // SAFETY: every pointer is a NUL-terminated literal or null where mount(2) allows it
    // (a propagation change takes no source, type or data).
    let rc = unsafe {
        libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    // Nothing mounted from here on propagates back to the host's namespace.
    check(rc).map_err(|_| fail("make / private"))?;
    // SAFETY: NUL-terminated literals; the data string is tmpfs's option list.
    let rc = unsafe {
        libc::mount(
            c"runloop-empty-root".as_ptr(),
            EMPTY_ROOT_MOUNT_POINT.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            c"size=4k,nr_inodes=1,mode=0555".as_ptr().cast(),
        )
    };
    check(rc).map_err(|_| fail("mount tmpfs"))?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::chdir(EMPTY_ROOT_MOUNT_POINT.as_ptr()) })
        .map_err(|_| fail("chdir to the new root"))?;
    // pivot_root(".", "."): the new root goes to `/`, the old one is stacked on top of it
    // and detached next (pivot_root(8)'s documented idiom; no directory for it needed).
    // SAFETY: NUL-terminated literals.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check(rc as libc::c_int).map_err(|_| fail("pivot_root"))?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })
        .map_err(|_| fail("detach the old root"))?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(|_| fail("chdir /"))?;
    Ok(())
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Step 8: empties this thread's effective, permitted and inheritable capability sets
/// (ambient goes with permitted). After a root kernel's [`enter_namespaces`] the process
/// holds every capability *in its own user namespace* (never over the host); none is
/// needed after [`enter_empty_root`]. Capabilities are per thread, so this runs before
/// the ticker thread exists; threads inherit the empty sets.
pub fn drop_capabilities() -> Result<(), ConfineError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `empty` are live values of the layouts capset(2) reads for
    // version 3 (a header and two data structs); pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, empty.as_ptr()) };
    check(rc as libc::c_int)
        .map_err(|_| ConfineError::Capabilities(std::io::Error::last_os_error()))
}

/// The syscalls the sandbox may make once the guest can run, each with its reason.
/// Anything else kills the whole process (`SECCOMP_RET_KILL_PROCESS`).
pub const SYSCALLS_ALLOWED: &[(i64, &str)] = &[
    (nr::SYS_read, "read frames from the kernel socket"),
    (nr::SYS_write, "write frames to the kernel socket"),
    (nr::SYS_recvfrom, "std's socket reads on some paths"),
    (nr::SYS_sendto, "std's socket writes on some paths"),
    (nr::SYS_close, "drop the .cwasm fd and per-invoke objects"),
    (nr::SYS_mmap, "wasm linear memory, code and the allocator"),
    (nr::SYS_munmap, "free wasm memories after each invoke"),
    (
        nr::SYS_mprotect,
        "make linear memory pages accessible as it grows",
    ),
    (
        nr::SYS_madvise,
        "reset linear memory pages between instances",
    ),
    (nr::SYS_mremap, "the allocator grows large buffers"),
    (nr::SYS_brk, "the allocator's heap"),
    (nr::SYS_futex, "ticker condvar and locks"),
    (nr::SYS_sched_yield, "spin loops in locks"),
    (
        nr::SYS_rt_sigaction,
        "wasmtime installs trap handlers lazily",
    ),
    (
        nr::SYS_rt_sigprocmask,
        "wasmtime masks signals around calls",
    ),
    (
        nr::SYS_rt_sigreturn,
        "return from the trap handler (traps are signals)",
    ),
    (
        nr::SYS_sigaltstack,
        "the trap handler runs on an alternate stack",
    ),
    (
        nr::SYS_clock_gettime,
        "wall time of an invoke; frame timestamps",
    ),
    (nr::SYS_clock_nanosleep, "the epoch ticker's sleep"),
    (nr::SYS_nanosleep, "the epoch ticker's sleep on older libcs"),
    (
        nr::SYS_getrandom,
        "hash map seeds in the host (never seen by the guest)",
    ),
    (nr::SYS_exit, "a thread ends"),
    (nr::SYS_exit_group, "the process ends"),
    (nr::SYS_gettid, "wasmtime's per-thread trap state"),
    (nr::SYS_getpid, "abort paths"),
    (
        nr::SYS_tgkill,
        "abort() raising SIGABRT on a broken invariant",
    ),
    (nr::SYS_membarrier, "wasmtime's code publication barrier"),
    (nr::SYS_fstat, "std inspecting an fd"),
    (nr::SYS_newfstatat, "std inspecting an fd"),
    (nr::SYS_statx, "std inspecting an fd"),
    (nr::SYS_lseek, "std's buffered reads"),
    (
        nr::SYS_fcntl,
        "std and WASI query fd flags (F_GETFD/F_GETFL only, see rules)",
    ),
    (
        nr::SYS_sched_getaffinity,
        "glibc sizes malloc arenas when a thread first allocates",
    ),
    (
        nr::SYS_ioctl,
        "PAGEMAP_SCAN on /proc/self/pagemap: which wasm pages to reset (only that cmd, see rules)",
    ),
    (nr::SYS_ppoll, "std's stdio sanity paths"),
];

/// Allowlisted syscalls that exist on the build target only.
#[cfg(target_arch = "x86_64")]
pub const SYSCALLS_ALLOWED_ARCH_ONLY: &[(i64, &str)] = &[(
    nr::SYS_poll,
    "std's stdio sanity paths (aarch64 has only ppoll)",
)];

/// Allowlisted syscalls that exist on the build target only.
#[cfg(target_arch = "aarch64")]
pub const SYSCALLS_ALLOWED_ARCH_ONLY: &[(i64, &str)] = &[];

/// `PAGEMAP_SCAN`, `_IOWR('f', 16, struct pm_scan_arg)` (a 96-byte struct); Linux 6.7+.
/// Newer than the libc crate's constants, so spelled out here.
pub const PAGEMAP_SCAN: u64 = 0xC060_6610;

fn arg_is(arg: u64) -> Result<SeccompRule, ConfineError> {
    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, arg)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(ConfineError::SeccompBuild)
}

/// The BPF program for [`SYSCALLS_ALLOWED`] and [`SYSCALLS_ALLOWED_ARCH_ONLY`], with the
/// build target's syscall numbers (`crate::syscalls`).
pub fn seccomp_program() -> Result<BpfProgram, ConfineError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SYSCALLS_ALLOWED
        .iter()
        .chain(SYSCALLS_ALLOWED_ARCH_ONLY)
        .map(|(nr, _reason)| (*nr, Vec::new()))
        .collect();
    // fcntl may only read flags: never F_SETFD, F_DUPFD, locks or signals.
    rules.insert(
        nr::SYS_fcntl,
        vec![arg_is(libc::F_GETFD as u64)?, arg_is(libc::F_GETFL as u64)?],
    );
    // ioctl may only ask the page map which pages are dirty.
    rules.insert(nr::SYS_ioctl, vec![arg_is(PAGEMAP_SCAN)?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TARGET_ARCH,
    )
    .map_err(ConfineError::SeccompBuild)?;
    filter.try_into().map_err(ConfineError::SeccompBuild)
}

/// Step 10: installs the allowlist on every thread of the process (TSYNC).
pub fn install_seccomp(program: &BpfProgram) -> Result<(), ConfineError> {
    seccompiler::apply_filter_all_threads(program).map_err(ConfineError::SeccompInstall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_arguments_parse_and_root_is_no_drop() {
        assert_eq!(
            Jail::parse("drop:65534:65534"),
            Some(Jail::Drop {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(Jail::parse("userns"), Some(Jail::UserNamespace));
        assert_eq!(Jail::parse("off"), Some(Jail::Off));
        for bad in [
            "drop:0:0",
            "drop:0:1",
            "drop:1",
            "drop:x:1",
            "",
            "on",
            "drop:1:1:1",
        ] {
            assert_eq!(Jail::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_seccomp_program_builds_for_the_build_target() {
        let program = seccomp_program().unwrap();
        assert!(!program.is_empty());
    }

    #[test]
    fn no_syscall_is_listed_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for (nr, reason) in SYSCALLS_ALLOWED.iter().chain(SYSCALLS_ALLOWED_ARCH_ONLY) {
            assert!(seen.insert(*nr), "{nr} twice ({reason})");
        }
    }
}
