//! Answering a guest's host calls: the trait the kernel implements, and the local default.
//!
//! The kernel, never the sandbox, decides what an agent may do: its handler checks the
//! agent's capabilities and routes to the POG, the model broker or a person. Without a
//! kernel (`rlp agent invoke`), [`LocalHandler`] answers what needs no service — clock,
//! random, log — and refuses every other op with `NotAvailable`.

use runloop_proto::payloads::{HostCall, HostErrorCode, HostReply, LogLevel, RANDOM_BYTES_MAX};
use runloop_proto::{Clock, TraceId};

/// Most log lines [`LocalHandler`] keeps (the sandbox bounds their bytes per invoke).
pub const LOG_LINES_MAX: usize = 1024;

/// Where one host call comes from: the agent, the sandbox's invoke, the trace of the
/// message that caused it, and the call's number within the invoke (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSite<'a> {
    pub agent: &'a str,
    pub invoke_id: u64,
    pub trace_id: TraceId,
    pub call_id: u32,
}

/// Answers host calls for one agent. Called on the thread driving the sandbox; the guest
/// is blocked until it returns. Decorators (recording, replay, fault injection) wrap one
/// handler and implement this trait too.
pub trait HostCallHandler {
    /// Answers `call`, made at `site`.
    fn handle(&mut self, site: &CallSite<'_>, call: HostCall) -> HostReply;
}

impl<H: HostCallHandler + ?Sized> HostCallHandler for Box<H> {
    fn handle(&mut self, site: &CallSite<'_>, call: HostCall) -> HostReply {
        (**self).handle(site, call)
    }
}

/// A source of real randomness for `random.bytes`, injected so tests can fix it.
pub trait RandomSource {
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's random source (`getrandom(2)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: the pointer and length describe `rest`, a live, writable slice.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            assert!(
                n > 0,
                "getrandom failed: {}",
                std::io::Error::last_os_error()
            );
            filled += n as usize;
        }
    }
}

/// One log line a guest sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The handler of `rlp agent invoke`: clock, random and log locally, the rest refused.
#[derive(Debug)]
pub struct LocalHandler<C, R> {
    clock: C,
    random: R,
    logs: Vec<LogLine>,
}

impl<C: Clock, R: RandomSource> LocalHandler<C, R> {
    pub fn new(clock: C, random: R) -> Self {
        Self {
            clock,
            random,
            logs: Vec::new(),
        }
    }

    /// The log lines received so far (at most [`LOG_LINES_MAX`]).
    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }
}

impl<C: Clock, R: RandomSource> HostCallHandler for LocalHandler<C, R> {
    fn handle(&mut self, _site: &CallSite<'_>, call: HostCall) -> HostReply {
        match call {
            HostCall::ClockNow => HostReply::Ok(rmpv::Value::Map(vec![(
                "now_ms".into(),
                self.clock.now_ms().into(),
            )])),
            HostCall::RandomBytes { len } if len > RANDOM_BYTES_MAX => HostReply::Err {
                code: HostErrorCode::InvalidRequest,
                message: format!("random.bytes len {len} above {RANDOM_BYTES_MAX}"),
            },
            HostCall::RandomBytes { len } => {
                let mut buf = vec![0; len as usize];
                self.random.fill(&mut buf);
                HostReply::Ok(rmpv::Value::Binary(buf))
            }
            HostCall::Log { level, message } => {
                if self.logs.len() < LOG_LINES_MAX {
                    self.logs.push(LogLine { level, message });
                }
                HostReply::Ok(rmpv::Value::Nil)
            }
            other => HostReply::Err {
                code: HostErrorCode::NotAvailable,
                message: format!("{} is not available in this mode (no kernel)", other.op()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runloop_proto::ManualClock;

    const SITE: CallSite<'static> = CallSite {
        agent: "a",
        invoke_id: 1,
        trace_id: TraceId(9),
        call_id: 0,
    };

    struct Counting(u8);
    impl RandomSource for Counting {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    #[test]
    fn local_ops_answer_and_kernel_ops_are_not_available() {
        let mut h = LocalHandler::new(ManualClock::new(42), Counting(0));
        let now = h.handle(&SITE, HostCall::ClockNow);
        assert_eq!(
            now,
            HostReply::Ok(rmpv::Value::Map(vec![("now_ms".into(), 42.into())]))
        );
        assert_eq!(
            h.handle(&SITE, HostCall::RandomBytes { len: 3 }),
            HostReply::Ok(rmpv::Value::Binary(vec![1, 2, 3]))
        );
        assert!(matches!(
            h.handle(
                &SITE,
                HostCall::RandomBytes {
                    len: RANDOM_BYTES_MAX + 1
                }
            ),
            HostReply::Err {
                code: HostErrorCode::InvalidRequest,
                ..
            }
        ));
        h.handle(
            &SITE,
            HostCall::Log {
                level: LogLevel::Info,
                message: "hi".into(),
            },
        );
        assert_eq!(h.logs().len(), 1);
        let HostReply::Err { code, message } = h.handle(
            &SITE,
            HostCall::KbQuery {
                sql: "select 1".into(),
                params: vec![],
            },
        ) else {
            panic!("kb.query must be refused");
        };
        assert_eq!(code, HostErrorCode::NotAvailable);
        assert_eq!(
            message,
            "kb.query is not available in this mode (no kernel)"
        );
        let confirm = HostCall::ConfirmRequest {
            action: "x".into(),
            summary: "y".into(),
        };
        assert!(matches!(
            h.handle(&SITE, confirm),
            HostReply::Err {
                code: HostErrorCode::NotAvailable,
                ..
            }
        ));
    }

    #[test]
    fn os_random_fills() {
        let mut buf = [0u8; 64];
        OsRandom.fill(&mut buf);
        assert!(buf.iter().any(|b| *b != 0));
    }
}
