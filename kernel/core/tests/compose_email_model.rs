//! compose_email's draft written by a REAL model: llama.cpp's server with SmolLM2-135M
//! (packaging/scripts/model-server.sh, the same real server the broker's tests start), as
//! an OpenAI-compatible provider of the broker in the kernel's tree. The send is denied
//! (the test is about the draft), so nothing leaves. The run then replays identically with
//! the server stopped (every model answer from the recording). Fails, naming the script,
//! when the server cannot start.

#[path = "../../../actors/broker/tests/common/mod.rs"]
mod model_server;

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use runloop_broker::config::{ProviderConfig, ProviderKind};
use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::effects::EffectsConfig;
use runloop_kernel::effects::gate::AutoDecide;
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::PogConfig;
use serde_json::{Value, json};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn broker(base_url: &str) -> Broker {
    let mut config = ModelsConfig {
        default: "local:smollm2-135m".into(),
        ..ModelsConfig::default()
    };
    config.broker.providers.push(ProviderConfig {
        id: "local".into(),
        kind: ProviderKind::Http,
        base_url: Some(base_url.into()),
        secret_id: Some("runloop/models/local".into()),
        records: None,
    });
    config.broker.cache.capacity = 0;
    let env = HashMap::from([(
        "RUNLOOP_MODELS_LOCAL".to_owned(),
        model_server::TEST_KEY.to_owned(),
    )]);
    Broker::new(
        config,
        &SecretResolver::with_env(SecretsConfig::default(), env),
        Arc::new(runloop_broker::SystemClock),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_drafts_the_email_through_the_broker() {
    let server = model_server::RealServer::start();
    let state = tempfile::tempdir().unwrap();
    let pog = state.path().join("pog");
    common::seed_sample_pog(&pog);
    let options = KernelOptions {
        pog: Some(PogService {
            config: PogConfig::in_dir(&pog),
            read_conns: 2,
        }),
        broker: Some(Arc::new(broker(&server.base_url()))),
        effects: Some(EffectsConfig::in_state_dir(state.path())),
        ..common::options("compose-email-model")
    };
    let kernel = Arc::new(Kernel::boot(options).await.unwrap());
    kernel.effects().unwrap().shared.set_auto(AutoDecide::Deny {
        by: "test".into(),
        reason: "the draft is what this test is about".into(),
    });
    let engine = Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs: vec![repo().join("agents/bundles")],
            host: RunHost::Daemon,
        },
    );
    // A short draft: SmolLM2 on one CPU thread writes a few dozen tokens per second.
    let yaml = std::fs::read_to_string(repo().join("examples/openings/compose_email.yaml"))
        .unwrap()
        .replace("max_tokens: 400", "max_tokens: 48");
    let submitted = engine
        .submit(&yaml, Path::new("/nonexistent"), &json!({}))
        .await
        .unwrap();
    let mut rx = submitted.report.clone();
    let report = rx.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    let draft_node = report.nodes.iter().find(|n| n.id == "draft").unwrap();
    assert_eq!(
        draft_node.status.as_str(),
        "succeeded",
        "the writer drafted with the real model: {report:?}"
    );
    let outputs: Value = serde_json::from_str(draft_node.outputs_json.as_deref().unwrap()).unwrap();
    let draft = outputs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o[0] == "draft")
        .map(|o| o[1].clone())
        .unwrap();
    let provider = draft["model"]["provider"].as_str().unwrap();
    assert!(provider.starts_with("local (openai-compatible"), "{draft}");
    assert_eq!(draft["model"]["model"], "smollm2-135m", "{draft}");
    assert_eq!(draft["to"][0]["email"], "john.smith@example.com", "{draft}");
    assert!(
        draft["model"]["tokens_out"].as_u64().unwrap() > 0,
        "{draft}"
    );
    assert!(draft["body"].as_str().unwrap().len() > 20, "{draft}");
    // Nothing left the machine: the send (if the review passed) was denied.
    let outbox = state.path().join("outbox/new");
    let sent = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert_eq!(sent, 0);
    // Replay with the model server gone: the draft comes back byte for byte from the
    // recording (a live call could not be answered now), and nothing is sent.
    drop(server);
    let replay = runloop_kernel::trace::replay(&engine, &report.trace_id)
        .await
        .unwrap();
    assert!(replay.identical, "{replay:#?}");
    let draft = replay.nodes.iter().find(|n| n.id == "draft").unwrap();
    assert!(
        draft.host_calls >= 1,
        "the model call was answered: {draft:?}"
    );
    let sent = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert_eq!(sent, 0);
    kernel.root().stop(Some("test over".into()));
}
