//! OpenAI Responses clients on OpenAI models: forwarded natively (the body untouched but for
//! the resolved model name). A `previous_response_id` the gateway minted (the conversation so
//! far was answered by another provider) is not OpenAI's to resolve: the conversation is sent
//! as input items instead.

use super::native::{Ending, Same};
use super::{with_model, ClientApi, ClientRequest, Conversation, Translation, UpstreamRequest};
use crate::error::GatewayError;
use serde_json::{json, Map, Value};

pub struct ResponsesOpenAi;
pub static RESPONSES_OPENAI: ResponsesOpenAi = ResponsesOpenAi;

impl Translation for ResponsesOpenAi {
    fn request(
        &self,
        req: &ClientRequest<'_>,
        model: &str,
    ) -> Result<UpstreamRequest, GatewayError> {
        let stream = matches!(req.api, ClientApi::Responses { stream: true });
        let body = with_model(
            req,
            model,
            |obj| {
                if let Some(conv) = req.conversation {
                    continue_here(obj, conv);
                }
                if !req.referable.is_empty() {
                    resolve_references(obj, req.referable);
                }
            },
            req.conversation.is_some() || !req.referable.is_empty(),
        )?;
        Ok(UpstreamRequest {
            suffix: "/responses".into(),
            native_root: false,
            body,
            stream,
            answer: Box::new(Same {
                end: if stream {
                    Ending::Responses
                } else {
                    Ending::Kept
                },
            }),
        })
    }
}

/// Replaces `previous_response_id` by the conversation's items followed by the request's own
/// input. Reasoning items (another provider's thoughts, opaque to OpenAI) are left out, and
/// item ids dropped: OpenAI looks ids up in its own store and fails on ones it never saw.
fn continue_here(obj: &mut Map<String, Value>, conv: &Conversation) {
    obj.remove("previous_response_id");
    let own = match obj.remove("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let mut items: Vec<Value> = conv
        .items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) != Some("reasoning"))
        .cloned()
        .collect();
    items.extend(own);
    for item in &mut items {
        if let Some(o) = item.as_object_mut() {
            o.remove("id");
        }
    }
    obj.insert("input".into(), Value::Array(items));
}

/// Replaces `item_reference`s to items the gateway minted (OpenAI never saw them) by the
/// items themselves, without their ids; references to OpenAI's own items stay.
fn resolve_references(obj: &mut Map<String, Value>, referable: &[Value]) {
    let Some(Value::Array(items)) = obj.get_mut("input") else {
        return;
    };
    for item in items.iter_mut() {
        if item.get("type").and_then(Value::as_str) != Some("item_reference") {
            continue;
        }
        let id = item.get("id").and_then(Value::as_str);
        let Some(found) = referable
            .iter()
            .find(|r| id.is_some() && r.get("id").and_then(Value::as_str) == id)
        else {
            continue;
        };
        let mut found = found.clone();
        if let Some(o) = found.as_object_mut() {
            o.remove("id");
        }
        *item = found;
    }
    items.retain(|i| {
        i.get("type").and_then(Value::as_str) != Some("reasoning") || i.get("id").is_some()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_conversation_continues_on_openai_as_input_items() {
        let conv = Conversation {
            id: "resp_gw0".into(),
            items: vec![
                json!({"type":"message","id":"msg_1","role":"user","content":[{"type":"input_text","text":"hi"}]}),
                json!({"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"x"}),
                json!({"type":"message","id":"msg_2","role":"assistant","content":[{"type":"output_text","text":"hello","annotations":[]}]}),
            ],
            raw: bytes::Bytes::new(),
        };
        let mut obj = json!({"model":"m","previous_response_id":"resp_gw0","input":"again"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        continue_here(&mut obj, &conv);
        assert!(!obj.contains_key("previous_response_id"));
        let input = obj["input"].as_array().cloned().unwrap_or_default();
        assert_eq!(input.len(), 3);
        assert!(input.iter().all(|i| i.get("id").is_none()));
        assert_eq!(input[2], json!({"role":"user","content":"again"}));
        assert_eq!(input[1]["role"], "assistant");
    }
}
