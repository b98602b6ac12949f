//! Payload types of the registered kinds: plain Rust, serialized with named fields.
//!
//! Ids inside payloads travel as the same fixed-width hex strings people see.

mod agent;
mod control;
mod core;

pub use self::agent::*;
pub use self::control::*;
pub use self::core::*;
