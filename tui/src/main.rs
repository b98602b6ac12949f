//! `agtop`: the live monitor of `runloopd` — finds the daemon's socket, then runs the
//! live loop on the terminal (raw mode, alternate screen; both restored on exit and on
//! panic). Without a daemon it says where it looked and how to start one, and exits 1.
//! With `--events FILE|-` it shows an `rlp run --events` file instead, no daemon needed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use runloop_tui::app::App;
use runloop_tui::connect::{Env, find, places};
use runloop_tui::live::{EventsFrom, LiveConfig, run, run_events};

/// The live monitor of runloopd: actors, agents, runs and pending confirmations.
///
/// The actor table (tree or flat, sortable, filterable, with CPU and RSS sparklines on wide
/// terminals) sits over a pane: 1 detail (the selected actor, its cgroup, its log), 2 plan
/// (the shown run's DAG, live), 3 log, 4 trace (the run's ladder), 5 artifacts (its
/// outputs). `a` approves or denies a pending confirmation; `x` stops an agent, `r`
/// releases one from quarantine, `c` cancels a run — each asked first. `?` lists every
/// key. NO_COLOR turns colour off.
///
/// Exit status: 0 after `q`; 1 when no daemon answers, the terminal cannot be set up, or
/// drawing fails.
#[derive(Debug, Parser)]
#[command(name = "agtop", version)]
struct Args {
    /// Show an `rlp run --events` NDJSON file instead of a daemon (`-`: standard input,
    /// e.g. `rlp run x.yaml --events - | agtop --events -`). Bad lines are counted and
    /// named in the status line.
    #[arg(long, value_name = "FILE|-")]
    events: Option<PathBuf>,
    /// The daemon's control socket (default: $RUNLOOP__RUNTIME__SOCKET_PATH, else the
    /// user's ~/.runloop/sock/rmp.sock, else /run/runloop/rmp.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Start with the tree folded below the root (`enter` unfolds a node; `t` flat list).
    #[arg(long)]
    collapsed: bool,
    /// Milliseconds between two status snapshots (the daemon clamps it to 100..=60000).
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Print agtop's man page (roff) and exit; for packagers.
    #[arg(long, hide = true)]
    man: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man {
        return print_man();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agtop: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if let Some(file) = args.events {
        let (from, label) = if file.as_os_str() == "-" {
            (EventsFrom::Stdin, "standard input".to_owned())
        } else {
            if let Err(e) = std::fs::metadata(&file) {
                eprintln!("agtop: --events {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
            (EventsFrom::File(file.clone()), file.display().to_string())
        };
        let mut terminal = match ratatui::try_init() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("agtop: set up the terminal: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(run_events(&mut terminal, from, App::events(label, color)));
        ratatui::restore();
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("agtop: draw: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let places = places(args.socket.as_deref(), &Env::from_process());
    let socket = match runtime.block_on(find(&places)) {
        Ok(socket) => socket,
        Err(tried) => {
            eprintln!("agtop: no runloopd answers; tried:");
            for (path, error) in tried {
                eprintln!("  {}: {error}", path.display());
            }
            eprintln!(
                "start one with `runloopd` (it binds ~/.runloop/sock/rmp.sock for a user), \
                 or point agtop at its socket with --socket PATH"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut app = App::new(socket.display().to_string(), color);
    app.start_collapsed = args.collapsed;
    let config = LiveConfig {
        socket,
        interval_ms: args.interval_ms,
    };
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("agtop: set up the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&mut terminal, config, app));
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agtop: draw: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--man`: the man page, generated from the same clap command that parses the flags.
fn print_man() -> ExitCode {
    use clap::CommandFactory as _;
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(Args::command())
        .render(&mut page)
        .and_then(|()| std::io::Write::write_all(&mut std::io::stdout().lock(), &page));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agtop: write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}
