//! The answer leg: relays an upstream answer to the client as it arrives — unchanged,
//! or translated from Gemini — while capturing token usage and, for cacheable requests, the
//! complete answer to store.

use super::respond::{common_headers, response_header, send_error, send_json, StreamGzip};
use super::Ctx;
use crate::error::GatewayError;
use crate::logging::targets;
use crate::providers::gemini;
use crate::sse::SseParser;
use crate::state::State;
use crate::upstream::PeerInfo;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whole non-streamed answers that must be translated or stored are bounded here.
const WHOLE_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How to turn the upstream answer into the client's.
#[derive(Debug, Clone, PartialEq)]
pub enum Translate {
    /// OpenAI chat or embeddings: relayed as is; usage read on the way.
    OpenAi {
        stream: bool,
        strip_usage: bool,
    },
    /// Passthrough routes: relayed as is.
    Raw,
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

#[derive(Deserialize)]
struct UsageOnly {
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Reads `usage` from an OpenAI answer or chunk.
fn usage_of(json: &[u8]) -> Option<(u64, u64)> {
    usage_at_end(json).or_else(|| {
        let u: UsageOnly = serde_json::from_slice(json).ok()?;
        u.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    })
}

/// Parses only the value of the last top-level-looking `"usage":` key (OpenAI writes it after
/// the choices), so a large answer is not parsed twice just to count its tokens.
fn usage_at_end(json: &[u8]) -> Option<(u64, u64)> {
    const KEY: &[u8] = b"\"usage\"";
    let pos = json.windows(KEY.len()).rposition(|w| w == KEY)?;
    if pos > 0 && json[pos - 1] == b'\\' {
        return None;
    }
    let rest = &json[pos + KEY.len()..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(&rest[colon + 1..]);
    let fields = <UsageFields as Deserialize>::deserialize(&mut de).ok()?;
    Some((fields.prompt_tokens, fields.completion_tokens))
}

/// Reads a whole upstream body up to `limit` bytes.
pub async fn read_all(up: &mut HttpSession, limit: usize, idle: Duration) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    loop {
        let chunk = match tokio::time::timeout(idle, up.read_response_body()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no data within {} ms", idle.as_millis())),
        };
        let Some(chunk) = chunk else { break };
        let have = first.as_ref().map_or(0, |b| b.len()) + buf.as_ref().map_or(0, |b| b.len());
        if have + chunk.len() > limit {
            return Err(format!("upstream body larger than {limit} bytes"));
        }
        match (&first, &mut buf) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(f.len() + chunk.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(buf.map(BytesMut::freeze).or(first).unwrap_or_default())
}

/// Reads a whole answer (up to `limit` bytes) and returns the connection to the pool.
async fn take_whole(
    state: &State,
    ctx: &mut Ctx,
    mut a: Answer,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let body =
        read_all(&mut a.up, limit, a.timeout)
            .await
            .map_err(|e| GatewayError::UpstreamFailed {
                message: format!("{}: reading the answer failed: {e}", a.peer.provider.name()),
            })?;
    ctx.upstream_done = Some(Instant::now());
    release(state, a.up, &a.peer, a.addr).await;
    Ok(body)
}

/// Headers of an upstream answer that must not be copied to the client.
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
    ]
    .contains(name)
        || matches!(
            name.as_str(),
            "keep-alive" | "proxy-connection" | "x-request-id"
        )
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
    mut a: Answer,
) -> Outcome {
    let status = a.status.as_u16();
    ctx.status = status;
    let ok = (200..300).contains(&status);
    match a.translate.clone() {
        Translate::Raw => relay(state, session, ctx, a, None).await,
        Translate::OpenAi {
            stream: true,
            strip_usage,
        } if ok => {
            let scan = StreamScan {
                parser: SseParser::new(),
                strip_usage,
                assembled: a.keep.then(crate::cache::StreamAssembler::new),
            };
            relay(state, session, ctx, a, Some(scan)).await
        }
        Translate::OpenAi { .. } => {
            // Non-streamed: relayed chunk by chunk, kept whole on the side for usage and cache.
            let keep = a.keep && ok;
            a.keep = true;
            let mut out = relay(state, session, ctx, a, None).await;
            if let Some(body) = &out.complete {
                if ok {
                    ctx.usage = usage_of(body);
                }
            }
            if !keep {
                out.complete = None;
            }
            out
        }
        Translate::GeminiChat {
            stream: true,
            include_usage,
        } if ok => {
            let tctx = response_context(ctx);
            let translator = gemini::StreamTranslator::new(tctx, include_usage);
            relay_gemini_stream(state, session, ctx, a, translator).await
        }
        translate @ (Translate::GeminiChat { .. } | Translate::GeminiEmbeddings(_)) => {
            let keep = a.keep;
            let body = match take_whole(state, ctx, a, WHOLE_BODY_LIMIT).await {
                Ok(b) => b,
                Err(err) => {
                    send_error(session, ctx, &err).await;
                    return Outcome::default();
                }
            };
            let translated = if !ok {
                Ok(Bytes::from(gemini::error_to_openai(status, &body)))
            } else if let Translate::GeminiEmbeddings(ectx) = &translate {
                gemini::embeddings_response_with(&body, ectx).map(|(b, u)| {
                    ctx.usage = Some((u.prompt_tokens, u.completion_tokens));
                    Bytes::from(b)
                })
            } else {
                gemini::chat_response(&body, &response_context(ctx)).map(|(b, u)| {
                    ctx.usage = Some((u.prompt_tokens, u.completion_tokens));
                    Bytes::from(b)
                })
            };
            match translated {
                Ok(body) => {
                    send_json(session, ctx, status, body.clone()).await;
                    Outcome {
                        complete: (ok && keep).then_some(body),
                    }
                }
                Err(e) => {
                    let err = GatewayError::UpstreamFailed {
                        message: format!("gemini answer could not be translated: {}", e.message),
                    };
                    send_error(session, ctx, &err).await;
                    Outcome::default()
                }
            }
        }
    }
}

fn response_context(ctx: &Ctx) -> gemini::ResponseContext {
    gemini::ResponseContext {
        id: format!("chatcmpl-{}", ctx.request_id),
        model: ctx.model.clone().unwrap_or_default(),
        created: unix_now(),
    }
}

/// What happened while waiting for the next piece of the upstream body.
enum BodyEvent {
    Chunk(Bytes),
    End,
    Failed(String),
    ClientGone,
}

async fn next_body(up: &mut HttpSession, session: &mut Session, idle: Duration) -> BodyEvent {
    tokio::select! {
        r = tokio::time::timeout(idle, up.read_response_body()) => match r {
            Ok(Ok(Some(chunk))) => BodyEvent::Chunk(chunk),
            Ok(Ok(None)) => BodyEvent::End,
            Ok(Err(e)) => BodyEvent::Failed(e.to_string()),
            Err(_) => BodyEvent::Failed(format!("no data from upstream for {} ms", idle.as_millis())),
        },
        _ = super::relay::client_gone(session) => BodyEvent::ClientGone,
    }
}

/// Watches an OpenAI SSE stream event by event: reads usage, drops the usage chunk the
/// gateway asked for on the client's behalf, and assembles the answer for the cache.
struct StreamScan {
    parser: SseParser,
    strip_usage: bool,
    assembled: Option<crate::cache::StreamAssembler>,
}

impl StreamScan {
    /// Returns what to send to the client for this chunk.
    fn process(&mut self, chunk: Bytes, ctx: &mut Ctx) -> Bytes {
        self.parser.push(&chunk);
        if let Some(asm) = &mut self.assembled {
            asm.push(&chunk);
        }
        if !self.strip_usage {
            while let Some(event) = self.parser.next_event() {
                if let Some(u) = chunk_usage(&event.data) {
                    ctx.usage = Some(u);
                }
            }
            return chunk;
        }
        // Re-framed event by event so that the extra usage chunk can be left out.
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        while let Some(event) = self.parser.next_event() {
            if let Some(u) = chunk_usage(&event.data) {
                ctx.usage = Some(u);
                if is_usage_only(&event.data) {
                    continue;
                }
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&event.data);
            out.extend_from_slice(b"\n\n");
        }
        out.freeze()
    }
}

fn chunk_usage(data: &[u8]) -> Option<(u64, u64)> {
    // Cheap pre-check: most chunks carry no usage.
    if memchr_usage(data) {
        usage_of(data)
    } else {
        None
    }
}

fn memchr_usage(data: &[u8]) -> bool {
    data.windows(8).any(|w| w == b"\"usage\":")
}

fn is_usage_only(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Choices {
        #[serde(default)]
        choices: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Choices>(data)
        .map(|c| c.choices.is_empty())
        .unwrap_or(false)
}

/// Relays the upstream answer chunk by chunk, unchanged unless `scan` re-frames it.
async fn relay(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    mut a: Answer,
    mut scan: Option<StreamScan>,
) -> Outcome {
    // The client's header is built from the upstream's, shared (values are reference-counted),
    // never cloned as a whole.
    let Some(up_header) = a.up.response_header() else {
        return Outcome::default();
    };
    let mut h = HeaderMap::with_capacity(up_header.headers.len() + 12);
    for (name, value) in up_header.headers.iter() {
        if !is_hop_or_private(name) {
            h.append(name.clone(), value.clone());
        }
    }
    let sse = up_header
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let content_length = up_header.headers.get(header::CONTENT_LENGTH).cloned();
    let reframed = scan.as_ref().is_some_and(|s| s.strip_usage);
    let mut gz = if sse {
        StreamGzip::for_stream(session)
    } else {
        None
    };
    if gz.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    // A small, non-streamed answer (the common case) is read whole first: one write to the
    // client, no per-chunk bookkeeping, and kept for usage and the cache without a copy.
    let small = content_length
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n <= 1024 * 1024);
    match content_length {
        Some(len) if !reframed && gz.is_none() => {
            h.insert(header::CONTENT_LENGTH, len);
        }
        _ => {
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
    common_headers(&mut h, ctx);
    let resp = response_header(a.status, h);
    if let (Some(len), false, None) = (small, sse, &scan) {
        let keep = a.keep;
        let body = match take_whole(state, ctx, a, len).await {
            Ok(b) => b,
            Err(err) => {
                send_error(session, ctx, &err).await;
                return Outcome::default();
            }
        };
        ctx.first_byte = ctx.upstream_done;
        if session
            .write_response_header(Box::new(resp), body.is_empty())
            .await
            .is_err()
        {
            ctx.error = Some("client_write_failed");
            return Outcome::default();
        }
        if !body.is_empty()
            && session
                .write_response_body(Some(body.clone()), true)
                .await
                .is_err()
        {
            ctx.error = Some("client_write_failed");
            return Outcome::default();
        }
        return Outcome {
            complete: keep.then_some(body),
        };
    }
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        ctx.error = Some("client_write_failed");
        return Outcome::default();
    }
    let is_stream =
        sse || scan.is_some() || matches!(a.translate, Translate::OpenAi { stream: true, .. });
    let mut kept: Option<BytesMut> = None;
    loop {
        match next_body(&mut a.up, session, a.timeout).await {
            BodyEvent::Chunk(chunk) => {
                if ctx.first_byte.is_none() {
                    ctx.first_byte = Some(Instant::now());
                }
                if a.keep && scan.is_none() {
                    let buf = kept.get_or_insert_with(|| BytesMut::with_capacity(chunk.len() * 2));
                    if buf.len() + chunk.len() <= WHOLE_BODY_LIMIT {
                        buf.extend_from_slice(&chunk);
                    }
                }
                let mut out = match &mut scan {
                    Some(s) => s.process(chunk, ctx),
                    None => chunk,
                };
                if let Some(gz) = &mut gz {
                    out = gz.encode(&out);
                }
                if !out.is_empty() && session.write_response_body(Some(out), false).await.is_err() {
                    ctx.error = Some("client_write_failed");
                    return Outcome::default();
                }
            }
            BodyEvent::End => {
                ctx.upstream_done = Some(Instant::now());
                let tail = gz.take().map(StreamGzip::finish);
                let _ = session.write_response_body(tail, true).await;
                release(state, a.up, &a.peer, a.addr).await;
                let complete = match scan {
                    Some(s) => s.assembled.and_then(|asm| asm.finish()),
                    None => kept.map(BytesMut::freeze),
                };
                return Outcome { complete };
            }
            BodyEvent::Failed(e) => {
                log::warn!(target: targets::UPSTREAM, "request {}: upstream body failed after the header was sent: {e}", ctx.request_id);
                ctx.error = Some("upstream_body_failed");
                if is_stream {
                    // The error event, then a clean end: SDKs surface it as an API error.
                    let event = sse_error_event(&format!("upstream stream failed: {e}"));
                    let last = finish(gz.take(), event.to_vec());
                    let _ = session.write_response_body(Some(last), true).await;
                }
                // A non-stream body just stops short: the client sees it incomplete.
                session.set_keepalive(None);
                return Outcome::default();
            }
            BodyEvent::ClientGone => {
                ctx.error = Some("client_disconnected");
                return Outcome::default();
            }
        }
    }
}

/// Relays a Gemini SSE stream translated to OpenAI chunks, event by event.
async fn relay_gemini_stream(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    mut a: Answer,
    mut translator: gemini::StreamTranslator,
) -> Outcome {
    let mut h = HeaderMap::with_capacity(16);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let mut gz = StreamGzip::for_stream(session);
    if gz.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    common_headers(&mut h, ctx);
    let resp = response_header(a.status, h);
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        ctx.error = Some("client_write_failed");
        return Outcome::default();
    }
    let mut assembled = a.keep.then(crate::cache::StreamAssembler::new);
    let mut out = Vec::with_capacity(4096);
    loop {
        match next_body(&mut a.up, session, a.timeout).await {
            BodyEvent::Chunk(chunk) => {
                if ctx.first_byte.is_none() {
                    ctx.first_byte = Some(Instant::now());
                }
                translator.push(&chunk, &mut out);
                if out.is_empty() {
                    continue;
                }
                if let Some(asm) = &mut assembled {
                    asm.push(&out);
                }
                let piece = encode(&mut gz, std::mem::take(&mut out));
                if session
                    .write_response_body(Some(piece), false)
                    .await
                    .is_err()
                {
                    ctx.error = Some("client_write_failed");
                    return Outcome::default();
                }
            }
            BodyEvent::End => {
                ctx.upstream_done = Some(Instant::now());
                let complete = translator.finish(&mut out);
                if let Some(u) = translator.usage() {
                    ctx.usage = Some((u.prompt_tokens, u.completion_tokens));
                }
                if let Some(asm) = &mut assembled {
                    asm.push(&out);
                }
                let piece = finish(gz.take(), std::mem::take(&mut out));
                let _ = session.write_response_body(Some(piece), true).await;
                if !complete {
                    ctx.error = Some("upstream_stream_incomplete");
                    session.set_keepalive(None);
                    return Outcome::default();
                }
                release(state, a.up, &a.peer, a.addr).await;
                return Outcome {
                    complete: assembled.and_then(|asm| asm.finish()),
                };
            }
            BodyEvent::Failed(e) => {
                ctx.error = Some("upstream_body_failed");
                translator.fail(&format!("upstream stream failed: {e}"), &mut out);
                let piece = finish(gz.take(), std::mem::take(&mut out));
                let _ = session.write_response_body(Some(piece), true).await;
                session.set_keepalive(None);
                return Outcome::default();
            }
            BodyEvent::ClientGone => {
                ctx.error = Some("client_disconnected");
                return Outcome::default();
            }
        }
    }
}

/// Compresses a piece of a stream when the client asked for gzip.
fn encode(gz: &mut Option<StreamGzip>, out: Vec<u8>) -> Bytes {
    match gz {
        Some(gz) => gz.encode(&out),
        None => Bytes::from(out),
    }
}

/// The last piece of a stream, with the gzip trailer when compressing.
fn finish(gz: Option<StreamGzip>, out: Vec<u8>) -> Bytes {
    match gz {
        Some(mut gz) => {
            let mut all = BytesMut::from(&gz.encode(&out)[..]);
            all.extend_from_slice(&gz.finish());
            all.freeze()
        }
        None => Bytes::from(out),
    }
}

/// An OpenAI-style error event for a stream that cannot finish; never followed by `[DONE]`.
pub fn sse_error_event(message: &str) -> Bytes {
    let body = crate::error::openai_error_body(message, "api_error", None, Some("upstream_error"));
    let mut out = BytesMut::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_usage_in_chunks() {
        let chunk = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        assert_eq!(chunk_usage(chunk), Some((3, 4)));
        assert!(is_usage_only(chunk));
        let whole = br#"{"id":"x","choices":[{"message":{"content":"the \"usage\": trick"}}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11},"system_fingerprint":"fp"}"#;
        assert_eq!(usage_of(whole), Some((5, 6)));
        assert_eq!(usage_at_end(whole), Some((5, 6)));
        let content = br#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        assert_eq!(chunk_usage(content), None);
        assert!(!is_usage_only(content));
    }
}
