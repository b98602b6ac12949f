//! Quarantine: agents parked with a human-readable reason until a person releases them.
//!
//! An agent is parked when it keeps crashing past its supervisor's restart intensity, or
//! when it sends malformed frames. A parked agent is not restarted: whoever starts or
//! restarts agents asks [`QuarantineHandle::check`] first and refuses a parked one with the
//! record's reason. Only [`QuarantineHandle::release`] (`rlp agent release <name>`) unparks.
//!
//! Lifecycle: the records live in a [`QuarantineStore`] created once outside the actor (the
//! kernel captures it in the child spec) and handed in [`QuarantineArgs`], so a restarted
//! quarantine actor still refuses the agents parked before. A store opened with a file
//! also survives the daemon: it loads the file when opened (a corrupt file is a
//! [`QuarantineFileError`] naming the path, never an empty quarantine) and rewrites it
//! atomically (temporary file, fsync, rename, fsync of the directory) on every park and
//! release before answering. Mailbox bound: every request is a call whose sender waits.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runloop_proto::Clock;
use serde::{Deserialize, Serialize};

use crate::names::AgentName;

/// Most agents parked at once.
pub const QUARANTINE_ENTRIES_MAX: usize = 65_536;
/// Longest detail text kept in a reason, in bytes.
pub const REASON_DETAIL_BYTES_MAX: usize = 512;
/// Largest quarantine file read, in bytes (every entry at its largest fits).
pub const QUARANTINE_FILE_BYTES_MAX: u64 = 128 << 20;
/// The quarantine file format this code reads and writes.
pub const QUARANTINE_FILE_VERSION: u32 = 1;

/// Why an agent was parked (closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuarantineReason {
    /// It crashed more often than its supervisor's intensity allows.
    CrashLoop {
        restarts: u32,
        period_ms: u64,
        last_error: String,
    },
    /// It sent a frame that failed validation (`error` is the RMP error name).
    MalformedFrame { error: String, detail: String },
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error,
            } => write!(
                f,
                "crashed {restarts} times within {period_ms} ms, more than its supervisor allows; last error: {last_error}"
            ),
            QuarantineReason::MalformedFrame { error, detail } => {
                write!(f, "sent a malformed frame ({error}): {detail}")
            }
        }
    }
}

fn clip(mut text: String) -> String {
    if text.len() > REASON_DETAIL_BYTES_MAX {
        let mut cut = REASON_DETAIL_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

impl QuarantineReason {
    fn clipped(self) -> Self {
        match self {
            QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error,
            } => QuarantineReason::CrashLoop {
                restarts,
                period_ms,
                last_error: clip(last_error),
            },
            QuarantineReason::MalformedFrame { error, detail } => {
                QuarantineReason::MalformedFrame {
                    error: clip(error),
                    detail: clip(detail),
                }
            }
        }
    }
}

/// One parked agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineRecord {
    pub agent: AgentName,
    pub reason: QuarantineReason,
    /// The reason as a sentence, for people, without the agent's name: the errors that
    /// carry it (`AgentError::Quarantined`, the kernel's `RunError::Quarantined`) already
    /// say which agent is quarantined, so the record must not say it again.
    pub message: String,
    pub parked_at_ms: u64,
}

/// Why a quarantine request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuarantineError {
    #[error("agent {agent} is not quarantined")]
    NotQuarantined { agent: AgentName },
    #[error("quarantine already holds {QUARANTINE_ENTRIES_MAX} agents")]
    Full,
    #[error("quarantine actor is not running")]
    Down,
    /// The change holds in memory (a park) or was undone (a release), but the file that
    /// carries it across a daemon restart could not be written.
    #[error("quarantine: {message}")]
    Persist { message: String },
}

/// Why the quarantine file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineFileError {
    #[error("read quarantine file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("quarantine file {} is larger than {QUARANTINE_FILE_BYTES_MAX} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error(
        "quarantine file {} is corrupt ({detail}); its parked agents are unknown: restore the file or move it away to start with none parked",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "quarantine file {} has format version {version}, this runloop reads {QUARANTINE_FILE_VERSION}",
        path.display()
    )]
    Version { path: PathBuf, version: u32 },
    #[error("write quarantine file {}: {step}: {source}", path.display())]
    Write {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
}

/// The quarantine actor's requests (closed).
#[derive(Debug)]
pub enum QuarantineMsg {
    /// Parks an agent; parking a parked agent keeps the first record.
    Park(
        AgentName,
        QuarantineReason,
        RpcReplyPort<Result<QuarantineRecord, QuarantineError>>,
    ),
    Release(
        AgentName,
        RpcReplyPort<Result<QuarantineRecord, QuarantineError>>,
    ),
    Check(AgentName, RpcReplyPort<Option<QuarantineRecord>>),
    List(RpcReplyPort<Vec<QuarantineRecord>>),
}

/// One record as the quarantine file stores it (the message is rebuilt on load).
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    agent: String,
    reason: QuarantineReason,
    parked_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    version: u32,
    records: Vec<StoredRecord>,
}

struct Parked {
    records: BTreeMap<AgentName, QuarantineRecord>,
    file: Option<PathBuf>,
}

/// The parked agents, shared by the quarantine actor's instances and, with a file,
/// kept across daemon restarts.
#[derive(Clone)]
pub struct QuarantineStore {
    parked: Arc<Mutex<Parked>>,
}

impl fmt::Debug for QuarantineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parked = self.lock();
        f.debug_struct("QuarantineStore")
            .field("parked", &parked.records.len())
            .field("file", &parked.file)
            .finish()
    }
}

fn record(agent: AgentName, reason: QuarantineReason, parked_at_ms: u64) -> QuarantineRecord {
    let reason = reason.clipped();
    QuarantineRecord {
        message: reason.to_string(),
        agent,
        reason,
        parked_at_ms,
    }
}

impl QuarantineStore {
    /// A store in memory only: it survives restarts of the actor, not of the process.
    pub fn in_memory() -> Self {
        Self::with(BTreeMap::new(), None)
    }

    /// A store kept in `file` (when given): loads the records the file holds (none if it
    /// does not exist yet) and rewrites it on every change.
    pub fn open(file: Option<PathBuf>) -> Result<Self, QuarantineFileError> {
        let Some(path) = file else {
            return Ok(Self::in_memory());
        };
        let records = load(&path)?;
        Ok(Self::with(records, Some(path)))
    }

    fn with(records: BTreeMap<AgentName, QuarantineRecord>, file: Option<PathBuf>) -> Self {
        Self {
            parked: Arc::new(Mutex::new(Parked { records, file })),
        }
    }

    /// The file the records are kept in, if any.
    pub fn file(&self) -> Option<PathBuf> {
        self.lock().file.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        // Every change is a single map insert or remove: a panic cannot leave it half made.
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn park(
        &self,
        agent: AgentName,
        reason: QuarantineReason,
        now_ms: u64,
    ) -> Result<QuarantineRecord, QuarantineError> {
        let mut parked = self.lock();
        if let Some(record) = parked.records.get(&agent) {
            return Ok(record.clone());
        }
        if parked.records.len() == QUARANTINE_ENTRIES_MAX {
            return Err(QuarantineError::Full);
        }
        let record = record(agent.clone(), reason, now_ms);
        parked.records.insert(agent, record.clone());
        // Parked in memory even when the write fails: refusing the agent is the safe side.
        parked.save()?;
        Ok(record)
    }

    fn release(&self, agent: AgentName) -> Result<QuarantineRecord, QuarantineError> {
        let mut parked = self.lock();
        let record = parked
            .records
            .remove(&agent)
            .ok_or(QuarantineError::NotQuarantined {
                agent: agent.clone(),
            })?;
        if let Err(err) = parked.save() {
            // Not written, so not released: it would come back parked after a restart.
            parked.records.insert(agent, record);
            return Err(err);
        }
        Ok(record)
    }

    fn check(&self, agent: &AgentName) -> Option<QuarantineRecord> {
        self.lock().records.get(agent).cloned()
    }

    fn list(&self) -> Vec<QuarantineRecord> {
        self.lock().records.values().cloned().collect()
    }
}

impl Parked {
    fn save(&self) -> Result<(), QuarantineError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let file = StoredFile {
            version: QUARANTINE_FILE_VERSION,
            records: self
                .records
                .values()
                .map(|r| StoredRecord {
                    agent: r.agent.to_string(),
                    reason: r.reason.clone(),
                    parked_at_ms: r.parked_at_ms,
                })
                .collect(),
        };
        let bytes = rmp_serde::to_vec_named(&file).expect("quarantine records always encode");
        write_atomically(path, &bytes).map_err(|e| QuarantineError::Persist {
            message: e.to_string(),
        })
    }
}

fn load(path: &Path) -> Result<BTreeMap<AgentName, QuarantineRecord>, QuarantineFileError> {
    let read = |source| QuarantineFileError::Read {
        path: path.to_owned(),
        source,
    };
    let corrupt = |detail: String| QuarantineFileError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(read(e)),
    };
    if size > QUARANTINE_FILE_BYTES_MAX {
        return Err(QuarantineFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let file: StoredFile = rmp_serde::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.version != QUARANTINE_FILE_VERSION {
        return Err(QuarantineFileError::Version {
            path: path.to_owned(),
            version: file.version,
        });
    }
    if file.records.len() > QUARANTINE_ENTRIES_MAX {
        return Err(corrupt(format!(
            "{} records, more than {QUARANTINE_ENTRIES_MAX}",
            file.records.len()
        )));
    }
    let mut records = BTreeMap::new();
    for stored in file.records {
        let agent = AgentName::new(&stored.agent).map_err(|e| corrupt(e.to_string()))?;
        let record = record(agent.clone(), stored.reason, stored.parked_at_ms);
        if records.insert(agent, record).is_some() {
            return Err(corrupt(format!("agent {} is listed twice", stored.agent)));
        }
    }
    Ok(records)
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, whole.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), QuarantineFileError> {
    let step = |step: &'static str| {
        move |source| QuarantineFileError::Write {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(step("create its directory"))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = std::fs::File::create(&tmp).map_err(step("create the temporary file"))?;
    file.write_all(bytes)
        .map_err(step("write the temporary file"))?;
    file.sync_all().map_err(step("fsync the temporary file"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(step("rename the temporary file over it"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(step("fsync its directory"))?;
    Ok(())
}

/// What the quarantine actor is started with.
#[derive(Clone)]
pub struct QuarantineArgs {
    pub clock: Arc<dyn Clock>,
    /// The parked agents, kept across restarts of the actor.
    pub store: QuarantineStore,
}

impl fmt::Debug for QuarantineArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantineArgs")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The quarantine actor's state: the clock and the store.
pub struct QuarantineState {
    clock: Arc<dyn Clock>,
    store: QuarantineStore,
}

impl fmt::Debug for QuarantineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantineState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The quarantine actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quarantine;

impl Actor for Quarantine {
    type Msg = QuarantineMsg;
    type State = QuarantineState;
    type Arguments = QuarantineArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<QuarantineMsg>,
        args: QuarantineArgs,
    ) -> Result<QuarantineState, ActorProcessingErr> {
        Ok(QuarantineState {
            clock: args.clock,
            store: args.store,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<QuarantineMsg>,
        message: QuarantineMsg,
        state: &mut QuarantineState,
    ) -> Result<(), ActorProcessingErr> {
        let store = &state.store;
        match message {
            QuarantineMsg::Park(agent, reason, reply) => {
                let _ = reply.send(store.park(agent, reason, state.clock.now_ms()));
            }
            QuarantineMsg::Release(agent, reply) => {
                let _ = reply.send(store.release(agent));
            }
            QuarantineMsg::Check(agent, reply) => {
                let _ = reply.send(store.check(&agent));
            }
            QuarantineMsg::List(reply) => {
                let _ = reply.send(store.list());
            }
        }
        Ok(())
    }
}

/// How long a caller waits for the quarantine actor.
pub const QUARANTINE_CALL_TIMEOUT_MS: u64 = 5_000;

/// A cloneable client of the quarantine actor.
#[derive(Debug, Clone)]
pub struct QuarantineHandle {
    actor: ActorRef<QuarantineMsg>,
}

impl QuarantineHandle {
    pub fn new(actor: ActorRef<QuarantineMsg>) -> Self {
        Self { actor }
    }

    pub fn actor(&self) -> &ActorRef<QuarantineMsg> {
        &self.actor
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> QuarantineMsg,
    ) -> Option<T> {
        let timeout = Some(Duration::from_millis(QUARANTINE_CALL_TIMEOUT_MS));
        match self.actor.call(msg, timeout).await {
            Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
            _ => None,
        }
    }

    pub async fn park(
        &self,
        agent: &AgentName,
        reason: QuarantineReason,
    ) -> Result<QuarantineRecord, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Park(agent, reason, r))
            .await
            .unwrap_or(Err(QuarantineError::Down))
    }

    pub async fn release(&self, agent: &AgentName) -> Result<QuarantineRecord, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Release(agent, r))
            .await
            .unwrap_or(Err(QuarantineError::Down))
    }

    pub async fn check(
        &self,
        agent: &AgentName,
    ) -> Result<Option<QuarantineRecord>, QuarantineError> {
        let agent = agent.clone();
        self.ask(|r| QuarantineMsg::Check(agent, r))
            .await
            .ok_or(QuarantineError::Down)
    }

    pub async fn list(&self) -> Result<Vec<QuarantineRecord>, QuarantineError> {
        self.ask(QuarantineMsg::List)
            .await
            .ok_or(QuarantineError::Down)
    }
}
