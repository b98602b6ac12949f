//! `rlp cap grant|ls|revoke`: capability grants with an expiry (docs/trust.md).
//!
//! Each goes to the kernel through the control plane (the daemon when it runs, else an
//! embedded kernel on the same POG), which admits the grant against the bundle's
//! `policy.caps` and config's `security.grants`, records it in the POG and puts it in force
//! until it expires on the kernel's clock.

use clap::{Args, Subcommand};
use runloop_bundle::grants::{human_ms, parse_duration_ms};
use runloop_proto::payloads::{ControlCommand, ControlOutcome, GrantInfo};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::kernel_client::{self, KernelArgs};

/// `rlp cap`: grant an agent a capability for a while, list the grants, revoke one.
#[derive(Debug, Subcommand)]
pub enum CapCommand {
    /// Grant (or take away) one capability until the TTL runs out. CAPABILITY is a
    /// policy.caps line: `effect kind=mail.send confirm=required`, `model.complete
    /// models=m max_tokens=512`, `deny kb.query`. A grant that allows nothing beyond the
    /// bundle's policy (or denies) is always admitted; one that extends it only when
    /// config's security.grants.extend lists the op. Exit 2 when refused.
    Grant(GrantArgs),
    /// The grants in force: id, agent, capability, narrow/extend, time left.
    Ls(ListArgs),
    /// End a grant before its expiry. Exit 2 when no active grant has the id.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The agent (its bundle's name: the grant holds for every instance of it).
    pub agent: String,
    /// The capability line (quote it, or give its words as separate arguments).
    #[arg(required = true, num_args = 1..)]
    pub capability: Vec<String>,
    /// How long it lasts: 90s, 30min, 1h, 2d (at most security.grants.max_ttl).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Why (recorded with the grant).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The grant's id (`rlp cap ls`).
    pub grant_id: String,
    /// Why (recorded with the revocation).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp cap …`.
pub fn run(command: CapCommand) -> Result<(), Failure> {
    match command {
        CapCommand::Grant(args) => {
            let json = args.json;
            grant(args).map_err(|f| f.json(json))
        }
        CapCommand::Ls(args) => {
            let json = args.json;
            list(args).map_err(|f| f.json(json))
        }
        CapCommand::Revoke(args) => {
            let json = args.json;
            revoke(args).map_err(|f| f.json(json))
        }
    }
}

/// Who asks, for the record: `rlp cap (user <name>)`.
fn by() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control))
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .map(|m| format!("uid {}", m.uid()))
                .unwrap_or_else(|_| "unknown".into())
        });
    format!("rlp cap (user {user})")
}

/// A refusal from the kernel: bad input (exit 2) unless the kernel could not act.
fn refused(code: String, message: String) -> Failure {
    let mut failure = match code.as_str() {
        "Unavailable" => Failure::io(message),
        _ => Failure::invalid(&code, message),
    };
    failure.name = code;
    failure
}

fn unexpected(other: ControlOutcome) -> Failure {
    match other {
        ControlOutcome::Failed { code, message } => refused(code, message),
        other => Failure::io(format!("unexpected answer: {other:?}")),
    }
}

fn grant_json(g: &GrantInfo, now_ms: u64) -> Value {
    json!({
        "grant_id": g.grant_id, "agent": g.agent, "capability": g.capability,
        "rule": g.rule.name(), "change": g.change.name(), "granted_ms": g.granted_ms,
        "expires_ms": g.expires_ms, "left_ms": g.expires_ms.saturating_sub(now_ms),
        "by": g.by, "reason": g.reason,
    })
}

fn grant(args: GrantArgs) -> Result<(), Failure> {
    let ttl_ms = parse_duration_ms(&args.ttl).ok_or_else(|| {
        Failure::invalid(
            "BadTtl",
            format!(
                "--ttl {:?}: expected a number and a unit (ms, s, min, h, d), e.g. 1h",
                args.ttl
            ),
        )
    })?;
    let command = ControlCommand::CapGrant {
        agent: args.agent,
        capability: args.capability.join(" "),
        ttl_ms,
        by: by(),
        reason: args.reason,
    };
    let (source, outcome) = kernel_client::ask(&args.kernel, command)?;
    match outcome {
        ControlOutcome::CapGranted { grant, now_ms } => {
            if args.json {
                let mut out = grant_json(&grant, now_ms);
                out["source"] = source.json_fields()["source"].clone();
                println!("{out}");
            } else {
                println!(
                    "granted {}: agent {} may now \"{}\" ({}) for {}",
                    grant.grant_id,
                    grant.agent,
                    grant.capability,
                    grant.change.name(),
                    human_ms(grant.expires_ms.saturating_sub(now_ms))
                );
                println!("revoke with: rlp cap revoke {}", grant.grant_id);
                eprintln!("{}", source.describe());
            }
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

fn list(args: ListArgs) -> Result<(), Failure> {
    let (source, outcome) = kernel_client::ask(&args.kernel, ControlCommand::CapList)?;
    match outcome {
        ControlOutcome::Caps { grants, now_ms } => {
            if args.json {
                let grants: Vec<Value> = grants.iter().map(|g| grant_json(g, now_ms)).collect();
                println!("{}", json!({"grants": grants, "now_ms": now_ms}));
                return Ok(());
            }
            if grants.is_empty() {
                println!("no grants in force");
            } else {
                println!(
                    "{:<21} {:<16} {:<7} {:<10} CAPABILITY",
                    "GRANT", "AGENT", "CHANGE", "LEFT"
                );
                for g in &grants {
                    println!(
                        "{:<21} {:<16} {:<7} {:<10} {}",
                        g.grant_id,
                        g.agent,
                        g.change.name(),
                        human_ms(g.expires_ms.saturating_sub(now_ms)),
                        g.capability
                    );
                }
            }
            eprintln!("{}", source.describe());
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

fn revoke(args: RevokeArgs) -> Result<(), Failure> {
    let command = ControlCommand::CapRevoke {
        grant_id: args.grant_id,
        by: by(),
        reason: args.reason,
    };
    let (source, outcome) = kernel_client::ask(&args.kernel, command)?;
    match outcome {
        ControlOutcome::CapRevoked { grant } => {
            if args.json {
                println!(
                    "{}",
                    json!({"grant_id": grant.grant_id, "agent": grant.agent,
                           "capability": grant.capability, "revoked": true})
                );
            } else {
                println!(
                    "revoked {}: agent {} no longer has \"{}\"",
                    grant.grant_id, grant.agent, grant.capability
                );
                eprintln!("{}", source.describe());
            }
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
