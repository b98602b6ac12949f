//! The injected wall clock: the store stamps `ts_ms` from here so tests control time.
//! It is the wire crate's clock, re-exported so callers need not depend on both.

pub use runloop_proto::clock::{Clock, ManualClock, SystemClock};
