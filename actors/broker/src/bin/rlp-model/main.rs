//! Temporary `rlp-model` binary with exactly the `rlp model …` / `rlp broker stats` surface,
//! until `model.rs` moves into the `rlp` CLI crate (`failure.rs` is that crate's own, copied).

mod failure;
mod model;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rlp",
    about = "Runloop model broker commands (temporary binary)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Try a model provider by hand.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// The model broker's accounting.
    #[command(subcommand)]
    Broker(model::BrokerCmd),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Model(cmd) => model::run_model(cmd),
        Command::Broker(cmd) => model::run_broker(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
