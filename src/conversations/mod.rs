//! Conversation state of the Responses API answers the gateway mints itself (SPEC §11): what
//! `previous_response_id` continues from, what `GET /v1/responses/{id}` returns, what
//! `…/input_items` lists and what `DELETE` removes. Responses minted by OpenAI stay OpenAI's
//! (the proxy forwards every id [`is_minted`] refuses) and are never stored here.
//!
//! Two tiers:
//! - memory ([`memory`]): bounded by `responses.max_stored` entries and
//!   `responses.max_stored_bytes`, expiring by `responses.store_ttl`, oldest out first;
//! - Redis, when `responses.redis_url` (else `cache.redis_url` / `REDIS_URL`) is set: one key
//!   per response, so any instance continues a conversation another one started.
//!
//! With Redis, Redis is the truth and memory holds a copy of what this instance wrote. When
//! Redis fails (refused, timed out, breaker open), writes and reads fall back to that copy: the
//! instance still continues its own conversations, and one line is logged per outage.
//!
//! Every entry is scoped to a tenant (the cache's caller scope: gateway key id or client key
//! hash). Keys hold a hash of the tenant, never the tenant itself (it may derive from a key),
//! and another tenant's id is simply not found.

mod memory;
mod redis_backend;
#[cfg(test)]
mod tests;

use crate::config::ResponsesConfig;
use bytes::Bytes;
use memory::{MemoryStore, Visible};
use redis_backend::RedisStore;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub use memory::{Usage, ENTRY_OVERHEAD};
pub use redis_backend::REDIS_PREFIX;

/// What every id the gateway mints starts with. OpenAI ids are `resp_` and hex, so the `g`
/// makes a collision impossible and tells the proxy whose id a request names.
pub const ID_PREFIX: &str = "resp_gw";
const ID_HEX: usize = 32;
/// The length of every minted id.
pub const ID_LEN: usize = ID_PREFIX.len() + ID_HEX;

/// A new response id: [`ID_PREFIX`] and 128 bits from a CSPRNG in lowercase hex. Lookups are
/// scoped to the tenant, but callers who share one (one access key, or no auth) are told apart
/// only by the ids, so no id may be predictable from the ids a caller has seen (as a plain
/// PRNG's outputs are).
pub fn mint_id() -> String {
    use rand::Rng;
    format!("{ID_PREFIX}{:032x}", rand::rng().random::<u128>())
}

/// Whether `id` has exactly the shape [`mint_id`] produces.
pub fn is_minted(id: &str) -> bool {
    id.len() == ID_LEN
        && id.starts_with(ID_PREFIX)
        && id.as_bytes()[ID_PREFIX.len()..]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A response the gateway minted, as stored. `Bytes`, so a read is a refcount bump.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// `resp_gw…` ([`mint_id`]).
    pub id: String,
    /// The response object JSON as returned to the client (`GET` returns it).
    pub response: Bytes,
    /// JSON array of this request's input items, each with an `id` (`input_items` lists them).
    pub input_items: Bytes,
    /// JSON array: the whole conversation up to and including this response's output, as
    /// Responses input items (what `previous_response_id` continues from).
    pub context: Bytes,
}

impl StoredResponse {
    /// The same bytes in one buffer of exactly their length, which the three fields slice
    /// (as the memory tier holds them: [`Packed`]).
    pub fn exact(self) -> Self {
        Packed::of(&self).view(self.id)
    }

    /// A response, its input items and its context joined from JSON arrays, as
    /// [`Packed::assemble`] holds them.
    pub fn assemble(id: String, response: &[u8], input_items: &[u8], context: &[&[u8]]) -> Self {
        Packed::assemble(response, input_items, context).view(id)
    }

    /// The bytes it holds; what the memory bound counts (plus [`ENTRY_OVERHEAD`]).
    pub fn payload_len(&self) -> usize {
        self.id.len() + self.response.len() + self.input_items.len() + self.context.len()
    }
}

/// An entry as the memory tier holds it: the three parts in one buffer of exactly their
/// length, the id left to the [`Key`]. What a serialiser grew by doubling keeps up to twice its
/// length allocated, which would make `max_stored_bytes` count half of what is held; and a
/// whole, unsliced `Bytes` needs no shared header, so an entry is one allocation and one free
/// at eviction, and its map slot (written cold on every store) is half the size.
#[derive(Clone)]
pub(crate) struct Packed {
    buf: Bytes,
    response_end: usize,
    items_end: usize,
}

impl Packed {
    fn new(buf: Vec<u8>, response_end: usize, items_end: usize) -> Self {
        // Exactly its length (no realloc: the callers reserved it), so that the `Bytes` owns
        // the allocation outright.
        let buf = Bytes::from(buf.into_boxed_slice());
        Packed {
            buf,
            response_end,
            items_end,
        }
    }

    /// `r`'s parts, copied.
    fn of(r: &StoredResponse) -> Self {
        let (a, b) = (r.response.len(), r.input_items.len());
        let mut buf = Vec::with_capacity(a + b + r.context.len());
        buf.extend_from_slice(&r.response);
        buf.extend_from_slice(&r.input_items);
        buf.extend_from_slice(&r.context);
        Self::new(buf, a, a + b)
    }

    /// A response, its input items and its context joined from JSON arrays (`[a,b]` + `[]` +
    /// `[c]` → `[a,b,c]`; a part that is not an array adds nothing).
    fn assemble(response: &[u8], input_items: &[u8], context: &[&[u8]]) -> Self {
        let parts = || {
            context
                .iter()
                .map(|p| array_inner(p))
                .filter(|p| !p.is_empty())
        };
        let commas = parts().count().saturating_sub(1);
        let context_len = 2 + commas + parts().map(<[u8]>::len).sum::<usize>();
        let (r, i) = (response.len(), input_items.len());
        let mut buf = Vec::with_capacity(r + i + context_len);
        buf.extend_from_slice(response);
        buf.extend_from_slice(input_items);
        buf.push(b'[');
        for (n, p) in parts().enumerate() {
            if n > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(p);
        }
        buf.push(b']');
        Self::new(buf, r, r + i)
    }

    /// The response, its input items and its context.
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let (r, i) = (self.response_end, self.items_end);
        (&self.buf[..r], &self.buf[r..i], &self.buf[i..])
    }

    /// As a [`StoredResponse`] (slices of the one buffer).
    fn view(&self, id: String) -> StoredResponse {
        let (r, i) = (self.response_end, self.items_end);
        StoredResponse {
            id,
            response: self.buf.slice(..r),
            input_items: self.buf.slice(r..i),
            context: self.buf.slice(i..),
        }
    }

    /// What [`StoredResponse::payload_len`] counts for the same entry (a minted id is
    /// [`ID_LEN`] long).
    fn payload_len(&self) -> usize {
        ID_LEN + self.buf.len()
    }
}

/// What is between a JSON array's brackets, trimmed; nothing for what is not an array.
fn array_inner(p: &[u8]) -> &[u8] {
    let p = p.trim_ascii();
    match (p.first(), p.last()) {
        (Some(b'['), Some(b']')) if p.len() >= 2 => p[1..p.len() - 1].trim_ascii(),
        _ => b"",
    }
}

/// Sizes only: conversations must not reach a log by accident.
impl std::fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredResponse")
            .field("id", &self.id)
            .field("response_len", &self.response.len())
            .field("input_items_len", &self.input_items.len())
            .field("context_len", &self.context.len())
            .finish()
    }
}

/// Whose conversations these are, as the store keys them: a hash of the caller's scope
/// (`key:<id>`, `client:<key hash>`, `gateway`), never the scope itself (it may derive from a
/// key). Computed once per request, not per store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tenant([u8; 16]);

impl Tenant {
    /// The scope's hash: the first 16 bytes of SHA-256 over a version tag and the name parts
    /// (concatenated), so keys written by earlier releases are found again.
    pub fn named(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(b"llmgw-resp-tenant-v1\0");
        for p in parts {
            h.update(p);
        }
        let digest: [u8; 32] = h.finalize().into();
        let mut t = [0u8; 16];
        t.copy_from_slice(&digest[..16]);
        Self(t)
    }
}

/// Where one tenant's response lives: a tenant hash and the id's 128 bits (32 bytes in all,
/// nothing secret, nothing of variable length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    tenant: [u8; 16],
    id: u128,
}

impl Key {
    /// `None` for an id the gateway did not mint: nothing is stored or looked up under it.
    fn new(tenant: &Tenant, id: &str) -> Option<Self> {
        if !is_minted(id) {
            return None;
        }
        let id = u128::from_str_radix(&id[ID_PREFIX.len()..], 16).ok()?;
        Some(Self {
            tenant: tenant.0,
            id,
        })
    }

    /// The id as minted (`resp_gw` and 32 hex digits).
    fn id_string(&self) -> String {
        format!("{ID_PREFIX}{:032x}", self.id)
    }

    /// `llmgw:resp:<tenant hash>:<id>`: readable with `redis-cli`, one tenant's keys share a
    /// prefix (`SCAN` finds them), and no secret is in it.
    fn redis_key(&self) -> String {
        format!(
            "{REDIS_PREFIX}{}:{ID_PREFIX}{:032x}",
            hex::encode(self.tenant),
            self.id
        )
    }
}

/// The conversation store; one per process (in `State`), shared by every request.
pub struct ConversationStore {
    memory: MemoryStore,
    redis: Option<RedisStore>,
    ttl: Duration,
}

impl ConversationStore {
    /// `redis_url` is the resolved one ([`crate::config::Config::responses_redis_url`]). Does
    /// no I/O: Redis is connected by the first call, inside its bound.
    pub fn new(cfg: &ResponsesConfig, redis_url: Option<&str>) -> Self {
        let target = redis_url.map(crate::redis_link::RedisTarget::single);
        Self::with_redis(cfg, target.as_ref())
    }

    /// As [`ConversationStore::new`], on a Redis target (TLS files, Cluster, Sentinel, keys).
    pub fn with_redis(
        cfg: &ResponsesConfig,
        redis: Option<&crate::redis_link::RedisTarget>,
    ) -> Self {
        Self {
            memory: MemoryStore::new(cfg.max_stored, cfg.max_stored_bytes, cfg.store_ttl),
            redis: redis.and_then(RedisStore::new),
            ttl: cfg.store_ttl,
        }
    }

    /// The tenant's response `id`; `None` when unknown, expired, deleted, another tenant's, or
    /// not a minted id. Redis answers when it can (a `DELETE` on another instance counts);
    /// while it fails, this instance's copy does.
    pub async fn get(&self, tenant: &Tenant, id: &str) -> Option<StoredResponse> {
        let key = Key::new(tenant, id)?;
        let Some(redis) = &self.redis else {
            return self.memory.get(&key, Visible::All);
        };
        let k = key.redis_key();
        match redis.get(&k).await {
            // A value that does not open or decode (another key, another format version,
            // another id) is a miss.
            Some(Some(value)) => match redis
                .open(&k, value)
                .and_then(|b| redis_backend::decode(b, id))
            {
                Some(r) => Some(r),
                None => self.memory.get(&key, Visible::LocalOnly),
            },
            // Redis does not have it: deleted or expired, unless it was written here while
            // Redis was away.
            Some(None) => self.memory.get(&key, Visible::LocalOnly),
            None => self.memory.get(&key, Visible::All),
        }
    }

    /// Keeps `r` for `store_ttl` under `tenant`: in memory at once (so a quick follow-up on
    /// this instance finds it even before Redis confirms), then in Redis (`SET … PX ttl`). An
    /// id that is not [`is_minted`] is not stored (a caller bug, logged).
    pub async fn put(&self, tenant: &Tenant, r: StoredResponse) {
        self.store(tenant, &r.id, Packed::of(&r)).await
    }

    /// As [`Self::put`], for an answer the proxy just wrote: the response, its input items
    /// and its context (`context`: JSON arrays, joined into one) go into one buffer of
    /// exactly their length, copied once from where they were written.
    pub async fn keep(
        &self,
        tenant: &Tenant,
        id: &str,
        response: &[u8],
        input_items: &[u8],
        context: &[&[u8]],
    ) {
        let p = Packed::assemble(response, input_items, context);
        self.store(tenant, id, p).await
    }

    async fn store(&self, tenant: &Tenant, id: &str, p: Packed) {
        let Some(key) = Key::new(tenant, id) else {
            log::warn!(
                target: "gateway:responses",
                "not storing a response whose id the gateway did not mint"
            );
            return;
        };
        let wire = self.redis.as_ref().map(|_| {
            let (r, i, c) = p.parts();
            redis_backend::encode_parts(id, r, i, c)
        });
        let seq = self.memory.put_exact(key, p);
        if let (Some(redis), Some(wire)) = (&self.redis, wire) {
            if redis.put(key.redis_key(), wire, self.ttl).await {
                self.memory.mark_in_redis(&key, seq);
            }
        }
    }

    /// Removes the tenant's response `id` everywhere it can; true when something visible was
    /// removed (the `deleted: true` answer), false for what [`Self::get`] would not find.
    /// While Redis fails, only this instance's copy goes: a copy in Redis outlives the outage.
    pub async fn delete(&self, tenant: &Tenant, id: &str) -> bool {
        let Some(key) = Key::new(tenant, id) else {
            return false;
        };
        let in_redis = match &self.redis {
            Some(redis) => redis.delete(key.redis_key()).await,
            None => None,
        };
        let local = self.memory.remove(&key);
        match in_redis {
            Some(true) => true,
            // Redis had nothing: a copy of something deleted elsewhere does not count.
            Some(false) => local.is_some_and(|slot| !slot.in_redis),
            None => local.is_some(),
        }
    }

    /// False while the configured Redis is failing; true without Redis (memory cannot fail)
    /// and before its first use.
    pub fn healthy(&self) -> bool {
        self.redis.as_ref().is_none_or(RedisStore::healthy)
    }

    /// The Redis layer's handle (health, reload); `None` without Redis.
    pub fn redis_user(&self) -> Option<&crate::redis_link::RedisUser> {
        self.redis.as_ref().map(RedisStore::user)
    }

    /// Whether a (valid) Redis URL was configured.
    pub fn redis_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// What the memory tier holds now (for metrics and tests).
    pub fn memory_usage(&self) -> Usage {
        self.memory.usage()
    }
}
