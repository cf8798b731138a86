//! Errors in Google's shape, `{"error":{"code","message","status"}}`: OpenAI's upstream
//! errors and the gateway's own, for clients of the native routes.

use super::wire::{GoogleErrorBody, GoogleErrorOut, OpenAiErrorIn};

/// Google's canonical status string for an HTTP status (google.rpc.Code as the REST API
/// reports it).
pub fn google_status(http: u16) -> &'static str {
    match http {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        402..=498 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// `message` under `http` in Google's shape.
pub fn google_error(http: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&GoogleErrorOut {
        error: GoogleErrorBody {
            code: http,
            message,
            status: google_status(http),
        },
    })
    .unwrap_or_default()
}

/// An OpenAI error body (or any other bytes) → Google's shape with the same status; the
/// message is OpenAI's, or the body's text when it is not OpenAI's JSON.
pub fn openai_error_to_google(http: u16, body: &[u8]) -> Vec<u8> {
    let parsed = serde_json::from_slice::<OpenAiErrorIn>(body).ok();
    let message = parsed.as_ref().and_then(|e| e.error.message.as_ref());
    match message {
        Some(m) => google_error(http, &m.0),
        None => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
            let text = text.trim();
            google_error(
                http,
                if text.is_empty() {
                    "upstream error"
                } else {
                    text
                },
            )
        }
    }
}
