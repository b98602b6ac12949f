//! Agent bundles: the directory a Runloop agent ships as, parsed and verified.
//!
//! A bundle is a directory holding
//!
//! - `manifest.toml` ([`manifest`]): name, version, ports, the caps file, the entry wasm
//!   and its BLAKE3 digest, `abi = 1`;
//! - `policy.caps` ([`caps`]): the host calls the agent may make;
//! - `agent.wasm`: the module, checked against the agent ABI ([`abi`]).
//!
//! [`Bundle::load`] reads all three with size limits, and refuses a bundle whose wasm
//! digest differs from the manifest's (a tampered `agent.wasm` never loads), whose policy
//! has a bad line, or whose module does not speak the ABI. [`pack`] writes bundles.
//!
//! Boundary: this crate reads files and checks bytes; it runs nothing. Signatures
//! (Ed25519 in DESIGN.md) are not part of the format yet: [`verify_signature`] is the one
//! place that will check them.

pub mod abi;
pub mod caps;
pub mod effects;
pub mod manifest;
pub mod pack;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use abi::AbiError;
pub use caps::{CapsError, Denied, Grant, Op, Policy, Verdict};
pub use effects::{EffectClass, EffectKind};
pub use manifest::{Digest, FileName, Manifest, ManifestError, Name, Version};

/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// The policy's file name the packer writes.
pub const CAPS_FILE: &str = "policy.caps";
/// The module's file name the packer writes.
pub const WASM_FILE: &str = "agent.wasm";
/// Most bytes of `manifest.toml`.
pub const MANIFEST_BYTES_MAX: u64 = 16 * 1024;
/// Most bytes of an agent module.
pub const WASM_BYTES_MAX: u64 = 32 * 1024 * 1024;

/// Why a bundle did not load; each variant names the step and the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {bytes} bytes or more, at most {max}")]
    TooLarge { path: PathBuf, bytes: u64, max: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{path}: {message}")]
    ManifestSyntax { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("{path}: {source}")]
    Caps { path: PathBuf, source: CapsError },
    #[error(
        "{path}: blake3 {actual} does not match the manifest's {expected}: the module was changed after packing"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path}: {source}")]
    Abi { path: PathBuf, source: AbiError },
}

/// A loaded, verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    policy: Policy,
    wasm: Vec<u8>,
}

/// Reads at most `max` bytes of `path`; more is an error, not a truncation.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let len = u64::try_from(bytes.len()).expect("usize fits in u64");
    if len > max {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            bytes: len,
            max,
        });
    }
    Ok(bytes)
}

pub(crate) fn read_text(path: &Path, max: u64) -> Result<String, LoadError> {
    String::from_utf8(read_bounded(path, max)?).map_err(|_| LoadError::NotText {
        path: path.to_owned(),
    })
}

/// Parses `manifest.toml` text (`path` is only for messages).
pub fn parse_manifest(path: &Path, text: &str) -> Result<Manifest, LoadError> {
    let raw = toml::from_str(text).map_err(|e| LoadError::ManifestSyntax {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })?;
    Manifest::from_raw(raw).map_err(|source| LoadError::Manifest {
        path: path.to_owned(),
        source,
    })
}

/// The hook for bundle signatures. The format has no signature yet (DESIGN.md's Ed25519
/// signature over the manifest is a later issue), so this accepts every manifest; when the
/// format gains one, this is where it is verified, before any other file is read.
pub fn verify_signature(_dir: &Path, _manifest: &Manifest) -> Result<(), LoadError> {
    Ok(())
}

impl Bundle {
    /// Loads and verifies the bundle in `dir`: manifest, signature hook, policy, then the
    /// module's digest and ABI.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = parse_manifest(
            &manifest_path,
            &read_text(&manifest_path, MANIFEST_BYTES_MAX)?,
        )?;
        verify_signature(dir, &manifest)?;

        let caps_path = dir.join(manifest.caps_file().as_str());
        let caps_max = u64::try_from(caps::CAPS_BYTES_MAX).expect("usize fits in u64");
        let policy =
            Policy::parse(&read_text(&caps_path, caps_max)?).map_err(|source| LoadError::Caps {
                path: caps_path.clone(),
                source,
            })?;

        let wasm_path = dir.join(manifest.wasm_file().as_str());
        let wasm = read_bounded(&wasm_path, WASM_BYTES_MAX)?;
        let actual = Digest::of(&wasm);
        if actual != manifest.wasm_blake3() {
            return Err(LoadError::DigestMismatch {
                path: wasm_path,
                expected: manifest.wasm_blake3(),
                actual,
            });
        }
        abi::check(&wasm).map_err(|source| LoadError::Abi {
            path: wasm_path,
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            policy,
            wasm,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// The verified module bytes (their digest is the manifest's).
    pub fn wasm(&self) -> &[u8] {
        &self.wasm
    }
}
