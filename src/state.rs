//! State shared by every request: the current config and provider pools (swapped whole on
//! reload), the upstream connection pool, and counters.

use crate::cache::ResponseCache;
use crate::config::{Config, ProviderKind, Secret};
use crate::conversations::ConversationStore;
use crate::ratelimit::RateLimiter;
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
        let redis = c.cache.redis_url.as_ref().map(|u| u.expose().to_string());
        let cache = ResponseCache::new(c.cache.max_size, c.cache.ttl, redis.as_deref());
        let limiter = RateLimiter::new(redis.as_deref());
        let conversations =
            ConversationStore::new(&c.responses, c.responses_redis_url().map(|u| u.expose()));
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
}
