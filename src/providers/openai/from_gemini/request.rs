//! Gemini `generateContent` / `embedContent` / `batchEmbedContents` / `countTokens` request
//! bodies → OpenAI Chat Completions / Embeddings bodies (or a local token estimate).

use serde_json::{json, Map, Value};

use super::{bad, Result};

/// An OpenAI Chat Completions body built from a Gemini `generateContent` request.
#[derive(Debug)]
pub struct ChatBody {
    pub body: Vec<u8>,
    pub stream: bool,
}

/// Field names are accepted in both spellings the REST API takes (protobuf JSON reads
/// `camelCase` and `snake_case`).
fn field<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .filter(|v| !v.is_null())
}

/// Where a value sits in the request, for error messages: written out only when an error
/// names it (formatting every path of a valid request cost more than translating it).
#[derive(Clone, Copy)]
enum At<'a> {
    Root(&'a str),
    Field(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Root(name) => f.write_str(name),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn object(v: &Value, at: impl std::fmt::Display) -> Result<&Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        let at = at.to_string();
        bad(&at, format!("Invalid value at '{at}': expected an object."))
    })
}

fn array(v: &Value, at: impl std::fmt::Display) -> Result<&[Value]> {
    v.as_array().map(Vec::as_slice).ok_or_else(|| {
        let at = at.to_string();
        bad(&at, format!("Invalid value at '{at}': expected a list."))
    })
}

fn string(v: &Value, at: impl std::fmt::Display) -> Result<&str> {
    v.as_str().ok_or_else(|| {
        let at = at.to_string();
        bad(&at, format!("Invalid value at '{at}': expected a string."))
    })
}

fn number(v: &Value, at: impl std::fmt::Display) -> Result<Value> {
    if v.is_number() {
        Ok(v.clone())
    } else {
        let at = at.to_string();
        Err(bad(
            &at,
            format!("Invalid value at '{at}': expected a number."),
        ))
    }
}

static GENERATION_CONFIG: At<'static> = At::Root("generationConfig");

/// `generationConfig.{key}`, for an error message.
fn gc_at(key: &str) -> At<'_> {
    At::Field(&GENERATION_CONFIG, key)
}

/// Whether OpenAI's `reasoning_effort` applies to `model` (o-series and GPT-5).
fn reasons(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model.starts_with(p))
}

/// Top-level fields of `GenerateContentRequest` that are dropped because they cannot change
/// the answer OpenAI gives: `safetySettings` (OpenAI's own moderation applies; there is no
/// per-category threshold) and `model`/`labels` (routing and billing metadata).
const IGNORED_TOP: [&str; 5] = [
    "safetySettings",
    "safety_settings",
    "model",
    "labels",
    "store",
];

/// The Chat Completions body for `model`; `stream` from the route.
pub fn chat_request(body: &Value, model: &str, stream: bool) -> Result<ChatBody> {
    let obj = object(body, "body")?;
    for key in obj.keys() {
        let known = matches!(
            key.as_str(),
            "contents"
                | "systemInstruction"
                | "system_instruction"
                | "generationConfig"
                | "generation_config"
                | "tools"
                | "toolConfig"
                | "tool_config"
        ) || IGNORED_TOP.contains(&key.as_str());
        if !known {
            return Err(bad(
                key.as_str(),
                format!("`{key}` cannot be translated for an OpenAI model."),
            ));
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));
    let mut messages = Vec::new();
    if let Some(sys) = field(obj, "systemInstruction", "system_instruction") {
        messages.push(json!({"role": "system", "content": system_text(sys)?}));
    }
    let contents = field(obj, "contents", "contents")
        .ok_or_else(|| bad("contents", "contents is not specified"))?;
    contents_to_messages(array(contents, "contents")?, &mut messages)?;
    if !messages.iter().any(|m| m["role"] != "system") {
        return Err(bad("contents", "contents is not specified"));
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(gc) = field(obj, "generationConfig", "generation_config") {
        generation_config(object(gc, "generationConfig")?, model, &mut out)?;
    }
    let allowed = match field(obj, "toolConfig", "tool_config") {
        Some(tc) => tool_config(tc, &mut out)?,
        None => None,
    };
    if let Some(tools) = field(obj, "tools", "tools") {
        let list = tools_to_openai(array(tools, "tools")?, allowed.as_deref())?;
        if !list.is_empty() {
            out.insert("tools".into(), Value::Array(list));
        }
    } else if out.contains_key("tool_choice") {
        // A tool choice without tools is meaningless to OpenAI (and refused by it).
        out.remove("tool_choice");
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        // Usage is the last Gemini chunk's `usageMetadata`: always asked for.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| super::no_param(format!("could not serialise the request: {e}")))?;
    Ok(ChatBody { body, stream })
}

/// `systemInstruction`: a `Content` (its text parts joined) or, as some clients send, a string.
fn system_text(sys: &Value) -> Result<String> {
    if let Some(s) = sys.as_str() {
        return Ok(s.to_string());
    }
    let obj = object(sys, "systemInstruction")?;
    let parts = obj
        .get("parts")
        .map(|p| array(p, "systemInstruction.parts"))
        .transpose()?
        .unwrap_or_default();
    let mut text = String::new();
    for (i, p) in parts.iter().enumerate() {
        let at = format!("systemInstruction.parts[{i}]");
        let t = object(p, &at)?
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    &at,
                    format!("{at}: only text parts are allowed in a system instruction."),
                )
            })?;
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(t);
    }
    Ok(text)
}

/// A function call of an earlier model turn, waiting for its `functionResponse`.
struct PendingCall {
    id: String,
    name: String,
    answered: bool,
}

/// `contents` → chat messages. Function calls without an `id` (older clients) get
/// `call_<content>_<part>`; a `functionResponse` without one answers the oldest unanswered
/// call of its name.
fn contents_to_messages(contents: &[Value], messages: &mut Vec<Value>) -> Result<()> {
    let mut calls: Vec<PendingCall> = Vec::new();
    let root = At::Root("contents");
    for (i, c) in contents.iter().enumerate() {
        let at = At::Index(&root, i);
        let obj = object(c, at)?;
        let role = match obj.get("role") {
            None | Some(Value::Null) => "user",
            Some(r) => string(r, At::Field(&at, "role"))?,
        };
        let parts = match obj.get("parts") {
            Some(p) => array(p, At::Field(&at, "parts"))?,
            None => &[],
        };
        match role {
            "user" | "function" | "tool" => user_turn(parts, &at, &mut calls, messages)?,
            "model" | "assistant" => model_turn(parts, &at, i, &mut calls, messages)?,
            other => {
                return Err(bad(
                    format!("{at}.role"),
                    format!("Please use a valid role: user, model (got `{other}` at {at}.role)."),
                ))
            }
        }
    }
    Ok(())
}

fn user_turn(
    parts: &[Value],
    at: &At<'_>,
    calls: &mut [PendingCall],
    messages: &mut Vec<Value>,
) -> Result<()> {
    let mut content: Vec<Value> = Vec::new();
    let list = At::Field(at, "parts");
    for (j, p) in parts.iter().enumerate() {
        let at = At::Index(&list, j);
        let part = object(p, at)?;
        let pat = || at.to_string();
        match part_kind(part, &at)? {
            Kind::Text(t) => content.push(json!({"type": "text", "text": t})),
            Kind::Thought => {}
            Kind::Inline(blob) => {
                content.push(inline_data(blob, &format!("{}.inlineData", pat()))?)
            }
            Kind::File(f) => content.push(file_data(f, &format!("{}.fileData", pat()))?),
            Kind::FunctionResponse(fr) => {
                let fat = format!("{}.functionResponse", pat());
                let name = fr.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("{fat}.name"), format!("{fat}.name is required."))
                })?;
                let id = fr.get("id").and_then(Value::as_str);
                let call = match id {
                    Some(id) => calls.iter_mut().find(|c| c.id == id),
                    None => calls.iter_mut().find(|c| !c.answered && c.name == name),
                };
                let Some(call) = call else {
                    return Err(bad(
                        fat.clone(),
                        format!("{fat} answers no earlier functionCall named `{name}`."),
                    ));
                };
                call.answered = true;
                let response = fr.get("response").cloned().unwrap_or(Value::Null);
                let text = serde_json::to_string(&response).unwrap_or_default();
                // Tool results must follow the assistant turn directly: any text of this
                // turn goes in one user message after them.
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": text}));
            }
            Kind::FunctionCall(_) => {
                let pat = pat();
                return Err(bad(
                    pat.clone(),
                    format!("{pat}: a functionCall part belongs to a `model` turn."),
                ));
            }
        }
    }
    if content.is_empty() {
        return Ok(());
    }
    // One text part is sent as a plain string, as most OpenAI clients do.
    let content = match content.as_slice() {
        [only] if only["type"] == "text" => only["text"].clone(),
        _ => Value::Array(content),
    };
    messages.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn model_turn(
    parts: &[Value],
    at: &At<'_>,
    index: usize,
    calls: &mut Vec<PendingCall>,
    messages: &mut Vec<Value>,
) -> Result<()> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let list = At::Field(at, "parts");
    for (j, p) in parts.iter().enumerate() {
        let at = At::Index(&list, j);
        let part = object(p, at)?;
        match part_kind(part, &at)? {
            Kind::Text(t) => text.push_str(t),
            Kind::Thought => {}
            Kind::FunctionCall(fc) => {
                let fat = format!("{at}.functionCall");
                let name = fc.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("{fat}.name"), format!("{fat}.name is required."))
                })?;
                let id = match fc.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => id.to_string(),
                    _ => format!("call_{index}_{j}"),
                };
                let args = match fc.get("args") {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(a @ Value::Object(_)) => a.to_string(),
                    Some(_) => {
                        return Err(bad(
                            format!("{fat}.args"),
                            format!("{fat}.args must be an object."),
                        ))
                    }
                };
                tool_calls.push(json!({
                    "id": id, "type": "function",
                    "function": {"name": name, "arguments": args},
                }));
                calls.push(PendingCall {
                    id,
                    name: name.to_string(),
                    answered: false,
                });
            }
            Kind::Inline(_) | Kind::File(_) | Kind::FunctionResponse(_) => {
                let pat = at.to_string();
                return Err(bad(
                    pat.clone(),
                    format!("{pat}: a `model` turn may only hold text and functionCall parts for an OpenAI model."),
                ));
            }
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), Value::String("assistant".into()));
    m.insert(
        "content".into(),
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !tool_calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    messages.push(Value::Object(m));
    Ok(())
}

/// What one `Part` holds.
enum Kind<'a> {
    Text(&'a str),
    /// A thought summary of an earlier Gemini answer: not input for another model.
    Thought,
    Inline(&'a Map<String, Value>),
    File(&'a Map<String, Value>),
    FunctionCall(&'a Map<String, Value>),
    FunctionResponse(&'a Map<String, Value>),
}

/// Part keys that annotate rather than carry content; harmless to drop.
const PART_ANNOTATIONS: [&str; 4] = [
    "thoughtSignature",
    "thought_signature",
    "thought",
    "partMetadata",
];

fn part_kind<'a>(part: &'a Map<String, Value>, at: &At<'_>) -> Result<Kind<'a>> {
    let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
    let mut found = None;
    for (key, v) in part {
        if PART_ANNOTATIONS.contains(&key.as_str()) || v.is_null() {
            continue;
        }
        let k = match key.as_str() {
            "text" => Kind::Text(string(v, At::Field(at, "text"))?),
            "inlineData" | "inline_data" => Kind::Inline(object(v, At::Field(at, "inlineData"))?),
            "fileData" | "file_data" => Kind::File(object(v, At::Field(at, "fileData"))?),
            "functionCall" | "function_call" => {
                Kind::FunctionCall(object(v, At::Field(at, "functionCall"))?)
            }
            "functionResponse" | "function_response" => {
                Kind::FunctionResponse(object(v, At::Field(at, "functionResponse"))?)
            }
            other => {
                return Err(bad(
                    format!("{at}.{other}"),
                    format!("{at}: `{other}` parts cannot be translated for an OpenAI model."),
                ))
            }
        };
        if found.is_some() {
            return Err(bad(
                at.to_string(),
                format!("{at}: a part holds exactly one kind of data."),
            ));
        }
        found = Some(k);
    }
    match found {
        Some(Kind::Text(_)) if thought => Ok(Kind::Thought),
        Some(k) => Ok(k),
        None if thought => Ok(Kind::Thought),
        None => Err(bad(at.to_string(), format!("{at}: the part is empty."))),
    }
}

/// `inlineData`: images as data URLs, WAV/MP3 as `input_audio`, PDF as a `file`.
fn inline_data(blob: &Map<String, Value>, at: &str) -> Result<Value> {
    let mime = blob
        .get("mimeType")
        .or_else(|| blob.get("mime_type"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                format!("{at}.mimeType"),
                format!("{at}.mimeType is required."),
            )
        })?;
    let data = blob
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at}.data"), format!("{at}.data is required.")))?;
    if mime.starts_with("image/") {
        return Ok(
            json!({"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{data}")}}),
        );
    }
    let audio = match mime {
        "audio/wav" | "audio/x-wav" | "audio/wave" => Some("wav"),
        "audio/mp3" | "audio/mpeg" => Some("mp3"),
        _ => None,
    };
    if let Some(format) = audio {
        return Ok(json!({"type": "input_audio", "input_audio": {"data": data, "format": format}}));
    }
    if mime == "application/pdf" {
        return Ok(
            json!({"type": "file", "file": {"filename": "document.pdf", "file_data": format!("data:{mime};base64,{data}")}}),
        );
    }
    Err(bad(
        format!("{at}.mimeType"),
        format!("{at}: `{mime}` data cannot be sent to an OpenAI model (images, WAV/MP3 audio and PDF can)."),
    ))
}

/// `fileData`: only an image at a public `http(s)` URL is something OpenAI can fetch; Files
/// API and `gs://` URIs are Google's.
fn file_data(f: &Map<String, Value>, at: &str) -> Result<Value> {
    let uri = f
        .get("fileUri")
        .or_else(|| f.get("file_uri"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                format!("{at}.fileUri"),
                format!("{at}.fileUri is required."),
            )
        })?;
    let mime = f
        .get("mimeType")
        .or_else(|| f.get("mime_type"))
        .and_then(Value::as_str)
        .unwrap_or("image/*");
    let google = uri.starts_with("https://generativelanguage.googleapis.com/");
    if mime.starts_with("image/")
        && (uri.starts_with("https://") || uri.starts_with("http://"))
        && !google
    {
        return Ok(json!({"type": "image_url", "image_url": {"url": uri}}));
    }
    Err(bad(
        format!("{at}.fileUri"),
        format!("{at}: `{uri}` ({mime}) cannot be read by an OpenAI model: send the data inline, or an image by http(s) URL."),
    ))
}

/// `generationConfig` → sampling parameters, `response_format` and `reasoning_effort`.
fn generation_config(
    gc: &Map<String, Value>,
    model: &str,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let at = |k: &str| format!("generationConfig.{k}");
    let mut mime: Option<&str> = None;
    let mut schema: Option<Value> = None;
    for (key, v) in gc {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "temperature" => {
                out.insert("temperature".into(), number(v, gc_at(key))?);
            }
            "topP" | "top_p" => {
                out.insert("top_p".into(), number(v, gc_at(key))?);
            }
            // OpenAI has no top-k; it only narrows the pool that temperature/top_p already
            // bound, so it is dropped rather than refused (configs copied from Google's
            // examples set it).
            "topK" | "top_k" => {
                number(v, gc_at(key))?;
            }
            "maxOutputTokens" | "max_output_tokens" => {
                out.insert("max_completion_tokens".into(), number(v, gc_at(key))?);
            }
            "stopSequences" | "stop_sequences" => {
                let list = array(v, gc_at(key))?;
                if list.len() > 4 {
                    return Err(bad(
                        at(key),
                        format!("{}: OpenAI models take at most 4 stop sequences.", at(key)),
                    ));
                }
                for (i, s) in list.iter().enumerate() {
                    string(s, format!("{}[{i}]", at(key)))?;
                }
                if !list.is_empty() {
                    out.insert("stop".into(), v.clone());
                }
            }
            "candidateCount" | "candidate_count" => {
                out.insert("n".into(), number(v, gc_at(key))?);
            }
            "seed" => {
                out.insert("seed".into(), number(v, gc_at(key))?);
            }
            "presencePenalty" | "presence_penalty" => {
                out.insert("presence_penalty".into(), number(v, gc_at(key))?);
            }
            "frequencyPenalty" | "frequency_penalty" => {
                out.insert("frequency_penalty".into(), number(v, gc_at(key))?);
            }
            "responseMimeType" | "response_mime_type" => mime = Some(string(v, gc_at(key))?),
            "responseSchema" | "response_schema" => {
                schema = Some(openapi_to_json_schema(v));
            }
            "responseJsonSchema" | "response_json_schema" | "_responseJsonSchema" => {
                schema = Some(v.clone());
            }
            "responseModalities" | "response_modalities" => {
                let list = array(v, gc_at(key))?;
                if list
                    .iter()
                    .any(|m| m.as_str().map(str::to_ascii_uppercase).as_deref() != Some("TEXT"))
                {
                    return Err(bad(
                        at(key),
                        format!(
                            "{}: only TEXT answers can come from an OpenAI chat model.",
                            at(key)
                        ),
                    ));
                }
            }
            "thinkingConfig" | "thinking_config" => thinking(object(v, gc_at(key))?, model, out)?,
            other => {
                return Err(bad(
                    at(other),
                    format!("{}: cannot be translated for an OpenAI model.", at(other)),
                ))
            }
        }
    }
    match (mime, schema) {
        (None | Some("text/plain"), None) => {}
        (Some("application/json"), None) => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        (Some("application/json"), Some(schema)) => {
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": false}}),
            );
        }
        (None | Some("text/plain"), Some(_)) => {
            return Err(bad(
                "generationConfig.responseMimeType",
                "generationConfig.responseSchema needs responseMimeType `application/json`.",
            ))
        }
        (Some(other), _) => {
            return Err(bad(
                "generationConfig.responseMimeType",
                format!("generationConfig.responseMimeType `{other}` cannot be produced by an OpenAI model (text/plain and application/json can)."),
            ))
        }
    }
    Ok(())
}

/// `thinkingConfig` → `reasoning_effort` on models that reason; on others only a config that
/// asks for no thinking is accepted (it changes nothing there).
fn thinking(tc: &Map<String, Value>, model: &str, out: &mut Map<String, Value>) -> Result<()> {
    let level = tc
        .get("thinkingLevel")
        .or_else(|| tc.get("thinking_level"))
        .and_then(Value::as_str);
    let budget = tc
        .get("thinkingBudget")
        .or_else(|| tc.get("thinking_budget"))
        .and_then(Value::as_i64);
    let effort = match (level, budget) {
        (Some(l), _) => match l.to_ascii_lowercase().as_str() {
            "minimal" => Some("minimal"),
            "low" => Some("low"),
            "medium" => Some("medium"),
            "high" => Some("high"),
            other => {
                return Err(bad(
                    "generationConfig.thinkingConfig.thinkingLevel",
                    format!("generationConfig.thinkingConfig.thinkingLevel `{other}` is not a level (minimal, low, medium, high)."),
                ))
            }
        },
        // -1 is Gemini's "dynamic": the model's default effort.
        (None, Some(-1)) | (None, None) => None,
        (None, Some(0)) => Some("minimal"),
        (None, Some(b)) if b <= 1024 => Some("low"),
        (None, Some(b)) if b <= 8192 => Some("medium"),
        (None, Some(_)) => Some("high"),
    };
    if reasons(model) {
        if let Some(mut e) = effort {
            // Only GPT-5 knows `minimal`; the o-series' least is `low`.
            if e == "minimal" && !model.starts_with("gpt-5") {
                e = "low";
            }
            out.insert("reasoning_effort".into(), Value::String(e.into()));
        }
        return Ok(());
    }
    match effort {
        None | Some("minimal") => Ok(()),
        Some(_) => Err(bad(
            "generationConfig.thinkingConfig",
            format!("generationConfig.thinkingConfig: `{model}` does not think; remove thinkingConfig or pick a reasoning model."),
        )),
    }
}

/// Gemini's OpenAPI-subset `Schema` (`type: "OBJECT"`, `nullable`, `propertyOrdering`) as
/// the JSON Schema OpenAI's `json_schema` and tool parameters take.
pub fn openapi_to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(obj) => {
            let mut out = Map::new();
            let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);
            for (k, val) in obj {
                match k.as_str() {
                    "nullable" | "propertyOrdering" | "property_ordering" => {}
                    "type" => {
                        let t = val.as_str().map(str::to_ascii_lowercase);
                        let t = match t {
                            Some(t) if t == "type_unspecified" => continue,
                            Some(t) if nullable => json!([t, "null"]),
                            Some(t) => Value::String(t),
                            None => val.clone(),
                        };
                        out.insert("type".into(), t);
                    }
                    "properties" => {
                        let props = val
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(name, s)| (name.clone(), openapi_to_json_schema(s)))
                                    .collect::<Map<_, _>>()
                            })
                            .map(Value::Object)
                            .unwrap_or_else(|| val.clone());
                        out.insert(k.clone(), props);
                    }
                    "items" => {
                        out.insert(k.clone(), openapi_to_json_schema(val));
                    }
                    "anyOf" | "any_of" => {
                        let list = val
                            .as_array()
                            .map(|l| l.iter().map(openapi_to_json_schema).collect())
                            .map(Value::Array)
                            .unwrap_or_else(|| val.clone());
                        out.insert("anyOf".into(), list);
                    }
                    "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
                    | "maxProperties" => {
                        // Google's JSON writes int64 as strings ("1"); JSON Schema wants numbers.
                        let n = val
                            .as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .map(Value::from)
                            .unwrap_or_else(|| val.clone());
                        out.insert(k.clone(), n);
                    }
                    _ => {
                        out.insert(k.clone(), val.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `toolConfig.functionCallingConfig` → `tool_choice`; returns the allowed function names
/// when `mode: ANY` restricts them (the tools list is then cut to those).
fn tool_config(tc: &Value, out: &mut Map<String, Value>) -> Result<Option<Vec<String>>> {
    let obj = object(tc, "toolConfig")?;
    let Some(fcc) = field(obj, "functionCallingConfig", "function_calling_config") else {
        return Ok(None);
    };
    let fcc = object(fcc, "toolConfig.functionCallingConfig")?;
    let mode = fcc
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("AUTO")
        .to_ascii_uppercase();
    let names: Vec<String> = field(fcc, "allowedFunctionNames", "allowed_function_names")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let choice = match mode.as_str() {
        "AUTO" | "MODE_UNSPECIFIED" => json!("auto"),
        "NONE" => json!("none"),
        "ANY" | "VALIDATED" => match names.as_slice() {
            [one] => json!({"type": "function", "function": {"name": one}}),
            _ => json!("required"),
        },
        other => {
            return Err(bad(
                "toolConfig.functionCallingConfig.mode",
                format!(
                    "toolConfig.functionCallingConfig.mode `{other}` is not AUTO, ANY or NONE."
                ),
            ))
        }
    };
    out.insert("tool_choice".into(), choice);
    Ok((mode == "ANY" && !names.is_empty()).then_some(names))
}

/// `tools[].functionDeclarations` → OpenAI function tools; Google's built-in tools (search,
/// code execution, URL context, …) have no OpenAI chat counterpart and are refused.
fn tools_to_openai(tools: &[Value], allowed: Option<&[String]>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let obj = object(t, &at)?;
        for (key, v) in obj {
            if v.is_null() {
                continue;
            }
            if key != "functionDeclarations" && key != "function_declarations" {
                return Err(bad(
                    format!("{at}.{key}"),
                    format!("{at}.{key}: only functionDeclarations tools can be used with an OpenAI model."),
                ));
            }
            for (j, d) in array(v, format!("{at}.functionDeclarations"))?
                .iter()
                .enumerate()
            {
                let dat = format!("{at}.functionDeclarations[{j}]");
                let d = object(d, &dat)?;
                let name = d.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("{dat}.name"), format!("{dat}.name is required."))
                })?;
                if allowed.is_some_and(|a| !a.iter().any(|n| n == name)) {
                    continue;
                }
                let params = match (
                    field(d, "parametersJsonSchema", "parameters_json_schema"),
                    field(d, "parameters", "parameters"),
                ) {
                    (Some(s), _) => s.clone(),
                    (None, Some(s)) => openapi_to_json_schema(s),
                    (None, None) => json!({"type": "object", "properties": {}}),
                };
                let mut f = Map::new();
                f.insert("name".into(), Value::String(name.into()));
                if let Some(desc) = d.get("description").and_then(Value::as_str) {
                    f.insert("description".into(), Value::String(desc.into()));
                }
                f.insert("parameters".into(), params);
                out.push(json!({"type": "function", "function": f}));
            }
        }
    }
    Ok(out)
}

/// `embedContent` / `batchEmbedContents` → an OpenAI embeddings body. `taskType` and `title`
/// are dropped: OpenAI's embeddings have no task conditioning, and the vectors stay
/// comparable with each other.
pub fn embed_request(body: &Value, model: &str, batch: bool) -> Result<Vec<u8>> {
    let obj = object(body, "body")?;
    let mut inputs = Vec::new();
    let mut dims: Option<Value> = None;
    let mut one = |req: &Map<String, Value>, at: &str, inputs: &mut Vec<String>| -> Result<()> {
        let content = req
            .get("content")
            .ok_or_else(|| bad(format!("{at}content"), format!("{at}content is required.")))?;
        inputs.push(embed_text(content, &format!("{at}content"))?);
        if let Some(d) = field(req, "outputDimensionality", "output_dimensionality") {
            if dims.as_ref().is_some_and(|prev| prev != d) {
                return Err(bad(
                    format!("{at}outputDimensionality"),
                    "every request of a batch must ask for the same outputDimensionality",
                ));
            }
            dims = Some(d.clone());
        }
        Ok(())
    };
    if batch {
        let reqs = obj
            .get("requests")
            .ok_or_else(|| bad("requests", "requests is required."))?;
        let reqs = array(reqs, "requests")?;
        if reqs.is_empty() {
            return Err(bad("requests", "requests must not be empty."));
        }
        for (i, r) in reqs.iter().enumerate() {
            let at = format!("requests[{i}].");
            one(object(r, &at)?, &at, &mut inputs)?;
        }
    } else {
        one(obj, "", &mut inputs)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.into()));
    out.insert(
        "input".into(),
        if batch {
            json!(inputs)
        } else {
            json!(inputs.pop().unwrap_or_default())
        },
    );
    out.insert("encoding_format".into(), json!("float"));
    if let Some(d) = dims {
        out.insert("dimensions".into(), number(&d, "outputDimensionality")?);
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| super::no_param(format!("could not serialise the request: {e}")))
}

/// The text of an embedding `Content`: its text parts joined by a space.
fn embed_text(content: &Value, at: &str) -> Result<String> {
    let parts = object(content, at)?
        .get("parts")
        .map(|p| array(p, format!("{at}.parts")))
        .transpose()?
        .unwrap_or_default();
    let mut text = String::new();
    for (i, p) in parts.iter().enumerate() {
        let pat = format!("{at}.parts[{i}]");
        let t = object(p, &pat)?
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    &pat,
                    format!("{pat}: only text can be embedded by an OpenAI model."),
                )
            })?;
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(t);
    }
    if text.is_empty() {
        return Err(bad(
            format!("{at}.parts"),
            format!("{at}.parts holds no text to embed."),
        ));
    }
    Ok(text)
}

/// `countTokens` answered by the gateway for an OpenAI model: `{"totalTokens": n}` with the
/// gateway's own estimate (`strategy::estimate_tokens`: about four characters a token, a
/// fixed cost per image), since OpenAI has no token-counting endpoint for chat. `generateContentRequest` is read when given.
pub fn count_tokens(body: &Value) -> Result<Vec<u8>> {
    let obj = object(body, "body")?;
    let inner = field(obj, "generateContentRequest", "generate_content_request").unwrap_or(body);
    object(inner, "generateContentRequest")?;
    let (input, _) = crate::strategy::estimate_tokens(inner);
    serde_json::to_vec(&json!({"totalTokens": input}))
        .map_err(|e| super::no_param(format!("could not serialise the answer: {e}")))
}
