//! Turns agent `.wasm` (or `.wat`) into `.cwasm` once, cached on disk.
//!
//! The cache key is BLAKE3 over the wasm's own BLAKE3 digest, the engine's settings
//! fingerprint (`Engine::precompile_compatibility_hash` of the shared
//! [`engine_config`](runloop_sandbox_host::engine::engine_config)) and the wasmtime version,
//! so a `.cwasm` is never handed to an engine that would refuse it. Compiling the same
//! module twice gives byte-identical output, so concurrent writers are harmless: each
//! writes a temporary file of its own (process id and a per-process sequence, so two threads
//! of one process never share one) and renames it into place.
//!
//! Boundary: this is the only crate that links cranelift. The sandbox-host binary, built on
//! its own (`cargo build -p runloop-sandbox-host --release`), has no compiler in it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use runloop_sandbox_host::engine::{WASMTIME_VERSION, engine_config};
use wasmtime::Engine;

/// Tells apart the temporary files of concurrent writers within one process. A file name,
/// not an id anything records: replay never sees it.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Largest module accepted for compilation.
pub const WASM_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Environment variable naming the cache directory (overrides the default).
pub const CACHE_DIR_ENV: &str = "RUNLOOP_CWASM_DIR";

/// The first four bytes of every wasm binary.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Checks that `bytes` at least start like a wasm binary (for a file named `.wasm`, which
/// must not be read as WAT text).
pub fn check_binary(bytes: &[u8]) -> Result<(), CompileError> {
    if bytes.starts_with(WASM_MAGIC) {
        Ok(())
    } else {
        Err(CompileError::NotWasm("no \\0asm magic at the start".into()))
    }
}

/// Why a module could not be compiled or cached.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module is {len} bytes, above the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a valid wasm module: {0}")]
    NotWasm(String),
    #[error("parse wat: {0}")]
    Wat(String),
    #[error("build engine: {0}")]
    Engine(String),
    #[error("compile wasm: {0}")]
    Compile(String),
    #[error("create cache dir {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A compiled module in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The `.cwasm` to hand to the sandbox.
    pub path: PathBuf,
    /// BLAKE3 of the wasm binary, hex.
    pub wasm_blake3: String,
    /// Whether it was already in the cache.
    pub cached: bool,
    /// Milliseconds spent compiling (0 when cached).
    pub compile_ms: u64,
}

/// The on-disk `.cwasm` cache and the compiling engine.
#[derive(Debug, Clone)]
pub struct Compiler {
    dir: PathBuf,
    engine: Engine,
    settings: blake3::Hash,
}

/// Feeds `Hash` into BLAKE3, so the engine's compatibility hash becomes a stable digest.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is read")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Compiler {
    /// A compiler caching into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CompileError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CompileError::CacheDir {
            path: dir.clone(),
            source,
        })?;
        let engine =
            Engine::new(&engine_config()).map_err(|e| CompileError::Engine(e.to_string()))?;
        let mut hasher = Blake3Hasher(blake3::Hasher::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        WASMTIME_VERSION.hash(&mut hasher);
        let settings = hasher.0.finalize();
        Ok(Self {
            dir,
            engine,
            settings,
        })
    }

    /// `$RUNLOOP_CWASM_DIR`, else `$HOME/.cache/runloop/cwasm`, else a directory in /tmp.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
            return PathBuf::from(dir);
        }
        match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cache/runloop/cwasm"),
            None => PathBuf::from("/tmp/runloop-cwasm"),
        }
    }

    /// The engine-settings fingerprint in every cache key, hex.
    pub fn settings_fingerprint(&self) -> String {
        self.settings.to_hex().to_string()
    }

    /// Compiles the `.wasm` or `.wat` file at `path`.
    pub fn compile_file(&self, path: &Path) -> Result<Compiled, CompileError> {
        let meta = std::fs::metadata(path).map_err(|source| CompileError::Read {
            path: path.to_owned(),
            source,
        })?;
        if meta.len() > WASM_BYTES_MAX as u64 {
            return Err(CompileError::TooLarge {
                len: usize::try_from(meta.len()).unwrap_or(usize::MAX),
                max: WASM_BYTES_MAX,
            });
        }
        let bytes = std::fs::read(path).map_err(|source| CompileError::Read {
            path: path.to_owned(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "wasm") {
            check_binary(&bytes)?;
        }
        self.compile_bytes(&bytes)
    }

    /// Compiles wasm binary or text (told apart by the `\0asm` magic).
    pub fn compile_bytes(&self, bytes: &[u8]) -> Result<Compiled, CompileError> {
        if bytes.len() > WASM_BYTES_MAX {
            return Err(CompileError::TooLarge {
                len: bytes.len(),
                max: WASM_BYTES_MAX,
            });
        }
        let wasm = if bytes.starts_with(WASM_MAGIC) {
            std::borrow::Cow::Borrowed(bytes)
        } else if std::str::from_utf8(bytes).is_err() {
            // Binary bytes without the magic: not WAT either, and a WAT parse error about
            // them would send the reader looking for a syntax mistake.
            return Err(CompileError::NotWasm(
                "no \\0asm magic, and not WAT text either (not UTF-8)".into(),
            ));
        } else {
            std::borrow::Cow::Owned(
                wat::parse_bytes(bytes)
                    .map_err(|e| CompileError::Wat(e.to_string()))?
                    .into_owned(),
            )
        };
        let wasm_blake3 = blake3::hash(&wasm);
        let mut key = blake3::Hasher::new();
        key.update(b"runloop-cwasm-v1\0");
        key.update(wasm_blake3.as_bytes());
        key.update(self.settings.as_bytes());
        let path = self.dir.join(format!("{}.cwasm", key.finalize().to_hex()));
        if path.is_file() {
            return Ok(Compiled {
                path,
                wasm_blake3: wasm_blake3.to_hex().to_string(),
                cached: true,
                compile_ms: 0,
            });
        }
        let started = Instant::now();
        let cwasm = self
            .engine
            .precompile_module(&wasm)
            .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
        let compile_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let tmp = path.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = |p: &Path| std::fs::write(p, &cwasm);
        write(&tmp)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| CompileError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Compiled {
            path,
            wasm_blake3: wasm_blake3.to_hex().to_string(),
            cached: false,
            compile_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"(module (memory (export "memory") 1)
        (func (export "runloop_abi_v1"))
        (func (export "runloop_alloc") (param i32) (result i32) i32.const 16)
        (func (export "runloop_handle") (param i32 i32) (result i32) i32.const 0))"#;

    fn tempdir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("runloop-compile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn compiles_once_then_hits_the_cache() {
        let dir = tempdir("cache");
        let compiler = Compiler::new(&dir).unwrap();
        let first = compiler.compile_bytes(MINIMAL.as_bytes()).unwrap();
        assert!(!first.cached);
        let second = compiler.compile_bytes(MINIMAL.as_bytes()).unwrap();
        assert!(second.cached);
        assert_eq!(first.path, second.path);
        // The binary form of the same module has the same digest and key.
        let wasm = wat::parse_str(MINIMAL).unwrap();
        assert_eq!(compiler.compile_bytes(&wasm).unwrap().path, first.path);
        // Deterministic: compiling again from scratch gives the same bytes.
        let bytes = std::fs::read(&first.path).unwrap();
        std::fs::remove_file(&first.path).unwrap();
        compiler.compile_bytes(MINIMAL.as_bytes()).unwrap();
        assert_eq!(std::fs::read(&first.path).unwrap(), bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn threads_compiling_the_same_module_at_once_all_succeed() {
        // The sandbox-host tests failed in CI this way: two threads of one process wrote
        // the same temporary file, the first renamed it away, the second's rename found
        // nothing. Each writer now has a temporary file of its own.
        let dir = tempdir("race");
        let compiler = Compiler::new(&dir).unwrap();
        // The window is narrow (one writer's rename between another's truncate and its
        // rename), so many writers, many rounds.
        const WRITERS: usize = 8;
        for round in 0..10 {
            let barrier = std::sync::Barrier::new(WRITERS);
            let paths: Vec<PathBuf> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..WRITERS)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            compiler.compile_bytes(MINIMAL.as_bytes()).map(|c| c.path)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("round {round}: a writer failed: {e}"))
            });
            assert!(paths.windows(2).all(|w| w[0] == w[1]));
            // Nothing temporary is left behind.
            let left: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left.len(), 1, "{left:?}");
            std::fs::remove_file(&paths[0]).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_input_gives_specific_errors() {
        let dir = tempdir("bad");
        let compiler = Compiler::new(&dir).unwrap();
        assert!(matches!(
            compiler.compile_bytes(b"(module"),
            Err(CompileError::Wat(_))
        ));
        assert!(matches!(
            compiler.compile_bytes(b"\0asm\x01\0\0\0\x99"),
            Err(CompileError::Compile(_))
        ));
        // Random bytes are named as not wasm, not as a WAT syntax error.
        let random: Vec<u8> = (0..256u32).map(|i| (i * 167 + 13) as u8).collect();
        let err = compiler.compile_bytes(&random).unwrap_err();
        assert!(matches!(err, CompileError::NotWasm(_)), "{err}");
        assert!(
            err.to_string().starts_with("not a valid wasm module"),
            "{err}"
        );
        // A `.wasm` file is never read as text, even when it is valid UTF-8.
        let text_wasm = dir.join("text.wasm");
        std::fs::write(&text_wasm, "hello, not wasm").unwrap();
        let err = compiler.compile_file(&text_wasm).unwrap_err();
        assert!(matches!(err, CompileError::NotWasm(_)), "{err}");
        assert!(matches!(
            compiler.compile_file(Path::new("/nonexistent/x.wasm")),
            Err(CompileError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_thread_using_module_is_refused_by_the_shared_settings() {
        let dir = tempdir("threads");
        let compiler = Compiler::new(&dir).unwrap();
        let shared = r#"(module (memory 1 1 shared))"#;
        assert!(matches!(
            compiler.compile_bytes(shared.as_bytes()),
            Err(CompileError::Compile(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
