//! The conversation with the kernel: hello → load → empty root → seccomp → ready, then
//! invokes until shutdown or the socket closes.

use std::fs::File;
use std::time::Instant;

use runloop_proto::payloads::{
    ErrorReport, Invoke, InvokeError, InvokeOutcome, SANDBOX_PROTOCOL_VERSION, SandboxHello,
    SandboxReady, Shutdown,
};
use runloop_proto::{Kind, Limits, TraceId};

use crate::confine;
use crate::conn::{Conn, ConnError};
use crate::engine::{WASMTIME_VERSION, new_sandbox_engine};
use crate::guest::{Agent, Ticker};

/// How the session ended; main maps it to the exit status.
#[derive(Debug)]
pub enum SessionEnd {
    /// `control.shutdown.v1` received, or the kernel closed the socket between invokes.
    Clean,
    /// The module could not be used; the kernel got an `error.report.v1` with `BadModule`.
    BadModule,
    /// The kernel broke the protocol or the socket failed.
    Protocol(ConnError),
    /// A confinement step failed after the hello; the guest never ran.
    Confine(confine::ConfineError),
}

/// The exit statuses of the sandbox-host (documented in `docs/sandbox.md`).
pub mod exit {
    pub const CLEAN: u8 = 0;
    pub const CONFINE_FAILED: u8 = 70;
    pub const PROTOCOL: u8 = 71;
    pub const BAD_MODULE: u8 = 72;
}

/// The `error.report.v1` code of a failed confinement step (the message names the step).
pub const CONFINE_FAILED_CODE: &str = "ConfineFailed";

/// Tells the kernel which confinement step failed, before exiting with
/// [`exit::CONFINE_FAILED`]. Works before the hello too: the kernel reads the report
/// where it waits for `control.ready.v1`.
pub fn report_confine_failed(
    conn: &mut Conn,
    err: &confine::ConfineError,
) -> Result<(), ConnError> {
    report(conn, TraceId(0), CONFINE_FAILED_CODE, &err.to_string())
}

/// Runs the whole session on `conn`; `module` is the `.cwasm` the kernel opened for us,
/// `started` the process start, for `startup_us`.
pub fn run(mut conn: Conn, module: File, jail: confine::Jail, started: Instant) -> SessionEnd {
    let hello_frame = match conn.recv() {
        Ok(frame) => frame,
        Err(ConnError::Closed) => return SessionEnd::Clean,
        Err(err) => return SessionEnd::Protocol(err),
    };
    let trace = hello_frame.header().trace_id();
    let hello: SandboxHello = match expect(&hello_frame, Kind::SandboxHello) {
        Ok(hello) => hello,
        Err(err) => return SessionEnd::Protocol(err),
    };
    if hello.protocol != SANDBOX_PROTOCOL_VERSION {
        let _ = report(
            &mut conn,
            trace,
            "ProtocolMismatch",
            &format!("sandbox speaks protocol {SANDBOX_PROTOCOL_VERSION}"),
        );
        return SessionEnd::Protocol(ConnError::Unexpected {
            got: "another protocol version",
            want: "the sandbox's protocol version",
        });
    }
    conn.set_limits(Limits::new(hello.limits.frame_body_bytes_max));
    let engine = match new_sandbox_engine(&hello.limits) {
        Ok(engine) => engine,
        Err(err) => {
            let _ = report(&mut conn, trace, "BadModule", &format!("engine: {err:#}"));
            return SessionEnd::BadModule;
        }
    };
    let agent = match Agent::load_file(&engine, module, &hello.module_path) {
        Ok(agent) => agent,
        Err(err) => {
            let _ = report(&mut conn, trace, "BadModule", &err.to_string());
            return SessionEnd::BadModule;
        }
    };
    // Steps 7 and 8 (see `confine`): after the last open, before the second thread.
    if !matches!(jail, confine::Jail::Off)
        && let Err(err) = confine::enter_empty_root().and_then(|()| confine::drop_capabilities())
    {
        let _ = report_confine_failed(&mut conn, &err);
        return SessionEnd::Confine(err);
    }
    let ticker = match Ticker::spawn(engine.clone()) {
        Ok(ticker) => ticker,
        Err(err) => return SessionEnd::Protocol(ConnError::Write(err)),
    };
    if let Err(err) = confine::seccomp_program().and_then(|p| confine::install_seccomp(&p)) {
        let _ = report_confine_failed(&mut conn, &err);
        return SessionEnd::Confine(err);
    }
    let ready = SandboxReady {
        protocol: SANDBOX_PROTOCOL_VERSION,
        wasmtime: WASMTIME_VERSION.into(),
        startup_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    };
    if let Err(err) = conn.send(trace, &ready) {
        return SessionEnd::Protocol(err);
    }
    serve(conn, &agent, &ticker, &hello)
}

/// Answers invokes one at a time, in arrival order, until shutdown.
fn serve(conn: Conn, agent: &Agent, ticker: &Ticker, hello: &SandboxHello) -> SessionEnd {
    let mut conn = Some(conn);
    loop {
        let c = conn.as_mut().expect("conn is back after every invoke");
        let frame = match c.next_request() {
            Ok(frame) => frame,
            Err(ConnError::Closed) => return SessionEnd::Clean,
            Err(err) => return SessionEnd::Protocol(err),
        };
        let trace = frame.header().trace_id();
        match frame.body().kind() {
            Kind::Shutdown => {
                let _: Result<Shutdown, _> = frame.body().payload_as();
                return SessionEnd::Clean;
            }
            Kind::Invoke => {}
            other => {
                return SessionEnd::Protocol(ConnError::Unexpected {
                    got: other.type_name(),
                    want: Kind::Invoke.type_name(),
                });
            }
        }
        let invoke: Invoke = match frame.body().payload_as() {
            Ok(invoke) => invoke,
            Err(err) => return SessionEnd::Protocol(ConnError::Frame(err)),
        };
        let input = rmp_serde::to_vec_named(&invoke.input).expect("inputs serialize");
        let outcome = match agent.invoke(
            &mut conn,
            ticker,
            &hello.limits,
            trace,
            invoke.invoke_id,
            &input,
        ) {
            Ok(outcome) => outcome,
            Err(err) => return SessionEnd::Protocol(err),
        };
        let c = conn.as_mut().expect("conn is back after every invoke");
        // The outcome goes out with the invoke's queued outputs, in one write.
        if let Err(err) = c.send(trace, &outcome) {
            return SessionEnd::Protocol(err);
        }
    }
}

fn expect<P: runloop_proto::KindPayload>(
    frame: &runloop_proto::Frame,
    want: Kind,
) -> Result<P, ConnError> {
    if frame.body().kind() != want {
        return Err(ConnError::Unexpected {
            got: frame.body().kind().type_name(),
            want: want.type_name(),
        });
    }
    frame.body().payload_as().map_err(ConnError::Frame)
}

fn report(conn: &mut Conn, trace: TraceId, code: &str, message: &str) -> Result<(), ConnError> {
    conn.send(
        trace,
        &ErrorReport {
            code: code.into(),
            message: message.into(),
        },
    )
}

/// An outcome for an invoke that never reached the guest.
pub fn refused(invoke_id: u64, error: InvokeError) -> InvokeOutcome {
    InvokeOutcome {
        invoke_id,
        error: Some(error),
        outputs: 0,
        host_calls: 0,
        wall_us: 0,
        fuel_used: None,
        stdout: String::new(),
        stderr: String::new(),
    }
}
