//! Cache keys and per-request cache policy.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::Duration;

/// Prefix of every Redis key, so the cache's keys are easy to find and never collide with the rate
/// limiter's.
pub const REDIS_PREFIX: &str = "llmgw:c:";

/// Longest TTL a client may ask for with `x-gateway-cache-ttl`: a huge value would overflow
/// `Instant` arithmetic and is refused by Redis' `PX`.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Top-level request fields that do not change the answer (or are replaced by the resolved model),
/// so a streamed and a non-streamed request share one entry.
const IGNORED_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
];

/// SHA-256 of the canonical request; its `Debug` shows only a prefix so it is harmless in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The Redis key: `llmgw:c:` + 64 hex digits.
    pub fn redis_key(&self) -> String {
        let mut k = String::with_capacity(REDIS_PREFIX.len() + 64);
        k.push_str(REDIS_PREFIX);
        k.push_str(&hex::encode(self.0));
        k
    }

    /// The first 8 bytes, used to index the in-memory store (the full key is checked on a hit).
    pub(super) fn short(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({}…)", hex::encode(&self.0[..4]))
    }
}

/// The canonical key of a request: independent of JSON key order, whitespace and number spelling
/// (`1` = `1.0`); scoped by route, resolved provider/model and caller so tenants never share
/// entries. Top-level `null` fields count as absent.
pub fn cache_key(route: &str, provider: &str, model: &str, scope: &str, body: &Value) -> CacheKey {
    let mut h = Sha256::new();
    h.update(b"llmgw-cache-v1");
    // Length-prefixed so ("ab","c") and ("a","bc") differ.
    for part in [route, provider, model, scope] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let mut w = HashWriter(&mut h);
    match body {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(k, v)| !v.is_null() && !IGNORED_FIELDS.contains(&k.as_str()))
                .collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_object(&mut w, fields);
        }
        other => write_canonical(&mut w, other),
    }
    CacheKey(h.finalize().into())
}

/// The key of a request body exactly as received (same scope parts as [`cache_key`]): maps to
/// its canonical key in [`super::ResponseCache::canonical_for`], so a repeated request is
/// answered without parsing its JSON.
pub fn raw_key(route: &str, provider: &str, model: &str, scope: &str, body: &[u8]) -> CacheKey {
    let mut h = Sha256::new();
    h.update(b"llmgw-raw-v1");
    for part in [route, provider, model, scope] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(body);
    CacheKey(h.finalize().into())
}

/// Feeds canonical JSON straight into the hash: no intermediate string.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_canonical(w: &mut HashWriter<'_>, v: &Value) {
    match v {
        Value::Null => w.0.update(b"null"),
        Value::Bool(true) => w.0.update(b"true"),
        Value::Bool(false) => w.0.update(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                w.0.update(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                w.0.update(u.to_string().as_bytes());
            } else if let Some(f) = n.as_f64() {
                // Integral floats hash like integers: `temperature: 1` and `1.0` are one request.
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    w.0.update((f as i64).to_string().as_bytes());
                } else {
                    w.0.update(n.to_string().as_bytes());
                }
            }
        }
        // Writing into a hasher cannot fail.
        Value::String(s) => {
            let _ = serde_json::to_writer(&mut *w, s);
        }
        Value::Array(items) => {
            w.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.0.update(b",");
                }
                write_canonical(w, item);
            }
            w.0.update(b"]");
        }
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_object(w, fields);
        }
    }
}

fn write_object(w: &mut HashWriter<'_>, fields: Vec<(&String, &Value)>) {
    w.0.update(b"{");
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            w.0.update(b",");
        }
        let _ = serde_json::to_writer(&mut *w, k);
        w.0.update(b":");
        write_canonical(w, v);
    }
    w.0.update(b"}");
}

/// What the cache may do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Serve a stored answer.
    pub read: bool,
    /// Store the answer.
    pub write: bool,
    /// Client's TTL override (capped at [`MAX_TTL`]); `None` = the configured TTL.
    pub ttl: Option<Duration>,
}

/// Reads the request's `Cache-Control` (`no-store`: neither read nor write; `no-cache` or
/// `max-age=0`: fetch a fresh answer but store it) and `x-gateway-cache-ttl: <secs>` (`0` = don't
/// store; anything unparsable is ignored).
pub fn policy(cache_control: Option<&str>, ttl_header: Option<&str>) -> CachePolicy {
    let mut p = CachePolicy {
        read: true,
        write: true,
        ttl: None,
    };
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") {
            p.read = false;
            p.write = false;
        } else if name.eq_ignore_ascii_case("no-cache")
            || (name.eq_ignore_ascii_case("max-age") && value == Some("0"))
        {
            p.read = false;
        }
    }
    if let Some(secs) = ttl_header.and_then(|v| v.trim().parse::<u64>().ok()) {
        let ttl = Duration::from_secs(secs).min(MAX_TTL);
        if ttl.is_zero() {
            p.write = false;
        }
        p.ttl = Some(ttl);
    }
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(body: &Value) -> CacheKey {
        cache_key("chat", "openai", "gpt-4o-mini", "key:team-a", body)
    }

    #[test]
    fn key_ignores_order_whitespace_and_number_spelling() {
        let a: Value = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":1,"tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":2}}}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "temperature" : 1.0,
                 "tools":[{"function":{"parameters":{"a":2,"b":1},"name":"f"},"type":"function"}],
                 "messages":[ {"content":"hi","role":"user"} ] }"#,
        )
        .unwrap();
        assert_eq!(
            key(&a),
            key(&b),
            "order, whitespace and 1 vs 1.0 must not matter"
        );
    }

    #[test]
    fn key_ignores_fields_that_do_not_change_the_answer() {
        let base = json!({"messages":[{"role":"user","content":"hi"}]});
        let noisy = json!({
            "messages":[{"role":"user","content":"hi"}],
            "model":"whatever-the-client-sent", "stream":true,
            "stream_options":{"include_usage":true}, "user":"u1", "metadata":{"a":"b"},
            "store":true, "service_tier":"auto", "safety_identifier":"s",
            "prompt_cache_key":"p", "temperature": null
        });
        assert_eq!(key(&base), key(&noisy));
    }

    #[test]
    fn key_changes_with_everything_that_changes_the_answer() {
        let base = json!({"messages":[{"role":"user","content":"hi"}]});
        let k = key(&base);
        let variants = [
            json!({"messages":[{"role":"user","content":"hi!"}]}),
            json!({"messages":[{"role":"user","content":"hi"}],"n":2}),
            json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.5}),
            json!({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}),
            json!({"messages":[{"role":"user","content":"hi"}],"tools":[]}),
            json!({"messages":[{"role":"user","content":"hi"}],"seed":1}),
            // A nested `user`/`model`/`stream` field is content, not an ignored top-level field.
            json!({"messages":[{"role":"user","content":"hi","user":"x"}]}),
            json!({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"stream":true}}}]}),
            json!({"messages":[{"role":"user","content":"hi","name":null}]}),
        ];
        for v in &variants {
            assert_ne!(key(v), k, "{v} must not share the key of {base}");
        }
        assert_ne!(
            cache_key("embeddings", "openai", "gpt-4o-mini", "key:team-a", &base),
            k,
            "route is part of the key"
        );
        assert_ne!(
            cache_key("chat", "gemini", "gpt-4o-mini", "key:team-a", &base),
            k,
            "provider is part of the key"
        );
        assert_ne!(
            cache_key("chat", "openai", "gpt-4o", "key:team-a", &base),
            k,
            "resolved model is part of the key"
        );
        assert_ne!(
            cache_key("chat", "openai", "gpt-4o-mini", "key:team-b", &base),
            k,
            "tenants never share entries"
        );
        assert_ne!(
            cache_key("chat", "openai", "gpt-4o-mini", "key:team-a", &Value::Null),
            k
        );
    }

    #[test]
    fn key_parts_are_length_prefixed() {
        let b = json!({});
        assert_ne!(
            cache_key("chat", "openai", "ab", "c", &b),
            cache_key("chat", "openai", "a", "bc", &b)
        );
    }

    #[test]
    fn key_is_stable_across_releases() {
        // Changing the canonical form silently orphans every shared Redis entry: bump the
        // "llmgw-cache-v1" tag instead, and then this value.
        let k = key(&json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.2}));
        assert_eq!(
            hex::encode(k.0),
            "b3063881edb27847ea85464ab77a51cb12d8f7453e3d0f7813c3e3adcf1e5265",
            "sha256 of the length-prefixed parts + sorted compact JSON"
        );
        assert!(k.redis_key().starts_with("llmgw:c:"));
        assert_eq!(k.redis_key().len(), "llmgw:c:".len() + 64);
        assert_eq!(
            format!("{k:?}").len(),
            "CacheKey(…)".len() + 8,
            "Debug shows a prefix only"
        );
    }

    #[test]
    fn policy_defaults_to_read_and_write() {
        let p = policy(None, None);
        assert_eq!(
            p,
            CachePolicy {
                read: true,
                write: true,
                ttl: None
            }
        );
        assert_eq!(policy(Some("max-age=60"), None), p);
        assert_eq!(
            policy(Some(""), Some("soon")),
            p,
            "bad TTL header is ignored"
        );
    }

    #[test]
    fn policy_reads_cache_control_directives() {
        let p = policy(Some("no-store"), None);
        assert!(!p.read && !p.write, "no-store: neither read nor write");
        let p = policy(Some("No-Cache"), None);
        assert!(
            !p.read && p.write,
            "no-cache: skip the read, store the fresh answer"
        );
        let p = policy(Some("max-age=0"), None);
        assert!(!p.read && p.write, "max-age=0 behaves as no-cache");
        let p = policy(Some("private, no-cache, no-store"), None);
        assert!(!p.read && !p.write, "no-store wins wherever it appears");
    }

    #[test]
    fn policy_reads_the_ttl_header() {
        assert_eq!(
            policy(None, Some(" 120 ")).ttl,
            Some(Duration::from_secs(120))
        );
        assert_eq!(policy(None, Some("99999999999")).ttl, Some(MAX_TTL));
        let p = policy(None, Some("0"));
        assert!(p.read && !p.write, "a zero TTL means: do not store");
        assert_eq!(policy(None, Some("-5")).ttl, None);
    }
}
