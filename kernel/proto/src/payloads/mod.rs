//! Payload types of the registered kinds: plain Rust, serialized with named fields.
//!
//! Ids inside payloads travel as the same fixed-width hex strings people see.

mod agent;
mod control;
mod core;
mod host_results;
mod run;
mod sandbox;
mod status;
mod status_delta;
mod trace;

pub use self::agent::*;
pub use self::control::*;
pub use self::core::*;
pub use self::host_results::*;
pub use self::run::*;
pub use self::sandbox::*;
pub use self::status::*;
pub use self::status_delta::*;
pub use self::trace::*;
