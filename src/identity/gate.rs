//! The proxy's door for SPEC §13 callers: a JWT (in `Authorization: Bearer` or the access-key
//! header) or a managed key (in the access-key header). `None` = neither was presented; the
//! config-file keys (SPEC §5) decide then.

use super::{metrics, Identity};
use crate::error::GatewayError;
use crate::logging::targets;
use crate::proxy::Ctx;
use pingora::proxy::Session;

/// Authenticates a JWT or managed-key caller into `ctx` (`key_id`, `caller`), or refuses it.
pub async fn identify(
    identity: &Identity,
    auth: &crate::config::AuthConfig,
    session: &Session,
    key_header: &str,
    ctx: &mut Ctx,
) -> Option<Result<(), GatewayError>> {
    let headers = &session.req_header().headers;
    let in_key_header = headers
        .get(key_header)
        .map(|v| crate::auth::trim_bearer(v.as_bytes()));
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| crate::auth::trim_bearer(v.as_bytes()));
    if let Some(verifier) = identity.jwt() {
        let token = [(in_key_header, false), (bearer, true)]
            .into_iter()
            .find_map(|(v, is_bearer)| {
                v.filter(|v| super::jwt::looks_like_jwt(v))
                    .map(|v| (v, is_bearer))
            });
        // A value too long for a token is still refused as one, before any decoding.
        if let Some((raw, is_bearer)) = token {
            ctx.bearer_is_identity = is_bearer;
            let token = std::str::from_utf8(raw).unwrap_or_default();
            return Some(match Box::pin(verifier.verify(token)).await {
                Ok(policy) => {
                    log::debug!(target: targets::AUTH, "request {} authenticated by JWT as {}", ctx.request_id, policy.id);
                    metrics::decision("ok", "jwt");
                    ctx.key_id = Some(policy.id.clone());
                    ctx.caller = Some(policy);
                    Ok(())
                }
                Err(e) => {
                    refused(session, ctx, e.reason(), raw);
                    Err(GatewayError::Unauthorized {
                        message: e.message(),
                    })
                }
            });
        }
    }
    // A managed key, in the access-key header.
    let presented = in_key_header.filter(|v| !v.is_empty())?;
    if !identity.managed() {
        return None;
    }
    let digest = crate::auth::sha256(presented);
    let Some(found) = identity.keys.find(&digest, super::now_ms() / 1000) else {
        if auth.keys.is_empty() {
            // With managed keys on, a key nobody knows (or one revoked) is refused, never
            // taken for "no key" the way a stray header is without any gateway keys.
            refused(session, ctx, "invalid", presented);
            return Some(Err(GatewayError::Unauthorized {
                message: format!("Invalid gateway API key in the {key_header} header."),
            }));
        }
        return None;
    };
    Some(match found {
        Ok(policy) => {
            log::debug!(target: targets::AUTH, "request {} authenticated as managed key {}", ctx.request_id, policy.id);
            metrics::decision("ok", "managed_key");
            ctx.key_id = Some(policy.id.clone());
            ctx.caller = Some(policy);
            Ok(())
        }
        Err(why) => {
            let (reason, message) = match why {
                super::keys::KeyRefusal::Expired => {
                    ("key_expired", "This gateway key has expired.")
                }
                super::keys::KeyRefusal::RotatedOut => (
                    "key_rotated",
                    "This gateway key was rotated and its grace period is over.",
                ),
            };
            refused(session, ctx, reason, presented);
            Err(GatewayError::Unauthorized {
                message: message.into(),
            })
        }
    })
}

/// Logs and counts a refusal: the client's address and a short hash of what it sent.
pub fn refused(session: &Session, ctx: &Ctx, reason: &str, presented: &[u8]) {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    log::warn!(target: targets::AUTH, "request {} refused: {reason} (credential sha256 prefix {}) from {ip}", ctx.request_id, crate::auth::key_fingerprint(presented));
    metrics::decision("refused", reason);
    if let Some(m) = crate::metrics::get() {
        m.auth_failures.with_label_values(&[reason]).inc();
    }
}
