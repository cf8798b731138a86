//! The one Redis layer of the gateway (SPEC §9, §14): every user of Redis (the response cache,
//! the rate limiter, the Responses conversation store, and what later features add) reaches it
//! through a [`RedisUser`] on a shared [`RedisLink`], so there is one rule for connecting
//! (single server, Cluster, Sentinel; TLS; ACL credentials), how long a call may take, when
//! Redis is skipped, how keys are laid out and how values are sealed at rest.
//!
//! The rule: every call, connecting included, runs under a timeout with the caller's bound
//! (Pingora's shared 10 ms ticks: no timer registered per call), so nothing Redis does (a restart, a hang, a slow reconnect, a failover) can
//! hold a request longer than that. A failure opens the breaker: for [`COOLDOWN`] every call
//! skips Redis at once (a miss, a local count), then one call probes it; its success closes the
//! breaker for everyone. There is no reconnect loop in the background: a connection that failed
//! is dropped and the next admitted call connects again, inside its own bound. (The per-node
//! health probe, [`health`], has connections of its own and never touches these or the
//! breaker.)
//! (`redis::aio::ConnectionManager`, used before, reconnects with exponential backoff in a
//! shared future that calls wait on: right after a restart calls queued behind a reconnect
//! that was still sleeping, and Redis stayed unused seconds after it was back.)
//!
//! Adopting it for a new feature: declare a [`Use`] (its metric label and log lines), make a
//! `RedisUser::new(RedisLink::shared(&target)?, &MY_USE)`, run commands with
//! [`RedisUser::call`], name keys with [`keys::tagged`] so multi-key scripts stay on one
//! Cluster slot, and pass values holding prompt or answer data through [`RedisUser::seal`] /
//! [`RedisUser::open`].

mod health;
pub mod keys;
mod seal;
mod target;

pub use target::{decode_key, RedisTarget, Topology};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use target::Clients;

/// What is wrong with the cache's Redis settings, as (field, problem): files that cannot be
/// read, keys that are not 32 bytes, URLs that do not parse, settings that exclude each other.
/// Never a URL or a key in the text.
pub fn problems(c: &crate::config::CacheConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |field: &str, problem: &str| out.push((field.to_string(), problem.to_string()));
    if !c.redis_cluster.is_empty() && c.redis_sentinel.is_some() {
        add(
            "cache.redis_cluster",
            "cannot be combined with cache.redis_sentinel",
        );
    }
    if c.encryption_key.is_none() && !c.encryption_old_keys.is_empty() {
        add(
            "cache.encryption_old_keys",
            "needs cache.encryption_key (the key that seals new values)",
        );
    }
    if c.redis_client_cert.is_some() != c.redis_client_key.is_some() {
        add(
            "cache.redis_client_cert",
            "needs cache.redis_client_key, and the other way round",
        );
    }
    let Some(target) = RedisTarget::from_cache(c) else {
        return out;
    };
    let split = |e: String| match e.split_once(": ") {
        Some((f, m)) => (f.to_string(), m.to_string()),
        None => ("cache".to_string(), e),
    };
    if let Err(e) = target.key_bytes() {
        out.push(split(e));
    }
    if let Err(e) = target.clients() {
        out.push(split(e));
    }
    out
}

/// How long Redis is skipped after a failure before one call tries it again: short, so
/// a restarted Redis is used again within a second, and long enough that an outage costs
/// one bounded call per interval instead of one per request.
pub const COOLDOWN: Duration = Duration::from_millis(500);
/// The driver's own bounds, behind the per-call timeouts: they free a connection's
/// pending replies and abandon a connect even when no caller is waiting any more.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// A whole connect (a Cluster's: every node and its slot map) at most this long.
const CONNECT_BOUND: Duration = Duration::from_secs(2);

/// How one feature names itself in logs and metrics.
#[derive(Debug)]
pub struct Use {
    /// The `use` label of `gateway_redis_errors_total`.
    pub label: &'static str,
    pub target: &'static str,
    /// "… unavailable" (followed by the failure's category).
    pub lost: &'static str,
    /// What the feature does meanwhile.
    pub fallback: &'static str,
    pub back: &'static str,
}

/// A connection of either kind; both multiplex, so a clone is a handle on the same socket(s).
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// A Cluster connection: the driver routes by key and follows `MOVED`/`ASK` itself, but a
    /// pipeline sends `ASKING` before its first command only, so a multi-command pipeline on a
    /// migrating slot bounces between the two nodes. Callers send such reads as separate
    /// commands there.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Closed (Redis in use) or open until a probe succeeds.
struct Breaker {
    open: AtomicBool,
    /// Milliseconds since `epoch` when the next probe may run while open.
    probe_at: AtomicU64,
    cooldown_ms: u64,
    epoch: Instant,
}

impl Breaker {
    fn new(cooldown: Duration) -> Self {
        Self {
            open: AtomicBool::new(false),
            probe_at: AtomicU64::new(0),
            cooldown_ms: u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closed: every call. Open: one call per cooldown wins the probe.
    fn admit(&self) -> bool {
        if !self.open.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_ms();
        let at = self.probe_at.load(Ordering::Acquire);
        now >= at
            && self
                .probe_at
                .compare_exchange(
                    at,
                    now.saturating_add(self.cooldown_ms),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn success(&self) {
        self.open.store(false, Ordering::Release);
    }

    fn failure(&self) {
        self.probe_at.store(
            self.now_ms().saturating_add(self.cooldown_ms),
            Ordering::Release,
        );
        self.open.store(true, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

enum Connector {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// Asks the sentinels for the master on every connect, so a failover is followed by the
    /// next connect after the old master's connection fails.
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

/// A Redis deployment as the gateway reaches it: its clients, the current connection (if
/// any), the breaker and the sealer.
pub struct RedisLink {
    target: RedisTarget,
    connector: Connector,
    config: redis::AsyncConnectionConfig,
    /// The connection in use and its generation, so that a caller that saw generation
    /// `n` fail drops `n` and not the fresh connection another caller just made.
    conn: Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
    /// Connect attempts so far: a caller that waited for another's attempt sees it change.
    connects: AtomicU64,
    /// One connect at a time; the others wait for it, each within its own bound.
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
    sealer: Option<seal::Sealer>,
    /// Each node as last seen (probe, failed calls); see [`health`].
    health: arc_swap::ArcSwap<health::Table>,
    /// The probe task has been started.
    probing: AtomicBool,
}

/// Links by target, so the cache and the limiter of one gateway share one connection and
/// one breaker (the cache finding Redis down spares the limiter its own timeout).
static LINKS: Mutex<Vec<(RedisTarget, Weak<RedisLink>)>> = Mutex::new(Vec::new());

impl RedisLink {
    /// The link to `target`, shared with every other user of the same target. Parses and
    /// reads the TLS files only (no I/O to Redis). Errors name the field and the problem,
    /// never a URL (it may hold a password).
    pub fn shared(target: &RedisTarget) -> Result<Arc<RedisLink>, String> {
        let mut links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(link) = links
            .iter()
            .find(|(t, _)| t == target)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(link);
        }
        let link = Arc::new(Self::private(target, COOLDOWN)?);
        links.push((target.clone(), Arc::downgrade(&link)));
        Ok(link)
    }

    /// A link of its own (tests that tune the cooldown, or must not share state).
    pub fn private(target: &RedisTarget, cooldown: Duration) -> Result<RedisLink, String> {
        let keys = target.key_bytes()?;
        let connector = match target.clients()? {
            Clients::Single(c) => Connector::Single(c),
            Clients::Cluster(c) => Connector::Cluster(c),
            Clients::Sentinel(c) => Connector::Sentinel(tokio::sync::Mutex::new(c)),
        };
        Ok(Self {
            target: target.clone(),
            connector,
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Breaker::new(cooldown),
            sealer: seal::Sealer::new(&keys),
            health: arc_swap::ArcSwap::from_pointee(health::Table::configured(target)),
            probing: AtomicBool::new(false),
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// False while the breaker is open: Redis failed and has not answered since.
    pub fn healthy(&self) -> bool {
        !self.breaker.is_open()
    }

    /// Each node as last seen, starting the probe if it is not running yet (it needs a
    /// runtime: the first call or health read inside one starts it).
    pub fn nodes(self: &Arc<Self>) -> Arc<health::Table> {
        if !self.probing.load(Ordering::Relaxed) {
            health::start(self);
        }
        self.health.load_full()
    }

    fn current(&self) -> Option<(u64, Conn)> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    async fn connect(&self) -> RedisResult<Conn> {
        match &self.connector {
            Connector::Single(c) => c
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map(Conn::Single),
            Connector::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            Connector::Sentinel(c) => c
                .lock()
                .await
                .get_async_connection_with_config(&self.config)
                .await
                .map(Conn::Single),
        }
    }

    /// The connection, connecting when there is none. The connect runs on a task of its own
    /// (bounded by [`CONNECT_BOUND`]): a caller whose bound is shorter stops waiting, the
    /// connect goes on and the next caller finds the connection. (Bound by the caller's
    /// 100 ms, a Cluster connect on a loaded host, several nodes and `CLUSTER SLOTS`, could
    /// be cut short forever.)
    async fn connection(self: &Arc<Self>) -> RedisResult<(u64, Conn)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let link = Arc::clone(self);
        tokio::spawn(async move { link.connect_once().await })
            .await
            .unwrap_or_else(|_| Err(RedisError::from((redis::ErrorKind::Io, "connect failed"))))
    }

    async fn connect_once(&self) -> RedisResult<(u64, Conn)> {
        let seen = self.connects.load(Ordering::Acquire);
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        if self.connects.load(Ordering::Acquire) != seen {
            // The connect this call waited for failed: no second try in the same breath.
            return Err(RedisError::from((redis::ErrorKind::Io, "Redis is failing")));
        }
        self.connects.fetch_add(1, Ordering::AcqRel);
        let conn = tokio::time::timeout(CONNECT_BOUND, self.connect())
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "connect timed out",
                )))
            })?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some((generation, conn.clone()));
        }
        Ok((generation, conn))
    }

    /// Drops connection `generation` (if it is still the current one).
    fn forget(&self, generation: Option<u64>) {
        if let (Some(g), Ok(mut slot)) = (generation, self.conn.lock()) {
            if slot.as_ref().is_some_and(|(current, _)| *current == g) {
                *slot = None;
            }
        }
    }
}

/// One feature's handle on a link: its calls, its log lines (one warning per outage, one
/// line when Redis is back) and its error counter. The link can be replaced (SIGHUP with a
/// new URL, TLS files or keys): calls in flight finish on the one they started with.
pub struct RedisUser {
    link: arc_swap::ArcSwap<RedisLink>,
    what: &'static Use,
    /// This feature has warned about the current outage.
    down: AtomicBool,
    /// This feature has warned about a value that did not open (once per process: the
    /// counter says how many).
    warned_open: AtomicBool,
}

impl RedisUser {
    pub fn new(link: Arc<RedisLink>, what: &'static Use) -> Self {
        Self {
            link: arc_swap::ArcSwap::new(link),
            what,
            down: AtomicBool::new(false),
            warned_open: AtomicBool::new(false),
        }
    }

    /// False while the breaker is open: Redis failed and has not answered since.
    pub fn healthy(&self) -> bool {
        self.link.load().healthy()
    }

    /// The link in use now.
    pub fn link(&self) -> Arc<RedisLink> {
        self.link.load_full()
    }

    /// Moves this feature to `target` (a reload). `Err` keeps the link in use and says why.
    /// `Ok(false)`: the target is unchanged.
    pub fn retarget(&self, target: &RedisTarget) -> Result<bool, String> {
        if self.link.load().target() == target {
            return Ok(false);
        }
        let next = RedisLink::shared(target)?;
        self.link.store(next);
        self.down.store(false, Ordering::Relaxed);
        Ok(true)
    }

    /// Runs `op` on the connection within `bound`, connecting first if needed. `None`
    /// when Redis is skipped (breaker open) or the call failed or ran out of time; the
    /// caller then does without Redis. `key` is the (first) key `op` works on: a failure is
    /// counted against the node that serves it.
    pub async fn call<T, F, Fut>(&self, key: &str, bound: Duration, op: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let link = self.link.load_full();
        if !link.probing.load(Ordering::Relaxed) {
            health::start(&link);
        }
        if !link.breaker.admit() {
            self.failed("skipped while Redis is failing");
            return None;
        }
        let mut used = None;
        let outcome = pingora::time::timeout(bound, async {
            let (generation, conn) = link.connection().await?;
            used = Some(generation);
            op(conn).await
        })
        .await;
        match outcome {
            Ok(Ok(v)) => {
                link.breaker.success();
                if self.down.swap(false, Ordering::Relaxed) {
                    log::info!(target: self.what.target, "{}", self.what.back);
                }
                Some(v)
            }
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.is_timeout()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                {
                    // A demoted master answers READONLY: reconnect, through the sentinels.
                    link.forget(used);
                }
                link.breaker.failure();
                let unreachable = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout();
                self.node_failed(&link, key, unreachable);
                self.failed(category(&e));
                None
            }
            Err(_elapsed) => {
                // A connection that let a call time out may be half-open: start afresh.
                link.forget(used);
                link.breaker.failure();
                self.node_failed(&link, key, true);
                self.failed("timed out");
                None
            }
        }
    }

    /// Whether values are sealed before they are written (`cache.encryption_key`).
    pub fn sealing(&self) -> bool {
        self.link.load().sealer.is_some()
    }

    /// `value` as it should be stored under `key`: sealed when a key is configured, else as
    /// it is. `None` (nothing to write) only if the system's random source failed.
    pub fn seal(&self, key: &str, value: Vec<u8>) -> Option<Vec<u8>> {
        match &self.link.load().sealer {
            None => Some(value),
            Some(s) => s.seal(key.as_bytes(), &value),
        }
    }

    /// A stored value back: opened when sealing is on. A value that does not open (tampered,
    /// another key, written in clear) is `None` and a counted error, never served.
    pub fn open(&self, key: &str, value: Vec<u8>) -> Option<bytes::Bytes> {
        match &self.link.load().sealer {
            None => Some(bytes::Bytes::from(value)),
            Some(s) => {
                let opened = s.open(key.as_bytes(), value);
                if opened.is_none() {
                    if let Some(m) = crate::metrics::get() {
                        m.redis_errors.with_label_values(&[self.what.label]).inc();
                    }
                    if !self.warned_open.swap(true, Ordering::Relaxed) {
                        log::warn!(target: self.what.target, "a value read from Redis did not open with the configured encryption keys (tampered, or sealed with another key); treated as absent (counted in gateway_redis_errors_total, warned once)");
                    }
                }
                opened
            }
        }
    }

    /// Counts a failed call against the node `key` was meant for and, when the node could
    /// not be reached (not an error it answered), marks it down until the next probe. Failed
    /// calls only: the success path does nothing here.
    fn node_failed(&self, link: &RedisLink, key: &str, unreachable: bool) {
        let table = link.health.load();
        if let Some(node) = table.node_for(key) {
            if unreachable {
                node.mark_down();
            }
            if let Some(m) = crate::metrics::get() {
                m.redis_node_errors
                    .with_label_values(&[self.what.label, &node.addr])
                    .inc();
            }
        }
    }

    /// Counts a call that did not use Redis; warns once per outage.
    fn failed(&self, why: &str) {
        if let Some(m) = crate::metrics::get() {
            m.redis_errors.with_label_values(&[self.what.label]).inc();
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            log::warn!(target: self.what.target, "{} ({why}); {}", self.what.lost, self.what.fallback);
        }
    }
}

/// A failure's category for the log: never the error's text, which can carry
/// connection details or echo request data.
fn category(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        "connection failed"
    } else {
        match e.kind() {
            redis::ErrorKind::AuthenticationFailed => "authentication failed",
            redis::ErrorKind::Server(_) => "server error",
            _ => "client error",
        }
    }
}
