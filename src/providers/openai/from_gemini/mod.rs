//! Gemini-native clients (google-genai) on OpenAI models (SPEC §12): Gemini requests →
//! OpenAI Chat Completions / Embeddings, and the answers, streams and errors back into
//! Gemini's shapes. Pure and I/O-free.
//!
//! Decisions neither API dictates:
//! - `topK` is dropped (OpenAI has none; it only narrows the sampling pool), as are
//!   `safetySettings` (OpenAI's own moderation applies) and embeddings' `taskType`/`title`.
//!   Anything else that would change the answer and cannot be translated (built-in Google
//!   tools, `cachedContent`, audio/video output, logprobs, unknown parts or fields) is a 400
//!   naming the field.
//! - `thinkingConfig` becomes `reasoning_effort` on o-series and GPT-5 models (budget ≤ 1024
//!   → low, ≤ 8192 → medium, more → high; 0 → minimal; -1 → the model's default); on other
//!   models only a config asking for no thinking is accepted.
//! - Function calls in the history without an `id` get `call_<content>_<part>`; a
//!   `functionResponse` without one answers the oldest unanswered call of its name.
//! - `countTokens` is answered by the gateway with its own estimate (about four characters a
//!   token plus a fixed cost per image): OpenAI has no counting endpoint for chat.
//! - A refusal is the answer's text with `finishReason: SAFETY`; an answer with no choices is
//!   a blocked prompt (`promptFeedback.blockReason: OTHER`).
//!
//! Layout: `wire` (this direction's types), `request`, `response`, `stream`, `error`.

mod error;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

pub use error::{google_error, openai_error_to_google};
pub use request::{chat_request, count_tokens, embed_request};
pub use response::{embed_response, generate_response};
pub use stream::{replay, Framing, StreamTranslator};

pub use crate::providers::gemini::TranslateError;

pub(crate) type Result<T> = std::result::Result<T, TranslateError>;

/// A 400 naming the field at `param`.
pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// An error about the whole body.
pub(crate) fn no_param(message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: None,
    }
}
