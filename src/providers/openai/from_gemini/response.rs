//! Whole OpenAI answers → Gemini's: a `chat.completion` as a `GenerateContentResponse`, an
//! embeddings list as `embedContent` / `batchEmbedContents` answers.

use serde_json::Value;

use super::wire::{
    BatchEmbedOut, CandidateOut, ChatIn, ContentOut, EmbedOut, EmbeddingsIn, FunctionCallOut,
    GenerateContentOut, PartOut, PromptFeedbackOut, UsageMetadataOut, ValuesOut,
};

/// (input, output) tokens of an answer, as the gateway's metrics and limits count them.
pub type Tokens = (u64, u64);

/// OpenAI's `finish_reason` as Gemini's `finishReason`. A tool call is `STOP` in Gemini (the
/// SDK reads the `functionCall` parts); a refusal or filter is `SAFETY`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        "stop" | "tool_calls" | "function_call" => "STOP",
        _ => "OTHER",
    }
}

/// Tool-call arguments as the object Gemini's `functionCall.args` is; an answer whose
/// arguments are not a JSON object cannot be given to a Gemini client.
pub(crate) fn args_object(arguments: &str) -> Result<Value, String> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err("a tool call's arguments are not a JSON object".into()),
    }
}

/// A `chat.completion` → a `GenerateContentResponse`. `model` and `fallback_id` stand in
/// where the answer omits them. An answer with no choices is a blocked prompt
/// (`promptFeedback.blockReason: OTHER`).
pub fn generate_response(
    body: &[u8],
    model: &str,
    fallback_id: &str,
) -> Result<(Vec<u8>, Option<Tokens>), String> {
    let chat: ChatIn = serde_json::from_slice(body)
        .map_err(|e| format!("the OpenAI answer is not a chat completion: {e}"))?;
    struct Parts<'a> {
        index: u32,
        finish: Option<&'static str>,
        parts: Vec<PartOut<'a>>,
    }
    let mut all: Vec<Parts<'_>> = Vec::with_capacity(chat.choices.len());
    for c in &chat.choices {
        let mut parts = Vec::new();
        let mut finish = c.finish_reason.as_ref().map(|r| finish_reason(&r.0));
        if let Some(m) = &c.message {
            if let Some(t) = m.content.as_ref().filter(|t| !t.0.is_empty()) {
                parts.push(PartOut {
                    text: Some(&t.0),
                    function_call: None,
                });
            }
            // A refusal is the model's answer text, given as OpenAI gives it, and a safety stop.
            if let Some(r) = m.refusal.as_ref().filter(|r| !r.0.is_empty()) {
                parts.push(PartOut {
                    text: Some(&r.0),
                    function_call: None,
                });
                finish = Some("SAFETY");
            }
            for tc in &m.tool_calls {
                let Some(f) = &tc.function else { continue };
                let args = args_object(f.arguments.as_ref().map_or("", |a| &a.0))?;
                parts.push(PartOut {
                    text: None,
                    function_call: Some(FunctionCallOut {
                        id: tc.id.as_ref().map_or("", |i| &i.0),
                        name: f.name.as_ref().map_or("", |n| &n.0),
                        args,
                    }),
                });
            }
        }
        all.push(Parts {
            index: c.index,
            finish,
            parts,
        });
    }
    let candidates: Vec<CandidateOut<'_>> = all
        .iter()
        .map(|p| CandidateOut {
            content: ContentOut {
                parts: &p.parts,
                role: "model",
            },
            finish_reason: p.finish,
            index: p.index,
        })
        .collect();
    let usage = chat.usage.map(UsageMetadataOut::from);
    let out = GenerateContentOut {
        candidates: &candidates,
        prompt_feedback: candidates.is_empty().then_some(PromptFeedbackOut {
            block_reason: "OTHER",
        }),
        usage_metadata: usage,
        model_version: chat.model.as_ref().map_or(model, |m| &m.0),
        response_id: chat.id.as_ref().map_or(fallback_id, |i| &i.0),
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| e.to_string())?;
    Ok((
        bytes,
        chat.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    ))
}

/// An OpenAI embeddings answer → `{"embedding":{"values"}}`, or for a batch
/// `{"embeddings":[{"values"}…]}` in request order.
pub fn embed_response(body: &[u8], batch: bool) -> Result<(Vec<u8>, Option<Tokens>), String> {
    let mut e: EmbeddingsIn = serde_json::from_slice(body)
        .map_err(|e| format!("the OpenAI answer is not an embeddings list: {e}"))?;
    e.data.sort_by_key(|d| d.index);
    let tokens = e.usage.map(|u| (u.prompt_tokens, 0));
    let bytes = if batch {
        serde_json::to_vec(&BatchEmbedOut {
            embeddings: e
                .data
                .iter()
                .map(|d| ValuesOut {
                    values: &d.embedding,
                })
                .collect(),
        })
    } else {
        let first = e
            .data
            .first()
            .ok_or_else(|| "the OpenAI answer holds no embedding".to_string())?;
        serde_json::to_vec(&EmbedOut {
            embedding: ValuesOut {
                values: &first.embedding,
            },
        })
    };
    Ok((bytes.map_err(|e| e.to_string())?, tokens))
}
