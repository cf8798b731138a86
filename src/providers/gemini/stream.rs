//! Gemini `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk` events.

use std::borrow::Cow;

use super::error::{error_type, write_error};
use super::ids::CallIds;
use super::response::{
    extra_content, finish_reason, logprobs_out, usage_of, usage_out, write_args, ResponseContext,
    Usage,
};
use super::wire::{Candidate, GenerateContentResponse};
use crate::providers::openai::wire::{
    ChunkChoice, ChunkOut, Delta, FunctionOut, LogprobsOut, ToolCallOut, UsageOut,
};
use crate::sse::SseParser;

#[derive(Default, Clone)]
struct ChoiceState {
    role_sent: bool,
    next_tool_index: u32,
    saw_call: bool,
    finished: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StreamState {
    Open,
    Done,
    Failed,
}

/// Choices a stream keeps state for, at most (`n` is 128 at most on OpenAI).
const MAX_CHOICES: usize = 128;

/// Gemini SSE bytes in arbitrary splits → OpenAI SSE bytes (`data: {chat.completion.chunk}\n\n` ... `data: [DONE]\n\n`).
pub struct StreamTranslator {
    ctx: ResponseContext,
    include_usage: bool,
    parser: SseParser,
    ids: CallIds,
    choices: Vec<ChoiceState>,
    usage: Option<UsageOut>,
    any_finished: bool,
    state: StreamState,
    // Scratch buffers reused across events.
    text: String,
    id_buf: String,
    args: Vec<u8>,
}

impl StreamTranslator {
    pub fn new(ctx: ResponseContext, include_usage: bool) -> Self {
        StreamTranslator {
            ids: CallIds::new(&ctx.id),
            ctx,
            include_usage,
            parser: SseParser::new(),
            choices: Vec::new(),
            usage: None,
            any_finished: false,
            state: StreamState::Open,
            text: String::new(),
            id_buf: String::new(),
            args: Vec::new(),
        }
    }

    /// Appends every complete translated event to `out`; keeps partial input for the next call.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.state != StreamState::Open {
            return;
        }
        self.parser.push(chunk);
        while let Some(ev) = self.parser.next_event() {
            self.event(&ev.data, out);
            if self.state != StreamState::Open {
                return;
            }
        }
    }

    /// Upstream ended cleanly: flush, emit the usage chunk if asked, then
    /// `data: [DONE]`. Without any finishReason the stream was cut: emit an
    /// error event, no `[DONE]`, and return false.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if self.state == StreamState::Open {
            while let Some(ev) = self.parser.flush() {
                self.event(&ev.data, out);
                if self.state != StreamState::Open {
                    break;
                }
            }
        }
        match self.state {
            StreamState::Done => return true,
            StreamState::Failed => return false,
            StreamState::Open => {}
        }
        if !self.any_finished {
            self.fail_with(
                "upstream stream ended before the response was complete",
                "upstream_error",
                None,
                out,
            );
            return false;
        }
        if self.include_usage {
            let usage = self.usage.unwrap_or_default();
            self.write(out, &[], Some(&usage));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.state = StreamState::Done;
        true
    }

    /// Upstream failed mid-stream: emit an OpenAI-style error event, never `[DONE]`.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.state == StreamState::Open {
            self.fail_with(message, "upstream_error", None, out);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage_of)
    }

    /// Input bytes held while waiting for the end of an event (the caller bounds it).
    pub fn pending_bytes(&self) -> usize {
        self.parser.pending_bytes()
    }

    fn fail_with(&mut self, message: &str, kind: &str, code: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        write_error(out, message, kind, code);
        out.extend_from_slice(b"\n\n");
        self.state = StreamState::Failed;
    }

    fn write(&self, out: &mut Vec<u8>, choices: &[ChunkChoice<'_>], usage: Option<&UsageOut>) {
        out.extend_from_slice(b"data: ");
        let chunk = ChunkOut {
            id: &self.ctx.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices,
            usage,
        };
        // Serialising these plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }

    /// Marks the choice's role as sent and returns the role to put in this delta.
    fn role(&mut self, index: usize) -> Option<&'static str> {
        if self.choices.len() <= index {
            self.choices.resize(index + 1, ChoiceState::default());
        }
        let st = &mut self.choices[index];
        (!std::mem::replace(&mut st.role_sent, true)).then_some("assistant")
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        let resp: GenerateContentResponse = match serde_json::from_slice(data) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("invalid event from upstream: {e}");
                return self.fail_with(&msg, "upstream_error", None, out);
            }
        };
        if let Some(err) = &resp.error {
            let msg = err.message.as_ref().map_or("upstream error", |m| &m.0);
            let code = err.status.as_ref().map(|s| s.0.to_ascii_lowercase());
            let status = err.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
            let kind = if status == 0 {
                "upstream_error"
            } else {
                error_type(status)
            };
            return self.fail_with(msg, kind, code.as_deref(), out);
        }
        if let Some(m) = &resp.usage_metadata {
            self.usage = Some(usage_out(m));
        }
        if resp.candidates.is_empty()
            && resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
        {
            let role = self.role(0);
            if role.is_some() {
                let delta = Delta {
                    role,
                    content: Some(""),
                    tool_calls: None,
                };
                self.write_delta(out, 0, delta, None, None);
            }
            self.write_delta(out, 0, Delta::default(), None, Some("content_filter"));
            self.any_finished = true;
            return;
        }
        for (pos, cand) in resp.candidates.iter().enumerate() {
            self.candidate(cand, pos, out);
        }
    }

    fn write_delta(
        &self,
        out: &mut Vec<u8>,
        index: u32,
        delta: Delta<'_>,
        logprobs: Option<LogprobsOut<'_>>,
        finish_reason: Option<&'static str>,
    ) {
        let choice = ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        self.write(out, std::slice::from_ref(&choice), None);
    }

    fn candidate(&mut self, cand: &Candidate<'_>, pos: usize, out: &mut Vec<u8>) {
        let index = cand.index.unwrap_or(pos as u32);
        let slot = index as usize;
        if slot >= MAX_CHOICES {
            // No request asks for that many (OpenAI's `n` stops at 128, Gemini's at 8): an
            // upstream naming such an index must not size the per-choice state by it.
            return;
        }
        let parts = cand.content.as_ref().map_or(&[][..], |c| &c.parts[..]);

        let mut text = std::mem::take(&mut self.text);
        text.clear();
        for p in parts {
            if let (Some(t), false) = (&p.text, p.thought) {
                text.push_str(&t.0);
            }
        }
        let logprobs = cand.logprobs_result.as_ref().map(logprobs_out);
        if !text.is_empty() || logprobs.is_some() {
            let delta = Delta {
                role: self.role(slot),
                content: Some(&text),
                tool_calls: None,
            };
            self.write_delta(out, index, delta, logprobs, None);
        }
        self.text = text;

        let mut id_buf = std::mem::take(&mut self.id_buf);
        let mut args = std::mem::take(&mut self.args);
        for p in parts {
            let Some(fc) = &p.function_call else { continue };
            if !self.ctx.parallel_tool_calls && self.choices.get(slot).is_some_and(|c| c.saw_call) {
                continue;
            }
            let role = self.role(slot);
            let st = &mut self.choices[slot];
            let tool_index = st.next_tool_index;
            st.next_tool_index += 1;
            st.saw_call = true;
            let sig = p.thought_signature.as_ref().map(|s| &*s.0);
            self.ids.write(&mut id_buf, sig);
            write_args(fc.args.as_ref(), &mut args);
            let call = ToolCallOut {
                index: Some(tool_index),
                id: Cow::Borrowed(&id_buf),
                kind: "function",
                function: FunctionOut {
                    name: &fc.name.0,
                    arguments: String::from_utf8_lossy(&args),
                },
                extra_content: extra_content(sig),
            };
            let delta = Delta {
                role,
                content: None,
                tool_calls: Some(std::slice::from_ref(&call)),
            };
            self.write_delta(out, index, delta, None, None);
        }
        self.id_buf = id_buf;
        self.args = args;

        if let Some(reason) = &cand.finish_reason {
            if let Some(role) = self.role(slot) {
                let delta = Delta {
                    role: Some(role),
                    content: Some(""),
                    tool_calls: None,
                };
                self.write_delta(out, index, delta, None, None);
            }
            let st = &mut self.choices[slot];
            st.finished = true;
            let finish = finish_reason(&reason.0, st.saw_call);
            self.any_finished = true;
            self.write_delta(out, index, Delta::default(), None, Some(finish));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::response::chat_response;
    use crate::providers::gemini::test_support::*;
    use serde_json::{json, Value};

    fn run(input: &[u8], cuts: &[usize], include_usage: bool) -> (Vec<u8>, bool) {
        let mut t = StreamTranslator::new(ctx(), include_usage);
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            t.push(&input[prev..c], &mut out);
            prev = c;
        }
        let ok = t.finish(&mut out);
        (out, ok)
    }

    fn chunks(out: &[u8]) -> Vec<Value> {
        let s = std::str::from_utf8(out).unwrap();
        assert!(s.ends_with("data: [DONE]\n\n"), "{s}");
        s.split("\n\n")
            .filter(|l| !l.is_empty() && *l != "data: [DONE]")
            .map(|l| v(l.strip_prefix("data: ").unwrap()))
            .collect()
    }

    #[test]
    fn stream_text_chunks() {
        let input = sse_of(fixture!("stream_text.json"));
        let (out, ok) = run(&input, &[], true);
        assert!(ok);
        let c = chunks(&out);
        let deltas: Vec<&Value> = c.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(*deltas[0], json!({"role":"assistant","content":"Hello"}));
        assert_eq!(*deltas[1], json!({"content":", wörld \"quoted\"\n"}));
        assert_eq!(*deltas[2], json!({"content":"!"}));
        assert_eq!(*deltas[3], json!({}));
        assert_eq!(c[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(c[0]["choices"][0]["finish_reason"], Value::Null);
        for chunk in &c {
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 1_700_000_000);
            assert_eq!(chunk["model"], "gemini-2.5-flash");
        }
        assert_eq!(c[4]["choices"], json!([]));
        assert_eq!(c[4]["usage"]["completion_tokens"], 7);
        assert_eq!(
            c[4]["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn stream_split_at_every_byte_is_identical() {
        for fixture in [
            fixture!("stream_text.json"),
            fixture!("stream_tool_calls.json"),
        ] {
            let input = sse_of(fixture);
            let (whole, ok) = run(&input, &[], true);
            assert!(ok);
            for cut in 0..=input.len() {
                assert_eq!(
                    run(&input, &[cut], true),
                    (whole.clone(), true),
                    "cut {cut}"
                );
            }
            let all: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run(&input, &all, true).0, whole);
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..300 {
                let mut cuts: Vec<usize> = (0..rng.usize(1..20))
                    .map(|_| rng.usize(0..=input.len()))
                    .collect();
                cuts.sort_unstable();
                assert_eq!(run(&input, &cuts, true).0, whole);
            }
        }
    }

    #[test]
    fn stream_output_is_incremental() {
        let input = sse_of(fixture!("stream_text.json"));
        let mut t = StreamTranslator::new(ctx(), false);
        let mut out = Vec::new();
        let second_end = input
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n\r\n")
            .nth(1)
            .unwrap()
            .0
            + 4;
        t.push(&input[..second_end], &mut out);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.contains("\"Hello\"") && s.ends_with("\n\n"), "{s}");
        assert_eq!(t.usage().unwrap().completion_tokens, 1);
    }

    #[test]
    fn parallel_tool_calls_false_streams_the_first_call() {
        let input = sse_of(fixture!("stream_tool_calls.json"));
        let mut t = StreamTranslator::new(
            ResponseContext {
                parallel_tool_calls: false,
                ..ctx()
            },
            false,
        );
        let mut out = Vec::new();
        t.push(&input, &mut out);
        assert!(t.finish(&mut out));
        let c = chunks(&out);
        assert_eq!(c.len(), 3, "{}", String::from_utf8_lossy(&out));
        let t0 = &c[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(t0["index"], 0);
        assert_eq!(
            t0["function"],
            json!({"name":"get_weather","arguments":"{\"city\":\"Paris\"}"})
        );
        assert_eq!(c[2]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn a_candidate_index_no_request_asks_for_is_not_state() {
        let input = b"data: {\"candidates\":[{\"index\":4000000000,\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}\n\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ok\"}]},\"finishReason\":\"STOP\"}]}\n\n";
        let mut t = StreamTranslator::new(ctx(), false);
        let mut out = Vec::new();
        t.push(input, &mut out);
        assert!(t.finish(&mut out));
        assert!(t.choices.len() <= 1, "{}", t.choices.len());
        let c = chunks(&out);
        assert_eq!(c[0]["choices"][0]["delta"]["content"], "ok");
    }

    #[test]
    fn stream_tool_calls() {
        let input = sse_of(fixture!("stream_tool_calls.json"));
        let (out, ok) = run(&input, &[], false);
        assert!(ok);
        let c = chunks(&out);
        assert_eq!(c.len(), 4, "{}", String::from_utf8_lossy(&out));
        assert_eq!(
            c[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":"Checking both."})
        );
        let t0 = &c[1]["choices"][0]["delta"]["tool_calls"][0];
        let t1 = &c[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(t0["index"], 0);
        assert_eq!(t1["index"], 1);
        assert_eq!(t0["type"], "function");
        assert_eq!(
            t0["function"],
            json!({"name":"get_weather","arguments":"{\"city\":\"Paris\"}"})
        );
        assert_eq!(
            t0["extra_content"]["google"]["thought_signature"],
            "CiQBjz1rX+/sig=="
        );
        assert_ne!(t0["id"], t1["id"]);
        assert_eq!(c[3]["choices"][0]["finish_reason"], "tool_calls");
        // Same ids as the non-stream translation of the same calls.
        let (body, _) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            resp["choices"][0]["message"]["tool_calls"][0]["id"],
            t0["id"]
        );
    }

    #[test]
    fn stream_upstream_error_event() {
        let mut input = sse_of(fixture!("stream_text.json"));
        input.truncate(input.len() / 3);
        let cut = input.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap() + 4;
        input.truncate(cut);
        input.extend_from_slice(b"data: ");
        input.extend_from_slice(fixture!("error_429.json").trim().as_bytes());
        input.extend_from_slice(b"\r\n\r\n");
        let (out, ok) = run(&input, &[], true);
        assert!(!ok);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("[DONE]"));
        let last = s.trim_end().rsplit("\n\n").next().unwrap();
        let e = v(last.strip_prefix("data: ").unwrap());
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "resource_exhausted");
    }

    #[test]
    fn stream_cut_before_finish_is_an_error() {
        let input = sse_of(fixture!("stream_text.json"));
        let cut = input.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap();
        let cut = input[..cut]
            .windows(4)
            .rposition(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        let (out, ok) = run(&input[..cut], &[], true);
        assert!(!ok);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("[DONE]"));
        assert!(s.contains("\"type\":\"upstream_error\""));
        // And fail() after that adds nothing.
        let mut t = StreamTranslator::new(ctx(), false);
        let mut out = Vec::new();
        t.fail("connection reset", &mut out);
        assert!(String::from_utf8_lossy(&out).contains("connection reset"));
        let n = out.len();
        t.fail("again", &mut out);
        assert!(!t.finish(&mut out));
        assert_eq!(out.len(), n);
    }

    #[test]
    fn stream_blocked_prompt() {
        let input = format!("data: {}\r\n\r\n", v(fixture!("response_blocked.json")));
        let (out, ok) = run(input.as_bytes(), &[], false);
        assert!(ok);
        let c = chunks(&out);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c[1]["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn stream_without_trailing_blank_line_still_finishes() {
        let input = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"STOP\"}]}";
        let (out, ok) = run(input, &[], false);
        assert!(ok);
        assert_eq!(chunks(&out).len(), 2);
    }
}
