//! Routing decisions (SPEC §6): which peer to try next, in which order to try candidates, what
//! to do after a failed attempt, and the passive-health and latency state those choices read.
//!
//! Everything here is pure and free of I/O: the clock (`now: Instant`) and randomness
//! (`&mut fastrand::Rng`) are passed in, so every rule is unit-tested deterministically below.
//! The shared state (`LatencyEwma`, `PassiveHealth`) is lock-free atomics, cheap to touch on
//! the request path.
//!
//! Decisions worth knowing when wiring this in:
//! - Round robin is done here, not by Pingora's `RoundRobin` selection, because the chooser must
//!   combine weights with health, passive cooling and this request's failures. It is a stateless
//!   stride permutation over the weights driven by one shared `AtomicUsize` counter: every
//!   `W` consecutive picks (W = sum of the eligible peers' weights) give each peer exactly its
//!   weight, interleaved rather than in bursts.
//! - `cost_optimized` orders *candidates* by price; peers inside one provider are chosen round
//!   robin. `performance` ignores weights: it goes where the latency is.

use crate::config::Strategy;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::config::Price;

/// Weight of the newest time-to-first-byte sample in the latency average.
pub const EWMA_ALPHA: f64 = 0.3;
/// Consecutive failures after which a peer is cooled down.
pub const FAILURE_THRESHOLD: u32 = 3;
/// First cooldown; each further consecutive failure doubles it.
pub const BASE_COOLDOWN: Duration = Duration::from_secs(5);
/// The longest cooldown.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);
/// Probability that `performance` tries a peer other than the fastest, so a peer that got
/// faster (or recovered) is noticed.
pub const EXPLORE: f64 = 0.05;
/// First backoff step; the full-jitter wait after attempt `a` is uniform in
/// `[0, min(BACKOFF_CAP, BACKOFF_BASE * 2^a)]`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest backoff wait.
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// A `Retry-After` up to this is waited for; a longer one moves on at once.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(2);
/// Output tokens assumed when a generation request sets no limit.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 256;
/// Input tokens counted per image part (OpenAI's cost of a 1024×1024 high-detail image).
pub const IMAGE_TOKENS: u64 = 765;
/// Input tokens counted per chat message for role and framing.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

// ---------------------------------------------------------------------------------------------
// Latency

/// Bits that no real average can have (a NaN): "no sample yet".
const NO_SAMPLE: u64 = u64::MAX;

/// Per-peer EWMA of time-to-first-byte, lock-free (an `AtomicU64` holding `f64` nanoseconds),
/// updated by the request path after each attempt that got a response header.
///
/// A timed-out attempt should be observed as its timeout, so a peer that hangs is not left
/// "unmeasured" (which `performance` would try first).
#[derive(Debug)]
pub struct LatencyEwma {
    bits: AtomicU64,
}

impl Default for LatencyEwma {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyEwma {
    /// No sample yet.
    pub fn new() -> Self {
        LatencyEwma {
            bits: AtomicU64::new(NO_SAMPLE),
        }
    }

    /// Folds in one time-to-first-byte sample; the first sample is taken as is.
    pub fn observe(&self, ttfb: Duration) {
        let sample = ttfb.as_nanos() as f64;
        // The closure always returns Some, so this cannot fail; the result carries nothing.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let next = if old == NO_SAMPLE {
                    sample
                } else {
                    EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * f64::from_bits(old)
                };
                Some(next.to_bits())
            });
    }

    /// The current average, or `None` before the first sample.
    pub fn get(&self) -> Option<Duration> {
        let bits = self.bits.load(Ordering::Relaxed);
        if bits == NO_SAMPLE {
            return None;
        }
        let nanos = f64::from_bits(bits);
        (nanos.is_finite() && nanos >= 0.0).then(|| Duration::from_nanos(nanos.round() as u64))
    }
}

// ---------------------------------------------------------------------------------------------
// Passive health

/// Passive health of one peer: consecutive failures cool it down (skipped while other peers
/// exist) until a success or a passing active health check. Lock-free atomics.
///
/// Instants are stored as nanoseconds since this value's own epoch (the `Instant` it was
/// created at): `now` values from before that count as the epoch itself.
///
/// After a cooldown runs out the peer is tried again ("half-open"): the failure counter is
/// kept, so one more failure cools it again for twice as long, while a success resets it.
#[derive(Debug)]
pub struct PassiveHealth {
    epoch: Instant,
    threshold: u32,
    base_cooldown: Duration,
    failures: AtomicU32,
    /// Nanoseconds since `epoch` until which the peer cools; 0 = not cooling.
    cooling_until: AtomicU64,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl PassiveHealth {
    /// Healthy, with the default policy (3 failures, 5 s doubling to at most 60 s).
    pub fn new() -> Self {
        Self::with_policy(FAILURE_THRESHOLD, BASE_COOLDOWN)
    }

    /// Healthy, cooling after `threshold` consecutive failures (at least 1) for `cooldown`,
    /// doubling per further failure up to `MAX_COOLDOWN`.
    pub fn with_policy(threshold: u32, cooldown: Duration) -> Self {
        PassiveHealth {
            epoch: Instant::now(),
            threshold: threshold.max(1),
            base_cooldown: cooldown.min(MAX_COOLDOWN),
            failures: AtomicU32::new(0),
            cooling_until: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// An attempt on this peer succeeded: forget its failures and end any cooldown.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.cooling_until.store(0, Ordering::Relaxed);
    }

    /// An attempt on this peer failed (see `FailureKind::is_peer_failure`). From the
    /// `threshold`-th consecutive failure on, the peer cools for the base cooldown, doubled per
    /// further failure and capped at `MAX_COOLDOWN`. Returns true when this failure started or
    /// extended a cooldown.
    pub fn record_failure(&self, now: Instant) -> bool {
        let previous = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        let failures = previous.saturating_add(1);
        if failures < self.threshold {
            return false;
        }
        let doublings = (failures - self.threshold).min(16);
        let cooldown = self
            .base_cooldown
            .saturating_mul(1u32 << doublings)
            .min(MAX_COOLDOWN);
        let until = self
            .nanos(now)
            .saturating_add(u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        let before = self.cooling_until.fetch_max(until, Ordering::Relaxed);
        until > before
    }

    /// Whether the peer is cooling down at `now`.
    pub fn is_cooling(&self, now: Instant) -> bool {
        self.cooldown_left(now).is_some()
    }

    /// How much longer the peer cools, for `/health/providers`.
    pub fn cooldown_left(&self, now: Instant) -> Option<Duration> {
        let until = self.cooling_until.load(Ordering::Relaxed);
        let now = self.nanos(now);
        (until != 0 && now < until).then(|| Duration::from_nanos(until - now))
    }

    /// Consecutive failures since the last success or clear.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// An active health check passed: the peer is trusted again.
    pub fn clear(&self) {
        self.record_success();
    }
}

// ---------------------------------------------------------------------------------------------
// Peer choice

/// One peer as the chooser sees it, built by the caller for each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    /// The caller's index of this peer; `choose_peer` returns it.
    pub index: usize,
    /// Round-robin weight; 0 counts as 1 (as in the provider pools).
    pub weight: usize,
    /// The active health check's verdict.
    pub healthy: bool,
    /// `PassiveHealth::is_cooling` now.
    pub cooling: bool,
    /// `LatencyEwma::get`.
    pub ewma: Option<Duration>,
    /// Failed attempts on this peer during the current request.
    pub failures_this_request: u32,
}

/// Chooses the peer for the next attempt and returns its `PeerView::index`, or `None` when no
/// peer is healthy.
///
/// Unhealthy peers are never chosen. Among the rest only the preferred tier is considered: not
/// cooling before cooling (cooling peers only when nothing else is left), then fewest failures
/// in this request. Inside the tier:
/// - `RoundRobin` and `CostOptimized`: weighted round robin driven by `rr` (one counter shared
///   by all requests to this provider); see `weighted_pick`.
/// - `Performance`: a peer without a latency sample first (chosen at random among such), else
///   the lowest EWMA, except that with probability `EXPLORE` a random other peer of the tier.
pub fn choose_peer(
    strategy: Strategy,
    peers: &[PeerView],
    rr: &AtomicUsize,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let tier = preferred_tier(peers);
    if tier.is_empty() {
        return None;
    }
    match strategy {
        Strategy::RoundRobin | Strategy::CostOptimized => {
            let turn = rr.fetch_add(1, Ordering::Relaxed);
            weighted_pick(&tier, turn)
        }
        Strategy::Performance => fastest_or_explore(&tier, rng),
    }
}

/// The healthy peers with the best `(cooling, failures_this_request)`.
fn preferred_tier(peers: &[PeerView]) -> Vec<&PeerView> {
    let rank = |p: &PeerView| (p.cooling, p.failures_this_request);
    let Some(best) = peers.iter().filter(|p| p.healthy).map(rank).min() else {
        return Vec::new();
    };
    peers
        .iter()
        .filter(|p| p.healthy && rank(p) == best)
        .collect()
}

/// Weighted round robin without per-peer state: turn `t` maps to slot `t mod W` (W = total
/// weight), the slot is permuted by a stride coprime to W near W/φ, and the permuted slot falls
/// into one peer's span of `weight` slots. Each run of W turns therefore gives every peer
/// exactly its weight, and the golden-ratio stride interleaves them (1:1:2 → A C C B … rather
/// than A B C C; 5:1:1 → A A A B A C A).
fn weighted_pick(tier: &[&PeerView], turn: usize) -> Option<usize> {
    let weight = |p: &PeerView| p.weight.max(1) as u128;
    let total: u128 = tier.iter().map(|p| weight(p)).sum();
    if total == 0 {
        return None;
    }
    let slot = (turn as u128 % total) * stride(total) % total;
    let mut start = 0u128;
    for p in tier {
        start += weight(p);
        if slot < start {
            return Some(p.index);
        }
    }
    tier.last().map(|p| p.index)
}

/// The largest number ≤ `total`·0.618 that is coprime to `total` (1 at worst).
fn stride(total: u128) -> u128 {
    let mut s = (total.saturating_mul(618_034) / 1_000_000).max(1);
    while s > 1 && gcd(s, total) != 1 {
        s -= 1;
    }
    s
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn fastest_or_explore(tier: &[&PeerView], rng: &mut fastrand::Rng) -> Option<usize> {
    let unmeasured: Vec<&&PeerView> = tier.iter().filter(|p| p.ewma.is_none()).collect();
    if !unmeasured.is_empty() {
        return Some(unmeasured[rng.usize(..unmeasured.len())].index);
    }
    let (best, _) = tier.iter().enumerate().min_by_key(|(i, p)| (p.ewma, *i))?;
    if tier.len() > 1 && rng.f64() < EXPLORE {
        // A uniform pick among the others: draw from len-1 positions and skip over `best`.
        let mut other = rng.usize(..tier.len() - 1);
        if other >= best {
            other += 1;
        }
        return tier.get(other).map(|p| p.index);
    }
    tier.get(best).map(|p| p.index)
}

// ---------------------------------------------------------------------------------------------
// Candidate order

/// Orders candidates for `cost_optimized`: cheapest first; unknown (or non-finite) costs last;
/// equal costs keep their configured order.
pub fn order_by_cost<T>(cands: &mut [T], cost: impl Fn(&T) -> Option<f64>) {
    cands.sort_by_cached_key(|c| match cost(c).filter(|x| x.is_finite()) {
        Some(x) => (false, TotalF64(x)),
        None => (true, TotalF64(0.0)),
    });
}

/// Orders candidates for `performance` by their latency (e.g. the best EWMA among the
/// candidate provider's peers): unmeasured first so that each gets measured, then fastest
/// first; ties keep their configured order.
pub fn order_by_latency<T>(cands: &mut [T], latency: impl Fn(&T) -> Option<Duration>) {
    cands.sort_by_cached_key(|c| match latency(c) {
        None => (false, Duration::ZERO),
        Some(d) => (true, d),
    });
}

/// An `f64` ordered by `total_cmp`, for sort keys.
#[derive(Debug, Clone, Copy)]
struct TotalF64(f64);

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Prices and token estimates

/// Built-in list prices, USD per 1M tokens (standard tier, text, prompts ≤ 200k tokens), as
/// published by OpenAI and Google in 2025. Approximate: override with `pricing:` in the config.
/// `text-embedding-004` has no entry (no reliable per-token list price): price it under
/// `pricing:` if `cost_optimized` should rank it.
const PRICES: &[(&str, &str, f64, f64)] = &[
    ("openai", "gpt-4o", 2.50, 10.00),
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    ("openai", "gpt-4.1", 2.00, 8.00),
    ("openai", "gpt-4.1-mini", 0.40, 1.60),
    ("openai", "gpt-4.1-nano", 0.10, 0.40),
    ("openai", "o3", 2.00, 8.00),
    ("openai", "o3-mini", 1.10, 4.40),
    ("openai", "o4-mini", 1.10, 4.40),
    ("openai", "text-embedding-3-small", 0.02, 0.0),
    ("openai", "text-embedding-3-large", 0.13, 0.0),
    ("gemini", "gemini-2.5-pro", 1.25, 10.00),
    ("gemini", "gemini-2.5-flash", 0.30, 2.50),
    ("gemini", "gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40),
    ("gemini", "gemini-3-pro-preview", 2.00, 12.00),
    ("gemini", "gemini-embedding-001", 0.15, 0.0),
];

/// The price of `provider`'s `model`, USD per 1M tokens: the config's `pricing` entry
/// `"provider/model"` first, else the built-in table. A pinned snapshot (`gpt-4o-2024-08-06`,
/// `gemini-2.0-flash-001`) or a `models/` prefix falls back to its base model's price.
pub fn price_of(provider: &str, model: &str, overrides: &BTreeMap<String, Price>) -> Option<Price> {
    let lookup = |m: &str| {
        // No key is formatted for the common case of no overrides.
        (!overrides.is_empty())
            .then(|| overrides.get(&format!("{provider}/{m}")).copied())
            .flatten()
            .or_else(|| {
                PRICES
                    .iter()
                    .find(|(p, name, _, _)| *p == provider && *name == m)
                    .map(|&(_, _, input, output)| Price { input, output })
            })
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    lookup(model).or_else(|| base_model(model).and_then(lookup))
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `gemini-2.0-flash-001` → `gemini-2.0-flash`.
fn base_model(model: &str) -> Option<&str> {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let b = model.as_bytes();
    // OpenAI snapshots: "-YYYY-MM-DD".
    if b.len() > 11 {
        let (base, date) = model.split_at(model.len() - 11);
        let parts: Vec<&str> = date.split('-').collect();
        if let ["", y, m, d] = parts.as_slice() {
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && [y, m, d].iter().all(|s| all_digits(s))
            {
                return Some(base);
            }
        }
    }
    // Gemini stable versions: "-NNN".
    let (base, version) = model.rsplit_once('-')?;
    (version.len() == 3 && all_digits(version) && !base.is_empty()).then_some(base)
}

/// Cost in USD of `input` and `output` tokens at `price`.
pub fn estimated_cost(price: &Price, input: u64, output: u64) -> f64 {
    (input as f64 * price.input + output as f64 * price.output) / 1_000_000.0
}

mod estimate;
pub use estimate::{estimate_tokens, estimate_tokens_of};

// ---------------------------------------------------------------------------------------------
// Retries

/// How one attempt failed, before any byte reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP/TLS connect failed (or a pooled connection was dead on reuse).
    Connect,
    /// No response header within the per-attempt timeout.
    Timeout,
    /// The upstream answered with this (non-success) status.
    Status(u16),
    /// The connection broke before the response header.
    Reset,
}

impl FailureKind {
    /// Whether another attempt may help: transport failures, 408, 409, 429 and 5xx.
    pub fn is_retryable(self) -> bool {
        match self {
            FailureKind::Connect | FailureKind::Timeout | FailureKind::Reset => true,
            FailureKind::Status(s) => matches!(s, 408 | 409 | 429 | 500..=599),
        }
    }

    /// Whether the failure speaks against the peer itself (feeds `PassiveHealth`): transport
    /// failures, 429 (that peer's key is throttled) and 5xx. A 408/409 or another 4xx is about
    /// the request.
    pub fn is_peer_failure(self) -> bool {
        match self {
            FailureKind::Connect | FailureKind::Timeout | FailureKind::Reset => true,
            FailureKind::Status(s) => matches!(s, 429 | 500..=599),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait, then try the same peer again (it is the only one left for this provider).
    RetrySamePeer(Duration),
    /// Wait, then try another peer of the same provider (`choose_peer` with updated failures).
    NextPeer(Duration),
    /// Go to the next candidate at once; this provider is done for this request.
    NextCandidate,
    /// Stop: the caller answers with this failure (an upstream 4xx as is, else 502/504).
    GiveUp,
}

/// The full-jitter backoff before the retry that follows failed attempt `attempt` (0-based):
/// uniform in `[0, min(BACKOFF_CAP, BACKOFF_BASE * 2^attempt)]`.
pub fn backoff(attempt: u32, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// Decides the step after one failed attempt.
///
/// - `attempt` is the 0-based number of the attempt that just failed on this provider, so
///   `retry_count + 1` attempts are allowed per provider (SPEC §6); once they are used up the
///   request moves to the next candidate (MAX_ATTEMPTS across the request is the caller's).
/// - Not retryable (a 4xx other than 408/409/429) → `GiveUp`, so the client gets it as is;
///   `failover_enabled == false` → `GiveUp` after the first attempt; no time left → `GiveUp`.
/// - The wait is the upstream's `Retry-After` when it is ≤ `RETRY_AFTER_CAP`, else the
///   full-jitter `backoff`. A longer `Retry-After`, or any wait that would not end before
///   `remaining` runs out, is not waited for: the request moves on at once, to another peer
///   if `other_peers_left`, else to the next candidate.
/// - Otherwise another peer if `other_peers_left`, else the same peer, after the wait (peers
///   of one provider usually share an upstream, so moving to another peer also backs off).
#[allow(clippy::too_many_arguments)]
pub fn next_step(
    kind: FailureKind,
    attempt: u32,
    retry_count: u32,
    failover_enabled: bool,
    retry_after: Option<Duration>,
    remaining: Duration,
    other_peers_left: bool,
    rng: &mut fastrand::Rng,
) -> Next {
    if !kind.is_retryable() || !failover_enabled || remaining.is_zero() {
        return Next::GiveUp;
    }
    if attempt >= retry_count {
        return Next::NextCandidate;
    }
    let move_on = if other_peers_left {
        Next::NextPeer(Duration::ZERO)
    } else {
        Next::NextCandidate
    };
    let wait = match retry_after {
        Some(ra) if ra > RETRY_AFTER_CAP => return move_on,
        Some(ra) => ra,
        None => backoff(attempt, rng),
    };
    if wait >= remaining {
        return move_on;
    }
    if other_peers_left {
        Next::NextPeer(wait)
    } else {
        Next::RetrySamePeer(wait)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn peer(index: usize, weight: usize) -> PeerView {
        PeerView {
            index,
            weight,
            healthy: true,
            cooling: false,
            ewma: None,
            failures_this_request: 0,
        }
    }

    fn counts(strategy: Strategy, peers: &[PeerView], picks: usize, seed: u64) -> Vec<usize> {
        let rr = AtomicUsize::new(0);
        let mut rng = fastrand::Rng::with_seed(seed);
        let max = peers.iter().map(|p| p.index).max().unwrap_or(0);
        let mut out = vec![0; max + 1];
        for _ in 0..picks {
            let i = choose_peer(strategy, peers, &rr, &mut rng).expect("a peer");
            out[i] += 1;
        }
        out
    }

    // --- LatencyEwma ---

    #[test]
    fn ewma_starts_empty_takes_the_first_sample_then_blends() {
        let e = LatencyEwma::new();
        assert_eq!(e.get(), None, "no sample yet");
        e.observe(ms(100));
        assert_eq!(e.get(), Some(ms(100)), "the first sample is taken as is");
        e.observe(ms(200));
        assert_eq!(e.get(), Some(ms(130)), "0.3 * 200 + 0.7 * 100");
        for _ in 0..50 {
            e.observe(ms(20));
        }
        let now = e.get().unwrap();
        assert!(
            now >= ms(20) && now < ms(21),
            "converges to a steady sample: {now:?}"
        );
        e.observe(Duration::ZERO);
        assert!(e.get().is_some(), "a zero sample is a sample");
    }

    #[test]
    fn ewma_survives_concurrent_observers() {
        let e = std::sync::Arc::new(LatencyEwma::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| e.observe(ms(50))))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(
            e.get(),
            Some(ms(50)),
            "identical samples average to themselves"
        );
    }

    // --- PassiveHealth ---

    #[test]
    fn cooling_starts_at_the_threshold_and_ends_on_time() {
        let h = PassiveHealth::new();
        let t0 = Instant::now();
        assert!(!h.record_failure(t0), "1st failure does not cool");
        assert!(!h.record_failure(t0), "2nd failure does not cool");
        assert!(!h.is_cooling(t0));
        assert!(h.record_failure(t0), "3rd failure starts a cooldown");
        assert!(h.is_cooling(t0));
        assert_eq!(h.cooldown_left(t0), Some(BASE_COOLDOWN));
        assert!(
            h.is_cooling(t0 + ms(4_999)),
            "still cooling just before 5 s"
        );
        assert!(!h.is_cooling(t0 + ms(5_000)), "cooled down after 5 s");
        assert_eq!(h.consecutive_failures(), 3);
    }

    #[test]
    fn further_failures_double_the_cooldown_up_to_the_cap() {
        let h = PassiveHealth::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record_failure(t0);
        }
        // Half-open after expiry: one more failure cools again, twice as long.
        let t1 = t0 + ms(5_000);
        assert!(h.record_failure(t1), "4th failure extends");
        assert_eq!(h.cooldown_left(t1), Some(ms(10_000)));
        let expected = [20_000, 40_000, 60_000, 60_000, 60_000];
        for (i, want) in expected.iter().enumerate() {
            let t = t1 + ms(100_000 * (i as u64 + 1));
            assert!(h.record_failure(t), "failure {} extends", i + 5);
            assert_eq!(h.cooldown_left(t), Some(ms(*want)), "failure {}", i + 5);
        }
    }

    #[test]
    fn a_failure_that_does_not_push_the_end_later_reports_false() {
        let h = PassiveHealth::with_policy(1, ms(1_000));
        let t0 = Instant::now() + ms(10_000);
        assert!(h.record_failure(t0), "threshold 1: first failure cools");
        assert_eq!(h.cooldown_left(t0), Some(ms(1_000)));
        // An older clock reading (another thread's) would end earlier: nothing changes.
        assert!(!h.record_failure(t0 - ms(5_000)));
        assert_eq!(h.cooldown_left(t0), Some(ms(1_000)), "the later end stands");
    }

    #[test]
    fn success_and_a_passing_check_end_cooling() {
        let t0 = Instant::now();
        for end in [PassiveHealth::record_success, PassiveHealth::clear] {
            let h = PassiveHealth::new();
            (0..5).for_each(|_| {
                h.record_failure(t0);
            });
            assert!(h.is_cooling(t0));
            end(&h);
            assert!(!h.is_cooling(t0), "no longer cooling");
            assert_eq!(h.consecutive_failures(), 0);
            assert!(!h.record_failure(t0), "the count starts over");
        }
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let h = PassiveHealth::new();
        let t0 = Instant::now();
        h.record_failure(t0);
        h.record_failure(t0);
        h.record_success();
        h.record_failure(t0);
        h.record_failure(t0);
        assert!(!h.is_cooling(t0), "only two consecutive failures");
    }

    #[test]
    fn instants_before_the_epoch_count_as_the_epoch() {
        let early = Instant::now();
        let h = PassiveHealth::with_policy(1, ms(1_000));
        assert!(h.record_failure(early));
        assert!(h.is_cooling(early));
        assert!(h.is_cooling(Instant::now()));
    }

    // --- choose_peer: eligibility ---

    #[test]
    fn no_peers_or_none_healthy_gives_none() {
        let rr = AtomicUsize::new(0);
        let mut rng = fastrand::Rng::with_seed(1);
        for s in [
            Strategy::RoundRobin,
            Strategy::Performance,
            Strategy::CostOptimized,
        ] {
            assert_eq!(choose_peer(s, &[], &rr, &mut rng), None);
            let sick = [
                PeerView {
                    healthy: false,
                    ..peer(0, 1)
                },
                PeerView {
                    healthy: false,
                    cooling: true,
                    ..peer(1, 1)
                },
            ];
            assert_eq!(choose_peer(s, &sick, &rr, &mut rng), None, "{s:?}");
        }
    }

    #[test]
    fn never_unhealthy_not_cooling_first_then_fewest_failures() {
        let sick = PeerView {
            healthy: false,
            ewma: Some(ms(1)),
            ..peer(0, 100)
        };
        let cooling = PeerView {
            cooling: true,
            ewma: Some(ms(2)),
            ..peer(1, 100)
        };
        let failed_twice = PeerView {
            failures_this_request: 2,
            ewma: Some(ms(3)),
            ..peer(2, 1)
        };
        let failed_once = PeerView {
            failures_this_request: 1,
            ewma: Some(ms(500)),
            ..peer(3, 1)
        };
        for s in [
            Strategy::RoundRobin,
            Strategy::Performance,
            Strategy::CostOptimized,
        ] {
            let c = counts(s, &[sick, cooling, failed_twice, failed_once], 300, 7);
            assert_eq!(c[3], 300, "{s:?}: fewest failures wins, not cooling: {c:?}");
            let c = counts(s, &[sick, cooling, failed_twice], 300, 7);
            assert_eq!(
                c[2], 300,
                "{s:?}: a not-cooling peer beats a cooling one: {c:?}"
            );
            let c = counts(s, &[sick, cooling], 300, 7);
            assert_eq!(c[1], 300, "{s:?}: cooling only when nothing else: {c:?}");
        }
    }

    #[test]
    fn cooling_peers_fall_back_by_failures_too() {
        let a = PeerView {
            cooling: true,
            failures_this_request: 1,
            ..peer(0, 1)
        };
        let b = PeerView {
            cooling: true,
            ..peer(1, 1)
        };
        assert_eq!(counts(Strategy::RoundRobin, &[a, b], 10, 1), vec![0, 10]);
    }

    #[test]
    fn returns_the_callers_index_not_the_position() {
        let peers = [peer(7, 1), peer(3, 1)];
        let c = counts(Strategy::RoundRobin, &peers, 10, 1);
        assert_eq!((c[7], c[3]), (5, 5));
    }

    // --- choose_peer: round robin ---

    #[test]
    fn round_robin_spreads_by_weight_1_to_3() {
        for s in [Strategy::RoundRobin, Strategy::CostOptimized] {
            let c = counts(s, &[peer(0, 1), peer(1, 3)], 400, 1);
            let share = c[1] as f64 / 400.0;
            assert!(
                (0.75 * 0.9..=0.75 * 1.1).contains(&share),
                "{s:?}: weight 3 of 4 gets ~75 %: {c:?}"
            );
            assert_eq!(c, vec![100, 300], "{s:?}: exact per cycle of 4");
        }
    }

    #[test]
    fn round_robin_is_exact_per_cycle_from_any_start() {
        let weights: [usize; 4] = [5, 1, 1, 3];
        let peers: Vec<PeerView> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| peer(i, *w))
            .collect();
        let total: usize = weights.iter().sum();
        let mut rng = fastrand::Rng::with_seed(0);
        for start in [0, 3, 7, usize::MAX - 4] {
            let rr = AtomicUsize::new(start);
            let mut c = [0usize; 4];
            for _ in 0..total * 3 {
                c[choose_peer(Strategy::RoundRobin, &peers, &rr, &mut rng).unwrap()] += 1;
            }
            if start < usize::MAX - total * 3 {
                assert_eq!(c, [15, 3, 3, 9], "start {start}: weights exactly");
            } else {
                // The counter wraps: proportions still hold within a cycle's worth.
                assert!(c
                    .iter()
                    .zip(weights)
                    .all(|(n, w)| n.abs_diff(3 * w) <= total));
            }
        }
    }

    #[test]
    fn round_robin_interleaves_instead_of_bursting() {
        let peers = [peer(0, 5), peer(1, 1), peer(2, 1)];
        let rr = AtomicUsize::new(0);
        let mut rng = fastrand::Rng::with_seed(0);
        let seq: Vec<usize> = (0..7)
            .map(|_| choose_peer(Strategy::RoundRobin, &peers, &rr, &mut rng).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 0, 1, 0, 2, 0], "5:1:1 interleaved");
        let equal = [peer(0, 1), peer(1, 1), peer(2, 1)];
        let rr = AtomicUsize::new(0);
        let seq: Vec<usize> = (0..6)
            .map(|_| choose_peer(Strategy::RoundRobin, &equal, &rr, &mut rng).unwrap())
            .collect();
        let mut first = seq[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2], "equal weights: each once per cycle");
        assert_eq!(seq[..3], seq[3..], "and the cycle repeats");
    }

    #[test]
    fn round_robin_weight_zero_counts_as_one() {
        assert_eq!(
            counts(Strategy::RoundRobin, &[peer(0, 0), peer(1, 1)], 10, 1),
            vec![5, 5]
        );
    }

    #[test]
    fn round_robin_skips_the_failed_peer_within_a_request() {
        let peers = [
            PeerView {
                failures_this_request: 1,
                ..peer(0, 100)
            },
            peer(1, 1),
        ];
        assert_eq!(counts(Strategy::RoundRobin, &peers, 20, 1), vec![0, 20]);
    }

    #[test]
    fn stride_is_coprime_and_near_the_golden_ratio() {
        for total in 1..500u128 {
            let s = stride(total);
            assert!(s >= 1 && s <= total.max(1));
            assert_eq!(gcd(s, total), 1, "stride {s} for {total}");
        }
        assert_eq!(stride(7), 4);
        assert_eq!(stride(100), 61, "⌊100·0.618⌋ = 61 is coprime to 100");
        assert_eq!(stride(10), 3, "6, 5 and 4 share a factor with 10");
        assert_eq!(stride(4), 1, "2 shares a factor with 4");
    }

    // --- choose_peer: performance ---

    #[test]
    fn performance_measures_unmeasured_peers_first() {
        let peers = [
            PeerView {
                ewma: Some(ms(10)),
                ..peer(0, 1)
            },
            peer(1, 1),
            peer(2, 1),
        ];
        let c = counts(Strategy::Performance, &peers, 200, 3);
        assert_eq!(c[0], 0, "a measured peer waits while others are unmeasured");
        assert!(
            c[1] > 50 && c[2] > 50,
            "unmeasured peers share at random: {c:?}"
        );
    }

    #[test]
    fn performance_prefers_the_faster_peer_and_still_explores() {
        let peers = [
            PeerView {
                ewma: Some(ms(400)),
                ..peer(0, 1)
            },
            PeerView {
                ewma: Some(ms(80)),
                ..peer(1, 1)
            },
        ];
        for seed in 0..20 {
            let c = counts(Strategy::Performance, &peers, 200, seed);
            assert!(c[1] >= 170, "seed {seed}: faster peer ≥ 85 %: {c:?}");
            assert!(
                c[0] >= 1,
                "seed {seed}: slower peer explored at least once: {c:?}"
            );
        }
    }

    #[test]
    fn performance_explores_uniformly_among_the_others() {
        let peers: Vec<PeerView> = (0..4)
            .map(|i| PeerView {
                ewma: Some(ms(10 + 100 * i as u64)),
                ..peer(i, 1)
            })
            .collect();
        let c = counts(Strategy::Performance, &peers, 20_000, 11);
        assert!(c[0] > 18_500, "fastest ~95 %: {c:?}");
        for (i, n) in c.iter().enumerate().skip(1) {
            assert!((200..=470).contains(n), "peer {i} explored ~1.67 %: {c:?}");
        }
    }

    #[test]
    fn performance_ignores_weights_and_breaks_ties_by_order() {
        let peers = [
            PeerView {
                ewma: Some(ms(50)),
                ..peer(0, 1)
            },
            PeerView {
                ewma: Some(ms(50)),
                ..peer(1, 100)
            },
        ];
        let mut rng = fastrand::Rng::with_seed(5);
        let rr = AtomicUsize::new(0);
        let c = counts(Strategy::Performance, &peers, 1000, 5);
        assert!(c[0] > 900, "first of equals: {c:?}");
        let single = [PeerView {
            ewma: Some(ms(50)),
            ..peer(4, 1)
        }];
        for _ in 0..100 {
            assert_eq!(
                choose_peer(Strategy::Performance, &single, &rr, &mut rng),
                Some(4),
                "one peer: no exploration possible"
            );
        }
        assert_eq!(rr.load(Ordering::Relaxed), 0, "performance leaves rr alone");
    }

    // --- prices ---

    #[test]
    fn built_in_prices_cover_the_catalog() {
        let none = BTreeMap::new();
        let p = |prov, m| price_of(prov, m, &none);
        assert_eq!(
            p("openai", "gpt-4o-mini"),
            Some(Price {
                input: 0.15,
                output: 0.60
            })
        );
        assert_eq!(
            p("gemini", "gemini-2.0-flash"),
            Some(Price {
                input: 0.10,
                output: 0.40
            })
        );
        for m in crate::routing::OPENAI_MODELS.iter().copied() {
            assert!(p("openai", m).is_some(), "openai/{m} priced");
            assert!(p("gemini", m).is_none(), "openai/{m} is not a gemini model");
        }
        for m in [
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-2.0-flash",
            "gemini-3-pro-preview",
            "gemini-embedding-001",
        ] {
            assert!(p("gemini", m).is_some(), "gemini/{m} priced");
        }
        assert_eq!(
            p("gemini", "text-embedding-004"),
            None,
            "deliberately unpriced"
        );
        assert_eq!(p("openai", "my-finetune"), None);
        for (_, _, i, o) in PRICES {
            assert!(i.is_finite() && *i >= 0.0 && o.is_finite() && *o >= 0.0);
        }
    }

    #[test]
    fn snapshots_and_prefixes_fall_back_to_the_base_price() {
        let none = BTreeMap::new();
        assert_eq!(
            price_of("openai", "gpt-4o-2024-08-06", &none),
            price_of("openai", "gpt-4o", &none)
        );
        assert_eq!(
            price_of("openai", "gpt-4o-mini-2024-07-18", &none),
            price_of("openai", "gpt-4o-mini", &none)
        );
        assert_eq!(
            price_of("gemini", "gemini-2.0-flash-001", &none),
            price_of("gemini", "gemini-2.0-flash", &none)
        );
        assert_eq!(
            price_of("gemini", "models/gemini-2.5-pro", &none),
            price_of("gemini", "gemini-2.5-pro", &none)
        );
        assert_eq!(
            price_of("openai", "gpt-4o-audio-preview", &none),
            None,
            "no prefix guess"
        );
        assert_eq!(base_model("o3-2025-04-16"), Some("o3"));
        assert_eq!(base_model("gpt-4o-2024-8-06"), None);
        assert_eq!(base_model("-001"), None);
        assert_eq!(base_model("gemini-2.5-flash"), None);
    }

    #[test]
    fn config_pricing_overrides_the_table() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "openai/gpt-4o".to_string(),
            Price {
                input: 1.0,
                output: 2.0,
            },
        );
        overrides.insert(
            "openai/my-finetune".to_string(),
            Price {
                input: 3.0,
                output: 6.0,
            },
        );
        assert_eq!(
            price_of("openai", "gpt-4o", &overrides),
            Some(Price {
                input: 1.0,
                output: 2.0
            })
        );
        assert_eq!(
            price_of("openai", "gpt-4o-2024-08-06", &overrides),
            Some(Price {
                input: 1.0,
                output: 2.0
            }),
            "a snapshot follows its base model's override"
        );
        assert_eq!(
            price_of("openai", "my-finetune", &overrides),
            Some(Price {
                input: 3.0,
                output: 6.0
            })
        );
        assert_eq!(
            price_of("gemini", "gpt-4o", &overrides),
            None,
            "keys include the provider"
        );
        overrides.insert(
            "openai/gpt-4o-2024-08-06".into(),
            Price {
                input: 9.0,
                output: 9.0,
            },
        );
        assert_eq!(
            price_of("openai", "gpt-4o-2024-08-06", &overrides),
            Some(Price {
                input: 9.0,
                output: 9.0
            }),
            "an exact override beats the base model's"
        );
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let p = Price {
            input: 2.5,
            output: 10.0,
        };
        assert!((estimated_cost(&p, 1_000_000, 0) - 2.5).abs() < 1e-12);
        assert!((estimated_cost(&p, 1_000, 500) - 0.0075).abs() < 1e-12);
        assert_eq!(estimated_cost(&p, 0, 0), 0.0);
    }

    // --- token estimates ---

    #[test]
    fn chat_text_counts_a_token_per_four_chars_plus_framing() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "abcdefgh"},
            {"role": "user", "content": "abcdefghijkl"}
        ]});
        assert_eq!(
            estimate_tokens(&body),
            (5 + 2 * 4, 256),
            "20 chars → 5, 2 messages"
        );
        let odd = json!({"messages": [{"role": "user", "content": "abcde"}]});
        assert_eq!(estimate_tokens(&odd).0, 2 + 4, "rounds up");
        let unicode = json!({"messages": [{"role": "user", "content": "ééééééé€"}]});
        assert_eq!(estimate_tokens(&unicode).0, 2 + 4, "characters, not bytes");
    }

    #[test]
    fn parts_images_and_tool_calls_count() {
        let body = json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "abcd"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "efgh"}
            ]},
            {"role": "assistant", "content": null,
             "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        ]});
        let calls =
            json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let call_chars = calls.to_string().len() as u64;
        assert_eq!(
            estimate_tokens(&body).0,
            (8 + call_chars).div_ceil(4) + IMAGE_TOKENS + 2 * 4,
            "a data URL is not text"
        );
        let tools =
            json!({"messages": [], "tools": [{"type": "function", "function": {"name": "abc"}}]});
        let tool_chars = tools["tools"].to_string().len() as u64;
        assert_eq!(estimate_tokens(&tools).0, tool_chars.div_ceil(4));
    }

    #[test]
    fn output_limit_fields_and_choices() {
        let t = |b: serde_json::Value| estimate_tokens(&b).1;
        assert_eq!(t(json!({"messages": []})), DEFAULT_OUTPUT_TOKENS);
        assert_eq!(t(json!({"messages": [], "max_tokens": 100})), 100);
        assert_eq!(
            t(json!({"messages": [], "max_tokens": 100, "max_completion_tokens": 40})),
            40,
            "max_completion_tokens wins (max_tokens is deprecated)"
        );
        assert_eq!(t(json!({"messages": [], "max_tokens": 100, "n": 3})), 300);
        assert_eq!(
            t(json!({"messages": [], "n": 0})),
            DEFAULT_OUTPUT_TOKENS,
            "n clamps to ≥ 1"
        );
        assert_eq!(
            t(json!({"messages": [], "max_tokens": "lots"})),
            DEFAULT_OUTPUT_TOKENS
        );
        assert_eq!(t(json!({"prompt": "hi", "max_tokens": 7})), 7);
        assert_eq!(t(json!({"input": "hi", "max_output_tokens": 9})), 9);
    }

    #[test]
    fn embeddings_have_no_output() {
        assert_eq!(
            estimate_tokens(&json!({"model": "e", "input": "abcdefgh"})),
            (2, 0)
        );
        assert_eq!(
            estimate_tokens(&json!({"input": ["abcd", "abcd", "ab"]})),
            (3, 0)
        );
        assert_eq!(
            estimate_tokens(&json!({"input": [[1, 2, 3], [4, 5]]})),
            (5, 0),
            "token ids count one each"
        );
        assert_eq!(estimate_tokens(&json!({"input": [1, 2]})), (2, 0));
    }

    #[test]
    fn gemini_native_bodies_count_too() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "abcd"}]},
            "contents": [{"role": "user", "parts": [
                {"text": "abcdefgh"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
            ]}],
            "generationConfig": {"maxOutputTokens": 64, "candidateCount": 2}
        });
        assert_eq!(estimate_tokens(&body), (3 + IMAGE_TOKENS + 4, 128));
    }

    #[test]
    fn non_objects_estimate_nothing() {
        assert_eq!(estimate_tokens(&json!(null)), (0, 0));
        assert_eq!(estimate_tokens(&json!([1, 2])), (0, 0));
        assert_eq!(estimate_tokens(&json!({})), (0, 0));
    }

    // --- candidate order ---

    #[test]
    fn cost_order_is_cheapest_first_unknown_last_and_stable() {
        let mut v = vec![
            ("a", Some(3.0)),
            ("b", None),
            ("c", Some(1.0)),
            ("d", Some(3.0)),
            ("e", Some(f64::NAN)),
            ("f", Some(0.0)),
        ];
        order_by_cost(&mut v, |c| c.1);
        let names: Vec<&str> = v.iter().map(|c| c.0).collect();
        assert_eq!(names, vec!["f", "c", "a", "d", "b", "e"]);
    }

    #[test]
    fn cost_order_end_to_end_with_table_and_overrides() {
        let body =
            json!({"messages": [{"role": "user", "content": "x".repeat(4000)}], "max_tokens": 500});
        let (input, output) = estimate_tokens(&body);
        let rank = |overrides: &BTreeMap<String, Price>| {
            let mut cands = vec![
                ("openai", "gpt-4o"),
                ("gemini", "gemini-2.5-flash"),
                ("openai", "my-finetune"),
                ("openai", "gpt-4o-mini"),
                ("gemini", "gemini-2.0-flash"),
            ];
            order_by_cost(&mut cands, |(p, m)| {
                price_of(p, m, overrides).map(|pr| estimated_cost(&pr, input, output))
            });
            cands
                .iter()
                .map(|(p, m)| format!("{p}/{m}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rank(&BTreeMap::new()),
            vec![
                "gemini/gemini-2.0-flash",
                "openai/gpt-4o-mini",
                "gemini/gemini-2.5-flash",
                "openai/gpt-4o",
                "openai/my-finetune"
            ]
        );
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "openai/my-finetune".into(),
            Price {
                input: 0.01,
                output: 0.01,
            },
        );
        overrides.insert(
            "gemini/gemini-2.0-flash".into(),
            Price {
                input: 5.0,
                output: 20.0,
            },
        );
        assert_eq!(
            rank(&overrides),
            vec![
                "openai/my-finetune",
                "openai/gpt-4o-mini",
                "gemini/gemini-2.5-flash",
                "openai/gpt-4o",
                "gemini/gemini-2.0-flash"
            ]
        );
    }

    #[test]
    fn latency_order_measures_unknowns_first_then_fastest() {
        let mut v = vec![
            ("a", Some(ms(300))),
            ("b", None),
            ("c", Some(ms(100))),
            ("d", None),
            ("e", Some(ms(100))),
        ];
        order_by_latency(&mut v, |c| c.1);
        let names: Vec<&str> = v.iter().map(|c| c.0).collect();
        assert_eq!(names, vec!["b", "d", "c", "e", "a"]);
    }

    // --- retries ---

    #[test]
    fn failure_classes() {
        use FailureKind::*;
        for k in [
            Connect,
            Timeout,
            Reset,
            Status(408),
            Status(409),
            Status(429),
            Status(500),
            Status(503),
            Status(599),
        ] {
            assert!(k.is_retryable(), "{k:?} retryable");
        }
        for k in [
            Status(400),
            Status(401),
            Status(403),
            Status(404),
            Status(413),
            Status(422),
            Status(200),
            Status(302),
            Status(600),
        ] {
            assert!(!k.is_retryable(), "{k:?} not retryable");
        }
        for k in [Connect, Timeout, Reset, Status(429), Status(502)] {
            assert!(k.is_peer_failure(), "{k:?} counts against the peer");
        }
        for k in [Status(400), Status(408), Status(409), Status(404)] {
            assert!(!k.is_peer_failure(), "{k:?} is about the request");
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let mut rng = fastrand::Rng::with_seed(42);
        for attempt in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP);
            let waits: Vec<Duration> = (0..500).map(|_| backoff(attempt, &mut rng)).collect();
            assert!(
                waits.iter().all(|w| *w <= ceiling),
                "attempt {attempt} ≤ {ceiling:?}"
            );
            let mean = waits.iter().sum::<Duration>() / 500;
            assert!(
                mean > ceiling.mul_f64(0.4) && mean < ceiling.mul_f64(0.6),
                "attempt {attempt}: uniform, mean {mean:?} ≈ half of {ceiling:?}"
            );
        }
        assert!(Duration::from_millis(100) == BACKOFF_BASE && BACKOFF_CAP == ms(2_000));
    }

    /// Expected outcome shapes, so table rows can say "a wait within these bounds".
    #[derive(Debug)]
    enum Want {
        Same(Duration, Duration),
        Peer(Duration, Duration),
        Candidate,
        GiveUp,
    }

    /// kind, attempt, retry_count, failover, retry_after, remaining, other_peers, want, why.
    type Row = (
        FailureKind,
        u32,
        u32,
        bool,
        Option<Duration>,
        Duration,
        bool,
        Want,
        &'static str,
    );

    #[test]
    fn next_step_table() {
        use FailureKind::*;
        use Want::*;
        let z = Duration::ZERO;
        let lots = ms(60_000);
        // (kind, attempt, retry_count, failover, retry_after, remaining, other_peers, want, why)
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (Status(400), 0, 3, true, None, lots, true, GiveUp, "plain 4xx goes to the client"),
            (Status(401), 0, 3, true, None, lots, true, GiveUp, "auth errors are not retried"),
            (Status(404), 1, 3, true, None, lots, false, GiveUp, "not found is not retried"),
            (Status(422), 0, 3, true, None, lots, true, GiveUp, "validation errors are not retried"),
            (Connect, 0, 3, false, None, lots, true, GiveUp, "failover off: one attempt only"),
            (Status(503), 0, 3, false, None, lots, true, GiveUp, "failover off even for 5xx"),
            (Timeout, 0, 3, true, None, z, true, GiveUp, "no time left"),
            (Connect, 0, 3, true, None, lots, true, Peer(z, ms(100)), "first backoff ≤ 100 ms, other peer"),
            (Connect, 0, 3, true, None, lots, false, Same(z, ms(100)), "only peer: retry it"),
            (Reset, 1, 3, true, None, lots, false, Same(z, ms(200)), "second backoff ≤ 200 ms"),
            (Timeout, 2, 3, true, None, lots, true, Peer(z, ms(400)), "third backoff ≤ 400 ms"),
            (Status(500), 2, 9, true, None, lots, false, Same(z, ms(400)), "5xx retried"),
            (Status(502), 8, 20, true, None, lots, true, Peer(z, ms(2_000)), "backoff capped at 2 s"),
            (Status(408), 0, 3, true, None, lots, false, Same(z, ms(100)), "408 retried"),
            (Status(409), 0, 3, true, None, lots, false, Same(z, ms(100)), "409 retried"),
            (Status(429), 0, 3, true, Some(ms(1_500)), lots, false, Same(ms(1_500), ms(1_500)), "short Retry-After honoured"),
            (Status(429), 0, 3, true, Some(ms(2_000)), lots, true, Peer(ms(2_000), ms(2_000)), "Retry-After of exactly the cap honoured"),
            (Status(503), 0, 3, true, Some(z), lots, false, Same(z, z), "Retry-After: 0 means now"),
            (Status(429), 0, 3, true, Some(ms(2_001)), lots, true, Peer(z, z), "long Retry-After: other peer at once"),
            (Status(429), 0, 3, true, Some(ms(30_000)), lots, false, Candidate, "long Retry-After, no other peer"),
            (Status(429), 0, 3, true, Some(ms(1_000)), ms(1_000), false, Candidate, "Retry-After never past the deadline"),
            (Status(429), 0, 3, true, Some(ms(1_000)), ms(999), true, Peer(z, z), "deadline: other peer without waiting"),
            (Status(429), 0, 3, true, Some(ms(1_000)), ms(1_001), false, Same(ms(1_000), ms(1_000)), "fits just before the deadline"),
            (Connect, 0, 3, true, None, Duration::from_nanos(1), false, Candidate, "backoff cannot fit in 1 ns"),
            (Connect, 3, 3, true, None, lots, true, Candidate, "retry_count + 1 attempts used up"),
            (Status(429), 3, 3, true, Some(ms(100)), lots, false, Candidate, "budget beats Retry-After"),
            (Connect, 0, 0, true, None, lots, true, Candidate, "retry_count 0: one attempt per provider"),
            (Status(404), 5, 3, true, None, lots, true, GiveUp, "non-retryable wins over an exhausted budget"),
        ];
        for seed in 0..25 {
            let mut rng = fastrand::Rng::with_seed(seed);
            for (kind, attempt, retries, failover, ra, remaining, others, want, why) in &rows {
                let got = next_step(
                    *kind, *attempt, *retries, *failover, *ra, *remaining, *others, &mut rng,
                );
                let ok = match (want, got) {
                    (Same(lo, hi), Next::RetrySamePeer(w)) | (Peer(lo, hi), Next::NextPeer(w)) => {
                        *lo <= w && w <= *hi && w < *remaining
                    }
                    (Candidate, Next::NextCandidate) | (GiveUp, Next::GiveUp) => true,
                    _ => false,
                };
                assert!(ok, "{why}: {kind:?} attempt {attempt}/{retries} failover {failover} retry-after {ra:?} remaining {remaining:?} others {others}: want {want:?}, got {got:?}");
            }
        }
    }

    #[test]
    fn next_step_backoff_is_random_but_seeded() {
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..4)
                .map(|a| {
                    next_step(
                        FailureKind::Connect,
                        a,
                        9,
                        true,
                        None,
                        ms(60_000),
                        false,
                        &mut rng,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1), "deterministic for a seed");
        assert_ne!(run(1), run(2), "jittered across seeds");
    }
}
