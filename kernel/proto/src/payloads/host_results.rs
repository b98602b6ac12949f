//! The `ok` values of host-call replies, typed: what the kernel answers for each op.
//!
//! `HostReply::Ok` carries an untyped MsgPack value so the sandbox-host can shuttle replies
//! without knowing every op; the kernel builds these structs, the guest SDK decodes them.
//! Their shapes are the `ok` column of `docs/agent-abi.md`.

use serde::{Deserialize, Serialize};

/// `clock.now`: the current time in Unix epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockNowResult {
    pub now_ms: u64,
}

/// `model.complete`: one chat completion and its accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCompleteResult {
    pub text: String,
    pub provider: String,
    pub model: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
}

/// `model.embed`: one vector per input text, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEmbedResult {
    pub vectors: Vec<Vec<f32>>,
    pub provider: String,
    pub model: String,
}

/// `kb.query`: a read-only result table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KbQueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<rmpv::Value>>,
}

/// `kb.write_event`: where the event landed in the log and its content hash (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbWriteEventResult {
    pub seq: u64,
    pub hash: String,
}

/// `confirm.request`: whether the person approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmResult {
    pub approved: bool,
}

/// `effect.perform`: what the executor did. `recalled` is true when the effects journal
/// answered from an earlier performance (a redelivered invoke, a resumed run) instead of
/// performing the effect again. `receipt` is the executor's own record, e.g. for
/// `mail.send` `{message_id, path}` (Maildir) or `{message_id, smtp}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectPerformResult {
    pub kind: String,
    pub idempotency_key: String,
    pub recalled: bool,
    pub receipt: rmpv::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_with_named_fields() {
        let result = ModelCompleteResult {
            text: "hi".into(),
            provider: "offline".into(),
            model: "echo".into(),
            tokens_in: 3,
            tokens_out: 1,
        };
        let bytes = rmp_serde::to_vec_named(&result).unwrap();
        let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(value.as_map().unwrap()[0].0.as_str(), Some("text"));
        let back: ModelCompleteResult = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, result);
    }
}
