//! The bounded, sharded key table behind every per-key limiter.
//!
//! Why this shape: a limiter must hold state for millions of distinct keys (client addresses,
//! API keys) without growing without bound, and every request touches one entry. Each shard is
//! a `parking_lot::Mutex` around an LRU map (`hashlink`): an LRU must reorder on every hit, so a
//! read lock would not help, and a lock-free concurrent LRU is far more code for little gain.
//! The critical section is one hash lookup plus a few integer operations, and with up to 64
//! shards chosen by a seeded hash of the key, two requests contend only when their keys land in
//! the same shard at the same instant; an uncontended `parking_lot` lock is a single CAS. No
//! lock is ever held across an `.await`.
//!
//! Memory is bounded by `max_keys`: a new key beyond a shard's share evicts that shard's least
//! recently used key. For token buckets this loses nothing in the common case: a key idle for
//! longer than `burst / rate` has a full bucket, exactly what a fresh entry starts with.

use hashlink::LruCache;
use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A key as stored: the bytes of the rendered key, allocated once when the key is first seen.
pub(crate) type Key = Box<[u8]>;

/// At most this many shards; fewer when `max_keys` is small, so the bound stays tight.
const MAX_SHARDS: usize = 64;

/// Below this many keys per shard, use fewer shards.
const MIN_KEYS_PER_SHARD: usize = 1024;

/// A bounded map from key to `V`, split into independently locked LRU shards.
pub(crate) struct ShardedTable<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Seeds the shard choice, so keys cannot be crafted to pile into one shard.
    seed: u64,
}

/// One shard: the LRU map and the keys marked for the global limiter's next sync.
pub(crate) struct Shard<V> {
    pub(crate) map: LruCache<Key, V>,
    /// Keys with counts not yet sent (used by the global limiter only).
    pub(crate) marked: Vec<Key>,
}

// === impl ShardedTable ===

impl<V> std::fmt::Debug for ShardedTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedTable")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<V> ShardedTable<V> {
    /// A table holding at most about `max_keys` entries (rounded up to a multiple of the shard
    /// count).
    pub(crate) fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // A power of two, so the shard index is a mask.
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        let per_shard = max_keys.div_ceil(shards);
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: LruCache::new(per_shard),
                        marked: Vec::new(),
                    })
                })
                .collect(),
            seed: rand::random(),
        }
    }

    /// Runs `f` on the entry of `key` (created with `make` when missing) and its shard's mark
    /// list, under the shard's lock.
    pub(crate) fn with<R>(
        &self,
        key: &[u8],
        make: impl FnOnce() -> V,
        f: impl FnOnce(&mut V, &mut Vec<Key>) -> R,
    ) -> R {
        let mut shard = self.shard(key).lock();
        let Shard { map, marked } = &mut *shard;
        if let Some(v) = map.get_mut(key) {
            return f(v, marked);
        }
        let mut fresh = make();
        let result = f(&mut fresh, marked);
        // Evicts the least recently used entry when the shard is full.
        map.insert(Key::from(key), fresh);
        result
    }

    /// Runs `f` on the entry of `key` if there is one, without touching its recency.
    pub(crate) fn peek(&self, key: &[u8], f: impl FnOnce(&mut V)) {
        if let Some(v) = self.shard(key).lock().map.peek_mut(key) {
            f(v);
        }
    }

    /// Each shard in turn, locked; for the sync task's sweeps.
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut Shard<V>)) {
        for shard in self.shards.iter() {
            f(&mut shard.lock());
        }
    }

    /// Number of keys held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard<V>> {
        // The low bits pick the shard; hashlink's map hashes with its own random seed.
        let index = (xxh3_64_with_seed(key, self.seed) as usize) & (self.shards.len() - 1);
        &self.shards[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stays_bounded_and_recent_keys_survive() {
        let table: ShardedTable<u32> = ShardedTable::new(2048);
        assert_eq!(table.shards.len(), 2);
        for i in 0..100_000u32 {
            table.with(&i.to_be_bytes(), || 0, |v, _| *v += 1);
            // One key stays hot throughout and is never evicted.
            table.with(b"hot", || 0, |v, _| *v += 1);
        }
        assert!(table.len() <= 2048, "{} keys held", table.len());
        assert_eq!(table.with(b"hot", || 0, |v, _| *v), 100_000);
        // An early key was evicted: it starts over.
        assert_eq!(table.with(&0u32.to_be_bytes(), || 0, |v, _| *v), 0);
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        for max in [1, 10, 1024, 3000, 5000, 100_000, 10_000_000] {
            let n = ShardedTable::<u8>::new(max).shards.len();
            assert!(n.is_power_of_two() && n <= MAX_SHARDS, "{max}: {n}");
        }
    }
}
