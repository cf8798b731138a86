//! Prometheus metrics (SPEC §8). Labels are bounded: routes and statuses come from fixed sets,
//! models only from the config's catalog (anything else is `other`).

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, Encoder, HistogramVec,
    IntCounterVec, IntGauge, TextEncoder,
};
use std::sync::LazyLock;

/// Buckets from 100 µs (cache hits) to 2 min (long streams).
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub provider_requests: IntCounterVec,
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub errors: IntCounterVec,
    pub tokens: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub shed: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub inflight: IntGauge,
}

fn build() -> Result<Metrics, prometheus::Error> {
    Ok(Metrics {
        requests: register_int_counter_vec!(
            "gateway_requests_total",
            "Requests answered, by route and status",
            &["route", "status"]
        )?,
        duration: register_histogram_vec!(
            "gateway_request_duration_seconds",
            "Time from request to the end of the answer",
            &["route"],
            DURATION_BUCKETS.to_vec()
        )?,
        provider_requests: register_int_counter_vec!(
            "gateway_provider_requests_total",
            "Upstream attempts, by provider, model and outcome status",
            &["provider", "model", "status"]
        )?,
        cache_hits: register_int_counter_vec!(
            "gateway_cache_hits_total",
            "Cache hits",
            &["route"]
        )?,
        cache_misses: register_int_counter_vec!(
            "gateway_cache_misses_total",
            "Cache misses",
            &["route"]
        )?,
        errors: register_int_counter_vec!(
            "gateway_errors_total",
            "Requests that ended in an error, by kind",
            &["route", "kind"]
        )?,
        tokens: register_int_counter_vec!(
            "gateway_tokens_total",
            "Tokens reported by upstreams",
            &["provider", "model", "kind"]
        )?,
        auth_failures: register_int_counter_vec!(
            "gateway_auth_failures_total",
            "Refused gateway access keys",
            &["reason"]
        )?,
        shed: register_int_counter_vec!(
            "gateway_shed_requests_total",
            "Requests refused at once because the gateway was at its concurrency limit",
            &["route"]
        )?,
        rate_limited: register_int_counter_vec!(
            "gateway_rate_limited_total",
            "Requests refused by the gateway's own rate limits",
            &["limit"]
        )?,
        redis_errors: register_int_counter_vec!(
            "gateway_redis_errors_total",
            "Redis operations that failed or timed out (the gateway carried on without Redis)",
            &["use"]
        )?,
        inflight: register_int_gauge!("gateway_inflight_requests", "Proxied requests in flight")?,
    })
}

/// The process-wide metrics; `None` only if registration failed (then nothing is counted).
pub static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| build().ok());

pub fn get() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    let _ = get();
    let mut buf = Vec::with_capacity(8192);
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    buf
}
