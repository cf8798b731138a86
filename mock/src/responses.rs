//! OpenAI Responses API (`/v1/responses`), as strict as OpenAI's: a request a real client
//! would get a 400 for gets the same 400 here (message, `param` and `code` in OpenAI's shape),
//! so a gateway test fails where production would.
//!
//! Answers follow the chat route's conventions: the last input item decides. A
//! `function_call_output` → `"Mock saw tool result: <first 64 chars of its output>"`; a user
//! message with function tools offered (and `tool_choice` not `none`) → function calls (one
//! per function tool when there are several and `parallel_tool_calls` is not `false`, else one
//! to the first tool or to the forced one); otherwise `"Mock reply to: <first 64 chars of the
//! last user text>"`. `text.format` `json_schema` answers an instance of the schema,
//! `json_object` `{"mock":true}`. Output tokens are the words of the text (one per call) plus
//! reasoning tokens; a text answer wants at least [`MIN_ANSWER_TOKENS`] (32), so a
//! `max_output_tokens` below that (or below the text's words) cuts it: `incomplete`.
//! Reasoning models (`o1`/`o3`/`o4`/`gpt-5`/`codex-` names) add a reasoning item.
//!
//! With `store` (default true) the answer is kept (the last [`MAX_STORED`]) for
//! `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`, `DELETE` and
//! `previous_response_id`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::deterministic::{
    filler, first64, first_words, fit_text, schema_instance, split_even, tokens_for_chars, words,
    FILL_MARK, MIN_ANSWER_TOKENS,
};
use crate::http::{json_reply, Reply, Request};
use crate::openai::{known_openai_model, openai_bad_json, openai_error};
use crate::routes::RouteOpts;
use crate::state::{lock, State};

/// How many stored responses are kept (oldest evicted first).
pub(crate) const MAX_STORED: usize = 10_000;
/// Deepest `previous_response_id` chain followed.
const MAX_CHAIN: usize = 1_000;
/// What our `encrypted_content` decodes to the start of; anything else is not ours.
const ENCRYPTED_PREFIX: &str = "mock-reasoning:";

/// Top-level fields of `POST /v1/responses` the mock knows.
const CREATE_KEYS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "metadata",
    "user",
    "store",
    "stream",
    "stream_options",
    "include",
    "reasoning",
    "previous_response_id",
    "truncation",
    "service_tier",
    "background",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
];
/// Real OpenAI fields this mock does not model: a 400 naming them, never a silent ignore.
const UNMODELLED_KEYS: &[&str] = &["conversation", "prompt", "context_management"];
/// Chat Completions fields that moved, with OpenAI's hint of where to.
const MOVED_KEYS: &[(&str, &str)] = &[
    ("messages", "input"),
    ("response_format", "text.format"),
    ("max_tokens", "max_output_tokens"),
    ("max_completion_tokens", "max_output_tokens"),
    ("functions", "tools"),
];
/// Values of `include`.
const INCLUDABLE: &[&str] = &[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
];
/// Built-in tool types: accepted as OpenAI does; the mock never calls them.
const BUILTIN_TOOLS: &[&str] = &[
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "computer",
    "computer_use_preview",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
    "tool_search",
];
/// Input item types the mock accepts.
const ITEM_TYPES: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
];
/// Content part types of user, system and developer messages.
const INPUT_PARTS: &[&str] = &["input_text", "input_image", "input_file"];
/// Content part types of assistant messages.
const OUTPUT_PARTS: &[&str] = &["output_text", "refusal"];

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An OpenAI error answer.
#[derive(Debug, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    fn bad(message: String, param: Option<&str>, code: Option<&'static str>) -> Self {
        ApiError {
            status: 400,
            message,
            param: param.map(str::to_owned),
            code,
        }
    }

    /// The error as a reply.
    fn reply(&self) -> Reply {
        openai_error(self.status, &self.message, self.param.as_deref(), self.code)
    }
}

/// `Unknown parameter: 'x'.`
fn unknown(param: &str) -> ApiError {
    ApiError::bad(
        format!("Unknown parameter: '{param}'."),
        Some(param),
        Some("unknown_parameter"),
    )
}

/// `Missing required parameter: 'x'.`
fn missing(param: &str) -> ApiError {
    ApiError::bad(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// How OpenAI names the JSON type it got.
fn got(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `Invalid type for 'x': expected a string, but got an integer instead.`
fn bad_type(param: &str, expected: &str, v: &Value) -> ApiError {
    ApiError::bad(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            got(v)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

/// `Invalid value: 'x'. Supported values are: 'a', 'b', and 'c'.`
fn bad_value(param: &str, value: &str, supported: &[&str]) -> ApiError {
    let quoted: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
    let list = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, [one])) => format!("{one} and {last}"),
        Some((last, rest)) => format!("{}, and {last}", rest.join(", ")),
        None => String::new(),
    };
    ApiError::bad(
        format!("Invalid value: '{value}'. Supported values are: {list}."),
        Some(param),
        Some("invalid_value"),
    )
}

/// `Invalid 'x': integer below minimum value. Expected a value >= 16, but got 5 instead.`
fn out_of_range(param: &str, v: &Value, kind: &str, min: f64, max: Option<f64>) -> ApiError {
    let n = v.as_f64().unwrap_or_default();
    let (side, bound, op) = if n < min {
        ("below_min", min, ">=")
    } else {
        ("above_max", max.unwrap_or(min), "<=")
    };
    let words = if side == "below_min" {
        "below minimum"
    } else {
        "above maximum"
    };
    let code = match (kind, side) {
        ("integer", "below_min") => "integer_below_min_value",
        ("integer", _) => "integer_above_max_value",
        (_, "below_min") => "decimal_below_min_value",
        _ => "decimal_above_max_value",
    };
    ApiError::bad(
        format!("Invalid '{param}': {kind} {words} value. Expected a value {op} {bound}, but got {v} instead."),
        Some(param),
        Some(code),
    )
}

/// `Unsupported parameter: 'x' is not supported with this model.`
fn unsupported_here(param: &str) -> ApiError {
    ApiError::bad(
        format!("Unsupported parameter: '{param}' is not supported with this model."),
        Some(param),
        Some("unsupported_parameter"),
    )
}

/// The 404 of an unknown model.
fn model_not_found(model: &str) -> ApiError {
    ApiError {
        status: 404,
        message: format!("The model `{model}` does not exist or you do not have access to it."),
        param: None,
        code: Some("model_not_found"),
    }
}

/// The 404 of an unknown (or deleted, or never stored) response id.
fn response_not_found(id: &str) -> Reply {
    openai_error(
        404,
        &format!("Response with id '{id}' not found."),
        None,
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Typed access to a JSON object, errors naming the field path
// ---------------------------------------------------------------------------------------------

/// A JSON object and its path in the request (`""` for the body, `input[1]`, `text.format`).
#[derive(Clone, Copy)]
struct Obj<'a, 'p> {
    map: &'a Map<String, Value>,
    path: &'p str,
}

impl<'a, 'p> Obj<'a, 'p> {
    /// Requires an object at `path`.
    fn at(v: &'a Value, path: &'p str, expected: &str) -> Result<Self, ApiError> {
        match v.as_object() {
            Some(map) => Ok(Obj { map, path }),
            None => Err(bad_type(path, expected, v)),
        }
    }

    /// The path of a field.
    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Rejects fields outside `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(unknown(&self.field(k))),
            None => Ok(()),
        }
    }

    /// A field that is present and not `null` (OpenAI treats `null` as "not given").
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required field.
    fn req(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key).ok_or_else(|| missing(&self.field(key)))
    }

    /// An optional string.
    fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(bad_type(&self.field(key), "a string", v)),
        }
    }

    /// A required string.
    fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str(key)?.ok_or_else(|| missing(&self.field(key)))
    }

    /// An optional boolean.
    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(bad_type(&self.field(key), "a boolean", v)),
        }
    }

    /// An optional number within `[min, max]`.
    fn number(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                let x = n.as_f64().unwrap_or_default();
                if (min..=max).contains(&x) {
                    Ok(Some(x))
                } else {
                    Err(out_of_range(&self.field(key), v, "decimal", min, Some(max)))
                }
            }
            Some(v) => Err(bad_type(&self.field(key), "a decimal", v)),
        }
    }

    /// An optional integer within `[min, max]` (`max` `None`: unbounded).
    fn integer(&self, key: &str, min: i64, max: Option<i64>) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let Some(n) = v.as_i64() else {
                    return Err(bad_type(&self.field(key), "an integer", v));
                };
                if n < min || max.is_some_and(|m| n > m) {
                    return Err(out_of_range(
                        &self.field(key),
                        v,
                        "integer",
                        min as f64,
                        max.map(|m| m as f64),
                    ));
                }
                Ok(Some(n))
            }
        }
    }

    /// An optional string out of `values`.
    fn choice(&self, key: &str, values: &[&str]) -> Result<Option<&'a str>, ApiError> {
        match self.str(key)? {
            Some(s) if !values.contains(&s) => Err(bad_value(&self.field(key), s, values)),
            other => Ok(other),
        }
    }

    /// An optional array.
    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(bad_type(&self.field(key), "an array", v)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stored responses
// ---------------------------------------------------------------------------------------------

/// One kept response: what `GET` returns, its own input items, and its predecessor.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) response: Value,
    pub(crate) input: Vec<Value>,
    pub(crate) previous: Option<String>,
}

/// The bounded response store (`store: true`), oldest evicted first.
#[derive(Default)]
pub(crate) struct Store {
    by_id: HashMap<String, Stored>,
    order: VecDeque<String>,
}

impl Store {
    /// Keeps a response, evicting the oldest beyond [`MAX_STORED`].
    pub(crate) fn insert(&mut self, id: String, stored: Stored) {
        while self.by_id.len() >= MAX_STORED {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_id.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id.clone());
        self.by_id.insert(id, stored);
    }

    /// A kept response.
    pub(crate) fn get(&self, id: &str) -> Option<&Stored> {
        self.by_id.get(id)
    }

    /// Forgets a response; `false` if it was not kept.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let found = self.by_id.remove(id).is_some();
        if found {
            self.order.retain(|k| k != id);
        }
        found
    }

    /// How many responses are kept.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets everything (`POST /_mock/reset`).
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }

    /// The conversation before a response and including it: every input and output item of
    /// the chain, oldest first.
    fn context(&self, id: &str) -> Vec<Value> {
        let mut chain = Vec::new();
        let mut next = Some(id);
        while let Some(stored) = next.and_then(|id| self.by_id.get(id)) {
            chain.push(stored);
            if chain.len() >= MAX_CHAIN {
                break;
            }
            next = stored.previous.as_deref();
        }
        let mut items = Vec::new();
        for stored in chain.iter().rev() {
            items.extend(stored.input.iter().cloned());
            if let Some(output) = stored.response["output"].as_array() {
                items.extend(output.iter().cloned());
            }
        }
        items
    }

    /// A kept input or output item by id (`item_reference`, a reasoning item sent back by id).
    fn find_item(&self, item_id: &str) -> Option<&Value> {
        self.by_id.values().find_map(|s| {
            let output = s.response["output"].as_array().into_iter().flatten();
            output.chain(&s.input).find(|i| i["id"] == item_id)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The request, validated
// ---------------------------------------------------------------------------------------------

/// One function tool offered.
#[derive(Debug, Clone)]
struct FunctionTool<'a> {
    name: &'a str,
    parameters: Option<&'a Value>,
}

/// `tool_choice`, reduced to what decides the answer.
#[derive(Debug, Clone, PartialEq)]
enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    /// One function, by name.
    Function(&'a str),
    /// `allowed_tools`: only these function names.
    Allowed(Vec<&'a str>),
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq)]
enum Format<'a> {
    Text,
    JsonObject,
    JsonSchema(&'a Value),
}

/// What the fake model answers.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// A message with this text.
    Text(String),
    /// Function calls: (name, arguments).
    Calls(Vec<(String, String)>),
}

/// A validated create request and the answer it gets.
#[derive(Debug)]
struct Plan<'a> {
    body: &'a Map<String, Value>,
    model: &'a str,
    /// This request's input items, normalised (string content as parts, ids assigned).
    input: Vec<Value>,
    previous: Option<&'a str>,
    answer: Answer,
    /// Reasoning tokens (0: no reasoning item).
    reasoning_tokens: u64,
    reasoning_summary: bool,
    encrypted_reasoning: bool,
    input_tokens: u64,
    max_output_tokens: Option<u64>,
    stream: bool,
    store: bool,
    /// Output words to report instead of counting the text (`size` fault).
    output_words: Option<u64>,
}

/// Names whose models reason (and so refuse `temperature`/`top_p`, accept `reasoning`).
fn reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5", "codex-"]
        .iter()
        .any(|p| model.starts_with(p))
        && !model.starts_with("gpt-5-chat")
}

/// Reasoning tokens the mock spends per effort.
fn effort_tokens(effort: &str) -> u64 {
    match effort {
        "none" => 0,
        "minimal" => 4,
        "low" => 8,
        "high" => 32,
        "xhigh" => 64,
        _ => 16,
    }
}

/// Text of a message `content` (a string, or its text parts space-joined).
fn content_text(content: &Value) -> String {
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

/// Text an item contributes to the prompt (messages, call arguments and outputs).
fn item_text(item: &Value) -> String {
    match item["type"].as_str() {
        Some("message") => content_text(&item["content"]),
        Some("function_call") => item["arguments"].as_str().unwrap_or_default().to_owned(),
        Some("function_call_output") => content_text(&item["output"]),
        _ => String::new(),
    }
}

/// A fresh id with OpenAI's shape: `prefix` + 48 hex digits derived from `seed`.
fn mint(prefix: &str, seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    format!("{prefix}{}", &hex::encode(digest)[..48])
}

/// Our opaque reasoning state: base64 of [`ENCRYPTED_PREFIX`] + the item id.
fn encrypted_content(item_id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{ENCRYPTED_PREFIX}{item_id}"))
}

/// Whether `encrypted_content` is one the mock minted (what OpenAI checks with its keys).
fn ours(encrypted: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(encrypted)
        .is_ok_and(|raw| raw.starts_with(ENCRYPTED_PREFIX.as_bytes()))
}

/// Validates a content part list of a message with `role`.
fn validate_parts(parts: &[Value], path: &str, role: &str) -> Result<(), ApiError> {
    let allowed = if role == "assistant" {
        OUTPUT_PARTS
    } else {
        INPUT_PARTS
    };
    for (j, part) in parts.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let o = Obj::at(part, &p, "an object")?;
        let ty = o.req_str("type")?;
        if !allowed.contains(&ty) {
            return Err(bad_value(&o.field("type"), ty, allowed));
        }
        validate_part(o, ty)?;
    }
    Ok(())
}

/// Validates one content part whose type is allowed where it stands.
fn validate_part(o: Obj<'_, '_>, ty: &str) -> Result<(), ApiError> {
    match ty {
        "input_text" => {
            o.only(&["type", "text", "prompt_cache_breakpoint"])?;
            o.req_str("text")?;
        }
        "output_text" => {
            o.only(&["type", "text", "annotations", "logprobs"])?;
            o.req_str("text")?;
            o.array("annotations")?;
            o.array("logprobs")?;
        }
        "refusal" => {
            o.only(&["type", "refusal"])?;
            o.req_str("refusal")?;
        }
        "input_image" => {
            o.only(&[
                "type",
                "image_url",
                "file_id",
                "detail",
                "prompt_cache_breakpoint",
            ])?;
            o.choice("detail", &["low", "high", "auto", "original"])?;
            let url = o.str("image_url")?;
            if url.is_none() && o.str("file_id")?.is_none() {
                return Err(missing(&o.field("image_url")));
            }
            if let Some(url) = url {
                let ok = url.starts_with("https://")
                    || url.starts_with("http://")
                    || (url.starts_with("data:image/") && url.contains(";base64,"));
                if !ok {
                    let param = o.field("image_url");
                    return Err(ApiError::bad(
                        format!("Invalid '{param}'. Expected a valid URL, but got a value with an invalid format."),
                        Some(&param),
                        Some("invalid_value"),
                    ));
                }
            }
        }
        "input_file" => {
            o.only(&[
                "type",
                "file_id",
                "file_data",
                "file_url",
                "filename",
                "detail",
                "prompt_cache_breakpoint",
            ])?;
            o.str("filename")?;
            o.choice("detail", &["low", "high", "auto"])?;
            let given = [o.str("file_id")?, o.str("file_data")?, o.str("file_url")?];
            if given.iter().all(Option::is_none) {
                return Err(missing(&o.field("file_id")));
            }
        }
        _ => return Err(bad_value(&o.field("type"), ty, INPUT_PARTS)),
    }
    Ok(())
}

/// Validates and normalises one input item; `seed` makes assigned ids unique.
fn validate_item(item: &Value, path: &str, seed: &str, store: &Store) -> Result<Value, ApiError> {
    let o = Obj::at(item, path, "an input item object")?;
    let ty = match (o.str("type")?, o.get("role")) {
        (Some(ty), _) => ty,
        (None, Some(_)) => "message",
        (None, None) => return Err(missing(&o.field("type"))),
    };
    if !ITEM_TYPES.contains(&ty) {
        return Err(bad_value(&o.field("type"), ty, ITEM_TYPES));
    }
    let mut out = o.map.clone();
    out.insert("type".to_owned(), json!(ty));
    match ty {
        "message" => {
            o.only(&["type", "role", "content", "id", "status", "phase"])?;
            let role = o
                .choice("role", &["user", "assistant", "system", "developer"])?
                .ok_or_else(|| missing(&o.field("role")))?;
            o.str("id")?;
            o.choice("status", &["in_progress", "completed", "incomplete"])?;
            o.choice("phase", &["commentary", "final_answer"])?;
            match o.req("content")? {
                Value::String(text) => {
                    let part = if role == "assistant" {
                        json!({"type": "output_text", "text": text, "annotations": []})
                    } else {
                        json!({"type": "input_text", "text": text})
                    };
                    out.insert("content".to_owned(), json!([part]));
                }
                Value::Array(parts) => validate_parts(parts, &o.field("content"), role)?,
                v => {
                    return Err(bad_type(
                        &o.field("content"),
                        "one of a string or array of input content",
                        v,
                    ))
                }
            }
            out.entry("status").or_insert(json!("completed"));
            out.entry("id").or_insert_with(|| json!(mint("msg_", seed)));
        }
        "function_call" => {
            o.only(&["type", "id", "call_id", "name", "arguments", "status"])?;
            o.req_str("call_id")?;
            o.req_str("name")?;
            o.req_str("arguments")?;
            o.str("id")?;
            o.choice("status", &["in_progress", "completed", "incomplete"])?;
            out.entry("id").or_insert_with(|| json!(mint("fc_", seed)));
            out.entry("status").or_insert(json!("completed"));
        }
        "function_call_output" => {
            o.only(&["type", "id", "call_id", "output", "status"])?;
            o.req_str("call_id")?;
            o.str("id")?;
            o.choice("status", &["in_progress", "completed", "incomplete"])?;
            match o.req("output")? {
                Value::String(_) => {}
                Value::Array(parts) => {
                    for (j, part) in parts.iter().enumerate() {
                        let p = format!("{}[{j}]", o.field("output"));
                        let po = Obj::at(part, &p, "an object")?;
                        let pty = po.req_str("type")?;
                        if !INPUT_PARTS.contains(&pty) {
                            return Err(bad_value(&po.field("type"), pty, INPUT_PARTS));
                        }
                        validate_part(po, pty)?;
                    }
                }
                v => {
                    return Err(bad_type(
                        &o.field("output"),
                        "one of a string or array of output content",
                        v,
                    ))
                }
            }
            out.entry("id").or_insert_with(|| json!(mint("fco_", seed)));
            out.entry("status").or_insert(json!("completed"));
        }
        "item_reference" => {
            // Clients with `store` send earlier items by id (the AI SDK does): the item kept.
            o.only(&["type", "id"])?;
            let id = o.req_str("id")?;
            return store.find_item(id).cloned().ok_or_else(|| {
                ApiError::bad(
                    format!("Item with id '{id}' not found."),
                    Some(&o.field("id")),
                    None,
                )
            });
        }
        _ => {
            // "reasoning", the one type left of ITEM_TYPES.
            o.only(&[
                "type",
                "id",
                "summary",
                "encrypted_content",
                "content",
                "status",
            ])?;
            let id = o.req_str("id")?;
            let summary = o
                .array("summary")?
                .ok_or_else(|| missing(&o.field("summary")))?;
            for (j, part) in summary.iter().enumerate() {
                let p = format!("{}[{j}]", o.field("summary"));
                let so = Obj::at(part, &p, "an object")?;
                so.only(&["type", "text"])?;
                so.choice("type", &["summary_text"])?
                    .ok_or_else(|| missing(&so.field("type")))?;
                so.req_str("text")?;
            }
            o.array("content")?;
            o.choice("status", &["in_progress", "completed", "incomplete"])?;
            match o.str("encrypted_content")? {
                Some(enc) if !ours(enc) => {
                    return Err(ApiError::bad(
                        format!("The encrypted content for item {id} could not be verified."),
                        None,
                        Some("invalid_encrypted_content"),
                    ))
                }
                Some(_) => {}
                None if store.find_item(id).is_none() => {
                    return Err(ApiError::bad(
                        format!("Item with id '{id}' not found. Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input."),
                        Some("input"),
                        None,
                    ))
                }
                None => {}
            }
        }
    }
    Ok(Value::Object(out))
}

/// Every function call must be answered and every answer must follow its call.
fn check_calls(context: &[Value], input: &[Value]) -> Result<(), ApiError> {
    let mut open: Vec<String> = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut answered: HashSet<String> = HashSet::new();
    for item in context {
        let call = item["call_id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("function_call") => {
                known.insert(call.clone());
                open.push(call);
            }
            Some("function_call_output") => {
                answered.insert(call);
            }
            _ => {}
        }
    }
    // Calls the previous response made and never saw answered must be answered now.
    open.retain(|c| !answered.contains(c));
    for item in input {
        let call = item["call_id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("function_call") => {
                known.insert(call.clone());
                open.push(call);
            }
            Some("function_call_output") => {
                if !known.contains(&call) {
                    return Err(ApiError::bad(
                        format!("No tool call found for function call output with call_id {call}."),
                        Some("input"),
                        None,
                    ));
                }
                open.retain(|c| *c != call);
            }
            _ => {}
        }
    }
    match open.first() {
        Some(call) => Err(ApiError::bad(
            format!("No tool output found for function call {call}."),
            Some("input"),
            None,
        )),
        None => Ok(()),
    }
}

/// Checks a schema meant for strict mode: every object closes its properties
/// (`additionalProperties: false`) and requires all of them, as OpenAI insists.
fn check_strict_schema(schema: &Value, context: &mut Vec<String>) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Ok(());
    };
    let where_ = || {
        let quoted: Vec<String> = context.iter().map(|c| format!("'{c}'")).collect();
        match quoted.len() {
            0 => "()".to_owned(),
            1 => format!("({},)", quoted.join(", ")),
            _ => format!("({})", quoted.join(", ")),
        }
    };
    let is_object =
        obj.get("type").and_then(Value::as_str) == Some("object") || obj.contains_key("properties");
    if is_object {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "In context={}, 'additionalProperties' is required to be supplied and to be false.",
                where_()
            ));
        }
        let props: Vec<&String> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(absent) = props.iter().find(|p| !required.contains(&p.as_str())) {
            return Err(format!(
                "In context={}, 'required' is required to be supplied and to be an array including every key in properties. Missing '{absent}'.",
                where_()
            ));
        }
    }
    for (key, sub) in obj {
        match (key.as_str(), sub) {
            ("properties" | "$defs" | "definitions", Value::Object(map)) => {
                for (name, s) in map {
                    context.push(key.clone());
                    context.push(name.clone());
                    check_strict_schema(s, context)?;
                    context.truncate(context.len() - 2);
                }
            }
            ("items", s) => {
                context.push(key.clone());
                check_strict_schema(s, context)?;
                context.pop();
            }
            ("anyOf" | "allOf", Value::Array(options)) => {
                for (i, s) in options.iter().enumerate() {
                    context.push(key.clone());
                    context.push(i.to_string());
                    check_strict_schema(s, context)?;
                    context.truncate(context.len() - 2);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates `tools`.
fn validate_tools<'a>(body: Obj<'a, '_>) -> Result<Vec<FunctionTool<'a>>, ApiError> {
    let mut functions = Vec::new();
    let Some(tools) = body.array("tools")? else {
        return Ok(functions);
    };
    for (i, tool) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        let o = Obj::at(tool, &p, "an object")?;
        let ty = o.req_str("type")?;
        if BUILTIN_TOOLS.contains(&ty) {
            continue;
        }
        if ty != "function" {
            let mut supported = vec!["function"];
            supported.extend_from_slice(BUILTIN_TOOLS);
            return Err(bad_value(&o.field("type"), ty, &supported));
        }
        // A Chat Completions tool (`{"type":"function","function":{...}}`) lacks `name` here.
        let name = o.req_str("name")?;
        o.only(&[
            "type",
            "name",
            "description",
            "parameters",
            "strict",
            "defer_loading",
        ])?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            let param = o.field("name");
            return Err(ApiError::bad(
                format!("Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                Some(&param),
                Some("invalid_value"),
            ));
        }
        o.str("description")?;
        o.bool("defer_loading")?;
        let parameters = match o.get("parameters") {
            None => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(v) => return Err(bad_type(&o.field("parameters"), "an object", v)),
        };
        if let (Some(true), Some(schema)) = (o.bool("strict")?, parameters) {
            check_strict_schema(schema, &mut Vec::new()).map_err(|why| {
                ApiError::bad(
                    format!("Invalid schema for function '{name}': {why}"),
                    Some(&o.field("parameters")),
                    Some("invalid_function_parameters"),
                )
            })?;
        }
        if functions.iter().any(|f: &FunctionTool<'_>| f.name == name) {
            return Err(ApiError::bad(
                format!("Duplicate tool name: '{name}'."),
                Some("tools"),
                None,
            ));
        }
        functions.push(FunctionTool { name, parameters });
    }
    Ok(functions)
}

/// Validates `tool_choice`.
fn validate_tool_choice<'a>(
    body: Obj<'a, '_>,
    functions: &[FunctionTool<'a>],
    any_tools: bool,
) -> Result<ToolChoice<'a>, ApiError> {
    let choice = match body.get("tool_choice") {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad_value(
                    "tool_choice",
                    other,
                    &["none", "auto", "required"],
                ))
            }
        },
        Some(v @ Value::Object(_)) => {
            let o = Obj::at(v, "tool_choice", "an object")?;
            match o.req_str("type")? {
                "function" => {
                    o.only(&["type", "name"])?;
                    let name = o.req_str("name")?;
                    if !functions.iter().any(|f| f.name == name) {
                        return Err(ApiError::bad(
                            format!("Tool choice '{name}' not found in 'tools' parameter."),
                            Some("tool_choice"),
                            None,
                        ));
                    }
                    ToolChoice::Function(name)
                }
                "allowed_tools" => {
                    o.only(&["type", "mode", "tools"])?;
                    o.choice("mode", &["auto", "required"])?
                        .ok_or_else(|| missing(&o.field("mode")))?;
                    let tools = o
                        .array("tools")?
                        .ok_or_else(|| missing(&o.field("tools")))?;
                    let names = tools
                        .iter()
                        .filter(|t| t["type"] == "function")
                        .filter_map(|t| t["name"].as_str())
                        .collect();
                    ToolChoice::Allowed(names)
                }
                ty if BUILTIN_TOOLS.contains(&ty) => ToolChoice::Auto,
                ty => {
                    let mut supported = vec!["function", "allowed_tools"];
                    supported.extend_from_slice(BUILTIN_TOOLS);
                    return Err(bad_value(&o.field("type"), ty, &supported));
                }
            }
        }
        Some(v) => return Err(bad_type("tool_choice", "one of a string or an object", v)),
    };
    if choice == ToolChoice::Required && !any_tools {
        return Err(ApiError::bad(
            "Tool choice 'required' must be specified with 'tools' parameter.".to_owned(),
            Some("tool_choice"),
            None,
        ));
    }
    Ok(choice)
}

/// Validates `text`.
fn validate_text<'a>(body: Obj<'a, '_>) -> Result<Format<'a>, ApiError> {
    let Some(text) = body.get("text") else {
        return Ok(Format::Text);
    };
    let t = Obj::at(text, "text", "an object")?;
    t.only(&["format", "verbosity"])?;
    t.choice("verbosity", &["low", "medium", "high"])?;
    let Some(format) = t.get("format") else {
        return Ok(Format::Text);
    };
    let f = Obj::at(format, "text.format", "an object")?;
    let kinds = ["text", "json_object", "json_schema"];
    let kind = f.req_str("type")?;
    match kind {
        "text" | "json_object" => {
            f.only(&["type"])?;
            Ok(if kind == "text" {
                Format::Text
            } else {
                Format::JsonObject
            })
        }
        "json_schema" => {
            // A Chat Completions `{"type":"json_schema","json_schema":{...}}` lacks `name` here.
            let name = f.req_str("name")?;
            f.only(&["type", "name", "schema", "description", "strict"])?;
            f.str("description")?;
            let schema = match f.req("schema")? {
                v @ Value::Object(_) => v,
                v => return Err(bad_type("text.format.schema", "an object", v)),
            };
            if f.bool("strict")? == Some(true) {
                check_strict_schema(schema, &mut Vec::new()).map_err(|why| {
                    ApiError::bad(
                        format!("Invalid schema for response_format '{name}': {why}"),
                        Some("text.format.schema"),
                        Some("invalid_json_schema"),
                    )
                })?;
            }
            Ok(Format::JsonSchema(schema))
        }
        other => Err(bad_value("text.format.type", other, &kinds)),
    }
}

/// Validates the top-level scalar fields, `metadata`, `include` and `reasoning`; returns
/// (reasoning effort, summary asked).
fn validate_settings<'a>(
    body: Obj<'a, '_>,
    model: &str,
) -> Result<(Option<&'a str>, bool), ApiError> {
    body.str("instructions")?;
    body.str("user")?;
    body.str("previous_response_id")?;
    body.str("prompt_cache_key")?;
    body.str("safety_identifier")?;
    body.bool("store")?;
    body.bool("stream")?;
    body.bool("parallel_tool_calls")?;
    body.bool("background")?;
    body.integer("max_output_tokens", 16, None)?;
    body.integer("max_tool_calls", 1, None)?;
    body.integer("top_logprobs", 0, Some(20))?;
    let thinks = reasoning_model(model);
    if body.number("temperature", 0.0, 2.0)?.is_some() && thinks {
        return Err(unsupported_here("temperature"));
    }
    if body.number("top_p", 0.0, 1.0)?.is_some() && thinks {
        return Err(unsupported_here("top_p"));
    }
    body.choice("truncation", &["auto", "disabled"])?;
    body.choice(
        "service_tier",
        &["auto", "default", "flex", "scale", "priority"],
    )?;
    body.choice("prompt_cache_retention", &["in_memory", "24h"])?;
    if let Some(opts) = body.get("stream_options") {
        let o = Obj::at(opts, "stream_options", "an object")?;
        o.only(&["include_obfuscation"])?;
        o.bool("include_obfuscation")?;
    }
    if let Some(meta) = body.get("metadata") {
        let m = Obj::at(meta, "metadata", "an object")?;
        if m.map.len() > 16 {
            return Err(ApiError::bad(
                format!("Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with {} properties instead.", m.map.len()),
                Some("metadata"),
                Some("object_above_max_properties"),
            ));
        }
        for (k, v) in m.map {
            let param = m.field(k);
            match v {
                Value::String(s) if s.chars().count() > 512 => {
                    return Err(ApiError::bad(
                        format!("Invalid '{param}': string too long. Expected a string with maximum length 512, but got a string with length {} instead.", s.chars().count()),
                        Some(&param),
                        Some("string_above_max_length"),
                    ))
                }
                Value::String(_) if k.chars().count() > 64 => {
                    return Err(ApiError::bad(
                        format!("Invalid 'metadata': key '{k}' is longer than 64 characters."),
                        Some("metadata"),
                        Some("invalid_value"),
                    ))
                }
                Value::String(_) => {}
                v => return Err(bad_type(&param, "a string", v)),
            }
        }
    }
    for (i, inc) in body.array("include")?.into_iter().flatten().enumerate() {
        let param = format!("include[{i}]");
        match inc.as_str() {
            Some(s) if INCLUDABLE.contains(&s) => {}
            Some(s) => return Err(bad_value(&param, s, INCLUDABLE)),
            None => return Err(bad_type(&param, "a string", inc)),
        }
    }
    let Some(reasoning) = body.get("reasoning") else {
        return Ok((thinks.then_some("medium"), false));
    };
    let r = Obj::at(reasoning, "reasoning", "an object")?;
    r.only(&["effort", "summary", "generate_summary"])?;
    let effort = r.choice(
        "effort",
        &["none", "minimal", "low", "medium", "high", "xhigh"],
    )?;
    let summary = r.choice("summary", &["auto", "concise", "detailed"])?;
    let generate = r.choice("generate_summary", &["auto", "concise", "detailed"])?;
    if !thinks {
        if effort.is_some() {
            return Err(unsupported_here("reasoning.effort"));
        }
        if summary.is_some() || generate.is_some() {
            return Err(unsupported_here("reasoning.summary"));
        }
        return Ok((None, false));
    }
    Ok((
        Some(effort.unwrap_or("medium")),
        summary.or(generate).is_some(),
    ))
}

/// Validates a create request against the store and decides the answer.
fn plan<'a>(body: &'a Value, seed: &str, store: &Store) -> Result<Plan<'a>, ApiError> {
    let root = Obj::at(body, "", "an object").map_err(|_| {
        ApiError::bad(
            "Invalid type for request body: expected an object.".to_owned(),
            None,
            Some("invalid_type"),
        )
    })?;
    for key in root.map.keys() {
        if let Some((_, to)) = MOVED_KEYS.iter().find(|(from, _)| from == key) {
            return Err(ApiError::bad(
                format!("Unsupported parameter: '{key}'. In the Responses API, this parameter has moved to '{to}'. Try again with the new parameter."),
                Some(key),
                Some("unsupported_parameter"),
            ));
        }
        if UNMODELLED_KEYS.contains(&key.as_str()) {
            return Err(ApiError::bad(
                format!("The mock provider does not model '{key}'."),
                Some(key),
                Some("unsupported_parameter"),
            ));
        }
    }
    root.only(CREATE_KEYS)?;
    let model = root.req_str("model")?;
    if !known_openai_model(model) {
        return Err(model_not_found(model));
    }
    let (effort, reasoning_summary) = validate_settings(root, model)?;
    let functions = validate_tools(root)?;
    let any_tools = root.array("tools")?.is_some_and(|t| !t.is_empty());
    let choice = validate_tool_choice(root, &functions, any_tools)?;
    let format = validate_text(root)?;
    let previous = root.str("previous_response_id")?;
    let context = match previous {
        Some(id) if store.get(id).is_none() => {
            return Err(ApiError::bad(
                format!("Previous response with id '{id}' not found."),
                Some("previous_response_id"),
                Some("previous_response_not_found"),
            ))
        }
        Some(id) => store.context(id),
        None => Vec::new(),
    };
    let input = match root.req("input")? {
        Value::String(text) => vec![json!({
            "id": mint("msg_", &format!("{seed}/0")),
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
            "status": "completed",
        })],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                validate_item(item, &format!("input[{i}]"), &format!("{seed}/{i}"), store)
            })
            .collect::<Result<Vec<_>, _>>()?,
        v => {
            return Err(bad_type(
                "input",
                "one of a string or array of input items",
                v,
            ))
        }
    };
    check_calls(&context, &input)?;
    let instructions = root.str("instructions")?.unwrap_or_default();
    let everything = || context.iter().chain(&input);
    if format == Format::JsonObject {
        let mentions_json = instructions.to_ascii_lowercase().contains("json")
            || everything()
                .filter(|i| i["type"] == "message")
                .any(|i| item_text(i).to_ascii_lowercase().contains("json"));
        if !mentions_json {
            return Err(ApiError::bad(
                "Response input messages must contain the word 'json' in some form to use 'text.format' of type 'json_object'.".to_owned(),
                Some("input"),
                None,
            ));
        }
    }
    let chars: usize = instructions.chars().count()
        + everything()
            .map(|i| item_text(i).chars().count())
            .sum::<usize>();
    let last_user = everything()
        .rev()
        .find(|i| i["type"] == "message" && i["role"] == "user")
        .map(item_text)
        .unwrap_or_default();
    let callable: Vec<&FunctionTool<'_>> = functions
        .iter()
        .filter(|f| match &choice {
            ToolChoice::None => false,
            ToolChoice::Function(name) => f.name == *name,
            ToolChoice::Allowed(names) => names.contains(&f.name),
            ToolChoice::Auto | ToolChoice::Required => true,
        })
        .collect();
    let last = input.last().or(context.last());
    let last_is_user = last.is_some_and(|i| i["type"] == "message" && i["role"] == "user");
    let parallel = root.bool("parallel_tool_calls")? != Some(false);
    let answer = match last {
        Some(item) if item["type"] == "function_call_output" => Answer::Text(format!(
            "Mock saw tool result: {}",
            first64(&content_text(&item["output"]))
        )),
        _ if last_is_user && !callable.is_empty() => {
            let chosen = if parallel && callable.len() > 1 {
                &callable[..]
            } else {
                &callable[..1]
            };
            Answer::Calls(
                chosen
                    .iter()
                    .map(|f| (f.name.to_owned(), call_arguments(f.parameters)))
                    .collect(),
            )
        }
        _ => Answer::Text(format!("Mock reply to: {}", first64(&last_user))),
    };
    let answer = match (answer, &format) {
        (Answer::Text(_), Format::JsonSchema(schema)) => {
            Answer::Text(schema_instance(schema).to_string())
        }
        (Answer::Text(_), Format::JsonObject) => Answer::Text("{\"mock\":true}".to_owned()),
        (answer, _) => answer,
    };
    let include_encrypted = root
        .array("include")?
        .is_some_and(|inc| inc.iter().any(|v| v == "reasoning.encrypted_content"));
    Ok(Plan {
        body: root.map,
        model,
        input,
        previous,
        answer,
        reasoning_tokens: effort.map_or(0, effort_tokens),
        reasoning_summary,
        encrypted_reasoning: include_encrypted,
        input_tokens: tokens_for_chars(chars),
        max_output_tokens: root
            .integer("max_output_tokens", 16, None)?
            .and_then(|n| u64::try_from(n).ok()),
        stream: root.bool("stream")? == Some(true),
        store: root.bool("store")? != Some(false),
        output_words: None,
    })
}

/// Arguments of a call: an instance of the tool's schema, or the chat route's `{"mock":true}`.
fn call_arguments(parameters: Option<&Value>) -> String {
    match parameters {
        Some(schema) if schema.get("properties").is_some() => schema_instance(schema).to_string(),
        _ => "{\"mock\":true}".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The response object
// ---------------------------------------------------------------------------------------------

/// Builds the finished `response` object (status `completed` or `incomplete`).
fn build_response(plan: &Plan<'_>, id: &str, created_at: u64) -> Value {
    let mut output = Vec::new();
    let budget = plan.max_output_tokens.unwrap_or(u64::MAX);
    let mut used = plan.reasoning_tokens.min(budget);
    let mut incomplete = plan.reasoning_tokens > budget;
    if plan.reasoning_tokens > 0 {
        let rs_id = mint("rs_", &format!("{id}/reasoning"));
        let summary = if plan.reasoning_summary {
            json!([{"type": "summary_text", "text": "**Mock reasoning**\n\nThe mock thought about the request."}])
        } else {
            json!([])
        };
        let mut item = json!({"id": rs_id, "type": "reasoning", "summary": summary});
        if let (true, Some(obj)) = (plan.encrypted_reasoning, item.as_object_mut()) {
            obj.insert(
                "encrypted_content".to_owned(),
                json!(encrypted_content(&rs_id)),
            );
        }
        output.push(item);
    }
    if !incomplete {
        match &plan.answer {
            Answer::Text(text) => {
                let all = plan.output_words.unwrap_or_else(|| words(text));
                let left = budget - used;
                let (text, status) = if all.max(MIN_ANSWER_TOKENS) > left {
                    incomplete = true;
                    used += left;
                    (first_words(text, left), "incomplete")
                } else {
                    used += all;
                    (text.as_str(), "completed")
                };
                output.push(json!({
                    "id": mint("msg_", &format!("{id}/message")),
                    "type": "message",
                    "status": status,
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }));
            }
            Answer::Calls(calls) => {
                for (i, (name, arguments)) in calls.iter().enumerate() {
                    used += 1;
                    output.push(json!({
                        "id": mint("fc_", &format!("{id}/call/{i}")),
                        "type": "function_call",
                        "status": "completed",
                        "arguments": arguments,
                        "call_id": format!("call_{}", &mint("", &format!("{id}/call_id/{i}"))[..24]),
                        "name": name,
                    }));
                }
            }
        }
    }
    let b = plan.body;
    let given = |key: &str| b.get(key).cloned().unwrap_or(Value::Null);
    let thinks = plan.reasoning_tokens > 0 || reasoning_model(plan.model);
    let default_num = |key: &str| match b.get(key) {
        Some(v) if !v.is_null() => v.clone(),
        _ if thinks => Value::Null,
        _ => json!(1.0),
    };
    let tools: Vec<Value> = b
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let mut t = t.clone();
            let function = t["type"] == "function";
            if let (Some(obj), true) = (t.as_object_mut(), function) {
                obj.entry("description").or_insert(Value::Null);
                obj.entry("parameters").or_insert(Value::Null);
                obj.entry("strict").or_insert(json!(true));
            }
            t
        })
        .collect();
    let mut text = b
        .get("text")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(obj) = text.as_object_mut() {
        obj.entry("format").or_insert(json!({"type": "text"}));
        obj.entry("verbosity").or_insert(json!("medium"));
    }
    let reasoning = match b.get("reasoning").filter(|r| r.is_object()) {
        Some(r) => {
            json!({"effort": r.get("effort").cloned().unwrap_or(json!("medium")), "summary": r.get("summary").or(r.get("generate_summary")).cloned().unwrap_or(Value::Null)})
        }
        None if thinks => json!({"effort": "medium", "summary": null}),
        None => json!({"effort": null, "summary": null}),
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": if incomplete { "incomplete" } else { "completed" },
        "background": b.get("background").cloned().unwrap_or(json!(false)),
        "error": null,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": given("instructions"),
        "max_output_tokens": given("max_output_tokens"),
        "max_tool_calls": given("max_tool_calls"),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": b.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true),
        "previous_response_id": plan.previous,
        "prompt_cache_key": given("prompt_cache_key"),
        "reasoning": reasoning,
        "safety_identifier": given("safety_identifier"),
        "service_tier": b.get("service_tier").filter(|v| !v.is_null()).cloned().unwrap_or(json!("default")),
        "store": plan.store,
        "temperature": default_num("temperature"),
        "text": text,
        "tool_choice": b.get("tool_choice").filter(|v| !v.is_null()).cloned().unwrap_or(json!("auto")),
        "tools": tools,
        "top_logprobs": b.get("top_logprobs").filter(|v| !v.is_null()).cloned().unwrap_or(json!(0)),
        "top_p": default_num("top_p"),
        "truncation": b.get("truncation").filter(|v| !v.is_null()).cloned().unwrap_or(json!("disabled")),
        "usage": {
            "input_tokens": plan.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": used,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens.min(budget)},
            "total_tokens": plan.input_tokens + used,
        },
        "user": given("user"),
        "metadata": b.get("metadata").filter(|v| !v.is_null()).cloned().unwrap_or(json!({})),
    })
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// Collects SSE events with `event:` names and a rising `sequence_number`.
struct Events {
    out: Vec<Vec<u8>>,
    seq: u64,
}

impl Events {
    /// Appends one event; `data` gets its `type` and `sequence_number`.
    fn push(&mut self, ty: &str, mut data: Value) {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".to_owned(), json!(ty));
            obj.insert("sequence_number".to_owned(), json!(self.seq));
        }
        self.seq += 1;
        let mut event = format!("event: {ty}\ndata: ").into_bytes();
        let _ = serde_json::to_writer(&mut event, &data);
        event.extend_from_slice(b"\n\n");
        self.out.push(event);
    }
}

/// The complete event sequence of a finished response, text split into `chunks` deltas.
fn stream_events(response: &Value, chunks: usize) -> Vec<Vec<u8>> {
    let mut ev = Events {
        out: Vec::new(),
        seq: 0,
    };
    let mut start = response.clone();
    if let Some(obj) = start.as_object_mut() {
        obj.insert("status".to_owned(), json!("in_progress"));
        obj.insert("output".to_owned(), json!([]));
        obj.insert("usage".to_owned(), Value::Null);
        obj.insert("incomplete_details".to_owned(), Value::Null);
    }
    ev.push("response.created", json!({"response": start}));
    ev.push("response.in_progress", json!({"response": start}));
    let output = response["output"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (oi, item) in output.iter().enumerate() {
        let item_id = item["id"].clone();
        let mut added = item.clone();
        match (item["type"].as_str(), added.as_object_mut()) {
            (Some("message"), Some(obj)) => {
                obj.insert("status".to_owned(), json!("in_progress"));
                obj.insert("content".to_owned(), json!([]));
                ev.push(
                    "response.output_item.added",
                    json!({"output_index": oi, "item": added}),
                );
                let part = &item["content"][0];
                let text = part["text"].as_str().unwrap_or_default();
                let empty =
                    json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                let at = json!({"item_id": item_id, "output_index": oi, "content_index": 0});
                let with = |extra: Value| {
                    let mut v = at.clone();
                    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                        v.extend(extra.clone());
                    }
                    v
                };
                ev.push("response.content_part.added", with(json!({"part": empty})));
                for piece in split_even(text, chunks) {
                    ev.push(
                        "response.output_text.delta",
                        with(json!({"delta": piece, "logprobs": []})),
                    );
                }
                ev.push(
                    "response.output_text.done",
                    with(json!({"text": text, "logprobs": []})),
                );
                ev.push("response.content_part.done", with(json!({"part": part})));
            }
            (Some("function_call"), Some(obj)) => {
                obj.insert("status".to_owned(), json!("in_progress"));
                obj.insert("arguments".to_owned(), json!(""));
                ev.push(
                    "response.output_item.added",
                    json!({"output_index": oi, "item": added}),
                );
                let args = item["arguments"].as_str().unwrap_or_default();
                for piece in split_even(args, chunks) {
                    ev.push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": oi, "delta": piece}),
                    );
                }
                ev.push(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": oi, "arguments": args, "name": item["name"]}),
                );
            }
            (_, Some(obj)) => {
                // A reasoning item: summary parts stream like OpenAI's.
                obj.insert("summary".to_owned(), json!([]));
                ev.push(
                    "response.output_item.added",
                    json!({"output_index": oi, "item": added}),
                );
                let summary = item["summary"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for (si, part) in summary.iter().enumerate() {
                    let text = part["text"].as_str().unwrap_or_default();
                    let at = |extra: Value| {
                        let mut v =
                            json!({"item_id": item_id, "output_index": oi, "summary_index": si});
                        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                            v.extend(extra.clone());
                        }
                        v
                    };
                    ev.push(
                        "response.reasoning_summary_part.added",
                        at(json!({"part": {"type": "summary_text", "text": ""}})),
                    );
                    ev.push(
                        "response.reasoning_summary_text.delta",
                        at(json!({"delta": text})),
                    );
                    ev.push(
                        "response.reasoning_summary_text.done",
                        at(json!({"text": text})),
                    );
                    ev.push(
                        "response.reasoning_summary_part.done",
                        at(json!({"part": part})),
                    );
                }
            }
            (_, None) => continue,
        }
        ev.push(
            "response.output_item.done",
            json!({"output_index": oi, "item": item}),
        );
    }
    let end = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    ev.push(end, json!({"response": response}));
    ev.out
}

/// Whether an SSE event ends a Responses stream (what the `no_done` fault leaves out).
pub(crate) fn is_terminal_event(event: &[u8]) -> bool {
    [
        &b"event: response.completed\n"[..],
        b"event: response.incomplete\n",
        b"event: response.failed\n",
    ]
    .iter()
    .any(|end| event.starts_with(end))
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Seconds since the epoch (`created_at`).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Dispatches `/v1/responses` and `/v1/responses/{id}[/input_items]`.
pub(crate) fn route(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let head = &req.head;
    let rest = head.path.strip_prefix("/v1/responses").unwrap_or_default();
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    match (head.method.as_str(), rest.split_once('/')) {
        ("POST", _) if rest.is_empty() => create(state, req, opts),
        ("GET", None) if !rest.is_empty() => match lock(&state.responses).get(rest) {
            Some(stored) => json_reply(200, &stored.response),
            None => response_not_found(rest),
        },
        ("DELETE", None) if !rest.is_empty() => {
            if lock(&state.responses).remove(rest) {
                json_reply(
                    200,
                    &json!({"id": rest, "object": "response.deleted", "deleted": true}),
                )
            } else {
                response_not_found(rest)
            }
        }
        ("GET", Some((id, "input_items"))) => input_items(state, req, id),
        (method, _) => openai_error(
            404,
            &format!("Invalid URL ({method} {})", head.path),
            None,
            None,
        ),
    }
}

/// `POST /v1/responses`.
fn create(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_bad_json();
    };
    let n = state.response_seq.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}/{n}", hex::encode(Sha256::digest(&req.body)));
    let planned = {
        let store = lock(&state.responses);
        plan(&body, &seed, &store)
    };
    let mut plan = match planned {
        Ok(plan) => plan,
        Err(e) => return e.reply(),
    };
    let id = mint("resp_", &seed);
    let created_at = now();
    let chunks = usize::try_from(state.tuning.get().chunks).unwrap_or(1);
    let streamed = plan.stream && !opts.force_full;
    let mut sized = None;
    if let Some(size) = opts.size {
        if streamed {
            plan.answer = Answer::Text(filler(size));
        } else {
            plan.answer = Answer::Text(FILL_MARK.to_owned());
            plan.max_output_tokens = None;
            sized = Some(fit_text(size, |w| {
                plan.output_words = Some(w);
                serde_json::to_vec(&build_response(&plan, &id, created_at)).unwrap_or_default()
            }));
        }
    }
    let response = build_response(&plan, &id, created_at);
    if plan.store {
        lock(&state.responses).insert(
            id.clone(),
            Stored {
                response: response.clone(),
                input: plan.input.clone(),
                previous: plan.previous.map(str::to_owned),
            },
        );
    }
    if let Some(body) = sized {
        return Reply::full(200, "application/json", body);
    }
    if streamed {
        return Reply::stream(stream_events(&response, opts.events.unwrap_or(chunks)), 1);
    }
    json_reply(200, &response)
}

/// `GET /v1/responses/{id}/input_items` (`limit` 1–100, default 20; `order` `desc` by
/// default, as OpenAI's; `after` an item id).
fn input_items(state: &State, req: &Request, id: &str) -> Reply {
    let Some(mut items) = lock(&state.responses).get(id).map(|s| s.input.clone()) else {
        return response_not_found(id);
    };
    let head = &req.head;
    let limit = match head.query("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return ApiError::bad(
                "Invalid 'limit': expected an integer between 1 and 100.".to_owned(),
                Some("limit"),
                Some("invalid_value"),
            )
            .reply()
        }
    };
    match head.query("order") {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => return bad_value("order", other, &["asc", "desc"]).reply(),
    }
    if let Some(after) = head.query("after") {
        match items.iter().position(|i| i["id"] == after) {
            Some(at) => {
                items.drain(..=at);
            }
            None => {
                return ApiError::bad(
                    format!("Invalid 'after': no input item with id '{after}' in response '{id}'."),
                    Some("after"),
                    Some("invalid_value"),
                )
                .reply()
            }
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items
        .first()
        .map(|i| i["id"].clone())
        .unwrap_or(Value::Null);
    let last = items.last().map(|i| i["id"].clone()).unwrap_or(Value::Null);
    json_reply(
        200,
        &json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a create body gets from an empty store, or `None` if it is accepted.
    fn rejection(body: Value) -> Option<(u16, String, Option<String>, Option<&'static str>)> {
        plan(&body, "seed", &Store::default())
            .err()
            .map(|e| (e.status, e.message, e.param, e.code))
    }

    /// The `param` of a rejection.
    fn param_of(body: Value) -> Option<String> {
        rejection(body).and_then(|r| r.2)
    }

    /// The answer a body gets from `store`.
    fn answer(body: Value, store: &Store) -> Result<Answer, String> {
        plan(&body, "seed", store)
            .map(|p| p.answer)
            .map_err(|e| e.message)
    }

    /// Two function tools, the first with a strict schema.
    fn tools() -> Value {
        json!([
            {"type": "function", "name": "get_weather", "strict": true, "parameters": {
                "type": "object", "additionalProperties": false, "required": ["city"],
                "properties": {"city": {"type": "string"}}}},
            {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
        ])
    }

    #[test]
    fn a_full_request_is_accepted() {
        let body = json!({
            "model": "gpt-4o-mini", "instructions": "be brief", "temperature": 0.2, "top_p": 1,
            "max_output_tokens": 100, "metadata": {"k": "v"}, "user": "u", "store": true,
            "stream": false, "parallel_tool_calls": true, "tool_choice": "auto", "tools": tools(),
            "include": ["message.output_text.logprobs"], "truncation": "disabled",
            "text": {"format": {"type": "text"}, "verbosity": "low"},
            "input": [
                {"role": "system", "content": "sys"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,aGk=", "detail": "auto"},
                    {"type": "input_image", "file_id": "file-1"},
                    {"type": "input_file", "file_url": "https://example.com/a.pdf"}]},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "ok", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "noon"}]},
                {"role": "developer", "content": "dev"},
                {"role": "user", "content": "and now?"},
            ],
        });
        assert_eq!(
            rejection(body),
            None,
            "every documented field in its documented shape"
        );
    }

    #[test]
    fn sloppy_requests_get_openai_errors_naming_the_field() {
        let base = |extra: Value| {
            let mut b = json!({"model": "gpt-4o-mini", "input": "hi"});
            if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
                b.extend(extra.clone());
            }
            b
        };
        assert_eq!(
            rejection(base(json!({"foo": 1}))),
            Some((
                400,
                "Unknown parameter: 'foo'.".to_owned(),
                Some("foo".to_owned()),
                Some("unknown_parameter")
            ))
        );
        assert_eq!(
            param_of(base(json!({"messages": []}))).as_deref(),
            Some("messages"),
            "moved to input"
        );
        assert_eq!(
            param_of(base(json!({"response_format": {}}))).as_deref(),
            Some("response_format")
        );
        assert_eq!(
            rejection(base(json!({"temperature": "hot"}))).map(|r| r.1),
            Some(
                "Invalid type for 'temperature': expected a decimal, but got a string instead."
                    .to_owned()
            )
        );
        assert_eq!(
            rejection(base(json!({"max_output_tokens": 5}))).map(|r| (r.1, r.3)),
            Some(("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 5 instead.".to_owned(), Some("integer_below_min_value"))),
            "OpenAI's floor of 16"
        );
        assert_eq!(
            param_of(base(json!({"temperature": 2.5}))).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param_of(base(json!({"store": "yes"}))).as_deref(),
            Some("store")
        );
        assert_eq!(
            param_of(base(json!({"metadata": {"k": 1}}))).as_deref(),
            Some("metadata.k")
        );
        assert_eq!(
            param_of(base(json!({"include": ["everything"]}))).as_deref(),
            Some("include[0]")
        );
        assert_eq!(
            param_of(base(json!({"input": 5}))).as_deref(),
            Some("input")
        );
        assert_eq!(param_of(json!({"input": "hi"})).as_deref(), Some("model"));
        assert_eq!(
            param_of(json!({"model": "gpt-4o-mini"})).as_deref(),
            Some("input")
        );
        let assistant_input_text = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "input_text", "text": "old"}]},
        ]);
        assert_eq!(
            rejection(base(json!({"input": assistant_input_text}))).map(|r| (r.1, r.2)),
            Some((
                "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'."
                    .to_owned(),
                Some("input[1].content[0].type".to_owned())
            ))
        );
        let user_output_text =
            json!([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]);
        assert_eq!(
            param_of(base(json!({"input": user_output_text}))).as_deref(),
            Some("input[0].content[0].type")
        );
        let bad_item = json!([{"type": "web_search_call", "id": "ws_1"}]);
        assert_eq!(
            param_of(base(json!({"input": bad_item}))).as_deref(),
            Some("input[0].type")
        );
        let extra_key = json!([{"role": "user", "content": "x", "name": "bob"}]);
        assert_eq!(
            param_of(base(json!({"input": extra_key}))).as_deref(),
            Some("input[0].name")
        );
        let bad_role = json!([{"role": "tool", "content": "x"}]);
        assert_eq!(
            param_of(base(json!({"input": bad_role}))).as_deref(),
            Some("input[0].role")
        );
        let object_args =
            json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]);
        assert_eq!(
            param_of(base(json!({"input": object_args}))).as_deref(),
            Some("input[0].arguments")
        );
        let bad_image =
            json!([{"role": "user", "content": [{"type": "input_image", "image_url": "aGk="}]}]);
        assert_eq!(
            param_of(base(json!({"input": bad_image}))).as_deref(),
            Some("input[0].content[0].image_url")
        );
        let chat_tool = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            rejection(base(json!({"tools": chat_tool}))).map(|r| r.1),
            Some("Missing required parameter: 'tools[0].name'.".to_owned()),
            "a Chat Completions tool shape"
        );
        assert_eq!(
            param_of(base(json!({"tools": [{"type": "magic"}]}))).as_deref(),
            Some("tools[0].type")
        );
        assert_eq!(
            rejection(base(json!({"tools": [{"type": "web_search"}]}))),
            None,
            "built-ins accepted"
        );
        let lax = json!([{"type": "function", "name": "f", "strict": true,
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]);
        assert_eq!(
            rejection(base(json!({"tools": lax}))).map(|r| (r.1, r.2)),
            Some(("Invalid schema for function 'f': In context=(), 'additionalProperties' is required to be supplied and to be false.".to_owned(), Some("tools[0].parameters".to_owned())))
        );
        assert_eq!(
            param_of(base(
                json!({"tool_choice": {"type": "function", "name": "nope"}, "tools": tools()})
            ))
            .as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            param_of(base(json!({"tool_choice": "required"}))).as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            param_of(base(
                json!({"text": {"format": {"type": "json_schema", "schema": {}}}})
            ))
            .as_deref(),
            Some("text.format.name")
        );
        assert_eq!(
            param_of(base(
                json!({"text": {"format": {"type": "json_schema", "json_schema": {}}}})
            ))
            .as_deref(),
            Some("text.format.name")
        );
        assert_eq!(
            param_of(base(json!({"text": {"format": {"type": "json_object"}}}))).as_deref(),
            Some("input"),
            "json_object needs the word json in the input"
        );
        assert_eq!(
            rejection(base(
                json!({"text": {"format": {"type": "json_object"}}, "instructions": "answer in JSON"})
            )),
            None
        );
        assert_eq!(
            param_of(base(json!({"reasoning": {"effort": "low"}}))).as_deref(),
            Some("reasoning.effort"),
            "gpt-4o-mini does not reason"
        );
        let o = |extra: Value| {
            let mut b = base(extra);
            b["model"] = json!("o4-mini");
            b
        };
        assert_eq!(
            rejection(o(
                json!({"reasoning": {"effort": "high", "summary": "auto"}})
            )),
            None
        );
        assert_eq!(
            param_of(o(json!({"temperature": 0.5}))).as_deref(),
            Some("temperature"),
            "reasoning models refuse it"
        );
    }

    #[test]
    fn unknown_models_and_ids_are_what_openai_answers() {
        assert_eq!(
            rejection(json!({"model": "gemini-2.5-flash", "input": "hi"})),
            Some((
                404,
                "The model `gemini-2.5-flash` does not exist or you do not have access to it."
                    .to_owned(),
                None,
                Some("model_not_found")
            ))
        );
        assert!(known_openai_model("ft:gpt-4o-mini:org::abc") && known_openai_model("o3"));
        assert_eq!(
            rejection(json!({"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_x"})),
            Some((
                400,
                "Previous response with id 'resp_x' not found.".to_owned(),
                Some("previous_response_id".to_owned()),
                Some("previous_response_not_found")
            ))
        );
        let orphan = json!([{"type": "function_call_output", "call_id": "call_9", "output": "x"}]);
        assert_eq!(
            rejection(json!({"model": "gpt-4o", "input": orphan})).map(|r| (r.1, r.2)),
            Some((
                "No tool call found for function call output with call_id call_9.".to_owned(),
                Some("input".to_owned())
            ))
        );
        let unanswered = json!([
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"role": "user", "content": "and?"},
        ]);
        assert_eq!(
            rejection(json!({"model": "gpt-4o", "input": unanswered})).map(|r| r.1),
            Some("No tool output found for function call call_1.".to_owned())
        );
        let foreign = json!([{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "Z2VtaW5p"}]);
        assert_eq!(
            rejection(json!({"model": "o3", "input": foreign})).and_then(|r| r.3),
            Some("invalid_encrypted_content"),
            "reasoning state another provider minted"
        );
        let by_id = json!([{"type": "reasoning", "id": "rs_1", "summary": []}]);
        assert!(
            rejection(json!({"model": "o3", "input": by_id})).is_some(),
            "never stored"
        );
        let reference = json!([{"type": "item_reference", "id": "msg_404"}]);
        assert_eq!(
            param_of(json!({"model": "o3", "input": reference})).as_deref(),
            Some("input[0].id")
        );
    }

    #[test]
    fn answers_follow_the_chat_conventions() {
        let store = Store::default();
        let ask = |extra: Value| {
            let mut b =
                json!({"model": "gpt-4o-mini", "input": "weather in Paris?", "tools": tools()});
            if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
                b.extend(extra.clone());
            }
            b
        };
        let both = Answer::Calls(vec![
            ("get_weather".to_owned(), "{\"city\":\"mock\"}".to_owned()),
            ("get_time".to_owned(), "{}".to_owned()),
        ]);
        assert_eq!(
            answer(ask(json!({})), &store),
            Ok(both),
            "parallel: one call per function tool"
        );
        let first = Answer::Calls(vec![(
            "get_weather".to_owned(),
            "{\"city\":\"mock\"}".to_owned(),
        )]);
        assert_eq!(
            answer(ask(json!({"parallel_tool_calls": false})), &store),
            Ok(first)
        );
        let forced = Answer::Calls(vec![("get_time".to_owned(), "{}".to_owned())]);
        assert_eq!(
            answer(
                ask(json!({"tool_choice": {"type": "function", "name": "get_time"}})),
                &store
            ),
            Ok(forced)
        );
        let text = Answer::Text("Mock reply to: weather in Paris?".to_owned());
        assert_eq!(
            answer(ask(json!({"tool_choice": "none"})), &store),
            Ok(text.clone())
        );
        assert_eq!(
            answer(
                json!({"model": "gpt-4o-mini", "input": "weather in Paris?"}),
                &store
            ),
            Ok(text)
        );
        let schema = json!({"type": "json_schema", "name": "w", "strict": true, "schema": {
            "type": "object", "additionalProperties": false, "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}});
        assert_eq!(
            answer(
                json!({"model": "gpt-4o-mini", "input": "hi", "text": {"format": schema}}),
                &store
            ),
            Ok(Answer::Text("{\"ok\":true}".to_owned()))
        );
        let result = json!([
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]);
        assert_eq!(
            answer(ask(json!({"input": result})), &store),
            Ok(Answer::Text("Mock saw tool result: sunny".to_owned()))
        );
    }

    #[test]
    fn small_budgets_make_incomplete_responses() {
        let store = Store::default();
        let body =
            json!({"model": "gpt-4o-mini", "input": "a ".repeat(40), "max_output_tokens": 16});
        let p = plan(&body, "s", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let r = build_response(&p, "resp_1", 0);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["usage"]["output_tokens"], 16);
        assert_eq!(r["output"][0]["status"], "incomplete");
        let text = r["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(words(text), 16, "cut at the budget: {text}");
        let thinking = json!({"model": "o3", "input": "hi", "max_output_tokens": 16, "reasoning": {"effort": "high"}});
        let p = plan(&thinking, "s", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let r = build_response(&p, "resp_2", 0);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["output"].as_array().map(Vec::len),
            Some(1),
            "only the reasoning item"
        );
        assert_eq!(r["output"][0]["type"], "reasoning");
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 16);
    }

    /// The event types of a stream and whether the sequence numbers count up from 0.
    fn event_types(events: &[Vec<u8>]) -> (Vec<String>, bool) {
        let mut types = Vec::new();
        let mut rising = true;
        for (i, e) in events.iter().enumerate() {
            let text = String::from_utf8_lossy(e);
            let (head, data) = text.split_once('\n').unwrap_or_default();
            let ty = head.strip_prefix("event: ").unwrap_or_default().to_owned();
            let v: Value =
                serde_json::from_str(data.trim_start_matches("data: ").trim()).unwrap_or_default();
            rising &= v["sequence_number"] == json!(i) && v["type"] == json!(ty);
            types.push(ty);
        }
        (types, rising)
    }

    #[test]
    fn streams_carry_the_complete_event_sequence() {
        let store = Store::default();
        let body = json!({"model": "o3", "input": "stream this", "reasoning": {"summary": "auto"}, "stream": true});
        let p = plan(&body, "s", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let response = build_response(&p, "resp_1", 0);
        let (types, rising) = event_types(&stream_events(&response, 3));
        assert!(rising, "sequence_number counts every event");
        let want = [
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
        ];
        assert_eq!(types, want);
        let calls = json!({"model": "gpt-4o", "input": "go", "tools": tools(), "stream": true});
        let p = plan(&calls, "s", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let response = build_response(&p, "resp_2", 0);
        let events = stream_events(&response, 1);
        let (types, rising) = event_types(&events);
        assert!(rising);
        let one_call = [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
        ];
        let mut want = vec!["response.created", "response.in_progress"];
        want.extend(one_call);
        want.extend(one_call);
        want.push("response.completed");
        assert_eq!(types, want, "two parallel calls");
        assert!(events.last().is_some_and(|e| is_terminal_event(e)));
        let cut = json!({"model": "gpt-4o", "input": "a ".repeat(40), "max_output_tokens": 16});
        let p = plan(&cut, "s", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let (types, _) = event_types(&stream_events(&build_response(&p, "resp_3", 0), 2));
        assert_eq!(
            types.last().map(String::as_str),
            Some("response.incomplete")
        );
    }

    #[test]
    fn stored_responses_continue_conversations() {
        let mut store = Store::default();
        let first = json!({"model": "gpt-4o", "input": "weather?", "tools": tools(), "parallel_tool_calls": false,
            "include": ["reasoning.encrypted_content"]});
        let p = plan(&first, "s1", &store).map_err(|e| e.message);
        let Ok(p) = p else { return assert!(p.is_ok()) };
        let response = build_response(&p, "resp_a", 0);
        let call_id = response["output"][0]["call_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            call_id.starts_with("call_")
                && response["output"][0]["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("fc_"))
        );
        store.insert(
            "resp_a".to_owned(),
            Stored {
                response,
                input: p.input.clone(),
                previous: None,
            },
        );
        let output =
            json!([{"type": "function_call_output", "call_id": call_id, "output": "sunny"}]);
        let next = json!({"model": "gpt-4o", "previous_response_id": "resp_a", "input": output});
        assert_eq!(
            answer(next, &store),
            Ok(Answer::Text("Mock saw tool result: sunny".to_owned()))
        );
        let ignored =
            json!({"model": "gpt-4o", "previous_response_id": "resp_a", "input": "never mind"});
        assert_eq!(
            answer(ignored, &store),
            Err(format!("No tool output found for function call {call_id}.")),
            "the previous response's call must be answered"
        );
        let user_msg_id = store
            .get("resp_a")
            .map(|s| s.input[0]["id"].clone())
            .unwrap_or_default();
        let reference =
            json!({"model": "gpt-4o", "input": [{"type": "item_reference", "id": user_msg_id}]});
        assert_eq!(
            answer(reference, &store),
            Ok(Answer::Text("Mock reply to: weather?".to_owned()))
        );
        assert!(store.remove("resp_a") && !store.remove("resp_a") && store.len() == 0);
        let rs = "rs_1";
        let ours = json!([{"type": "reasoning", "id": rs, "summary": [], "encrypted_content": encrypted_content(rs)},
            {"role": "user", "content": "hi"}]);
        assert_eq!(
            rejection(json!({"model": "o3", "input": ours, "store": false})),
            None
        );
    }

    #[test]
    fn the_store_is_bounded() {
        let mut store = Store::default();
        for i in 0..=MAX_STORED {
            let stored = Stored {
                response: json!({"id": i}),
                input: Vec::new(),
                previous: None,
            };
            store.insert(format!("resp_{i}"), stored);
        }
        assert_eq!(store.len(), MAX_STORED);
        assert!(
            store.get("resp_0").is_none() && store.get(&format!("resp_{MAX_STORED}")).is_some()
        );
    }
}
