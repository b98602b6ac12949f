//! The kernel tree booted in-process (embedded mode): its shape, its states, a restart.

use runloop_actors::names::AgentName;
use runloop_actors::quarantine::QuarantineReason;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::{ActorInfo, ActorKind, ActorNode, ActorRunState, BusInfo};

fn find<'a>(node: &'a ActorNode, name: &str) -> &'a ActorNode {
    node.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} under {}", node.name))
}

#[tokio::test]
async fn the_tree_boots_with_every_system_actor_running() {
    let kernel = Kernel::boot(KernelOptions::default()).await.unwrap();
    let root = kernel.status().await;
    assert_eq!(
        (root.name.as_str(), root.kind),
        ("root", ActorKind::Supervisor)
    );
    let names: Vec<_> = root.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["system", "runs"]);
    let system = find(&root, "system");
    let names: Vec<_> = system.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bus",
            "scheduler",
            "breaker",
            "quarantine",
            "metrics",
            "dead_letters",
            "pog",
            "broker"
        ]
    );
    for actor in &system.children[..6] {
        assert_eq!(actor.state, ActorRunState::Running, "{}", actor.name);
        assert_eq!(actor.kind, ActorKind::Worker);
    }
    assert_eq!(find(system, "pog").state, ActorRunState::Empty);
    // The kernel's reply router subscribes to its reply topic and the drops topic at boot.
    assert!(matches!(
        find(system, "bus").info,
        Some(ActorInfo::Bus(BusInfo {
            topics: 2,
            subscribers: 2,
            ..
        }))
    ));
    assert!(matches!(
        find(system, "metrics").info,
        Some(ActorInfo::Kernel { rss_kb, .. }) if rss_kb > 0
    ));
    kernel.shutdown().await;
}

#[tokio::test]
async fn a_killed_system_actor_is_restarted_and_found_again() {
    let kernel = Kernel::boot(KernelOptions::default()).await.unwrap();
    let old = kernel.quarantine().unwrap();
    let writer = AgentName::new("writer").unwrap();
    let reason = QuarantineReason::MalformedFrame {
        error: "InvalidMagic".into(),
        detail: "magic was XXXX".into(),
    };
    let record = old.park(&writer, reason).await.unwrap();
    old.actor().kill();
    // The supervisor restarts it; the slot then points at the new instance.
    let new = loop {
        match kernel.quarantine() {
            Some(q) if q.actor().get_id() != old.actor().get_id() => break q,
            _ => tokio::task::yield_now().await,
        }
    };
    // The records live in the kernel's quarantine store: the new instance still has them.
    assert_eq!(new.list().await.unwrap(), std::slice::from_ref(&record));
    let root = kernel.status().await;
    let quarantine = find(find(&root, "system"), "quarantine");
    assert_eq!(
        (quarantine.state, quarantine.restarts),
        (ActorRunState::Running, 1)
    );
    assert_eq!(kernel.release(&writer).await.unwrap(), record);
    let err = kernel.release(&writer).await.unwrap_err();
    assert_eq!(err.to_string(), "agent writer is not quarantined");
    kernel.shutdown().await;
}

fn with_quarantine_file(path: &std::path::Path) -> KernelOptions {
    KernelOptions {
        quarantine_file: Some(path.to_owned()),
        ..KernelOptions::default()
    }
}

#[tokio::test]
async fn a_parked_agent_stays_parked_across_a_kernel_reboot_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quarantine.msgpack");
    let writer = AgentName::new("writer").unwrap();
    let kernel = Kernel::boot(with_quarantine_file(&path)).await.unwrap();
    let reason = QuarantineReason::CrashLoop {
        restarts: 4,
        period_ms: 5_000,
        last_error: "sandbox killed by SIGKILL".into(),
    };
    let record = kernel
        .quarantine()
        .unwrap()
        .park(&writer, reason)
        .await
        .unwrap();
    kernel.shutdown().await;

    let kernel = Kernel::boot(with_quarantine_file(&path)).await.unwrap();
    let q = kernel.quarantine().unwrap();
    assert_eq!(q.check(&writer).await.unwrap(), Some(record.clone()));
    assert_eq!(kernel.release(&writer).await.unwrap(), record);
    kernel.shutdown().await;

    let kernel = Kernel::boot(with_quarantine_file(&path)).await.unwrap();
    assert_eq!(
        kernel.quarantine().unwrap().check(&writer).await.unwrap(),
        None
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_quarantine_file_stops_the_boot_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quarantine.msgpack");
    std::fs::write(&path, b"\xc1 not messagepack").unwrap();
    let err = Kernel::boot(with_quarantine_file(&path)).await.unwrap_err();
    assert!(
        matches!(err, runloop_kernel::kernel::BootError::Quarantine(_)),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "boot: quarantine file {} is corrupt (",
            path.display()
        )),
        "{err}"
    );
}
