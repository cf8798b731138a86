//! OpenAI `chat.completion.chunk` events → Gemini stream chunks, in the framing the client
//! asked for: SSE (`alt=sse`, `data: {…}\r\n\r\n` as Google sends it) or one JSON array
//! streamed element by element (`[{…}\r\n,{…}]`, the REST default).
//!
//! Text deltas go out as they come. Tool-call deltas are assembled (Gemini has no partial
//! `functionCall`) and sent, whole, in the last chunk with the finish reason and the usage
//! — OpenAI sends usage after the finish, so that chunk waits for it (or for `[DONE]`).

use crate::sse::SseParser;

use super::response::{args_object, finish_reason};
use super::wire::{
    CandidateOut, ChatIn, ContentOut, FunctionCallOut, GenerateContentOut, PartOut,
    UsageMetadataOut,
};

/// How the client's stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Sse,
    JsonArray,
}

impl Framing {
    /// `alt=sse` in the client's query asks for SSE; without it Google streams a JSON array.
    pub fn of_query(path_and_query: &str) -> Self {
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        if query.split('&').any(|p| p == "alt=sse") {
            Framing::Sse
        } else {
            Framing::JsonArray
        }
    }

    /// The content type the client's stream carries.
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Sse => "text/event-stream",
            Framing::JsonArray => "application/json",
        }
    }
}

/// One tool call being assembled from its deltas.
struct Call {
    choice: u32,
    index: u32,
    id: String,
    name: String,
    args: String,
}

/// Function calls one answer may open: far more than any model makes, few enough that finding
/// a call's earlier deltas stays cheap.
const MAX_CALLS: usize = 1024;

/// The stream state machine; see the module docs.
pub struct StreamTranslator {
    sse: SseParser,
    framing: Framing,
    /// Elements written so far (the JSON array's `[` and commas).
    written: usize,
    model: String,
    id: String,
    calls: Vec<Call>,
    /// Bytes the calls hold (names, arguments, ids): the stream's bound.
    held: usize,
    /// Choices that finished, with Gemini's reason, waiting for the usage.
    finished: Vec<(u32, &'static str)>,
    usage: Option<UsageMetadataOut>,
    done: bool,
}

impl StreamTranslator {
    /// `model` and `id` stand in until the upstream's first chunk names its own.
    pub fn new(framing: Framing, model: &str, id: &str) -> Self {
        StreamTranslator {
            sse: SseParser::new(),
            framing,
            written: 0,
            model: model.to_string(),
            id: id.to_string(),
            calls: Vec::new(),
            held: 0,
            finished: Vec::new(),
            usage: None,
            done: false,
        }
    }

    /// Upstream bytes, split anywhere; the client's bytes are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.sse.push(chunk);
        while let Some(ev) = self.sse.next_event() {
            if self.done {
                continue;
            }
            let data = ev.data.trim_ascii();
            if data == b"[DONE]" {
                self.final_chunk(out);
                self.close(out);
                continue;
            }
            if data.is_empty() {
                continue;
            }
            match serde_json::from_slice::<ChatIn>(data) {
                Ok(c) => self.chunk(&c, out),
                Err(e) => {
                    let message = format!("the OpenAI stream sent an unreadable chunk: {e}");
                    self.fail(&message, out);
                }
            }
        }
    }

    fn chunk(&mut self, c: &ChatIn<'_>, out: &mut Vec<u8>) {
        if self.written == 0 {
            if let Some(id) = c.id.as_ref().filter(|i| !i.0.is_empty()) {
                self.id.clear();
                self.id.push_str(&id.0);
            }
            if let Some(m) = c.model.as_ref().filter(|m| !m.0.is_empty()) {
                self.model.clear();
                self.model.push_str(&m.0);
            }
        }
        if let Some(u) = c.usage {
            self.usage = Some(u.into());
        }
        for choice in &c.choices {
            if let Some(d) = &choice.delta {
                for text in [&d.content, &d.refusal].into_iter().flatten() {
                    if !text.0.is_empty() {
                        let part = PartOut {
                            text: Some(&text.0),
                            function_call: None,
                        };
                        let cand = CandidateOut {
                            content: ContentOut {
                                parts: std::slice::from_ref(&part),
                                role: "model",
                            },
                            finish_reason: None,
                            index: choice.index,
                        };
                        self.write(std::slice::from_ref(&cand), None, out);
                    }
                }
                if d.refusal.as_ref().is_some_and(|r| !r.0.is_empty()) {
                    self.finished.retain(|(i, _)| *i != choice.index);
                    self.finished.push((choice.index, "SAFETY"));
                }
                for tc in &d.tool_calls {
                    let index = tc.index.unwrap_or(0);
                    let starts = tc.id.as_ref().is_some_and(|i| !i.0.is_empty());
                    let pos = self
                        .calls
                        .iter()
                        .rposition(|k| k.choice == choice.index && k.index == index);
                    if (pos.is_none() || starts) && self.calls.len() >= MAX_CALLS {
                        // Counted as over the bound: the pump ends the answer.
                        self.held = usize::MAX;
                        break;
                    }
                    let call = match (pos, starts) {
                        (Some(p), false) => &mut self.calls[p],
                        _ => {
                            self.calls.push(Call {
                                choice: choice.index,
                                index,
                                id: tc.id.as_ref().map(|i| i.0.to_string()).unwrap_or_default(),
                                name: String::new(),
                                args: String::new(),
                            });
                            let last = self.calls.len() - 1;
                            &mut self.calls[last]
                        }
                    };
                    let mut grew = tc.id.as_ref().map_or(0, |i| i.0.len());
                    if let Some(f) = &tc.function {
                        if let Some(n) = &f.name {
                            call.name.push_str(&n.0);
                            grew += n.0.len();
                        }
                        if let Some(a) = &f.arguments {
                            call.args.push_str(&a.0);
                            grew += a.0.len();
                        }
                    }
                    self.held = self.held.saturating_add(grew);
                }
            }
            if let Some(r) = &choice.finish_reason {
                if !self.finished.iter().any(|(i, _)| *i == choice.index) {
                    self.finished.push((choice.index, finish_reason(&r.0)));
                }
            }
        }
    }

    /// The last chunk: each finished choice's assembled function calls and finish reason,
    /// with the usage.
    fn final_chunk(&mut self, out: &mut Vec<u8>) {
        if self.finished.is_empty() && self.calls.is_empty() && self.usage.is_none() {
            return;
        }
        let mut choices: Vec<u32> = self.finished.iter().map(|(i, _)| *i).collect();
        for c in &self.calls {
            if !choices.contains(&c.choice) {
                choices.push(c.choice);
            }
        }
        let mut parts: Vec<Vec<PartOut<'_>>> = Vec::with_capacity(choices.len());
        for &i in &choices {
            let mut p = Vec::new();
            for c in self.calls.iter().filter(|c| c.choice == i) {
                let args = match args_object(&c.args) {
                    Ok(a) => a,
                    Err(why) => {
                        let message = format!("{why} (function `{}`)", c.name);
                        write_error(self.framing, self.written, &message, out);
                        self.done = true;
                        return;
                    }
                };
                p.push(PartOut {
                    text: None,
                    function_call: Some(FunctionCallOut {
                        id: &c.id,
                        name: &c.name,
                        args,
                    }),
                });
            }
            if p.is_empty() {
                p.push(PartOut {
                    text: Some(""),
                    function_call: None,
                });
            }
            parts.push(p);
        }
        let candidates: Vec<CandidateOut<'_>> = choices
            .iter()
            .zip(&parts)
            .map(|(&i, p)| CandidateOut {
                content: ContentOut {
                    parts: p,
                    role: "model",
                },
                finish_reason: Some(
                    self.finished
                        .iter()
                        .find(|(c, _)| *c == i)
                        .map_or("STOP", |(_, r)| *r),
                ),
                index: i,
            })
            .collect();
        frame(
            self.framing,
            self.written,
            &GenerateContentOut {
                candidates: &candidates,
                prompt_feedback: None,
                usage_metadata: self.usage,
                model_version: &self.model,
                response_id: &self.id,
            },
            out,
        );
        self.written += 1;
        self.finished.clear();
        self.calls.clear();
    }

    fn write(
        &mut self,
        candidates: &[CandidateOut<'_>],
        usage: Option<UsageMetadataOut>,
        out: &mut Vec<u8>,
    ) {
        frame(
            self.framing,
            self.written,
            &GenerateContentOut {
                candidates,
                prompt_feedback: None,
                usage_metadata: usage,
                model_version: &self.model,
                response_id: &self.id,
            },
            out,
        );
        self.written += 1;
    }

    /// Ends the client's stream (the JSON array's `]`).
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.framing == Framing::JsonArray {
            if self.written == 0 {
                out.push(b'[');
            }
            out.push(b']');
        }
        self.done = true;
    }

    /// The upstream ended: `false` (after an error element) when it ended before `[DONE]`
    /// and before any finish reason.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if self.done {
            return true;
        }
        if self.finished.is_empty() {
            self.fail(
                "the OpenAI stream ended before the answer was complete",
                out,
            );
            return false;
        }
        self.final_chunk(out);
        if !self.done {
            self.close(out);
        }
        true
    }

    /// The answer must end early: a Google-shaped error as the last element.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        write_error(self.framing, self.written, message, out);
        self.done = true;
    }

    /// (input, output) tokens, once the usage chunk came.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage.map(|u| {
            (
                u.prompt_token_count,
                u.candidates_token_count + u.thoughts_token_count.unwrap_or(0),
            )
        })
    }

    /// Upstream bytes held waiting for the end of an event.
    pub fn pending_bytes(&self) -> usize {
        self.sse.pending_bytes()
    }

    /// What the function calls hold until the last chunk writes them.
    pub fn held_bytes(&self) -> usize {
        self.held
    }
}

/// Writes one element: an SSE event, or the array's next element.
fn frame(framing: Framing, written: usize, value: &impl serde::Serialize, out: &mut Vec<u8>) {
    match framing {
        Framing::Sse => out.extend_from_slice(b"data: "),
        Framing::JsonArray if written == 0 => out.push(b'['),
        Framing::JsonArray => out.extend_from_slice(b",\r\n"),
    }
    // Serialising these borrowed structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    if framing == Framing::Sse {
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// A Google-shaped 500 as the stream's last element (the array closed after it).
fn write_error(framing: Framing, written: usize, message: &str, out: &mut Vec<u8>) {
    match framing {
        Framing::Sse => out.extend_from_slice(b"data: "),
        Framing::JsonArray if written == 0 => out.push(b'['),
        Framing::JsonArray => out.extend_from_slice(b",\r\n"),
    }
    out.extend_from_slice(&super::error::google_error(500, message));
    match framing {
        Framing::Sse => out.extend_from_slice(b"\r\n\r\n"),
        Framing::JsonArray => out.push(b']'),
    }
}

/// A whole `GenerateContentResponse` as a one-element stream in `framing` (a JSON answer
/// where a stream was asked).
pub fn replay(framing: Framing, whole: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(whole.len() + 8);
    match framing {
        Framing::Sse => {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(whole);
            out.extend_from_slice(b"\r\n\r\n");
        }
        Framing::JsonArray => {
            out.push(b'[');
            out.extend_from_slice(whole);
            out.push(b']');
        }
    }
    out
}
