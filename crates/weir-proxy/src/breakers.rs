//! Circuit breakers: per-cluster limits on connections, pending requests and requests in
//! progress (Envoy's `circuit_breakers`).
//!
//! When a cluster slows down, requests pile up: more connections, more waiting, more memory.
//! A limit turns that pile-up into fast `503`s, so one sick cluster cannot take the proxy down.
//! Each limit is an atomic counter shared by every request of the cluster; a [`Slot`] holds one
//! unit and gives it back when dropped. The counters are carried over when the config reloads,
//! so in-flight work still counts against the new limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use weir_config::CircuitBreakersConfig;
use weir_core::{Error, ErrorKind};

/// The limits of one cluster and its live counters.
#[derive(Debug)]
pub(crate) struct Breakers {
    limits: CircuitBreakersConfig,
    counters: Arc<Counters>,
}

/// The live counters behind a cluster's limits, shared across reloads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicUsize,
    pending: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    overflows: [AtomicU64; 4],
}

/// A snapshot of a cluster's breaker counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    /// Upstream connections open now.
    pub connections: usize,
    /// Requests waiting for a connection now.
    pub pending: usize,
    /// Requests (and L4 connections) in progress now.
    pub requests: usize,
    /// Times `max_connections` refused a connection.
    pub connection_overflows: u64,
    /// Times `max_pending_requests` refused a request.
    pub pending_overflows: u64,
    /// Times `max_requests` refused a request.
    pub request_overflows: u64,
    /// Retries (and hedges) in progress now.
    pub retries: usize,
    /// Times `max_retries` refused a retry.
    pub retry_overflows: u64,
}

/// One unit of a limit, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    counters: Arc<Counters>,
    kind: BreakerLimit,
}

/// One of a cluster's circuit-breaker limits (the `limit` label of the overflow counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerLimit {
    /// `max_connections`: upstream connections open at once.
    MaxConnections = 0,
    /// `max_pending_requests`: requests waiting for a connection.
    MaxPendingRequests = 1,
    /// `max_requests`: requests (and L4 connections) in progress.
    MaxRequests = 2,
    /// `max_retries`: retries and hedges in progress.
    MaxRetries = 3,
}

// === impl Breakers ===

impl Breakers {
    /// Breakers with `limits`, reusing the counters of the previous snapshot's cluster.
    pub(crate) fn new(limits: CircuitBreakersConfig, previous: Option<&Breakers>) -> Self {
        Self {
            limits,
            counters: previous
                .map(|p| Arc::clone(&p.counters))
                .unwrap_or_default(),
        }
    }

    /// A unit of `max_requests`, or an `Overloaded` error naming the limit.
    pub(crate) fn request(&self) -> Result<Slot, Error> {
        self.take(BreakerLimit::MaxRequests, self.limits.max_requests)
    }

    /// A unit of `max_pending_requests`, held while a request waits for a connection.
    pub(crate) fn pending(&self) -> Result<Slot, Error> {
        self.take(
            BreakerLimit::MaxPendingRequests,
            self.limits.max_pending_requests,
        )
    }

    /// A unit of `max_retries`, held while a retry or hedge is in progress.
    pub(crate) fn retry(&self) -> Result<Slot, Error> {
        self.take(BreakerLimit::MaxRetries, self.limits.max_retries)
    }

    /// A unit of `max_connections`, held for the life of an upstream connection.
    pub(crate) fn connection(&self) -> Result<Slot, Error> {
        self.take(BreakerLimit::MaxConnections, self.limits.max_connections)
    }

    /// The current counters.
    pub(crate) fn stats(&self) -> BreakerStats {
        let c = &self.counters;
        BreakerStats {
            connections: c.connections.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            connection_overflows: c.overflows[BreakerLimit::MaxConnections as usize]
                .load(Ordering::Relaxed),
            pending_overflows: c.overflows[BreakerLimit::MaxPendingRequests as usize]
                .load(Ordering::Relaxed),
            request_overflows: c.overflows[BreakerLimit::MaxRequests as usize]
                .load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            retry_overflows: c.overflows[BreakerLimit::MaxRetries as usize].load(Ordering::Relaxed),
        }
    }

    fn take(&self, kind: BreakerLimit, limit: u32) -> Result<Slot, Error> {
        let counter = self.counters.counter(kind);
        if counter.fetch_add(1, Ordering::AcqRel) >= limit as usize {
            counter.fetch_sub(1, Ordering::AcqRel);
            self.counters.overflows[kind as usize].fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(ErrorKind::Overloaded, kind.as_str()));
        }
        Ok(Slot {
            counters: Arc::clone(&self.counters),
            kind,
        })
    }
}

// === impl Counters ===

impl Counters {
    fn counter(&self, kind: BreakerLimit) -> &AtomicUsize {
        match kind {
            BreakerLimit::MaxConnections => &self.connections,
            BreakerLimit::MaxPendingRequests => &self.pending,
            BreakerLimit::MaxRequests => &self.requests,
            BreakerLimit::MaxRetries => &self.retries,
        }
    }
}

// === impl BreakerLimit ===

impl BreakerLimit {
    /// Every limit, in label order.
    pub const ALL: [BreakerLimit; 4] = [
        Self::MaxConnections,
        Self::MaxPendingRequests,
        Self::MaxRequests,
        Self::MaxRetries,
    ];

    /// The limit that refused with `error`, when a circuit breaker made it.
    pub(crate) fn of(error: &Error) -> Option<Self> {
        if error.kind() != ErrorKind::Overloaded {
            return None;
        }
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == error.context())
    }

    /// The limit's name in the config (and the `limit` label).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerLimit::MaxConnections => "max_connections",
            BreakerLimit::MaxPendingRequests => "max_pending_requests",
            BreakerLimit::MaxRequests => "max_requests",
            BreakerLimit::MaxRetries => "max_retries",
        }
    }
}

// === impl Slot ===

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters
            .counter(self.kind)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(max: u32) -> Breakers {
        Breakers::new(
            CircuitBreakersConfig {
                max_connections: max,
                max_pending_requests: max,
                max_requests: max,
                max_retries: max,
            },
            None,
        )
    }

    #[test]
    fn limits_refuse_past_the_maximum_and_recover_on_drop() {
        let b = breakers(2);
        let one = b.request().unwrap();
        let two = b.request().unwrap();
        let e = b.request().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert_eq!(e.context(), "max_requests");
        assert_eq!(b.stats().requests, 2);
        assert_eq!(b.stats().request_overflows, 1);
        drop(one);
        let _three = b.request().unwrap();
        drop(two);
        assert_eq!(b.stats().requests, 1);
        let retry = b.retry().unwrap();
        let _second = b.retry().unwrap();
        assert_eq!(b.retry().unwrap_err().context(), "max_retries");
        assert_eq!(b.stats().retry_overflows, 1);
        drop(retry);
        assert_eq!(b.stats().retries, 1);
        // The refusal names its limit, and the limit is read back from the error.
        assert_eq!(BreakerLimit::of(&e), Some(BreakerLimit::MaxRequests));
        let other = Error::new(ErrorKind::UpstreamTimeout, "max_requests");
        assert_eq!(BreakerLimit::of(&other), None);
    }

    #[test]
    fn counters_survive_a_reload() {
        let old = breakers(1);
        let held = old.connection().unwrap();
        let new = Breakers::new(
            CircuitBreakersConfig {
                max_connections: 1,
                ..CircuitBreakersConfig::default()
            },
            Some(&old),
        );
        assert!(
            new.connection().is_err(),
            "the connection opened before the reload counts"
        );
        drop(held);
        assert!(new.connection().is_ok());
    }
}
