//! OpenAI Responses clients on Gemini models: `crate::providers::gemini::responses` bound to
//! the seam. The answer gets the id the gateway minted for this request, and its input items
//! are handed back for the conversation state.

use super::{
    bad_request, parsed, AnswerContext, AnswerTranslation, ClientRequest, Translation,
    UpstreamRequest, Whole,
};
use crate::error::GatewayError;
use crate::providers::gemini::{self, responses};
use crate::proxy::pump::{BodyTransform, StreamTranslate, Translated};
use bytes::Bytes;
use serde_json::Value;

pub struct ResponsesGemini;
pub static RESPONSES_GEMINI: ResponsesGemini = ResponsesGemini;

impl Translation for ResponsesGemini {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let body = parsed(req)?;
        let history = req.conversation.map(|c| c.items.as_slice()).unwrap_or(&[]);
        let t = responses::responses_request_with(body, history, req.referable, model, req.store)
            .map_err(bad_request)?;
        let cx = responses::ResponsesContext::new(
            body,
            req.minted_id.to_string(),
            model.to_string(),
            super::unix_now(),
        );
        Ok(UpstreamRequest {
            suffix: format!("/{}", t.path),
            native_root: false,
            body: Bytes::from(t.body),
            stream: t.stream,
            answer: Box::new(ResponsesAnswer {
                cx: Some(cx),
                input_items: t.input_items,
                output_span: None,
            }),
        })
    }
}

struct ResponsesAnswer {
    /// Taken by the stream translator; a whole answer borrows it.
    cx: Option<responses::ResponsesContext>,
    /// A JSON array (see `ResponsesRequest::input_items`).
    input_items: Vec<u8>,
    output_span: Option<std::ops::Range<usize>>,
}

impl AnswerTranslation for ResponsesAnswer {
    fn native(&self) -> bool {
        false
    }

    fn transform(
        &mut self,
        _cx: &AnswerContext<'_>,
        _sse: bool,
        keep: bool,
    ) -> Box<dyn BodyTransform> {
        let cx = self.cx.take().unwrap_or_else(|| {
            responses::ResponsesContext::new(&Value::Null, String::new(), String::new(), 0)
        });
        let t = responses::ResponsesStreamTranslator::new(cx);
        Box::new(Translated::new(Box::new(t), keep))
    }

    fn whole(&mut self, body: Bytes, _cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let cx = self.cx.take().ok_or("the answer was already translated")?;
        let (b, span, u) = responses::responses_response(&body, cx).map_err(|e| e.message)?;
        self.output_span = Some(span);
        Ok(Whole {
            body: Bytes::from(b),
            usage: Some((u.prompt_tokens, u.completion_tokens)),
        })
    }

    fn replay(&self, client_body: &[u8]) -> Option<Bytes> {
        replay(client_body)
    }

    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(gemini::error_to_openai(status, body)))
    }

    fn take_input_items(&mut self) -> Option<Vec<u8>> {
        Some(std::mem::take(&mut self.input_items))
    }

    fn output_span(&self) -> Option<std::ops::Range<usize>> {
        self.output_span.clone()
    }
}

/// A whole `response` object as the Responses event stream (also for OpenAI's own answers
/// where a stream was asked and JSON came, and for cache hits).
pub fn replay(response: &[u8]) -> Option<Bytes> {
    responses::response_to_events(response).map(Bytes::from)
}

impl StreamTranslate for responses::ResponsesStreamTranslator {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        responses::ResponsesStreamTranslator::push(self, chunk, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        responses::ResponsesStreamTranslator::finish(self, out)
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        responses::ResponsesStreamTranslator::fail(self, message, out)
    }

    fn usage(&self) -> Option<(u64, u64)> {
        responses::ResponsesStreamTranslator::usage(self)
            .map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    fn pending_bytes(&self) -> usize {
        responses::ResponsesStreamTranslator::pending_bytes(self)
    }

    fn held_bytes(&self) -> usize {
        responses::ResponsesStreamTranslator::held_bytes(self)
    }

    fn complete(&self) -> Option<Bytes> {
        self.final_response().map(Bytes::from)
    }

    fn is_chat(&self) -> bool {
        false
    }
}
