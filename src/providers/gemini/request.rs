//! OpenAI Chat Completions request → Gemini `generateContent` body, and the request
//! helpers the Responses translation shares (tool declarations, schemas, thinking,
//! data URLs, user parts, function calls and their results).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::{bad, no_param, Result, TranslateError};
use super::ids::{add_missing_signatures, signature_from_id};
use super::wire::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, GenerateContentRequest, GenerationConfig, Part, Schema, SystemInstruction,
    ThinkingConfig, Tool, ToolConfig, ToolResult,
};

pub struct ChatTranslation {
    pub body: Vec<u8>,
    pub stream: bool,
    pub include_usage: bool,
    /// `parallel_tool_calls` (default true): Gemini has no such switch, so the answer's
    /// translation keeps one call per choice when it is false.
    pub parallel_tool_calls: bool,
}

pub(crate) fn f64_of(v: &Value, key: &str) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| bad(key, format!("`{key}` must be a number")))
}

pub(crate) fn u64_of(v: &Value, key: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| bad(key, format!("`{key}` must be a non-negative integer")))
}

pub(crate) fn bool_of(v: &Value, key: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| bad(key, format!("`{key}` must be a boolean")))
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| bad(key, format!("`{key}` must be a string")))
}

pub(crate) fn is_gemini3(model: &str) -> bool {
    model
        .strip_prefix("models/")
        .unwrap_or(model)
        .starts_with("gemini-3")
}

/// `model` is the bare Gemini model name (e.g. "gemini-2.0-flash"), already resolved by the router.
pub fn chat_request(openai: &Value, model: &str) -> Result<ChatTranslation> {
    let obj = openai
        .as_object()
        .ok_or_else(|| no_param("request body must be a JSON object"))?;
    let mut req = GenerateContentRequest::default();
    let gc = &mut req.generation_config;
    let (mut stream, mut include_usage) = (false, false);
    let mut parallel_tool_calls = true;
    let (mut messages, mut tools, mut functions) = (None, None, None);
    let (mut tool_choice, mut function_call) = (None, None);
    let (mut max_tokens, mut max_completion_tokens) = (None, None);

    for (key, v) in obj {
        if v.is_null() {
            continue; // Clients often send explicit nulls for defaults.
        }
        let k = key.as_str();
        match k {
            "model" => {}
            "messages" => messages = Some(v),
            "stream" => stream = bool_of(v, k)?,
            "parallel_tool_calls" => parallel_tool_calls = bool_of(v, k)?,
            "stream_options" => {
                include_usage = v.get("include_usage").and_then(Value::as_bool) == Some(true)
            }
            "temperature" => gc.temperature = Some(f64_of(v, k)?),
            "top_p" => gc.top_p = Some(f64_of(v, k)?),
            "top_k" => gc.top_k = Some(u64_of(v, k)?),
            "max_tokens" => max_tokens = Some(u64_of(v, k)?),
            "max_completion_tokens" => max_completion_tokens = Some(u64_of(v, k)?),
            "n" => gc.candidate_count = Some(u64_of(v, k)?),
            "seed" => {
                gc.seed = Some(
                    v.as_i64()
                        .ok_or_else(|| bad(k, "`seed` must be an integer"))?,
                )
            }
            "presence_penalty" => gc.presence_penalty = Some(f64_of(v, k)?),
            "frequency_penalty" => gc.frequency_penalty = Some(f64_of(v, k)?),
            "logprobs" => gc.response_logprobs = Some(bool_of(v, k)?),
            "top_logprobs" => gc.logprobs = Some(u64_of(v, k)?),
            "stop" => gc.stop_sequences = stop_sequences(v)?,
            "reasoning_effort" => gc.thinking_config = Some(thinking(str_of(v, k)?, model)?),
            "response_format" => response_format(v, gc)?,
            "tools" => tools = Some(v),
            "functions" => functions = Some(v),
            "tool_choice" => tool_choice = Some(v),
            "function_call" => function_call = Some(v),
            "modalities" => {
                let text_only = v
                    .as_array()
                    .is_some_and(|a| a.iter().all(|m| m.as_str() == Some("text")));
                if !text_only {
                    return Err(bad(
                        k,
                        "only the \"text\" modality is supported for Gemini models",
                    ));
                }
            }
            "logit_bias" => {
                if v.as_object().is_none_or(|m| !m.is_empty()) {
                    return Err(bad(k, "`logit_bias` is not supported for Gemini models"));
                }
            }
            // Harmless for the answer: dropped.
            "user" | "store" | "metadata" | "service_tier" | "prediction" | "safety_identifier"
            | "prompt_cache_key" => {}
            _ => {
                return Err(bad(
                    k,
                    format!("unsupported parameter for Gemini models: `{k}`"),
                ))
            }
        }
    }
    gc.max_output_tokens = max_completion_tokens.or(max_tokens);

    let messages = messages
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "`messages` must be a non-empty array"))?;
    let mut system = Vec::new();
    translate_messages(messages, &mut req.contents, &mut system)?;
    if req.contents.is_empty() {
        return Err(bad(
            "messages",
            "at least one user or assistant message with content is required",
        ));
    }
    if !system.is_empty() {
        req.system_instruction = Some(SystemInstruction { parts: system });
    }
    if is_gemini3(model) {
        add_missing_signatures(&mut req.contents);
    }

    let mut decls = Vec::new();
    if let Some(t) = tools {
        tool_declarations(t, &mut decls)?;
    }
    if let Some(f) = functions {
        legacy_function_declarations(f, &mut decls)?;
    }
    if !decls.is_empty() {
        req.tools.push(Tool {
            function_declarations: decls,
        });
    }
    if let Some(tc) = tool_choice {
        req.tool_config = Some(tool_config(tc, "tool_choice")?);
    } else if let Some(fc) = function_call {
        req.tool_config = Some(tool_config(fc, "function_call")?);
    }

    let body = serde_json::to_vec(&req).map_err(|e| no_param(e.to_string()))?;
    Ok(ChatTranslation {
        body,
        stream,
        include_usage: stream && include_usage,
        parallel_tool_calls,
    })
}

/// A model name as one URL path segment. Names are checked before they get here
/// (`routing::check_model_name`); encoding anything outside RFC 3986's unreserved set keeps
/// the path right even if a caller forgot.
pub fn model_segment(model: &str) -> percent_encoding::PercentEncode<'_> {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(model, SEGMENT)
}

/// Path after the configured base URL (which ends in /v1 or /v1beta).
pub fn chat_path(model: &str, stream: bool) -> String {
    let model = model_segment(model);
    if stream {
        format!("models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("models/{model}:generateContent")
    }
}

pub(crate) fn stop_sequences(v: &Value) -> Result<Vec<&str>> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(a) if a.len() <= 5 => a
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| bad("stop", "`stop` entries must be strings"))
            })
            .collect(),
        Value::Array(_) => Err(bad("stop", "Gemini accepts at most 5 stop sequences")),
        _ => Err(bad("stop", "`stop` must be a string or a list of strings")),
    }
}

/// `reasoning_effort` → thinkingConfig (see [`thinking_config`]).
pub(crate) fn thinking(effort: &str, model: &str) -> Result<ThinkingConfig> {
    thinking_config(effort, model).ok_or_else(bad_effort)
}

/// OpenAI effort levels → Gemini 2.x budgets, or Gemini 3 levels (which cannot
/// turn thinking off, so `none`/`minimal` become `low`); `None` for an unknown level.
pub(crate) fn thinking_config(effort: &str, model: &str) -> Option<ThinkingConfig> {
    if is_gemini3(model) {
        let level = match effort {
            "none" | "minimal" | "low" => "low",
            "medium" | "high" => "high",
            _ => return None,
        };
        return Some(ThinkingConfig {
            thinking_level: Some(level),
            ..ThinkingConfig::default()
        });
    }
    let budget = match effort {
        "none" | "minimal" => 0,
        "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        _ => return None,
    };
    // Pro models cannot disable thinking; 128 is their smallest budget.
    let budget = if budget == 0 && model.contains("-pro") {
        128
    } else {
        budget
    };
    Some(ThinkingConfig {
        thinking_budget: Some(budget),
        ..ThinkingConfig::default()
    })
}

pub(crate) fn bad_effort() -> TranslateError {
    bad(
        "reasoning_effort",
        "`reasoning_effort` must be one of none, minimal, low, medium, high",
    )
}

pub(crate) fn response_format<'a>(v: &'a Value, gc: &mut GenerationConfig<'a>) -> Result<()> {
    const P: &str = "response_format";
    match v.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => gc.response_mime_type = Some("application/json"),
        Some("json_schema") => {
            gc.response_mime_type = Some("application/json");
            let schema = v.get("json_schema").and_then(|j| j.get("schema"));
            match schema {
                Some(s @ Value::Object(_)) => gc.response_json_schema = Some(Schema(s)),
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(bad(
                        "response_format.json_schema.schema",
                        "`schema` must be a JSON object",
                    ))
                }
            }
        }
        _ => {
            return Err(bad(
                P,
                "`response_format.type` must be text, json_object or json_schema",
            ))
        }
    }
    Ok(())
}

pub(crate) fn tool_declarations<'a>(
    v: &'a Value,
    out: &mut Vec<FunctionDeclaration<'a>>,
) -> Result<()> {
    let tools = v
        .as_array()
        .ok_or_else(|| bad("tools", "`tools` must be an array"))?;
    for (k, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(
                "tools",
                format!(
                    "tools[{k}]: only tools of type \"function\" are supported for Gemini models"
                ),
            ));
        }
        let f = t
            .get("function")
            .ok_or_else(|| bad(format!("tools[{k}].function"), "missing `function`"))?;
        out.push(declaration(f, || format!("tools[{k}].function"))?);
    }
    Ok(())
}

pub(crate) fn legacy_function_declarations<'a>(
    v: &'a Value,
    out: &mut Vec<FunctionDeclaration<'a>>,
) -> Result<()> {
    let fs = v
        .as_array()
        .ok_or_else(|| bad("functions", "`functions` must be an array"))?;
    for (k, f) in fs.iter().enumerate() {
        out.push(declaration(f, || format!("functions[{k}]"))?);
    }
    Ok(())
}

/// `strict` is an OpenAI flag on the function, not schema, so it is not copied.
pub(crate) fn declaration<'a>(
    f: &'a Value,
    at: impl Fn() -> String,
) -> Result<FunctionDeclaration<'a>> {
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{}.name", at()), "function `name` must be a string"))?;
    let parameters_json_schema = match f.get("parameters") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(Schema(p)),
        Some(_) => {
            return Err(bad(
                format!("{}.parameters", at()),
                "`parameters` must be a JSON Schema object",
            ))
        }
    };
    Ok(FunctionDeclaration {
        name,
        description: f.get("description").and_then(Value::as_str),
        parameters_json_schema,
    })
}

pub(crate) fn tool_config<'a>(v: &'a Value, param: &str) -> Result<ToolConfig<'a>> {
    let (mode, name) = match v {
        Value::String(s) => match s.as_str() {
            "auto" => ("AUTO", None),
            "none" => ("NONE", None),
            "required" if param == "tool_choice" => ("ANY", None),
            _ => return Err(bad(param, format!("unsupported `{param}` value \"{s}\""))),
        },
        Value::Object(_) => {
            // {"type":"function","function":{"name":X}} or legacy {"name":X}.
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| v.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(param, format!("`{param}` must name a function")))?;
            ("ANY", Some([name]))
        }
        _ => return Err(bad(param, format!("unsupported `{param}` value"))),
    };
    Ok(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: name,
        },
    })
}

/// Returns the parts vector of the turn to append to, starting a new turn when
/// the role changes (Gemini wants alternating, merged turns).
pub(crate) fn turn<'c, 'a>(
    contents: &'c mut Vec<Content<'a>>,
    role: &'static str,
) -> &'c mut Vec<Part<'a>> {
    if contents.last().is_none_or(|c| c.role != role) {
        contents.push(Content {
            role,
            parts: Vec::new(),
        });
    }
    let last = contents.len() - 1;
    &mut contents[last].parts
}

pub(crate) fn translate_messages<'a>(
    messages: &'a [Value],
    contents: &mut Vec<Content<'a>>,
    system: &mut Vec<Part<'a>>,
) -> Result<()> {
    // tool_call_id → function name, from earlier assistant tool_calls.
    let mut call_names: HashMap<&'a str, &'a str> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            bad(
                format!("messages[{i}].role"),
                "message `role` must be a string",
            )
        })?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => text_parts(content, i, false, system)?,
            "user" => user_parts(content, i, turn(contents, "user"))?,
            "assistant" => {
                let parts = turn(contents, "model");
                text_parts(content, i, true, parts)?;
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    tool_call_parts(calls, i, parts, &mut call_names)?;
                }
                if let Some(fc) = m.get("function_call").filter(|c| !c.is_null()) {
                    let at = format!("messages[{i}].function_call");
                    parts.push(function_call_part(fc, &at, None)?);
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            format!("messages[{i}].tool_call_id"),
                            "`tool_call_id` must be a string",
                        )
                    })?;
                let name = call_names.get(id).copied().ok_or_else(|| {
                    bad(
                        format!("messages[{i}].tool_call_id"),
                        format!("no earlier assistant tool call has id \"{id}\""),
                    )
                })?;
                let response = tool_result(content);
                turn(contents, "user").push(Part {
                    function_response: Some(FunctionResponse { name, response }),
                    ..Part::default()
                });
            }
            "function" => {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("messages[{i}].name"), "`name` must be a string"))?;
                let response = tool_result(content);
                turn(contents, "user").push(Part {
                    function_response: Some(FunctionResponse { name, response }),
                    ..Part::default()
                });
            }
            other => {
                return Err(bad(
                    format!("messages[{i}].role"),
                    format!("unsupported message role \"{other}\""),
                ))
            }
        }
        if contents.last().is_some_and(|c| c.parts.is_empty()) {
            contents.pop(); // e.g. an assistant message with empty content.
        }
    }
    Ok(())
}

/// Text-only content (system, developer, assistant). Empty text is skipped
/// because Gemini rejects empty text parts.
pub(crate) fn text_parts<'a>(
    content: &'a Value,
    i: usize,
    assistant: bool,
    out: &mut Vec<Part<'a>>,
) -> Result<()> {
    match content {
        Value::Null => {}
        Value::String(s) => push_text(out, s),
        Value::Array(parts) => {
            for (j, p) in parts.iter().enumerate() {
                let key = match p.get("type").and_then(Value::as_str) {
                    Some("text") => "text",
                    Some("refusal") if assistant => "refusal",
                    _ => {
                        return Err(bad(
                            format!("messages[{i}].content[{j}]"),
                            "only text content parts are supported in this message",
                        ))
                    }
                };
                let s = p.get(key).and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("messages[{i}].content[{j}].{key}"),
                        "must be a string",
                    )
                })?;
                push_text(out, s);
            }
        }
        _ => {
            return Err(bad(
                format!("messages[{i}].content"),
                "`content` must be a string or an array of parts",
            ))
        }
    }
    Ok(())
}

pub(crate) fn push_text<'a>(out: &mut Vec<Part<'a>>, s: &'a str) {
    if !s.is_empty() {
        out.push(Part {
            text: Some(s),
            ..Part::default()
        });
    }
}

pub(crate) fn user_parts<'a>(content: &'a Value, i: usize, out: &mut Vec<Part<'a>>) -> Result<()> {
    let parts = match content {
        Value::Array(parts) => parts,
        _ => return text_parts(content, i, false, out),
    };
    for (j, p) in parts.iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
        let part = match ty {
            "text" => {
                let s = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{}.text", at()), "must be a string"))?;
                push_text(out, s);
                continue;
            }
            "image_url" => {
                let iu = p.get("image_url");
                let url = iu
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{}.image_url.url", at()), "must be a string"))?;
                if let Some((mime, data)) = parse_data_url(url) {
                    inline(mime, data)
                } else if url.starts_with("https://") || url.starts_with("http://") {
                    Part {
                        file_data: Some(FileData {
                            mime_type: guess_mime(url),
                            file_uri: url,
                        }),
                        ..Part::default()
                    }
                } else {
                    return Err(bad(
                        at(),
                        "image_url must be a base64 data: URL or an http(s) URL",
                    ));
                }
            }
            "input_audio" => {
                let a = p.get("input_audio");
                let data = a.and_then(|a| a.get("data")).and_then(Value::as_str);
                let format = a.and_then(|a| a.get("format")).and_then(Value::as_str);
                let (Some(data), Some(format)) = (data, format) else {
                    return Err(bad(
                        format!("{}.input_audio", at()),
                        "`input_audio` needs string `data` and `format`",
                    ));
                };
                Part {
                    inline_data: Some(Blob {
                        mime_type: Cow::Owned(format!("audio/{format}")),
                        data,
                    }),
                    ..Part::default()
                }
            }
            "file" => {
                let data_url = p
                    .get("file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str)
                    .and_then(parse_data_url);
                let Some((mime, data)) = data_url else {
                    return Err(bad(
                        at(),
                        "only `file.file_data` base64 data: URLs are supported (no file_id)",
                    ));
                };
                inline(mime, data)
            }
            _ => return Err(bad(at(), format!("unsupported content part type \"{ty}\""))),
        };
        out.push(part);
    }
    Ok(())
}

pub(crate) fn inline<'a>(mime: &'a str, data: &'a str) -> Part<'a> {
    Part {
        inline_data: Some(Blob {
            mime_type: Cow::Borrowed(mime),
            data,
        }),
        ..Part::default()
    }
}

/// `data:<mime>[;params];base64,<data>` → (mime, data), borrowing.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let mime = meta.split(';').next().unwrap_or(meta);
    Some((
        if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        },
        data,
    ))
}

pub(crate) fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = file.rsplit_once('.').map_or("", |(_, e)| e);
    const TYPES: &[(&str, &str)] = &[
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("heic", "image/heic"),
        ("heif", "image/heif"),
        ("pdf", "application/pdf"),
        ("mp3", "audio/mp3"),
        ("wav", "audio/wav"),
        ("mp4", "video/mp4"),
    ];
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("image/jpeg", |(_, m)| m)
}

pub(crate) fn tool_call_parts<'a>(
    calls: &'a Value,
    i: usize,
    parts: &mut Vec<Part<'a>>,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<()> {
    let calls = calls.as_array().ok_or_else(|| {
        bad(
            format!("messages[{i}].tool_calls"),
            "`tool_calls` must be an array",
        )
    })?;
    for (j, c) in calls.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        if c.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "function")
        {
            return Err(bad(
                format!("{at}.type"),
                "only function tool calls are supported",
            ));
        }
        let f = c
            .get("function")
            .ok_or_else(|| bad(format!("{at}.function"), "missing `function`"))?;
        let id = c.get("id").and_then(Value::as_str);
        let signature = c
            .pointer("/extra_content/google/thought_signature")
            .and_then(Value::as_str)
            .map(Cow::Borrowed)
            .or_else(|| id.and_then(signature_from_id).map(Cow::Owned));
        let part = function_call_part(f, &format!("{at}.function"), signature)?;
        if let (Some(id), Some(fc)) = (id, &part.function_call) {
            call_names.insert(id, fc.name);
        }
        parts.push(part);
    }
    Ok(())
}

/// `{name, arguments: "<json>"}` → functionCall with `args` as an object.
pub(crate) fn function_call_part<'a>(
    f: &'a Value,
    at: &str,
    thought_signature: Option<Cow<'a, str>>,
) -> Result<Part<'a>> {
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at}.name"), "function `name` must be a string"))?;
    let args = match f.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            bad(
                format!("{at}.arguments"),
                format!("`arguments` is not valid JSON: {e}"),
            )
        })?,
        Some(other) => other.clone(),
    };
    if !args.is_object() {
        return Err(bad(
            format!("{at}.arguments"),
            "`arguments` must encode a JSON object",
        ));
    }
    Ok(Part {
        function_call: Some(FunctionCall { name, args }),
        thought_signature,
        ..Part::default()
    })
}

/// Tool output → an object: JSON objects pass through, other JSON and plain
/// text are wrapped as `{"content": ...}`.
pub(crate) fn tool_result(content: &Value) -> ToolResult<'_> {
    match content {
        Value::String(s) => json_or_text(Cow::Borrowed(s)),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            json_or_text(Cow::Owned(text))
        }
        Value::Object(_) => ToolResult::Object(content.clone()),
        Value::Null => ToolResult::Text(Cow::Borrowed("")),
        other => ToolResult::Wrap(other.clone()),
    }
}

pub(crate) fn json_or_text(s: Cow<'_, str>) -> ToolResult<'_> {
    match serde_json::from_str::<Value>(&s) {
        Ok(v @ Value::Object(_)) => ToolResult::Object(v),
        Ok(v) => ToolResult::Wrap(v),
        Err(_) => ToolResult::Text(s),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::ids::SKIP_SIGNATURE;
    use crate::providers::gemini::test_support::*;
    use serde_json::json;

    #[test]
    fn basic_request_matches_fixture() {
        let openai = v(fixture!("chat_request_basic.json"));
        let t = chat_request(&openai, "gemini-2.5-flash").unwrap();
        assert!(t.stream && t.include_usage);
        let got: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(got, v(fixture!("chat_request_basic.gemini.json")));
    }

    #[test]
    fn tools_request_matches_fixture() {
        let openai = v(fixture!("chat_request_tools.json"));
        let t = chat_request(&openai, "gemini-2.5-pro").unwrap();
        assert!(!t.stream && !t.include_usage);
        let got: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(got, v(fixture!("chat_request_tools.gemini.json")));
    }

    #[test]
    fn parallel_tool_calls_is_the_answers_business_not_geminis() {
        let m = json!([{"role":"user","content":"x"}]);
        let on = chat_request(&json!({"messages": m}), "gemini-2.0-flash").unwrap();
        let off = chat_request(
            &json!({"messages": m, "parallel_tool_calls": false}),
            "gemini-2.0-flash",
        )
        .unwrap();
        assert!(on.parallel_tool_calls && !off.parallel_tool_calls);
        assert_eq!(on.body, off.body, "Gemini has no field for it");
        let e = err(json!({"messages": m, "parallel_tool_calls": "no"}));
        assert!(e.message.contains("parallel_tool_calls"), "{}", e.message);
    }

    #[test]
    fn include_usage_needs_stream() {
        let r = json!({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}});
        let t = chat_request(&r, "gemini-2.0-flash").unwrap();
        assert!(!t.stream && !t.include_usage);
    }

    #[test]
    fn chat_paths() {
        assert_eq!(
            chat_path("gemini-2.0-flash", false),
            "models/gemini-2.0-flash:generateContent"
        );
        assert_eq!(
            chat_path("gemini-2.0-flash", true),
            "models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn tool_choice_modes() {
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
            let r = json!({"messages":[{"role":"user","content":"x"}],"tool_choice":choice,
                "tools":[{"type":"function","function":{"name":"f"}}]});
            let g = req(&r, "gemini-2.0-flash");
            assert_eq!(
                g["toolConfig"],
                json!({"functionCallingConfig":{"mode":mode}})
            );
        }
        let e = err(json!({"messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}));
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn legacy_functions_and_function_role() {
        let r = json!({"messages":[
            {"role":"user","content":"x"},
            {"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{\"a\":1}"}},
            {"role":"function","name":"f","content":"42"}],
            "functions":[{"name":"f","parameters":{"type":"object"}}],
            "function_call":{"name":"f"}});
        let g = req(&r, "gemini-2.0-flash");
        assert_eq!(
            g["contents"][1]["parts"][0]["functionCall"],
            json!({"name":"f","args":{"a":1}})
        );
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"],
            json!({"name":"f","response":{"content":42}})
        );
        assert_eq!(g["tools"][0]["functionDeclarations"][0]["name"], "f");
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"],
            json!({"mode":"ANY","allowedFunctionNames":["f"]})
        );
    }

    #[test]
    fn rejects_untranslatable_parameters() {
        let base = || json!({"messages":[{"role":"user","content":"x"}]});
        for (key, value) in [
            ("logit_bias", json!({"50256": -100})),
            ("audio", json!({"voice":"alloy","format":"wav"})),
            ("modalities", json!(["text", "audio"])),
            ("web_search_options", json!({})),
            ("frobnicate", json!(1)),
            ("temperature", json!("hot")),
            ("reasoning_effort", json!("extreme")),
            ("response_format", json!({"type":"yaml"})),
        ] {
            let mut r = base();
            r[key] = value;
            let e = err(r);
            assert_eq!(e.param.as_deref(), Some(key), "{key}: {}", e.message);
        }
    }

    #[test]
    fn stop_limits() {
        let r = json!({"messages":[{"role":"user","content":"x"}],"stop":"\n\n"});
        assert_eq!(
            req(&r, "m")["generationConfig"]["stopSequences"],
            json!(["\n\n"])
        );
        let e = err(
            json!({"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e","f"]}),
        );
        assert_eq!(e.param.as_deref(), Some("stop"));
    }

    #[test]
    fn non_function_tools_rejected() {
        let e = err(json!({"messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"web_search_preview"}]}));
        assert_eq!(e.param.as_deref(), Some("tools"));
    }

    #[test]
    fn bad_arguments_json_names_the_field() {
        let e = err(msgs(json!([
            {"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[
                {"id":"c0","type":"function","function":{"name":"f","arguments":"{}"}},
                {"id":"c1","type":"function","function":{"name":"f","arguments":"{not json"}}]}
        ])));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[1].function.arguments")
        );
    }

    #[test]
    fn unknown_tool_call_id_and_bad_image_rejected() {
        let e = err(msgs(
            json!([{"role":"tool","tool_call_id":"nope","content":"x"}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = err(msgs(json!([{"role":"user","content":[
            {"type":"text","text":"x"},
            {"type":"image_url","image_url":{"url":"ftp://host/a.png"}}]}])));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[1]"));
        let e = err(msgs(json!([{"role":"user","content":"x"}]))
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("messages");
                Value::Object(o)
            })
            .unwrap());
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn response_format_json_object_and_text() {
        let r = json!({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}});
        assert_eq!(
            req(&r, "m")["generationConfig"],
            json!({"responseMimeType":"application/json"})
        );
        let r =
            json!({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"}});
        assert!(req(&r, "m").get("generationConfig").is_none());
    }

    #[test]
    fn reasoning_effort_levels() {
        let budget = |effort: &str, model: &str| {
            let r = json!({"messages":[{"role":"user","content":"x"}],"reasoning_effort":effort});
            req(&r, model)["generationConfig"]["thinkingConfig"].clone()
        };
        assert_eq!(
            budget("none", "gemini-2.5-flash"),
            json!({"thinkingBudget":0})
        );
        assert_eq!(
            budget("minimal", "gemini-2.5-flash"),
            json!({"thinkingBudget":0})
        );
        assert_eq!(
            budget("medium", "gemini-2.5-flash"),
            json!({"thinkingBudget":8192})
        );
        assert_eq!(
            budget("high", "gemini-2.5-flash"),
            json!({"thinkingBudget":24576})
        );
        assert_eq!(
            budget("low", "gemini-3-pro-preview"),
            json!({"thinkingLevel":"low"})
        );
        assert_eq!(
            budget("high", "gemini-3-flash"),
            json!({"thinkingLevel":"high"})
        );
    }

    #[test]
    fn consecutive_roles_merge_and_tool_results_wrap() {
        let g = req(
            &msgs(json!([
                {"role":"user","content":"a"},
                {"role":"user","content":[{"type":"text","text":"b"}]},
                {"role":"assistant","content":"","tool_calls":[
                    {"id":"x","type":"function","function":{"name":"f","arguments":""}}]},
                {"role":"tool","tool_call_id":"x","content":"\"quoted\""},
                {"role":"system","content":"late system"}
            ])),
            "gemini-2.0-flash",
        );
        assert_eq!(
            g["contents"],
            json!([
                {"role":"user","parts":[{"text":"a"},{"text":"b"}]},
                {"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},
                {"role":"user","parts":[{"functionResponse":{"name":"f","response":{"content":"quoted"}}}]}
            ])
        );
        assert_eq!(
            g["systemInstruction"],
            json!({"parts":[{"text":"late system"}]})
        );
    }

    #[test]
    fn gemini3_gets_sentinel_signature_when_missing() {
        let r = msgs(json!([
            {"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[
                {"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
                {"id":"b","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"a","content":"1"},
            {"role":"tool","tool_call_id":"b","content":"2"}
        ]));
        let g = req(&r, "gemini-3-pro-preview");
        let parts = &g["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(parts[1].get("thoughtSignature").is_none());
        let g = req(&r, "gemini-2.5-flash");
        assert!(g["contents"][1]["parts"][0]
            .get("thoughtSignature")
            .is_none());
    }
}
