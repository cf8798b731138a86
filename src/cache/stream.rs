//! Streaming ↔ stored-answer conversions, so `stream: true` and `stream: false` requests share
//! entries. Both are pure and synchronous (`response_body_filter` may call them).

use crate::sse::{SseEvent, SseParser};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A replayed text is cut into about this many pieces (never below [`MIN_PIECE`] bytes): enough to
/// look like a stream to clients, few enough to stay cheap.
const PIECES: usize = 4;
const MIN_PIECE: usize = 32;

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a Value,
    object: &'static str,
    created: &'a Value,
    model: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a Value>,
    choices: Vec<ChunkChoice<'a>>,
    /// `Some(null)` on every chunk but the last when usage was asked for, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Value>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u64,
    delta: Delta<'a>,
    logprobs: Option<&'a Value>,
    finish_reason: Option<&'a Value>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    /// Absent, `null` (`Some(None)`) or text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a Value>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a Value>,
    arguments: &'a str,
}

/// Cuts `s` into a few pieces on char boundaries.
fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let size = s.len().div_ceil(PIECES).max(MIN_PIECE);
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = size.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Replays a stored `chat.completion` as OpenAI SSE: per choice a role chunk, the content (or
/// refusal, or tool calls) in a few pieces and a `finish_reason` chunk; then a usage chunk when
/// `include_usage`; then `data: [DONE]`. `None` for anything that is not a chat completion.
pub fn completion_to_sse(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    if obj.get("object")?.as_str()? != "chat.completion" {
        return None;
    }
    let choices = obj.get("choices")?.as_array()?;
    let usage_null = include_usage.then_some(&Value::Null);
    let base = |choices| Chunk {
        id: obj.get("id").unwrap_or(&Value::Null),
        object: "chat.completion.chunk",
        created: obj.get("created").unwrap_or(&Value::Null),
        model: obj.get("model").unwrap_or(&Value::Null),
        system_fingerprint: obj.get("system_fingerprint"),
        service_tier: obj.get("service_tier"),
        choices,
        usage: usage_null,
    };
    let mut out = BytesMut::with_capacity(body.len() * 2 + 512).writer();
    let mut emit = |chunk: &Chunk<'_>| -> Option<()> {
        out.get_mut().put_slice(b"data: ");
        serde_json::to_writer(&mut out, chunk).ok()?;
        out.get_mut().put_slice(b"\n\n");
        Some(())
    };
    for (i, choice) in choices.iter().enumerate() {
        let choice = choice.as_object()?;
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(i as u64);
        let message = choice.get("message")?.as_object()?;
        let one = |delta, logprobs, finish_reason| {
            vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason,
            }]
        };
        let content = match message.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return None, // content parts in an answer: not replayable as deltas
        };
        // The first chunk carries the role and, as OpenAI does, the whole logprobs object.
        let logprobs = choice.get("logprobs").filter(|l| !l.is_null());
        let first = Delta {
            role: Some(
                message
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("assistant"),
            ),
            content: Some(content.map(|_| "")),
            ..Delta::default()
        };
        emit(&base(one(first, logprobs, None)))?;
        for piece in content.into_iter().flat_map(pieces) {
            let delta = Delta {
                content: Some(Some(piece)),
                ..Delta::default()
            };
            emit(&base(one(delta, None, None)))?;
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            for piece in pieces(refusal) {
                let delta = Delta {
                    refusal: Some(piece),
                    ..Delta::default()
                };
                emit(&base(one(delta, None, None)))?;
            }
        }
        let calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (j, call) in calls.iter().enumerate() {
            let function = call.get("function")?;
            let arguments = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            let head = ToolDelta {
                index: j,
                id: call.get("id"),
                kind: call.get("type"),
                function: FunctionDelta {
                    name: function.get("name"),
                    arguments: "",
                },
            };
            let delta = Delta {
                tool_calls: Some([head]),
                ..Delta::default()
            };
            emit(&base(one(delta, None, None)))?;
            for piece in pieces(arguments) {
                let part = ToolDelta {
                    index: j,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: piece,
                    },
                };
                let delta = Delta {
                    tool_calls: Some([part]),
                    ..Delta::default()
                };
                emit(&base(one(delta, None, None)))?;
            }
        }
        let finish = choice.get("finish_reason").unwrap_or(&Value::Null);
        emit(&base(one(Delta::default(), None, Some(finish))))?;
    }
    if include_usage {
        let mut last = base(Vec::new());
        last.usage = Some(obj.get("usage").unwrap_or(&Value::Null));
        emit(&last)?;
    }
    let mut out = out.into_inner();
    out.put_slice(b"data: [DONE]\n\n");
    Some(out.freeze())
}

/// One choice being assembled.
#[derive(Default)]
struct ChoiceAcc {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    /// By the delta's `index`, so interleaved calls merge correctly.
    tool_calls: BTreeMap<u64, ToolAcc>,
    logprobs: Option<Value>,
    finish_reason: Option<Value>,
}

#[derive(Default)]
struct ToolAcc {
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The fields every chunk repeats, taken from the first.
struct Head {
    id: Value,
    created: Value,
    model: Value,
    system_fingerprint: Option<Value>,
    service_tier: Option<Value>,
}

/// The longest stream assembled for the cache; a longer answer is relayed but not stored, so
/// what the assembler holds stays bounded however long an upstream streams.
pub const MAX_ASSEMBLED: usize = 16 * 1024 * 1024;

/// Assembles a streamed OpenAI answer (SSE bytes in arbitrary splits, as relayed to the client)
/// into the equivalent non-streamed `chat.completion`, so a streamed miss can be stored. A stream
/// that did not end properly is never stored.
#[derive(Default)]
pub struct StreamAssembler {
    parser: SseParser,
    /// Bytes fed so far: past [`MAX_ASSEMBLED`] the answer is not stored.
    fed: usize,
    head: Option<Head>,
    choices: BTreeMap<u64, ChoiceAcc>,
    usage: Option<Value>,
    done: bool,
    /// An error event, unparsable data, or a chunk we cannot merge: the result is not trusted.
    broken: bool,
}

impl StreamAssembler {
    /// One assembler per streamed response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds relayed bytes; cut anywhere.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.broken || self.done {
            return; // nothing more can change the outcome: don't buffer
        }
        self.fed = self.fed.saturating_add(chunk.len());
        if self.fed > MAX_ASSEMBLED {
            // Too long to keep: dropped now rather than at the end.
            *self = StreamAssembler {
                broken: true,
                ..StreamAssembler::default()
            };
            return;
        }
        self.parser.push(chunk);
        while let Some(ev) = self.parser.next_event() {
            self.event(ev);
        }
    }

    /// The assembled `chat.completion`, or `None` when the stream was incomplete: no `[DONE]`,
    /// an error event, or a choice without `finish_reason`.
    pub fn finish(mut self) -> Option<Bytes> {
        if !self.done && !self.broken {
            while let Some(ev) = self.parser.flush() {
                self.event(ev);
            }
        }
        if !self.done || self.broken || self.choices.is_empty() {
            return None;
        }
        let head = self.head?;
        let mut choices = Vec::with_capacity(self.choices.len());
        for (index, c) in self.choices {
            let finish_reason = c.finish_reason?;
            let tool_calls: Vec<OutTool> = c
                .tool_calls
                .into_values()
                .map(|t| OutTool {
                    id: t.id.unwrap_or_default(),
                    kind: t.kind.unwrap_or_else(|| "function".to_owned()),
                    function: OutFunction {
                        name: t.name.unwrap_or_default(),
                        arguments: t.arguments,
                    },
                })
                .collect();
            // A non-streamed answer with tool calls has `content: null`, though streams send "".
            let content = c.content.filter(|s| !s.is_empty() || tool_calls.is_empty());
            choices.push(OutChoice {
                index,
                message: OutMessage {
                    role: c.role.unwrap_or_else(|| "assistant".to_owned()),
                    content,
                    refusal: c.refusal,
                    tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                },
                logprobs: c.logprobs,
                finish_reason,
            });
        }
        let out = OutCompletion {
            id: head.id,
            object: "chat.completion",
            created: head.created,
            model: head.model,
            choices,
            usage: self.usage,
            system_fingerprint: head.system_fingerprint,
            service_tier: head.service_tier,
        };
        serde_json::to_vec(&out).ok().map(Bytes::from)
    }

    fn event(&mut self, ev: SseEvent) {
        if self.done || self.broken {
            return;
        }
        if ev.event.as_deref() == Some("error") {
            self.broken = true;
            return;
        }
        if ev.data.trim_ascii() == b"[DONE]" {
            self.done = true;
            return;
        }
        match serde_json::from_slice::<Value>(&ev.data) {
            Ok(Value::Object(chunk)) if !chunk.contains_key("error") => {
                if self.chunk(chunk).is_none() {
                    self.broken = true;
                }
            }
            _ => self.broken = true,
        }
    }

    /// Merges one `chat.completion.chunk`; `None` when it is malformed.
    fn chunk(&mut self, mut chunk: Map<String, Value>) -> Option<()> {
        let head = self.head.get_or_insert_with(|| Head {
            id: chunk.get("id").cloned().unwrap_or(Value::Null),
            created: chunk.get("created").cloned().unwrap_or(Value::Null),
            model: chunk.get("model").cloned().unwrap_or(Value::Null),
            system_fingerprint: None,
            service_tier: None,
        });
        if let Some(fp) = chunk.remove("system_fingerprint").filter(|v| !v.is_null()) {
            head.system_fingerprint.get_or_insert(fp);
        }
        if let Some(tier) = chunk.remove("service_tier").filter(|v| !v.is_null()) {
            head.service_tier.get_or_insert(tier);
        }
        if let Some(usage) = chunk.remove("usage").filter(|v| !v.is_null()) {
            self.usage = Some(usage);
        }
        let choices = match chunk.remove("choices") {
            Some(Value::Array(choices)) => choices,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return None,
        };
        for choice in choices {
            let Value::Object(mut choice) = choice else {
                return None;
            };
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(index).or_default();
            if let Some(reason) = choice.remove("finish_reason").filter(|v| !v.is_null()) {
                acc.finish_reason = Some(reason);
            }
            if let Some(lp) = choice.remove("logprobs").filter(|v| !v.is_null()) {
                merge_logprobs(&mut acc.logprobs, lp);
            }
            let Some(Value::Object(mut delta)) = choice.remove("delta") else {
                continue;
            };
            if let Some(Value::String(role)) = delta.remove("role") {
                acc.role.get_or_insert(role);
            }
            if let Some(Value::String(text)) = delta.remove("content") {
                acc.content.get_or_insert_with(String::new).push_str(&text);
            }
            if let Some(Value::String(text)) = delta.remove("refusal") {
                acc.refusal.get_or_insert_with(String::new).push_str(&text);
            }
            if let Some(Value::Array(calls)) = delta.remove("tool_calls") {
                for (position, call) in calls.into_iter().enumerate() {
                    merge_tool_call(&mut acc.tool_calls, position, call)?;
                }
            }
        }
        Some(())
    }
}

/// Streams send each logprobs token list in pieces; the stored answer holds them concatenated.
fn merge_logprobs(acc: &mut Option<Value>, new: Value) {
    let Some(Value::Object(have)) = acc else {
        *acc = Some(new);
        return;
    };
    let Value::Object(new) = new else {
        return;
    };
    for (k, v) in new {
        match (have.get_mut(&k), v) {
            (Some(Value::Array(list)), Value::Array(more)) => list.extend(more),
            (Some(slot), v) if slot.is_null() => *slot = v,
            (None, v) => {
                have.insert(k, v);
            }
            _ => {}
        }
    }
}

/// Merges one tool-call delta: `id`/`type`/`name` from the first delta that has them,
/// `arguments` concatenated.
fn merge_tool_call(calls: &mut BTreeMap<u64, ToolAcc>, position: usize, call: Value) -> Option<()> {
    let Value::Object(mut call) = call else {
        return None;
    };
    let index = match call.get("index") {
        Some(i) => i.as_u64()?,
        None => position as u64,
    };
    let acc = calls.entry(index).or_default();
    if let Some(Value::String(id)) = call.remove("id") {
        if !id.is_empty() {
            acc.id.get_or_insert(id);
        }
    }
    if let Some(Value::String(kind)) = call.remove("type") {
        acc.kind.get_or_insert(kind);
    }
    if let Some(Value::Object(mut function)) = call.remove("function") {
        if let Some(Value::String(name)) = function.remove("name") {
            if !name.is_empty() {
                acc.name.get_or_insert(name);
            }
        }
        if let Some(Value::String(args)) = function.remove("arguments") {
            acc.arguments.push_str(&args);
        }
    }
    Some(())
}

#[derive(Serialize)]
struct OutCompletion {
    id: Value,
    object: &'static str,
    created: Value,
    model: Value,
    choices: Vec<OutChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<Value>,
}

#[derive(Serialize)]
struct OutChoice {
    index: u64,
    message: OutMessage,
    logprobs: Option<Value>,
    finish_reason: Value,
}

#[derive(Serialize)]
struct OutMessage {
    role: String,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<OutTool>>,
}

#[derive(Serialize)]
struct OutTool {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    function: OutFunction,
}

#[derive(Serialize)]
struct OutFunction {
    name: String,
    arguments: String,
}

#[cfg(test)]
mod tests;
