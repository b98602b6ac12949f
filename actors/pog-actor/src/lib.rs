//! The POG singleton actor: owns the single `Store` writer, batches concurrent writes into
//! one SQLite transaction, and serves reads from the store's bounded read pool on blocking
//! threads so a long query never stalls writes.
//!
//! Lifecycle: `pre_start` opens the store (creating or catching up the views) and hands it
//! to the actor's writer thread; a failure there fails the spawn and the supervisor
//! decides. `Write` messages are buffered; the first one in an empty buffer casts `Flush`
//! to itself, so every write already queued in the mailbox lands in the same commit (group
//! commit). A flush hands the buffer to the writer thread, which commits it (the fsync
//! blocks that thread, never a runtime worker), answers each writer and tells the actor;
//! while a commit is in flight, new writes gather for the next one. `WriteLater` writes
//! (records nobody waits on: a run's crossings, a node's finish) start no commit of their
//! own: they go with the next commit a `Write` or `Flush` asks for, in arrival order, or
//! after `PogArgs::later_flush_ms` at most; `Sync` answers once everything taken before it
//! is committed. The buffer is handed over early at `BATCH_EVENTS_MAX` even while a commit
//! is in flight. `post_stop` hands over whatever is still buffered; the writer thread
//! commits it and ends. A writer thread
//! that dies (a panic in the write path) fails the actor. Reads take a permit from a
//! semaphore of `READS_IN_FLIGHT_MAX`; with none free the caller gets `Busy` at once
//! (back-pressure, not a queue).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_pog::backup::{BackupError, BackupReport};
use runloop_pog::{
    Clock, EntityRef, NewEvent, PogConfig, QueryError, QueryResult, Reads, SearchError, SearchHit,
    SearchQuery, Store, VerifyError, VerifyReport, WhyError, WhyReport, WriteError, Written,
};
use serde_json::Value;
use tokio::sync::Semaphore;

/// Registered name of the singleton; a second spawn with it fails.
pub const POG_ACTOR_NAME: &str = "runloop.pog";
/// Buffered events that force a flush before the mailbox drains.
pub const BATCH_EVENTS_MAX: usize = 4_096;
/// How long a `WriteLater` waits at most for a commit somebody asked for (the kernel's
/// [`PogArgs::later_flush_ms`]).
pub const LATER_FLUSH_MS: u64 = 5;
/// Reads running at once (each holds one pooled connection on a blocking thread).
pub const READS_IN_FLIGHT_MAX: usize = 16;

/// Arguments to spawn the actor.
#[derive(Debug, Clone)]
pub struct PogArgs {
    /// Where the two files live.
    pub config: PogConfig,
    /// Clock that stamps events.
    pub clock: Arc<dyn Clock>,
    /// Pooled read connections.
    pub read_conns: usize,
    /// How long a `WriteLater` waits at most for a commit somebody asked for.
    pub later_flush_ms: u64,
}

/// Failures of reads served by the actor.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `READS_IN_FLIGHT_MAX` reads are already running.
    #[error("pog is busy: {READS_IN_FLIGHT_MAX} reads in flight")]
    Busy,
    /// `kb.query` failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `kb.search` failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// `kb.why` or a log read failed.
    #[error(transparent)]
    Why(#[from] WhyError),
    /// `kb verify` failed to run.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Backup failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The blocking task died (a panic in the read path).
    #[error("read task failed: {0}")]
    Task(String),
}

/// Counters for tests and `agtop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PogStats {
    /// Commits made.
    pub commits: u64,
    /// Write requests served.
    pub writes: u64,
    /// Largest number of requests in one commit.
    pub max_requests_per_commit: u64,
    /// Head seq.
    pub head_seq: u64,
}

/// Messages the POG actor handles (the kb host calls and kernel calls).
#[derive(Debug)]
pub enum PogMsg {
    /// `kb.write_event` (one or more events, atomic as a group).
    Write(
        Vec<NewEvent>,
        RpcReplyPort<Result<Vec<Written>, WriteError>>,
    ),
    /// Events nobody waits on before going on (a run's crossings, a node's finish): kept
    /// in order with every other write, committed with the next commit a `Write` or
    /// `Flush` asks for, or after [`PogArgs::later_flush_ms`] at most. The reply still
    /// comes once they are committed.
    WriteLater(
        Vec<NewEvent>,
        RpcReplyPort<Result<Vec<Written>, WriteError>>,
    ),
    /// `kb.query`: read-only SQL with positional params. With scopes (the agent's
    /// `allow kb.query scopes=…`), only rows of those scopes are visible
    /// (`Reads::query_scoped`); `None` reads every row.
    Query(
        String,
        Vec<Value>,
        Option<Vec<runloop_pog::Scope>>,
        RpcReplyPort<Result<QueryResult, ReadError>>,
    ),
    /// `kb.search`.
    Search(SearchQuery, RpcReplyPort<Result<Vec<SearchHit>, ReadError>>),
    /// `kb.why`, optionally limited to one scope (for scope-limited readers).
    Why(
        EntityRef,
        Option<runloop_pog::Scope>,
        RpcReplyPort<Result<WhyReport, ReadError>>,
    ),
    /// Recorded host-call results of a run, for replay: `(node_id, call_seq, call, result)`.
    Hostcalls(
        runloop_pog::TraceId,
        RpcReplyPort<Result<Vec<runloop_pog::RecordedCall>, ReadError>>,
    ),
    /// One run's events in log order (to continue a durable run).
    RunEvents(
        runloop_pog::TraceId,
        RpcReplyPort<Result<Vec<runloop_pog::Event>, ReadError>>,
    ),
    /// Runs from the runs view (newest first, or the unfinished ones oldest first).
    Runs(
        runloop_pog::RunFilter,
        usize,
        RpcReplyPort<Result<Vec<runloop_pog::RunRow>, ReadError>>,
    ),
    /// Verify the chain.
    Verify(RpcReplyPort<Result<VerifyReport, ReadError>>),
    /// Online backup into an empty directory.
    Backup(PathBuf, RpcReplyPort<Result<BackupReport, ReadError>>),
    /// Counters.
    Stats(RpcReplyPort<PogStats>),
    /// Commit everything buffered now (as soon as the commit in flight, if any, is done):
    /// sent by the actor to itself after a `Write`, and by a caller that needs its
    /// `WriteLater` writes durable now.
    Flush,
    /// Answers once everything the actor took before it is committed (a reader that must
    /// see `WriteLater` writes: a restarted run actor reading its run's record).
    Sync(RpcReplyPort<()>),
    /// Internal: the longest wait of a `WriteLater` is over.
    LaterDue,
    /// Internal: the writer thread committed a batch.
    Committed,
    /// Internal: the writer thread died (a panic in the write path).
    WriterDied,
}

type Pending = (
    Vec<NewEvent>,
    RpcReplyPort<Result<Vec<Written>, WriteError>>,
);

/// The actor's state, built in `pre_start`.
#[derive(Debug)]
pub struct PogState {
    config: PogConfig,
    reads: Reads,
    permits: Arc<Semaphore>,
    pending: Vec<Pending>,
    pending_events: usize,
    flush_scheduled: bool,
    /// Somebody waits for the buffered writes: they go as soon as no commit is in flight.
    due: bool,
    /// A `LaterDue` is on its way.
    later_armed: bool,
    later_flush: std::time::Duration,
    /// Batches handed to the writer thread and not committed yet.
    in_flight: usize,
    /// Batches handed to the writer thread, and committed, since the start.
    batches_sent: u64,
    batches_done: u64,
    /// `Sync` callers and the batch count that answers each.
    syncs: Vec<(u64, RpcReplyPort<()>)>,
    /// Written by the writer thread before it answers a batch's writers.
    stats: Arc<Mutex<PogStats>>,
    writer: Writer,
}

/// The writer thread: owns the `Store` and commits the batches it is handed, in order.
#[derive(Debug)]
struct Writer {
    batches: Option<mpsc::Sender<Vec<Pending>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(
        mut store: Store,
        stats: Arc<Mutex<PogStats>>,
        actor: ActorRef<PogMsg>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Vec<Pending>>();
        let thread = std::thread::Builder::new()
            .name("pog-writer".into())
            .spawn(move || {
                let _told = TellOnPanic(actor.clone());
                for batch in rx {
                    let (groups, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let n = groups.len() as u64;
                    let results = store.write_groups(groups);
                    {
                        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.commits += 1;
                        s.writes += n;
                        s.max_requests_per_commit = s.max_requests_per_commit.max(n);
                        s.head_seq = store.head().seq;
                    }
                    for (reply, result) in replies.into_iter().zip(results) {
                        // A caller that timed out has dropped its port; its write is
                        // committed anyway.
                        let _ = reply.send(result);
                    }
                    // The actor may be stopping: then nobody waits for this.
                    let _ = actor.cast(PogMsg::Committed);
                }
            })?;
        Ok(Writer {
            batches: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a batch over; `false` when the writer thread is gone.
    fn send(&self, batch: Vec<Pending>) -> bool {
        self.batches
            .as_ref()
            .is_some_and(|tx| tx.send(batch).is_ok())
    }
}

impl Drop for Writer {
    /// Closes the channel and waits for the thread to commit what it was handed.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Tells the actor when the writer thread unwinds.
struct TellOnPanic(ActorRef<PogMsg>);

impl Drop for TellOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.cast(PogMsg::WriterDied);
        }
    }
}

/// The POG actor (stateless handler; state lives in `PogState`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PogActor;

impl PogActor {
    /// Spawns the singleton under `POG_ACTOR_NAME`.
    pub async fn spawn_singleton(
        args: PogArgs,
    ) -> Result<(ActorRef<PogMsg>, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        Actor::spawn(Some(POG_ACTOR_NAME.to_owned()), PogActor, args).await
    }
}

impl PogState {
    /// Hands the buffer to the writer thread, unless a commit is in flight (then it goes
    /// when that one is done, with whatever arrived meanwhile) and the buffer is not full.
    fn flush(&mut self, force: bool) -> Result<(), ActorProcessingErr> {
        self.flush_scheduled = false;
        if self.pending.is_empty() {
            self.due = false;
            return Ok(());
        }
        if !force && self.in_flight > 0 && self.pending_events < BATCH_EVENTS_MAX {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_events = 0;
        self.due = false;
        if !self.writer.send(batch) {
            return Err("the POG writer thread is gone".into());
        }
        self.in_flight += 1;
        self.batches_sent += 1;
        Ok(())
    }

    /// Makes sure buffered `WriteLater` writes are committed within `later_flush`.
    fn arm_later(&mut self, myself: &ActorRef<PogMsg>) {
        if self.later_armed || self.pending.is_empty() {
            return;
        }
        self.later_armed = true;
        myself.send_after(self.later_flush, || PogMsg::LaterDue);
    }

    /// Runs `f` on a blocking thread with a read permit, replying with its result.
    fn read<T, F>(&self, reply: RpcReplyPort<Result<T, ReadError>>, f: F)
    where
        T: Send + 'static,
        F: FnOnce(Reads) -> Result<T, ReadError> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let _ = reply.send(Err(ReadError::Busy));
            return;
        };
        let reads = self.reads.clone();
        tokio::spawn(async move {
            let out = tokio::task::spawn_blocking(move || f(reads))
                .await
                .unwrap_or_else(|e| Err(ReadError::Task(e.to_string())));
            drop(permit);
            let _ = reply.send(out);
        });
    }
}

impl Actor for PogActor {
    type Msg = PogMsg;
    type State = PogState;
    type Arguments = PogArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PogMsg>,
        args: PogArgs,
    ) -> Result<PogState, ActorProcessingErr> {
        let store = Store::open_with(&args.config, args.clock, args.read_conns)?;
        let reads = store.reads();
        let config = store.config().clone();
        let stats = Arc::new(Mutex::new(PogStats {
            head_seq: store.head().seq,
            ..PogStats::default()
        }));
        let writer = Writer::start(store, stats.clone(), myself)
            .map_err(|e| format!("start the POG writer thread: {e}"))?;
        Ok(PogState {
            config,
            reads,
            permits: Arc::new(Semaphore::new(READS_IN_FLIGHT_MAX)),
            pending: Vec::new(),
            pending_events: 0,
            flush_scheduled: false,
            due: false,
            later_armed: false,
            later_flush: std::time::Duration::from_millis(args.later_flush_ms),
            in_flight: 0,
            batches_sent: 0,
            batches_done: 0,
            syncs: Vec::new(),
            stats,
            writer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PogMsg>,
        state: &mut PogState,
    ) -> Result<(), ActorProcessingErr> {
        // Committed by the writer thread before it ends (the state's drop waits for it).
        state.flush(true)
    }

    async fn handle(
        &self,
        myself: ActorRef<PogMsg>,
        msg: PogMsg,
        state: &mut PogState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PogMsg::Write(events, reply) => {
                state.pending_events += events.len();
                state.pending.push((events, reply));
                state.due = true;
                if state.pending_events >= BATCH_EVENTS_MAX {
                    state.flush(false)?;
                } else if !state.flush_scheduled && state.in_flight == 0 {
                    state.flush_scheduled = true;
                    myself.cast(PogMsg::Flush)?;
                }
            }
            PogMsg::WriteLater(events, reply) => {
                state.pending_events += events.len();
                state.pending.push((events, reply));
                if state.pending_events >= BATCH_EVENTS_MAX {
                    state.flush(false)?;
                } else {
                    state.arm_later(&myself);
                }
            }
            PogMsg::Flush => {
                state.due = true;
                state.flush(false)?;
            }
            PogMsg::LaterDue => {
                state.later_armed = false;
                state.due = true;
                state.flush(false)?;
            }
            PogMsg::Sync(reply) => {
                state.due = true;
                state.flush(false)?;
                // What is still buffered goes as the next batch, after those in flight.
                let target = state.batches_sent + u64::from(!state.pending.is_empty());
                if target <= state.batches_done {
                    let _ = reply.send(());
                } else {
                    state.syncs.push((target, reply));
                }
            }
            PogMsg::Committed => {
                state.in_flight = state.in_flight.saturating_sub(1);
                state.batches_done += 1;
                let done = state.batches_done;
                for (_, reply) in state.syncs.extract_if(.., |(target, _)| *target <= done) {
                    let _ = reply.send(());
                }
                if state.due {
                    state.flush(false)?;
                } else {
                    state.arm_later(&myself);
                }
            }
            PogMsg::WriterDied => return Err("the POG writer thread died".into()),
            PogMsg::Query(sql, params, scopes, reply) => state.read(reply, move |r| {
                Ok(match scopes {
                    None => r.query(&sql, &params)?,
                    Some(scopes) => r.query_scoped(&sql, &params, &scopes)?,
                })
            }),
            PogMsg::Search(q, reply) => state.read(reply, move |r| Ok(r.search(&q)?)),
            PogMsg::Why(e, scope, reply) => {
                state.read(reply, move |r| Ok(r.why_in(&e, scope.as_ref())?))
            }
            PogMsg::Hostcalls(t, reply) => state.read(reply, move |r| Ok(r.hostcalls(&t)?)),
            PogMsg::RunEvents(t, reply) => state.read(reply, move |r| Ok(r.run_events(&t)?)),
            PogMsg::Runs(filter, limit, reply) => {
                state.read(reply, move |r| Ok(r.runs(filter, limit)?))
            }
            PogMsg::Verify(reply) => {
                let cfg = state.config.clone();
                state.read(reply, move |_| Ok(runloop_pog::verify(&cfg)?));
            }
            PogMsg::Backup(dest, reply) => {
                let cfg = state.config.clone();
                state.read(reply, move |_| Ok(runloop_pog::backup(&cfg, &dest)?));
            }
            PogMsg::Stats(reply) => {
                let _ = reply.send(*state.stats.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
        Ok(())
    }
}
