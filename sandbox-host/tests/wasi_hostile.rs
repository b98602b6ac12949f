//! Every WASI p1 import the linker gives guests, called with hostile arguments from a real
//! guest in a real sandbox-host process: each call ends in an errno or a typed guest
//! error, and the sandbox lives on. Before `wasi::poll_oneoff` replaced wasmtime-wasi's,
//! a clock subscription panicked the host ("timers are disabled", exit 101).

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{TestCgroup, input, limits};
use runloop_proto::SystemClock;
use runloop_proto::payloads::InvokeError;
use runloop_sandbox::{CgroupLimits, LocalHandler, OsRandom, Sandbox, SpawnConfig};
use runloop_sandbox_host::wasi::{P1_MODULE, p1_imports};
use wasmtime::ValType;

/// Where the prepared subscriptions start in guest memory.
const SUBS_AT: u32 = 1024;
/// Where a poll writes its events, and its event count.
const EVENTS_AT: u32 = 8192;
const NEVENTS_AT: u32 = 16_000;
/// Each invoke's wall-time limit; a call that blocked in the host would outlast it and
/// the kernel's watchdog would kill the sandbox (a `SandboxError`, which fails the test).
const INVOKE_WALL_MS: u64 = 1_000;

/// One p1 `subscription` (48 bytes): userdata, tag, then the clock or fd fields.
fn subscription(userdata: u64, tag: u8, id_or_fd: u32, timeout_ns: u64, flags: u16) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[8] = tag;
    s[16..20].copy_from_slice(&id_or_fd.to_le_bytes());
    s[24..32].copy_from_slice(&timeout_ns.to_le_bytes());
    s[40..42].copy_from_slice(&flags.to_le_bytes());
    s
}

/// The prepared subscriptions: a one-hour monotonic sleep, an absolute realtime deadline
/// at the end of time, a read of stdin, a write to an fd the guest does not have, and a
/// subscription with a tag p1 does not know.
fn subscriptions() -> Vec<u8> {
    const HOUR_NS: u64 = 3_600_000_000_000;
    [
        subscription(7, 0, 1, HOUR_NS, 0),
        subscription(8, 0, 0, u64::MAX, 1),
        subscription(9, 1, 0, 0, 0),
        subscription(10, 2, 9, 0, 0),
        subscription(11, 7, 0, 0, 0),
    ]
    .concat()
}

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "\\{b:02x}");
        s
    })
}

/// The argument lists every import is called with, by case digit: zeros (fd 0, pointer
/// 0), all ones (bad fd, pointers and lengths at 4 GiB), the last bytes of memory, and a
/// plausible call (fd 1, pointers into the prepared area, an hour for every i64).
fn generic_case(case: u8, ty: &ValType, first: bool) -> String {
    let (i32v, i64v): (i64, i64) = match case {
        0 => (0, 0),
        1 => (-1, -1),
        2 => (65_532, 1 << 62),
        _ => (
            if first { 1 } else { i64::from(SUBS_AT) },
            3_600_000_000_000,
        ),
    };
    match ty {
        ValType::I64 => format!("(i64.const {i64v})"),
        ValType::I32 => format!("(i32.const {i32v})"),
        other => panic!("p1 imports take only i32/i64, not {other}"),
    }
}

/// `poll_oneoff`'s own cases: one hour-long sleep, four mixed subscriptions, and five
/// with an invalid tag; with the errno each must return.
const POLL_CASES: [(u8, u32, i32); 3] = [(4, 1, 0), (5, 4, 0), (6, 5, 28)];

/// `(param i32 i64)` for a non-empty list, nothing for an empty one.
fn signature(what: &str, types: &[String]) -> String {
    if types.is_empty() {
        String::new()
    } else {
        format!("({what} {})", types.join(" "))
    }
}

/// A guest whose `runloop_handle` calls `name` with the arguments of the case named by
/// the input's last byte (the text's last character) and returns the errno it got.
fn guest(name: &str, ty: &wasmtime::FuncType) -> String {
    let params: Vec<String> = ty.params().map(|p| p.to_string()).collect();
    let results: Vec<String> = ty.results().map(|p| p.to_string()).collect();
    let mut body = String::new();
    for case in 0..4u8 {
        let args: String = ty
            .params()
            .enumerate()
            .map(|(i, p)| generic_case(case, &p, i == 0))
            .collect();
        let call = format!("(call $f {args})");
        let ret = if results.is_empty() {
            format!("{call} (return (i32.const 0))")
        } else {
            format!("(return {call})")
        };
        let _ = writeln!(
            body,
            "(if (i32.eq (local.get $case) (i32.const {})) (then {ret}))",
            b'0' + case
        );
    }
    if name == "poll_oneoff" {
        for (case, n, _) in POLL_CASES {
            let _ = writeln!(
                body,
                "(if (i32.eq (local.get $case) (i32.const {})) (then (return (call $f \
                 (i32.const {SUBS_AT}) (i32.const {EVENTS_AT}) (i32.const {n}) \
                 (i32.const {NEVENTS_AT})))))",
                b'0' + case
            );
        }
    }
    format!(
        r#"(module
  (import "{P1_MODULE}" "{name}" (func $f {params} {results}))
  (memory (export "memory") 1)
  (data (i32.const {SUBS_AT}) "{subs}")
  (func (export "runloop_abi_v1"))
  (func (export "runloop_alloc") (param i32) (result i32) (i32.const 32768))
  (func (export "runloop_handle") (param $p i32) (param $n i32) (result i32)
    (local $case i32)
    (local.set $case (i32.load8_u (i32.sub (i32.add (local.get $p) (local.get $n)) (i32.const 1))))
    {body}
    (i32.const 0)))"#,
        params = signature("param", &params),
        results = signature("result", &results),
        subs = wat_bytes(&subscriptions()),
    )
}

#[test]
fn every_wasi_import_with_hostile_arguments_ends_in_an_errno_or_a_typed_error() {
    let engine = runloop_sandbox_host::engine::new_engine().unwrap();
    let imports = p1_imports(&engine).unwrap();
    assert!(
        imports.len() >= 40 && imports.iter().any(|(n, _)| n == "poll_oneoff"),
        "the linker's p1 imports: {:?}",
        imports.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let mut l = limits();
    l.invoke_wall_ms_max = INVOKE_WALL_MS;
    let cg = TestCgroup::new(
        "wasi",
        &CgroupLimits {
            memory_bytes_max: Some(256 * 1024 * 1024),
            cpu_percent_max: Some(100),
            pids_max: Some(16),
        },
    );
    let mut failures = Vec::new();
    let mut calls = 0;
    for (name, ty) in &imports {
        let module_path = common::cwasm_of(&guest(name, ty));
        let config = SpawnConfig {
            program: common::program(),
            extra_args: Vec::new(),
            agent: name.clone(),
            module_path,
            limits: l,
        };
        let mut sandbox = Sandbox::spawn(&config, Some(cg.group())).expect("spawn");
        let cases: Vec<u8> = if name == "poll_oneoff" {
            (0..4).chain(POLL_CASES.iter().map(|c| c.0)).collect()
        } else {
            (0..4).collect()
        };
        for case in cases {
            calls += 1;
            let text = char::from(b'0' + case).to_string();
            let started = Instant::now();
            let mut handler = LocalHandler::new(SystemClock, OsRandom);
            let report = match sandbox.invoke(input(&text), &mut handler) {
                Ok(report) => report,
                Err(err) => {
                    failures.push(format!("{name} case {case}: sandbox failed: {err}"));
                    break;
                }
            };
            let took = started.elapsed();
            if took > Duration::from_millis(INVOKE_WALL_MS * 3) {
                failures.push(format!("{name} case {case}: took {took:?}"));
            }
            // Every outcome is typed; the ones a call can reach are these.
            match &report.outcome.error {
                None
                | Some(InvokeError::GuestFailed { .. })
                | Some(InvokeError::Trap { .. })
                | Some(InvokeError::GuestFault { .. })
                | Some(InvokeError::LogLimit { .. }) => {}
                other => failures.push(format!("{name} case {case}: unexpected {other:?}")),
            }
            if let Some((_, _, errno)) = POLL_CASES.iter().find(|c| c.0 == case)
                && name == "poll_oneoff"
            {
                let want = match errno {
                    0 => None,
                    e => Some(InvokeError::GuestFailed {
                        message: format!("runloop_handle returned {e}"),
                    }),
                };
                if report.outcome.error != want {
                    failures.push(format!(
                        "poll_oneoff case {case}: want {want:?}, got {:?}",
                        report.outcome.error
                    ));
                }
            }
        }
        sandbox.kill();
    }
    assert!(calls > 160, "{calls} calls");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
