//! OpenTelemetry export (`observability.traces`): one span per recorded crossing, with the
//! run's RMP trace id as the OTel trace id, and the kernel's metrics, both over OTLP
//! (gRPC or HTTP/protobuf). Details: `docs/observability.md`.
//!
//! Export never waits on the receiver: a crossing becomes a span handed to the SDK's
//! batch processor (a bounded queue drained by its own thread; when full, spans are
//! dropped and counted by the SDK), the periodic metric reader has its own thread too, and
//! both export through a small tokio runtime of their own (`runloop-otel`), so a slow or
//! dead receiver costs a run nothing. A dead receiver is logged once per outage.
//!
//! Lifecycle: [`Otel::start`] builds the runtime, exporters and providers; the kernel
//! takes it in [`crate::KernelOptions::otel`]; the openings engine exports its crossings
//! through it and starts the metric sampler; [`Otel::shutdown`] (called by
//! `Kernel::shutdown`, and by `runloopd` at exit) flushes what is queued and stops.

pub mod config;
pub mod export;
pub mod kernel_spans;
pub mod metrics;
pub mod spans;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

pub use self::config::{OtelConfig, OtelConfigError, Protocol, Sampling};
pub use self::spans::{RunFacts, crossing_span_id, otel_trace_id, rmp_trace_id, root_span_id};

use crate::Kernel;

/// Most spans queued for export; past it new spans are dropped (and counted by the SDK),
/// never waited for.
pub const SPAN_QUEUE_MAX: usize = 8_192;
/// Most spans in one export request.
pub const SPAN_BATCH_MAX: usize = 512;
/// Longest a span waits in the queue before a batch goes out, in milliseconds.
pub const SPAN_BATCH_DELAY_MS: u64 = 500;
/// Worker threads of the export runtime.
const EXPORT_THREADS: usize = 1;
/// The `service.name` of every span and metric.
pub const SERVICE_NAME: &str = "runloop";
/// The instrumentation scope of crossing spans.
pub const CROSSINGS_SCOPE: &str = "runloop.crossings";
/// The instrumentation scope of the kernel's own `tracing` spans.
pub const KERNEL_SCOPE: &str = "runloop.kernel";

/// Why export could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("OpenTelemetry: start the export runtime: {0}")]
    Runtime(std::io::Error),
    #[error("OpenTelemetry: {0}")]
    Exporter(#[from] export::ExporterError),
}

/// The running export.
#[derive(Debug)]
pub struct Otel {
    config: OtelConfig,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    crossings: spans::CrossingSpans,
    cells: Arc<metrics::Cells>,
    /// Stops the metric sampler.
    stop: tokio::sync::watch::Sender<bool>,
    sampling_started: AtomicBool,
    shut: AtomicBool,
    /// Taken at shutdown (dropped in the background: dropping a runtime may not block
    /// inside another one).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

fn sampler(sampling: Sampling) -> Sampler {
    match sampling {
        Sampling::Parent => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
    }
}

impl Otel {
    /// Starts export toward `config`'s receiver (nothing is sent yet; a receiver that is
    /// not there is found out, and logged, at the first export).
    pub fn start(config: OtelConfig) -> Result<Arc<Otel>, OtelError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(EXPORT_THREADS)
            .thread_name("runloop-otel")
            .enable_all()
            .build()
            .map_err(OtelError::Runtime)?;
        let (span_exporter, metric_exporter) = {
            let _inside = runtime.enter();
            export::build(&config, runtime.handle())?
        };
        let resource = Resource::builder().with_service_name(SERVICE_NAME).build();
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(SPAN_QUEUE_MAX)
            .with_max_export_batch_size(SPAN_BATCH_MAX)
            .with_scheduled_delay(Duration::from_millis(SPAN_BATCH_DELAY_MS))
            .build();
        let processor = BatchSpanProcessor::builder(span_exporter)
            .with_batch_config(batch)
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(config.sampling))
            .with_resource(resource.clone())
            .build();
        let reader = PeriodicReader::builder(metric_exporter)
            .with_interval(Duration::from_millis(config.metrics_interval_ms.max(1)))
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let cells = Arc::new(metrics::Cells::default());
        metrics::register(&meter_provider.meter(SERVICE_NAME), &cells);
        let crossings = spans::CrossingSpans::new(
            tracer_provider.tracer(CROSSINGS_SCOPE),
            sampler(config.sampling),
        );
        let (stop, _) = tokio::sync::watch::channel(false);
        Ok(Arc::new(Otel {
            config,
            tracer_provider,
            meter_provider,
            crossings,
            cells,
            stop,
            sampling_started: AtomicBool::new(false),
            shut: AtomicBool::new(false),
            runtime: Mutex::new(Some(runtime)),
        }))
    }

    pub fn config(&self) -> &OtelConfig {
        &self.config
    }

    /// Sends the kernel's own `tracing` spans (scope [`KERNEL_SCOPE`]) through this export:
    /// binds its tracer to the kernel-span layer of the current `tracing` subscriber,
    /// which `rlp` and `runloopd` install at start ([`kernel_spans::install`]). Once per
    /// process: a second export is refused ([`kernel_spans::BindError::AlreadyBound`]) and
    /// the spans keep going to the first.
    pub fn export_kernel_spans(&self) -> Result<(), kernel_spans::BindError> {
        kernel_spans::KernelSpans::bind_current(self.tracer_provider.tracer(KERNEL_SCOPE))
    }

    /// Puts `span`, one of the kernel's own `tracing` spans working for the run
    /// `trace_id`, under that run's root span (its `run.submit` crossing), so the kernel's
    /// spans and the run's crossings make one trace, sampled as the run is. Spans opened
    /// inside it follow it by `tracing`'s own nesting. Call it before the span is first
    /// entered. Nothing happens when no `tracing-opentelemetry` layer sees the span
    /// (an embedding that installed none, or the span filtered out).
    pub fn adopt(&self, span: &tracing::Span, trace_id: &str) {
        use tracing_opentelemetry::{OpenTelemetrySpanExt as _, SetParentError};
        let Some(trace) = parse_trace(trace_id) else {
            return;
        };
        match span.set_parent(self.crossings.root_context(trace)) {
            Ok(()) | Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) => {}
            // A caller's mistake (the span was entered first): its spans go out as a trace
            // of their own, which is worth a line in the log, not a failed run.
            Err(e) => tracing::debug!("OpenTelemetry: span of run {trace_id}: {e}"),
        }
    }

    /// Remembers a run's facts for its spans' attributes.
    pub fn open_run(&self, trace_id: &str, facts: RunFacts) {
        if let Some(trace) = parse_trace(trace_id) {
            self.crossings.open(trace, facts);
        }
    }

    /// Forgets a finished run's facts.
    pub fn close_run(&self, trace_id: &str) {
        if let Some(trace) = parse_trace(trace_id) {
            self.crossings.close(trace);
        }
    }

    /// Exports one crossing as a span (never waits).
    pub fn crossing(&self, trace_id: &str, payload: &serde_json::Value) {
        if self.shut.load(Ordering::Relaxed) {
            return;
        }
        if let Some(trace) = parse_trace(trace_id) {
            self.crossings.crossing(trace, payload);
        }
    }

    /// Starts sampling `kernel`'s metrics (once; later calls do nothing).
    pub fn watch(&self, kernel: &Arc<Kernel>) {
        if self.sampling_started.swap(true, Ordering::SeqCst) {
            return;
        }
        metrics::spawn_sampler(
            Arc::downgrade(kernel),
            self.cells.clone(),
            self.config.metrics_interval_ms,
            self.stop.subscribe(),
        );
    }

    /// Takes one sample of `kernel` now (before a shutdown's last export).
    pub async fn sample_now(&self, kernel: &Kernel) {
        metrics::sample_now(kernel, &self.cells).await;
    }

    /// Stops the metric sampler (it holds the kernel for the length of a sample).
    pub fn stop_sampling(&self) {
        self.stop.send_replace(true);
    }

    /// Exports what is queued and stops; blocks up to the exporters' timeouts, so call it
    /// off the async workers (`spawn_blocking`). Later calls do nothing.
    pub fn shutdown(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_sampling();
        if let Err(e) = self.tracer_provider.shutdown() {
            tracing::warn!("OpenTelemetry: flush spans at shutdown: {e}");
        }
        if let Err(e) = self.meter_provider.shutdown() {
            tracing::warn!("OpenTelemetry: flush metrics at shutdown: {e}");
        }
        self.drop_runtime();
    }

    fn drop_runtime(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }

    /// [`Otel::shutdown`] from async code, on a blocking thread.
    pub async fn shutdown_async(self: &Arc<Self>) {
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.shutdown()).await {
            tracing::warn!("OpenTelemetry: shutdown did not finish: {e}");
        }
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        // Never block or panic here (this may run on an async worker): the providers
        // flush on their own threads as they drop; the runtime is let go in the
        // background.
        self.drop_runtime();
    }
}

fn parse_trace(trace_id: &str) -> Option<u128> {
    match trace_id.parse::<runloop_proto::TraceId>() {
        Ok(id) if id.0 != 0 => Some(id.0),
        _ => None,
    }
}
