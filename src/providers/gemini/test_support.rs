//! Helpers shared by the translation tests of this folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};

use super::error::TranslateError;
use super::request::chat_request;
use super::response::ResponseContext;

pub(crate) fn v(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

pub(crate) fn req(openai: &Value, model: &str) -> Value {
    serde_json::from_slice(&chat_request(openai, model).unwrap().body).unwrap()
}

pub(crate) fn err(openai: Value) -> TranslateError {
    match chat_request(&openai, "gemini-2.5-flash") {
        Err(e) => e,
        Ok(_) => panic!("expected an error for {openai}"),
    }
}

pub(crate) fn ctx() -> ResponseContext {
    ResponseContext {
        id: "chatcmpl-1".into(),
        model: "gemini-2.5-flash".into(),
        created: 1_700_000_000,
        parallel_tool_calls: true,
    }
}

pub(crate) fn msgs(messages: Value) -> Value {
    json!({ "model": "m", "messages": messages })
}

/// Gemini frames events with CRLF.
pub(crate) fn sse_of(events: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in v(events).as_array().unwrap() {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(e.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
    out
}
