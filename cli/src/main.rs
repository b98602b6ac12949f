//! `rlp`, the Runloop command line: parses arguments once, dispatches to one module per
//! command group, and maps failures to exit codes (1: the world failed, 2: bad input).

mod agent;
mod agent_ctl;
mod confirm;
mod drill;
mod failure;
mod input;
mod kb;
mod kernel_client;
mod model;
mod rmp;
mod run;
mod status;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runloop: run, watch, trace and replay sandboxed AI agents.
#[derive(Debug, Parser)]
#[command(name = "rlp", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encode, decode and inspect RMP v0 frames (the wire protocol's debugging tool).
    #[command(subcommand)]
    Rmp(rmp::RmpCommand),
    /// The knowledge base (POG): query, search, why, write, verify, backup, import, ...
    Kb(Box<kb::KbArgs>),
    /// The supervisor tree with each actor's state (from runloopd, else embedded).
    Status(status::StatusArgs),
    /// Try a model provider by hand: list models, complete a prompt, embed texts.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// The model broker's accounting.
    #[command(subcommand)]
    Broker(model::BrokerCmd),
    /// Run agents: `invoke` one message through a fresh sandbox; `ls|start|send|stop|release`
    /// agents in the kernel (runloopd, else embedded).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Check an opening (YAML DAG of agents): every error with file:line:col; exit 2 on any.
    Validate(run::ValidateArgs),
    /// Run an opening: through runloopd when it runs, else embedded (durable either way);
    /// live progress on a TTY, the result and trace id at the end. Exit 0 succeeded, 1 any
    /// other end, 2 invalid opening or params.
    Run(Box<run::RunArgs>),
    /// Recent and running runs, with status (interrupted runs can be resumed); with a trace
    /// id, that run in full.
    Runs(run::RunsArgs),
    /// Cancel a running run (runloopd).
    Cancel(run::CancelArgs),
    /// Continue an unfinished run from its record: finished nodes are not run again.
    Resume(run::ResumeArgs),
    /// Actions waiting for a person's yes (runloopd): `ls`, `show <id>`, `approve <id>`,
    /// `deny <id>`. A decision is bound to the payload hash shown; unanswered requests are
    /// denied at their timeout.
    #[command(subcommand)]
    Confirm(confirm::ConfirmCommand),
    /// A run's crossings as a ladder (sequence diagram): one column per participant (rlp,
    /// the run, each agent, broker, POG, gate), one row per message with its kind,
    /// latency and size. `--format json|mermaid|chrome` for tools; without an id, the
    /// recent runs. Exit 0, 1 not found or unavailable, 2 bad input.
    Trace(trace::TraceArgs),
    /// Re-run every node of a recorded run in fresh sandboxes, answering each host call
    /// from the recording (no model, person or effect is asked again), and compare outputs
    /// node by node. Exit 0 only when every node is identical.
    Replay(trace::ReplayArgs),
    /// Fault-injection drills: each boots a kernel of its own, runs the compose_email
    /// opening and the agents it needs in real sandboxes, breaks one thing (a SIGKILLed
    /// sandbox, a wasm or cgroup OOM, a spinning guest, hostile frames, a crash loop) and
    /// reports detect and restore times, messages lost and effects done twice. `ls`,
    /// `run <name> [--repeat N]`, `all`. Exit 0 only when every drill run passed.
    #[command(subcommand)]
    Drill(drill::DrillCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rmp(command) => rmp::run(command),
        Command::Kb(args) => return ExitCode::from(kb::main(*args)),
        Command::Status(args) => status::run(args),
        Command::Model(command) => model::run_model(command),
        Command::Broker(command) => model::run_broker(command),
        Command::Agent(command) => agent::run(command),
        Command::Validate(args) => run::validate(args),
        Command::Run(args) => run::run(*args),
        Command::Runs(args) => run::runs(args),
        Command::Cancel(args) => run::cancel(args),
        Command::Resume(args) => run::resume(args),
        Command::Confirm(command) => confirm::run(command),
        Command::Trace(args) => trace::trace(args),
        Command::Drill(command) => match drill::run(command) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(drill::EXIT_DRILL_FAILED),
            Err(f) => Err(f),
        },
        Command::Replay(args) => match trace::replay(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(failure::EXIT_FAILURE),
            Err(f) => Err(f),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
