//! One OpenTelemetry span per recorded crossing: the run's RMP trace id is the span's
//! trace id (u128 ↔ 16 big-endian bytes), span ids are derived from (trace id, seq), and
//! the run's `run.submit` crossing is the root every other crossing hangs from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SamplingDecision, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt,
    TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, ShouldSample};
use serde_json::Value;

/// Most runs whose facts (run id, node → agent) are kept at once; past it a run's spans
/// go out without `runloop.run_id` and `runloop.agent`.
pub const RUN_FACTS_MAX: usize = 4_096;

/// The crossing kind that is a run's root span.
pub const ROOT_KIND: &str = "run.submit";

/// Attribute names (docs/observability.md lists them).
pub mod attr {
    pub const TRACE_ID: &str = "runloop.trace_id";
    pub const RUN_ID: &str = "runloop.run_id";
    pub const SEQ: &str = "runloop.seq";
    pub const KIND: &str = "runloop.kind";
    pub const FROM: &str = "runloop.from";
    pub const TO: &str = "runloop.to";
    pub const NODE: &str = "runloop.node";
    pub const AGENT: &str = "runloop.agent";
    pub const REQUEST_BYTES: &str = "runloop.request_bytes";
    pub const REPLY_BYTES: &str = "runloop.reply_bytes";
}

/// The OTel trace id of an RMP trace id: the same 128 bits, big-endian.
pub fn otel_trace_id(trace: u128) -> TraceId {
    TraceId::from_bytes(trace.to_be_bytes())
}

/// The RMP trace id of an OTel trace id.
pub fn rmp_trace_id(id: TraceId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

/// Eight bytes of BLAKE3 over a domain tag and the parts; never the invalid id 0.
fn derived_span_id(tag: &[u8], trace: u128, seq: Option<u64>) -> SpanId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag);
    hasher.update(&trace.to_be_bytes());
    if let Some(seq) = seq {
        hasher.update(&seq.to_be_bytes());
    }
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    if bytes == [0u8; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

/// The run's root span id (its `run.submit` crossing), from the trace id alone, so a
/// resumed run's spans find the root the first process exported.
pub fn root_span_id(trace: u128) -> SpanId {
    derived_span_id(b"runloop.run", trace, None)
}

/// The span id of crossing `seq` of a run.
pub fn crossing_span_id(trace: u128, seq: u64) -> SpanId {
    derived_span_id(b"runloop.crossing", trace, Some(seq))
}

/// What a run's spans carry besides the crossing's own fields.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub run_id: String,
    /// Node id → agent name.
    pub agents: HashMap<String, String>,
}

/// Turns crossings into spans on one tracer.
#[derive(Debug)]
pub struct CrossingSpans {
    tracer: SdkTracer,
    sampler: Sampler,
    runs: Mutex<HashMap<u128, RunFacts>>,
}

fn ms_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl CrossingSpans {
    pub fn new(tracer: SdkTracer, sampler: Sampler) -> Self {
        Self {
            tracer,
            sampler,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<u128, RunFacts>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a live run's facts (until [`CrossingSpans::close`]).
    pub fn open(&self, trace: u128, facts: RunFacts) {
        let mut runs = self.runs();
        if runs.len() < RUN_FACTS_MAX || runs.contains_key(&trace) {
            runs.insert(trace, facts);
        }
    }

    pub fn close(&self, trace: u128) {
        self.runs().remove(&trace);
    }

    /// Whether the run's root is sampled: every sampler here decides by trace id alone,
    /// so the root's decision is the one its children's parent context carries.
    fn root_sampled(&self, trace: TraceId) -> bool {
        let result =
            self.sampler
                .should_sample(None, trace, ROOT_KIND, &SpanKind::Internal, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    /// The context a run's spans hang from: its root span (the `run.submit` crossing, which
    /// may have been exported by an earlier process), sampled as the root is.
    pub fn root_context(&self, trace: u128) -> Context {
        let trace_id = otel_trace_id(trace);
        let flags = if self.root_sampled(trace_id) {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let root = SpanContext::new(
            trace_id,
            root_span_id(trace),
            flags,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(root)
    }

    /// Exports one crossing (its `crossing.recorded` payload) as a span.
    pub fn crossing(&self, trace: u128, payload: &Value) {
        let Some(seq) = payload.get("seq").and_then(Value::as_u64) else {
            return;
        };
        let text = |key: &str| payload.get(key).and_then(Value::as_str);
        let number = |key: &str| payload.get(key).and_then(Value::as_u64);
        let kind = text("kind").unwrap_or("crossing").to_owned();
        let trace_id = otel_trace_id(trace);
        let root = root_span_id(trace);
        let is_root = kind == ROOT_KIND;
        let span_id = if is_root {
            root
        } else {
            crossing_span_id(trace, seq)
        };
        let mut attributes = vec![
            KeyValue::new(attr::TRACE_ID, format!("{trace:032x}")),
            KeyValue::new(attr::SEQ, seq as i64),
            KeyValue::new(attr::KIND, kind.clone()),
            KeyValue::new(attr::FROM, text("from").unwrap_or_default().to_owned()),
            KeyValue::new(attr::TO, text("to").unwrap_or_default().to_owned()),
            KeyValue::new(attr::REQUEST_BYTES, number("bytes").unwrap_or(0) as i64),
            KeyValue::new(attr::REPLY_BYTES, number("reply_bytes").unwrap_or(0) as i64),
        ];
        let node = text("node_id");
        {
            let runs = self.runs();
            if let Some(facts) = runs.get(&trace) {
                attributes.push(KeyValue::new(attr::RUN_ID, facts.run_id.clone()));
                if let Some(agent) = node.and_then(|n| facts.agents.get(n)) {
                    attributes.push(KeyValue::new(attr::AGENT, agent.clone()));
                }
            }
        }
        if let Some(node) = node {
            attributes.push(KeyValue::new(attr::NODE, node.to_owned()));
        }
        let status = if text("status") == Some("error") {
            Status::error(text("detail").unwrap_or("error").to_owned())
        } else {
            Status::Unset
        };
        let start_ms = number("start_ms").unwrap_or(0);
        let end_ms = number("end_ms").unwrap_or(start_ms).max(start_ms);
        let builder = SpanBuilder::from_name(kind)
            .with_kind(if is_root {
                SpanKind::Server
            } else {
                SpanKind::Internal
            })
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_start_time(ms_time(start_ms))
            .with_attributes(attributes)
            .with_status(status);
        let parent = if is_root {
            Context::new()
        } else {
            self.root_context(trace)
        };
        let mut span = self.tracer.build_with_context(builder, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, ms_time(end_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_round_trip_big_endian() {
        for trace in [1u128, u128::MAX, 0x0123_4567_89ab_cdef_0011_2233_4455_6677] {
            let id = otel_trace_id(trace);
            assert_eq!(rmp_trace_id(id), trace);
            assert_eq!(id.to_bytes(), trace.to_be_bytes());
            // The hex an OTLP receiver shows is the hex `rlp trace` shows.
            assert_eq!(id.to_string(), format!("{trace:032x}"));
        }
    }

    #[test]
    fn span_ids_are_stable_distinct_and_never_zero() {
        let trace = 0xfeed_u128 << 64;
        assert_eq!(crossing_span_id(trace, 3), crossing_span_id(trace, 3));
        assert_ne!(crossing_span_id(trace, 3), crossing_span_id(trace, 4));
        assert_ne!(crossing_span_id(trace, 0), root_span_id(trace));
        assert_ne!(root_span_id(trace), root_span_id(trace + 1));
        let mut seen = std::collections::HashSet::new();
        for seq in 0..10_000 {
            let id = crossing_span_id(trace, seq);
            assert_ne!(id, SpanId::INVALID);
            assert!(seen.insert(id), "seq {seq} repeats a span id");
        }
        assert_ne!(root_span_id(0), SpanId::INVALID);
    }
}
