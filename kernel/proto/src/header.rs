//! The fixed 64-byte RMP v0 header: layout, field checks and TTL arithmetic.
//!
//! Layout (big-endian): magic 4 | header_version 2 | header_len 2 | flags 4 | schema_id 2 |
//! reserved2 2 | body_len 4 | created_at_ms 8 | ttl_ms 8 | trace_id 16 | msg_id 8 |
//! reserved4 4.

use crate::error::FrameError;
use crate::ids::{Family, MsgId, SchemaId, TraceId};

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 64;
/// The `magic` field: ASCII "RMP0".
pub const MAGIC: [u8; 4] = *b"RMP0";
/// The only header version v0 accepts.
pub const HEADER_VERSION: u16 = 0;

const _: () = assert!(HEADER_LEN == 4 + 2 + 2 + 4 + 2 + 2 + 4 + 8 + 8 + 16 + 8 + 4);

/// A valid header: the family is registered, `ttl_ms > 0` and the expiry fits in a u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    family: Family,
    created_at_ms: u64,
    ttl_ms: u64,
    trace_id: TraceId,
    msg_id: MsgId,
}

impl Header {
    /// A header, refusing a zero TTL (`InvalidTtl`) or an expiry past `u64::MAX`
    /// (`InvalidExpiry`) so that no encoder can produce a frame every receiver rejects.
    pub fn new(
        family: Family,
        created_at_ms: u64,
        ttl_ms: u64,
        trace_id: TraceId,
        msg_id: MsgId,
    ) -> Result<Self, FrameError> {
        expires_at_ms(created_at_ms, ttl_ms)?;
        Ok(Self {
            family,
            created_at_ms,
            ttl_ms,
            trace_id,
            msg_id,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }
    pub fn schema_id(&self) -> SchemaId {
        self.family.schema_id()
    }
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }
    pub fn msg_id(&self) -> MsgId {
        self.msg_id
    }

    /// The first millisecond at which receivers drop this frame.
    pub fn expires_at_ms(&self) -> u64 {
        // The constructor proved this fits.
        self.created_at_ms + self.ttl_ms
    }

    /// `Expired` once `now_ms >= created_at_ms + ttl_ms`.
    pub fn check_expiry(&self, now_ms: u64) -> Result<(), FrameError> {
        let expires_at_ms = self.expires_at_ms();
        if now_ms >= expires_at_ms {
            return Err(FrameError::Expired {
                expires_at_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Appends the 64 header bytes for a body of `body_len` bytes.
    pub fn write(&self, body_len: u32, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&HEADER_VERSION.to_be_bytes());
        out.extend_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.schema_id().0.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&self.created_at_ms.to_be_bytes());
        out.extend_from_slice(&self.ttl_ms.to_be_bytes());
        out.extend_from_slice(&self.trace_id.0.to_be_bytes());
        out.extend_from_slice(&self.msg_id.0.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(out.len() - start, HEADER_LEN);
    }
}

/// `created_at_ms + ttl_ms` in u128, per step 8: `InvalidTtl` for a zero TTL and
/// `InvalidExpiry` when the sum leaves u64.
pub fn expires_at_ms(created_at_ms: u64, ttl_ms: u64) -> Result<u64, FrameError> {
    if ttl_ms == 0 {
        return Err(FrameError::InvalidTtl);
    }
    let sum = u128::from(created_at_ms) + u128::from(ttl_ms);
    u64::try_from(sum).map_err(|_| FrameError::InvalidExpiry {
        created_at_ms,
        ttl_ms,
    })
}

/// The header fields as read off the wire, before any check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub magic: [u8; 4],
    pub header_version: u16,
    pub header_len: u16,
    pub flags: u32,
    pub schema_id: u16,
    pub reserved2: u16,
    pub body_len: u32,
    pub created_at_ms: u64,
    pub ttl_ms: u64,
    pub trace_id: u128,
    pub msg_id: u64,
    pub reserved4: u32,
}

fn be<const N: usize>(bytes: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl RawHeader {
    pub fn read(bytes: &[u8; HEADER_LEN]) -> Self {
        Self {
            magic: be(bytes, 0),
            header_version: u16::from_be_bytes(be(bytes, 4)),
            header_len: u16::from_be_bytes(be(bytes, 6)),
            flags: u32::from_be_bytes(be(bytes, 8)),
            schema_id: u16::from_be_bytes(be(bytes, 12)),
            reserved2: u16::from_be_bytes(be(bytes, 14)),
            body_len: u32::from_be_bytes(be(bytes, 16)),
            created_at_ms: u64::from_be_bytes(be(bytes, 20)),
            ttl_ms: u64::from_be_bytes(be(bytes, 28)),
            trace_id: u128::from_be_bytes(be(bytes, 36)),
            msg_id: u64::from_be_bytes(be(bytes, 52)),
            reserved4: u32::from_be_bytes(be(bytes, 60)),
        }
    }

    /// Step 4: magic, then version and length, then the flag and reserved fields.
    pub fn check_fixed_fields(&self) -> Result<(), FrameError> {
        if self.magic != MAGIC {
            return Err(FrameError::InvalidMagic { found: self.magic });
        }
        if self.header_version != HEADER_VERSION || usize::from(self.header_len) != HEADER_LEN {
            return Err(FrameError::UnsupportedVersion {
                header_version: self.header_version,
                header_len: self.header_len,
            });
        }
        if self.flags != 0 || self.reserved2 != 0 || self.reserved4 != 0 {
            return Err(FrameError::InvalidHeaderFlags {
                flags: self.flags,
                reserved2: self.reserved2,
                reserved4: self.reserved4,
            });
        }
        Ok(())
    }

    /// Steps 7 and 8: the family must be registered and the TTL sound. Expiry against the
    /// clock is checked by the caller, which owns `now`.
    pub fn to_header(self) -> Result<Header, FrameError> {
        let family =
            Family::from_schema_id(SchemaId(self.schema_id)).ok_or(FrameError::UnknownSchema {
                schema_id: self.schema_id,
            })?;
        Header::new(
            family,
            self.created_at_ms,
            self.ttl_ms,
            TraceId(self.trace_id),
            MsgId(self.msg_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_bytes() {
        let header = Header::new(
            Family::Control,
            1_700_000_000_000,
            30_000,
            TraceId(u128::MAX - 5),
            MsgId(42),
        )
        .unwrap();
        let mut bytes = Vec::new();
        header.write(17, &mut bytes);
        let raw = RawHeader::read(bytes.as_slice().try_into().unwrap());
        assert_eq!(raw.body_len, 17);
        raw.check_fixed_fields().unwrap();
        assert_eq!(raw.to_header().unwrap(), header);
    }

    #[test]
    fn expiry_arithmetic_is_u128() {
        assert_eq!(expires_at_ms(u64::MAX - 1, 1), Ok(u64::MAX));
        assert_eq!(
            expires_at_ms(u64::MAX, 1),
            Err(FrameError::InvalidExpiry {
                created_at_ms: u64::MAX,
                ttl_ms: 1
            })
        );
        assert_eq!(expires_at_ms(5, 0), Err(FrameError::InvalidTtl));
    }

    #[test]
    fn expiry_is_inclusive_of_the_deadline() {
        let header = Header::new(Family::Event, 100, 10, TraceId(1), MsgId(1)).unwrap();
        assert!(header.check_expiry(109).is_ok());
        assert!(matches!(
            header.check_expiry(110),
            Err(FrameError::Expired {
                expires_at_ms: 110,
                now_ms: 110
            })
        ));
    }
}
