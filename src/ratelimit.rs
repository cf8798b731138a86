//! Per-caller rate limits (SPEC §9): requests per minute, and tokens per minute reserved at admission
//! and settled with the real usage.
//!
//! Windows are fixed 60-second windows aligned to the epoch minute, so every gateway instance and
//! Redis agree on which window a request falls in and `reset` is the same everywhere. The known
//! cost of fixed windows: a caller can spend its whole limit at the end of one minute and again at
//! the start of the next, i.e. up to 2× the limit over a 60 s span that straddles a boundary.
//!
//! With a Redis URL the counters live in Redis and are shared by every instance; each operation is
//! one Lua script (check + INCRBY + PEXPIRE) so concurrent requests cannot race past a limit. Redis
//! down or slow (every call is bounded by [`REDIS_TIMEOUT`]): that call is counted by the local
//! in-memory limiter instead, so the gateway fails open to per-instance limits, never to an error.

use crate::redis_link;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LOG_TARGET: &str = "gateway:ratelimit";
const WINDOW_MS: u64 = 60_000;
/// Upper bound on every Redis round trip: a limit check must not become the slow part of a request.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// Keys outlive their window a little so an instance whose clock runs slightly behind still finds
/// the window's count.
const KEY_GRACE_MS: u64 = 5_000;
const SHARDS: usize = 16;
/// A shard map that grew past this during a burst is reallocated at the next window, not kept.
const SHRINK_ABOVE: usize = 4_096;

/// The outcome the proxy turns into headers (`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
/// `x-ratelimit-reset-requests` like OpenAI's "12s"/"1m0s" strings via `reset_header()`) and, when refused,
/// a 429 with `Retry-After: retry_after_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Time until the current window ends and the count starts again from zero.
    pub reset: Duration,
    /// Whole seconds to wait (at least 1) when refused; 0 when allowed.
    pub retry_after_secs: u64,
}

impl Decision {
    /// `reset` as OpenAI writes it (Go duration style): "250ms", "12s", "1m0s".
    pub fn reset_header(&self) -> String {
        format_reset(self.reset)
    }
}

/// Tokens held for one admitted request until [`RateLimiter::settle`] replaces them with the real
/// usage. Dropping it unsettled leaves the estimate counted, which errs on the safe side.
#[derive(Debug)]
#[must_use = "settle the reservation with the real usage, or the estimate stays counted"]
pub struct TokenReservation {
    caller: CallerId,
    window: u64,
    reserved: u64,
    backend: Backend,
}

impl TokenReservation {
    /// Tokens held by this reservation (the estimate, clamped to the limit).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }
}

/// Fixed-window request and token limits, in memory or shared through Redis.
pub struct RateLimiter {
    local: LocalCounters,
    redis: Option<RedisBackend>,
}

/// Shows the mode only: the Redis client would print its URL, which may hold a password.
impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("redis", &self.redis.is_some())
            .field("redis_healthy", &self.redis_healthy())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `redis_url` = one shared limit across every gateway instance when Some; None = in memory.
    /// Never connects here (the connection is made on first use, inside the runtime); an unparsable
    /// URL is logged without its text and the limiter runs in memory.
    pub fn new(redis_url: Option<&str>) -> Self {
        let target = redis_url.map(redis_link::RedisTarget::single);
        Self::with_redis(target.as_ref())
    }

    /// As [`RateLimiter::new`], on a Redis target (TLS files, Cluster, Sentinel).
    pub fn with_redis(target: Option<&redis_link::RedisTarget>) -> Self {
        Self::with_options(target, REDIS_TIMEOUT, redis_link::COOLDOWN)
    }

    fn with_options(
        target: Option<&redis_link::RedisTarget>,
        timeout: Duration,
        probe_interval: Duration,
    ) -> Self {
        let link = |t: &redis_link::RedisTarget| {
            if probe_interval == redis_link::COOLDOWN {
                redis_link::RedisLink::shared(t)
            } else {
                redis_link::RedisLink::private(t, probe_interval).map(std::sync::Arc::new)
            }
        };
        let redis = target.and_then(|t| match link(t) {
            Ok(link) => Some(RedisBackend::new(link, timeout)),
            Err(e) => {
                log::warn!(target: LOG_TARGET, "{e}; using in-memory limits");
                None
            }
        });
        Self {
            local: LocalCounters::new(),
            redis,
        }
    }

    /// Counts one request for `caller` against `limit_rpm` in the current minute window.
    /// A refused request is not counted; a limit of 0 refuses everything.
    pub async fn check_requests(&self, caller: &str, limit_rpm: u64) -> Decision {
        self.check_requests_at(caller, limit_rpm, now_ms()).await
    }

    async fn check_requests_at(&self, caller: &str, limit_rpm: u64, now: u64) -> Decision {
        let id = CallerId::of(caller);
        let (counted, _) = self
            .count(Kind::Requests, &id, window_of(now), 1, Some(limit_rpm), now)
            .await;
        decide(counted, limit_rpm, now)
    }

    /// Reserves `estimate` tokens for `caller` against `limit_tpm`; refused (allowed=false) when the window's
    /// reserved+used tokens would exceed the limit. Returns a handle to settle later.
    /// An estimate above the whole limit is clamped to it, so a large request can still run alone
    /// in an otherwise empty window instead of being refused forever.
    pub async fn reserve_tokens(
        &self,
        caller: &str,
        limit_tpm: u64,
        estimate: u64,
    ) -> (Decision, Option<TokenReservation>) {
        self.reserve_tokens_at(caller, limit_tpm, estimate, now_ms())
            .await
    }

    async fn reserve_tokens_at(
        &self,
        caller: &str,
        limit_tpm: u64,
        estimate: u64,
        now: u64,
    ) -> (Decision, Option<TokenReservation>) {
        let id = CallerId::of(caller);
        let window = window_of(now);
        let amount = estimate.min(limit_tpm);
        let (counted, backend) = self
            .count(
                Kind::Tokens,
                &id,
                window,
                to_i64(amount),
                Some(limit_tpm),
                now,
            )
            .await;
        let decision = decide(counted, limit_tpm, now);
        let reservation = decision.allowed.then_some(TokenReservation {
            caller: id,
            window,
            reserved: amount,
            backend,
        });
        (decision, reservation)
    }

    /// Replaces the estimate with the real usage (may add or give back tokens in the same window).
    /// Once the reservation's window is over, tokens above the estimate are charged to the current
    /// window (they were spent now) and an unused estimate is simply forgotten with its window.
    pub async fn settle(&self, reservation: TokenReservation, actual: u64) {
        self.settle_at(reservation, actual, now_ms()).await
    }

    async fn settle_at(&self, reservation: TokenReservation, actual: u64, now: u64) {
        let delta = to_i64(actual).saturating_sub(to_i64(reservation.reserved));
        let window = window_of(now);
        if reservation.window == window {
            if delta == 0 {
                return;
            }
            // Settle where the tokens were reserved: a local reservation never reached Redis.
            match (reservation.backend, &self.redis) {
                (Backend::Redis, Some(redis)) => {
                    let key = redis_key(Kind::Tokens, &reservation.caller, window);
                    // If this fails the estimate stays counted; the error is already logged/counted.
                    let _ = redis.run(key, delta, None, redis_ttl_ms(now)).await;
                }
                _ => {
                    self.local
                        .add(Kind::Tokens, &reservation.caller, window, delta, None);
                }
            }
        } else if delta > 0 {
            self.count(Kind::Tokens, &reservation.caller, window, delta, None, now)
                .await;
        }
    }

    /// Whether the shared Redis limit is in use right now: false when no Redis is configured or
    /// while the limiter has fallen back to local counts.
    pub fn redis_healthy(&self) -> bool {
        self.redis.as_ref().is_some_and(RedisBackend::healthy)
    }

    /// The Redis layer's handle (health, reload); `None` without Redis.
    pub fn redis_user(&self) -> Option<&redis_link::RedisUser> {
        self.redis.as_ref().map(|r| &r.user)
    }

    /// Counts `amount` in Redis when it is usable, else locally. `limit` None = unconditional.
    async fn count(
        &self,
        kind: Kind,
        id: &CallerId,
        window: u64,
        amount: i64,
        limit: Option<u64>,
        now: u64,
    ) -> (Counted, Backend) {
        if let Some(redis) = &self.redis {
            let key = redis_key(kind, id, window);
            if let Some(counted) = redis.run(key, amount, limit, redis_ttl_ms(now)).await {
                return (counted, Backend::Redis);
            }
        }
        (
            self.local.add(kind, id, window, amount, limit),
            Backend::Local,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    fn key_part(self) -> &'static str {
        match self {
            Kind::Requests => "req",
            Kind::Tokens => "tok",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    Redis,
}

/// The result of one counting operation: whether it was applied, and the window's count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    allowed: bool,
    count: u64,
}

/// A caller as 128 bits of SHA-256: keys in Redis and in memory never hold the raw caller string
/// (it may be derived from a client's key), and the map key is small and fixed-size.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CallerId([u8; 16]);

impl CallerId {
    fn of(caller: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(b"llmgw-ratelimit\0")
            .chain_update(caller.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    fn shard(&self) -> usize {
        usize::from(self.0[0]) % SHARDS
    }
}

impl std::fmt::Debug for CallerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallerId({})", hex::encode(&self.0[..4]))
    }
}

// ---- pure helpers ----

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The epoch-minute window `now_ms` falls in.
fn window_of(now_ms: u64) -> u64 {
    now_ms / WINDOW_MS
}

/// Time left until the window containing `now_ms` ends (1 ms ..= 60 s).
fn reset_in(now_ms: u64) -> Duration {
    Duration::from_millis(WINDOW_MS - now_ms % WINDOW_MS)
}

/// A key's lifetime: the rest of its window plus a grace for instance clock skew.
fn redis_ttl_ms(now_ms: u64) -> u64 {
    WINDOW_MS - now_ms % WINDOW_MS + KEY_GRACE_MS
}

/// `llmgw:rl:{req|tok}:{caller-hash}:{window}`.
fn redis_key(kind: Kind, id: &CallerId, window: u64) -> String {
    // `{caller}`: a caller's request and token counters share a Cluster slot.
    format!(
        "llmgw:rl:{}:{{{}}}:{}",
        kind.key_part(),
        hex::encode(id.0),
        window
    )
}

/// Whole seconds a refused client should wait: the reset rounded up, never 0.
fn retry_after_secs(reset: Duration) -> u64 {
    let secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    secs.max(1)
}

fn decide(counted: Counted, limit: u64, now_ms: u64) -> Decision {
    let reset = reset_in(now_ms);
    Decision {
        allowed: counted.allowed,
        limit,
        remaining: limit.saturating_sub(counted.count),
        reset,
        retry_after_secs: if counted.allowed {
            0
        } else {
            retry_after_secs(reset)
        },
    }
}

/// Go's `time.Duration` text at millisecond precision, as OpenAI's `x-ratelimit-reset-*` headers use:
/// "250ms", "12s", "12.5s", "1m0s", "1h2m3s". Sub-millisecond remainders round up so a pending
/// reset never reads "0s".
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 > 0);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1_000 % 60, ms % 1_000);
    let mut secs = s.to_string();
    if frac > 0 {
        let digits = format!("{frac:03}");
        secs.push('.');
        secs.push_str(digits.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

// ---- in memory ----

/// Exact fixed-window counters in a small sharded map.
///
/// Not `pingora_limits::rate::Rate`: it is a count-min sketch (collisions over-count, so one busy
/// caller could throttle another and "N admits exactly N" does not hold), its intervals start at
/// process start rather than the epoch minute (so they disagree with Redis and with `reset`), it
/// reads the clock itself (tests could not inject time), it has no atomic check-and-add (a refused
/// reservation would still be counted), and its reset path contains an `assert!`.
struct LocalCounters {
    shards: Box<[Mutex<Shard>]>,
    /// Newest window seen; the first call in a new window sweeps every shard, so a shard no caller
    /// touches any more does not keep its last window's entries forever.
    latest_window: AtomicU64,
}

/// One shard holds only the current window: a new window clears it, which bounds memory to the
/// callers seen in one minute.
#[derive(Default)]
struct Shard {
    window: u64,
    counts: HashMap<(Kind, CallerId), u64>,
}

impl LocalCounters {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            latest_window: AtomicU64::new(0),
        }
    }

    fn sweep_if_new(&self, window: u64) {
        let latest = self.latest_window.load(Ordering::Relaxed);
        if window <= latest
            || self
                .latest_window
                .compare_exchange(latest, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for slot in self.shards.iter() {
            Self::advance(&mut slot.lock().unwrap_or_else(|e| e.into_inner()), window);
        }
    }

    /// Moves a shard to `window`, dropping the counts of the window it held.
    fn advance(shard: &mut Shard, window: u64) {
        if window > shard.window {
            shard.window = window;
            if shard.counts.capacity() > SHRINK_ABOVE {
                shard.counts = HashMap::new();
            } else {
                shard.counts.clear();
            }
        }
    }

    /// Adds `amount` (negative gives back, floored at 0) to the caller's count in `window`; with a
    /// `limit`, a positive amount that would exceed it is refused and not counted.
    fn add(
        &self,
        kind: Kind,
        id: &CallerId,
        window: u64,
        amount: i64,
        limit: Option<u64>,
    ) -> Counted {
        self.sweep_if_new(window);
        let Some(slot) = self.shards.get(id.shard()) else {
            return Counted {
                allowed: true,
                count: 0,
            };
        };
        // A poisoned shard only means another thread panicked mid-update of plain integers.
        let mut shard = slot.lock().unwrap_or_else(|e| e.into_inner());
        Self::advance(&mut shard, window);
        if window < shard.window {
            // A count for a finished window (clock stepped back): nothing left to limit.
            return Counted {
                allowed: true,
                count: 0,
            };
        }
        let current = shard.counts.get(&(kind, *id)).copied().unwrap_or(0);
        let next = if amount >= 0 {
            current.saturating_add(amount.unsigned_abs())
        } else {
            current.saturating_sub(amount.unsigned_abs())
        };
        if let Some(limit) = limit {
            if amount > 0 && next > limit {
                return Counted {
                    allowed: false,
                    count: current,
                };
            }
        }
        shard.counts.insert((kind, *id), next);
        Counted {
            allowed: true,
            count: next,
        }
    }
}

// ---- Redis ----

/// KEYS[1] counter; ARGV[1] amount (negative gives back, floored at 0); ARGV[2] limit (-1 = no
/// check); ARGV[3] TTL ms, set when the key has none (its first use in the window).
/// Returns {applied 0|1, count after, TTL ms}. Check and increment are one atomic step.
const COUNT_SCRIPT: &str = r"
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if limit >= 0 and amount > 0 and cur + amount > limit then
  return {0, cur, redis.call('PTTL', KEYS[1])}
end
local new = redis.call('INCRBY', KEYS[1], amount)
if new < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  new = 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {1, new, ttl}
";

/// The limiter's side of the shared Redis link: the count script, run under the link's bound
/// and circuit breaker.
struct RedisBackend {
    user: redis_link::RedisUser,
    script: redis::Script,
    timeout: Duration,
}

const RATELIMIT_USE: redis_link::Use = redis_link::Use {
    label: "ratelimit",
    target: LOG_TARGET,
    lost: "Redis unavailable for rate limits",
    fallback: "enforcing per-instance limits until it is back",
    back: "Redis is back; rate limits are shared again",
};

impl RedisBackend {
    fn new(link: std::sync::Arc<redis_link::RedisLink>, timeout: Duration) -> Self {
        Self {
            user: redis_link::RedisUser::new(link, &RATELIMIT_USE),
            script: redis::Script::new(COUNT_SCRIPT),
            timeout,
        }
    }

    fn healthy(&self) -> bool {
        self.user.healthy()
    }

    /// Runs the count script; None when Redis is skipped (outage, waiting for the next probe) or
    /// failed, in which case the caller counts locally.
    async fn run(
        &self,
        key: String,
        amount: i64,
        limit: Option<u64>,
        ttl_ms: u64,
    ) -> Option<Counted> {
        let limit = limit.map_or(-1, to_i64);
        let script = &self.script;
        let key = key.as_str();
        let (applied, count, _ttl) = self
            .user
            .call(key, self.timeout, |mut conn| async move {
                script
                    .key(key)
                    .arg(amount)
                    .arg(limit)
                    .arg(ttl_ms)
                    .invoke_async::<(u8, i64, i64)>(&mut conn)
                    .await
            })
            .await?;
        Some(Counted {
            allowed: applied == 1,
            count: u64::try_from(count).unwrap_or(0),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Instant;

    // ---- pure helpers ----

    #[test]
    fn windows_align_to_the_epoch_minute() {
        assert_eq!(reset_in(T0), Duration::from_secs(60), "T0 is on a boundary");
        assert_eq!(window_of(0), 0);
        assert_eq!(window_of(59_999), 0);
        assert_eq!(window_of(60_000), 1);
        assert_eq!(
            reset_in(0),
            Duration::from_secs(60),
            "a window starts with 60 s left"
        );
        assert_eq!(reset_in(59_999), Duration::from_millis(1));
        assert_eq!(reset_in(60_000 * 7 + 48_000), Duration::from_secs(12));
        assert_eq!(redis_ttl_ms(60_000 * 3 + 10_000), 55_000);
    }

    #[test]
    fn reset_header_matches_openai_go_style() {
        let cases = [
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(12), "12s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(12_500), "12.5s"),
            (Duration::from_millis(1_020), "1.02s"),
            (Duration::from_millis(61_001), "1m1.001s"),
            (Duration::from_secs(3_723), "1h2m3s"),
            (Duration::from_secs(3_600), "1h0m0s"),
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1), "1ms"),
            (Duration::from_micros(999_500), "1s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_reset(d), want, "formatting {d:?}");
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(12_001)), 13);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn redis_keys_never_hold_the_raw_caller() {
        let key = redis_key(Kind::Requests, &CallerId::of("sk-secret-abc"), 29_000_000);
        assert!(!key.contains("sk-secret"), "raw caller leaked into {key}");
        assert!(key.starts_with("llmgw:rl:req:"), "{key}");
        assert!(key.ends_with(":29000000"), "{key}");
        assert_eq!(key.len(), "llmgw:rl:req:{".len() + 32 + "}:29000000".len());
        let tok_same = redis_key(Kind::Tokens, &CallerId::of("sk-secret-abc"), 29_000_000);
        assert_eq!(
            redis_link::keys::hashed_part(&key),
            redis_link::keys::hashed_part(&tok_same),
            "one caller's counters share a Cluster slot"
        );
        let tok = redis_key(Kind::Tokens, &CallerId::of("sk-secret-abc"), 1);
        assert!(tok.starts_with("llmgw:rl:tok:"), "{tok}");
        assert!(!format!("{:?}", CallerId::of("sk-secret-abc")).contains("secret"));
    }

    #[test]
    fn decision_reports_remaining_and_retry_after() {
        let now = 60_000 * 5 + 15_500;
        let ok = decide(
            Counted {
                allowed: true,
                count: 3,
            },
            10,
            now,
        );
        assert_eq!(
            ok,
            Decision {
                allowed: true,
                limit: 10,
                remaining: 7,
                reset: Duration::from_millis(44_500),
                retry_after_secs: 0
            }
        );
        assert_eq!(ok.reset_header(), "44.5s");
        let refused = decide(
            Counted {
                allowed: false,
                count: 10,
            },
            10,
            now,
        );
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_secs, 45);
    }

    // ---- in memory ----

    const T0: u64 = 29_916_666 * WINDOW_MS; // November 2026, on a minute boundary

    #[tokio::test]
    async fn memory_admits_exactly_n_per_window_then_resets() {
        let rl = RateLimiter::new(None);
        for i in 0..5u64 {
            let d = rl.check_requests_at("team-a", 5, T0 + i * 1_000).await;
            assert!(d.allowed, "request {i} of 5 must pass");
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = rl.check_requests_at("team-a", 5, T0 + 48_000).await;
        assert!(!refused.allowed, "the 6th request in the window is refused");
        assert_eq!(refused.retry_after_secs, 12);
        assert_eq!(refused.reset_header(), "12s");
        let other = rl.check_requests_at("team-b", 5, T0 + 48_000).await;
        assert!(other.allowed, "callers are counted separately");
        let next = rl.check_requests_at("team-a", 5, T0 + WINDOW_MS).await;
        assert!(next.allowed, "a new window starts from zero");
        assert_eq!(next.remaining, 4);
        assert!(!rl.redis_healthy(), "no Redis configured");
    }

    #[tokio::test]
    async fn memory_limit_zero_refuses() {
        let rl = RateLimiter::new(None);
        let d = rl.check_requests_at("blocked", 0, T0).await;
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[tokio::test]
    async fn memory_is_exact_under_concurrency() {
        let rl = std::sync::Arc::new(RateLimiter::new(None));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let rl = rl.clone();
                tokio::spawn(
                    async move { rl.check_requests_at("hammer", 50, T0 + 1).await.allowed },
                )
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            allowed += usize::from(t.await.unwrap_or(false));
        }
        assert_eq!(allowed, 50, "exactly the limit is admitted");
    }

    #[tokio::test]
    async fn memory_drops_old_windows() {
        let rl = RateLimiter::new(None);
        for i in 0..100 {
            rl.check_requests_at(&format!("c{i}"), 10, T0).await;
        }
        rl.check_requests_at("late", 10, T0 + WINDOW_MS).await;
        let held: usize = rl
            .local
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.counts.len()).unwrap_or(0))
            .sum();
        assert!(
            held <= SHARDS,
            "only the new window's entries may remain, found {held}"
        );
    }

    #[tokio::test]
    async fn memory_token_reservations_hold_then_settle() {
        let rl = RateLimiter::new(None);
        let (d1, r1) = rl.reserve_tokens_at("k", 1_000, 600, T0).await;
        assert!(d1.allowed);
        assert_eq!(d1.remaining, 400);
        let (d2, r2) = rl.reserve_tokens_at("k", 1_000, 600, T0 + 10).await;
        assert!(!d2.allowed, "600 + 600 reserved would exceed 1000");
        assert!(r2.is_none(), "a refused reservation holds nothing");
        let r1 = r1.expect("an allowed reservation carries a handle");
        assert_eq!(r1.reserved(), 600);
        rl.settle_at(r1, 100, T0 + 20).await;
        let (d3, r3) = rl.reserve_tokens_at("k", 1_000, 600, T0 + 30).await;
        assert!(d3.allowed, "settling 100 gave 500 back");
        assert_eq!(d3.remaining, 300, "100 used + 600 reserved");
        let r3 = r3.expect("an allowed reservation carries a handle");
        rl.settle_at(r3, 800, T0 + 40).await;
        let (d4, _) = rl.reserve_tokens_at("k", 1_000, 1, T0 + 50).await;
        assert_eq!(
            d4.remaining, 99,
            "settling above the estimate charges the extra"
        );
    }

    #[tokio::test]
    async fn memory_estimate_above_limit_runs_alone() {
        let rl = RateLimiter::new(None);
        let (d, r) = rl.reserve_tokens_at("big", 100, 5_000, T0).await;
        assert!(d.allowed, "clamped to the limit in an empty window");
        assert_eq!(r.map(|r| r.reserved()), Some(100));
        let (d2, _) = rl.reserve_tokens_at("big", 100, 1, T0 + 1).await;
        assert!(!d2.allowed);
    }

    #[tokio::test]
    async fn memory_settle_after_the_window_charges_only_overuse() {
        let rl = RateLimiter::new(None);
        let (_, r) = rl.reserve_tokens_at("s", 1_000, 500, T0 + 59_000).await;
        let r = r.expect("an allowed reservation carries a handle");
        rl.settle_at(r, 700, T0 + WINDOW_MS + 1_000).await;
        let (d, _) = rl
            .reserve_tokens_at("s", 1_000, 0, T0 + WINDOW_MS + 2_000)
            .await;
        assert_eq!(
            d.remaining, 800,
            "the 200 over the estimate land in the new window"
        );
        let (_, r) = rl.reserve_tokens_at("u", 1_000, 500, T0 + 59_000).await;
        let r = r.expect("an allowed reservation carries a handle");
        rl.settle_at(r, 100, T0 + WINDOW_MS + 1_000).await;
        let (d, _) = rl
            .reserve_tokens_at("u", 1_000, 0, T0 + WINDOW_MS + 2_000)
            .await;
        assert_eq!(
            d.remaining, 1_000,
            "an unused estimate is forgotten with its window"
        );
    }

    // ---- Redis ----

    struct RedisServer {
        child: std::process::Child,
        port: u16,
    }

    impl RedisServer {
        fn free_port() -> u16 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        }

        async fn start(port: u16) -> Self {
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--bind", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            // Owned at once so Drop kills it even if it never starts listening.
            let server = Self { child, port };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("redis-server did not listen on {port}");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn test_limiter(url: &str) -> std::sync::Arc<RateLimiter> {
        // A generous timeout on a loaded 2-CPU test box; the outage test measures the real one.
        std::sync::Arc::new(RateLimiter::with_options(
            Some(&redis_link::RedisTarget::single(url)),
            Duration::from_millis(500),
            Duration::from_millis(200),
        ))
    }

    fn redis_errors() -> u64 {
        crate::metrics::get()
            .map(|m| m.redis_errors.with_label_values(&["ratelimit"]).get())
            .unwrap_or(0)
    }

    async fn hammer(
        limiters: &[std::sync::Arc<RateLimiter>],
        caller: &str,
        n: usize,
        limit: u64,
        now: u64,
    ) -> usize {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let rl = limiters[i % limiters.len()].clone();
                let caller = caller.to_owned();
                tokio::spawn(async move { rl.check_requests_at(&caller, limit, now).await.allowed })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            allowed += usize::from(t.await.unwrap_or(false));
        }
        allowed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_shares_one_exact_limit_across_instances() {
        let server = RedisServer::start(RedisServer::free_port()).await;
        let (a, b) = (test_limiter(&server.url()), test_limiter(&server.url()));
        // Connect both first so the hammer measures counting, not connection setup.
        assert!(a.check_requests_at("warm", 10, T0).await.allowed);
        assert!(b.check_requests_at("warm", 10, T0).await.allowed);
        assert!(a.redis_healthy() && b.redis_healthy());

        let allowed = hammer(&[a.clone(), b.clone()], "shared", 200, 50, T0 + 1).await;
        assert_eq!(
            allowed, 50,
            "two instances on one Redis admit exactly the limit in total"
        );
        let d = b.check_requests_at("shared", 50, T0 + 2).await;
        assert!(
            !d.allowed && d.remaining == 0,
            "the other instance sees the shared count: {d:?}"
        );

        // The key is hashed and expires with its window.
        let client = redis::Client::open(server.url()).expect("test Redis connection");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("test Redis connection");
        let key = redis_key(Kind::Requests, &CallerId::of("shared"), window_of(T0));
        let (count, pttl): (u64, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut conn)
            .await
            .expect("test Redis connection");
        assert_eq!(count, 50, "refused requests are not counted");
        assert!(
            pttl > 0 && pttl <= (WINDOW_MS + KEY_GRACE_MS) as i64,
            "key must expire, PTTL {pttl}"
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("test Redis connection");
        assert!(
            keys.iter()
                .all(|k| !k.contains("shared") && !k.contains("warm")),
            "{keys:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_token_reservations_are_exact_and_settle() {
        let server = RedisServer::start(RedisServer::free_port()).await;
        let (a, b) = (test_limiter(&server.url()), test_limiter(&server.url()));
        assert!(a.check_requests_at("warm", 10, T0).await.allowed);
        assert!(b.check_requests_at("warm", 10, T0).await.allowed);

        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let rl = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { rl.reserve_tokens_at("tpm", 1_000, 30, T0 + 1).await })
            })
            .collect();
        let mut held = Vec::new();
        for t in tasks {
            if let Ok((d, Some(r))) = t.await {
                assert!(d.allowed);
                held.push(r);
            }
        }
        assert_eq!(
            held.len(),
            33,
            "1000 / 30 → exactly 33 concurrent reservations fit"
        );
        assert!(held.iter().all(|r| r.backend == Backend::Redis));
        // Settle every reservation at 10 tokens: 33 × 20 given back.
        for r in held {
            b.settle_at(r, 10, T0 + 2).await;
        }
        let (d, r) = a.reserve_tokens_at("tpm", 1_000, 0, T0 + 3).await;
        assert_eq!(
            d.remaining,
            1_000 - 330,
            "settled usage replaces the estimates"
        );
        assert!(r.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_outage_falls_back_to_local_then_recovers() {
        let port = RedisServer::free_port();
        let mut server = RedisServer::start(port).await;
        let url = server.url();
        let rl = std::sync::Arc::new(RateLimiter::with_options(
            Some(&redis_link::RedisTarget::single(&url)),
            REDIS_TIMEOUT,
            Duration::from_millis(200),
        ));
        let other = test_limiter(&url);
        assert!(rl.check_requests_at("warm", 10, T0).await.allowed);
        assert!(rl.redis_healthy());

        server.stop();
        let errors_before = redis_errors();
        for i in 0..5 {
            let started = Instant::now();
            let d = rl.check_requests_at("outage", 3, T0 + 1).await;
            let took = started.elapsed();
            assert!(
                took < REDIS_TIMEOUT + Duration::from_millis(150),
                "check {i} must answer within the timeout, took {took:?}"
            );
            assert_eq!(
                d.allowed,
                i < 3,
                "local limit of 3 applies during the outage (check {i})"
            );
        }
        assert!(!rl.redis_healthy(), "the outage is visible");
        assert!(redis_errors() > errors_before, "failures are counted");
        let (d, r) = rl.reserve_tokens_at("outage", 100, 40, T0 + 1).await;
        assert!(d.allowed);
        let r = r.expect("an allowed reservation carries a handle");
        assert_eq!(r.backend, Backend::Local);

        let _server = RedisServer::start(port).await;
        let mut recovered = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rl.check_requests_at("probe", 1_000, T0 + 2).await;
            other.check_requests_at("probe", 1_000, T0 + 2).await;
            if rl.redis_healthy() && other.redis_healthy() {
                recovered = true;
                break;
            }
        }
        assert!(recovered, "the limiter must reconnect once Redis is back");
        // The local reservation settles locally even though Redis is back.
        rl.settle_at(r, 10, T0 + 3).await;
        let allowed = hammer(&[rl.clone(), other.clone()], "after", 100, 20, T0 + 4).await;
        assert_eq!(allowed, 20, "shared again after recovery");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn slow_redis_costs_one_timeout_then_goes_local() {
        let server = RedisServer::start(RedisServer::free_port()).await;
        let rl = RateLimiter::with_options(
            Some(&redis_link::RedisTarget::single(&server.url())),
            REDIS_TIMEOUT,
            Duration::from_secs(5),
        );
        assert!(rl.check_requests_at("warm", 10, T0).await.allowed);
        let signal = |sig: &str| {
            std::process::Command::new("kill")
                .args([sig, &server.child.id().to_string()])
                .status()
                .expect("kill(1)")
        };
        signal("-STOP"); // Redis hangs: connections stay open, answers never come
        let started = Instant::now();
        let first = rl.check_requests_at("slow", 2, T0 + 1).await;
        let first_took = started.elapsed();
        assert!(
            first.allowed,
            "a timed-out call falls back to the local limit"
        );
        assert!(
            first_took >= REDIS_TIMEOUT && first_took < REDIS_TIMEOUT + Duration::from_millis(150),
            "the first call waits exactly the timeout, took {first_took:?}"
        );
        let started = Instant::now();
        let rest: Vec<bool> = [
            rl.check_requests_at("slow", 2, T0 + 2).await.allowed,
            rl.check_requests_at("slow", 2, T0 + 3).await.allowed,
        ]
        .into();
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "later calls skip Redis until the next probe, took {:?}",
            started.elapsed()
        );
        assert_eq!(rest, [true, false], "the local limit of 2 holds");
        assert!(!rl.redis_healthy());
        signal("-CONT");
    }

    /// One breaker for every use of a Redis URL: once the limiter paid a timeout, the cache
    /// skips Redis at once instead of paying its own, and one success reopens it for both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failure_opens_the_breaker_for_every_use_of_the_url() {
        use redis_link::{RedisLink, RedisUser, Use};
        const OTHER: Use = Use {
            label: "cache",
            target: "gateway:cache",
            lost: "test use unavailable",
            fallback: "none",
            back: "test use back",
        };
        let server = RedisServer::start(RedisServer::free_port()).await;
        let rl = RateLimiter::new(Some(&server.url()));
        let other = RedisUser::new(
            RedisLink::shared(&redis_link::RedisTarget::single(&server.url())).unwrap(),
            &OTHER,
        );
        let ping = |mut c: redis_link::Conn| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        assert!(rl.check_requests_at("warm", 10, T0).await.allowed);
        assert_eq!(
            other.call("k", REDIS_TIMEOUT, ping).await.as_deref(),
            Some("PONG")
        );
        let signal = |sig: &str| {
            std::process::Command::new("kill")
                .args([sig, &server.child.id().to_string()])
                .status()
                .expect("kill(1)")
        };
        signal("-STOP");
        let started = Instant::now();
        assert!(rl.check_requests_at("x", 10, T0 + 1).await.allowed);
        assert!(
            started.elapsed() >= REDIS_TIMEOUT,
            "the limiter paid the timeout"
        );
        let started = Instant::now();
        assert_eq!(other.call("k", REDIS_TIMEOUT, ping).await, None);
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "the other use skips Redis at once, took {:?}",
            started.elapsed()
        );
        assert!(!other.healthy() && !rl.redis_healthy());
        signal("-CONT");
        // After the cooldown one call probes, reconnects and closes the breaker for both.
        tokio::time::sleep(redis_link::COOLDOWN + Duration::from_millis(50)).await;
        let started = Instant::now();
        assert_eq!(
            other.call("k", REDIS_TIMEOUT, ping).await.as_deref(),
            Some("PONG")
        );
        assert!(
            started.elapsed() < REDIS_TIMEOUT,
            "the probe is bounded too"
        );
        assert!(rl.redis_healthy(), "one success closes it for every use");
    }

    #[tokio::test]
    async fn redis_unreachable_from_the_start_never_errors() {
        let port = RedisServer::free_port(); // nothing listens here
        let rl = RateLimiter::new(Some(&format!("redis://:hunter2@127.0.0.1:{port}/")));
        let d = rl.check_requests_at("x", 1, T0).await;
        assert!(d.allowed, "fail open to the local limit");
        assert!(
            !rl.check_requests_at("x", 1, T0 + 1).await.allowed,
            "the local limit still holds"
        );
        assert!(!rl.redis_healthy());
        assert!(
            !format!("{rl:?}").contains("hunter2"),
            "Debug must not show the URL"
        );
    }

    #[tokio::test]
    async fn invalid_redis_url_runs_in_memory() {
        let rl = RateLimiter::new(Some("not a url"));
        assert!(rl.redis.is_none());
        assert!(rl.check_requests_at("x", 1, T0).await.allowed);
    }
}
