//! What the benches that run openings share (`compose_email.rs`, `replay.rs`,
//! `openings.rs`, `otel.rs`): the engine on a kernel, a kernel's stop, and for the
//! compose_email opening a POG seeded with the sample contacts and a kernel booted on one
//! state directory with the offline broker and an approving gate. Not in `common/mod.rs`, which
//! benches of crates without the kernel include too: a bench that wants this declares
//! `#[path = "common/kernel.rs"] mod kernel_common;`.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runloop_broker::{Broker, ModelsConfig, SecretResolver, SecretsConfig};
use runloop_kernel::agents::AgentOptions;
use runloop_kernel::effects::EffectsConfig;
use runloop_kernel::effects::gate::AutoDecide;
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions, PogService};
use runloop_pog::{ActorName, EventKind, PogConfig, Provenance, Scope};
use serde_json::json;

use crate::common::{bundles, repo};

/// The POG's and the broker's actor names: one kernel holding them at a time.
pub const SINGLETONS: [&str; 2] = ["runloop.pog", "runloop.broker"];

/// The provenance of what a bench writes into a POG itself.
pub fn provenance(trace_id: &str) -> Provenance {
    Provenance::from_json(&json!({
        "trace_id": trace_id, "opening_id": "run", "agent": "kernel",
        "inputs_hash": "0".repeat(64),
    }))
    .expect("a bench's provenance")
}

/// Imports `examples/pog/sample.ndjson` (the contacts compose_email looks up) into a fresh
/// POG in `dir`.
pub fn seed(dir: &Path) {
    use runloop_pog::import::{ImportContext, Parsed, parse_ndjson};
    let cfg = PogConfig::in_dir(dir);
    let mut store = runloop_pog::Store::open(&cfg, Arc::new(runloop_pog::SystemClock)).unwrap();
    let ctx = ImportContext {
        provenance: provenance("0".repeat(32).as_str()),
        actor: ActorName::new("user").unwrap(),
        scope: Scope::new("personal").unwrap(),
        csv_kind: EventKind::NoteAdded,
    };
    let file = std::fs::File::open(repo().join("examples/pog/sample.ndjson")).unwrap();
    let Parsed { events, .. } = parse_ndjson(file, &ctx).unwrap();
    store.write_batch(events).unwrap();
}

/// The offline model provider (embedded defaults).
pub fn offline_broker() -> Arc<Broker> {
    let secrets = SecretResolver::with_env(SecretsConfig::default(), Default::default());
    let clock = Arc::new(runloop_broker::SystemClock);
    Arc::new(Broker::new(ModelsConfig::default(), &secrets, clock).unwrap())
}

/// A kernel on `state` (POG, offline broker, effects with the outbox there, `.cwasm`
/// cache there), the gate approving every request at once.
pub async fn boot(program: &Path, state: &Path) -> (Arc<Kernel>, Arc<Engine>) {
    let options = KernelOptions {
        agents: AgentOptions {
            sandbox_host: Some(program.to_owned()),
            cwasm_dir: Some(state.join("cwasm")),
            ..AgentOptions::default()
        },
        pog: Some(PogService {
            config: PogConfig::in_dir(state.join("pog")),
            read_conns: 2,
        }),
        broker: Some(offline_broker()),
        effects: Some(EffectsConfig::in_state_dir(state)),
        ..KernelOptions::default()
    };
    let kernel = Arc::new(Kernel::boot(options).await.expect("boot"));
    kernel
        .effects()
        .expect("effects")
        .shared
        .set_auto(AutoDecide::Approve { by: "bench".into() });
    let engine = engine_for(&kernel);
    (kernel, engine)
}

/// The engine the benches run openings through: the committed bundles, as the daemon.
pub fn engine_for(kernel: &Arc<Kernel>) -> Arc<Engine> {
    Engine::new(
        kernel.clone(),
        EngineConfig {
            search_dirs: vec![bundles()],
            host: RunHost::Daemon,
        },
    )
}

/// Stops a kernel's tree and waits until its singletons' names are free for the next one.
pub async fn stop(kernel: Arc<Kernel>, engine: Arc<Engine>) {
    drop(engine);
    kernel.root().stop(Some("bench phase over".into()));
    while SINGLETONS
        .iter()
        .any(|n| ractor::registry::where_is(*n).is_some())
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Messages in the Maildir outbox.
pub fn outbox_len(state: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(state.join("outbox").join(sub)).ok())
        .map(|dir| dir.flatten().count())
        .sum()
}
