//! The answer leg: decides how an upstream answer whose header has arrived reaches the
//! client — read whole (small answers, errors, translated non-streamed answers) or relayed
//! through the body pump ([`super::pump`]) with the transform its API pair needs — while
//! capturing token usage and, for cacheable requests, the complete answer to store.

use super::pump::{self, BodyTransform, Upstream, Verbatim, STREAM_EVENT_LIMIT, WHOLE_BODY_LIMIT};
use super::respond::{common_headers, response_header, send, send_error, send_json, StreamGzip};
use super::Ctx;
use crate::error::GatewayError;
use crate::redact::Secrets;
use crate::state::State;
use crate::translate::{AnswerContext, AnswerTranslation, Whole};
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

/// An upstream answer whose header has arrived.
pub struct Answer {
    /// The upstream session; its response header has arrived.
    pub up: HttpSession,
    pub status: StatusCode,
    pub peer: Arc<PeerInfo>,
    pub addr: SocketAddr,
    /// The way back, from the translation of this candidate's pair.
    pub answer: Box<dyn AnswerTranslation>,
    /// The client asked for an event stream.
    pub stream: bool,
    /// Per-attempt timeout: also the longest silence allowed between chunks.
    pub timeout: Duration,
    /// Keep a copy of the complete answer in the client's shape (cache, conversation state).
    pub keep: bool,
}

/// What the relay learnt from the answer.
#[derive(Default)]
pub struct Outcome {
    /// The complete answer in the client's non-streamed form, when `keep` and it completed.
    pub complete: Option<Bytes>,
    /// Responses API: the request's input items (a JSON array), when a translated answer
    /// completed.
    pub input_items: Option<Vec<u8>>,
    /// Where `complete`'s `output` array is, when known without parsing it.
    pub output_span: Option<std::ops::Range<usize>>,
}

/// Why a whole body could not be read.
enum WholeError {
    ClientGone,
    Failed(String),
}

/// Reads a whole upstream body up to `limit` bytes.
/// Pingora's timer (shared 10 ms ticks, armed only when the read is pending): tokio's would
/// register a timer per read and wake the runtime through its eventfd on every request.
pub async fn read_all(up: &mut HttpSession, limit: usize, idle: Duration) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let chunk = match pingora::time::timeout(idle, up.read_response_body()).await {
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
            if let Some(t) = &mut ctx.trace {
                t.answer_body(&body);
            }
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

/// Returns the upstream connection to the pool for the next request.
pub async fn release(state: &State, up: HttpSession, peer: &PeerInfo, addr: SocketAddr) {
    let http_peer = peer.http_peer(addr, Duration::from_secs(1));
    state
        .connector
        .release_http_session(up, &http_peer, Some(Duration::from_secs(60)))
        .await;
}

/// Sends the answer to the client through the answer side of its pair's translation: read
/// whole and translated, relayed under the upstream's headers, or streamed translated under
/// the gateway's own.
pub async fn deliver(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    mut a: Answer,
    secrets: &Secrets<'_>,
) -> Outcome {
    let status = a.status.as_u16();
    ctx.status = status;
    if !(200..300).contains(&status) {
        Box::pin(relay_error(state, session, ctx, a, secrets)).await;
        return Outcome::default();
    }
    let sse = is_event_stream(&a.up);
    let (keep, stream) = (a.keep, a.stream);
    let model = ctx.model.clone().unwrap_or_default();
    let request_id = ctx.request_id.to_string();
    let cx = AnswerContext {
        request_id: &request_id,
        model: &model,
        created: crate::translate::unix_now(),
    };
    if a.answer.reads_whole(sse, stream) {
        let limit = if stream {
            STREAM_EVENT_LIMIT
        } else {
            WHOLE_BODY_LIMIT
        };
        let mut answer = std::mem::replace(&mut a.answer, Box::new(Gone));
        let Some(body) = take_whole(state, session, ctx, a, limit).await else {
            return Outcome::default();
        };
        let whole = match answer.whole(body, &cx) {
            Ok(w) => w,
            Err(why) => {
                untranslatable(session, ctx, &why).await;
                return Outcome::default();
            }
        };
        // Scanned for the gateway's keys: an upstream must not hand them out.
        let mut output_span = answer.output_span();
        let body: Bytes = match secrets.redact_known(&whole.body) {
            Cow::Borrowed(_) => whole.body,
            Cow::Owned(b) => {
                output_span = None; // the bytes moved
                Bytes::from(b)
            }
        };
        ctx.usage = whole.usage;
        if stream {
            let Some(events) = answer.replay(&body) else {
                let err = GatewayError::UpstreamFailed {
                    message: "the upstream answered a stream request with a body that is neither an event stream nor an answer of this route".into(),
                };
                send_error(session, ctx, &err).await;
                return Outcome::default();
            };
            ctx.first_byte = ctx.upstream_done;
            send(
                session,
                ctx,
                200,
                answer.stream_content_type(),
                events,
                &[(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            )
            .await;
        } else {
            send_json(session, ctx, status, body.clone()).await;
        }
        return Outcome {
            complete: keep.then_some(body),
            input_items: answer.take_input_items(),
            output_span,
        };
    }
    let mut answer = std::mem::replace(&mut a.answer, Box::new(Gone));
    let t = answer.transform(&cx, sse, keep);
    let complete = if answer.native() {
        Box::pin(relay_as_is(state, session, ctx, a, t, sse, secrets)).await
    } else {
        let mut h = HeaderMap::with_capacity(16);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.stream_content_type()),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Box::pin(relay_stream(state, session, ctx, a, h, t)).await
    };
    let input_items = complete.as_ref().and_then(|_| answer.take_input_items());
    Outcome {
        complete: complete.filter(|_| keep),
        input_items,
        output_span: None,
    }
}

/// Stands in for an answer translation moved out of an [`Answer`] that is being read whole.
struct Gone;

impl AnswerTranslation for Gone {
    fn native(&self) -> bool {
        true
    }
    fn transform(&mut self, _: &AnswerContext<'_>, _: bool, _: bool) -> Box<dyn BodyTransform> {
        Box::new(Verbatim::raw())
    }
    fn whole(&mut self, body: Bytes, _: &AnswerContext<'_>) -> Result<Whole, String> {
        Ok(Whole { body, usage: None })
    }
    fn replay(&self, _: &[u8]) -> Option<Bytes> {
        None
    }
    fn error(&self, _: u16, _: &[u8]) -> Option<Bytes> {
        None
    }
}

/// An answer the translation could not read (garbage with a 200): a 502 whose message
/// holds no upstream text.
async fn untranslatable(session: &mut Session, ctx: &mut Ctx, why: &str) {
    let provider = ctx.provider.map(|p| p.name()).unwrap_or("upstream");
    let err = GatewayError::UpstreamFailed {
        message: format!("{provider} answer could not be translated: {why}"),
    };
    send_error(session, ctx, &err).await;
}

/// A non-2xx answer: read whole (bounded), secrets redacted, then sent with its status — in
/// OpenAI's error shape when the client speaks OpenAI and the upstream Gemini.
async fn relay_error(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    mut a: Answer,
    secrets: &Secrets<'_>,
) {
    let status = a.status;
    let answer = std::mem::replace(&mut a.answer, Box::new(Gone));
    let mut h = client_headers(&a.up, secrets, 12);
    let Some(body) = take_whole(state, session, ctx, a, ERROR_BODY_LIMIT).await else {
        return;
    };
    let body: Bytes = match secrets.redact(&body) {
        Cow::Borrowed(_) => body,
        Cow::Owned(b) => Bytes::from(b),
    };
    match answer.error(status.as_u16(), &body) {
        Some(translated) => send_json(session, ctx, status.as_u16(), translated).await,
        None => {
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
            // Tokens for the access log, the metrics and the TPM settle: `usage` comes last
            // in OpenAI's answers, so only its object is parsed.
            if ctx.usage.is_none() {
                ctx.usage = super::pump::usage_of(&body);
            }
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
