//! Who is calling (gateway access keys) and which provider key reaches the upstream
//! (SPEC §5). Pure functions over header values, unit-tested without a socket.

use crate::config::{AccessKey, AuthConfig, AuthMode, ProviderKind, Secret};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A short, non-reversible name for a key that has no id (logs, cache scopes).
pub fn key_fingerprint(key: &[u8]) -> String {
    hex::encode(&sha256(key)[..6])
}

/// The result of checking the gateway access-key header.
#[derive(Debug, Clone)]
pub enum Caller<'a> {
    /// No key presented and none required.
    Anonymous,
    /// A configured key matched.
    Key(&'a AccessKey),
}

/// Why access was refused; the fingerprint lets operators correlate without the key.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessDenied {
    Missing,
    Invalid { fingerprint: String },
}

/// Checks the presented gateway key against every configured key in constant time
/// (all digests are compared, whatever matches first).
pub fn check_access<'a>(
    auth: &'a AuthConfig,
    presented: Option<&[u8]>,
) -> Result<Caller<'a>, AccessDenied> {
    let presented = presented.map(trim_bearer).filter(|k| !k.is_empty());
    let Some(presented) = presented else {
        return if auth.require_auth_header {
            Err(AccessDenied::Missing)
        } else {
            Ok(Caller::Anonymous)
        };
    };
    // With no gateway keys configured the header means nothing here (another tool's key,
    // say): it is ignored rather than refused.
    if auth.keys.is_empty() && !auth.require_auth_header {
        return Ok(Caller::Anonymous);
    }
    let digest = sha256(presented);
    let mut found: Option<&AccessKey> = None;
    for key in &auth.keys {
        if bool::from(key.sha256.ct_eq(&digest)) {
            found = Some(key);
        }
    }
    match found {
        Some(key) => Ok(Caller::Key(key)),
        None => Err(AccessDenied::Invalid {
            fingerprint: hex::encode(&digest[..6]),
        }),
    }
}

/// The value after `Bearer ` (any case), or the value itself.
pub fn trim_bearer(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
        v[7..].trim_ascii()
    } else {
        v
    }
}

/// Provider keys a client sent with its request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientKeys {
    /// `Authorization: Bearer …`: meant for the provider of the requested model.
    pub bearer: Option<String>,
    /// `x-openai-api-key`.
    pub openai: Option<String>,
    /// `x-goog-api-key` or `?key=`.
    pub gemini: Option<String>,
}

impl ClientKeys {
    /// Reads the client's provider keys. When the gateway's own access-key header is
    /// `Authorization`, the bearer is the gateway key, not a provider key.
    pub fn from_headers(
        authorization: Option<&[u8]>,
        openai: Option<&[u8]>,
        goog: Option<&[u8]>,
        query_key: Option<&str>,
        access_header_is_authorization: bool,
    ) -> Self {
        let text = |v: Option<&[u8]>| {
            v.and_then(|b| std::str::from_utf8(b).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let bearer = if access_header_is_authorization {
            None
        } else {
            text(authorization.map(trim_bearer))
        };
        ClientKeys {
            bearer,
            openai: text(openai),
            gemini: text(goog).or_else(|| query_key.map(str::to_string).filter(|s| !s.is_empty())),
        }
    }

    /// The client's key for `provider`. The bearer counts only when the request names a single
    /// provider (`bearer_applies`): a key for one provider must never be sent to another one
    /// during a virtual model's failover.
    pub fn for_provider(&self, provider: ProviderKind, bearer_applies: bool) -> Option<&str> {
        let specific = match provider {
            ProviderKind::OpenAi => self.openai.as_deref(),
            ProviderKind::Gemini => self.gemini.as_deref(),
        };
        specific.or(if bearer_applies {
            self.bearer.as_deref()
        } else {
            None
        })
    }
}

/// Where the key sent upstream came from (logged, never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamKey {
    Client(Secret),
    Gateway(Secret),
}

impl UpstreamKey {
    pub fn secret(&self) -> &Secret {
        match self {
            UpstreamKey::Client(s) | UpstreamKey::Gateway(s) => s,
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            UpstreamKey::Client(_) => "client",
            UpstreamKey::Gateway(_) => "gateway",
        }
    }
}

/// Chooses the upstream key by auth mode: `gateway` ignores client keys, `client` uses only
/// them, `hybrid` prefers the client's and falls back to the gateway's.
pub fn upstream_key(
    auth: &AuthConfig,
    client: Option<&str>,
    gateway: Option<&Secret>,
) -> Option<UpstreamKey> {
    let client = client.filter(|_| auth.allow_client_keys || auth.mode == AuthMode::Client);
    match auth.mode {
        AuthMode::Gateway => gateway.cloned().map(UpstreamKey::Gateway),
        AuthMode::Client => client.map(|k| UpstreamKey::Client(Secret::new(k))),
        AuthMode::Hybrid => client
            .map(|k| UpstreamKey::Client(Secret::new(k)))
            .or_else(|| gateway.cloned().map(UpstreamKey::Gateway)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn auth(mode: AuthMode, require: bool) -> AuthConfig {
        AuthConfig {
            mode,
            allow_client_keys: true,
            require_auth_header: require,
            keys: vec![
                AccessKey {
                    id: "team-a".into(),
                    sha256: sha256(b"ka"),
                    rate_limit_rpm: None,
                    tpm: None,
                    budget: None,
                    policy: None,
                },
                AccessKey {
                    id: "team-b".into(),
                    sha256: sha256(b"kb"),
                    rate_limit_rpm: None,
                    tpm: None,
                    budget: None,
                    policy: None,
                },
            ],
            identity: Default::default(),
        }
    }

    #[test]
    fn access_keys_match_by_digest() {
        let a = auth(AuthMode::Hybrid, true);
        assert!(matches!(check_access(&a, Some(b"kb")), Ok(Caller::Key(k)) if k.id == "team-b"));
        assert!(
            matches!(check_access(&a, Some(b"Bearer ka")), Ok(Caller::Key(k)) if k.id == "team-a")
        );
        assert!(matches!(check_access(&a, None), Err(AccessDenied::Missing)));
        assert!(matches!(
            check_access(&a, Some(b"nope")),
            Err(AccessDenied::Invalid { .. })
        ));
        let mut none = auth(AuthMode::Hybrid, false);
        none.keys.clear();
        assert!(
            matches!(
                check_access(&none, Some(b"anything")),
                Ok(Caller::Anonymous)
            ),
            "no keys configured: the header is ignored"
        );
        let open = auth(AuthMode::Hybrid, false);
        assert!(matches!(check_access(&open, None), Ok(Caller::Anonymous)));
        assert!(
            matches!(
                check_access(&open, Some(b"wrong")),
                Err(AccessDenied::Invalid { .. })
            ),
            "a wrong key is refused even when keys are optional"
        );
    }

    #[test]
    fn modes_choose_the_upstream_key() {
        let gw = Secret::new("gw");
        let pick = |mode, client: Option<&str>| upstream_key(&auth(mode, false), client, Some(&gw));
        assert_eq!(
            pick(AuthMode::Gateway, Some("c")),
            Some(UpstreamKey::Gateway(gw.clone()))
        );
        assert_eq!(
            pick(AuthMode::Client, Some("c")),
            Some(UpstreamKey::Client(Secret::new("c")))
        );
        assert_eq!(pick(AuthMode::Client, None), None);
        assert_eq!(
            pick(AuthMode::Hybrid, Some("c")),
            Some(UpstreamKey::Client(Secret::new("c")))
        );
        assert_eq!(
            pick(AuthMode::Hybrid, None),
            Some(UpstreamKey::Gateway(gw.clone()))
        );
        let mut no_client = auth(AuthMode::Hybrid, false);
        no_client.allow_client_keys = false;
        assert_eq!(
            upstream_key(&no_client, Some("c"), Some(&gw)),
            Some(UpstreamKey::Gateway(gw))
        );
    }

    #[test]
    fn the_bearer_never_crosses_providers() {
        let keys = ClientKeys::from_headers(Some(b"Bearer sk-o"), None, Some(b"g"), None, false);
        assert_eq!(keys.for_provider(ProviderKind::OpenAi, true), Some("sk-o"));
        assert_eq!(keys.for_provider(ProviderKind::OpenAi, false), None);
        assert_eq!(keys.for_provider(ProviderKind::Gemini, false), Some("g"));
        let q = ClientKeys::from_headers(None, Some(b"x"), None, Some("qk"), false);
        assert_eq!(
            (q.openai.as_deref(), q.gemini.as_deref()),
            (Some("x"), Some("qk"))
        );
        let gwh = ClientKeys::from_headers(Some(b"Bearer gwkey"), None, None, None, true);
        assert_eq!(gwh.bearer, None);
    }
}
