//! OpenAI Chat Completions / Embeddings / Responses ⇄ native Gemini REST translation.
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
//!
//! Layout: `wire` holds Gemini's wire types only (OpenAI's are in
//! `providers::openai::wire`); each direction is its own module: `request`
//! (OpenAI chat → Gemini, plus the request helpers the Responses translation
//! shares), `response` (a whole answer), `stream` (SSE), `embeddings`,
//! `error`, and `ids` for tool-call ids and thought signatures. The
//! Responses API pair is the [`responses`] folder, laid out the same way.

/// Fixture files under `tests/fixtures/gemini/`, for the tests of every submodule.
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gemini/",
            $name
        ))
    };
}

mod embeddings;
mod error;
mod ids;
mod request;
mod response;
pub mod responses;
mod stream;
#[cfg(test)]
mod test_support;
mod wire;

pub use embeddings::{
    embeddings_context, embeddings_request, embeddings_response, embeddings_response_with,
    EmbeddingsContext,
};
pub use error::{error_to_openai, TranslateError};
pub use ids::MAX_SIGNATURE_IN_ID;
pub use request::{chat_path, chat_request, model_segment, ChatTranslation};
pub use response::{chat_response, ResponseContext, Usage};
pub use stream::StreamTranslator;
