//! The control plane (`/_mock/*`) and fault injection: queued faults, the hostile-mode answers
//! they produce, and the provider-shaped error bodies of status faults.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::gemini_answer::gemini_error;
use crate::http::{json_reply, Body, Head, Reply, Request};
use crate::responses;
use crate::routes::{gemini_target, route, RouteOpts};
use crate::state::{lock, ConfigPatch, State};

/// What a fault does besides (or instead of) answering a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultAction {
    /// Close the connection without answering.
    Drop,
    /// Never answer (until the peer hangs up).
    Hang,
    /// Send half of the answer (or two events of a stream), then close.
    BreakStream,
    /// Park the answer (after the first event of a stream) until `POST /_mock/release`.
    Hold,
    /// 200 and a body that never ends: 64 KiB chunks of `a` until the peer closes.
    Endless,
    /// The normal answer, `trickle_bytes` bytes every `delay_ms`.
    Trickle,
    /// `status` (200) with a raw `body` (or random bytes) and `content_type` (`text/html`).
    Garbage,
    /// A stream was asked: answer `200 application/json` with the whole answer instead.
    JsonForSse,
    /// A stream without its end (`[DONE]`, or Gemini's `finishReason` chunk).
    NoDone,
    /// `status` (401) whose body (and `WWW-Authenticate` on 401) quotes the request's key.
    EchoKey,
    /// The normal answer plus one `X-Mock-Huge` header of `header_bytes` (200 KiB).
    HugeHeader,
    /// A real answer of the route of exactly `size_bytes` bytes (streams: content chars).
    Size,
}

/// How a shaped answer's body is delimited (`framing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BodyFraming {
    /// `Content-Length` (streams too: the events' total length).
    Length,
    /// `Transfer-Encoding: chunked`, ending with a clean 0-chunk.
    Chunked,
    /// Neither: the body ends when the connection closes.
    Close,
}

/// One queued fault, as posted to `/_mock/faults`.
///
/// Examples: `{"status": 500, "count": -1}`, `{"action": "endless", "path_contains":
/// "/chat/completions"}`, `{"action": "trickle", "trickle_bytes": 16, "delay_ms": 100}`,
/// `{"action": "garbage", "body": "<html>oops</html>", "content_type": "text/html"}`,
/// `{"action": "no_done", "framing": "close"}`, `{"action": "echo_key", "status": 500}`,
/// `{"action": "huge_header", "header_bytes": 204800}`, `{"action": "size", "size_bytes":
/// 1048576, "chunked": true, "chunk_bytes": 4096}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fault {
    /// Applies only to requests whose path contains this (every request when absent).
    #[serde(default)]
    pub(crate) path_contains: Option<String>,
    /// Uses left; negative: forever.
    #[serde(default = "one")]
    pub(crate) count: i64,
    /// Answer this status (with `body`, or a provider-shaped error) instead of the real answer;
    /// the status of `garbage`, `echo_key` and `endless`.
    #[serde(default)]
    pub(crate) status: Option<u16>,
    /// A JSON body, or a raw string (JSON-looking: `application/json`, else `text/plain`).
    #[serde(default)]
    pub(crate) body: Option<Value>,
    #[serde(default)]
    pub(crate) retry_after: Option<u64>,
    /// Delay before the answer (for `trickle`: between two pieces, default 50).
    #[serde(default)]
    pub(crate) delay_ms: Option<u64>,
    #[serde(default)]
    pub(crate) action: Option<FaultAction>,
    /// The answer's `Content-Type` instead of the usual one.
    #[serde(default)]
    pub(crate) content_type: Option<String>,
    /// `trickle`: bytes per piece (default 1).
    #[serde(default)]
    pub(crate) trickle_bytes: Option<usize>,
    /// How the body is delimited (`length`, `chunked`, `close`).
    #[serde(default)]
    pub(crate) framing: Option<BodyFraming>,
    /// Adds an `X-Mock-Huge` header of this many bytes (`huge_header`: default 200 KiB).
    #[serde(default)]
    pub(crate) header_bytes: Option<usize>,
    /// `size`: total body bytes (streams: content characters); `garbage`: random bytes.
    #[serde(default)]
    pub(crate) size_bytes: Option<usize>,
    /// `true`: chunked framing (same as `framing: "chunked"`).
    #[serde(default)]
    pub(crate) chunked: Option<bool>,
    /// Writes the body in pieces of this size (each its own chunk when chunked).
    #[serde(default)]
    pub(crate) chunk_bytes: Option<usize>,
    /// `size` on a stream: the number of content events (default: the `chunks` setting).
    #[serde(default)]
    pub(crate) events: Option<usize>,
}

/// Default fault count: apply once.
pub(crate) fn one() -> i64 {
    1
}

impl FaultAction {
    /// The hostile-mode actions, whose answer [`hostile_reply`] builds.
    pub(crate) fn is_hostile(self) -> bool {
        !matches!(
            self,
            FaultAction::Drop | FaultAction::Hang | FaultAction::BreakStream | FaultAction::Hold
        )
    }
}

impl Fault {
    /// Whether the answer is written by [`crate::http::send_shaped`] (hostile actions or shaping fields).
    pub(crate) fn shapes(&self) -> bool {
        match self.action {
            Some(a) if !a.is_hostile() => false,
            Some(_) => true,
            None => self.framing.is_some() || self.chunked.is_some() || self.chunk_bytes.is_some(),
        }
    }

    /// The framing asked for, `chunked: true` included.
    pub(crate) fn body_framing(&self) -> Option<BodyFraming> {
        self.framing
            .or((self.chunked == Some(true)).then_some(BodyFraming::Chunked))
    }
}

/// The key a request carries: bearer token, `x-goog-api-key`, `?key=` or `x-openai-api-key`.
pub(crate) fn request_key(head: &Head) -> String {
    let bearer = head.header("authorization").map(|v| {
        let v = v.trim();
        match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => v,
        }
    });
    bearer
        .or_else(|| head.header("x-goog-api-key"))
        .or_else(|| head.query("key"))
        .or_else(|| head.header("x-openai-api-key"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether the request asked for a stream (Gemini's stream method or OpenAI's `stream: true`).
pub(crate) fn wants_stream(req: &Request) -> bool {
    if let Some((_, method)) = gemini_target(&req.head.path) {
        return method == "streamGenerateContent";
    }
    serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        == Some(true)
}

/// Deterministic bytes of every value, newlines and invalid UTF-8 included (xorshift64).
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The answer of a hostile-mode fault (see the module doc).
pub(crate) fn hostile_reply(
    state: &State,
    req: &Request,
    f: &Fault,
    action: FaultAction,
    gemini: bool,
) -> Reply {
    let normal = |opts: RouteOpts| match f.status {
        Some(status) => fault_reply(f, status, gemini),
        None => route(state, req, opts),
    };
    match action {
        FaultAction::Garbage => {
            let body = match &f.body {
                Some(Value::String(raw)) => raw.clone().into_bytes(),
                Some(other) => serde_json::to_vec(other).unwrap_or_default(),
                None => random_bytes(f.size_bytes.unwrap_or(1024)),
            };
            Reply::full(f.status.unwrap_or(200), "text/html", body)
        }
        FaultAction::EchoKey => echo_key_reply(f, &request_key(&req.head), gemini),
        FaultAction::Endless => {
            let ct = if wants_stream(req) {
                "text/event-stream"
            } else {
                "application/json"
            };
            Reply::full(f.status.unwrap_or(200), ct, Vec::new())
        }
        FaultAction::JsonForSse => route(
            state,
            req,
            RouteOpts {
                force_full: true,
                ..RouteOpts::default()
            },
        ),
        FaultAction::NoDone => {
            let mut reply = route(state, req, RouteOpts::default());
            if let Body::Stream { events, .. } = &mut reply.body {
                if gemini {
                    let end = events.iter().position(|e| contains(e, b"\"finishReason\""));
                    events.truncate(end.unwrap_or(events.len()));
                } else {
                    events.retain(|e| {
                        !e.starts_with(b"data: [DONE]") && !responses::is_terminal_event(e)
                    });
                }
            }
            reply
        }
        FaultAction::Size => route(
            state,
            req,
            RouteOpts {
                size: Some(f.size_bytes.unwrap_or(64 * 1024)),
                events: f.events,
                ..RouteOpts::default()
            },
        ),
        FaultAction::Trickle
        | FaultAction::HugeHeader
        | FaultAction::Drop
        | FaultAction::Hang
        | FaultAction::BreakStream
        | FaultAction::Hold => normal(RouteOpts::default()),
    }
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An upstream that quotes the caller's key back in its error (and challenge header).
pub(crate) fn echo_key_reply(f: &Fault, key: &str, gemini: bool) -> Reply {
    let status = f.status.unwrap_or(401);
    let mut reply = match &f.body {
        Some(Value::String(raw)) => Reply::full(
            status,
            "application/json",
            raw.replace("{key}", key).into_bytes(),
        ),
        Some(other) => json_reply(status, other),
        None if gemini => gemini_error(
            status,
            &format!(
                "API key not valid: {key}. Please pass a valid API key. (x-goog-api-key: {key})"
            ),
        ),
        None => json_reply(
            status,
            &json!({"error": {
                "message": format!("Incorrect API key provided: {key}. You passed Authorization: Bearer {key}"),
                "type": if status == 401 { "invalid_request_error" } else { "server_error" },
                "param": null,
                "code": if status == 401 { "invalid_api_key" } else { "echo" },
                "key": key,
            }}),
        ),
    };
    if status == 401 {
        reply.headers.push((
            "WWW-Authenticate",
            format!("Bearer realm=\"x\", error=\"invalid_token\", key=\"{key}\""),
        ));
    }
    reply
}

/// Answers `/_mock/*`.
pub(crate) fn control(state: &State, req: &Request) -> Reply {
    let head = &req.head;
    let ok = || json_reply(200, &json!({"ok": true}));
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/_mock/requests") => json_reply(
            200,
            &json!({"requests": state.records_json(head.query("path_contains"))}),
        ),
        ("DELETE", "/_mock/requests") => {
            lock(&state.records).clear();
            ok()
        }
        ("GET", "/_mock/stats") => json_reply(200, &state.stats()),
        ("POST", "/_mock/reset") => {
            state.reset();
            ok()
        }
        ("GET", "/_mock/config") => json_reply(200, &json!(state.tuning.get())),
        ("POST", "/_mock/config") => {
            match serde_json::from_slice::<ConfigPatch>(non_empty(&req.body)) {
                Ok(patch) => {
                    let mut t = state.tuning.get();
                    t.latency_ms = patch.latency_ms.unwrap_or(t.latency_ms);
                    t.chunk_delay_ms = patch.chunk_delay_ms.unwrap_or(t.chunk_delay_ms);
                    t.chunks = patch.chunks.unwrap_or(t.chunks).max(1);
                    t.gemini_sse_lf = patch.gemini_sse_lf.unwrap_or(t.gemini_sse_lf);
                    state.tuning.set(t);
                    json_reply(200, &json!(t))
                }
                Err(e) => control_error(&e.to_string()),
            }
        }
        ("GET", "/_mock/faults") => json_reply(200, &json!({"faults": *lock(&state.faults)})),
        ("POST", "/_mock/faults") => match parse_faults(&req.body) {
            Ok(new) => {
                let mut faults = lock(&state.faults);
                faults.extend(new);
                json_reply(200, &json!({"ok": true, "pending": faults.len()}))
            }
            Err(e) => control_error(&e),
        },
        ("DELETE", "/_mock/faults") => {
            lock(&state.faults).clear();
            ok()
        }
        ("POST", "/_mock/release") => json_reply(200, &json!({"released": state.release_all()})),
        ("GET", "/_mock/last_body") => match lock(&state.last_body).clone() {
            Some((content_type, body)) => Reply::full(200, content_type, body.to_vec()),
            None => json_reply(404, &json!({"error": "no hostile answer sent yet"})),
        },
        _ => json_reply(404, &json!({"error": "unknown mock control route"})),
    }
}

/// Treats an empty control body as `{}`.
pub(crate) fn non_empty(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

/// 400 for a malformed control request.
pub(crate) fn control_error(message: &str) -> Reply {
    json_reply(400, &json!({"error": message}))
}

/// Accepts `{"faults":[...]}`, a bare array, or a single fault object.
pub(crate) fn parse_faults(body: &[u8]) -> Result<Vec<Fault>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let list = match v {
        Value::Object(mut o) if o.contains_key("faults") => o.remove("faults").unwrap_or_default(),
        Value::Array(_) => v,
        other => Value::Array(vec![other]),
    };
    serde_json::from_value(list).map_err(|e| e.to_string())
}

/// The answer a status fault produces.
pub(crate) fn fault_reply(fault: &Fault, status: u16, gemini: bool) -> Reply {
    match &fault.body {
        Some(Value::String(raw)) => {
            let json_like = raw.trim_start().starts_with(['{', '[']);
            let ct = if json_like {
                "application/json"
            } else {
                "text/plain"
            };
            Reply::full(status, ct, raw.clone().into_bytes())
        }
        Some(other) => json_reply(status, other),
        None if gemini => gemini_error(status, &format!("mock fault {status}")),
        None => {
            let (kind, code) = match status {
                429 => ("requests", Value::from("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json_reply(
                status,
                &json!({"error": {"message": format!("mock fault {status}"), "type": kind, "param": null, "code": code}}),
            )
        }
    }
}
