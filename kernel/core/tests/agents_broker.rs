//! Agents with the model broker running in the kernel's `broker` slot (its own test binary:
//! the broker is a process-wide singleton): an agent's `model.complete` and `model.embed`
//! host calls are answered by the broker (offline provider here, labelled as such), and
//! the broker accounts them to the agent. Needs `cargo build -p runloop-sandbox-host`.

use std::sync::Arc;

use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::ActorRunState;

mod common;
use common::{bundle, options, send_empty};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_host_calls_are_answered_by_the_broker_in_the_tree() {
    let broker = Broker::new(
        ModelsConfig::default(),
        &SecretResolver::with_env(SecretsConfig::default(), Default::default()),
        Arc::new(runloop_broker::SystemClock),
    )
    .unwrap();
    let broker = Arc::new(broker);
    let options = KernelOptions {
        broker: Some(broker.clone()),
        ..options("broker")
    };
    let kernel = Kernel::boot(options).await.unwrap();
    let tree = kernel.status().await;
    let system = tree.children.iter().find(|c| c.name == "system").unwrap();
    let slot = system.children.iter().find(|c| c.name == "broker").unwrap();
    assert_eq!(slot.state, ActorRunState::Running, "{slot:?}");

    kernel
        .start_bundle(&bundle("hostcalls"), Some("asker"))
        .await
        .unwrap();
    let outs = send_empty(&kernel, "asker").await;
    let complete = outs.iter().find(|o| o["op"] == "model.complete").unwrap();
    assert!(complete["ok"]["text"].is_string(), "{complete}");
    assert!(
        complete["ok"]["provider"]
            .as_str()
            .unwrap()
            .contains("offline"),
        "the offline provider says what it is: {complete}"
    );
    let embed = outs.iter().find(|o| o["op"] == "model.embed").unwrap();
    assert_eq!(
        embed["ok"]["vectors"].as_array().unwrap().len(),
        1,
        "{embed}"
    );
    let stats = broker.stats();
    let asker = stats.by_agent.get("asker").expect("accounted to the agent");
    assert_eq!(asker.requests, 2, "{stats:?}");
    // The agent's status carries what the broker accounted to it (agtop's columns).
    let status = kernel.agents().await;
    let listed = status.iter().find(|a| a.name == "asker").unwrap();
    assert_eq!(
        listed.tokens,
        asker.tokens_in + asker.tokens_out,
        "{listed:?}"
    );
    assert!(listed.tokens > 0, "{listed:?}");
    assert_eq!(listed.usd_micros, asker.cost_usd_micros, "{listed:?}");
    kernel.shutdown().await;
}
