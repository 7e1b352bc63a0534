//! The session table of hashed affinity (`header`, `client_address`): which endpoint each recent
//! key went to, and since when, so that a draining endpoint keeps the sessions it already has
//! while getting no new ones (issue #6) — HAProxy's stick table, reduced to what draining needs.
//!
//! Why a table: Maglev maps a key to an endpoint without remembering anything, so once an
//! endpoint is drained (and so leaves the table's eligible set) it cannot tell an existing
//! session from a new one with the same key. The table remembers `key hash → (endpoint, since,
//! expiry)` for keys seen within `session_idle`.
//!
//! Shape, as `rate_limit/table.rs` and for the same reasons: up to 16 shards, each a
//! `parking_lot::Mutex` around an LRU map (`hashlink`), the shard chosen by a seeded hash of the
//! key. A request takes one shard lock for one lookup and one update (an LRU reorders on every
//! hit, so a read lock would not help). Memory is bounded by `max_sessions`, split exactly over
//! the shards: a new key in a full shard first drops sessions that ended (from the LRU end, a
//! few at a time), then evicts the session idle longest, which is counted. The table is sans-io:
//! every call takes the clock reading.

use hashlink::LruCache;
use parking_lot::Mutex;
use weir_core::Nanos;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// At most this many shards; fewer when the table is small, so each shard's LRU stays a good
/// approximation of the whole table's.
const MAX_SHARDS: usize = 16;

/// Below this many sessions per shard, use fewer shards.
const MIN_PER_SHARD: usize = 1024;

/// Ended sessions dropped from a shard's LRU end per insert: keeps the table trimmed without
/// ever holding the lock for a long sweep.
const SWEEP_PER_INSERT: usize = 4;

/// A bounded map from key hash to the key's session, split into independently locked shards.
pub(crate) struct SessionTable {
    shards: Box<[Mutex<LruCache<u64, Entry>>]>,
    /// Seeds the shard choice, so keys cannot be crafted to pile into one shard.
    seed: u64,
    capacity: usize,
}

/// One key's session: the endpoint it goes to and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The endpoint's [`super::cookie::endpoint_id`]: stable across reloads.
    pub(crate) endpoint: u64,
    /// The endpoint's index when the session was recorded; a hint, checked against `endpoint`.
    pub(crate) index: usize,
    /// Clock reading when the key went to this endpoint (a move restarts it).
    pub(crate) since: Nanos,
    /// Clock reading at which the session ends unless the key is seen again.
    pub(crate) expires: Nanos,
}

/// Where a key's session goes: an endpoint's id and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The endpoint's [`super::cookie::endpoint_id`].
    pub(crate) endpoint: u64,
    /// Its index in the cluster's endpoint list.
    pub(crate) index: usize,
}

/// What one [`SessionTable::visit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Visit<R> {
    /// What the caller's decision returned, if it chose an endpoint.
    pub(crate) result: Option<R>,
    /// Whether a live session was evicted to make room for this key.
    pub(crate) evicted: bool,
}

// === impl SessionTable ===

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SessionTable {
    /// A table holding at most `max_sessions` sessions (at least one).
    pub(crate) fn new(max_sessions: usize) -> Self {
        let capacity = max_sessions.max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        // A power of two, so the shard index is a mask.
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        // Split exactly: the first `capacity % shards` shards take one more.
        let (base, extra) = (capacity / shards, capacity % shards);
        Self {
            shards: (0..shards)
                .map(|i| Mutex::new(LruCache::new(base + usize::from(i < extra))))
                .collect(),
            seed: rand::random(),
            capacity,
        }
    }

    /// The most sessions the table holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Under the lock of `key`'s shard: hands `decide` the key's live session at `now` (`None`
    /// when it has none, or it ended), and records the [`Target`] it returns as the key's
    /// session, ending `idle` after `now` (its `since` kept when the endpoint is the same, else
    /// `now`). `decide` returning `None` records nothing.
    pub(crate) fn visit<R>(
        &self,
        key: u64,
        now: Nanos,
        idle: Nanos,
        decide: impl FnOnce(Option<Entry>) -> Option<(Target, R)>,
    ) -> Visit<R> {
        let mut shard = self.shard(key).lock();
        // A known key: one lookup, which also makes it the most recently used.
        if let Some(slot) = shard.get_mut(&key) {
            let live = Some(*slot).filter(|e| e.expires > now);
            let result = decide(live).map(|(target, result)| {
                *slot = entry(live, target, now, idle);
                result
            });
            return Visit {
                result,
                evicted: false,
            };
        }
        let Some((target, result)) = decide(None) else {
            return Visit {
                result: None,
                evicted: false,
            };
        };
        sweep(&mut shard, now, SWEEP_PER_INSERT);
        let evicted = shard.len() >= shard.capacity()
            && shard.remove_lru().is_some_and(|(_, e)| e.expires > now);
        shard.insert(key, entry(None, target, now, idle));
        Visit {
            result: Some(result),
            evicted,
        }
    }

    /// Sessions live at `now` (for `/clusters` and `/metrics`; locks each shard in turn).
    /// Each shard first drops at most [`SCRAPE_SWEEP`] sessions that ended from its LRU end,
    /// so a scrape never holds a lock the request path needs for long; after a long lull the
    /// count may still include some ended sessions (an upper bound until the next visits).
    pub(crate) fn live(&self, now: Nanos) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut shard = s.lock();
                sweep(&mut shard, now, SCRAPE_SWEEP);
                shard.len()
            })
            .sum()
    }

    fn shard(&self, key: u64) -> &Mutex<LruCache<u64, Entry>> {
        // The low bits pick the shard; hashlink's map hashes with its own random seed.
        let index =
            (xxh3_64_with_seed(&key.to_le_bytes(), self.seed) as usize) & (self.shards.len() - 1);
        &self.shards[index]
    }
}

/// Ended sessions a scrape drops per shard at most (bounds the time it holds a shard's lock).
const SCRAPE_SWEEP: usize = 1024;

/// The session recorded for a key whose live session was `live` and that goes to `target` at
/// `now`: `since` is kept while the endpoint is the same.
fn entry(live: Option<Entry>, target: Target, now: Nanos, idle: Nanos) -> Entry {
    let since = match live {
        Some(e) if e.endpoint == target.endpoint => e.since,
        _ => now,
    };
    Entry {
        endpoint: target.endpoint,
        index: target.index,
        since,
        expires: now.saturating_add(idle),
    }
}

/// Drops up to `most` sessions that ended by `now` from `shard`'s least recently used end.
/// Sessions are refreshed in LRU order, so the ended ones gather there.
fn sweep(shard: &mut LruCache<u64, Entry>, now: Nanos, most: usize) {
    for _ in 0..most {
        match shard.iter().next() {
            Some((_, e)) if e.expires <= now => {
                let _ = shard.remove_lru();
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    /// Records `key` on endpoint `id` at `now` (keeping whatever it had), returning what it had.
    fn touch(t: &SessionTable, key: u64, id: u64, now: Nanos, idle: Nanos) -> Visit<Option<Entry>> {
        t.visit(key, now, idle, |live| {
            Some((
                Target {
                    endpoint: id,
                    index: id as usize,
                },
                live,
            ))
        })
    }

    #[test]
    fn the_bound_holds_under_a_million_distinct_keys_and_evictions_are_counted() {
        let t = SessionTable::new(65_536);
        assert_eq!(t.shards.len(), 16);
        let total: usize = t.shards.iter().map(|s| s.lock().capacity()).sum();
        assert_eq!(total, 65_536, "the shards split the bound exactly");
        let mut evicted = 0u64;
        for key in 0..1_000_000u64 {
            // All live (a long idle), so every insert into a full shard evicts.
            let v = touch(
                &t,
                key.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                1,
                SEC,
                3600 * SEC,
            );
            evicted += u64::from(v.evicted);
            // One key stays hot throughout and is never evicted.
            touch(&t, 7, 2, SEC, 3600 * SEC);
        }
        let held = t.live(SEC);
        assert!(held <= 65_536, "{held} sessions held");
        assert!(held >= 65_000, "a full table stays (nearly) full: {held}");
        assert_eq!(evicted, 1_000_000 + 1 - held as u64, "every drop counted");
        let hot = touch(&t, 7, 2, SEC, 3600 * SEC).result.unwrap();
        assert_eq!(hot.map(|e| e.endpoint), Some(2), "the hot key survived");
        // The first keys were idle longest: gone.
        assert_eq!(touch(&t, 0, 1, SEC, 3600 * SEC).result.unwrap(), None);
    }

    #[test]
    fn sessions_end_after_the_idle_time_and_ended_ones_are_not_evictions() {
        let t = SessionTable::new(100);
        assert_eq!(t.shards.len(), 1);
        let idle = 10 * SEC;
        for key in 0..100 {
            touch(&t, key, 1, SEC, idle);
        }
        assert_eq!(t.live(SEC), 100);
        // Seen again within the idle time: alive, and refreshed.
        let again = touch(&t, 5, 1, 9 * SEC, idle).result.unwrap().unwrap();
        assert_eq!((again.since, again.expires), (SEC, 11 * SEC));
        assert_eq!(
            t.live(10 * SEC),
            100,
            "all live until their idle time is up"
        );
        assert_eq!(t.live(11 * SEC), 1, "only the refreshed key is still live");
        let gone = touch(&t, 6, 1, 11 * SEC, idle).result.unwrap();
        assert_eq!(gone, None, "ended sessions count as none");
        // A full table of ended sessions makes room without counting evictions.
        let t = SessionTable::new(100);
        for key in 0..100 {
            touch(&t, key, 1, SEC, idle);
        }
        let evicted = (100..200)
            .filter(|&k| touch(&t, k, 1, 20 * SEC, idle).evicted)
            .count();
        assert_eq!(evicted, 0);
        assert_eq!(t.live(20 * SEC), 100);
    }

    #[test]
    fn a_move_restarts_since_and_no_decision_records_nothing() {
        let t = SessionTable::new(10);
        touch(&t, 1, 1, SEC, 60 * SEC);
        touch(&t, 1, 1, 2 * SEC, 60 * SEC);
        let kept = touch(&t, 1, 2, 3 * SEC, 60 * SEC).result.unwrap().unwrap();
        assert_eq!(
            (kept.endpoint, kept.since),
            (1, SEC),
            "same endpoint kept since"
        );
        let moved = touch(&t, 1, 2, 4 * SEC, 60 * SEC).result.unwrap().unwrap();
        assert_eq!(
            (moved.endpoint, moved.since),
            (2, 3 * SEC),
            "a move restarts since"
        );
        let none = t.visit(9, 5 * SEC, 60 * SEC, |_| None::<(Target, ())>);
        assert_eq!(none.result, None);
        assert_eq!(t.live(5 * SEC), 1);
    }
}
