//! Invokes on a sandbox, pipelined: submit several, drive the conversation, collect each
//! outcome as it arrives.
//!
//! The sandbox runs invokes one at a time in arrival order, so every frame it sends is
//! about the oldest unanswered invoke (the *head*): its outputs in sequence, its host calls
//! in sequence (each answered before the guest goes on), then its outcome. Anything else —
//! a frame about another invoke, a skipped sequence number, counts that do not add up, any
//! frame while nothing is outstanding — is a protocol violation that kills the process.
//!
//! [`Sandbox::submit`] queues an `intent.invoke.v1` (at most
//! [`PIPELINE_INVOKES_MAX`] outstanding); [`Sandbox::drive`] writes what is queued, waits
//! for the socket, an optional wake descriptor or the head's deadline, and handles every
//! complete frame. The head's deadline is `invoke_watchdog_ms(invoke_wall_ms_max)` from the
//! moment it became the head, extended by the time the kernel spent answering its host
//! calls. [`Sandbox::invoke`] is submit + drive until that one invoke is done.
//!
//! The socket is non-blocking and every wait is a `poll`, so the kernel never blocks in a
//! write while the sandbox blocks in one: both ends always drain each other. With one
//! invoke outstanding, `drive` first looks for its answer without sleeping, for at most
//! [`crate::spin::ANSWER_SPIN_US`] and only while such looks find it ([`crate::spin`]).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use runloop_proto::payloads::{
    AgentInput, AgentOutput, HostCallRequest, HostCallResponse, Invoke, InvokeOutcome,
    InvokeOutput, PIPELINE_INVOKES_MAX,
};
use runloop_proto::{Frame, FrameError, Kind, TraceId};

use crate::handler::{CallSite, HostCallHandler};
use crate::poll::{poll_fds, ready_now};
use crate::process::{InvokeReport, Sandbox, SandboxError, invoke_watchdog_ms, micros, millis};

/// One invoke sent to the sandbox and not yet answered.
#[derive(Debug)]
pub(crate) struct Outstanding {
    invoke_id: u64,
    trace: TraceId,
    sent: Instant,
    /// When it became the head (the sandbox runs it from about then).
    head_since: Option<Instant>,
    /// Time the kernel spent answering its host calls; not charged to the guest.
    host_time: Duration,
    outputs: Vec<AgentOutput>,
    host_calls: u32,
}

/// An invoke the sandbox finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub invoke_id: u64,
    pub report: InvokeReport,
}

/// Why an invoke could not be submitted; the sandbox is untouched.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the input does not fit in one frame: {0}")]
    TooLarge(FrameError),
    #[error("{PIPELINE_INVOKES_MAX} invokes are already outstanding")]
    PipelineFull,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// What ended one [`Sandbox::drive`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driven {
    /// One or more invokes finished (appended to the caller's list).
    Progress,
    /// The wake descriptor became readable.
    Woken,
    /// The wait ended with nothing to report (the sandbox sent part of a frame, or a
    /// frame that finished nothing, such as an output).
    Idle,
}

impl Sandbox {
    /// Invokes sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Queues one invoke under a trace id made from the sandbox's pid and the invoke id
    /// (for a sandbox used on its own, as `rlp agent invoke` does); see
    /// [`Sandbox::submit_traced`].
    pub fn submit(&mut self, input: AgentInput) -> Result<u64, SubmitError> {
        let trace = TraceId((u128::from(self.pid()) << 64) | u128::from(self.next_invoke));
        self.submit_traced(trace, input)
    }

    /// Queues one invoke whose frames (and host calls) carry `trace`, the trace id of the
    /// message it serves; it is written by the next [`Sandbox::drive`]. Returns its id.
    pub fn submit_traced(&mut self, trace: TraceId, input: AgentInput) -> Result<u64, SubmitError> {
        if let Some(reaped) = self.reaped {
            return Err(SandboxError::Gone {
                exit: reaped.status,
            }
            .into());
        }
        if self.outstanding.len() >= PIPELINE_INVOKES_MAX {
            return Err(SubmitError::PipelineFull);
        }
        let invoke_id = self.next_invoke;
        self.queue(trace, &Invoke { invoke_id, input })
            .map_err(SubmitError::TooLarge)?;
        self.next_invoke += 1;
        let now = Instant::now();
        self.outstanding.push_back(Outstanding {
            invoke_id,
            trace,
            sent: now,
            head_since: self.outstanding.is_empty().then_some(now),
            host_time: Duration::ZERO,
            outputs: Vec::new(),
            host_calls: 0,
        });
        Ok(invoke_id)
    }

    /// Sends one message and runs it to its outcome, answering host calls with `handler`.
    /// Nothing else may be outstanding.
    pub fn invoke(
        &mut self,
        input: AgentInput,
        handler: &mut dyn HostCallHandler,
    ) -> Result<InvokeReport, SandboxError> {
        assert!(self.outstanding.is_empty(), "invoke runs alone");
        let invoke_id = match self.submit(input) {
            Ok(id) => id,
            Err(SubmitError::Sandbox(e)) => return Err(e),
            Err(SubmitError::TooLarge(error)) => {
                let exit = self.kill().status;
                return Err(SandboxError::Protocol {
                    detail: format!("kernel frame refused: {error}"),
                    exit,
                });
            }
            Err(SubmitError::PipelineFull) => unreachable!("nothing else is outstanding"),
        };
        let mut done = Vec::with_capacity(1);
        loop {
            let driven = self.drive(handler, None, &mut done);
            // An outcome that arrived just before the sandbox failed still counts.
            if let Some(completed) = done.pop() {
                assert_eq!(completed.invoke_id, invoke_id, "only one was outstanding");
                return Ok(completed.report);
            }
            driven?;
        }
    }

    /// Writes what is queued, waits for the sandbox, `wake` or the head's deadline, and
    /// handles every complete frame; finished invokes are appended to `done` in order (also
    /// those that finished before a failure). Any failure has killed and reaped the
    /// sandbox.
    pub fn drive(
        &mut self,
        handler: &mut dyn HostCallHandler,
        wake: Option<RawFd>,
        done: &mut Vec<Completed>,
    ) -> Result<Driven, SandboxError> {
        if let Some(reaped) = self.reaped {
            return Err(SandboxError::Gone {
                exit: reaped.status,
            });
        }
        let before = done.len();
        self.write_some()?;
        self.handle_buffered(handler, done)?;
        if done.len() > before {
            self.write_some()?;
            return Ok(Driven::Progress);
        }
        let wait = self.head_deadline().map(|deadline| {
            deadline
                .checked_duration_since(Instant::now())
                .unwrap_or(Duration::ZERO)
        });
        if wait == Some(Duration::ZERO) {
            self.check_deadline()?;
        }
        let events = libc::POLLIN | if self.out_pending() { libc::POLLOUT } else { 0 };
        // A lone invoke's answer is often a few tens of µs away: look for it before
        // sleeping (bounded, and only while that pays, see `spin`).
        let lone = self.outstanding.len() == 1;
        let woken = if lone
            && self.answer_spin.paying()
            && self.answer_spin.run(|| ready_now(&self.sock, events, wake))
        {
            poll_fds(&self.sock, events, wake, Some(Duration::ZERO))
        } else {
            let slept = Instant::now();
            let woken = poll_fds(&self.sock, events, wake, wait);
            if lone && !woken {
                self.answer_spin.waited(slept.elapsed());
            }
            woken
        };
        self.write_some()?;
        while self.read_some()? {
            self.handle_buffered(handler, done)?;
        }
        self.write_some()?;
        self.check_deadline()?;
        Ok(if done.len() > before {
            Driven::Progress
        } else if woken {
            Driven::Woken
        } else {
            Driven::Idle
        })
    }

    fn head_deadline(&self) -> Option<Instant> {
        let head = self.outstanding.front()?;
        let since = head
            .head_since
            .expect("the head knows when it became the head");
        let budget =
            Duration::from_millis(invoke_watchdog_ms(self.sandbox_limits.invoke_wall_ms_max));
        Some(since + budget + head.host_time)
    }

    fn check_deadline(&mut self) -> Result<(), SandboxError> {
        let Some(deadline) = self.head_deadline() else {
            return Ok(());
        };
        if Instant::now() < deadline {
            return Ok(());
        }
        let head = self.outstanding.front().expect("a deadline has a head");
        let waited_ms = millis(head.head_since.expect("head").elapsed());
        let exit = self.kill().status;
        Err(SandboxError::Timeout {
            waited_ms,
            what: "running an invoke",
            exit,
        })
    }

    fn handle_buffered(
        &mut self,
        handler: &mut dyn HostCallHandler,
        done: &mut Vec<Completed>,
    ) -> Result<(), SandboxError> {
        while let Some(frame) = self.buffered_frame()? {
            self.on_frame(&frame, handler, done)?;
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        frame: &Frame,
        handler: &mut dyn HostCallHandler,
        done: &mut Vec<Completed>,
    ) -> Result<(), SandboxError> {
        let kind = frame.body().kind();
        let Some(head) = self.outstanding.front() else {
            return Err(self.protocol(format!("{} while no invoke is running", kind.type_name())));
        };
        let (invoke_id, seen_outputs, seen_calls) =
            (head.invoke_id, head.outputs.len(), head.host_calls);
        match kind {
            Kind::InvokeOutput => {
                let out: InvokeOutput = self.payload(frame)?;
                if out.invoke_id != invoke_id || out.seq as usize != seen_outputs {
                    return Err(self.protocol(format!(
                        "output {}/{} during invoke {invoke_id}, expected seq {seen_outputs}",
                        out.invoke_id, out.seq
                    )));
                }
                if out.seq >= self.sandbox_limits.outputs_max {
                    return Err(self.protocol("more outputs than outputs_max".into()));
                }
                self.head_mut().outputs.push(out.output);
            }
            Kind::HostCallRequest => {
                let req: HostCallRequest = self.payload(frame)?;
                if req.invoke_id != invoke_id || req.call_id != seen_calls {
                    return Err(self.protocol(format!(
                        "host call {}/{} during invoke {invoke_id}, expected {seen_calls}",
                        req.invoke_id, req.call_id
                    )));
                }
                if seen_calls >= self.sandbox_limits.host_calls_max {
                    return Err(self.protocol("more host calls than host_calls_max".into()));
                }
                let asked = Instant::now();
                let site = CallSite {
                    agent: &self.agent,
                    invoke_id,
                    trace_id: self
                        .outstanding
                        .front()
                        .map(|o| o.trace)
                        .unwrap_or_default(),
                    call_id: req.call_id,
                };
                let reply = handler.handle(&site, req.call);
                let head = self.head_mut();
                head.host_calls += 1;
                head.host_time += asked.elapsed();
                let trace = head.trace;
                let response = HostCallResponse {
                    invoke_id,
                    call_id: req.call_id,
                    reply,
                };
                if let Err(error) = self.queue(trace, &response) {
                    let exit = self.kill().status;
                    return Err(SandboxError::Protocol {
                        detail: format!("host call reply refused: {error}"),
                        exit,
                    });
                }
                // The guest is blocked until this arrives: write it now.
                self.write_some()?;
            }
            Kind::InvokeOutcome => {
                let outcome: InvokeOutcome = self.payload(frame)?;
                if outcome.invoke_id != invoke_id
                    || outcome.outputs as usize != seen_outputs
                    || outcome.host_calls != seen_calls
                {
                    return Err(self.protocol(format!(
                        "outcome for invoke {} with {} outputs and {} host calls; saw \
                         invoke {invoke_id}, {seen_outputs} outputs, {seen_calls} host calls",
                        outcome.invoke_id, outcome.outputs, outcome.host_calls,
                    )));
                }
                let head = self.outstanding.pop_front().expect("checked above");
                if let Some(next) = self.outstanding.front_mut() {
                    next.head_since = Some(Instant::now());
                }
                done.push(Completed {
                    invoke_id,
                    report: InvokeReport {
                        outputs: head.outputs,
                        outcome,
                        round_trip_us: micros(head.sent.elapsed()),
                    },
                });
            }
            other => {
                return Err(self.protocol(format!("{} during an invoke", other.type_name())));
            }
        }
        Ok(())
    }

    fn head_mut(&mut self) -> &mut Outstanding {
        self.outstanding.front_mut().expect("checked by the caller")
    }
}
