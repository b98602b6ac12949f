//! The scheduler: a global bound on concurrent invokes, fair share between openings,
//! back-pressure instead of unbounded queues, and budget hooks.
//!
//! - At most [`SchedulerConfig::concurrency_max`] invokes hold a [`Permit`] at once.
//! - Waiting requests queue per opening, at most [`SchedulerConfig::opening_queue_max`]
//!   each and [`QUEUED_TOTAL_MAX`] in all; beyond that a request is refused at once with
//!   [`ScheduleError::QueueFull`] (back-pressure the caller can see) instead of queueing.
//! - Fair share: when a slot frees, it goes to the waiting opening with the fewest running
//!   invokes, ties to the one granted least recently. An opening that queued a thousand
//!   requests gets no more than its share while another opening is waiting.
//! - Budgets: an opening may have a [`Budget`] (tokens, micro-USD). A request reserves its
//!   estimate up front (refused with [`ScheduleError::BudgetExceeded`] when spent +
//!   reserved + estimate would pass the budget); [`Permit::finish`] reconciles the
//!   reservation with the actual usage. A permit dropped without `finish` is charged its
//!   estimate, so a crashed caller never makes spending disappear.
//!
//! Lifecycle: the accounting (openings, queues, running grants, budgets, reservations and
//! spending) lives in a [`SchedulerStore`] created once outside the actor (the kernel
//! captures it in the child spec) and handed as the actor's arguments, so a restarted
//! scheduler continues with the same slots in use, the same reservations and the same
//! waiters. Requests are calls (the caller waits for "queued" or an error, then awaits its
//! grant on a oneshot). A [`Permit`] holds the store, not an actor instance: finishing or
//! dropping it releases its slot in the store and hands freed slots to waiters right there,
//! so a release is never lost to a restart and the ractor mailbox holds only the waiting
//! callers' requests.
//!
//! Fast path: a request that would be granted at once — a slot free and nobody queued in
//! any opening — is granted by the caller straight from the store, under the one mutex
//! hold that checks and reserves it ([`SchedulerStore::try_grant`]), with the same
//! checks, reservation and bookkeeping as a grant by the actor; only a request that has
//! to wait calls the actor (a ractor call and a wake-up of its task each way). Since the
//! fast path is taken only when nobody waits, it never overtakes a queued request, and
//! fair share decides every slot freed while someone waits. Only a handle made with
//! [`SchedulerHandle::with_store`] (the kernel's) takes the fast path; one made from the
//! actor alone ([`SchedulerHandle::new`]) asks the actor every time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::names::OpeningId;

/// Most requests waiting across all openings.
pub const QUEUED_TOTAL_MAX: usize = 16_384;
/// Most openings the scheduler tracks.
pub const OPENINGS_MAX: usize = 4_096;
/// How long a caller waits for the scheduler to accept or refuse a request.
pub const SCHEDULER_CALL_TIMEOUT_MS: u64 = 5_000;
/// Spending in the units the broker accounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub tokens: u64,
    pub micro_usd: u64,
}

impl Budget {
    fn plus(self, other: Budget) -> Budget {
        Budget {
            tokens: self.tokens.saturating_add(other.tokens),
            micro_usd: self.micro_usd.saturating_add(other.micro_usd),
        }
    }
    fn minus(self, other: Budget) -> Budget {
        Budget {
            tokens: self.tokens.saturating_sub(other.tokens),
            micro_usd: self.micro_usd.saturating_sub(other.micro_usd),
        }
    }
    fn fits_in(self, limit: Budget) -> bool {
        self.tokens <= limit.tokens && self.micro_usd <= limit.micro_usd
    }
}

/// The scheduler's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub concurrency_max: usize,
    pub opening_queue_max: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            concurrency_max: 64,
            opening_queue_max: 1_024,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule for opening {opening}: {queued} requests already wait (at most {queue_max}); try again later"
    )]
    QueueFull {
        opening: OpeningId,
        queued: usize,
        queue_max: usize,
    },
    #[error(
        "schedule for opening {opening}: budget exceeded: need {need_tokens} tokens / {need_micro_usd} micro-USD, {left_tokens} / {left_micro_usd} left"
    )]
    BudgetExceeded {
        opening: OpeningId,
        need_tokens: u64,
        need_micro_usd: u64,
        left_tokens: u64,
        left_micro_usd: u64,
    },
    #[error("schedule for opening {opening}: the scheduler already tracks {OPENINGS_MAX} openings")]
    TooManyOpenings { opening: OpeningId },
    #[error("schedule: the scheduler is not running")]
    Down,
}

/// Identifies one granted permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct GrantId(u64);

struct Waiter {
    estimate: Budget,
    grant: oneshot::Sender<GrantId>,
}

#[derive(Default)]
struct Opening {
    running: usize,
    queue: VecDeque<Waiter>,
    last_granted_seq: u64,
    granted_total: u64,
    budget: Option<Budget>,
    reserved: Budget,
    spent: Budget,
}

/// One opening in a [`SchedulerSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpeningSnapshot {
    pub opening: OpeningId,
    pub running: usize,
    pub queued: usize,
    pub granted_total: u64,
    pub budget: Option<Budget>,
    pub reserved: Budget,
    pub spent: Budget,
}

/// The scheduler as `rlp status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchedulerSnapshot {
    pub concurrency_max: usize,
    pub running: usize,
    pub queued: usize,
    pub openings: Vec<OpeningSnapshot>,
}

/// The scheduler's requests (closed).
#[derive(Debug)]
pub enum SchedulerMsg {
    Request {
        opening: OpeningId,
        estimate: Budget,
        reply: RpcReplyPort<Result<Queued, ScheduleError>>,
    },
    SetBudget(
        OpeningId,
        Option<Budget>,
        RpcReplyPort<Result<(), ScheduleError>>,
    ),
    Snapshot(RpcReplyPort<SchedulerSnapshot>),
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("estimate", &self.estimate)
            .finish()
    }
}

/// A request the scheduler queued: its grant arrives on `grant`.
#[derive(Debug)]
pub struct Queued {
    grant: Option<oneshot::Receiver<GrantId>>,
    store: SchedulerStore,
}

impl Drop for Queued {
    /// A grant that arrived but was never taken (the caller gave up between the grant
    /// and reading it) frees its slot and returns its reservation.
    fn drop(&mut self) {
        if let Some(mut grant) = self.grant.take() {
            grant.close();
            if let Ok(grant) = grant.try_recv() {
                self.store.release(grant, Some(Budget::default()));
            }
        }
    }
}

/// The scheduler's accounting.
struct Accounts {
    config: SchedulerConfig,
    openings: BTreeMap<OpeningId, Opening>,
    running: HashMap<GrantId, (OpeningId, Budget)>,
    queued_total: usize,
    next_grant: u64,
}

/// The scheduler's accounting, shared by its instances and by the permits it granted.
#[derive(Clone)]
pub struct SchedulerStore {
    accounts: Arc<Mutex<Accounts>>,
}

impl fmt::Debug for SchedulerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accounts = self.lock();
        f.debug_struct("SchedulerStore")
            .field("running", &accounts.running.len())
            .field("queued_total", &accounts.queued_total)
            .finish_non_exhaustive()
    }
}

impl SchedulerStore {
    pub fn new(config: SchedulerConfig) -> Self {
        assert!(
            config.concurrency_max >= 1,
            "the scheduler must run something"
        );
        assert!(config.opening_queue_max <= QUEUED_TOTAL_MAX);
        Self {
            accounts: Arc::new(Mutex::new(Accounts {
                config,
                openings: BTreeMap::new(),
                running: HashMap::new(),
                queued_total: 0,
                next_grant: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Accounts> {
        // Each operation below keeps the accounts consistent at every step that can
        // panic (none is expected), so a poisoned lock still holds usable accounts.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees `grant`'s slot, charges `usage` (its estimate when `None`) and hands free
    /// slots to waiters.
    fn release(&self, grant: GrantId, usage: Option<Budget>) {
        let mut accounts = self.lock();
        accounts.release(grant, usage);
        accounts.dispatch();
    }

    /// The fast path: grants a request at once, in one mutex hold, when a slot is free and
    /// nobody waits in any opening — exactly what the actor would do with it (the same
    /// refusals, the same reservation, the same grant bookkeeping). `None`: the request
    /// has to queue, ask the actor.
    pub fn try_grant(
        &self,
        opening: &OpeningId,
        estimate: Budget,
    ) -> Option<Result<Queued, ScheduleError>> {
        let mut accounts = self.lock();
        if accounts.queued_total > 0 || accounts.running.len() >= accounts.config.concurrency_max {
            return None;
        }
        let result = accounts
            .request(opening.clone(), estimate)
            .map(|grant| Queued {
                grant: Some(grant),
                store: self.clone(),
            });
        // The request is the only one queued and a slot is free: this grants it, before
        // the lock is released (the grant waits in its oneshot, read without a wake-up).
        accounts.dispatch();
        assert_eq!(
            accounts.queued_total, 0,
            "the fast path leaves nobody queued"
        );
        Some(result)
    }
}

/// The scheduler's state: the store.
#[derive(Debug)]
pub struct SchedulerState {
    store: SchedulerStore,
}

/// The scheduler actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduler;

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerStore;

    async fn pre_start(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        store: SchedulerStore,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        // Slots may have been freed while no instance ran; hand them out.
        store.lock().dispatch();
        Ok(SchedulerState { store })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        message: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        let mut accounts = state.store.lock();
        match message {
            SchedulerMsg::Request {
                opening,
                estimate,
                reply,
            } => {
                let result = accounts.request(opening, estimate).map(|grant| Queued {
                    grant: Some(grant),
                    store: state.store.clone(),
                });
                let _ = reply.send(result);
                accounts.dispatch();
            }
            SchedulerMsg::SetBudget(opening, budget, reply) => {
                let result = accounts.opening(&opening).map(|o| o.budget = budget);
                let _ = reply.send(result);
            }
            SchedulerMsg::Snapshot(reply) => {
                let _ = reply.send(accounts.snapshot());
            }
        }
        Ok(())
    }
}

impl Accounts {
    fn opening(&mut self, id: &OpeningId) -> Result<&mut Opening, ScheduleError> {
        if !self.openings.contains_key(id) && self.openings.len() == OPENINGS_MAX {
            return Err(ScheduleError::TooManyOpenings {
                opening: id.clone(),
            });
        }
        Ok(self.openings.entry(id.clone()).or_default())
    }

    fn request(
        &mut self,
        id: OpeningId,
        estimate: Budget,
    ) -> Result<oneshot::Receiver<GrantId>, ScheduleError> {
        let queue_max = self.config.opening_queue_max;
        let total_full = self.queued_total >= QUEUED_TOTAL_MAX;
        let opening = self.opening(&id)?;
        if opening.queue.len() >= queue_max || total_full {
            return Err(ScheduleError::QueueFull {
                queued: opening.queue.len(),
                opening: id,
                queue_max,
            });
        }
        if let Some(budget) = opening.budget {
            let committed = opening.spent.plus(opening.reserved);
            if !committed.plus(estimate).fits_in(budget) {
                let left = budget.minus(committed);
                return Err(ScheduleError::BudgetExceeded {
                    opening: id,
                    need_tokens: estimate.tokens,
                    need_micro_usd: estimate.micro_usd,
                    left_tokens: left.tokens,
                    left_micro_usd: left.micro_usd,
                });
            }
        }
        opening.reserved = opening.reserved.plus(estimate);
        let (tx, rx) = oneshot::channel();
        opening.queue.push_back(Waiter {
            estimate,
            grant: tx,
        });
        self.queued_total += 1;
        Ok(rx)
    }

    /// Grants free slots: each to the waiting opening with the fewest running invokes,
    /// ties to the one granted least recently.
    fn dispatch(&mut self) {
        while self.running.len() < self.config.concurrency_max {
            let Some(id) = self
                .openings
                .iter()
                .filter(|(_, o)| !o.queue.is_empty())
                .min_by_key(|(_, o)| (o.running, o.last_granted_seq))
                .map(|(id, _)| id.clone())
            else {
                return;
            };
            let grant = GrantId(self.next_grant);
            self.next_grant += 1;
            let opening = self.openings.get_mut(&id).expect("chosen above");
            let waiter = opening.queue.pop_front().expect("non-empty queue");
            self.queued_total -= 1;
            if waiter.grant.send(grant).is_err() {
                // The caller gave up while waiting: return its reservation.
                opening.reserved = opening.reserved.minus(waiter.estimate);
                continue;
            }
            opening.running += 1;
            opening.granted_total += 1;
            opening.last_granted_seq = grant.0;
            self.running.insert(grant, (id, waiter.estimate));
        }
    }

    fn release(&mut self, grant: GrantId, usage: Option<Budget>) {
        let Some((id, estimate)) = self.running.remove(&grant) else {
            return;
        };
        let opening = self
            .openings
            .get_mut(&id)
            .expect("a running grant's opening");
        opening.running -= 1;
        opening.reserved = opening.reserved.minus(estimate);
        opening.spent = opening.spent.plus(usage.unwrap_or(estimate));
    }

    fn snapshot(&self) -> SchedulerSnapshot {
        SchedulerSnapshot {
            concurrency_max: self.config.concurrency_max,
            running: self.running.len(),
            queued: self.queued_total,
            openings: self
                .openings
                .iter()
                .map(|(id, o)| OpeningSnapshot {
                    opening: id.clone(),
                    running: o.running,
                    queued: o.queue.len(),
                    granted_total: o.granted_total,
                    budget: o.budget,
                    reserved: o.reserved,
                    spent: o.spent,
                })
                .collect(),
        }
    }
}

/// The right to run one invoke; give it back with [`Permit::finish`].
#[derive(Debug)]
pub struct Permit {
    grant: GrantId,
    opening: OpeningId,
    store: SchedulerStore,
    finished: bool,
}

impl Permit {
    pub fn opening(&self) -> &OpeningId {
        &self.opening
    }

    /// Frees the slot and reconciles the reservation with what the invoke really used.
    pub fn finish(mut self, usage: Budget) {
        self.finished = true;
        self.store.release(self.grant, Some(usage));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            self.store.release(self.grant, None);
        }
    }
}

/// A request the scheduler accepted; await [`PendingGrant::granted`].
#[derive(Debug)]
pub struct PendingGrant {
    opening: OpeningId,
    queued: Queued,
}

impl PendingGrant {
    /// Waits for a slot. Dropping the future gives the place in the queue up.
    pub async fn granted(self) -> Result<Permit, ScheduleError> {
        let mut queued = self.queued;
        let rx = queued.grant.as_mut().expect("taken only here or on drop");
        let grant = rx.await.map_err(|_| ScheduleError::Down)?;
        queued.grant = None;
        Ok(Permit {
            grant,
            opening: self.opening,
            store: queued.store.clone(),
            finished: false,
        })
    }
}

/// A cloneable client of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    actor: ActorRef<SchedulerMsg>,
    /// For the fast path; `None`: every request goes through the actor.
    store: Option<SchedulerStore>,
}

impl SchedulerHandle {
    /// A client of `actor` that asks the actor for every permit.
    pub fn new(actor: ActorRef<SchedulerMsg>) -> Self {
        Self { actor, store: None }
    }

    /// A client of `actor`, whose accounting is `store` (the one it was started with).
    pub fn with_store(actor: ActorRef<SchedulerMsg>, store: SchedulerStore) -> Self {
        Self {
            actor,
            store: Some(store),
        }
    }

    pub fn actor(&self) -> &ActorRef<SchedulerMsg> {
        &self.actor
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> SchedulerMsg,
    ) -> Option<T> {
        let timeout = Some(Duration::from_millis(SCHEDULER_CALL_TIMEOUT_MS));
        match self.actor.call(msg, timeout).await {
            Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
            _ => None,
        }
    }

    /// Queues a request (reserving `estimate`), or refuses it at once.
    pub async fn request(
        &self,
        opening: &OpeningId,
        estimate: Budget,
    ) -> Result<PendingGrant, ScheduleError> {
        // Straight from the store when nobody waits and a slot is free — while the actor
        // runs, so a stopped scheduler refuses as it always did.
        if let Some(store) = &self.store
            && !matches!(
                self.actor.get_status(),
                ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
            )
            && let Some(result) = store.try_grant(opening, estimate)
        {
            return Ok(PendingGrant {
                opening: opening.clone(),
                queued: result?,
            });
        }
        let id = opening.clone();
        let queued = self
            .ask(|reply| SchedulerMsg::Request {
                opening: id,
                estimate,
                reply,
            })
            .await
            .unwrap_or(Err(ScheduleError::Down))?;
        Ok(PendingGrant {
            opening: opening.clone(),
            queued,
        })
    }

    /// Queues a request and waits for its slot.
    pub async fn acquire(
        &self,
        opening: &OpeningId,
        estimate: Budget,
    ) -> Result<Permit, ScheduleError> {
        self.request(opening, estimate).await?.granted().await
    }

    pub async fn set_budget(
        &self,
        opening: &OpeningId,
        budget: Option<Budget>,
    ) -> Result<(), ScheduleError> {
        let id = opening.clone();
        self.ask(|r| SchedulerMsg::SetBudget(id, budget, r))
            .await
            .unwrap_or(Err(ScheduleError::Down))
    }

    pub async fn snapshot(&self) -> Option<SchedulerSnapshot> {
        self.ask(SchedulerMsg::Snapshot).await
    }
}
