//! Agent bundles: the directory a Runloop agent ships as, parsed and verified.
//!
//! A bundle is a directory holding
//!
//! - `manifest.toml` ([`manifest`]): name, version, ports, the caps file, the entry wasm
//!   and its BLAKE3 digest, `abi = 1`;
//! - `policy.caps` ([`caps`]): the host calls the agent may make;
//! - `agent.wasm`: the module, checked against the agent ABI ([`abi`]);
//! - `signature.toml` ([`sign`]): an Ed25519 signature over the manifest, the policy,
//!   `tools.json` (when present) and the module's digest;
//! - optionally `tools.json`, covered by the signature and otherwise not read here.
//!
//! [`Bundle::load`] reads them with size limits and checks, in order: the manifest, the
//! signature against a [`TrustPolicy`] ([`verify_signature`], the one place signatures are
//! checked), the policy, then the module's digest and ABI (the ABI check's verdict is
//! remembered by the digest of the bytes read, see [`abi`]). A changed covered byte breaks
//! the signature, and a changed module breaks the digest: a tampered bundle never loads.
//! An unsigned bundle, or one signed by a key that is no trust root for its name, loads
//! only when the policy allows unsigned agents, with a warning on every load. [`pack`]
//! writes bundles. [`cache::BundleCache`] remembers verified bundles while their files stay
//! unchanged.
//!
//! Boundary: this crate reads files and checks bytes; it runs nothing. It does not read
//! config: the caller builds the [`TrustPolicy`].

pub mod abi;
pub mod cache;
pub mod caps;
pub mod effects;
pub mod glob;
pub mod grants;
pub mod manifest;
pub mod pack;
pub mod sign;
pub mod trust;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use abi::AbiError;
pub use caps::{CapsError, Denied, Grant, Op, Policy, Verdict};
pub use effects::{EffectClass, EffectKind};
pub use manifest::{Digest, FileName, Manifest, ManifestError, Name, Version};
pub use sign::{KeyId, PublicKey, SIGNATURE_FILE, SecretKey, TOOLS_FILE};
pub use trust::{Scope, TrustPolicy, TrustRoot};

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
    #[error("{path}: {message}")]
    SignatureFile { path: PathBuf, message: String },
    #[error(
        "{path}: the signature by key {key_id} does not match the bundle: the manifest, \
         policy, tools.json or module changed after signing"
    )]
    BadSignature { path: PathBuf, key_id: KeyId },
    #[error(
        "{dir}: the bundle is not signed; sign it (`rlp agent sign {dir} --key FILE`) with a \
         key you trust (`rlp trust add FILE.pub`), or set security.allow_unsigned_agents: true"
    )]
    Unsigned { dir: PathBuf },
    #[error(
        "{dir}: signed by key {key_id}, which is not a trust root; if you trust it, \
         `rlp trust add <its public key file>` (or set security.allow_unsigned_agents: true)"
    )]
    Untrusted { dir: PathBuf, key_id: KeyId },
    #[error(
        "{dir}: signed by trust root {root} ({key_id}) whose scopes ({scopes}) do not cover \
         agent {agent}; widen them (`rlp trust add <key> --scope {agent}`)"
    )]
    OutOfScope {
        dir: PathBuf,
        key_id: KeyId,
        root: String,
        scopes: String,
        agent: String,
    },
}

impl LoadError {
    /// A stable name for the failure (the CLI's error names).
    pub fn name(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "Io",
            LoadError::Unsigned { .. } => "Unsigned",
            LoadError::Untrusted { .. } => "Untrusted",
            LoadError::OutOfScope { .. } => "OutOfScope",
            LoadError::BadSignature { .. } | LoadError::SignatureFile { .. } => "BadSignature",
            LoadError::DigestMismatch { .. } => "DigestMismatch",
            LoadError::Abi { .. } => "BadAbi",
            _ => "BadBundle",
        }
    }

    /// True for the refusals of the trust policy (not signed, not trusted, out of scope),
    /// which `security.allow_unsigned_agents` turns into warnings.
    pub fn is_untrusted(&self) -> bool {
        matches!(
            self,
            LoadError::Unsigned { .. } | LoadError::Untrusted { .. } | LoadError::OutOfScope { .. }
        )
    }
}

/// Who vouches for a loaded bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Signed by a trust root whose scopes cover the agent.
    Trusted { key_id: KeyId, root: String },
    /// The signature verifies; trust was not asked (packing, signing).
    Verified { key_id: KeyId },
    /// Loaded although unsigned or untrusted (`security.allow_unsigned_agents`); the
    /// refusal it would otherwise have been.
    Allowed { refusal: String },
    /// Unsigned, and trust was not asked.
    Unsigned,
}

impl Provenance {
    /// The warning a person should see on each load, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            Provenance::Allowed { refusal } => Some(format!(
                "loaded anyway (security.allow_unsigned_agents is true): {refusal}"
            )),
            _ => None,
        }
    }
}

/// How a load checks the signature.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignatureCheck<'a> {
    /// Against trust roots (every load that runs or installs an agent).
    Policy(&'a TrustPolicy),
    /// A present signature must verify; no signature and any signer are fine.
    IntegrityOnly,
    /// Not read (signing a bundle replaces its signature).
    Skip,
}

/// A loaded, verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    policy: Policy,
    wasm: Vec<u8>,
    provenance: Provenance,
    /// The key whose signature over this bundle verified at load (`None`: unsigned, or the
    /// signature was not read).
    signer: Option<PublicKey>,
    /// What a signature of this bundle covers ([`sign::Covered::message`]).
    pub(crate) signed_message: Vec<u8>,
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

/// Checks the signature in `dir` over `covered` against `trust`, for the agent `agent`:
/// the one place bundle signatures are verified. Returns who vouches and the signer's key
/// (`None`: unsigned, or not read). A signature that does not verify is
/// always refused; unsigned or untrusted is refused unless the policy allows unsigned
/// agents, and then logged as a warning on every load.
pub(crate) fn verify_signature(
    dir: &Path,
    agent: &str,
    covered: &sign::Covered<'_>,
    check: SignatureCheck<'_>,
) -> Result<(Provenance, Option<PublicKey>), LoadError> {
    if matches!(check, SignatureCheck::Skip) {
        return Ok((Provenance::Unsigned, None));
    }
    let path = dir.join(SIGNATURE_FILE);
    let signature = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(sign::BundleSignature::parse(
            &path,
            &read_text(&path, sign::SIGNATURE_BYTES_MAX)?,
        )?),
    };
    if let Some(signature) = &signature
        && !signature.verifies(covered)
    {
        return Err(LoadError::BadSignature {
            path,
            key_id: signature.key().id(),
        });
    }
    let trust = match check {
        SignatureCheck::Policy(trust) => trust,
        SignatureCheck::IntegrityOnly | SignatureCheck::Skip => {
            let provenance =
                signature
                    .as_ref()
                    .map_or(Provenance::Unsigned, |s| Provenance::Verified {
                        key_id: s.key().id(),
                    });
            return Ok((provenance, signature.map(|s| s.key().clone())));
        }
    };
    let provenance = trust_decision(dir, agent, signature.as_ref().map(|s| s.key()), trust)?;
    if let Some(warning) = provenance.warning() {
        tracing::warn!(agent, bundle = %dir.display(), "{warning}");
    }
    Ok((provenance, signature.map(|s| s.key().clone())))
}

/// What `trust` says of the agent `agent` in `dir` whose verified signature is by `signer`
/// (`None`: unsigned): trusted by a root, allowed anyway (`Provenance::Allowed`), or the
/// refusal. Asks nothing of the bytes: the signature was checked before.
fn trust_decision(
    dir: &Path,
    agent: &str,
    signer: Option<&PublicKey>,
    trust: &TrustPolicy,
) -> Result<Provenance, LoadError> {
    let refusal = match signer {
        None => LoadError::Unsigned {
            dir: dir.to_owned(),
        },
        Some(key) => match trust.vouch(key, agent) {
            Ok(root) => {
                return Ok(Provenance::Trusted {
                    key_id: root.id(),
                    root: root.label(),
                });
            }
            Err(None) => LoadError::Untrusted {
                dir: dir.to_owned(),
                key_id: key.id(),
            },
            Err(Some(root)) => LoadError::OutOfScope {
                dir: dir.to_owned(),
                key_id: root.id(),
                root: root.label(),
                scopes: root
                    .scopes()
                    .iter()
                    .map(Scope::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                agent: agent.to_owned(),
            },
        },
    };
    if !trust.allows_unsigned() {
        return Err(refusal);
    }
    Ok(Provenance::Allowed {
        refusal: refusal.to_string(),
    })
}

impl Bundle {
    /// Loads and verifies the bundle in `dir`: manifest, signature against `trust`, policy,
    /// then the module's digest and ABI.
    pub fn load(dir: &Path, trust: &TrustPolicy) -> Result<Self, LoadError> {
        Self::load_with(dir, SignatureCheck::Policy(trust))
    }

    /// Loads the bundle in `dir` checking everything but trust: a signature present must
    /// verify, and who signed is not asked (inspecting a bundle before trusting its key).
    pub fn load_untrusted(dir: &Path) -> Result<Self, LoadError> {
        Self::load_with(dir, SignatureCheck::IntegrityOnly)
    }

    pub(crate) fn load_with(dir: &Path, check: SignatureCheck<'_>) -> Result<Self, LoadError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_text = read_text(&manifest_path, MANIFEST_BYTES_MAX)?;
        let manifest = parse_manifest(&manifest_path, &manifest_text)?;

        let caps_path = dir.join(manifest.caps_file().as_str());
        let caps_max = u64::try_from(caps::CAPS_BYTES_MAX).expect("usize fits in u64");
        let caps_text = read_text(&caps_path, caps_max)?;
        let tools_path = dir.join(TOOLS_FILE);
        let tools = match std::fs::symlink_metadata(&tools_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(read_bounded(&tools_path, sign::TOOLS_BYTES_MAX)?),
        };
        let covered = sign::Covered {
            manifest: manifest_text.as_bytes(),
            caps: caps_text.as_bytes(),
            tools: tools.as_deref(),
            wasm: manifest.wasm_blake3(),
        };
        // Before any parser sees the policy or the module: a bundle whose signature fails
        // is refused on the signature alone.
        let (provenance, signer) =
            verify_signature(dir, manifest.name().as_str(), &covered, check)?;
        let signed_message = covered.message();

        let policy = Policy::parse(&caps_text).map_err(|source| LoadError::Caps {
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
        // `actual` is the digest of the bytes just read: a module whose exact bytes
        // passed the ABI check before in this process is not validated again.
        abi::check_known(&wasm, actual).map_err(|source| LoadError::Abi {
            path: wasm_path,
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            policy,
            wasm,
            provenance,
            signer,
            signed_message,
        })
    }

    /// Asks `trust` again about this loaded bundle: trusted by one of its roots, or allowed
    /// while it allows unsigned agents; else the refusal a load under `trust` would give.
    /// The bytes are not read again (their signature, digest and ABI were checked at
    /// load); only who may vouch is. A bundle loaded without asking trust
    /// ([`Bundle::load_untrusted`]) is judged by its verified signer like any other.
    pub fn trusted_under(&self, trust: &TrustPolicy) -> Result<Provenance, LoadError> {
        trust_decision(
            &self.dir,
            self.manifest.name().as_str(),
            self.signer.as_ref(),
            trust,
        )
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
    /// Who vouches for the bundle (and the warning to show when nobody does).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
}
