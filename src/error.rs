//! The gateway's own errors. Each decides its HTTP status, OpenAI error type and metric label
//! in one exhaustive match, and reaches the client as OpenAI-shaped JSON.

use bytes::Bytes;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    /// The body is not valid JSON or misses a required field.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// The body is larger than `server.max_body_bytes`.
    BodyTooLarge { limit: usize },
    /// No route for this method and path.
    NotFound { path: String },
    /// The requested model is not served by any enabled provider.
    ModelNotFound { model: String },
    /// Missing or wrong gateway access key.
    Unauthorized { message: String },
    /// No provider key available (client mode without a client key).
    MissingProviderKey { model: String },
    /// The caller is over its rate limit.
    RateLimited { retry_after_secs: u64 },
    /// Too many requests in flight: shed at once.
    Overloaded,
    /// An attempt or the whole request ran out of time.
    UpstreamTimeout { message: String },
    /// Every candidate failed; carries the last upstream error.
    UpstreamFailed { message: String },
    /// A method that this route does not accept.
    MethodNotAllowed,
    /// Responses API: a `previous_response_id` this caller cannot continue (unknown, expired,
    /// another tenant's, or stored nowhere the model's provider can read it).
    PreviousResponseNotFound { id: String },
    /// Responses API: `GET`/`DELETE` of a response this caller has not stored.
    ResponseNotFound { id: String },
    /// The caller's key or token does not allow this model (SPEC §13).
    ModelNotAllowed { model: String },
    /// The caller's USD budget for the period is spent (SPEC §13): not a rate limit, and
    /// never retried by waiting a minute.
    BudgetExceeded { period: &'static str },
    /// An `/admin` request that is not allowed (wrong or missing admin key).
    AdminUnauthorized,
    /// An `/admin` request naming a key that does not exist.
    KeyNotFound { id: String },
    /// An `/admin` create naming an id already in use.
    KeyExists { id: String },
    /// An `/admin` write that could not be stored (Redis down, state file not writable):
    /// nothing changed, and the same request may succeed once the store is back.
    StoreUnavailable { message: String },
}

/// The body every error renders as.
#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl GatewayError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest { .. } | GatewayError::PreviousResponseNotFound { .. } => 400,
            GatewayError::ResponseNotFound { .. } => 404,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::NotFound { .. } | GatewayError::ModelNotFound { .. } => 404,
            GatewayError::Unauthorized { .. } | GatewayError::MissingProviderKey { .. } => 401,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::Overloaded => 503,
            GatewayError::UpstreamTimeout { .. } => 504,
            GatewayError::UpstreamFailed { .. } => 502,
            GatewayError::MethodNotAllowed => 405,
            GatewayError::ModelNotAllowed { .. } => 403,
            GatewayError::BudgetExceeded { .. } => 429,
            GatewayError::AdminUnauthorized => 401,
            GatewayError::KeyNotFound { .. } => 404,
            GatewayError::KeyExists { .. } => 409,
            GatewayError::StoreUnavailable { .. } => 503,
        }
    }

    /// OpenAI's `error.type`.
    pub fn openai_type(&self) -> &'static str {
        match self {
            GatewayError::BadRequest { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::NotFound { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::MethodNotAllowed
            | GatewayError::PreviousResponseNotFound { .. }
            | GatewayError::ResponseNotFound { .. }
            | GatewayError::KeyNotFound { .. }
            | GatewayError::KeyExists { .. } => "invalid_request_error",
            GatewayError::ModelNotAllowed { .. } => "permission_error",
            GatewayError::BudgetExceeded { .. } => "insufficient_quota",
            GatewayError::AdminUnauthorized => "authentication_error",
            GatewayError::Unauthorized { .. } | GatewayError::MissingProviderKey { .. } => {
                "authentication_error"
            }
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::Overloaded => "server_overloaded",
            GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::StoreUnavailable { .. } => "api_error",
        }
    }

    /// A short, bounded label for metrics and logs (also OpenAI's `error.code`).
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::BadRequest { .. } => "invalid_request",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::NotFound { .. } => "not_found",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::Unauthorized { .. } => "invalid_api_key",
            GatewayError::MissingProviderKey { .. } => "missing_provider_key",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::Overloaded => "overloaded",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamFailed { .. } => "upstream_error",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::PreviousResponseNotFound { .. } => "previous_response_not_found",
            GatewayError::ResponseNotFound { .. } => "not_found",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::AdminUnauthorized => "invalid_admin_key",
            GatewayError::KeyNotFound { .. } => "key_not_found",
            GatewayError::KeyExists { .. } => "key_exists",
            GatewayError::StoreUnavailable { .. } => "store_unavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            GatewayError::BadRequest { message, .. } => message.clone(),
            GatewayError::BodyTooLarge { limit } => {
                format!("Request body is larger than the gateway's limit of {limit} bytes.")
            }
            GatewayError::NotFound { path } => format!("Unknown route: {path}"),
            GatewayError::ModelNotFound { model } => {
                format!("The model `{model}` does not exist or is not served by this gateway.")
            }
            GatewayError::Unauthorized { message } => message.clone(),
            GatewayError::MissingProviderKey { model } => format!(
                "No API key for the provider of `{model}`: send one in the Authorization header \
                 (or x-openai-api-key / x-goog-api-key)."
            ),
            GatewayError::RateLimited { retry_after_secs } => {
                format!("Rate limit reached for this caller. Retry after {retry_after_secs} s.")
            }
            GatewayError::Overloaded => {
                "The gateway is at its concurrency limit; retry shortly.".into()
            }
            GatewayError::UpstreamTimeout { message } => message.clone(),
            GatewayError::UpstreamFailed { message } => message.clone(),
            GatewayError::MethodNotAllowed => "Method not allowed on this route.".into(),
            GatewayError::PreviousResponseNotFound { id } => {
                format!("Previous response with id '{id}' not found.")
            }
            GatewayError::ResponseNotFound { id } => {
                format!("Response with id '{id}' not found.")
            }
            GatewayError::ModelNotAllowed { model } => {
                format!("This key is not allowed to use the model `{model}`.")
            }
            GatewayError::BudgetExceeded { period } => {
                format!("This key's {period} budget is spent: no more requests until it resets or is raised.")
            }
            GatewayError::AdminUnauthorized => {
                "Missing or invalid admin key: send `Authorization: Bearer <auth.admin_key>`."
                    .into()
            }
            GatewayError::KeyNotFound { id } => format!("No managed key with id '{id}'."),
            GatewayError::KeyExists { id } => format!("A key with id '{id}' already exists."),
            GatewayError::StoreUnavailable { message } => message.clone(),
        }
    }

    /// Seconds for a `Retry-After` header, where one applies.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            GatewayError::Overloaded | GatewayError::StoreUnavailable { .. } => Some(1),
            _ => None,
        }
    }

    pub fn body(&self) -> Bytes {
        let message = self.message();
        let param = match self {
            GatewayError::BadRequest { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::PreviousResponseNotFound { .. } => Some("previous_response_id"),
            GatewayError::ModelNotAllowed { .. } => Some("model"),
            _ => None,
        };
        openai_error_body(&message, self.openai_type(), param, Some(self.label()))
    }
}

/// `{"error":{"message","type","param","code"}}` as bytes.
pub fn openai_error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
    let env = Envelope {
        error: Body {
            message,
            kind,
            param,
            code,
        },
    };
    Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = GatewayError::ModelNotFound {
            model: "gpt-9".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(GatewayError::bad_request("x").status(), 400);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            GatewayError::Unauthorized {
                message: "x".into()
            }
            .status(),
            401
        );
        assert_eq!(
            GatewayError::RateLimited {
                retry_after_secs: 3
            }
            .retry_after(),
            Some(3)
        );
        assert_eq!(GatewayError::Overloaded.status(), 503);
        assert_eq!(
            GatewayError::UpstreamTimeout {
                message: "t".into()
            }
            .status(),
            504
        );
        assert_eq!(
            GatewayError::UpstreamFailed {
                message: "f".into()
            }
            .status(),
            502
        );
    }
}
