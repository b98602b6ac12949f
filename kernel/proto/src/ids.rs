//! Id newtypes carried in the header: trace ids, message ids, schema ids and families.
//!
//! Ids print as fixed-width lowercase hex (32 digits for a trace id, 16 for a message id)
//! everywhere a person or JSON sees them; on the wire they are big-endian integers.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Groups every frame of one run or request; half of the dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub u128);

/// Identifies one frame of one publisher, monotonic per publisher; half of the dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MsgId(pub u64);

/// A bad textual id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {digits_max} hex digits, got {input:?}")]
pub struct IdParseError {
    what: &'static str,
    digits_max: usize,
    input: String,
}

fn parse_hex(what: &'static str, digits_max: usize, input: &str) -> Result<u128, IdParseError> {
    let err = || IdParseError {
        what,
        digits_max,
        input: input.chars().take(80).collect(),
    };
    let digits = input.strip_prefix("0x").unwrap_or(input);
    if digits.is_empty()
        || digits.len() > digits_max
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(err());
    }
    u128::from_str_radix(digits, 16).map_err(|_| err())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for TraceId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex("trace_id", 32, s).map(TraceId)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for MsgId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = parse_hex("msg_id", 16, s)?;
        // 16 hex digits always fit in a u64.
        Ok(MsgId(
            u64::try_from(value).expect("16 hex digits fit in u64"),
        ))
    }
}

/// Hands out monotonic message ids for one publisher, starting at 1.
#[derive(Debug)]
pub struct MsgIdGen {
    next: AtomicU64,
}

impl MsgIdGen {
    /// A generator whose first id is `first`.
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: AtomicU64::new(first),
        }
    }

    /// The next id. Panics once 2^64 ids have been handed out, which would break the
    /// monotonicity the dedupe rules depend on.
    pub fn next_id(&self) -> MsgId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(id != u64::MAX, "msg_id space of one publisher exhausted");
        MsgId(id)
    }
}

impl Default for MsgIdGen {
    fn default() -> Self {
        Self::starting_at(1)
    }
}

/// The header's `schema_id`: selects a primitive family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(pub u16);

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

/// The core families of RMP v0 (closed: 0x000B–0x0FFF are reserved for Runloop, 0x1000 and
/// above must be registered before use, and none are registered yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Observation,
    Intent,
    Toolcall,
    Toolresult,
    Artifact,
    Critique,
    Statedelta,
    Event,
    Control,
    Error,
}

impl Family {
    /// Every family, in schema id order.
    pub const ALL: [Family; 10] = [
        Family::Observation,
        Family::Intent,
        Family::Toolcall,
        Family::Toolresult,
        Family::Artifact,
        Family::Critique,
        Family::Statedelta,
        Family::Event,
        Family::Control,
        Family::Error,
    ];

    /// The family's `schema_id` in the header.
    pub const fn schema_id(self) -> SchemaId {
        SchemaId(match self {
            Family::Observation => 0x0001,
            Family::Intent => 0x0002,
            Family::Toolcall => 0x0003,
            Family::Toolresult => 0x0004,
            Family::Artifact => 0x0005,
            Family::Critique => 0x0006,
            Family::Statedelta => 0x0007,
            Family::Event => 0x0008,
            Family::Control => 0x0009,
            Family::Error => 0x000A,
        })
    }

    /// The family a `schema_id` selects, if registered (0x0000 is reserved, never a family).
    pub fn from_schema_id(id: SchemaId) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.schema_id() == id)
    }

    /// The family's name, the first segment of every `type` in it.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Observation => "observation",
            Family::Intent => "intent",
            Family::Toolcall => "toolcall",
            Family::Toolresult => "toolresult",
            Family::Artifact => "artifact",
            Family::Critique => "critique",
            Family::Statedelta => "statedelta",
            Family::Event => "event",
            Family::Control => "control",
            Family::Error => "error",
        }
    }

    /// The family with this name.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_fixed_width_hex_and_parse_back() {
        let t = TraceId(0xabc);
        assert_eq!(t.to_string(), "00000000000000000000000000000abc");
        assert_eq!(t.to_string().parse::<TraceId>(), Ok(t));
        assert_eq!("0xABC".parse::<TraceId>(), Ok(t));
        let m = MsgId(u64::MAX);
        assert_eq!(m.to_string(), "ffffffffffffffff");
        assert_eq!(m.to_string().parse::<MsgId>(), Ok(m));
    }

    #[test]
    fn bad_ids_are_refused_with_the_field_name() {
        for bad in ["", "0x", "xyz", "12 3", &"f".repeat(33)] {
            let err = bad.parse::<TraceId>().unwrap_err();
            assert!(err.to_string().starts_with("trace_id must be"), "{err}");
        }
        let err = "1".repeat(17).parse::<MsgId>().unwrap_err();
        assert!(err.to_string().starts_with("msg_id must be"), "{err}");
    }

    #[test]
    fn msg_ids_are_monotonic() {
        let ids = MsgIdGen::default();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a, MsgId(1));
        assert!(b > a);
    }

    #[test]
    fn families_match_the_spec_table() {
        assert_eq!(Family::from_schema_id(SchemaId(0)), None);
        assert_eq!(Family::from_schema_id(SchemaId(0x000B)), None);
        assert_eq!(Family::from_schema_id(SchemaId(0x1000)), None);
        for (i, family) in Family::ALL.into_iter().enumerate() {
            let id = u16::try_from(i + 1).unwrap();
            assert_eq!(family.schema_id(), SchemaId(id));
            assert_eq!(Family::from_name(family.name()), Some(family));
        }
        assert_eq!(Family::Error.schema_id(), SchemaId(0x000A));
        assert_eq!(Family::Error.name(), "error");
    }
}
