//! How `rlp` reaches a kernel: the daemon when its socket answers (config v1 discovery
//! order, through `runloop-client`), else a kernel booted in-process (embedded mode). Both
//! answer the same `control.request.v1` through the same code (`ControlPlane::answer`), so
//! every command behaves the same in either mode; the caller reports which one answered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use runloop_client::{ClientError, request};
use runloop_kernel::config::{self, LoadOptions, Mode};
use runloop_kernel::control::{ControlPlane, PeerPolicy};
use runloop_kernel::runs::{Engine, EngineConfig, RunHost};
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::{ControlCommand, ControlOutcome, ControlRequest};

use crate::failure::Failure;

/// Options every kernel-facing command takes.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// System mode (/etc/runloop/config.yaml, /run/runloop/rmp.sock).
    #[arg(long)]
    pub system: bool,
    /// Read this config file instead of the mode's default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Which kernel answered.
#[derive(Debug, Clone)]
pub enum Source {
    Daemon(PathBuf),
    Embedded { tried: Vec<PathBuf> },
}

impl Source {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Source::Daemon(path) => format!("source: daemon at {}", path.display()),
            Source::Embedded { tried } => {
                let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "source: embedded kernel (no daemon answered at {})",
                    tried.join(", ")
                )
            }
        }
    }

    /// The JSON fields `source`, `socket` and `tried`.
    pub fn json_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        match self {
            Source::Daemon(path) => {
                map.insert("source".into(), "daemon".into());
                map.insert("socket".into(), path.display().to_string().into());
                map.insert("tried".into(), serde_json::Value::Array(vec![]));
            }
            Source::Embedded { tried } => {
                map.insert("source".into(), "embedded".into());
                map.insert("socket".into(), serde_json::Value::Null);
                let tried = tried.iter().map(|p| p.display().to_string().into());
                map.insert("tried".into(), serde_json::Value::Array(tried.collect()));
            }
        }
        map
    }
}

fn request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("rlp-{}-{nanos:x}", std::process::id())
}

/// The config the mode and `--config` name, layered with the environment.
pub fn load_config(args: &KernelArgs) -> Result<config::Config, Failure> {
    let mode = if args.system {
        Mode::System
    } else {
        Mode::user_from_env().map_err(|e| Failure::invalid("Config", e.to_string()))?
    };
    config::load(&LoadOptions {
        mode,
        file: args.config.clone(),
        env: std::env::vars().collect(),
        flags: Vec::new(),
    })
    .map_err(|e| Failure::invalid("Config", e.to_string()))
}

/// The runtime every kernel-facing command runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::io(format!("start the async runtime: {e}")))
}

/// Sends `command` to the daemon, or to an embedded kernel when none answers.
pub fn ask(
    args: &KernelArgs,
    command: ControlCommand,
) -> Result<(Source, ControlOutcome), Failure> {
    let config = load_config(args)?;
    runtime()?.block_on(ask_async(&config, command))
}

/// A fresh request id.
pub fn new_request_id() -> String {
    request_id()
}

/// The daemon's socket when one accepts a connection; else the places tried (embedded).
pub async fn find_daemon(config: &config::Config) -> Result<Source, Failure> {
    let places = config::socket_places(config);
    let candidates = places.candidates();
    for path in &candidates {
        match tokio::net::UnixStream::connect(path).await {
            Ok(_) => return Ok(Source::Daemon(path.clone())),
            Err(e) if places.is_explicit() => {
                let mut failure = Failure::io(format!("connect {}: {e}", path.display()));
                failure.name = "DaemonUnreachable".into();
                return Err(failure);
            }
            Err(_) => continue,
        }
    }
    Ok(Source::Embedded { tried: candidates })
}

/// An in-process kernel with the daemon's singletons (the POG under the config's state
/// directory, the model broker), so embedded runs are durable like the daemon's.
pub async fn embedded_kernel(config: &config::Config) -> Result<Arc<Kernel>, Failure> {
    let defaults = KernelOptions::default();
    let broker = runloop_kernel::services::broker(config, defaults.clock.clone())
        .map_err(|e| Failure::invalid("Config", e.to_string()))?;
    let effects = runloop_kernel::services::effects_config(config)
        .map_err(|e| Failure::invalid("Config", e.to_string()))?;
    // `observability.traces`: the embedded kernel's crossings, own spans and metrics are
    // exported like the daemon's; `shutdown` flushes them.
    let otel = runloop_kernel::otel::OtelConfig::from_config(config)
        .map_err(|e| Failure::invalid("Config", e.to_string()))?
        .map(runloop_kernel::otel::Otel::start)
        .transpose()
        .map_err(|e| Failure::io(e.to_string()))?;
    if let Some(otel) = &otel
        && let Err(e) = otel.export_kernel_spans()
    {
        eprintln!("rlp: OpenTelemetry: kernel spans not exported: {e}");
    }
    let options = KernelOptions {
        // `security.trust_roots`, `security.grants`, `runtime.require_cgroups`.
        agents: runloop_kernel::agents::AgentOptions::from_config(config),
        pog: Some(runloop_kernel::services::pog_service(config)),
        broker: Some(broker),
        effects: Some(effects),
        otel,
        ..defaults
    };
    let kernel = Kernel::boot(options)
        .await
        .map_err(|e| Failure::io(e.to_string()))?;
    Ok(Arc::new(kernel))
}

/// The engine of an embedded kernel.
pub fn embedded_engine(kernel: Arc<Kernel>, config: &config::Config) -> Arc<Engine> {
    Engine::new(
        kernel,
        EngineConfig {
            search_dirs: config.agent_search_dirs(),
            host: RunHost::Embedded,
        },
    )
}

/// Longest [`shutdown`] waits for a finished run's last tasks to let the kernel go.
const SHUTDOWN_HOLDERS_WAIT_MS: u64 = 5_000;

/// Shuts an embedded kernel down: its agents and sandboxes stopped, its OpenTelemetry
/// export flushed ([`Kernel::shutdown_shared`]: a finished run's last tasks may hold it
/// for a moment after the report).
pub async fn shutdown(kernel: Arc<Kernel>) {
    let wait = Duration::from_millis(SHUTDOWN_HOLDERS_WAIT_MS);
    if !Kernel::shutdown_shared(kernel, wait).await {
        eprintln!(
            "rlp: the kernel was still held {SHUTDOWN_HOLDERS_WAIT_MS} ms after the work ended; \
             its tree was stopped and its export flushed without waiting"
        );
    }
}

async fn ask_async(
    config: &config::Config,
    command: ControlCommand,
) -> Result<(Source, ControlOutcome), Failure> {
    let places = config::socket_places(config);
    let candidates = places.candidates();
    let explicit = places.is_explicit();
    let id = request_id();
    for path in &candidates {
        match request(path, &id, command.clone()).await {
            Ok(reply) => return Ok((Source::Daemon(path.clone()), reply.outcome)),
            Err(ClientError::Connect { .. }) if !explicit => continue,
            Err(err) => {
                let name = if matches!(err, ClientError::Refused { .. }) {
                    "DaemonRefused"
                } else {
                    "DaemonUnreachable"
                };
                let mut failure = Failure::io(err.to_string());
                failure.name = name.into();
                return Err(failure);
            }
        }
    }
    let kernel = embedded_kernel(config).await?;
    let policy = PeerPolicy::same_uid().map_err(|e| Failure::io(format!("read own uid: {e}")))?;
    let engine = embedded_engine(kernel.clone(), config);
    let plane = ControlPlane::with_engine(engine, policy, Default::default());
    let reply = plane
        .answer(
            policy.uid,
            ControlRequest {
                request_id: id,
                command,
            },
        )
        .await;
    drop(plane);
    shutdown(kernel).await;
    Ok((Source::Embedded { tried: candidates }, reply.outcome))
}
