//! Host-call decorators: one factory per agent builds the handler its driver uses, so a
//! run can wrap the kernel's handler without forking it (tower's layers).
//!
//! - [`PlainHandlers`]: the kernel's [`KernelHandler`] as it is (the default);
//! - [`RecordingHandlers`]: every host call and its reply, in order, handed to a
//!   [`RecordSink`] after the inner handler answered — what replay and the trace read;
//! - replay (answers from a recording) and fault injection (drills) are the next
//!   decorators; they plug in here the same way.
//!
//! The capability check stays in [`KernelHandler`]: a decorator sees calls that were
//! denied too (with the denial as the reply), and never answers in its place.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use runloop_proto::payloads::{HostCall, HostReply};
use runloop_proto::{Clock, TraceId};
use runloop_sandbox::{CallSite, HostCallHandler};

use crate::handler::KernelHandler;

/// Builds the handler one driver uses, from the kernel's handler.
pub trait HandlerFactory: Send + Sync + fmt::Debug {
    fn wrap<'a>(&self, kernel: KernelHandler<'a>) -> Box<dyn HostCallHandler + 'a>;
}

/// The kernel's handler, undecorated.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainHandlers;

impl HandlerFactory for PlainHandlers {
    fn wrap<'a>(&self, kernel: KernelHandler<'a>) -> Box<dyn HostCallHandler + 'a> {
        Box::new(kernel)
    }
}

/// One host call as a recording keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCallRecord {
    pub agent: String,
    pub trace_id: TraceId,
    pub invoke_id: u64,
    pub call_id: u32,
    pub call: HostCall,
    pub reply: HostReply,
    pub started_ms: u64,
    pub ended_ms: u64,
}

/// Where recorded host calls go (in memory for tests, the POG for runs).
pub trait RecordSink: Send + Sync + fmt::Debug {
    fn record(&self, call: HostCallRecord);
}

/// Records every host call `inner` answers.
#[derive(Debug)]
pub struct Recording<H> {
    inner: H,
    sink: Arc<dyn RecordSink>,
    clock: Arc<dyn Clock>,
}

impl<H> Recording<H> {
    pub fn new(inner: H, sink: Arc<dyn RecordSink>, clock: Arc<dyn Clock>) -> Self {
        Self { inner, sink, clock }
    }
}

impl<H: HostCallHandler> HostCallHandler for Recording<H> {
    fn handle(&mut self, site: &CallSite<'_>, call: HostCall) -> HostReply {
        let started_ms = self.clock.now_ms();
        let reply = self.inner.handle(site, call.clone());
        self.sink.record(HostCallRecord {
            agent: site.agent.to_owned(),
            trace_id: site.trace_id,
            invoke_id: site.invoke_id,
            call_id: site.call_id,
            call,
            reply: reply.clone(),
            started_ms,
            ended_ms: self.clock.now_ms(),
        });
        reply
    }
}

/// Wraps every handler it builds in a [`Recording`] into one sink.
#[derive(Debug, Clone)]
pub struct RecordingHandlers {
    pub sink: Arc<dyn RecordSink>,
    pub clock: Arc<dyn Clock>,
}

impl HandlerFactory for RecordingHandlers {
    fn wrap<'a>(&self, kernel: KernelHandler<'a>) -> Box<dyn HostCallHandler + 'a> {
        Box::new(Recording::new(
            kernel,
            self.sink.clone(),
            self.clock.clone(),
        ))
    }
}

/// A bounded in-memory sink: keeps the newest `calls_max` records and counts the ones it
/// let go, so a long run cannot grow it without bound.
#[derive(Debug)]
pub struct MemorySink {
    calls_max: usize,
    inner: Mutex<(VecDeque<HostCallRecord>, u64)>,
}

impl MemorySink {
    pub fn new(calls_max: usize) -> Self {
        assert!(calls_max > 0, "a sink that keeps nothing records nothing");
        Self {
            calls_max,
            inner: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// The records kept, oldest first, and how many older ones were let go.
    pub fn calls(&self) -> (Vec<HostCallRecord>, u64) {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0.iter().cloned().collect(), guard.1)
    }
}

impl RecordSink for MemorySink {
    fn record(&self, call: HostCallRecord) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.len() == self.calls_max {
            guard.0.pop_front();
            guard.1 += 1;
        }
        guard.0.push_back(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_proto::ManualClock;
    use runloop_proto::payloads::HostErrorCode;

    /// Answers each call with its own op name, advancing the clock by 5 ms.
    #[derive(Debug)]
    struct Named(Arc<ManualClock>);
    impl HostCallHandler for Named {
        fn handle(&mut self, _site: &CallSite<'_>, call: HostCall) -> HostReply {
            self.0.advance_ms(5);
            HostReply::Err {
                code: HostErrorCode::Failed,
                message: call.op().to_owned(),
            }
        }
    }

    #[test]
    fn recording_keeps_each_call_with_its_reply_and_times_and_the_sink_is_bounded() {
        let clock = Arc::new(ManualClock::new(1_000));
        let sink = Arc::new(MemorySink::new(2));
        let mut handler = Recording::new(Named(clock.clone()), sink.clone(), clock.clone());
        let calls = [
            HostCall::ClockNow,
            HostCall::RandomBytes { len: 4 },
            HostCall::ClockNow,
        ];
        for (i, call) in calls.iter().enumerate() {
            let site = CallSite {
                agent: "a",
                invoke_id: 3,
                trace_id: TraceId(77),
                call_id: u32::try_from(i).unwrap(),
            };
            let reply = handler.handle(&site, call.clone());
            assert_eq!(
                reply,
                HostReply::Err {
                    code: HostErrorCode::Failed,
                    message: call.op().into()
                }
            );
        }
        let (kept, dropped) = sink.calls();
        assert_eq!(dropped, 1);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].call, HostCall::RandomBytes { len: 4 });
        assert_eq!(kept[0].call_id, 1);
        assert_eq!((kept[0].started_ms, kept[0].ended_ms), (1_005, 1_010));
        assert_eq!(kept[1].trace_id, TraceId(77));
    }
}
