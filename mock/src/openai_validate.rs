//! Strict validation of Chat Completions and Embeddings requests, as OpenAI's API does it: an
//! unknown top-level field, a wrong type, a message of an unknown role or with an unknown
//! field, a content part OpenAI does not take, a `tool` message answering no earlier tool
//! call, `function.arguments` that is not a string, a malformed tool, `tool_choice` or
//! `response_format`, a value out of range, `stream_options` without `stream` — each is a 400
//! naming the parameter, so a gateway translation that builds a body the real API refuses fails
//! a test against this mock instead of passing it.
//!
//! The field list is the API reference's `CreateChatCompletionRequest` (35 fields, the legacy
//! `functions`/`function_call` included) and `CreateEmbeddingRequest`; `null` is accepted
//! wherever a field is optional, as OpenAI does.

use serde_json::{Map, Value};

/// A validation failure: the parameter (OpenAI's `param`), the message and OpenAI's `code`.
#[derive(Debug, PartialEq)]
pub(crate) struct Invalid {
    pub(crate) param: String,
    pub(crate) message: String,
    pub(crate) code: &'static str,
}

type Check = Result<(), Invalid>;

fn invalid(param: &str, message: String, code: &'static str) -> Invalid {
    Invalid {
        param: param.to_owned(),
        message,
        code,
    }
}

fn unknown(param: &str) -> Invalid {
    invalid(
        param,
        format!("Unrecognized request argument supplied: {param}"),
        "unknown_parameter",
    )
}

fn missing(param: &str) -> Invalid {
    invalid(
        param,
        format!("Missing required parameter: '{param}'."),
        "missing_required_parameter",
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "decimal",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> Invalid {
    invalid(
        param,
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            kind(got)
        ),
        "invalid_type",
    )
}

fn bad_value(param: &str, got: &Value, supported: &[&str]) -> Invalid {
    let list = supported
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    invalid(
        param,
        format!("Invalid value: {got}. Supported values are: {list}."),
        "invalid_value",
    )
}

fn out_of_range(param: &str, got: &Value, what: &str) -> Invalid {
    invalid(
        param,
        format!("Invalid '{param}': {what}, but got {got} instead."),
        "invalid_value",
    )
}

/// The object at `param`, or a type error.
fn object<'a>(param: &str, v: &'a Value) -> Result<&'a Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| wrong_type(param, "an object", v))
}

/// Every key of `obj` is in `allowed`.
fn only(obj: &Map<String, Value>, at: &str, allowed: &[&str]) -> Check {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if at.is_empty() => Err(unknown(k)),
        Some(k) => Err(unknown(&format!("{at}.{k}"))),
        None => Ok(()),
    }
}

/// A field present and not `null`.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn required<'a>(obj: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a Value, Invalid> {
    field(obj, key).ok_or_else(|| missing(&join(at, key)))
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn string<'a>(param: &str, v: &'a Value) -> Result<&'a str, Invalid> {
    v.as_str().ok_or_else(|| wrong_type(param, "a string", v))
}

fn boolean(param: &str, v: &Value) -> Check {
    v.as_bool()
        .map(|_| ())
        .ok_or_else(|| wrong_type(param, "a boolean", v))
}

fn integer(param: &str, v: &Value, min: i64, max: i64) -> Check {
    let n = v
        .as_i64()
        .ok_or_else(|| wrong_type(param, "an integer", v))?;
    if n < min {
        return Err(out_of_range(
            param,
            v,
            &format!("integer below minimum value. Expected a value >= {min}"),
        ));
    }
    if n > max {
        return Err(out_of_range(
            param,
            v,
            &format!("integer above maximum value. Expected a value <= {max}"),
        ));
    }
    Ok(())
}

fn number(param: &str, v: &Value, min: f64, max: f64) -> Check {
    let n = v
        .as_f64()
        .ok_or_else(|| wrong_type(param, "a decimal", v))?;
    if n < min {
        return Err(out_of_range(
            param,
            v,
            &format!("decimal below minimum value. Expected a value >= {min}"),
        ));
    }
    if n > max {
        return Err(out_of_range(
            param,
            v,
            &format!("decimal above maximum value. Expected a value <= {max}"),
        ));
    }
    Ok(())
}

fn one_of(param: &str, v: &Value, supported: &[&str]) -> Check {
    let s = string(param, v)?;
    if supported.contains(&s) {
        Ok(())
    } else {
        Err(bad_value(param, v, supported))
    }
}

/// Top-level fields of `POST /v1/chat/completions`.
const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Validates a Chat Completions body (an object with `model` and a non-empty `messages`
/// already checked by the caller's shape, but checked here again for the types).
pub(crate) fn validate_chat(body: &Map<String, Value>) -> Check {
    only(body, "", CHAT_FIELDS)?;
    string("model", required(body, "", "model")?)?;
    let messages = required(body, "", "messages")?;
    let messages = messages
        .as_array()
        .ok_or_else(|| wrong_type("messages", "an array", messages))?;
    messages_valid(messages)?;
    let stream = match field(body, "stream") {
        Some(v) => {
            boolean("stream", v)?;
            v.as_bool() == Some(true)
        }
        None => false,
    };
    if let Some(v) = field(body, "stream_options") {
        if !stream {
            return Err(invalid(
                "stream_options",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled."
                    .to_owned(),
                "invalid_value",
            ));
        }
        let o = object("stream_options", v)?;
        only(
            o,
            "stream_options",
            &["include_usage", "include_obfuscation"],
        )?;
        for k in ["include_usage", "include_obfuscation"] {
            if let Some(b) = field(o, k) {
                boolean(&join("stream_options", k), b)?;
            }
        }
    }
    for (key, min, max) in [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("frequency_penalty", -2.0, 2.0),
        ("presence_penalty", -2.0, 2.0),
    ] {
        if let Some(v) = field(body, key) {
            number(key, v, min, max)?;
        }
    }
    for (key, min, max) in [
        ("n", 1, 128),
        ("max_tokens", 1, i64::MAX),
        ("max_completion_tokens", 1, i64::MAX),
        ("top_logprobs", 0, 20),
        ("seed", i64::MIN, i64::MAX),
    ] {
        if let Some(v) = field(body, key) {
            integer(key, v, min, max)?;
        }
    }
    for key in ["logprobs", "store", "parallel_tool_calls"] {
        if let Some(v) = field(body, key) {
            boolean(key, v)?;
        }
    }
    for key in ["user", "prompt_cache_key", "safety_identifier"] {
        if let Some(v) = field(body, key) {
            string(key, v)?;
        }
    }
    for (key, supported) in [
        (
            "reasoning_effort",
            &["none", "minimal", "low", "medium", "high", "xhigh"][..],
        ),
        ("verbosity", &["low", "medium", "high"][..]),
        (
            "service_tier",
            &["auto", "default", "flex", "scale", "priority"][..],
        ),
        ("prompt_cache_retention", &["in-memory", "24h"][..]),
    ] {
        if let Some(v) = field(body, key) {
            one_of(key, v, supported)?;
        }
    }
    if let Some(v) = field(body, "top_logprobs") {
        if v.as_i64() != Some(0) && field(body, "logprobs").and_then(Value::as_bool) != Some(true) {
            return Err(invalid(
                "top_logprobs",
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.".to_owned(),
                "invalid_value",
            ));
        }
    }
    if let Some(v) = field(body, "logit_bias") {
        for (k, bias) in object("logit_bias", v)? {
            integer(&format!("logit_bias.{k}"), bias, -100, 100)?;
        }
    }
    if let Some(v) = field(body, "metadata") {
        let o = object("metadata", v)?;
        if o.len() > 16 {
            return Err(out_of_range(
                "metadata",
                &Value::from(o.len()),
                "object with too many properties. Expected an object with at most 16 properties",
            ));
        }
        for (k, s) in o {
            string(&format!("metadata.{k}"), s)?;
        }
    }
    if let Some(v) = field(body, "modalities") {
        let items = v
            .as_array()
            .ok_or_else(|| wrong_type("modalities", "an array", v))?;
        for (i, m) in items.iter().enumerate() {
            one_of(&format!("modalities[{i}]"), m, &["text", "audio"])?;
        }
    }
    if let Some(v) = field(body, "audio") {
        let o = object("audio", v)?;
        only(o, "audio", &["voice", "format"])?;
        required(o, "audio", "voice")?;
        one_of(
            "audio.format",
            required(o, "audio", "format")?,
            &["wav", "aac", "mp3", "flac", "opus", "pcm16"],
        )?;
    }
    if let Some(v) = field(body, "prediction") {
        let o = object("prediction", v)?;
        only(o, "prediction", &["type", "content"])?;
        one_of(
            "prediction.type",
            required(o, "prediction", "type")?,
            &["content"],
        )?;
        text_content("prediction.content", required(o, "prediction", "content")?)?;
    }
    if let Some(v) = field(body, "web_search_options") {
        let o = object("web_search_options", v)?;
        only(
            o,
            "web_search_options",
            &["search_context_size", "user_location"],
        )?;
    }
    if let Some(v) = field(body, "stop") {
        stop_valid(v)?;
    }
    let mut tool_names = Vec::new();
    if let Some(v) = field(body, "tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| wrong_type("tools", "an array", v))?;
        for (i, t) in tools.iter().enumerate() {
            tool_names.push(tool_valid(&format!("tools[{i}]"), t)?);
        }
    }
    if let Some(v) = field(body, "tool_choice") {
        tool_choice_valid(v, &tool_names)?;
    }
    if let Some(v) = field(body, "functions") {
        let functions = v
            .as_array()
            .ok_or_else(|| wrong_type("functions", "an array", v))?;
        for (i, f) in functions.iter().enumerate() {
            function_valid(&format!("functions[{i}]"), f)?;
        }
    }
    if let Some(v) = field(body, "function_call") {
        match v {
            Value::String(_) => one_of("function_call", v, &["none", "auto"])?,
            _ => {
                let o = object("function_call", v)?;
                only(o, "function_call", &["name"])?;
                string("function_call.name", required(o, "function_call", "name")?)?;
            }
        }
    }
    if let Some(v) = field(body, "response_format") {
        response_format_valid(v)?;
    }
    Ok(())
}

fn stop_valid(v: &Value) -> Check {
    match v {
        Value::String(_) => Ok(()),
        Value::Array(items) => {
            if items.len() > 4 {
                return Err(out_of_range(
                    "stop",
                    &Value::from(items.len()),
                    "array too long. Expected an array with maximum length 4",
                ));
            }
            for (i, s) in items.iter().enumerate() {
                string(&format!("stop[{i}]"), s)?;
            }
            Ok(())
        }
        _ => Err(wrong_type("stop", "a string or an array of strings", v)),
    }
}

/// A function definition (`tools[].function`, `functions[]`); its name.
fn function_valid(at: &str, v: &Value) -> Result<String, Invalid> {
    let o = object(at, v)?;
    only(o, at, &["name", "description", "parameters", "strict"])?;
    let name = string(&join(at, "name"), required(o, at, "name")?)?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            &join(at, "name"),
            format!("Invalid '{}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters), but got '{name}'.", join(at, "name")),
            "invalid_value",
        ));
    }
    if let Some(d) = field(o, "description") {
        string(&join(at, "description"), d)?;
    }
    if let Some(p) = field(o, "parameters") {
        object(&join(at, "parameters"), p)?;
    }
    if let Some(s) = field(o, "strict") {
        boolean(&join(at, "strict"), s)?;
    }
    Ok(name.to_owned())
}

/// A `tools[]` entry; its name.
fn tool_valid(at: &str, v: &Value) -> Result<String, Invalid> {
    let o = object(at, v)?;
    let ty = required(o, at, "type")?;
    match ty.as_str() {
        Some("function") => {
            only(o, at, &["type", "function"])?;
            function_valid(&join(at, "function"), required(o, at, "function")?)
        }
        Some("custom") => {
            only(o, at, &["type", "custom"])?;
            let c = object(&join(at, "custom"), required(o, at, "custom")?)?;
            let cat = join(at, "custom");
            only(c, &cat, &["name", "description", "format"])?;
            Ok(string(&join(&cat, "name"), required(c, &cat, "name")?)?.to_owned())
        }
        _ => Err(bad_value(&join(at, "type"), ty, &["function", "custom"])),
    }
}

fn tool_choice_valid(v: &Value, tool_names: &[String]) -> Check {
    if let Value::String(_) = v {
        return one_of("tool_choice", v, &["none", "auto", "required"]);
    }
    let o = object("tool_choice", v)?;
    let ty = required(o, "tool_choice", "type")?;
    let named = |kind: &str| -> Check {
        only(o, "tool_choice", &["type", kind])?;
        let at = join("tool_choice", kind);
        let f = object(&at, required(o, "tool_choice", kind)?)?;
        only(f, &at, &["name"])?;
        let name = string(&join(&at, "name"), required(f, &at, "name")?)?;
        if tool_names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(invalid(
                "tool_choice",
                format!("Invalid value for 'tool_choice': tool '{name}' is not in 'tools'."),
                "invalid_value",
            ))
        }
    };
    match ty.as_str() {
        Some("function") => named("function"),
        Some("custom") => named("custom"),
        Some("allowed_tools") => {
            only(o, "tool_choice", &["type", "allowed_tools"])?;
            let at = "tool_choice.allowed_tools";
            let a = object(at, required(o, "tool_choice", "allowed_tools")?)?;
            only(a, at, &["mode", "tools"])?;
            one_of(
                &join(at, "mode"),
                required(a, at, "mode")?,
                &["auto", "required"],
            )?;
            let tools = required(a, at, "tools")?;
            tools
                .as_array()
                .map(|_| ())
                .ok_or_else(|| wrong_type(&join(at, "tools"), "an array", tools))
        }
        _ => Err(bad_value(
            "tool_choice.type",
            ty,
            &["function", "custom", "allowed_tools"],
        )),
    }
}

fn response_format_valid(v: &Value) -> Check {
    let o = object("response_format", v)?;
    let ty = required(o, "response_format", "type")?;
    match ty.as_str() {
        Some("text") | Some("json_object") => only(o, "response_format", &["type"]),
        Some("json_schema") => {
            only(o, "response_format", &["type", "json_schema"])?;
            let at = "response_format.json_schema";
            let s = object(at, required(o, "response_format", "json_schema")?)?;
            only(s, at, &["name", "description", "schema", "strict"])?;
            let name = string(&join(at, "name"), required(s, at, "name")?)?;
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    &join(at, "name"),
                    format!("Invalid '{at}.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$', but got '{name}'."),
                    "invalid_value",
                ));
            }
            object(&join(at, "schema"), required(s, at, "schema")?)?;
            if let Some(d) = field(s, "description") {
                string(&join(at, "description"), d)?;
            }
            if let Some(b) = field(s, "strict") {
                boolean(&join(at, "strict"), b)?;
            }
            Ok(())
        }
        _ => Err(bad_value(
            "response_format.type",
            ty,
            &["text", "json_object", "json_schema"],
        )),
    }
}

/// A string, or an array of `text` parts (system, developer, tool messages, `prediction`).
fn text_content(at: &str, v: &Value) -> Check {
    parts(at, v, &["text"])
}

/// `content` as a string or an array of parts of the given types.
fn parts(at: &str, v: &Value, types: &[&str]) -> Check {
    let items = match v {
        Value::String(_) => return Ok(()),
        Value::Array(items) => items,
        _ => return Err(wrong_type(at, "a string or an array of content parts", v)),
    };
    for (i, p) in items.iter().enumerate() {
        let pat = format!("{at}[{i}]");
        let o = object(&pat, p)?;
        let ty = required(o, &pat, "type")?;
        let t = ty.as_str().unwrap_or_default();
        if !types.contains(&t) {
            return Err(bad_value(&join(&pat, "type"), ty, types));
        }
        match t {
            "text" => {
                only(o, &pat, &["type", "text"])?;
                string(&join(&pat, "text"), required(o, &pat, "text")?)?;
            }
            "refusal" => {
                only(o, &pat, &["type", "refusal"])?;
                string(&join(&pat, "refusal"), required(o, &pat, "refusal")?)?;
            }
            "image_url" => {
                only(o, &pat, &["type", "image_url"])?;
                let iat = join(&pat, "image_url");
                let img = object(&iat, required(o, &pat, "image_url")?)?;
                only(img, &iat, &["url", "detail"])?;
                let url = string(&join(&iat, "url"), required(img, &iat, "url")?)?;
                if !(url.starts_with("http://")
                    || url.starts_with("https://")
                    || url.starts_with("data:"))
                {
                    return Err(invalid(
                        &join(&iat, "url"),
                        format!("Invalid '{iat}.url': expected an http(s) URL or a data URL."),
                        "invalid_value",
                    ));
                }
                if let Some(d) = field(img, "detail") {
                    one_of(&join(&iat, "detail"), d, &["auto", "low", "high"])?;
                }
            }
            "input_audio" => {
                only(o, &pat, &["type", "input_audio"])?;
                let aat = join(&pat, "input_audio");
                let a = object(&aat, required(o, &pat, "input_audio")?)?;
                only(a, &aat, &["data", "format"])?;
                string(&join(&aat, "data"), required(a, &aat, "data")?)?;
                one_of(
                    &join(&aat, "format"),
                    required(a, &aat, "format")?,
                    &["wav", "mp3"],
                )?;
            }
            "file" => {
                only(o, &pat, &["type", "file"])?;
                let fat = join(&pat, "file");
                let f = object(&fat, required(o, &pat, "file")?)?;
                only(f, &fat, &["file_data", "file_id", "filename"])?;
                for k in ["file_data", "file_id", "filename"] {
                    if let Some(s) = field(f, k) {
                        string(&join(&fat, k), s)?;
                    }
                }
                if field(f, "file_data").is_none() && field(f, "file_id").is_none() {
                    return Err(missing(&join(&fat, "file_data")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn messages_valid(messages: &[Value]) -> Check {
    if messages.is_empty() {
        return Err(invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".to_owned(),
            "empty_array",
        ));
    }
    // Tool call ids of the assistant turns so far, and those not answered yet.
    let mut call_ids: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let o = object(&at, m)?;
        let role = required(o, &at, "role")?;
        let r = role.as_str().unwrap_or_default();
        if !ROLES.contains(&r) {
            return Err(bad_value(&join(&at, "role"), role, ROLES));
        }
        let content_at = join(&at, "content");
        match r {
            "system" | "developer" => {
                only(o, &at, &["role", "content", "name"])?;
                text_content(&content_at, required(o, &at, "content")?)?;
            }
            "user" => {
                only(o, &at, &["role", "content", "name"])?;
                parts(
                    &content_at,
                    required(o, &at, "content")?,
                    &["text", "image_url", "input_audio", "file"],
                )?;
            }
            "assistant" => {
                only(
                    o,
                    &at,
                    &[
                        "role",
                        "content",
                        "name",
                        "refusal",
                        "audio",
                        "tool_calls",
                        "function_call",
                    ],
                )?;
                let calls = match field(o, "tool_calls") {
                    Some(v) => v
                        .as_array()
                        .ok_or_else(|| wrong_type(&join(&at, "tool_calls"), "an array", v))?
                        .as_slice(),
                    None => &[],
                };
                match field(o, "content") {
                    Some(c) => parts(&content_at, c, &["text", "refusal"])?,
                    None if calls.is_empty()
                        && field(o, "function_call").is_none()
                        && field(o, "audio").is_none() =>
                    {
                        return Err(missing(&content_at));
                    }
                    None => {}
                }
                if let Some(v) = field(o, "refusal") {
                    string(&join(&at, "refusal"), v)?;
                }
                for (j, c) in calls.iter().enumerate() {
                    call_ids.push(tool_call_valid(&format!("{at}.tool_calls[{j}]"), c)?);
                }
                if let Some(v) = field(o, "function_call") {
                    let fat = join(&at, "function_call");
                    let f = object(&fat, v)?;
                    only(f, &fat, &["name", "arguments"])?;
                    string(&join(&fat, "name"), required(f, &fat, "name")?)?;
                    string(&join(&fat, "arguments"), required(f, &fat, "arguments")?)?;
                }
            }
            "tool" => {
                only(o, &at, &["role", "content", "tool_call_id"])?;
                text_content(&content_at, required(o, &at, "content")?)?;
                let id_at = join(&at, "tool_call_id");
                let id = string(&id_at, required(o, &at, "tool_call_id")?)?;
                if !call_ids.iter().any(|c| c == id) {
                    return Err(invalid(
                        &at,
                        format!("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'; no earlier tool call has the id '{id}' ({id_at})."),
                        "invalid_value",
                    ));
                }
            }
            _ => {
                // function (deprecated)
                only(o, &at, &["role", "content", "name"])?;
                string(&join(&at, "name"), required(o, &at, "name")?)?;
                if let Some(c) = field(o, "content") {
                    string(&content_at, c)?;
                }
            }
        }
        if let Some(n) = field(o, "name") {
            string(&join(&at, "name"), n)?;
        }
    }
    Ok(())
}

/// An assistant's `tool_calls[]` entry; its id.
fn tool_call_valid(at: &str, v: &Value) -> Result<String, Invalid> {
    let o = object(at, v)?;
    let id = string(&join(at, "id"), required(o, at, "id")?)?.to_owned();
    let ty = required(o, at, "type")?;
    match ty.as_str() {
        Some("function") => {
            only(o, at, &["id", "type", "function"])?;
            let fat = join(at, "function");
            let f = object(&fat, required(o, at, "function")?)?;
            only(f, &fat, &["name", "arguments"])?;
            string(&join(&fat, "name"), required(f, &fat, "name")?)?;
            string(&join(&fat, "arguments"), required(f, &fat, "arguments")?)?;
        }
        Some("custom") => {
            only(o, at, &["id", "type", "custom"])?;
            let cat = join(at, "custom");
            let c = object(&cat, required(o, at, "custom")?)?;
            only(c, &cat, &["name", "input"])?;
            string(&join(&cat, "name"), required(c, &cat, "name")?)?;
            string(&join(&cat, "input"), required(c, &cat, "input")?)?;
        }
        _ => return Err(bad_value(&join(at, "type"), ty, &["function", "custom"])),
    }
    Ok(id)
}

/// Validates an Embeddings body's fields other than `input` (checked by its parser).
pub(crate) fn validate_embeddings(body: &Map<String, Value>) -> Check {
    only(
        body,
        "",
        &["model", "input", "dimensions", "encoding_format", "user"],
    )?;
    string("model", required(body, "", "model")?)?;
    required(body, "", "input")?;
    if let Some(v) = field(body, "dimensions") {
        integer("dimensions", v, 1, i64::MAX)?;
    }
    if let Some(v) = field(body, "encoding_format") {
        one_of("encoding_format", v, &["float", "base64"])?;
    }
    if let Some(v) = field(body, "user") {
        string("user", v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<(), (String, &'static str)> {
        let empty = Map::new();
        validate_chat(v.as_object().unwrap_or(&empty)).map_err(|e| (e.param, e.code))
    }

    fn err(param: &str, code: &'static str) -> Result<(), (String, &'static str)> {
        Err((param.to_owned(), code))
    }

    fn user() -> Value {
        json!({"role": "user", "content": "hi"})
    }

    #[test]
    fn every_documented_field_is_accepted() {
        let body = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "system", "content": "x", "name": "sys"},
                {"role": "user", "name": "ada", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA==", "filename": "a.pdf"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\":true}"},
                {"role": "assistant", "content": [{"type": "text", "text": "done"}], "refusal": null},
                {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": "{}"},
                {"role": "user", "content": "again"},
            ],
            "audio": null, "frequency_penalty": 0.5, "presence_penalty": -0.5, "logit_bias": {"50256": -100},
            "logprobs": true, "top_logprobs": 3, "max_completion_tokens": 100, "max_tokens": null,
            "metadata": {"k": "v"}, "modalities": ["text"], "n": 2, "parallel_tool_calls": false,
            "prediction": {"type": "content", "content": "draft"}, "prompt_cache_key": "k",
            "prompt_cache_retention": "24h", "reasoning_effort": "low", "safety_identifier": "u1",
            "seed": -3, "service_tier": "auto", "stop": ["a", "b", "c", "d"], "store": true,
            "stream": true, "stream_options": {"include_usage": true}, "temperature": 2,
            "top_p": 0.9, "user": "u", "verbosity": "low", "web_search_options": {},
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
            "functions": [{"name": "g", "parameters": {}}], "function_call": "auto",
        });
        assert_eq!(chat(body), Ok(()));
        for rf in [json!({"type": "text"}), json!({"type": "json_object"})] {
            assert_eq!(
                chat(json!({"model": "m", "messages": [user()], "response_format": rf})),
                Ok(())
            );
        }
        for tc in ["none", "auto", "required"] {
            assert_eq!(
                chat(json!({"model": "m", "messages": [user()], "tool_choice": tc})),
                Ok(())
            );
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let m = json!([user()]);
        assert_eq!(
            chat(json!({"model": "m", "messages": m, "generationConfig": {}})),
            err("generationConfig", "unknown_parameter")
        );
        assert_eq!(
            chat(
                json!({"model": "m", "messages": [{"role": "user", "content": "x", "parts": []}]})
            ),
            err("messages[0].parts", "unknown_parameter")
        );
        assert_eq!(
            chat(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "thought": true}]}]})
            ),
            err("messages[0].content[0].thought", "unknown_parameter")
        );
        let mut e = Map::new();
        e.insert("model".into(), json!("m"));
        e.insert("input".into(), json!("x"));
        e.insert("taskType".into(), json!("x"));
        assert_eq!(
            validate_embeddings(&e).map_err(|e| e.param),
            Err("taskType".to_owned())
        );
    }

    #[test]
    fn types_and_ranges_are_named() {
        let base = |k: &str, v: Value| {
            let mut b = json!({"model": "m", "messages": [user()]});
            if let Some(o) = b.as_object_mut() {
                o.insert(k.to_owned(), v);
            }
            chat(b)
        };
        assert_eq!(
            base("temperature", json!("0.2")),
            err("temperature", "invalid_type")
        );
        assert_eq!(
            base("temperature", json!(2.5)),
            err("temperature", "invalid_value")
        );
        assert_eq!(
            base("max_tokens", json!(10.5)),
            err("max_tokens", "invalid_type")
        );
        assert_eq!(
            base("max_completion_tokens", json!("5")),
            err("max_completion_tokens", "invalid_type")
        );
        assert_eq!(base("n", json!(0)), err("n", "invalid_value"));
        assert_eq!(
            base("stop", json!(["a", "b", "c", "d", "e"])),
            err("stop", "invalid_value")
        );
        assert_eq!(base("stop", json!([1])), err("stop[0]", "invalid_type"));
        assert_eq!(
            base("stream_options", json!({"include_usage": true})),
            err("stream_options", "invalid_value")
        );
        assert_eq!(
            base("top_logprobs", json!(2)),
            err("top_logprobs", "invalid_value")
        );
        assert_eq!(
            base("reasoning_effort", json!("max")),
            err("reasoning_effort", "invalid_value")
        );
        assert_eq!(base("seed", json!(1.5)), err("seed", "invalid_type"));
        assert_eq!(
            base("response_format", json!({"type": "json"})),
            err("response_format.type", "invalid_value")
        );
        assert_eq!(
            base(
                "response_format",
                json!({"type": "json_schema", "json_schema": {"schema": {}}})
            ),
            err(
                "response_format.json_schema.name",
                "missing_required_parameter"
            )
        );
        assert_eq!(
            base(
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x"}})
            ),
            err(
                "response_format.json_schema.schema",
                "missing_required_parameter"
            )
        );
        assert_eq!(
            base("tool_choice", json!("any")),
            err("tool_choice", "invalid_value")
        );
        assert_eq!(
            base(
                "tool_choice",
                json!({"type": "function", "function": {"name": "nope"}})
            ),
            err("tool_choice", "invalid_value")
        );
        assert_eq!(
            base("tools", json!([{"type": "function", "name": "f"}])),
            err("tools[0].name", "unknown_parameter")
        );
        assert_eq!(
            base(
                "tools",
                json!([{"type": "function", "function": {"name": "f", "parameters": "{}"}}])
            ),
            err("tools[0].function.parameters", "invalid_type")
        );
        assert_eq!(
            base(
                "tools",
                json!([{"type": "google_search", "function": {"name": "f"}}])
            ),
            err("tools[0].type", "invalid_value")
        );
    }

    #[test]
    fn messages_follow_the_roles() {
        let msgs = |m: Value| chat(json!({"model": "m", "messages": m}));
        assert_eq!(
            msgs(json!([{"role": "model", "content": "x"}])),
            err("messages[0].role", "invalid_value")
        );
        assert_eq!(
            msgs(json!([{"content": "x"}])),
            err("messages[0].role", "missing_required_parameter")
        );
        assert_eq!(
            msgs(json!([{"role": "user"}])),
            err("messages[0].content", "missing_required_parameter")
        );
        assert_eq!(
            msgs(json!([{"role": "user", "content": [{"type": "inline_data", "data": "x"}]}])),
            err("messages[0].content[0].type", "invalid_value")
        );
        assert_eq!(
            msgs(
                json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}])
            ),
            err("messages[0].content[0].type", "invalid_value")
        );
        assert_eq!(
            msgs(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])),
            err(
                "messages[0].content[0].image_url.url",
                "missing_required_parameter"
            )
        );
        assert_eq!(
            msgs(
                json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}]}])
            ),
            err("messages[0].content[0].input_audio.format", "invalid_value")
        );
        assert_eq!(
            msgs(json!([{"role": "user", "content": 5}])),
            err("messages[0].content", "invalid_type")
        );
        assert_eq!(
            msgs(json!([user(), {"role": "tool", "tool_call_id": "call_x", "content": "r"}])),
            err("messages[1]", "invalid_value")
        );
        assert_eq!(
            msgs(json!([user(), {"role": "tool", "content": "r"}])),
            err("messages[1].tool_call_id", "missing_required_parameter")
        );
        let call = |f: Value| msgs(json!([user(), {"role": "assistant", "tool_calls": [f]}]));
        assert_eq!(
            call(
                json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}})
            ),
            err(
                "messages[1].tool_calls[0].function.arguments",
                "invalid_type"
            )
        );
        assert_eq!(
            call(json!({"type": "function", "function": {"name": "f", "arguments": "{}"}})),
            err("messages[1].tool_calls[0].id", "missing_required_parameter")
        );
        assert_eq!(
            call(json!({"id": "c", "function": {"name": "f", "arguments": "{}"}})),
            err(
                "messages[1].tool_calls[0].type",
                "missing_required_parameter"
            )
        );
        assert_eq!(
            call(json!({"id": "c", "type": "function", "function": {"arguments": "{}"}})),
            err(
                "messages[1].tool_calls[0].function.name",
                "missing_required_parameter"
            )
        );
        assert_eq!(
            msgs(json!([user(), {"role": "assistant"}])),
            err("messages[1].content", "missing_required_parameter")
        );
        assert_eq!(msgs(json!([])), err("messages", "empty_array"));
    }
}
