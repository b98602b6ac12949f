//! Confirmations: `rlp confirm ls|show|approve|deny` against `runloopd`, and the part of
//! `rlp run` that answers its own run's requests (a TTY prompt, `--approve`, `--deny`, or
//! — not on a terminal — a denial that says how to approve).
//!
//! A decision always names the payload hash the person was shown (`show` prints it;
//! `approve` fetches the request and approves exactly that hash, or the one given with
//! `--hash`): if the payload changed in between, the gate refuses the decision.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use clap::{Args, Subcommand};
use runloop_kernel::effects::gate::{AutoDecide, GateMsg};
use runloop_kernel::kernel::Kernel;
use runloop_proto::payloads::{ActionInfo, ControlCommand, ControlOutcome, RunProgress};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::kernel_client::{self, KernelArgs, Source};

/// `rlp confirm`: the actions that wait for a person's yes (runloopd).
#[derive(Debug, Subcommand)]
pub enum ConfirmCommand {
    /// The pending actions: id, run, node, effect, summary, time left.
    Ls(ListArgs),
    /// One pending action with its exact payload and payload hash.
    Show(OneArgs),
    /// Approve a pending action (the payload shown by `show`, or `--hash`).
    Approve(DecideArgs),
    /// Deny a pending action.
    Deny(DecideArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct OneArgs {
    /// The request id (`rlp confirm ls`).
    pub request_id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request id (`rlp confirm ls`).
    pub request_id: String,
    /// The payload hash you checked (`rlp confirm show`); refused if the payload is not
    /// that one any more. Default: the hash of the payload as it is now, printed first.
    #[arg(long, value_name = "BLAKE3")]
    pub hash: Option<String>,
    /// Why (recorded with the decision).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp confirm …`.
pub fn run(command: ConfirmCommand) -> Result<(), Failure> {
    match command {
        ConfirmCommand::Ls(args) => list(args),
        ConfirmCommand::Show(args) => show(args),
        ConfirmCommand::Approve(args) => decide(args, true),
        ConfirmCommand::Deny(args) => decide(args, false),
    }
}

/// Asks the daemon; without one there is nothing to confirm from another terminal.
fn ask_daemon(kernel: &KernelArgs, command: ControlCommand) -> Result<ControlOutcome, Failure> {
    let config = kernel_client::load_config(kernel)?;
    let rt = kernel_client::runtime()?;
    rt.block_on(async {
        match kernel_client::find_daemon(&config).await? {
            Source::Daemon(path) => {
                let id = kernel_client::new_request_id();
                runloop_client::request(&path, &id, command)
                    .await
                    .map(|reply| reply.outcome)
                    .map_err(|e| Failure::io(e.to_string()))
            }
            Source::Embedded { .. } => Err(Failure::invalid(
                "NoDaemon",
                "no runloopd answers: the requests of an `rlp run` without a daemon are \
                 answered at its own prompt (or with --approve / --deny); start runloopd to \
                 answer from another terminal",
            )),
        }
    })
}

fn refused(code: &str, message: String) -> Failure {
    let mut failure = match code {
        "NoSuchRequest" | "StalePayload" => Failure::invalid(code, message),
        _ => Failure::io(message),
    };
    failure.name = code.to_owned();
    failure
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn left(expires_ms: u64) -> String {
    format!("{} s", expires_ms.saturating_sub(now_ms()).div_ceil(1000))
}

fn action_json(a: &ActionInfo) -> Value {
    json!({
        "request_id": a.request_id, "trace_id": a.trace_id, "node": a.node_id,
        "agent": a.agent, "effect": a.effect, "idempotency_key": a.idempotency_key,
        "summary": a.summary, "payload_hash": a.payload_hash,
        "payload": serde_json::from_str::<Value>(&a.payload_json).unwrap_or(Value::Null),
        "expires_ms": a.expires_ms,
    })
}

fn list(args: ListArgs) -> Result<(), Failure> {
    match ask_daemon(&args.kernel, ControlCommand::ConfirmList).map_err(|f| f.json(args.json))? {
        ControlOutcome::Actions { actions } => {
            if args.json {
                let list: Vec<Value> = actions.iter().map(action_json).collect();
                println!("{}", json!({"actions": list}));
            } else if actions.is_empty() {
                println!("no action waits for a decision");
            } else {
                for a in &actions {
                    println!(
                        "{}  run {}  node {}  {}  {}  (denied unanswered in {})",
                        a.request_id,
                        a.trace_id,
                        a.node_id,
                        a.effect,
                        a.summary,
                        left(a.expires_ms)
                    );
                }
            }
            Ok(())
        }
        ControlOutcome::Failed { code, message } => Err(refused(&code, message).json(args.json)),
        other => Err(Failure::io(format!("unexpected answer: {other:?}")).json(args.json)),
    }
}

/// Prints one action for a person to judge.
pub fn describe(a: &ActionInfo) -> String {
    let payload = serde_json::from_str::<Value>(&a.payload_json).unwrap_or(Value::Null);
    let mut out = format!(
        "action request {} — run {}, node {} (agent {})\n  {}: {}\n",
        a.request_id, a.trace_id, a.node_id, a.agent, a.effect, a.summary
    );
    if let Some(map) = payload.as_object() {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut lines = text.lines();
            out.push_str(&format!("  {k}: {}\n", lines.next().unwrap_or("")));
            for line in lines {
                out.push_str(&format!("  {:width$}  {line}\n", "", width = k.len()));
            }
        }
    } else {
        out.push_str(&format!("  payload: {payload}\n"));
    }
    out.push_str(&format!(
        "  payload hash: {}\n  denied unanswered in {}",
        a.payload_hash,
        left(a.expires_ms)
    ));
    out
}

fn fetch(kernel: &KernelArgs, request_id: &str) -> Result<ActionInfo, Failure> {
    let command = ControlCommand::ConfirmShow {
        request_id: request_id.to_owned(),
    };
    match ask_daemon(kernel, command)? {
        ControlOutcome::Action { action } => Ok(action),
        ControlOutcome::Failed { code, message } => Err(refused(&code, message)),
        other => Err(Failure::io(format!("unexpected answer: {other:?}"))),
    }
}

fn show(args: OneArgs) -> Result<(), Failure> {
    let action = fetch(&args.kernel, &args.request_id).map_err(|f| f.json(args.json))?;
    if args.json {
        println!("{}", action_json(&action));
    } else {
        println!("{}", describe(&action));
    }
    Ok(())
}

fn decide(args: DecideArgs, approve: bool) -> Result<(), Failure> {
    let hash = match &args.hash {
        Some(hash) => hash.clone(),
        None => {
            let action = fetch(&args.kernel, &args.request_id).map_err(|f| f.json(args.json))?;
            if !args.json {
                println!("{}", describe(&action));
            }
            action.payload_hash
        }
    };
    let command = ControlCommand::ConfirmDecide {
        request_id: args.request_id.clone(),
        approve,
        payload_hash: hash,
        by: "rlp confirm".into(),
        reason: args.reason.clone(),
    };
    match ask_daemon(&args.kernel, command).map_err(|f| f.json(args.json))? {
        ControlOutcome::Decided {
            request_id,
            decision,
            by,
        } => {
            if args.json {
                println!(
                    "{}",
                    json!({"request_id": request_id, "decision": decision, "by": by})
                );
            } else {
                println!("{request_id}: {decision} (by {by})");
            }
            Ok(())
        }
        ControlOutcome::Failed { code, message } => Err(refused(&code, message).json(args.json)),
        other => Err(Failure::io(format!("unexpected answer: {other:?}")).json(args.json)),
    }
}

/// How `rlp run` answers its own run's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunConfirm {
    /// `--approve`: every request, recorded as approved by flag.
    Approve,
    /// `--deny`: every request denied.
    Deny,
    /// On a terminal: ask the person.
    Prompt,
    /// Not on a terminal, no flag: embedded runs deny at once (nobody can be asked);
    /// through a daemon the request waits for `rlp confirm`.
    Unattended,
}

impl RunConfirm {
    pub fn of(approve: bool, deny: bool) -> Self {
        match (approve, deny) {
            (true, _) => RunConfirm::Approve,
            (_, true) => RunConfirm::Deny,
            _ if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                RunConfirm::Prompt
            }
            _ => RunConfirm::Unattended,
        }
    }

    /// The gate's mode for an embedded run.
    pub fn auto(self) -> AutoDecide {
        match self {
            RunConfirm::Approve => AutoDecide::Approve {
                by: "flag --approve".into(),
            },
            RunConfirm::Deny => AutoDecide::Deny {
                by: "flag --deny".into(),
                reason: "rlp run --deny declines every action".into(),
            },
            RunConfirm::Prompt => AutoDecide::Ask,
            RunConfirm::Unattended => AutoDecide::Deny {
                by: "no terminal".into(),
                reason: "rlp run is not on a terminal, so nobody could be asked; rerun with \
                         --approve to approve (recorded as approved by flag), or start \
                         runloopd and answer with `rlp confirm approve <id>`"
                    .into(),
            },
        }
    }
}

/// Who `rlp run` talks to about its requests.
pub enum Peer {
    Embedded(Arc<Kernel>),
    Daemon(std::path::PathBuf),
}

impl Peer {
    async fn action(&self, request_id: &str) -> Option<ActionInfo> {
        match self {
            Peer::Embedded(kernel) => {
                let effects = kernel.effects()?;
                let pending = effects.shared.subscribe().borrow().clone();
                pending
                    .iter()
                    .find(|r| r.request_id == request_id)
                    .map(runloop_kernel::effects::control::info)
            }
            Peer::Daemon(path) => {
                let id = kernel_client::new_request_id();
                let command = ControlCommand::ConfirmShow {
                    request_id: request_id.to_owned(),
                };
                match runloop_client::request(path, &id, command).await {
                    Ok(reply) => match reply.outcome {
                        ControlOutcome::Action { action } => Some(action),
                        _ => None,
                    },
                    Err(_) => None,
                }
            }
        }
    }

    async fn decide(&self, action: &ActionInfo, approve: bool, by: &str) -> Result<(), String> {
        match self {
            Peer::Embedded(kernel) => {
                let gate = kernel
                    .effects()
                    .and_then(|e| e.gate.get())
                    .ok_or("the confirmation gate is not running")?;
                let answer = gate
                    .call(
                        |reply| GateMsg::Decide {
                            request_id: action.request_id.clone(),
                            approve,
                            payload_hash: action.payload_hash.clone(),
                            by: by.to_owned(),
                            reason: None,
                            reply,
                        },
                        Some(std::time::Duration::from_secs(10)),
                    )
                    .await;
                match answer {
                    Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
                    Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(e.to_string()),
                    _ => Err("the confirmation gate did not answer".into()),
                }
            }
            Peer::Daemon(path) => {
                let id = kernel_client::new_request_id();
                let command = ControlCommand::ConfirmDecide {
                    request_id: action.request_id.clone(),
                    approve,
                    payload_hash: action.payload_hash.clone(),
                    by: by.to_owned(),
                    reason: None,
                };
                match runloop_client::request(path, &id, command).await {
                    Ok(reply) => match reply.outcome {
                        ControlOutcome::Decided { .. } => Ok(()),
                        ControlOutcome::Failed { message, .. } => Err(message),
                        other => Err(format!("unexpected answer: {other:?}")),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

fn prompt_yes() -> bool {
    eprint!("Approve? Type yes to approve, anything else denies: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}

/// Answers one `node.waiting` event of the run `rlp run` follows.
pub async fn on_event(peer: &Peer, mode: RunConfirm, event: &RunProgress, json_out: bool) {
    let RunProgress::NodeWaiting {
        request_id, node, ..
    } = event
    else {
        return;
    };
    let Some(action) = peer.action(request_id).await else {
        return;
    };
    let decision = match mode {
        RunConfirm::Approve => Some((true, "flag --approve")),
        RunConfirm::Deny => Some((false, "flag --deny")),
        RunConfirm::Prompt => {
            eprintln!("\n{}", describe(&action));
            let yes = tokio::task::spawn_blocking(prompt_yes)
                .await
                .unwrap_or(false);
            Some((yes, "tty"))
        }
        RunConfirm::Unattended => {
            if !json_out {
                eprintln!(
                    "node {node} waits for a person's yes: {}\n  approve: rlp confirm approve \
                     {request_id}    deny: rlp confirm deny {request_id}    (denied \
                     unanswered in {})",
                    action.summary,
                    left(action.expires_ms)
                );
            }
            None
        }
    };
    if let Some((approve, by)) = decision
        && let Err(e) = peer.decide(&action, approve, by).await
    {
        eprintln!("decision on {request_id} not recorded: {e}");
    }
}
