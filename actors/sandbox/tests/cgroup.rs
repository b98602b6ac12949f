//! cgroup create / limit / read / remove against the machine's real tree.

use runloop_sandbox::cgroup::{self, AgentCgroup, CgroupError, CgroupLimits, CgroupSupport};

#[test]
fn create_limit_read_remove_on_the_real_tree() {
    let support = cgroup::detect();
    assert!(
        matches!(support, CgroupSupport::V1 | CgroupSupport::V2),
        "this test needs writable cgroups (root on the project's machines): {support:?}"
    );
    let parent = format!("runloop-test-{}-cg", std::process::id());
    let limits = CgroupLimits {
        memory_bytes_max: Some(64 * 1024 * 1024),
        cpu_percent_max: Some(50),
        pids_max: Some(8),
    };
    let group = AgentCgroup::create(&parent, "agent", &limits).unwrap();
    let dir = |ctrl: &str| {
        if group.is_v2() {
            format!("/sys/fs/cgroup/{}", group.path())
        } else {
            format!("/sys/fs/cgroup/{ctrl}/{}", group.path())
        }
    };
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("{}/{file}", dir(ctrl)))
            .unwrap()
            .trim()
            .to_owned()
    };
    if group.is_v2() {
        assert_eq!(read("memory", "memory.max"), "67108864");
        assert_eq!(read("cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    }
    assert_eq!(read("pids", "pids.max"), "8");

    // A real process in it shows up in the stats.
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "read x"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for procs in group.procs_files() {
        std::fs::write(&procs, child.id().to_string()).unwrap();
    }
    let stats = group.stats().unwrap();
    // v1 does not move a process's existing memory charge with it, so only the pid
    // count is certain here; memory and CPU are checked with a sandbox that joins
    // before exec (sandbox-host/tests/limits.rs).
    assert_eq!(stats.pids, 1);
    drop(child.stdin.take());
    child.wait().unwrap();

    let paths: Vec<_> = group.procs_files();
    group.remove().unwrap();
    for p in paths {
        assert!(!p.parent().unwrap().exists(), "{} still there", p.display());
    }
    cgroup::remove_parent(&parent).unwrap();
}

#[test]
fn bad_names_are_refused_before_touching_the_tree() {
    for (parent, name) in [
        ("runloop", ".."),
        ("run/../x", "a"),
        ("runloop", "a b"),
        ("", "a"),
    ] {
        let err = AgentCgroup::create(parent, name, &CgroupLimits::default()).unwrap_err();
        assert!(
            matches!(err, CgroupError::BadName(_)),
            "{parent}/{name}: {err}"
        );
    }
}
