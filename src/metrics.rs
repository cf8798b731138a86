//! Prometheus metrics (SPEC §8). Labels are bounded: routes and statuses come from fixed sets,
//! models only from the config's catalog (anything else is `other`).

use prometheus::{
    register_counter_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Counter, CounterVec, Encoder, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
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
    pub connections_refused: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub redis_node_errors: IntCounterVec,
    pub redis_node_up: IntGaugeVec,
    pub inflight: IntGauge,
    pub reloads: IntCounterVec,
    pub upstream_latency: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub overhead: HistogramVec,
    pub cost: CounterVec,
    pub peer_healthy: IntGaugeVec,
}

/// Buckets for the gateway's own time: 10 µs to 100 ms.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

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
        connections_refused: register_int_counter_vec!(
            "gateway_connections_refused_total",
            "Client connections closed by the header guard: header_too_large (431) or header_timeout (408)",
            &["reason"]
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
        redis_node_errors: register_int_counter_vec!(
            "gateway_redis_node_errors_total",
            "Failed Redis calls by the node they were meant for (the server, the current master, or the Cluster master of the key's slot, as last seen)",
            &["use", "node"]
        )?,
        redis_node_up: register_int_gauge_vec!(
            "gateway_redis_node_up",
            "1 when the Redis node answered the gateway's last probe (every 2 s) and no call to it has failed since",
            &["use", "node"]
        )?,
        inflight: register_int_gauge!("gateway_inflight_requests", "Proxied requests in flight")?,
        reloads: register_int_counter_vec!(
            "gateway_config_reloads_total",
            "Config reloads (SIGHUP), by result: ok or rejected",
            &["result"]
        )?,
        upstream_latency: register_histogram_vec!(
            "gateway_upstream_latency_seconds",
            "Time from sending a request upstream to its response header, per attempt",
            &["provider"],
            DURATION_BUCKETS.to_vec()
        )?,
        time_to_first_token: register_histogram_vec!(
            "gateway_time_to_first_token_seconds",
            "Time from the client's request to the first byte of the answer body",
            &["provider"],
            DURATION_BUCKETS.to_vec()
        )?,
        overhead: register_histogram_vec!(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself, excluding time waiting for upstreams",
            &["route"],
            OVERHEAD_BUCKETS.to_vec()
        )?,
        cost: register_counter_vec!(
            "gateway_cost_usd_total",
            "Estimated cost of answered requests from token usage and prices, in USD",
            &["provider", "model"]
        )?,
        peer_healthy: register_int_gauge_vec!(
            "gateway_peer_healthy",
            "1 when the peer passes its health check",
            &["provider", "peer"]
        )?,
    })
}

/// Series that exist from the start at 0, so every documented name is exported before the
/// first request and `rate()` works from the first scrape.
fn zero_series(m: &Metrics) {
    for route in ["chat_completions", "embeddings"] {
        m.requests.with_label_values(&[route, "200"]);
        m.cache_hits.with_label_values(&[route]);
        m.cache_misses.with_label_values(&[route]);
        m.errors.with_label_values(&[route, "upstream_error"]);
        m.shed.with_label_values(&[route]);
    }
    for provider in ["openai", "gemini"] {
        m.provider_requests
            .with_label_values(&[provider, "other", "200"]);
        m.tokens.with_label_values(&[provider, "other", "prompt"]);
        m.tokens
            .with_label_values(&[provider, "other", "completion"]);
    }
    for reason in ["missing", "invalid"] {
        m.auth_failures.with_label_values(&[reason]);
    }
    for limit in ["requests", "tokens"] {
        m.rate_limited.with_label_values(&[limit]);
    }
    for use_ in ["cache", "ratelimit", "responses"] {
        m.redis_errors.with_label_values(&[use_]);
    }
    for result in ["ok", "rejected"] {
        m.reloads.with_label_values(&[result]);
    }
}

/// The process-wide metrics; `None` only if registration failed (then nothing is counted).
pub static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| {
    let m = build().ok()?;
    zero_series(&m);
    Some(m)
});

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

/// Handles to one route's per-request series.
pub struct RouteSeries {
    pub requests: IntCounter,
    pub duration: Histogram,
    pub overhead: Histogram,
}

/// Handles to one provider's per-request series for a model label and status. Token and cost
/// series are made on first use, so a model that never reported usage exports none.
pub struct ProviderSeries {
    pub requests: IntCounter,
    pub upstream_latency: Histogram,
    pub time_to_first_token: Histogram,
    provider: &'static str,
    model: &'static str,
    tokens: OnceCell<(IntCounter, IntCounter)>,
    cost: OnceCell<Counter>,
}

impl ProviderSeries {
    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        let Some(m) = get() else { return };
        let (p, c) = self.tokens.get_or_init(|| {
            (
                m.tokens
                    .with_label_values(&[self.provider, self.model, "prompt"]),
                m.tokens
                    .with_label_values(&[self.provider, self.model, "completion"]),
            )
        });
        p.inc_by(prompt);
        c.inc_by(completion);
    }

    pub fn add_cost(&self, usd: f64) {
        let Some(m) = get() else { return };
        self.cost
            .get_or_init(|| m.cost.with_label_values(&[self.provider, self.model]))
            .inc_by(usd);
    }
}

/// A `&'static str` label by address: the label sets are fixed, so the address names them.
type Label = (usize, usize);

fn label(s: &'static str) -> Label {
    (s.as_ptr() as usize, s.len())
}

thread_local! {
    // `with_label_values` hashes the label strings and locks the vector on every call, about
    // ten times a request; each worker thread keeps the children it has used instead.
    static ROUTES: RefCell<HashMap<(Label, Label), Rc<RouteSeries>>> = RefCell::new(HashMap::new());
    static PROVIDERS: RefCell<HashMap<(Label, Label, Label), Rc<ProviderSeries>>> =
        RefCell::new(HashMap::new());
}

/// The series of `route` answered with `status`.
pub fn route_series(route: &'static str, status: &'static str) -> Option<Rc<RouteSeries>> {
    let m = get()?;
    ROUTES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let series = cache
            .entry((label(route), label(status)))
            .or_insert_with(|| {
                Rc::new(RouteSeries {
                    requests: m.requests.with_label_values(&[route, status]),
                    duration: m.duration.with_label_values(&[route]),
                    overhead: m.overhead.with_label_values(&[route]),
                })
            });
        Some(series.clone())
    })
}

/// The series of `provider` for a bounded `model` label and `status`.
pub fn provider_series(
    provider: &'static str,
    model: &'static str,
    status: &'static str,
) -> Option<Rc<ProviderSeries>> {
    let m = get()?;
    PROVIDERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let series = cache
            .entry((label(provider), label(model), label(status)))
            .or_insert_with(|| {
                Rc::new(ProviderSeries {
                    requests: m
                        .provider_requests
                        .with_label_values(&[provider, model, status]),
                    upstream_latency: m.upstream_latency.with_label_values(&[provider]),
                    time_to_first_token: m.time_to_first_token.with_label_values(&[provider]),
                    provider,
                    model,
                    tokens: OnceCell::new(),
                    cost: OnceCell::new(),
                })
            });
        Some(series.clone())
    })
}
