//! `rlp validate|run|runs|cancel|resume`: openings from the command line.
//!
//! `run` validates and binds params here first (exit 2, nothing runs), then submits
//! through `runloopd` when one answers, else runs the opening on an embedded kernel (with
//! the POG, so the run is durable), and says which. Exit: 0 succeeded, 1 any other end,
//! 2 invalid opening or params.

use std::path::{Path, PathBuf};

use clap::Args;
use runloop_kernel::runs::catalog::{BundleCatalog, search_path};
use runloop_openings::model::SOURCE_BYTES_MAX;
use runloop_proto::payloads::{ControlCommand, ControlOutcome, RunProgress, RunReport, RunStatus};
use serde_json::{Value, json};

use crate::confirm::{self, Peer, RunConfirm};
use crate::failure::{EXIT_FAILURE, Failure};
use crate::kernel_client::{self, KernelArgs, Source};

mod report;

use report::{Progress, print_report, truncate};

/// `rlp validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The opening's YAML file.
    pub file: PathBuf,
    /// Print `{valid, errors:[{line, col, rule, message}]}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The opening's YAML file.
    pub file: PathBuf,
    /// Params as one JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// One param: `name=value` (value read as JSON when it parses, else as a string);
    /// may repeat, and overrides `--params`.
    #[arg(long = "param", value_name = "K=V")]
    pub param: Vec<String>,
    /// Print one final JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the run's events as NDJSON to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Daemon only: print the trace id and return while the run goes on.
    #[arg(long)]
    pub detach: bool,
    /// Approve every action of this run that needs a person's yes (for scripts; recorded
    /// as "approved by flag --approve"). An agent's question (which contact did you mean?)
    /// is never answered by a flag: it is denied.
    #[arg(long, conflicts_with = "deny")]
    pub approve: bool,
    /// Deny every action of this run that needs a person's yes.
    #[arg(long)]
    pub deny: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp runs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: Option<RunsAction>,
    /// Show this one run (32 hex digits) in full, as `rlp run` prints it at its end; a run
    /// still going on runloopd is followed to its end first. Exit 0 when it succeeded, 1
    /// otherwise.
    pub trace_id: Option<String>,
    /// Most runs to list.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
    /// With a trace id: write the run's events as NDJSON to FILE (`-`: stdout) while
    /// following it.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp runs export|import`.
#[derive(Debug, clap::Subcommand)]
pub enum RunsAction {
    /// Write one run's recorded events (its start, nodes, every crossing and the exact
    /// host-call answers) as NDJSON, to replay or trace it on another machine with the
    /// same bundles. Reads the POG files directly (works with or without runloopd).
    Export {
        /// The run's trace id (32 hex digits).
        trace_id: String,
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Append an exported run to this machine's POG (importing a file twice appends
    /// nothing); then `rlp trace <id>` and `rlp replay <id>` work here. Through runloopd
    /// when it runs (files up to 7 MiB), else straight into the POG.
    Import {
        /// The NDJSON file `rlp runs export` wrote.
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

/// `rlp cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run's trace id (32 hex digits).
    pub trace_id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `rlp resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The unfinished run's trace id.
    pub trace_id: String,
    #[arg(long)]
    pub json: bool,
    /// Write the run's events as NDJSON to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

fn read_opening(file: &Path) -> Result<(String, PathBuf), Failure> {
    let meta = std::fs::metadata(file)
        .map_err(|e| Failure::invalid("Unreadable", format!("{}: {e}", file.display())))?;
    if meta.len() > SOURCE_BYTES_MAX as u64 {
        return Err(Failure::invalid(
            "TooLarge",
            format!("{}: over {SOURCE_BYTES_MAX} bytes", file.display()),
        ));
    }
    let source = std::fs::read_to_string(file)
        .map_err(|e| Failure::invalid("Unreadable", format!("{}: {e}", file.display())))?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    Ok((source, dir))
}

/// The bundles an opening in `dir` can use: its search path with config's
/// `agents.search_dirs`.
fn catalog(dir: &Path, config: &runloop_kernel::config::Config) -> BundleCatalog {
    BundleCatalog::new(
        search_path(dir, &config.agent_search_dirs()),
        config.trust.clone(),
    )
}

fn check(
    file: &Path,
    source: &str,
    catalog: &BundleCatalog,
) -> Result<runloop_openings::Opening, Failure> {
    runloop_openings::validate(source, catalog).map_err(|errors| {
        let lines: Vec<String> = errors
            .0
            .iter()
            .map(|e| format!("{}:{}:{}: {}", file.display(), e.line, e.col, e.message))
            .collect();
        Failure::invalid("InvalidOpening", format!("\n{}", lines.join("\n")))
    })
}

/// Reads and validates an opening file as `rlp run` does (the router checks the default
/// opening's params before running it).
pub(crate) fn load_opening(
    file: &Path,
    config: &runloop_kernel::config::Config,
) -> Result<runloop_openings::Opening, Failure> {
    let (source, dir) = read_opening(file)?;
    check(file, &source, &catalog(&dir, config))
}

/// `rlp validate`.
pub fn validate(args: ValidateArgs) -> Result<(), Failure> {
    let (source, dir) = read_opening(&args.file).map_err(|f| f.json(args.json))?;
    let config = kernel_client::load_config(&args.kernel).map_err(|f| f.json(args.json))?;
    let catalog = catalog(&dir, &config);
    let result = runloop_openings::validate(&source, &catalog);
    let errors = match &result {
        Ok(_) => Vec::new(),
        Err(e) => e.0.clone(),
    };
    if args.json {
        let list: Vec<Value> = errors
            .iter()
            .map(|e| json!({"line": e.line, "col": e.col, "rule": format!("{:?}", e.rule), "message": e.message}))
            .collect();
        println!("{}", json!({"valid": errors.is_empty(), "errors": list}));
    } else if errors.is_empty() {
        println!("{}: valid", args.file.display());
    } else {
        for e in &errors {
            eprintln!(
                "{}:{}:{}: {} [{:?}]",
                args.file.display(),
                e.line,
                e.col,
                e.message,
                e.rule
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        std::process::exit(2)
    }
}

fn params_of(args: &RunArgs) -> Result<Value, Failure> {
    let mut params = match &args.params {
        Some(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| Failure::invalid("InvalidParams", format!("--params is not JSON: {e}")))?,
        None => json!({}),
    };
    let Value::Object(map) = &mut params else {
        return Err(Failure::invalid(
            "InvalidParams",
            "--params must be a JSON object",
        ));
    };
    for kv in &args.param {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(Failure::invalid(
                "InvalidParams",
                format!("--param {kv:?}: expected name=value"),
            ));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        map.insert(k.to_owned(), value);
    }
    Ok(params)
}

fn exit_for(report: &RunReport) -> Result<(), Failure> {
    if report.status == RunStatus::Succeeded {
        Ok(())
    } else {
        std::process::exit(i32::from(EXIT_FAILURE))
    }
}

/// `rlp run`.
pub fn run(args: RunArgs) -> Result<(), Failure> {
    let (source, dir) = read_opening(&args.file).map_err(|f| f.json(args.json))?;
    let config = kernel_client::load_config(&args.kernel).map_err(|f| f.json(args.json))?;
    let opening =
        check(&args.file, &source, &catalog(&dir, &config)).map_err(|f| f.json(args.json))?;
    let params = params_of(&args).map_err(|f| f.json(args.json))?;
    runloop_openings::params::bind(&opening, &params)
        .map_err(|e| Failure::invalid("InvalidParams", e.to_string()).json(args.json))?;
    let mut progress = Progress::new(args.events.as_deref(), args.json)?;
    progress.confirm = RunConfirm::of(args.approve, args.deny);
    let rt = kernel_client::runtime()?;
    let (report, src) = rt
        .block_on(async {
            let place = kernel_client::find_daemon(&config).await?;
            let command = ControlCommand::RunSubmit {
                source: source.clone(),
                dir: dir.display().to_string(),
                params_json: params.to_string(),
                watch: !args.detach,
            };
            match &place {
                Source::Daemon(path) => {
                    let report =
                        through_daemon(path, command, args.detach, args.json, &mut progress)
                            .await?;
                    Ok::<_, Failure>((report, place))
                }
                Source::Embedded { .. } => {
                    if args.detach {
                        return Err(Failure::invalid(
                            "NoDaemon",
                            "--detach needs a running runloopd",
                        ));
                    }
                    if !args.json {
                        eprintln!("{} — running in this process", place.describe());
                    }
                    let start = Start::Submit {
                        source: &source,
                        dir: &dir,
                        params: &params,
                    };
                    let report = embedded(&config, start, &mut progress).await?;
                    Ok((Some(report), place))
                }
            }
        })
        .map_err(|f| f.json(args.json))?;
    match report {
        Some(report) => {
            print_report(&report, &src, args.json, &progress.decisions);
            exit_for(&report)
        }
        None => Ok(()),
    }
}

/// What an embedded run starts from.
enum Start<'a> {
    Submit {
        source: &'a str,
        dir: &'a Path,
        params: &'a Value,
    },
    Resume(&'a str),
}

/// Runs (or resumes) on an embedded kernel with the POG, following its progress to the
/// end, then shuts the kernel down.
async fn embedded(
    config: &runloop_kernel::config::Config,
    start: Start<'_>,
    progress: &mut Progress,
) -> Result<RunReport, Failure> {
    let kernel = kernel_client::embedded_kernel(config).await?;
    if let Some(effects) = kernel.effects() {
        effects.shared.set_auto(progress.confirm.auto());
    }
    let engine = kernel_client::embedded_engine(kernel.clone(), config);
    let mut events = engine.progress();
    let peer = Peer::Embedded(kernel.clone());
    let started = match start {
        Start::Submit {
            source,
            dir,
            params,
        } => engine.submit(source, dir, params).await,
        Start::Resume(trace_id) => engine.resume(trace_id).await,
    };
    let result = match started {
        Ok(s) => Ok(follow(s.report, &s.trace_id, &mut events, progress, &peer).await),
        Err(e) => Err(refused(&e)),
    };
    drop(engine);
    drop(peer);
    kernel_client::shutdown(kernel).await;
    result
}

async fn follow(
    mut report: tokio::sync::watch::Receiver<Option<RunReport>>,
    trace_id: &str,
    events: &mut tokio::sync::broadcast::Receiver<RunProgress>,
    progress: &mut Progress,
    peer: &Peer,
) -> RunReport {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.trace_id() == trace_id => {
                    progress.event(&e);
                    confirm::on_event(peer, progress.confirm, &e, progress.json).await;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = report.wait_for(Option::is_some) => break,
        }
    }
    while let Ok(e) = events.try_recv() {
        if e.trace_id() == trace_id {
            progress.event(&e);
        }
    }
    report.borrow().clone().expect("the run finished")
}

async fn through_daemon(
    path: &Path,
    command: ControlCommand,
    detach: bool,
    json_out: bool,
    progress: &mut Progress,
) -> Result<Option<RunReport>, Failure> {
    let id = kernel_client::new_request_id();
    let mut stream = runloop_client::watch(path, &id, command)
        .await
        .map_err(|e| Failure::io(e.to_string()))?;
    match &stream.first {
        ControlOutcome::RunSubmitted { trace_id, run_id } => {
            if detach {
                if json_out {
                    println!(
                        "{}",
                        json!({"trace_id": trace_id, "run_id": run_id, "status": "running", "source": "daemon"})
                    );
                } else {
                    println!("{trace_id}");
                }
                return Ok(None);
            }
        }
        ControlOutcome::Failed { code, message } => {
            return Err(refusal_failure(code, message.clone()));
        }
        other => return Err(Failure::io(format!("unexpected answer: {other:?}"))),
    }
    loop {
        match stream
            .next()
            .await
            .map_err(|e| Failure::io(e.to_string()))?
        {
            Some(ControlOutcome::RunProgress { event }) => {
                progress.event(&event);
                let peer = Peer::Daemon(path.to_owned());
                confirm::on_event(&peer, progress.confirm, &event, json_out).await;
            }
            Some(ControlOutcome::RunFinished { report }) => return Ok(Some(report)),
            Some(ControlOutcome::Failed { code, message }) => {
                return Err(refusal_failure(&code, message));
            }
            Some(_) => {}
            None => {
                return Err(Failure::io(
                    "the daemon closed the run's stream before its end",
                ));
            }
        }
    }
}

/// `rlp resume`.
pub fn resume(args: ResumeArgs) -> Result<(), Failure> {
    let config = kernel_client::load_config(&args.kernel)?;
    let mut progress = Progress::new(args.events.as_deref(), args.json)?;
    progress.confirm = RunConfirm::of(false, false);
    let rt = kernel_client::runtime()?;
    let (report, src) = rt
        .block_on(async {
            let place = kernel_client::find_daemon(&config).await?;
            match &place {
                Source::Daemon(path) => {
                    let command = ControlCommand::RunResume {
                        trace_id: args.trace_id.clone(),
                        watch: true,
                    };
                    let report =
                        through_daemon(path, command, false, args.json, &mut progress).await?;
                    Ok::<_, Failure>((report, place))
                }
                Source::Embedded { .. } => {
                    let start = Start::Resume(&args.trace_id);
                    let report = embedded(&config, start, &mut progress).await?;
                    Ok((Some(report), place))
                }
            }
        })
        .map_err(|f| f.json(args.json))?;
    let report = report.expect("resume waits for the end");
    print_report(&report, &src, args.json, &progress.decisions);
    exit_for(&report)
}

/// `rlp runs <trace-id>`: one run's report, following a live daemon run to its end.
fn show(args: &RunsArgs, trace_id: &str) -> Result<(), Failure> {
    let config = kernel_client::load_config(&args.kernel)?;
    let mut progress = Progress::new(args.events.as_deref(), args.json)?;
    let rt = kernel_client::runtime()?;
    let (report, src) = rt
        .block_on(async {
            let place = kernel_client::find_daemon(&config).await?;
            let report = match &place {
                Source::Daemon(path) => {
                    let command = ControlCommand::RunWatch {
                        trace_id: trace_id.to_owned(),
                        watch: true,
                    };
                    through_daemon(path, command, false, args.json, &mut progress)
                        .await?
                        .expect("a watch waits for the end")
                }
                Source::Embedded { .. } => {
                    let kernel = kernel_client::embedded_kernel(&config).await?;
                    let engine = kernel_client::embedded_engine(kernel.clone(), &config);
                    let report = match engine.watch(trace_id).await {
                        Ok(rx) => Ok(rx.borrow().clone().expect("a recorded run has a report")),
                        Err(e) => Err(refused(&e)),
                    };
                    drop(engine);
                    kernel_client::shutdown(kernel).await;
                    report?
                }
            };
            Ok::<_, Failure>((report, place))
        })
        .map_err(|f| f.json(args.json))?;
    print_report(&report, &src, args.json, &progress.decisions);
    exit_for(&report)
}

/// A refused run command, with the control plane's code (a missing run is exit 1).
fn refused(e: &runloop_kernel::runs::SubmitError) -> Failure {
    match runloop_kernel::runs::control::refusal(e) {
        ControlOutcome::Failed { code, message } => refusal_failure(&code, message),
        other => Failure::io(format!("unexpected answer: {other:?}")),
    }
}

/// `InvalidOpening`/`InvalidParams` exit 2 (nothing ran); every other refusal exits 1.
fn refusal_failure(code: &str, message: String) -> Failure {
    let f = Failure::invalid(code, message);
    if code == "InvalidOpening" || code == "InvalidParams" {
        f
    } else {
        Failure {
            status: EXIT_FAILURE,
            ..f
        }
    }
}

/// `rlp runs`.
pub fn runs(args: RunsArgs) -> Result<(), Failure> {
    match &args.action {
        Some(RunsAction::Export {
            trace_id,
            out,
            json,
            kernel,
        }) => return crate::trace::export(kernel, trace_id, out.clone(), *json),
        Some(RunsAction::Import { file, json, kernel }) => {
            return crate::trace::import(kernel, file, *json);
        }
        None => {}
    }
    if let Some(trace_id) = &args.trace_id {
        return show(&args, trace_id);
    }
    let (source, outcome) =
        kernel_client::ask(&args.kernel, ControlCommand::RunList { limit: args.limit })
            .map_err(|f| f.json(args.json))?;
    let runs = match outcome {
        ControlOutcome::Runs { runs } => runs,
        ControlOutcome::Failed { code, message } => {
            return Err(Failure::io(format!("{code}: {message}")).json(args.json));
        }
        other => return Err(Failure::io(format!("unexpected answer: {other:?}")).json(args.json)),
    };
    if args.json {
        let mut out = json!({"runs": runs});
        for (k, v) in source.json_fields() {
            out[k] = v;
        }
        println!("{out}");
        return Ok(());
    }
    println!("{}", source.describe());
    if runs.is_empty() {
        println!("no runs yet");
    }
    for r in runs {
        let mut line = format!(
            "{}  {:<24} {:<12}",
            r.trace_id,
            r.opening,
            r.status.as_str()
        );
        if let Some(d) = r.duration_ms {
            line.push_str(&format!(" {d} ms"));
        }
        if let Some(reason) = r.reason {
            line.push_str(&format!("  ({})", truncate(&reason, 80)));
        }
        if r.status == RunStatus::Interrupted {
            line.push_str(&format!("  → rlp resume {}", r.trace_id));
        }
        println!("{line}");
    }
    Ok(())
}

/// `rlp cancel`.
pub fn cancel(args: CancelArgs) -> Result<(), Failure> {
    let (source, outcome) = kernel_client::ask(
        &args.kernel,
        ControlCommand::RunCancel {
            trace_id: args.trace_id.clone(),
        },
    )
    .map_err(|f| f.json(args.json))?;
    match outcome {
        ControlOutcome::RunCancelled { trace_id } => {
            if args.json {
                let mut out = json!({"cancelled": trace_id});
                for (k, v) in source.json_fields() {
                    out[k] = v;
                }
                println!("{out}");
            } else {
                println!("cancelled {trace_id}");
            }
            Ok(())
        }
        ControlOutcome::Failed { code, message } => {
            Err(refusal_failure(&code, message).json(args.json))
        }
        other => Err(Failure::io(format!("unexpected answer: {other:?}")).json(args.json)),
    }
}
