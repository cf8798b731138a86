//! The Responses API's conversation state at the proxy's edge (SPEC §11): who owns a stored
//! response, continuing one (`previous_response_id`), keeping a translated answer, and the
//! `GET`/`DELETE` routes on a response the gateway minted. Ids the gateway did not mint are
//! OpenAI's and never reach this module.

use super::respond::send_json;
use super::Ctx;
use crate::auth::{self, ClientKeys};
use crate::config::ProviderKind;
use crate::conversations::{self, Tenant};
use crate::error::GatewayError;
use crate::routes::StoredAction;
use crate::routing::Candidate;
use crate::state::State;
use crate::translate::Conversation;
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Value};

pub use conversations::{is_minted, mint_id};

/// Whose conversations these are: the gateway access key's id (`key:<id>`), else the
/// client's provider key (`client:<SHA-256 hex>`), else the gateway's own callers as one
/// tenant (`gateway`). Computed from the request alone, so that a `GET` without a model finds
/// what a `POST` stored.
pub fn tenant(ctx: &Ctx, keys: &ClientKeys) -> Tenant {
    /// The same for every request: hashed once.
    static GATEWAY: std::sync::LazyLock<Tenant> =
        std::sync::LazyLock::new(|| Tenant::named(&[b"gateway"]));
    if let Some(id) = &ctx.key_id {
        return Tenant::named(&[b"key:", id.as_bytes()]);
    }
    match [&keys.bearer, &keys.openai, &keys.gemini]
        .into_iter()
        .find_map(|k| k.as_deref())
    {
        Some(k) => {
            let hash = hex::encode(auth::sha256(k.as_bytes()));
            Tenant::named(&[b"client:", hash.as_bytes()])
        }
        None => *GATEWAY,
    }
}

/// The conversation a `previous_response_id` continues, and the candidates that can
/// continue it: any model for a response the gateway minted, only OpenAI's for OpenAI's own
/// ids (OpenAI holds that state). `Err` is OpenAI's own answer for an id it cannot continue.
pub async fn continuation(
    state: &State,
    tenant: &Tenant,
    previous: &str,
    candidates: &mut Vec<Candidate>,
) -> Result<Option<Conversation>, GatewayError> {
    let not_found = || GatewayError::PreviousResponseNotFound {
        id: previous.to_string(),
    };
    if !conversations::is_minted(previous) {
        candidates.retain(|c| c.provider == ProviderKind::OpenAi);
        return if candidates.is_empty() {
            Err(not_found())
        } else {
            Ok(None)
        };
    }
    let stored = state
        .conversations
        .get(tenant, previous)
        .await
        .ok_or_else(not_found)?;
    let items: Vec<Value> = serde_json::from_slice(&stored.context).map_err(|_| not_found())?;
    Ok(Some(Conversation {
        id: stored.id,
        items,
        raw: stored.context,
    }))
}

/// The output items of this caller's stored responses that the request's `item_reference`s
/// name (clients replay answered items as bare references while `store` is on). At most 16
/// responses are read; another tenant's are unknown.
pub async fn referable(
    state: &State,
    tenant: &Tenant,
    body: &[u8],
    req: Option<&Value>,
) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(req) = req.filter(|_| ITEM_REFERENCE.find(body).is_some()) else {
        return out;
    };
    let ids = crate::providers::gemini::responses::referenced_responses(req);
    for id in ids
        .iter()
        .filter(|id| conversations::is_minted(id))
        .take(16)
    {
        let Some(stored) = state.conversations.get(tenant, id).await else {
            continue;
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&stored.response) {
            if let Some(items) = v.get("output").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
        }
    }
    out
}

/// Built once: `memmem::find` builds its searcher on every call.
pub static ITEM_REFERENCE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"item_reference"));

/// Keeps a translated answer the gateway minted: the response as the client got it, the
/// request's input items (a JSON array) and the conversation so far for the next turn. The
/// context is spliced from JSON already written (the stored context, the input items, the
/// answer's `output`), never parsed back into values, and all of it is copied once, into the
/// entry. `written` is the id the gateway minted and where the `output` array is, when the
/// translation wrote this very body (a streamed answer's is found by reading the body).
pub async fn keep(
    state: &State,
    tenant: &Tenant,
    conversation: Option<&Conversation>,
    input_items: &[u8],
    response: &[u8],
    written: Option<(&str, std::ops::Range<usize>)>,
) {
    #[derive(serde::Deserialize)]
    struct Answered<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        output: Option<&'a serde_json::value::RawValue>,
    }
    let (id, output) = match written.and_then(|(id, span)| Some((id, response.get(span)?))) {
        Some((id, output)) => (std::borrow::Cow::Borrowed(id), output),
        None => {
            let Ok(answered) = serde_json::from_slice::<Answered<'_>>(response) else {
                return;
            };
            let output = answered.output.map_or("", |o| o.get()).as_bytes();
            (answered.id, output)
        }
    };
    if !conversations::is_minted(&id) {
        return;
    }
    let previous = conversation.map_or(&b""[..], |c| &c.raw);
    state
        .conversations
        .keep(
            tenant,
            &id,
            response,
            input_items,
            &[previous, input_items, output],
        )
        .await;
}

/// `GET`/`DELETE /v1/responses/{id}` and `GET …/input_items` for an id the gateway minted.
pub async fn serve_stored(
    state: &State,
    session: &mut Session,
    ctx: &mut Ctx,
    tenant: &Tenant,
    id: &str,
    action: StoredAction,
) -> Result<(), GatewayError> {
    let not_found = || GatewayError::ResponseNotFound { id: id.to_string() };
    match action {
        StoredAction::Delete => {
            if !state.conversations.delete(tenant, id).await {
                return Err(not_found());
            }
            let body = json!({"id": id, "object": "response", "deleted": true});
            send_json(session, ctx, 200, Bytes::from(body.to_string())).await;
        }
        StoredAction::Retrieve => {
            let stored = state
                .conversations
                .get(tenant, id)
                .await
                .ok_or_else(not_found)?;
            send_json(session, ctx, 200, stored.response).await;
        }
        StoredAction::InputItems => {
            let stored = state
                .conversations
                .get(tenant, id)
                .await
                .ok_or_else(not_found)?;
            let items: Vec<Value> = serde_json::from_slice(&stored.input_items).unwrap_or_default();
            let query = session.req_header().uri.query().unwrap_or_default();
            let page = ListQuery::parse(query)?;
            let body = page.list(items);
            send_json(session, ctx, 200, Bytes::from(body.to_string())).await;
        }
    }
    Ok(())
}

/// `order`, `limit` and `after` of a list request, as OpenAI reads them.
#[derive(Debug, PartialEq)]
struct ListQuery {
    ascending: bool,
    limit: usize,
    after: Option<String>,
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, GatewayError> {
        let mut q = ListQuery {
            ascending: false,
            limit: 20,
            after: None,
        };
        let bad = |param: &str, message: &str| GatewayError::BadRequest {
            message: message.to_string(),
            param: Some(param.to_string()),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "order" => {
                    q.ascending = match v {
                        "asc" => true,
                        "desc" => false,
                        _ => return Err(bad("order", "order must be 'asc' or 'desc'.")),
                    }
                }
                "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| {
                            bad("limit", "limit must be an integer between 1 and 100.")
                        })?
                }
                "after" => q.after = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(q)
    }

    /// One page of `items` (oldest first as stored) as OpenAI's list object.
    fn list(&self, mut items: Vec<Value>) -> Value {
        if !self.ascending {
            items.reverse();
        }
        let start = match &self.after {
            Some(after) => items
                .iter()
                .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
                .map_or(items.len(), |p| p + 1),
            None => 0,
        };
        let rest = items.len().saturating_sub(start);
        let page: Vec<Value> = items.into_iter().skip(start).take(self.limit).collect();
        let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned();
        json!({
            "object": "list",
            "data": page,
            "first_id": id_of(page.first()),
            "last_id": id_of(page.last()),
            "has_more": rest > self.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("msg_{i}")})).collect()
    }

    #[test]
    fn input_items_are_listed_newest_first_by_default_in_pages() {
        let q = ListQuery::parse("limit=2").unwrap_or_else(|_| unreachable!());
        let v = q.list(items(3));
        assert_eq!(v["first_id"], "msg_2");
        assert_eq!(v["last_id"], "msg_1");
        assert_eq!(v["has_more"], true);
        let q = ListQuery::parse("order=asc&after=msg_0").unwrap_or_else(|_| unreachable!());
        let v = q.list(items(3));
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["first_id"], "msg_1");
        assert_eq!(v["has_more"], false);
    }

    #[test]
    fn bad_list_parameters_are_named() {
        let e = ListQuery::parse("limit=0").err();
        assert!(matches!(e, Some(GatewayError::BadRequest { param: Some(p), .. }) if p == "limit"));
        assert!(ListQuery::parse("order=up").is_err());
    }
}
