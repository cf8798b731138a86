//! State shared by every request: the current config and provider pools (swapped whole on
//! reload), the upstream connection pool, and counters.

use crate::cache::ResponseCache;
use crate::config::{Config, ProviderKind, Secret};
use crate::conversations::ConversationStore;
use crate::ratelimit::RateLimiter;
use crate::redis_link::RedisTarget;
use crate::upstream::ProviderPool;
use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::watch;

/// One consistent view of config and pools; a request loads it once and keeps it.
pub struct Runtime {
    pub config: Arc<Config>,
    pub pools: BTreeMap<ProviderKind, Arc<ProviderPool>>,
    /// Every provider key the gateway holds (provider and endpoint keys): redacted from any
    /// upstream text before it reaches a client or a log line.
    pub gateway_keys: Vec<Secret>,
}

impl Runtime {
    pub fn new(config: Config) -> Self {
        let pools = ProviderKind::ALL
            .into_iter()
            .filter_map(|kind| ProviderPool::new(kind, &config).map(|p| (kind, Arc::new(p))))
            .collect();
        let pools: BTreeMap<ProviderKind, Arc<ProviderPool>> = pools;
        let mut gateway_keys: Vec<Secret> = Vec::new();
        for pool in pools.values() {
            for peer in &pool.peers {
                if let Some(k) = &peer.api_key {
                    if !gateway_keys.contains(k) {
                        gateway_keys.push(k.clone());
                    }
                }
            }
        }
        Runtime {
            config: Arc::new(config),
            pools,
            gateway_keys,
        }
    }
}

pub struct State {
    pub runtime: ArcSwap<Runtime>,
    /// Response cache (memory, plus Redis when `cache.redis_url` is set). Built once: a reload
    /// keeps its entries and its backend.
    pub cache: ResponseCache,
    /// Per-caller limits (memory, or shared through Redis).
    pub limiter: RateLimiter,
    /// Responses API conversation state for gateway-minted ids (memory, plus Redis when
    /// configured). Built once, like the cache: a reload keeps the conversations.
    pub conversations: ConversationStore,
    /// Pooled upstream connections (HTTP/1.1 keep-alive; HTTP/2 where TLS offers it).
    pub connector: Connector,
    /// Proxied requests in flight (health and metrics are not counted).
    pub inflight: AtomicUsize,
    /// Turns true shortly before the drain grace period ends: answers still streaming then
    /// end with an error event and a clean end of body instead of being cut mid-chunk.
    pub stopping: watch::Sender<bool>,
    /// JWT verifier, managed keys and budgets (SPEC §13). Built once, like the cache.
    pub identity: Arc<crate::identity::Identity>,
}

impl State {
    pub fn new(runtime: Runtime, identity: Arc<crate::identity::Identity>) -> Self {
        let c = &runtime.config;
        let redis = RedisTarget::from_cache(&c.cache);
        let cache = ResponseCache::with_redis(c.cache.max_size, c.cache.ttl, redis.as_ref());
        let limiter = RateLimiter::with_redis(redis.as_ref());
        let conversations =
            ConversationStore::with_redis(&c.responses, RedisTarget::for_responses(c).as_ref());
        State {
            cache,
            limiter,
            conversations,
            runtime: ArcSwap::from_pointee(runtime),
            connector: Connector::new(Some(ConnectorOptions::new(256))),
            inflight: AtomicUsize::new(0),
            stopping: watch::Sender::new(false),
            identity,
        }
    }

    /// SIGHUP: moves every Redis user to the new settings (URL, TLS files, keys). New calls
    /// use new connections; calls in flight finish on the old ones, which close when the last
    /// of them ends. Settings that fail to build keep the link in use (the config check has
    /// already refused most of them).
    pub fn retarget_redis(&self, c: &Config) {
        let cache = RedisTarget::from_cache(&c.cache);
        let responses = RedisTarget::for_responses(c);
        let users = [
            ("cache", self.cache.redis_user(), &cache),
            ("ratelimit", self.limiter.redis_user(), &cache),
            ("responses", self.conversations.redis_user(), &responses),
            ("identity", self.identity.redis_user(), &cache),
        ];
        for (name, user, target) in users {
            match (user, target) {
                (Some(u), Some(t)) => match u.retarget(t) {
                    Ok(true) => {
                        log::info!(target: "gateway:config", "reload: Redis for {name} is now {} {:?}; new connections use it", t.kind(), t.describe())
                    }
                    Ok(false) => {}
                    Err(e) => {
                        log::error!(target: "gateway:config", "reload: Redis for {name} kept as it was: {e}")
                    }
                },
                // Each feature picks its memory or Redis store when it is built (README,
                // Production Redis): the running mode stays until a restart.
                (None, Some(_)) => {
                    log::warn!(target: "gateway:config", "reload: adding Redis for {name} takes a restart; {name} stays in memory until then")
                }
                (Some(_), None) => {
                    log::warn!(target: "gateway:config", "reload: removing Redis for {name} takes a restart; {name} keeps using its Redis until then")
                }
                (None, None) => {}
            }
        }
    }

    /// Every use of Redis with its handle: the cache, the limiter, conversations, identity.
    fn redis_users(&self) -> [(&'static str, Option<&crate::redis_link::RedisUser>); 4] {
        [
            ("cache", self.cache.redis_user()),
            ("ratelimit", self.limiter.redis_user()),
            ("responses", self.conversations.redis_user()),
            ("identity", self.identity.redis_user()),
        ]
    }

    /// The `redis` section of `/health/providers`: each use of Redis, whether its link is
    /// healthy (breaker closed), and each node as last seen (see `redis_link::health`).
    pub fn redis_health(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, user) in self.redis_users() {
            if let Some(u) = user {
                let link = u.link();
                let table = link.nodes();
                let checked_ms_ago = table
                    .checked
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
                out.insert(
                    name.into(),
                    serde_json::json!({
                        "kind": link.target().kind(),
                        "healthy": link.healthy(),
                        "encrypted": u.sealing(),
                        "nodes": table.to_json(),
                        "checked_ms_ago": checked_ms_ago,
                    }),
                );
            }
        }
        serde_json::Value::Object(out)
    }

    /// Sets `gateway_redis_node_up{use,node}` from each link's table (at scrape time, like
    /// the peer gauges): nodes that left the topology disappear.
    pub fn publish_redis_metrics(&self, m: &crate::metrics::Metrics) {
        m.redis_node_up.reset();
        for (name, user) in self.redis_users() {
            if let Some(u) = user {
                for node in &u.link().nodes().nodes {
                    m.redis_node_up
                        .with_label_values(&[name, &node.addr])
                        .set(i64::from(node.up()));
                }
            }
        }
    }
}
