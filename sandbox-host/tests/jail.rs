//! The jail, one test per step, each read from outside through `/proc/<pid>` of a real
//! sandbox (real clone, real namespaces, real cgroup) after `control.ready.v1`, i.e. fully
//! confined. A failed step must be fatal and named.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::{config, limits, spawn};
use runloop_sandbox::{ExitStatus, Jail, Sandbox, SandboxError};

fn ns(pid: &str, kind: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("read the namespace link")
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} in {status}"))
        .trim()
        .to_owned()
}

#[test]
fn the_sandbox_is_pid_1_of_its_own_pid_namespace() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-pid");
    let pid = sandbox.pid();
    assert_ne!(ns(&pid.to_string(), "pid"), ns("self", "pid"));
    // Its pid here (what the kernel signals and reaps), then its pid inside: 1.
    assert_eq!(status_field(pid, "NSpid:"), format!("{pid}\t1"));
}

#[test]
fn the_sandbox_has_no_network() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-net");
    let pid = sandbox.pid().to_string();
    assert_ne!(ns(&pid, "net"), ns("self", "net"));
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let devices: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(devices, ["lo"], "{dev}");
    // An interface that is up joins the all-hosts group; a down `lo` is not listed.
    let igmp = std::fs::read_to_string(format!("/proc/{pid}/net/igmp")).unwrap();
    assert_eq!(igmp.lines().count(), 1, "lo is down: {igmp}");
}

/// Each network probe's errno, run from a sandbox's position (0: it worked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Probes {
    /// `ioctl(SIOCSIFFLAGS)` bringing `lo` up.
    lo_up: i32,
    /// `connect(2)` to a TCP listener on 127.0.0.1 (in the other sandbox's namespace).
    tcp_connect: i32,
    /// `sendto(2)` to a UDP socket on 127.0.0.1 (likewise).
    udp_send: i32,
}

/// Puts listeners (TCP and UDP, bound to every address) into sandbox `a`'s network
/// namespace, then takes sandbox `b`'s position: its network namespace, then its user
/// namespace, where this process then holds every capability — more than `b` ever holds
/// (it drops them at step 8) — and tries to bring `lo` up and to reach the listeners on
/// 127.0.0.1. Needs root (to enter `a`'s namespace from outside); runs in a forked
/// child, since a process with threads cannot change user namespace.
fn probe_network(a: u32, b: u32) -> Probes {
    use std::ffi::CString;
    let path = |pid: u32, kind: &str| CString::new(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let (net_a, net_b, user_b) = (path(a, "net"), path(b, "net"), path(b, "user"));
    let mut pipe = [0; 2];
    // SAFETY: `pipe` is a live array of two fds for pipe2 to fill.
    let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: the child only makes async-signal-safe system calls on memory prepared
    // before the fork (this test process has threads), and ends in _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: we are the forked child; see `probe_child`.
        unsafe { probe_child([&net_a, &net_b, &user_b], pipe[1]) }
    }
    let mut probes = Probes::default();
    let size = std::mem::size_of::<Probes>();
    // SAFETY: closes our copy of the write end (the child has its own).
    unsafe { libc::close(pipe[1]) };
    // SAFETY: reads at most `size` bytes into a live `Probes` of plain i32s.
    let got = unsafe { libc::read(pipe[0], (&raw mut probes).cast(), size) };
    // SAFETY: our read end, no longer needed.
    unsafe { libc::close(pipe[0]) };
    let mut status = 0;
    // SAFETY: `pid` is our own unreaped child; `status` a live local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the probe failed at step {} (exit status {status:#x})",
        libc::WEXITSTATUS(status)
    );
    assert_eq!(got, size as isize);
    probes
}

/// The forked child of [`probe_network`]: exits with the number of a failed setup step,
/// or writes [`Probes`] to `report` and exits 0.
///
/// # Safety
/// Only in a child right after `fork`; the paths are NUL-terminated strings made before.
unsafe fn probe_child(paths: [&std::ffi::CStr; 3], report: i32) -> ! {
    let loopback = |port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let addr_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: system calls only (async-signal-safe), on live locals and the given paths.
    unsafe {
        let errno = || *libc::__errno_location();
        let [net_a, net_b, user_b] =
            paths.map(|p| libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC));
        if net_a < 0 || net_b < 0 || user_b < 0 {
            libc::_exit(10);
        }
        // 1. Listeners in `a`'s namespace, on every address and one port (binding to
        // INADDR_ANY needs no device).
        if libc::setns(net_a, libc::CLONE_NEWNET) != 0 {
            libc::_exit(11);
        }
        let tcp = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut any = loopback(0);
        any.sin_addr.s_addr = libc::INADDR_ANY;
        let mut len = addr_len;
        if tcp < 0
            || libc::bind(tcp, (&raw const any).cast(), addr_len) != 0
            || libc::listen(tcp, 1) != 0
            || libc::getsockname(tcp, (&raw mut any).cast(), &mut len) != 0
        {
            libc::_exit(12);
        }
        let port = u16::from_be(any.sin_port);
        let udp = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if udp < 0 || libc::bind(udp, (&raw const any).cast(), addr_len) != 0 {
            libc::_exit(13);
        }
        // 2. `b`'s position: its network namespace, then its user namespace (every
        // capability there, as `b` has until it drops them).
        if libc::setns(net_b, libc::CLONE_NEWNET) != 0 {
            libc::_exit(14);
        }
        if libc::setns(user_b, libc::CLONE_NEWUSER) != 0 {
            libc::_exit(15);
        }
        // 3. The probes.
        let mut probes = Probes::default();
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        if sock < 0 || libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            libc::_exit(16);
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req) != 0 {
            probes.lo_up = errno();
        }
        let to = loopback(port);
        let client = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if client < 0 {
            libc::_exit(17);
        }
        if libc::connect(client, (&raw const to).cast(), addr_len) != 0 {
            probes.tcp_connect = errno();
        }
        let byte = [0u8; 1];
        let sent = libc::sendto(
            sock,
            byte.as_ptr().cast(),
            1,
            0,
            (&raw const to).cast(),
            addr_len,
        );
        if sent != 1 {
            probes.udp_send = errno();
        }
        let size = std::mem::size_of::<Probes>();
        if libc::write(report, (&raw const probes).cast(), size) != size as isize {
            libc::_exit(18);
        }
        libc::_exit(0)
    }
}

#[test]
fn no_sandbox_can_bring_up_a_network_or_reach_another_sandbox() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let (_cg_a, a) = spawn("echo.wat", limits(), "jail-net-a");
    let (_cg_b, b) = spawn("echo.wat", limits(), "jail-net-b");
    let (pid_a, pid_b) = (a.pid().to_string(), b.pid().to_string());
    match Jail::for_this_process() {
        // A root kernel's sandboxes share its one empty network namespace.
        Jail::Drop { .. } => assert_eq!(ns(&pid_a, "net"), ns(&pid_b, "net")),
        // An unprivileged kernel's each make their own.
        Jail::UserNamespace { .. } => assert_ne!(ns(&pid_a, "net"), ns(&pid_b, "net")),
        Jail::Off => panic!("the kernel never spawns without the jail"),
    }
    if !root {
        // Entering a sandbox's namespaces from outside needs root; the namespaces differ.
        return;
    }
    for (x, y) in [(a.pid(), b.pid()), (b.pid(), a.pid())] {
        let probes = probe_network(x, y);
        // The namespace is the kernel's, not the sandbox's: no capability the sandbox
        // could hold in its own user namespace reaches it.
        assert_eq!(probes.lo_up, libc::EPERM, "{probes:?}");
        // With `lo` down, 127.0.0.1 has no route: nothing is reachable, not the other
        // sandbox's listeners either.
        assert_eq!(probes.tcp_connect, libc::ENETUNREACH, "{probes:?}");
        assert_eq!(probes.udp_send, libc::ENETUNREACH, "{probes:?}");
    }
    // Both sandboxes are still fine.
    for pid in [&pid_a, &pid_b] {
        let dev = std::fs::read_to_string(format!("/proc/{pid}/net/igmp")).unwrap();
        assert_eq!(dev.lines().count(), 1, "lo is still down: {dev}");
    }
}

#[test]
fn the_sandbox_runs_as_an_unprivileged_user_in_its_own_user_namespace() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-uid");
    let pid = sandbox.pid();
    assert_ne!(ns(&pid.to_string(), "user"), ns("self", "user"));
    let (uid, gid) = match Jail::for_this_process() {
        Jail::Drop { uid, gid } | Jail::UserNamespace { uid, gid } => (uid, gid),
        Jail::Off => panic!("the kernel never spawns without the jail"),
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid, 0);
    }
    let all = |id: u32| format!("{id}\t{id}\t{id}\t{id}");
    assert_eq!(status_field(pid, "Uid:"), all(uid));
    assert_eq!(status_field(pid, "Gid:"), all(gid));
    assert_eq!(status_field(pid, "Groups:"), "");
    // Inside, 0 is that uid and nothing else is mapped.
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields, ["0", &uid.to_string(), "1"], "{map}");
}

#[test]
fn the_sandbox_holds_no_capabilities() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-caps");
    let pid = sandbox.pid();
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "Seccomp:"), "2");
}

#[test]
fn the_sandbox_root_is_an_empty_read_only_tmpfs_in_its_own_mount_namespace() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-root");
    let pid = sandbox.pid().to_string();
    assert_ne!(ns(&pid, "mnt"), ns("self", "mnt"));
    let root = format!("/proc/{pid}/root");
    let entries: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert!(entries.is_empty(), "{entries:?}");
    let stat = nix::sys::statfs::statfs(root.as_str()).unwrap();
    assert_eq!(stat.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
    // The old root is gone: one mount left in its namespace, read-only.
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let lines: Vec<&str> = mountinfo.lines().collect();
    assert_eq!(lines.len(), 1, "{mountinfo}");
    assert!(lines[0].contains(" / / ro,"), "{mountinfo}");
    assert!(lines[0].contains(" - tmpfs "), "{mountinfo}");
}

#[test]
fn the_sandbox_starts_with_no_signal_blocked() {
    // The spawner thread keeps every signal blocked (a child sharing the kernel's address
    // space must not run the kernel's handlers); the child unblocks them before exec.
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-signals");
    let status = std::fs::read_to_string(format!("/proc/{}/status", sandbox.pid())).unwrap();
    let field = |name: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(field("SigBlk:"), 0, "{status}");
}

#[test]
fn the_sandbox_has_its_own_ipc_namespace() {
    let (_cg, sandbox) = spawn("echo.wat", limits(), "jail-ipc");
    let pid = sandbox.pid().to_string();
    assert_ne!(ns(&pid, "ipc"), ns("self", "ipc"));
}

#[test]
fn a_step_that_fails_before_exec_is_named() {
    // Only the kernel's own uid may be mapped from inside a user namespace: a map to any
    // other id fails in the child, before exec.
    let jail = Jail::UserNamespace {
        uid: 4242,
        gid: 4242,
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 4242 {
        return;
    }
    let err = Sandbox::spawn_jailed(&config("echo.wat", limits()), None, jail).unwrap_err();
    let SandboxError::BeforeExec { step, .. } = &err else {
        panic!("want BeforeExec, got {err}");
    };
    assert_eq!(*step, "write the user namespace's id maps", "{err}");
}

#[test]
fn a_step_that_fails_in_the_sandbox_is_fatal_and_named() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Needs a root kernel (to ask for a uid drop); a real stub would not be the jail.
        return;
    }
    // A wrapper that puts the sandbox-host into a user namespace where it holds no
    // capability, so dropping to another uid (step 3) is refused by the kernel.
    let path = std::env::temp_dir().join(format!("runloop-jail-wrap-{}.sh", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "#!/bin/sh\nexec unshare --user {} \"$@\"",
        common::program().display()
    )
    .unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = config("echo.wat", limits());
    config.program = path.clone();
    let jail = Jail::Drop {
        uid: 65534,
        gid: 65534,
    };
    let err = Sandbox::spawn_jailed(&config, None, jail).unwrap_err();
    let _ = std::fs::remove_file(&path);
    let SandboxError::Confine { step, exit } = &err else {
        panic!("want Confine, got {err}");
    };
    assert!(
        step.starts_with("drop to uid 65534 gid 65534: setgroups"),
        "{step}"
    );
    assert_eq!(*exit, ExitStatus::Exited(70));
}

#[test]
fn without_the_jail_the_sandbox_shares_the_kernels_namespaces() {
    // The benchmark's baseline: the steps are really off, so the comparison is fair.
    let sandbox = Sandbox::spawn_jailed(&config("echo.wat", limits()), None, Jail::Off).unwrap();
    let pid = sandbox.pid().to_string();
    for kind in ["pid", "net", "mnt", "user", "ipc"] {
        assert_eq!(ns(&pid, kind), ns("self", kind), "{kind}");
    }
    drop(sandbox);
}

#[test]
fn the_kernel_and_the_sandbox_host_agree_on_the_command_line() {
    use runloop_sandbox::process as kernel;
    use runloop_sandbox_host::confine as host;
    assert_eq!(kernel::SOCKET_FD_ARG, host::SOCKET_FD_ARG);
    assert_eq!(kernel::MODULE_FD_ARG, host::MODULE_FD_ARG);
    assert_eq!(kernel::JAIL_ARG, host::JAIL_ARG);
    assert_eq!(kernel::PARENT_PIDFD_ARG, host::PARENT_PIDFD_ARG);
    assert_eq!(
        kernel::CONFINE_FAILED_CODE,
        runloop_sandbox_host::session::CONFINE_FAILED_CODE
    );
    for (jail, want) in [
        (
            Jail::Drop {
                uid: 65534,
                gid: 65534,
            },
            host::Jail::Drop {
                uid: 65534,
                gid: 65534,
            },
        ),
        (
            Jail::UserNamespace { uid: 1, gid: 1 },
            host::Jail::UserNamespace,
        ),
        (Jail::Off, host::Jail::Off),
    ] {
        assert_eq!(host::Jail::parse(&jail.arg()), Some(want));
    }
}
