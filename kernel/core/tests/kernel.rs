//! The kernel tree booted in-process (embedded mode): its shape, its states, a restart.

use runloop_actors::names::AgentName;
use runloop_actors::quarantine::QuarantineReason;
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::{ActorKind, ActorNode, ActorRunState};

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
    assert!(
        find(system, "bus")
            .detail
            .as_deref()
            .unwrap()
            .starts_with("topics 0")
    );
    assert!(
        find(system, "metrics")
            .detail
            .as_deref()
            .unwrap()
            .contains("rss")
    );
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
    old.park(&writer, reason).await.unwrap();
    old.actor().kill();
    // The supervisor restarts it; the slot then points at the new instance.
    let new = loop {
        match kernel.quarantine() {
            Some(q) if q.actor().get_id() != old.actor().get_id() => break q,
            _ => tokio::task::yield_now().await,
        }
    };
    // A restarted quarantine starts empty (state lives in the POG once it is wired in).
    assert_eq!(new.list().await.unwrap(), []);
    let root = kernel.status().await;
    let quarantine = find(find(&root, "system"), "quarantine");
    assert_eq!(
        (quarantine.state, quarantine.restarts),
        (ActorRunState::Running, 1)
    );
    let err = kernel.release(&writer).await.unwrap_err();
    assert_eq!(err.to_string(), "agent writer is not quarantined");
    kernel.shutdown().await;
}
