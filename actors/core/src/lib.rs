//! Runloop's kernel actors: the OTP supervisor, the bus, circuit breakers, quarantine and
//! the scheduler — each a ractor actor whose messages are closed enums.
//!
//! - [`supervisor`]: strategies, restart types, intensity, backoff, escalation;
//! - [`bus`]: topics, publish/subscribe of RMP frames, TTL, dedupe, back-pressure, drops;
//!
//! Invariant: every queue an actor owns is bounded by a named constant; ractor's own
//! mailboxes only carry call/reply requests whose senders wait, or messages whose number
//! is bounded by a permit (see each module's doc).

pub mod bus;
pub mod supervisor;
