//! The export side, all off the request path: the SDK's batch processor (its own thread)
//! behind an admission count that makes every dropped span visible in `/metrics`, and the
//! OTLP/HTTP exporter whose hyper client runs on a one-thread runtime of its own.

use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// `gateway_trace_spans_total{result}`: `exported`, `dropped_queue_full` (the queue was full:
/// the collector is slow or down), `dropped_export_failed` (the collector refused or never
/// answered the batch).
pub static SPANS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let c = register_int_counter_vec!(
        "gateway_trace_spans_total",
        "Finished spans by what became of them: exported, dropped_queue_full, dropped_export_failed",
        &["result"]
    )
    .ok()?;
    for r in ["exported", "dropped_queue_full", "dropped_export_failed"] {
        c.with_label_values(&[r]);
    }
    Some(c)
});

/// Whether the last export failed (a failure is logged once, then counted).
static FAILING: AtomicBool = AtomicBool::new(false);

fn count(result: &str, n: usize) {
    if let Some(c) = SPANS.as_ref() {
        c.with_label_values(&[result]).inc_by(n as u64);
    }
}

/// Lets at most `max` finished spans wait for export. The SDK's processor would drop the
/// rest silently; counting them here, before its queue (of the same size), makes each one
/// a metric. `queued` goes down when a batch reaches the exporter, so it never undercounts
/// the SDK's queue and the SDK itself never drops.
#[derive(Debug)]
pub struct Admission<P> {
    pub inner: P,
    pub queued: Arc<AtomicUsize>,
    pub max: usize,
}

impl<P: SpanProcessor> SpanProcessor for Admission<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            count("dropped_queue_full", 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing [`Admission`] slots as batches leave and counting results.
#[derive(Debug)]
pub struct Counted<E> {
    pub inner: E,
    pub queued: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            match &result {
                Ok(()) => {
                    count("exported", n);
                    if FAILING.swap(false, Ordering::AcqRel) {
                        log::info!(target: crate::logging::targets::TRACING, "span export works again");
                    }
                }
                Err(e) => {
                    count("dropped_export_failed", n);
                    // Once per outage, not once per batch: the metric counts the rest.
                    if !FAILING.swap(true, Ordering::AcqRel) {
                        log::warn!(target: crate::logging::targets::TRACING, "{n} spans not exported (further failures are counted in gateway_trace_spans_total): {e}");
                    }
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// hyper's client on a runtime of its own: the SDK's batch thread drives exports with a
/// plain executor, which has no reactor for hyper's sockets, and the gateway's runtimes
/// must not carry export work.
#[derive(Debug, Clone)]
pub struct OwnRuntime {
    pub client: opentelemetry_http::hyper::HyperClient,
    pub runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OwnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as HttpError)?
    }
}

/// Starts the export runtime's thread; it runs until the process exits.
pub fn export_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}
