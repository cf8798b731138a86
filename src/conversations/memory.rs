//! The in-memory tier: a hash map plus a queue in insertion order.
//!
//! Every entry lives `ttl` from its insertion, so insertion order is also expiry order: the
//! queue's front is both the oldest entry and the first to expire, and one walk from the front
//! serves expiry and eviction. Every operation is O(1) amortised under one `std::sync::Mutex`,
//! never held across an `.await`.
//!
//! The bound: at most `max_entries` entries, and Σ (payload + [`ENTRY_OVERHEAD`]) ≤ `max_bytes`,
//! where payload is [`StoredResponse::payload_len`]. So memory ≈ the stored bytes plus about
//! [`ENTRY_OVERHEAD`] per entry, the bookkeeping included (the queue holds at most twice the
//! live entries plus [`QUEUE_SLACK`] nodes). Each entry is a [`Packed`]: one buffer of exactly
//! its length, which is what the payload counts.

use super::{Key, Packed, StoredResponse};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bookkeeping counted per entry on top of its payload: its map slot (a hash map keeps up to
/// twice the slots it uses), up to four queue nodes (twice the live entries, and a `VecDeque`
/// doubles), and the id's and `Bytes`' own heap headers.
pub const ENTRY_OVERHEAD: usize =
    2 * std::mem::size_of::<(Key, Slot)>() + 4 * std::mem::size_of::<(Key, u64)>() + 128;
// Checked at compile time: at least one map slot and one queue node, and still small.
const _: () = assert!(
    ENTRY_OVERHEAD >= std::mem::size_of::<(Key, Slot)>() + std::mem::size_of::<(Key, u64)>()
        && ENTRY_OVERHEAD <= 1024
);
/// Stale queue nodes (left by deletes and replacements) tolerated before the queue is compacted.
pub const QUEUE_SLACK: usize = 64;

/// Longest TTL an entry gets, whatever it is asked for (`responses.store_ttl` allows a year).
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Which entries a read may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visible {
    /// Every entry: there is no Redis, or Redis cannot be asked.
    All,
    /// Only entries Redis never took: Redis answered and did not have the id, so a copy that
    /// reached Redis was deleted there (or expired) and must not come back.
    LocalOnly,
}

/// What the memory tier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub entries: usize,
    /// Payload plus [`ENTRY_OVERHEAD`] per entry: the figure `max_stored_bytes` bounds.
    pub bytes: usize,
}

pub(super) struct Slot {
    /// Insertion number: tells this entry's queue node from a stale one for the same key.
    seq: u64,
    expires: Instant,
    /// Payload plus [`ENTRY_OVERHEAD`].
    size: usize,
    /// Redis confirmed the write (see [`Visible::LocalOnly`]).
    pub(super) in_redis: bool,
    value: Packed,
}

/// Hashes a [`Key`] by mixing its words: its id is 128 random bits the gateway minted and its
/// tenant a SHA-256 prefix, so no caller chooses what is inserted and SipHash's protection
/// against chosen keys buys nothing here (perf put it at about a third of a put's own time).
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }

    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<Key, Slot, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Inner {
    map: KeyMap,
    /// Keys in insertion order, with the `seq` they were inserted with.
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    next_seq: u64,
}

impl Inner {
    fn take(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.bytes -= slot.size;
        Some(slot)
    }

    /// Whether the queue node `(key, seq)` still stands for a live entry.
    fn is_live(&self, key: &Key, seq: u64) -> bool {
        self.map.get(key).is_some_and(|s| s.seq == seq)
    }

    /// Takes the front entry out (stale nodes on the way dropped); `None` when the queue is
    /// empty.
    fn evict_oldest(&mut self) -> Option<Slot> {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.is_live(&key, seq) {
                return self.take(&key);
            }
        }
        None
    }

    /// Drops expired entries from the front: they are the oldest.
    fn purge_expired(&mut self, now: Instant) {
        while let Some(&(key, seq)) = self.order.front() {
            match self.map.get(&key) {
                Some(s) if s.seq == seq && s.expires > now => return,
                Some(s) if s.seq == seq => {
                    self.take(&key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Removes the nodes deletes and replacements left behind once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + QUEUE_SLACK {
            let map = &self.map;
            self.order
                .retain(|(key, seq)| map.get(key).is_some_and(|s| s.seq == *seq));
        }
    }
}

pub(super) struct MemoryStore {
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub(super) fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
        Self {
            max_entries,
            max_bytes,
            // The config allows a year at most; the cap keeps `now + ttl` far from overflowing.
            ttl: ttl.min(MAX_TTL),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding it; should something, the map is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` (replacing `key`'s entry), evicting the oldest entries until both bounds
    /// hold. An entry larger than the whole byte bound is not kept. Returns its insertion
    /// number for [`Self::mark_in_redis`]. Evicted entries are freed after the lock.
    pub(super) fn put_exact(&self, key: Key, value: Packed) -> u64 {
        self.put_exact_at(key, value, Instant::now())
    }

    #[cfg(test)]
    pub(super) fn put(&self, key: Key, value: StoredResponse) -> u64 {
        self.put_at(key, value, Instant::now())
    }

    /// At `now`, making `value` exact first (tests build entries of any shape).
    #[cfg(test)]
    pub(super) fn put_at(&self, key: Key, value: StoredResponse, now: Instant) -> u64 {
        self.put_exact_at(key, Packed::of(&value), now)
    }

    fn put_exact_at(&self, key: Key, value: Packed, now: Instant) -> u64 {
        let size = value.payload_len().saturating_add(ENTRY_OVERHEAD);
        let mut g = self.lock();
        let seq = g.next_seq;
        g.next_seq += 1;
        if self.max_entries == 0 || size > self.max_bytes {
            // Not kept: an entry it would have replaced goes too (dropped after the unlock).
            let replaced = g.take(&key);
            drop(g);
            drop(replaced);
            return seq;
        }
        let expires = now.checked_add(self.ttl).unwrap_or(now);
        // One probe: the entry replaced (if any) comes back from the insert. Its queue node
        // turns stale (its `seq` no longer matches) and is skipped or compacted away.
        let replaced = g.map.insert(
            key,
            Slot {
                seq,
                expires,
                size,
                in_redis: false,
                value,
            },
        );
        if let Some(old) = &replaced {
            g.bytes -= old.size;
        }
        g.order.push_back((key, seq));
        g.bytes += size;
        // Expired first, then oldest, until both bounds hold again (the new entry, at the
        // back, is never the one evicted while another is left).
        g.purge_expired(now);
        // The usual eviction, one entry, is freed after the unlock (its memory is the coldest
        // there is); any more go at once.
        let mut evicted = None;
        while (g.map.len() > self.max_entries || g.bytes > self.max_bytes) && g.map.len() > 1 {
            let Some(slot) = g.evict_oldest() else { break };
            drop(evicted.replace(slot));
        }
        g.compact();
        drop(g);
        drop(replaced);
        drop(evicted);
        seq
    }

    /// Records that Redis took entry `seq` of `key` (a newer one for the same key stays local).
    pub(super) fn mark_in_redis(&self, key: &Key, seq: u64) {
        if let Some(slot) = self.lock().map.get_mut(key).filter(|s| s.seq == seq) {
            slot.in_redis = true;
        }
    }

    pub(super) fn get(&self, key: &Key, visible: Visible) -> Option<StoredResponse> {
        self.get_at(key, visible, Instant::now())
    }

    /// A refcount bump of the stored `Bytes` (and a copy of the short id).
    pub(super) fn get_at(
        &self,
        key: &Key,
        visible: Visible,
        now: Instant,
    ) -> Option<StoredResponse> {
        let mut g = self.lock();
        let slot = g.map.get(key)?;
        if slot.expires <= now {
            let expired = g.take(key);
            drop(g);
            drop(expired);
            return None;
        }
        let value = match visible {
            Visible::LocalOnly if slot.in_redis => None,
            Visible::All | Visible::LocalOnly => Some(slot.value.clone()),
        };
        drop(g);
        value.map(|v| v.view(key.id_string()))
    }

    /// Removes `key`'s entry; `None` when there was none (or it had expired).
    pub(super) fn remove(&self, key: &Key) -> Option<Slot> {
        self.remove_at(key, Instant::now())
    }

    pub(super) fn remove_at(&self, key: &Key, now: Instant) -> Option<Slot> {
        let slot = {
            let mut g = self.lock();
            let slot = g.take(key);
            g.compact();
            slot
        }?;
        (slot.expires > now).then_some(slot)
    }

    pub(super) fn usage(&self) -> Usage {
        let g = self.lock();
        Usage {
            entries: g.map.len(),
            bytes: g.bytes,
        }
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.lock().order.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const HOUR: Duration = Duration::from_secs(3600);

    fn key(tenant: &str, n: u128) -> Key {
        Key::new(
            &crate::conversations::Tenant::named(&[tenant.as_bytes()]),
            &format!("resp_gw{n:032x}"),
        )
        .unwrap()
    }

    fn response(n: u128, body_len: usize) -> StoredResponse {
        StoredResponse {
            id: format!("resp_gw{n:032x}"),
            response: Bytes::from(vec![b'r'; body_len]),
            input_items: Bytes::from_static(b"[]"),
            // Fixed width, so every entry of a test has the same size.
            context: Bytes::from(format!("[{n:05}]")),
        }
    }

    #[test]
    fn ten_thousand_conversations_are_counted_and_evicted_oldest_first() {
        let size = response(0, 100).payload_len() + ENTRY_OVERHEAD;
        let store = MemoryStore::new(10_000, usize::MAX, HOUR);
        let t0 = Instant::now();
        for n in 0..10_000 {
            store.put_at(key("t", n), response(n, 100), t0);
        }
        assert_eq!(
            store.usage(),
            Usage {
                entries: 10_000,
                bytes: 10_000 * size
            },
            "every entry counted with its payload and overhead"
        );
        store.put_at(key("t", 10_000), response(10_000, 100), t0);
        assert_eq!(store.usage().entries, 10_000, "the count bound holds");
        assert!(
            store.get_at(&key("t", 0), Visible::All, t0).is_none(),
            "the oldest went first"
        );
        assert!(store.get_at(&key("t", 1), Visible::All, t0).is_some());
        assert!(store.get_at(&key("t", 10_000), Visible::All, t0).is_some());

        // A byte bound of 1,000 entries keeps the last 1,000 of 10,000.
        let store = MemoryStore::new(10_000, 1_000 * size, HOUR);
        for n in 0..10_000 {
            store.put_at(key("t", n), response(n, 100), t0);
        }
        assert_eq!(
            store.usage(),
            Usage {
                entries: 1_000,
                bytes: 1_000 * size
            },
            "the byte bound holds exactly"
        );
        assert!(store.get_at(&key("t", 8_999), Visible::All, t0).is_none());
        assert!(store.get_at(&key("t", 9_000), Visible::All, t0).is_some());
        assert!(
            store.queue_len() <= 2 * 1_000 + QUEUE_SLACK,
            "evicted nodes leave the queue too: {}",
            store.queue_len()
        );

        // Deleting everything leaves nothing behind.
        for n in 9_000..10_000 {
            assert!(store.remove_at(&key("t", n), t0).is_some());
        }
        assert_eq!(store.usage(), Usage::default());
        assert!(store.queue_len() <= QUEUE_SLACK, "{}", store.queue_len());
    }

    #[test]
    fn put_delete_cycles_do_not_grow_the_queue() {
        let store = MemoryStore::new(100, usize::MAX, HOUR);
        let t0 = Instant::now();
        store.put_at(key("t", 1), response(1, 10), t0);
        for n in 2..10_002 {
            store.put_at(key("t", n), response(n, 10), t0);
            assert!(store.remove_at(&key("t", n), t0).is_some());
            // Replacing one entry over and over is the other way to leave stale nodes.
            store.put_at(key("t", 1), response(1, 10), t0);
        }
        assert_eq!(store.usage().entries, 1);
        assert!(
            store.queue_len() <= 2 + QUEUE_SLACK,
            "stale nodes are compacted: {}",
            store.queue_len()
        );
    }

    #[test]
    fn the_byte_bound_evicts_as_many_as_it_takes() {
        let small = response(0, 10).payload_len() + ENTRY_OVERHEAD;
        let store = MemoryStore::new(100, 10 * small, HOUR);
        let t0 = Instant::now();
        for n in 0..10 {
            store.put_at(key("t", n), response(n, 10), t0);
        }
        // One entry the size of five small ones pushes the five oldest out.
        let big = response(100, 10 + 4 * small);
        assert_eq!(big.payload_len() + ENTRY_OVERHEAD, 5 * small);
        store.put_at(key("t", 100), big, t0);
        assert_eq!(store.usage().entries, 6);
        assert_eq!(store.usage().bytes, 10 * small);
        assert!(store.get_at(&key("t", 4), Visible::All, t0).is_none());
        assert!(store.get_at(&key("t", 5), Visible::All, t0).is_some());
        // Larger than the whole bound: not kept, and nothing else is evicted for it.
        store.put_at(key("t", 101), response(101, 11 * small), t0);
        assert!(store.get_at(&key("t", 101), Visible::All, t0).is_none());
        assert_eq!(store.usage().entries, 6);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let store = MemoryStore::new(100, usize::MAX, Duration::from_secs(60));
        let t0 = Instant::now();
        store.put_at(key("t", 1), response(1, 10), t0);
        store.put_at(key("t", 2), response(2, 10), t0 + Duration::from_secs(30));
        let at = |s| t0 + Duration::from_secs(s);
        assert!(store.get_at(&key("t", 1), Visible::All, at(59)).is_some());
        assert!(
            store.get_at(&key("t", 1), Visible::All, at(60)).is_none(),
            "gone at its TTL"
        );
        assert!(
            store.remove_at(&key("t", 2), at(90)).is_none(),
            "an expired entry is not deleted"
        );
        // Expired entries are dropped by the next put, not only when looked up.
        store.put_at(key("t", 3), response(3, 10), at(10));
        store.put_at(key("t", 4), response(4, 10), at(200));
        assert_eq!(store.usage().entries, 1, "only the fresh entry is left");
    }

    #[test]
    fn a_replaced_entry_is_counted_once() {
        let store = MemoryStore::new(10, usize::MAX, HOUR);
        let t0 = Instant::now();
        store.put_at(key("t", 1), response(1, 10), t0);
        store.put_at(key("t", 1), response(1, 500), t0);
        assert_eq!(
            store.usage(),
            Usage {
                entries: 1,
                bytes: response(1, 500).payload_len() + ENTRY_OVERHEAD
            }
        );
    }

    #[test]
    fn zero_entries_keeps_nothing() {
        let store = MemoryStore::new(0, usize::MAX, HOUR);
        store.put(key("t", 1), response(1, 10));
        assert_eq!(store.usage(), Usage::default());
        assert!(store.get(&key("t", 1), Visible::All).is_none());
    }

    #[test]
    fn local_only_reads_skip_what_redis_took() {
        let store = MemoryStore::new(10, usize::MAX, HOUR);
        let seq = store.put(key("t", 1), response(1, 10));
        assert!(store.get(&key("t", 1), Visible::LocalOnly).is_some());
        store.mark_in_redis(&key("t", 1), seq);
        assert!(store.get(&key("t", 1), Visible::LocalOnly).is_none());
        assert!(store.get(&key("t", 1), Visible::All).is_some());
        // A mark for an older write does not touch a newer one.
        let newer = store.put(key("t", 1), response(1, 10));
        store.mark_in_redis(&key("t", 1), seq);
        assert!(store.get(&key("t", 1), Visible::LocalOnly).is_some());
        assert_ne!(seq, newer);
    }

    #[test]
    fn a_read_shares_the_stored_bytes() {
        let store = MemoryStore::new(10, usize::MAX, HOUR);
        store.put(key("t", 1), response(1, 1000));
        let a = store.get(&key("t", 1), Visible::All).unwrap();
        let b = store.get(&key("t", 1), Visible::All).unwrap();
        assert_eq!(
            a.response.as_ptr(),
            b.response.as_ptr(),
            "no copy of the payload"
        );
        assert_eq!(a.context.as_ptr(), b.context.as_ptr());
    }

    #[test]
    fn a_replacement_too_big_to_keep_removes_the_old_entry_and_a_full_store_keeps_the_newest() {
        let one = response(1, 10).payload_len() + ENTRY_OVERHEAD;
        let store = MemoryStore::new(10, 2 * one, HOUR);
        let t0 = Instant::now();
        store.put_at(key("t", 1), response(1, 10), t0);
        // Larger than the whole byte bound: not kept, and the stale value is not served.
        store.put_at(key("t", 1), response(1, 10 * one), t0);
        assert!(store.get_at(&key("t", 1), Visible::All, t0).is_none());
        assert_eq!(store.usage(), Usage::default());
        // Replacing an entry in a full store evicts nothing else.
        store.put_at(key("t", 2), response(2, 10), t0);
        store.put_at(key("t", 3), response(3, 10), t0);
        store.put_at(key("t", 2), response(2, 10), t0);
        assert!(store.get_at(&key("t", 3), Visible::All, t0).is_some());
        assert!(store.get_at(&key("t", 2), Visible::All, t0).is_some());
        assert_eq!(store.usage().entries, 2);
        // A new entry into the full store evicts the oldest live one (3: 2 was rewritten).
        store.put_at(key("t", 4), response(4, 10), t0);
        assert!(store.get_at(&key("t", 3), Visible::All, t0).is_none());
        assert!(store.get_at(&key("t", 4), Visible::All, t0).is_some());
        assert!(store.get_at(&key("t", 2), Visible::All, t0).is_some());
    }

    #[test]
    fn the_stored_parts_are_one_buffer_of_their_exact_length() {
        let store = MemoryStore::new(10, usize::MAX, HOUR);
        let mut grown = Vec::with_capacity(4096);
        grown.extend_from_slice(b"{\"id\":\"r\"}");
        let r = StoredResponse {
            // The id comes back from the key, as minted.
            id: format!("resp_gw{:032x}", 1),
            response: Bytes::from(grown),
            input_items: Bytes::from_static(b"[1]"),
            context: Bytes::from_static(b"[1,2]"),
        };
        store.put(key("t", 1), r.clone());
        let got = store.get(&key("t", 1), Visible::All).unwrap();
        assert!(got == r, "the same bytes come back");
        let start = got.response.as_ptr() as usize;
        assert_eq!(
            got.input_items.as_ptr() as usize,
            start + got.response.len()
        );
        assert_eq!(
            got.context.as_ptr() as usize,
            start + got.response.len() + got.input_items.len(),
            "one allocation holds the three parts, in order"
        );
    }
}
