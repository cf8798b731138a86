//! State shared by every request: the current config and provider pools (swapped whole on
//! reload), the upstream connection pool, and counters.

use crate::config::{Config, ProviderKind};
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
    /// Pooled upstream connections (HTTP/1.1 keep-alive; HTTP/2 where TLS offers it).
    pub connector: Connector,
    /// Proxied requests in flight (health and metrics are not counted).
    pub inflight: AtomicUsize,
}

impl State {
    pub fn new(runtime: Runtime) -> Self {
        State {
            runtime: ArcSwap::from_pointee(runtime),
            connector: Connector::new(Some(ConnectorOptions::new(256))),
            inflight: AtomicUsize::new(0),
        }
    }
}
