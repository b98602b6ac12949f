//! The sandbox-host: one confined process per agent, runtime-only wasmtime inside,
//! speaking only RMP v0 frames to the kernel over one inherited socket.
//!
//! - [`engine`]: the one wasmtime `Config`, shared with `runloop-compile` (this lib target
//!   depends on wasmtime runtime-only; the compiler adds cranelift on its side);
//! - [`confine`]: the confinement steps (namespaces, uid, empty root, capabilities,
//!   seccomp, …), one function each, in order;
//! - [`conn`]: framed I/O on the kernel socket;
//! - [`guest`]: loading a `.cwasm`, the ABI's host imports, one invoke with its limits;
//! - [`session`]: hello → ready → invokes → shutdown;
//! - [`syscalls`]: the seccomp allowlist's syscall numbers, per architecture;
//! - [`wasi`]: the guest's WASI p1 imports, with `poll_oneoff` answered without blocking.
//!
//! Boundary: the guest and, once guest code has run, this whole process are hostile.
//! The kernel validates every frame it receives from here.

pub mod confine;
pub mod conn;
pub mod engine;
pub mod guest;
pub mod session;
pub mod syscalls;
pub mod wasi;
