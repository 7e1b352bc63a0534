//! Rate limiting on the data path: per-route request limits and per-listener connection limits.
//!
//! A route with `rate_limit:` compiles to a [`RouteLimiter`]: the key spec (which parts of a
//! request identify who is counted), an optional local token bucket per key ([`local`]) and an
//! optional global fixed-window limit shared through Redis ([`global`]). `l7::proxy` asks it
//! right after a route matches, before any cluster is picked; the answer is a plain function of
//! in-memory state, so no request ever waits on Redis — the global counts move in the
//! background ([`global::sync_loop`], started by `Proxy::start`). A refused request gets 429
//! (or 503 when a `failure_mode: closed` limit cannot reach Redis) with `Retry-After` and
//! `x-ratelimit-*` headers. The user-facing description is `docs/rate-limiting.md`.

pub(crate) mod global;
pub(crate) mod local;
mod table;

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response};
use weir_config::{RateLimitKeyPart, RouteRateLimitConfig};
use weir_core::{Clock, Error, ErrorKind, SystemClock};

use self::global::{GlobalLimiter, GlobalVerdict};
use self::local::{BucketVerdict, LocalLimiter};
use crate::l7::respond;
use crate::snapshot::Listener;
use crate::{CompileError, ProxyBody};

pub(crate) use self::local::ConnectionLimiter;

/// Header values longer than this are keyed by their hash, so a key stays small in memory.
const MAX_KEY_VALUE: usize = 128;

/// Requests a route's rate limits refused. Read with [`crate::Proxy::route_rate_limit_stats`].
#[derive(Debug, Default)]
pub struct RateLimitStats {
    /// Refused with 429 because a limit was exceeded.
    pub limited: AtomicU64,
    /// Refused with 503 because a `failure_mode: closed` global limit could not reach Redis.
    pub unavailable: AtomicU64,
}

/// A route's compiled rate limits.
#[derive(Debug)]
pub(crate) struct RouteLimiter {
    /// What it was compiled from, so a reload can tell whether it changed.
    config: RouteRateLimitConfig,
    id: String,
    key: Vec<RateLimitKeyPart>,
    local: Option<LocalLimiter>,
    global: Option<Arc<GlobalLimiter>>,
    pub(crate) stats: Arc<RateLimitStats>,
}

/// Why a request was refused, with what its headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    kind: ErrorKind,
    /// `x-ratelimit-limit`: requests per second of the limit that refused.
    limit: u32,
    /// `Retry-After`: when a request may pass again.
    retry_after: Duration,
    /// `x-ratelimit-reset`: when the limit is fully reset (bucket full, window over).
    reset: Duration,
}

// === impl RouteLimiter ===

impl RouteLimiter {
    /// `previous` when it was compiled from the same config and id (a reload that left the
    /// route's limits alone: its buckets and counts carry over), else a new limiter.
    pub(crate) fn compile_or_keep(
        cfg: &RouteRateLimitConfig,
        id: &str,
        at: &str,
        previous: Option<&Arc<Self>>,
    ) -> Result<Arc<Self>, CompileError> {
        match previous {
            Some(p) if p.config == *cfg && p.id == id => Ok(Arc::clone(p)),
            _ => Self::compile(cfg, id, at).map(Arc::new),
        }
    }

    /// Compiles `cfg`; `id` names the route in Redis keys (the same on every instance that
    /// runs the same config), `at` is its YAML path for errors.
    pub(crate) fn compile(
        cfg: &RouteRateLimitConfig,
        id: &str,
        at: &str,
    ) -> Result<Self, CompileError> {
        let key = cfg
            .key
            .iter()
            .map(|k| {
                RateLimitKeyPart::parse(k).map_err(|reason| CompileError {
                    path: format!("{at}.rate_limit.key"),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(Self {
            config: cfg.clone(),
            id: id.to_owned(),
            key,
            local: cfg.local.as_ref().map(|l| {
                LocalLimiter::new(
                    l.requests_per_second,
                    l.burst(),
                    l.max_keys as usize,
                    Arc::clone(&clock),
                )
            }),
            global: cfg
                .global
                .as_ref()
                .map(|g| Arc::new(GlobalLimiter::new(id, g))),
            stats: Arc::default(),
        })
    }

    /// The global limit, for the sync task.
    pub(crate) fn global(&self) -> Option<&Arc<GlobalLimiter>> {
        self.global.as_ref()
    }

    /// `None` when the request may go on; else the response that refuses it. Never waits.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        grpc: bool,
    ) -> Option<Response<ProxyBody>> {
        let key = self.key_of(headers, client);
        let refusal = self.decide(&key)?;
        let counter = match refusal.kind {
            ErrorKind::RateLimited => &self.stats.limited,
            _ => &self.stats.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(refusal.response(grpc))
    }

    fn decide(&self, key: &[u8]) -> Option<Refusal> {
        if let Some(local) = &self.local
            && let BucketVerdict::Limited { retry_in, full_in } = local.check(key)
        {
            return Some(Refusal {
                kind: ErrorKind::RateLimited,
                limit: local.rate,
                retry_after: Duration::from_nanos(retry_in),
                reset: Duration::from_nanos(full_in),
            });
        }
        let global = self.global.as_ref()?;
        let (limit, until_next_window) = (global.limit(), global::until_next_window());
        let kind = match global.check(key, global::current_window()) {
            GlobalVerdict::Allowed => return None,
            GlobalVerdict::Limited => ErrorKind::RateLimited,
            GlobalVerdict::Unavailable => ErrorKind::RateLimitUnavailable,
        };
        Some(Refusal {
            kind,
            limit,
            retry_after: until_next_window,
            reset: until_next_window,
        })
    }

    /// The request's key: each part rendered as text, separated by `|`.
    fn key_of(&self, headers: &HeaderMap, client: IpAddr) -> Vec<u8> {
        let mut key = Vec::with_capacity(40);
        for (i, part) in self.key.iter().enumerate() {
            if i > 0 {
                key.push(b'|');
            }
            match part {
                RateLimitKeyPart::ClientAddress => {
                    let ip = match client {
                        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
                        v4 => v4,
                    };
                    // Writing to a Vec cannot fail.
                    let _ = write!(key, "{ip}");
                }
                // Every request of the route shares the part; the table is per route already.
                RateLimitKeyPart::Route => key.extend_from_slice(b"route"),
                RateLimitKeyPart::Header(name) => match headers.get(name.as_str()) {
                    Some(v) => push_value(&mut key, v.as_bytes()),
                    // Requests without the header share one bucket rather than escape the limit.
                    None => key.extend_from_slice(b"-"),
                },
            }
        }
        key
    }
}

/// Appends a header value: printable bytes as they are (`%`, `|` and `:` escaped, so parts
/// and Redis key fields stay apart), long values as a hash.
fn push_value(key: &mut Vec<u8>, value: &[u8]) {
    if value.len() > MAX_KEY_VALUE {
        let hash = xxhash_rust::xxh3::xxh3_128(value);
        key.extend_from_slice(format!("#{hash:032x}").as_bytes());
        return;
    }
    key.push(b'=');
    for &b in value {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'|' | b':') {
            key.push(b);
        } else {
            key.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

// === impl Proxy ===

impl crate::Proxy {
    /// Refusal counters of the route at `route` (0-based, config order) of the HTTP listener
    /// named `listener`; `None` when that route has no `rate_limit`.
    pub fn route_rate_limit_stats(
        &self,
        listener: &str,
        route: usize,
    ) -> Option<Arc<RateLimitStats>> {
        match self.snapshots().load().listener(listener)? {
            Listener::Http(h) => h
                .rate_limits
                .get(route)?
                .as_ref()
                .map(|l| Arc::clone(&l.stats)),
            _ => None,
        }
    }
}

// === impl Refusal ===

impl Refusal {
    fn response(&self, grpc: bool) -> Response<ProxyBody> {
        let context = match self.kind {
            ErrorKind::RateLimited => "rate limit exceeded",
            _ => "rate limit service unavailable",
        };
        let mut res = respond::error(&Error::new(self.kind, context), grpc);
        let h = res.headers_mut();
        h.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(self.retry_after)));
        h.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from(ceil_secs(self.reset)),
        );
        res
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After: 0` would invite an immediate retry).
fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(yaml_key: &[&str], rate: u32, burst: u32) -> RouteLimiter {
        let cfg = RouteRateLimitConfig {
            key: yaml_key.iter().map(|s| (*s).to_owned()).collect(),
            local: Some(weir_config::LocalRateLimitConfig {
                requests_per_second: rate,
                burst: Some(burst),
                max_keys: 1000,
            }),
            global: None,
        };
        RouteLimiter::compile(&cfg, "l/0", "listeners[0].routes[0]").unwrap()
    }

    #[test]
    fn keys_combine_parts_and_escape_values() {
        let l = limiter(&["client_address", "header:x-api-key", "route"], 1, 1);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("a|b:c"));
        let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(l.key_of(&h, ip), b"10.0.0.1|=a%7Cb%3Ac|route");
        assert_eq!(l.key_of(&HeaderMap::new(), ip), b"10.0.0.1|-|route");
        let mut long = HeaderMap::new();
        long.insert(
            "x-api-key",
            HeaderValue::from_str(&"k".repeat(500)).unwrap(),
        );
        assert_eq!(l.key_of(&long, ip).len(), "10.0.0.1|#|route".len() + 32);
    }

    #[test]
    fn refusal_carries_retry_after_and_ratelimit_headers() {
        let l = limiter(&["header:x-api-key"], 2, 1);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.check(&h, ip, false).is_none());
        let res = l
            .check(&h, ip, false)
            .expect("second request is over the limit");
        assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "1", "500 ms rounds up to 1 s");
        assert_eq!(res.headers()["x-ratelimit-limit"], "2");
        assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(res.headers()["x-ratelimit-reset"], "1");
        assert_eq!(l.stats.limited.load(Ordering::Relaxed), 1);
        // Another key is not affected, and gRPC gets RESOURCE_EXHAUSTED.
        h.insert("x-api-key", HeaderValue::from_static("k2"));
        assert!(l.check(&h, ip, true).is_none());
        let res = l.check(&h, ip, true).expect("limited");
        assert_eq!(res.headers()["grpc-status"], "8");
    }

    #[test]
    fn unchanged_limits_are_kept_on_reload() {
        let first = Arc::new(limiter(&["route"], 1, 1));
        let same = RouteLimiter::compile_or_keep(&first.config, "l/0", "r", Some(&first)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &same),
            "same config and id: same buckets"
        );
        let moved = RouteLimiter::compile_or_keep(&first.config, "l/1", "r", Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(&first, &moved), "another route name");
        let mut changed = first.config.clone();
        changed.key = vec!["client_address".into()];
        let changed = RouteLimiter::compile_or_keep(&changed, "l/0", "r", Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(&first, &changed), "another config");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }
}
