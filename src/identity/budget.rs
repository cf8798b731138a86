//! USD budgets per caller (SPEC §13), counted like TPM: a request's estimated cost is
//! reserved at admission (refused when spent + reserved already reaches the budget) and
//! settled with its real usage × price afterwards. So concurrent requests overspend by at
//! most one request's estimate: each one admitted saw the budget not yet reached.
//!
//! Amounts are integer micro-USD. Counters: one per period window (UTC day, UTC month, or
//! the whole life) and one `total` that `GET /admin/keys/{id}` can always show. With Redis
//! they are shared (one atomic script per operation); without it, or while Redis is down,
//! they are this instance's, persisted in the state file every 250 ms and at shutdown.

use super::keys::StateFile;
use super::redis_store::IdentityRedis;
use super::{Budget, Period};
use chrono::{Datelike, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub fn to_micro(usd: f64) -> i64 {
    if usd.is_finite() {
        (usd * 1_000_000.0)
            .round()
            .clamp(i64::MIN as f64, i64::MAX as f64) as i64
    } else {
        0
    }
}

pub fn to_usd(micro: i64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// The window `now_ms` falls in for `period`: days since the epoch, months since year 0, or 0.
pub fn window(period: Period, now_ms: u64) -> u64 {
    match period {
        Period::Daily => now_ms / 86_400_000,
        Period::Monthly => {
            let t = Utc
                .timestamp_millis_opt(i64::try_from(now_ms).unwrap_or(i64::MAX))
                .single()
                .unwrap_or_default();
            u64::try_from(t.year()).unwrap_or(0) * 12 + u64::from(t.month0())
        }
        Period::Total => 0,
    }
}

/// How long a period counter is worth keeping (Redis TTL): two periods.
fn ttl_ms(period: Period) -> u64 {
    match period {
        Period::Daily => 2 * 86_400_000,
        Period::Monthly => 62 * 86_400_000,
        Period::Total => 0,
    }
}

fn caller_tag(caller: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"llmgw-budget\0")
        .chain_update(caller.as_bytes())
        .finalize();
    hex::encode(&d[..16])
}

fn redis_key(caller: &str, period: Period, window: u64) -> String {
    format!(
        "llmgw:budget:{{{}}}:{}:{window}",
        caller_tag(caller),
        period.name()
    )
}

fn local_key(caller: &str, period: Period, window: u64) -> String {
    format!("{caller}\u{0}{}\u{0}{window}", period.name())
}

/// A cost held for one admitted request until [`Budgets::settle`].
#[derive(Debug)]
#[must_use = "settle the reservation with the real cost"]
pub struct Reservation {
    caller: String,
    period: Period,
    window: u64,
    reserved: i64,
    shared: bool,
}

/// Spend counters of every caller with a budget or a managed key.
pub struct Budgets {
    local: Mutex<BTreeMap<String, i64>>,
    dirty: AtomicBool,
    state: Option<Arc<StateFile>>,
    redis: Option<Arc<IdentityRedis>>,
}

impl Budgets {
    pub fn new(state: Option<Arc<StateFile>>, redis: Option<Arc<IdentityRedis>>) -> Self {
        let local = state.as_ref().map(|s| s.spend()).unwrap_or_default();
        Self {
            local: Mutex::new(local),
            dirty: AtomicBool::new(false),
            state,
            redis,
        }
    }

    /// Reserves `estimate_usd` for `caller`; `Err(period)` when the budget is already reached.
    /// Without a budget the cost is still reserved (for the spend shown by the admin API).
    pub async fn reserve(
        &self,
        caller: &str,
        budget: Option<&Budget>,
        estimate_usd: f64,
    ) -> Result<Reservation, &'static str> {
        let period = budget.map_or(Period::Total, |b| b.period);
        let limit = budget.map(|b| to_micro(b.usd));
        let now = super::now_ms();
        let w = window(period, now);
        let amount = to_micro(estimate_usd).max(0);
        let (admitted, shared) = self.count(caller, period, w, amount, limit).await;
        if !admitted {
            super::metrics::budget_refused(period.name());
            return Err(period.name());
        }
        Ok(Reservation {
            caller: caller.to_string(),
            period,
            window: w,
            reserved: amount,
            shared,
        })
    }

    /// Replaces the reservation with the real cost; `None` (usage unknown) keeps what was
    /// reserved.
    pub async fn settle(&self, r: Reservation, actual_usd: Option<f64>) {
        let actual = actual_usd.map_or(r.reserved, |usd| to_micro(usd).max(0));
        let actual_usd = to_usd(actual);
        let delta = actual - r.reserved;
        let label = if r.caller.starts_with("jwt:") {
            "jwt"
        } else {
            r.caller.as_str()
        };
        super::metrics::spend(label, actual_usd);
        if delta == 0 {
            return;
        }
        if r.shared {
            if let Some(redis) = &self.redis {
                let done = redis
                    .spend(
                        redis_key(&r.caller, r.period, r.window),
                        redis_key(&r.caller, Period::Total, 0),
                        delta,
                        None,
                        ttl_ms(r.period),
                    )
                    .await;
                if done.is_some() {
                    return;
                }
            }
        }
        self.add_local(&r.caller, r.period, r.window, delta, None);
    }

    /// Spend in the current `period` window and in total, in USD.
    pub async fn spent(&self, caller: &str, period: Period) -> (f64, f64) {
        let w = window(period, super::now_ms());
        if let Some(redis) = &self.redis {
            if let Some(v) = redis
                .read(vec![
                    redis_key(caller, period, w),
                    redis_key(caller, Period::Total, 0),
                ])
                .await
            {
                let local = self.local_value(caller, period, w);
                let local_total = self.local_value(caller, Period::Total, 0);
                return (
                    to_usd(v.first().copied().unwrap_or(0) + local),
                    to_usd(v.get(1).copied().unwrap_or(0) + local_total),
                );
            }
        }
        (
            to_usd(self.local_value(caller, period, w)),
            to_usd(self.local_value(caller, Period::Total, 0)),
        )
    }

    fn local_value(&self, caller: &str, period: Period, w: u64) -> i64 {
        let map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&local_key(caller, period, w)).copied().unwrap_or(0)
    }

    async fn count(
        &self,
        caller: &str,
        period: Period,
        w: u64,
        amount: i64,
        limit: Option<i64>,
    ) -> (bool, bool) {
        if let Some(redis) = &self.redis {
            if let Some((ok, _)) = redis
                .spend(
                    redis_key(caller, period, w),
                    redis_key(caller, Period::Total, 0),
                    amount,
                    limit,
                    ttl_ms(period),
                )
                .await
            {
                return (ok, true);
            }
        }
        (self.add_local(caller, period, w, amount, limit), false)
    }

    /// Local counting: admitted while the period count is below the limit.
    fn add_local(
        &self,
        caller: &str,
        period: Period,
        w: u64,
        amount: i64,
        limit: Option<i64>,
    ) -> bool {
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let key = local_key(caller, period, w);
        let cur = map.get(&key).copied().unwrap_or(0);
        if limit.is_some_and(|l| amount > 0 && cur >= l) {
            return false;
        }
        map.insert(key, (cur + amount).max(0));
        if period != Period::Total {
            let total = local_key(caller, Period::Total, 0);
            let t = map.get(&total).copied().unwrap_or(0);
            map.insert(total, (t + amount).max(0));
        }
        self.dirty.store(true, Ordering::Release);
        true
    }

    /// Writes the local counters to the state file when they changed; windows already over
    /// are dropped (they can never be read again).
    pub fn flush(&self) {
        let Some(state) = &self.state else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let now = super::now_ms();
        let snapshot = {
            let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|k, _| {
                let mut parts = k.rsplitn(3, '\u{0}');
                let (w, p) = (parts.next(), parts.next());
                match (
                    p.and_then(Period::parse),
                    w.and_then(|w| w.parse::<u64>().ok()),
                ) {
                    (Some(p), Some(w)) => w >= window(p, now),
                    _ => false,
                }
            });
            map.clone()
        };
        if let Err(e) = state.save_spend(snapshot) {
            self.dirty.store(true, Ordering::Release);
            log::warn!(target: "gateway:auth", "budget spend not saved: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn windows_follow_the_utc_calendar() {
        // 2026-12-01T00:00:00Z
        let t = 1_796_083_200_000u64;
        assert_eq!(window(Period::Daily, t), t / 86_400_000);
        assert_eq!(window(Period::Monthly, t), 2026 * 12 + 11);
        assert_eq!(window(Period::Monthly, t - 1), 2026 * 12 + 10);
        assert_eq!(window(Period::Total, t), 0);
        assert_eq!(to_micro(0.0000015), 2);
    }

    #[tokio::test]
    async fn reservations_stop_at_the_budget_and_settle() {
        let b = Budgets::new(None, None);
        let budget = Budget {
            usd: 0.25,
            period: Period::Daily,
        };
        let mut admitted = 0;
        let mut held = Vec::new();
        for _ in 0..20 {
            if let Ok(r) = b.reserve("k", Some(&budget), 0.1).await {
                admitted += 1;
                held.push(r);
            }
        }
        assert_eq!(admitted, 3, "0, 0.1, 0.2 are below 0.25; 0.3 is not");
        let mut held = held.into_iter();
        if let Some(r) = held.next() {
            b.settle(r, None).await;
        }
        for r in held {
            b.settle(r, Some(0.05)).await;
        }
        let (period, total) = b.spent("k", Period::Daily).await;
        // One settled without usage keeps its 0.1 reservation; two at 0.05.
        assert!(
            (period - 0.2).abs() < 1e-9 && (total - 0.2).abs() < 1e-9,
            "{period} {total}"
        );
        assert!(b.reserve("k", Some(&budget), 0.1).await.is_ok());
    }
}
