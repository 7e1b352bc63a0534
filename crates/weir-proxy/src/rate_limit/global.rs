//! Global limits: one limit per key shared by every weir instance, counted in Redis.
//!
//! Each key has a fixed one-second window (`weir:rl:{route}:{key}:{unix second}` in Redis).
//! Requests are decided locally from what this instance knows: the window's total as Redis last
//! reported it (`seen`), plus what this instance admitted since (`inflight` being sent, and
//! `pending` not yet sent). Every `sync_interval` the sync task sends the pending counts with
//! one pipelined `INCRBY` + `EXPIRE` per key and learns the new totals, which include every
//! other instance's counts. No request waits for Redis: the decision reads memory only.
//!
//! The price is accuracy: between two syncs an instance does not see the others' requests. To
//! keep the overshoot small, an instance runs ahead of the last known total by at most half of
//! the budget left (limit minus that total) before it hears from Redis again, rather than all
//! of it; near the end of a window's budget this makes an instance wait a sync or two for the
//! last few requests. `docs/rate-limiting.md` works through the numbers.
//!
//! When Redis cannot be reached (a connect or batch takes longer than `timeout`, or fails), the
//! limit is marked unavailable until a later sync succeeds: `failure_mode: open` lets requests
//! through (the local limit, if any, still applies), `closed` refuses them with 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use weir_config::{FailureMode, GlobalRateLimitConfig, RateLimitServiceConfig};

use super::table::{Key, ShardedTable};
use crate::snapshot::{Listener, Snapshot, SnapshotHandle};

/// Redis keys live this many seconds: their window plus a margin for clock skew.
const KEY_TTL_SECS: u64 = 3;

/// At most this many keys per limit go out in one sync; the rest wait for the next.
const MAX_BATCH: usize = 10_000;

/// Sleep between checks while no rate limit service is configured (a reload may add one).
const IDLE_SLEEP: Duration = Duration::from_secs(1);

/// A route's global limit: what this instance knows of each key's window.
#[derive(Debug)]
pub(crate) struct GlobalLimiter {
    /// The route's name in Redis keys.
    id: Arc<str>,
    limit: u32,
    failure_mode: FailureMode,
    table: ShardedTable<Entry>,
    /// Whether the last exchange with Redis worked.
    available: AtomicBool,
}

/// One key's window as this instance sees it.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The unix second the counts belong to.
    window: u64,
    /// The window's total across instances, as Redis last reported it.
    seen: u64,
    /// Admitted here and being sent now.
    inflight: u64,
    /// Admitted here, not sent yet.
    pending: u64,
    /// Whether the key is on its shard's list for the next sync.
    marked: bool,
}

/// The global limit's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobalVerdict {
    /// Under the limit (or Redis is down and the limit fails open).
    Allowed,
    /// The window's total reached the limit.
    Limited,
    /// Redis is down and the limit fails closed.
    Unavailable,
}

/// Counts of one key taken for a sync.
#[derive(Debug)]
pub(crate) struct Taken {
    key: Key,
    window: u64,
    sent: u64,
}

// === impl GlobalLimiter ===

impl GlobalLimiter {
    /// The limit of `cfg` for the route named `id`.
    pub(crate) fn new(id: &str, cfg: &GlobalRateLimitConfig) -> Self {
        Self {
            id: Arc::from(id),
            limit: cfg.requests_per_second,
            failure_mode: cfg.failure_mode,
            table: ShardedTable::new(cfg.max_keys as usize),
            available: AtomicBool::new(true),
        }
    }

    /// Requests per second per key.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Decides one request of `key` in `window` (a unix second) and counts it when allowed.
    pub(crate) fn check(&self, key: &[u8], window: u64) -> GlobalVerdict {
        if !self.available.load(Ordering::Relaxed) {
            return match self.failure_mode {
                FailureMode::Open => GlobalVerdict::Allowed,
                FailureMode::Closed => GlobalVerdict::Unavailable,
            };
        }
        let limit = u64::from(self.limit);
        let fresh = || Entry {
            window,
            ..Entry::default()
        };
        self.table.with(key, fresh, |e, marked| {
            if e.window != window {
                // A new window: counts of the old one no longer matter (nor do unsent ones).
                *e = Entry {
                    window,
                    marked: e.marked,
                    ..Entry::default()
                };
            }
            // Run ahead of the last known total by at most half of what is left: other
            // instances may be spending the same rest right now (see the module doc).
            let rest = limit.saturating_sub(e.seen);
            if e.inflight + e.pending >= rest.div_ceil(2) {
                return GlobalVerdict::Limited;
            }
            e.pending += 1;
            if !e.marked {
                e.marked = true;
                marked.push(Key::from(key));
            }
            GlobalVerdict::Allowed
        })
    }

    /// Takes the unsent counts of `window` (up to [`MAX_BATCH`] keys) for a sync.
    pub(crate) fn take(&self, window: u64) -> Vec<Taken> {
        let mut taken = Vec::new();
        self.table.for_each_shard(|shard| {
            let budget = MAX_BATCH
                .saturating_sub(taken.len())
                .min(shard.marked.len());
            let start = shard.marked.len() - budget;
            for key in shard.marked.drain(start..) {
                let Some(e) = shard.map.peek_mut(&key) else {
                    continue; // evicted since
                };
                e.marked = false;
                if e.window != window || e.pending == 0 {
                    continue;
                }
                let sent = e.pending;
                e.inflight += sent;
                e.pending = 0;
                taken.push(Taken { key, window, sent });
            }
        });
        taken
    }

    /// Records the answer to a sync of `t`: Redis's new total, or `None` when it failed (the
    /// counts are then dropped; the limit is marked unavailable by the caller).
    pub(crate) fn apply(&self, t: &Taken, total: Option<u64>) {
        self.table.peek(&t.key, |e| {
            if e.window != t.window {
                return;
            }
            e.inflight = e.inflight.saturating_sub(t.sent);
            if let Some(total) = total {
                // Totals only grow within a window; an older answer must not lower it.
                e.seen = e.seen.max(total);
            }
        });
    }

    /// Marks Redis reachable or not.
    pub(crate) fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// Whether the last exchange with Redis worked.
    pub(crate) fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    fn redis_key(&self, t: &Taken) -> Vec<u8> {
        let mut k = format!("weir:rl:{}:", self.id).into_bytes();
        k.extend_from_slice(&t.key);
        k.extend_from_slice(format!(":{}", t.window).as_bytes());
        k
    }
}

/// The current window: the unix second. Every instance must keep its clock in sync (NTP).
pub(crate) fn current_window() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Time until the current window ends.
pub(crate) fn until_next_window() -> Duration {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_secs(1) - Duration::from_nanos(u64::from(into))
}

/// Every global limiter of `snapshot`'s routes.
fn limiters(snapshot: &Snapshot) -> Vec<Arc<GlobalLimiter>> {
    snapshot
        .listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Http(h) => Some(h.rate_limits.iter().flatten()),
            _ => None,
        })
        .flatten()
        .filter_map(|r| r.global().cloned())
        .collect()
}

/// The connection to Redis, kept across syncs; `None` after a failure until reconnected.
struct Link {
    addr: SocketAddr,
    conn: MultiplexedConnection,
}

/// Syncs the global limits of the current snapshot with Redis every `sync_interval` until
/// `shutdown` fires. Started by `Proxy::start`; idles while no service is configured.
pub(crate) async fn sync_loop(snapshots: SnapshotHandle, shutdown: CancellationToken) {
    let mut link: Option<Link> = None;
    // The first round runs at once: it connects before traffic needs the counts.
    let mut sleep = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
        let snapshot = snapshots.load();
        let service = snapshot.rate_limit_service.clone();
        let limiters = limiters(&snapshot);
        drop(snapshot);
        let Some(service) = service else {
            sleep = IDLE_SLEEP;
            link = None;
            continue;
        };
        sleep = service.sync_interval.get();
        if limiters.is_empty() {
            continue;
        }
        let ok = tokio::select! {
            _ = shutdown.cancelled() => return,
            ok = sync_once(&service, &limiters, &mut link) => ok,
        };
        for l in &limiters {
            if l.available() != ok {
                tracing::warn!(route = %l.id, available = ok, "rate limit service availability changed");
            }
            l.set_available(ok);
        }
    }
}

/// One exchange: send every pending count, learn the totals. `false` when Redis failed.
async fn sync_once(
    service: &RateLimitServiceConfig,
    limiters: &[Arc<GlobalLimiter>],
    link: &mut Option<Link>,
) -> bool {
    let timeout = service.timeout.get();
    let window = current_window();
    let taken: Vec<(&Arc<GlobalLimiter>, Vec<Taken>)> =
        limiters.iter().map(|l| (l, l.take(window))).collect();
    let conn = match connect(service.redis, timeout, link).await {
        Some(conn) => conn,
        None => {
            drop_all(&taken);
            return false;
        }
    };
    let mut pipe = redis::pipe();
    let mut count = 0;
    for (limiter, items) in &taken {
        for t in items {
            let key = limiter.redis_key(t);
            pipe.cmd("INCRBY").arg(&key).arg(t.sent);
            pipe.cmd("EXPIRE").arg(&key).arg(KEY_TTL_SECS).ignore();
            count += 1;
        }
    }
    if count == 0 {
        // Nothing to send: a PING keeps the availability verdict fresh.
        pipe.cmd("PING").ignore();
    }
    let answer = tokio::time::timeout(timeout, pipe.query_async::<Vec<u64>>(conn)).await;
    match answer {
        Ok(Ok(totals)) if totals.len() == count => {
            let mut totals = totals.into_iter();
            for (limiter, items) in &taken {
                for t in items {
                    limiter.apply(t, totals.next());
                }
            }
            true
        }
        other => {
            let why = match other {
                Ok(Ok(_)) => "unexpected reply".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            tracing::debug!(error = %why, "rate limit sync failed");
            *link = None;
            drop_all(&taken);
            false
        }
    }
}

fn drop_all(taken: &[(&Arc<GlobalLimiter>, Vec<Taken>)]) {
    for (limiter, items) in taken {
        for t in items {
            limiter.apply(t, None);
        }
    }
}

/// The live connection to `addr`, connecting (within `timeout`) when there is none.
async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    link: &mut Option<Link>,
) -> Option<&mut MultiplexedConnection> {
    if link.as_ref().is_some_and(|l| l.addr != addr) {
        *link = None;
    }
    if link.is_none() {
        let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
        let conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await;
        match conn {
            Ok(Ok(conn)) => *link = Some(Link { addr, conn }),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "cannot connect to the rate limit service");
                return None;
            }
            Err(_) => {
                tracing::debug!(%addr, "connecting to the rate limit service timed out");
                return None;
            }
        }
    }
    link.as_mut().map(|l| &mut l.conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u32, failure_mode: FailureMode) -> GlobalLimiter {
        GlobalLimiter::new(
            "public/0",
            &GlobalRateLimitConfig {
                requests_per_second: limit,
                failure_mode,
                max_keys: 1000,
            },
        )
    }

    #[test]
    fn runs_ahead_by_half_the_rest_between_syncs() {
        let l = limiter(4, FailureMode::Open);
        let verdicts: Vec<_> = (0..3).map(|_| l.check(b"k", 100)).collect();
        use GlobalVerdict::{Allowed, Limited};
        assert_eq!(
            verdicts,
            [Allowed, Allowed, Limited],
            "half of 4 before a sync"
        );
        // Redis reports 3: this instance's 2 and one from elsewhere; 1 is left, and taken.
        let taken = l.take(100);
        l.apply(&taken[0], Some(3));
        assert_eq!(l.check(b"k", 100), Allowed);
        assert_eq!(l.check(b"k", 100), Limited);
        let taken = l.take(100);
        l.apply(&taken[0], Some(4));
        assert_eq!(l.check(b"k", 100), Limited, "the window is used up");
        // A new window starts over.
        assert_eq!(l.check(b"k", 101), Allowed);
    }

    /// Two instances each offered `offered` per sync interval against `limit`, syncing one
    /// after the other through a shared counter that stands in for Redis; what they admit in
    /// one window together.
    fn two_instances(limit: u32, offered: usize) -> usize {
        let (a, b) = (
            limiter(limit, FailureMode::Open),
            limiter(limit, FailureMode::Open),
        );
        let mut redis = 0;
        let mut admitted = 0;
        for _ in 0..20 {
            for l in [&a, &b] {
                admitted += (0..offered)
                    .filter(|_| l.check(b"k", 9) == GlobalVerdict::Allowed)
                    .count();
            }
            for l in [&a, &b] {
                for t in l.take(9) {
                    redis += t.sent;
                    l.apply(&t, Some(redis));
                }
            }
        }
        admitted
    }

    #[test]
    fn halving_the_rest_bounds_the_overshoot() {
        // Without the halving rule these would be 35 and 20: each instance would spend all the
        // rest it knows of, and the first to sync learns the other's counts a round late.
        assert_eq!(two_instances(25, 10), 31);
        assert_eq!(two_instances(10, 50), 13);
        // Traffic well under the limit is all admitted.
        assert_eq!(two_instances(1000, 10), 400);
    }

    #[test]
    fn totals_from_other_instances_count() {
        let l = limiter(10, FailureMode::Open);
        assert_eq!(l.check(b"k", 7), GlobalVerdict::Allowed);
        assert_eq!(l.check(b"k", 7), GlobalVerdict::Allowed);
        let taken = l.take(7);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].sent, 2);
        assert_eq!(l.redis_key(&taken[0]), b"weir:rl:public/0:k:7");
        // While the batch is out, its counts still count; one more is admitted meanwhile.
        assert_eq!(l.check(b"k", 7), GlobalVerdict::Allowed);
        // Redis says the window holds 9 (7 from other instances): the request admitted
        // meanwhile took the last place.
        l.apply(&taken[0], Some(9));
        assert_eq!(
            l.check(b"k", 7),
            GlobalVerdict::Limited,
            "9 seen + 1 pending"
        );
        let taken = l.take(7);
        assert_eq!(taken[0].sent, 1, "only the unsent request goes next");
        assert!(l.take(7).is_empty(), "nothing is sent twice");
    }

    #[test]
    fn failed_syncs_drop_counts_and_failure_mode_decides() {
        let open = limiter(1, FailureMode::Open);
        assert_eq!(open.check(b"k", 1), GlobalVerdict::Allowed);
        let taken = open.take(1);
        open.apply(&taken[0], None);
        open.set_available(false);
        assert_eq!(open.check(b"k", 1), GlobalVerdict::Allowed, "fails open");
        let closed = limiter(100, FailureMode::Closed);
        closed.set_available(false);
        assert_eq!(closed.check(b"k", 1), GlobalVerdict::Unavailable);
        closed.set_available(true);
        assert_eq!(closed.check(b"k", 1), GlobalVerdict::Allowed);
    }

    #[test]
    fn stale_windows_are_not_sent() {
        let l = limiter(5, FailureMode::Open);
        l.check(b"old", 1);
        assert!(l.take(2).is_empty());
    }

    #[test]
    fn window_clock_is_consistent() {
        let left = until_next_window();
        assert!(left > Duration::ZERO && left <= Duration::from_secs(1));
        assert!(current_window() > 1_700_000_000);
    }
}
