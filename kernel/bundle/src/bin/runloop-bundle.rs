//! `runloop-bundle`: pack, verify and digest agent bundles (the build script's helper).
//!
//! Exit status: 0 ok, 1 an I/O failure, 2 invalid input (a bundle or file that does not
//! verify, bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runloop_bundle::{Bundle, Digest, LoadError, pack};

#[derive(Debug, Parser)]
#[command(
    name = "runloop-bundle",
    about = "Pack, verify and digest Runloop agent bundles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a bundle from an agent crate (metadata, policy.caps) and its built module.
    Pack {
        #[arg(long)]
        crate_dir: PathBuf,
        #[arg(long)]
        wasm: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Loads a bundle directory and checks digest, policy and ABI.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Prints the BLAKE3 digest (hex) of a file.
    Digest { file: PathBuf },
}

fn is_io(error: &LoadError) -> bool {
    matches!(error, LoadError::Read { .. })
}

fn describe(bundle: &Bundle, json: bool) -> String {
    let manifest = bundle.manifest();
    if json {
        let ops: Vec<&str> = bundle.policy().ops().map(|op| op.name()).collect();
        let ports = |p: &[runloop_bundle::Name]| {
            p.iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>()
        };
        serde_json::json!({
            "name": manifest.name().as_str(),
            "version": manifest.version().to_string(),
            "ports_in": ports(manifest.ports_in()),
            "ports_out": ports(manifest.ports_out()),
            "wasm_blake3": manifest.wasm_blake3().to_hex(),
            "wasm_bytes": bundle.wasm().len(),
            "allowed_ops": ops,
        })
        .to_string()
    } else {
        format!(
            "{} {} blake3 {} ({} bytes)",
            manifest.name(),
            manifest.version(),
            manifest.wasm_blake3(),
            bundle.wasm().len()
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pack {
            crate_dir,
            wasm,
            out,
        } => pack::pack(&crate_dir, &wasm, &out)
            .map(|bundle| describe(&bundle, false))
            .map_err(|e| {
                let io = matches!(&e, pack::PackError::Write { .. })
                    || matches!(&e, pack::PackError::Read(inner) if is_io(inner));
                (e.to_string(), io)
            }),
        Command::Verify { dir, json } => Bundle::load(&dir)
            .map(|bundle| describe(&bundle, json))
            .map_err(|e| (e.to_string(), is_io(&e))),
        Command::Digest { file } => std::fs::read(&file)
            .map(|bytes| Digest::of(&bytes).to_hex())
            .map_err(|e| (format!("read {}: {e}", file.display()), true)),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err((message, io)) => {
            eprintln!("runloop-bundle: {message}");
            ExitCode::from(if io { 1 } else { 2 })
        }
    }
}
