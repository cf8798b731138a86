//! The Responses event writer (`event:` line, rising `sequence_number` from 0), and
//! [`response_to_events`]: a whole `response` object replayed as the event stream a
//! client that asked for `stream: true` expects.

use serde::Serialize;
use serde_json::{json, Value};

use crate::providers::openai::responses_wire::{
    ArgumentsEvent, ContentPart, ContentPartEvent, EmptyList, Event, ItemEvent, RefusalEvent,
    RefusalPart, ResponseEvent, SummaryPart, SummaryPartEvent, SummaryTextEvent, TextDelta,
    TextDone,
};

/// Writes events into the caller's buffer; a muted writer (for whole answers, which run
/// the same state machine) writes nothing.
pub(super) struct Events {
    seq: u64,
    on: bool,
}

impl Events {
    pub(super) fn new(on: bool) -> Self {
        Events { seq: 0, on }
    }

    /// Whether events are written (a whole answer runs the same machine muted).
    pub(super) fn on(&self) -> bool {
        self.on
    }

    pub(super) fn write<T: Serialize>(&mut self, out: &mut Vec<u8>, kind: &str, body: T) {
        if !self.on {
            return;
        }
        self.head(out, kind);
        let event = Event {
            kind,
            sequence_number: self.seq,
            body,
        };
        // Serialising these plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &event);
        self.tail(out);
    }

    /// A lifecycle event around an already serialised `response` object.
    pub(super) fn write_response(&mut self, out: &mut Vec<u8>, kind: &str, response: &[u8]) {
        if !self.on {
            return;
        }
        self.head(out, kind);
        out.extend_from_slice(b"{\"type\":");
        let _ = serde_json::to_writer(&mut *out, kind);
        out.extend_from_slice(b",\"sequence_number\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.seq).as_bytes());
        out.extend_from_slice(b",\"response\":");
        out.extend_from_slice(response);
        out.push(b'}');
        self.tail(out);
    }

    fn head(&self, out: &mut Vec<u8>, kind: &str) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
    }

    fn tail(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\n\n");
        self.seq += 1;
    }
}

/// A whole `response` object (the gateway's or OpenAI's) → `response.created`,
/// `response.in_progress`, each output item's events, then `response.completed` /
/// `.incomplete` / `.failed` as its status says. `None` when it is not a finished response.
pub fn response_to_events(response: &[u8]) -> Option<Vec<u8>> {
    let resp: Value = serde_json::from_slice(response).ok()?;
    resp.get("id")?.as_str()?;
    let terminal = match resp.get("status").and_then(Value::as_str)? {
        "completed" => "response.completed",
        "incomplete" => "response.incomplete",
        "failed" => "response.failed",
        _ => return None,
    };
    let mut started = resp.clone();
    for (key, value) in [
        ("status", json!("in_progress")),
        ("output", json!([])),
        ("usage", Value::Null),
        ("error", Value::Null),
        ("incomplete_details", Value::Null),
    ] {
        started[key] = value;
    }
    let mut ev = Events::new(true);
    let mut out = Vec::with_capacity(response.len() * 2 + 512);
    ev.write(
        &mut out,
        "response.created",
        ResponseEvent { response: &started },
    );
    ev.write(
        &mut out,
        "response.in_progress",
        ResponseEvent { response: &started },
    );
    let output = resp.get("output").and_then(Value::as_array);
    for (index, item) in output.into_iter().flatten().enumerate() {
        replay_item(&mut ev, index, item, &mut out);
    }
    ev.write(&mut out, terminal, ResponseEvent { response: &resp });
    Some(out)
}

fn replay_item(ev: &mut Events, index: usize, item: &Value, out: &mut Vec<u8>) {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let id = item.get("id").and_then(Value::as_str).unwrap_or("");
    ev.write(
        out,
        "response.output_item.added",
        ItemEvent {
            output_index: index,
            item: started_item(item, kind),
        },
    );
    let list = |key| {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    match kind {
        "message" => {
            for (ci, part) in list("content").enumerate() {
                replay_content(ev, (id, index, ci), part, out);
            }
        }
        "reasoning" => {
            for (si, part) in list("summary").enumerate() {
                let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                replay_summary(ev, (id, index, si), text, out);
            }
        }
        "function_call" => {
            let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
            let name = item.get("name").and_then(Value::as_str);
            replay_arguments(ev, (id, index), name, args, out);
        }
        _ => {}
    }
    ev.write(
        out,
        "response.output_item.done",
        ItemEvent {
            output_index: index,
            item,
        },
    );
}

/// The item as it looked when it started: no content, arguments or summary yet.
fn started_item(item: &Value, kind: &str) -> Value {
    let mut started = item.clone();
    let Some(obj) = started.as_object_mut() else {
        return started;
    };
    match kind {
        "message" => {
            obj.insert("content".into(), json!([]));
        }
        "function_call" => {
            obj.insert("arguments".into(), json!(""));
        }
        "reasoning" => {
            obj.insert("summary".into(), json!([]));
            obj.remove("encrypted_content");
        }
        _ => {}
    }
    if obj.contains_key("status") {
        obj.insert("status".into(), json!("in_progress"));
    }
    started
}

/// (item id, output index, content / summary index).
type At<'a> = (&'a str, usize, usize);

fn replay_content(ev: &mut Events, (item_id, oi, ci): At<'_>, part: &Value, out: &mut Vec<u8>) {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text = |key| part.get(key).and_then(Value::as_str).unwrap_or("");
    match kind {
        "output_text" => {
            let empty = ContentPart {
                kind,
                text: "",
                annotations: EmptyList,
                logprobs: EmptyList,
            };
            ev.write(
                out,
                "response.content_part.added",
                part_event((item_id, oi, ci), empty),
            );
            let text = text("text");
            if !text.is_empty() {
                let delta = TextDelta {
                    item_id,
                    output_index: oi,
                    content_index: ci,
                    delta: text,
                    logprobs: EmptyList,
                };
                ev.write(out, "response.output_text.delta", delta);
            }
            let done = TextDone {
                item_id,
                output_index: oi,
                content_index: ci,
                text,
                logprobs: EmptyList,
            };
            ev.write(out, "response.output_text.done", done);
        }
        "refusal" => {
            let empty = RefusalPart {
                kind: "refusal",
                refusal: "",
            };
            ev.write(
                out,
                "response.content_part.added",
                part_event((item_id, oi, ci), empty),
            );
            let refusal = text("refusal");
            let delta = RefusalEvent {
                item_id,
                output_index: oi,
                content_index: ci,
                delta: Some(refusal),
                refusal: None,
            };
            ev.write(out, "response.refusal.delta", delta);
            let done = RefusalEvent {
                delta: None,
                refusal: Some(refusal),
                ..delta
            };
            ev.write(out, "response.refusal.done", done);
        }
        _ => return,
    }
    ev.write(
        out,
        "response.content_part.done",
        part_event((item_id, oi, ci), part),
    );
}

fn part_event<P>((item_id, oi, ci): At<'_>, part: P) -> ContentPartEvent<'_, P> {
    ContentPartEvent {
        item_id,
        output_index: oi,
        content_index: ci,
        part,
    }
}

/// The four events of one summary part, shared with the live stream.
pub(super) fn replay_summary(
    ev: &mut Events,
    (item_id, oi, si): At<'_>,
    text: &str,
    out: &mut Vec<u8>,
) {
    summary_part(
        ev,
        "response.reasoning_summary_part.added",
        (item_id, oi, si),
        "",
        out,
    );
    if !text.is_empty() {
        summary_text(ev, (item_id, oi, si), Some(text), None, out);
    }
    summary_text(ev, (item_id, oi, si), None, Some(text), out);
    summary_part(
        ev,
        "response.reasoning_summary_part.done",
        (item_id, oi, si),
        text,
        out,
    );
}

pub(super) fn summary_part(
    ev: &mut Events,
    kind: &str,
    (item_id, oi, si): At<'_>,
    text: &str,
    out: &mut Vec<u8>,
) {
    let event = SummaryPartEvent {
        item_id,
        output_index: oi,
        summary_index: si,
        part: SummaryPart {
            kind: "summary_text",
            text,
        },
    };
    ev.write(out, kind, event);
}

/// `.delta` when `delta` is set, else `.done` with the whole `text`.
pub(super) fn summary_text(
    ev: &mut Events,
    (item_id, oi, si): At<'_>,
    delta: Option<&str>,
    text: Option<&str>,
    out: &mut Vec<u8>,
) {
    let kind = if delta.is_some() {
        "response.reasoning_summary_text.delta"
    } else {
        "response.reasoning_summary_text.done"
    };
    let event = SummaryTextEvent {
        item_id,
        output_index: oi,
        summary_index: si,
        delta,
        text,
    };
    ev.write(out, kind, event);
}

/// `response.function_call_arguments.delta` (all of them at once: Gemini sends whole
/// calls) and `.done`; shared with the live stream.
pub(super) fn replay_arguments(
    ev: &mut Events,
    (item_id, oi): (&str, usize),
    name: Option<&str>,
    arguments: &str,
    out: &mut Vec<u8>,
) {
    let delta = ArgumentsEvent {
        item_id,
        output_index: oi,
        delta: Some(arguments),
        name: None,
        arguments: None,
    };
    ev.write(out, "response.function_call_arguments.delta", delta);
    let done = ArgumentsEvent {
        item_id,
        output_index: oi,
        delta: None,
        name,
        arguments: Some(arguments),
    };
    ev.write(out, "response.function_call_arguments.done", done);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::responses::response::responses_response;
    use crate::providers::gemini::responses::test_support::*;

    fn replay(response: &Value) -> Vec<Value> {
        events_of(&response_to_events(response.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn a_translated_response_replays_as_its_event_stream() {
        let gemini = json!({"candidates":[{"content":{"parts":[
            {"text":"Hmm.","thought":true},
            {"text":"Calling."},
            {"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"U0lH"}]},
            "finishReason":"STOP"}]});
        let (body, _, _) =
            responses_response(gemini.to_string().as_bytes(), rcx(&json!({}))).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        let ev = replay(&resp);
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
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(ev[0]["response"]["status"], "in_progress");
        assert_eq!(ev[0]["response"]["output"], json!([]));
        assert_eq!(ev[2]["item"]["summary"], json!([]));
        assert!(
            ev[14]["item"].get("encrypted_content").is_none(),
            "only on done"
        );
        assert_eq!(ev[15]["item"], resp["output"][2]);
        assert_eq!(ev[16]["item"]["arguments"], "");
        assert_eq!(ev[16]["item"]["status"], "in_progress");
        assert_eq!(ev[17]["delta"], "{\"a\":1}");
        assert_eq!(ev[18]["name"], "f");
        assert_eq!(ev[10]["delta"], "Calling.");
        assert_eq!(
            ev.last().unwrap()["response"],
            resp,
            "the terminal event carries it whole"
        );
    }

    #[test]
    fn openai_answers_replay_too_refusals_and_all() {
        let resp = json!({"id":"resp_abc","object":"response","status":"incomplete",
            "incomplete_details":{"reason":"max_output_tokens"},
            "output":[{"type":"message","id":"msg_1","status":"incomplete","role":"assistant","content":[
                {"type":"refusal","refusal":"No."},
                {"type":"output_text","text":"","annotations":[]}]},
                {"type":"web_search_call","id":"ws_1","status":"completed"}],
            "usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}});
        let ev = replay(&resp);
        assert_eq!(
            types(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        assert_eq!(ev[0]["response"]["incomplete_details"], Value::Null);
        assert_eq!(ev[3]["part"], json!({"type":"refusal","refusal":""}));
        assert_eq!(ev[5]["refusal"], "No.");
        assert_eq!(ev[7]["content_index"], 1);
        assert_eq!(ev[11]["item"]["status"], "in_progress");
        let failed = json!({"id":"resp_x","status":"failed","error":{"code":"server_error","message":"m"},"output":[]});
        assert_eq!(replay(&failed).last().unwrap()["type"], "response.failed");
    }

    #[test]
    fn what_is_not_a_finished_response_does_not_replay() {
        for body in [
            &b"not json"[..],
            br#"{"object":"response","status":"completed"}"#,
            br#"{"id":"resp_1","status":"in_progress"}"#,
            br#"{"id":"resp_1"}"#,
            br#"[1]"#,
        ] {
            assert!(
                response_to_events(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
