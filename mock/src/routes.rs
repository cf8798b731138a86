//! Routing and auth: which fake endpoint answers a recorded request.

use serde_json::{json, Value};

use crate::deterministic::CREATED;
use crate::gemini_answer::{gemini_error, gemini_route};
use crate::http::{json_reply, percent_decode, Head, Reply, Request};
use crate::openai::{openai_chat, openai_embeddings};
use crate::responses;
use crate::state::State;

/// Splits `/{v1|v1beta}/models/{model}:{method}` (tolerating `models/models/x` and `%3A`).
pub(crate) fn gemini_target(path: &str) -> Option<(String, String)> {
    let rest = path
        .strip_prefix("/v1beta/")
        .or_else(|| path.strip_prefix("/v1/"))?;
    let rest = rest
        .strip_prefix("models/")
        .or_else(|| rest.strip_prefix("models%2F"))?;
    let rest = percent_decode(rest, false);
    let (model, method) = rest.rsplit_once(':')?;
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() || method.is_empty() {
        return None;
    }
    Some((model.to_owned(), method.to_owned()))
}

/// Whether a request speaks Gemini (for auth and default fault bodies).
pub(crate) fn is_gemini(head: &Head) -> bool {
    head.path.starts_with("/v1beta/")
        || gemini_target(&head.path).is_some()
        || head.header("x-goog-api-key").is_some()
        || head.query("key").is_some()
}

/// With `--require-key`, the provider-specific rejection of a wrong or missing key.
pub(crate) fn auth_failure(state: &State, req: &Request, gemini: bool) -> Option<Reply> {
    let key = state.cli.require_key.as_deref()?;
    let head = &req.head;
    if gemini {
        let got = head.header("x-goog-api-key").or_else(|| head.query("key"));
        (got != Some(key))
            .then(|| gemini_error(400, "API key not valid. Please pass a valid API key."))
    } else if head.path.starts_with("/v1/") {
        let got = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        (got != Some(key)).then(|| {
            json_reply(
                401,
                &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            )
        })
    } else {
        None
    }
}

/// How a hostile fault bends the route's own answer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RouteOpts {
    /// Answer a stream request with the whole non-streamed answer (`json_for_sse`).
    pub(crate) force_full: bool,
    /// Pad the answer to this many bytes (streams: content characters) (`size`).
    pub(crate) size: Option<usize>,
    /// With `size` on a stream: the number of content events.
    pub(crate) events: Option<usize>,
}

/// Dispatches a recorded request to its fake endpoint.
pub(crate) fn route(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let head = &req.head;
    if let Some((model, method)) = gemini_target(&head.path) {
        return gemini_route(state, req, &model, &method, opts);
    }
    match (head.method.as_str(), head.path.as_str()) {
        ("POST", "/v1/chat/completions") => openai_chat(state, req, opts),
        ("POST", "/v1/embeddings") => openai_embeddings(req, opts),
        (_, path) if path == "/v1/responses" || path.starts_with("/v1/responses/") => {
            responses::route(state, req, opts)
        }
        ("GET", "/v1/models" | "/v1beta/models") => model_list(),
        (method, path) if path.starts_with("/v1/") || path.starts_with("/v1beta/") => json_reply(
            200,
            &json!({"object": "mock.echo", "method": method, "path": path, "body_bytes": req.body.len()}),
        ),
        (_, path) => json_reply(
            404,
            &json!({"error": {"message": format!("Unknown request URL: {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ),
    }
}

/// `GET /v1/models`.
pub(crate) fn model_list() -> Reply {
    let data: Vec<Value> = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "mock"}))
        .collect();
    json_reply(200, &json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_query;

    #[test]
    fn gemini_paths_and_queries_parse() {
        let target = |p: &str| gemini_target(p);
        let want = Some(("gemini-2.5-flash".to_owned(), "generateContent".to_owned()));
        assert_eq!(
            target("/v1beta/models/gemini-2.5-flash:generateContent"),
            want
        );
        assert_eq!(
            target("/v1/models/models/gemini-2.5-flash:generateContent"),
            want
        );
        assert_eq!(
            target("/v1beta/models/gemini-2.5-flash%3AgenerateContent"),
            want
        );
        assert_eq!(target("/v1/chat/completions"), None);
        assert_eq!(target("/v1/models"), None);
        assert_eq!(
            parse_query("alt=sse&key=a%2Bb+c"),
            vec![
                ("alt".to_owned(), "sse".to_owned()),
                ("key".to_owned(), "a+b c".to_owned())
            ]
        );
    }
}
