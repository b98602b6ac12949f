//! The one wasmtime engine configuration, shared by the compiler and the sandbox.
//!
//! A `.cwasm` loads only into an engine with the same settings, so both sides build their
//! `Config` here and nowhere else. Every wasm feature the agent ABI does not use is turned
//! off explicitly, so the settings do not drift with cargo feature unification (the
//! compiler's build has `cranelift`, the sandbox's does not). Fuel and epoch interruption
//! are always on: they change the compiled code, and they cost nothing measurable.

use runloop_proto::payloads::SandboxLimits;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmFeatures,
};

/// The pinned wasmtime version (see the workspace manifest); part of every cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Period of the epoch ticker while an invoke runs; the wall-time limit's resolution.
pub const EPOCH_TICK_MS: u64 = 2;
/// Most bytes of wasm stack a guest may use.
pub const WASM_STACK_BYTES_MAX: usize = 512 * 1024;

/// Every wasm proposal named explicitly: on for what Rust's std on wasm32-wasip1 emits,
/// off for everything else, so nothing depends on compiled-in defaults.
pub const WASM_FEATURES: &[(WasmFeatures, bool)] = &[
    (WasmFeatures::MUTABLE_GLOBAL, true),
    (WasmFeatures::SATURATING_FLOAT_TO_INT, true),
    (WasmFeatures::SIGN_EXTENSION, true),
    (WasmFeatures::MULTI_VALUE, true),
    (WasmFeatures::BULK_MEMORY, true),
    (WasmFeatures::REFERENCE_TYPES, true),
    (WasmFeatures::SIMD, true),
    (WasmFeatures::EXTENDED_CONST, true),
    (WasmFeatures::THREADS, false),
    (WasmFeatures::SHARED_EVERYTHING_THREADS, false),
    (WasmFeatures::GC, false),
    (WasmFeatures::FUNCTION_REFERENCES, false),
    (WasmFeatures::RELAXED_SIMD, false),
    (WasmFeatures::MULTI_MEMORY, false),
    (WasmFeatures::MEMORY64, false),
    (WasmFeatures::TAIL_CALL, false),
    (WasmFeatures::CUSTOM_PAGE_SIZES, false),
    (WasmFeatures::WIDE_ARITHMETIC, false),
    (WasmFeatures::STACK_SWITCHING, false),
    (WasmFeatures::EXCEPTIONS, false),
    (WasmFeatures::LEGACY_EXCEPTIONS, false),
    (WasmFeatures::COMPONENT_MODEL, false),
    (WasmFeatures::MEMORY_CONTROL, false),
];

/// The engine configuration every Runloop engine uses.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    // Set through `wasm_features`, which every build has: the per-feature setters exist
    // only when wasmtime's matching cargo feature is on, and that differs between the
    // compiler's build and the sandbox's.
    for (feature, on) in WASM_FEATURES {
        config.wasm_features(*feature, *on);
    }
    config.concurrency_support(false);
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(WASM_STACK_BYTES_MAX);
    config
}

/// A new engine with [`engine_config`].
pub fn new_engine() -> wasmtime::Result<Engine> {
    Engine::new(&engine_config())
}

/// Instance slots in a sandbox's pool: one invoke runs at a time, and its store is gone
/// before the next one starts; the second slot is slack.
pub const POOL_INSTANCES: u32 = 2;
/// Linear memory reset in place between invokes (only its dirty pages, found with the
/// `PAGEMAP_SCAN` ioctl where the kernel has it) instead of being handed back to the
/// kernel with `madvise`: covers a Rust agent's 1 MiB shadow stack, its data and a small
/// heap. Above this, pages are discarded and fault in again on the next invoke.
pub const MEMORY_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Table bytes reset in place between invokes.
pub const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// Largest linear memory wasmtime can reserve for a 32-bit memory.
const MEMORY_BYTES_CEILING: u64 = 4 << 30;

/// The sandbox's engine: [`engine_config`] plus a pooling allocator sized for one agent.
///
/// Every invoke gets a fresh instance (nothing survives between messages); pooling makes
/// that cheap. The slot's memory, table and instance space are reserved once and reset
/// in place between invokes (dirty pages copied back from the `.cwasm` image), instead of
/// an `mmap`/`munmap` pair per invoke and the TLB shoot-downs that come with unmapping. The
/// allocation strategy does not change compiled code, so `.cwasm` files made with
/// [`engine_config`] load unchanged. The pool's memory cap is the agent's memory limit;
/// the store's limiter still sees every growth first and turns a crossing into
/// `MemoryLimit`.
pub fn new_sandbox_engine(limits: &SandboxLimits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    let memory_bytes = limits
        .memory_bytes_max
        .min(MEMORY_BYTES_CEILING)
        .next_multiple_of(WASM_PAGE_BYTES);
    pool.total_core_instances(POOL_INSTANCES)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES)
        .total_stacks(0)
        .total_component_instances(0)
        .max_memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        // Probed (and `/proc/self/pagemap` opened) in `Engine::new`, before seccomp; the
        // allowlist admits exactly this ioctl.
        .pagemap_scan(Enabled::Auto);
    let mut config = engine_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// The wasm page size.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_builds_and_refuses_threads() {
        let engine = new_engine().unwrap();
        let _ = engine.precompile_compatibility_hash();
    }

    #[test]
    fn the_pooled_engine_loads_what_the_plain_engine_compiled() {
        use std::hash::{Hash, Hasher};
        let hash = |engine: &Engine| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        use runloop_proto::registry::PayloadExample;
        let pooled = new_sandbox_engine(&SandboxLimits::example()).unwrap();
        assert_eq!(hash(&new_engine().unwrap()), hash(&pooled));
    }
}
