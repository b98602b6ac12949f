//! The agent actor: every agent is a ractor actor backed by its own `runloop-sandbox-host`
//! process in its own cgroup.
//!
//! - [`actor`]: [`AgentActor`] — spawn confined, invoke at least once across restarts
//!   (the shared in-flight ledger), quarantine on malformed frames, breaker per agent,
//!   dead letters with a reason;
//! - [`driver`]: [`Driver`] — the thread that owns a running instance's sandbox and
//!   pipelines invokes through it, answering callers as outcomes arrive;
//! - [`handler`]: [`KernelHandler`] — every host call checked against the agent's
//!   `policy.caps` before any service sees it; denials audited; services reached through
//!   the typed [`Services`] handed in at boot;
//! - [`decorate`]: [`HandlerFactory`] — what wraps the kernel's handler per agent
//!   (recording now; replay and fault injection next);
//! - [`budgets`]: [`RunBudgets`] — the token/µUSD budgets of the runs in progress, carried
//!   to the broker on every `model.*` call a run's node makes;
//! - [`metrics`]: per-agent counters and CPU/RSS sampled from `/proc` and the cgroup;
//! - [`warm`]: [`WarmPool`] — ready sandboxes an instance takes instead of spawning (a
//!   restart, a run's node start), given back by instances that stop normally.
//!
//! Boundary: the sandbox is hostile; its frames are validated by `runloop-sandbox`, its
//! host calls by the policy here. This crate owns processes so `runloop-actors` need not.

pub mod actor;
pub mod budgets;
pub mod decorate;
pub mod driver;
pub mod handler;
pub mod metrics;
pub mod models;
pub mod warm;

pub use actor::{
    AgentActor, AgentConfig, AgentError, AgentMsg, AgentReply, AgentShared, CgroupPlan,
    INVOKE_ATTEMPTS_MAX, InvokeResult, Links, Pending,
};
pub use budgets::{RunBudgets, RunLimits};
pub use decorate::{
    HandlerFactory, HostCallRecord, MemorySink, PlainHandlers, RecordSink, Recording,
    RecordingHandlers,
};
pub use driver::{Driver, Job, PIPELINE_DEPTH};
pub use handler::{
    ConfirmGate, Confirmation, EffectsJournal, KernelHandler, Services, SharedClock, SharedRandom,
};
pub use metrics::{AgentMetrics, AgentSnapshot, AgentState};
pub use warm::{WarmKey, WarmPool, WarmStats};
