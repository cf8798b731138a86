//! Gemini error bodies → the OpenAI error shape, and the 400 a translation raises.

use std::borrow::Cow;

use super::wire::ErrorEnvelope;

/// Always rendered by the gateway as HTTP 400 invalid_request_error, with `param` naming the offending parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

pub(crate) type Result<T> = std::result::Result<T, TranslateError>;

pub(crate) fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Errors that concern the whole body or the upstream answer, not one parameter.
pub(crate) fn no_param(message: impl Into<String>) -> TranslateError {
    TranslateError {
        message: message.into(),
        param: None,
    }
}

pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        402..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Appends OpenAI's error JSON: the one writer in `crate::error`.
pub(crate) fn write_error(out: &mut Vec<u8>, message: &str, kind: &str, code: Option<&str>) {
    out.extend_from_slice(&crate::error::openai_error_body(message, kind, None, code));
}

/// Gemini error body (or anything else) → OpenAI error JSON bytes; `type` from
/// the HTTP status, `code` = Gemini's status string lowercased, or null.
pub fn error_to_openai(http_status: u16, gemini: &[u8]) -> Vec<u8> {
    // Some endpoints wrap the error in a one-element array.
    // (A derived struct would also accept an array, so dispatch on the shape.)
    let parsed = if gemini.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<ErrorEnvelope>>(gemini)
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        serde_json::from_slice::<ErrorEnvelope>(gemini).ok()
    };
    let kind = error_type(http_status);
    let mut out = Vec::with_capacity(128 + gemini.len().min(1024));
    match parsed {
        Some(env) => {
            let code = env.error.status.as_ref().map(|s| s.0.to_ascii_lowercase());
            let message = env
                .error
                .message
                .as_ref()
                .map_or(Cow::Borrowed("upstream error"), |m| m.0.clone());
            write_error(&mut out, &message, kind, code.as_deref());
        }
        None => {
            let text = String::from_utf8_lossy(gemini);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("upstream returned HTTP {http_status}")
            } else {
                let end = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
                format!("upstream returned HTTP {http_status}: {}", &text[..end])
            };
            write_error(&mut out, &message, kind, None);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::test_support::*;
    use serde_json::{json, Value};

    #[test]
    fn gemini_error_to_openai() {
        let out = error_to_openai(429, fixture!("error_429.json").as_bytes());
        assert_eq!(
            v(std::str::from_utf8(&out).unwrap()),
            json!({"error":{"message":"Resource has been exhausted (e.g. check quota).",
                "type":"rate_limit_error","param":null,"code":"resource_exhausted"}})
        );
        let wrapped = format!("[{}]", fixture!("error_429.json").trim());
        let out = v(std::str::from_utf8(&error_to_openai(429, wrapped.as_bytes())).unwrap());
        assert_eq!(out["error"]["code"], "resource_exhausted");
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (500, "api_error"),
            (503, "api_error"),
        ] {
            let out =
                v(std::str::from_utf8(&error_to_openai(status, b"<html>oops</html>")).unwrap());
            assert_eq!(out["error"]["type"], kind);
            assert_eq!(out["error"]["code"], Value::Null);
            assert!(out["error"]["message"].as_str().unwrap().contains("oops"));
        }
    }
}
