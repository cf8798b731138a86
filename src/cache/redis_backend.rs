//! The shared Redis tier. Every failure is a miss, never an error: the gateway keeps answering
//! from memory while Redis is away and uses it again once it is back.
//!
//! Connection, bounds, circuit breaker and sealing are the link shared with the rate limiter
//! ([`crate::redis_link`]): one rule for every Redis call the gateway makes.

use super::{CacheKey, Entry};
use crate::redis_link::{RedisLink, RedisTarget, RedisUser, Use};
use std::time::Duration;

/// A lookup waits no longer than this: a slow Redis must not slow down a miss much.
pub(super) const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Writes carry whole bodies, so they get a little longer.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_millis(250);

const CACHE_USE: Use = Use {
    label: "cache",
    target: "gateway:cache",
    lost: "Redis cache backend unavailable",
    fallback: "caching in memory only until it is back",
    back: "Redis cache backend is reachable again",
};

pub(super) struct RedisBackend {
    user: RedisUser,
}

impl RedisBackend {
    /// Parses the settings only (no I/O): the connection is made by the first call, inside
    /// the runtime that serves requests. The URL may hold a password, so it is never logged.
    pub(super) fn new(target: &RedisTarget) -> Option<Self> {
        match RedisLink::shared(target) {
            Ok(link) => Some(Self {
                user: RedisUser::new(link, &CACHE_USE),
            }),
            Err(e) => {
                log::warn!(target: "gateway:cache", "{e}; caching in memory only");
                None
            }
        }
    }

    pub(super) fn user(&self) -> &RedisUser {
        &self.user
    }

    pub(super) fn healthy(&self) -> bool {
        self.user.healthy()
    }

    /// `GET` + `PTTL`: the entry and how long Redis keeps it (`None` = no expiry). One
    /// pipeline; on a Cluster two commands in flight together, so that each carries its own
    /// `ASKING` while the key's slot migrates (see [`crate::redis_link::Conn::is_cluster`]).
    pub(super) async fn get(&self, key: &CacheKey) -> Option<(Entry, Option<Duration>)> {
        let key_text = key.redis_key();
        let k = key_text.as_str();
        let (value, pttl) = self
            .user
            .call(k, READ_TIMEOUT, |mut conn| async move {
                if conn.is_cluster() {
                    let mut other = conn.clone();
                    let (mut get, mut pttl) = (redis::cmd("GET"), redis::cmd("PTTL"));
                    get.arg(k);
                    pttl.arg(k);
                    return tokio::try_join!(
                        get.query_async::<Option<Vec<u8>>>(&mut conn),
                        pttl.query_async::<i64>(&mut other)
                    );
                }
                redis::pipe()
                    .cmd("GET")
                    .arg(k)
                    .cmd("PTTL")
                    .arg(k)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut conn)
                    .await
            })
            .await?;
        let entry = Entry::decode_shared(self.user.open(k, value?)?)?;
        let remaining = match pttl {
            -1 => None,
            ms if ms > 0 => Some(Duration::from_millis(ms.unsigned_abs())),
            // Expired between the two commands: serve it, but don't keep it.
            _ => Some(Duration::ZERO),
        };
        Some((entry, remaining))
    }

    /// `SET key value PX ttl`: Redis enforces the TTL.
    pub(super) async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let k = key.redis_key();
        let Some(value) = self.user.seal(&k, value) else {
            return;
        };
        let k = k.as_str();
        self.user
            .call(k, WRITE_TIMEOUT, |mut conn| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }
}
