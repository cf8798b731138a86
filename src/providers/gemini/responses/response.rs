//! A whole Gemini answer → a Responses `response` object, and the context every answer
//! needs (the minted id and what the response repeats of its request).

use serde_json::Value;

use super::output::{End, Output};
use crate::providers::gemini::error::{no_param, Result};
use crate::providers::gemini::response::{parse_response, Usage};
use crate::providers::openai::responses_wire::Echo;

/// What an answer needs besides Gemini's bytes: the gateway-minted id (`resp_gw…`), the
/// model to report, the creation time, and the request fields a response repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesContext {
    pub id: String,
    pub model: String,
    pub created_at: u64,
    pub(crate) echo: Echo,
    /// `parallel_tool_calls` (default true). Gemini has no such switch, so with `false` the
    /// answer keeps its first function call only, as OpenAI's would hold one.
    pub(crate) parallel_tool_calls: bool,
}

impl ResponsesContext {
    /// `req` is the client's request body (anything else echoes OpenAI's defaults).
    pub fn new(req: &Value, id: String, model: String, created_at: u64) -> Self {
        ResponsesContext {
            id,
            model,
            created_at,
            echo: echo(req),
            parallel_tool_calls: req
                .get("parallel_tool_calls")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        }
    }
}

/// The request fields a response repeats (besides `store`, which every request may set).
const ECHOED: [&str; 15] = [
    "instructions",
    "max_output_tokens",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "user",
    "metadata",
];

/// The echo of a request that sets none of [`ECHOED`], for `store` false and true: written
/// once, not per request (it is half of a short answer's writing).
static DEFAULT_ECHO: std::sync::LazyLock<[Vec<u8>; 2]> = std::sync::LazyLock::new(|| {
    let of = |store: bool| write_echo(&serde_json::json!({ "store": store }));
    [of(false), of(true)]
});

/// The request fields as a response repeats them, with OpenAI's defaults for the rest,
/// written straight from the request (nothing copied into owned values).
fn echo(req: &Value) -> Echo {
    let obj = req.as_object();
    let defaults = obj.is_some_and(|m| {
        m.iter()
            .all(|(k, v)| v.is_null() || !ECHOED.contains(&k.as_str()))
    });
    let members = if defaults {
        let store = obj
            .and_then(|m| m.get("store"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        std::borrow::Cow::Borrowed(DEFAULT_ECHO[usize::from(store)].as_slice())
    } else {
        std::borrow::Cow::Owned(write_echo(req))
    };
    Echo { members }
}

fn write_echo(req: &Value) -> Vec<u8> {
    // A request has a handful of fields: comparing names is cheaper than hashing each
    // of the dozen looked up (the map hashes with SipHash).
    let obj = req.as_object();
    let get = |key: &str| {
        obj.and_then(|m| {
            if m.len() <= 16 {
                m.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
            } else {
                m.get(key)
            }
        })
        .filter(|v| !v.is_null())
    };
    let reasoning = get("reasoning");
    let mut w = Members::default();
    w.raw("background", "false");
    w.value("instructions", get("instructions"), "null");
    w.value("max_output_tokens", get("max_output_tokens"), "null");
    w.raw("max_tool_calls", "null");
    let parallel = get("parallel_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    w.raw(
        "parallel_tool_calls",
        if parallel { "true" } else { "false" },
    );
    w.value("previous_response_id", get("previous_response_id"), "null");
    w.value("prompt_cache_key", get("prompt_cache_key"), "null");
    let field = |key: &str| nested(reasoning, key);
    w.open("reasoning");
    w.value("effort", field("effort"), "null");
    w.value(
        "summary",
        field("summary").or_else(|| field("generate_summary")),
        "null",
    );
    w.close();
    w.value("safety_identifier", get("safety_identifier"), "null");
    match get("service_tier").and_then(Value::as_str) {
        Some("auto") | None => w.raw("service_tier", "\"default\""),
        Some(_) => w.value("service_tier", get("service_tier"), "null"),
    }
    let store = get("store").and_then(Value::as_bool).unwrap_or(true);
    w.raw("store", if store { "true" } else { "false" });
    w.value("temperature", get("temperature"), "null");
    let text = get("text");
    w.open("text");
    w.value("format", nested(text, "format"), "{\"type\":\"text\"}");
    w.value("verbosity", nested(text, "verbosity"), "\"medium\"");
    w.close();
    w.value("tool_choice", get("tool_choice"), "\"auto\"");
    w.value("tools", get("tools"), "[]");
    w.raw("top_logprobs", "0");
    w.value("top_p", get("top_p"), "null");
    w.raw("truncation", "\"disabled\"");
    w.value("user", get("user"), "null");
    w.value("metadata", get("metadata"), "{}");
    w.out
}

/// `outer[key]` unless absent or null.
fn nested<'a>(outer: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    outer.and_then(|o| o.get(key)).filter(|v| !v.is_null())
}

/// JSON object members written in order (the caller adds no braces at the top level).
#[derive(Default)]
struct Members {
    out: Vec<u8>,
    /// A member was written at the current depth (so the next needs a comma).
    more: bool,
}

impl Members {
    fn name(&mut self, name: &str) {
        if self.more {
            self.out.push(b',');
        }
        self.more = true;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn raw(&mut self, name: &str, json: &str) {
        self.name(name);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn value(&mut self, name: &str, v: Option<&Value>, default: &str) {
        match v {
            // Writing a `Value` into a Vec cannot fail.
            Some(v) => {
                self.name(name);
                let _ = serde_json::to_writer(&mut self.out, v);
            }
            None => self.raw(name, default),
        }
    }

    fn open(&mut self, name: &str) {
        self.name(name);
        self.out.push(b'{');
        self.more = false;
    }

    fn close(&mut self) {
        self.out.push(b'}');
        self.more = true;
    }
}

/// A whole (non-stream) Gemini answer → the `response` object as JSON bytes, and usage.
/// The response object, where its `output` array is in it, and the usage.
pub fn responses_response(
    gemini: &[u8],
    cx: ResponsesContext,
) -> Result<(Vec<u8>, std::ops::Range<usize>, Usage)> {
    let resp = parse_response(gemini)?;
    let mut output = Output::new(cx, false);
    let mut muted = Vec::new();
    output.answer(&resp, &mut muted);
    if !output.ended() {
        output.finish(End::Completed, &mut muted);
    }
    output.complete(&mut muted);
    let usage = output.usage().unwrap_or_default();
    let (body, span) = output
        .take_body()
        .ok_or_else(|| no_param("the answer could not be written"))?;
    Ok((body, span, usage))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::responses::request::responses_request;
    use crate::providers::gemini::responses::test_support::*;
    use crate::providers::gemini::test_support::v;
    use serde_json::json;

    fn answer(gemini: &Value, req: &Value) -> (Value, Usage) {
        let (body, span, usage) =
            responses_response(gemini.to_string().as_bytes(), rcx(req)).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        // The span is the `output` array, exactly.
        let output: Value = serde_json::from_slice(&body[span]).unwrap();
        assert_eq!(output, got["output"]);
        (got, usage)
    }

    fn one(parts: Value, finish: &str) -> Value {
        json!({"candidates":[{"content":{"role":"model","parts":parts},"finishReason":finish}]})
    }

    #[test]
    fn text_answer_with_thoughts_matches_the_response_shape() {
        let (got, usage) = answer(&v(fixture!("response_text.json")), &json!({"input":"q"}));
        let stem = &RESP_ID["resp_".len()..];
        assert_eq!(
            got,
            json!({
                "id": RESP_ID, "object": "response", "created_at": 1_700_000_000,
                "status": "completed", "error": null, "incomplete_details": null,
                "model": "gemini-3-pro-preview",
                "output": [
                    {"type":"reasoning","id":format!("rs_{stem}_0"),
                     "summary":[{"type":"summary_text","text":"Let me think about \"this\"..."}]},
                    {"type":"message","id":format!("msg_{stem}_1"),"status":"completed","role":"assistant",
                     "content":[{"type":"output_text","text":"The answer is 42.\n","annotations":[],"logprobs":[]}]}
                ],
                "background": false, "instructions": null, "max_output_tokens": null,
                "max_tool_calls": null, "parallel_tool_calls": true, "previous_response_id": null,
                "prompt_cache_key": null, "reasoning": {"effort": null, "summary": null},
                "safety_identifier": null, "service_tier": "default", "store": true,
                "temperature": null, "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": null,
                "truncation": "disabled", "user": null, "metadata": {},
                "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4},
                    "output_tokens": 37, "output_tokens_details": {"reasoning_tokens": 30},
                    "total_tokens": 49}
            })
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 37,
                total_tokens: 49
            }
        );
    }

    #[test]
    fn request_fields_are_echoed() {
        let req = json!({"model":"x","input":"q","instructions":"Be kind.","temperature":0.3,"top_p":0.8,
            "max_output_tokens":99,"metadata":{"a":"b"},"user":"u","store":false,"parallel_tool_calls":false,
            "previous_response_id":"resp_gwprev","reasoning":{"effort":"low","generate_summary":"auto"},
            "tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":"required",
            "text":{"format":{"type":"json_object"}},"service_tier":"default","prompt_cache_key":"pk",
            "safety_identifier":"sid"});
        let (got, _) = answer(&one(json!([{"text":"{}"}]), "STOP"), &req);
        for (key, want) in [
            ("instructions", json!("Be kind.")),
            ("temperature", json!(0.3)),
            ("top_p", json!(0.8)),
            ("max_output_tokens", json!(99)),
            ("metadata", json!({"a":"b"})),
            ("user", json!("u")),
            ("store", json!(false)),
            ("parallel_tool_calls", json!(false)),
            ("previous_response_id", json!("resp_gwprev")),
            ("reasoning", json!({"effort":"low","summary":"auto"})),
            ("tools", req["tools"].clone()),
            ("tool_choice", json!("required")),
            (
                "text",
                json!({"format":{"type":"json_object"},"verbosity":"medium"}),
            ),
            ("service_tier", json!("default")),
            ("prompt_cache_key", json!("pk")),
            ("safety_identifier", json!("sid")),
        ] {
            assert_eq!(got[key], want, "{key}");
        }
        let null_cx = ResponsesContext::new(&Value::Null, String::new(), String::new(), 0);
        let members = String::from_utf8(null_cx.echo.members.into_owned()).unwrap();
        let defaults: Value = serde_json::from_str(&format!("{{{members}}}")).unwrap();
        assert_eq!(
            defaults["tools"],
            json!([]),
            "a missing request echoes defaults"
        );
        assert_eq!(
            defaults["text"],
            json!({"format":{"type":"text"},"verbosity":"medium"})
        );
        assert_eq!(defaults["reasoning"], json!({"effort":null,"summary":null}));
        assert_eq!(defaults["service_tier"], "default");
        assert_eq!(defaults["metadata"], json!({}));
    }

    #[test]
    fn the_default_echo_written_once_is_what_the_request_would_write() {
        for req in [
            json!({"model": "m", "input": "q"}),
            json!({"model": "m", "input": "q", "store": false, "stream": true}),
            json!({"model": "m", "input": "q", "store": true, "tools": null}),
        ] {
            let got = echo(&req);
            assert!(
                matches!(got.members, std::borrow::Cow::Borrowed(_)),
                "{req}"
            );
            assert_eq!(*got.members, write_echo(&req)[..], "{req}");
        }
        // Any echoed field is written from the request.
        let req = json!({"input": "q", "user": "u"});
        let got = echo(&req);
        assert!(matches!(got.members, std::borrow::Cow::Owned(_)));
        let members: Value =
            serde_json::from_str(&format!("{{{}}}", String::from_utf8_lossy(&got.members)))
                .unwrap();
        assert_eq!(members["user"], "u");
    }

    #[test]
    fn tool_calls_carry_ids_call_ids_and_the_signature() {
        let (got, usage) = answer(
            &v(fixture!("response_tool_calls.json")),
            &json!({"input":"q"}),
        );
        let out = got["output"].as_array().unwrap();
        assert_eq!(out.len(), 3, "{got}");
        assert_eq!(
            out[0]["type"], "reasoning",
            "the signature's reasoning item comes first"
        );
        assert_eq!(out[0]["summary"], json!([]));
        assert!(out[0]["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("gemini.ts1."));
        let (a, b) = (&out[1], &out[2]);
        for call in [a, b] {
            assert_eq!(call["type"], "function_call");
            assert_eq!(call["name"], "get_weather");
            assert_eq!(call["status"], "completed");
            assert!(call["id"].as_str().unwrap().starts_with("fc_gw"), "{call}");
            assert!(
                call["call_id"].as_str().unwrap().starts_with("call_gw"),
                "{call}"
            );
        }
        assert_eq!(a["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(b["arguments"], "{\"city\":\"Tokyo\"}");
        assert_ne!(a["call_id"], b["call_id"]);
        assert!(
            a["id"].as_str().unwrap().contains("__ts__"),
            "a short signature rides in the id"
        );
        assert!(!b["id"].as_str().unwrap().contains("__ts__"));
        assert_eq!(got["status"], "completed");
        assert_eq!(usage.total_tokens, 70);
        let mut other = rcx(&json!({}));
        other.id = "resp_gwother".into();
        let (body, _, _) = responses_response(
            fixture!("response_tool_calls.json").as_bytes(),
            other.clone(),
        )
        .unwrap();
        let other: Value = serde_json::from_slice(&body).unwrap();
        assert_ne!(
            other["output"][1]["call_id"], a["call_id"],
            "call ids differ per response"
        );
    }

    #[test]
    fn finish_reasons_map_to_status_and_incomplete_details() {
        for (finish, status, reason, item_status) in [
            ("STOP", "completed", Value::Null, "completed"),
            (
                "MAX_TOKENS",
                "incomplete",
                json!("max_output_tokens"),
                "incomplete",
            ),
            (
                "SAFETY",
                "incomplete",
                json!("content_filter"),
                "incomplete",
            ),
            (
                "RECITATION",
                "incomplete",
                json!("content_filter"),
                "incomplete",
            ),
            (
                "PROHIBITED_CONTENT",
                "incomplete",
                json!("content_filter"),
                "incomplete",
            ),
            (
                "MALFORMED_FUNCTION_CALL",
                "completed",
                Value::Null,
                "completed",
            ),
            ("OTHER", "completed", Value::Null, "completed"),
        ] {
            let (got, _) = answer(&one(json!([{"text":"partial"}]), finish), &json!({}));
            assert_eq!(got["status"], status, "{finish}");
            assert_eq!(got["incomplete_details"]["reason"], reason, "{finish}");
            assert_eq!(got["output"][0]["status"], item_status, "{finish}");
        }
        let (got, usage) = answer(&v(fixture!("response_blocked.json")), &json!({}));
        assert_eq!(got["status"], "incomplete");
        assert_eq!(
            got["incomplete_details"],
            json!({"reason":"content_filter"})
        );
        assert_eq!(got["output"], json!([]));
        assert_eq!(usage.prompt_tokens, 9);
        let (got, _) = answer(
            &json!({"candidates":[{"content":{"parts":[{"text":"x"}]}}]}),
            &json!({}),
        );
        assert_eq!(
            got["status"], "completed",
            "a whole answer without a finishReason is whole"
        );
    }

    #[test]
    fn upstream_error_body_is_an_error() {
        assert!(
            responses_response(fixture!("error_429.json").as_bytes(), rcx(&json!({}))).is_err()
        );
        assert!(responses_response(b"not json", rcx(&json!({}))).is_err());
    }

    #[test]
    fn text_signature_rides_after_its_message_and_comes_back() {
        let gemini = one(
            json!([{"text":"Done."},{"text":"","thoughtSignature":"TXTSIG"}]),
            "STOP",
        );
        let (got, _) = answer(&gemini, &json!({}));
        let out = got["output"].as_array().unwrap();
        assert_eq!(out.len(), 2, "{got}");
        assert_eq!(out[0]["type"], "message");
        assert_eq!(out[1]["type"], "reasoning");
        let history: Vec<Value> = std::iter::once(json!({"role":"user","content":"go"}))
            .chain(out.iter().cloned())
            .collect();
        let g = body(&json!({"input":"next"}), &history, "gemini-3-pro-preview");
        assert_eq!(
            g["contents"][1],
            json!({"role":"model","parts":[{"text":"Done.","thoughtSignature":"TXTSIG"}]})
        );
    }

    /// The answer's items, the client's tool results, and the next request: the
    /// signature is back on the call it came with, whichever way the items travel.
    fn next_request(items: Vec<Value>, calls: &[Value], model: &str) -> Value {
        let mut input = vec![json!({"role":"user","content":"weather?"})];
        input.extend(items);
        for c in calls {
            input.push(
                json!({"type":"function_call_output","call_id":c["call_id"],"output":"sunny"}),
            );
        }
        body(&json!({"input": input}), &[], model)
    }

    fn model_turn(g: &Value) -> &Value {
        &g["contents"][1]["parts"]
    }

    #[test]
    fn thought_signature_round_trip_when_the_client_replays_items() {
        let (got, _) = answer(&v(fixture!("response_tool_calls.json")), &json!({}));
        let out = got["output"].as_array().unwrap().clone();
        let calls: Vec<Value> = out
            .iter()
            .filter(|i| i["type"] == "function_call")
            .cloned()
            .collect();
        let check = |g: &Value, how: &str| {
            let parts = model_turn(g);
            assert_eq!(
                parts[0]["thoughtSignature"], "CiQBjz1rX+/sig==",
                "{how}: {g}"
            );
            assert_eq!(
                parts[0]["functionCall"],
                json!({"name":"get_weather","args":{"city":"Paris"}})
            );
            assert!(parts[1].get("thoughtSignature").is_none(), "{how}");
            assert_eq!(
                g["contents"][2]["parts"][1]["functionResponse"],
                json!({"name":"get_weather","response":{"content":"sunny"}})
            );
        };
        check(
            &next_request(out.clone(), &calls, "gemini-3-pro-preview"),
            "all items",
        );
        check(
            &next_request(calls.clone(), &calls, "gemini-3-pro-preview"),
            "calls only: the id",
        );
        let bare: Vec<Value> = out
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.as_object_mut().unwrap().remove("id");
                i
            })
            .collect();
        check(
            &next_request(bare, &calls, "gemini-3-pro-preview"),
            "ids dropped: the reasoning item",
        );
    }

    #[test]
    fn thought_signature_round_trip_through_stored_history() {
        let req = json!({"input":"weather?"});
        let first = responses_request(&req, &[], "gemini-3-pro-preview").unwrap();
        let (body_bytes, _, _) =
            responses_response(fixture!("response_tool_calls.json").as_bytes(), rcx(&req)).unwrap();
        let got: Value = serde_json::from_slice(&body_bytes).unwrap();
        let output = got["output"].as_array().unwrap();
        let mut history = first.items();
        history.extend(output.iter().cloned());
        let calls: Vec<&Value> = output
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        let outputs: Vec<Value> = calls
            .iter()
            .map(|c| json!({"type":"function_call_output","call_id":c["call_id"],"output":"sunny"}))
            .collect();
        let g = body(
            &json!({"input": outputs, "previous_response_id": RESP_ID}),
            &history,
            "gemini-3-pro-preview",
        );
        assert_eq!(
            model_turn(&g)[0]["thoughtSignature"],
            "CiQBjz1rX+/sig==",
            "{g}"
        );
        assert!(model_turn(&g)[1].get("thoughtSignature").is_none());
        assert_eq!(g["contents"][2]["parts"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn long_signatures_travel_in_the_reasoning_item_only() {
        let sig = "S".repeat(3000);
        let gemini = one(
            json!([{"functionCall":{"name":"f","args":{}},"thoughtSignature":sig}]),
            "STOP",
        );
        let (got, _) = answer(&gemini, &json!({}));
        let out = got["output"].as_array().unwrap().clone();
        assert!(
            out[1]["id"].as_str().unwrap().len() < 64,
            "{}",
            out[1]["id"]
        );
        let calls = vec![out[1].clone()];
        let g = next_request(out, &calls, "gemini-3-pro-preview");
        assert_eq!(model_turn(&g)[0]["thoughtSignature"], sig.as_str());
        let g = next_request(calls.clone(), &calls, "gemini-3-pro-preview");
        assert_eq!(
            model_turn(&g)[0]["thoughtSignature"],
            crate::providers::gemini::ids::SKIP_SIGNATURE,
            "without the reasoning item, Gemini 3 gets the documented sentinel"
        );
    }

    #[test]
    fn thoughts_then_call_share_one_reasoning_item() {
        let gemini = one(
            json!([{"text":"Plan: call f.","thought":true},
                {"functionCall":{"name":"f","args":{"x":1}},"thoughtSignature":"SIG1"},
                {"text":"Calling."}]),
            "STOP",
        );
        let (got, _) = answer(&gemini, &json!({}));
        let out = got["output"].as_array().unwrap();
        let kinds: Vec<&str> = out.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "function_call", "message"]);
        assert_eq!(out[0]["summary"][0]["text"], "Plan: call f.");
        let entries =
            super::super::signatures::decode(out[0]["encrypted_content"].as_str().unwrap())
                .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].call_id.as_deref(),
            out[1]["call_id"].as_str(),
            "tagged with its call"
        );
        assert_eq!(entries[0].signature, "SIG1");
    }
}
