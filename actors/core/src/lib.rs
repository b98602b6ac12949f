//! Runloop's kernel actors: the OTP supervisor, the bus, circuit breakers, quarantine and
//! the scheduler — each a ractor actor whose messages are closed enums.
//!
//! - [`supervisor`]: strategies, restart types, intensity, backoff, escalation;
//! - [`bus`]: topics, publish/subscribe of RMP frames, TTL, dedupe, back-pressure, drops;
//! - [`breaker`]: a circuit breaker per agent (closed → open → half-open → closed);
//! - [`quarantine`]: agents parked with a human-readable reason until released;
//! - [`scheduler`]: a global bound on invokes, fair share between openings, budgets;
//! - [`delivery`]: the in-flight ledger (at-least-once across restarts) and dead letters;
//! - [`names`]: validated agent and opening names.
//!
//! Invariant: every queue an actor owns is bounded by a named constant; ractor's own
//! mailboxes only carry call/reply requests whose senders wait, or messages whose number
//! is bounded (the bus's single `Drain` wake-up; see each module's doc).
//!
//! Invariant: the bus, breaker, quarantine and scheduler keep their state in a store
//! created outside the actor and handed in its arguments (like [`delivery::InFlight`]), so
//! a supervisor restart continues with the same state.

pub mod breaker;
pub mod bus;
pub mod delivery;
pub mod names;
pub mod quarantine;
pub mod scheduler;
pub mod supervisor;
