//! Gemini-native clients (google-genai) on OpenAI models: `crate::providers::openai::from_gemini`
//! bound to the seam. `generateContent` / `streamGenerateContent` go to Chat Completions,
//! `embedContent` / `batchEmbedContents` to Embeddings; `countTokens` never goes upstream
//! (the proxy answers it with the gateway's estimate).

use super::{
    bad_request, parsed, AnswerContext, AnswerTranslation, ClientApi, ClientRequest, Translation,
    UpstreamRequest, Whole,
};
use crate::error::GatewayError;
use crate::providers::openai::from_gemini::{self, Framing};
use crate::proxy::pump::{BodyTransform, StreamTranslate, Translated, Verbatim, WHOLE_BODY_LIMIT};
use crate::routes::GeminiMethod;
use bytes::Bytes;

pub struct GeminiOpenAi;
pub static GEMINI_OPENAI: GeminiOpenAi = GeminiOpenAi;

impl Translation for GeminiOpenAi {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let ClientApi::GeminiNative { method } = req.api else {
            return Err(GatewayError::bad_request(
                "this translation serves Gemini's native routes only",
            ));
        };
        let body = parsed(req)?;
        match method {
            GeminiMethod::GenerateContent | GeminiMethod::StreamGenerateContent => {
                let stream = method == GeminiMethod::StreamGenerateContent;
                let t = from_gemini::chat_request(body, model, stream).map_err(bad_request)?;
                Ok(UpstreamRequest {
                    suffix: "/chat/completions".into(),
                    native_root: false,
                    body: Bytes::from(t.body),
                    stream: t.stream,
                    answer: Box::new(GenerateAnswer {
                        framing: Framing::of_query(req.path_and_query),
                    }),
                })
            }
            GeminiMethod::EmbedContent | GeminiMethod::BatchEmbedContents => {
                let batch = method == GeminiMethod::BatchEmbedContents;
                let up = from_gemini::embed_request(body, model, batch).map_err(bad_request)?;
                Ok(UpstreamRequest {
                    suffix: "/embeddings".into(),
                    native_root: false,
                    body: Bytes::from(up),
                    stream: false,
                    answer: Box::new(EmbedAnswer { batch }),
                })
            }
            GeminiMethod::CountTokens => Err(GatewayError::BadRequest {
                message: format!(
                    "countTokens for `{model}` is answered by the gateway, not OpenAI"
                ),
                param: None,
            }),
        }
    }
}

/// The way back for `generateContent` and `streamGenerateContent`.
struct GenerateAnswer {
    framing: Framing,
}

impl AnswerTranslation for GenerateAnswer {
    fn native(&self) -> bool {
        false
    }

    fn transform(
        &mut self,
        cx: &AnswerContext<'_>,
        _sse: bool,
        keep: bool,
    ) -> Box<dyn BodyTransform> {
        let id = format!("chatcmpl-{}", cx.request_id);
        let t = from_gemini::StreamTranslator::new(self.framing, cx.model, &id);
        Box::new(Translated::new(Box::new(t), keep))
    }

    fn whole(&mut self, body: Bytes, cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let id = format!("chatcmpl-{}", cx.request_id);
        let (b, usage) = from_gemini::generate_response(&body, cx.model, &id)?;
        Ok(Whole {
            body: Bytes::from(b),
            usage,
        })
    }

    fn replay(&self, client_body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(from_gemini::replay(self.framing, client_body)))
    }

    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(from_gemini::openai_error_to_google(
            status, body,
        )))
    }

    fn stream_content_type(&self) -> &'static str {
        self.framing.content_type()
    }
}

/// The way back for `embedContent` and `batchEmbedContents`: always read whole.
struct EmbedAnswer {
    batch: bool,
}

impl AnswerTranslation for EmbedAnswer {
    fn native(&self) -> bool {
        false
    }

    fn transform(
        &mut self,
        _cx: &AnswerContext<'_>,
        _sse: bool,
        _keep: bool,
    ) -> Box<dyn BodyTransform> {
        Box::new(Verbatim::bounded(WHOLE_BODY_LIMIT))
    }

    fn whole(&mut self, body: Bytes, _cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let (b, usage) = from_gemini::embed_response(&body, self.batch)?;
        Ok(Whole {
            body: Bytes::from(b),
            usage,
        })
    }

    fn replay(&self, _client_body: &[u8]) -> Option<Bytes> {
        None
    }

    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(from_gemini::openai_error_to_google(
            status, body,
        )))
    }
}

impl StreamTranslate for from_gemini::StreamTranslator {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        from_gemini::StreamTranslator::push(self, chunk, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        from_gemini::StreamTranslator::finish(self, out)
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        from_gemini::StreamTranslator::fail(self, message, out)
    }

    fn usage(&self) -> Option<(u64, u64)> {
        from_gemini::StreamTranslator::usage(self)
    }

    fn pending_bytes(&self) -> usize {
        from_gemini::StreamTranslator::pending_bytes(self)
    }

    fn held_bytes(&self) -> usize {
        from_gemini::StreamTranslator::held_bytes(self)
    }

    fn is_chat(&self) -> bool {
        false
    }
}
