//! One sandbox-host process seen from the kernel: spawn into a cgroup, handshake, invoke,
//! pump host calls, shut down, kill, reap.
//!
//! Boundary: the process on the other end is hostile. Every byte it sends goes through a
//! bounded [`StreamDecoder`]; a frame that is malformed or too large (the exact RMP error,
//! e.g. `BodyTooLarge`, `InvalidMagic`), a repeat of one of its last [`SEEN_FRAMES_MAX`]
//! frames (`Duplicate`, by `(trace_id, msg_id)`), a valid frame of the wrong kind or with
//! the wrong ids, more outputs or host calls than its limits, or silence past the invoke deadline:
//! each kills the process at once and is returned as a [`SandboxError`]. The kernel reaps
//! it and reports how it ended, including the signal.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use runloop_proto::dedupe::DEDUPE_AGE_MS_MAX_DEFAULT;
use runloop_proto::frame::encode_frame_into;
use runloop_proto::payloads::{
    AgentOutput, ErrorReport, InvokeOutcome, SANDBOX_PROTOCOL_VERSION, SandboxHello, SandboxLimits,
    SandboxReady, Shutdown,
};
use runloop_proto::{
    Clock, DedupeCache, DedupeLimits, Frame, FrameError, Kind, KindPayload, Limits, MsgIdGen,
    StreamDecoder, SystemClock, TraceId,
};
use serde::Serialize;

use crate::cgroup::AgentCgroup;
use crate::poll::{poll_fds, readable_now};
use crate::spawn::{ChildPlan, Jail};

/// The sandbox-host's command line: `--socket-fd N --module-fd M --jail J
/// --parent-pidfd P` (parsed by `runloop-sandbox-host`'s main; a test checks both sides
/// agree).
pub const SOCKET_FD_ARG: &str = "--socket-fd";
/// See [`SOCKET_FD_ARG`].
pub const MODULE_FD_ARG: &str = "--module-fd";
/// See [`SOCKET_FD_ARG`].
pub const JAIL_ARG: &str = "--jail";
/// See [`SOCKET_FD_ARG`]: a pidfd of the kernel process, polled by the sandbox-host after
/// it set the parent-death signal again (its uid change cleared it).
pub const PARENT_PIDFD_ARG: &str = "--parent-pidfd";
/// The `error.report.v1` code a sandbox sends when a confinement step failed.
pub const CONFINE_FAILED_CODE: &str = "ConfineFailed";

/// How many of a sandbox's recent frames are remembered to refuse a repeat (`Duplicate`):
/// at most a few KiB per sandbox, and far more than one pipelined window of frames.
pub const SEEN_FRAMES_MAX: usize = 256;
/// How long a new sandbox may take to answer the hello.
pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// Fixed slack above an invoke's wall-time limit before the kernel kills the sandbox
/// itself (see [`invoke_watchdog_ms`]).
pub const INVOKE_GRACE_MS: u64 = 1_000;
/// Slack that grows with the limit, per mille of it: a sandbox on a loaded machine is
/// scheduled late in proportion to how long it runs, and its own `TimeLimit` must win.
pub const INVOKE_GRACE_PER_MILLE: u64 = 100;

/// How long the kernel's watchdog lets one invoke with wall-time limit `limit_ms` run
/// (not counting the time the kernel spends answering its host calls) before it kills the
/// sandbox: the limit, [`INVOKE_GRACE_MS`], and [`INVOKE_GRACE_PER_MILLE`] of the limit.
pub fn invoke_watchdog_ms(limit_ms: u64) -> u64 {
    limit_ms
        .saturating_add(INVOKE_GRACE_MS)
        .saturating_add(limit_ms / 1000 * INVOKE_GRACE_PER_MILLE)
}
/// How long a sandbox may take to exit after `control.shutdown.v1`.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 1_000;
/// Time to live of frames the kernel sends to a sandbox.
pub const FRAME_TTL_MS: u64 = 60_000;
/// Bytes read from the socket per call.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Polling step while waiting for an exiting process (bounded by the timeouts above).
const EXIT_POLL_MS: u64 = 1;
/// How long the kernel waits for a sandbox to take one frame it sends outside an invoke.
pub const SEND_TIMEOUT_MS: u64 = 1_000;

/// Everything needed to start one sandbox.
#[derive(Debug, Clone)]
pub struct SpawnConfig {
    /// The `runloop-sandbox-host` binary (see [`crate::locate_sandbox_host`]).
    pub program: PathBuf,
    /// Extra arguments after `--socket-fd N` (tests only).
    pub extra_args: Vec<String>,
    pub agent: String,
    /// The `.cwasm` made by `runloop-compile`.
    pub module_path: PathBuf,
    pub limits: SandboxLimits,
}

/// How a sandbox process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signaled(sig) => {
                let name = nix::sys::signal::Signal::try_from(*sig)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name} ({sig})")
            }
        }
    }
}

/// A reaped process: its status and what it used, from `wait4`'s rusage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub status: ExitStatus,
    pub peak_rss_kb: u64,
    pub cpu_us: u64,
}

/// What the kernel knows about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxFacts {
    pub pid: u32,
    /// Spawn (before clone) to `control.ready.v1` received, microseconds.
    pub cold_start_us: u64,
    /// Process start to ready, as the sandbox measured it.
    pub startup_us: u64,
    /// Peak resident set, KiB (`VmHWM` while alive, rusage once reaped).
    pub peak_rss_kb: u64,
    /// Current resident set, KiB (0 once reaped).
    pub rss_kb: u64,
    /// User + system CPU, microseconds.
    pub cpu_us: u64,
    /// The agent's cgroup, relative to each controller root, if any.
    pub cgroup_path: Option<String>,
    /// Set once the process has been reaped.
    pub exit: Option<ExitStatus>,
}

/// Why talking to a sandbox failed. Unless noted, the process has been killed and reaped.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("create socket pair: {0}")]
    Socket(io::Error),
    #[error("open {path} to join the cgroup: {source}")]
    CgroupJoin { path: PathBuf, source: io::Error },
    #[error("spawn {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("open the agent's module {path}: {source}")]
    OpenModule { path: PathBuf, source: io::Error },
    #[error("spawn {program}: before exec, {step}: {source}")]
    BeforeExec {
        program: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("sandbox could not confine itself: {step} (sandbox {exit})")]
    Confine { step: String, exit: ExitStatus },
    #[error("sandbox sent an invalid frame: {error} (sandbox {exit})")]
    BadFrame { error: FrameError, exit: ExitStatus },
    #[error("sandbox broke the protocol: {detail} (sandbox {exit})")]
    Protocol { detail: String, exit: ExitStatus },
    #[error("sandbox refused the module: {message} (sandbox {exit})")]
    BadModule { message: String, exit: ExitStatus },
    #[error("sandbox died: {exit}")]
    Died { exit: ExitStatus },
    #[error("sandbox silent for {waited_ms} ms while {what} (sandbox {exit})")]
    Timeout {
        waited_ms: u64,
        what: &'static str,
        exit: ExitStatus,
    },
    #[error("write to sandbox: {source} (sandbox {exit})")]
    Write { source: io::Error, exit: ExitStatus },
    #[error("sandbox already exited: {exit}")]
    Gone { exit: ExitStatus },
}

impl SandboxError {
    /// The RMP error name, when the sandbox sent an invalid frame.
    pub fn frame_error_name(&self) -> Option<&'static str> {
        match self {
            SandboxError::BadFrame { error, .. } => Some(error.name()),
            _ => None,
        }
    }

    /// How the process ended, when it has.
    pub fn exit(&self) -> Option<ExitStatus> {
        match self {
            SandboxError::BadFrame { exit, .. }
            | SandboxError::Protocol { exit, .. }
            | SandboxError::BadModule { exit, .. }
            | SandboxError::Confine { exit, .. }
            | SandboxError::Died { exit }
            | SandboxError::Timeout { exit, .. }
            | SandboxError::Write { exit, .. }
            | SandboxError::Gone { exit } => Some(*exit),
            _ => None,
        }
    }
}

/// The end of one invoke, as the kernel saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeReport {
    pub outputs: Vec<AgentOutput>,
    pub outcome: InvokeOutcome,
    /// Send of `intent.invoke.v1` to receipt of `toolresult.invoke.v1`, microseconds.
    pub round_trip_us: u64,
}

/// A running (or reaped) sandbox-host process and its socket.
#[derive(Debug)]
pub struct Sandbox {
    pid: i32,
    pub(crate) sock: UnixStream,
    decoder: StreamDecoder,
    /// The `(trace_id, msg_id)` of the sandbox's recent frames: a repeat is `Duplicate`.
    seen: DedupeCache,
    limits: Limits,
    pub(crate) sandbox_limits: SandboxLimits,
    pub(crate) agent: String,
    ids: MsgIdGen,
    pub(crate) next_invoke: u64,
    buf: Box<[u8]>,
    /// Encoded frames not yet written, from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// Invokes sent and not yet answered, oldest (the one running) first.
    pub(crate) outstanding: VecDeque<crate::pipeline::Outstanding>,
    /// The look for the answer to a lone invoke before sleeping in `poll`.
    pub(crate) answer_spin: crate::spin::Spin,
    facts: SandboxFacts,
    pub(crate) reaped: Option<Reaped>,
}

/// Opens each `cgroup.procs` for the child to write `0` into between clone and exec.
fn open_procs(cgroup: Option<&AgentCgroup>) -> Result<Vec<File>, SandboxError> {
    let Some(cgroup) = cgroup else {
        return Ok(Vec::new());
    };
    cgroup
        .procs_files()
        .into_iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| SandboxError::CgroupJoin { path, source })
        })
        .collect()
}

impl Sandbox {
    /// Starts a sandbox in `cgroup` (joined before exec), jailed as
    /// [`Jail::for_this_process`], sends the hello and waits for `control.ready.v1`.
    pub fn spawn(config: &SpawnConfig, cgroup: Option<&AgentCgroup>) -> Result<Self, SandboxError> {
        Self::spawn_jailed(config, cgroup, Jail::for_this_process())
    }

    /// [`Sandbox::spawn`] with an explicit jail (the benchmark's baseline uses
    /// [`Jail::Off`]; the kernel never does).
    pub fn spawn_jailed(
        config: &SpawnConfig,
        cgroup: Option<&AgentCgroup>,
        jail: Jail,
    ) -> Result<Self, SandboxError> {
        let started = Instant::now();
        let (ours, theirs) = UnixStream::pair().map_err(SandboxError::Socket)?;
        // Every wait on our end is a poll with a deadline; reads and writes never block.
        // (The flag is per end: the sandbox's end stays blocking.)
        ours.set_nonblocking(true).map_err(SandboxError::Socket)?;
        // The kernel opens the `.cwasm` and hands it over: the sandbox opens no file by
        // path, and its dropped uid may not be able to reach the kernel's cache.
        let module =
            File::open(&config.module_path).map_err(|source| SandboxError::OpenModule {
                path: config.module_path.clone(),
                source,
            })?;
        let procs = open_procs(cgroup)?;
        let procs_fds: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();
        let spawn_err = |source| SandboxError::Spawn {
            program: config.program.clone(),
            source,
        };
        let parent = crate::spawn::parent_pidfd().map_err(spawn_err)?;
        let keep = [theirs.as_raw_fd(), module.as_raw_fd(), parent];
        let mut args = vec![
            SOCKET_FD_ARG.to_owned(),
            keep[0].to_string(),
            MODULE_FD_ARG.to_owned(),
            keep[1].to_string(),
            JAIL_ARG.to_owned(),
            jail.arg(),
            PARENT_PIDFD_ARG.to_owned(),
            keep[2].to_string(),
        ];
        args.extend(config.extra_args.iter().cloned());
        let plan =
            ChildPlan::new(&config.program, &args, procs_fds, keep, jail).map_err(spawn_err)?;
        let pid = crate::spawn::spawn(plan).map_err(|e| SandboxError::BeforeExec {
            program: config.program.clone(),
            step: e.step.name(),
            source: e.source,
        })?;
        drop(theirs);
        drop(module);
        drop(procs);
        let limits = Limits::new(config.limits.frame_body_bytes_max);
        let mut sandbox = Sandbox {
            pid,
            sock: ours,
            decoder: StreamDecoder::new(limits),
            seen: DedupeCache::new(DedupeLimits {
                entries_max: SEEN_FRAMES_MAX,
                age_ms_max: DEDUPE_AGE_MS_MAX_DEFAULT,
            }),
            limits,
            sandbox_limits: config.limits,
            agent: config.agent.clone(),
            ids: MsgIdGen::starting_at(1),
            next_invoke: 1,
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            out: Vec::new(),
            out_sent: 0,
            outstanding: VecDeque::new(),
            answer_spin: crate::spin::Spin::new(crate::spin::ANSWER_SPIN_US),
            facts: SandboxFacts {
                pid: pid as u32,
                cold_start_us: 0,
                startup_us: 0,
                peak_rss_kb: 0,
                rss_kb: 0,
                cpu_us: 0,
                cgroup_path: cgroup.map(|c| c.path().to_owned()),
                exit: None,
            },
            reaped: None,
        };
        sandbox.handshake(config, started)?;
        Ok(sandbox)
    }

    fn handshake(&mut self, config: &SpawnConfig, started: Instant) -> Result<(), SandboxError> {
        let trace = TraceId(u128::from(self.pid as u32) << 64);
        let hello = SandboxHello {
            protocol: SANDBOX_PROTOCOL_VERSION,
            agent: config.agent.clone(),
            module_path: config.module_path.to_string_lossy().into_owned(),
            limits: config.limits,
        };
        self.send(trace, &hello)?;
        let deadline = Instant::now() + Duration::from_millis(HELLO_TIMEOUT_MS);
        let frame = self.recv(deadline, "waiting for control.ready.v1")?;
        match frame.body().kind() {
            Kind::SandboxReady => {
                let ready: SandboxReady = self.payload(&frame)?;
                if ready.protocol != SANDBOX_PROTOCOL_VERSION {
                    return Err(self.protocol(format!("ready with protocol {}", ready.protocol)));
                }
                self.facts.cold_start_us = micros(started.elapsed());
                self.facts.startup_us = ready.startup_us;
                Ok(())
            }
            Kind::ErrorReport => {
                let report: ErrorReport = self.payload(&frame)?;
                let exit = self.wait_exit(SHUTDOWN_TIMEOUT_MS).status;
                if report.code == CONFINE_FAILED_CODE {
                    return Err(SandboxError::Confine {
                        step: report.message,
                        exit,
                    });
                }
                Err(SandboxError::BadModule {
                    message: format!("{}: {}", report.code, report.message),
                    exit,
                })
            }
            other => {
                Err(self.protocol(format!("{} instead of control.ready.v1", other.type_name())))
            }
        }
    }

    /// Asks the sandbox to exit and reaps it (killing it if it does not exit in time).
    pub fn shutdown(mut self) -> Reaped {
        if let Some(reaped) = self.reaped {
            return reaped;
        }
        self.refresh_facts();
        let trace = TraceId(u128::from(self.pid as u32) << 64);
        let reason = Shutdown {
            reason: "kernel asked".into(),
        };
        if self.send(trace, &reason).is_err() {
            return self.reaped.expect("a failed send reaps");
        }
        self.wait_exit(SHUTDOWN_TIMEOUT_MS)
    }

    /// Kills the sandbox with SIGKILL and reaps it.
    pub fn kill(&mut self) -> Reaped {
        if let Some(reaped) = self.reaped {
            return reaped;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.reap(0)
            .expect("wait4 without WNOHANG returns the child")
    }

    /// Waits up to `timeout_ms` for the process to exit by itself, then kills it.
    pub fn wait_exit(&mut self, timeout_ms: u64) -> Reaped {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        // A pidfd turns "has it exited yet?" into one poll instead of a sleep loop.
        let pidfd = pidfd_open(self.pid);
        loop {
            if let Some(reaped) = self.reap(libc::WNOHANG) {
                return reaped;
            }
            let now = Instant::now();
            if now >= deadline {
                return self.kill();
            }
            match &pidfd {
                Some(fd) => {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let wait_ms =
                        i32::try_from((deadline - now).as_millis().max(1)).unwrap_or(i32::MAX);
                    // SAFETY: `pfd` is one live, initialised pollfd; poll writes `revents`.
                    unsafe { libc::poll(&mut pfd, 1, wait_ms) };
                }
                None => std::thread::sleep(Duration::from_millis(EXIT_POLL_MS)),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Whether this sandbox can serve another agent instance of the same module and limits
    /// (a warm sandbox, `runloop-agent`'s `warm` module): alive, idle — no invoke
    /// outstanding, nothing queued to write or half-read — and silent: its socket has
    /// nothing to read, as a frame outside an invoke or a close would. Every invoke runs
    /// in a fresh instance of the module (`sandbox-host`'s guest), so nothing a guest did
    /// reaches the next one.
    pub fn is_reusable(&mut self) -> bool {
        if self.reaped.is_some()
            || !self.outstanding.is_empty()
            || self.out_sent < self.out.len()
            || self.decoder.buffered_bytes() > 0
            || self.decoder.is_poisoned()
        {
            return false;
        }
        if self.reap(libc::WNOHANG).is_some() {
            return false;
        }
        !readable_now(&self.sock)
    }

    /// Hands this idle sandbox to another agent instance: the name its errors carry and
    /// the group it was moved into ([`AgentCgroup::move_in`]).
    pub fn reassign(&mut self, agent: &str, cgroup: Option<&AgentCgroup>) {
        agent.clone_into(&mut self.agent);
        self.facts.cgroup_path = cgroup.map(|c| c.path().to_owned());
    }

    /// What is known about this sandbox now.
    pub fn facts(&mut self) -> SandboxFacts {
        self.refresh_facts();
        self.facts.clone()
    }

    pub(crate) fn refresh_facts(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        if let Some((hwm, rss, cpu)) = proc_usage(self.pid) {
            self.facts.peak_rss_kb = self.facts.peak_rss_kb.max(hwm);
            self.facts.rss_kb = rss;
            self.facts.cpu_us = cpu;
        }
    }

    /// `wait4` with `options`; `None` when WNOHANG found it still running.
    fn reap(&mut self, options: libc::c_int) -> Option<Reaped> {
        if let Some(reaped) = self.reaped {
            return Some(reaped);
        }
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = loop {
            // SAFETY: both pointers refer to live locals of the right types; the pid is
            // our own child, not yet reaped (self.reaped is None).
            let rc = unsafe { libc::wait4(self.pid, &mut status, options, &mut usage) };
            if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break rc;
        };
        assert!(
            rc >= 0,
            "wait4 on our own child: {}",
            io::Error::last_os_error()
        );
        if rc == 0 {
            return None;
        }
        let exit = if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        };
        let tv_us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
        let reaped = Reaped {
            status: exit,
            peak_rss_kb: usage.ru_maxrss as u64,
            cpu_us: tv_us(usage.ru_utime) + tv_us(usage.ru_stime),
        };
        self.facts.exit = Some(exit);
        self.facts.peak_rss_kb = self.facts.peak_rss_kb.max(reaped.peak_rss_kb);
        self.facts.rss_kb = 0;
        self.facts.cpu_us = reaped.cpu_us;
        self.reaped = Some(reaped);
        Some(reaped)
    }

    /// Sends one frame now: queues it and writes until it is out (or `SEND_TIMEOUT_MS`).
    pub(crate) fn send<P: KindPayload + Serialize>(
        &mut self,
        trace: TraceId,
        payload: &P,
    ) -> Result<(), SandboxError> {
        if let Err(error) = self.queue(trace, payload) {
            // Only a payload above the sandbox's own frame cap gets here.
            let exit = self.kill().status;
            return Err(SandboxError::Protocol {
                detail: format!("kernel frame refused: {error}"),
                exit,
            });
        }
        let deadline = Instant::now() + Duration::from_millis(SEND_TIMEOUT_MS);
        while self.out_pending() {
            self.write_some()?;
            if !self.out_pending() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let exit = self.kill().status;
                return Err(SandboxError::Timeout {
                    waited_ms: SEND_TIMEOUT_MS,
                    what: "taking a frame from the kernel",
                    exit,
                });
            }
            poll_fds(&self.sock, libc::POLLOUT, None, Some(deadline - now));
        }
        Ok(())
    }

    /// Encodes one frame onto the outgoing buffer; nothing is written yet. A frame above
    /// the sandbox's cap is refused here and nothing is queued.
    pub(crate) fn queue<P: KindPayload + Serialize>(
        &mut self,
        trace: TraceId,
        payload: &P,
    ) -> Result<(), FrameError> {
        // Refused (not a panic) for a payload nesting deeper than a body may.
        let frame = Frame::of(
            payload,
            SystemClock.now_ms(),
            FRAME_TTL_MS,
            trace,
            self.ids.next_id(),
        )?;
        encode_frame_into(&frame, &self.limits, &mut self.out)
    }

    /// Whether queued bytes wait to be written.
    pub(crate) fn out_pending(&self) -> bool {
        self.out_sent < self.out.len()
    }

    /// Writes as much of the queue as the socket takes now, without blocking.
    pub(crate) fn write_some(&mut self) -> Result<(), SandboxError> {
        while self.out_pending() {
            match self.sock.write(&self.out[self.out_sent..]) {
                Ok(n) => self.out_sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let exit = self.wait_exit(SHUTDOWN_TIMEOUT_MS).status;
                    return Err(SandboxError::Write { source, exit });
                }
            }
        }
        self.out.clear();
        self.out_sent = 0;
        Ok(())
    }

    /// Reads what the socket holds now into the decoder, without blocking. `Ok(false)`:
    /// nothing was there.
    pub(crate) fn read_some(&mut self) -> Result<bool, SandboxError> {
        let want = self.decoder.free_bytes().min(self.buf.len());
        if want == 0 {
            return Ok(false);
        }
        match self.sock.read(&mut self.buf[..want]) {
            Ok(0) => {
                let exit = self.wait_exit(SHUTDOWN_TIMEOUT_MS).status;
                Err(SandboxError::Died { exit })
            }
            Ok(n) => {
                let taken = self.decoder.push(&self.buf[..n]);
                assert_eq!(taken, n, "reads are sized to the decoder's free space");
                Ok(true)
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(_) => {
                let exit = self.wait_exit(SHUTDOWN_TIMEOUT_MS).status;
                Err(SandboxError::Died { exit })
            }
        }
    }

    /// The next complete frame already received, if any; a malformed one, or one whose
    /// `(trace_id, msg_id)` the sandbox sent before (`Duplicate`), kills the sandbox.
    pub(crate) fn buffered_frame(&mut self) -> Result<Option<Frame>, SandboxError> {
        let now_ms = SystemClock.now_ms();
        let decoded = self
            .decoder
            .next_frame(now_ms)
            .and_then(|frame| match frame {
                Some(frame) => {
                    let header = frame.header();
                    self.seen
                        .check_and_insert(header.trace_id(), header.msg_id(), now_ms)
                        .map(|()| Some(frame))
                }
                None => Ok(None),
            });
        match decoded {
            Ok(frame) => Ok(frame),
            Err(error) => {
                let exit = self.kill().status;
                Err(SandboxError::BadFrame { error, exit })
            }
        }
    }

    /// The next valid frame before `deadline`; any failure kills and reaps the sandbox.
    fn recv(&mut self, deadline: Instant, what: &'static str) -> Result<Frame, SandboxError> {
        let started = Instant::now();
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.write_some()?;
            if self.read_some()? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                let exit = self.kill().status;
                return Err(SandboxError::Timeout {
                    waited_ms: millis(started.elapsed()),
                    what,
                    exit,
                });
            }
            let events = libc::POLLIN | if self.out_pending() { libc::POLLOUT } else { 0 };
            poll_fds(&self.sock, events, None, Some(deadline - now));
        }
    }

    pub(crate) fn payload<P: KindPayload>(&mut self, frame: &Frame) -> Result<P, SandboxError> {
        match frame.body().payload_as::<P>() {
            Ok(p) => Ok(p),
            Err(error) => {
                let exit = self.kill().status;
                Err(SandboxError::BadFrame { error, exit })
            }
        }
    }

    pub(crate) fn protocol(&mut self, detail: String) -> SandboxError {
        let exit = self.kill().status;
        SandboxError::Protocol { detail, exit }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill();
        }
    }
}

/// A pidfd for our child `pid` (readable once it exits); `None` where the kernel has none.
fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor we own; OwnedFd closes it once.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `(VmHWM KiB, VmRSS KiB, utime+stime µs)` of a live process from /proc.
fn proc_usage(pid: i32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((field("VmHWM:"), field("VmRSS:"), ticks * 1_000_000 / hz))
}
