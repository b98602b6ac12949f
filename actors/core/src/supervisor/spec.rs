//! How a supervisor's children are described ([`ChildSpec`]: how to start one, its restart
//! type, whether it is a supervisor) and found again after a restart ([`Slot`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorRef, SpawnErr};
use runloop_proto::Clock;
use serde::Serialize;

use super::{Restart, Supervisor, SupervisorArgs, SupervisorConfig, SupervisorMsg};

pub(super) type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;
pub(super) type SpawnFn = Arc<dyn Fn(ActorCell) -> SpawnFuture + Send + Sync>;

/// Whether a child is itself a supervisor (its subtree shows in [`SupervisorSnapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    Worker,
    Supervisor,
}

/// How to start (and restart) one child.
#[derive(Clone)]
pub struct ChildSpec {
    pub(super) id: String,
    pub(super) restart: Restart,
    pub(super) kind: ChildKind,
    pub(super) spawn: SpawnFn,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A worker built afresh by `make` at every (re)start.
    pub fn worker<A, F>(id: impl Into<String>, restart: Restart, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::spawned(id, None, restart, None, make)
    }

    /// A worker whose current `ActorRef` is written into `slot` at every (re)start, so
    /// that others can find the running instance after a restart.
    pub fn worker_published<A, F>(
        id: impl Into<String>,
        restart: Restart,
        slot: Slot<A::Msg>,
        make: F,
    ) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::spawned(id, None, restart, Some(slot), make)
    }

    /// [`worker_published`](Self::worker_published), also registered under `name` in
    /// ractor's registry at every (re)start — for singletons other actors look up by name
    /// (the POG, the model broker). The old instance has stopped, and so unregistered,
    /// before the supervisor starts the new one.
    pub fn worker_registered<A, F>(
        id: impl Into<String>,
        name: Option<String>,
        restart: Restart,
        slot: Slot<A::Msg>,
        make: F,
    ) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::spawned(id, name, restart, Some(slot), make)
    }

    /// The one worker builder: spawn linked (under `name` if any), then publish to `slot`.
    fn spawned<A, F>(
        id: impl Into<String>,
        name: Option<String>,
        restart: Restart,
        slot: Option<Slot<A::Msg>>,
        make: F,
    ) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let spawn: SpawnFn = Arc::new(move |parent: ActorCell| {
            let (actor, args) = make();
            let slot = slot.clone();
            let name = name.clone();
            Box::pin(async move {
                let (actor_ref, _join) = Actor::spawn_linked(name, actor, args, parent).await?;
                if let Some(slot) = slot {
                    slot.set(actor_ref.clone());
                }
                Ok(actor_ref.get_cell())
            })
        });
        Self {
            id: id.into(),
            restart,
            kind: ChildKind::Worker,
            spawn,
        }
    }

    /// A nested supervisor with its own policy and children.
    pub fn supervisor(
        id: impl Into<String>,
        restart: Restart,
        config: SupervisorConfig,
        clock: Arc<dyn Clock>,
        children: Vec<ChildSpec>,
    ) -> Self {
        let id = id.into();
        let name = id.clone();
        Self::worker(id, restart, move || {
            (
                Supervisor,
                SupervisorArgs {
                    name: name.clone(),
                    config,
                    clock: clock.clone(),
                    children: children.clone(),
                    on_give_up: None,
                },
            )
        })
        .with_kind(ChildKind::Supervisor)
    }

    /// A nested supervisor from full [`SupervisorArgs`] (its name becomes the child id),
    /// published in `slot` at every (re)start.
    pub fn supervisor_published(
        restart: Restart,
        args: SupervisorArgs,
        slot: Slot<SupervisorMsg>,
    ) -> Self {
        let id = args.name.clone();
        Self::worker_published(id, restart, slot, move || (Supervisor, args.clone()))
            .with_kind(ChildKind::Supervisor)
    }

    fn with_kind(mut self, kind: ChildKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Where the running instance of a restartable actor can be found.
///
/// The supervisor writes each (re)started instance into the slot; a reader waiting out a
/// restart ([`Slot::wait_running`]) is woken by that write instead of polling.
#[derive(Debug)]
pub struct Slot<M: ractor::Message>(Arc<SlotInner<M>>);

#[derive(Debug)]
struct SlotInner<M: ractor::Message> {
    actor: std::sync::Mutex<Option<ActorRef<M>>>,
    /// Woken after every write of a new instance.
    filled: tokio::sync::Notify,
}

impl<M: ractor::Message> Clone for Slot<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: ractor::Message> Default for Slot<M> {
    fn default() -> Self {
        Self(Arc::new(SlotInner {
            actor: std::sync::Mutex::new(None),
            filled: tokio::sync::Notify::new(),
        }))
    }
}

impl<M: ractor::Message> Slot<M> {
    fn set(&self, actor: ActorRef<M>) {
        *self.0.actor.lock().expect("slot lock") = Some(actor);
        self.0.filled.notify_waiters();
    }

    /// The latest started instance, if it is still alive.
    pub fn get(&self) -> Option<ActorRef<M>> {
        let actor = self.0.actor.lock().expect("slot lock").clone()?;
        match actor.get_status() {
            ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping => None,
            _ => Some(actor),
        }
    }

    /// The live instance, other than `not`, waiting at most `wait_ms` for the supervisor
    /// to start one: woken as soon as it writes the slot. `None` when none came in time.
    pub async fn wait_running(&self, not: Option<ActorId>, wait_ms: u64) -> Option<ActorRef<M>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        loop {
            // Registered before the slot is read, so a write in between is not missed.
            let filled = self.0.filled.notified();
            tokio::pin!(filled);
            filled.as_mut().enable();
            if let Some(actor) = self.get()
                && Some(actor.get_id()) != not
            {
                return Some(actor);
            }
            if tokio::time::timeout_at(deadline, filled).await.is_err() {
                return None;
            }
        }
    }
}
