//! Validated names and ids used in events: scopes, actors, idempotency keys, trace ids and
//! entity references. Each is parsed once at the edge; inside the crate they are trusted.

use std::fmt;

pub use runloop_proto::TraceId;
use std::str::FromStr;

/// Longest scope, actor or entity id segment.
pub const NAME_LEN_MAX: usize = 128;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 256;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty string.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// Over the length limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("{what} {value:?} has a character outside [a-z0-9._:/@+-]: {ch:?}")]
    BadChar {
        what: &'static str,
        value: String,
        ch: char,
    },
    /// Not 32 lowercase hex digits.
    #[error("trace id {0:?} is not 32 lowercase hex digits")]
    TraceId(String),
    /// Unknown `type:` prefix or malformed entity reference.
    #[error("entity {0:?} is not <contact|note|artifact|email|run|node|agent>:<id>")]
    Entity(String),
}

fn check_name(what: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._:/@+-".contains(c);
    if let Some(ch) = s.chars().find(|c| !ok(*c)) {
        return Err(NameError::BadChar {
            what,
            value: s.to_owned(),
            ch,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: &str) -> Result<Self, NameError> {
                check_name($what, s, $max)?;
                Ok($name(s.to_owned()))
            }
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// A namespace for events (`personal`, `work/acme`); capabilities may be limited to scopes.
    Scope, "scope", NAME_LEN_MAX
);
name_type!(
    /// Who wrote an event: `user`, `kernel`, `agent:writer`.
    ActorName, "actor", NAME_LEN_MAX
);

impl Scope {
    /// The scope used when none is given.
    pub fn default_scope() -> Scope {
        Scope("default".to_owned())
    }
}

/// A caller-chosen key that makes a write idempotent; any printable ASCII except spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates and wraps `s`.
    pub fn new(s: &str) -> Result<Self, NameError> {
        let what = "idempotency key";
        if s.is_empty() {
            return Err(NameError::Empty { what });
        }
        if s.len() > IDEMPOTENCY_KEY_LEN_MAX {
            return Err(NameError::TooLong {
                what,
                len: s.len(),
                max: IDEMPOTENCY_KEY_LEN_MAX,
            });
        }
        if let Some(ch) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(NameError::BadChar {
                what,
                value: s.to_owned(),
                ch,
            });
        }
        Ok(IdempotencyKey(s.to_owned()))
    }
    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A run's trace id as provenance spells it: exactly 32 lowercase hex digits (stricter than
/// `TraceId`'s own parser, so each id has one spelling in the hashed JSON).
pub fn parse_trace_id(s: &str) -> Result<TraceId, NameError> {
    let ok = s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(NameError::TraceId(s.to_owned()));
    }
    u128::from_str_radix(s, 16)
        .map(TraceId)
        .map_err(|_| NameError::TraceId(s.to_owned()))
}

/// The kinds of thing the views hold; `kb why` takes `<type>:<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// A person.
    Contact,
    /// A free-text note.
    Note,
    /// A produced file or blob.
    Artifact,
    /// A sent email.
    Email,
    /// A run of an opening, by trace id.
    Run,
    /// One node of a run: `node:<trace_id>/<node_id>`.
    Node,
    /// An agent (capability audit trail).
    Agent,
}

impl EntityType {
    const ALL: [EntityType; 7] = [
        EntityType::Contact,
        EntityType::Note,
        EntityType::Artifact,
        EntityType::Email,
        EntityType::Run,
        EntityType::Node,
        EntityType::Agent,
    ];

    /// The prefix before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Contact => "contact",
            EntityType::Note => "note",
            EntityType::Artifact => "artifact",
            EntityType::Email => "email",
            EntityType::Run => "run",
            EntityType::Node => "node",
            EntityType::Agent => "agent",
        }
    }
}

/// A reference to one entity in the views, e.g. `contact:ada`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    ty: EntityType,
    id: String,
}

impl EntityRef {
    /// Builds a reference; the id is free text up to `NAME_LEN_MAX * 2` bytes with no control chars.
    pub fn new(ty: EntityType, id: &str) -> Result<Self, NameError> {
        let bad = id.is_empty() || id.len() > NAME_LEN_MAX * 2 || id.chars().any(char::is_control);
        if bad {
            return Err(NameError::Entity(format!("{}:{id}", ty.as_str())));
        }
        Ok(EntityRef {
            ty,
            id: id.to_owned(),
        })
    }

    /// Parses `<type>:<id>`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (ty, id) = s
            .split_once(':')
            .ok_or_else(|| NameError::Entity(s.to_owned()))?;
        let ty = EntityType::ALL
            .into_iter()
            .find(|t| t.as_str() == ty)
            .ok_or_else(|| NameError::Entity(s.to_owned()))?;
        EntityRef::new(ty, id).map_err(|_| NameError::Entity(s.to_owned()))
    }

    /// The entity's type.
    pub fn entity_type(&self) -> EntityType {
        self.ty
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ty.as_str(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_each_bad_form() {
        assert!(Scope::new("work/acme").is_ok());
        assert_eq!(Scope::new(""), Err(NameError::Empty { what: "scope" }));
        assert!(matches!(
            Scope::new("Work"),
            Err(NameError::BadChar { ch: 'W', .. })
        ));
        assert!(matches!(
            ActorName::new(&"a".repeat(129)),
            Err(NameError::TooLong { len: 129, .. })
        ));
        assert!(matches!(
            IdempotencyKey::new("a b"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn trace_ids_are_32_lowercase_hex() {
        let t = parse_trace_id("000000000000000000000000000000ff").unwrap();
        assert_eq!(t.0, 255);
        assert_eq!(t.to_string(), "000000000000000000000000000000ff");
        for bad in [
            "ff",
            "000000000000000000000000000000FF",
            "g00000000000000000000000000000ff",
        ] {
            assert_eq!(parse_trace_id(bad), Err(NameError::TraceId(bad.to_owned())));
        }
    }

    #[test]
    fn entity_refs_round_trip_and_reject_unknown_types() {
        let e = EntityRef::parse("node:abc/writer").unwrap();
        assert_eq!(e.entity_type(), EntityType::Node);
        assert_eq!(e.to_string(), "node:abc/writer");
        assert!(EntityRef::parse("planet:earth").is_err());
        assert!(EntityRef::parse("contact:").is_err());
        assert!(EntityRef::parse("contact").is_err());
    }
}
