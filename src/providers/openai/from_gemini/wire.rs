//! Wire types of this direction only: the OpenAI answers read (borrowing from the upstream
//! bytes) and the Gemini answers written (borrowing from those). Field names as each API's
//! reference writes them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A string that borrows from the input unless it holds escapes.
#[derive(Deserialize, Debug)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// A `chat.completion` or one `chat.completion.chunk`.
#[derive(Deserialize, Default)]
pub(crate) struct ChatIn<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) model: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) choices: Vec<ChoiceIn<'a>>,
    #[serde(default)]
    pub(crate) usage: Option<UsageIn>,
}

#[derive(Deserialize)]
pub(crate) struct ChoiceIn<'a> {
    #[serde(default)]
    pub(crate) index: u32,
    /// Whole answers.
    #[serde(borrow, default)]
    pub(crate) message: Option<MessageIn<'a>>,
    /// Stream chunks.
    #[serde(borrow, default)]
    pub(crate) delta: Option<MessageIn<'a>>,
    #[serde(borrow, default)]
    pub(crate) finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct MessageIn<'a> {
    #[serde(borrow, default)]
    pub(crate) content: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) refusal: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) tool_calls: Vec<ToolCallIn<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct ToolCallIn<'a> {
    #[serde(default)]
    pub(crate) index: Option<u32>,
    #[serde(borrow, default)]
    pub(crate) id: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) function: Option<FunctionIn<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionIn<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) arguments: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq)]
#[serde(default)]
pub(crate) struct UsageIn {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: Option<u64>,
    pub(crate) prompt_tokens_details: Option<PromptDetailsIn>,
    pub(crate) completion_tokens_details: Option<CompletionDetailsIn>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq)]
#[serde(default)]
pub(crate) struct PromptDetailsIn {
    pub(crate) cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq)]
#[serde(default)]
pub(crate) struct CompletionDetailsIn {
    pub(crate) reasoning_tokens: Option<u64>,
}

/// An OpenAI embeddings answer.
#[derive(Deserialize)]
pub(crate) struct EmbeddingsIn {
    pub(crate) data: Vec<EmbeddingIn>,
    #[serde(default)]
    pub(crate) usage: Option<UsageIn>,
}

#[derive(Deserialize)]
pub(crate) struct EmbeddingIn {
    #[serde(default)]
    pub(crate) index: usize,
    pub(crate) embedding: Vec<f64>,
}

/// `{"error": {...}}` as OpenAI writes it.
#[derive(Deserialize)]
pub(crate) struct OpenAiErrorIn<'a> {
    #[serde(borrow)]
    pub(crate) error: OpenAiErrorBody<'a>,
}

#[derive(Deserialize)]
pub(crate) struct OpenAiErrorBody<'a> {
    #[serde(borrow, default)]
    pub(crate) message: Option<Str<'a>>,
}

/// Gemini's `GenerateContentResponse`, whole or one stream chunk.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentOut<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) candidates: &'a [CandidateOut<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_feedback: Option<PromptFeedbackOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage_metadata: Option<UsageMetadataOut>,
    pub(crate) model_version: &'a str,
    pub(crate) response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateOut<'a> {
    pub(crate) content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finish_reason: Option<&'static str>,
    pub(crate) index: u32,
}

#[derive(Serialize)]
pub(crate) struct ContentOut<'a> {
    pub(crate) parts: &'a [PartOut<'a>],
    pub(crate) role: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) function_call: Option<FunctionCallOut<'a>>,
}

#[derive(Serialize)]
pub(crate) struct FunctionCallOut<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) args: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedbackOut {
    pub(crate) block_reason: &'static str,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadataOut {
    pub(crate) prompt_token_count: u64,
    pub(crate) candidates_token_count: u64,
    pub(crate) total_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thoughts_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cached_content_token_count: Option<u64>,
}

impl From<UsageIn> for UsageMetadataOut {
    /// Gemini counts thoughts apart from the answer; OpenAI's completion tokens include them.
    fn from(u: UsageIn) -> Self {
        let thoughts = u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .filter(|n| *n > 0);
        let cached = u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .filter(|n| *n > 0);
        UsageMetadataOut {
            prompt_token_count: u.prompt_tokens,
            candidates_token_count: u.completion_tokens.saturating_sub(thoughts.unwrap_or(0)),
            total_token_count: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            thoughts_token_count: thoughts,
            cached_content_token_count: cached,
        }
    }
}

/// `embedContent`'s answer.
#[derive(Serialize)]
pub(crate) struct EmbedOut<'a> {
    pub(crate) embedding: ValuesOut<'a>,
}

/// `batchEmbedContents`' answer.
#[derive(Serialize)]
pub(crate) struct BatchEmbedOut<'a> {
    pub(crate) embeddings: Vec<ValuesOut<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ValuesOut<'a> {
    pub(crate) values: &'a [f64],
}

/// Google's error shape.
#[derive(Serialize)]
pub(crate) struct GoogleErrorOut<'a> {
    pub(crate) error: GoogleErrorBody<'a>,
}

#[derive(Serialize)]
pub(crate) struct GoogleErrorBody<'a> {
    pub(crate) code: u16,
    pub(crate) message: &'a str,
    pub(crate) status: &'static str,
}
