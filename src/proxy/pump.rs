//! The one body pump: every answer that is relayed while it arrives goes through [`pump`],
//! whatever translates it. A [`BodyTransform`] turns upstream chunks into the client's bytes;
//! the pump owns everything else — the idle timeout, the client hanging up, the drain
//! deadline, gzip, and how a body that cannot finish ends (an error event in the client's
//! dialect and a clean end for streams, a closed connection otherwise).
//!
//! Every transform bounds what it holds: an SSE event may be at most [`STREAM_EVENT_LIMIT`]
//! bytes, a whole answer kept for usage or the cache at most [`WHOLE_BODY_LIMIT`], what a
//! stream translator keeps until the end at most [`STREAM_HELD_LIMIT`].

use super::respond::StreamGzip;
use super::Ctx;
use crate::logging::targets;
use crate::sse::SseParser;
use crate::state::State;
use crate::upstream::PeerInfo;
use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The longest single SSE event (or unterminated line) held while waiting for its end. Real
/// events are a few KiB; a 1 MiB tool-call delta still fits with room to spare.
pub const STREAM_EVENT_LIMIT: usize = 8 * 1024 * 1024;
/// The largest non-streamed answer the gateway reads whole (to translate, count usage or
/// store it).
pub const WHOLE_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// The most a stream translator keeps of an answer until its end (a Responses stream's final
/// object, a Gemini client's function calls). The longest real answers (65k output tokens,
/// thoughts included) are well under 1 MiB; what is held is written out once or twice more at
/// the end, so the bound is a quarter of a whole answer's.
pub const STREAM_HELD_LIMIT: usize = 16 * 1024 * 1024;

/// Turns an upstream body, chunk by chunk, into what the client receives.
pub trait BodyTransform: Send {
    /// The client's bytes for one upstream chunk (may be empty). `Err` names the bound the
    /// upstream broke; the pump then ends the answer.
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, String>;
    /// The upstream ended cleanly: the last bytes, and whether the answer was complete. An
    /// incomplete stream's last bytes are its error event.
    fn finish(&mut self) -> (Bytes, bool);
    /// The answer must end early: the error event in the client's dialect, or nothing when
    /// the body is not an event stream (the connection is then closed to show the cut).
    fn fail(&mut self, message: &str) -> Bytes;
    /// Whether the client receives an event stream.
    fn is_stream(&self) -> bool;
    /// (prompt, completion) tokens, once known.
    fn usage(&self) -> Option<(u64, u64)>;
    /// The complete answer in OpenAI's non-streamed form, for the cache.
    fn into_complete(self: Box<Self>) -> Option<Bytes>;
}

/// An upstream body still being read, and where its connection goes back to.
pub struct Upstream<'a> {
    pub up: HttpSession,
    pub peer: &'a PeerInfo,
    pub addr: SocketAddr,
    /// The longest silence allowed between chunks.
    pub idle: Duration,
}

/// What happened while waiting for the next piece of the upstream body.
enum BodyEvent {
    Chunk(Bytes),
    End,
    Failed(String),
    ClientGone,
    Stopping,
}

async fn next_body(
    up: &mut HttpSession,
    session: &mut Session,
    idle: Duration,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> BodyEvent {
    tokio::select! {
        r = pingora::time::timeout(idle, up.read_response_body()) => match r {
            Ok(Ok(Some(chunk))) => BodyEvent::Chunk(chunk),
            Ok(Ok(None)) => BodyEvent::End,
            Ok(Err(e)) => BodyEvent::Failed(e.to_string()),
            Err(_) => BodyEvent::Failed(format!("no data from upstream for {} ms", idle.as_millis())),
        },
        _ = super::relay::client_gone(session) => BodyEvent::ClientGone,
        _ = stopping.wait_for(|s| *s) => BodyEvent::Stopping,
    }
}

/// Writes `header`, then relays the body through `t` until it ends, fails or the client
/// leaves. Returns the complete answer when the transform kept one and the body completed.
pub async fn pump(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    mut upstream: Upstream<'_>,
    header: ResponseHeader,
    mut t: Box<dyn BodyTransform>,
    mut gz: Option<StreamGzip>,
) -> Option<Bytes> {
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        ctx.error = Some("client_write_failed");
        return None;
    }
    let mut stopping = state.stopping.subscribe();
    loop {
        let event = next_body(&mut upstream.up, session, upstream.idle, &mut stopping).await;
        let failure = match event {
            BodyEvent::Chunk(chunk) => {
                if ctx.first_byte.is_none() {
                    ctx.first_byte = Some(Instant::now());
                }
                match t.push(chunk) {
                    Ok(out) => {
                        let out = match &mut gz {
                            Some(gz) if !out.is_empty() => gz.encode(&out),
                            _ => out,
                        };
                        if !out.is_empty()
                            && session.write_response_body(Some(out), false).await.is_err()
                        {
                            ctx.error = Some("client_write_failed");
                            return None;
                        }
                        continue;
                    }
                    Err(bound) => ("upstream_body_too_large", bound),
                }
            }
            BodyEvent::End => {
                ctx.upstream_done = Some(Instant::now());
                let (last, complete) = t.finish();
                if let Some(u) = t.usage() {
                    ctx.usage = Some(u);
                }
                let _ = session
                    .write_response_body(Some(finish_gzip(gz.take(), last)), true)
                    .await;
                if !complete {
                    // The chunked body ended cleanly after the error event: the client's
                    // connection stays usable; the upstream's is not trusted again.
                    ctx.error = Some("upstream_stream_incomplete");
                    return None;
                }
                super::deliver::release(state, upstream.up, upstream.peer, upstream.addr).await;
                return t.into_complete();
            }
            BodyEvent::Failed(e) => (
                "upstream_body_failed",
                format!("upstream stream failed: {e}"),
            ),
            BodyEvent::ClientGone => {
                ctx.error = Some("client_disconnected");
                return None;
            }
            BodyEvent::Stopping => {
                // Draining: nothing more may be sent on this connection after the event.
                session.set_keepalive(None);
                (
                    "shutting_down",
                    "the gateway is shutting down; the answer was ended before it completed".into(),
                )
            }
        };
        let (label, message) = failure;
        log::warn!(target: targets::UPSTREAM, "request {}: answer ended early after the header was sent: {message}", ctx.request_id);
        ctx.error = Some(label);
        if let Some(u) = t.usage() {
            ctx.usage = Some(u);
        }
        if t.is_stream() {
            let event = t.fail(&message);
            let _ = session
                .write_response_body(Some(finish_gzip(gz.take(), event)), true)
                .await;
        } else {
            // A non-stream body just stops short: the connection is dropped without the end
            // of body, so the client sees it incomplete (see `Ctx::abort`).
            session.set_keepalive(None);
            ctx.abort = true;
        }
        return None;
    }
}

/// The last piece of a stream, with the gzip trailer when compressing.
pub fn finish_gzip(gz: Option<StreamGzip>, out: Bytes) -> Bytes {
    match gz {
        Some(mut gz) => {
            let mut all = BytesMut::from(&gz.encode(&out)[..]);
            all.extend_from_slice(&gz.finish());
            all.freeze()
        }
        None => out,
    }
}

// ---------------------------------------------------------------------------------------------
// Transforms

/// A non-event-stream body relayed unchanged, optionally kept whole (bounded) for usage and
/// the cache.
pub struct Verbatim {
    kept: Option<BytesMut>,
    /// The most bytes relayed before the answer is ended as too large (`None`: unbounded,
    /// e.g. file downloads on passthrough routes, which hold nothing).
    limit: Option<usize>,
    seen: usize,
    usage: Option<(u64, u64)>,
}

impl Verbatim {
    /// Relayed as is, nothing kept.
    pub fn raw() -> Self {
        Verbatim {
            kept: None,
            limit: None,
            seen: 0,
            usage: None,
        }
    }

    /// Relayed as is, nothing kept, cut after `limit` bytes.
    pub fn bounded(limit: usize) -> Self {
        Verbatim {
            kept: None,
            limit: Some(limit),
            seen: 0,
            usage: None,
        }
    }

    /// Relayed as is and kept whole, up to `limit` bytes.
    pub fn kept(limit: usize) -> Self {
        Verbatim {
            kept: Some(BytesMut::new()),
            limit: Some(limit),
            seen: 0,
            usage: None,
        }
    }
}

impl BodyTransform for Verbatim {
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        self.seen += chunk.len();
        if let Some(limit) = self.limit {
            if self.seen > limit {
                return Err(format!("upstream answer larger than {limit} bytes"));
            }
        }
        if let Some(buf) = &mut self.kept {
            buf.extend_from_slice(&chunk);
        }
        Ok(chunk)
    }

    fn finish(&mut self) -> (Bytes, bool) {
        if let Some(buf) = &self.kept {
            self.usage = usage_of(buf);
        }
        (Bytes::new(), true)
    }

    fn fail(&mut self, _message: &str) -> Bytes {
        Bytes::new()
    }

    fn is_stream(&self) -> bool {
        false
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.usage
    }

    fn into_complete(self: Box<Self>) -> Option<Bytes> {
        self.kept.map(BytesMut::freeze)
    }
}

/// How a passthrough event stream shows it finished, so that a cut one can be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// OpenAI Chat/legacy Completions: a `data: [DONE]` event.
    Done,
    /// OpenAI Responses: a terminal `response.completed|incomplete|failed` or `error` event.
    ResponsesTerminal,
    /// Gemini `streamGenerateContent`: a chunk with a `finishReason`.
    GeminiFinish,
}

// Searchers built once (`memmem::find` builds one per call, and these run per event).
static COMPLETED: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"response.completed\""));
static INCOMPLETE: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"response.incomplete\""));
static FAILED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"response.failed\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"error\""));
static FINISH_REASON: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"finishReason\""));
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\":"));

impl StreamEnd {
    fn is_end(self, data: &[u8]) -> bool {
        match self {
            StreamEnd::Done => data == b"[DONE]",
            StreamEnd::ResponsesTerminal => {
                COMPLETED.find(data).is_some()
                    || INCOMPLETE.find(data).is_some()
                    || FAILED.find(data).is_some()
                    || ERROR.find(data).is_some()
            }
            StreamEnd::GeminiFinish => FINISH_REASON.find(data).is_some(),
        }
    }

    /// The error event that ends a cut stream, in this API's dialect.
    pub fn error_event(self, message: &str) -> Bytes {
        match self {
            StreamEnd::Done => sse_error_event(message),
            StreamEnd::ResponsesTerminal => {
                let body = serde_json::json!({
                    "type": "error",
                    "code": "upstream_error",
                    "message": message,
                    "param": null,
                    "sequence_number": 0,
                });
                event_bytes(Some("error"), body.to_string().as_bytes())
            }
            StreamEnd::GeminiFinish => {
                let body = serde_json::json!({
                    "error": {"code": 502, "message": message, "status": "UNAVAILABLE"}
                });
                event_bytes(None, body.to_string().as_bytes())
            }
        }
    }
}

fn event_bytes(event: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// An OpenAI-style error event for a stream that cannot finish; never followed by `[DONE]`.
pub fn sse_error_event(message: &str) -> Bytes {
    let body = crate::error::openai_error_body(message, "api_error", None, Some("upstream_error"));
    event_bytes(None, &body)
}

/// An event the gateway adds after bytes it relayed unchanged: led by a blank line, so that
/// whatever partial line or event the upstream left open is closed first and the client's
/// parser sees the event on its own (extra blank lines dispatch nothing).
fn after_relayed(event: Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(event.len() + 2);
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(&event);
    out.freeze()
}

fn event_too_large() -> String {
    format!("upstream sent an event stream line longer than {STREAM_EVENT_LIMIT} bytes")
}

/// A passthrough event stream relayed unchanged, watched for its end marker.
pub struct CheckedSse {
    parser: SseParser,
    end: StreamEnd,
    ended: bool,
    /// Keep the final response object of a Responses stream (cache, conversation state).
    keep: bool,
    usage: Option<(u64, u64)>,
    complete: Option<Bytes>,
}

impl CheckedSse {
    pub fn new(end: StreamEnd) -> Self {
        CheckedSse {
            parser: SseParser::new(),
            end,
            ended: false,
            keep: false,
            usage: None,
            complete: None,
        }
    }

    /// Also keeps the final `response` a Responses stream's terminal event carries.
    pub fn keeping(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// The end event: a Responses stream's terminal event carries the whole response, with
    /// its usage (parsed once per stream).
    fn ended_with(&mut self, data: &[u8]) {
        self.ended = true;
        if self.end != StreamEnd::ResponsesTerminal {
            return;
        }
        #[derive(Deserialize)]
        struct Terminal {
            response: Option<serde_json::Value>,
        }
        let Ok(Terminal {
            response: Some(response),
        }) = serde_json::from_slice::<Terminal>(data)
        else {
            return;
        };
        self.usage = response
            .get("usage")
            .and_then(|u| serde_json::from_value::<UsageFields>(u.clone()).ok())
            .map(|u| (u.prompt_tokens, u.completion_tokens));
        if self.keep && COMPLETED.find(data).is_some() {
            self.complete = serde_json::to_vec(&response).ok().map(Bytes::from);
        }
    }
}

impl BodyTransform for CheckedSse {
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        if self.ended {
            return Ok(chunk);
        }
        self.parser.push(&chunk);
        while let Some(ev) = self.parser.next_event() {
            if self.end.is_end(&ev.data) {
                self.ended_with(&ev.data);
                break;
            }
        }
        if self.parser.pending_bytes() > STREAM_EVENT_LIMIT {
            return Err(event_too_large());
        }
        Ok(chunk)
    }

    fn finish(&mut self) -> (Bytes, bool) {
        if !self.ended {
            while let Some(ev) = self.parser.flush() {
                if self.end.is_end(&ev.data) {
                    self.ended_with(&ev.data);
                }
            }
        }
        if self.ended {
            (Bytes::new(), true)
        } else {
            let msg = "upstream stream ended before the response was complete";
            (after_relayed(self.end.error_event(msg)), false)
        }
    }

    fn fail(&mut self, message: &str) -> Bytes {
        after_relayed(self.end.error_event(message))
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.usage
    }

    fn into_complete(self: Box<Self>) -> Option<Bytes> {
        self.complete
    }
}

/// An OpenAI chat stream, watched event by event: reads usage, drops the usage chunk the
/// gateway asked for on the client's behalf, assembles the answer for the cache, and tells a
/// stream that ended without `[DONE]` from a complete one.
pub struct OpenAiSse {
    parser: SseParser,
    strip_usage: bool,
    assembled: Option<crate::cache::StreamAssembler>,
    done: bool,
    usage: Option<(u64, u64)>,
}

impl OpenAiSse {
    pub fn new(strip_usage: bool, keep: bool) -> Self {
        OpenAiSse {
            parser: SseParser::new(),
            strip_usage,
            assembled: keep.then(crate::cache::StreamAssembler::new),
            done: false,
            usage: None,
        }
    }

    fn event(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            self.done = true;
            return true;
        }
        match chunk_usage(data) {
            Some(u) => {
                self.usage = Some(u);
                !(self.strip_usage && is_usage_only(data))
            }
            None => true,
        }
    }
}

impl BodyTransform for OpenAiSse {
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        self.parser.push(&chunk);
        if let Some(asm) = &mut self.assembled {
            asm.push(&chunk);
        }
        if !self.strip_usage {
            while let Some(event) = self.parser.next_event() {
                self.event(&event.data);
            }
            if self.parser.pending_bytes() > STREAM_EVENT_LIMIT {
                return Err(event_too_large());
            }
            return Ok(chunk);
        }
        // Re-framed event by event so that the extra usage chunk can be left out.
        let mut out = BytesMut::with_capacity(chunk.len() + 16);
        while let Some(event) = self.parser.next_event() {
            if self.event(&event.data) {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&event.data);
                out.extend_from_slice(b"\n\n");
            }
        }
        if self.parser.pending_bytes() > STREAM_EVENT_LIMIT {
            return Err(event_too_large());
        }
        Ok(out.freeze())
    }

    fn finish(&mut self) -> (Bytes, bool) {
        let mut out = BytesMut::new();
        while let Some(event) = self.parser.flush() {
            if self.event(&event.data) && self.strip_usage && !event.data.is_empty() {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&event.data);
                out.extend_from_slice(b"\n\n");
            }
        }
        if self.done {
            (out.freeze(), true)
        } else {
            let event = sse_error_event("upstream stream ended before the response was complete");
            if self.strip_usage {
                out.extend_from_slice(&event);
            } else {
                out.extend_from_slice(&after_relayed(event));
            }
            (out.freeze(), false)
        }
    }

    fn fail(&mut self, message: &str) -> Bytes {
        if self.strip_usage {
            sse_error_event(message)
        } else {
            after_relayed(sse_error_event(message))
        }
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.usage
    }

    fn into_complete(self: Box<Self>) -> Option<Bytes> {
        self.assembled.and_then(|asm| asm.finish())
    }
}

/// A stream translator from one API's event stream to another's: what a translating pair
/// plugs into the pump. Bytes in, the client's bytes appended to `out`.
pub trait StreamTranslate: Send {
    /// Upstream bytes, split anywhere.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream ended: the last events; `false` when the answer was incomplete (the
    /// client's error event has then been written).
    fn finish(&mut self, out: &mut Vec<u8>) -> bool;
    /// The answer must end early: the error event in the client's dialect.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);
    /// (input, output) tokens, once known.
    fn usage(&self) -> Option<(u64, u64)>;
    /// Upstream bytes held waiting for the end of an event.
    fn pending_bytes(&self) -> usize;
    /// What the translator keeps of the answer so far (a Responses stream's final object, a
    /// Gemini client's function calls), held until the end ([`STREAM_HELD_LIMIT`]).
    fn held_bytes(&self) -> usize {
        0
    }
    /// The complete answer in the client's non-streamed form when the translator builds it
    /// itself; `None` lets the pump assemble an OpenAI chat answer from the chunks.
    fn complete(&self) -> Option<Bytes> {
        None
    }
    /// Whether the client's stream is OpenAI chat chunks (assembled for the cache).
    fn is_chat(&self) -> bool;
}

/// Any translated stream, through a [`StreamTranslate`].
pub struct Translated {
    translator: Box<dyn StreamTranslate>,
    assembled: Option<crate::cache::StreamAssembler>,
    keep: bool,
    out: Vec<u8>,
}

impl Translated {
    pub fn new(translator: Box<dyn StreamTranslate>, keep: bool) -> Self {
        let assemble = keep && translator.is_chat();
        Translated {
            translator,
            assembled: assemble.then(crate::cache::StreamAssembler::new),
            keep,
            out: Vec::with_capacity(4096),
        }
    }

    fn take(&mut self) -> Bytes {
        if let Some(asm) = &mut self.assembled {
            asm.push(&self.out);
        }
        Bytes::from(std::mem::take(&mut self.out))
    }
}

impl BodyTransform for Translated {
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, String> {
        self.translator.push(&chunk, &mut self.out);
        if self.translator.pending_bytes() > STREAM_EVENT_LIMIT {
            return Err(event_too_large());
        }
        if self.translator.held_bytes() > STREAM_HELD_LIMIT {
            return Err(format!(
                "upstream answer larger than {STREAM_HELD_LIMIT} bytes"
            ));
        }
        Ok(self.take())
    }

    fn finish(&mut self) -> (Bytes, bool) {
        let complete = self.translator.finish(&mut self.out);
        (self.take(), complete)
    }

    fn fail(&mut self, message: &str) -> Bytes {
        self.translator.fail(message, &mut self.out);
        self.take()
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.translator.usage()
    }

    fn into_complete(self: Box<Self>) -> Option<Bytes> {
        if !self.keep {
            return None;
        }
        match self.assembled {
            Some(asm) => asm.finish(),
            None => self.translator.complete(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Usage

#[derive(Deserialize)]
struct UsageOnly {
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct UsageFields {
    /// Chat Completions and Embeddings say `prompt_tokens`, the Responses API `input_tokens`.
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
}

/// Reads `usage` from an OpenAI answer or chunk.
pub fn usage_of(json: &[u8]) -> Option<(u64, u64)> {
    usage_at_end(json).or_else(|| {
        let u: UsageOnly = serde_json::from_slice(json).ok()?;
        u.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    })
}

/// Parses only the value of the last top-level-looking `"usage":` key (OpenAI writes it after
/// the choices), so a large answer is not parsed twice just to count its tokens.
fn usage_at_end(json: &[u8]) -> Option<(u64, u64)> {
    const KEY: &[u8] = b"\"usage\"";
    let pos = memchr::memmem::rfind(json, KEY)?;
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

fn chunk_usage(data: &[u8]) -> Option<(u64, u64)> {
    // Cheap pre-check: most chunks carry no usage.
    if USAGE.find(data).is_some() {
        usage_of(data)
    } else {
        None
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_usage_in_responses_objects() {
        let body = br#"{"id":"resp_1","object":"response","output":[],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,"total_tokens":7},"user":null}"#;
        assert_eq!(usage_of(body), Some((5, 2)));
    }

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

    fn run(t: &mut dyn BodyTransform, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&t.push(Bytes::copy_from_slice(c)).unwrap());
        }
        let (last, complete) = t.finish();
        out.extend_from_slice(&last);
        (out, complete)
    }

    #[test]
    fn an_openai_stream_without_done_ends_with_an_error_event() {
        let events: &[&[u8]] = &[
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n",
            b"\n",
        ];
        for strip in [false, true] {
            let (out, complete) = run(&mut OpenAiSse::new(strip, false), events);
            let text = String::from_utf8(out).unwrap();
            assert!(!complete, "no [DONE]: incomplete");
            assert!(
                text.ends_with("\n\n") && text.contains("\"error\""),
                "{text}"
            );
            assert!(!text.contains("[DONE]"));
            let mut with_done = events.to_vec();
            with_done.push(b"data: [DONE]\n\n");
            let (out, complete) = run(&mut OpenAiSse::new(strip, false), &with_done);
            assert!(complete);
            assert!(!String::from_utf8(out).unwrap().contains("\"error\""));
        }
    }

    #[test]
    fn an_event_that_never_ends_is_bounded() {
        let mut t = OpenAiSse::new(false, true);
        let big = vec![b'a'; 1024 * 1024];
        let mut failed = false;
        for _ in 0..(STREAM_EVENT_LIMIT / big.len() + 2) {
            if t.push(Bytes::from(big.clone())).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless line must hit STREAM_EVENT_LIMIT");
        let mut v = Verbatim::kept(1000);
        assert!(v.push(Bytes::from(vec![b'x'; 600])).is_ok());
        assert!(
            v.push(Bytes::from(vec![b'x'; 600])).is_err(),
            "the whole-body bound"
        );
    }

    #[test]
    fn passthrough_streams_are_checked_for_their_own_end() {
        let gemini_cut: &[&[u8]] =
            &[b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\n"];
        let (out, complete) = run(&mut CheckedSse::new(StreamEnd::GeminiFinish), gemini_cut);
        assert!(!complete);
        assert!(String::from_utf8(out).unwrap().contains("\"UNAVAILABLE\""));
        let gemini_done: &[&[u8]] =
            &[b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\r\n\r\n"];
        assert!(run(&mut CheckedSse::new(StreamEnd::GeminiFinish), gemini_done).1);
        let responses_done: &[&[u8]] =
            &[b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"];
        assert!(
            run(
                &mut CheckedSse::new(StreamEnd::ResponsesTerminal),
                responses_done
            )
            .1
        );
        let (out, complete) = run(
            &mut CheckedSse::new(StreamEnd::ResponsesTerminal),
            &[b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n"],
        );
        assert!(!complete);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\n\nevent: error\ndata: {\"type\":\"error\""),
            "the error event follows the relayed events: {text}"
        );
    }
}
