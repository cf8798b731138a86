//! Exact-match response cache (SPEC §9).
//!
//! Two tiers: a bounded in-memory TinyUFO store (a hit is a refcount bump on the stored `Bytes`)
//! and, when `redis_url` is set, a Redis store shared by every instance. Redis trouble is a miss,
//! never an error. Streamed and non-streamed requests share entries: an entry is always the
//! non-streamed `chat.completion` (or embeddings) body, replayed as SSE by [`completion_to_sse`]
//! and assembled from a streamed miss by [`StreamAssembler`].
//!
//! Intended use in the request path: `policy` → `cache_key` → `get` (HIT: answer in
//! `request_filter`) → `join` (a follower waits, then `get`s again) → upstream → `put` in
//! `logging` → `LeaderGuard::complete`.

mod entry;
mod flight;
mod key;
mod redis_backend;
mod stream;

pub use entry::Entry;
pub use flight::{Flight, LeaderGuard, WaitOutcome, Waiter};
pub use key::{cache_key, policy, raw_key, CacheKey, CachePolicy, MAX_TTL, REDIS_PREFIX};
pub use stream::{completion_to_sse, StreamAssembler};

use flight::Flights;
use pingora_memory_cache::MemoryCache;
use redis_backend::RedisBackend;
use std::sync::Arc;
use std::time::Duration;

/// What the memory tier holds: the full key guards against a collision of the 64-bit index.
struct Slot {
    key: [u8; 32],
    entry: Entry,
}

/// The response cache; one per process, shared by every request.
pub struct ResponseCache {
    /// `None` when `max_size` is 0 (Redis only, or no cache at all).
    memory: Option<MemoryCache<u64, Arc<Slot>>>,
    /// Raw request key → canonical key, for requests repeated byte for byte (local only: a
    /// miss here just means the tree is parsed).
    canonical: MemoryCache<u64, Arc<([u8; 32], CacheKey)>>,
    ttl: Duration,
    redis: Option<RedisBackend>,
    flights: Arc<Flights>,
}

impl ResponseCache {
    /// `max_size` entries in memory, kept at most `ttl` (the configured default); `redis_url`
    /// adds the shared tier. Does no I/O: Redis is connected on first use, in the background.
    pub fn new(max_size: usize, ttl: Duration, redis_url: Option<&str>) -> Self {
        let target = redis_url.map(crate::redis_link::RedisTarget::single);
        Self::with_redis(max_size, ttl, target.as_ref())
    }

    /// As [`ResponseCache::new`], on a Redis target (TLS files, Cluster, Sentinel, keys).
    pub fn with_redis(
        max_size: usize,
        ttl: Duration,
        redis: Option<&crate::redis_link::RedisTarget>,
    ) -> Self {
        Self {
            memory: (max_size > 0).then(|| MemoryCache::new(max_size)),
            canonical: MemoryCache::new(max_size.clamp(16, 100_000)),
            ttl: ttl.min(MAX_TTL),
            redis: redis.and_then(RedisBackend::new),
            flights: Arc::default(),
        }
    }

    /// The configured TTL, for `put` when the request did not override it.
    pub fn default_ttl(&self) -> Duration {
        self.ttl
    }

    /// Memory first, then Redis (bounded by a 100 ms timeout; a Redis hit is kept in memory for
    /// what is left of its Redis TTL). Redis down or slow is a miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Entry> {
        if let Some(entry) = self.memory_get(key) {
            return Some(entry);
        }
        let (entry, remaining) = self.redis.as_ref()?.get(key).await?;
        let keep = remaining.map_or(self.ttl, |r| r.min(self.ttl));
        self.memory_put(key, entry.clone(), keep);
        Some(entry)
    }

    /// Stores in memory and in Redis (`SET … PX ttl`, bounded by a 250 ms timeout). `ttl` is capped
    /// at [`MAX_TTL`]; zero stores nothing.
    pub async fn put(&self, key: &CacheKey, entry: Entry, ttl: Duration) {
        let ttl = ttl.min(MAX_TTL);
        if ttl.is_zero() {
            return;
        }
        let wire = self.redis.as_ref().map(|_| entry.encode());
        self.memory_put(key, entry, ttl);
        if let (Some(redis), Some(wire)) = (&self.redis, wire) {
            redis.put(key, wire, ttl).await;
        }
    }

    /// The canonical key recorded for a raw key by [`Self::remember_canonical`].
    pub fn canonical_for(&self, raw: &CacheKey) -> Option<CacheKey> {
        let (pair, _status) = self.canonical.get(&raw.short());
        let pair = pair?;
        (pair.0 == raw.0).then_some(pair.1)
    }

    /// Records that the request with `raw` key has the canonical `key` (a pure function of
    /// the bytes, so the record never goes stale).
    pub fn remember_canonical(&self, raw: &CacheKey, key: &CacheKey) {
        if self.canonical_for(raw).is_none() {
            self.canonical
                .put(&raw.short(), Arc::new((raw.0, *key)), None);
        }
    }

    /// Coalesces identical in-flight requests: the first caller of a key leads, later ones follow
    /// until the leader completes or drops its guard.
    pub fn join(&self, key: &CacheKey) -> Flight {
        self.flights.join(key.0)
    }

    /// False while the configured Redis is failing; true when there is no Redis (nothing to fail)
    /// or before its first use.
    pub fn redis_healthy(&self) -> bool {
        self.redis.as_ref().is_none_or(RedisBackend::healthy)
    }

    /// The Redis layer's handle (health, reload); `None` without Redis.
    pub fn redis_user(&self) -> Option<&crate::redis_link::RedisUser> {
        self.redis.as_ref().map(RedisBackend::user)
    }

    /// Whether a (valid) Redis URL was configured.
    pub fn redis_enabled(&self) -> bool {
        self.redis.is_some()
    }

    fn memory_get(&self, key: &CacheKey) -> Option<Entry> {
        let (slot, _status) = self.memory.as_ref()?.get(&key.short());
        let slot = slot?;
        (slot.key == key.0).then(|| slot.entry.clone())
    }

    fn memory_put(&self, key: &CacheKey, entry: Entry, ttl: Duration) {
        if let Some(memory) = &self.memory {
            let slot = Arc::new(Slot { key: key.0, entry });
            memory.put(&key.short(), slot, Some(ttl));
        }
    }
}

#[cfg(test)]
mod tests;
