//! `output_hash` and `result_hash` (spec: Outputs and hashes): what replay compares.
//!
//! The encodings are fixed here and must not change without a new opening version:
//!
//! - `output_hash` = BLAKE3 of the MsgPack encoding (`rmpv::encode::write_value`: the
//!   shortest form of every integer, string and length header; maps in their own order) of
//!   one array holding a `[port, payload]` 2-array per emission, in emission order.
//! - `result_hash` = BLAKE3 over, for each node in declaration order,
//!   `len(id) as u32 big-endian ‖ id ‖ tag`, where tag `0` is followed by the node's 32-byte
//!   output hash and tag `1` by `len(status) as u32 big-endian ‖ status` (`failed`,
//!   `skipped`, `cancelled`). Every field is length-prefixed or fixed-size, so two
//!   different lists never hash the same bytes.

/// BLAKE3 over the canonical encoding of a node's outputs, `(port, payload)` in emission
/// order.
pub fn output_hash(outputs: &[(String, rmpv::Value)]) -> [u8; 32] {
    let list = rmpv::Value::Array(
        outputs
            .iter()
            .map(|(port, payload)| {
                rmpv::Value::Array(vec![rmpv::Value::from(port.as_str()), payload.clone()])
            })
            .collect(),
    );
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail: its only error is the writer's.
    rmpv::encode::write_value(&mut bytes, &list).expect("writing MsgPack into a Vec");
    *blake3::hash(&bytes).as_bytes()
}

/// BLAKE3 over the node ids in declaration order, each followed by its output hash or,
/// when it has none, its status word.
pub fn result_hash(nodes: &[(&str, NodeHash<'_>)]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for (id, node) in nodes {
        hasher.update(&len_u32(id.len()).to_be_bytes());
        hasher.update(id.as_bytes());
        match node {
            NodeHash::Output(hash) => {
                hasher.update(&[0]);
                hasher.update(&hash[..]);
            }
            NodeHash::Status(status) => {
                hasher.update(&[1]);
                hasher.update(&len_u32(status.len()).to_be_bytes());
                hasher.update(status.as_bytes());
            }
        }
    }
    *hasher.finalize().as_bytes()
}

/// Ids and status words are short (ids at most `NAME_BYTES_MAX`), so they fit a u32.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("an id or status word longer than 4 GiB")
}

/// What a node contributes to the result hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHash<'a> {
    Output(&'a [u8; 32]),
    Status(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8; 32]) -> String {
        blake3::Hash::from(*bytes).to_hex().to_string()
    }

    #[test]
    fn output_hash_is_blake3_of_the_documented_msgpack() {
        let outputs = vec![
            ("out".to_owned(), rmpv::Value::from(1)),
            ("ok".to_owned(), rmpv::Value::Boolean(true)),
        ];
        // [["out", 1], ["ok", true]]
        let bytes = [
            0x92, 0x92, 0xa3, b'o', b'u', b't', 0x01, 0x92, 0xa2, b'o', b'k', 0xc3,
        ];
        assert_eq!(output_hash(&outputs), *blake3::hash(&bytes).as_bytes());
        assert_eq!(output_hash(&[]), *blake3::hash(&[0x90]).as_bytes());
    }

    #[test]
    fn result_hash_is_blake3_of_the_documented_bytes() {
        let h = [7_u8; 32];
        let nodes = [
            ("a", NodeHash::Output(&h)),
            ("bc", NodeHash::Status("failed")),
        ];
        let mut bytes = vec![0, 0, 0, 1, b'a', 0];
        bytes.extend_from_slice(&h);
        bytes.extend_from_slice(&[0, 0, 0, 2, b'b', b'c', 1, 0, 0, 0, 6]);
        bytes.extend_from_slice(b"failed");
        assert_eq!(result_hash(&nodes), *blake3::hash(&bytes).as_bytes());
    }

    #[test]
    fn hashes_are_stable() {
        let outputs = vec![(
            "out".to_owned(),
            rmpv::Value::Map(vec![("text".into(), "hi".into())]),
        )];
        let out = output_hash(&outputs);
        assert_eq!(
            hex(&out),
            "4b9dc3c51ccb8bfe73727e763a1f9abd0b748d7c9e8ae959771bda19368662a9"
        );
        let nodes = [
            ("draft", NodeHash::Output(&out)),
            ("send", NodeHash::Status("skipped")),
        ];
        assert_eq!(
            hex(&result_hash(&nodes)),
            "faf9fdb4968ab93e9197604579f71d1b9a99798541bcb327d0b3e39049fd9f3a"
        );
    }
}
