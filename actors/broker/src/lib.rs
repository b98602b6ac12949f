//! Runloop's model broker: the one door through which agents reach language models.
//!
//! Agents' `model.complete` / `model.embed` host calls arrive at the [`actor::BrokerActor`]
//! singleton, which hands them to a [`broker::Broker`]: validate, route (first matching rule,
//! else the default), answer from the cache if the request is deterministic, reserve the
//! estimated tokens and micro-USD in every budget scope (refusing before any network traffic),
//! call the provider, reconcile with the reported usage, account, and return the response with a
//! [`types::Record`] the caller persists for replay.

pub mod accounting;
pub mod actor;
pub mod broker;
pub mod budget;
pub mod cache;
pub mod clock;
pub mod config;
pub mod local_server;
pub mod provider;
pub mod secrets;
pub mod types;

pub use accounting::{Counters, Stats};
pub use actor::{BrokerActor, BrokerArgs, BrokerMsg};
pub use broker::{Broker, BrokerError, BuildError, ProviderInfo};
pub use clock::{Clock, KernelTimer, ManualClock, SystemClock, Timer};
pub use config::ModelsConfig;
pub use provider::ProviderError;
pub use secrets::{SecretResolver, SecretsConfig};
pub use types::*;
