//! `rlp drill ls | run <name> | all`: fault-injection drills (`runloop_kernel::drill`).
//!
//! Each drill boots a kernel of its own in a fresh state directory, so a running daemon and
//! the user's runs are never touched; the command says so when a daemon is running.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use runloop_kernel::drill::{self, Drill, DrillEnv, DrillReport};

use crate::failure::{EXIT_FAILURE, Failure};
use crate::kernel_client::{self, KernelArgs};

/// Most repetitions of one drill.
const REPEAT_MAX: u32 = 100;

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// List the drills and what each one breaks.
    Ls(LsArgs),
    /// Run one drill (`--repeat N` for medians of its detect and restore times). Exit 0
    /// only when every run of it passed, 1 when one failed, 2 for an unknown drill.
    Run(RunArgs),
    /// Run every drill once, in order. Exit 0 only when all passed.
    All(AllArgs),
    /// compose_email runs back to back (two at a time) in one kernel while faults fire at
    /// random (seeded) moments; at the end: every run accounted for, no email twice, RSS
    /// flat (its trend), no cgroup, process or file descriptor left. Exit 0 when all hold.
    Soak(SoakArgs),
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long, in minutes (1 to a week).
    #[arg(long, value_name = "N")]
    minutes: u64,
    /// The fault schedule's seed (printed in the report; default: from the clock).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// One JSON object: `{passed, minutes, seed, runs_total, runs_ok, runs_lost,
    /// duplicated_effects, faults, rss_start_kb, rss_end_kb, rss_max_kb,
    /// rss_trend_kb_per_min, heap_trend_kb_per_min?, leaked_cgroups, leaked_processes,
    /// leaked_fds, held_warm, held_end, report, failures?}` (`held_*`: `{bus_topics,
    /// tasks, run_entries}`; `heap_trend_kb_per_min`: the heap in use, glibc only).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// One JSON object per drill: `{name, description}`.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The drill (see `rlp drill ls`).
    name: String,
    /// Run it this many times (1–100) and print the medians.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u32,
    /// One JSON object per run: `{name, passed, injected, detect_ms, restore_ms, lost,
    /// duplicated_effects, runs_ok, runs_total, report, failures?}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

#[derive(Debug, Args)]
pub struct AllArgs {
    /// One JSON object per drill (as `rlp drill run --json`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    kernel: KernelArgs,
}

/// Runs the command; `Ok(false)` when a drill failed.
pub fn run(command: DrillCommand) -> Result<bool, Failure> {
    match command {
        DrillCommand::Ls(args) => {
            ls(args.json);
            Ok(true)
        }
        DrillCommand::Run(args) => {
            let Some(drill) = Drill::from_name(&args.name) else {
                let names: Vec<_> = Drill::ALL.iter().map(|d| d.name()).collect();
                return Err(Failure::invalid(
                    "UnknownDrill",
                    format!(
                        "no drill {:?}; the drills are: {}",
                        args.name,
                        names.join(", ")
                    ),
                )
                .json(args.json));
            };
            if !(1..=REPEAT_MAX).contains(&args.repeat) {
                return Err(Failure::invalid(
                    "InvalidRepeat",
                    format!("--repeat {} is not within 1..={REPEAT_MAX}", args.repeat),
                )
                .json(args.json));
            }
            let plan = vec![drill; args.repeat as usize];
            drive(&plan, &args.kernel, args.json)
        }
        DrillCommand::All(args) => drive(&Drill::ALL, &args.kernel, args.json),
        DrillCommand::Soak(args) => soak(args),
    }
}

fn soak(args: SoakArgs) -> Result<bool, Failure> {
    use runloop_kernel::drill::soak::SOAK_MINUTES_MAX;
    if !(1..=SOAK_MINUTES_MAX).contains(&args.minutes) {
        return Err(Failure::invalid(
            "InvalidMinutes",
            format!(
                "--minutes {} is not within 1..={SOAK_MINUTES_MAX}",
                args.minutes
            ),
        )
        .json(args.json));
    }
    let env = drill_env(&args.kernel).map_err(|f| f.json(args.json))?;
    let runtime = kernel_client::runtime().map_err(|f| f.json(args.json))?;
    // The seed is the one input that is not given: take it from the clock and print it.
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "rlp drill soak: {} min, seed {seed} (a kernel of its own; progress every 30 s)",
        args.minutes
    );
    let report = runtime.block_on(runloop_kernel::drill::soak::soak(
        &env,
        args.minutes,
        seed,
        &|line: &str| eprintln!("rlp drill soak: {line}"),
    ));
    if args.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => return Err(Failure::io(format!("print the report: {e}")).json(true)),
        }
    } else {
        let mark = if report.passed { "PASS" } else { "FAIL" };
        println!("{mark} soak\n  {}", report.report);
    }
    Ok(report.passed)
}

fn ls(json: bool) {
    for d in Drill::ALL {
        if json {
            let line = serde_json::json!({"name": d.name(), "description": d.description()});
            println!("{line}");
        } else {
            println!("{:<13} {}", d.name(), d.description());
        }
    }
}

/// Where the drills find their bundles and the sandbox-host, from the config.
fn drill_env(kernel: &KernelArgs) -> Result<DrillEnv, Failure> {
    let config = kernel_client::load_config(kernel)?;
    let mut search_dirs = config.agent_search_dirs();
    if let Some(home) = std::env::var_os("HOME") {
        search_dirs.push(PathBuf::from(home).join(".runloop/agents"));
    }
    search_dirs.push(PathBuf::from("/var/lib/runloop/agents"));
    search_dirs.extend(runloop_kernel::runs::catalog::shipped_dirs());
    let sandbox_host = runloop_sandbox::locate_sandbox_host().map_err(|tried| {
        let tried: Vec<_> = tried.iter().map(|p| p.display().to_string()).collect();
        Failure::io(format!(
            "no runloop-sandbox-host (tried {}); build it: cargo build -p \
             runloop-sandbox-host",
            tried.join(", ")
        ))
    })?;
    // runloopd is installed next to rlp (and built next to it).
    let runloopd = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("runloopd")))
        .filter(|p| p.is_file());
    Ok(DrillEnv {
        search_dirs,
        sandbox_host: Some(sandbox_host),
        cwasm_dir: None,
        runloopd,
    })
}

fn drive(plan: &[Drill], kernel: &KernelArgs, json: bool) -> Result<bool, Failure> {
    let env = drill_env(kernel).map_err(|f| f.json(json))?;
    let runtime = kernel_client::runtime().map_err(|f| f.json(json))?;
    let config = kernel_client::load_config(kernel).map_err(|f| f.json(json))?;
    runtime.block_on(async {
        if let Ok(kernel_client::Source::Daemon(path)) = kernel_client::find_daemon(&config).await {
            eprintln!(
                "rlp drill: a daemon runs at {}; the drills boot kernels of their own and \
                 leave it alone",
                path.display()
            );
        }
        let mut reports = Vec::with_capacity(plan.len());
        for (i, d) in plan.iter().enumerate() {
            eprintln!("rlp drill: [{}/{}] {} …", i + 1, plan.len(), d.name());
            let report = drill::run(*d, &env).await;
            print_report(&report, json);
            reports.push(report);
        }
        if plan.len() > 1 && !json {
            summary(&reports);
        }
        Ok(reports.iter().all(|r| r.passed))
    })
}

fn print_report(report: &DrillReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("rlp drill: cannot print the report as JSON: {e}"),
        }
    } else {
        let mark = if report.passed { "PASS" } else { "FAIL" };
        println!("{mark} {}\n  {}\n", report.name, report.report);
    }
}

/// Per drill name: runs, passed, median detect and restore.
fn summary(reports: &[DrillReport]) {
    let mut names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    names.dedup();
    println!(
        "{:<13} {:>5} {:>7} {:>12} {:>13}",
        "drill", "runs", "passed", "detect p50", "restore p50"
    );
    for name in names {
        let of: Vec<_> = reports.iter().filter(|r| r.name == name).collect();
        let median = |f: fn(&DrillReport) -> Option<f64>| {
            let mut v: Vec<f64> = of.iter().filter_map(|r| f(r)).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2)
                .map(|m| format!("{m:.1} ms"))
                .unwrap_or_else(|| "—".into())
        };
        println!(
            "{:<13} {:>5} {:>7} {:>12} {:>13}",
            name,
            of.len(),
            of.iter().filter(|r| r.passed).count(),
            median(|r| r.detect_ms),
            median(|r| r.restore_ms)
        );
    }
}

/// The exit status of a finished drill command that did not pass.
pub const EXIT_DRILL_FAILED: u8 = EXIT_FAILURE;
