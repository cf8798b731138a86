//! OpenAI wire types the gateway writes: Chat Completions answers and chunks,
//! embeddings answers and the error body.

use std::borrow::Cow;

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<ChoiceOut<'a>>,
    pub(crate) usage: UsageOut,
}

#[derive(Serialize)]
pub(crate) struct ChoiceOut<'a> {
    pub(crate) index: u32,
    pub(crate) message: MessageOut<'a>,
    pub(crate) logprobs: Option<LogprobsOut<'a>>,
    pub(crate) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(crate) struct MessageOut<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: Option<Cow<'a, str>>,
    pub(crate) refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<u32>,
    pub(crate) id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: FunctionOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) extra_content: Option<ExtraContent<'a>>,
}

#[derive(Serialize)]
pub(crate) struct FunctionOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: Cow<'a, str>,
}

#[derive(Serialize)]
pub(crate) struct ExtraContent<'a> {
    pub(crate) google: GoogleExtra<'a>,
}

#[derive(Serialize)]
pub(crate) struct GoogleExtra<'a> {
    pub(crate) thought_signature: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ChunkOut<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<&'a UsageOut>,
}

#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logprobs: Option<LogprobsOut<'a>>,
    pub(crate) finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<&'a [ToolCallOut<'a>]>,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
pub(crate) struct UsageOut {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) prompt_tokens_details: PromptDetails,
    pub(crate) completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
pub(crate) struct PromptDetails {
    pub(crate) cached_tokens: u64,
}

#[derive(Serialize, Default, Clone, Copy, Debug, PartialEq)]
pub(crate) struct CompletionDetails {
    pub(crate) reasoning_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct LogprobsOut<'a> {
    pub(crate) content: Vec<TokenLogprob<'a>>,
    pub(crate) refusal: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct TokenLogprob<'a> {
    pub(crate) token: &'a str,
    pub(crate) logprob: f64,
    pub(crate) bytes: Utf8Bytes<'a>,
    pub(crate) top_logprobs: Vec<TopLogprob<'a>>,
}

#[derive(Serialize)]
pub(crate) struct TopLogprob<'a> {
    pub(crate) token: &'a str,
    pub(crate) logprob: f64,
    pub(crate) bytes: Utf8Bytes<'a>,
}

/// OpenAI's `bytes`: the token's UTF-8 bytes as an integer array.
pub(crate) struct Utf8Bytes<'a>(pub(crate) &'a str);

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
pub(crate) struct EmbeddingsOut<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<EmbeddingOut>,
    pub(crate) model: &'a str,
    pub(crate) usage: EmbeddingsUsage,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingOut {
    pub(crate) object: &'static str,
    pub(crate) index: usize,
    pub(crate) embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingValue {
    Float(Vec<f64>),
    Base64(String),
}

#[derive(Serialize)]
pub(crate) struct EmbeddingsUsage {
    pub(crate) prompt_tokens: u64,
    pub(crate) total_tokens: u64,
}
