//! `rlp status`: the supervisor tree with each actor's state, from the daemon when its
//! socket answers, else from a kernel booted in-process (embedded mode); it says which.

use std::path::PathBuf;

use clap::Args;
use runloop_kernel::config::{self, LoadOptions, Mode};
use runloop_kernel::control::{ClientError, request};
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::payloads::{ActorNode, ControlCommand, ControlOutcome};
use serde_json::json;

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON: {"source": "daemon"|"embedded", "socket": ..., "tree": {...}}.
    #[arg(long)]
    json: bool,
    /// System mode (/etc/runloop/config.yaml, /run/runloop/rmp.sock).
    #[arg(long)]
    system: bool,
    /// Read this config file instead of the mode's default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the tree came from.
enum Source {
    Daemon(PathBuf),
    Embedded { tried: Vec<PathBuf> },
}

pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let json = args.json;
    let mode = if args.system {
        Mode::System
    } else {
        Mode::user_from_env().map_err(|e| Failure::invalid("Config", e.to_string()).json(json))?
    };
    let config = config::load(&LoadOptions {
        mode,
        file: args.config,
        env: std::env::vars().collect(),
        flags: Vec::new(),
    })
    .map_err(|e| Failure::invalid("Config", e.to_string()).json(json))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::io(format!("start the async runtime: {e}")).json(json))?;
    let (source, tree) = runtime.block_on(fetch(&config)).map_err(|f| f.json(json))?;
    if json {
        let (source, socket, tried) = match &source {
            Source::Daemon(path) => ("daemon", Some(path.display().to_string()), vec![]),
            Source::Embedded { tried } => (
                "embedded",
                None,
                tried.iter().map(|p| p.display().to_string()).collect(),
            ),
        };
        let tree = serde_json::to_value(&tree).expect("actor nodes serialize");
        let out = json!({"source": source, "socket": socket, "tried": tried, "tree": tree});
        println!("{out}");
    } else {
        match &source {
            Source::Daemon(path) => println!("source: daemon at {}", path.display()),
            Source::Embedded { tried } => {
                let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
                println!(
                    "source: embedded kernel (no daemon answered at {})",
                    tried.join(", ")
                );
            }
        }
        print_tree(&tree, 0);
    }
    Ok(())
}

fn request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("rlp-{}-{nanos:x}", std::process::id())
}

async fn fetch(config: &config::Config) -> Result<(Source, ActorNode), Failure> {
    let candidates = config::socket_candidates(config);
    let explicit = config.runtime.socket_path.is_some();
    for path in &candidates {
        match request(path, &request_id(), ControlCommand::Status).await {
            Ok(reply) => match reply.outcome {
                ControlOutcome::Status { tree } => return Ok((Source::Daemon(path.clone()), tree)),
                other => {
                    return Err(Failure::io(format!(
                        "daemon at {} answered status with {other:?}",
                        path.display()
                    )));
                }
            },
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
    let kernel = Kernel::boot(KernelOptions::default())
        .await
        .map_err(|e| Failure::io(e.to_string()))?;
    let tree = kernel.status().await;
    kernel.shutdown().await;
    Ok((Source::Embedded { tried: candidates }, tree))
}

fn print_tree(node: &ActorNode, depth: usize) {
    let kind = serde_json::to_value(node.kind).expect("serializes");
    let state = serde_json::to_value(node.state).expect("serializes");
    let mut line = format!(
        "{:indent$}{:<width$} {:<10} {:<10} restarts {}",
        "",
        node.name,
        kind.as_str().unwrap_or_default(),
        state.as_str().unwrap_or_default(),
        node.restarts,
        indent = depth * 2,
        width = 24usize.saturating_sub(depth * 2),
    );
    if let Some(detail) = &node.detail {
        line.push_str(&format!("  {detail}"));
    }
    if let Some(error) = &node.last_error {
        line.push_str(&format!("  last error: {error}"));
    }
    println!("{line}");
    for child in &node.children {
        print_tree(child, depth + 1);
    }
}
