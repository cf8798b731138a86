//! The Pingora `ProxyHttp` implementation.
//!
//! Phase chart (see README, "Architecture"):
//!
//! ```text
//! request_filter ── route ──┬─ /health*, /config, /metrics, /v1/models, preflight ─ answered here
//!                           └─ LLM routes: access key → concurrency slot → read body (≤ max_body_bytes)
//!                              → parse model → resolve candidates → relay::run (peer choice,
//!                              pooled upstream call, failover, streaming, Gemini translation)
//! logging        ── access-log line + metrics
//! ```
//!
//! Every request is answered inside `request_filter`, which returns `Ok(true)`: Pingora's own
//! upstream phases never run, because Pingora 0.9 cannot forward a body larger than 64 KiB that
//! was read before choosing the peer — and the model that chooses the peer is in the body.

mod deliver;
pub mod pump;
mod relay;
pub mod respond;
mod responses;

use crate::auth::{self, AccessDenied, Caller, ClientKeys};
use crate::cache;
use crate::config::{AuthMode, ProviderKind, Strategy};
use crate::error::GatewayError;
use crate::logging::{self, targets, AccessRecord};
use crate::metrics;
use crate::routes::{self, GeminiMethod, Route};
use crate::routing::{self, Candidate};
use crate::state::{Runtime, State};
use crate::strategy;
use crate::translate::ClientApi as Op;
use async_trait::async_trait;
use bytes::Bytes;
use relay::Job;
pub use relay::MAX_ATTEMPTS;
use respond::{send, send_error, send_json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};

/// The gateway service: every request is handled from `request_filter`.
pub struct Gateway {
    pub state: Arc<State>,
}

/// Per-request state shared by the phases.
pub struct Ctx {
    pub start: Instant,
    pub request_id: RequestId,
    pub route: &'static str,
    pub status: u16,
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub peer: Option<Arc<crate::upstream::PeerInfo>>,
    pub attempts: u32,
    pub key_id: Option<String>,
    pub key_source: Option<&'static str>,
    pub cache: &'static str,
    pub error: Option<&'static str>,
    /// (prompt, completion) tokens reported by the upstream.
    pub usage: Option<(u64, u64)>,
    /// When the last attempt was sent, its first body byte arrived, and the upstream finished.
    pub attempt_started: Option<Instant>,
    pub first_byte: Option<Instant>,
    pub upstream_done: Option<Instant>,
    /// When the answering attempt's response header arrived.
    pub header_at: Option<Instant>,
    /// Time spent waiting for upstream response headers, over all attempts.
    pub upstream_wait: std::time::Duration,
    /// This request's rate-limit standing, for the `x-ratelimit-*` headers.
    pub rate: Option<crate::ratelimit::Decision>,
    /// `Access-Control-Allow-Origin` value when the request's origin is allowed.
    pub cors_origin: Option<String>,
    /// Whether that origin was matched exactly (credentials may then be allowed).
    pub cors_exact: bool,
    /// The request body has been read (or its reading failed).
    pub body_read: bool,
    /// The answer was cut after its header went out: the connection must be dropped without
    /// an end of body (Pingora would otherwise finish a chunked body cleanly).
    pub abort: bool,
    /// This request's spans; `None` when tracing is off or the route is not an LLM route.
    pub trace: Option<crate::telemetry::RequestTrace>,
    /// A JWT or managed-key caller's policy (models, limits, budget), SPEC §13.
    pub caller: Option<Arc<crate::identity::CallerPolicy>>,
    /// The `Authorization` bearer was the caller's token: never a provider key.
    pub bearer_is_identity: bool,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            start: Instant::now(),
            request_id: RequestId::default(),
            route: "unknown",
            status: 0,
            provider: None,
            model: None,
            peer: None,
            attempts: 0,
            key_id: None,
            key_source: None,
            cache: "BYPASS",
            error: None,
            usage: None,
            attempt_started: None,
            first_byte: None,
            upstream_done: None,
            header_at: None,
            upstream_wait: std::time::Duration::ZERO,
            rate: None,
            cors_origin: None,
            cors_exact: false,
            body_read: false,
            abort: false,
            trace: None,
            caller: None,
            bearer_is_identity: false,
        }
    }
}

/// Holds one of `MAX_CONCURRENT_REQUESTS` slots until dropped.
struct InflightSlot<'a>(&'a AtomicUsize);

impl<'a> InflightSlot<'a> {
    fn acquire(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        let prev = counter.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if let Some(m) = metrics::get() {
            m.inflight.inc();
        }
        Some(InflightSlot(counter))
    }
}

impl Drop for InflightSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        if let Some(m) = metrics::get() {
            m.inflight.dec();
        }
    }
}

/// The fields of a chat or embeddings body that routing needs; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    /// Responses API: keep the answer for `previous_response_id` (OpenAI's default: true).
    store: Option<bool>,
    #[serde(borrow)]
    previous_response_id: Option<Cow<'a, str>>,
    /// For the trace's `gen_ai.request.max_tokens`, whichever name the API uses. Read as any
    /// value (and as three fields, not aliases, which would refuse a body naming two), so a
    /// wrong type reaches the translation, which names the field, instead of failing here.
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    max_output_tokens: Option<serde_json::Value>,
}

impl Head<'_> {
    fn max_tokens(&self) -> Option<u64> {
        [
            &self.max_completion_tokens,
            &self.max_output_tokens,
            &self.max_tokens,
        ]
        .into_iter()
        .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64))
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// Compresses answers (gzip, brotli, zstd) for clients that accept it; streams opt out
    /// per request and use [`respond::StreamGzip`], which flushes every event.
    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        modules
            .add_module(pingora::modules::http::compression::ResponseCompressionBuilder::enable(5));
    }

    /// A client that accepts no coding the compression module produces (most API clients send
    /// no `Accept-Encoding`, or `identity`) gets the module switched off here, before it parses
    /// the header and matches the content type of every answer.
    ///
    /// Also sets the connection's keep-alive (`server.idle_timeout`; the guard in
    /// [`crate::guard`] closes idle connections on time, Pingora's own timer must not cut them
    /// sooner) and accepts pipelined requests, which Pingora answers in order.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if session.get_keepalive().is_some_and(|s| s != 0) {
            let idle = self.state.runtime.load().config.server.idle_timeout;
            session.set_keepalive(Some(idle.as_secs().max(1) + 1));
        }
        session.set_pipelining_enabled(true);
        let values = session
            .req_header()
            .headers
            .get_all(http::header::ACCEPT_ENCODING);
        if !respond::may_accept_compression(values.iter().map(|v| v.as_bytes())) {
            if let Some(c) = session
                .downstream_modules_ctx
                .get_mut::<pingora::modules::http::compression::ResponseCompression>()
            {
                c.adjust_level(0);
            }
        }
        Ok(())
    }

    /// Runs first for every request and answers it completely.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        self.handle(session, ctx).await;
        if ctx.abort {
            return Err(pingora::Error::new_str("answer cut short"));
        }
        Ok(true)
    }

    /// Reached only for an answer cut after its header went out (`Ctx::abort`): nothing more
    /// is written, and the connection is dropped.
    async fn fail_to_proxy(
        &self,
        _session: &mut Session,
        _e: &pingora::Error,
        ctx: &mut Ctx,
    ) -> pingora::proxy::FailToProxy {
        pingora::proxy::FailToProxy {
            error_code: ctx.status,
            can_reuse_downstream: false,
        }
    }

    /// The relay has logged why an answer was cut; Pingora's own line would repeat it.
    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _e: &pingora::Error) -> bool {
        ctx.abort
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        Err(pingora::Error::new_str(
            "request_filter answers every request",
        ))
    }

    /// Runs after the answer: one access-log line and the request metrics.
    async fn logging(&self, session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Ctx) {
        let duration = ctx.start.elapsed();
        if let Some(trace) = ctx.trace.take() {
            trace.finish(ctx);
        }
        let req = session.req_header();
        let provider = ctx.provider.map(|p| p.name());
        logging::access(&AccessRecord {
            request_id: ctx.request_id.as_str(),
            method: req.method.as_str(),
            route: ctx.route,
            path: req.uri.path(),
            status: ctx.status,
            duration_ms: duration.as_secs_f64() * 1000.0,
            provider,
            model: ctx.model.as_deref(),
            peer: ctx.peer.as_ref().map(|p| p.authority.as_str()),
            attempts: ctx.attempts,
            cache: ctx.cache,
            prompt_tokens: ctx.usage.map(|u| u.0),
            completion_tokens: ctx.usage.map(|u| u.1),
            key_id: ctx.key_id.as_deref(),
            key_source: ctx.key_source,
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            error: ctx.error,
        });
        let status = status_label(ctx.status);
        // The gateway's own time: everything but waiting for response headers and, once
        // the answer flows, the upstream's pace.
        let upstream_body = match (ctx.header_at, ctx.upstream_done) {
            (Some(header), Some(done)) => done.saturating_duration_since(header),
            _ => std::time::Duration::ZERO,
        };
        let overhead = duration.saturating_sub(ctx.upstream_wait + upstream_body);
        if let Some(s) = metrics::route_series(ctx.route, status) {
            s.requests.inc();
            s.duration.observe(duration.as_secs_f64());
            s.overhead.observe(overhead.as_secs_f64());
        }
        if let (Some(kind), Some(m)) = (ctx.error, metrics::get()) {
            m.errors.with_label_values(&[ctx.route, kind]).inc();
        }
        let Some(p) = provider else { return };
        let model = self.model_label(ctx.model.as_deref());
        let Some(s) = metrics::provider_series(p, model, status) else {
            return;
        };
        s.requests.inc();
        if let Some((prompt, completion)) = ctx.usage {
            s.add_tokens(prompt, completion);
            let rt = self.state.runtime.load();
            if let Some(price) = strategy::price_of(
                p,
                ctx.model.as_deref().unwrap_or_default(),
                &rt.config.pricing,
            ) {
                s.add_cost(strategy::estimated_cost(&price, prompt, completion));
            }
        }
        if ctx.attempts > 0 {
            s.upstream_latency.observe(ctx.upstream_wait.as_secs_f64());
        }
        if let Some(first) = ctx.first_byte {
            s.time_to_first_token
                .observe((first - ctx.start).as_secs_f64());
        }
    }
}

/// Status codes as a bounded label set.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// The request id, kept as a header value: every answer carries it, and a client-supplied
/// one is shared with the request header instead of copied.
#[derive(Clone)]
pub struct RequestId(http::HeaderValue);

impl RequestId {
    /// A client-supplied id is kept only when it is short and printable; else 32 random hex
    /// digits.
    fn for_request(session: &Session) -> Self {
        if let Some(v) = session
            .req_header()
            .headers
            .get(respond::names::X_REQUEST_ID)
        {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic) {
                return RequestId(v.clone());
            }
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 32];
        let (a, b) = (fastrand::u64(..), fastrand::u64(..));
        for (i, out) in buf.iter_mut().enumerate() {
            let word = if i < 16 { a } else { b };
            *out = HEX[((word >> (60 - 4 * (i % 16))) & 0xf) as usize];
        }
        RequestId(
            http::HeaderValue::from_bytes(&buf)
                .unwrap_or_else(|_| http::HeaderValue::from_static("0")),
        )
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> http::HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId(http::HeaderValue::from_static(""))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Gateway {
    /// A bounded model label: configured or catalogued names, else `other`.
    fn model_label(&self, model: Option<&str>) -> &'static str {
        let Some(model) = model else { return "none" };
        const KNOWN: &[&str] = &[];
        for m in routing::OPENAI_MODELS
            .iter()
            .chain(routing::GEMINI_MODELS)
            .chain(KNOWN)
        {
            if *m == model {
                return m;
            }
        }
        "other"
    }

    async fn handle(&self, session: &mut Session, ctx: &mut Ctx) {
        ctx.start = Instant::now();
        ctx.request_id = RequestId::for_request(session);
        let rt = self.state.runtime.load_full();
        if session.req_header().uri.path().starts_with("/admin") {
            return Box::pin(crate::identity::admin::handle(&self.state, session, ctx)).await;
        }
        let route = {
            let req = session.req_header();
            routes::classify(req.method.as_str(), req.uri.path())
        };
        ctx.route = route.label();
        if matches!(
            route,
            Route::ChatCompletions
                | Route::Embeddings
                | Route::Responses
                | Route::StoredResponse { .. }
                | Route::OpenAiPassthrough
                | Route::GeminiNative { .. }
        ) {
            ctx.trace = crate::telemetry::start(session.req_header(), ctx.route);
        }
        if rt.config.security.cors_enabled {
            cors_origin(&rt.config.security.cors_origins, session, ctx);
        }
        let result = match &route {
            Route::Health => {
                let body = json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
                send_json(session, ctx, 200, Bytes::from(body.to_string())).await;
                Ok(())
            }
            Route::HealthLive => {
                send_json(
                    session,
                    ctx,
                    200,
                    Bytes::from_static(b"{\"status\":\"live\"}"),
                )
                .await;
                Ok(())
            }
            Route::HealthReady => {
                let ready = rt.pools.values().any(|p| p.any_healthy());
                let (status, body) = if ready {
                    (200, "{\"status\":\"ready\"}")
                } else {
                    (503, "{\"status\":\"not_ready\",\"reason\":\"no enabled provider has a healthy peer\"}")
                };
                send_json(session, ctx, status, Bytes::from_static(body.as_bytes())).await;
                Ok(())
            }
            Route::HealthProviders => {
                send_json(
                    session,
                    ctx,
                    200,
                    Bytes::from(provider_health(&rt, self.state.redis_health()).to_string()),
                )
                .await;
                Ok(())
            }
            Route::Config => match self.check_access(&rt, session, ctx, true).await {
                Ok(()) => {
                    let body = serde_json::to_vec(&rt.config.redacted_json()).unwrap_or_default();
                    send_json(session, ctx, 200, Bytes::from(body)).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Route::Metrics => match self.check_access(&rt, session, ctx, true).await {
                Ok(()) => {
                    if let Some(m) = metrics::get() {
                        self.state.publish_redis_metrics(m);
                        for (kind, pool) in &rt.pools {
                            for (peer, healthy) in pool.peer_health() {
                                m.peer_healthy
                                    .with_label_values(&[kind.name(), &peer.authority])
                                    .set(i64::from(healthy));
                            }
                        }
                    }
                    let body = metrics::render();
                    send(
                        session,
                        ctx,
                        200,
                        "text/plain; version=0.0.4",
                        Bytes::from(body),
                        &[],
                    )
                    .await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Route::Models => match self.check_access(&rt, session, ctx, false).await {
                Ok(()) => {
                    let data: Vec<Value> = routing::catalog(&rt.config)
                        .into_iter()
                        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
                        .collect();
                    let body = json!({"object": "list", "data": data});
                    send_json(session, ctx, 200, Bytes::from(body.to_string())).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Route::Preflight => {
                let mut extra = Vec::new();
                if ctx.cors_origin.is_some() {
                    use http::{header, HeaderValue};
                    let key_header = &rt.config.security.api_key_header;
                    let allowed = format!("authorization, content-type, {key_header}, x-goog-api-key, x-openai-api-key, openai-organization, openai-project, openai-beta, x-request-id, cache-control, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, x-goog-api-client")
                        .to_ascii_lowercase();
                    extra.push((
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static("GET, POST, OPTIONS"),
                    ));
                    if let Ok(v) = HeaderValue::from_str(&allowed) {
                        extra.push((header::ACCESS_CONTROL_ALLOW_HEADERS, v));
                    }
                    extra.push((
                        header::ACCESS_CONTROL_MAX_AGE,
                        HeaderValue::from_static("600"),
                    ));
                }
                send(session, ctx, 204, "text/plain", Bytes::new(), &extra).await;
                Ok(())
            }
            Route::NotFound => Err(GatewayError::NotFound {
                path: session.req_header().uri.path().to_string(),
            }),
            Route::MethodNotAllowed => Err(GatewayError::MethodNotAllowed),
            Route::ChatCompletions
            | Route::Embeddings
            | Route::Responses
            | Route::StoredResponse { .. }
            | Route::OpenAiPassthrough
            | Route::GeminiNative { .. } => self.proxy(&rt, session, ctx, &route).await,
        };
        if let Err(e) = result {
            if !ctx.body_read && declares_body(session.req_header()) {
                // Answered before the body was read: the unread body must not be taken for
                // the connection's next request, and draining it is not worth the wait.
                session.set_keepalive(None);
            }
            send_error(session, ctx, &e).await;
        }
    }

    /// A cache lookup, counted.
    async fn lookup(&self, key: &cache::CacheKey, ctx: &mut Ctx) -> Option<cache::Entry> {
        let hit = Box::pin(self.state.cache.get(key)).await;
        if hit.is_some() {
            if let Some(m) = metrics::get() {
                m.cache_hits.with_label_values(&[ctx.route]).inc();
            }
        }
        hit
    }

    /// Serves a stored answer: the cached `Bytes` as they are (no copy), or replayed as SSE
    /// for a streaming request.
    async fn answer_from_cache(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        hit: cache::Entry,
        op: Op,
    ) -> Result<(), GatewayError> {
        ctx.cache = "HIT";
        if let Some(t) = &ctx.trace {
            t.cache_hit();
        }
        ctx.provider = ProviderKind::from_name(&hit.provider);
        ctx.model = Some(hit.model.clone());
        ctx.usage = None;
        match op {
            Op::Chat {
                stream: true,
                include_usage,
            } => match crate::translate::replay(op, &hit.body, include_usage) {
                Some(sse) => {
                    send(
                        session,
                        ctx,
                        200,
                        "text/event-stream",
                        sse,
                        &[(
                            http::header::CACHE_CONTROL,
                            http::HeaderValue::from_static("no-cache"),
                        )],
                    )
                    .await
                }
                None => {
                    return Err(GatewayError::UpstreamFailed {
                        message: "a cached answer could not be replayed".into(),
                    })
                }
            },
            _ => send_json(session, ctx, 200, hit.body).await,
        }
        Ok(())
    }

    /// Checks the gateway access key. `operational` routes (`/config`, `/metrics`) need one
    /// only when `require_auth_header` is set; LLM routes always check a key that is sent.
    async fn check_access(
        &self,
        rt: &Runtime,
        session: &Session,
        ctx: &mut Ctx,
        operational: bool,
    ) -> Result<(), GatewayError> {
        let auth_cfg = &rt.config.auth;
        if operational && !auth_cfg.require_auth_header {
            return Ok(());
        }
        let header = rt.config.security.api_key_header.as_str();
        if let Some(found) =
            crate::identity::gate::identify(&self.state.identity, auth_cfg, session, header, ctx)
                .await
        {
            return found;
        }
        let presented = session
            .req_header()
            .headers
            .get(header)
            .map(|v| v.as_bytes());
        let client_ip = || {
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        };
        match auth::check_access(auth_cfg, presented) {
            Ok(Caller::Key(key)) => {
                log::debug!(target: targets::AUTH, "request {} authenticated as key id {}", ctx.request_id, key.id);
                ctx.key_id = Some(key.id.clone());
                // A budget makes the key a caller the budget path charges, like a managed key.
                ctx.caller = key.policy.clone();
                crate::identity::metrics::decision("ok", "key");
                Ok(())
            }
            Ok(Caller::Anonymous) => Ok(()),
            Err(denied) => {
                let (reason, detail) = match &denied {
                    AccessDenied::Missing => ("missing", "no key".to_string()),
                    AccessDenied::Invalid { fingerprint } => {
                        ("invalid", format!("key sha256 prefix {fingerprint}"))
                    }
                };
                log::warn!(target: targets::AUTH, "request {} refused: {reason} gateway key ({detail}) from {}", ctx.request_id, client_ip());
                if let Some(m) = metrics::get() {
                    m.auth_failures.with_label_values(&[reason]).inc();
                }
                crate::identity::metrics::decision("refused", reason);
                let message = match denied {
                    AccessDenied::Missing => {
                        format!("Missing gateway API key: send it in the {header} header.")
                    }
                    AccessDenied::Invalid { .. } => {
                        format!("Invalid gateway API key in the {header} header.")
                    }
                };
                Err(GatewayError::Unauthorized { message })
            }
        }
    }

    /// LLM routes: authenticate, rate-limit, read and parse the body, resolve the model,
    /// answer from the cache or admit (concurrency) and relay, then store and settle.
    async fn proxy(
        &self,
        rt: &Runtime,
        session: &mut Session,
        ctx: &mut Ctx,
        route: &Route,
    ) -> Result<(), GatewayError> {
        let cfg = &rt.config;
        self.check_access(rt, session, ctx, false).await?;
        let access_key = ctx
            .key_id
            .as_ref()
            .and_then(|id| cfg.auth.keys.iter().find(|k| &k.id == id));
        let req = session.req_header();
        let query_key = req
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("key=")));
        let access_is_authorization = cfg
            .security
            .api_key_header
            .eq_ignore_ascii_case("authorization");
        let client_keys = ClientKeys::from_headers(
            req.headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            req.headers
                .get(respond::names::X_OPENAI_API_KEY)
                .map(|v| v.as_bytes()),
            req.headers
                .get(respond::names::X_GOOG_API_KEY)
                .map(|v| v.as_bytes()),
            query_key,
            access_is_authorization || ctx.bearer_is_identity,
        );
        let caller_policy = ctx.caller.clone();
        let key_rpm = access_key
            .and_then(|k| k.rate_limit_rpm)
            .or(caller_policy.as_ref().and_then(|p| p.rpm));
        let key_tpm = access_key
            .and_then(|k| k.tpm)
            .or(caller_policy.as_ref().and_then(|p| p.tpm));
        let header = |name: http::HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (cache_control, ttl_header) = if cfg.cache.enabled {
            (
                header(http::header::CACHE_CONTROL),
                header(respond::names::X_GATEWAY_CACHE_TTL),
            )
        } else {
            (None, None)
        };

        // A response the gateway minted is served from its conversation state; another id
        // is OpenAI's and passes through.
        if let Route::StoredResponse { id, action } = route {
            if responses::is_minted(id) {
                let tenant = responses::tenant(ctx, &client_keys);
                return Box::pin(responses::serve_stored(
                    &self.state,
                    session,
                    ctx,
                    &tenant,
                    id,
                    *action,
                ))
                .await;
            }
        }

        let body = respond::read_body(session, cfg.server.max_body_bytes).await;
        ctx.body_read = true;
        let body = body?;
        // Responses API: whether the answer is kept, and the conversation it continues.
        let mut store = false;
        let mut previous: Option<String> = None;
        let mut max_tokens = None;
        let (op, needs_tree, requested_model, mut candidates, is_virtual) = match route {
            Route::ChatCompletions | Route::Embeddings | Route::Responses => {
                let head: Head =
                    serde_json::from_slice(&body).map_err(|e| GatewayError::BadRequest {
                        message: format!("We could not parse the JSON body of your request: {e}"),
                        param: None,
                    })?;
                max_tokens = head.max_tokens();
                let model = head
                    .model
                    .map(Cow::into_owned)
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| GatewayError::BadRequest {
                        message: "you must provide a model parameter".into(),
                        param: Some("model".into()),
                    })?;
                let resolution = routing::resolve(cfg, &model)?;
                let op = match route {
                    Route::Embeddings => Op::Embeddings,
                    Route::Responses => {
                        store = head.store.unwrap_or(true);
                        previous = head.previous_response_id.map(Cow::into_owned);
                        Op::Responses {
                            stream: head.stream,
                        }
                    }
                    _ => Op::Chat {
                        stream: head.stream,
                        include_usage: head.stream_options.is_some_and(|o| o.include_usage),
                    },
                };
                // The whole tree is needed to translate, rewrite the model or key the cache; a
                // plain OpenAI request with none of these is never re-parsed. A token
                // estimate alone (TPM, budgets, cost order) reads the bytes without a tree.
                let needs_tree = cfg.cache.enabled
                    || previous.is_some()
                    || matches!(op, Op::Responses { .. })
                        && responses::ITEM_REFERENCE.find(&body).is_some()
                    || resolution
                        .candidates
                        .iter()
                        .any(|c| c.provider == ProviderKind::Gemini || c.model != model);
                (
                    op,
                    needs_tree,
                    Some(model),
                    resolution.candidates,
                    resolution.is_virtual,
                )
            }
            Route::OpenAiPassthrough | Route::StoredResponse { .. } => {
                if cfg.provider(ProviderKind::OpenAi).is_none() {
                    return Err(GatewayError::NotFound {
                        path: path_and_query(session),
                    });
                }
                // A body naming a model is resolved like chat's: an OpenAI model goes on
                // (under its resolved name), one this route cannot translate to never does.
                let (model, only) = passthrough_model(cfg, route, &body, session)?;
                let needs_tree = model.as_ref().is_some_and(|m| *m != only.model);
                (Op::OpenAiOther, needs_tree, model, vec![only], false)
            }
            Route::GeminiNative { model, method: gm } => {
                // Resolved like chat (SPEC §12); a bare name no rule knows still goes to
                // Gemini as it is when Gemini is configured (its catalog is larger than ours).
                let resolution = match routing::resolve(cfg, model) {
                    Ok(r) => r,
                    Err(GatewayError::ModelNotFound { .. })
                        if cfg.provider(ProviderKind::Gemini).is_some() && !model.contains('/') =>
                    {
                        routing::Resolution {
                            candidates: vec![Candidate {
                                provider: ProviderKind::Gemini,
                                model: model.clone(),
                            }],
                            is_virtual: false,
                        }
                    }
                    Err(e) => return Err(e),
                };
                let mut candidates = resolution.candidates;
                if *gm == GeminiMethod::CountTokens {
                    // OpenAI has no counting endpoint: an OpenAI model's count is the
                    // gateway's estimate, answered here; only Gemini can count for Gemini.
                    if let Some(first) = candidates
                        .first()
                        .filter(|c| c.provider == ProviderKind::OpenAi)
                    {
                        let tree: Value = serde_json::from_slice(&body)
                            .map_err(|e| GatewayError::bad_request(e.to_string()))?;
                        let answer = crate::providers::openai::from_gemini::count_tokens(&tree)
                            .map_err(crate::translate::bad_request)?;
                        ctx.model = Some(first.model.clone());
                        send_json(session, ctx, 200, Bytes::from(answer)).await;
                        return Ok(());
                    }
                    candidates.retain(|c| c.provider == ProviderKind::Gemini);
                }
                // Translating for OpenAI needs the tree; Gemini's passthrough never parses.
                let needs_tree = candidates
                    .iter()
                    .any(|c| c.provider == ProviderKind::OpenAi);
                (
                    Op::GeminiNative { method: *gm },
                    needs_tree,
                    Some(model.clone()),
                    candidates,
                    resolution.is_virtual,
                )
            }
            _ => {
                return Err(GatewayError::NotFound {
                    path: path_and_query(session),
                })
            }
        };
        ctx.model = requested_model.clone();
        if let Some(t) = ctx.trace.as_mut() {
            t.request(
                op,
                requested_model.as_deref(),
                max_tokens,
                ctx.request_id.as_str(),
            );
        }
        if let (Some(p), Some(m)) = (&caller_policy, &requested_model) {
            if !p.allows(m) {
                crate::identity::metrics::decision("refused", "model_not_allowed");
                return Err(GatewayError::ModelNotAllowed { model: m.clone() });
            }
        }
        // Walking the messages costs about a microsecond: done only for TPM limits and for
        // ordering a virtual model's candidates by cost.
        let needs_estimate = candidates.len() > 1
            && cfg.routing.strategy == Strategy::CostOptimized
            || cfg.security.rate_limiting_enabled && key_tpm.is_some()
            || caller_policy.as_ref().is_some_and(|p| p.budget.is_some());
        // The whole tree, parsed at most once and only when something needs it (a cache hit
        // on bytes seen before does not).
        let parse = || {
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| GatewayError::bad_request(e.to_string()))
        };
        let mut parsed = if needs_tree && needs_estimate {
            Some(parse()?)
        } else {
            None
        };
        // From the tree when there is one, else from the bytes (the same visitors, no tree).
        let estimate = match (&parsed, needs_estimate) {
            (_, false) => None,
            (Some(tree), true) => Some(strategy::estimate_tokens(tree)),
            (None, true) => Some(
                strategy::estimate_tokens_of(&body)
                    .map_err(|e| GatewayError::bad_request(e.to_string()))?,
            ),
        };
        order_candidates(rt, &mut candidates, estimate);
        let tenant =
            matches!(op, Op::Responses { .. }).then(|| responses::tenant(ctx, &client_keys));
        let conversation = match (&previous, &tenant) {
            (Some(id), Some(tenant)) => {
                Box::pin(responses::continuation(
                    &self.state,
                    tenant,
                    id,
                    &mut candidates,
                ))
                .await?
            }
            // `previous_response_id` is read on the Responses route only, where the tenant is.
            _ => None,
        };
        // A translated answer is kept for `previous_response_id` (OpenAI keeps its own).
        let keep_state = store
            && candidates
                .iter()
                .any(|c| c.provider == ProviderKind::Gemini);

        // A bearer key is meant for the provider of the requested model: it may follow a
        // virtual model only when all its candidates are of one provider.
        let single_provider = candidates
            .windows(2)
            .all(|w| w[0].provider == w[1].provider);
        let bearer_applies = !is_virtual || single_provider;
        let with_keys: Vec<(Candidate, Option<String>)> = candidates
            .into_iter()
            .map(|c| {
                let client = client_keys
                    .for_provider(c.provider, bearer_applies)
                    .map(str::to_string);
                (c, client)
            })
            .filter(|(c, client)| {
                let gateway_has_key = rt
                    .pools
                    .get(&c.provider)
                    .is_some_and(|p| p.peers.iter().any(|peer| peer.api_key.is_some()));
                auth::upstream_key(&cfg.auth, client.as_deref(), None).is_some()
                    || (gateway_has_key && cfg.auth.mode != AuthMode::Client)
            })
            .collect();
        if with_keys.is_empty() {
            return Err(GatewayError::MissingProviderKey {
                model: requested_model.unwrap_or_default(),
            });
        }

        // Rate limits run before any upstream call; a 429 from here is never retried. The
        // caller is who pays for this request: its access key, else the client key that
        // will actually be sent upstream, else its address — never a header that is unused.
        let caller = if cfg.security.rate_limiting_enabled {
            let used = with_keys
                .first()
                .and_then(|(_, k)| k.as_deref())
                .filter(|k| {
                    matches!(
                        auth::upstream_key(&cfg.auth, Some(k), None),
                        Some(auth::UpstreamKey::Client(_))
                    )
                });
            caller_identity(ctx, used, session)
        } else {
            String::new()
        };
        if cfg.security.rate_limiting_enabled {
            let limit = key_rpm.unwrap_or(cfg.security.rate_limit_rpm);
            let decision = Box::pin(self.state.limiter.check_requests(&caller, limit)).await;
            let allowed = decision.allowed;
            let retry_after_secs = decision.retry_after_secs;
            ctx.rate = Some(decision);
            if !allowed {
                if let Some(m) = metrics::get() {
                    m.rate_limited.with_label_values(&["requests"]).inc();
                }
                log::info!(target: targets::PROXY, "request {} rate limited ({} requests/min)", ctx.request_id, limit);
                if let Some(t) = &ctx.trace {
                    t.rate_limited("requests", retry_after_secs);
                }
                return Err(GatewayError::RateLimited { retry_after_secs });
            }
        }

        // Tokens per minute: reserved now from an estimate, settled with the real usage.
        let mut reservation = None;
        if let (true, Some((input, output))) = (cfg.security.rate_limiting_enabled, estimate) {
            if let Some(tpm) = key_tpm {
                let (decision, r) = Box::pin(self.state.limiter.reserve_tokens(
                    &caller,
                    tpm,
                    input + output,
                ))
                .await;
                if !decision.allowed {
                    if let Some(m) = metrics::get() {
                        m.rate_limited.with_label_values(&["tokens"]).inc();
                    }
                    if let Some(t) = &ctx.trace {
                        t.rate_limited("tokens", decision.retry_after_secs);
                    }
                    return Err(GatewayError::RateLimited {
                        retry_after_secs: decision.retry_after_secs,
                    });
                }
                reservation = r;
            }
        }

        // The cache: exact match on the canonical request, scoped to the caller.
        // A Responses request is cacheable only when it neither continues nor is kept.
        let cacheable = cfg.cache.enabled
            && match op {
                Op::Chat { .. } | Op::Embeddings => true,
                Op::Responses { .. } => !store && previous.is_none(),
                Op::OpenAiOther | Op::GeminiNative { .. } => false,
            };
        let policy = cache::policy(cache_control.as_deref(), ttl_header.as_deref());
        let scope = cache_scope(ctx, &with_keys);
        let cache_key_for = |parsed: &Option<Value>, c: &Candidate| {
            parsed
                .as_ref()
                .map(|v| cache::cache_key(route.label(), c.provider.name(), &c.model, &scope, v))
        };
        // Exactly these bytes, for this caller and candidate, seen before: their canonical key
        // is known without parsing the tree.
        let raw_key = match (cacheable, with_keys.first()) {
            (true, Some((c, _))) => Some(cache::raw_key(
                route.label(),
                c.provider.name(),
                &c.model,
                &scope,
                &body,
            )),
            _ => None,
        };
        if let (Some(raw), true) = (&raw_key, policy.read) {
            if let Some(key) = self.state.cache.canonical_for(raw) {
                if let Some(hit) = self.lookup(&key, ctx).await {
                    return self.answer_from_cache(session, ctx, hit, op).await;
                }
            }
        }
        if needs_tree && parsed.is_none() {
            parsed = Some(parse()?);
        }
        let primary_key = if cacheable {
            with_keys
                .first()
                .and_then(|(c, _)| cache_key_for(&parsed, c))
        } else {
            None
        };
        if let (Some(raw), Some(key)) = (&raw_key, &primary_key) {
            self.state.cache.remember_canonical(raw, key);
        }
        let mut leader = None;
        if let (Some(key), true) = (&primary_key, policy.read) {
            if let Some(hit) = self.lookup(key, ctx).await {
                return self.answer_from_cache(session, ctx, hit, op).await;
            }
            match self.state.cache.join(key) {
                cache::Flight::Leader(guard) => leader = Some(guard),
                cache::Flight::Follower(waiter) => {
                    // An identical request is already upstream: wait for its answer.
                    if waiter.wait(cfg.server.request_timeout).await
                        == cache::WaitOutcome::Completed
                    {
                        if let Some(hit) = self.lookup(key, ctx).await {
                            return self.answer_from_cache(session, ctx, hit, op).await;
                        }
                    }
                }
            }
        }
        ctx.cache = if primary_key.is_some() && (policy.read || policy.write) {
            "MISS"
        } else {
            "BYPASS"
        };
        if ctx.cache == "MISS" {
            if let Some(m) = metrics::get() {
                m.cache_misses.with_label_values(&[ctx.route]).inc();
            }
        }

        let Some(_slot) =
            InflightSlot::acquire(&self.state.inflight, cfg.server.max_concurrent_requests)
        else {
            if let Some(m) = metrics::get() {
                m.shed.with_label_values(&[ctx.route]).inc();
            }
            return Err(GatewayError::Overloaded);
        };
        // USD budget (SPEC §13): the estimate reserved now, settled with the real cost
        // (after the cache: a hit costs nothing).
        // JWT callers without a budget skip it; managed keys always count (their spend is shown).
        // The first candidate's price, looked up once: the settle reuses it when that
        // candidate answered.
        let budgets = &self.state.identity.budgets;
        let mut first_price = None;
        let spend = match &caller_policy {
            Some(p) if p.budget.is_some() || !p.id.starts_with("jwt:") => {
                first_price = with_keys.first().and_then(|(c, _)| {
                    strategy::price_of(c.provider.name(), &c.model, &cfg.pricing)
                });
                let cost = first_price.map_or(0.0, |price| {
                    let (input, output) = estimate.unwrap_or((0, 0));
                    strategy::estimated_cost(&price, input, output)
                });
                let reserved = match budgets.try_reserve_now(&p.id, p.budget.as_ref(), cost) {
                    Some(r) => r,
                    None => Box::pin(budgets.reserve(&p.id, p.budget.as_ref(), cost)).await,
                };
                match reserved {
                    Ok(r) => Some(r),
                    Err(period) => {
                        log::info!(target: targets::PROXY, "request {} refused: {} budget of {} spent", ctx.request_id, period, p.id);
                        return Err(GatewayError::BudgetExceeded { period });
                    }
                }
            }
            _ => None,
        };

        // A budget settles with the real usage: the whole answer is kept to read it.
        let keep = primary_key.is_some() && policy.write || keep_state || spend.is_some();
        let referable = match &tenant {
            Some(tenant) => {
                Box::pin(responses::referable(
                    &self.state,
                    tenant,
                    &body,
                    parsed.as_ref(),
                ))
                .await
            }
            _ => Vec::new(),
        };
        // Read only now: a cache hit needs none of these.
        let req = session.req_header();
        let job = Job {
            api: op,
            method: req.method.clone(),
            path_and_query: path_and_query(session),
            body,
            parsed,
            requested_model,
            candidates: with_keys,
            forward_headers: forwardable(req),
            keep,
            client_secrets: client_secrets(&client_keys, req, &cfg.security.api_key_header),
            conversation,
            minted_id: if keep_state || matches!(op, Op::Responses { .. }) {
                responses::mint_id()
            } else {
                String::new()
            },
            store: keep_state,
            referable,
        };
        let outcome = relay::run(&self.state, rt, session, ctx, &job).await;
        if let (None, Some(_), Some(body)) = (ctx.usage, &spend, &outcome.complete) {
            ctx.usage = pump::usage_of(body);
        }
        if let (true, 200, Some(ProviderKind::Gemini), Some(body), Some(items), Some(tenant)) = (
            keep_state,
            ctx.status,
            ctx.provider,
            outcome.complete.as_ref(),
            outcome.input_items.as_deref(),
            &tenant,
        ) {
            let written = outcome
                .output_span
                .clone()
                .map(|span| (job.minted_id.as_str(), span));
            Box::pin(responses::keep(
                &self.state,
                tenant,
                job.conversation.as_ref(),
                items,
                body,
                written,
            ))
            .await;
        }

        // Stored under the candidate that actually answered, so a failover answer is never
        // served as the primary's.
        // Only an answer that parsed as what the route returns is stored: a garbage 200 must
        // not be served again.
        if let (Some(body), true, Some(provider), Some(model)) = (
            outcome
                .complete
                .filter(|b| primary_key.is_some() && is_storable(op, b)),
            ctx.status == 200,
            ctx.provider,
            ctx.model.clone(),
        ) {
            let answered = Candidate {
                provider,
                model: model.clone(),
            };
            if let Some(key) = cache_key_for(&job.parsed, &answered) {
                let ttl = policy.ttl.unwrap_or(cfg.cache.ttl);
                let entry = cache::Entry {
                    body,
                    provider: provider.name().to_string(),
                    model,
                };
                Box::pin(self.state.cache.put(&key, entry, ttl)).await;
                if let Some(guard) = leader.take() {
                    guard.complete();
                }
            }
        }
        if let Some(r) = spend {
            let actual = match (ctx.usage, ctx.provider, &ctx.model) {
                (Some(usage), Some(p), Some(m)) if ctx.cache != "HIT" => {
                    let first = job.candidates.first().map(|(c, _)| c);
                    Some(match first {
                        Some(c) if c.provider == p && c.model == *m => first_price
                            .map_or(0.0, |price| {
                                strategy::estimated_cost(&price, usage.0, usage.1)
                            }),
                        _ => cost_of(cfg, p.name(), m, usage),
                    })
                }
                // An answer that began (a 2xx went out) but never reported usage, e.g. a
                // stream the client aborted: it costs what was reserved, or aborting early
                // would make tokens free. A failed or cached request costs nothing.
                _ if ctx.cache != "HIT" && (200..300).contains(&ctx.status) => None,
                _ => Some(0.0),
            };
            if let Err(r) = budgets.try_settle_now(r, actual) {
                Box::pin(budgets.settle(r, actual)).await;
            }
        }
        if let Some(r) = reservation {
            let actual = ctx
                .usage
                .map(|(p, c)| p + c)
                .unwrap_or_else(|| r.reserved());
            Box::pin(self.state.limiter.settle(r, actual)).await;
        }
        Ok(())
    }
}

/// USD for `(input, output)` tokens of `model` at the price table (0 when unpriced).
fn cost_of(cfg: &crate::config::Config, provider: &str, model: &str, tokens: (u64, u64)) -> f64 {
    strategy::price_of(provider, model, &cfg.pricing)
        .map_or(0.0, |p| strategy::estimated_cost(&p, tokens.0, tokens.1))
}

/// Who the caller is for rate limits: the gateway key id, else a hash of the client's
/// provider key that this request sends upstream, else the client's IP address.
fn caller_identity(ctx: &Ctx, used_client_key: Option<&str>, session: &Session) -> String {
    if let Some(id) = &ctx.key_id {
        return format!("key:{id}");
    }
    if let Some(k) = used_client_key {
        return format!("client:{}", auth::key_fingerprint(k.as_bytes()));
    }
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    format!("ip:{ip}")
}

/// Whether a complete answer has the shape of the route's answer (a chat completion with
/// choices, an embeddings list with data).
fn is_storable(op: Op, body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    struct Chat {
        choices: Vec<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Embeddings {
        data: Vec<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        object: Cow<'a, str>,
        #[serde(borrow)]
        status: Cow<'a, str>,
    }
    match op {
        Op::Chat { .. } => {
            serde_json::from_slice::<Chat>(body).is_ok_and(|c| !c.choices.is_empty())
        }
        Op::Embeddings => {
            serde_json::from_slice::<Embeddings>(body).is_ok_and(|e| !e.data.is_empty())
        }
        Op::Responses { .. } => serde_json::from_slice::<Response>(body)
            .is_ok_and(|r| r.object == "response" && r.status == "completed"),
        Op::OpenAiOther | Op::GeminiNative { .. } => false,
    }
}

/// The keys this request carries, to redact from anything an upstream sends back.
fn client_secrets(
    keys: &ClientKeys,
    req: &pingora::http::RequestHeader,
    access_header: &str,
) -> Vec<String> {
    let mut out: Vec<String> = [&keys.bearer, &keys.openai, &keys.gemini]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if let Some(v) = req.headers.get(access_header).and_then(|v| v.to_str().ok()) {
        out.push(v.trim().trim_start_matches("Bearer ").to_string());
    }
    out
}

/// The model an OpenAI passthrough route's JSON body names, resolved: the model as written
/// and the one candidate (OpenAI, the resolved name). No model (or no JSON body): the route
/// goes to OpenAI as it came. A name the gateway does not know is OpenAI's to judge (fine-
/// tunes, older models); a Gemini or virtual model has no translation on this route: 400.
fn passthrough_model(
    cfg: &crate::config::Config,
    route: &Route,
    body: &Bytes,
    session: &Session,
) -> Result<(Option<String>, Candidate), GatewayError> {
    let openai = |model: &str| Candidate {
        provider: ProviderKind::OpenAi,
        model: model.to_string(),
    };
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if matches!(route, Route::StoredResponse { .. }) || !looks_json {
        return Ok((None, openai("")));
    }
    let Some(model) = serde_json::from_slice::<Head>(body)
        .ok()
        .and_then(|h| h.model)
        .map(Cow::into_owned)
    else {
        return Ok((None, openai("")));
    };
    let resolution = match routing::resolve(cfg, &model) {
        Ok(r) => r,
        Err(GatewayError::ModelNotFound { .. }) => {
            return Ok((Some(model.clone()), openai(&model)))
        }
        Err(e) => return Err(e),
    };
    match resolution.candidates.as_slice() {
        [only] if !resolution.is_virtual && only.provider == ProviderKind::OpenAi => {
            Ok((Some(model), only.clone()))
        }
        _ => Err(GatewayError::BadRequest {
            message: format!(
                "The route {} has no translation for `{model}`: only OpenAI models are served on it.",
                session.req_header().uri.path()
            ),
            param: Some("model".into()),
        }),
    }
}

/// Whose answers a cache entry belongs to: tenants never see each other's answers.
fn cache_scope(ctx: &Ctx, candidates: &[(Candidate, Option<String>)]) -> String {
    if let Some(id) = &ctx.key_id {
        return format!("key:{id}");
    }
    match candidates.iter().find_map(|(_, k)| k.as_deref()) {
        Some(k) => format!("client:{}", hex::encode(auth::sha256(k.as_bytes()))),
        None => "gateway".into(),
    }
}

/// Orders a virtual model's candidates by the routing strategy: cheapest first for
/// `cost_optimized`, fastest provider first for `performance`, config order otherwise.
fn order_candidates(rt: &Runtime, candidates: &mut [Candidate], estimate: Option<(u64, u64)>) {
    if candidates.len() < 2 {
        return;
    }
    match rt.config.routing.strategy {
        Strategy::RoundRobin => {}
        Strategy::CostOptimized => {
            let (input, output) = estimate.unwrap_or((1000, 256));
            let healthy =
                |c: &Candidate| rt.pools.get(&c.provider).is_some_and(|p| p.any_healthy());
            strategy::order_by_cost(candidates, |c| {
                let price = strategy::price_of(c.provider.name(), &c.model, &rt.config.pricing)?;
                // An unhealthy candidate goes after every healthy one.
                let penalty = if healthy(c) { 0.0 } else { 1e9 };
                Some(strategy::estimated_cost(&price, input, output) + penalty)
            });
        }
        Strategy::Performance => {
            strategy::order_by_latency(candidates, |c| {
                rt.pools.get(&c.provider).and_then(|p| p.best_latency())
            });
        }
    }
}

/// Decides the CORS answer for the request's `Origin`: `*` for a wildcard list (never with
/// credentials), the origin itself when listed exactly.
fn cors_origin(allowed: &[String], session: &Session, ctx: &mut Ctx) {
    let Some(origin) = session
        .req_header()
        .headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if allowed.iter().any(|a| a == origin) {
        ctx.cors_origin = Some(origin.to_string());
        ctx.cors_exact = true;
    } else if allowed.iter().any(|a| a == "*") {
        ctx.cors_origin = Some("*".into());
    }
}

/// Whether a request header announces a body (a length above zero, or chunked).
fn declares_body(req: &pingora::http::RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn path_and_query(session: &Session) -> String {
    session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default()
}

/// Client headers that are part of the provider APIs and safe to forward.
fn forwardable(req: &pingora::http::RequestHeader) -> Vec<(http::HeaderName, http::HeaderValue)> {
    use http::HeaderName;
    const NAMES: [HeaderName; 5] = [
        HeaderName::from_static("openai-organization"),
        HeaderName::from_static("openai-project"),
        HeaderName::from_static("openai-beta"),
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-goog-user-project"),
    ];
    NAMES
        .iter()
        .filter_map(|n| req.headers.get(n).map(|v| (n.clone(), v.clone())))
        .collect()
}

/// `/health/providers`: every provider and peer with its last check.
fn provider_health(rt: &Runtime, redis: Value) -> Value {
    let mut providers = serde_json::Map::new();
    for (kind, pool) in &rt.pools {
        let peers: Vec<Value> = pool
            .peer_health()
            .into_iter()
            .map(|(peer, healthy)| {
                let stats = &peer.stats;
                let last_check = stats.last_check_ms.load(Ordering::Relaxed);
                let latency = stats.latency_us.load(Ordering::Relaxed);
                let last_error = stats.last_error.lock().ok().and_then(|e| e.clone());
                let resolved = stats.resolved.lock().ok().and_then(|r| *r);
                json!({
                    "address": format!("{}:{}", peer.address.host, peer.address.port),
                    "resolved": resolved.map(|a| a.to_string()),
                    "base_url": peer.base_url,
                    "weight": peer.weight,
                    "healthy": healthy,
                    "check": peer.check,
                    "last_check": (last_check > 0).then(|| rfc3339_ms(last_check)),
                    "last_error": last_error,
                    "latency_ms": (last_check > 0 && last_error_is_none(&peer)).then(|| latency as f64 / 1000.0),
                })
            })
            .collect();
        let healthy = peers.iter().any(|p| p["healthy"] == true);
        providers.insert(
            kind.name().into(),
            json!({"healthy": healthy, "peers": peers}),
        );
    }
    json!({ "providers": providers, "redis": redis })
}

fn last_error_is_none(peer: &crate::upstream::PeerInfo) -> bool {
    peer.stats
        .last_error
        .lock()
        .map(|e| e.is_none())
        .unwrap_or(false)
}

fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
