//! `runtime.require_cgroups`: an agent whose sandbox cannot have its own cgroup is refused
//! with a typed error, before any sandbox starts; with cgroups it starts as usual.

mod common;
use common::{bundle, options};

use runloop_kernel::Kernel;
use runloop_kernel::agents::{AgentOpError, check_cgroups_required};
use runloop_sandbox::CgroupSupport;

#[test]
fn the_requirement_holds_only_with_usable_cgroups() {
    // This machine has cgroups; the unusable case is the detector's answer as data (a
    // stub, because the real tree cannot be taken away from a running test).
    let unusable = CgroupSupport::Unavailable("cgroups unusable (read-only)".into());
    let cases = [
        (true, CgroupSupport::V1, None),
        (true, CgroupSupport::V2, None),
        (true, unusable.clone(), Some("cgroups unusable (read-only)")),
        (false, CgroupSupport::V1, Some("without cgroups")),
        (false, unusable, Some("without cgroups")),
    ];
    for (on, support, want) in cases {
        match (check_cgroups_required(on, &support), want) {
            (Ok(()), None) => {}
            (Err(reason), Some(want)) => assert!(reason.contains(want), "{reason}"),
            (got, want) => panic!("{on} {support:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_cgroup_is_refused_when_cgroups_are_required() {
    let mut opts = options("require-cgroups-off");
    opts.agents.cgroups = false;
    opts.agents.require_cgroups = true;
    let kernel = Kernel::boot(opts).await.unwrap();
    let err = kernel
        .start_bundle(&bundle("echo"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentOpError::CgroupsRequired { .. }),
        "want CgroupsRequired, got {err}"
    );
    assert_eq!(err.code(), "CgroupsRequired");
    let text = err.to_string();
    assert!(text.contains("runtime.require_cgroups"), "{text}");
    assert!(kernel.agents().await.is_empty(), "no sandbox started");
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_its_cgroup_starts_when_cgroups_are_required() {
    if !matches!(
        runloop_sandbox::cgroup::detect(),
        CgroupSupport::V1 | CgroupSupport::V2
    ) {
        // No writable cgroup tree here (not root): the refusal above is the whole story.
        return;
    }
    let mut opts = options("require-cgroups-on");
    opts.agents.require_cgroups = true;
    let kernel = Kernel::boot(opts).await.unwrap();
    let status = kernel.start_bundle(&bundle("echo"), None).await.unwrap();
    assert!(status.cgroup.is_some(), "{status:?}");
    kernel.shutdown().await;
}
