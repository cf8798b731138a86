#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fixture tests of every direction.

use super::error::google_status;
use super::response::finish_reason;
use super::*;
use serde_json::{json, Value};

fn chat(req: Value, model: &str) -> Value {
    let b = chat_request(&req, model, false).unwrap();
    serde_json::from_slice(&b.body).unwrap()
}

fn refused(req: Value, model: &str) -> TranslateError {
    chat_request(&req, model, false).unwrap_err()
}

#[test]
fn text_system_and_turns() {
    let out = chat(
        json!({
            "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "and kind"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "hello"}, {"text": "!"}]},
                {"parts": [{"text": "again"}, {"text": " please"}]},
            ],
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
        }),
        "gpt-4o-mini",
    );
    assert_eq!(
        out,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief\nand kind"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello!"},
                {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "text", "text": " please"}]},
            ],
        })
    );
}

#[test]
fn generation_config_maps_every_field() {
    let out = chat(
        json!({
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "generationConfig": {
                "temperature": 0.3, "topP": 0.9, "topK": 40, "maxOutputTokens": 64,
                "stopSequences": ["END"], "candidateCount": 2, "seed": 7,
                "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": true}, "n": {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": "1"}}, "required": ["a"], "propertyOrdering": ["a", "n"]},
            },
        }),
        "gpt-4o-mini",
    );
    assert_eq!(out["temperature"], 0.3);
    assert_eq!(out["top_p"], 0.9);
    assert!(out.get("top_k").is_none(), "topK is dropped");
    assert_eq!(out["max_completion_tokens"], 64);
    assert_eq!(out["stop"], json!(["END"]));
    assert_eq!(out["n"], 2);
    assert_eq!(out["seed"], 7);
    assert_eq!(out["presence_penalty"], 0.1);
    assert_eq!(out["frequency_penalty"], 0.2);
    assert_eq!(
        out["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "strict": false, "schema": {
            "type": "object",
            "properties": {"a": {"type": ["string", "null"]}, "n": {"type": "array", "items": {"type": "integer"}, "minItems": 1}},
            "required": ["a"],
        }}})
    );
}

#[test]
fn json_schema_and_json_object() {
    let schema = json!({"type": "object", "properties": {"x": {"type": "number"}}});
    let out = chat(
        json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}),
        "gpt-4o-mini",
    );
    assert_eq!(out["response_format"]["json_schema"]["schema"], schema);
    let out = chat(
        json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "application/json"}}),
        "gpt-4o-mini",
    );
    assert_eq!(out["response_format"], json!({"type": "json_object"}));
    let e = refused(
        json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "text/x.enum"}}),
        "gpt-4o-mini",
    );
    assert_eq!(
        e.param.as_deref(),
        Some("generationConfig.responseMimeType")
    );
}

#[test]
fn thinking_config_is_reasoning_effort_on_reasoning_models_only() {
    let req = |tc: Value| json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": tc}});
    assert_eq!(
        chat(req(json!({"thinkingBudget": 512})), "o3-mini")["reasoning_effort"],
        "low"
    );
    assert_eq!(
        chat(req(json!({"thinkingBudget": 4096})), "o4-mini")["reasoning_effort"],
        "medium"
    );
    assert_eq!(
        chat(req(json!({"thinkingBudget": 20000})), "gpt-5")["reasoning_effort"],
        "high"
    );
    assert_eq!(
        chat(req(json!({"thinkingBudget": 0})), "gpt-5-mini")["reasoning_effort"],
        "minimal"
    );
    assert_eq!(
        chat(req(json!({"thinkingBudget": 0})), "o3")["reasoning_effort"],
        "low"
    );
    assert_eq!(
        chat(req(json!({"thinkingLevel": "HIGH"})), "o3")["reasoning_effort"],
        "high"
    );
    assert!(chat(req(json!({"thinkingBudget": -1})), "o3")
        .get("reasoning_effort")
        .is_none());
    // A model that does not think: asking for no thinking is harmless, thinking is not.
    assert!(chat(
        req(json!({"thinkingBudget": 0, "includeThoughts": false})),
        "gpt-4o-mini"
    )
    .get("reasoning_effort")
    .is_none());
    let e = refused(req(json!({"thinkingBudget": 1024})), "gpt-4o-mini");
    assert_eq!(e.param.as_deref(), Some("generationConfig.thinkingConfig"));
    assert!(e.message.contains("gpt-4o-mini"), "{}", e.message);
}

#[test]
fn images_audio_and_files() {
    let out = chat(
        json!({"contents": [{"role": "user", "parts": [
            {"text": "what is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            {"inline_data": {"mime_type": "audio/wav", "data": "UklG"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        ]}]}),
        "gpt-4o-mini",
    );
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ])
    );
    let e = refused(
        json!({"contents": [{"parts": [{"fileData": {"mimeType": "video/mp4", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]}),
        "gpt-4o-mini",
    );
    assert_eq!(
        e.param.as_deref(),
        Some("contents[0].parts[0].fileData.fileUri")
    );
    let e = refused(
        json!({"contents": [{"parts": [{"inlineData": {"mimeType": "video/mp4", "data": "AA"}}]}]}),
        "gpt-4o-mini",
    );
    assert_eq!(
        e.param.as_deref(),
        Some("contents[0].parts[0].inlineData.mimeType")
    );
}

#[test]
fn function_calling_round_trip_with_and_without_ids() {
    let out = chat(
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2ln"},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"t": "noon"}}},
                    {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"temp": 20}}},
                ]},
            ],
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
                {"name": "unused"},
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather", "get_time"]}},
        }),
        "gpt-4o-mini",
    );
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1_1", "content": "{\"t\":\"noon\"}"},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":20}"},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
        ]),
        "ANY with allowed names keeps only those"
    );
    assert_eq!(out["tool_choice"], "required");
}

#[test]
fn tool_config_modes() {
    let req = |fcc: Value| json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f"}]}], "toolConfig": {"functionCallingConfig": fcc}});
    assert_eq!(
        chat(req(json!({"mode": "AUTO"})), "gpt-4o")["tool_choice"],
        "auto"
    );
    assert_eq!(
        chat(req(json!({"mode": "NONE"})), "gpt-4o")["tool_choice"],
        "none"
    );
    assert_eq!(
        chat(req(json!({"mode": "ANY"})), "gpt-4o")["tool_choice"],
        "required"
    );
    assert_eq!(
        chat(
            req(json!({"mode": "ANY", "allowedFunctionNames": ["f"]})),
            "gpt-4o"
        )["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        refused(req(json!({"mode": "SOMETIMES"})), "gpt-4o")
            .param
            .as_deref(),
        Some("toolConfig.functionCallingConfig.mode")
    );
}

#[test]
fn bad_input_names_the_field() {
    let cases = [
        (
            json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
            "contents[0].role",
        ),
        (
            json!({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}),
            "contents[0].parts[0].executableCode",
        ),
        (
            json!({"contents": [{"parts": [{}]}]}),
            "contents[0].parts[0]",
        ),
        (json!({"contents": []}), "contents"),
        (json!({}), "contents"),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "cachedContent": "cachedContents/1"}),
            "cachedContent",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}),
            "tools[0].googleSearch",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseLogprobs": true}}),
            "generationConfig.responseLogprobs",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModalities": ["IMAGE"]}}),
            "generationConfig.responseModalities",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"stopSequences": ["a", "b", "c", "d", "e"]}}),
            "generationConfig.stopSequences",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
            "generationConfig.temperature",
        ),
        (
            json!({"contents": [{"parts": [{"functionResponse": {"name": "nobody", "response": {}}}]}]}),
            "contents[0].parts[0].functionResponse",
        ),
        (
            json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]}),
            "contents[0].parts[0].functionCall.args",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "image/png", "data": "A"}}]}]}),
            "contents[0].parts[0]",
        ),
    ];
    for (req, param) in cases {
        let e = refused(req.clone(), "gpt-4o-mini");
        assert_eq!(e.param.as_deref(), Some(param), "{req} → {}", e.message);
    }
}

#[test]
fn thoughts_of_earlier_answers_are_dropped() {
    let out = chat(
        json!({"contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"text": "thinking...", "thought": true}, {"text": "a"}]},
            {"role": "user", "parts": [{"text": "q2"}]},
        ]}),
        "gpt-4o-mini",
    );
    assert_eq!(
        out["messages"][1],
        json!({"role": "assistant", "content": "a"})
    );
}

#[test]
fn streaming_asks_for_usage() {
    let b = chat_request(
        &json!({"contents": [{"parts": [{"text": "x"}]}]}),
        "gpt-4o-mini",
        true,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&b.body).unwrap();
    assert!(b.stream);
    assert_eq!(v["stream"], true);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

#[test]
fn a_chat_completion_becomes_a_generate_content_response() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
            ]}, "finish_reason": "tool_calls"},
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17,
                  "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}},
    });
    let (out, tokens) =
        generate_response(&serde_json::to_vec(&body).unwrap(), "gpt-4o-mini", "x").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "candidates": [
                {"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP", "index": 0},
                {"content": {"parts": [{"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}}], "role": "model"}, "finishReason": "STOP", "index": 1},
            ],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 17, "thoughtsTokenCount": 3, "cachedContentTokenCount": 4},
            "modelVersion": "gpt-4o-mini-2024-07-18",
            "responseId": "chatcmpl-1",
        })
    );
    assert_eq!(tokens, Some((10, 7)));
}

#[test]
fn finish_reasons_refusals_and_blocked_prompts() {
    assert_eq!(finish_reason("length"), "MAX_TOKENS");
    assert_eq!(finish_reason("content_filter"), "SAFETY");
    assert_eq!(finish_reason("tool_calls"), "STOP");
    let refusal = json!({"choices": [{"index": 0, "message": {"content": null, "refusal": "I can't"}, "finish_reason": "stop"}]});
    let (out, _) = generate_response(&serde_json::to_vec(&refusal).unwrap(), "m", "id").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "I can't");
    let blocked = json!({"id": "c", "choices": []});
    let (out, _) = generate_response(&serde_json::to_vec(&blocked).unwrap(), "m", "id").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({"promptFeedback": {"blockReason": "OTHER"}, "modelVersion": "m", "responseId": "c"})
    );
    assert!(generate_response(b"<html>", "m", "id").is_err());
    let bad_args = json!({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}}]});
    assert!(generate_response(&serde_json::to_vec(&bad_args).unwrap(), "m", "id").is_err());
}

const TEXT_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-s\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-s\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
    "data: [DONE]\n\n",
);

fn run(framing: Framing, input: &str, split: usize) -> (Vec<u8>, bool, StreamTranslator) {
    let mut t = StreamTranslator::new(framing, "fallback", "id");
    let mut out = Vec::new();
    for piece in input.as_bytes().chunks(split) {
        t.push(piece, &mut out);
    }
    let ok = t.finish(&mut out);
    (out, ok, t)
}

fn sse_events(out: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(out).unwrap();
    assert!(s.ends_with("\r\n\r\n"), "{s}");
    s.split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[test]
fn a_text_stream_in_sse_framing_survives_any_split() {
    let (whole, ok, t) = run(Framing::Sse, TEXT_STREAM, usize::MAX);
    assert!(ok);
    assert_eq!(t.usage(), Some((5, 2)));
    let events = sse_events(&whole);
    assert_eq!(
        events.len(),
        3,
        "two text chunks and the last one: {events:?}"
    );
    assert_eq!(
        events[0],
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}], "modelVersion": "gpt-4o-mini", "responseId": "chatcmpl-s"})
    );
    assert_eq!(
        events[2],
        json!({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
               "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
               "modelVersion": "gpt-4o-mini", "responseId": "chatcmpl-s"})
    );
    for split in 1..40 {
        let (out, ok, _) = run(Framing::Sse, TEXT_STREAM, split);
        assert!(ok);
        assert_eq!(out, whole, "split every {split} bytes");
    }
}

#[test]
fn a_stream_in_json_array_framing_is_one_array() {
    let (out, ok, _) = run(Framing::JsonArray, TEXT_STREAM, 7);
    assert!(ok);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[1]["candidates"][0]["content"]["parts"][0]["text"],
        "lo"
    );
    assert_eq!(list[2]["usageMetadata"]["totalTokenCount"], 7);
    let (out, ok, _) = run(Framing::JsonArray, "data: [DONE]\n\n", 100);
    assert!(ok);
    assert_eq!(out, b"[]");
}

#[test]
fn tool_call_deltas_become_whole_function_calls() {
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    );
    let (out, ok, _) = run(Framing::Sse, stream, 13);
    assert!(ok);
    let events = sse_events(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["candidates"][0],
        json!({"content": {"parts": [
            {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"id": "call_2", "name": "get_time", "args": {}}},
        ], "role": "model"}, "finishReason": "STOP", "index": 0})
    );
    assert_eq!(events[0]["usageMetadata"]["totalTokenCount"], 4);
}

#[test]
fn a_cut_stream_ends_with_a_google_error() {
    let cut = &TEXT_STREAM[..TEXT_STREAM.find("\"lo\"").unwrap()];
    let (out, ok, _) = run(Framing::Sse, cut, 9);
    assert!(!ok);
    let events = sse_events(&out);
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], 500);
    assert_eq!(last["error"]["status"], "INTERNAL");
    let (out, ok, _) = run(Framing::JsonArray, cut, 9);
    assert!(!ok);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v.as_array().unwrap().last().unwrap()["error"]["status"],
        "INTERNAL"
    );
    // Garbage in the middle of a stream.
    let (out, _, _) = run(Framing::Sse, "data: {nope\n\n", 100);
    assert_eq!(sse_events(&out)[0]["error"]["status"], "INTERNAL");
}

#[test]
fn framing_follows_the_query_and_replays() {
    assert_eq!(
        Framing::of_query("/v1beta/models/m:streamGenerateContent?alt=sse"),
        Framing::Sse
    );
    assert_eq!(
        Framing::of_query("/v1beta/models/m:streamGenerateContent?key=k&alt=sse"),
        Framing::Sse
    );
    assert_eq!(
        Framing::of_query("/v1beta/models/m:streamGenerateContent"),
        Framing::JsonArray
    );
    assert_eq!(replay(Framing::Sse, b"{}"), b"data: {}\r\n\r\n");
    assert_eq!(replay(Framing::JsonArray, b"{}"), b"[{}]");
}

#[test]
fn embeddings_both_ways() {
    let one = embed_request(&json!({"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 8}), "text-embedding-3-small", false).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&one).unwrap(),
        json!({"model": "text-embedding-3-small", "input": "a b", "encoding_format": "float", "dimensions": 8})
    );
    let batch = embed_request(
        &json!({"requests": [
            {"model": "models/x", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/x", "content": {"parts": [{"text": "b"}]}},
        ]}),
        "text-embedding-3-small",
        true,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&batch).unwrap()["input"],
        json!(["a", "b"])
    );
    let e = embed_request(
        &json!({"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "A"}}]}}),
        "m",
        false,
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("content.parts[0]"));
    let e = embed_request(
        &json!({"requests": [
            {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
            {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 16},
        ]}),
        "m",
        true,
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("requests[1].outputDimensionality"));

    let answer = json!({"object": "list", "data": [
        {"object": "embedding", "index": 1, "embedding": [0.5, -1.0]},
        {"object": "embedding", "index": 0, "embedding": [0.25, 2.0]},
    ], "usage": {"prompt_tokens": 2, "total_tokens": 2}});
    let bytes = serde_json::to_vec(&answer).unwrap();
    let (out, tokens) = embed_response(&bytes, true).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"embeddings": [{"values": [0.25, 2.0]}, {"values": [0.5, -1.0]}]})
    );
    assert_eq!(tokens, Some((2, 0)));
    let (out, _) = embed_response(&bytes, false).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"embedding": {"values": [0.25, 2.0]}})
    );
}

#[test]
fn count_tokens_is_an_estimate() {
    let small: Value = serde_json::from_slice(
        &count_tokens(&json!({"contents": [{"parts": [{"text": "hi"}]}]})).unwrap(),
    )
    .unwrap();
    let big: Value = serde_json::from_slice(&count_tokens(&json!({"generateContentRequest": {"contents": [{"parts": [{"text": "hello ".repeat(100)}]}]}})).unwrap()).unwrap();
    assert!(small["totalTokens"].as_u64().unwrap() >= 1);
    assert!(big["totalTokens"].as_u64().unwrap() > 100, "{big}");
}

#[test]
fn errors_in_google_shape() {
    let v: Value = serde_json::from_slice(&openai_error_to_google(
        400,
        br#"{"error":{"message":"Invalid 'messages'","type":"invalid_request_error","param":"messages","code":null}}"#,
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"error": {"code": 400, "message": "Invalid 'messages'", "status": "INVALID_ARGUMENT"}})
    );
    for (http, status) in [
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (502, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ] {
        assert_eq!(google_status(http), status, "{http}");
    }
    let v: Value = serde_json::from_slice(&openai_error_to_google(502, b"Bad Gateway")).unwrap();
    assert_eq!(v["error"]["message"], "Bad Gateway");
}

#[test]
fn what_the_calls_hold_is_counted_and_their_number_bounded() {
    let call = |i: usize, id: &str, args: &str| {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{i},\"id\":\"{id}\",\"function\":{{\"name\":\"f\",\"arguments\":\"{args}\"}}}}]}}}}]}}\n\n"
        )
    };
    let mut t = StreamTranslator::new(Framing::Sse, "m", "id");
    let mut out = Vec::new();
    t.push(call(0, "c0", "{}").as_bytes(), &mut out);
    // id + name + arguments
    assert_eq!(t.held_bytes(), 2 + 1 + 2);
    let many: String = (1..=1024).map(|i| call(i, &format!("c{i}"), "")).collect();
    t.push(many.as_bytes(), &mut out);
    assert_eq!(
        t.held_bytes(),
        usize::MAX,
        "the 1,025th call is past the bound"
    );
}
