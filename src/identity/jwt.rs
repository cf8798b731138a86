//! JWT bearer tokens as caller identity (SPEC §13): keys from a JWKS URL or the config,
//! signatures checked by `jsonwebtoken`, claims mapped to a [`CallerPolicy`].
//!
//! A verified token is remembered (by its SHA-256) until it expires, for at most
//! [`VERIFIED_TTL`], so a client sending the same token on every request pays one hash and
//! one map lookup, not an RSA or ECDSA verification each time.

use super::{Budget, CallerPolicy, Period};
use crate::config::identity::JwtConfig;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LOG_TARGET: &str = "gateway:auth";
/// A remembered verification is trusted this long at most, so a key withdrawn from the JWKS
/// stops admitting its tokens within this time even when they expire later.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
const CACHE_SHARDS: usize = 16;
/// Bound on remembered tokens per shard; a full shard is emptied (they verify again).
const CACHE_PER_SHARD: usize = 1024;
/// One JWKS fetch may take this long at most (connect, TLS, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Which check refused a token: the 401's message and the metric's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    AlgNone,
    AlgNotAllowed(String),
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim(String),
    BadClaim(String),
}

impl JwtError {
    /// A bounded label for `gateway_auth_decisions_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "jwt_too_large",
            JwtError::Malformed => "jwt_malformed",
            JwtError::AlgNone => "jwt_alg_none",
            JwtError::AlgNotAllowed(_) => "jwt_alg_not_allowed",
            JwtError::UnknownKey => "jwt_unknown_key",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::WrongIssuer => "jwt_wrong_issuer",
            JwtError::WrongAudience => "jwt_wrong_audience",
            JwtError::MissingClaim(_) => "jwt_missing_claim",
            JwtError::BadClaim(_) => "jwt_bad_claim",
        }
    }

    /// The client's message: which check failed, never the token.
    pub fn message(&self) -> String {
        match self {
            JwtError::TooLarge => "Invalid JWT: the token is too large.".into(),
            JwtError::Malformed => "Invalid JWT: the token is malformed.".into(),
            JwtError::AlgNone => "Invalid JWT: unsigned tokens (alg none) are not accepted.".into(),
            JwtError::AlgNotAllowed(alg) => {
                format!("Invalid JWT: the algorithm {alg} is not accepted for this key.")
            }
            JwtError::UnknownKey => {
                "Invalid JWT: signed with an unknown key (kid not in the key set).".into()
            }
            JwtError::BadSignature => "Invalid JWT: the signature does not verify.".into(),
            JwtError::Expired => "Invalid JWT: the token has expired (exp).".into(),
            JwtError::NotYetValid => "Invalid JWT: the token is not yet valid (nbf).".into(),
            JwtError::WrongIssuer => "Invalid JWT: wrong issuer (iss).".into(),
            JwtError::WrongAudience => "Invalid JWT: wrong audience (aud).".into(),
            JwtError::MissingClaim(c) => format!("Invalid JWT: the claim `{c}` is missing."),
            JwtError::BadClaim(c) => format!("Invalid JWT: the claim `{c}` has the wrong type."),
        }
    }
}

/// Whether a bearer value is shaped like a JWS compact token (`eyJ…`, three base64url
/// parts). Such a value is never a provider key (OpenAI and Gemini keys have other shapes).
pub fn looks_like_jwt(v: &[u8]) -> bool {
    v.starts_with(b"eyJ")
        && v.iter().filter(|&&c| c == b'.').count() == 2
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'='))
}

/// One verification key: its `kid` (None = tried for any token of its family), the
/// algorithms it accepts, and the key.
struct VerifyKey {
    kid: Option<String>,
    algs: &'static [Algorithm],
    /// The JWK's own `alg`, when it names one: then only that one.
    only: Option<Algorithm>,
    key: DecodingKey,
}

impl VerifyKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.only.map_or(self.algs.contains(&alg), |a| a == alg)
    }
}

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_ALGS: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const ED_ALGS: &[Algorithm] = &[Algorithm::EdDSA];
const HS_ALGS: &[Algorithm] = &[Algorithm::HS256];

/// A static key from the config: a PEM public key (RSA, EC or Ed25519) or a JWK document.
pub fn parse_static_key(text: &str) -> Result<(), String> {
    static_key(text).map(|_| ())
}

fn static_key(text: &str) -> Result<VerifyKey, String> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        let pem = t.as_bytes();
        let found = DecodingKey::from_rsa_pem(pem)
            .map(|k| (k, RSA_ALGS))
            .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, EC_ALGS)))
            .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, ED_ALGS)));
        return match found {
            Ok((key, algs)) => Ok(VerifyKey {
                kid: None,
                algs,
                only: None,
                key,
            }),
            Err(_) => Err("not an RSA, EC or Ed25519 public key in PEM".into()),
        };
    }
    let jwk: Jwk =
        serde_json::from_str(t).map_err(|_| "expected a PEM public key or a JWK".to_string())?;
    from_jwk(&jwk)
}

fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
    let algs = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS,
        AlgorithmParameters::EllipticCurve(_) => EC_ALGS,
        AlgorithmParameters::OctetKeyPair(_) => ED_ALGS,
        // A shared secret published in a key set would let anyone mint tokens.
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are not accepted: use hs256_secret".into())
        }
    };
    let only = jwk
        .common
        .key_algorithm
        .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "the JWK's key material is invalid")?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algs,
        only,
        key,
    })
}

/// The keys a token can be checked against.
#[derive(Default)]
struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.accepts(alg)
                && match (kid, k.kid.as_deref()) {
                    (Some(want), Some(have)) => want == have,
                    (_, None) => true,
                    (None, Some(_)) => true,
                }
        })
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A remembered successful verification.
struct Verified {
    caller: Arc<CallerPolicy>,
    /// Seconds since the epoch; `None` when the token carries no such claim.
    exp: Option<u64>,
    nbf: Option<u64>,
    until_ms: u64,
}

/// Remembered verifications by token SHA-256.
type Shard = Mutex<HashMap<[u8; 32], Verified>>;

/// Verifies tokens; owns the key set and its refresh state.
pub struct JwtVerifier {
    cfg: JwtConfig,
    /// Static keys and the HS256 secret: never replaced.
    fixed: KeySet,
    /// The JWKS's keys as last fetched successfully (empty before the first success).
    fetched: ArcSwap<KeySet>,
    /// Milliseconds since the epoch of the last fetch attempt (for the rate bound).
    last_fetch_ms: AtomicU64,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    cache: Box<[Shard]>,
    /// Trusted roots for the JWKS fetch with `jwks_ca_file`: the system's plus that file's.
    ca: Option<Arc<pingora::protocols::tls::CaType>>,
}

impl JwtVerifier {
    /// Builds the verifier; static keys were validated with the config, so a key that fails
    /// here is only logged. `Err` when `jwks_ca_file` does not load.
    pub fn new(cfg: &JwtConfig) -> Result<Self, String> {
        let mut fixed = KeySet::default();
        for text in &cfg.keys {
            match static_key(text) {
                Ok(k) => fixed.keys.push(k),
                Err(e) => log::warn!(target: LOG_TARGET, "auth.jwt.keys: {e}"),
            }
        }
        if let Some(secret) = &cfg.hs256_secret {
            fixed.keys.push(VerifyKey {
                kid: None,
                algs: HS_ALGS,
                only: None,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            });
        }
        let ca = cfg
            .jwks_ca_file
            .as_deref()
            .map(|path| {
                crate::upstream::load_roots(path).map_err(|e| format!("auth.jwt.jwks_ca_file: {e}"))
            })
            .transpose()?;
        Ok(Self {
            cfg: cfg.clone(),
            fixed,
            fetched: ArcSwap::from_pointee(KeySet::default()),
            last_fetch_ms: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            cache: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            ca,
        })
    }

    /// The settings this verifier was built from (a reload compares them).
    pub fn config(&self) -> &JwtConfig {
        &self.cfg
    }

    pub fn jwks_url(&self) -> Option<&str> {
        self.cfg.jwks_url.as_deref()
    }

    /// The background refresh is due: `jwks_refresh_s` since the last fetch attempt.
    pub fn refresh_due(&self) -> bool {
        let last = self.last_fetch_ms.load(Ordering::Acquire);
        self.cfg.jwks_url.is_some()
            && super::now_ms().saturating_sub(last)
                >= Duration::from_secs(self.cfg.jwks_refresh_s).as_millis() as u64
    }

    /// The caller a token names, verifying it unless it was verified recently.
    pub async fn verify(&self, token: &str) -> Result<Arc<CallerPolicy>, JwtError> {
        if token.len() > self.cfg.max_token_bytes {
            return Err(JwtError::TooLarge);
        }
        let digest = crate::auth::sha256(token.as_bytes());
        let now_ms = super::now_ms();
        if let Some(hit) = self.cached(&digest, now_ms)? {
            return Ok(hit);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        let kid = header.kid.as_deref();
        if let Some(kid) = kid {
            if self.jwks_url().is_some()
                && !self.fetched.load().has_kid(kid)
                && !self.fixed.has_kid(kid)
            {
                // A key the set does not know yet: the issuer may have rotated.
                self.refresh_if_due().await;
            }
        }
        let (claims, exp, nbf) = self.check(token, kid, header.alg)?;
        let caller = Arc::new(self.policy(&claims)?);
        let until_ms = now_ms.saturating_add(VERIFIED_TTL.as_millis() as u64);
        let until_ms = exp.map_or(until_ms, |e| {
            until_ms.min(e.saturating_add(self.cfg.leeway_s).saturating_mul(1000))
        });
        self.remember(
            digest,
            Verified {
                caller: caller.clone(),
                exp,
                nbf,
                until_ms,
            },
        );
        Ok(caller)
    }

    fn shard(&self, digest: &[u8; 32]) -> Option<&Shard> {
        self.cache.get(usize::from(digest[0]) % CACHE_SHARDS)
    }

    /// A remembered verification still in force; `Err` when the token has expired since.
    fn cached(
        &self,
        digest: &[u8; 32],
        now_ms: u64,
    ) -> Result<Option<Arc<CallerPolicy>>, JwtError> {
        let Some(shard) = self.shard(digest) else {
            return Ok(None);
        };
        let map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = map.get(digest) else {
            return Ok(None);
        };
        let now = now_ms / 1000;
        if v.exp
            .is_some_and(|e| e.saturating_add(self.cfg.leeway_s) < now)
        {
            return Err(JwtError::Expired);
        }
        if v.nbf
            .is_some_and(|n| n > now.saturating_add(self.cfg.leeway_s))
        {
            return Err(JwtError::NotYetValid);
        }
        if v.until_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(v.caller.clone()))
    }

    fn remember(&self, digest: [u8; 32], v: Verified) {
        if let Some(shard) = self.shard(&digest) {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= CACHE_PER_SHARD {
                map.clear();
            }
            map.insert(digest, v);
        }
    }

    /// Signature and registered claims, against every key that may have signed the token.
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Map<String, Value>, Option<u64>, Option<u64>), JwtError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.cfg.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.cfg.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        if self.cfg.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.cfg.audiences);
        }
        let fetched = self.fetched.load();
        let mut any_key = false;
        let mut last = JwtError::UnknownKey;
        for key in self
            .fixed
            .candidates(kid, alg)
            .chain(fetched.candidates(kid, alg))
        {
            any_key = true;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(Value::as_u64);
                    let nbf = data.claims.get("nbf").and_then(Value::as_u64);
                    return Ok((data.claims, exp, nbf));
                }
                Err(e) => {
                    last = map_error(e.kind());
                    // Only a signature that does not verify is worth trying the next key.
                    if last != JwtError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        if !any_key {
            let known_family = self
                .fixed
                .keys
                .iter()
                .chain(fetched.keys.iter())
                .any(|k| kid.is_none_or(|want| k.kid.as_deref().is_none_or(|h| h == want)));
            let kid_known = kid.is_some_and(|k| self.fixed.has_kid(k) || fetched.has_kid(k));
            return Err(if known_family && kid.is_none() || kid_known {
                JwtError::AlgNotAllowed(format!("{alg:?}"))
            } else {
                JwtError::UnknownKey
            });
        }
        Err(last)
    }

    /// The claims as a caller: `id_claim` and the optional limits.
    fn policy(&self, claims: &Map<String, Value>) -> Result<CallerPolicy, JwtError> {
        let c = &self.cfg;
        let id = match claims.get(&c.id_claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None => return Err(JwtError::MissingClaim(c.id_claim.clone())),
            Some(_) => return Err(JwtError::BadClaim(c.id_claim.clone())),
        };
        let models = match claims.get(&c.models_claim) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| JwtError::BadClaim(c.models_claim.clone()))?,
            ),
            Some(Value::String(s)) => Some(
                s.split([' ', ','])
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            Some(_) => return Err(JwtError::BadClaim(c.models_claim.clone())),
        };
        let number = |name: &str| -> Result<Option<u64>, JwtError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| JwtError::BadClaim(name.to_string())),
            }
        };
        let budget = match claims.get(&c.budget_claim) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                Budget::from_json(v).ok_or_else(|| JwtError::BadClaim(c.budget_claim.clone()))?,
            ),
        };
        Ok(CallerPolicy {
            id: format!("jwt:{id}"),
            models,
            rpm: number(&c.rpm_claim)?,
            tpm: number(&c.tpm_claim)?,
            budget,
        })
    }

    /// Fetches the JWKS unless one was fetched less than `jwks_min_refresh_s` ago.
    pub async fn refresh_if_due(&self) {
        let now = super::now_ms();
        let last = self.last_fetch_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < self.cfg.jwks_min_refresh_s.saturating_mul(1000) {
            return;
        }
        let seen = last;
        let _one = self.fetching.lock().await;
        if self.last_fetch_ms.load(Ordering::Acquire) != seen {
            // Another request fetched while this one waited.
            return;
        }
        let _ = self.refresh().await;
    }

    /// Fetches the JWKS now (no-op without `jwks_url`); on failure the keys fetched before
    /// stay in use and `Err` says why.
    pub async fn refresh(&self) -> Result<(), String> {
        let Some(url) = self.cfg.jwks_url.as_deref() else {
            return Ok(());
        };
        self.last_fetch_ms.store(super::now_ms(), Ordering::Release);
        let result =
            match super::http::get(url, self.ca.clone(), FETCH_TIMEOUT, MAX_JWKS_BYTES).await {
                Ok(body) => parse_jwks(&body),
                Err(e) => Err(e),
            };
        match result {
            Ok(set) => {
                log::debug!(target: LOG_TARGET, "JWKS fetched: {} keys", set.keys.len());
                self.fetched.store(Arc::new(set));
                super::metrics::jwks_fetch("ok");
                Ok(())
            }
            Err(e) => {
                let kept = self.fetched.load().keys.len();
                log::warn!(target: LOG_TARGET, "JWKS fetch failed ({e}); keeping the {kept} keys fetched before");
                super::metrics::jwks_fetch("error");
                Err(e)
            }
        }
    }
}

fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|_| "not a JWK set".to_string())?;
    let mut out = KeySet::default();
    for jwk in &set.keys {
        // Keys marked for encryption only are not signature keys.
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        match from_jwk(jwk) {
            Ok(k) => out.keys.push(k),
            Err(e) => log::debug!(target: LOG_TARGET, "JWKS key skipped: {e}"),
        }
    }
    Ok(out)
}

/// Why a header did not decode: `alg: none` is named, anything else is malformed.
fn header_error(token: &str) -> JwtError {
    use base64::Engine;
    let head = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(Value::as_str).map(str::to_string));
    match alg {
        Some(a) if a.eq_ignore_ascii_case("none") => JwtError::AlgNone,
        Some(a) if a.len() <= 16 && a.chars().all(|c| c.is_ascii_alphanumeric()) => {
            JwtError::AlgNotAllowed(a)
        }
        _ => JwtError::Malformed,
    }
}

fn map_error(kind: &jsonwebtoken::errors::ErrorKind) -> JwtError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature | K::Crypto(_) | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {
            JwtError::BadSignature
        }
        K::ExpiredSignature => JwtError::Expired,
        K::ImmatureSignature => JwtError::NotYetValid,
        K::InvalidIssuer => JwtError::WrongIssuer,
        K::InvalidAudience => JwtError::WrongAudience,
        K::MissingRequiredClaim(c) if c == "iss" => JwtError::WrongIssuer,
        K::MissingRequiredClaim(c) if c == "aud" => JwtError::WrongAudience,
        K::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            JwtError::AlgNotAllowed("this".into())
        }
        _ => JwtError::Malformed,
    }
}

impl Budget {
    /// A `budget` claim: a budget object, or a bare number (a monthly budget).
    pub fn from_json(v: &Value) -> Option<Budget> {
        match v {
            Value::Number(n) => Some(Budget {
                usd: n.as_f64().filter(|u| u.is_finite() && *u >= 0.0)?,
                period: Period::default(),
            }),
            other => Budget::from_object(other).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn jwt_shapes_are_told_from_provider_keys() {
        assert!(looks_like_jwt(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt(b"sk-proj-abc"));
        assert!(!looks_like_jwt(b"eyJ.only-one-dot"));
        assert!(!looks_like_jwt(b"eyJa.b.c d"));
    }

    #[test]
    fn alg_none_is_named() {
        // {"alg":"none","typ":"JWT"}
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert_eq!(header_error(t), JwtError::AlgNone);
        assert_eq!(header_error("garbage"), JwtError::Malformed);
    }

    #[test]
    fn budgets_read_from_claims() {
        let b = Budget::from_json(&serde_json::json!({"usd": 2.5, "period": "daily"})).unwrap();
        assert_eq!((b.usd, b.period), (2.5, Period::Daily));
        assert_eq!(
            Budget::from_json(&serde_json::json!(3)).unwrap().period,
            Period::Monthly
        );
        assert!(Budget::from_json(&serde_json::json!({"usd": -1})).is_none());
        assert!(Budget::from_json(&serde_json::json!({"usd": 1, "period": "hourly"})).is_none());
    }

    fn hs_verifier() -> JwtVerifier {
        JwtVerifier::new(&JwtConfig {
            issuer: Some("https://issuer.test".into()),
            audiences: vec!["gw".into()],
            leeway_s: 5,
            id_claim: "sub".into(),
            jwks_url: None,
            keys: vec![],
            hs256_secret: Some(crate::config::Secret::new(
                "0123456789abcdef0123456789abcdef",
            )),
            jwks_refresh_s: 300,
            jwks_min_refresh_s: 10,
            models_claim: "models".into(),
            rpm_claim: "rpm".into(),
            tpm_claim: "tpm".into(),
            budget_claim: "budget".into(),
            max_token_bytes: 8192,
            jwks_ca_file: None,
        })
        .unwrap()
    }

    fn mint(claims: Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn claims_are_checked_and_mapped() {
        let v = hs_verifier();
        let now = super::super::now_ms() / 1000;
        let ok = mint(
            serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "gw",
            "exp": now + 60, "models": ["gpt-4o-mini"], "rpm": 7, "budget": {"usd": 1, "period": "total"}}),
        );
        let c = v.verify(&ok).await.unwrap();
        assert_eq!(c.id, "jwt:alice");
        assert_eq!(c.models.as_deref(), Some(&["gpt-4o-mini".to_string()][..]));
        assert_eq!(c.rpm, Some(7));
        assert_eq!(c.budget.as_ref().unwrap().period, Period::Total);
        assert_eq!(
            v.verify(&ok).await.unwrap().id,
            "jwt:alice",
            "served from the cache"
        );
        let cases = [
            (
                serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "gw", "exp": now - 60}),
                JwtError::Expired,
            ),
            (
                serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "gw", "exp": now + 60, "nbf": now + 60}),
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"sub": "a", "iss": "https://other", "aud": "gw", "exp": now + 60}),
                JwtError::WrongIssuer,
            ),
            (
                serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "x", "exp": now + 60}),
                JwtError::WrongAudience,
            ),
            (
                serde_json::json!({"iss": "https://issuer.test", "aud": "gw", "exp": now + 60}),
                JwtError::MissingClaim("sub".into()),
            ),
            (
                serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "gw"}),
                JwtError::MissingClaim("exp".into()),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                v.verify(&mint(claims.clone())).await.unwrap_err(),
                want,
                "{claims}"
            );
        }
        let mut forged = ok.clone();
        forged.pop();
        forged.push(if ok.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(v.verify(&forged).await.unwrap_err(), JwtError::BadSignature);
        assert_eq!(
            v.verify(&"x".repeat(9000)).await.unwrap_err(),
            JwtError::TooLarge
        );
    }
}
