//! OpenAI Chat Completions clients on Gemini models: `crate::providers::gemini`'s chat
//! conversions bound to the seam.

use super::{
    bad_request, parsed, AnswerContext, AnswerTranslation, ClientRequest, Translation,
    UpstreamRequest, Whole,
};
use crate::error::GatewayError;
use crate::providers::gemini;
use crate::proxy::pump::{BodyTransform, StreamTranslate, Translated};
use bytes::Bytes;

pub struct ChatGemini;
pub static CHAT_GEMINI: ChatGemini = ChatGemini;

impl Translation for ChatGemini {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let t = gemini::chat_request(parsed(req)?, model).map_err(bad_request)?;
        Ok(UpstreamRequest {
            suffix: format!("/{}", gemini::chat_path(model, t.stream)),
            native_root: false,
            body: Bytes::from(t.body),
            stream: t.stream,
            answer: Box::new(ChatAnswer {
                include_usage: t.include_usage,
                parallel_tool_calls: t.parallel_tool_calls,
            }),
        })
    }
}

struct ChatAnswer {
    include_usage: bool,
    parallel_tool_calls: bool,
}

impl ChatAnswer {
    fn context(&self, cx: &AnswerContext<'_>) -> gemini::ResponseContext {
        gemini::ResponseContext {
            id: format!("chatcmpl-{}", cx.request_id),
            model: cx.model.to_string(),
            created: cx.created,
            parallel_tool_calls: self.parallel_tool_calls,
        }
    }
}

impl AnswerTranslation for ChatAnswer {
    fn native(&self) -> bool {
        false
    }

    fn transform(
        &mut self,
        cx: &AnswerContext<'_>,
        _sse: bool,
        keep: bool,
    ) -> Box<dyn BodyTransform> {
        let t = gemini::StreamTranslator::new(self.context(cx), self.include_usage);
        Box::new(Translated::new(Box::new(t), keep))
    }

    fn whole(&mut self, body: Bytes, cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let (b, u) = gemini::chat_response(&body, &self.context(cx)).map_err(|e| e.message)?;
        Ok(Whole {
            body: Bytes::from(b),
            usage: Some((u.prompt_tokens, u.completion_tokens)),
        })
    }

    fn replay(&self, client_body: &[u8]) -> Option<Bytes> {
        crate::cache::completion_to_sse(client_body, self.include_usage)
    }

    fn error(&self, status: u16, body: &[u8]) -> Option<Bytes> {
        Some(Bytes::from(gemini::error_to_openai(status, body)))
    }
}

impl StreamTranslate for gemini::StreamTranslator {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        gemini::StreamTranslator::push(self, chunk, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        gemini::StreamTranslator::finish(self, out)
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        gemini::StreamTranslator::fail(self, message, out)
    }

    fn usage(&self) -> Option<(u64, u64)> {
        gemini::StreamTranslator::usage(self).map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    fn pending_bytes(&self) -> usize {
        gemini::StreamTranslator::pending_bytes(self)
    }

    fn is_chat(&self) -> bool {
        true
    }
}
