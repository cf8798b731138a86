//! Gemini `streamGenerateContent?alt=sse` → the Responses event stream, event by event as
//! upstream chunks arrive (split anywhere).

use super::output::Output;
use super::response::ResponsesContext;
use crate::providers::gemini::response::Usage;
use crate::providers::gemini::wire::GenerateContentResponse;
use crate::sse::SseParser;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Open,
    Done,
    Failed,
}

/// Gemini SSE bytes in arbitrary splits → Responses SSE bytes (`event: …\ndata: {…}\n\n`),
/// from `response.created` to `response.completed` / `.incomplete` / `.failed`.
pub struct ResponsesStreamTranslator {
    parser: SseParser,
    output: Output,
    state: State,
}

impl ResponsesStreamTranslator {
    /// One translator per answer; `cx` names the response and what it echoes.
    pub fn new(cx: ResponsesContext) -> Self {
        ResponsesStreamTranslator {
            parser: SseParser::new(),
            output: Output::new(cx, true),
            state: State::Open,
        }
    }

    /// Appends the events of every complete upstream event to `out` (the first call also
    /// writes `response.created` and `response.in_progress`); keeps partial input.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        self.output.start(out);
        self.parser.push(chunk);
        while let Some(ev) = self.parser.next_event() {
            self.event(&ev.data, out);
            if self.state != State::Open {
                return;
            }
        }
    }

    /// Upstream ended cleanly: `response.completed` (or `.incomplete`) and true; without a
    /// finishReason the stream was cut: `response.failed` and false.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        while self.state == State::Open {
            let Some(ev) = self.parser.flush() else { break };
            self.event(&ev.data, out);
        }
        match self.state {
            State::Done => return true,
            State::Failed => return false,
            State::Open => {}
        }
        if !self.output.ended() {
            self.fail(
                "upstream stream ended before the response was complete",
                out,
            );
            return false;
        }
        self.output.complete(out);
        self.state = State::Done;
        true
    }

    /// Upstream failed mid-stream: `response.failed`, never `response.completed`.
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.fail_with("server_error", message, out);
    }

    /// The latest `usageMetadata` seen, as the gateway counts tokens.
    pub fn usage(&self) -> Option<Usage> {
        self.output.usage()
    }

    /// Input bytes held while waiting for the end of an event (the caller bounds it).
    pub fn pending_bytes(&self) -> usize {
        self.parser.pending_bytes()
    }

    /// What the final `response` object holds so far (text, arguments, signatures).
    pub fn held_bytes(&self) -> usize {
        self.output.held_bytes()
    }

    /// The finished `response` object (completed or incomplete), for storage.
    pub fn final_response(&self) -> Option<Vec<u8>> {
        match self.state {
            State::Done => self.output.body().map(<[u8]>::to_vec),
            State::Open | State::Failed => None,
        }
    }

    fn fail_with(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.state == State::Open {
            self.output.fail(code, message, out);
            self.state = State::Failed;
        }
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
                return self.fail_with("server_error", &msg, out);
            }
        };
        if let Some(err) = &resp.error {
            let msg = err.message.as_ref().map_or("upstream error", |m| &m.0);
            let code = match err.status.as_ref().map(|s| &*s.0) {
                Some("RESOURCE_EXHAUSTED") => "rate_limit_exceeded",
                _ => "server_error",
            };
            return self.fail_with(code, msg, out);
        }
        self.output.answer(&resp, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::responses::response::responses_response;
    use crate::providers::gemini::responses::test_support::*;
    use crate::providers::gemini::test_support::{sse_of, v};
    use serde_json::{json, Value};

    fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool, Option<Vec<u8>>) {
        let mut t = ResponsesStreamTranslator::new(rcx(&json!({"input":"q"})));
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            t.push(&input[prev..c], &mut out);
            prev = c;
        }
        let ok = t.finish(&mut out);
        (out, ok, t.final_response())
    }

    /// Thought, text, a signed call and its parallel sibling, then a text signature.
    const MIXED: &str = r#"[
      {"candidates":[{"content":{"parts":[{"text":"Plan","thought":true}]}}]},
      {"candidates":[{"content":{"parts":[{"text":" more.","thought":true}]}}]},
      {"candidates":[{"content":{"parts":[{"text":"Sure: "}]}}]},
      {"candidates":[{"content":{"parts":[
        {"functionCall":{"name":"a","args":{"q":"é"}},"thoughtSignature":"U0lH"},
        {"functionCall":{"name":"b"}}]}}]},
      {"candidates":[{"content":{"parts":[{"text":"ok"},{"text":"","thoughtSignature":"VFhU"}]},
        "finishReason":"STOP"}],
       "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"thoughtsTokenCount":2,
        "cachedContentTokenCount":1,"totalTokenCount":9}}
    ]"#;

    /// [`MIXED`] as one whole answer: every chunk's parts, the last chunk's end and usage.
    fn mixed_whole() -> Value {
        let parts: Vec<Value> = v(MIXED)
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                c["candidates"][0]["content"]["parts"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        json!({"candidates":[{"content":{"parts":parts},"finishReason":"STOP"}],
            "usageMetadata":v(MIXED)[4]["usageMetadata"]})
    }

    #[test]
    fn text_stream_event_sequence() {
        let (out, ok, _) = run(&sse_of(fixture!("stream_text.json")), &[]);
        assert!(ok);
        let ev = events_of(&out);
        assert_eq!(
            types(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(ev[0]["response"]["status"], "in_progress");
        assert_eq!(ev[0]["response"]["output"], json!([]));
        assert_eq!(ev[0]["response"]["usage"], Value::Null);
        assert_eq!(ev[0]["response"]["id"], RESP_ID);
        assert_eq!(ev[2]["output_index"], 0);
        assert_eq!(ev[2]["item"]["type"], "reasoning");
        assert_eq!(ev[4]["delta"], "Thinking");
        assert_eq!(
            ev[8]["item"],
            json!({"type":"message","id":ev[8]["item"]["id"],
            "status":"in_progress","role":"assistant","content":[]})
        );
        let msg_id = ev[8]["item"]["id"].clone();
        assert_eq!(
            ev[9]["part"],
            json!({"type":"output_text","text":"","annotations":[],"logprobs":[]})
        );
        assert_eq!(ev[10]["delta"], "Hello");
        assert_eq!(ev[11]["delta"], ", wörld \"quoted\"\n");
        for e in &ev[9..15] {
            assert_eq!(e["item_id"], msg_id, "{e}");
            assert_eq!(e["output_index"], 1);
            assert_eq!(e["content_index"], 0);
        }
        assert_eq!(ev[13]["text"], "Hello, wörld \"quoted\"\n!");
        assert_eq!(ev[15]["item"]["status"], "completed");
        let done = &ev[16]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().unwrap().len(), 2);
        assert_eq!(
            done["usage"],
            json!({"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,
                "output_tokens_details":{"reasoning_tokens":3},"total_tokens":12})
        );
    }

    #[test]
    fn tool_call_stream_event_sequence() {
        let (out, ok, _) = run(&sse_of(fixture!("stream_tool_calls.json")), &[]);
        assert!(ok);
        let ev = events_of(&out);
        let call = [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
        ];
        let mut want = vec!["response.created", "response.in_progress"];
        want.extend([
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            // The signature's reasoning item, then both calls.
            "response.output_item.added",
            "response.output_item.done",
        ]);
        want.extend(call);
        want.extend(call);
        want.push("response.completed");
        assert_eq!(types(&ev), want);
        assert_eq!(ev[8]["item"]["type"], "reasoning");
        assert!(ev[9]["item"]["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("gemini.ts1."));
        let added = &ev[10]["item"];
        assert_eq!(added["type"], "function_call");
        assert_eq!(added["arguments"], "");
        assert_eq!(added["status"], "in_progress");
        assert_eq!(ev[11]["delta"], "{\"city\":\"Paris\"}");
        assert_eq!(ev[11]["item_id"], added["id"]);
        assert_eq!(ev[12]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(ev[12]["name"], "get_weather");
        assert_eq!(ev[13]["item"]["status"], "completed");
        assert_eq!(ev[13]["output_index"], 2);
        assert_eq!(ev[17]["output_index"], 3);
        // The same items as the whole answer to the same parts.
        let (whole, _, _) = responses_response(
            fixture!("response_tool_calls.json").as_bytes(),
            rcx(&json!({"input":"q"})),
        )
        .unwrap();
        let whole: Value = serde_json::from_slice(&whole).unwrap();
        let strip = |items: &[Value]| -> Vec<(Value, Value, Value)> {
            items
                .iter()
                .map(|i| (i["type"].clone(), i["name"].clone(), i["arguments"].clone()))
                .collect()
        };
        let streamed = ev.last().unwrap()["response"]["output"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            strip(&streamed[1..]),
            strip(whole["output"].as_array().unwrap())
        );
    }

    #[test]
    fn split_at_every_byte_gives_the_same_events() {
        for fixture in [
            fixture!("stream_text.json"),
            fixture!("stream_tool_calls.json"),
            MIXED,
        ] {
            let input = sse_of(fixture);
            let whole = run(&input, &[]);
            assert!(whole.1);
            for cut in 0..=input.len() {
                assert_eq!(run(&input, &[cut]), whole, "cut at {cut}");
            }
            let every: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run(&input, &every), whole, "one byte at a time");
        }
    }

    #[test]
    fn stream_and_whole_answer_agree() {
        let (out, ok, fin) = run(&sse_of(MIXED), &[]);
        assert!(ok);
        let ev = events_of(&out);
        let completed = &ev.last().unwrap()["response"];
        let fin: Value = serde_json::from_slice(&fin.unwrap()).unwrap();
        assert_eq!(
            &fin, completed,
            "final_response is what response.completed carried"
        );
        let whole = mixed_whole();
        let (body, _, usage) =
            responses_response(whole.to_string().as_bytes(), rcx(&json!({"input":"q"}))).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, fin, "same items, ids and signatures either way");
        let kinds: Vec<&str> = fin["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "reasoning",
                "message",
                "reasoning",
                "function_call",
                "function_call",
                "message",
                "reasoning"
            ]
        );
        assert_eq!(fin["output"][0]["summary"][0]["text"], "Plan more.");
        assert_eq!(fin["output"][3]["arguments"], "{\"q\":\"é\"}");
        assert_eq!(fin["output"][4]["arguments"], "{}");
        assert_eq!(usage.completion_tokens, 6);
    }

    #[test]
    fn parallel_tool_calls_false_keeps_the_first_call_streamed_or_whole() {
        let req = json!({"input":"q","parallel_tool_calls":false});
        let mut t = ResponsesStreamTranslator::new(rcx(&req));
        let mut out = Vec::new();
        t.push(&sse_of(MIXED), &mut out);
        assert!(t.finish(&mut out));
        // Numbering stays unbroken (events_of checks it) with the second call left out.
        let ev = events_of(&out);
        let added: Vec<&str> = ev
            .iter()
            .filter(|e| e["type"] == "response.output_item.added")
            .map(|e| e["item"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            added,
            [
                "reasoning",
                "message",
                "reasoning",
                "function_call",
                "message",
                "reasoning"
            ]
        );
        let second = b"\"name\":\"b\"";
        assert!(
            !out.windows(second.len()).any(|w| w == second),
            "the second call is in no event"
        );
        let fin: Value = serde_json::from_slice(&t.final_response().unwrap()).unwrap();
        assert_eq!(fin["parallel_tool_calls"], false);
        let calls: Vec<&Value> = fin["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        assert_eq!(calls.len(), 1, "{fin}");
        assert_eq!(calls[0]["name"], "a");
        // The signed call's output indexes stay those of the items shown.
        let indexes: Vec<u64> = ev
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| e["output_index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
        let whole = mixed_whole();
        let (body, _, _) = responses_response(whole.to_string().as_bytes(), rcx(&req)).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, fin, "the whole answer keeps the same one call");
    }

    #[test]
    fn events_leave_as_soon_as_their_chunk_arrives() {
        let input = sse_of(fixture!("stream_text.json"));
        let mut t = ResponsesStreamTranslator::new(rcx(&json!({})));
        let mut out = Vec::new();
        t.push(b"da", &mut out);
        assert_eq!(
            types(&events_of(&out)),
            ["response.created", "response.in_progress"],
            "the response starts with the first bytes"
        );
        let second = input
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n\r\n")
            .nth(1)
            .unwrap()
            .0
            + 4;
        t.push(&input[2..second], &mut out);
        let ev = events_of(&out);
        assert_eq!(ev.last().unwrap()["type"], "response.output_text.delta");
        assert_eq!(ev.last().unwrap()["delta"], "Hello");
        assert_eq!(t.usage().unwrap().completion_tokens, 1);
        assert!(t.final_response().is_none(), "not finished yet");
        assert!(t.pending_bytes() < 8);
    }

    #[test]
    fn cut_stream_fails_and_never_completes() {
        let input = sse_of(fixture!("stream_text.json"));
        let cut = input.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap();
        let cut = input[..cut]
            .windows(4)
            .rposition(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        let (out, ok, fin) = run(&input[..cut], &[]);
        assert!(!ok);
        assert!(fin.is_none());
        let ev = events_of(&out);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["code"], "server_error");
        assert!(!types(&ev).contains(&"response.completed"));
    }

    #[test]
    fn upstream_error_event_fails_the_response() {
        let mut input = sse_of(fixture!("stream_text.json"));
        let cut = input.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        input.truncate(cut);
        input.extend_from_slice(b"data: ");
        input.extend_from_slice(fixture!("error_429.json").trim().as_bytes());
        input.extend_from_slice(b"\r\n\r\n");
        let (out, ok, _) = run(&input, &[]);
        assert!(!ok);
        let ev = events_of(&out);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(
            last["response"]["error"],
            json!({"code":"rate_limit_exceeded","message":"Resource has been exhausted (e.g. check quota)."})
        );
        let (out, ok, _) = run(b"data: {not json\n\n", &[]);
        assert!(!ok);
        assert_eq!(events_of(&out).last().unwrap()["type"], "response.failed");
    }

    #[test]
    fn fail_writes_one_failed_event() {
        let mut t = ResponsesStreamTranslator::new(rcx(&json!({})));
        let mut out = Vec::new();
        t.fail("connection reset", &mut out);
        let ev = events_of(&out);
        assert_eq!(
            types(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        assert_eq!(ev[2]["response"]["error"]["message"], "connection reset");
        let n = out.len();
        t.fail("again", &mut out);
        t.push(b"data: {}\n\n", &mut out);
        assert!(!t.finish(&mut out));
        assert_eq!(out.len(), n, "nothing after a failure");
        assert!(t.final_response().is_none());
    }

    #[test]
    fn max_tokens_and_blocked_prompts_end_incomplete() {
        let input = sse_of(
            r#"[{"candidates":[{"content":{"parts":[{"text":"Once"}]}}]},
            {"candidates":[{"content":{"parts":[{"text":" upon"}]},"finishReason":"MAX_TOKENS"}]}]"#,
        );
        let (out, ok, fin) = run(&input, &[]);
        assert!(ok, "an incomplete answer still ended properly");
        let ev = events_of(&out);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert!(fin.is_some());
        let blocked = format!("data: {}\r\n\r\n", v(fixture!("response_blocked.json")));
        let (out, ok, _) = run(blocked.as_bytes(), &[]);
        assert!(ok);
        let ev = events_of(&out);
        assert_eq!(
            types(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.incomplete"
            ]
        );
        assert_eq!(
            ev[2]["response"]["incomplete_details"]["reason"],
            "content_filter"
        );
    }
}
