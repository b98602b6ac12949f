//! Ed25519 bundle signatures: the key files, the signed message and `signature.toml`.
//!
//! The signature covers, behind a domain-separation prefix, the BLAKE3 of the manifest's
//! bytes, of the policy's bytes, of `tools.json` (when the bundle has one) and the
//! module's digest (the manifest's `entry.blake3`, which the loader checks against the
//! module): changing any covered byte breaks it. The file names the signer's public key,
//! so a tampered bundle is refused by the signature alone, whoever signed it; whether the
//! signer is trusted is the [`crate::trust`] policy's question, asked after.
//!
//! Key files are one line of text (`#` lines are comments):
//! `runloop-ed25519:<64 hex>` for a public key, `runloop-ed25519-secret:<64 hex>` (the
//! 32-byte seed) for a secret one. A key's id is the first 8 bytes of the BLAKE3 of its
//! public half, in hex.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{Bundle, Digest, LoadError, read_text};

/// The signature's file name inside a bundle.
pub const SIGNATURE_FILE: &str = "signature.toml";
/// The optional tool descriptions' file name inside a bundle (covered when present).
pub const TOOLS_FILE: &str = "tools.json";
/// Most bytes of `signature.toml`.
pub const SIGNATURE_BYTES_MAX: u64 = 4 * 1024;
/// Most bytes of `tools.json`.
pub const TOOLS_BYTES_MAX: u64 = 1024 * 1024;
/// Most bytes of a key file.
pub const KEY_FILE_BYTES_MAX: u64 = 4 * 1024;
/// A public key's text prefix.
pub const PUBLIC_PREFIX: &str = "runloop-ed25519:";
/// A secret key's text prefix.
pub const SECRET_PREFIX: &str = "runloop-ed25519-secret:";
/// Bytes of a key id (shown as twice as many hex digits).
pub const KEY_ID_BYTES: usize = 8;
/// What every signed message starts with, so a bundle signature is never valid as
/// anything else the same key signs.
const DOMAIN: &[u8] = b"runloop bundle signature v1\n";

/// Why a key could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("read key {path}: {source}")]
    Read {
        path: PathBuf,
        source: Box<LoadError>,
    },
    #[error("{what}: expected one line `{prefix}<64 hex digits>`")]
    Syntax { what: String, prefix: &'static str },
    #[error("{what}: not a valid Ed25519 public key")]
    BadPoint { what: String },
}

/// A public key: what a trust root holds and a signature names.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// A short name for a public key: the first [`KEY_ID_BYTES`] of its BLAKE3, in hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

/// A secret signing key (zeroed when dropped).
pub struct SecretKey(SigningKey);

/// Parses `text` as one key line with `prefix`, skipping blank and `#` lines.
fn key_bytes(text: &str, prefix: &'static str, what: &str) -> Result<[u8; 32], KeyError> {
    let syntax = || KeyError::Syntax {
        what: what.to_owned(),
        prefix,
    };
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(syntax());
    };
    let hex_part = line.strip_prefix(prefix).ok_or_else(syntax)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| syntax())?;
    Ok(bytes)
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    read_text(path, KEY_FILE_BYTES_MAX).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

impl PublicKey {
    /// Parses `runloop-ed25519:<hex>` (`what` names the text in errors).
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        let bytes = key_bytes(text, PUBLIC_PREFIX, what)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::BadPoint {
                what: what.to_owned(),
            })
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_key_file(path)?, &path.display().to_string())
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        let hash = blake3::hash(self.0.as_bytes());
        KeyId(hex::encode(&hash.as_bytes()[..KEY_ID_BYTES]))
    }

    /// The one-line text form, `runloop-ed25519:<hex>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }

    fn verify(&self, message: &[u8], signature: &ed25519_dalek::Signature) -> bool {
        self.0.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SecretKey {
    /// The key whose seed is `seed` (32 random bytes the caller draws: the RNG is injected).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Parses `runloop-ed25519-secret:<hex>`.
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        key_bytes(text, SECRET_PREFIX, what).map(Self::from_seed)
    }

    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Self::parse(&read_key_file(path)?, &path.display().to_string())
    }

    /// The one-line text form, `runloop-ed25519-secret:<hex>`.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", hex::encode(self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public().id())
    }
}

/// The bytes a signature covers, as read by the loader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Covered<'a> {
    pub manifest: &'a [u8],
    pub caps: &'a [u8],
    pub tools: Option<&'a [u8]>,
    pub wasm: Digest,
}

impl Covered<'_> {
    /// The signed message: prefix, then fixed-size digests (no length ambiguity).
    pub(crate) fn message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(DOMAIN.len() + 4 * 32 + 1);
        message.extend_from_slice(DOMAIN);
        message.extend_from_slice(blake3::hash(self.manifest).as_bytes());
        message.extend_from_slice(blake3::hash(self.caps).as_bytes());
        match self.tools {
            Some(tools) => {
                message.push(1);
                message.extend_from_slice(blake3::hash(tools).as_bytes());
            }
            None => message.push(0),
        }
        message.extend_from_slice(&self.wasm.bytes());
        message
    }
}

/// `signature.toml`, exactly.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    key: String,
    key_id: String,
    signature: String,
}

/// A parsed `signature.toml`: who signed, and the signature.
#[derive(Debug, Clone)]
pub struct BundleSignature {
    key: PublicKey,
    signature: ed25519_dalek::Signature,
}

impl BundleSignature {
    /// Parses `signature.toml` text; the key id it states must be its key's.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::SignatureFile {
            path: path.to_owned(),
            message,
        };
        let raw: RawSignature = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        let key = PublicKey::parse(&raw.key, "key").map_err(|e| bad(e.to_string()))?;
        if key.id().as_str() != raw.key_id {
            return Err(bad(format!(
                "key_id {:?} is not the id of its key ({})",
                raw.key_id,
                key.id()
            )));
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(&raw.signature, &mut bytes)
            .map_err(|_| bad("signature: expected 128 hex digits".into()))?;
        Ok(Self {
            key,
            signature: ed25519_dalek::Signature::from_bytes(&bytes),
        })
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Whether the signature is its key's over `covered`.
    pub(crate) fn verifies(&self, covered: &Covered<'_>) -> bool {
        self.key.verify(&covered.message(), &self.signature)
    }

    fn to_toml(&self) -> String {
        let raw = RawSignature {
            key: self.key.to_text(),
            key_id: self.key.id().0,
            signature: hex::encode(self.signature.to_bytes()),
        };
        format!(
            "# Ed25519 signature of this bundle's manifest, policy, tools.json and module digest \
             (docs/trust.md)\n{}",
            toml::to_string(&raw).expect("a signature always serialises")
        )
    }
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Signs the bundle in `dir` with `key`, replacing any `signature.toml`. The bundle is
/// verified first (manifest, policy, module digest and ABI; an old signature is ignored),
/// and loaded again after, so a signed bundle always verifies.
pub fn sign(dir: &Path, key: &SecretKey) -> Result<KeyId, SignError> {
    let bundle = Bundle::load_with(dir, crate::SignatureCheck::Skip)?;
    let signature = BundleSignature {
        key: key.public(),
        signature: key.0.sign(&bundle.signed_message),
    };
    let path = dir.join(SIGNATURE_FILE);
    let tmp = dir.join(format!(".{SIGNATURE_FILE}.tmp"));
    let write = |source| SignError::Write {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, signature.to_toml()).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)?;
    Bundle::load_with(dir, crate::SignatureCheck::IntegrityOnly)?;
    Ok(key.public().id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text() {
        let secret = SecretKey::from_seed([7; 32]);
        let again = SecretKey::parse(&secret.to_text(), "k").unwrap();
        assert_eq!(again.public(), secret.public());
        let public = PublicKey::parse(
            &format!("# a comment\n{}\n", secret.public().to_text()),
            "k",
        )
        .unwrap();
        assert_eq!(public, secret.public());
        assert_eq!(public.id().as_str().len(), 2 * KEY_ID_BYTES);
    }

    #[test]
    fn bad_key_text_is_refused() {
        let good = SecretKey::from_seed([1; 32]).public().to_text();
        for bad in [
            "",
            "runloop-ed25519:abcd",
            &good.replace(PUBLIC_PREFIX, "ed25519:"),
            &format!("{good}\n{good}"),
            &good.to_uppercase(),
        ] {
            assert!(PublicKey::parse(bad, "k").is_err(), "{bad:?}");
        }
        // A secret key is not a public one.
        let secret = SecretKey::from_seed([1; 32]).to_text();
        assert!(PublicKey::parse(&secret, "k").is_err());
    }

    #[test]
    fn garbage_signature_files_and_keys_are_errors_not_panics() {
        // A fixed xorshift stream: the parsers of untrusted text see mutated real files.
        let secret = SecretKey::from_seed([9; 32]);
        let real = BundleSignature {
            key: secret.public(),
            signature: secret.0.sign(b"x"),
        }
        .to_toml();
        let path = Path::new("signature.toml");
        assert!(BundleSignature::parse(path, &real).is_ok());
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let mut bytes = real.clone().into_bytes();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = (next() % 128) as u8;
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = BundleSignature::parse(path, &text);
            let _ = PublicKey::parse(&text, "k");
            let _ = SecretKey::parse(&text, "k");
        }
    }

    #[test]
    fn the_message_covers_every_part() {
        let wasm = Digest::of(b"module");
        let base = Covered {
            manifest: b"manifest",
            caps: b"caps",
            tools: None,
            wasm,
        };
        let variants = [
            Covered {
                manifest: b"manifest2",
                ..base
            },
            Covered {
                caps: b"caps2",
                ..base
            },
            Covered {
                tools: Some(b""),
                ..base
            },
            Covered {
                wasm: Digest::of(b"other"),
                ..base
            },
        ];
        for other in variants {
            assert_ne!(other.message(), base.message(), "{other:?}");
        }
        assert!(base.message().starts_with(DOMAIN));
    }
}
