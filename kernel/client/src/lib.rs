//! `runloop-client`: how a program talks to `runloopd` over its control socket.
//!
//! - [`discovery`]: where the socket is (config v1 "Socket discovery"), from plain paths;
//! - [`wire`]: the framing both sides share (body cap, TTL, how a frame is built);
//! - [`client`]: one typed request → one typed reply, and a `subscribe` stream of typed
//!   status snapshots and run events;
//! - [`trace`]: the renderers of `rlp trace` (ladder, Mermaid, Chrome Trace Event JSON,
//!   the list of recent traces), pure functions of a `TraceView`.
//!
//! Boundary: this crate links neither wasmtime, SQLite nor reqwest, so a TUI (agtop) or a
//! script can talk to the daemon without the kernel's weight; `rlp` uses it for every
//! daemon request. The daemon's side (`runloop_kernel::control`) uses [`wire`] too.

pub mod client;
pub mod discovery;
pub mod trace;
pub mod wire;

pub use client::{ClientError, RunStream, StatusItem, Subscription, request, subscribe, watch};
pub use discovery::SocketPlaces;
