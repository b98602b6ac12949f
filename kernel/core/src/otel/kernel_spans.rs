//! The kernel's own `tracing` spans (a run's `node.attempt`, `agent.start`,
//! `confirmation.wait`) into OpenTelemetry, for a program that installs its global
//! `tracing` subscriber before it knows whether export is on: `rlp` reads its config per
//! command, long after `main` set the subscriber, and a global subscriber cannot be
//! replaced. So the binaries install [`KernelSpans`] at start ([`install`]); it stays idle
//! — its filter lets no span through — until [`crate::otel::Otel::export_kernel_spans`]
//! binds a tracer to it, once per process.
//!
//! Only Runloop's own crates' spans (targets `runloop*`) are exported: the exporter's
//! HTTP/2 and gRPC stack opens spans for every frame, and exporting those would feed
//! itself.

use std::sync::{Arc, OnceLock};

use opentelemetry::Context;
use opentelemetry::trace::{SpanBuilder, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{self, Filter, Layer as _, SubscriberExt as _};

/// The `tracing` targets whose spans are exported (Runloop's own crates).
const KERNEL_TARGET_PREFIX: &str = "runloop";

/// The tracer the kernel's spans go to, bound at most once per process.
type Slot = Arc<OnceLock<SdkTracer>>;

/// A marker layer in the global subscriber: where [`crate::otel::Otel`] finds the slot to
/// bind its tracer into (through `tracing`'s downcast of the dispatcher; the default
/// `Layer::downcast_raw` answers for this type). It sees no span itself.
#[derive(Debug)]
pub struct KernelSpans {
    slot: Slot,
}

/// Why the kernel's spans could not be bound to an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(
        "the program's tracing subscriber has no kernel-span layer (installed by runloop_kernel::otel::kernel_spans::install)"
    )]
    NoLayer,
    #[error("the kernel's spans already go to an earlier export of this process")]
    AlreadyBound,
}

impl KernelSpans {
    /// Binds `tracer` to the current dispatcher's [`KernelSpans`].
    pub(crate) fn bind_current(tracer: SdkTracer) -> Result<(), BindError> {
        let mut tracer = Some(tracer);
        tracing::dispatcher::get_default(|dispatch| {
            let layer = dispatch
                .downcast_ref::<KernelSpans>()
                .ok_or(BindError::NoLayer)?;
            let tracer = tracer.take().ok_or(BindError::AlreadyBound)?;
            layer.slot.set(tracer).map_err(|_| BindError::AlreadyBound)
        })
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for KernelSpans {}

/// Lets a span through only once a tracer is bound, and only Runloop's own.
struct KernelTargets {
    slot: Slot,
}

impl<S> Filter<S> for KernelTargets {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &layer::Context<'_, S>) -> bool {
        self.slot.get().is_some() && meta.target().starts_with(KERNEL_TARGET_PREFIX)
    }

    // `sometimes`, not `always`: the answer changes once, when the tracer is bound, and a
    // cached interest would never see it.
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.target().starts_with(KERNEL_TARGET_PREFIX) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
}

/// The tracer `tracing-opentelemetry` builds spans with: the bound one, else an idle one
/// with no processor (only reachable for a span the filter let through, which needs a
/// bound tracer; it keeps the type total).
struct LateTracer {
    slot: Slot,
    idle: SdkTracer,
}

impl opentelemetry::trace::Tracer for LateTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        self.slot
            .get()
            .unwrap_or(&self.idle)
            .build_with_context(builder, parent_cx)
    }
}

/// Installs the global `tracing` subscriber of a Runloop binary (`rlp`, `runloopd`): the
/// bundle loader's warnings on stderr ([`crate::warnings::StderrWarnings`]) and the idle
/// kernel-span layer. Does nothing when a global subscriber is already installed.
pub fn install(program: &'static str) {
    let slot: Slot = Arc::new(OnceLock::new());
    let idle = SdkTracerProvider::builder().build().tracer("runloop.idle");
    let exporting = tracing_opentelemetry::layer()
        .with_tracer(LateTracer {
            slot: slot.clone(),
            idle,
        })
        .with_filter(KernelTargets { slot: slot.clone() });
    let subscriber = tracing_subscriber::registry()
        .with(crate::warnings::StderrWarnings::new(program))
        .with(exporting)
        .with(KernelSpans { slot });
    let _ = tracing::subscriber::set_global_default(subscriber);
}
