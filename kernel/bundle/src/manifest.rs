//! `manifest.toml`: what a bundle is (name, version, ports, caps file, entry wasm + digest).
//!
//! Parsed in two steps: TOML into a raw struct that refuses unknown keys, then every field
//! into a validating newtype. A [`Manifest`] that exists is a valid one.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The only agent ABI version this crate accepts (`docs/agent-abi.md`).
pub const ABI_VERSION: u32 = 1;
/// Longest agent or port name.
pub const NAME_BYTES_MAX: usize = 64;
/// Most ports per direction.
pub const PORTS_MAX: usize = 32;
/// Longest file name inside a bundle.
pub const FILE_NAME_BYTES_MAX: usize = 128;

/// Why a manifest's content is not valid (TOML syntax errors are reported by the loader).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("abi {found} is not supported (this runloop speaks abi {ABI_VERSION})")]
    AbiUnsupported { found: u32 },
    #[error("{field} {value:?}: {reason}")]
    BadName {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("version {value:?}: expected MAJOR.MINOR.PATCH with decimal numbers")]
    BadVersion { value: String },
    #[error("ports.{direction}: at least one port is needed")]
    NoPorts { direction: &'static str },
    #[error("ports.{direction}: {count} ports, at most {PORTS_MAX}")]
    TooManyPorts {
        direction: &'static str,
        count: usize,
    },
    #[error("ports.{direction}: port {port:?} listed twice")]
    DuplicatePort {
        direction: &'static str,
        port: String,
    },
    #[error("{field} {value:?}: must be a plain file name inside the bundle (no '/', no '..')")]
    BadFileName { field: &'static str, value: String },
    #[error("entry.blake3 {value:?}: expected 64 lowercase hex digits")]
    BadDigest { value: String },
}

/// A lowercase identifier: `[a-z][a-z0-9_]*`, at most [`NAME_BYTES_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Validates `value` as the name in `field`.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, ManifestError> {
        let bad = |reason| ManifestError::BadName {
            field,
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() || value.len() > NAME_BYTES_MAX {
            return Err(bad("must be 1 to 64 bytes"));
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("must start with a lowercase letter"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(bad("may hold only a-z, 0-9 and '_'"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn parse(value: &str) -> Result<Self, ManifestError> {
        let bad = || ManifestError::BadVersion {
            value: value.to_owned(),
        };
        let mut parts = value.split('.').map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        });
        let (Some(major), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Self {
            major: major?,
            minor: minor?,
            patch: patch?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A file name inside the bundle directory: no separators, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, ManifestError> {
        let plain = !value.is_empty()
            && value.len() <= FILE_NAME_BYTES_MAX
            && value != "."
            && value != ".."
            && !value.contains(['/', '\\', '\0']);
        if !plain {
            return Err(ManifestError::BadFileName {
                field,
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Parses 64 lowercase hex digits (the only form a manifest holds).
    pub fn parse_hex(value: &str) -> Result<Self, ManifestError> {
        let bad = || ManifestError::BadDigest {
            value: value.to_owned(),
        };
        if value.len() != 64
            || !value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        blake3::Hash::from_hex(value)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|_| bad())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The 32 digest bytes.
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A bundle's manifest, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    name: Name,
    version: Version,
    ports_in: Vec<Name>,
    ports_out: Vec<Name>,
    caps: FileName,
    wasm: FileName,
    wasm_blake3: Digest,
}

/// The TOML shape, exactly; unknown keys are errors.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    abi: u32,
    name: String,
    version: String,
    caps: String,
    ports: RawPorts,
    entry: RawEntry,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    #[serde(rename = "in")]
    inputs: Vec<String>,
    #[serde(rename = "out")]
    outputs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    wasm: String,
    blake3: String,
}

fn parse_ports(direction: &'static str, raw: &[String]) -> Result<Vec<Name>, ManifestError> {
    if raw.is_empty() {
        return Err(ManifestError::NoPorts { direction });
    }
    if raw.len() > PORTS_MAX {
        return Err(ManifestError::TooManyPorts {
            direction,
            count: raw.len(),
        });
    }
    let mut seen = BTreeSet::new();
    let mut ports = Vec::with_capacity(raw.len());
    for port in raw {
        let name = Name::parse("port", port)?;
        if !seen.insert(name.clone()) {
            return Err(ManifestError::DuplicatePort {
                direction,
                port: port.clone(),
            });
        }
        ports.push(name);
    }
    Ok(ports)
}

impl Manifest {
    /// Builds a manifest from its parts (the packer's way in).
    pub fn new(
        name: Name,
        version: Version,
        ports_in: Vec<Name>,
        ports_out: Vec<Name>,
        wasm_blake3: Digest,
    ) -> Result<Self, ManifestError> {
        let to_raw = |ports: &[Name]| ports.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        Ok(Self {
            ports_in: parse_ports("in", &to_raw(&ports_in))?,
            ports_out: parse_ports("out", &to_raw(&ports_out))?,
            name,
            version,
            caps: FileName(crate::CAPS_FILE.to_owned()),
            wasm: FileName(crate::WASM_FILE.to_owned()),
            wasm_blake3,
        })
    }

    pub(crate) fn from_raw(raw: RawManifest) -> Result<Self, ManifestError> {
        if raw.abi != ABI_VERSION {
            return Err(ManifestError::AbiUnsupported { found: raw.abi });
        }
        Ok(Self {
            name: Name::parse("name", &raw.name)?,
            version: Version::parse(&raw.version)?,
            ports_in: parse_ports("in", &raw.ports.inputs)?,
            ports_out: parse_ports("out", &raw.ports.outputs)?,
            caps: FileName::parse("caps", &raw.caps)?,
            wasm: FileName::parse("entry.wasm", &raw.entry.wasm)?,
            wasm_blake3: Digest::parse_hex(&raw.entry.blake3)?,
        })
    }

    /// The manifest as TOML, in the canonical layout the packer writes.
    pub fn to_toml(&self) -> String {
        let raw = RawManifest {
            abi: ABI_VERSION,
            name: self.name.0.clone(),
            version: self.version.to_string(),
            caps: self.caps.0.clone(),
            ports: RawPorts {
                inputs: self.ports_in.iter().map(|p| p.0.clone()).collect(),
                outputs: self.ports_out.iter().map(|p| p.0.clone()).collect(),
            },
            entry: RawEntry {
                wasm: self.wasm.0.clone(),
                blake3: self.wasm_blake3.to_hex(),
            },
        };
        toml::to_string(&raw).expect("a manifest always serialises")
    }

    pub fn name(&self) -> &Name {
        &self.name
    }
    pub fn version(&self) -> Version {
        self.version
    }
    pub fn ports_in(&self) -> &[Name] {
        &self.ports_in
    }
    pub fn ports_out(&self) -> &[Name] {
        &self.ports_out
    }
    pub fn caps_file(&self) -> &FileName {
        &self.caps
    }
    pub fn wasm_file(&self) -> &FileName {
        &self.wasm
    }
    pub fn wasm_blake3(&self) -> Digest {
        self.wasm_blake3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Name::parse("name", "echo_2").is_ok());
        for bad in ["", "Echo", "2echo", "e-cho", "e cho", &"a".repeat(65)] {
            assert!(
                matches!(Name::parse("name", bad), Err(ManifestError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn versions_are_checked() {
        assert_eq!(Version::parse("1.20.3").unwrap().to_string(), "1.20.3");
        for bad in [
            "1.2",
            "1.2.3.4",
            "1..3",
            "a.b.c",
            "1.2.-3",
            "1.2.99999999999",
            "+1.2.3",
        ] {
            assert_eq!(
                Version::parse(bad),
                Err(ManifestError::BadVersion { value: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn file_names_stay_inside_the_bundle() {
        assert!(FileName::parse("caps", "policy.caps").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd"] {
            assert!(FileName::parse("caps", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digests_are_lowercase_hex() {
        let digest = Digest::of(b"abc");
        assert_eq!(Digest::parse_hex(&digest.to_hex()).unwrap(), digest);
        let upper = digest.to_hex().to_uppercase();
        assert!(matches!(
            Digest::parse_hex(&upper),
            Err(ManifestError::BadDigest { .. })
        ));
        assert!(Digest::parse_hex("abcd").is_err());
    }
}
