//! `rlp agent ls|start|send|stop|release`: agents inside a kernel, through
//! `kernel_client::ask` (the daemon when its socket answers, else an embedded kernel).
//!
//! In embedded mode every `rlp` invocation boots its own kernel and shuts it down when
//! the command ends, so an agent started by one command is gone for the next: `start`
//! says so, and `send`/`stop` on an unknown agent name the daemon as the way to keep
//! agents between commands.

use std::path::PathBuf;

use clap::Args;
use runloop_proto::payloads::{AgentStatus, ControlCommand, ControlOutcome};
use serde_json::{Value as Json, json};

use crate::failure::Failure;
use crate::kernel_client::{KernelArgs, Source, ask};

/// Codes of failures caused by the caller's input (exit 2).
const INVALID_CODES: &[&str] = &[
    "InvalidName",
    "BadBundle",
    "BadInput",
    "NoSuchAgent",
    "AgentExists",
    "NotQuarantined",
];

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON: {"source", "socket", "tried", "agents": [...]}; with --installed
    /// {"searched": [...], "installed": [{name, version, ports_in, ports_out, blake3, dir,
    /// signed_by, trust_root, error?}]}.
    #[arg(long)]
    json: bool,
    /// List the agent bundles an opening can `use` (the search path of an opening in
    /// --dir: its agents/, config agents.search_dirs, ~/.runloop/agents,
    /// /var/lib/runloop/agents, the shipped bundles), first found per name; a bundle that
    /// fails verification is listed with the reason. Needs no kernel.
    #[arg(long)]
    installed: bool,
    /// With --installed: the opening's directory (default: the current directory).
    #[arg(long, value_name = "DIR", requires = "installed")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The bundle directory (manifest.toml, policy.caps, agent.wasm).
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// The agent's name (default: the manifest's name).
    #[arg(long, value_name = "N")]
    name: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The agent's name.
    name: String,
    /// The message payload as JSON.
    #[arg(long, value_name = "JSON")]
    input: String,
    /// The input port.
    #[arg(long, default_value = "in")]
    port: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The agent's name.
    name: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

fn failed(code: String, message: String, json: bool) -> Failure {
    let mut failure = if INVALID_CODES.contains(&code.as_str()) {
        Failure::invalid(&code, message)
    } else {
        Failure::io(message)
    };
    failure.name = code;
    failure.json(json)
}

fn unexpected(other: &ControlOutcome, json: bool) -> Failure {
    Failure::io(format!("the kernel answered with {other:?}")).json(json)
}

fn emit(source: &Source, json: bool, fields: Json, text: &str) {
    if json {
        let mut out = source.json_fields();
        if let Json::Object(map) = fields {
            out.extend(map);
        }
        println!("{}", Json::Object(out));
    } else {
        println!("{}", source.describe());
        println!("{text}");
    }
}

fn embedded_note(source: &Source) -> Option<&'static str> {
    matches!(source, Source::Embedded { .. }).then_some(
        "note: embedded kernel: the agent stopped when this command ended; start runloopd \
         to keep agents running between rlp commands",
    )
}

pub fn ls(args: LsArgs) -> Result<(), Failure> {
    let json = args.json;
    if args.installed {
        return installed(&args);
    }
    let (source, outcome) =
        ask(&args.kernel, ControlCommand::AgentList).map_err(|f| f.json(json))?;
    let agents = match outcome {
        ControlOutcome::Agents { agents } => agents,
        ControlOutcome::Failed { code, message } => return Err(failed(code, message, json)),
        other => return Err(unexpected(&other, json)),
    };
    let mut text = format!(
        "{:<16} {:<12} {:>8} {:>8} {:<9} {:>8} {:>9} {:>6} {:>6} {:>6}  quarantine",
        "NAME", "STATE", "PID", "RESTARTS", "BREAKER", "CPU_MS", "RSS_KB", "IN", "OUT", "ERRORS"
    );
    for a in &agents {
        text.push('\n');
        text.push_str(&status_line(a));
    }
    if agents.is_empty() {
        text.push_str("\n(no agents)");
    }
    emit(
        &source,
        json,
        json!({ "agents": serde_json::to_value(&agents).expect("serializes") }),
        &text,
    );
    Ok(())
}

/// `rlp agent ls --installed`: the bundles on an opening's search path.
fn installed(args: &LsArgs) -> Result<(), Failure> {
    use runloop_kernel::runs::catalog::{BundleCatalog, search_path};
    let config = crate::kernel_client::load_config(&args.kernel).map_err(|f| f.json(args.json))?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        Failure::invalid("Unreadable", format!("--dir {}: {e}", dir.display())).json(args.json)
    })?;
    let catalog = BundleCatalog::new(
        search_path(&dir, &config.agent_search_dirs()),
        config.trust.clone(),
    );
    let mut rows = Vec::new();
    let mut text = format!(
        "{:<20} {:<9} {:<16} {:<16} {:<12} DIR",
        "NAME", "VERSION", "IN", "OUT", "BLAKE3"
    );
    for (name, path, bundle) in catalog.installed() {
        let mut row = json!({"name": name, "dir": path.display().to_string()});
        match bundle {
            Ok(b) => {
                let m = b.manifest();
                let ports = |ps: &[runloop_bundle::manifest::Name]| -> Vec<String> {
                    ps.iter().map(|p| p.as_str().to_owned()).collect()
                };
                let digest = m.wasm_blake3().to_hex();
                text.push_str(&format!(
                    "\n{:<20} {:<9} {:<16} {:<16} {:<12} {}",
                    name,
                    m.version().to_string(),
                    ports(m.ports_in()).join(","),
                    ports(m.ports_out()).join(","),
                    &digest[..12],
                    path.display()
                ));
                row["version"] = json!(m.version().to_string());
                row["ports_in"] = json!(ports(m.ports_in()));
                row["ports_out"] = json!(ports(m.ports_out()));
                row["blake3"] = json!(digest);
                // Who vouches for it (docs/trust.md): a trust root, or nobody when only
                // security.allow_unsigned_agents let it load.
                let (key_id, root) = crate::agent_trust::signer(&b);
                row["signed_by"] = json!(key_id);
                row["trust_root"] = json!(root);
            }
            Err(e) => {
                text.push_str(&format!("\n{name:<20} UNUSABLE  {} ({e})", path.display()));
                row["error"] = json!(e);
            }
        }
        rows.push(row);
    }
    let searched: Vec<String> = catalog
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if rows.is_empty() {
        text.push_str("\n(no bundles found)");
    }
    text.push_str(&format!("\nsearched: {}", searched.join(", ")));
    if args.json {
        println!("{}", json!({"searched": searched, "installed": rows}));
    } else {
        println!("{text}");
    }
    Ok(())
}

fn status_line(a: &AgentStatus) -> String {
    format!(
        "{:<16} {:<12} {:>8} {:>8} {:<9} {:>8} {:>9} {:>6} {:>6} {:>6}  {}",
        a.name,
        a.state,
        a.sandbox_pid.map_or("-".into(), |p| p.to_string()),
        a.restarts,
        a.breaker,
        a.cpu_ms,
        a.rss_kb,
        a.messages_in,
        a.messages_out,
        a.errors,
        a.quarantine.as_deref().unwrap_or("-"),
    )
}

pub fn start(args: StartArgs) -> Result<(), Failure> {
    let json = args.json;
    // The daemon resolves paths itself: send an absolute one.
    let bundle = std::fs::canonicalize(&args.bundle).map_err(|e| {
        Failure::invalid(
            "NoSuchBundle",
            format!("bundle {}: {e}", args.bundle.display()),
        )
        .json(json)
    })?;
    let command = ControlCommand::AgentStart {
        bundle: bundle.display().to_string(),
        name: args.name,
    };
    let (source, outcome) = ask(&args.kernel, command).map_err(|f| f.json(json))?;
    let agent = match outcome {
        ControlOutcome::AgentStarted { agent } => agent,
        ControlOutcome::Failed { code, message } => return Err(failed(code, message, json)),
        other => return Err(unexpected(&other, json)),
    };
    let mut text = format!(
        "started agent {} (sandbox pid {}, state {})",
        agent.name,
        agent.sandbox_pid.map_or("-".into(), |p| p.to_string()),
        agent.state
    );
    if let Some(note) = embedded_note(&source) {
        text.push('\n');
        text.push_str(note);
    }
    let mut fields = json!({ "agent": serde_json::to_value(&agent).expect("serializes") });
    if let Some(note) = embedded_note(&source) {
        fields["note"] = note.into();
    }
    emit(&source, json, fields, &text);
    Ok(())
}

pub fn send(args: SendArgs) -> Result<(), Failure> {
    let json = args.json;
    serde_json::from_str::<Json>(&args.input).map_err(|e| {
        Failure::invalid("InvalidInput", format!("--input is not JSON: {e}")).json(json)
    })?;
    let command = ControlCommand::AgentSend {
        agent: args.name,
        port: args.port,
        input_json: args.input,
    };
    let (source, outcome) = ask(&args.kernel, command).map_err(|f| f.json(json))?;
    match outcome {
        ControlOutcome::AgentReplied {
            agent,
            outputs_json,
            attempt,
            round_trip_us,
        } => {
            let outputs: Json = serde_json::from_str(&outputs_json)
                .map_err(|e| Failure::io(format!("the kernel sent bad outputs: {e}")).json(json))?;
            let mut text = String::new();
            for o in outputs.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{}: {}\n",
                    o["port"].as_str().unwrap_or("?"),
                    o["payload"]
                ));
            }
            text.push_str(&format!(
                "agent {agent}: {} outputs, attempt {attempt}, round trip {round_trip_us} us",
                outputs.as_array().map_or(0, Vec::len)
            ));
            let fields = json!({
                "agent": agent,
                "outputs": outputs,
                "attempt": attempt,
                "round_trip_us": round_trip_us,
            });
            emit(&source, json, fields, &text);
            Ok(())
        }
        ControlOutcome::Failed { code, message } => Err(failed(code, message, json)),
        other => Err(unexpected(&other, json)),
    }
}

pub fn stop(args: NameArgs) -> Result<(), Failure> {
    let json = args.json;
    let command = ControlCommand::AgentStop { agent: args.name };
    let (source, outcome) = ask(&args.kernel, command).map_err(|f| f.json(json))?;
    match outcome {
        ControlOutcome::AgentStopped { agent } => {
            emit(
                &source,
                json,
                json!({ "stopped": agent }),
                &format!("stopped agent {agent}"),
            );
            Ok(())
        }
        ControlOutcome::Failed { code, message } => Err(failed(code, message, json)),
        other => Err(unexpected(&other, json)),
    }
}

pub fn release(args: NameArgs) -> Result<(), Failure> {
    let json = args.json;
    let command = ControlCommand::AgentRelease { agent: args.name };
    let (source, outcome) = ask(&args.kernel, command).map_err(|f| f.json(json))?;
    match outcome {
        ControlOutcome::Released { agent, reason } => {
            emit(
                &source,
                json,
                json!({ "released": agent, "reason": reason }),
                &format!(
                    "released agent {agent} (was parked: {reason}); start it again with `rlp agent start`"
                ),
            );
            Ok(())
        }
        ControlOutcome::Failed { code, message } => Err(failed(code, message, json)),
        other => Err(unexpected(&other, json)),
    }
}
