//! `output_hash` and `result_hash` (spec: Outputs and hashes): what replay compares.

/// BLAKE3 over the canonical encoding of a node's outputs, `(port, payload)` in emission
/// order.
pub fn output_hash(outputs: &[(String, rmpv::Value)]) -> [u8; 32] {
    let _ = outputs;
    todo!("helper: output_hash")
}

/// BLAKE3 over the node ids in declaration order, each followed by its output hash or,
/// when it has none, its status word.
pub fn result_hash(nodes: &[(&str, NodeHash<'_>)]) -> [u8; 32] {
    let _ = nodes;
    todo!("helper: result_hash")
}

/// What a node contributes to the result hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHash<'a> {
    Output(&'a [u8; 32]),
    Status(&'a str),
}
