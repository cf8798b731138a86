//! Gemini answers: `generateContent`, `streamGenerateContent`, embeddings and `countTokens`,
//! and Google's error shape.

use serde_json::{json, Value};

use crate::deterministic::{
    embed_json, filler, first64, first_words, fit_text, schema_instance, short_hash,
    sized_embeddings, split_even, tokens_for_chars, words, FILL_MARK, MAX_DIMENSIONS,
    MIN_ANSWER_TOKENS,
};
use crate::gemini_validate::{
    array, at, camelize, check_model_config, check_signatures, expect_keys, invalid_value,
    is_string, object, optional, required, thought_signature, validate_contents, validate_generate,
    validate_part,
};
use crate::http::{json_reply, sse_event, Reply, Request};
use crate::routes::RouteOpts;
use crate::state::State;

/// Google's error shape with the matching canonical status name.
pub(crate) fn gemini_error(code: u16, message: &str) -> Reply {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    json_reply(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// The role of a content (absent means `user`).
pub(crate) fn role_of(content: &Value) -> &str {
    content["role"].as_str().unwrap_or("user")
}

/// The parts of a content (empty if malformed).
pub(crate) fn parts_of(content: &Value) -> &[Value] {
    content["parts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Text parts of a content, space-joined.
pub(crate) fn gemini_text(content: &Value) -> String {
    parts_of(content)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Characters of text in `systemInstruction` and `contents`.
pub(crate) fn gemini_prompt_chars(req: &Value) -> usize {
    let contents = req["contents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    std::iter::once(&req["systemInstruction"])
        .chain(contents)
        .flat_map(parts_of)
        .filter_map(|p| p["text"].as_str())
        .map(|t| t.chars().count())
        .sum()
}

/// What the fake Gemini model answers.
#[derive(Debug, PartialEq)]
pub(crate) enum GeminiAnswer {
    /// Parts of a single candidate with parallel function calls.
    Calls(Vec<Value>),
    /// One text per candidate.
    Texts(Vec<String>),
}

/// Decides the answer and usage of a (validated) generate request.
pub(crate) struct GeminiPlan {
    pub(crate) answer: GeminiAnswer,
    pub(crate) prompt_tokens: u64,
    pub(crate) thinking: bool,
    /// The thought part's text, with `thinkingConfig.includeThoughts: true`.
    pub(crate) thought: Option<String>,
    /// `STOP`, or `MAX_TOKENS` when `maxOutputTokens` cut the texts.
    pub(crate) finish: &'static str,
    /// Candidate tokens to report instead of counting the answer's words (`size`).
    pub(crate) completion_words: Option<u64>,
}

impl GeminiPlan {
    /// Decides the answer for a validated request.
    pub(crate) fn new(body: &Value, model: &str) -> Self {
        let contents = body["contents"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let last = contents.last().unwrap_or(&Value::Null);
        let first_function = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["functionDeclarations"].as_array())
            .flatten()
            .find_map(|d| d["name"].as_str());
        let has = |c: &Value, key: &str| parts_of(c).iter().any(|p| p.get(key).is_some());
        let user_text_turn =
            role_of(last) == "user" && has(last, "text") && !has(last, "functionResponse");
        let mut answer = match first_function {
            Some(name) if user_text_turn => GeminiAnswer::Calls(gemini_calls(name, model)),
            _ => GeminiAnswer::Texts(gemini_texts(body, contents)),
        };
        let thinking_config = body.pointer("/generationConfig/thinkingConfig");
        // A budget of 0 switches thinking off (Gemini 2.5 Flash).
        let thinking = thinking_config
            .is_some_and(|c| c.get("thinkingBudget").and_then(Value::as_i64) != Some(0));
        let thought = (thinking
            && thinking_config.and_then(|c| c.get("includeThoughts")) == Some(&Value::Bool(true)))
        .then(|| {
            let last_user = contents.iter().rev().find(|c| role_of(c) == "user");
            let text = last_user.map(gemini_text).unwrap_or_default();
            format!("**Mock thoughts**\n\nThinking about: {}", first64(&text))
        });
        // Thoughts count against `maxOutputTokens`; a text wants at least MIN_ANSWER_TOKENS.
        let mut finish = "STOP";
        let max = body
            .pointer("/generationConfig/maxOutputTokens")
            .and_then(Value::as_u64);
        if let (Some(max), GeminiAnswer::Texts(texts)) = (max, &mut answer) {
            let left = max.saturating_sub(if thinking { THOUGHT_TOKENS } else { 0 });
            for text in texts.iter_mut() {
                if words(text).max(MIN_ANSWER_TOKENS) > left {
                    finish = "MAX_TOKENS";
                    *text = first_words(text, left).to_owned();
                }
            }
        }
        GeminiPlan {
            answer,
            prompt_tokens: tokens_for_chars(gemini_prompt_chars(body)),
            thinking,
            thought,
            finish,
            completion_words: None,
        }
    }

    /// The parts of one candidate's text (the thought first where asked, on the first piece);
    /// an empty cut text has none, as Google sends it.
    fn text_parts(&self, text: &str, first: bool) -> Value {
        let mut parts = Vec::new();
        if let (true, Some(thought)) = (first, &self.thought) {
            parts.push(json!({"text": thought, "thought": true}));
        }
        if !text.is_empty() || self.finish == "STOP" {
            parts.push(json!({"text": text}));
        }
        Value::Array(parts)
    }

    /// `usageMetadata` (thinking adds 7 thought tokens, counted in the total as Google does).
    pub(crate) fn usage(&self) -> Value {
        let completion = match (&self.answer, self.completion_words) {
            (_, Some(w)) => w,
            (GeminiAnswer::Calls(parts), None) => parts.len() as u64,
            (GeminiAnswer::Texts(texts), None) => texts.iter().map(|t| words(t)).sum(),
        };
        let thoughts = if self.thinking { THOUGHT_TOKENS } else { 0 };
        let mut usage = json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": self.prompt_tokens + completion + thoughts,
        });
        if let (true, Some(obj)) = (self.thinking, usage.as_object_mut()) {
            obj.insert("thoughtsTokenCount".to_owned(), json!(thoughts));
        }
        usage
    }
}

/// Thought tokens the fake model spends whenever it thinks (`thoughtsTokenCount`).
pub(crate) const THOUGHT_TOKENS: u64 = 7;

/// Two parallel calls to the first declared function (signed for Gemini 3).
pub(crate) fn gemini_calls(name: &str, model: &str) -> Vec<Value> {
    let mut first = json!({"functionCall": {"name": name, "args": {"mock": true}}});
    if model.starts_with("gemini-3") {
        if let Some(obj) = first.as_object_mut() {
            obj.insert(
                "thoughtSignature".to_owned(),
                json!(thought_signature(model)),
            );
        }
    }
    let second = json!({"functionCall": {"name": name, "args": {"mock": true, "n": 2}}});
    vec![first, second]
}

/// Candidate texts: tool-result echo or reply echo; JSON mode; ` #i` suffixes.
pub(crate) fn gemini_texts(body: &Value, contents: &[Value]) -> Vec<String> {
    let last_user = contents.iter().rev().find(|c| role_of(c) == "user");
    let tool_result = last_user
        .map(parts_of)
        .unwrap_or_default()
        .iter()
        .find_map(|p| p.pointer("/functionResponse/name").and_then(Value::as_str));
    let json_mode = body
        .pointer("/generationConfig/responseMimeType")
        .and_then(Value::as_str)
        == Some("application/json");
    let schema = body
        .pointer("/generationConfig/responseJsonSchema")
        .or_else(|| body.pointer("/generationConfig/responseSchema"));
    let base = match (json_mode, tool_result) {
        (true, _) => match schema {
            Some(schema) => schema_instance(schema).to_string(),
            None => "{\"mock\":true}".to_owned(),
        },
        (false, Some(name)) => format!("Mock saw tool result: {name}"),
        (false, None) => {
            let text = last_user.map(gemini_text).unwrap_or_default();
            format!("Mock reply to: {}", first64(&text))
        }
    };
    let n = body
        .pointer("/generationConfig/candidateCount")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    (0..n)
        .map(|i| {
            if i == 0 || json_mode {
                base.clone()
            } else {
                format!("{base} #{i}")
            }
        })
        .collect()
}

/// One candidate object (`finish` on the last one of a stream; no parts: no `parts` key).
pub(crate) fn gemini_candidate(parts: Value, index: usize, finish: Option<&str>) -> Value {
    let content = if parts.as_array().is_some_and(Vec::is_empty) {
        json!({"role": "model"})
    } else {
        json!({"role": "model", "parts": parts})
    };
    let mut c = json!({"content": content, "index": index});
    if let (Some(reason), Some(obj)) = (finish, c.as_object_mut()) {
        obj.insert("finishReason".to_owned(), json!(reason));
    }
    c
}

/// One `GenerateContentResponse`.
pub(crate) fn gemini_response(
    candidates: Vec<Value>,
    usage: Option<Value>,
    model: &str,
    id: &str,
) -> Value {
    let mut r = json!({"candidates": candidates});
    if let Some(obj) = r.as_object_mut() {
        if let Some(usage) = usage {
            obj.insert("usageMetadata".to_owned(), usage);
        }
        obj.insert("modelVersion".to_owned(), json!(model));
        obj.insert("responseId".to_owned(), json!(id));
    }
    r
}

/// The complete (non-streamed) response.
pub(crate) fn gemini_full(plan: &GeminiPlan, model: &str, id: &str) -> Value {
    let candidates = match &plan.answer {
        GeminiAnswer::Calls(parts) => {
            let mut all = plan.text_parts("", true);
            if let Some(all) = all.as_array_mut() {
                all.retain(|p| p.get("thought").is_some());
                all.extend(parts.iter().cloned());
            }
            vec![gemini_candidate(all, 0, Some("STOP"))]
        }
        GeminiAnswer::Texts(texts) => texts
            .iter()
            .enumerate()
            .map(|(i, t)| gemini_candidate(plan.text_parts(t, true), i, Some(plan.finish)))
            .collect(),
    };
    gemini_response(candidates, Some(plan.usage()), model, id)
}

/// The streamed responses: text split into `chunks` pieces, finish and usage on the last.
pub(crate) fn gemini_stream_items(
    plan: &GeminiPlan,
    model: &str,
    id: &str,
    chunks: usize,
) -> Vec<Value> {
    let GeminiAnswer::Texts(texts) = &plan.answer else {
        return vec![gemini_full(plan, model, id)];
    };
    let first = texts.first().map(String::as_str).unwrap_or_default();
    let n = split_even(first, chunks).len();
    let split: Vec<Vec<&str>> = texts.iter().map(|t| split_even(t, n)).collect();
    (0..n)
        .map(|k| {
            let last = k + 1 == n;
            let candidates = split
                .iter()
                .enumerate()
                .filter_map(|(i, pieces)| {
                    let piece = pieces.get(k)?;
                    let finish = last.then_some(plan.finish);
                    Some(gemini_candidate(plan.text_parts(piece, k == 0), i, finish))
                })
                .collect();
            gemini_response(candidates, last.then(|| plan.usage()), model, id)
        })
        .collect()
}

/// Dispatches `/{version}/models/{model}:{method}`.
pub(crate) fn gemini_route(
    state: &State,
    req: &Request,
    model: &str,
    method: &str,
    opts: RouteOpts,
) -> Reply {
    if req.head.method != "POST" {
        return gemini_error(404, &format!("Method {method} requires POST."));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return gemini_error(400, "Invalid JSON payload received. Unexpected token.");
    };
    let body = camelize(body);
    let result = match method {
        "generateContent" => gemini_generate(state, req, &body, model, false, opts),
        "streamGenerateContent" => {
            gemini_generate(state, req, &body, model, !opts.force_full, opts)
        }
        "embedContent" => gemini_embed(&body, opts),
        "batchEmbedContents" => gemini_batch_embed(&body, opts),
        "countTokens" => gemini_count_tokens(&body),
        _ => return gemini_error(404, &format!("Method not found: {method}.")),
    };
    result.unwrap_or_else(|message| gemini_error(400, &message))
}

/// `:generateContent` and `:streamGenerateContent`.
pub(crate) fn gemini_generate(
    state: &State,
    req: &Request,
    body: &Value,
    model: &str,
    stream: bool,
    opts: RouteOpts,
) -> Result<Reply, String> {
    validate_generate(body, &[])?;
    check_model_config(body, model)?;
    if model.starts_with("gemini-3") {
        check_signatures(body, model)?;
    }
    let mut plan = GeminiPlan::new(body, model);
    let id = format!("mock-{}", short_hash(&req.body));
    if !stream {
        if let Some(size) = opts.size {
            plan.answer = GeminiAnswer::Texts(vec![FILL_MARK.to_owned()]);
            let body = fit_text(size, |words| {
                plan.completion_words = Some(words);
                serde_json::to_vec(&gemini_full(&plan, model, &id)).unwrap_or_default()
            });
            return Ok(Reply::full(200, "application/json", body));
        }
        return Ok(json_reply(200, &gemini_full(&plan, model, &id)));
    }
    let tuning = state.tuning.get();
    let chunks = usize::try_from(tuning.chunks).unwrap_or(1);
    if let Some(size) = opts.size {
        plan.answer = GeminiAnswer::Texts(vec![filler(size)]);
    }
    let chunks = opts.events.unwrap_or(chunks);
    let items = gemini_stream_items(&plan, model, &id, chunks);
    if req.head.query("alt") != Some("sse") {
        return Ok(json_reply(200, &Value::Array(items)));
    }
    let separator = if tuning.gemini_sse_lf {
        "\n\n"
    } else {
        "\r\n\r\n"
    };
    let events = items
        .iter()
        .map(|item| sse_event(item, separator))
        .collect();
    Ok(Reply::stream(events, 1))
}

/// Text and dimensions of one embed request (`loc` prefixes error paths).
pub(crate) fn embed_request(
    v: &Value,
    loc: &str,
    keys: &[&str],
) -> Result<(String, usize), String> {
    let obj = object(
        v,
        if loc.is_empty() { "request" } else { loc },
        "EmbedContentRequest",
    )?;
    expect_keys(obj, keys, loc)?;
    required(obj, "content", loc, |v, l| {
        let o = object(v, l, "Content")?;
        expect_keys(o, &["parts", "role"], l)?;
        let parts = array(
            o.get("parts").unwrap_or(&Value::Null),
            &at(l, "parts"),
            "Part",
        )?;
        for (i, p) in parts.iter().enumerate() {
            validate_part(p, &format!("{}[{i}]", at(l, "parts")))?;
        }
        Ok(())
    })?;
    optional(obj, "taskType", loc, is_string)?;
    optional(obj, "title", loc, is_string)?;
    optional(obj, "model", loc, is_string)?;
    let dims = match obj.get("outputDimensionality") {
        None => 8,
        Some(d) => match d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => {
                return Err(invalid_value(
                    &at(loc, "outputDimensionality"),
                    "TYPE_INT32",
                    d,
                ))
            }
        },
    };
    Ok((gemini_text(&v["content"]), dims))
}

/// `:embedContent`.
pub(crate) fn gemini_embed(body: &Value, opts: RouteOpts) -> Result<Reply, String> {
    let keys = [
        "content",
        "taskType",
        "title",
        "outputDimensionality",
        "model",
    ];
    let (text, dims) = embed_request(body, "", &keys)?;
    if let Some(size) = opts.size {
        let body = sized_embeddings(
            size,
            &[text.as_str()],
            "{\"embedding\":",
            |_| "{\"values\":".to_owned(),
            "}",
        );
        return Ok(Reply::full(200, "application/json", body));
    }
    Ok(json_reply(
        200,
        &json!({"embedding": {"values": embed_json(&text, dims)}}),
    ))
}

/// `:batchEmbedContents` (each request must name its `models/...` model, as Google insists).
pub(crate) fn gemini_batch_embed(body: &Value, opts: RouteOpts) -> Result<Reply, String> {
    let obj = object(body, "", "BatchEmbedContentsRequest")?;
    expect_keys(obj, &["requests"], "")?;
    let requests = array(
        obj.get("requests").unwrap_or(&Value::Null),
        "requests",
        "EmbedContentRequest",
    )?;
    if requests.is_empty() {
        return Err("* BatchEmbedContentsRequest.requests: requests is not specified".to_owned());
    }
    let keys = [
        "model",
        "content",
        "taskType",
        "title",
        "outputDimensionality",
    ];
    let mut embeddings = Vec::with_capacity(requests.len());
    let mut texts = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let loc = format!("requests[{i}]");
        if !r["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("models/"))
        {
            return Err(format!(
                "* BatchEmbedContentsRequest.{loc}.model: unexpected model name format"
            ));
        }
        let (text, dims) = embed_request(r, &loc, &keys)?;
        if opts.size.is_none() {
            embeddings.push(json!({"values": embed_json(&text, dims)}));
        }
        texts.push(text);
    }
    if let Some(size) = opts.size {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let body = sized_embeddings(
            size,
            &texts,
            "{\"embeddings\":[",
            |_| "{\"values\":".to_owned(),
            "]}",
        );
        return Ok(Reply::full(200, "application/json", body));
    }
    Ok(json_reply(200, &json!({"embeddings": embeddings})))
}

/// `:countTokens`.
pub(crate) fn gemini_count_tokens(body: &Value) -> Result<Reply, String> {
    let obj = object(body, "", "CountTokensRequest")?;
    expect_keys(obj, &["contents", "generateContentRequest"], "")?;
    let chars = if let Some(g) = obj.get("generateContentRequest") {
        validate_generate(g, &["model"])?;
        gemini_prompt_chars(g)
    } else if let Some(c) = obj.get("contents") {
        validate_contents(c, "contents")?;
        gemini_prompt_chars(body)
    } else {
        return Err(
            "* CountTokensRequest: either contents or generateContentRequest must be set"
                .to_owned(),
        );
    };
    Ok(json_reply(
        200,
        &json!({"totalTokens": tokens_for_chars(chars)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_three_needs_signatures_and_gets_parallel_calls() {
        let tools = json!([{"functionDeclarations": [{"name": "f"}]}]);
        let ask =
            json!({"contents": [{"role": "user", "parts": [{"text": "go"}]}], "tools": tools});
        let plan = GeminiPlan::new(&ask, "gemini-3-pro");
        let GeminiAnswer::Calls(parts) = &plan.answer else {
            return assert!(matches!(plan.answer, GeminiAnswer::Calls(_)));
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["thoughtSignature"], "c2lnLW1vY2stZ2VtaW5pLTMtcHJv");
        assert_eq!(parts[1]["functionCall"]["args"]["n"], 2);
        let replay = |sig: Value| {
            let mut call = json!({"functionCall": {"name": "f", "args": {}}});
            if let (Some(obj), false) = (call.as_object_mut(), sig.is_null()) {
                obj.insert("thoughtSignature".to_owned(), sig);
            }
            json!({"tools": tools, "contents": [
                {"role": "user", "parts": [{"text": "go"}]},
                {"role": "model", "parts": [call]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
            ]})
        };
        assert_eq!(
            check_signatures(
                &replay(json!("c2lnLW1vY2stZ2VtaW5pLTMtcHJv")),
                "gemini-3-pro"
            ),
            Ok(())
        );
        assert!(check_signatures(&replay(Value::Null), "gemini-3-pro").is_err());
        assert!(check_signatures(&replay(json!("other")), "gemini-3-pro").is_err());
        let done = GeminiPlan::new(&replay(Value::Null), "gemini-2.5-flash");
        assert_eq!(
            done.answer,
            GeminiAnswer::Texts(vec!["Mock saw tool result: f".to_owned()])
        );
    }

    #[test]
    fn gemini_candidates_and_json_mode() {
        let body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"candidateCount": 2, "thinkingConfig": {}}});
        let plan = GeminiPlan::new(&body, "gemini-2.5-flash");
        let texts = vec![
            "Mock reply to: hi".to_owned(),
            "Mock reply to: hi #1".to_owned(),
        ];
        assert_eq!(plan.answer, GeminiAnswer::Texts(texts));
        assert_eq!(plan.usage()["thoughtsTokenCount"], 7);
        let json_body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"responseMimeType": "application/json"}});
        let plan = GeminiPlan::new(&json_body, "gemini-2.5-flash");
        assert_eq!(
            plan.answer,
            GeminiAnswer::Texts(vec!["{\"mock\":true}".to_owned()])
        );
    }

    #[test]
    fn gemini_thinking_thoughts_and_budgets() {
        let ask = |config: Value| json!({"contents": [{"role": "user", "parts": [{"text": "why?"}]}], "generationConfig": config});
        let body =
            ask(json!({"thinkingConfig": {"includeThoughts": true, "thinkingLevel": "low"}}));
        let plan = GeminiPlan::new(&body, "gemini-3-pro-preview");
        let full = gemini_full(&plan, "gemini-3-pro-preview", "id");
        let parts = &full["candidates"][0]["content"]["parts"];
        assert_eq!(
            parts[0]["thought"], true,
            "the thought part comes first: {parts}"
        );
        assert_eq!(parts[1]["text"], "Mock reply to: why?");
        assert_eq!(full["usageMetadata"]["thoughtsTokenCount"], 7);
        let streamed = gemini_stream_items(&plan, "gemini-3-pro-preview", "id", 3);
        assert_eq!(
            streamed[0]["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        assert!(streamed[1]["candidates"][0]["content"]["parts"][0]
            .get("thought")
            .is_none());
        let off = GeminiPlan::new(
            &ask(json!({"thinkingConfig": {"thinkingBudget": 0}})),
            "gemini-2.5-flash",
        );
        assert!(
            off.usage().get("thoughtsTokenCount").is_none(),
            "budget 0: no thinking"
        );
        let rule = |config: Value, model: &str| check_model_config(&ask(config), model).err();
        assert_eq!(
            rule(
                json!({"thinkingConfig": {"thinkingBudget": 1024}}),
                "gemini-2.5-flash"
            ),
            None
        );
        assert_eq!(
            rule(
                json!({"thinkingConfig": {"thinkingLevel": "HIGH"}}),
                "gemini-3-flash-preview"
            ),
            None
        );
        assert!(rule(
            json!({"thinkingConfig": {"thinkingLevel": "high"}}),
            "gemini-2.5-flash"
        )
        .is_some());
        assert!(rule(
            json!({"thinkingConfig": {"thinkingBudget": 0}}),
            "gemini-2.5-pro"
        )
        .is_some());
        assert!(rule(
            json!({"thinkingConfig": {"thinkingBudget": 99_999}}),
            "gemini-2.5-flash"
        )
        .is_some());
        assert!(rule(
            json!({"thinkingConfig": {"thinkingBudget": 8, "thinkingLevel": "low"}}),
            "gemini-3-pro"
        )
        .is_some());
        assert!(
            rule(json!({"thinkingConfig": {}}), "gemini-2.0-flash").is_some(),
            "2.0 does not think"
        );
        assert!(validate_generate(
            &ask(json!({"thinkingConfig": {"thinkingLevel": "extreme"}})),
            &[]
        )
        .is_err());
    }

    #[test]
    fn gemini_json_schemas_and_token_limits() {
        let ask = |config: Value| json!({"contents": [{"role": "user", "parts": [{"text": "tell me a story"}]}], "generationConfig": config});
        let schema = json!({"type": "object", "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}}});
        let plan = GeminiPlan::new(
            &ask(json!({"responseMimeType": "application/json", "responseJsonSchema": schema})),
            "gemini-2.5-flash",
        );
        // Compared as JSON: key order depends on serde_json's `preserve_order`, which the
        // gateway's YAML crate turns on in a workspace build.
        let parsed: Vec<Value> = match &plan.answer {
            GeminiAnswer::Texts(texts) => texts
                .iter()
                .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
                .collect(),
            _ => Vec::new(),
        };
        assert_eq!(parsed, vec![json!({"pages": 1, "title": "mock"})]);
        let openapi = json!({"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}});
        let plan = GeminiPlan::new(
            &ask(json!({"responseMimeType": "application/json", "responseSchema": openapi})),
            "gemini-2.5-flash",
        );
        assert_eq!(
            plan.answer,
            GeminiAnswer::Texts(vec!["{\"ok\":true}".to_owned()])
        );
        assert!(
            validate_generate(&ask(json!({"responseJsonSchema": {"type": "object"}})), &[])
                .is_err(),
            "a schema needs the JSON mime type"
        );
        let loose = json!({"type": "OBJECT", "additionalProperties": false});
        assert!(validate_generate(
            &ask(json!({"responseMimeType": "application/json", "responseSchema": loose})),
            &[]
        )
        .is_err());
        let cut = GeminiPlan::new(&ask(json!({"maxOutputTokens": 16})), "gemini-2.5-flash");
        let full = gemini_full(&cut, "gemini-2.5-flash", "id");
        assert_eq!(
            full["candidates"][0]["finishReason"], "MAX_TOKENS",
            "16 < the 32 an answer wants"
        );
        let roomy = GeminiPlan::new(&ask(json!({"maxOutputTokens": 64})), "gemini-2.5-flash");
        assert_eq!(
            gemini_full(&roomy, "gemini-2.5-flash", "id")["candidates"][0]["finishReason"],
            "STOP"
        );
        let none_left = GeminiPlan::new(
            &ask(json!({"maxOutputTokens": 7, "thinkingConfig": {}})),
            "gemini-2.5-flash",
        );
        let full = gemini_full(&none_left, "gemini-2.5-flash", "id");
        assert_eq!(
            full["candidates"][0]["content"],
            json!({"role": "model"}),
            "thoughts ate the budget"
        );
        let items = gemini_stream_items(&cut, "gemini-2.5-flash", "id", 2);
        assert_eq!(
            items
                .last()
                .map(|i| i["candidates"][0]["finishReason"].clone()),
            Some(json!("MAX_TOKENS"))
        );
    }
}
