//! The kernel side of a sandbox: cgroups, spawning a confined `runloop-sandbox-host`,
//! the RMP conversation with it, host-call answering and reaping.
//!
//! - [`cgroup`]: per-agent cgroups (v1 and v2) under a Runloop parent;
//! - [`process`]: [`Sandbox`], one process: spawn into the cgroup, hello/ready, shutdown,
//!   kill, reap with the signal, per-sandbox facts;
//! - [`spawn`]: a vfork-style clone (`CLONE_VM | CLONE_VFORK`, no copy of the kernel's
//!   address space) into a fresh pid namespace on the long-lived spawner thread, the
//!   async-signal-safe steps before exec (death signal, cgroup, id maps), and the
//!   [`Jail`] a sandbox gets;
//! - `poll`: the `poll` waits on a sandbox's socket and the driver's wake descriptor;
//! - [`pipeline`]: invokes on a [`Sandbox`], pipelined (submit several, drive, collect
//!   each outcome) with the host-call pump and the per-invoke deadline;
//! - [`handler`]: [`HostCallHandler`], implemented by the kernel; [`LocalHandler`] answers
//!   without one;
//! - [`spin`]: [`Spin`], the bounded, adaptive look before a sleep (the driver's waits).
//!
//! Boundary: the sandbox process is hostile; every frame from it is validated here.

pub mod cgroup;
pub mod handler;
pub mod pipeline;
mod poll;
pub mod process;
pub mod spawn;
pub mod spin;

use std::path::PathBuf;

pub use cgroup::{AgentCgroup, CgroupLimits, CgroupStats, CgroupSupport};
pub use handler::{CallSite, HostCallHandler, LocalHandler, OsRandom, RandomSource};
pub use pipeline::{Completed, Driven, SubmitError};
pub use process::{
    CONFINE_FAILED_CODE, ExitStatus, InvokeReport, Reaped, Sandbox, SandboxError, SandboxFacts,
    SpawnConfig, invoke_watchdog_ms,
};
pub use spawn::Jail;
pub use spin::Spin;

/// Environment variable naming the sandbox-host binary explicitly.
pub const SANDBOX_HOST_ENV: &str = "RUNLOOP_SANDBOX_HOST";
/// The binary's file name.
pub const SANDBOX_HOST_NAME: &str = "runloop-sandbox-host";

/// Finds `runloop-sandbox-host`: `$RUNLOOP_SANDBOX_HOST`, else next to the current
/// executable, else one directory up (cargo puts test binaries in `target/<profile>/deps`).
pub fn locate_sandbox_host() -> Result<PathBuf, Vec<PathBuf>> {
    if let Some(path) = std::env::var_os(SANDBOX_HOST_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(vec![path])
        };
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(PathBuf::from);
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join(SANDBOX_HOST_NAME);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
            dir = d.parent().map(PathBuf::from);
        }
    }
    Err(tried)
}
