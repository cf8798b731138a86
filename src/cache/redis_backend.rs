//! The shared Redis tier. Every failure is a miss, never an error: the gateway keeps answering
//! from memory while Redis is away and uses it again once it is back.

use super::{CacheKey, Entry};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A lookup waits no longer than this: a slow Redis must not slow down a miss much.
pub(super) const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Writes carry whole bodies, so they get a little longer.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// While Redis is failing, one request per interval tries it; the others skip it at once instead
/// of each paying the timeout.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub(super) struct RedisBackend {
    client: redis::Client,
    /// Built on first use, inside the runtime that serves requests: the manager spawns its
    /// connection tasks on the current Tokio runtime, which `ResponseCache::new` may not have.
    conn: OnceLock<ConnectionManager>,
    state: AtomicU8,
    /// Milliseconds since `epoch` of the last probe while `DOWN`.
    last_probe: AtomicU64,
    epoch: Instant,
}

impl RedisBackend {
    /// Parses the URL only (no I/O). The URL may hold a password, so it is never logged.
    pub(super) fn new(url: &str) -> Option<Self> {
        match redis::Client::open(url) {
            Ok(client) => Some(Self {
                client,
                conn: OnceLock::new(),
                state: AtomicU8::new(UNKNOWN),
                last_probe: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
            Err(e) => {
                log::warn!(
                    target: "gateway:cache",
                    "cache.redis_url is not a usable Redis URL ({:?}); caching in memory only",
                    e.kind()
                );
                None
            }
        }
    }

    pub(super) fn healthy(&self) -> bool {
        self.state.load(Ordering::Relaxed) != DOWN
    }

    /// `GET` + `PTTL`: the entry and how long Redis keeps it (`None` = no expiry).
    pub(super) async fn get(&self, key: &CacheKey) -> Option<(Entry, Option<Duration>)> {
        let mut conn = self.connection()?;
        let k = key.redis_key();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&k).cmd("PTTL").arg(&k);
        let res = tokio::time::timeout(
            READ_TIMEOUT,
            pipe.query_async::<(Option<Vec<u8>>, i64)>(&mut conn),
        )
        .await;
        let (value, pttl) = self.outcome(res)?;
        let entry = Entry::decode_shared(Bytes::from(value?))?;
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
        let Some(mut conn) = self.connection() else {
            return;
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key.redis_key()).arg(value).arg("PX").arg(ms);
        let res = tokio::time::timeout(WRITE_TIMEOUT, cmd.query_async::<()>(&mut conn)).await;
        let _ = self.outcome(res);
    }

    /// The manager, or `None` when Redis is known to be down and it is not this request's turn to
    /// probe it (or there is no Tokio runtime to drive it).
    fn connection(&self) -> Option<ConnectionManager> {
        if self.state.load(Ordering::Relaxed) == DOWN && !self.probe_due() {
            return None;
        }
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        tokio::runtime::Handle::try_current().ok()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2));
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            // Two first requests may race here; one manager wins, the other is dropped unused.
            Ok(m) => Some(self.conn.get_or_init(|| m).clone()),
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    fn probe_due(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_probe.load(Ordering::Relaxed);
        now.saturating_sub(last) >= PROBE_INTERVAL.as_millis() as u64
            && self
                .last_probe
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Records the result of one command; `None` on failure.
    fn outcome<T>(
        &self,
        res: Result<Result<T, RedisError>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match res {
            Ok(Ok(v)) => {
                if self.state.swap(UP, Ordering::Relaxed) == DOWN {
                    log::info!(target: "gateway:cache", "Redis cache backend is reachable again");
                }
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(_elapsed) => {
                self.failure("timed out");
                None
            }
        }
    }

    fn failed(&self, e: &RedisError) {
        if e.is_timeout() {
            self.failure("timed out");
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            self.failure("connection failed");
        } else {
            // The kind only: a server message could echo request data.
            let kind = format!("{:?}", e.kind());
            self.failure(&kind);
        }
    }

    /// Counts every failure, warns once per outage.
    fn failure(&self, what: &str) {
        if let Some(m) = crate::metrics::get() {
            m.redis_errors.with_label_values(&["cache"]).inc();
        }
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_probe.store(now, Ordering::Relaxed);
            log::warn!(
                target: "gateway:cache",
                "Redis cache backend unavailable ({what}); caching in memory only until it is back"
            );
        }
    }
}
