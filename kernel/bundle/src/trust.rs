//! Trust roots: which signing keys may vouch for which agents, and whether unsigned
//! bundles load at all.
//!
//! A [`TrustPolicy`] is built once from config (`security.trust_roots`,
//! `security.allow_unsigned_agents`) and handed to every [`crate::Bundle::load`]. It always
//! holds the project's key ([`project_key`], `packaging/keys/runloop-project.pub`, scope
//! `*`), which signs the canonical bundles Runloop ships. A root's scopes are agent-name
//! globs (`*` matches any run of characters): a bundle is trusted when a root with its
//! signer's key has a scope matching the manifest's name.

use std::fmt;

use crate::sign::{KeyId, PublicKey};

/// The project key's public half, committed; its secret half never is.
pub const PROJECT_KEY_TEXT: &str = include_str!("../../../packaging/keys/runloop-project.pub");
/// The built-in root's name.
pub const PROJECT_ROOT_NAME: &str = "runloop-project";
/// Longest scope glob.
pub const SCOPE_BYTES_MAX: usize = 64;
/// Most scopes per root.
pub const SCOPES_MAX: usize = 64;
/// Most trust roots.
pub const ROOTS_MAX: usize = 256;

/// The project key (the default trust root).
pub fn project_key() -> PublicKey {
    PublicKey::parse(PROJECT_KEY_TEXT, "packaging/keys/runloop-project.pub")
        .expect("the committed project key parses")
}

/// Why a trust root is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "scope {0:?}: expected an agent-name glob of a-z, 0-9, '_', '@' and '*' (1 to 64 bytes)"
    )]
    BadScope(String),
    #[error("{count} scopes, at most {SCOPES_MAX}")]
    TooManyScopes { count: usize },
    #[error("{count} trust roots, at most {ROOTS_MAX}")]
    TooManyRoots { count: usize },
}

/// An agent-name glob: `*` matches any run of characters, everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn parse(glob: &str) -> Result<Self, TrustError> {
        let ok = !glob.is_empty()
            && glob.len() <= SCOPE_BYTES_MAX
            && glob.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'@' | b'*')
            });
        if ok {
            Ok(Self(glob.to_owned()))
        } else {
            Err(TrustError::BadScope(glob.to_owned()))
        }
    }

    /// Every name.
    pub fn any() -> Self {
        Self("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches the glob (`crate::glob`).
    pub fn matches(&self, name: &str) -> bool {
        crate::glob::matches(self.0.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key trusted to sign the agents its scopes match.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    key: PublicKey,
    name: Option<String>,
    scopes: Vec<Scope>,
    builtin: bool,
}

impl TrustRoot {
    /// A root for `key`; no scopes means `*`.
    pub fn new(
        key: PublicKey,
        name: Option<String>,
        scopes: Vec<Scope>,
    ) -> Result<Self, TrustError> {
        if scopes.len() > SCOPES_MAX {
            return Err(TrustError::TooManyScopes {
                count: scopes.len(),
            });
        }
        let scopes = if scopes.is_empty() {
            vec![Scope::any()]
        } else {
            scopes
        };
        Ok(Self {
            key,
            name,
            scopes,
            builtin: false,
        })
    }

    /// The built-in root: the project key, every agent.
    pub fn project() -> Self {
        Self {
            key: project_key(),
            name: Some(PROJECT_ROOT_NAME.into()),
            scopes: vec![Scope::any()],
            builtin: true,
        }
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }
    pub fn id(&self) -> KeyId {
        self.key.id()
    }
    /// The root's name, else its key id.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id().to_string())
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
    /// True for the project key Runloop builds in.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }
    /// Whether one of the scopes matches `agent`.
    pub fn covers(&self, agent: &str) -> bool {
        self.scopes.iter().any(|s| s.matches(agent))
    }
}

/// The trust roots and the unsigned-bundle switch every load is checked against.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    roots: Vec<TrustRoot>,
    allow_unsigned: bool,
}

impl Default for TrustPolicy {
    /// The project key only; unsigned and untrusted bundles refused.
    fn default() -> Self {
        Self {
            roots: vec![TrustRoot::project()],
            allow_unsigned: false,
        }
    }
}

impl TrustPolicy {
    /// The default policy plus `roots` (config's `security.trust_roots`).
    pub fn with_roots(roots: Vec<TrustRoot>, allow_unsigned: bool) -> Result<Self, TrustError> {
        if roots.len() > ROOTS_MAX {
            return Err(TrustError::TooManyRoots { count: roots.len() });
        }
        let mut policy = Self::default();
        policy.roots.extend(roots);
        policy.allow_unsigned = allow_unsigned;
        Ok(policy)
    }

    /// Only `roots`, without the project key (`runloop-bundle verify --key`, tests).
    pub fn only(roots: Vec<TrustRoot>) -> Self {
        Self {
            roots,
            allow_unsigned: false,
        }
    }

    /// The same policy with unsigned and untrusted bundles loading (each load warns).
    pub fn allowing_unsigned(mut self, allow: bool) -> Self {
        self.allow_unsigned = allow;
        self
    }

    /// Every bundle loads, signed or not: for tests that build bundles on the fly.
    pub fn permissive() -> Self {
        Self::default().allowing_unsigned(true)
    }

    pub fn roots(&self) -> &[TrustRoot] {
        &self.roots
    }
    pub fn allows_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// The root vouching for `agent` signed by `key`: `Ok` a root with the key and a
    /// matching scope; `Err(Some(root))` the key is a root whose scopes miss the agent;
    /// `Err(None)` the key is no root.
    pub fn vouch(&self, key: &PublicKey, agent: &str) -> Result<&TrustRoot, Option<&TrustRoot>> {
        let mut same_key = self.roots.iter().filter(|r| r.key() == key).peekable();
        let first = same_key.peek().copied();
        same_key.find(|r| r.covers(agent)).ok_or(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_glob_agent_names() {
        let cases = [
            ("*", "mailer", true),
            ("mail*", "mailer", true),
            ("mail*", "mail", true),
            ("mail*", "email", false),
            ("*er", "mailer", true),
            ("*er", "writer_x", false),
            ("m*l*r", "mailer", true),
            ("echo", "echo", true),
            ("echo", "echo2", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ];
        for (glob, name, want) in cases {
            assert_eq!(
                Scope::parse(glob).unwrap().matches(name),
                want,
                "{glob} {name}"
            );
        }
        for bad in ["", "Mail*", "mail/x", "mail?", &"a".repeat(65)] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_project_key_is_a_root_by_default() {
        let policy = TrustPolicy::default();
        assert!(!policy.allows_unsigned());
        assert!(policy.roots()[0].is_builtin());
        assert!(policy.vouch(&project_key(), "anything").is_ok());
    }
}
