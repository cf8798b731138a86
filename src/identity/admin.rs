//! `/admin/keys…` (SPEC §13): create, list, get (with spend), patch, rotate, revoke managed
//! keys. Only `Authorization: Bearer <auth.admin_key>` opens it (never a caller key or JWT);
//! without an admin key configured every `/admin` path is 404. Refusals are logged and
//! counted like other auth failures, and bad attempts are rate-limited per client address.

use super::keys::{self, KeyRecord, Previous, StoreError};
use super::{Budget, Identity, Period};
use crate::error::GatewayError;
use crate::proxy::respond::{read_body, send, send_json};
use crate::proxy::Ctx;
use crate::state::State;
use bytes::Bytes;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// Admin requests per minute per client address, and refused attempts per minute.
const ADMIN_RPM: u64 = 600;
const ADMIN_FAILURES_PER_MIN: u64 = 10;
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Handles a request whose path starts with `/admin`.
pub async fn handle(state: &State, session: &mut Session, ctx: &mut Ctx) {
    ctx.route = "admin";
    let result = serve(state, session, ctx).await;
    match result {
        Ok(()) => {}
        Err(e) => {
            session.set_keepalive(None);
            crate::proxy::respond::send_error(session, ctx, &e).await;
        }
    }
}

async fn serve(state: &State, session: &mut Session, ctx: &mut Ctx) -> Result<(), GatewayError> {
    let rt = state.runtime.load_full();
    let path = session.req_header().uri.path().to_string();
    let Some(admin_key) = state.identity.admin_key() else {
        return Err(GatewayError::NotFound { path });
    };
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let presented = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| crate::auth::trim_bearer(v.as_bytes()).to_vec())
        .unwrap_or_default();
    let ok = bool::from(
        crate::auth::sha256(&presented).ct_eq(&crate::auth::sha256(admin_key.expose().as_bytes())),
    );
    if !ok {
        super::gate::refused(session, ctx, "admin_key_invalid", &presented);
        let d = state
            .limiter
            .check_requests(&format!("admin-fail:{ip}"), ADMIN_FAILURES_PER_MIN)
            .await;
        if !d.allowed {
            return Err(GatewayError::RateLimited {
                retry_after_secs: d.retry_after_secs,
            });
        }
        return Err(GatewayError::AdminUnauthorized);
    }
    let d = state
        .limiter
        .check_requests(&format!("admin:{ip}"), ADMIN_RPM)
        .await;
    if !d.allowed {
        return Err(GatewayError::RateLimited {
            retry_after_secs: d.retry_after_secs,
        });
    }
    super::metrics::decision("ok", "admin");
    let method = session.req_header().method.as_str().to_string();
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let id = &state.identity;
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["admin", "keys"]) => {
            let body = read_body(session, MAX_ADMIN_BODY).await?;
            ctx.body_read = true;
            let (status, v) = create(id, &rt.config.auth.keys, &body).await?;
            reply(session, ctx, status, &v).await
        }
        ("GET", ["admin", "keys"]) => {
            let data: Vec<Value> = id.keys.list().iter().map(KeyRecord::view).collect();
            reply(session, ctx, 200, &json!({"object": "list", "data": data})).await
        }
        ("GET", ["admin", "keys", key_id]) => {
            let r = id
                .keys
                .get(key_id)
                .ok_or_else(|| GatewayError::KeyNotFound {
                    id: (*key_id).to_string(),
                })?;
            let v = with_spend(id, &r).await;
            reply(session, ctx, 200, &v).await
        }
        ("PATCH", ["admin", "keys", key_id]) => {
            let body = read_body(session, MAX_ADMIN_BODY).await?;
            ctx.body_read = true;
            let v = patch(id, key_id, &body).await?;
            reply(session, ctx, 200, &v).await
        }
        ("POST", ["admin", "keys", key_id, "rotate"]) => {
            let body = read_body(session, MAX_ADMIN_BODY).await?;
            ctx.body_read = true;
            let v = rotate(id, key_id, &body).await?;
            reply(session, ctx, 200, &v).await
        }
        ("DELETE", ["admin", "keys", key_id]) => {
            id.keys
                .delete(key_id)
                .await
                .map_err(|e| store_error(e, key_id))?;
            log::info!(target: "gateway:auth", "managed key {key_id} revoked");
            send(session, ctx, 204, "application/json", Bytes::new(), &[]).await;
            Ok(())
        }
        (_, ["admin", "keys"] | ["admin", "keys", _] | ["admin", "keys", _, "rotate"]) => {
            Err(GatewayError::MethodNotAllowed)
        }
        _ => Err(GatewayError::NotFound { path }),
    }
}

async fn reply(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    v: &Value,
) -> Result<(), GatewayError> {
    send_json(session, ctx, status, Bytes::from(v.to_string())).await;
    Ok(())
}

fn store_error(e: StoreError, id: &str) -> GatewayError {
    match e {
        StoreError::Exists => GatewayError::KeyExists { id: id.to_string() },
        StoreError::NotFound => GatewayError::KeyNotFound { id: id.to_string() },
        StoreError::Unavailable(why) => GatewayError::StoreUnavailable {
            message: format!(
                "The managed key store is unavailable ({why}); nothing was changed. Retry shortly."
            ),
        },
    }
}

/// `budget` as the admin API takes it (the same reading as `auth.keys[].budget`).
fn budget(v: &Value) -> Result<Budget, GatewayError> {
    Budget::from_object(v).map_err(|(field, problem)| {
        let param = if field.is_empty() {
            "budget".to_string()
        } else {
            format!("budget.{field}")
        };
        bad(&format!("{param} {problem}"), &param)
    })
}

fn bad(message: &str, param: &str) -> GatewayError {
    GatewayError::BadRequest {
        message: message.to_string(),
        param: Some(param.to_string()),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| GatewayError::BadRequest {
        message: format!("Invalid request body: {e}"),
        param: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIn {
    id: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    rate_limit_rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
    #[serde(default)]
    budget: Option<Value>,
    #[serde(default)]
    expires_at: Option<Value>,
}

/// `expires_at`: unix seconds or an RFC 3339 time.
fn expiry(v: Option<Value>) -> Result<Option<u64>, GatewayError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            bad(
                "expires_at must be unix seconds or an RFC 3339 time",
                "expires_at",
            )
        }),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "expires_at must be unix seconds or an RFC 3339 time",
                    "expires_at",
                )
            }),
        Some(_) => Err(bad(
            "expires_at must be unix seconds or an RFC 3339 time",
            "expires_at",
        )),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with("jwt:")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn create(
    id: &Identity,
    config_keys: &[crate::config::AccessKey],
    body: &[u8],
) -> Result<(u16, Value), GatewayError> {
    let input: CreateIn = parse(body)?;
    if !valid_id(&input.id) {
        return Err(bad(
            "id must be 1-64 characters of letters, digits, '-', '_' or '.'",
            "id",
        ));
    }
    // One id, one caller: a config-file key's rate limits and spend are counted under its id.
    if config_keys.iter().any(|k| k.id == input.id) {
        return Err(GatewayError::KeyExists { id: input.id });
    }
    let secret = keys::new_secret().map_err(|e| GatewayError::UpstreamFailed { message: e })?;
    let record = KeyRecord {
        id: input.id.clone(),
        models: input.models,
        rate_limit_rpm: input.rate_limit_rpm,
        tpm: input.tpm,
        budget: match &input.budget {
            None | Some(Value::Null) => None,
            Some(v) => Some(budget(v)?),
        },
        expires_at: expiry(input.expires_at)?,
        created_at: super::now_ms() / 1000,
        sha256: hex::encode(crate::auth::sha256(secret.as_bytes())),
        key_prefix: secret.chars().take(10).collect(),
        previous: None,
    };
    id.keys
        .put(record.clone(), true)
        .await
        .map_err(|e| store_error(e, &input.id))?;
    log::info!(target: "gateway:auth", "managed key {} created", record.id);
    let mut v = record.view();
    v["key"] = Value::String(secret);
    Ok((201, v))
}

async fn with_spend(id: &Identity, r: &KeyRecord) -> Value {
    let period = r.budget.map_or(Period::Total, |b| b.period);
    let (spent, total) = id.budgets.spent(&r.id, period).await;
    let mut v = r.view();
    v["spend_usd"] = json!(spent);
    v["spend_total_usd"] = json!(total);
    v["budget_remaining_usd"] = match r.budget {
        Some(b) => json!((b.usd - spent).max(0.0)),
        None => Value::Null,
    };
    v
}

async fn patch(id: &Identity, key_id: &str, body: &[u8]) -> Result<Value, GatewayError> {
    let fields: serde_json::Map<String, Value> = parse(body)?;
    let mut r = id
        .keys
        .get(key_id)
        .ok_or_else(|| GatewayError::KeyNotFound {
            id: key_id.to_string(),
        })?;
    for (k, v) in fields {
        match k.as_str() {
            "models" => {
                r.models = serde_json::from_value(v)
                    .map_err(|_| bad("models must be a list of model names or null", "models"))?
            }
            "rate_limit_rpm" => {
                r.rate_limit_rpm = serde_json::from_value(v).map_err(|_| {
                    bad(
                        "rate_limit_rpm must be a non-negative integer or null",
                        "rate_limit_rpm",
                    )
                })?
            }
            "tpm" => {
                r.tpm = serde_json::from_value(v)
                    .map_err(|_| bad("tpm must be a non-negative integer or null", "tpm"))?
            }
            "budget" => {
                r.budget = match v {
                    Value::Null => None,
                    other => Some(budget(&other)?),
                }
            }
            "expires_at" => r.expires_at = expiry(Some(v))?,
            "id" => return Err(bad("id cannot be changed", "id")),
            other => {
                return Err(bad(&format!("unknown field `{other}`"), other));
            }
        }
    }
    id.keys
        .put(r.clone(), false)
        .await
        .map_err(|e| store_error(e, key_id))?;
    log::info!(target: "gateway:auth", "managed key {key_id} updated");
    Ok(with_spend(id, &r).await)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateIn {
    #[serde(default)]
    grace_seconds: u64,
}

async fn rotate(id: &Identity, key_id: &str, body: &[u8]) -> Result<Value, GatewayError> {
    let input: RotateIn = if body.iter().all(u8::is_ascii_whitespace) {
        RotateIn::default()
    } else {
        parse(body)?
    };
    let mut r = id
        .keys
        .get(key_id)
        .ok_or_else(|| GatewayError::KeyNotFound {
            id: key_id.to_string(),
        })?;
    let secret = keys::new_secret().map_err(|e| GatewayError::UpstreamFailed { message: e })?;
    let now = super::now_ms() / 1000;
    r.previous = (input.grace_seconds > 0).then(|| Previous {
        sha256: r.sha256.clone(),
        valid_until: now.saturating_add(input.grace_seconds),
    });
    r.sha256 = hex::encode(crate::auth::sha256(secret.as_bytes()));
    r.key_prefix = secret.chars().take(10).collect();
    id.keys
        .put(r.clone(), false)
        .await
        .map_err(|e| store_error(e, key_id))?;
    log::info!(target: "gateway:auth", "managed key {key_id} rotated (old secret valid {} s more)", input.grace_seconds);
    let mut v = r.view();
    v["key"] = Value::String(secret);
    Ok(v)
}
