//! Every Redis call of caller identity (managed keys, budgets) in one file, on the gateway's
//! shared Redis link (its bound, circuit breaker and one log line per outage), so it moves
//! with that link. `None` from any call = Redis was not usable; the caller decides what
//! that means (admin writes fail with 503, budgets count locally, keys keep the last copy).
//!
//! Layout (one hash tag per caller, so a multi-key script stays on one cluster slot):
//! `llmgw:keys` (hash id → record JSON), `llmgw:keys:ver` (counter bumped on every change),
//! `llmgw:budget:{<caller hash>}:<period>:<window>` (micro-USD). On a Redis Cluster the key
//! set and its counter are `llmgw:{keys}` and `llmgw:{keys}:ver` (see [`IdentityRedis::names`]).

use crate::redis_link::{RedisLink, RedisTarget, RedisUser, Use};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(250);
const KEYS: &str = "llmgw:keys";
const VERSION: &str = "llmgw:keys:ver";
const CLUSTER_KEYS: &str = "llmgw:{keys}";
const CLUSTER_VERSION: &str = "llmgw:{keys}:ver";

const IDENTITY_USE: Use = Use {
    label: "identity",
    target: "gateway:auth",
    lost: "Redis unavailable for managed keys and budgets",
    fallback: "keeping the last key set and counting spend in this instance",
    back: "Redis is back; managed keys and budgets are shared again",
};

/// KEYS[1] hash, KEYS[2] version; ARGV[1] id, ARGV[2] record, ARGV[3] 1 = create only.
const PUT_SCRIPT: &str = r"
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
";

/// KEYS[1] period counter, KEYS[2] total counter (may be the same key); ARGV[1] amount
/// (micro-USD, negative gives back, floored at 0); ARGV[2] limit (-1 = none); ARGV[3] TTL ms
/// of the period counter (0 = none). Admits while spent + reserved is below the limit.
/// Returns {admitted 0|1, period count after}.
const SPEND_SCRIPT: &str = r"
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if limit >= 0 and amount > 0 and cur >= limit then
  return {0, cur}
end
local new = redis.call('INCRBY', KEYS[1], amount)
if new < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  new = 0
end
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if KEYS[2] ~= KEYS[1] then
  local t = redis.call('INCRBY', KEYS[2], amount)
  if t < 0 then redis.call('SET', KEYS[2], 0) end
end
return {1, new}
";

pub struct IdentityRedis {
    user: RedisUser,
    put: redis::Script,
    spend: redis::Script,
}

impl IdentityRedis {
    pub fn user(&self) -> &RedisUser {
        &self.user
    }

    /// The key set and its version counter. The put script and the delete transaction touch
    /// both, so on a Cluster they share one hash tag (one slot; untagged they would be refused
    /// with `CROSSSLOT`). Elsewhere the names stay as they always were, so single-server and
    /// Sentinel deployments keep their stored keys. Asked per call: a reload may retarget.
    fn names(&self) -> (&'static str, &'static str) {
        if self.user.link().target().kind() == "cluster" {
            (CLUSTER_KEYS, CLUSTER_VERSION)
        } else {
            (KEYS, VERSION)
        }
    }

    /// `None` without Redis settings (or with ones that do not build: logged, never shown).
    pub fn new(target: Option<&RedisTarget>) -> Option<IdentityRedis> {
        let link = match RedisLink::shared(target?) {
            Ok(l) => l,
            Err(e) => {
                log::warn!(target: "gateway:auth", "unusable Redis settings for managed keys ({e}); using the state file");
                return None;
            }
        };
        Some(IdentityRedis {
            user: RedisUser::new(link, &IDENTITY_USE),
            put: redis::Script::new(PUT_SCRIPT),
            spend: redis::Script::new(SPEND_SCRIPT),
        })
    }

    /// The records when the version differs from `seen`.
    pub async fn keys_if_changed(&self, seen: u64) -> Option<(u64, Vec<String>)> {
        let (keys, version_key) = self.names();
        let version: Option<u64> = self
            .user
            .call(version_key, TIMEOUT, |mut conn| async move {
                redis::cmd("GET")
                    .arg(version_key)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await?;
        let version = version.unwrap_or(0);
        if version == seen {
            return None;
        }
        let values: Vec<String> = self
            .user
            .call(keys, TIMEOUT, |mut conn| async move {
                redis::cmd("HVALS")
                    .arg(keys)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            })
            .await?;
        Some((version, values))
    }

    /// Stores a record; `Some(false)` when `create` and the id exists.
    pub async fn put_key(&self, id: &str, json: &str, create: bool) -> Option<bool> {
        let script = &self.put;
        let (keys, version_key) = self.names();
        let n: i64 = self
            .user
            .call(keys, TIMEOUT, |mut conn| async move {
                script
                    .key(keys)
                    .key(version_key)
                    .arg(id)
                    .arg(json)
                    .arg(if create { "1" } else { "0" })
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        Some(n == 1)
    }

    pub async fn delete_key(&self, id: &str) -> Option<()> {
        let (keys, version_key) = self.names();
        self.user
            .call(keys, TIMEOUT, |mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("HDEL")
                    .arg(keys)
                    .arg(id)
                    .cmd("INCR")
                    .arg(version_key)
                    .query_async::<(i64, i64)>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// Runs the spend script: `Some((admitted, period count))`.
    pub async fn spend(
        &self,
        period_key: String,
        total_key: String,
        amount: i64,
        limit: Option<i64>,
        ttl_ms: u64,
    ) -> Option<(bool, i64)> {
        let script = &self.spend;
        let (period_key, total_key) = (period_key.as_str(), total_key.as_str());
        let (ok, count): (i64, i64) = self
            .user
            .call(period_key, TIMEOUT, |mut conn| async move {
                script
                    .key(period_key)
                    .key(total_key)
                    .arg(amount)
                    .arg(limit.unwrap_or(-1))
                    .arg(ttl_ms)
                    .invoke_async::<(i64, i64)>(&mut conn)
                    .await
            })
            .await?;
        Some((ok == 1, count))
    }

    /// Current values of counters (missing = 0).
    pub async fn read(&self, keys: Vec<String>) -> Option<Vec<i64>> {
        let first = keys.first().map_or("", String::as_str);
        let keys = &keys;
        let values: Vec<Option<i64>> = self
            .user
            .call(first, TIMEOUT, |mut conn| async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<i64>>>(&mut conn)
                    .await
            })
            .await?;
        Some(values.into_iter().map(|v| v.unwrap_or(0)).collect())
    }
}
