//! Pairs where the client and the provider speak the same API: the body goes up as it came
//! (but for the resolved model name) and the answer comes back under the upstream's headers,
//! watched on the way for usage, completeness and bounds.

use super::{
    with_model, AnswerContext, AnswerTranslation, ClientApi, ClientRequest, Translation,
    UpstreamRequest, Whole,
};
use crate::error::GatewayError;
use crate::proxy::pump::{
    usage_of, BodyTransform, CheckedSse, OpenAiSse, StreamEnd, Verbatim, WHOLE_BODY_LIMIT,
};
use bytes::Bytes;

/// OpenAI Chat Completions and Embeddings, to OpenAI.
pub struct OpenAiChat;
pub static OPENAI_CHAT: OpenAiChat = OpenAiChat;

/// Other OpenAI `/v1/*` routes (files, legacy completions, …), to OpenAI.
pub struct OpenAiOther;
pub static OPENAI_OTHER: OpenAiOther = OpenAiOther;

/// Gemini's native routes, to Gemini.
pub struct GeminiNative;
pub static GEMINI_NATIVE: GeminiNative = GeminiNative;

impl Translation for OpenAiChat {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let (suffix, stream, include_usage) = match req.api {
            ClientApi::Chat {
                stream,
                include_usage,
            } => ("/chat/completions", stream, include_usage),
            _ => ("/embeddings", false, false),
        };
        // Usage is counted for streams too: asked for when the client did not, and that
        // extra chunk dropped before it reaches the client.
        let strip_usage = stream && !include_usage;
        let body = with_model(
            req,
            model,
            |obj| {
                if strip_usage {
                    obj.insert(
                        "stream_options".into(),
                        serde_json::json!({"include_usage": true}),
                    );
                }
            },
            strip_usage,
        )?;
        Ok(UpstreamRequest {
            suffix: suffix.into(),
            native_root: false,
            body,
            stream,
            answer: Box::new(Same {
                end: if stream {
                    Ending::Chat { strip_usage }
                } else {
                    Ending::Kept
                },
            }),
        })
    }
}

impl Translation for OpenAiOther {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let suffix = req
            .path_and_query
            .strip_prefix("/v1")
            .unwrap_or(req.path_and_query);
        // A body that names a model carries the resolved name (`openai/gpt-4o` → `gpt-4o`).
        let body = match req.requested_model {
            Some(_) => with_model(req, model, |_| {}, false)?,
            None => req.body.clone(),
        };
        Ok(UpstreamRequest {
            suffix: suffix.to_string(),
            native_root: false,
            body,
            stream: false,
            answer: Box::new(Same {
                end: Ending::Raw {
                    end: passthrough_stream_end(req.path_and_query),
                    limit: None,
                },
            }),
        })
    }
}

impl Translation for GeminiNative {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        Ok(UpstreamRequest {
            suffix: with_path_model(strip_key_param(req.path_and_query), model),
            native_root: true,
            body: req.body.clone(),
            stream: req.api.stream(),
            answer: Box::new(Same {
                end: Ending::Raw {
                    end: Some(StreamEnd::GeminiFinish),
                    limit: Some(WHOLE_BODY_LIMIT),
                },
            }),
        })
    }
}

/// How a same-API answer is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// A chat stream: `[DONE]` expected, usage read (and the usage chunk dropped when the
    /// gateway asked for it).
    Chat { strip_usage: bool },
    /// A Responses stream: a terminal event expected, usage and the final response read
    /// from it.
    Responses,
    /// A whole JSON answer kept (for usage and the cache).
    Kept,
    /// Passthrough: an event stream is checked for `end` when the API has an end marker; a
    /// body that is not a stream is cut after `limit` bytes when set.
    Raw {
        end: Option<StreamEnd>,
        limit: Option<usize>,
    },
}

/// The answer side of every same-API pair.
pub(super) struct Same {
    pub(super) end: Ending,
}

impl AnswerTranslation for Same {
    fn native(&self) -> bool {
        true
    }

    fn transform(
        &mut self,
        _cx: &AnswerContext<'_>,
        sse: bool,
        keep: bool,
    ) -> Box<dyn BodyTransform> {
        match (self.end, sse) {
            (Ending::Chat { strip_usage }, true) => Box::new(OpenAiSse::new(strip_usage, keep)),
            (Ending::Responses, true) => {
                Box::new(CheckedSse::new(StreamEnd::ResponsesTerminal).keeping(keep))
            }
            (Ending::Raw { end: Some(end), .. }, true) => Box::new(CheckedSse::new(end)),
            (Ending::Raw { limit: Some(l), .. }, false) => Box::new(Verbatim::bounded(l)),
            (Ending::Raw { .. }, _) => Box::new(Verbatim::raw()),
            _ => Box::new(Verbatim::kept(WHOLE_BODY_LIMIT)),
        }
    }

    fn whole(&mut self, body: Bytes, _cx: &AnswerContext<'_>) -> Result<Whole, String> {
        let usage = usage_of(&body);
        Ok(Whole { body, usage })
    }

    fn replay(&self, client_body: &[u8]) -> Option<Bytes> {
        match self.end {
            Ending::Chat { strip_usage } => super::replay(
                ClientApi::Chat {
                    stream: true,
                    include_usage: !strip_usage,
                },
                client_body,
                !strip_usage,
            ),
            Ending::Responses => {
                super::replay(ClientApi::Responses { stream: true }, client_body, true)
            }
            _ => None,
        }
    }

    fn error(&self, _status: u16, _body: &[u8]) -> Option<Bytes> {
        None
    }

    fn accepts(&self, json: bool, sse: bool, stream: bool) -> bool {
        matches!(self.end, Ending::Raw { .. }) || json || sse && stream
    }

    fn reads_whole(&self, sse: bool, stream: bool) -> bool {
        stream && !sse && matches!(self.end, Ending::Chat { .. } | Ending::Responses)
    }
}

/// How a passthrough route's event stream shows that it finished, where the API has a marker.
fn passthrough_stream_end(path_and_query: &str) -> Option<StreamEnd> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    match path {
        "/v1/responses" => Some(StreamEnd::ResponsesTerminal),
        "/v1/chat/completions" | "/v1/completions" => Some(StreamEnd::Done),
        _ => None,
    }
}

/// Drops a `key=` query parameter: the key travels in a header upstream, never in a URL.
pub(crate) fn strip_key_param(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("key=") && !p.is_empty())
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The native path naming `model`: unchanged (no copy) when the client already named it,
/// else the `models/{m}` segment replaced — a virtual model's or `gemini/…` candidate must
/// reach Gemini under its own name.
fn with_path_model(path_and_query: String, model: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(q) => path_and_query.split_at(q),
        None => (path_and_query.as_str(), ""),
    };
    let Some(start) = path.find("/models/").map(|i| i + "/models/".len()) else {
        return path_and_query;
    };
    let Some(end) = path.rfind(':').filter(|e| *e > start) else {
        return path_and_query;
    };
    if &path[start..end] == model {
        return path_and_query;
    }
    format!("{}{model}{}{query}", &path[..start], &path[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_reaches_gemini_under_its_own_model() {
        let same = "/v1beta/models/gemini-2.0-flash:generateContent".to_string();
        assert_eq!(with_path_model(same.clone(), "gemini-2.0-flash"), same);
        assert_eq!(
            with_path_model(
                "/v1beta/models/smart:streamGenerateContent?alt=sse".into(),
                "gemini-2.5-pro"
            ),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            with_path_model(
                "/v1/models/gemini/gemini-2.0-flash:countTokens".into(),
                "gemini-2.0-flash"
            ),
            "/v1/models/gemini-2.0-flash:countTokens"
        );
    }

    #[test]
    fn key_query_parameters_never_go_upstream() {
        assert_eq!(
            strip_key_param("/v1beta/models/m:generateContent?key=abc"),
            "/v1beta/models/m:generateContent"
        );
        assert_eq!(strip_key_param("/x?alt=sse&key=abc"), "/x?alt=sse");
        assert_eq!(strip_key_param("/x"), "/x");
    }

    #[test]
    fn passthrough_streams_know_their_end_marker() {
        assert_eq!(
            passthrough_stream_end("/v1/responses?x=1"),
            Some(StreamEnd::ResponsesTerminal)
        );
        assert_eq!(
            passthrough_stream_end("/v1/completions"),
            Some(StreamEnd::Done)
        );
        assert_eq!(passthrough_stream_end("/v1/files/f/content"), None);
    }
}
