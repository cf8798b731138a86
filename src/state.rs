//! State shared by every request: the current config and provider pools (swapped whole on
//! reload), the upstream connection pool, and counters.

use crate::cache::ResponseCache;
use crate::config::{Config, ProviderKind};
use crate::ratelimit::RateLimiter;
use crate::upstream::ProviderPool;
use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// One consistent view of config and pools; a request loads it once and keeps it.
pub struct Runtime {
    pub config: Arc<Config>,
    pub pools: BTreeMap<ProviderKind, Arc<ProviderPool>>,
}

impl Runtime {
    pub fn new(config: Config) -> Self {
        let pools = ProviderKind::ALL
            .into_iter()
            .filter_map(|kind| ProviderPool::new(kind, &config).map(|p| (kind, Arc::new(p))))
            .collect();
        Runtime {
            config: Arc::new(config),
            pools,
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
    /// Pooled upstream connections (HTTP/1.1 keep-alive; HTTP/2 where TLS offers it).
    pub connector: Connector,
    /// Proxied requests in flight (health and metrics are not counted).
    pub inflight: AtomicUsize,
}

impl State {
    pub fn new(runtime: Runtime) -> Self {
        let c = &runtime.config;
        let redis = c.cache.redis_url.as_ref().map(|u| u.expose().to_string());
        let cache = ResponseCache::new(c.cache.max_size, c.cache.ttl, redis.as_deref());
        let limiter = RateLimiter::new(redis.as_deref());
        State {
            cache,
            limiter,
            runtime: ArcSwap::from_pointee(runtime),
            connector: Connector::new(Some(ConnectorOptions::new(256))),
            inflight: AtomicUsize::new(0),
        }
    }
}
