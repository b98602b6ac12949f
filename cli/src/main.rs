//! `rlp`, the Runloop command line: parses arguments once, dispatches to one module per
//! command group, and maps failures to exit codes (1: the world failed, 2: bad input).

mod agent;
mod agent_build;
mod agent_ctl;
mod agent_install;
mod agent_trust;
mod cap;
mod confirm;
mod drill;
mod failure;
mod input;
mod kb;
mod kernel_client;
mod model;
mod rmp;
mod route;
mod router;
mod run;
mod shell;
mod status;
mod trace;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Runloop: run, watch, trace and replay sandboxed AI agents.
#[derive(Debug, Parser)]
#[command(
    name = "rlp",
    version,
    about,
    propagate_version = true,
    after_help = "Anything else after rlp is a prompt for the router: `rlp \"ls -l | wc -l\"` runs \
                  in /bin/sh when router.fastpath_shell is on, `rlp \"email Maria about the \
                  launch\"` runs router.default_opening with the prompt as its params. `rlp why \
                  \"<prompt>\"` explains; `rlp -- <prompt>` routes even a subcommand's name \
                  (docs/router.md)."
)]
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
    /// agents in the kernel (runloopd, else embedded); `keygen|sign|verify|install|rollback`
    /// signed bundles (docs/trust.md).
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
    /// The keys trusted to sign agent bundles (security.trust_roots, plus the built-in
    /// project key): `ls`, `add <KEY> [--name N] [--scope GLOB]...`, `remove <KEY_ID>`.
    /// Exit 2 for a bad key, scope or id.
    #[command(subcommand)]
    Trust(agent_trust::TrustCommand),
    /// Capability grants with an expiry: `grant <agent> <capability> --ttl 1h` widens or
    /// narrows one op of the agent's policy.caps until it expires (recorded in the POG;
    /// widening only as security.grants.extend allows), `ls`, `revoke <id>`. Exit 2 when
    /// a grant is refused.
    #[command(subcommand)]
    Cap(cap::CapCommand),
    /// Decide whether a prompt goes to the shell or to an agent (router.default_opening):
    /// prints `shell` or `agent`, exit 10 for the shell, 11 for an agent (`--json` for
    /// the rule and every step; `--run` runs it like `rlp "<prompt>"`).
    Route(route::RouteArgs),
    /// Explain the router's decision on a prompt: every rule tried in order, what each
    /// saw, and which one decided.
    Why(route::WhyArgs),
    /// `rlp "<prompt>"`: any first word that is not a subcommand routes the whole line
    /// (shell commands run when router.fastpath_shell is on; requests run the default
    /// opening). See `rlp why`.
    #[command(external_subcommand)]
    Prompt(Vec<OsString>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `rlp completions bash > ~/.local/share/bash-completion/completions/rlp`.
    Completions(shell::CompletionsArgs),
    /// Write rlp's man pages (one per command) into a directory; for packagers.
    #[command(hide = true)]
    Man(shell::ManArgs),
}

fn main() -> ExitCode {
    // Few malloc arenas: threads come and go (one driver per agent), each arena keeps holes.
    runloop_kernel::kernel::trim::limit_arenas();
    let cli = Cli::parse();
    // A bundle loaded only because security.allow_unsigned_agents is true says so; the
    // kernel's own spans go out once an embedded kernel's config turns export on.
    runloop_kernel::otel::kernel_spans::install("rlp");
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
        Command::Trust(command) => agent_trust::run(command),
        Command::Cap(command) => cap::run(command),
        Command::Drill(command) => match drill::run(command) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(drill::EXIT_DRILL_FAILED),
            Err(f) => Err(f),
        },
        Command::Completions(args) => shell::completions(args, Cli::command()),
        Command::Man(args) => shell::man(args, Cli::command()),
        Command::Route(args) => return exit_with(route::route(args)),
        Command::Why(args) => return exit_with(route::why(args)),
        Command::Prompt(words) => return exit_with(route::prompt(words)),
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

/// A command whose success has its own exit status (the router's 10/11, the shell's).
fn exit_with(result: Result<u8, failure::Failure>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => failure.report(),
    }
}
