//! `runloop-tui`: agtop, the live monitor of `runloopd`.
//!
//! - [`model`]: the reducer — status snapshots in, actor rows, CPU %, histories and the
//!   header's figures out (pure);
//! - [`runs`]: the runs reducer — progress events, run lists and reports in; each run's
//!   DAG with node states, its outputs, and the log out (pure);
//! - [`cgroup`]: an agent's cgroup limits and usage, read from this machine's cgroupfs;
//! - [`view`]: what the table shows — tree or flat, sort, filter, collapsed nodes (pure);
//! - [`app`]: the screen's state and what each key does, as commands for the daemon (pure);
//! - [`connect`]: where the daemon's socket is (flag, environment, default places);
//! - [`live`]: the live loop — subscription, polls, keys, commands — on a terminal; or
//!   an `--events` file read line by line instead of a daemon;
//! - [`render`]: drawing the state with ratatui (any backend; tests use `TestBackend`);
//! - [`fixtures`]: a sample kernel tree for tests.
//!
//! Boundary: talks to the daemon only through `runloop-client`; links neither the kernel,
//! wasmtime, SQLite nor reqwest (`tests/deps.rs`).

pub mod app;
pub mod cgroup;
pub mod connect;
pub mod fixtures;
pub mod live;
pub mod model;
pub mod render;
pub mod runs;
pub mod view;
