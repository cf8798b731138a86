//! The shared tier: one Redis key per stored response, on the link (connection, bounds,
//! circuit breaker, one log line per outage, sealing at rest) that the cache and the rate
//! limiter use ([`crate::redis_link`]). Every failure is `None` to the caller, which then uses
//! this instance's memory.

use super::{is_minted, StoredResponse, ID_LEN};
use crate::redis_link::{RedisLink, RedisTarget, RedisUser, Use};
use bytes::Bytes;
use std::time::Duration;

/// Every key starts with this; the rest is `<tenant hash>:<id>`.
pub const REDIS_PREFIX: &str = "llmgw:resp:";

/// A lookup here decides whether a conversation continues, not just whether a cache hits, so
/// it gets the driver's whole response bound (the cache's reads get 100 ms).
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Writes carry whole conversations and may have to connect first (250 ms) before the reply
/// (250 ms).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

const RESPONSES_USE: Use = Use {
    label: "responses",
    target: "gateway:responses",
    lost: "Redis conversation store unavailable",
    fallback: "keeping conversation state in this instance's memory until it is back",
    back: "Redis conversation store is reachable again",
};

/// Version tag of the value encoding; a value of another version is a miss.
const MAGIC: &[u8] = b"llmgw-resp1 ";
/// Longest header: magic, id, two lengths of at most 20 digits, spaces and newline.
const MAX_HEADER: usize = MAGIC.len() + ID_LEN + 2 * 21 + 1;

/// `llmgw-resp1 <id> <response len> <input_items len>\n` then the three JSON documents back to
/// back (the context runs to the end): one short line readable with `redis-cli`, the payload
/// as it is, no escaping.
#[cfg(test)]
pub(super) fn encode(r: &StoredResponse) -> Vec<u8> {
    encode_parts(&r.id, &r.response, &r.input_items, &r.context)
}

pub(super) fn encode_parts(id: &str, response: &[u8], items: &[u8], context: &[u8]) -> Vec<u8> {
    let header = format!("{} {} {}\n", id, response.len(), items.len());
    let mut out = Vec::with_capacity(
        MAGIC.len() + header.len() + response.len() + items.len() + context.len(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(response);
    out.extend_from_slice(items);
    out.extend_from_slice(context);
    out
}

/// The inverse of [`encode`], sharing `value`'s allocation; `None` for another version, a
/// truncated value or another id than `id`.
pub(super) fn decode(value: impl Into<Bytes>, id: &str) -> Option<StoredResponse> {
    let b: Bytes = value.into();
    let head = b.get(..MAX_HEADER.min(b.len()))?;
    let rest = head.strip_prefix(MAGIC)?;
    let line_end = rest.iter().position(|&c| c == b'\n')?;
    let line = std::str::from_utf8(&rest[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (stored_id, response_len, items_len) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || stored_id != id || !is_minted(stored_id) {
        return None;
    }
    let response_len: usize = response_len.parse().ok()?;
    let items_len: usize = items_len.parse().ok()?;
    let start = MAGIC.len() + line_end + 1;
    let items_at = start.checked_add(response_len)?;
    let context_at = items_at.checked_add(items_len)?;
    if context_at > b.len() {
        return None;
    }
    Some(StoredResponse {
        id: stored_id.to_string(),
        response: b.slice(start..items_at),
        input_items: b.slice(items_at..context_at),
        context: b.slice(context_at..),
    })
}

pub(super) struct RedisStore {
    user: RedisUser,
}

impl RedisStore {
    /// Parses the settings only (no I/O). The URL may hold a password, so it is never logged.
    pub(super) fn new(target: &RedisTarget) -> Option<Self> {
        match RedisLink::shared(target) {
            Ok(link) => Some(Self {
                user: RedisUser::new(link, &RESPONSES_USE),
            }),
            Err(e) => {
                log::warn!(target: "gateway:responses", "{e}; keeping conversation state in memory only");
                None
            }
        }
    }

    pub(super) fn user(&self) -> &RedisUser {
        &self.user
    }

    /// A value read from `key`, opened (sealing on) or as it is; `None` when it does not open.
    pub(super) fn open(&self, key: &str, value: Vec<u8>) -> Option<Bytes> {
        self.user.open(key, value)
    }

    pub(super) fn healthy(&self) -> bool {
        self.user.healthy()
    }

    /// `GET`: `Some(None)` when Redis answered that it has no such key, `None` when it could
    /// not be asked.
    pub(super) async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.user
            .call(key, READ_TIMEOUT, |mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await
    }

    /// `SET key value PX ttl`: Redis enforces the TTL. True when Redis took it.
    pub(super) async fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> bool {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let Some(value) = self.user.seal(&key, value) else {
            return false;
        };
        let key = key.as_str();
        self.user
            .call(key, WRITE_TIMEOUT, |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .is_some()
    }

    /// `DEL`: whether Redis removed it, `None` when it could not be asked.
    pub(super) async fn delete(&self, key: String) -> Option<bool> {
        let key = key.as_str();
        self.user
            .call(key, READ_TIMEOUT, |mut conn| async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await
            .map(|n| n > 0)
    }
}
