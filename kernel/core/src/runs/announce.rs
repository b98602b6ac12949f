//! A run's announcements: its progress events, each published only once every record the
//! run handed to the POG before it is committed.
//!
//! The run does not wait for its records' commits (a chain of nodes would wait one fsync
//! per node): a node's start and finish are queued for the POG's next group commit
//! (`PogMsg::WriteLater`) and the run goes on. What anybody outside sees — a node started
//! or finished, the run's end — goes through one [`Announcer`] per run, in order, and is
//! published only after the records before it are durable. So a crash loses at most steps
//! nobody was told about (those nodes run again on resume), and a node anybody saw finish
//! is never run again.
//!
//! The announcer belongs to the run, not to one instance of its actor: when the run's
//! supervisor restarts a failed actor, the new instance feeds the same queue, so what the
//! old one handed over is committed and published before the new one's `run.started`.

use std::sync::{Arc, Weak};

use runloop_pog::EventKind;
use runloop_proto::payloads::RunProgress;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::Engine;
use super::record::{InFlightRecord, begin_record};

/// What the announcer is handed, in the run's order.
enum Item {
    /// A record handed to the POG: waited for (and timed as a crossing) before anything
    /// after it.
    Record(InFlightRecord),
    /// A progress event, published once everything before it is.
    Event(RunProgress),
    /// Answered once everything before it is committed and published.
    Mark(oneshot::Sender<()>),
}

/// One run's ordered announcer (cheap to clone: every clone feeds the same queue).
///
/// The queue holds the run's own records and events, a few per attempt, and drains as
/// their commits land (within the POG's `LATER_FLUSH_MS`), so it needs no bound of its
/// own: the run's nodes and attempts bound it.
///
/// It holds the engine weakly (the engine holds the run's supervisor, which holds the
/// announcer for the run's restarts): once the engine is gone, nothing is recorded or
/// published any more.
#[derive(Clone)]
pub(super) struct Announcer {
    tx: mpsc::UnboundedSender<Item>,
    engine: Weak<Engine>,
    trace_id: Arc<str>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").finish_non_exhaustive()
    }
}

impl Announcer {
    /// Starts the announcer task of run `trace_id`; it ends once every clone is dropped
    /// and its queue is drained.
    pub(super) fn start(engine: Weak<Engine>, trace_id: &str) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task_engine = engine.clone();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                match item {
                    Item::Record(record) => {
                        if let Some(engine) = task_engine.upgrade() {
                            record.committed(&engine).await;
                        }
                    }
                    Item::Event(event) => {
                        if let Some(engine) = task_engine.upgrade() {
                            engine.publish(event);
                        }
                    }
                    Item::Mark(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self {
            tx,
            engine,
            trace_id: trace_id.into(),
        }
    }

    /// Hands one event of the run to the POG now (its place in the commit order is fixed
    /// here, [`begin_record`]); later events wait for its commit.
    pub(super) fn record(&self, kind: EventKind, payload: Value) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let record = begin_record(&engine, &self.trace_id, kind, payload);
        self.send(Item::Record(record));
    }

    /// Publishes `event` once every record handed over before it is committed.
    pub(super) fn publish(&self, event: RunProgress) {
        self.send(Item::Event(event));
    }

    /// Resolves once everything handed over before it is committed and published.
    pub(super) fn mark(&self) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        self.send(Item::Mark(done));
        rx
    }

    fn send(&self, item: Item) {
        // The task ends only once every sender is gone, so this cannot fail while `self`
        // lives; a failure would mean the task panicked, and the event is lost with it.
        if self.tx.send(item).is_err() {
            tracing::warn!("a run's announcer is gone: an event was not published");
        }
    }
}
