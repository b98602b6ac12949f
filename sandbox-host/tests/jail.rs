//! The jail, one test per step, each read from outside through `/proc/<pid>` of a real
//! sandbox (real clone3, real namespaces, real cgroup) after `control.ready.v1`, i.e. fully
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
