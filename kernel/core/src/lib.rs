//! Runloop's kernel: config v1, boot and wiring of the supervisor tree, the control plane.
//!
//! - [`agents`]: agents from bundle directories: start, send, stop, list;
//! - [`config`]: file → env → flags, unknown keys rejected with their path, modes, sockets;
//! - [`grants`]: capability grants (`rlp cap`): admitted, recorded in the POG, loaded at boot;
//! - [`kernel`]: the tree (root → system → runs), embedded or inside `runloopd`;
//! - [`control`]: the control socket (RMP frames only, SO_PEERCRED, idempotent requests);
//! - [`metrics`]: the kernel process's own CPU and RSS;
//! - [`otel`]: OpenTelemetry export of crossings (one span each) and metrics over OTLP;
//! - [`services`]: the POG and model broker singletons `runloopd` starts, from config.
//! - [`trace`]: recording a run's crossings, the ladder's data, replay.
//!
//! Boundary: the kernel wires actors together; it holds no actor logic of its own.

pub mod agents;
pub mod config;
pub mod control;
pub mod deliver;
pub mod drill;
pub mod effects;
pub mod grants;
pub mod kernel;
pub mod metrics;
pub mod modules;
pub mod otel;
pub mod runs;
pub mod services;
pub mod trace;
pub mod warnings;

pub use kernel::{Kernel, KernelOptions, PogService};
