//! Fuzzes the control plane's one entry point from bytes to answers,
//! `ControlPlane::respond`, with a real (embedded) kernel behind it and no socket.
//!
//! Oracles: nothing panics; every answer is one well-formed frame that decodes under the
//! control limits, and is a `control.reply.v1` or an `error.report.v1`; a stream-fatal
//! error ends the session, as it ends a connection.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use runloop_client::wire::limits;
use runloop_kernel::control::{ControlPlane, PeerPolicy, Step};
use runloop_kernel::{Kernel, KernelOptions};
use runloop_proto::{Kind, ManualClock, StreamDecoder, decode_frame};

/// The kernel's clock: the seed frames in `seeds/control_answer` are stamped with it.
const NOW_MS: u64 = 1_763_766_000_000;
/// The peer's uid (the cache is per uid; the policy is checked by the socket, not here).
const UID: u32 = 1_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    plane: Arc<ControlPlane>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let plane = runtime.block_on(async {
            let options = KernelOptions {
                clock: Arc::new(ManualClock::new(NOW_MS)),
                ..KernelOptions::default()
            };
            let kernel = Arc::new(Kernel::boot(options).await.expect("the kernel boots"));
            let policy = PeerPolicy {
                uid: UID,
                group: None,
                root: false,
            };
            Arc::new(ControlPlane::new(kernel, policy))
        });
        Fixture { runtime, plane }
    })
}

fn check_answer(bytes: &[u8], allowed: &[Kind]) {
    let (frame, used) = decode_frame(bytes, &limits(), NOW_MS).expect("answers are frames");
    assert_eq!(used, bytes.len(), "one frame per answer");
    assert!(
        allowed.contains(&frame.body().kind()),
        "{:?}",
        frame.body().kind()
    );
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let mut decoder = StreamDecoder::new(limits());
        let mut rest = data;
        loop {
            let pushed = decoder.push(rest);
            rest = &rest[pushed..];
            while let Some(step) = fixture.plane.respond(UID, &mut decoder).await {
                match step {
                    Step::Reply(bytes) => {
                        check_answer(&bytes, &[Kind::ControlReply, Kind::ErrorReport]);
                    }
                    Step::Close(bytes) => {
                        check_answer(&bytes, &[Kind::ErrorReport]);
                        return;
                    }
                    Step::Subscribe { reply, .. } | Step::Watch { reply, .. } => {
                        check_answer(&reply, &[Kind::ControlReply]);
                    }
                }
            }
            if rest.is_empty() || pushed == 0 {
                return;
            }
        }
    });
});
