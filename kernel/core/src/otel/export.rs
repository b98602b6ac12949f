//! The OTLP exporters, each decorated so a dead receiver is logged once per outage and
//! never reaches a run, and an HTTP client whose requests run on the export runtime (the
//! SDK's batch threads poll exports without a tokio reactor of their own).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::config::{OtelConfig, Protocol};

/// How long one export may take before it fails, in milliseconds.
pub const EXPORT_TIMEOUT_MS: u64 = 5_000;

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("build the {signal} exporter for {url}: {source}")]
    Build {
        signal: &'static str,
        url: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
}

/// A reqwest client whose requests are spawned on the export runtime.
#[derive(Debug, Clone)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let task = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { task.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

/// Logs an exporter's first failure and its recovery, once each per outage.
#[derive(Debug, Default)]
struct Outage {
    signal: &'static str,
    url: String,
    down: AtomicBool,
}

impl Outage {
    fn note<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        match result {
            Err(e) if !self.down.swap(true, Ordering::Relaxed) => tracing::warn!(
                signal = self.signal,
                url = %self.url,
                "OpenTelemetry export failed (logged once until it recovers): {e}"
            ),
            Ok(_) if self.down.swap(false, Ordering::Relaxed) => {
                tracing::info!(signal = self.signal, url = %self.url, "OpenTelemetry export recovered")
            }
            _ => {}
        }
    }
}

/// A span exporter that reports outages once.
#[derive(Debug)]
pub struct Spans {
    inner: opentelemetry_otlp::SpanExporter,
    outage: Outage,
}

impl SpanExporter for Spans {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            self.outage.note(&result);
            result
        }
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// A metric exporter that reports outages once.
#[derive(Debug)]
pub struct Metrics {
    inner: opentelemetry_otlp::MetricExporter,
    outage: Outage,
}

impl PushMetricExporter for Metrics {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let export = self.inner.export(metrics);
        async move {
            let result = export.await;
            self.outage.note(&result);
            result
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

fn http_client(runtime: &tokio::runtime::Handle) -> Result<OnRuntime, ExporterError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(EXPORT_TIMEOUT_MS))
        .build()
        .map_err(ExporterError::HttpClient)?;
    Ok(OnRuntime {
        client,
        runtime: runtime.clone(),
    })
}

/// The span and metric exporters for `config`. Must run inside `runtime` (tonic's
/// channel starts its worker there).
pub fn build(
    config: &OtelConfig,
    runtime: &tokio::runtime::Handle,
) -> Result<(Spans, Metrics), ExporterError> {
    let timeout = Duration::from_millis(EXPORT_TIMEOUT_MS);
    let (traces_url, metrics_url) = (config.traces_url(), config.metrics_url());
    let failed = |signal: &'static str, url: &str| {
        let url = url.to_owned();
        move |source| ExporterError::Build {
            signal,
            url,
            source,
        }
    };
    let (spans, metrics) = match config.protocol {
        Protocol::Grpc => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&traces_url)
                .with_timeout(timeout)
                .build()
                .map_err(failed("span", &traces_url))?,
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&metrics_url)
                .with_timeout(timeout)
                .build()
                .map_err(failed("metric", &metrics_url))?,
        ),
        Protocol::HttpProtobuf => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http_client(runtime)?)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&traces_url)
                .with_timeout(timeout)
                .build()
                .map_err(failed("span", &traces_url))?,
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(http_client(runtime)?)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&metrics_url)
                .with_timeout(timeout)
                .build()
                .map_err(failed("metric", &metrics_url))?,
        ),
    };
    Ok((
        Spans {
            inner: spans,
            outage: Outage {
                signal: "traces",
                url: traces_url,
                down: AtomicBool::new(false),
            },
        },
        Metrics {
            inner: metrics,
            outage: Outage {
                signal: "metrics",
                url: metrics_url,
                down: AtomicBool::new(false),
            },
        },
    ))
}
