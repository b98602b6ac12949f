//! The driver: one OS thread per running agent instance that owns its sandbox and moves
//! invokes through it, pipelined.
//!
//! The agent actor admits a message (quarantine, breaker, ledger) and pushes a [`Job`];
//! the driver submits up to [`PIPELINE_DEPTH`] jobs to the sandbox at once (one `write`
//! for all that are waiting), answers host calls with [`KernelHandler`], and when an
//! outcome arrives completes the ledger entry and answers the caller itself — the actor is
//! not on the reply path. The thread sleeps in `poll` on the sandbox socket and an
//! eventfd; pushing a job writes the eventfd only when the driver is asleep with room in
//! the pipeline, so a busy agent pays no system call per message for the hand-off. After
//! it answered its last invoke, the driver looks for the next job for up to
//! [`JOB_SPIN_US`] before it sleeps, while such looks find one (a caller in a loop; see
//! `runloop_sandbox::spin`), which spares a lone caller the driver's wake-up. The job
//! queue needs no bound of its own: every job is an entry of the agent's in-flight ledger
//! first, which holds at most `IN_FLIGHT_MAX`.
//!
//! A sandbox that fails (dies, breaks the protocol, sends a malformed frame, overruns its
//! deadline) ends the thread: the driver notes which invoke was running (the only one the
//! crash is charged to, see `InFlight::redeliver`), leaves every unanswered job
//! in the ledger and casts [`AgentMsg::SandboxFailed`] to the actor, which restarts or
//! parks. A sandbox that dies while idle is seen at once (the socket closes), so there is
//! no liveness timer.
//!
//! Stopping ([`Driver::stop`]) lets the invokes already in the sandbox finish (each within
//! its deadline), hands the sandbox back for a polite shutdown, and leaves jobs that were
//! never submitted in the ledger for whoever stops the agent to answer. Aborting
//! ([`Driver::abort`], also what dropping does) ends the thread at its next step and kills
//! the sandbox; the invokes in it stay in the ledger for the next instance.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ractor::ActorRef;
use runloop_actors::breaker::{BreakerHandle, CallOutcome};
use runloop_actors::delivery::Key;
use runloop_proto::payloads::PIPELINE_INVOKES_MAX;
use runloop_proto::{MsgId, TraceId};
use runloop_sandbox::spin::JOB_SPIN_US;
use runloop_sandbox::{Completed, LocalHandler, Sandbox, SandboxError, Spin, SubmitError};

use crate::actor::{AgentError, AgentMsg, AgentReply, AgentShared, Pending};
use crate::handler::KernelHandler;

/// Invokes one agent keeps in its sandbox at once.
pub const PIPELINE_DEPTH: usize = 32;
const _: () = assert!(PIPELINE_DEPTH <= PIPELINE_INVOKES_MAX);
/// Stack of a driver thread (host calls run here, including broker and POG calls).
pub const DRIVER_STACK_BYTES: usize = 512 * 1024;

/// One admitted message for the sandbox.
#[derive(Debug)]
pub struct Job {
    pub trace_id: TraceId,
    pub msg_id: MsgId,
    pub pending: Pending,
    /// Deliveries charged so far, including this one.
    pub attempt: u32,
    /// This invoke is a half-open breaker's probe (or a redelivery): its success is
    /// reported to the breaker.
    pub probe: bool,
}

/// What the actor and the driver thread share.
#[derive(Debug)]
struct Inbox {
    jobs: Mutex<VecDeque<Job>>,
    /// The driver is (about to be) asleep in `poll` with room for more jobs.
    sleeping: AtomicBool,
    stop: AtomicBool,
    /// End now and kill the sandbox (the instance failed or is being torn down).
    abort: AtomicBool,
    wake: OwnedFd,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // Each critical section is one push or pop: a poisoned queue is still consistent.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a live u64 to our own eventfd. A full counter
        // (EAGAIN) already means "wake up", so the result is not needed.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// A job waits, or the driver is told to stop or abort (a look that never sleeps).
    fn has_work(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.abort.load(Ordering::Relaxed)
            || self.jobs.try_lock().is_ok_and(|jobs| !jobs.is_empty())
    }

    fn drain_wake(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN
        // (nothing to read) is fine.
        unsafe { libc::read(self.wake.as_raw_fd(), (&raw mut value).cast(), 8) };
    }
}

/// The handle the actor keeps on its running driver.
#[derive(Debug)]
pub struct Driver {
    inbox: Arc<Inbox>,
    thread: Option<JoinHandle<Option<Sandbox>>>,
}

/// Why the driver thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("create the driver's eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("start the driver thread: {0}")]
    Thread(std::io::Error),
}

impl Driver {
    /// Starts the thread that drives `sandbox` for `actor`.
    pub fn start(
        sandbox: Sandbox,
        shared: AgentShared,
        actor: ActorRef<AgentMsg>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, DriverError> {
        // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(DriverError::EventFd(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let inbox = Arc::new(Inbox {
            jobs: Mutex::new(VecDeque::new()),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            wake,
        });
        let theirs = inbox.clone();
        let thread = std::thread::Builder::new()
            .name(format!("agent-{}", shared.config.name))
            .stack_size(DRIVER_STACK_BYTES)
            .spawn(move || run(sandbox, &shared, &theirs, &actor, runtime))
            .map_err(DriverError::Thread)?;
        Ok(Self {
            inbox,
            thread: Some(thread),
        })
    }

    /// Hands one admitted job to the driver.
    pub fn push(&self, job: Job) {
        self.inbox.lock().push_back(job);
        if self.inbox.sleeping.load(Ordering::SeqCst) {
            self.inbox.ring();
        }
    }

    /// Stops the driver once the invokes in the sandbox are done; returns the sandbox when
    /// it is still alive (for a polite shutdown).
    pub fn stop(mut self) -> Option<Sandbox> {
        self.inbox.stop.store(true, Ordering::SeqCst);
        self.inbox.ring();
        let thread = self.thread.take().expect("stopped once");
        thread.join().unwrap_or(None)
    }

    /// Ends the thread at its next step (after a host call it may be answering); it
    /// drops, and so kills and reaps, the sandbox. Returns the thread to join, e.g.
    /// before removing the sandbox's cgroup.
    pub fn abort(mut self) -> Option<JoinHandle<Option<Sandbox>>> {
        self.inbox.abort.store(true, Ordering::SeqCst);
        self.inbox.ring();
        self.thread.take()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.inbox.abort.store(true, Ordering::SeqCst);
            self.inbox.ring();
        }
    }
}

/// The jobs in the sandbox, oldest first, by invoke id.
type InSandbox = VecDeque<(u64, Job)>;

fn run(
    mut sandbox: Sandbox,
    shared: &AgentShared,
    inbox: &Inbox,
    actor: &ActorRef<AgentMsg>,
    runtime: tokio::runtime::Handle,
) -> Option<Sandbox> {
    let mut handler = shared.handlers.wrap(KernelHandler {
        bundle: &shared.config.bundle_name,
        policy: &shared.config.policy,
        services: &shared.services,
        metrics: &shared.metrics,
        runtime: runtime.clone(),
        local: LocalHandler::new(
            shared.services.clock.clone(),
            shared.services.random.clone(),
        ),
    });
    let breaker = shared.links.breaker.get().map(BreakerHandle::new);
    let mut in_sandbox: InSandbox = VecDeque::with_capacity(PIPELINE_DEPTH);
    let mut done: Vec<Completed> = Vec::with_capacity(PIPELINE_DEPTH);
    // After the last answer: when it went out, and the look for the next job.
    let mut answered_at: Option<Instant> = None;
    let mut job_spin = Spin::new(JOB_SPIN_US);
    loop {
        if inbox.abort.load(Ordering::SeqCst) {
            // Dropping the sandbox kills and reaps it.
            return None;
        }
        let stopping = inbox.stop.load(Ordering::SeqCst);
        if stopping && in_sandbox.is_empty() {
            return Some(sandbox);
        }
        if !stopping
            && submit_waiting(&mut sandbox, shared, inbox, &mut in_sandbox) > 0
            && let Some(at) = answered_at.take()
        {
            job_spin.waited(at.elapsed());
        }
        // A caller in a loop sends its next message moments after its answer: look for it
        // before sleeping (bounded, and only while that pays).
        if in_sandbox.is_empty()
            && !stopping
            && answered_at.is_some()
            && job_spin.paying()
            && job_spin.run(|| inbox.has_work())
        {
            continue;
        }
        // Announce sleep only with room for more; then look once more (see `push`).
        let room = in_sandbox.len() < PIPELINE_DEPTH && !stopping;
        if room {
            inbox.sleeping.store(true, Ordering::SeqCst);
            if !inbox.lock().is_empty() {
                inbox.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
        }
        let driven = sandbox.drive(&mut *handler, Some(inbox.wake.as_raw_fd()), &mut done);
        inbox.sleeping.store(false, Ordering::SeqCst);
        inbox.drain_wake();
        // Outcomes that arrived before a failure are answered, not redelivered.
        if !done.is_empty() {
            answered_at = Some(Instant::now());
        }
        for completed in done.drain(..) {
            let (invoke_id, job) = in_sandbox.pop_front().expect("outcomes come in order");
            assert_eq!(invoke_id, completed.invoke_id, "outcomes come in order");
            answer(shared, breaker.as_ref(), &runtime, job, completed);
        }
        if let Err(error) = driven {
            let running = in_sandbox
                .front()
                .map(|(_, job)| (job.trace_id, job.msg_id));
            fail(shared, actor, error, running);
            return None;
        }
    }
}

/// Moves waiting jobs into the sandbox while the pipeline has room; how many it moved.
fn submit_waiting(
    sandbox: &mut Sandbox,
    shared: &AgentShared,
    inbox: &Inbox,
    in_sandbox: &mut InSandbox,
) -> usize {
    let mut submitted = 0;
    while in_sandbox.len() < PIPELINE_DEPTH {
        let Some(job) = inbox.lock().pop_front() else {
            return submitted;
        };
        match sandbox.submit_traced(job.trace_id, job.pending.input().clone()) {
            Ok(invoke_id) => {
                in_sandbox.push_back((invoke_id, job));
                submitted += 1;
            }
            Err(SubmitError::TooLarge(error)) => {
                shared.inflight.complete(job.trace_id, job.msg_id);
                shared.metrics.error(format!("input refused: {error}"));
                job.pending.answer(Err(AgentError::Refused(format!(
                    "agent {}: the input does not fit in one frame: {error}",
                    shared.config.name
                ))));
            }
            // The sandbox is gone or the pipeline is full: `drive` reports the former, and
            // the latter cannot happen below PIPELINE_DEPTH. Keep the job for later.
            Err(SubmitError::Sandbox(_) | SubmitError::PipelineFull) => {
                inbox.lock().push_front(job);
                return submitted;
            }
        }
    }
    submitted
}

/// Completes one finished invoke: ledger, breaker, metrics, and the caller's answer.
fn answer(
    shared: &AgentShared,
    breaker: Option<&BreakerHandle>,
    runtime: &tokio::runtime::Handle,
    job: Job,
    completed: Completed,
) {
    let agent = &shared.config.name;
    shared.inflight.complete(job.trace_id, job.msg_id);
    let report = completed.report;
    let result = match report.outcome.error {
        None => {
            // A success only changes a half-open breaker (closed: no-op), so only probes
            // pay for the round trip to the breaker actor.
            if job.probe
                && let Some(b) = breaker
            {
                runtime.block_on(b.record(agent, CallOutcome::Success));
            }
            shared.metrics.message_out();
            Ok(AgentReply {
                outputs: report.outputs,
                attempt: job.attempt,
                round_trip_us: report.round_trip_us,
                stdout: report.outcome.stdout,
                stderr: report.outcome.stderr,
            })
        }
        Some(error) => {
            let text = error.to_string();
            shared.breaker_unknown();
            if let Some(b) = breaker {
                runtime.block_on(b.record(agent, CallOutcome::Failure(text.clone())));
            }
            shared.metrics.error(text.clone());
            Err(AgentError::Guest {
                agent: agent.to_string(),
                error: text,
                retryable: error.retryable(),
            })
        }
    };
    job.pending.answer(result);
}

/// The sandbox failed: blame the running invoke and tell the actor.
fn fail(
    shared: &AgentShared,
    actor: &ActorRef<AgentMsg>,
    error: SandboxError,
    running: Option<Key>,
) {
    shared.metrics.sandbox_gone();
    shared.blame(running);
    let idle = running.is_none();
    if actor.cast(AgentMsg::SandboxFailed { error, idle }).is_err() {
        // The actor is already gone (stopping): the next instance, if any, redelivers.
    }
}
