//! The openings engine: runs of openings as actors.
//!
//! [`Engine::submit`] validates an opening against the installed agents
//! ([`catalog`]), binds its params, records `run.started` in the POG ([`record`]),
//! starts the run's supervisor under `runs` and, under it, the run's actor
//! ([`actor::RunActor`]), which owns the DAG state ([`runloop_openings::plan::Plan`]) and
//! sends each ready node's invoke over the bus under a scheduler permit, to an agent
//! instance of its own (`agent-<node>` in the run). Progress events go to every
//! [`Engine::progress`] receiver; the final [`RunReport`] to the run's watchers.
//!
//! Durable runs: a run actor that restarts (supervisor) or a run resumed with
//! [`Engine::resume`] (after a daemon restart: [`Engine::resume_unfinished`]) reads its
//! record back and continues: finished nodes are not run again, nodes that were running
//! run again.

pub mod actor;
mod announce;
pub mod attempt;
pub mod catalog;
pub mod control;
mod policy;
pub mod record;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use runloop_actors::names::OpeningId;
use runloop_actors::supervisor::{ChildSpec, Restart};
use runloop_openings::params::{BoundParams, ParamError};
use runloop_openings::{Opening, ValidationErrors};
use runloop_pog::{EventKind, RunFilter};
use runloop_proto::RunId;
use runloop_proto::payloads::{RunProgress, RunReport, RunStatus, RunSummary};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::kernel::{Kernel, RunError};
use actor::{RunActor, RunSpec};
use catalog::BundleCatalog;
use record::{RecordError, Recorder};

/// Most progress events buffered per receiver before a slow one misses some.
pub const PROGRESS_EVENTS_MAX: usize = 4_096;
/// Most finished reports kept in memory for late watchers.
pub const RECENT_REPORTS_MAX: usize = 256;
/// Most runs `rlp runs` lists.
pub const RUNS_LIST_MAX: usize = 1_000;

/// Which kind of process hosts the engine (recorded with each run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunHost {
    /// `runloopd`: unfinished runs resume when it starts again.
    Daemon,
    /// An embedded `rlp run`: an unfinished run shows as interrupted.
    Embedded,
}

impl RunHost {
    fn as_str(self) -> &'static str {
        match self {
            RunHost::Daemon => "daemon",
            RunHost::Embedded => "embedded",
        }
    }
}

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Searched after the opening's own `agents/` directory.
    pub search_dirs: Vec<PathBuf>,
    pub host: RunHost,
}

/// Why a run was not started (nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid opening")]
    Invalid(ValidationErrors),
    #[error("{0}")]
    Params(ParamError),
    #[error("params: not JSON: {0}")]
    ParamsJson(String),
    #[error("start run: {0}")]
    Start(#[from] RunError),
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("run {0}: not found")]
    NotFound(String),
    #[error("run {0} already finished")]
    Finished(String),
    #[error("run {trace_id} is still running in process {pid}")]
    Running { trace_id: String, pid: u32 },
    #[error("run {0} is already running here")]
    Live(String),
    #[error("run {trace_id}: its record cannot be continued: {message}")]
    BadRecord { trace_id: String, message: String },
}

/// A started run.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub trace_id: String,
    pub run_id: String,
    /// `Some` once the run finished.
    pub report: watch::Receiver<Option<RunReport>>,
}

struct LiveRun {
    run_id: RunId,
    opening: String,
    started_ms: u64,
    report: watch::Sender<Option<RunReport>>,
    actor: runloop_actors::supervisor::Slot<actor::RunMsg>,
}

/// The openings engine of one kernel.
pub struct Engine {
    kernel: Arc<Kernel>,
    config: EngineConfig,
    recorder: Recorder,
    crossings: Arc<crate::trace::CrossingLog>,
    live: Mutex<HashMap<String, LiveRun>>,
    recent: Mutex<VecDeque<RunReport>>,
    progress: broadcast::Sender<RunProgress>,
    me: Weak<Engine>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(kernel: Arc<Kernel>, config: EngineConfig) -> Arc<Engine> {
        let recorder = Recorder::new(kernel.pog());
        let crossings = Arc::new(
            crate::trace::CrossingLog::new(kernel.pog()).with_export(kernel.otel().cloned()),
        );
        if let Some(otel) = kernel.otel() {
            otel.watch(&kernel);
        }
        let (progress, _) = broadcast::channel(PROGRESS_EVENTS_MAX);
        Arc::new_cyclic(|me| Engine {
            kernel,
            config,
            recorder,
            crossings,
            live: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            progress,
            me: me.clone(),
        })
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// Every run's progress events from now on.
    pub fn progress(&self) -> broadcast::Receiver<RunProgress> {
        self.progress.subscribe()
    }

    /// The catalog an opening read from `dir` resolves its agents through.
    pub fn catalog(&self, dir: &Path) -> BundleCatalog {
        BundleCatalog::new(
            catalog::search_path(dir, &self.config.search_dirs),
            self.kernel.trust().clone(),
        )
        .with_cache(self.kernel.bundle_cache().clone())
    }

    /// The catalog of installed agents (no opening's directory first): what
    /// `rlp agent ls --installed` lists and capability grants resolve bundles through.
    pub fn installed_catalog(&self) -> BundleCatalog {
        BundleCatalog::new(
            catalog::installed_path(&self.config.search_dirs),
            self.kernel.trust().clone(),
        )
        .with_cache(self.kernel.bundle_cache().clone())
    }

    /// Validates an opening's source as `rlp validate` does.
    pub fn validate(&self, source: &str, dir: &Path) -> Result<Opening, ValidationErrors> {
        runloop_openings::validate(source, &self.catalog(dir))
    }

    /// [`Engine::validate`] through `catalog`, which then knows the opening's bundles.
    fn validate_in(source: &str, catalog: &BundleCatalog) -> Result<Opening, ValidationErrors> {
        runloop_openings::validate(source, catalog)
    }

    /// Validates, binds params and starts a run.
    pub async fn submit(
        &self,
        source: &str,
        dir: &Path,
        params: &serde_json::Value,
    ) -> Result<Submitted, SubmitError> {
        // One catalog for the validation and the spec: each bundle is loaded once.
        let catalog = self.catalog(dir);
        let opening = Self::validate_in(source, &catalog).map_err(SubmitError::Invalid)?;
        let bound =
            runloop_openings::params::bind(&opening, params).map_err(SubmitError::Params)?;
        let ids = self.kernel.ids();
        let trace_id = ids.trace_id().to_string();
        let run_id = ids.run_id();
        let seed = (ids.trace_id().0 & u128::from(u64::MAX)) as u64;
        let payload = json!({
            "trace_id": trace_id,
            "opening": opening.name,
            "params": bound.to_json(),
            "run_id": run_id.to_string(),
            "digest": hex::encode(opening.digest),
            "source": source,
            "dir": dir.display().to_string(),
            "seed": format!("{seed:016x}"),
            "host": self.config.host.as_str(),
            "owner_pid": std::process::id(),
        });
        self.recorder
            .write(&trace_id, EventKind::RunStarted, payload)
            .await?;
        let spec = self.spec(&catalog, trace_id, run_id, opening, bound, seed, false, &[])?;
        self.start(spec).await
    }

    /// Continues an unfinished run from its record.
    pub async fn resume(&self, trace_id: &str) -> Result<Submitted, SubmitError> {
        if self.live.lock().expect("live lock").contains_key(trace_id) {
            return Err(SubmitError::Live(trace_id.to_owned()));
        }
        let events = self.recorder.run_events(trace_id).await?;
        let rec = record::read_record(trace_id, &events)?;
        if rec.end.is_some() {
            return Err(SubmitError::Finished(trace_id.to_owned()));
        }
        if let Some(pid) = rec.owner_pid
            && pid != std::process::id()
            && rec.host.as_deref() == Some("embedded")
            && process_alive(pid)
        {
            return Err(SubmitError::Running {
                trace_id: trace_id.to_owned(),
                pid,
            });
        }
        let bad = |message: String| SubmitError::BadRecord {
            trace_id: trace_id.to_owned(),
            message,
        };
        let source = rec
            .source
            .clone()
            .ok_or_else(|| bad("no opening source".into()))?;
        let dir = PathBuf::from(rec.dir.clone().unwrap_or_else(|| ".".into()));
        let catalog = self.catalog(&dir);
        let opening = Self::validate_in(&source, &catalog).map_err(|e| {
            bad(format!(
                "the opening no longer validates: {} error(s)",
                e.0.len()
            ))
        })?;
        let params = rec.params.clone().unwrap_or_else(|| json!({}));
        let bound =
            runloop_openings::params::bind(&opening, &params).map_err(SubmitError::Params)?;
        let seed = rec.seed.ok_or_else(|| bad("no seed".into()))?;
        let run_id = self.kernel.ids().run_id();
        // This process owns the run now: `rlp runs` elsewhere sees it running, not
        // interrupted, and another `rlp resume` is refused while this process lives.
        let resumed = json!({
            "trace_id": trace_id,
            "run_id": run_id.to_string(),
            "host": self.config.host.as_str(),
            "owner_pid": std::process::id(),
        });
        self.recorder
            .write(trace_id, EventKind::RunResumed, resumed)
            .await?;
        let spec = self.spec(
            &catalog,
            trace_id.to_owned(),
            run_id,
            opening,
            bound,
            seed,
            true,
            &events,
        )?;
        self.start(spec).await
    }

    /// Resumes every unfinished run this kind of host owns (`runloopd` at boot). Returns
    /// the runs resumed and those that could not be, with why.
    pub async fn resume_unfinished(&self) -> (Vec<String>, Vec<(String, String)>) {
        let rows = match self
            .recorder
            .runs(RunFilter::Unfinished, RUNS_LIST_MAX)
            .await
        {
            Ok(rows) => rows,
            Err(e) => return (Vec::new(), vec![(String::new(), e.to_string())]),
        };
        let mut resumed = Vec::new();
        let mut failed = Vec::new();
        for row in rows {
            let Ok(events) = self.recorder.run_events(&row.trace_id).await else {
                continue;
            };
            let Ok(rec) = record::read_record(&row.trace_id, &events) else {
                continue;
            };
            if rec.host.as_deref() != Some(self.config.host.as_str()) {
                continue;
            }
            match self.resume(&row.trace_id).await {
                Ok(_) => resumed.push(row.trace_id),
                Err(e) => failed.push((row.trace_id, e.to_string())),
            }
        }
        (resumed, failed)
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        &self,
        catalog: &BundleCatalog,
        trace_id: String,
        run_id: RunId,
        opening: Opening,
        params: BoundParams,
        seed: u64,
        resumed: bool,
        resumed_from: &[runloop_pog::Event],
    ) -> Result<RunSpec, SubmitError> {
        let mut digests = Vec::with_capacity(opening.nodes.len());
        let mut loaded = Vec::with_capacity(opening.nodes.len());
        for node in &opening.nodes {
            let (_, bundle) = catalog
                .resolve(&node.agent)
                .map_err(|e| SubmitError::BadRecord {
                    trace_id: trace_id.clone(),
                    message: e.to_string(),
                })?;
            digests.push(bundle.manifest().wasm_blake3().to_hex());
            loaded.push(bundle);
        }
        // A resumed run goes on numbering its crossings and its nodes' invokes after the
        // ones recorded.
        let (next_seq, next_invokes) = next_numbers(resumed_from);
        self.crossings.open(&trace_id, next_seq);
        self.crossings
            .describe(&trace_id, || crate::otel::RunFacts {
                run_id: run_id.to_string(),
                agents: opening
                    .nodes
                    .iter()
                    .map(|n| (n.id.to_string(), n.agent.name.to_string()))
                    .collect(),
            });
        let tapes = opening
            .nodes
            .iter()
            .map(|node| {
                let next = next_invokes.get(node.id.as_str()).copied().unwrap_or(0);
                Arc::new(crate::trace::NodeTape::new(
                    self.crossings.clone(),
                    &trace_id,
                    node.id.as_str(),
                    next,
                ))
            })
            .collect();
        let opening_id = OpeningId::new(&opening.name).map_err(|e| SubmitError::BadRecord {
            trace_id: trace_id.clone(),
            message: e.to_string(),
        })?;
        Ok(RunSpec {
            trace_id,
            run_id,
            opening_id,
            opening: Arc::new(opening),
            params,
            loaded,
            digests,
            tapes,
            seed,
            resumed,
        })
    }

    async fn start(&self, spec: RunSpec) -> Result<Submitted, SubmitError> {
        let run_id = spec.run_id;
        let trace_id = spec.trace_id.clone();
        self.kernel.start_run(run_id, &spec.opening_id).await?;
        let (tx, rx) = watch::channel(None);
        let slot = runloop_actors::supervisor::Slot::default();
        let started_ms = self.kernel.clock().now_ms();
        self.live.lock().expect("live lock").insert(
            trace_id.clone(),
            LiveRun {
                run_id,
                opening: spec.opening.name.clone(),
                started_ms,
                report: tx,
                actor: slot.clone(),
            },
        );
        let shared = Arc::new(actor::RunShared::new(spec, self.me.clone()));
        let child = ChildSpec::worker_published("run", Restart::Transient, slot, move || {
            (RunActor, shared.clone())
        });
        if let Err(e) = self.kernel.start_in_run(run_id, child).await {
            self.live.lock().expect("live lock").remove(&trace_id);
            let _ = self.kernel.stop_run(run_id).await;
            return Err(e.into());
        }
        Ok(Submitted {
            trace_id,
            run_id: run_id.to_string(),
            report: rx,
        })
    }

    /// A run's report: live runs answer when they finish; finished ones from memory or the
    /// POG.
    pub async fn watch(
        &self,
        trace_id: &str,
    ) -> Result<watch::Receiver<Option<RunReport>>, SubmitError> {
        if let Some(run) = self.live.lock().expect("live lock").get(trace_id) {
            return Ok(run.report.subscribe());
        }
        if let Some(report) = self
            .recent
            .lock()
            .expect("recent lock")
            .iter()
            .find(|r| r.trace_id == trace_id)
        {
            return Ok(watch::channel(Some(report.clone())).1);
        }
        let events = self.recorder.run_events(trace_id).await?;
        let rec = record::read_record(trace_id, &events)?;
        let report = record::report_from_record(trace_id, &rec, self.status_of_unfinished(&rec));
        Ok(watch::channel(Some(report)).1)
    }

    /// A run's progress so far, rebuilt from its record as progress events: `run.started`
    /// (nodes and edges from the recorded source), each node's highest attempt started
    /// and its end, and `run.finished` once the run ended. Events carry the run's start
    /// time where the record keeps no other.
    pub async fn progress_so_far(&self, trace_id: &str) -> Result<Vec<RunProgress>, SubmitError> {
        let events = self.recorder.run_events(trace_id).await?;
        let rec = record::read_record(trace_id, &events)?;
        let opening = rec.source.as_deref().and_then(|source| {
            let dir = rec.dir.as_deref().unwrap_or("/");
            self.validate(source, Path::new(dir)).ok()
        });
        let ts_ms = rec.started_ms;
        let trace = || trace_id.to_owned();
        let mut out = vec![RunProgress::RunStarted {
            ts_ms,
            trace_id: trace(),
            run_id: rec.run_id.clone().unwrap_or_default(),
            opening: rec.opening.clone(),
            nodes: opening
                .as_ref()
                .map(|o| o.nodes.iter().map(|n| n.id.to_string()).collect())
                .unwrap_or_default(),
            edges: opening.as_ref().map(actor::edges_of).unwrap_or_default(),
            resumed: false,
        }];
        for (node, attempt) in &rec.attempts {
            out.push(RunProgress::NodeStarted {
                ts_ms,
                trace_id: trace(),
                node: node.clone(),
                attempt: *attempt,
            });
        }
        let report = record::report_from_record(trace_id, &rec, self.status_of_unfinished(&rec));
        for node in &report.nodes {
            out.push(RunProgress::NodeFinished {
                ts_ms,
                trace_id: trace(),
                node: node.id.clone(),
                status: node.status,
                attempts: node.attempts,
                duration_ms: node.duration_ms.unwrap_or(0),
                output_hash: node.output_hash.clone(),
                reason: node.reason.clone(),
            });
        }
        if rec.end.is_some() {
            out.push(RunProgress::RunFinished {
                ts_ms,
                trace_id: trace(),
                status: report.status,
                reason: report.reason.clone(),
                duration_ms: report.duration_ms,
                result_hash: report.result_hash.clone(),
            });
        }
        Ok(out)
    }

    /// Cancels a live run.
    pub fn cancel(&self, trace_id: &str) -> Result<(), SubmitError> {
        let live = self.live.lock().expect("live lock");
        let run = live
            .get(trace_id)
            .ok_or_else(|| SubmitError::NotFound(trace_id.to_owned()))?;
        let actor = run
            .actor
            .get()
            .ok_or_else(|| SubmitError::NotFound(trace_id.to_owned()))?;
        let _ = actor.cast(actor::RunMsg::Cancel);
        Ok(())
    }

    /// The live run's actor as it is now (`None` when the run is not live here). Killing
    /// it is a crash of the run's actor: its supervisor starts a new one, which continues
    /// the run from its record (finished nodes keep their outputs, running ones run again).
    pub fn run_actor(&self, trace_id: &str) -> Option<ractor::ActorCell> {
        let live = self.live.lock().expect("live lock");
        Some(live.get(trace_id)?.actor.get()?.get_cell())
    }

    /// Recent and running runs, newest first: live runs of this engine, then the POG's.
    pub async fn list(&self, limit: usize) -> Result<Vec<RunSummary>, SubmitError> {
        let mut out: Vec<RunSummary> = Vec::new();
        {
            let live = self.live.lock().expect("live lock");
            for (trace_id, run) in live.iter() {
                out.push(RunSummary {
                    trace_id: trace_id.clone(),
                    opening: run.opening.clone(),
                    status: RunStatus::Running,
                    reason: None,
                    started_at_ms: Some(run.started_ms),
                    duration_ms: None,
                });
            }
        }
        if self.recorder.is_durable() {
            for row in self.recorder.runs(RunFilter::All, limit).await? {
                if out.iter().any(|r| r.trace_id == row.trace_id) {
                    continue;
                }
                let mut status = RunStatus::parse(&row.status).unwrap_or(RunStatus::Failed);
                if status == RunStatus::Running {
                    status = match self.recorder.run_events(&row.trace_id).await {
                        Ok(events) => match record::read_record(&row.trace_id, &events) {
                            Ok(rec) => self.status_of_unfinished(&rec),
                            Err(_) => RunStatus::Interrupted,
                        },
                        Err(_) => RunStatus::Interrupted,
                    };
                }
                out.push(RunSummary {
                    trace_id: row.trace_id,
                    opening: row.opening.unwrap_or_default(),
                    status,
                    reason: row.error,
                    started_at_ms: row.started_ms,
                    duration_ms: row.duration_ms,
                });
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// An unfinished run not live here: still running in its (live) owner, else
    /// interrupted.
    fn status_of_unfinished(&self, rec: &record::RunRecord) -> RunStatus {
        match rec.owner_pid {
            Some(pid) if pid != std::process::id() && process_alive(pid) => RunStatus::Running,
            _ => RunStatus::Interrupted,
        }
    }

    /// One run's events in the POG, oldest first (tests and `rlp trace`).
    pub async fn recorder_events(&self, trace_id: &str) -> Vec<runloop_pog::Event> {
        self.recorder.run_events(trace_id).await.unwrap_or_default()
    }

    pub(crate) fn publish(&self, event: RunProgress) {
        let _ = self.progress.send(event);
    }

    /// Where runs record their crossings (for the trace and replay).
    pub fn crossings(&self) -> &Arc<crate::trace::CrossingLog> {
        &self.crossings
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Called by the run actor once: the report goes to watchers, the run's supervisor
    /// (and with it the agents) is stopped.
    pub(crate) fn finished(&self, report: RunReport) {
        let run = self
            .live
            .lock()
            .expect("live lock")
            .remove(&report.trace_id);
        {
            let mut recent = self.recent.lock().expect("recent lock");
            if recent.len() >= RECENT_REPORTS_MAX {
                recent.pop_front();
            }
            recent.push_back(report.clone());
        }
        if let Some(run) = run {
            let _ = run.report.send(Some(report));
            let kernel = self.kernel.clone();
            tokio::spawn(async move {
                let _ = kernel.stop_run(run.run_id).await;
            });
        }
    }

    /// Entries the engine and the services it uses hold per run: live runs, the crossing
    /// log's numbering, run budgets, the confirmation gate's. With no run in flight this
    /// is what ended runs left behind (a soak checks it does not grow).
    pub fn held_run_entries(&self) -> usize {
        let gate = self
            .kernel
            .effects()
            .map_or(0, |effects| effects.shared.held_entries());
        self.live.lock().expect("live lock").len()
            + self.crossings.open_runs()
            + self.kernel.run_budgets().len()
            + gate
    }

    /// Stops every live run's actor without finishing it (shutdown): the runs stay
    /// unfinished in the POG and resume at the next start.
    pub fn live_runs(&self) -> Vec<String> {
        self.live
            .lock()
            .expect("live lock")
            .keys()
            .cloned()
            .collect()
    }
}

/// Whether a process with this pid exists (signal 0).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The next crossing seq of a run and the next invoke number of each of its nodes, after
/// what `events` recorded (empty for a fresh run).
fn next_numbers(events: &[runloop_pog::Event]) -> (u64, HashMap<String, u64>) {
    let mut seq = 0;
    let mut invokes: HashMap<String, u64> = HashMap::new();
    for e in events {
        if e.kind != EventKind::CrossingRecorded {
            continue;
        }
        let p = &e.payload;
        if let Some(s) = p.get("seq").and_then(serde_json::Value::as_u64) {
            seq = seq.max(s + 1);
        }
        if let (Some(node), Some(i)) = (
            p.get("node_id").and_then(serde_json::Value::as_str),
            p.get("invoke").and_then(serde_json::Value::as_u64),
        ) {
            let next = invokes.entry(node.to_owned()).or_insert(0);
            *next = (*next).max(i + 1);
        }
    }
    (seq, invokes)
}
