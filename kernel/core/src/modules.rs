//! What an agent's start needs from its bundle, kept across starts: the verified bundles
//! by directory ([`BundleCache`]) and the compiled module of each module digest.
//!
//! Before this, every start built a wasmtime engine to find its `.cwasm` (the compiler's
//! cache key includes the engine's settings) and hashed the whole module again, on a
//! blocking thread. Now one compiler per cache directory lives as long as the kernel, and
//! a start whose module (by its verified digest) was compiled into the same directory
//! before only checks that the file is still there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use runloop_bundle::cache::BundleCache;
use runloop_bundle::{Bundle, Digest};
use runloop_compile::Compiler;

/// Most `(cache dir, module digest)` pairs remembered; past it, starts ask the compiler.
pub const COMPILED_MAX: usize = 1024;
/// Most cache directories with a compiler kept.
pub const COMPILERS_MAX: usize = 16;

impl crate::Kernel {
    /// Verified bundles by directory, shared by this kernel's starts and catalogs.
    pub fn bundle_cache(&self) -> &Arc<BundleCache> {
        self.modules.bundles()
    }
}

/// Bundles and compiled modules a kernel keeps (see the module's text).
#[derive(Debug, Default)]
pub struct Modules {
    bundles: Arc<BundleCache>,
    compilers: Mutex<HashMap<PathBuf, Arc<Compiler>>>,
    compiled: Mutex<HashMap<(PathBuf, Digest), PathBuf>>,
}

impl Modules {
    pub fn bundles(&self) -> &Arc<BundleCache> {
        &self.bundles
    }

    /// The `.cwasm` of `bundle`'s module in `dir` (compiled now if it is not there).
    pub async fn compiled(&self, bundle: &Arc<Bundle>, dir: PathBuf) -> Result<PathBuf, String> {
        let key = (dir, bundle.manifest().wasm_blake3());
        let known = self
            .compiled
            .lock()
            .expect("compiled lock")
            .get(&key)
            .cloned();
        if let Some(path) = known
            && path.is_file()
        {
            return Ok(path);
        }
        let known = self
            .compilers
            .lock()
            .expect("compilers lock")
            .get(&key.0)
            .cloned();
        let (wasm, dir) = (bundle.clone(), key.0.clone());
        let (compiler, path) = tokio::task::spawn_blocking(move || {
            let compiler = match known {
                Some(c) => c,
                None => Arc::new(Compiler::new(dir).map_err(|e| e.to_string())?),
            };
            let path = compiler
                .compile_bytes(wasm.wasm())
                .map(|c| c.path)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((compiler, path))
        })
        .await
        .map_err(|e| e.to_string())??;
        {
            let mut compilers = self.compilers.lock().expect("compilers lock");
            if compilers.len() < COMPILERS_MAX || compilers.contains_key(&key.0) {
                compilers.entry(key.0.clone()).or_insert(compiler);
            }
        }
        let mut compiled = self.compiled.lock().expect("compiled lock");
        if compiled.len() < COMPILED_MAX || compiled.contains_key(&key) {
            compiled.insert(key, path.clone());
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed echo bundle, compiled into a fresh cache directory.
    #[tokio::test]
    async fn a_remembered_module_is_compiled_again_once_its_file_is_gone() {
        let echo =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/bundles/echo");
        let cwasm = tempfile::tempdir().unwrap();
        let modules = Modules::default();
        let bundle = modules
            .bundles()
            .load(&echo, &runloop_bundle::TrustPolicy::default())
            .unwrap();
        let first = modules
            .compiled(&bundle, cwasm.path().to_owned())
            .await
            .unwrap();
        assert!(first.is_file(), "compiled into the cache dir");
        let again = modules
            .compiled(&bundle, cwasm.path().to_owned())
            .await
            .unwrap();
        assert_eq!(first, again);
        // Somebody cleaned the cache: the remembered path is not handed out as it is.
        std::fs::remove_file(&first).unwrap();
        let rebuilt = modules
            .compiled(&bundle, cwasm.path().to_owned())
            .await
            .unwrap();
        assert_eq!(rebuilt, first);
        assert!(
            rebuilt.is_file(),
            "compiled again after its file was removed"
        );
    }
}
