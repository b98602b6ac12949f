//! `runloopd`: boots the kernel from config v1 and serves the control socket until SIGTERM.
//!
//! Start order: load config, bind the socket (its directory created 0700, or 0710 owned by
//! `--group`), boot the tree, serve. A boot that fails after the bind removes the socket
//! file again, so no dead socket is left behind.
//!
//! Shutdown order on SIGTERM or SIGINT: stop accepting, drain the connections in flight,
//! stop the supervisor tree (runs and their agents first), remove the socket file.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use runloop_kernel::config::{self, LoadOptions, Mode};
use runloop_kernel::control::{self, ControlLimits, ControlPlane, PeerPolicy, holders};
use runloop_kernel::{Kernel, KernelOptions};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

/// The Runloop daemon: boots the kernel from config v1 and serves the control socket until
/// SIGTERM.
///
/// User mode (the default): ~/.runloop/config.yaml, state in ~/.runloop, the socket
/// ~/.runloop/sock/rmp.sock, open to the daemon's own uid. System mode (--system, as the
/// packaged runloopd.service runs it): /etc/runloop/config.yaml, state in /var/lib/runloop,
/// the socket /run/runloop/rmp.sock, open to root and the daemon's own group.
#[derive(Debug, Parser)]
#[command(name = "runloopd", version)]
struct Args {
    /// System mode: /etc/runloop/config.yaml, /var/lib/runloop, /run/runloop/rmp.sock.
    #[arg(long)]
    system: bool,
    /// Read this config file instead of the mode's default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config key (`section.key=value`); later flags win.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Bind the control socket here (same as `--set runtime.socket_path=PATH`).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also accept peers in this group id (besides the daemon's own uid). In system mode
    /// the default is the daemon's own group (`runloop` under the packaged service), so
    /// its members may use the socket.
    #[arg(long, value_name = "GID")]
    group: Option<u32>,
    /// How long a control request frame may take to arrive whole, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = control::server::CONTROL_FRAME_DEADLINE_MS)]
    frame_deadline_ms: u64,
    /// Print runloopd's man page (roff) and exit; for packagers.
    #[arg(long, hide = true)]
    man: bool,
}

/// Longest the shutdown waits for closing control connections to let the kernel go.
const SHUTDOWN_HOLDERS_WAIT_MS: u64 = 2_000;
/// Longest a listener held by something other than a runloopd is waited for at start, and
/// how often it is asked (each ask is a connection nobody accepts: few, so its backlog
/// never fills and a full queue is never taken for a dead listener).
const STALE_LISTENER_WAIT_MS: u64 = 3_000;
const STALE_LISTENER_POLL_MS: u64 = 100;

fn main() -> ExitCode {
    // Few malloc arenas: threads come and go (one driver per agent), each arena keeps holes.
    runloop_kernel::kernel::trim::limit_arenas();
    let args = Args::parse();
    if args.man {
        return print_man();
    }
    // The bundle loader's warnings to stderr; the kernel's own spans once export is on.
    runloop_kernel::otel::kernel_spans::install("runloopd");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runloopd: start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("runloopd: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(args: Args) -> Result<(), (u8, String)> {
    let mode = if args.system {
        Mode::System
    } else {
        Mode::user_from_env().map_err(|e| (2, e.to_string()))?
    };
    let mut flags = args.set;
    if let Some(socket) = &args.socket {
        flags.push(format!("runtime.socket_path={}", socket.display()));
    }
    let config = config::load(&LoadOptions {
        mode,
        file: args.config,
        env: std::env::vars().collect(),
        flags,
    })
    .map_err(|e| (2, e.to_string()))?;
    if args.frame_deadline_ms == 0 {
        return Err((2, "--frame-deadline-ms must be at least 1".into()));
    }
    // The handlers go in before the socket exists: a client may connect (and a supervisor
    // may send SIGTERM) while the kernel still boots, and that SIGTERM must end in a clean
    // shutdown, not the default action.
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| (1, format!("SIGTERM handler: {e}")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| (1, format!("SIGINT handler: {e}")))?;
    let path = config::bind_path(&config);
    // System mode serves root and the members of the daemon's own group: the packaged
    // service runs as `runloop:runloop`, and people are let in with `adduser <name> runloop`.
    let group = match (args.group, &config.mode) {
        (Some(gid), _) => Some(gid),
        (None, Mode::System) => Some(
            std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
                .map_err(|e| (1, format!("read own gid: {e}")))?,
        ),
        (None, Mode::User { .. }) => None,
    };
    let (listener, socket) = bind(&path, group).await.map_err(|e| (1, e))?;
    let mut policy = PeerPolicy::same_uid().map_err(|e| (1, format!("read own uid: {e}")))?;
    policy.group = group;
    policy.root = config.mode == Mode::System;
    let limits = ControlLimits {
        frame_deadline_ms: args.frame_deadline_ms,
        ..ControlLimits::default()
    };

    // The daemon is where the singletons live: the POG and the model broker start in the
    // system supervisor's slots (a bad `models` section is bad input: exit 2).
    let defaults = KernelOptions::default();
    let broker = runloop_kernel::services::broker(&config, defaults.clock.clone())
        .map_err(|e| (2, e.to_string()))?;
    let effects =
        runloop_kernel::services::effects_config(&config).map_err(|e| (2, e.to_string()))?;
    let otel = start_otel(&config)?;
    let options = KernelOptions {
        // `security.trust_roots`, `security.grants`, `runtime.require_cgroups`.
        agents: runloop_kernel::agents::AgentOptions::from_config(&config),
        pog: Some(runloop_kernel::services::pog_service(&config)),
        broker: Some(broker),
        effects: Some(effects),
        quarantine_file: Some(runloop_kernel::services::quarantine_file(&config)),
        otel: otel.clone(),
        ..defaults
    };
    let kernel = Kernel::boot(options)
        .await
        .map_err(|e| (1, e.to_string()))?;
    let kernel = Arc::new(kernel);
    let engine = runloop_kernel::runs::Engine::new(
        kernel.clone(),
        runloop_kernel::runs::EngineConfig {
            search_dirs: config.agent_search_dirs(),
            host: runloop_kernel::runs::RunHost::Daemon,
        },
    );
    let plane = Arc::new(ControlPlane::with_engine(engine, policy, limits));
    // Durable runs: what this daemon left unfinished continues now.
    let (resumed, failed) = plane.engine().resume_unfinished().await;
    for trace_id in &resumed {
        eprintln!("runloopd: resumed run {trace_id}");
    }
    for (trace_id, why) in &failed {
        eprintln!("runloopd: could not resume run {trace_id}: {why}");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(control::serve(listener, plane, stop_rx));
    eprintln!(
        "runloopd: listening on {} (pid {})",
        path.display(),
        std::process::id()
    );

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("runloopd: shutting down");
    let _ = stop_tx.send(true);
    let _ = server.await;
    drop(socket);
    if let Some(otel) = &otel {
        // The metric sampler holds the kernel while it samples: stop it before unwrapping.
        otel.stop_sampling();
    }
    // Control connections just closed may still hold the kernel for a moment.
    runloop_kernel::Kernel::shutdown_shared(
        kernel,
        Duration::from_millis(SHUTDOWN_HOLDERS_WAIT_MS),
    )
    .await;
    if let Some(otel) = &otel {
        // Flushes what is queued (a no-op when the kernel's shutdown already did).
        otel.shutdown_async().await;
    }
    eprintln!("runloopd: stopped");
    Ok(())
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
            eprintln!("runloopd: write the man page: {e}");
            ExitCode::from(1)
        }
    }
}

/// OpenTelemetry export from `observability.traces` (none when disabled), the kernel's
/// own spans sent through it too (the kernel-span layer `main` installed). A bad section
/// is bad input (exit 2); an exporter that cannot be built is exit 1.
fn start_otel(
    config: &config::Config,
) -> Result<Option<Arc<runloop_kernel::otel::Otel>>, (u8, String)> {
    let Some(otel_config) =
        runloop_kernel::otel::OtelConfig::from_config(config).map_err(|e| (2, e.to_string()))?
    else {
        return Ok(None);
    };
    let otel = runloop_kernel::otel::Otel::start(otel_config).map_err(|e| (1, e.to_string()))?;
    if let Err(e) = otel.export_kernel_spans() {
        eprintln!("runloopd: OpenTelemetry: kernel spans not exported: {e}");
    }
    eprintln!(
        "runloopd: exporting traces and metrics to {} ({:?})",
        otel.config().endpoint,
        otel.config().protocol
    );
    Ok(Some(otel))
}

/// The bound socket file, removed when dropped: at shutdown, and on every early return
/// after the bind (a failed boot leaves no socket behind).
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a listener answers at `path`, and who holds it. A live daemon (a holder with
/// this process's own name) is an answer at once. Anything else may be what a killed
/// daemon left for a moment: a sandbox it was starting, between clone and exec, holds a
/// copy of its fds (the listener too) until the death signal ends it; it gets
/// [`STALE_LISTENER_WAIT_MS`] to go.
async fn still_answered(path: &Path) -> Option<Vec<holders::Holder>> {
    let own = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let end = Instant::now() + Duration::from_millis(STALE_LISTENER_WAIT_MS);
    loop {
        tokio::net::UnixStream::connect(path).await.ok()?;
        let holders = holders::listening_holders(path);
        if Instant::now() >= end || holders.iter().any(|h| h.comm == own.trim_end()) {
            return Some(holders);
        }
        tokio::time::sleep(Duration::from_millis(STALE_LISTENER_POLL_MS)).await;
    }
}

/// Binds the socket, creating its directory (0700; 0710 owned by `group` when peers of a
/// group are let in, so they can reach the socket and nothing else) and replacing a stale
/// socket file that nobody answers on; a live daemon there is an error. The socket is
/// 0660, owned by `group` when given.
async fn bind(path: &Path, group: Option<u32>) -> Result<(UnixListener, SocketFile), String> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        let mode = if group.is_some() { 0o710 } else { 0o700 };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
        // The mode is masked by the umask; say it exactly.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(dir, None, Some(gid))
                .map_err(|e| format!("chgrp {} to {gid}: {e}", dir.display()))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        if let Some(holders) = still_answered(path).await {
            return Err(format!(
                "another runloopd already listens on {} (held by {})",
                path.display(),
                holders::describe(&holders)
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("remove stale {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let socket = SocketFile(path.to_owned());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("chgrp {} to {gid}: {e}", path.display()))?;
    }
    Ok((listener, socket))
}
