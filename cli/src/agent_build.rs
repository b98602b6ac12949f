//! `rlp agent scaffold` and `rlp agent build`: writing an agent outside the Runloop
//! checkout.
//!
//! `scaffold` writes a standalone crate (its own `[workspace]`, so no parent workspace
//! adopts it) with the SDK as a path dependency, a `policy.caps`, a native test and a
//! one-node opening to try it with. Its `src/lib.rs` is the example of
//! `docs/agent-sdk.md`, taken from the page at compile time, so the page's example is the
//! code every scaffold (and the test that builds one) compiles.
//!
//! `build` compiles a crate to `wasm32-wasip1` with the first toolchain the machine has
//! (rustup's target, else Debian's rustc-web route that `setup-wasm-toolchain.sh`
//! installs; the same two routes as `build-agents.sh`), packs the bundle
//! (`runloop_bundle::pack`: digest, policy and ABI checked, loaded back) and signs it when
//! given a key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::failure::Failure;

/// The SDK page whose first Rust example is the scaffold's `src/lib.rs`.
const SDK_PAGE: &str = include_str!("../../docs/agent-sdk.md");
/// The struct name the page's example uses; the scaffold renames it after the agent.
const EXAMPLE_TYPE: &str = "Greeter";
/// The SDK crate of this build's checkout (absent in an installed build).
const CHECKOUT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../agents/sdk");
/// Where a package installs the SDK's sources.
const INSTALLED_SDK: &str = "/usr/share/runloop/agent-sdk/sdk";
/// The wasm target agents are built for.
const WASM_TARGET: &str = "wasm32-wasip1";
/// Longest agent name (bundle names are `[a-z][a-z0-9_]*`).
const NAME_MAX: usize = 64;

#[derive(Debug, Args)]
pub struct ScaffoldArgs {
    /// The agent's name: `[a-z][a-z0-9_]*`, at most 64 characters. The crate is written to
    /// `<DIR>/<NAME>`.
    #[arg(value_name = "NAME")]
    name: String,
    /// The directory to write the crate into (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The SDK crate (`runloop-agent-sdk`) to depend on. Default: `$RUNLOOP_SDK_DIR`, then
    /// /usr/share/runloop/agent-sdk/sdk (the .deb's), then this build's checkout.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Which wasm toolchain builds the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toolchain {
    /// rustup's `wasm32-wasip1` target (a developer machine).
    Rustup,
    /// Debian's rustc-web 1.96 with `-Zbuild-std`, lld-22 and wasi-libc
    /// (`packaging/scripts/setup-wasm-toolchain.sh`).
    Debian,
}

impl Toolchain {
    fn name(self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup",
            Toolchain::Debian => "debian",
        }
    }

    /// The first toolchain this machine has.
    fn detect() -> Option<Toolchain> {
        [Toolchain::Rustup, Toolchain::Debian]
            .into_iter()
            .find(|t| t.present())
    }

    fn present(self) -> bool {
        match self {
            Toolchain::Rustup => Command::new("rustup")
                .args(["target", "list", "--installed"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| {
                    o.status.success()
                        && String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .any(|l| l.trim() == WASM_TARGET)
                }),
            Toolchain::Debian => {
                Path::new("/usr/bin/rustc").exists()
                    && Path::new("/usr/bin/cargo").exists()
                    && Path::new("/usr/lib/rustlib/src/rust/library").is_dir()
                    && Path::new("/usr/lib/wasm32-wasi").is_dir()
                    && Command::new("wasm-ld-22")
                        .arg("--version")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
        }
    }

    /// `cargo build` for this toolchain, in `dir`, with `target_dir`.
    fn cargo_build(self, dir: &Path, target_dir: &Path) -> Command {
        let mut command = match self {
            Toolchain::Rustup => Command::new("cargo"),
            Toolchain::Debian => {
                let mut c = Command::new("/usr/bin/cargo");
                c.env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env(
                        "CARGO_ENCODED_RUSTFLAGS",
                        [
                            "-C",
                            "linker=wasm-ld-22",
                            "-L",
                            "native=/usr/lib/wasm32-wasi",
                        ]
                        .join("\u{1f}"),
                    );
                c
            }
        };
        command
            .current_dir(dir)
            .args(["build", "--release", "--target", WASM_TARGET])
            .arg("--target-dir")
            .arg(target_dir)
            .args(["--message-format", "json-render-diagnostics"]);
        if self == Toolchain::Debian {
            command.arg("-Zbuild-std=std,panic_abort");
        }
        // rustup's toolchain file or a parent's RUSTC must not pick the compiler for us.
        if self == Toolchain::Rustup {
            command.env_remove("RUSTC");
        }
        command
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The agent crate (a directory with Cargo.toml, `[package.metadata.runloop]` and
    /// policy.caps), e.g. one written by `rlp agent scaffold`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the bundle (default: `<DIR>/bundle`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Sign the bundle with this secret key (from `rlp agent keygen`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The toolchain (default: the first one found, rustup then debian).
    #[arg(long, value_enum)]
    toolchain: Option<Toolchain>,
    /// Cargo's target directory (default: `<DIR>/target`); point several agents at one to
    /// build the standard library once.
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Checks an agent name the way bundles do: `[a-z][a-z0-9_]*`.
fn check_name(name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > NAME_MAX {
        return Err(Failure::invalid(
            "InvalidAgentName",
            format!(
                "'{name}': an agent name is a lowercase letter then lowercase letters, digits \
                 or '_', at most {NAME_MAX} characters"
            ),
        ));
    }
    Ok(())
}

/// `greet_bot` → `GreetBot`.
fn type_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The first ```rust block of the SDK page.
fn sdk_example() -> &'static str {
    let start = SDK_PAGE
        .find("```rust\n")
        .map(|i| i + "```rust\n".len())
        .expect("docs/agent-sdk.md has a ```rust example");
    let len = SDK_PAGE[start..]
        .find("```")
        .expect("the example's code block is closed");
    &SDK_PAGE[start..start + len]
}

/// The SDK to depend on: `--sdk`, `$RUNLOOP_SDK_DIR`, the installed one, the checkout's.
fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(dir) => vec![dir.to_owned()],
        None => std::env::var_os("RUNLOOP_SDK_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from(INSTALLED_SDK), PathBuf::from(CHECKOUT_SDK)])
            .collect(),
    };
    for dir in &candidates {
        if dir.join("Cargo.toml").is_file() {
            return std::fs::canonicalize(dir)
                .map_err(|e| Failure::io(format!("{}: {e}", dir.display())));
        }
    }
    let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    Err(Failure::invalid(
        "SdkNotFound",
        format!(
            "no runloop-agent-sdk crate (a Cargo.toml) in {}; pass --sdk DIR or set \
             RUNLOOP_SDK_DIR",
            tried.join(", ")
        ),
    ))
}

/// The files of a scaffold for `name` against the SDK at `sdk`.
fn scaffold_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let ty = type_name(name);
    let example = sdk_example().replace(EXAMPLE_TYPE, &ty);
    let sdk_path = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"                 # the bundle's version
edition = "2024"
publish = false

# A standalone crate: no parent directory's workspace adopts it.
[workspace]

[lib]
crate-type = ["cdylib"]

# Read by `rlp agent build` (the bundle packer): the agent's name and ports.
[package.metadata.runloop]
name = "{name}"
ports_in = ["in"]
ports_out = ["out"]

[dependencies]
runloop-agent-sdk = {{ path = "{sdk_path}" }}

# Small, reproducible modules; panics abort (the SDK reports the message first).
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
debug = 0
strip = true
panic = "abort"
"#
    );
    let lib = format!(
        r#"//! The `{name}` agent, written by `rlp agent scaffold` from the SDK's example.
//! Build and pack it with `rlp agent build .`; test it natively with `cargo test`.

{example}
#[cfg(test)]
mod tests {{
    use super::*;
    use runloop_agent_sdk::testing::TestHost;
    use runloop_agent_sdk::{{HostCall, HostReply, Value}};

    #[test]
    fn emits_its_input_and_logs_the_time() {{
        let mut host = TestHost::new(|call| match call {{
            HostCall::ClockNow => {{
                HostReply::Ok(Value::Map(vec![("now_ms".into(), 1_700_000_000_000u64.into())]))
            }}
            _ => HostReply::Ok(Value::Nil),
        }});
        let input = AgentInput {{
            port: "in".into(),
            payload: Value::from("hello"),
        }};
        host.invoke(&mut {ty}, &input).unwrap();
        assert_eq!(host.outputs().len(), 1);
        assert_eq!(host.outputs()[0].port, "out");
        assert_eq!(host.outputs()[0].payload, input.payload);
    }}
}}
"#
    );
    let caps = format!(
        "# {name}: the host calls it may make (docs/agent-sdk.md, \"Capabilities\").\n\
         runloop-caps 1\nallow log\nallow clock.now\n"
    );
    let opening = format!(
        "# One node: the {name} agent gets `text` and emits it back.\n\
         #   rlp run opening.yaml --param text=hello\n\
         version: 0\nname: {name}_demo\nparams:\n  text: {{ type: string }}\nnodes:\n  \
         - id: main\n    use: agent:{name}\n    with: {{ text: \"{{{{params.text}}}}\" }}\n"
    );
    vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib),
        ("policy.caps", caps),
        ("opening.yaml", opening),
        (".gitignore", "/target\n/bundle\n".to_owned()),
    ]
}

pub fn scaffold(args: ScaffoldArgs) -> Result<(), Failure> {
    let json = args.json;
    check_name(&args.name).map_err(|f| f.json(json))?;
    let sdk = find_sdk(args.sdk.as_deref()).map_err(|f| f.json(json))?;
    let root = args.dir.join(&args.name);
    if root.exists() {
        return Err(Failure::invalid(
            "AlreadyExists",
            format!(
                "{} already exists; scaffold never overwrites",
                root.display()
            ),
        )
        .json(json));
    }
    let files = scaffold_files(&args.name, &sdk);
    for (rel, text) in &files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::io(format!("{}: {e}", parent.display())).json(json))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Failure::io(format!("{}: {e}", path.display())).json(json))?;
    }
    // The SDK workspace's lock pins versions already in cargo's cache: the first build
    // needs no registry round trip. Cargo prunes what this crate does not use.
    let lock = sdk.join("../Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, root.join("Cargo.lock"))
            .map_err(|e| Failure::io(format!("{}: {e}", lock.display())).json(json))?;
    }
    if json {
        let written: Vec<&str> = files.iter().map(|(rel, _)| *rel).collect();
        println!(
            "{}",
            json!({"name": args.name, "dir": root, "sdk": sdk, "files": written})
        );
    } else {
        println!("wrote {} (SDK: {})", root.display(), sdk.display());
        println!("  test natively:   cd {} && cargo test", root.display());
        println!("  build a bundle:  rlp agent build {}", root.display());
    }
    Ok(())
}

/// The `.wasm` cargo reported in its JSON messages (the cdylib's artifact).
fn wasm_artifact(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

pub fn build(args: BuildArgs) -> Result<(), Failure> {
    let json = args.json;
    let fail = |f: Failure| f.json(json);
    if !args.dir.join("Cargo.toml").is_file() {
        return Err(fail(Failure::invalid(
            "NotAnAgentCrate",
            format!("{}: no Cargo.toml", args.dir.display()),
        )));
    }
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| fail(Failure::io(format!("{}: {e}", args.dir.display()))))?;
    let toolchain = match args.toolchain {
        Some(t) if !t.present() => {
            return Err(fail(Failure::invalid(
                "NoToolchain",
                format!(
                    "the {} toolchain is not installed (packaging/scripts/setup-wasm-toolchain.sh \
                     installs the debian one)",
                    t.name()
                ),
            )));
        }
        Some(t) => t,
        None => Toolchain::detect().ok_or_else(|| {
            fail(Failure::invalid(
                "NoToolchain",
                format!(
                    "no wasm toolchain: rustup has no {WASM_TARGET} target and Debian's \
                     rustc-web route is not installed (packaging/scripts/setup-wasm-toolchain.sh)"
                ),
            ))
        })?,
    };
    let target_dir = args
        .target_dir
        .clone()
        .unwrap_or_else(|| dir.join("target"));
    eprintln!(
        "rlp: building {} for {WASM_TARGET} with the {} toolchain…",
        dir.display(),
        toolchain.name()
    );
    let output = toolchain
        .cargo_build(&dir, &target_dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(Failure::io(format!("run cargo: {e}"))))?;
    if !output.status.success() {
        return Err(Failure {
            name: "BuildFailed".to_owned(),
            detail: format!(
                "cargo build for {WASM_TARGET} failed ({}); its errors are above",
                output.status
            ),
            status: crate::failure::EXIT_FAILURE,
            json,
        });
    }
    let wasm = wasm_artifact(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        fail(Failure::invalid(
            "NoWasm",
            "cargo built no .wasm: is the crate a `crate-type = [\"cdylib\"]` library?",
        ))
    })?;
    let out = args.out.clone().unwrap_or_else(|| dir.join("bundle"));
    eprintln!("rlp: packing {} into {}…", wasm.display(), out.display());
    let bundle = runloop_bundle::pack::pack(&dir, &wasm, &out)
        .map_err(|e| fail(Failure::invalid("PackFailed", e.to_string())))?;
    let signed_by = match &args.key {
        Some(key) => Some(crate::agent_trust::sign_dir(&out, key).map_err(fail)?),
        None => None,
    };
    let manifest = bundle.manifest();
    if json {
        println!(
            "{}",
            json!({
                "name": manifest.name().as_str(),
                "version": manifest.version().to_string(),
                "bundle": out,
                "wasm_digest": manifest.wasm_blake3().to_string(),
                "toolchain": toolchain.name(),
                "signed_by": signed_by,
            })
        );
    } else {
        println!(
            "built {} {} → {} (wasm {})",
            manifest.name().as_str(),
            manifest.version(),
            out.display(),
            manifest.wasm_blake3()
        );
        match signed_by {
            Some(key_id) => println!("signed by key {key_id}"),
            None => println!(
                "unsigned: sign it with `rlp agent sign {} --key FILE`",
                out.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_bundles() {
        for ok in ["a", "greeter", "mail_bot2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Greeter", "2bot", "mail-bot", "a b", &"a".repeat(65)] {
            assert_eq!(
                check_name(bad).unwrap_err().name,
                "InvalidAgentName",
                "{bad}"
            );
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("greeter"), "Greeter");
        assert_eq!(type_name("mail_bot2"), "MailBot2");
    }

    #[test]
    fn the_scaffold_is_the_sdk_page_example() {
        let example = sdk_example();
        assert!(example.contains("export_agent!(Greeter);"), "{example}");
        let files = scaffold_files("mail_bot", Path::new("/sdk"));
        let lib = &files
            .iter()
            .find(|(rel, _)| *rel == "src/lib.rs")
            .unwrap()
            .1;
        assert!(lib.contains(&example.replace("Greeter", "MailBot")));
        let cargo = &files
            .iter()
            .find(|(rel, _)| *rel == "Cargo.toml")
            .unwrap()
            .1;
        assert!(cargo.contains("runloop-agent-sdk = { path = \"/sdk\" }"));
        assert!(cargo.contains("name = \"mail_bot\"\nports_in"));
    }

    #[test]
    fn the_wasm_artifact_is_found_in_cargo_messages() {
        let stdout = concat!(
            r#"{"reason":"compiler-artifact","filenames":["/t/libserde.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","filenames":["/t/wasm32-wasip1/release/a.wasm"]}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        assert_eq!(
            wasm_artifact(stdout),
            Some(PathBuf::from("/t/wasm32-wasip1/release/a.wasm"))
        );
        assert_eq!(wasm_artifact(""), None);
    }
}
