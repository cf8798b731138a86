//! Helpers shared by the Responses translation tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};

use super::request::responses_request;
use super::response::ResponsesContext;
use crate::providers::gemini::TranslateError;

pub(crate) const RESP_ID: &str = "resp_gw0123456789abcdef0123456789abcdef";

pub(crate) fn rcx(req: &Value) -> ResponsesContext {
    ResponsesContext::new(
        req,
        RESP_ID.to_owned(),
        "gemini-3-pro-preview".to_owned(),
        1_700_000_000,
    )
}

/// The Gemini body a request translates to.
pub(crate) fn body(req: &Value, history: &[Value], model: &str) -> Value {
    let t = responses_request(req, history, model)
        .unwrap_or_else(|e| panic!("{req} should translate: {e:?}"));
    serde_json::from_slice(&t.body).unwrap()
}

pub(crate) fn gbody(req: Value) -> Value {
    body(&req, &[], "gemini-2.5-flash")
}

pub(crate) fn rerr(req: Value) -> TranslateError {
    rerr_on(req, "gemini-2.5-flash")
}

pub(crate) fn rerr_on(req: Value, model: &str) -> TranslateError {
    match responses_request(&req, &[], model) {
        Err(e) => e,
        Ok(_) => panic!("expected a 400 for {req}"),
    }
}

pub(crate) fn input(items: Value) -> Value {
    json!({"model": "m", "input": items})
}

/// Client SSE → its events, checking the framing: each `event:` line names the event's
/// `type`, and `sequence_number` counts up from 0.
pub(crate) fn events_of(out: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(out).unwrap();
    assert!(
        s.is_empty() || s.ends_with("\n\n"),
        "events end in a blank line: {s}"
    );
    let mut events = Vec::new();
    for (n, frame) in s.split_terminator("\n\n").enumerate() {
        let (head, data) = frame.split_once('\n').unwrap();
        let kind = head.strip_prefix("event: ").unwrap();
        let ev: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(ev["type"], kind, "event line names the type: {frame}");
        assert_eq!(
            ev["sequence_number"], n,
            "sequence numbers rise from 0: {frame}"
        );
        events.push(ev);
    }
    events
}

pub(crate) fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}
