//! Static check of a module against the agent ABI v1, before anything runs it.
//!
//! The module must validate as core wasm, export `memory`, `runloop_abi_v1`,
//! `runloop_alloc` and `runloop_handle` with the ABI's signatures, and import only the
//! four `runloop` functions (with their signatures) and functions of
//! `wasi_snapshot_preview1`. The sandbox-host checks again when it links; this check lets
//! the kernel refuse a bad bundle with a clear reason instead of a failed spawn.
//!
//! The check validates the whole module (every function body), ≈ 1.5 ms for the 160 KB
//! `echo` module: nearly all of a [`crate::Bundle::load`]. Its answer depends on the
//! module's bytes alone, so the loader remembers the BLAKE3 digests of modules that passed
//! (at most [`PASSED_MODULES_MAX`]): the same bytes loaded again are not
//! validated again. The digest is the loader's own, of the bytes it just read, never one a
//! manifest states.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use wasmparser::types::EntityType;
use wasmparser::{CompositeInnerType, FuncType, ValType, Validator};

/// The WASI module the sandbox links (with nothing in it, see `docs/agent-abi.md`).
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// The host's import module.
pub const RUNLOOP_MODULE: &str = "runloop";

/// Why a module does not speak the ABI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    #[error("not a valid core wasm module: {reason}")]
    Invalid { reason: String },
    #[error("missing export {name:?}")]
    MissingExport { name: &'static str },
    #[error("export {name:?} has the wrong kind or signature (expected {expected})")]
    BadExport {
        name: &'static str,
        expected: &'static str,
    },
    #[error("import {module}.{name} is not part of the agent abi")]
    ForbiddenImport { module: String, name: String },
    #[error("import {module}.{name} has the wrong kind or signature (expected {expected})")]
    BadImport {
        module: String,
        name: String,
        expected: &'static str,
    },
}

const I32: ValType = ValType::I32;

/// (name, params, results, as printed).
type Signature = (
    &'static str,
    &'static [ValType],
    &'static [ValType],
    &'static str,
);

const EXPORTS: [Signature; 3] = [
    ("runloop_abi_v1", &[], &[], "func () -> ()"),
    ("runloop_alloc", &[I32], &[I32], "func (i32) -> i32"),
    (
        "runloop_handle",
        &[I32, I32],
        &[I32],
        "func (i32, i32) -> i32",
    ),
];

const IMPORTS: [Signature; 4] = [
    ("output", &[I32, I32], &[], "func (i32, i32) -> ()"),
    ("fail", &[I32, I32], &[], "func (i32, i32) -> ()"),
    ("host_call", &[I32, I32], &[I32], "func (i32, i32) -> i32"),
    ("host_reply", &[I32], &[], "func (i32) -> ()"),
];

fn same(func: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    func.params() == params && func.results() == results
}

/// Most module digests remembered as having passed [`check`] in this process; past it the
/// memory is emptied and filled again (a kernel runs far fewer distinct modules).
pub const PASSED_MODULES_MAX: usize = 1_024;

/// Digests of the modules that passed [`check`] in this process.
fn passed() -> &'static Mutex<HashSet<crate::Digest>> {
    static PASSED: OnceLock<Mutex<HashSet<crate::Digest>>> = OnceLock::new();
    PASSED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// [`check`], skipped when a module with the same bytes already passed it in this process.
/// `digest` must be the BLAKE3 of `wasm`, computed by the caller from these very bytes (the
/// loader's digest check); it is asserted in debug builds.
pub(crate) fn check_known(wasm: &[u8], digest: crate::Digest) -> Result<(), AbiError> {
    debug_assert!(
        crate::Digest::of(wasm) == digest,
        "the digest is of these bytes"
    );
    if passed().lock().expect("passed lock").contains(&digest) {
        return Ok(());
    }
    check(wasm)?;
    let mut passed = passed().lock().expect("passed lock");
    if passed.len() >= PASSED_MODULES_MAX {
        passed.clear();
    }
    passed.insert(digest);
    Ok(())
}

/// Whether a module with this digest passed [`check`] in this process (tests).
#[doc(hidden)]
pub fn is_known(digest: &crate::Digest) -> bool {
    passed().lock().expect("passed lock").contains(digest)
}

/// Checks `wasm` against the ABI.
pub fn check(wasm: &[u8]) -> Result<(), AbiError> {
    let types = Validator::new()
        .validate_all(wasm)
        .map_err(|e| AbiError::Invalid {
            reason: e.to_string(),
        })?;
    let types = types.as_ref();
    let func_of = |entity: EntityType| -> Option<FuncType> {
        match entity {
            EntityType::Func(id) | EntityType::FuncExact(id) => {
                match &types[id].composite_type.inner {
                    CompositeInnerType::Func(func) => Some(func.clone()),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let imports = types.core_imports().expect("a module, not a component");
    for (module, name, entity) in imports {
        if module == WASI_MODULE {
            if !matches!(entity, EntityType::Func(_)) {
                return Err(AbiError::BadImport {
                    module: module.into(),
                    name: name.into(),
                    expected: "a function",
                });
            }
            continue;
        }
        let known = (module == RUNLOOP_MODULE)
            .then(|| IMPORTS.iter().find(|(n, ..)| *n == name))
            .flatten();
        let Some((_, params, results, expected)) = known else {
            return Err(AbiError::ForbiddenImport {
                module: module.into(),
                name: name.into(),
            });
        };
        let ok = func_of(entity).is_some_and(|f| same(&f, params, results));
        if !ok {
            return Err(AbiError::BadImport {
                module: module.into(),
                name: name.into(),
                expected,
            });
        }
    }
    let exports: Vec<(&str, EntityType)> = types
        .core_exports()
        .expect("a module, not a component")
        .collect();
    let find = |name: &str| exports.iter().find(|(n, _)| *n == name).map(|(_, e)| *e);
    match find("memory") {
        None => return Err(AbiError::MissingExport { name: "memory" }),
        Some(EntityType::Memory(_)) => {}
        Some(_) => {
            return Err(AbiError::BadExport {
                name: "memory",
                expected: "a memory",
            });
        }
    }
    for (name, params, results, expected) in EXPORTS {
        let entity = find(name).ok_or(AbiError::MissingExport { name })?;
        let ok = func_of(entity).is_some_and(|f| same(&f, params, results));
        if !ok {
            return Err(AbiError::BadExport { name, expected });
        }
    }
    Ok(())
}
