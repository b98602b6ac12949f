//! `rlp-kb`: a temporary stand-alone binary with exactly the `rlp kb ...` argument surface,
//! until `kb.rs` moves into the `rlp` CLI crate as its `kb` subcommand.

mod kb;

use clap::Parser;

/// Runloop knowledge base (the POG) — same arguments as `rlp kb`.
#[derive(Debug, Parser)]
#[command(name = "rlp-kb", version)]
struct Cli {
    #[command(flatten)]
    kb: kb::KbArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    std::process::ExitCode::from(kb::main(cli.kb))
}
