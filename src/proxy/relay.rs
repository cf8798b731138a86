//! The upstream leg, driven from `request_filter` (see README, "Architecture"): choose a peer,
//! send the buffered body over a pooled connection, fail over on errors that happened before
//! the client saw a byte, and relay the answer chunk by chunk (translated for Gemini).

use super::deliver::{self, Answer, Outcome};
use super::respond::send_error;
use super::Ctx;
use crate::auth::UpstreamKey;
use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::logging::targets;
use crate::redact::Secrets;
use crate::routing::Candidate;
use crate::state::{Runtime, State};
use crate::strategy::{self, FailureKind, Next};
use crate::translate::{self, ClientApi, ClientRequest, Conversation, UpstreamRequest};
use crate::upstream::PeerInfo;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most upstream calls one request may make, whatever `retry_count` and the number of
/// candidates say: a bound on cost when everything is failing.
pub const MAX_ATTEMPTS: u32 = 8;
/// Error bodies read from a failed attempt are cut here.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// One request to carry upstream.
pub struct Job {
    pub api: ClientApi,
    pub method: http::Method,
    /// The client's path and query (for passthrough routes).
    pub path_and_query: String,
    pub body: Bytes,
    /// The parsed body, when translation or a model rewrite needs it.
    pub parsed: Option<Value>,
    /// The model as the client wrote it, when the body names one.
    pub requested_model: Option<String>,
    /// Candidates in order, each with the client's key for its provider (if any).
    pub candidates: Vec<(Candidate, Option<String>)>,
    /// Client headers worth forwarding (OpenAI-Organization, …).
    pub forward_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Keep the complete answer (the request is cacheable).
    pub keep: bool,
    /// The client's keys and the access key it presented: redacted from upstream text.
    pub client_secrets: Vec<String>,
    /// Responses API: the conversation a gateway-minted `previous_response_id` continues.
    pub conversation: Option<Conversation>,
    /// Responses API: the id a translated answer gets.
    pub minted_id: String,
    /// Responses API: the answer is kept as conversation state.
    pub store: bool,
    /// Responses API: output items of this caller's stored responses the input references.
    pub referable: Vec<Value>,
}

/// The candidate's upstream request, from the translation registered for its pair; a pair
/// with none is refused, never forwarded as it came.
fn prepare(job: &Job, cand: &Candidate) -> Result<UpstreamRequest, GatewayError> {
    let Some(translation) = translate::lookup(job.api, cand.provider) else {
        return Err(GatewayError::BadRequest {
            message: format!(
                "{} cannot be served by a {} model through this route",
                job.path_and_query.split('?').next().unwrap_or_default(),
                cand.provider.name()
            ),
            param: Some("model".into()),
        });
    };
    let req = ClientRequest {
        api: job.api,
        body: &job.body,
        parsed: job.parsed.as_ref(),
        requested_model: job.requested_model.as_deref(),
        path_and_query: &job.path_and_query,
        conversation: job.conversation.as_ref(),
        minted_id: &job.minted_id,
        store: job.store,
        referable: &job.referable,
    };
    translation.request(&req, &cand.model)
}

/// `/v1` or `/v1beta` at the end of a base path is the API version, which native routes carry
/// themselves; what is before it is the root they go under.
fn native_root(base_path: &str) -> &str {
    for version in ["/v1beta", "/v1alpha", "/v1"] {
        if let Some(root) = base_path.strip_suffix(version) {
            return root;
        }
    }
    base_path
}

/// Why one attempt did not produce an answer for the client.
#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn transport(kind: FailureKind, message: String) -> Self {
        Failure {
            kind,
            message,
            retry_after: None,
        }
    }
}

/// Every key this request may carry or meet: redacted from upstream text.
fn request_secrets<'a>(rt: &'a Runtime, job: &'a Job) -> Secrets<'a> {
    let mut secrets = Secrets::new();
    for k in &rt.gateway_keys {
        secrets.add(k.expose());
    }
    for k in &job.client_secrets {
        secrets.add(k);
    }
    secrets
}

/// Runs the job: tries candidates and peers in order, then relays the answer. Retries follow
/// the one rule in [`strategy::next_step`].
pub async fn run(
    state: &State,
    rt: &Runtime,
    session: &mut Session,
    ctx: &mut Ctx,
    job: &Job,
) -> Outcome {
    let deadline = Instant::now() + rt.config.server.request_timeout;
    let failover = rt.config.routing.failover_enabled;
    let secrets = request_secrets(rt, job);
    if let Some(t) = &ctx.trace {
        t.capture_input(&job.body, &secrets);
    }
    let mut last_error: Option<String> = None;
    let mut timed_out = false;
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut rng = fastrand::Rng::new();

    'candidates: for (cand, client_key) in &job.candidates {
        let prepared = match prepare(job, cand) {
            Ok(p) => p,
            Err(e) => {
                send_error(session, ctx, &e).await;
                return Outcome::default();
            }
        };
        let Some(pool) = rt.pools.get(&cand.provider) else {
            continue;
        };
        let Some(provider_cfg) = rt.config.provider(cand.provider) else {
            continue;
        };
        let mut n: u32 = 0;
        loop {
            if ctx.attempts >= MAX_ATTEMPTS {
                break 'candidates;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break 'candidates;
            }
            let Some((peer, addr)) = pool.select(&tried) else {
                last_error
                    .get_or_insert_with(|| format!("no healthy {} peer", cand.provider.name()));
                continue 'candidates;
            };
            // The gateway's key is per peer (endpoints may carry their own).
            let Some(key) = crate::auth::upstream_key(
                &rt.config.auth,
                client_key.as_deref(),
                peer.api_key.as_ref(),
            ) else {
                last_error = Some(format!(
                    "no API key for {} peer {}",
                    cand.provider.name(),
                    peer.authority
                ));
                tried.push(addr);
                if other_peers_left(pool, &tried) {
                    continue;
                }
                continue 'candidates;
            };
            ctx.attempts += 1;
            ctx.provider = Some(cand.provider);
            ctx.model = Some(cand.model.clone());
            ctx.peer = Some(peer.clone());
            ctx.key_source = Some(key.source());
            let timeout = provider_cfg.timeout.min(deadline - now);
            let attempt_started = Instant::now();
            ctx.attempt_started = Some(attempt_started);
            let trace = ctx
                .trace
                .as_mut()
                .and_then(|t| t.begin_attempt(cand.provider, &cand.model, &peer, ctx.attempts));
            // Boxed, as is the delivery below: an async fn's future holds every future it
            // awaits, and each level of nesting copied the upstream session's futures again
            // (tens of KiB per request). One allocation each keeps `run` under 3 KiB.
            let attempt = boxed_in_place(|| {
                send_attempt(
                    state,
                    &peer,
                    addr,
                    &prepared,
                    &key,
                    job,
                    timeout,
                    trace.as_ref(),
                )
            });
            let outcome = tokio::select! {
                r = attempt => r,
                _ = client_gone(session) => {
                    ctx.error = Some("client_disconnected");
                    ctx.status = 499;
                    return Outcome::default();
                }
            };
            ctx.upstream_wait += attempt_started.elapsed();
            ctx.header_at = Some(Instant::now());
            let failure = match outcome {
                Ok((up, status_code)) => {
                    let kind = FailureKind::Status(status_code.as_u16());
                    let failed = !status_code.is_success() && kind.is_retryable();
                    match (failed, unexpected_body(&up, &prepared)) {
                        (false, None) => {
                            if kind.is_peer_failure() {
                                peer.stats.passive.record_failure(Instant::now());
                            } else {
                                peer.stats.passive.record_success();
                                peer.stats.ewma.observe(attempt_started.elapsed());
                            }
                            let answer = Answer {
                                up,
                                status: status_code,
                                peer,
                                addr,
                                answer: prepared.answer,
                                stream: prepared.stream,
                                timeout: provider_cfg.timeout,
                                keep: job.keep,
                            };
                            return Box::pin(deliver::deliver(
                                state, session, ctx, answer, &secrets,
                            ))
                            .await;
                        }
                        (false, Some(why)) => {
                            // A 2xx the client could not use (HTML from a captive proxy, a
                            // JSON error page): the peer is broken, another may not be.
                            Failure::transport(FailureKind::Status(502), why)
                        }
                        (true, _) => {
                            let (message, retry_after) = read_failure(up, timeout, &secrets).await;
                            Failure {
                                kind,
                                message: format!("returned {}: {message}", status_code.as_u16()),
                                retry_after,
                            }
                        }
                    }
                }
                Err(f) => f,
            };
            log::warn!(target: targets::UPSTREAM, "request {} attempt {} to {} ({}) failed: {}", ctx.request_id, ctx.attempts, cand.provider.name(), peer.authority, failure.message);
            if let Some(t) = &mut ctx.trace {
                t.fail_attempt(failure.kind, &failure.message);
            }
            if failure.kind.is_peer_failure() {
                peer.stats.passive.record_failure(Instant::now());
            }
            if failure.kind == FailureKind::Timeout {
                // A peer that hangs must not look fast to the `performance` strategy.
                peer.stats.ewma.observe(timeout);
                timed_out = true;
            }
            last_error = Some(format!("{} {}", cand.provider.name(), failure.message));
            tried.push(addr);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = strategy::next_step(
                failure.kind,
                n,
                provider_cfg.retry_count,
                failover,
                failure.retry_after,
                remaining,
                other_peers_left(pool, &tried),
                &mut rng,
            );
            n += 1;
            match next {
                Next::GiveUp => break 'candidates,
                Next::NextCandidate => continue 'candidates,
                Next::NextPeer(wait) | Next::RetrySamePeer(wait) => {
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = client_gone(session) => {
                                ctx.error = Some("client_disconnected");
                                ctx.status = 499;
                                return Outcome::default();
                            }
                        }
                    }
                }
            }
        }
    }
    let message = last_error.unwrap_or_else(|| "no provider could be tried".into());
    let err = if timed_out || Instant::now() >= deadline {
        GatewayError::UpstreamTimeout {
            message: format!("Upstream timed out: {message}"),
        }
    } else {
        GatewayError::UpstreamFailed {
            message: format!("All providers failed; last error: {message}"),
        }
    };
    send_error(session, ctx, &err).await;
    Outcome::default()
}

/// Whether the pool has a peer this request has not tried yet.
fn other_peers_left(pool: &crate::upstream::ProviderPool, tried: &[SocketAddr]) -> bool {
    pool.lb
        .backends()
        .get_backend()
        .iter()
        .filter_map(|b| b.addr.as_inet())
        .any(|a| !tried.contains(a))
}

/// Why a successful answer cannot be what this route's client expects: a body that is neither
/// JSON nor (for streams) an event stream. Passthrough routes carry any content type.
fn unexpected_body(up: &HttpSession, prepared: &UpstreamRequest) -> Option<String> {
    let ct = up
        .response_header()
        .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
        .map(|v| v.as_bytes());
    // No content type at all: left to the answer's own reading.
    let ct = ct?;
    let media = ct.split(|b| *b == b';').next().unwrap_or_default();
    let media = media.trim_ascii();
    let json = media.eq_ignore_ascii_case(b"application/json")
        || media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case(b"+json");
    let sse = media.eq_ignore_ascii_case(b"text/event-stream");
    if prepared.answer.accepts(json, sse, prepared.stream) {
        return None;
    }
    Some(format!(
        "answered 2xx with content type {:?}, which is not {}",
        String::from_utf8_lossy(&media[..media.len().min(64)]),
        if prepared.stream {
            "an event stream or JSON"
        } else {
            "JSON"
        }
    ))
}

/// The most bytes of response header the gateway accepts from an upstream; Pingora's own
/// bound is 1 MiB, and a client would choke on what lies between.
pub const UPSTREAM_HEADER_LIMIT: usize = 64 * 1024;

fn header_bytes(h: &pingora::http::ResponseHeader) -> usize {
    h.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// Resolves when the client closed its connection (never while it is still there).
pub async fn client_gone(session: &mut Session) {
    loop {
        match session.read_body_or_idle(true).await {
            Err(_) => return,
            Ok(None) => std::future::pending::<()>().await,
            Ok(Some(_)) => continue,
        }
    }
}

/// The upstream request header, built as `http` parts (no header-case map, names parsed at
/// compile time); the host and the gateway key's header come pre-rendered from the peer.
fn request_header(
    peer: &PeerInfo,
    path: &str,
    job: &Job,
    key: &UpstreamKey,
    len: usize,
    stream: bool,
    trace: Option<&crate::telemetry::TraceHeaders>,
) -> Result<RequestHeader, String> {
    use http::header;
    let uri = http::Uri::try_from(path).map_err(|e| format!("invalid upstream path: {e}"))?;
    let mut h = http::HeaderMap::with_capacity(8 + job.forward_headers.len());
    h.insert(header::HOST, peer.host_header.clone());
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("llm-gateway/", env!("CARGO_PKG_VERSION"))),
    );
    if job.method != http::Method::GET || len > 0 {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if stream {
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    let auth = match key {
        UpstreamKey::Gateway(_) if peer.gateway_auth.is_some() => peer.gateway_auth.clone(),
        _ => crate::upstream::auth_header_value(peer.provider, key.secret().expose()),
    }
    .ok_or("the API key cannot be sent as an HTTP header value")?;
    match peer.provider {
        ProviderKind::OpenAi => h.insert(header::AUTHORIZATION, auth),
        ProviderKind::Gemini => h.insert(super::respond::names::X_GOOG_API_KEY, auth),
    };
    for (k, v) in &job.forward_headers {
        h.insert(k.clone(), v.clone());
    }
    if let Some(t) = trace {
        h.insert(crate::telemetry::TRACEPARENT, t.traceparent.clone());
        if let Some(state) = &t.tracestate {
            h.insert(crate::telemetry::TRACESTATE, state.clone());
        }
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = job.method.clone();
    parts.uri = uri;
    parts.headers = h;
    Ok(RequestHeader::from(parts))
}

/// Boxes the future `make` returns, written straight into its allocation. `Box::pin(f)` builds
/// the unstarted future on the stack and copies all of it (an async fn's future is as big as
/// its largest state: ~10 KiB for an attempt, most of it the connector's) into the box.
fn boxed_in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    let mut slot = Box::<F>::new_uninit();
    slot.write(make());
    // SAFETY: the slot was written just above.
    Box::into_pin(unsafe { slot.assume_init() })
}

/// One attempt: connect (pooled), send header and body, wait for the response header.
#[allow(clippy::too_many_arguments)]
async fn send_attempt(
    state: &State,
    peer: &Arc<PeerInfo>,
    addr: SocketAddr,
    prepared: &UpstreamRequest,
    key: &UpstreamKey,
    job: &Job,
    timeout: Duration,
    trace: Option<&crate::telemetry::TraceHeaders>,
) -> Result<(HttpSession, http::StatusCode), Failure> {
    let path = if prepared.native_root {
        format!(
            "{}{}",
            native_root(&peer.address.base_path),
            prepared.suffix
        )
    } else {
        format!("{}{}", peer.address.base_path, prepared.suffix)
    };
    let build = || {
        request_header(
            peer,
            &path,
            job,
            key,
            prepared.body.len(),
            prepared.stream,
            trace,
        )
        .map_err(|message| Failure::transport(FailureKind::Connect, message))
    };
    // Built before connecting so that a bad path or key fails without using a connection.
    let first = build()?;
    let http_peer = peer.http_peer(addr, timeout);
    // Pinned where it is: handed to the timer by value, the future (kilobytes: the connector's
    // and the session's futures) would be copied into it and again into the await.
    let work = std::pin::pin!(async {
        // A pooled connection may have been closed by the upstream while idle: retry such a
        // failure on another connection before counting it against the peer.
        let mut last = String::new();
        let mut first = Some(first);
        for _ in 0..3 {
            let (up, reused) = state
                .connector
                .get_http_session(&http_peer)
                .await
                .map_err(|e| {
                    Failure::transport(
                        FailureKind::Connect,
                        format!("connect to {addr} failed: {e}"),
                    )
                })?;
            // A retry (after a reused connection failed) builds the header again: cheaper
            // than keeping a copy on every request for the rare retry.
            let header = match first.take() {
                Some(h) => h,
                None => build()?,
            };
            let sent = async {
                let mut up = send_request(up, header, &prepared.body, &http_peer).await?;
                up.read_response_header().await?;
                Ok::<_, Box<pingora::Error>>(up)
            }
            .await;
            match sent {
                Ok(up) => {
                    let Some(h) = up.response_header() else {
                        return Err(Failure::transport(
                            FailureKind::Reset,
                            "no response header".into(),
                        ));
                    };
                    let size = header_bytes(h);
                    if size > UPSTREAM_HEADER_LIMIT {
                        return Err(Failure::transport(
                            FailureKind::Status(502),
                            format!("response header of {size} bytes is over the {UPSTREAM_HEADER_LIMIT}-byte limit"),
                        ));
                    }
                    let status = h.status;
                    return Ok((up, status));
                }
                Err(e) if reused => last = e.to_string(),
                Err(e) => return Err(Failure::transport(FailureKind::Reset, e.to_string())),
            }
        }
        Err(Failure::transport(FailureKind::Reset, last))
    });
    match pingora::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::transport(
            FailureKind::Timeout,
            format!("no response within {} ms", timeout.as_millis()),
        )),
    }
}

/// Bodies up to this size are copied behind the header and sent in one write; a larger one
/// is sent as it is after the header (one more syscall is nothing beside copying it).
const COALESCE_LIMIT: usize = 16 * 1024;

/// Writes the request. Over HTTP/1 a request with a small body goes out in one write, header
/// and body together: Pingora's `write_request_header` flushes the header by itself, which
/// costs a second syscall and a second TCP segment (and its processing at both ends).
/// The session is rebuilt over the same connection as the connector builds it; it then has no
/// record of the request, which only matters for `HEAD` (an answer without its body) and
/// upgrades, neither of which takes this path.
async fn send_request(
    up: HttpSession,
    header: RequestHeader,
    body: &Bytes,
    peer: &pingora::upstreams::peer::HttpPeer,
) -> pingora::Result<HttpSession> {
    use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as H1};
    use pingora::{ErrorType, OrErr};
    use tokio::io::AsyncWriteExt;
    match up {
        HttpSession::H1(h1)
            if header.method != http::Method::HEAD
                && !body.is_empty()
                && body.len() <= COALESCE_LIMIT =>
        {
            let Some(mut wire) = http_req_header_to_wire(&header) else {
                return pingora::Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "the request line holds bytes HTTP/1 forbids",
                );
            };
            wire.extend_from_slice(body);
            let mut stream = h1.into_inner();
            stream
                .write_all(&wire)
                .await
                .or_err(ErrorType::WriteError, "while writing the request")?;
            stream
                .flush()
                .await
                .or_err(ErrorType::WriteError, "while flushing the request")?;
            Ok(HttpSession::H1(H1::new_with_options(stream, peer)))
        }
        mut up => {
            up.write_request_header(Box::new(header)).await?;
            if !body.is_empty() {
                up.write_request_body(body.clone(), true).await?;
            }
            up.finish_request_body().await?;
            Ok(up)
        }
    }
}

/// Reads (a bounded part of) a failed attempt's body for its error message.
async fn read_failure(
    mut up: HttpSession,
    timeout: Duration,
    secrets: &Secrets<'_>,
) -> (String, Option<Duration>) {
    let retry_after = up
        .response_header()
        .and_then(|h| h.headers.get("retry-after"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = deliver::read_all(&mut up, ERROR_BODY_LIMIT, timeout)
        .await
        .unwrap_or_default();
    let message = error_message(&body);
    (secrets.redact_str(&message).into_owned(), retry_after)
}

/// The `error.message` of an OpenAI or Gemini error body, or its first bytes.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(msg) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        return msg.chars().take(500).collect();
    }
    let mut end = body.len().min(300);
    while end < body.len() && end > 0 && (body[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    let text = String::from_utf8_lossy(&body[..end]).to_string();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_routes_keep_their_own_version() {
        assert_eq!(native_root("/v1beta"), "");
        assert_eq!(native_root("/v1"), "");
        assert_eq!(native_root("/proxy/v1"), "/proxy");
        assert_eq!(native_root(""), "");
    }
}
