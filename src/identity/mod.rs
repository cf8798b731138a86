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

use crate::config::Config;
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

/// Budget periods: calendar day and month in UTC, or the key's whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
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

/// The identity services of one gateway process, built once at start.
pub struct Identity {
    pub jwt: Option<jwt::JwtVerifier>,
    /// `auth.admin_key` is set: managed keys are in use.
    pub managed: bool,
    pub keys: keys::KeyStore,
    pub budgets: budget::Budgets,
}

impl Identity {
    /// Builds from the config; `Err` when the state file exists but cannot be read (a corrupt
    /// file is a start-up error, never an empty key set).
    pub fn new(config: &Config) -> Result<Arc<Identity>, String> {
        let id = &config.auth.identity;
        let redis = config
            .cache
            .redis_url
            .as_ref()
            .and_then(|u| redis_store::IdentityRedis::new(Some(u.expose())))
            .map(Arc::new);
        if redis.is_none() && id.admin_key.is_some() && id.state_file.is_none() {
            return Err("auth.state_file: needed with auth.admin_key when no Redis is configured (managed keys must survive a restart)".into());
        }
        let state = keys::StateFile::open(id.state_file.as_deref())?;
        Ok(Arc::new(Identity {
            jwt: id.jwt.as_ref().map(jwt::JwtVerifier::new),
            managed: id.admin_key.is_some(),
            keys: keys::KeyStore::new(state.clone(), redis.clone()),
            budgets: budget::Budgets::new(state, redis),
        }))
    }

    /// Work before serving: the first JWKS fetch and the managed keys from Redis.
    pub async fn start(&self) {
        if let Some(v) = &self.jwt {
            v.refresh().await;
        }
    }
}

/// Runs the periodic work: JWKS refresh, managed-key sync (Redis), state-file flush.
pub struct Refresher {
    pub identity: Arc<Identity>,
}

/// How often managed keys are re-read from Redis (a version check: one GET when nothing
/// changed), so every instance honours a change within a second.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Refresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let id = &self.identity;
        let mut sync = tokio::time::interval(SYNC_EVERY);
        let jwks_every = id
            .jwt
            .as_ref()
            .map_or(std::time::Duration::from_secs(3600), |j| {
                j.refresh_interval()
            });
        let mut jwks = tokio::time::interval(jwks_every);
        jwks.tick().await;
        loop {
            tokio::select! {
                _ = sync.tick() => {
                    id.keys.sync().await;
                    id.budgets.flush();
                }
                _ = jwks.tick() => {
                    if let Some(v) = &id.jwt {
                        v.refresh().await;
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
