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

/// The state file's name for one counter: `caller\0period\0window`.
fn file_key(caller: &str, period: Period, window: u64) -> String {
    format!("{caller}\u{0}{}\u{0}{window}", period.name())
}

/// One caller's local counters. Kept per caller (looked up by the caller's id as it is) so
/// that counting a request builds no key: the state file's `caller\0period\0window` names
/// are written only when the counters are saved.
#[derive(Debug, Default)]
struct LocalSpend {
    /// The whole life's spend (the `total` counter).
    total: i64,
    /// `(period, window, spend)` of the daily and monthly windows counted: one or two in
    /// practice (windows already over are dropped at each save), so a list beats a map.
    windows: Vec<(Period, u64, i64)>,
}

impl LocalSpend {
    fn value(&self, period: Period, w: u64) -> i64 {
        match period {
            Period::Total => self.total,
            Period::Daily | Period::Monthly => self
                .windows
                .iter()
                .find(|(p, x, _)| *p == period && *x == w)
                .map_or(0, |&(_, _, v)| v),
        }
    }

    fn counter(&mut self, period: Period, w: u64) -> &mut i64 {
        if period == Period::Total {
            return &mut self.total;
        }
        let at = match self
            .windows
            .iter()
            .position(|(p, x, _)| *p == period && *x == w)
        {
            Some(i) => i,
            None => {
                self.windows.push((period, w, 0));
                self.windows.len() - 1
            }
        };
        &mut self.windows[at].2
    }

    /// Admitted while the period count is below the limit; then `amount` is added to the
    /// period's count and (for a daily or monthly period) to the total, neither below 0.
    /// A refusal creates no counter.
    fn add(&mut self, period: Period, w: u64, amount: i64, limit: Option<i64>) -> bool {
        if limit.is_some_and(|l| amount > 0 && self.value(period, w) >= l) {
            return false;
        }
        let cur = self.counter(period, w);
        *cur = (*cur + amount).max(0);
        if period != Period::Total {
            self.total = (self.total + amount).max(0);
        }
        true
    }
}

/// The state file's counters as per-caller ones; names that do not parse are dropped (they
/// could never be read).
fn from_file(spend: BTreeMap<String, i64>) -> BTreeMap<String, LocalSpend> {
    let mut local: BTreeMap<String, LocalSpend> = BTreeMap::new();
    for (k, v) in spend {
        let mut parts = k.rsplitn(3, '\u{0}');
        let (w, p, caller) = (parts.next(), parts.next(), parts.next());
        let (Some(w), Some(p), Some(caller)) = (
            w.and_then(|w| w.parse::<u64>().ok()),
            p.and_then(Period::parse),
            caller,
        ) else {
            continue;
        };
        let entry = local.entry(caller.to_string()).or_default();
        match p {
            Period::Total if w == 0 => entry.total = v,
            Period::Total => {}
            Period::Daily | Period::Monthly => entry.windows.push((p, w, v)),
        }
    }
    local
}

/// The per-caller counters under the state file's names.
fn to_file(local: &BTreeMap<String, LocalSpend>) -> BTreeMap<String, i64> {
    let mut spend = BTreeMap::new();
    for (caller, s) in local {
        spend.insert(file_key(caller, Period::Total, 0), s.total);
        for &(p, w, v) in &s.windows {
            spend.insert(file_key(caller, p, w), v);
        }
    }
    spend
}

/// A cost held for one admitted request until [`Budgets::settle`]. It borrows the caller's
/// id (the request's policy outlives it) rather than copying it for every request.
#[derive(Debug)]
#[must_use = "settle the reservation with the real cost"]
pub struct Reservation<'a> {
    caller: &'a str,
    period: Period,
    window: u64,
    reserved: i64,
    shared: bool,
}

impl<'a> Reservation<'a> {
    /// The reservation of `estimate_usd` in the budget's current window (not counted yet).
    fn new(caller: &'a str, budget: Option<&Budget>, estimate_usd: f64) -> Self {
        let period = budget.map_or(Period::Total, |b| b.period);
        Reservation {
            caller,
            period,
            window: window(period, super::now_ms()),
            reserved: to_micro(estimate_usd).max(0),
            shared: false,
        }
    }
}

fn budget_limit(budget: Option<&Budget>) -> Option<i64> {
    budget.map(|b| to_micro(b.usd))
}

fn admitted_or_refused(
    r: Reservation<'_>,
    admitted: bool,
) -> Result<Reservation<'_>, &'static str> {
    if admitted {
        Ok(r)
    } else {
        super::metrics::budget_refused(r.period.name());
        Err(r.period.name())
    }
}

/// Spend counters of every caller with a budget or a managed key.
pub struct Budgets {
    local: Mutex<BTreeMap<String, LocalSpend>>,
    dirty: AtomicBool,
    state: Option<Arc<StateFile>>,
    redis: Option<Arc<IdentityRedis>>,
}

impl Budgets {
    pub fn new(state: Option<Arc<StateFile>>, redis: Option<Arc<IdentityRedis>>) -> Self {
        let local = from_file(state.as_ref().map(|s| s.spend()).unwrap_or_default());
        Self {
            local: Mutex::new(local),
            dirty: AtomicBool::new(false),
            state,
            redis,
        }
    }

    /// Reserves `estimate_usd` for `caller`; `Err(period)` when the budget is already reached.
    /// Without a budget the cost is still reserved (for the spend shown by the admin API).
    pub async fn reserve<'a>(
        &self,
        caller: &'a str,
        budget: Option<&Budget>,
        estimate_usd: f64,
    ) -> Result<Reservation<'a>, &'static str> {
        let mut r = Reservation::new(caller, budget, estimate_usd);
        let (admitted, shared) = self
            .count(caller, r.period, r.window, r.reserved, budget_limit(budget))
            .await;
        r.shared = shared;
        admitted_or_refused(r, admitted)
    }

    /// [`Budgets::reserve`] answered at once when the counters are only this instance's (no
    /// Redis configured); `None` when it has to ask Redis. The request path then has no future
    /// to box for the common single-instance case.
    pub fn try_reserve_now<'a>(
        &self,
        caller: &'a str,
        budget: Option<&Budget>,
        estimate_usd: f64,
    ) -> Option<Result<Reservation<'a>, &'static str>> {
        if self.redis.is_some() {
            return None;
        }
        let r = Reservation::new(caller, budget, estimate_usd);
        let admitted = self.add_local(caller, r.period, r.window, r.reserved, budget_limit(budget));
        Some(admitted_or_refused(r, admitted))
    }

    /// Replaces the reservation with the real cost; `None` (usage unknown) keeps what was
    /// reserved.
    pub async fn settle(&self, r: Reservation<'_>, actual_usd: Option<f64>) {
        let Some(delta) = self.settled(&r, actual_usd) else {
            return;
        };
        if r.shared {
            if let Some(redis) = &self.redis {
                let done = redis
                    .spend(
                        redis_key(r.caller, r.period, r.window),
                        redis_key(r.caller, Period::Total, 0),
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
        self.add_local(r.caller, r.period, r.window, delta, None);
    }

    /// [`Budgets::settle`] done at once for a reservation counted here; one counted in Redis
    /// is handed back, to be settled there with `settle`.
    pub fn try_settle_now<'a>(
        &self,
        r: Reservation<'a>,
        actual_usd: Option<f64>,
    ) -> Result<(), Reservation<'a>> {
        if r.shared {
            return Err(r);
        }
        if let Some(delta) = self.settled(&r, actual_usd) {
            self.add_local(r.caller, r.period, r.window, delta, None);
        }
        Ok(())
    }

    /// Counts the settled spend in the metrics; the change to the counters, `None` when the
    /// real cost is what was reserved.
    fn settled(&self, r: &Reservation<'_>, actual_usd: Option<f64>) -> Option<i64> {
        let actual = actual_usd.map_or(r.reserved, |usd| to_micro(usd).max(0));
        let label = if r.caller.starts_with("jwt:") {
            "jwt"
        } else {
            r.caller
        };
        super::metrics::spend(label, to_usd(actual));
        let delta = actual - r.reserved;
        (delta != 0).then_some(delta)
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
        map.get(caller).map_or(0, |s| s.value(period, w))
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

    /// Local counting: admitted while the period count is below the limit. The caller's
    /// entry is created on its first request; later ones look it up by `caller` as it is.
    fn add_local(
        &self,
        caller: &str,
        period: Period,
        w: u64,
        amount: i64,
        limit: Option<i64>,
    ) -> bool {
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = match map.get_mut(caller) {
            Some(s) => s.add(period, w, amount, limit),
            None => {
                // A refusal stores nothing, as for a known caller.
                let mut s = LocalSpend::default();
                let admitted = s.add(period, w, amount, limit);
                if admitted {
                    map.insert(caller.to_string(), s);
                }
                admitted
            }
        };
        if admitted {
            self.dirty.store(true, Ordering::Release);
        }
        admitted
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
            for s in map.values_mut() {
                s.windows.retain(|&(p, w, _)| w >= window(p, now));
            }
            to_file(&map)
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

    #[tokio::test]
    async fn counters_keep_the_state_file_names_and_a_refusal_stores_nothing() {
        let b = Budgets::new(None, None);
        let daily = Budget {
            usd: 1.0,
            period: Period::Daily,
        };
        let nothing = Budget {
            usd: 0.0,
            period: Period::Monthly,
        };
        let r = b.reserve("a\u{0}b", Some(&daily), 0.5).await.unwrap();
        b.settle(r, Some(0.25)).await;
        assert!(b.reserve("c", Some(&nothing), 0.1).await.is_err());
        // Without Redis the synchronous forms answer, the same as the async ones.
        let r = b.try_reserve_now("t", None, 0.125).unwrap().unwrap();
        assert!(
            b.try_settle_now(r, None).is_ok(),
            "a local reservation settles at once"
        );
        let w = window(Period::Daily, super::super::now_ms());
        let file = to_file(&b.local.lock().unwrap());
        let want: BTreeMap<String, i64> = [
            (format!("a\u{0}b\u{0}daily\u{0}{w}"), 250_000),
            ("a\u{0}b\u{0}total\u{0}0".to_string(), 250_000),
            ("t\u{0}total\u{0}0".to_string(), 125_000),
        ]
        .into_iter()
        .collect();
        assert_eq!(file, want, "caller c was refused: no counter for it");
        // Read back (a caller id holding the separator included), unreadable names dropped.
        let mut with_junk = want.clone();
        with_junk.insert("junk".into(), 5);
        with_junk.insert("x\u{0}weekly\u{0}1".into(), 5);
        assert_eq!(to_file(&from_file(with_junk)), want);
    }
}
