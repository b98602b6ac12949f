//! OTP supervision on ractor: strategies, restart types, restart intensity and backoff.
//!
//! A [`Supervisor`] is a ractor actor that starts its [`ChildSpec`]s linked to itself, in
//! order, and reacts to ractor's supervision events:
//!
//! - a child that **fails** (panic or `Err` from a handler) exited abnormally; a child that
//!   **terminates** (stopped, killed, or `post_stop` returned) exited normally;
//! - restart types decide whether that exit needs a restart: `Permanent` always, `Transient`
//!   only after an abnormal exit, `Temporary` never (the child is forgotten);
//! - the strategy decides who restarts with it: `OneForOne` the child alone, `OneForAll`
//!   every child, `RestForOne` the child and every child started after it. Siblings are
//!   stopped in reverse start order, then all are started again in start order;
//! - every restart is recorded at the injected clock's time. More than
//!   [`Intensity::restarts_max`] restarts within [`Intensity::period_ms`] and the supervisor
//!   gives up: it stops all its children and fails itself with
//!   [`SupervisorError::IntensityExceeded`], which its own parent sees as a failed child
//!   (escalation);
//! - restarts wait a backoff, `base_ms * 2^(n-1)` capped at `max_ms`, where `n` counts the
//!   restarts inside the current intensity window; `base_ms == 0` restarts at once.
//!
//! Lifecycle: `pre_start` spawns every child in order and fails (so the parent sees a
//! failed start) if one of them cannot start; the running supervisor serves
//! [`SupervisorMsg`]s and supervision events; `post_stop` stops the remaining children in
//! reverse order. Children are spawned unnamed so that a restart can never collide with the
//! global ractor registry; the supervisor keeps their ids.
//!
//! Mailbox bound: ractor mailboxes are unbounded, so the supervisor only receives
//! call/reply requests (each caller waits) and one internal message per pending restart.
//!
//! Change counter: every supervisor in the process bumps one [`tree_generation`] after
//! each message or supervision event that can change what its [`snapshot`] shows (a
//! child started, stopped, exited, restarted; the supervisor started or stopped), so a
//! reader that walked the tree at generation `g` may reuse that walk while the counter
//! still reads `g`. A `Status` request never bumps it.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use runloop_proto::Clock;
use serde::Serialize;

mod spec;

pub use spec::{ChildKind, ChildSpec, Slot};

/// How long a supervisor waits for a child it stops before killing it.
pub const CHILD_STOP_TIMEOUT_MS: u64 = 5_000;
/// Most children one supervisor holds (dynamic children included).
pub const SUPERVISOR_CHILDREN_MAX: usize = 4_096;
/// Most restarts remembered for the intensity window; `restarts_max` may not exceed it.
pub const RESTART_LOG_ENTRIES_MAX: usize = 1_024;
/// Longest child id, in bytes.
pub const CHILD_ID_BYTES_MAX: usize = 128;

/// The exit reason of an actor ended by ractor's `Signal::Kill` ("killed").
static KILLED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ractor::Signal::Kill.to_string());

/// Bumped after every change any supervisor of this process makes to its children; see
/// [`tree_generation`].
static TREE_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The process-wide supervision tree change counter (module docs). Read it *before*
/// walking the tree: a change during the walk then shows as a newer generation, never as
/// the one the walk is remembered under.
pub fn tree_generation() -> u64 {
    TREE_GENERATION.load(Ordering::SeqCst)
}

/// Marks a change of this supervisor's children (after the change, before the next
/// message: a `Status` queued behind it sees the change).
fn tree_changed() {
    TREE_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Which children restart together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always, whatever the exit.
    Permanent,
    /// Only after an abnormal exit (a failure, or killed).
    Transient,
    /// Never; the child is forgotten when it exits.
    Temporary,
}

/// Restart intensity: at most `restarts_max` restarts within `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Intensity {
    pub restarts_max: u32,
    pub period_ms: u64,
}

/// Restart backoff: `base_ms * 2^(n-1)`, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// No wait between a failure and its restart.
    pub const NONE: Backoff = Backoff {
        base_ms: 0,
        max_ms: 0,
    };

    /// The delay before the `n`-th restart of the current window (`n >= 1`).
    pub fn delay_ms(&self, n: usize) -> u64 {
        let shift = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(32);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }
}

/// A supervisor's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub backoff: Backoff,
}

impl SupervisorConfig {
    /// OTP's defaults (3 restarts in 5 s), no backoff.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            intensity: Intensity {
                restarts_max: 3,
                period_ms: 5_000,
            },
            backoff: Backoff::NONE,
        }
    }
}

/// Why a supervisor stopped or refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "supervisor {supervisor}: restart intensity exceeded ({restarts} restarts within {period_ms} ms, at most {restarts_max}); last failure of child {child}: {reason}"
    )]
    IntensityExceeded {
        supervisor: String,
        child: String,
        restarts: usize,
        restarts_max: u32,
        period_ms: u64,
        reason: String,
    },
    #[error("supervisor {supervisor}: start child {child}: {reason}")]
    StartChild {
        supervisor: String,
        child: String,
        reason: String,
    },
    #[error("supervisor {supervisor}: child id {child:?} is already in use")]
    DuplicateChild { supervisor: String, child: String },
    #[error("supervisor {supervisor}: no child {child:?}")]
    NoSuchChild { supervisor: String, child: String },
    #[error("supervisor {supervisor}: child id must be 1 to {CHILD_ID_BYTES_MAX} bytes")]
    BadChildId { supervisor: String },
    #[error("supervisor {supervisor}: already holds {SUPERVISOR_CHILDREN_MAX} children")]
    TooManyChildren { supervisor: String },
}

/// What a supervisor is started with.
#[derive(Clone)]
pub struct SupervisorArgs {
    /// The supervisor's name in the tree (not a ractor registry name).
    pub name: String,
    pub config: SupervisorConfig,
    pub clock: Arc<dyn Clock>,
    pub children: Vec<ChildSpec>,
    /// Awaited when the supervisor gives up, before it fails (e.g. to quarantine the
    /// agent it supervised). `None`: just escalate.
    pub on_give_up: Option<GiveUpHook>,
}

/// What a supervisor runs when its restart intensity is exceeded.
pub type GiveUpHook =
    Arc<dyn Fn(SupervisorError) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl fmt::Debug for SupervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorArgs")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// Requests a supervisor serves (closed).
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Adds and starts a child at the end of the start order.
    StartChild(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stops a child and forgets it (it is not restarted).
    StopChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// The supervisor's subtree with each child's state.
    Status(RpcReplyPort<SupervisorSnapshot>),
    /// Internal: a backoff elapsed; restart the children pending restart.
    RestartPending,
}

/// A child's state as the tree shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    Running,
    /// Exited and waiting for its restart (backoff).
    Restarting,
    /// Exited for good (a transient child that ended normally).
    Stopped,
}

/// One child in a [`SupervisorSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildSnapshot {
    pub id: String,
    pub kind: ChildKind,
    pub restart: Restart,
    pub state: ChildState,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// The subtree, for a running child supervisor.
    pub supervisor: Option<Box<SupervisorSnapshot>>,
}

/// A supervisor and its children, recursively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorSnapshot {
    pub name: String,
    pub strategy: Strategy,
    pub children: Vec<ChildSnapshot>,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    state: ChildState,
    restarts: u32,
    last_error: Option<String>,
}

/// The supervisor's state.
pub struct SupervisorState {
    name: String,
    config: SupervisorConfig,
    clock: Arc<dyn Clock>,
    on_give_up: Option<GiveUpHook>,
    children: Vec<Child>,
    /// Times of the restarts inside the intensity window, oldest first.
    restart_log: VecDeque<u64>,
    /// Children the supervisor stopped itself; their exits are not failures.
    expected_exits: HashSet<ActorId>,
}

impl fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorState")
            .field("name", &self.name)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

/// The supervisor actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisor;

/// Spawns a supervisor that is not linked to a parent (a tree root).
pub async fn spawn_root(
    args: SupervisorArgs,
) -> Result<(ActorRef<SupervisorMsg>, tokio::task::JoinHandle<()>), SpawnErr> {
    Actor::spawn(None, Supervisor, args).await
}

/// The subtree under `supervisor`, asked with a bounded wait.
pub async fn snapshot(
    supervisor: &ActorRef<SupervisorMsg>,
    timeout_ms: u64,
) -> Option<SupervisorSnapshot> {
    match supervisor
        .call(
            SupervisorMsg::Status,
            Some(Duration::from_millis(timeout_ms)),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(snap)) => Some(snap),
        _ => None,
    }
}

/// How long a supervisor waits for a child supervisor's snapshot.
const CHILD_SNAPSHOT_TIMEOUT_MS: u64 = 1_000;

enum Exit {
    Normal(Option<String>),
    Abnormal(String),
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        assert!(
            (args.config.intensity.restarts_max as usize) < RESTART_LOG_ENTRIES_MAX,
            "restarts_max above the restart log bound"
        );
        let mut state = SupervisorState {
            name: args.name,
            config: args.config,
            clock: args.clock,
            on_give_up: args.on_give_up,
            children: Vec::new(),
            restart_log: VecDeque::new(),
            expected_exits: HashSet::new(),
        };
        for spec in args.children {
            if let Err(err) = state.add_child(&myself, spec).await {
                state.stop_all().await;
                tree_changed();
                return Err(Box::new(err));
            }
        }
        tree_changed();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_all().await;
        tree_changed();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::StartChild(spec, reply) => {
                let result = state.add_child(&myself, spec).await;
                // Before the reply: the caller's next status sees a new generation.
                tree_changed();
                let _ = reply.send(result);
            }
            SupervisorMsg::StopChild(id, reply) => {
                let result = state.remove_child(&id).await;
                tree_changed();
                let _ = reply.send(result);
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(state.snapshot().await);
            }
            SupervisorMsg::RestartPending => {
                let result = state.restart_pending(&myself).await;
                tree_changed();
                result?;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, exit) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Exit::Abnormal(err.to_string())),
            // Killed (ractor's `Signal::Kill`, whose text is the exit reason; a kill during
            // `post_start` ends the actor without its state): abnormal, as a killed process
            // is in Erlang, so a transient child comes back.
            SupervisionEvent::ActorTerminated(cell, state, reason)
                if state.is_none() || reason.as_deref() == Some(KILLED.as_str()) =>
            {
                (cell, Exit::Abnormal(KILLED.clone()))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, Exit::Normal(reason)),
            _ => return Ok(()),
        };
        if state.expected_exits.remove(&cell.get_id()) {
            return Ok(());
        }
        let result = state.child_exited(&myself, cell.get_id(), exit).await;
        tree_changed();
        result
    }
}

impl SupervisorState {
    fn index_of(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    async fn add_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: ChildSpec,
    ) -> Result<(), SupervisorError> {
        if spec.id.is_empty() || spec.id.len() > CHILD_ID_BYTES_MAX {
            return Err(SupervisorError::BadChildId {
                supervisor: self.name.clone(),
            });
        }
        if self.index_of(&spec.id).is_some() {
            return Err(SupervisorError::DuplicateChild {
                supervisor: self.name.clone(),
                child: spec.id,
            });
        }
        if self.children.len() == SUPERVISOR_CHILDREN_MAX {
            return Err(SupervisorError::TooManyChildren {
                supervisor: self.name.clone(),
            });
        }
        let cell =
            (spec.spawn)(myself.get_cell())
                .await
                .map_err(|err| SupervisorError::StartChild {
                    supervisor: self.name.clone(),
                    child: spec.id.clone(),
                    reason: err.to_string(),
                })?;
        self.children.push(Child {
            spec,
            cell: Some(cell),
            state: ChildState::Running,
            restarts: 0,
            last_error: None,
        });
        Ok(())
    }

    async fn remove_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let Some(index) = self.index_of(id) else {
            return Err(SupervisorError::NoSuchChild {
                supervisor: self.name.clone(),
                child: id.to_owned(),
            });
        };
        self.stop_child(index).await;
        self.children.remove(index);
        Ok(())
    }

    /// Stops one child and waits for it, killing it after [`CHILD_STOP_TIMEOUT_MS`].
    async fn stop_child(&mut self, index: usize) {
        let Some(cell) = self.children[index].cell.take() else {
            return;
        };
        self.expected_exits.insert(cell.get_id());
        let timeout = Duration::from_millis(CHILD_STOP_TIMEOUT_MS);
        if cell
            .stop_and_wait(Some("stopped by supervisor".into()), Some(timeout))
            .await
            .is_err()
        {
            let _ = cell.kill_and_wait(Some(timeout)).await;
        }
    }

    async fn stop_all(&mut self) {
        for index in (0..self.children.len()).rev() {
            self.stop_child(index).await;
        }
    }

    async fn child_exited(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        actor: ActorId,
        exit: Exit,
    ) -> Result<(), ActorProcessingErr> {
        let Some(index) = self
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == actor))
        else {
            return Ok(());
        };
        let child = &mut self.children[index];
        child.cell = None;
        let (abnormal, reason) = match exit {
            Exit::Abnormal(reason) => (true, reason),
            Exit::Normal(reason) => (false, reason.unwrap_or_else(|| "normal exit".into())),
        };
        if abnormal {
            child.last_error = Some(reason.clone());
        }
        let restart = match child.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            if child.spec.restart == Restart::Temporary {
                self.children.remove(index);
            } else {
                child.state = ChildState::Stopped;
            }
            return Ok(());
        }
        self.record_restart(index, &reason).await?;
        self.stop_siblings(index).await;
        self.schedule_restart(myself).await
    }

    /// Counts one restart in the intensity window, or gives up and escalates.
    async fn record_restart(&mut self, index: usize, reason: &str) -> Result<(), SupervisorError> {
        let now_ms = self.clock.now_ms();
        let period_ms = self.config.intensity.period_ms;
        while let Some(&at_ms) = self.restart_log.front() {
            if now_ms.saturating_sub(at_ms) < period_ms {
                break;
            }
            self.restart_log.pop_front();
        }
        self.restart_log.push_back(now_ms);
        let restarts = self.restart_log.len();
        if restarts > self.config.intensity.restarts_max as usize {
            let err = SupervisorError::IntensityExceeded {
                supervisor: self.name.clone(),
                child: self.children[index].spec.id.clone(),
                restarts,
                restarts_max: self.config.intensity.restarts_max,
                period_ms,
                reason: reason.to_owned(),
            };
            self.stop_all().await;
            if let Some(hook) = &self.on_give_up {
                hook(err.clone()).await;
            }
            return Err(err);
        }
        assert!(self.restart_log.len() < RESTART_LOG_ENTRIES_MAX);
        Ok(())
    }

    /// Marks the failed child and the siblings its strategy names as restarting, stopping
    /// running siblings in reverse start order; temporary siblings are forgotten.
    async fn stop_siblings(&mut self, failed: usize) {
        let range = match self.config.strategy {
            Strategy::OneForOne => failed..failed + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => failed..self.children.len(),
        };
        for index in range.clone().rev() {
            if self.children[index].state == ChildState::Stopped && index != failed {
                continue;
            }
            self.stop_child(index).await;
            self.children[index].state = ChildState::Restarting;
        }
        let mut index = range.end;
        while index > range.start {
            index -= 1;
            if self.children[index].spec.restart == Restart::Temporary {
                self.children.remove(index);
            }
        }
    }

    async fn schedule_restart(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let delay_ms = self.config.backoff.delay_ms(self.restart_log.len());
        if delay_ms == 0 {
            return self.restart_pending(myself).await;
        }
        myself.send_after(Duration::from_millis(delay_ms), || {
            SupervisorMsg::RestartPending
        });
        Ok(())
    }

    /// Starts every child marked restarting, in start order. A child that fails to start
    /// counts as another restart; the intensity bound ends the retries.
    async fn restart_pending(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        for index in 0..self.children.len() {
            if self.children[index].state != ChildState::Restarting {
                continue;
            }
            loop {
                let spawn = self.children[index].spec.spawn.clone();
                match spawn(myself.get_cell()).await {
                    Ok(cell) => {
                        let child = &mut self.children[index];
                        child.cell = Some(cell);
                        child.state = ChildState::Running;
                        child.restarts += 1;
                        break;
                    }
                    Err(err) => {
                        let reason = format!("restart failed: {err}");
                        self.children[index].last_error = Some(reason.clone());
                        self.record_restart(index, &reason).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn snapshot(&self) -> SupervisorSnapshot {
        let mut children = Vec::with_capacity(self.children.len());
        for child in &self.children {
            let supervisor = match (&child.cell, child.spec.kind) {
                (Some(cell), ChildKind::Supervisor) => {
                    let actor: ActorRef<SupervisorMsg> = cell.clone().into();
                    snapshot(&actor, CHILD_SNAPSHOT_TIMEOUT_MS)
                        .await
                        .map(Box::new)
                }
                _ => None,
            };
            children.push(ChildSnapshot {
                id: child.spec.id.clone(),
                kind: child.spec.kind,
                restart: child.spec.restart,
                state: child.state,
                restarts: child.restarts,
                last_error: child.last_error.clone(),
                supervisor,
            });
        }
        SupervisorSnapshot {
            name: self.name.clone(),
            strategy: self.config.strategy,
            children,
        }
    }
}
