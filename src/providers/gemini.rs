//! OpenAI Chat Completions / Embeddings ⇄ native Gemini REST translation.
//!
//! Pure and I/O-free. Requests arrive as an already parsed `serde_json::Value`;
//! the Gemini body is built from borrowing wire structs and serialised once.
//! Answers are parsed into borrowing structs and written straight out as OpenAI
//! JSON. Field names follow Google's REST reference (camelCase).
//!
//! Decisions not dictated by either API:
//! - Tool-call ids are `call_<16 hex of a hash of the response id>_<n>`, so they
//!   are distinct per response (given unique `ResponseContext::id`s), stable
//!   across a stream and deterministic. A
//!   Gemini `thoughtSignature` is appended as `__ts__<base64url(signature)>`
//!   when that keeps the id within [`MAX_SIGNATURE_IN_ID`] characters, and is
//!   always also sent as `extra_content.google.thought_signature`.
//! - For `gemini-3*` models a replayed model turn with function calls but no
//!   signature gets Google's documented `skip_thought_signature_validator`
//!   sentinel, so histories from other models or lossy clients still work.
//! - `MALFORMED_FUNCTION_CALL` maps to `finish_reason: "stop"` with no tool
//!   call: the call is unusable and OpenAI has no closer reason.
//! - Gemini reports no token counts for embeddings: usage is estimated as
//!   `ceil(chars / 4)` per input unless `usageMetadata` is present.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::sse::SseParser;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Always rendered by the gateway as HTTP 400 invalid_request_error, with `param` naming the offending parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

pub struct ChatTranslation {
    pub body: Vec<u8>,
    pub stream: bool,
    pub include_usage: bool,
}

pub struct ResponseContext {
    pub id: String,
    pub model: String,
    pub created: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// What the embeddings answer needs from the request (`encoding_format`, and
/// the input size for the token estimate).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsContext {
    pub model: String,
    pub base64: bool,
    pub estimated_prompt_tokens: u64,
}

type Result<T> = std::result::Result<T, TranslateError>;

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Errors that concern the whole body or the upstream answer, not one parameter.
fn no_param(message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: None,
    }
}

/// Longest encoded signature still carried inside a tool-call id.
pub const MAX_SIGNATURE_IN_ID: usize = 256;
const SIGNATURE_SEP: &str = "__ts__";
/// Google's documented bypass for replayed Gemini 3 calls without a signature.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------
// Wire types: Gemini request (serialised, borrowing from the OpenAI request)
// ---------------------------------------------------------------------------

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<FileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<FunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: Cow<'a, str>,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileData<'a> {
    mime_type: &'a str,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    args: Value,
}

#[derive(Serialize)]
struct FunctionResponse<'a> {
    name: &'a str,
    response: ToolResult<'a>,
}

/// Gemini needs `functionResponse.response` to be an object.
enum ToolResult<'a> {
    Object(Value),
    Wrap(Value),
    Text(Cow<'a, str>),
}

impl Serialize for ToolResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ToolResult::Object(v) => v.serialize(s),
            ToolResult::Wrap(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("content", v)?;
                m.end()
            }
            ToolResult::Text(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("content", t)?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tool<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<Schema<'a>>,
}

/// A JSON Schema passed through as-is except for the top-level `$schema` key.
struct Schema<'a>(&'a Value);

impl Serialize for Schema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(obj) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in obj {
                    if k != "$schema" {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<Schema<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.stop_sequences.is_empty()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
            && self.candidate_count.is_none()
            && self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_logprobs.is_none()
            && self.logprobs.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_budget: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_level: Option<&'static str>,
}

// ---------------------------------------------------------------------------
// Wire types: Gemini answers (deserialised, borrowing from the upstream bytes)
// ---------------------------------------------------------------------------

/// A string that borrows from the input unless it contains escapes
/// (`Option<Cow<str>>` alone would always allocate).
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    candidates: Vec<Candidate<'a>>,
    #[serde(borrow, default)]
    prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<CandidateContent<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Str<'a>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    logprobs_result: Option<LogprobsResult<'a>>,
}

#[derive(Deserialize)]
struct CandidateContent<'a> {
    #[serde(borrow, default)]
    parts: Vec<RespPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RespPart<'a> {
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
    #[serde(default)]
    thought: bool,
    #[serde(borrow, default)]
    function_call: Option<RespFunctionCall<'a>>,
    #[serde(borrow, default)]
    thought_signature: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct RespFunctionCall<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    block_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase", default)]
struct UsageMetadata {
    prompt_token_count: u64,
    candidates_token_count: u64,
    thoughts_token_count: u64,
    cached_content_token_count: u64,
    total_token_count: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ErrorBody<'a> {
    #[serde(default)]
    code: Option<i64>,
    #[serde(borrow, default)]
    message: Option<Str<'a>>,
    #[serde(borrow, default)]
    status: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogprobsResult<'a> {
    #[serde(borrow, default)]
    top_candidates: Vec<TopCandidates<'a>>,
    #[serde(borrow, default)]
    chosen_candidates: Vec<LogprobCandidate<'a>>,
}

#[derive(Deserialize)]
struct TopCandidates<'a> {
    #[serde(borrow, default)]
    candidates: Vec<LogprobCandidate<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogprobCandidate<'a> {
    #[serde(borrow, default)]
    token: Option<Str<'a>>,
    #[serde(default)]
    log_probability: f64,
}

// ---------------------------------------------------------------------------
// Wire types: OpenAI answers (serialised)
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<LogprobsOut<'a>>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<Cow<'a, str>>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<ExtraContent<'a>>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: Cow<'a, str>,
}

#[derive(Serialize)]
struct ExtraContent<'a> {
    google: GoogleExtra<'a>,
}

#[derive(Serialize)]
struct GoogleExtra<'a> {
    thought_signature: &'a str,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a UsageOut>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<LogprobsOut<'a>>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [ToolCallOut<'a>]>,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
struct PromptDetails {
    cached_tokens: u64,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct LogprobsOut<'a> {
    content: Vec<TokenLogprob<'a>>,
    refusal: Option<&'a str>,
}

#[derive(Serialize)]
struct TokenLogprob<'a> {
    token: &'a str,
    logprob: f64,
    bytes: Utf8Bytes<'a>,
    top_logprobs: Vec<TopLogprob<'a>>,
}

#[derive(Serialize)]
struct TopLogprob<'a> {
    token: &'a str,
    logprob: f64,
    bytes: Utf8Bytes<'a>,
}

/// OpenAI's `bytes`: the token's UTF-8 bytes as an integer array.
struct Utf8Bytes<'a>(&'a str);

impl Serialize for Utf8Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for b in self.0.bytes() {
            seq.serialize_element(&b)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

// ---------------------------------------------------------------------------
// Request direction
// ---------------------------------------------------------------------------

fn f64_of(v: &Value, key: &str) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| bad(key, format!("`{key}` must be a number")))
}

fn u64_of(v: &Value, key: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| bad(key, format!("`{key}` must be a non-negative integer")))
}

fn bool_of(v: &Value, key: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| bad(key, format!("`{key}` must be a boolean")))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| bad(key, format!("`{key}` must be a string")))
}

fn is_gemini3(model: &str) -> bool {
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
            "user"
            | "store"
            | "metadata"
            | "parallel_tool_calls"
            | "service_tier"
            | "prediction"
            | "safety_identifier"
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

fn stop_sequences(v: &Value) -> Result<Vec<&str>> {
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

/// OpenAI effort levels → Gemini 2.x budgets, or Gemini 3 levels (which cannot
/// turn thinking off, so `none`/`minimal` become `low`).
fn thinking(effort: &str, model: &str) -> Result<ThinkingConfig> {
    if is_gemini3(model) {
        let level = match effort {
            "none" | "minimal" | "low" => "low",
            "medium" | "high" => "high",
            _ => return Err(bad_effort()),
        };
        return Ok(ThinkingConfig {
            thinking_budget: None,
            thinking_level: Some(level),
        });
    }
    let budget = match effort {
        "none" | "minimal" => 0,
        "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        _ => return Err(bad_effort()),
    };
    // Pro models cannot disable thinking; 128 is their smallest budget.
    let budget = if budget == 0 && model.contains("-pro") {
        128
    } else {
        budget
    };
    Ok(ThinkingConfig {
        thinking_budget: Some(budget),
        thinking_level: None,
    })
}

fn bad_effort() -> TranslateError {
    bad(
        "reasoning_effort",
        "`reasoning_effort` must be one of none, minimal, low, medium, high",
    )
}

fn response_format<'a>(v: &'a Value, gc: &mut GenerationConfig<'a>) -> Result<()> {
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

fn tool_declarations<'a>(v: &'a Value, out: &mut Vec<FunctionDeclaration<'a>>) -> Result<()> {
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

fn legacy_function_declarations<'a>(
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
fn declaration<'a>(f: &'a Value, at: impl Fn() -> String) -> Result<FunctionDeclaration<'a>> {
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

fn tool_config<'a>(v: &'a Value, param: &str) -> Result<ToolConfig<'a>> {
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
fn turn<'c, 'a>(contents: &'c mut Vec<Content<'a>>, role: &'static str) -> &'c mut Vec<Part<'a>> {
    if contents.last().is_none_or(|c| c.role != role) {
        contents.push(Content {
            role,
            parts: Vec::new(),
        });
    }
    let last = contents.len() - 1;
    &mut contents[last].parts
}

fn translate_messages<'a>(
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
fn text_parts<'a>(
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

fn push_text<'a>(out: &mut Vec<Part<'a>>, s: &'a str) {
    if !s.is_empty() {
        out.push(Part {
            text: Some(s),
            ..Part::default()
        });
    }
}

fn user_parts<'a>(content: &'a Value, i: usize, out: &mut Vec<Part<'a>>) -> Result<()> {
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

fn inline<'a>(mime: &'a str, data: &'a str) -> Part<'a> {
    Part {
        inline_data: Some(Blob {
            mime_type: Cow::Borrowed(mime),
            data,
        }),
        ..Part::default()
    }
}

/// `data:<mime>[;params];base64,<data>` → (mime, data), borrowing.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
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

fn guess_mime(url: &str) -> &'static str {
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

fn tool_call_parts<'a>(
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
fn function_call_part<'a>(
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
fn tool_result(content: &Value) -> ToolResult<'_> {
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

fn json_or_text(s: Cow<'_, str>) -> ToolResult<'_> {
    match serde_json::from_str::<Value>(&s) {
        Ok(v @ Value::Object(_)) => ToolResult::Object(v),
        Ok(v) => ToolResult::Wrap(v),
        Err(_) => ToolResult::Text(s),
    }
}

fn signature_from_id(id: &str) -> Option<String> {
    let (_, enc) = id.split_once(SIGNATURE_SEP)?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(enc).ok()?).ok()
}

/// Gemini 3 rejects replayed function calls without a signature; only the
/// first call of a (parallel) step carries one.
fn add_missing_signatures(contents: &mut [Content<'_>]) {
    for c in contents.iter_mut().filter(|c| c.role == "model") {
        let mut calls = c.parts.iter_mut().filter(|p| p.function_call.is_some());
        let Some(first) = calls.next() else { continue };
        if first.thought_signature.is_none() && calls.all(|p| p.thought_signature.is_none()) {
            first.thought_signature = Some(Cow::Borrowed(SKIP_SIGNATURE));
        }
    }
}

// ---------------------------------------------------------------------------
// Response direction (shared helpers)
// ---------------------------------------------------------------------------

/// Gemini finishReason → OpenAI finish_reason. Calls win over `STOP` because
/// Gemini says STOP after a function call; a malformed call is unusable, so it
/// becomes a plain `stop`.
fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    if has_calls {
        return "tool_calls";
    }
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ => "stop",
    }
}

fn usage_out(m: &UsageMetadata) -> UsageOut {
    let completion = m.candidates_token_count + m.thoughts_token_count;
    UsageOut {
        prompt_tokens: m.prompt_token_count,
        completion_tokens: completion,
        total_tokens: m
            .total_token_count
            .unwrap_or(m.prompt_token_count + completion),
        prompt_tokens_details: PromptDetails {
            cached_tokens: m.cached_content_token_count,
        },
        completion_tokens_details: CompletionDetails {
            reasoning_tokens: m.thoughts_token_count,
        },
    }
}

fn usage_of(u: &UsageOut) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

/// Deterministic per-response tool-call ids (see the module docs).
struct CallIds {
    prefix: u64,
    next: u32,
}

impl CallIds {
    fn new(response_id: &str) -> Self {
        // FNV-1a: cheap, stable, and spreads ids of different responses apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in response_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        CallIds { prefix: h, next: 0 }
    }

    /// Writes the next id into `buf`, embedding the signature if it fits.
    fn write(&mut self, buf: &mut String, signature: Option<&str>) {
        buf.clear();
        let _ = write!(buf, "call_{:016x}_{}", self.prefix, self.next);
        self.next += 1;
        if let Some(sig) = signature {
            if base64::encoded_len(sig.len(), false).is_some_and(|n| n <= MAX_SIGNATURE_IN_ID) {
                buf.push_str(SIGNATURE_SEP);
                URL_SAFE_NO_PAD.encode_string(sig, buf);
            }
        }
    }
}

fn extra_content(signature: Option<&str>) -> Option<ExtraContent<'_>> {
    signature.map(|thought_signature| ExtraContent {
        google: GoogleExtra { thought_signature },
    })
}

fn write_args(args: Option<&Value>, buf: &mut Vec<u8>) {
    buf.clear();
    match args {
        Some(a) if !a.is_null() => {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, a);
        }
        _ => buf.extend_from_slice(b"{}"),
    }
}

fn logprobs_out<'a>(r: &'a LogprobsResult<'a>) -> LogprobsOut<'a> {
    let content = r
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(k, c)| TokenLogprob {
            token: c.token.as_ref().map_or("", |t| &t.0),
            logprob: c.log_probability,
            bytes: Utf8Bytes(c.token.as_ref().map_or("", |t| &t.0)),
            top_logprobs: r
                .top_candidates
                .get(k)
                .map(|t| {
                    t.candidates
                        .iter()
                        .map(|c| {
                            let token = c.token.as_ref().map_or("", |t| &t.0);
                            TopLogprob {
                                token,
                                logprob: c.log_probability,
                                bytes: Utf8Bytes(token),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    LogprobsOut {
        content,
        refusal: None,
    }
}

fn parse_response(gemini: &[u8]) -> Result<GenerateContentResponse<'_>> {
    let resp: GenerateContentResponse = serde_json::from_slice(gemini)
        .map_err(|e| no_param(format!("invalid Gemini response: {e}")))?;
    if let Some(err) = &resp.error {
        let msg = err.message.as_ref().map_or("unknown error", |m| &m.0);
        return Err(no_param(format!("Gemini error: {msg}")));
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Response direction: non-stream
// ---------------------------------------------------------------------------

/// Non-stream answer → OpenAI chat.completion JSON bytes, plus its usage.
pub fn chat_response(gemini: &[u8], ctx: &ResponseContext) -> Result<(Vec<u8>, Usage)> {
    let resp = parse_response(gemini)?;
    let mut ids = CallIds::new(&ctx.id);
    let mut id_buf = String::new();
    let mut args_buf = Vec::new();
    let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
    for (pos, cand) in resp.candidates.iter().enumerate() {
        let mut content: Option<Cow<str>> = None;
        let mut tool_calls = Vec::new();
        for p in cand.content.iter().flat_map(|c| &c.parts) {
            if let Some(fc) = &p.function_call {
                let sig = p.thought_signature.as_ref().map(|s| &*s.0);
                ids.write(&mut id_buf, sig);
                write_args(fc.args.as_ref(), &mut args_buf);
                tool_calls.push(ToolCallOut {
                    index: None,
                    id: Cow::Owned(id_buf.clone()),
                    kind: "function",
                    function: FunctionOut {
                        name: &fc.name.0,
                        arguments: Cow::Owned(String::from_utf8_lossy(&args_buf).into_owned()),
                    },
                    extra_content: extra_content(sig),
                });
            } else if let (Some(t), false) = (&p.text, p.thought) {
                match &mut content {
                    None => content = Some(Cow::Borrowed(&t.0)),
                    Some(c) => c.to_mut().push_str(&t.0),
                }
            }
        }
        let reason = cand.finish_reason.as_ref().map_or("STOP", |r| &r.0);
        let finish = finish_reason(reason, !tool_calls.is_empty());
        if content.is_none() && tool_calls.is_empty() {
            content = Some(Cow::Borrowed(""));
        }
        choices.push(ChoiceOut {
            index: cand.index.unwrap_or(pos as u32),
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: cand.logprobs_result.as_ref().map(logprobs_out),
            finish_reason: finish,
        });
    }
    if choices.is_empty() {
        // A blocked prompt is an answer, not an error, in OpenAI's model.
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        choices.push(ChoiceOut {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content: Some(Cow::Borrowed("")),
                refusal: None,
                tool_calls: Vec::new(),
            },
            logprobs: None,
            finish_reason: if blocked { "content_filter" } else { "stop" },
        });
    }
    let usage = resp
        .usage_metadata
        .as_ref()
        .map(usage_out)
        .unwrap_or_default();
    let out = ChatCompletion {
        id: &ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        choices,
        usage,
    };
    let body = serde_json::to_vec(&out).map_err(|e| no_param(e.to_string()))?;
    Ok((body, usage_of(&usage)))
}

// ---------------------------------------------------------------------------
// Response direction: streaming
// ---------------------------------------------------------------------------

#[derive(Default, Clone)]
struct ChoiceState {
    role_sent: bool,
    next_tool_index: u32,
    saw_call: bool,
    finished: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StreamState {
    Open,
    Done,
    Failed,
}

/// Gemini SSE bytes in arbitrary splits → OpenAI SSE bytes (`data: {chat.completion.chunk}\n\n` ... `data: [DONE]\n\n`).
pub struct StreamTranslator {
    ctx: ResponseContext,
    include_usage: bool,
    parser: SseParser,
    ids: CallIds,
    choices: Vec<ChoiceState>,
    usage: Option<UsageOut>,
    any_finished: bool,
    state: StreamState,
    // Scratch buffers reused across events.
    text: String,
    id_buf: String,
    args: Vec<u8>,
}

impl StreamTranslator {
    pub fn new(ctx: ResponseContext, include_usage: bool) -> Self {
        StreamTranslator {
            ids: CallIds::new(&ctx.id),
            ctx,
            include_usage,
            parser: SseParser::new(),
            choices: Vec::new(),
            usage: None,
            any_finished: false,
            state: StreamState::Open,
            text: String::new(),
            id_buf: String::new(),
            args: Vec::new(),
        }
    }

    /// Appends every complete translated event to `out`; keeps partial input for the next call.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.state != StreamState::Open {
            return;
        }
        self.parser.push(chunk);
        while let Some(ev) = self.parser.next_event() {
            self.event(&ev.data, out);
            if self.state != StreamState::Open {
                return;
            }
        }
    }

    /// Upstream ended cleanly: flush, emit the usage chunk if asked, then
    /// `data: [DONE]`. Without any finishReason the stream was cut: emit an
    /// error event, no [DONE], and return false.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if self.state == StreamState::Open {
            while let Some(ev) = self.parser.flush() {
                self.event(&ev.data, out);
                if self.state != StreamState::Open {
                    break;
                }
            }
        }
        match self.state {
            StreamState::Done => return true,
            StreamState::Failed => return false,
            StreamState::Open => {}
        }
        if !self.any_finished {
            self.fail_with(
                "upstream stream ended before the response was complete",
                "upstream_error",
                None,
                out,
            );
            return false;
        }
        if self.include_usage {
            let usage = self.usage.unwrap_or_default();
            self.write(out, &[], Some(&usage));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.state = StreamState::Done;
        true
    }

    /// Upstream failed mid-stream: emit an OpenAI-style error event, never [DONE].
    pub fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.state == StreamState::Open {
            self.fail_with(message, "upstream_error", None, out);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage_of)
    }

    /// Input bytes held while waiting for the end of an event (the caller bounds it).
    pub fn pending_bytes(&self) -> usize {
        self.parser.pending_bytes()
    }

    fn fail_with(&mut self, message: &str, kind: &str, code: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        write_error(out, message, kind, code);
        out.extend_from_slice(b"\n\n");
        self.state = StreamState::Failed;
    }

    fn write(&self, out: &mut Vec<u8>, choices: &[ChunkChoice<'_>], usage: Option<&UsageOut>) {
        out.extend_from_slice(b"data: ");
        let chunk = ChunkOut {
            id: &self.ctx.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices,
            usage,
        };
        // Serialising these plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }

    /// Marks the choice's role as sent and returns the role to put in this delta.
    fn role(&mut self, index: usize) -> Option<&'static str> {
        if self.choices.len() <= index {
            self.choices.resize(index + 1, ChoiceState::default());
        }
        let st = &mut self.choices[index];
        (!std::mem::replace(&mut st.role_sent, true)).then_some("assistant")
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
                return self.fail_with(&msg, "upstream_error", None, out);
            }
        };
        if let Some(err) = &resp.error {
            let msg = err.message.as_ref().map_or("upstream error", |m| &m.0);
            let code = err.status.as_ref().map(|s| s.0.to_ascii_lowercase());
            let status = err.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
            let kind = if status == 0 {
                "upstream_error"
            } else {
                error_type(status)
            };
            return self.fail_with(msg, kind, code.as_deref(), out);
        }
        if let Some(m) = &resp.usage_metadata {
            self.usage = Some(usage_out(m));
        }
        if resp.candidates.is_empty()
            && resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
        {
            let role = self.role(0);
            if role.is_some() {
                let delta = Delta {
                    role,
                    content: Some(""),
                    tool_calls: None,
                };
                self.write_delta(out, 0, delta, None, None);
            }
            self.write_delta(out, 0, Delta::default(), None, Some("content_filter"));
            self.any_finished = true;
            return;
        }
        for (pos, cand) in resp.candidates.iter().enumerate() {
            self.candidate(cand, pos, out);
        }
    }

    fn write_delta(
        &self,
        out: &mut Vec<u8>,
        index: u32,
        delta: Delta<'_>,
        logprobs: Option<LogprobsOut<'_>>,
        finish_reason: Option<&'static str>,
    ) {
        let choice = ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        };
        self.write(out, std::slice::from_ref(&choice), None);
    }

    fn candidate(&mut self, cand: &Candidate<'_>, pos: usize, out: &mut Vec<u8>) {
        let index = cand.index.unwrap_or(pos as u32);
        let slot = index as usize;
        let parts = cand.content.as_ref().map_or(&[][..], |c| &c.parts[..]);

        let mut text = std::mem::take(&mut self.text);
        text.clear();
        for p in parts {
            if let (Some(t), false) = (&p.text, p.thought) {
                text.push_str(&t.0);
            }
        }
        let logprobs = cand.logprobs_result.as_ref().map(logprobs_out);
        if !text.is_empty() || logprobs.is_some() {
            let delta = Delta {
                role: self.role(slot),
                content: Some(&text),
                tool_calls: None,
            };
            self.write_delta(out, index, delta, logprobs, None);
        }
        self.text = text;

        let mut id_buf = std::mem::take(&mut self.id_buf);
        let mut args = std::mem::take(&mut self.args);
        for p in parts {
            let Some(fc) = &p.function_call else { continue };
            let role = self.role(slot);
            let st = &mut self.choices[slot];
            let tool_index = st.next_tool_index;
            st.next_tool_index += 1;
            st.saw_call = true;
            let sig = p.thought_signature.as_ref().map(|s| &*s.0);
            self.ids.write(&mut id_buf, sig);
            write_args(fc.args.as_ref(), &mut args);
            let call = ToolCallOut {
                index: Some(tool_index),
                id: Cow::Borrowed(&id_buf),
                kind: "function",
                function: FunctionOut {
                    name: &fc.name.0,
                    arguments: String::from_utf8_lossy(&args),
                },
                extra_content: extra_content(sig),
            };
            let delta = Delta {
                role,
                content: None,
                tool_calls: Some(std::slice::from_ref(&call)),
            };
            self.write_delta(out, index, delta, None, None);
        }
        self.id_buf = id_buf;
        self.args = args;

        if let Some(reason) = &cand.finish_reason {
            if let Some(role) = self.role(slot) {
                let delta = Delta {
                    role: Some(role),
                    content: Some(""),
                    tool_calls: None,
                };
                self.write_delta(out, index, delta, None, None);
            }
            let st = &mut self.choices[slot];
            st.finished = true;
            let finish = finish_reason(&reason.0, st.saw_call);
            self.any_finished = true;
            self.write_delta(out, index, Delta::default(), None, Some(finish));
        }
    }
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct BatchEmbedRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedResponse {
    #[serde(default)]
    embedding: Option<Embedding>,
    #[serde(default)]
    embeddings: Option<Vec<Embedding>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f64>,
}

#[derive(Serialize)]
struct EmbeddingsOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: &'a str,
    usage: EmbeddingsUsage,
}

#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Float(Vec<f64>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingsUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

enum EmbedInput<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

/// Validates the request; shared by [`embeddings_request`] and [`embeddings_context`].
fn embed_input(openai: &Value) -> Result<(EmbedInput<'_>, Option<u64>, bool)> {
    let obj = openai
        .as_object()
        .ok_or_else(|| no_param("request body must be a JSON object"))?;
    let (mut input, mut dims, mut base64) = (None, None, false);
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        let k = key.as_str();
        match k {
            "model" | "user" => {}
            "input" => input = Some(v),
            "dimensions" => dims = Some(u64_of(v, k)?),
            "encoding_format" => {
                base64 = match str_of(v, k)? {
                    "float" => false,
                    "base64" => true,
                    _ => return Err(bad(k, "`encoding_format` must be float or base64")),
                }
            }
            _ => {
                return Err(bad(
                    k,
                    format!("unsupported parameter for Gemini embeddings: `{k}`"),
                ))
            }
        }
    }
    let not_text = || {
        bad("input", "`input` must be a string or a list of strings (token arrays are not supported for Gemini models)")
    };
    let input = match input {
        Some(Value::String(s)) => EmbedInput::One(s),
        Some(Value::Array(a)) if !a.is_empty() => EmbedInput::Many(
            a.iter()
                .map(|s| s.as_str().ok_or_else(not_text))
                .collect::<Result<_>>()?,
        ),
        _ => return Err(not_text()),
    };
    Ok((input, dims, base64))
}

/// OpenAI /v1/embeddings body → (path suffix after base URL, Gemini body). One string → embedContent; a list → batchEmbedContents.
pub fn embeddings_request(openai: &Value, model: &str) -> Result<(String, Vec<u8>)> {
    let (input, dims, _) = embed_input(openai)?;
    let segment = model_segment(model).to_string();
    let one = |model: Option<&'static str>, text| EmbedRequest {
        model,
        content: EmbedContent {
            parts: [TextPart { text }],
        },
        output_dimensionality: dims,
    };
    let body = match input {
        EmbedInput::One(text) => {
            let body = serde_json::to_vec(&one(None, text));
            (format!("models/{segment}:embedContent"), body)
        }
        EmbedInput::Many(texts) => {
            let name = format!("models/{model}");
            let requests = texts
                .into_iter()
                .map(|text| EmbedRequest {
                    model: Some(&name),
                    content: EmbedContent {
                        parts: [TextPart { text }],
                    },
                    output_dimensionality: dims,
                })
                .collect();
            let body = serde_json::to_vec(&BatchEmbedRequest { requests });
            (format!("models/{segment}:batchEmbedContents"), body)
        }
    };
    Ok((body.0, body.1.map_err(|e| no_param(e.to_string()))?))
}

/// What [`embeddings_response_with`] needs to honour `encoding_format` and
/// estimate usage (`ceil(chars / 4)` per input, as Gemini reports none).
pub fn embeddings_context(openai: &Value, model: &str) -> Result<EmbeddingsContext> {
    let (input, _, base64) = embed_input(openai)?;
    let estimate = |s: &str| (s.chars().count() as u64).div_ceil(4);
    let estimated_prompt_tokens = match input {
        EmbedInput::One(s) => estimate(s),
        EmbedInput::Many(v) => v.into_iter().map(estimate).sum(),
    };
    Ok(EmbeddingsContext {
        model: model.to_owned(),
        base64,
        estimated_prompt_tokens,
    })
}

/// Handles both embedContent and batchEmbedContents answers, as floats and
/// without a token estimate; prefer [`embeddings_response_with`].
pub fn embeddings_response(gemini: &[u8], model: &str) -> Result<(Vec<u8>, Usage)> {
    let ctx = EmbeddingsContext {
        model: model.to_owned(),
        base64: false,
        estimated_prompt_tokens: 0,
    };
    embeddings_response_with(gemini, &ctx)
}

/// Like [`embeddings_response`], honouring `encoding_format: "base64"`
/// (little-endian f32) and filling usage from the request estimate.
pub fn embeddings_response_with(
    gemini: &[u8],
    ctx: &EmbeddingsContext,
) -> Result<(Vec<u8>, Usage)> {
    let resp: EmbedResponse = serde_json::from_slice(gemini)
        .map_err(|e| no_param(format!("invalid Gemini embeddings response: {e}")))?;
    let list = match (resp.embedding, resp.embeddings) {
        (Some(e), _) => vec![e],
        (None, Some(list)) => list,
        (None, None) => return Err(no_param("Gemini embeddings response has no embedding")),
    };
    let data = list
        .into_iter()
        .enumerate()
        .map(|(index, e)| EmbeddingOut {
            object: "embedding",
            index,
            embedding: if ctx.base64 {
                let mut raw = Vec::with_capacity(e.values.len() * 4);
                for v in &e.values {
                    raw.extend_from_slice(&(*v as f32).to_le_bytes());
                }
                EmbeddingValue::Base64(STANDARD.encode(raw))
            } else {
                EmbeddingValue::Float(e.values)
            },
        })
        .collect();
    let tokens = resp
        .usage_metadata
        .map(|u| u.prompt_token_count)
        .filter(|&n| n > 0)
        .unwrap_or(ctx.estimated_prompt_tokens);
    let out = EmbeddingsOut {
        object: "list",
        data,
        model: &ctx.model,
        usage: EmbeddingsUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    let body = serde_json::to_vec(&out).map_err(|e| no_param(e.to_string()))?;
    let usage = Usage {
        prompt_tokens: tokens,
        completion_tokens: 0,
        total_tokens: tokens,
    };
    Ok((body, usage))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        402..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn write_error(out: &mut Vec<u8>, message: &str, kind: &str, code: Option<&str>) {
    let e = ErrorOut {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    };
    // Serialising strings into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &e);
}

/// Gemini error body (or anything else) → OpenAI error JSON bytes; `type` from
/// the HTTP status, `code` = Gemini's status string lowercased, or null.
pub fn error_to_openai(http_status: u16, gemini: &[u8]) -> Vec<u8> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        error: ErrorBody<'a>,
    }
    // Some endpoints wrap the error in a one-element array.
    // (A derived struct would also accept an array, so dispatch on the shape.)
    let parsed = if gemini.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<Envelope>>(gemini)
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        serde_json::from_slice::<Envelope>(gemini).ok()
    };
    let kind = error_type(http_status);
    let mut out = Vec::with_capacity(128 + gemini.len().min(1024));
    match parsed {
        Some(env) => {
            let code = env.error.status.as_ref().map(|s| s.0.to_ascii_lowercase());
            let message = env
                .error
                .message
                .as_ref()
                .map_or(Cow::Borrowed("upstream error"), |m| m.0.clone());
            write_error(&mut out, &message, kind, code.as_deref());
        }
        None => {
            let text = String::from_utf8_lossy(gemini);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream returned HTTP {http_status}")
            } else {
                let end = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
                format!("upstream returned HTTP {http_status}: {}", &text[..end])
            };
            write_error(&mut out, &message, kind, None);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/gemini/", $name))
        };
    }

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn req(openai: &Value, model: &str) -> Value {
        serde_json::from_slice(&chat_request(openai, model).unwrap().body).unwrap()
    }

    fn err(openai: Value) -> TranslateError {
        match chat_request(&openai, "gemini-2.5-flash") {
            Err(e) => e,
            Ok(_) => panic!("expected an error for {openai}"),
        }
    }

    fn ctx() -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-1".into(),
            model: "gemini-2.5-flash".into(),
            created: 1_700_000_000,
        }
    }

    fn msgs(messages: Value) -> Value {
        json!({ "model": "m", "messages": messages })
    }

    // --- request direction -------------------------------------------------

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

    // --- non-stream responses ----------------------------------------------

    #[test]
    fn text_response_matches_fixture() {
        let (body, usage) =
            chat_response(fixture!("response_text.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, v(fixture!("response_text.openai.json")));
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
    fn tool_call_response() {
        let (body, usage) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Tokyo\"}");
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert!(calls[0]["id"].as_str().unwrap().contains(SIGNATURE_SEP));
        assert!(!calls[1]["id"].as_str().unwrap().contains(SIGNATURE_SEP));
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "CiQBjz1rX+/sig=="
        );
        assert!(calls[1].get("extra_content").is_none());
        assert_eq!(usage.total_tokens, 70);
    }

    /// Gemini answer with a signature → OpenAI message → client echoes the
    /// history → Gemini request carries the same signature on the same part.
    #[test]
    fn thought_signature_round_trip() {
        let (body, _) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        let mut message = resp["choices"][0]["message"].clone();
        let calls = message["tool_calls"].as_array().unwrap().clone();
        // A lossy client that drops unknown fields: the id alone must suffice.
        for c in message["tool_calls"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("extra_content");
        }
        let mut history = vec![json!({"role":"user","content":"weather?"}), message];
        for c in &calls {
            history.push(json!({"role":"tool","tool_call_id":c["id"],"content":"sunny"}));
        }
        let g = req(&msgs(Value::Array(history)), "gemini-3-pro-preview");
        let parts = &g["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], "CiQBjz1rX+/sig==");
        assert_eq!(parts[0]["functionCall"]["args"], json!({"city":"Paris"}));
        assert!(parts[1].get("thoughtSignature").is_none());
        assert_eq!(
            g["contents"][2]["parts"][1]["functionResponse"],
            json!({"name":"get_weather","response":{"content":"sunny"}})
        );
    }

    #[test]
    fn long_signature_goes_to_extra_content_only() {
        let sig = "A".repeat(2000);
        let gemini = json!({"candidates":[{"content":{"parts":[
            {"functionCall":{"name":"f","args":{}},"thoughtSignature":sig}]},"finishReason":"STOP"}]});
        let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        let call = resp["choices"][0]["message"]["tool_calls"][0].clone();
        assert!(call["id"].as_str().unwrap().len() < 64);
        assert_eq!(
            call["extra_content"]["google"]["thought_signature"],
            sig.as_str()
        );
        let history = json!([{"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[call]},
            {"role":"tool","tool_call_id":resp["choices"][0]["message"]["tool_calls"][0]["id"],"content":"{}"}]);
        let g = req(&msgs(history), "gemini-3-pro-preview");
        assert_eq!(
            g["contents"][1]["parts"][0]["thoughtSignature"],
            sig.as_str()
        );
    }

    #[test]
    fn blocked_prompt_is_content_filter() {
        let (body, usage) =
            chat_response(fixture!("response_blocked.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(got["choices"][0]["message"]["content"], "");
        assert_eq!(usage.prompt_tokens, 9);
    }

    #[test]
    fn finish_reason_mapping() {
        for (g, o) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("OTHER", "stop"),
        ] {
            let gemini = json!({"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":g,"index":0},
                {"content":{"parts":[{"text":"y"}]},"finishReason":g,"index":1}]});
            let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
            let got: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got["choices"][0]["finish_reason"], o, "{g}");
            assert_eq!(got["choices"][1]["index"], 1);
        }
    }

    #[test]
    fn logprobs_are_translated() {
        let gemini = json!({"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP",
            "logprobsResult":{"topCandidates":[{"candidates":[{"token":"Hi","logProbability":-0.1},{"token":"Yo","logProbability":-2.5}]}],
            "chosenCandidates":[{"token":"Hi","logProbability":-0.1}]}}]});
        let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            got["choices"][0]["logprobs"],
            json!({"content":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[
                {"token":"Hi","logprob":-0.1,"bytes":[72,105]},{"token":"Yo","logprob":-2.5,"bytes":[89,111]}]}],
                "refusal":null})
        );
    }

    #[test]
    fn upstream_error_body_is_an_error() {
        assert!(chat_response(fixture!("error_429.json").as_bytes(), &ctx()).is_err());
        assert!(chat_response(b"not json", &ctx()).is_err());
    }

    // --- streaming ----------------------------------------------------------

    /// Gemini frames events with CRLF.
    fn sse_of(events: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for e in v(events).as_array().unwrap() {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(e.to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
        }
        out
    }

    fn run(input: &[u8], cuts: &[usize], include_usage: bool) -> (Vec<u8>, bool) {
        let mut t = StreamTranslator::new(ctx(), include_usage);
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            t.push(&input[prev..c], &mut out);
            prev = c;
        }
        let ok = t.finish(&mut out);
        (out, ok)
    }

    fn chunks(out: &[u8]) -> Vec<Value> {
        let s = std::str::from_utf8(out).unwrap();
        assert!(s.ends_with("data: [DONE]\n\n"), "{s}");
        s.split("\n\n")
            .filter(|l| !l.is_empty() && *l != "data: [DONE]")
            .map(|l| v(l.strip_prefix("data: ").unwrap()))
            .collect()
    }

    #[test]
    fn stream_text_chunks() {
        let input = sse_of(fixture!("stream_text.json"));
        let (out, ok) = run(&input, &[], true);
        assert!(ok);
        let c = chunks(&out);
        let deltas: Vec<&Value> = c.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(*deltas[0], json!({"role":"assistant","content":"Hello"}));
        assert_eq!(*deltas[1], json!({"content":", wörld \"quoted\"\n"}));
        assert_eq!(*deltas[2], json!({"content":"!"}));
        assert_eq!(*deltas[3], json!({}));
        assert_eq!(c[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(c[0]["choices"][0]["finish_reason"], Value::Null);
        for chunk in &c {
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 1_700_000_000);
            assert_eq!(chunk["model"], "gemini-2.5-flash");
        }
        assert_eq!(c[4]["choices"], json!([]));
        assert_eq!(c[4]["usage"]["completion_tokens"], 7);
        assert_eq!(
            c[4]["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn stream_split_at_every_byte_is_identical() {
        for fixture in [
            fixture!("stream_text.json"),
            fixture!("stream_tool_calls.json"),
        ] {
            let input = sse_of(fixture);
            let (whole, ok) = run(&input, &[], true);
            assert!(ok);
            for cut in 0..=input.len() {
                assert_eq!(
                    run(&input, &[cut], true),
                    (whole.clone(), true),
                    "cut {cut}"
                );
            }
            let all: Vec<usize> = (1..input.len()).collect();
            assert_eq!(run(&input, &all, true).0, whole);
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..300 {
                let mut cuts: Vec<usize> = (0..rng.usize(1..20))
                    .map(|_| rng.usize(0..=input.len()))
                    .collect();
                cuts.sort_unstable();
                assert_eq!(run(&input, &cuts, true).0, whole);
            }
        }
    }

    #[test]
    fn stream_output_is_incremental() {
        let input = sse_of(fixture!("stream_text.json"));
        let mut t = StreamTranslator::new(ctx(), false);
        let mut out = Vec::new();
        let second_end = input
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n\r\n")
            .nth(1)
            .unwrap()
            .0
            + 4;
        t.push(&input[..second_end], &mut out);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.contains("\"Hello\"") && s.ends_with("\n\n"), "{s}");
        assert_eq!(t.usage().unwrap().completion_tokens, 1);
    }

    #[test]
    fn stream_tool_calls() {
        let input = sse_of(fixture!("stream_tool_calls.json"));
        let (out, ok) = run(&input, &[], false);
        assert!(ok);
        let c = chunks(&out);
        assert_eq!(c.len(), 4, "{}", String::from_utf8_lossy(&out));
        assert_eq!(
            c[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":"Checking both."})
        );
        let t0 = &c[1]["choices"][0]["delta"]["tool_calls"][0];
        let t1 = &c[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(t0["index"], 0);
        assert_eq!(t1["index"], 1);
        assert_eq!(t0["type"], "function");
        assert_eq!(
            t0["function"],
            json!({"name":"get_weather","arguments":"{\"city\":\"Paris\"}"})
        );
        assert_eq!(
            t0["extra_content"]["google"]["thought_signature"],
            "CiQBjz1rX+/sig=="
        );
        assert_ne!(t0["id"], t1["id"]);
        assert_eq!(c[3]["choices"][0]["finish_reason"], "tool_calls");
        // Same ids as the non-stream translation of the same calls.
        let (body, _) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            resp["choices"][0]["message"]["tool_calls"][0]["id"],
            t0["id"]
        );
    }

    #[test]
    fn stream_upstream_error_event() {
        let mut input = sse_of(fixture!("stream_text.json"));
        input.truncate(input.len() / 3);
        let cut = input.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap() + 4;
        input.truncate(cut);
        input.extend_from_slice(b"data: ");
        input.extend_from_slice(fixture!("error_429.json").trim().as_bytes());
        input.extend_from_slice(b"\r\n\r\n");
        let (out, ok) = run(&input, &[], true);
        assert!(!ok);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("[DONE]"));
        let last = s.trim_end().rsplit("\n\n").next().unwrap();
        let e = v(last.strip_prefix("data: ").unwrap());
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "resource_exhausted");
    }

    #[test]
    fn stream_cut_before_finish_is_an_error() {
        let input = sse_of(fixture!("stream_text.json"));
        let cut = input.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap();
        let cut = input[..cut]
            .windows(4)
            .rposition(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        let (out, ok) = run(&input[..cut], &[], true);
        assert!(!ok);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("[DONE]"));
        assert!(s.contains("\"type\":\"upstream_error\""));
        // And fail() after that adds nothing.
        let mut t = StreamTranslator::new(ctx(), false);
        let mut out = Vec::new();
        t.fail("connection reset", &mut out);
        assert!(String::from_utf8_lossy(&out).contains("connection reset"));
        let n = out.len();
        t.fail("again", &mut out);
        assert!(!t.finish(&mut out));
        assert_eq!(out.len(), n);
    }

    #[test]
    fn stream_blocked_prompt() {
        let input = format!("data: {}\r\n\r\n", v(fixture!("response_blocked.json")));
        let (out, ok) = run(input.as_bytes(), &[], false);
        assert!(ok);
        let c = chunks(&out);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c[1]["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn stream_without_trailing_blank_line_still_finishes() {
        let input = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"STOP\"}]}";
        let (out, ok) = run(input, &[], false);
        assert!(ok);
        assert_eq!(chunks(&out).len(), 2);
    }

    // --- embeddings ---------------------------------------------------------

    #[test]
    fn embeddings_single_and_batch_requests() {
        let (path, body) = embeddings_request(
            &json!({"model":"e","input":"hello","dimensions":256,"encoding_format":"float"}),
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(path, "models/gemini-embedding-001:embedContent");
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"content":{"parts":[{"text":"hello"}]},"outputDimensionality":256})
        );
        let (path, body) =
            embeddings_request(&json!({"input":["a","b"]}), "gemini-embedding-001").unwrap();
        assert_eq!(path, "models/gemini-embedding-001:batchEmbedContents");
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"requests":[
                {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}},
                {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}}]})
        );
        for bad_input in [json!([1, 2, 3]), json!([[1, 2]]), json!([]), json!(5)] {
            let e = embeddings_request(&json!({"input":bad_input}), "m").unwrap_err();
            assert_eq!(e.param.as_deref(), Some("input"));
        }
        let e = embeddings_request(&json!({"input":"x","encoding_format":"hex"}), "m").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("encoding_format"));
    }

    #[test]
    fn embeddings_responses() {
        let (body, usage) = embeddings_response(
            fixture!("embed_single.json").as_bytes(),
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.25,-0.5,0.125]}],
                "model":"gemini-embedding-001","usage":{"prompt_tokens":0,"total_tokens":0}})
        );
        assert_eq!(usage.total_tokens, 0);

        let req = json!({"input":["abcdefgh","xyz"],"encoding_format":"base64"});
        let ectx = embeddings_context(&req, "gemini-embedding-001").unwrap();
        assert_eq!(ectx.estimated_prompt_tokens, 3);
        let (body, usage) =
            embeddings_response_with(fixture!("embed_batch.json").as_bytes(), &ectx).unwrap();
        let got = v(std::str::from_utf8(&body).unwrap());
        assert_eq!(got["data"][1]["index"], 1);
        let raw = STANDARD
            .decode(got["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = raw
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(floats, vec![0.25, -0.5]);
        assert_eq!(got["usage"], json!({"prompt_tokens":3,"total_tokens":3}));
        assert_eq!(usage.prompt_tokens, 3);
    }

    // --- errors -------------------------------------------------------------

    #[test]
    fn gemini_error_to_openai() {
        let out = error_to_openai(429, fixture!("error_429.json").as_bytes());
        assert_eq!(
            v(std::str::from_utf8(&out).unwrap()),
            json!({"error":{"message":"Resource has been exhausted (e.g. check quota).",
                "type":"rate_limit_error","param":null,"code":"resource_exhausted"}})
        );
        let wrapped = format!("[{}]", fixture!("error_429.json").trim());
        let out = v(std::str::from_utf8(&error_to_openai(429, wrapped.as_bytes())).unwrap());
        assert_eq!(out["error"]["code"], "resource_exhausted");
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (500, "api_error"),
            (503, "api_error"),
        ] {
            let out =
                v(std::str::from_utf8(&error_to_openai(status, b"<html>oops</html>")).unwrap());
            assert_eq!(out["error"]["type"], kind);
            assert_eq!(out["error"]["code"], Value::Null);
            assert!(out["error"]["message"].as_str().unwrap().contains("oops"));
        }
    }
}
