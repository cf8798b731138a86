//! OpenAI Embeddings clients on Gemini models.

use super::{
    bad_request, parsed, AnswerContext, AnswerTranslation, ClientRequest, Translation,
    UpstreamRequest, Whole,
};
use crate::error::GatewayError;
use crate::providers::gemini;
use crate::proxy::pump::{BodyTransform, Verbatim};
use bytes::Bytes;

pub struct EmbeddingsGemini;
pub static EMBEDDINGS_GEMINI: EmbeddingsGemini = EmbeddingsGemini;

impl Translation for EmbeddingsGemini {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = parsed(req)?;
        let (suffix, up) = gemini::embeddings_request(body, model).map_err(bad_request)?;
        let context = gemini::embeddings_context(body, model).map_err(bad_request)?;
        Ok(UpstreamRequest {
            suffix: format!("/{suffix}"),
            native_root: false,
            body: Bytes::from(up),
            stream: false,
            answer: Box::new(EmbeddingsAnswer { context }),
        })
    }
}

struct EmbeddingsAnswer {
    context: gemini::EmbeddingsContext,
}

impl AnswerTranslation for EmbeddingsAnswer {
    fn native(&self) -> bool {
        false
    }

    /// Never streamed: embeddings are read whole.
    fn transform(
        &mut self,
        _cx: &AnswerContext<'_>,
        _sse: bool,
        _keep: bool,
    ) -> Box<dyn BodyTransform> {
        Box::new(Verbatim::bounded(crate::proxy::pump::WHOLE_BODY_LIMIT))
    }

    fn whole(&mut self, body: Bytes, _cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let (b, u) =
            gemini::embeddings_response_with(&body, &self.context).map_err(|e| e.message)?;
        Ok(Whole {
            body: Bytes::from(b),
            usage: Some((u.prompt_tokens, u.completion_tokens)),
        })
    }

    fn replay(&self, _client_body: &[u8]) -> Option<Bytes> {
        None
    }

    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(gemini::error_to_openai(status, body)))
    }
}
