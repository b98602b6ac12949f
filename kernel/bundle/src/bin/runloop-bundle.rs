//! `runloop-bundle`: pack, sign, verify and digest agent bundles (the build script's
//! helper).
//!
//! Exit status: 0 ok, 1 an I/O failure, 2 invalid input (a bundle or file that does not
//! verify, bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runloop_bundle::sign::{self, KeyError, SignError};
use runloop_bundle::{
    Bundle, Digest, LoadError, PublicKey, SecretKey, TrustPolicy, TrustRoot, pack,
};

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
    /// Signs a bundle directory (writes its signature.toml) with a secret key file.
    Sign {
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Loads a bundle directory and checks signature, digest, policy and ABI; the signer
    /// must be the project key, or the public key given with --key.
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Trust only this public key file (instead of the built-in project key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Prints the BLAKE3 digest (hex) of a file.
    Digest { file: PathBuf },
}

fn is_io(error: &LoadError) -> bool {
    matches!(error, LoadError::Read { .. })
}

fn signer(bundle: &Bundle) -> Option<String> {
    match bundle.provenance() {
        runloop_bundle::Provenance::Trusted { key_id, .. }
        | runloop_bundle::Provenance::Verified { key_id } => Some(key_id.to_string()),
        _ => None,
    }
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
            "signed_by": signer(bundle),
        })
        .to_string()
    } else {
        format!(
            "{} {} blake3 {} ({} bytes) signed by {}",
            manifest.name(),
            manifest.version(),
            manifest.wasm_blake3(),
            bundle.wasm().len(),
            signer(bundle).unwrap_or_else(|| "nobody".into())
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
        Command::Sign { dir, key } => SecretKey::read(&key)
            .map_err(|e| (e.to_string(), matches!(e, KeyError::Read { .. })))
            .and_then(|key| {
                sign::sign(&dir, &key)
                    .map(|id| format!("{} signed by {id}", dir.display()))
                    .map_err(|e| {
                        let io = matches!(&e, SignError::Write { .. })
                            || matches!(&e, SignError::Load(inner) if is_io(inner));
                        (e.to_string(), io)
                    })
            }),
        Command::Verify { dir, json, key } => {
            let trust = match key.map(|k| PublicKey::read(&k)) {
                None => Ok(TrustPolicy::default()),
                Some(Ok(key)) => Ok(TrustPolicy::only(vec![
                    TrustRoot::new(key, None, Vec::new()).expect("no scopes is valid"),
                ])),
                Some(Err(e)) => Err((e.to_string(), matches!(e, KeyError::Read { .. }))),
            };
            trust.and_then(|trust| {
                Bundle::load(&dir, &trust)
                    .map(|bundle| describe(&bundle, json))
                    .map_err(|e| (e.to_string(), is_io(&e)))
            })
        }
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
