//! Names people give agents and openings: validated once at the edge, then carried typed.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Longest agent or opening name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// A bad agent or opening name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} name {name:?} is invalid: use 1 to {NAME_BYTES_MAX} of a-z, 0-9, '_', '-', starting with a letter"
)]
pub struct NameError {
    what: &'static str,
    name: String,
}

fn check(what: &'static str, name: &str) -> Result<Arc<str>, NameError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(NameError {
            what,
            name: name.chars().take(NAME_BYTES_MAX + 1).collect(),
        });
    }
    Ok(name.into())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            pub fn new(name: &str) -> Result<Self, NameError> {
                check($what, name).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An agent instance's name (e.g. `writer`).
    AgentName,
    "agent"
);
name_type!(
    /// A running opening's id (e.g. `compose_email-1`).
    OpeningId,
    "opening"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["writer", "a", "mail_er-2"] {
            assert_eq!(AgentName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "Writer", "2x", "a b", "a/b", "é"] {
            let err = AgentName::new(bad).unwrap_err();
            assert!(err.to_string().starts_with("agent name"), "{err}");
        }
        assert!(OpeningId::new(&"a".repeat(65)).is_err());
        assert!(OpeningId::new(&"a".repeat(64)).is_ok());
    }
}
