//! Caller identity beyond the config-file keys (SPEC §13): JWT bearer tokens ([`jwt`]),
//! keys managed at run time through `/admin` ([`keys`], [`admin`]) and USD budgets
//! ([`budget`]). Everything that talks to Redis for these goes through [`redis_store`].
//!
//! Whoever the caller is, the proxy sees one [`CallerPolicy`]: an id for logs, metrics,
//! cache scope and limits, and the optional model list, rpm, tpm and budget.

pub mod admin;
pub mod budget;
pub mod gate;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod redis_store;

use crate::config::{Config, Secret};
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a caller may do, whichever way it proved who it is.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerPolicy {
    /// `jwt:<id_claim>` for tokens, the key's id for keys.
    pub id: String,
    /// Models it may call (as requested, e.g. `gpt-4o-mini` or a virtual model); None = all.
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget: Option<Budget>,
}

impl CallerPolicy {
    /// Whether `model` (as the client wrote it) may be called.
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// A spend limit in USD for one period.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub usd: f64,
    pub period: Period,
}

impl Budget {
    /// The one reading of `{"usd": n, "period"?: "daily"|"monthly"|"total"}` (period
    /// monthly when left out), for the admin API, `auth.keys[].budget` and JWT claims alike.
    /// `Err((field, problem))`: `field` is `""` (the budget itself), `"usd"` or `"period"`.
    pub fn from_object(v: &serde_json::Value) -> Result<Budget, (&'static str, String)> {
        use serde_json::Value;
        let Value::Object(m) = v else {
            return Err((
                "",
                "expected {\"usd\": <number>, \"period\": \"daily\"|\"monthly\"|\"total\"}".into(),
            ));
        };
        if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "usd" | "period")) {
            return Err(("", format!("unknown field `{k}` (expected usd, period)")));
        }
        let usd = match m.get("usd") {
            None | Some(Value::Null) => return Err(("usd", "is required".into())),
            Some(v) => v
                .as_f64()
                .filter(|u| u.is_finite() && *u >= 0.0)
                .ok_or(("usd", "must be a non-negative number".to_string()))?,
        };
        let period = match m.get("period") {
            None | Some(Value::Null) => Period::default(),
            Some(p) => p
                .as_str()
                .and_then(Period::parse)
                .ok_or(("period", "must be daily, monthly or total".to_string()))?,
        };
        Ok(Budget { usd, period })
    }
}

/// Budget periods: calendar day and month in UTC, or the key's whole life.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    /// A budget that names no period.
    #[default]
    Monthly,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "monthly" => Some(Period::Monthly),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
            Period::Total => "total",
        }
    }
}

/// The identity services of one gateway process. The key store and budgets are built once
/// (they hold state); the JWT verifier and the admin key are swapped by a SIGHUP reload.
pub struct Identity {
    jwt: ArcSwapOption<jwt::JwtVerifier>,
    /// `auth.admin_key`: opens `/admin`, and while set managed keys are honoured.
    admin_key: ArcSwapOption<Secret>,
    /// Managed keys can be kept: Redis or the state file, as opened at start.
    storage: bool,
    state_file: Option<PathBuf>,
    pub keys: keys::KeyStore,
    pub budgets: budget::Budgets,
    redis: Option<Arc<redis_store::IdentityRedis>>,
}

impl Identity {
    /// The Redis user of managed keys and budgets, moved with the others on SIGHUP.
    pub fn redis_user(&self) -> Option<&crate::redis_link::RedisUser> {
        self.redis.as_deref().map(redis_store::IdentityRedis::user)
    }

    /// Builds from the (validated) config; `Err` when the state file exists but cannot be
    /// read (a corrupt file is a start-up error, never an empty key set) or the JWKS CA file
    /// does not load.
    pub fn new(config: &Config) -> Result<Arc<Identity>, String> {
        let id = &config.auth.identity;
        let target = crate::redis_link::RedisTarget::from_cache(&config.cache);
        let redis = redis_store::IdentityRedis::new(target.as_ref()).map(Arc::new);
        let state = keys::StateFile::open(id.state_file.as_deref())?;
        let jwt = id
            .jwt
            .as_ref()
            .map(jwt::JwtVerifier::new)
            .transpose()?
            .map(Arc::new);
        Ok(Arc::new(Identity {
            jwt: ArcSwapOption::new(jwt),
            admin_key: ArcSwapOption::new(id.admin_key.clone().map(Arc::new)),
            storage: redis.is_some() || state.is_some(),
            state_file: id.state_file.clone(),
            keys: keys::KeyStore::new(state.clone(), redis.clone()),
            budgets: budget::Budgets::new(state, redis.clone()),
            redis,
        }))
    }

    /// The JWT verifier in force; `None` without `auth.jwt`.
    pub fn jwt(&self) -> Option<Arc<jwt::JwtVerifier>> {
        self.jwt.load_full()
    }

    pub fn admin_key(&self) -> Option<Arc<Secret>> {
        self.admin_key.load_full()
    }

    /// Managed keys are in use (an admin key is configured).
    pub fn managed(&self) -> bool {
        self.admin_key.load().is_some()
    }

    /// Work before serving: the first JWKS fetch.
    pub async fn start(&self) {
        if let Some(v) = self.jwt() {
            let _ = v.refresh().await;
        }
    }

    /// SIGHUP: applies a changed `auth.jwt` and `auth.admin_key` from a config that already
    /// passed validation. A new verifier takes over only once it can verify (its JWKS
    /// fetched, or static keys); otherwise the one in force stays and the log says why. The
    /// key store and the state file stay as opened at start.
    pub async fn reload(&self, config: &Config) {
        const LOG: &str = "gateway:config";
        let id = &config.auth.identity;
        if id.state_file != self.state_file {
            log::warn!(target: LOG, "reload: auth.state_file changes take a restart; managed keys and spend stay where they were");
        }
        if !self.storage && config.auth.keys.iter().any(|k| k.budget.is_some()) {
            log::warn!(target: LOG, "reload: auth.keys budgets are enforced, but their spend is kept in memory only until a restart opens auth.state_file or Redis");
        }
        let old_key = self.admin_key.load_full();
        let same_key = match (&old_key, &id.admin_key) {
            (Some(a), Some(b)) => **a == *b,
            (None, None) => true,
            _ => false,
        };
        if !same_key {
            if id.admin_key.is_some() && !self.storage {
                log::error!(target: LOG, "reload: auth.admin_key not applied: managed keys need Redis or the auth.state_file the gateway started with; restart to add them");
            } else {
                self.admin_key.store(id.admin_key.clone().map(Arc::new));
                log::info!(target: LOG, "reload: auth.admin_key {}", if id.admin_key.is_some() { "changed; /admin takes the new key" } else { "removed; /admin and managed keys are off" });
            }
        }
        let current = self.jwt.load_full();
        let unchanged = match (&current, &id.jwt) {
            (None, None) => true,
            // A CA file may have new contents under the same name.
            (Some(v), Some(c)) => v.config() == c && c.jwks_ca_file.is_none(),
            _ => false,
        };
        if unchanged {
            return;
        }
        let Some(cfg) = &id.jwt else {
            self.jwt.store(None);
            log::info!(target: LOG, "reload: auth.jwt removed; bearer tokens are no longer verified");
            return;
        };
        let next = match jwt::JwtVerifier::new(cfg) {
            Ok(v) => v,
            Err(e) => {
                log::error!(target: LOG, "reload: auth.jwt kept as it was: {e}");
                return;
            }
        };
        if let Err(e) = next.refresh().await {
            log::error!(target: LOG, "reload: auth.jwt kept as it was: the new JWKS could not be fetched ({e})");
            return;
        }
        self.jwt.store(Some(Arc::new(next)));
        log::info!(target: LOG, "reload: auth.jwt applied (tokens verified before are verified again)");
    }
}

/// Runs the periodic work: JWKS refresh, managed-key sync (Redis), state-file flush.
pub struct Refresher {
    pub identity: Arc<Identity>,
}

/// How often managed keys are re-read from Redis (a version check: one GET when nothing
/// changed), so every instance honours a change within a second. The JWKS refresh interval
/// is checked on the same tick, so a verifier swapped by a reload keeps its own interval.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Refresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let id = &self.identity;
        let mut sync = tokio::time::interval(SYNC_EVERY);
        loop {
            tokio::select! {
                _ = sync.tick() => {
                    id.keys.sync().await;
                    id.budgets.flush();
                    if let Some(v) = id.jwt().filter(|v| v.refresh_due()) {
                        let _ = v.refresh().await;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        id.budgets.flush();
                        return;
                    }
                }
            }
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
