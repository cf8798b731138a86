//! Identity metrics, registered in the default registry beside `crate::metrics` (so
//! `/metrics` shows them): auth decisions by result and reason, JWKS fetches, budget
//! refusals and spend per key id.

use prometheus::{register_counter_vec, register_int_counter_vec, CounterVec, IntCounterVec};
use std::sync::OnceLock;

struct M {
    decisions: IntCounterVec,
    jwks: IntCounterVec,
    budget_refused: IntCounterVec,
    spend: CounterVec,
}

fn m() -> Option<&'static M> {
    static M: OnceLock<Option<M>> = OnceLock::new();
    M.get_or_init(|| {
        Some(M {
            decisions: register_int_counter_vec!(
                "gateway_auth_decisions_total",
                "Caller authentication decisions by result (ok, refused) and reason (key, jwt, managed_key, or the failed check).",
                &["result", "reason"]
            )
            .ok()?,
            jwks: register_int_counter_vec!(
                "gateway_jwks_fetches_total",
                "JWKS fetches by outcome (ok, error).",
                &["outcome"]
            )
            .ok()?,
            budget_refused: register_int_counter_vec!(
                "gateway_budget_refusals_total",
                "Requests refused with 429 budget_exceeded, by period.",
                &["period"]
            )
            .ok()?,
            spend: register_counter_vec!(
                "gateway_spend_usd_total",
                "USD spent by callers with a budget or a managed key (usage x price), by caller id.",
                &["key_id"]
            )
            .ok()?,
        })
    })
    .as_ref()
}

/// One authentication decision.
pub fn decision(result: &str, reason: &str) {
    if let Some(m) = m() {
        m.decisions.with_label_values(&[result, reason]).inc();
    }
}

pub fn jwks_fetch(outcome: &str) {
    if let Some(m) = m() {
        m.jwks.with_label_values(&[outcome]).inc();
    }
}

pub fn budget_refused(period: &str) {
    if let Some(m) = m() {
        m.budget_refused.with_label_values(&[period]).inc();
    }
}

pub fn spend(key_id: &str, usd: f64) {
    if let Some(m) = m() {
        if usd > 0.0 {
            m.spend.with_label_values(&[key_id]).inc_by(usd);
        }
    }
}
