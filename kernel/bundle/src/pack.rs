//! Writing a bundle from an agent crate and its built module (used by build-agents.sh).
//!
//! The agent crate's `Cargo.toml` names the bundle: `[package] version` and
//! `[package.metadata.runloop] name, ports_in, ports_out`; its `policy.caps` is copied.
//! Everything is checked before anything is written, and the written bundle is loaded
//! back, so a packed bundle always loads. A `signature.toml` already there stays only
//! while it still verifies (repacking the same bytes keeps a bundle signed; packing new
//! bytes leaves it unsigned until [`crate::sign::sign`]).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    Bundle, CAPS_FILE, Digest, LoadError, MANIFEST_FILE, Manifest, ManifestError, Name, Policy,
    Version, WASM_BYTES_MAX, WASM_FILE, abi, read_bounded, read_text,
};

/// Most bytes of an agent crate's `Cargo.toml`.
const CRATE_MANIFEST_BYTES_MAX: u64 = 64 * 1024;

/// Why packing failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Read(#[from] LoadError),
    #[error("{path}: {message}")]
    CrateManifest { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Metadata {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("{path}: {source}")]
    Caps {
        path: PathBuf,
        source: crate::CapsError,
    },
    #[error("{path}: {source}")]
    Abi {
        path: PathBuf,
        source: abi::AbiError,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the packed bundle does not load: {0}")]
    Verify(LoadError),
}

#[derive(Deserialize)]
struct CrateToml {
    package: CratePackage,
}

#[derive(Deserialize)]
struct CratePackage {
    version: String,
    metadata: CrateMetadata,
}

#[derive(Deserialize)]
struct CrateMetadata {
    runloop: RunloopMetadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunloopMetadata {
    name: String,
    ports_in: Vec<String>,
    ports_out: Vec<String>,
}

/// Packs `wasm` with the metadata and policy of the agent crate in `crate_dir` into the
/// bundle directory `out` (created if missing; its three files replaced).
pub fn pack(crate_dir: &Path, wasm: &Path, out: &Path) -> Result<Bundle, PackError> {
    let toml_path = crate_dir.join("Cargo.toml");
    let text = read_text(&toml_path, CRATE_MANIFEST_BYTES_MAX)?;
    let parsed: CrateToml = toml::from_str(&text).map_err(|e| PackError::CrateManifest {
        path: toml_path.clone(),
        message: e.message().to_owned(),
    })?;
    let meta = parsed.package.metadata.runloop;
    let metadata = |source| PackError::Metadata {
        path: toml_path.clone(),
        source,
    };
    let ports = |raw: &[String]| -> Result<Vec<Name>, ManifestError> {
        raw.iter().map(|p| Name::parse("port", p)).collect()
    };
    let caps_path = crate_dir.join(CAPS_FILE);
    let caps_max = u64::try_from(crate::caps::CAPS_BYTES_MAX).expect("usize fits in u64");
    let caps_text = read_text(&caps_path, caps_max)?;
    Policy::parse(&caps_text).map_err(|source| PackError::Caps {
        path: caps_path.clone(),
        source,
    })?;
    let wasm_bytes = read_bounded(wasm, WASM_BYTES_MAX)?;
    abi::check(&wasm_bytes).map_err(|source| PackError::Abi {
        path: wasm.to_owned(),
        source,
    })?;
    let manifest = Manifest::new(
        Name::parse("name", &meta.name).map_err(metadata)?,
        Version::parse(&parsed.package.version).map_err(metadata)?,
        ports(&meta.ports_in).map_err(metadata)?,
        ports(&meta.ports_out).map_err(metadata)?,
        Digest::of(&wasm_bytes),
    )
    .map_err(metadata)?;

    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|source| PackError::Write { path, source })
    };
    fs::create_dir_all(out).map_err(|source| PackError::Write {
        path: out.to_owned(),
        source,
    })?;
    write(WASM_FILE, &wasm_bytes)?;
    write(CAPS_FILE, caps_text.as_bytes())?;
    write(MANIFEST_FILE, manifest.to_toml().as_bytes())?;
    match Bundle::load_untrusted(out) {
        Err(LoadError::BadSignature { path, .. } | LoadError::SignatureFile { path, .. }) => {
            fs::remove_file(&path).map_err(|source| PackError::Write { path, source })?;
            Bundle::load_untrusted(out).map_err(PackError::Verify)
        }
        loaded => loaded.map_err(PackError::Verify),
    }
}
