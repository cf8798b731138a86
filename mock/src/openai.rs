//! OpenAI Chat Completions, Embeddings and the error shapes they share with the Responses API.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::deterministic::{
    embed, filler, first64, fit_text, float, short_hash, sized_embeddings, split_even,
    tokens_for_chars, words, CREATED, FILL_MARK, MAX_DIMENSIONS,
};
use crate::http::{json_reply, sse_event, Reply, Request};
use crate::openai_validate::{validate_chat, validate_embeddings};
use crate::routes::RouteOpts;
use crate::state::State;

/// OpenAI's error shape (`invalid_request_error`, the type of every client error).
pub(crate) fn openai_error(
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

/// OpenAI's 400 shape.
pub(crate) fn openai_invalid(message: &str, param: Option<&str>) -> Reply {
    openai_error(400, message, param, None)
}

/// Whether a name is one of OpenAI's model families (fine-tunes included): the Responses
/// route answers anything else 404 `model_not_found`, as OpenAI does, so a gateway that
/// forwards a Gemini or virtual model name to OpenAI is caught. The chat route keeps
/// answering any name (its callers rely on that).
pub(crate) fn known_openai_model(model: &str) -> bool {
    const FAMILIES: &[&str] = &[
        "gpt-",
        "chatgpt-",
        "o1",
        "o3",
        "o4",
        "codex-",
        "computer-use-",
        "mock",
    ];
    let base = model.strip_prefix("ft:").unwrap_or(model);
    FAMILIES.iter().any(|f| base.starts_with(f))
}

/// OpenAI's answer to a body that is not JSON.
pub(crate) fn openai_bad_json() -> Reply {
    openai_invalid(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        None,
    )
}

/// Text of an OpenAI message `content` (string, or the text parts of an array, space-joined).
pub(crate) fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Characters of text in an OpenAI message `content` (separators not counted).
pub(crate) fn openai_text_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count())
            .sum(),
        _ => 0,
    }
}

/// What the fake assistant says.
#[derive(Debug, PartialEq)]
pub(crate) enum ChatAnswer<'a> {
    Text(String),
    ToolCall(&'a str),
}

/// The facts of a chat request that shape the answer.
#[derive(Debug)]
pub(crate) struct ChatPlan<'a> {
    pub(crate) model: &'a str,
    pub(crate) answer: ChatAnswer<'a>,
    pub(crate) prompt_tokens: u64,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// Completion tokens to report instead of counting the answer's words (`size`).
    pub(crate) completion_words: Option<u64>,
}

/// Validates a chat request and decides the answer; `Err` is (param, message).
pub(crate) fn chat_plan(body: &Value) -> Result<ChatPlan<'_>, (Option<&'static str>, String)> {
    let obj = body.as_object().ok_or((
        None,
        "Invalid type for request body: expected an object.".to_owned(),
    ))?;
    let model = obj.get("model").and_then(Value::as_str).ok_or((
        Some("model"),
        "you must provide a model parameter".to_owned(),
    ))?;
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err((Some("messages"), "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".to_owned())),
        _ => return Err((Some("messages"), "Missing required parameter: 'messages'.".to_owned())),
    };
    let mut chars = 0;
    let mut last_user = None;
    let mut last_role = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            (
                Some("messages"),
                format!("Missing required parameter: 'messages[{i}].role'."),
            )
        })?;
        let content = m.get("content").unwrap_or(&Value::Null);
        chars += openai_text_chars(content);
        if role == "user" {
            last_user = Some(content);
        }
        last_role = role;
    }
    let first_tool = obj
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("tool")
        });
    let answer = match (last_role, first_tool) {
        ("tool", _) => {
            let content = messages.last().and_then(|m| m.get("content"));
            let text = content.map(openai_text).unwrap_or_default();
            ChatAnswer::Text(format!("Mock saw tool result: {}", first64(&text)))
        }
        ("user", Some(name)) => ChatAnswer::ToolCall(name),
        _ => {
            let text = last_user.map(openai_text).unwrap_or_default();
            ChatAnswer::Text(format!("Mock reply to: {}", first64(&text)))
        }
    };
    Ok(ChatPlan {
        model,
        answer,
        prompt_tokens: tokens_for_chars(chars),
        stream: obj.get("stream").and_then(Value::as_bool) == Some(true),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true),
        completion_words: None,
    })
}

/// The single tool call the fake assistant makes.
pub(crate) fn openai_tool_call(name: &str) -> Value {
    json!({"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": "{\"mock\":true}"}})
}

/// OpenAI usage object.
pub(crate) fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// `POST /v1/chat/completions`.
pub(crate) fn openai_chat(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_bad_json();
    };
    if let Some(obj) = body.as_object() {
        if let Err(e) = validate_chat(obj) {
            return openai_error(400, &e.message, Some(&e.param), Some(e.code));
        }
    }
    let mut plan = match chat_plan(&body) {
        Ok(plan) => plan,
        Err((param, message)) => return openai_invalid(&message, param),
    };
    let id = format!("chatcmpl-mock-{}", short_hash(&req.body));
    if plan.stream && !opts.force_full {
        let chunks = usize::try_from(state.tuning.get().chunks).unwrap_or(1);
        if let Some(size) = opts.size {
            plan.answer = ChatAnswer::Text(filler(size));
        }
        return Reply::stream(chat_events(&plan, &id, opts.events.unwrap_or(chunks)), 1);
    }
    if let Some(size) = opts.size {
        plan.answer = ChatAnswer::Text(FILL_MARK.to_owned());
        let body = fit_text(size, |words| {
            plan.completion_words = Some(words);
            serde_json::to_vec(&chat_completion(&plan, &id)).unwrap_or_default()
        });
        return Reply::full(200, "application/json", body);
    }
    json_reply(200, &chat_completion(&plan, &id))
}

/// A complete (non-streamed) chat completion.
pub(crate) fn chat_completion(plan: &ChatPlan<'_>, id: &str) -> Value {
    let (message, finish, completion) = match &plan.answer {
        ChatAnswer::Text(text) => (
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
            plan.completion_words.unwrap_or_else(|| words(text)),
        ),
        ChatAnswer::ToolCall(name) => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [openai_tool_call(name)]}),
            "tool_calls",
            1,
        ),
    };
    json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": openai_usage(plan.prompt_tokens, completion),
        "system_fingerprint": "fp_mock",
    })
}

/// The SSE events of a streamed chat completion, `[DONE]` included.
pub(crate) fn chat_events(plan: &ChatPlan<'_>, id: &str, chunks: usize) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        sse_event(
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": plan.model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            }),
            "\n\n",
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let (finish, completion) = match &plan.answer {
        ChatAnswer::Text(text) => {
            for piece in split_even(text, chunks) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            ("stop", words(text))
        }
        ChatAnswer::ToolCall(name) => {
            let mut call = openai_tool_call(name);
            if let Some(call) = call.as_object_mut() {
                call.insert("index".to_owned(), json!(0));
            }
            events.push(chunk(json!({"tool_calls": [call]}), Value::Null));
            ("tool_calls", 1)
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    if plan.include_usage {
        events.push(sse_event(
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": plan.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": openai_usage(plan.prompt_tokens, completion),
            }),
            "\n\n",
        ));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// Texts and token counts of an embeddings `input`.
pub(crate) fn embedding_inputs(input: Option<&Value>) -> Option<Vec<(String, u64)>> {
    let tokens_text = |ids: &[Value]| -> Option<(String, u64)> {
        let ints: Option<Vec<String>> = ids
            .iter()
            .map(|t| t.as_i64().map(|n| n.to_string()))
            .collect();
        let ints = ints.filter(|v| !v.is_empty())?;
        let count = ints.len() as u64;
        Some((ints.join(" "), count))
    };
    let string = |s: &str| (s.to_owned(), tokens_for_chars(s.chars().count()));
    match input? {
        Value::String(s) => Some(vec![string(s)]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).map(string).collect())
        }
        Value::Array(items) if items.iter().all(Value::is_i64) => Some(vec![tokens_text(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| tokens_text(item.as_array()?))
            .collect(),
        _ => None,
    }
}

/// `POST /v1/embeddings`.
pub(crate) fn openai_embeddings(req: &Request, opts: RouteOpts) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_bad_json();
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return openai_invalid("you must provide a model parameter", Some("model"));
    };
    if let Some(obj) = body.as_object() {
        if let Err(e) = validate_embeddings(obj) {
            return openai_error(400, &e.message, Some(&e.param), Some(e.code));
        }
    }
    let Some(inputs) = embedding_inputs(body.get("input")) else {
        return openai_invalid(
            "'input' must be a string, an array of strings, or an array of token arrays.",
            Some("input"),
        );
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(v) => match v.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => return openai_invalid("Invalid value for 'dimensions'.", Some("dimensions")),
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return openai_invalid(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                Some("encoding_format"),
            )
        }
    };
    if let Some(size) = opts.size {
        let tokens: u64 = inputs.iter().map(|(_, n)| n).sum();
        let texts: Vec<&str> = inputs.iter().map(|(t, _)| t.as_str()).collect();
        let tail = format!(
            "],\"model\":{},\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}",
            Value::from(model)
        );
        let body = sized_embeddings(
            size,
            &texts,
            "{\"object\":\"list\",\"data\":[",
            |i| format!("{{\"object\":\"embedding\",\"index\":{i},\"embedding\":"),
            &tail,
        );
        return Reply::full(200, "application/json", body);
    }
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, n))| {
            tokens += n;
            let values = embed(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::Array(values.iter().map(|f| float(*f)).collect())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_reply(
        200,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deterministic::filler_words;

    #[test]
    fn chat_reply_echoes_last_user_message() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ]});
        let plan = chat_plan(&body).map_err(|e| e.1);
        let plan = plan.as_ref().map(|p| (&p.answer, p.prompt_tokens, p.model));
        assert_eq!(
            plan,
            Ok((
                &ChatAnswer::Text("Mock reply to: hello there".to_owned()),
                5,
                "m"
            ))
        );
    }

    #[test]
    fn chat_tools_and_tool_results() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let ask =
            json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            chat_plan(&ask).map(|p| p.answer).ok(),
            Some(ChatAnswer::ToolCall("get_weather"))
        );
        let long = "x".repeat(100);
        let seen = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": long}
        ]});
        let want = format!("Mock saw tool result: {}", "x".repeat(64));
        assert_eq!(
            chat_plan(&seen).map(|p| p.answer).ok(),
            Some(ChatAnswer::Text(want))
        );
        let empty = json!({"model": "m", "messages": []});
        assert_eq!(chat_plan(&empty).err().and_then(|e| e.0), Some("messages"));
    }

    #[test]
    fn sized_answers_are_exact() {
        for n in [0, 1, 3, 44, 45, 46, 1000, 65_537] {
            assert_eq!(filler_words(n), words(&filler(n)), "{n}");
        }
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let mut plan = chat_plan(&body).map_err(|e| e.1);
        for size in [1024, 65_535, 65_536, 1_048_577] {
            let Ok(plan) = plan.as_mut() else { break };
            plan.answer = ChatAnswer::Text(FILL_MARK.to_owned());
            let out = fit_text(size, |w| {
                plan.completion_words = Some(w);
                serde_json::to_vec(&chat_completion(plan, "id")).unwrap_or_default()
            });
            assert_eq!(out.len(), size);
            let v: Value = serde_json::from_slice(&out).unwrap_or_default();
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(v["usage"]["completion_tokens"], json!(words(text)));
            let emb = sized_embeddings(
                size,
                &["a", "b"],
                "{\"e\":[",
                |_| "{\"v\":".to_owned(),
                "]}",
            );
            assert_eq!(emb.len(), size);
            let v: Value = serde_json::from_slice(&emb).unwrap_or_default();
            let first = v["e"][0]["v"].as_array().map(Vec::len);
            assert_eq!(first, v["e"][1]["v"].as_array().map(Vec::len));
            assert!(first > Some(10));
            assert_eq!(
                v["e"][0]["v"][3].as_f64().map(|f| f as f32),
                embed("a", 4).get(3).copied()
            );
        }
        assert!(plan.is_ok());
    }

    #[test]
    fn embedding_inputs_accept_all_openai_shapes() {
        let texts = |v: Value| {
            embedding_inputs(Some(&v)).map(|i| i.into_iter().map(|(t, _)| t).collect::<Vec<_>>())
        };
        assert_eq!(texts(json!("a")), Some(vec!["a".to_owned()]));
        assert_eq!(
            texts(json!(["a", "b"])),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(texts(json!([1, 2])), Some(vec!["1 2".to_owned()]));
        assert_eq!(
            texts(json!([[1], [2, 3]])),
            Some(vec!["1".to_owned(), "2 3".to_owned()])
        );
        assert_eq!(texts(json!([])), None);
        assert_eq!(texts(json!(5)), None);
    }
}
