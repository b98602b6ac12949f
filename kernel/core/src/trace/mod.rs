//! A run's crossings: recorded as they happen ([`tape`]), read back as a ladder's data
//! ([`view`]), and replayed from the recording without repeating a side effect
//! ([`replay`]).

pub mod control;
pub mod replay;
pub mod tape;
pub mod view;

pub use replay::{ReplayError, ReplayHandlers, replay};
pub use tape::{CrossingLog, NodeTape};
