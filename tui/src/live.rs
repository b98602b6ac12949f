//! The live loop: a status subscription (snapshots, agent events, run progress), a
//! once-a-second tick that asks the daemon what [`App::poll_commands`] lists (pending
//! confirmations, runs, the open trace, finished runs' reports) and reads the machine's
//! load and the selected agent's cgroup, the keys read on their own thread, and the
//! commands keys ask for — all as messages on one bounded queue that the loop folds into
//! the [`App`] and redraws.
//!
//! A bad frame, a closed stream or a daemon gone away is a line in the status bar, and the
//! subscription is tried again every [`RESUBSCRIBE_MS`]; nothing the daemon sends ends
//! the program. With `--events`, a reader thread feeds the file's lines instead of a
//! daemon ([`run_events`]); a bad line is counted and named, not fatal.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use runloop_client::{StatusItem, request, subscribe};
use runloop_proto::payloads::{ControlCommand, ControlOutcome, RunProgress};
use tokio::sync::mpsc;

use crate::app::{App, Effect, Key};
use crate::render::draw;
use crate::runs::parse_event_line;

/// Messages waiting for the loop, at most.
pub const QUEUE_MAX: usize = 256;
/// Wait before subscribing again after the stream failed or ended.
pub const RESUBSCRIBE_MS: u64 = 1_000;
/// How often pending confirmations and runs are asked for.
pub const POLL_MS: u64 = 1_000;
/// How long the key thread waits for a key before checking whether to stop.
pub const KEY_POLL_MS: u64 = 100;
/// Runs asked for by each poll.
pub const RUNS_LIMIT: u32 = 16;

/// What the loop is told (closed).
#[derive(Debug)]
enum Msg {
    Key(Key),
    Redraw,
    /// Time to poll the daemon and read the machine's figures.
    Tick,
    /// A line of the events file, parsed (or why not, with its line number).
    Line(Result<Box<RunProgress>, (u64, String)>),
    /// The events file ended after this many lines.
    EndOfFile(u64),
    Item(StatusItem),
    Subscribed {
        interval_ms: u64,
    },
    StreamFailed(String),
    /// An answer; `quiet` for the background polls (no status line on success).
    Outcome {
        outcome: Box<ControlOutcome>,
        quiet: bool,
    },
    CommandFailed(String),
}

/// Live options.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub socket: PathBuf,
    pub interval_ms: u64,
}

/// Request ids: the process id and a counter, unique for this daemon's cache window.
#[derive(Debug)]
struct Ids {
    next: u64,
}

impl Ids {
    fn next(&mut self) -> String {
        self.next += 1;
        format!("agtop-{}-{}", std::process::id(), self.next)
    }
}

/// Runs agtop on `terminal` until `q`. The caller restores the terminal.
pub async fn run(
    terminal: &mut DefaultTerminal,
    config: LiveConfig,
    mut app: App,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE_MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let keys = spawn_keys(tx.clone(), stop.clone());
    let mut ids = Ids { next: 0 };
    let stream = tokio::spawn(stream_task(config.clone(), tx.clone()));
    let ticks = tokio::spawn(tick_task(tx.clone()));
    terminal.draw(|f| draw(f, &app))?;
    'messages: while let Some(first) = rx.recv().await {
        // Every message waiting is folded in before one redraw: a burst (a snapshot,
        // progress events, poll answers) costs one frame, not one each.
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Key(key) => match app.on_key(key) {
                    Effect::Quit => break 'messages,
                    Effect::Nothing => {}
                    Effect::Send(command) => {
                        tokio::spawn(send(
                            config.socket.clone(),
                            ids.next(),
                            command,
                            tx.clone(),
                            false,
                        ));
                    }
                },
                Msg::Redraw => {}
                Msg::Tick => {
                    app.load = read_load();
                    app.cgroup = selected_cgroup(&app);
                    for command in app.poll_commands() {
                        tokio::spawn(send(
                            config.socket.clone(),
                            ids.next(),
                            command,
                            tx.clone(),
                            true,
                        ));
                    }
                }
                Msg::Item(StatusItem::Snapshot(s)) => app.on_snapshot(&s),
                Msg::Item(StatusItem::Event(e)) => app.on_event(&e),
                Msg::Item(StatusItem::Progress(p)) => app.on_progress(&p),
                Msg::Subscribed { interval_ms } => {
                    app.set_status(format!("subscribed: a snapshot every {interval_ms} ms"));
                }
                Msg::StreamFailed(e) => {
                    app.set_status(format!(
                        "status stream: {e} (trying again in {RESUBSCRIBE_MS} ms)"
                    ));
                }
                Msg::Outcome { outcome, quiet } => {
                    let polled = matches!(
                        *outcome,
                        ControlOutcome::Actions { .. }
                            | ControlOutcome::Runs { .. }
                            | ControlOutcome::Trace { .. }
                            | ControlOutcome::RunFinished { .. }
                            | ControlOutcome::RunState { .. }
                    );
                    if !quiet || polled {
                        app.on_outcome(*outcome);
                    }
                }
                Msg::CommandFailed(e) => app.set_status(e),
                // Only the events reader sends these.
                Msg::Line(_) | Msg::EndOfFile(_) => {}
            }
            next = rx.try_recv().ok();
        }
        terminal.draw(|f| draw(f, &app))?;
    }
    stop.store(true, Ordering::Relaxed);
    stream.abort();
    ticks.abort();
    drop(rx);
    // The key thread sees `stop` within one key poll.
    let _ = keys.join();
    Ok(())
}

/// Where an `--events` file is read from.
#[derive(Debug, Clone)]
pub enum EventsFrom {
    File(PathBuf),
    Stdin,
}

/// Runs agtop on an `rlp run --events` file (or standard input) until `q`: each line is
/// folded in as it is read, so a file still being written (`rlp run --events - | agtop
/// --events -`) shows the run live. The caller restores the terminal.
pub async fn run_events(
    terminal: &mut DefaultTerminal,
    from: EventsFrom,
    mut app: App,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE_MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let keys = spawn_keys(tx.clone(), stop.clone());
    let reader = spawn_reader(from, tx.clone(), stop.clone());
    let mut bad = 0u64;
    terminal.draw(|f| draw(f, &app))?;
    'events: while let Some(first) = rx.recv().await {
        // Every message waiting is folded in before one redraw: a burst (a snapshot,
        // progress events, poll answers) costs one frame, not one each.
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Key(key) if app.on_key(key) == Effect::Quit => break 'events,
                Msg::Line(Ok(event)) => app.on_progress(&event),
                Msg::Line(Err((line, error))) => {
                    bad += 1;
                    app.set_status(format!("line {line}: {error} ({bad} bad lines so far)"));
                }
                Msg::EndOfFile(lines) => {
                    app.set_status(format!("end of the events: {lines} lines, {bad} not taken"))
                }
                _ => {}
            }
            next = rx.try_recv().ok();
        }
        terminal.draw(|f| draw(f, &app))?;
    }
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = keys.join();
    // A reader blocked on standard input is left to the process's exit.
    drop(reader);
    Ok(())
}

/// Reads the events line by line on a thread of its own (file and pipe reads block).
fn spawn_reader(
    from: EventsFrom,
    tx: mpsc::Sender<Msg>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::BufRead;
    std::thread::spawn(move || {
        let input: Box<dyn BufRead> = match &from {
            EventsFrom::Stdin => Box::new(io::BufReader::new(io::stdin())),
            EventsFrom::File(path) => match std::fs::File::open(path) {
                Ok(f) => Box::new(io::BufReader::new(f)),
                Err(e) => {
                    let _ = tx.blocking_send(Msg::Line(Err((
                        0,
                        format!("open {}: {e}", path.display()),
                    ))));
                    return;
                }
            },
        };
        let mut n = 0u64;
        // Bounded reads: a line over the limit is reported, not buffered whole.
        let mut input = io::Read::take(input, u64::MAX);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut buf = Vec::new();
            input.set_limit(crate::runs::EVENT_LINE_BYTES_MAX as u64 + 1);
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.blocking_send(Msg::Line(Err((n + 1, format!("read: {e}")))));
                    break;
                }
            }
            n += 1;
            let msg = if buf.len() > crate::runs::EVENT_LINE_BYTES_MAX && !buf.ends_with(b"\n") {
                // Skip the rest of the oversized line.
                input.set_limit(u64::MAX);
                let mut rest = Vec::new();
                let _ = input.read_until(b'\n', &mut rest);
                Msg::Line(Err((
                    n,
                    format!(
                        "over the {}-byte line limit",
                        crate::runs::EVENT_LINE_BYTES_MAX
                    ),
                )))
            } else {
                match std::str::from_utf8(&buf) {
                    Err(_) => Msg::Line(Err((n, "not UTF-8".into()))),
                    Ok(text) => match parse_event_line(text) {
                        Ok(None) => continue,
                        Ok(Some(event)) => Msg::Line(Ok(Box::new(event))),
                        Err(e) => Msg::Line(Err((n, e.to_string()))),
                    },
                }
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Msg::EndOfFile(n));
    })
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures.
fn read_load() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The selected agent's cgroup, read from this machine's cgroupfs.
fn selected_cgroup(app: &App) -> Option<(String, crate::cgroup::CgroupUsage)> {
    let row = app.selected_row()?;
    let Some(runloop_proto::payloads::ActorInfo::Agent(agent)) = &row.info else {
        return None;
    };
    let path = agent.cgroup.clone()?;
    let usage = crate::cgroup::usage(std::path::Path::new(crate::cgroup::CGROUP_ROOT), &path)?;
    Some((path, usage))
}

fn key_of(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Char('\t'),
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}

/// Reads the terminal's keys on a thread of its own (crossterm's reads block).
fn spawn_keys(tx: mpsc::Sender<Msg>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(KEY_POLL_MS)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let msg = match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match key_of(k.code) {
                    Some(key) => Msg::Key(key),
                    None => continue,
                },
                Ok(Event::Resize(..)) => Msg::Redraw,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
    })
}

/// Subscribes, forwards every item, and subscribes again whenever the stream fails.
async fn stream_task(config: LiveConfig, tx: mpsc::Sender<Msg>) {
    let mut ids = Ids { next: 1_000_000 };
    loop {
        match subscribe(&config.socket, &ids.next(), config.interval_ms).await {
            Ok(mut sub) => {
                let accepted = sub.interval_ms();
                if tx
                    .send(Msg::Subscribed {
                        interval_ms: accepted,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let msg = match sub.next().await {
                        Ok(Some(item)) => Msg::Item(item),
                        Ok(None) => Msg::StreamFailed("the daemon ended the stream".into()),
                        Err(e) => Msg::StreamFailed(e.to_string()),
                    };
                    let failed = matches!(msg, Msg::StreamFailed(_));
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                    if failed {
                        break;
                    }
                }
            }
            Err(e) => {
                if tx.send(Msg::StreamFailed(e.to_string())).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(RESUBSCRIBE_MS)).await;
    }
}

/// Tells the loop to poll every [`POLL_MS`].
async fn tick_task(tx: mpsc::Sender<Msg>) {
    let mut tick = tokio::time::interval(Duration::from_millis(POLL_MS));
    loop {
        tick.tick().await;
        if tx.send(Msg::Tick).await.is_err() {
            return;
        }
    }
}

/// Sends one command and reports its answer (or failure) to the loop.
async fn send(
    socket: PathBuf,
    id: String,
    command: ControlCommand,
    tx: mpsc::Sender<Msg>,
    quiet: bool,
) {
    let what = command_name(&command);
    let msg = match request(&socket, &id, command).await {
        Ok(reply) => Msg::Outcome {
            outcome: Box::new(reply.outcome),
            quiet,
        },
        // A failed poll says nothing: the status stream reports a daemon gone away.
        Err(_) if quiet => return,
        Err(e) => Msg::CommandFailed(format!("{what}: {e}")),
    };
    // The loop is gone when this fails: nothing left to tell.
    let _ = tx.send(msg).await;
}

fn command_name(command: &ControlCommand) -> &'static str {
    match command {
        ControlCommand::ConfirmList => "list confirmations",
        ControlCommand::ConfirmDecide { .. } => "decide",
        ControlCommand::RunList { .. } => "list runs",
        ControlCommand::RunCancel { .. } => "cancel run",
        ControlCommand::TraceShow { .. } => "show trace",
        ControlCommand::RunWatch { .. } => "run report",
        ControlCommand::RunShow { .. } => "run state",
        ControlCommand::AgentStop { .. } => "stop agent",
        ControlCommand::AgentRelease { .. } => "release agent",
        _ => "request",
    }
}
