//! The answer leg: decides how an upstream answer whose header has arrived reaches the
//! client — read whole (small answers, errors, translated non-streamed answers) or relayed
//! through the body pump ([`super::pump`]) with the transform its API pair needs — while
//! capturing token usage and, for cacheable requests, the complete answer to store.

use super::pump::{
    self, BodyTransform, CheckedSse, GeminiToOpenAi, OpenAiSse, StreamEnd, Upstream, Verbatim,
    STREAM_EVENT_LIMIT, WHOLE_BODY_LIMIT,
};
use super::respond::{common_headers, response_header, send, send_error, send_json, StreamGzip};
use super::Ctx;
use crate::error::GatewayError;
use crate::providers::gemini;
use crate::redact::Secrets;
use crate::state::State;
use crate::upstream::PeerInfo;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Non-2xx answers are read whole (to redact secrets an upstream may echo) up to this size.
const ERROR_BODY_LIMIT: usize = 1024 * 1024;
/// Answers with a `Content-Length` up to this size are read whole before the client's header
/// is written: one write, and usage and the cache need no second copy.
const SMALL_BODY_LIMIT: usize = 1024 * 1024;

/// How to turn the upstream answer into the client's.
#[derive(Debug, Clone, PartialEq)]
pub enum Translate {
    /// OpenAI chat or embeddings: relayed as is; usage read on the way.
    OpenAi {
        stream: bool,
        strip_usage: bool,
    },
    /// Passthrough routes: relayed as is; an event stream is checked for `end` when the API
    /// has an end marker; a body that is not a stream is cut after `limit` bytes when set
    /// (Gemini's JSON answers; OpenAI's passthrough carries file downloads of any size).
    Raw {
        end: Option<StreamEnd>,
        limit: Option<usize>,
    },
    GeminiChat {
        stream: bool,
        include_usage: bool,
    },
    GeminiEmbeddings(gemini::EmbeddingsContext),
}

/// An upstream answer whose header has arrived.
pub struct Answer {
    /// The upstream session; its response header has arrived.
    pub up: HttpSession,
    pub status: StatusCode,
    pub peer: Arc<PeerInfo>,
    pub addr: SocketAddr,
    pub translate: Translate,
    /// Per-attempt timeout: also the longest silence allowed between chunks.
    pub timeout: Duration,
    /// Keep a copy of the complete OpenAI-shaped answer (for the cache).
    pub keep: bool,
}

/// What the relay learnt from the answer.
#[derive(Default)]
pub struct Outcome {
    /// The complete OpenAI-shaped answer (non-streamed form), when `keep` and it completed.
    pub complete: Option<Bytes>,
}

/// Why a whole body could not be read.
enum WholeError {
    ClientGone,
    Failed(String),
}

/// Reads a whole upstream body up to `limit` bytes.
pub async fn read_all(up: &mut HttpSession, limit: usize, idle: Duration) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let chunk = match tokio::time::timeout(idle, up.read_response_body()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no data within {} ms", idle.as_millis())),
        };
        let Some(chunk) = chunk else { break };
        total += chunk.len();
        if total > limit {
            return Err(format!("upstream body larger than {limit} bytes"));
        }
        match (&first, &mut buf) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(total.max(f.len() * 2));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(buf.map(BytesMut::freeze).or(first).unwrap_or_default())
}

/// [`read_all`] while watching the client and the drain: a client that leaves stops the
/// upstream read at once.
async fn read_whole(
    state: &State,
    session: &mut Session,
    up: &mut HttpSession,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, WholeError> {
    let mut stopping = state.stopping.subscribe();
    tokio::select! {
        r = read_all(up, limit, idle) => r.map_err(WholeError::Failed),
        _ = super::relay::client_gone(session) => Err(WholeError::ClientGone),
        _ = stopping.wait_for(|s| *s) => Err(WholeError::Failed("the gateway is shutting down".into())),
    }
}

/// Reads a whole answer and returns the connection to the pool; a failure has already been
/// answered to the client (or the client left) when this returns `None`.
async fn take_whole(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    limit: usize,
) -> Option<Bytes> {
    let Answer {
        mut up,
        peer,
        addr,
        timeout,
        ..
    } = a;
    match read_whole(state, session, &mut up, limit, timeout).await {
        Ok(body) => {
            ctx.upstream_done = Some(Instant::now());
            release(state, up, &peer, addr).await;
            Some(body)
        }
        Err(WholeError::ClientGone) => {
            ctx.error = Some("client_disconnected");
            ctx.status = 499;
            None
        }
        Err(WholeError::Failed(e)) => {
            let err = GatewayError::UpstreamFailed {
                message: format!("{}: reading the answer failed: {e}", peer.provider.name()),
            };
            send_error(session, ctx, &err).await;
            None
        }
    }
}

/// Headers of an upstream answer that must not be copied to the client: hop-by-hop ones,
/// cookies, and auth challenges (a provider's challenge is about the gateway's key).
fn is_hop_or_private(name: &HeaderName) -> bool {
    use header::*;
    [
        CONNECTION,
        TRANSFER_ENCODING,
        CONTENT_LENGTH,
        UPGRADE,
        TE,
        TRAILER,
        SET_COOKIE,
        ALT_SVC,
        SERVER,
        DATE,
        WWW_AUTHENTICATE,
        PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || matches!(
            name.as_str(),
            "keep-alive" | "proxy-connection" | "x-request-id"
        )
}

/// The client's copy of the upstream's headers: values are shared (reference-counted), any
/// value carrying a known secret is replaced (auth challenges are dropped outright).
fn client_headers(up: &HttpSession, secrets: &Secrets<'_>, extra: usize) -> HeaderMap {
    let Some(up_header) = up.response_header() else {
        return HeaderMap::new();
    };
    let mut h = HeaderMap::with_capacity(up_header.headers.len() + extra);
    for (name, value) in up_header.headers.iter() {
        if is_hop_or_private(name) {
            continue;
        }
        if secrets.leaks_known(value.as_bytes()) {
            h.append(name.clone(), HeaderValue::from_static(crate::redact::MASK));
        } else {
            h.append(name.clone(), value.clone());
        }
    }
    h
}

fn content_type(up: &HttpSession) -> Option<&[u8]> {
    up.response_header()
        .and_then(|h| h.headers.get(header::CONTENT_TYPE))
        .map(|v| v.as_bytes())
}

/// Whether the upstream answered with an event stream.
pub fn is_event_stream(up: &HttpSession) -> bool {
    content_type(up).is_some_and(|v| v.starts_with(b"text/event-stream"))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Returns the upstream connection to the pool for the next request.
pub async fn release(state: &State, up: HttpSession, peer: &PeerInfo, addr: SocketAddr) {
    let http_peer = peer.http_peer(addr, Duration::from_secs(1));
    state
        .connector
        .release_http_session(up, &http_peer, Some(Duration::from_secs(60)))
        .await;
}

/// Sends the answer to the client: raw, or translated from Gemini.
pub async fn deliver(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    secrets: &Secrets<'_>,
) -> Outcome {
    let status = a.status.as_u16();
    ctx.status = status;
    if !(200..300).contains(&status) {
        relay_error(state, session, ctx, a, secrets).await;
        return Outcome::default();
    }
    let sse = is_event_stream(&a.up);
    let keep = a.keep;
    let complete = match a.translate.clone() {
        Translate::Raw { end, limit } => {
            let t: Box<dyn BodyTransform> = match (sse, end, limit) {
                (true, Some(end), _) => Box::new(CheckedSse::new(end)),
                (false, _, Some(limit)) => Box::new(Verbatim::bounded(limit)),
                _ => Box::new(Verbatim::raw()),
            };
            relay_as_is(state, session, ctx, a, t, sse, secrets).await;
            None
        }
        Translate::OpenAi {
            stream: true,
            strip_usage,
        } => {
            if !sse {
                // A whole answer where a stream was asked: replayed as the stream it stands for.
                let Some(body) = take_whole(state, session, ctx, a, STREAM_EVENT_LIMIT).await
                else {
                    return Outcome::default();
                };
                return json_as_stream(session, ctx, body, !strip_usage, keep, secrets).await;
            }
            let t = Box::new(OpenAiSse::new(strip_usage, keep));
            relay_as_is(state, session, ctx, a, t, sse, secrets).await
        }
        Translate::OpenAi { stream: false, .. } => {
            // Kept whole on the side for usage (and the cache when cacheable).
            let t = Box::new(Verbatim::kept(WHOLE_BODY_LIMIT));
            let body = relay_as_is(state, session, ctx, a, t, sse, secrets).await;
            if let Some(b) = &body {
                ctx.usage = pump::usage_of(b);
            }
            body.filter(|_| keep)
        }
        Translate::GeminiChat {
            stream: true,
            include_usage,
        } => {
            if !sse {
                let Some(body) = take_whole(state, session, ctx, a, STREAM_EVENT_LIMIT).await
                else {
                    return Outcome::default();
                };
                let translated = gemini::chat_response(&body, &response_context(ctx));
                return match translated {
                    Ok((b, _)) => {
                        json_as_stream(session, ctx, Bytes::from(b), include_usage, keep, secrets)
                            .await
                    }
                    Err(e) => {
                        untranslatable(session, ctx, &e.message).await;
                        Outcome::default()
                    }
                };
            }
            let translator = gemini::StreamTranslator::new(response_context(ctx), include_usage);
            let t = Box::new(GeminiToOpenAi::new(translator, keep));
            let mut h = HeaderMap::with_capacity(16);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            relay_stream(state, session, ctx, a, h, t).await
        }
        translate @ (Translate::GeminiChat { .. } | Translate::GeminiEmbeddings(_)) => {
            let Some(body) = take_whole(state, session, ctx, a, WHOLE_BODY_LIMIT).await else {
                return Outcome::default();
            };
            let translated = if let Translate::GeminiEmbeddings(ectx) = &translate {
                gemini::embeddings_response_with(&body, ectx)
            } else {
                gemini::chat_response(&body, &response_context(ctx))
            };
            match translated {
                Ok((b, u)) => {
                    ctx.usage = Some((u.prompt_tokens, u.completion_tokens));
                    let body = Bytes::from(b);
                    send_json(session, ctx, status, body.clone()).await;
                    keep.then_some(body)
                }
                Err(e) => {
                    untranslatable(session, ctx, &e.message).await;
                    None
                }
            }
        }
    };
    Outcome { complete }
}

/// An answer the Gemini translation could not read (garbage with a 200): a 502 whose message
/// holds no upstream text.
async fn untranslatable(session: &mut Session, ctx: &mut Ctx, why: &str) {
    let err = GatewayError::UpstreamFailed {
        message: format!("gemini answer could not be translated: {why}"),
    };
    send_error(session, ctx, &err).await;
}

/// A non-2xx answer: read whole (bounded), secrets redacted, then sent with its status — in
/// OpenAI's error shape when the client speaks OpenAI and the upstream Gemini.
async fn relay_error(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    secrets: &Secrets<'_>,
) {
    let status = a.status;
    let translate = a.translate.clone();
    let mut h = client_headers(&a.up, secrets, 12);
    let Some(body) = take_whole(state, session, ctx, a, ERROR_BODY_LIMIT).await else {
        return;
    };
    let body: Bytes = match secrets.redact(&body) {
        Cow::Borrowed(_) => body,
        Cow::Owned(b) => Bytes::from(b),
    };
    match translate {
        Translate::GeminiChat { .. } | Translate::GeminiEmbeddings(_) => {
            let openai = gemini::error_to_openai(status.as_u16(), &body);
            send_json(session, ctx, status.as_u16(), Bytes::from(openai)).await;
        }
        Translate::OpenAi { .. } | Translate::Raw { .. } => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            common_headers(&mut h, ctx);
            write_whole(session, ctx, response_header(status, h), body).await;
        }
    }
}

/// Writes a header and a whole body; `false` when the client is gone.
async fn write_whole(
    session: &mut Session,
    ctx: &mut Ctx,
    resp: pingora::http::ResponseHeader,
    body: Bytes,
) -> bool {
    if session
        .write_response_header(Box::new(resp), body.is_empty())
        .await
        .is_err()
    {
        ctx.error = Some("client_write_failed");
        return false;
    }
    if !body.is_empty() && session.write_response_body(Some(body), true).await.is_err() {
        ctx.error = Some("client_write_failed");
        return false;
    }
    true
}

/// A whole OpenAI completion sent as the SSE stream the client asked for; a body that is no
/// completion is a 502.
async fn json_as_stream(
    session: &mut Session,
    ctx: &mut Ctx,
    body: Bytes,
    include_usage: bool,
    keep: bool,
    secrets: &Secrets<'_>,
) -> Outcome {
    let body: Bytes = match secrets.redact_known(&body) {
        Cow::Borrowed(_) => body,
        Cow::Owned(b) => Bytes::from(b),
    };
    let Some(sse) = crate::cache::completion_to_sse(&body, include_usage) else {
        let err = GatewayError::UpstreamFailed {
            message: "the upstream answered a stream request with a body that is neither an event stream nor a chat completion".into(),
        };
        send_error(session, ctx, &err).await;
        return Outcome::default();
    };
    ctx.usage = pump::usage_of(&body);
    ctx.first_byte = ctx.upstream_done;
    send(
        session,
        ctx,
        200,
        "text/event-stream",
        sse,
        &[(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
    )
    .await;
    Outcome {
        complete: keep.then_some(body),
    }
}

fn response_context(ctx: &Ctx) -> gemini::ResponseContext {
    gemini::ResponseContext {
        id: format!("chatcmpl-{}", ctx.request_id),
        model: ctx.model.clone().unwrap_or_default(),
        created: unix_now(),
    }
}

/// Relays an answer with the upstream's own headers: small non-streamed answers read whole
/// first, the rest through the pump. Returns the complete answer the transform kept.
async fn relay_as_is(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    t: Box<dyn BodyTransform>,
    sse: bool,
    secrets: &Secrets<'_>,
) -> Option<Bytes> {
    let mut h = client_headers(&a.up, secrets, 12);
    let content_length =
        a.up.response_header()
            .and_then(|h| h.headers.get(header::CONTENT_LENGTH))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
    if let (Some(len), false) = (content_length, sse || t.is_stream()) {
        if len <= SMALL_BODY_LIMIT {
            // The common case: one write to the client, kept for usage and the cache without
            // a copy, and scanned for the gateway's keys (an upstream must not hand them out).
            let status = a.status;
            let body = take_whole(state, session, ctx, a, len).await?;
            let body: Bytes = match secrets.redact_known(&body) {
                Cow::Borrowed(_) => body,
                Cow::Owned(b) => Bytes::from(b),
            };
            ctx.first_byte = ctx.upstream_done;
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            common_headers(&mut h, ctx);
            return write_whole(session, ctx, response_header(status, h), body.clone())
                .await
                .then_some(body);
        }
    }
    let reframed = t.is_stream();
    let gz = if sse {
        stream_gzip(session, &mut h)
    } else {
        None
    };
    match content_length {
        // A stream's bytes may change (usage chunk dropped, error event added): chunked.
        Some(len) if !reframed && gz.is_none() => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        _ => {
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
    pump_answer(state, session, ctx, a, h, t, gz).await
}

/// Relays a translated stream under headers the gateway writes itself.
async fn relay_stream(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    mut h: HeaderMap,
    t: Box<dyn BodyTransform>,
) -> Option<Bytes> {
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let gz = stream_gzip(session, &mut h);
    pump_answer(state, session, ctx, a, h, t, gz).await
}

/// The per-event gzip encoder when the client accepts gzip, with its headers added to `h`.
fn stream_gzip(session: &mut Session, h: &mut HeaderMap) -> Option<StreamGzip> {
    let gz = StreamGzip::for_stream(session)?;
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    Some(gz)
}

/// Writes `h` (with the headers every answer carries), then pumps the answer's body
/// through `t`.
async fn pump_answer(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    a: Answer,
    mut h: HeaderMap,
    t: Box<dyn BodyTransform>,
    gz: Option<StreamGzip>,
) -> Option<Bytes> {
    common_headers(&mut h, ctx);
    let resp = response_header(a.status, h);
    let Answer {
        up,
        peer,
        addr,
        timeout,
        ..
    } = a;
    let upstream = Upstream {
        up,
        peer: &peer,
        addr,
        idle: timeout,
    };
    pump::pump(state, session, ctx, upstream, resp, t, gz).await
}
