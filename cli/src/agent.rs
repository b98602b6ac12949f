//! `rlp agent`: run agents directly. `invoke` spawns one confined sandbox-host in its own
//! cgroup, sends one message, prints the outputs and the run's facts.
//!
//! Without a kernel, host calls that need kernel services (kb, model, confirm) answer
//! `NotAvailable` "not available in this mode"; clock, random and log are answered locally.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use runloop_compile::Compiler;
use runloop_proto::SystemClock;
use runloop_proto::json::{json_to_msgpack, msgpack_to_json};
use runloop_proto::payloads::{AgentInput, InvokeError, SandboxLimits};
use runloop_sandbox::cgroup::{self, AgentCgroup, CgroupLimits, CgroupStats, CgroupSupport};
use runloop_sandbox::{
    InvokeReport, LocalHandler, OsRandom, Sandbox, SandboxError, SandboxFacts, SpawnConfig,
    locate_sandbox_host,
};
use serde_json::{Value as Json, json};

use crate::failure::Failure;

/// Memory the sandbox process needs beside the guest's linear memory.
const SANDBOX_OVERHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// Threads the sandbox may run (main + epoch ticker, with slack).
const SANDBOX_PIDS_MAX: u64 = 8;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run one message through an agent in a fresh sandbox and print outputs and facts.
    ///
    /// TARGET is a bundle directory (manifest.toml, digest and ABI verified), a .wasm or a
    /// .wat file. A guest that
    /// traps, loops past --timeout-ms or exhausts --memory-mb prints its specific error
    /// (Trap, TimeLimit, MemoryLimit, …) and exits 2.
    Invoke(InvokeArgs),
    /// Agents in the kernel: state, sandbox pid, restarts, breaker, quarantine, CPU, RSS.
    Ls(crate::agent_ctl::LsArgs),
    /// Start an agent from a bundle directory under its own supervisor.
    ///
    /// Without runloopd, the embedded kernel (and the agent) ends with this command.
    Start(crate::agent_ctl::StartArgs),
    /// Send one message to a running agent and print its outputs (needs runloopd to reach
    /// an agent started by an earlier command).
    Send(crate::agent_ctl::SendArgs),
    /// Stop an agent: its sandbox shut down, its cgroup removed.
    Stop(crate::agent_ctl::NameArgs),
    /// Release a quarantined agent so it may be started again.
    Release(crate::agent_ctl::NameArgs),
    /// Make an Ed25519 signing key pair: FILE (secret, mode 0600) and FILE.pub.
    Keygen(crate::agent_trust::KeygenArgs),
    /// Sign a bundle directory: writes its signature.toml over manifest.toml, policy.caps,
    /// tools.json (if any) and the module's digest.
    Sign(crate::agent_trust::SignArgs),
    /// Check a bundle as the kernel will: signature against the trust roots (`rlp trust
    /// ls`), digest, policy and ABI; prints who signed it and what it may do. Exit 2 when
    /// it would be refused, with the reason.
    Verify(crate::agent_trust::VerifyArgs),
    /// Install a bundle (directory or .tar.gz) where openings find it
    /// (~/.runloop/agents, system mode /var/lib/runloop/agents): verifies digest,
    /// signature against the trust roots and ABI, shows its capabilities and asks (on a
    /// terminal; elsewhere --yes is needed). An upgrade keeps the version it replaces.
    /// Exit 2 when refused, with the reason.
    Install(crate::agent_install::InstallArgs),
    /// Put back the version an install replaced (run again to undo).
    Rollback(crate::agent_install::RollbackArgs),
    /// Write a standalone agent crate to build outside this checkout: Cargo.toml with the
    /// SDK as a path dependency (its own [workspace]), src/lib.rs (the SDK page's example,
    /// with a native test), policy.caps and a one-node opening.yaml to try it.
    Scaffold(crate::agent_build::ScaffoldArgs),
    /// Build an agent crate to wasm32-wasip1 with the toolchain this machine has (rustup's
    /// target, else Debian's rustc-web route), pack the bundle (digest, policy, ABI checked)
    /// and, with --key, sign it. Exit 1 when the build fails, 2 for a bad crate.
    Build(crate::agent_build::BuildArgs),
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// A bundle directory, a .wasm or a .wat file.
    #[arg(value_name = "TARGET")]
    target: PathBuf,
    /// The message payload as JSON (the lossless JSON form of `rlp rmp`).
    #[arg(long, value_name = "JSON")]
    input: String,
    /// The input port.
    #[arg(long, default_value = "in")]
    port: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Most MiB of wasm linear memory.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_mb: u64,
    #[command(flatten)]
    kernel: crate::kernel_client::KernelArgs,
    /// Most milliseconds of wall time for the invoke.
    #[arg(long, value_name = "N", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout_ms: u64,
    /// Fuel for the invoke (deterministic bound); off by default.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
}

pub fn run(command: AgentCommand) -> Result<(), Failure> {
    match command {
        AgentCommand::Invoke(args) => {
            let json = args.json;
            invoke(args).map_err(|f| f.json(json))
        }
        AgentCommand::Ls(args) => crate::agent_ctl::ls(args),
        AgentCommand::Start(args) => crate::agent_ctl::start(args),
        AgentCommand::Send(args) => crate::agent_ctl::send(args),
        AgentCommand::Stop(args) => crate::agent_ctl::stop(args),
        AgentCommand::Release(args) => crate::agent_ctl::release(args),
        AgentCommand::Keygen(args) => {
            let json = args.json_flag();
            crate::agent_trust::keygen(args).map_err(|f| f.json(json))
        }
        AgentCommand::Sign(args) => crate::agent_trust::sign(args),
        AgentCommand::Verify(args) => crate::agent_trust::verify(args),
        AgentCommand::Install(args) => crate::agent_install::install(args),
        AgentCommand::Rollback(args) => crate::agent_install::rollback(args),
        AgentCommand::Scaffold(args) => crate::agent_build::scaffold(args),
        AgentCommand::Build(args) => crate::agent_build::build(args),
    }
}

/// The module a target names: a verified bundle's wasm, or a .wasm/.wat file's bytes.
/// Returns the agent name and the bytes.
fn load_module(
    target: &Path,
    kernel: &crate::kernel_client::KernelArgs,
) -> Result<(String, Vec<u8>), Failure> {
    if target.is_dir() {
        // A missing or unreadable bundle file is a bad target, like a bad digest; the
        // signature is checked against config's trust roots like every other load.
        let trust = crate::kernel_client::load_config(kernel)?.trust;
        let bundle = runloop_bundle::Bundle::load(target, &trust)
            .map_err(|e| crate::agent_trust::bundle_failure(&e))?;
        let name = bundle.manifest().name().as_str().to_owned();
        return Ok((name, bundle.wasm().to_vec()));
    }
    if !target.is_file() {
        return Err(Failure::invalid(
            "NoSuchTarget",
            format!(
                "{} is neither a bundle directory nor a file",
                target.display()
            ),
        ));
    }
    // Read at most one byte past the limit: the file's stated size is not trusted (a FIFO
    // or /dev/zero has none).
    let limit = runloop_compile::WASM_BYTES_MAX as u64;
    let mut bytes = Vec::new();
    std::fs::File::open(target)
        .and_then(|f| std::io::Read::take(f, limit + 1).read_to_end(&mut bytes))
        .map_err(|e| Failure::io(format!("read {}: {e}", target.display())))?;
    if bytes.len() as u64 > limit {
        return Err(Failure::invalid(
            "BadModule",
            format!(
                "{} is above {limit} bytes (WASM_BYTES_MAX)",
                target.display()
            ),
        ));
    }
    if target.extension().is_some_and(|e| e == "wasm") {
        runloop_compile::check_binary(&bytes)
            .map_err(|e| Failure::invalid("BadModule", format!("{}: {e}", target.display())))?;
    }
    let name = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent".into());
    Ok((name, bytes))
}

fn invoke(args: InvokeArgs) -> Result<(), Failure> {
    let json_in: Json = serde_json::from_str(&args.input)
        .map_err(|e| Failure::invalid("InvalidInput", format!("--input is not JSON: {e}")))?;
    let payload = json_to_msgpack(&json_in, "input")
        .map_err(|e| Failure::invalid("InvalidInput", e.to_string()))?;
    let (name, module) = load_module(&args.target, &args.kernel)?;
    let compiler = Compiler::new(Compiler::default_dir())
        .map_err(|e| Failure::io(format!("cwasm cache: {e}")))?;
    let compiled = compiler.compile_bytes(&module).map_err(|e| match e {
        runloop_compile::CompileError::Write { .. }
        | runloop_compile::CompileError::CacheDir { .. } => Failure::io(e.to_string()),
        other => Failure::invalid("BadModule", other.to_string()),
    })?;
    let program = locate_sandbox_host().map_err(|tried| {
        Failure::io(format!(
            "runloop-sandbox-host not found (set RUNLOOP_SANDBOX_HOST); tried {tried:?}"
        ))
    })?;
    let limits = SandboxLimits {
        memory_bytes_max: args.memory_mb * 1024 * 1024,
        invoke_wall_ms_max: args.timeout_ms,
        invoke_fuel_max: args.fuel,
        output_bytes_max: runloop_proto::payloads::OUTPUT_BYTES_MAX_DEFAULT,
        outputs_max: 256,
        host_calls_max: 1024,
        log_bytes_max: 64 * 1024,
        frame_body_bytes_max: 2 * 1024 * 1024,
    };
    let cgroup = match cgroup::detect() {
        CgroupSupport::Unavailable(reason) => {
            cgroup::notice_once(&reason);
            None
        }
        _ => {
            // Groups and sandboxes left by an `rlp` or runloopd that was killed go first.
            cgroup::sweep_orphans().notice();
            let limits = CgroupLimits {
                memory_bytes_max: Some(limits.memory_bytes_max + SANDBOX_OVERHEAD_BYTES),
                cpu_percent_max: Some(100),
                pids_max: Some(SANDBOX_PIDS_MAX),
            };
            let group_name = format!("{}{}", cgroup::INVOKE_GROUP_PREFIX, std::process::id());
            Some(
                AgentCgroup::create(cgroup::INVOKE_PARENT, &group_name, &limits)
                    .map_err(|e| Failure::io(e.to_string()))?,
            )
        }
    };
    let config = SpawnConfig {
        program,
        extra_args: Vec::new(),
        agent: name,
        module_path: compiled.path.clone(),
        limits,
    };
    let result = run_once(
        &config,
        cgroup.as_ref(),
        AgentInput {
            port: args.port,
            payload,
        },
    );
    let stats = cgroup.as_ref().and_then(|c| c.stats().ok());
    if let Some(group) = cgroup {
        // The sandbox is reaped by now; a failure here leaves an empty group behind.
        if let Err(err) = group.remove() {
            eprintln!("rlp: warning: {err}");
        }
    }
    let (report, facts) = result?;
    print_report(&report, &facts, stats, args.json, compiled.cached);
    match &report.outcome.error {
        None => Ok(()),
        Some(err) => Err(invoke_failure(err)),
    }
}

fn run_once(
    config: &SpawnConfig,
    cgroup: Option<&AgentCgroup>,
    input: AgentInput,
) -> Result<(InvokeReport, SandboxFacts), Failure> {
    let mut sandbox = Sandbox::spawn(config, cgroup).map_err(sandbox_failure)?;
    let mut handler = LocalHandler::new(SystemClock, OsRandom);
    let report = sandbox
        .invoke(input, &mut handler)
        .map_err(sandbox_failure)?;
    let mut facts = sandbox.facts();
    let reaped = sandbox.shutdown();
    facts.exit = Some(reaped.status);
    facts.peak_rss_kb = facts.peak_rss_kb.max(reaped.peak_rss_kb);
    facts.cpu_us = reaped.cpu_us;
    Ok((report, facts))
}

fn sandbox_failure(err: SandboxError) -> Failure {
    match err {
        SandboxError::BadModule { .. } => Failure::invalid("BadModule", err.to_string()),
        other => Failure::io(other.to_string()),
    }
}

fn invoke_failure(err: &InvokeError) -> Failure {
    let detail = err.to_string();
    let detail = detail
        .strip_prefix(&format!("{}: ", err.name()))
        .unwrap_or(&detail)
        .to_owned();
    Failure::invalid(err.name(), detail)
}

fn print_report(
    report: &InvokeReport,
    facts: &SandboxFacts,
    stats: Option<CgroupStats>,
    json: bool,
    cached: bool,
) {
    let exit = facts.exit.map(|e| e.to_string());
    let cpu_ms = facts.cpu_us as f64 / 1000.0;
    let cold_ms = facts.cold_start_us as f64 / 1000.0;
    if json {
        let outputs: Vec<Json> = report
            .outputs
            .iter()
            .map(|o| json!({"port": o.port, "payload": msgpack_to_json(&o.payload)}))
            .collect();
        let error = report
            .outcome
            .error
            .as_ref()
            .map(|e| json!({"error": e.name(), "detail": e.to_string()}));
        let value = json!({
            "outputs": outputs,
            "error": error,
            "stdout": report.outcome.stdout,
            "stderr": report.outcome.stderr,
            "facts": {
                "pid": facts.pid,
                "cold_start_ms": cold_ms,
                "peak_rss_kb": facts.peak_rss_kb,
                "cpu_ms": cpu_ms,
                "invoke_wall_us": report.outcome.wall_us,
                "host_calls": report.outcome.host_calls,
                "cgroup_path": facts.cgroup_path,
                "cgroup_memory_peak_bytes": stats.map(|s| s.memory_peak_bytes),
                "exit_status": exit,
                "cwasm_cached": cached,
            },
        });
        println!("{value}");
        return;
    }
    for output in &report.outputs {
        println!("{}: {}", output.port, msgpack_to_json(&output.payload));
    }
    if !report.outcome.stdout.is_empty() {
        println!("stdout: {}", report.outcome.stdout.trim_end());
    }
    if !report.outcome.stderr.is_empty() {
        println!("stderr: {}", report.outcome.stderr.trim_end());
    }
    println!("cold start: {cold_ms:.2} ms");
    println!("peak rss: {} KiB", facts.peak_rss_kb);
    println!("cpu: {cpu_ms:.1} ms");
    println!("cgroup: {}", facts.cgroup_path.as_deref().unwrap_or("none"));
    println!("exit: {}", exit.as_deref().unwrap_or("unknown"));
}
