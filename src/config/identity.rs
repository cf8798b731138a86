//! `auth.jwt`, `auth.admin_key` and `auth.state_file` (SPEC §13): the file schema of caller
//! identity beyond the config-file keys, validated into the runtime model used by
//! [`crate::identity`].

use super::file::{describe, section, Fields, Problems};
use super::Secret;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

/// Caller identity settings beyond `auth.keys`. A reload applies `jwt` and `admin_key`; the
/// state file is opened once, at start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdentityConfig {
    pub jwt: Option<JwtConfig>,
    /// Protects `/admin`; without it `/admin` answers 404.
    pub admin_key: Option<Secret>,
    /// Where managed keys and spend live without Redis.
    pub state_file: Option<PathBuf>,
}

/// `auth.jwt`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtConfig {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway_s: u64,
    pub id_claim: String,
    pub jwks_url: Option<String>,
    /// Static verification keys: PEM public keys or JWK documents (public, so shown).
    #[serde(skip)]
    pub keys: Vec<String>,
    /// The only way to accept HS256: a shared secret named on purpose.
    pub hs256_secret: Option<Secret>,
    /// Background JWKS refresh interval.
    pub jwks_refresh_s: u64,
    /// At most one JWKS fetch per this many seconds for tokens with an unknown `kid`.
    pub jwks_min_refresh_s: u64,
    pub models_claim: String,
    pub rpm_claim: String,
    pub tpm_claim: String,
    pub budget_claim: String,
    /// Longer bearer values are refused before any decoding.
    pub max_token_bytes: usize,
    /// A private CA (PEM) trusted for an HTTPS `jwks_url`, beside the system's roots: an
    /// internal IdP's certificate is often signed by one.
    pub jwks_ca_file: Option<PathBuf>,
}

const JWT_FIELDS: &[&str] = &[
    "issuer",
    "audiences",
    "leeway_s",
    "id_claim",
    "jwks_url",
    "keys",
    "hs256_secret",
    "jwks_refresh_s",
    "jwks_min_refresh_s",
    "models_claim",
    "rpm_claim",
    "tpm_claim",
    "budget_claim",
    "max_token_bytes",
    "jwks_ca_file",
];

/// Reads the three identity fields of the `auth` mapping.
pub(super) fn identity(f: &Fields<'_>, p: &mut Problems) -> IdentityConfig {
    let jwt = jwt(f.raw("jwt"), p);
    let admin_key = f.secret("admin_key", p).map(Secret::new);
    if admin_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
        p.error(
            "auth.admin_key",
            "must be at least 16 characters (it guards every managed key)",
        );
    }
    IdentityConfig {
        jwt,
        admin_key,
        state_file: f.string("state_file", p).map(PathBuf::from),
    }
}

fn jwt(v: Option<&Value>, p: &mut Problems) -> Option<JwtConfig> {
    let m = section(v, "auth.jwt", JWT_FIELDS, p)?;
    let f = Fields::new(Some(m), "auth.jwt");
    let mut keys = Vec::new();
    match f.raw("keys") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("auth.jwt.keys[{i}]");
                let text = match item {
                    Value::String(s) => s.clone(),
                    Value::Object(_) => item.to_string(),
                    other => {
                        p.error(
                            &path,
                            format!(
                                "expected a PEM public key or a JWK, got {}",
                                describe(other)
                            ),
                        );
                        continue;
                    }
                };
                if let Err(e) = crate::identity::jwt::parse_static_key(&text) {
                    p.error(&path, e);
                }
                keys.push(text);
            }
        }
        Some(other) => p.error(
            "auth.jwt.keys",
            format!("expected a list, got {}", describe(other)),
        ),
    }
    let jwks_url = f.string("jwks_url", p);
    if let Some(url) = &jwks_url {
        if let Err(e) = crate::upstream::PeerAddress::parse(url) {
            p.error("auth.jwt.jwks_url", e);
        }
    }
    let jwks_ca_file = f.string("jwks_ca_file", p).map(PathBuf::from);
    if let Some(ca) = &jwks_ca_file {
        if let Err(e) = crate::upstream::pem_certificates(ca) {
            p.error("auth.jwt.jwks_ca_file", e);
        }
        if !jwks_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
        {
            p.error(
                "auth.jwt.jwks_ca_file",
                "only applies to an https:// jwks_url",
            );
        }
    }
    let hs256_secret = f.secret("hs256_secret", p).map(Secret::new);
    if hs256_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        p.error(
            "auth.jwt.hs256_secret",
            "must be at least 32 characters (HS256 with a short secret can be brute-forced)",
        );
    }
    if jwks_url.is_none() && keys.is_empty() && hs256_secret.is_none() {
        p.error(
            "auth.jwt",
            "needs jwks_url, keys or hs256_secret to verify tokens with",
        );
    }
    let audiences = f.string_list("audiences", p).unwrap_or_default();
    let name = |key: &str, default: &str, p: &mut Problems| {
        f.string(key, p).unwrap_or_else(|| default.to_string())
    };
    Some(JwtConfig {
        issuer: f.string("issuer", p),
        audiences,
        leeway_s: f.integer("leeway_s", "a number of seconds", 30, p),
        id_claim: name("id_claim", "sub", p),
        jwks_url,
        keys,
        hs256_secret,
        jwks_refresh_s: f
            .integer("jwks_refresh_s", "a number of seconds", 300, p)
            .max(1),
        jwks_min_refresh_s: f.integer("jwks_min_refresh_s", "a number of seconds", 10, p),
        models_claim: name("models_claim", "models", p),
        rpm_claim: name("rpm_claim", "rpm", p),
        tpm_claim: name("tpm_claim", "tpm", p),
        budget_claim: name("budget_claim", "budget", p),
        max_token_bytes: f.integer("max_token_bytes", "a number of bytes", 8192, p) as usize,
        jwks_ca_file,
    })
}
