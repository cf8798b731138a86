//! Gemini REST wire types (camelCase, as Google's reference writes them): the
//! request bodies the gateway serialises, borrowing from the client's request,
//! and the answers it deserialises, borrowing from the upstream bytes.

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentRequest<'a> {
    pub(crate) contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub(crate) generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
pub(crate) struct Content<'a> {
    pub(crate) role: &'static str,
    pub(crate) parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
pub(crate) struct SystemInstruction<'a> {
    pub(crate) parts: Vec<Part<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file_data: Option<FileData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_call: Option<FunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_response: Option<FunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thought_signature: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blob<'a> {
    pub(crate) mime_type: Cow<'a, str>,
    pub(crate) data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileData<'a> {
    pub(crate) mime_type: &'a str,
    pub(crate) file_uri: &'a str,
}

#[derive(Serialize)]
pub(crate) struct FunctionCall<'a> {
    pub(crate) name: &'a str,
    pub(crate) args: Value,
}

#[derive(Serialize)]
pub(crate) struct FunctionResponse<'a> {
    pub(crate) name: &'a str,
    pub(crate) response: ToolResult<'a>,
}

/// Gemini needs `functionResponse.response` to be an object.
pub(crate) enum ToolResult<'a> {
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
pub(crate) struct Tool<'a> {
    pub(crate) function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionDeclaration<'a> {
    pub(crate) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parameters_json_schema: Option<Schema<'a>>,
}

/// A JSON Schema passed through as-is except for the top-level `$schema` key.
pub(crate) struct Schema<'a>(pub(crate) &'a Value);

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
pub(crate) struct ToolConfig<'a> {
    pub(crate) function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionCallingConfig<'a> {
    pub(crate) mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_json_schema: Option<Schema<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logprobs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking_config: Option<ThinkingConfig>,
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

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking_budget: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking_level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) include_thoughts: Option<bool>,
}

/// A string that borrows from the input unless it contains escapes
/// (`Option<Cow<str>>` alone would always allocate).
#[derive(Deserialize)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub(crate) candidates: Vec<Candidate<'a>>,
    #[serde(borrow, default)]
    pub(crate) prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    pub(crate) error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate<'a> {
    #[serde(borrow, default)]
    pub(crate) content: Option<CandidateContent<'a>>,
    #[serde(borrow, default)]
    pub(crate) finish_reason: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) index: Option<u32>,
    #[serde(borrow, default)]
    pub(crate) logprobs_result: Option<LogprobsResult<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct CandidateContent<'a> {
    #[serde(borrow, default)]
    pub(crate) parts: Vec<RespPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RespPart<'a> {
    #[serde(borrow, default)]
    pub(crate) text: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) thought: bool,
    #[serde(borrow, default)]
    pub(crate) function_call: Option<RespFunctionCall<'a>>,
    #[serde(borrow, default)]
    pub(crate) thought_signature: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct RespFunctionCall<'a> {
    #[serde(borrow)]
    pub(crate) name: Str<'a>,
    #[serde(default)]
    pub(crate) args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    pub(crate) block_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct UsageMetadata {
    pub(crate) prompt_token_count: u64,
    pub(crate) candidates_token_count: u64,
    pub(crate) thoughts_token_count: u64,
    pub(crate) cached_content_token_count: u64,
    pub(crate) total_token_count: Option<u64>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ErrorBody<'a> {
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(borrow, default)]
    pub(crate) message: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) status: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogprobsResult<'a> {
    #[serde(borrow, default)]
    pub(crate) top_candidates: Vec<TopCandidates<'a>>,
    #[serde(borrow, default)]
    pub(crate) chosen_candidates: Vec<LogprobCandidate<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct TopCandidates<'a> {
    #[serde(borrow, default)]
    pub(crate) candidates: Vec<LogprobCandidate<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogprobCandidate<'a> {
    #[serde(borrow, default)]
    pub(crate) token: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) log_probability: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmbedRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model: Option<&'a str>,
    pub(crate) content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct EmbedContent<'a> {
    pub(crate) parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct TextPart<'a> {
    pub(crate) text: &'a str,
}

#[derive(Serialize)]
pub(crate) struct BatchEmbedRequest<'a> {
    pub(crate) requests: Vec<EmbedRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmbedResponse {
    #[serde(default)]
    pub(crate) embedding: Option<Embedding>,
    #[serde(default)]
    pub(crate) embeddings: Option<Vec<Embedding>>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
pub(crate) struct Embedding {
    #[serde(default)]
    pub(crate) values: Vec<f64>,
}

/// `{"error": {...}}`, the body of a non-2xx Gemini answer.
#[derive(Deserialize)]
pub(crate) struct ErrorEnvelope<'a> {
    #[serde(borrow)]
    pub(crate) error: ErrorBody<'a>,
}
