//! `rlp trace`, `rlp replay`, `rlp runs export|import`: reading a run's recorded crossings,
//! replaying it from the recording, and moving a recording to another machine.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use runloop_client::trace::{LadderOptions, chrome, filter, ladder, list, mermaid};
use runloop_proto::payloads::{ControlCommand, ControlOutcome, ReplayReport, TraceView};
use serde_json::json;

use crate::failure::Failure;
use crate::kernel_client::{self, KernelArgs, Source};

/// Largest export file `rlp runs import` sends through runloopd's socket (a control frame
/// carries at most 8 MiB).
const IMPORT_VIA_DAEMON_BYTES_MAX: u64 = 7 * 1024 * 1024;

/// Width used when neither `--width`, `$COLUMNS` nor the terminal says.
const DEFAULT_WIDTH: usize = 80;

/// `rlp trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The run's trace id (32 hex digits). Without it: the most recent runs with a trace.
    pub trace_id: Option<String>,
    /// Output: `ladder` (the sequence diagram, default), `json` (participants and
    /// crossings), `mermaid` (a `sequenceDiagram` for any Markdown site), `chrome` (Trace
    /// Event JSON for Perfetto or chrome://tracing, one track per participant).
    #[arg(long, value_enum, default_value_t = Format::Ladder)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Columns to draw in (default: the terminal's width, else $COLUMNS, else 80).
    #[arg(long)]
    pub width: Option<usize>,
    /// Times as offsets from the run's start (`+1.234s`) instead of wall-clock UTC.
    #[arg(long)]
    pub relative: bool,
    /// Only the crossings of this node.
    #[arg(long, value_name = "ID")]
    pub node: Option<String>,
    /// Only crossings of this kind (`model.complete`), or of a family (`model.`, `pog`).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Colour: `auto` (on a terminal, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Most runs to list (without a trace id).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// How `rlp trace` prints a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Ladder,
    Json,
    Mermaid,
    Chrome,
}

/// When `rlp trace` colours its ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// `rlp replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run's trace id (32 hex digits).
    pub trace_id: String,
    /// One JSON object: `{trace_id, identical, nodes:[{id, recorded_hash, replayed_hash,
    /// identical, diverged_at?}], effects_performed}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

fn refused(code: &str, message: String) -> Failure {
    let mut failure = match code {
        "BadInput" => Failure::invalid(code, message),
        _ => Failure::io(message),
    };
    failure.name = code.to_owned();
    failure
}

fn unexpected(other: &ControlOutcome) -> Failure {
    Failure::io(format!("unexpected answer: {other:?}"))
}

/// The terminal's width in columns, when stdout is one.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own and pass by pointer;
    // fd 1 is only read. A failure leaves it zeroed, which is checked below.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

fn width(args: &TraceArgs) -> usize {
    args.width
        .or_else(terminal_width)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(DEFAULT_WIDTH)
}

fn color(args: &TraceArgs) -> bool {
    match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
    }
}

/// `rlp trace [<id>]`.
pub fn trace(args: TraceArgs) -> Result<(), Failure> {
    let json_out = args.json || args.format == Format::Json;
    let Some(trace_id) = args.trace_id.clone() else {
        let command = ControlCommand::TraceList { limit: args.limit };
        let (_, outcome) =
            kernel_client::ask(&args.kernel, command).map_err(|f| f.json(json_out))?;
        return match outcome {
            ControlOutcome::Traces { traces } => {
                if json_out {
                    println!("{}", json!({ "traces": traces }));
                } else if traces.is_empty() {
                    println!("no runs recorded yet: run an opening with `rlp run <opening.yaml>`");
                } else {
                    print!("{}", list(&traces, width(&args)));
                    println!("see one with: rlp trace <trace-id>");
                }
                Ok(())
            }
            ControlOutcome::Failed { code, message } => Err(refused(&code, message).json(json_out)),
            other => Err(unexpected(&other).json(json_out)),
        };
    };
    let command = ControlCommand::TraceShow { trace_id };
    let (_, outcome) = kernel_client::ask(&args.kernel, command).map_err(|f| f.json(json_out))?;
    let view = match outcome {
        ControlOutcome::Trace { view } => view,
        ControlOutcome::Failed { code, message } => {
            return Err(refused(&code, message).json(json_out));
        }
        other => return Err(unexpected(&other).json(json_out)),
    };
    let view: TraceView = if args.node.is_some() || args.kind.is_some() {
        let shown = filter(&view, args.node.as_deref(), args.kind.as_deref());
        if shown.crossings.is_empty() {
            let what = match (&args.node, &args.kind) {
                (Some(n), Some(k)) => format!("node {n} and kind {k}"),
                (Some(n), None) => format!("node {n}"),
                (None, Some(k)) => format!("kind {k}"),
                (None, None) => unreachable!("a filter is set"),
            };
            return Err(Failure::invalid(
                "NoMatch",
                format!(
                    "no crossing of run {} matches {what} ({} crossings in all)",
                    view.trace_id,
                    view.crossings.len()
                ),
            )
            .json(json_out));
        }
        shown
    } else {
        view
    };
    let text = if json_out {
        serde_json::to_string(&view).map_err(|e| Failure::io(e.to_string()))?
    } else {
        match args.format {
            Format::Mermaid => mermaid(&view),
            Format::Chrome => chrome(&view),
            Format::Json => unreachable!("handled above"),
            Format::Ladder => ladder(
                &view,
                &LadderOptions {
                    width: width(&args),
                    relative: args.relative,
                    color: color(&args),
                },
            ),
        }
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end_matches('\n')) {
        // A reader that stopped early (`| head`) is not a failure of the command.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::io(e.to_string())),
        _ => Ok(()),
    }
}

/// `rlp replay <id>`: exit 0 only when every node is identical.
pub fn replay(args: ReplayArgs) -> Result<bool, Failure> {
    let command = ControlCommand::RunReplay {
        trace_id: args.trace_id.clone(),
    };
    if !args.json {
        eprintln!(
            "replaying run {} in fresh sandboxes (answers from the recording)…",
            args.trace_id
        );
    }
    let (source, outcome) =
        kernel_client::ask(&args.kernel, command).map_err(|f| f.json(args.json))?;
    let report = match outcome {
        ControlOutcome::Replayed { report } => report,
        ControlOutcome::Failed { code, message } => {
            return Err(refused(&code, message).json(args.json));
        }
        other => return Err(unexpected(&other).json(args.json)),
    };
    if args.json {
        println!("{}", replay_json(&report));
    } else {
        print!("{}", replay_table(&report, &source));
    }
    Ok(report.identical)
}

/// The `--json` shape of a replay.
pub fn replay_json(r: &ReplayReport) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = r
        .nodes
        .iter()
        .map(|n| {
            let mut v = json!({
                "id": n.id, "agent": n.agent, "recorded_hash": n.recorded_hash,
                "replayed_hash": n.replayed_hash, "identical": n.identical,
                "invokes": n.invokes, "host_calls": n.host_calls,
            });
            if let Some(d) = &n.diverged_at {
                v["diverged_at"] = json!({
                    "invoke": d.invoke, "host_call": d.call,
                    "recorded": d.recorded, "got": d.got,
                });
            }
            if let Some((recorded, now)) = &n.bundle_changed {
                v["bundle_changed"] = json!({"recorded": recorded, "now": now});
            }
            if let Some(diff) = &n.diff {
                v["diff"] = json!(diff);
            }
            if let Some(reason) = &n.reason {
                v["reason"] = json!(reason);
            }
            v
        })
        .collect();
    json!({
        "trace_id": r.trace_id, "opening": r.opening, "identical": r.identical,
        "nodes": nodes, "effects_performed": r.effects_performed,
        "recorded_ms": r.recorded_ms, "replay_ms": r.replay_ms,
    })
}

fn short(hash: &str) -> &str {
    if hash.is_empty() {
        "-"
    } else {
        &hash[..hash.len().min(12)]
    }
}

/// The per-node table people read.
pub fn replay_table(r: &ReplayReport, source: &Source) -> String {
    let id_w = r.nodes.iter().map(|n| n.id.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "replay of run {} ({}) {}\n\n{:<id_w$}  {:<9}  {:<12}  {:<12}  {:>7}  {:>10}\n",
        r.trace_id,
        r.opening,
        source.describe(),
        "node",
        "verdict",
        "recorded",
        "replayed",
        "invokes",
        "host calls"
    );
    for n in &r.nodes {
        let verdict = if n.identical { "identical" } else { "differs" };
        out.push_str(&format!(
            "{:<id_w$}  {:<9}  {:<12}  {:<12}  {:>7}  {:>10}\n",
            n.id,
            verdict,
            short(&n.recorded_hash),
            short(&n.replayed_hash),
            n.invokes,
            n.host_calls
        ));
    }
    for n in &r.nodes {
        if let Some((recorded, now)) = &n.bundle_changed {
            out.push_str(&format!(
                "\nnode {}: its bundle changed since the run: wasm digest recorded {}, now {}",
                n.id,
                short(recorded),
                short(now)
            ));
        }
        if !n.identical || n.diverged_at.is_some() {
            if let Some(reason) = &n.reason {
                out.push_str(&format!("\nnode {}: {reason}", n.id));
            }
            if let Some(diff) = &n.diff {
                out.push_str(&format!(
                    "\nfirst differing output of node {}:\n{diff}",
                    n.id
                ));
            }
            out.push('\n');
        }
    }
    let verdict = if r.identical {
        "\nidentical: every node replayed byte for byte".to_string()
    } else {
        let n = r.nodes.iter().filter(|n| !n.identical).count();
        format!("\nNOT identical: {n} node(s) differ")
    };
    out.push_str(&format!(
        "{verdict}; effects performed by the replay: {}; recorded run {} ms, replay {} ms\n",
        r.effects_performed, r.recorded_ms, r.replay_ms
    ));
    out
}

/// `rlp runs export <id> [--out FILE]`: the run's events as NDJSON (the `rlp kb import`
/// form), for `rlp runs import` on another machine.
pub fn export(
    kernel: &KernelArgs,
    trace_id: &str,
    out: Option<PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let trace = runloop_pog::parse_trace_id(trace_id).map_err(|e| {
        Failure::invalid("BadInput", format!("trace id {trace_id:?}: {e}")).json(json)
    })?;
    let cfg = pog_config(kernel).map_err(|f| f.json(json))?;
    let reads = runloop_pog::Reads::open_read_only(&cfg, 1).map_err(|e| {
        Failure::io(format!("open the POG at {}: {e}", cfg.root_dir.display())).json(json)
    })?;
    let events = reads
        .run_events(&trace)
        .map_err(|e| Failure::io(format!("read run {trace_id}: {e}")).json(json))?;
    if !events
        .iter()
        .any(|e| e.kind == runloop_pog::EventKind::RunStarted)
    {
        let mut f = Failure::io(format!(
            "run {trace_id}: not found in the POG at {}",
            cfg.root_dir.display()
        ));
        f.name = "NoSuchRun".into();
        return Err(f.json(json));
    }
    let mut text = String::new();
    for e in &events {
        text.push_str(&e.to_json().to_string());
        text.push('\n');
    }
    match &out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| Failure::io(format!("--out {}: {e}", path.display())).json(json))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Failure::io(e.to_string()).json(json))?,
    }
    if let Some(path) = &out {
        if json {
            println!(
                "{}",
                json!({"trace_id": trace_id, "events": events.len(), "out": path})
            );
        } else {
            eprintln!(
                "exported {} events of run {trace_id} to {}",
                events.len(),
                path.display()
            );
        }
    }
    Ok(())
}

/// `rlp runs import FILE`: appends an exported run's events to this machine's POG
/// (importing the same file twice appends nothing).
pub fn import(kernel: &KernelArgs, file: &std::path::Path, json: bool) -> Result<(), Failure> {
    let config = kernel_client::load_config(kernel).map_err(|f| f.json(json))?;
    let rt = kernel_client::runtime().map_err(|f| f.json(json))?;
    // The runs the file holds, checked before anything is written.
    let runs = runs_in(file).map_err(|f| f.json(json))?;
    if let Source::Daemon(_) = rt
        .block_on(kernel_client::find_daemon(&config))
        .map_err(|f| f.json(json))?
    {
        return import_via_daemon(kernel, file, json);
    }
    let cfg = runloop_kernel::services::pog_service(&config).config;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::io(format!("{}: {e}", file.display())).json(json))?;
    // A run already in this POG is not imported again.
    let known: Vec<String> = match runloop_pog::Reads::open_read_only(&cfg, 1) {
        Ok(reads) => runs
            .iter()
            .filter(|t| {
                runloop_pog::parse_trace_id(t)
                    .ok()
                    .and_then(|id| reads.run_events(&id).ok())
                    .is_some_and(|ev| {
                        ev.iter()
                            .any(|e| e.kind == runloop_pog::EventKind::RunStarted)
                    })
            })
            .cloned()
            .collect(),
        // No POG here yet: nothing is known.
        Err(_) => Vec::new(),
    };
    let (text, skipped) = runloop_kernel::trace::control::without_runs(&text, &known);
    let (rows, appended, duplicates) = if text.trim().is_empty() {
        (0, 0, 0)
    } else {
        crate::kb::import_ndjson(&cfg, &text, file).map_err(|e| {
            let mut f = if e.code == 2 {
                Failure::invalid(e.kind, e.message)
            } else {
                Failure::io(e.message)
            };
            f.name = e.kind.to_owned();
            f.json(json)
        })?
    };
    print_imported(
        json,
        rows as u64 + skipped,
        appended as u64,
        duplicates as u64 + skipped,
        &runs,
    );
    Ok(())
}

/// runloopd owns the POG's writer: the file goes through its socket, in one request.
fn import_via_daemon(
    kernel: &KernelArgs,
    file: &std::path::Path,
    json: bool,
) -> Result<(), Failure> {
    let size = std::fs::metadata(file)
        .map_err(|e| Failure::io(format!("{}: {e}", file.display())).json(json))?
        .len();
    if size > IMPORT_VIA_DAEMON_BYTES_MAX {
        return Err(Failure::invalid(
            "TooLarge",
            format!(
                "{}: {size} bytes is over the {IMPORT_VIA_DAEMON_BYTES_MAX} one control request may carry; stop runloopd and import again (straight into the POG)",
                file.display()
            ),
        )
        .json(json));
    }
    let ndjson = std::fs::read_to_string(file)
        .map_err(|e| Failure::io(format!("{}: {e}", file.display())).json(json))?;
    let (_, outcome) = kernel_client::ask(kernel, ControlCommand::RunImport { ndjson })
        .map_err(|f| f.json(json))?;
    match outcome {
        ControlOutcome::Imported {
            rows,
            appended,
            duplicates,
            runs,
        } => {
            print_imported(json, rows, appended, duplicates, &runs);
            Ok(())
        }
        ControlOutcome::Failed { code, message } => {
            let mut f = match code.as_str() {
                "NotARun" | "BadInput" => Failure::invalid(&code, message),
                _ => Failure::io(message),
            };
            f.name = code;
            Err(f.json(json))
        }
        other => Err(unexpected(&other).json(json)),
    }
}

fn print_imported(json: bool, rows: u64, appended: u64, duplicates: u64, runs: &[String]) {
    if json {
        println!(
            "{}",
            json!({"rows": rows, "appended": appended, "duplicates": duplicates, "runs": runs})
        );
    } else {
        println!(
            "imported {rows} events ({appended} appended, {duplicates} already here) of run {}",
            runs.join(", ")
        );
        println!(
            "see it with: rlp trace {}   replay it with: rlp replay {}",
            runs[0], runs[0]
        );
    }
}

/// The trace ids of the runs an export file starts (`run.started` lines); refused when
/// it holds none.
fn runs_in(file: &std::path::Path) -> Result<Vec<String>, Failure> {
    use std::io::BufRead;
    let f =
        std::fs::File::open(file).map_err(|e| Failure::io(format!("{}: {e}", file.display())))?;
    let mut runs = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| Failure::io(format!("{}: {e}", file.display())))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v.get("kind").and_then(serde_json::Value::as_str) == Some("run.started")
            && let Some(t) = v
                .pointer("/payload/trace_id")
                .and_then(serde_json::Value::as_str)
        {
            runs.push(t.to_owned());
        }
    }
    if runs.is_empty() {
        return Err(Failure::invalid(
            "NotARun",
            format!(
                "{}: holds no run.started event: not a `rlp runs export` file (nothing imported)",
                file.display()
            ),
        ));
    }
    Ok(runs)
}

fn pog_config(kernel: &KernelArgs) -> Result<runloop_pog::PogConfig, Failure> {
    let config = kernel_client::load_config(kernel)?;
    Ok(runloop_kernel::services::pog_service(&config).config)
}
