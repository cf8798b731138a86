//! The HTTP surface (SPEC §4): which handler a method and path go to. Pure.

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    HealthLive,
    HealthReady,
    HealthProviders,
    Config,
    Metrics,
    Models,
    ChatCompletions,
    Embeddings,
    /// `POST /v1/responses`: the Responses API on every model (SPEC §11).
    Responses,
    /// `GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`: answered
    /// from the gateway's conversation state when it minted `id`, else OpenAI's.
    StoredResponse {
        id: String,
        action: StoredAction,
    },
    /// Any other `/v1/*`: passed through to OpenAI with auth injected.
    OpenAiPassthrough,
    /// Gemini's native `models/{model}:{method}` routes.
    GeminiNative {
        model: String,
        method: GeminiMethod,
    },
    /// A CORS preflight.
    Preflight,
    NotFound,
    MethodNotAllowed,
}

/// What a request on a stored response asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAction {
    Retrieve,
    Delete,
    InputItems,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeminiMethod {
    GenerateContent,
    StreamGenerateContent,
    EmbedContent,
    BatchEmbedContents,
    CountTokens,
}

impl GeminiMethod {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "generateContent" => GeminiMethod::GenerateContent,
            "streamGenerateContent" => GeminiMethod::StreamGenerateContent,
            "embedContent" => GeminiMethod::EmbedContent,
            "batchEmbedContents" => GeminiMethod::BatchEmbedContents,
            "countTokens" => GeminiMethod::CountTokens,
            _ => return None,
        })
    }
}

impl Route {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::HealthLive => "health_live",
            Route::HealthReady => "health_ready",
            Route::HealthProviders => "health_providers",
            Route::Config => "config",
            Route::Metrics => "metrics",
            Route::Models => "models",
            Route::ChatCompletions => "chat_completions",
            Route::Embeddings => "embeddings",
            Route::Responses => "responses",
            Route::StoredResponse { action, .. } => match action {
                StoredAction::Retrieve => "responses_retrieve",
                StoredAction::Delete => "responses_delete",
                StoredAction::InputItems => "responses_input_items",
            },
            Route::OpenAiPassthrough => "openai_passthrough",
            Route::GeminiNative { method, .. } => match method {
                GeminiMethod::GenerateContent => "gemini_generate",
                GeminiMethod::StreamGenerateContent => "gemini_stream",
                GeminiMethod::EmbedContent => "gemini_embed",
                GeminiMethod::BatchEmbedContents => "gemini_batch_embed",
                GeminiMethod::CountTokens => "gemini_count_tokens",
            },
            Route::Preflight => "preflight",
            Route::NotFound => "not_found",
            Route::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// Routes that answer from the gateway itself and are never shed or rate limited.
    pub fn is_operational(&self) -> bool {
        matches!(
            self,
            Route::Health
                | Route::HealthLive
                | Route::HealthReady
                | Route::HealthProviders
                | Route::Metrics
        )
    }
}

/// Classifies a request. `path` excludes the query string.
pub fn classify(method: &str, path: &str) -> Route {
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    if method == "OPTIONS" {
        return Route::Preflight;
    }
    let simple = |route: Route, ok: bool| if ok { route } else { Route::MethodNotAllowed };
    match path {
        "/health" => return simple(Route::Health, get),
        "/health/live" => return simple(Route::HealthLive, get),
        "/health/ready" => return simple(Route::HealthReady, get),
        "/health/providers" => return simple(Route::HealthProviders, get),
        "/config" => return simple(Route::Config, get),
        "/metrics" => return simple(Route::Metrics, get),
        "/v1/models" => return simple(Route::Models, get),
        "/v1/chat/completions" => return simple(Route::ChatCompletions, post),
        "/v1/embeddings" => return simple(Route::Embeddings, post),
        "/v1/responses" => return simple(Route::Responses, post),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/v1/responses/") {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let action = match (method, tail) {
            ("GET" | "HEAD", "") => Some(StoredAction::Retrieve),
            ("DELETE", "") => Some(StoredAction::Delete),
            ("GET" | "HEAD", "input_items") => Some(StoredAction::InputItems),
            _ => None,
        };
        if let (Some(action), false) = (action, id.is_empty()) {
            return Route::StoredResponse {
                id: id.to_string(),
                action,
            };
        }
    }
    for prefix in ["/v1beta/models/", "/v1/models/", "/v1alpha/models/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if let Some((model, method_name)) = rest.rsplit_once(':') {
                if let Some(m) = GeminiMethod::parse(method_name) {
                    // `provider/model` (`openai/gpt-4o-mini`) is one name; deeper paths are not.
                    let valid = match model.split_once('/') {
                        None => !model.is_empty(),
                        Some((p, m)) => !p.is_empty() && !m.is_empty() && !m.contains('/'),
                    };
                    if !valid {
                        return Route::NotFound;
                    }
                    return simple(
                        Route::GeminiNative {
                            model: model.to_string(),
                            method: m,
                        },
                        post,
                    );
                }
            }
        }
    }
    if path.starts_with("/v1/") {
        return Route::OpenAiPassthrough;
    }
    Route::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_surface() {
        assert_eq!(
            classify("POST", "/v1/chat/completions"),
            Route::ChatCompletions
        );
        assert_eq!(
            classify("GET", "/v1/chat/completions"),
            Route::MethodNotAllowed
        );
        assert_eq!(classify("POST", "/v1/embeddings"), Route::Embeddings);
        assert_eq!(classify("GET", "/v1/models"), Route::Models);
        assert_eq!(classify("POST", "/v1/responses"), Route::Responses);
        assert_eq!(classify("GET", "/v1/responses"), Route::MethodNotAllowed);
        assert_eq!(
            classify("GET", "/v1/responses/resp_1/input_items"),
            Route::StoredResponse {
                id: "resp_1".into(),
                action: StoredAction::InputItems
            }
        );
        assert_eq!(
            classify("DELETE", "/v1/responses/resp_1"),
            Route::StoredResponse {
                id: "resp_1".into(),
                action: StoredAction::Delete
            }
        );
        // Other Responses endpoints are OpenAI's.
        assert_eq!(
            classify("POST", "/v1/responses/resp_1/cancel"),
            Route::OpenAiPassthrough
        );
        assert_eq!(
            classify("POST", "/v1/responses/input_tokens"),
            Route::OpenAiPassthrough
        );
        assert_eq!(
            classify("GET", "/v1/models/gpt-4o"),
            Route::OpenAiPassthrough
        );
        assert_eq!(
            classify(
                "POST",
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
            ),
            Route::GeminiNative {
                model: "gemini-2.0-flash".into(),
                method: GeminiMethod::StreamGenerateContent
            }
        );
        assert_eq!(
            classify("POST", "/v1/models/text-embedding-004:embedContent"),
            Route::GeminiNative {
                model: "text-embedding-004".into(),
                method: GeminiMethod::EmbedContent
            }
        );
        assert_eq!(
            classify("POST", "/v1beta/models/openai/gpt-4o-mini:generateContent"),
            Route::GeminiNative {
                model: "openai/gpt-4o-mini".into(),
                method: GeminiMethod::GenerateContent
            }
        );
        assert_eq!(
            classify("POST", "/v1beta/models/a/b/c:generateContent"),
            Route::NotFound
        );
        assert_eq!(
            classify("POST", "/v1beta/models/openai/:generateContent"),
            Route::NotFound
        );
        assert_eq!(
            classify("OPTIONS", "/v1/chat/completions"),
            Route::Preflight
        );
        assert_eq!(classify("GET", "/health/ready"), Route::HealthReady);
        assert_eq!(classify("GET", "/nope"), Route::NotFound);
        assert!(classify("GET", "/metrics").is_operational());
    }
}
