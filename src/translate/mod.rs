//! The provider seam: one [`Translation`] per (client API, provider) pair, found in
//! [`lookup`]. A translation builds the upstream request for a candidate and hands back an
//! [`AnswerTranslation`] that turns that candidate's answer — whole, streamed or an error —
//! into the client's dialect. The relay loop and the body pump know nothing of any pair:
//! adding one is a module here and a line in [`lookup`].
//!
//! The conversions themselves are pure functions in `crate::providers`; the modules here
//! only bind them to the seam.

mod chat_gemini;
mod embeddings_gemini;
mod gemini_openai;
mod native;
mod responses_gemini;
mod responses_openai;

use crate::config::ProviderKind;
use crate::error::GatewayError;
use crate::proxy::pump::BodyTransform;
use bytes::Bytes;
use serde_json::Value;

/// The API a client speaks on the route it called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// `POST /v1/chat/completions`.
    Chat { stream: bool, include_usage: bool },
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses`.
    Responses { stream: bool },
    /// Any other OpenAI `/v1/*` route, forwarded unchanged.
    OpenAiOther,
    /// Gemini's native routes: forwarded unchanged to Gemini, translated for OpenAI models.
    GeminiNative { method: crate::routes::GeminiMethod },
}

impl ClientApi {
    /// Whether the client asked for an event stream.
    pub fn stream(self) -> bool {
        match self {
            ClientApi::Chat { stream, .. } | ClientApi::Responses { stream } => stream,
            ClientApi::GeminiNative { method } => {
                method == crate::routes::GeminiMethod::StreamGenerateContent
            }
            ClientApi::Embeddings | ClientApi::OpenAiOther => false,
        }
    }
}

/// The client's request as a translation sees it.
pub struct ClientRequest<'a> {
    pub api: ClientApi,
    /// The body as received.
    pub body: &'a Bytes,
    /// The parsed body, when the route needed it.
    pub parsed: Option<&'a Value>,
    /// The model as the client wrote it.
    pub requested_model: Option<&'a str>,
    /// The client's path and query (passthrough routes).
    pub path_and_query: &'a str,
    /// Responses API: the conversation a `previous_response_id` the gateway minted continues.
    pub conversation: Option<&'a Conversation>,
    /// Responses API: the id the gateway gives an answer it translates.
    pub minted_id: &'a str,
    /// Responses API: the answer is kept for `previous_response_id` (its input items are
    /// then built for the store).
    pub store: bool,
    /// Responses API: output items of stored responses that the input's `item_reference`s
    /// may name.
    pub referable: &'a [Value],
}

/// A conversation the gateway holds: what `previous_response_id` continues from.
pub struct Conversation {
    pub id: String,
    /// Every item so far (inputs and outputs, oldest first), as Responses input items.
    pub items: Vec<Value>,
    /// The same items as stored (a JSON array): the next turn's context is spliced onto it.
    pub raw: Bytes,
}

/// The upstream request for one candidate and the way back for its answer.
pub struct UpstreamRequest {
    /// Appended to the peer's base path (or, when `native_root`, to its root).
    pub suffix: String,
    pub native_root: bool,
    pub body: Bytes,
    /// The upstream is asked for an event stream.
    pub stream: bool,
    pub answer: Box<dyn AnswerTranslation>,
}

/// What the answer side needs to know about the request it answers.
pub struct AnswerContext<'a> {
    pub request_id: &'a str,
    /// The model that answers (without a provider prefix).
    pub model: &'a str,
    pub created: u64,
}

/// A whole answer in the client's dialect.
pub struct Whole {
    pub body: Bytes,
    /// (input, output) tokens.
    pub usage: Option<(u64, u64)>,
}

/// How one candidate's answer reaches the client.
pub trait AnswerTranslation: Send + Sync {
    /// Same API on both sides: the answer is relayed under the upstream's own headers through
    /// [`AnswerTranslation::transform`]; otherwise the gateway writes the headers itself.
    fn native(&self) -> bool;
    /// The body transform for a 2xx answer: `sse` when the upstream sent an event stream,
    /// `keep` when the complete answer must be kept (cache, conversation state).
    fn transform(
        &mut self,
        cx: &AnswerContext<'_>,
        sse: bool,
        keep: bool,
    ) -> Box<dyn BodyTransform>;
    /// A whole 2xx body (not native, or native where a stream was asked and JSON came) in
    /// the client's non-streamed shape; `Err` says why it could not be read.
    fn whole(&mut self, body: Bytes, cx: &AnswerContext<'_>) -> Result<Whole, String>;
    /// A whole answer in the client's non-streamed shape, replayed as the event stream the
    /// client asked for; `None` when the body is not such an answer.
    fn replay(&self, client_body: &[u8]) -> Option<Bytes>;
    /// A non-2xx body in the client's error shape; `None` relays it as it is.
    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes>;
    /// Responses API: this request's input items (each with an id, as one JSON array) once
    /// the answer is in, for the conversation state; `None` where the gateway keeps no state.
    /// Taken, not copied: they are handed over once.
    fn take_input_items(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// Responses API: where the `output` array is in the whole answer [`Self::whole`]
    /// wrote, so keeping the conversation needs no parse of it.
    fn output_span(&self) -> Option<std::ops::Range<usize>> {
        None
    }
    /// Whether the answer is read whole before the client gets a byte: translated
    /// non-streamed answers, and a whole JSON answer where a stream was asked (`sse` false).
    fn reads_whole(&self, sse: bool, stream: bool) -> bool {
        !self.native() && (!stream || !sse)
    }
    /// The content type of the client's stream when the gateway writes the headers itself
    /// (Gemini's JSON-array framing is `application/json`).
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream"
    }
    /// Whether the upstream's 2xx content type is one this translation can read (`json`:
    /// JSON; `sse`: an event stream). Passthrough routes carry any type.
    fn accepts(&self, json: bool, sse: bool, stream: bool) -> bool {
        json || sse && stream
    }
}

/// Builds a candidate's upstream request from the client's.
pub trait Translation: Sync {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError>;
}

/// The registry: the translation for a client API and a provider, `None` when the pair has
/// none (the request is then refused, never forwarded as is).
pub fn lookup(api: ClientApi, provider: ProviderKind) -> Option<&'static dyn Translation> {
    use ClientApi::*;
    use ProviderKind::*;
    Some(match (api, provider) {
        (Chat { .. } | Embeddings, OpenAi) => &native::OPENAI_CHAT,
        (OpenAiOther, OpenAi) => &native::OPENAI_OTHER,
        (GeminiNative { .. }, Gemini) => &native::GEMINI_NATIVE,
        (GeminiNative { .. }, OpenAi) => &gemini_openai::GEMINI_OPENAI,
        (Chat { .. }, Gemini) => &chat_gemini::CHAT_GEMINI,
        (Embeddings, Gemini) => &embeddings_gemini::EMBEDDINGS_GEMINI,
        (Responses { .. }, OpenAi) => &responses_openai::RESPONSES_OPENAI,
        (Responses { .. }, Gemini) => &responses_gemini::RESPONSES_GEMINI,
        (OpenAiOther, Gemini) => return None,
    })
}

/// The body with `model` replaced (and, when `ask_usage`, usage asked for), or the original
/// bytes when nothing changes — the common case, which costs no copy.
pub(crate) fn with_model(
    req: &ClientRequest<'_>,
    model: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    changes: bool,
) -> Result<Bytes, GatewayError> {
    if req.requested_model == Some(model) && !changes {
        return Ok(req.body.clone());
    }
    let mut v = match req.parsed {
        Some(v) => v.clone(),
        None => serde_json::from_slice(req.body)
            .map_err(|e| GatewayError::bad_request(e.to_string()))?,
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("model".into(), Value::String(model.to_string()));
        edit(obj);
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::bad_request(e.to_string()))
}

/// A whole answer in the client's non-streamed shape as the event stream its API streams
/// (cache hits on streaming requests; a JSON answer where a stream was asked).
pub fn replay(api: ClientApi, body: &[u8], include_usage: bool) -> Option<Bytes> {
    match api {
        ClientApi::Chat { .. } => crate::cache::completion_to_sse(body, include_usage),
        ClientApi::Responses { .. } => responses_gemini::replay(body),
        _ => None,
    }
}

/// Seconds since the Unix epoch, as OpenAI's `created` fields count.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A translation error from `crate::providers` as the client's 400.
pub(crate) fn bad_request(e: crate::providers::gemini::TranslateError) -> GatewayError {
    GatewayError::BadRequest {
        message: e.message,
        param: e.param,
    }
}

/// The parsed body a translating pair needs.
pub(crate) fn parsed<'a>(req: &ClientRequest<'a>) -> Result<&'a Value, GatewayError> {
    req.parsed
        .filter(|v| v.is_object())
        .ok_or_else(|| GatewayError::bad_request("body is not a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_the_proxy_can_ask_for_is_registered_or_refused() {
        for api in [
            ClientApi::Chat {
                stream: false,
                include_usage: false,
            },
            ClientApi::Embeddings,
            ClientApi::Responses { stream: true },
            ClientApi::GeminiNative {
                method: crate::routes::GeminiMethod::GenerateContent,
            },
        ] {
            for p in [ProviderKind::OpenAi, ProviderKind::Gemini] {
                assert!(lookup(api, p).is_some(), "{api:?} × {p:?}");
            }
        }
        assert!(lookup(ClientApi::OpenAiOther, ProviderKind::Gemini).is_none());
    }
}
