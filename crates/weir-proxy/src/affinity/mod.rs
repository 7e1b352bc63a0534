//! Session affinity: keep a client on the endpoint it started with, whatever the cluster's LB
//! policy (`session_affinity:` on a cluster or a route; `docs/affinity.md`).
//!
//! Three modes. `cookie`: weir sets a signed cookie naming the endpoint ([`cookie`]); a valid
//! cookie for a healthy endpoint (or a drained one, until `drain_timeout` after the drain)
//! bypasses the LB policy; otherwise the LB policy picks and the cookie is (re)issued. The
//! cookie never reaches the endpoint (HAProxy's `indirect`). `header` and `client_address`:
//! the key is hashed onto the cluster's eligible endpoints with weir-balance's [`Maglev`], so a
//! key keeps its endpoint while the set is stable and about `1/n` of keys move when an
//! endpoint joins or leaves (Eisenbud et al., NSDI 2016). Hashing keeps no per-key state, so a
//! drained endpoint's keys move at once; only cookie sessions honour `drain_timeout`.
//!
//! Affinity decides the first attempt only: retries go to endpoints not yet tried, and the
//! cookie then follows the endpoint that answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};
use weir_balance::{Balancer, BuildContext, CommonOptions, Explanation, Maglev, PickContext};
use weir_config::{ClusterConfig, MaglevConfig, SessionAffinityConfig};
use weir_core::{Endpoint, Nanos, Unhealthy};

use crate::Cluster;
use crate::hash_key::HashInput;
use crate::stats::AffinityEvent;
use cookie::{CookiePolicy, Invalid, Session};

pub(crate) mod cookie;

/// A compiled `session_affinity` block.
#[derive(Debug)]
pub(crate) struct SessionAffinity {
    mode: Mode,
    /// How long a drained endpoint keeps its cookie sessions, in clock nanoseconds.
    drain_timeout: Nanos,
}

/// Who "the same client" is.
#[derive(Debug)]
enum Mode {
    /// The holder of a signed cookie (boxed: the HMAC key is large).
    Cookie(Box<CookiePolicy>),
    /// Requests with the same value of this header.
    Header(HeaderName),
    /// Requests and connections from the same IP address.
    ClientAddress,
}

/// A cluster's side of affinity: endpoint ids for cookies, and the Maglev table that hashing
/// modes pick from (built with the cluster when some route or the cluster hashes).
#[derive(Debug)]
pub(crate) struct ClusterAffinity {
    /// [`cookie::endpoint_id`] of each endpoint, in endpoint order.
    ids: Vec<u64>,
    table: Option<Maglev>,
}

/// One request's affinity: the policy, and what its cookie said.
#[derive(Debug)]
pub(crate) struct RequestAffinity<'a> {
    policy: &'a SessionAffinity,
    /// Unix seconds when the request arrived (cookie expiry is wall-clock time).
    now: u64,
    /// A valid cookie's session and the index of the endpoint it names, if that endpoint is
    /// still in the cluster.
    session: Option<(Session, Option<usize>)>,
    /// Whether the named endpoint may take this request (healthy, or draining within the
    /// deadline): then the first attempt goes there.
    sticky: bool,
}

/// What affinity did for a request, for the decision record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The session's endpoint answered.
    Hit,
    /// A new session began (no valid cookie).
    New,
    /// The session moved to another endpoint (its own was gone, down, or failed).
    Moved,
}

// === impl SessionAffinity ===

impl SessionAffinity {
    /// Compiles `cfg`. Without a configured cookie key, the process's random key is used (made
    /// once, so it survives reloads).
    pub(crate) fn compile(cfg: &SessionAffinityConfig) -> Result<Self, String> {
        let mode = if let Some(c) = &cfg.cookie {
            Mode::Cookie(Box::new(CookiePolicy::new(c, generated_key())?))
        } else if let Some(h) = &cfg.header {
            Mode::Header(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("{h:?} is not a valid header name"))?,
            )
        } else if cfg.client_address == Some(true) {
            Mode::ClientAddress
        } else {
            return Err("session_affinity names no mode".into());
        };
        Ok(Self {
            mode,
            drain_timeout: u64::try_from(cfg.drain_timeout.get().as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// The cookie name, in cookie mode.
    pub(crate) fn cookie_name(&self) -> Option<&str> {
        match &self.mode {
            Mode::Cookie(c) => Some(&c.name),
            _ => None,
        }
    }

    /// Whether this policy hashes (and so needs its cluster's Maglev table).
    pub(crate) fn hashes(cfg: &SessionAffinityConfig) -> bool {
        cfg.cookie.is_none() && (cfg.header.is_some() || cfg.client_address == Some(true))
    }

    /// Starts a request's affinity on `cluster`: `cookie` is the affinity cookie's value, already
    /// taken out of the request. A forged or expired cookie is counted and ignored.
    pub(crate) fn begin<'a>(
        &'a self,
        cluster: &Cluster,
        cookie: Option<&str>,
    ) -> RequestAffinity<'a> {
        let now = cookie::unix_now();
        let mut request = RequestAffinity {
            policy: self,
            now,
            session: None,
            sticky: false,
        };
        let (Mode::Cookie(policy), Some(value)) = (&self.mode, cookie) else {
            return request;
        };
        match policy.decode(value, now) {
            Ok(session) => {
                let index = cluster
                    .affinity
                    .ids
                    .iter()
                    .position(|&id| id == session.endpoint);
                request.sticky = index
                    .and_then(|i| cluster.endpoints.get(i))
                    .is_some_and(|e| self.may_keep(e, cluster.clock().now()));
                request.session = Some((session, index));
            }
            Err(why) => {
                cluster.stats.record_affinity(AffinityEvent::Invalid);
                tracing::debug!(
                    cluster = %cluster.name,
                    reason = ?why,
                    "ignoring an affinity cookie that is {}",
                    if why == Invalid::Expired { "expired" } else { "not ours" }
                );
            }
        }
        request
    }

    /// The endpoint `client_address` affinity gives an L4 connection (or UDP session) from
    /// `input`'s client; `None` in the other modes, which need HTTP, and when no endpoint is
    /// eligible.
    pub(crate) fn connection_pick(
        &self,
        cluster: &Cluster,
        input: &HashInput<'_>,
    ) -> Option<usize> {
        let Mode::ClientAddress = self.mode else {
            return None;
        };
        let ctx = PickContext {
            hash: Some(crate::hash_key::hash_ip(input.client.ip())),
            attempt: 0,
        };
        let index = cluster.affinity.table.as_ref()?.pick(&ctx)?;
        cluster.stats.record_affinity(AffinityEvent::Hit);
        Some(index)
    }

    /// Whether a session on `endpoint` may continue at clock reading `now`: it is healthy, or
    /// drained (and nothing else) less than `drain_timeout` ago.
    fn may_keep(&self, endpoint: &Endpoint, now: Nanos) -> bool {
        let flags = endpoint.state.health();
        if flags.is_healthy() {
            return true;
        }
        let only_drained = flags.reasons().all(|r| r == Unhealthy::Drained);
        only_drained
            && endpoint
                .state
                .drained_since()
                .is_some_and(|since| now.saturating_sub(since) < self.drain_timeout)
    }
}

// === impl ClusterAffinity ===

impl ClusterAffinity {
    /// The affinity side of a cluster over `endpoints`; with `table`, the Maglev table that
    /// hashing modes use (eligibility follows the cluster's health and panic threshold; loads
    /// are not bounded, since a session must not move because its endpoint is busy).
    pub(crate) fn new(
        cfg: &ClusterConfig,
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        table: bool,
    ) -> Self {
        let options = CommonOptions {
            slow_start: None,
            panic_threshold: cfg.panic_threshold,
            hash_balance_factor: None,
        };
        Self {
            ids: endpoints
                .iter()
                .map(|e| cookie::endpoint_id(e.address))
                .collect(),
            table: table.then(|| Maglev::new(endpoints, ctx, &options, &MaglevConfig::default())),
        }
    }
}

// === impl RequestAffinity ===

impl RequestAffinity<'_> {
    /// The endpoint affinity sends the first attempt to, with an explanation when `explain`;
    /// `None` leaves the pick to the LB policy (no session, its endpoint cannot take it, or
    /// no hash key in the request).
    pub(crate) fn pick(
        &self,
        cluster: &Cluster,
        input: &HashInput<'_>,
        explain: bool,
    ) -> Option<(usize, Option<Explanation>)> {
        let (hash, note) = match &self.policy.mode {
            Mode::Cookie(_) => {
                // Counted in `finish`, once the answering endpoint is known.
                let index = self.session.and_then(|(_, i)| i).filter(|_| self.sticky)?;
                let why = explain.then(|| {
                    let mut e = Explanation::new("session_affinity", index);
                    e.note = Some("cookie");
                    e
                });
                return Some((index, why));
            }
            Mode::Header(name) => {
                let value = input.headers?.get(name)?;
                (xxhash_rust::xxh3::xxh3_64(value.as_bytes()), "header")
            }
            Mode::ClientAddress => (
                crate::hash_key::hash_ip(input.client.ip()),
                "client_address",
            ),
        };
        let table = cluster.affinity.table.as_ref()?;
        let ctx = PickContext {
            hash: Some(hash),
            attempt: 0,
        };
        let picked = if explain {
            let (i, mut e) = table.pick_explained(&ctx)?;
            e.policy = "session_affinity";
            e.note = Some(note);
            (i, Some(e))
        } else {
            (table.pick(&ctx)?, None)
        };
        cluster.stats.record_affinity(AffinityEvent::Hit);
        Some(picked)
    }

    /// After the request was answered by `answered`: the `Set-Cookie` to send (a new session,
    /// a moved one, or one close to expiry), counted. `None` in hashing modes and when the
    /// session's cookie stays as it is.
    pub(crate) fn finish(
        &self,
        cluster: &Cluster,
        answered: SocketAddr,
    ) -> (Option<HeaderValue>, Option<Verdict>) {
        let Mode::Cookie(policy) = &self.policy.mode else {
            return (None, None);
        };
        let Some(index) = cluster.endpoints.iter().position(|e| e.address == answered) else {
            return (None, None);
        };
        let verdict = match self.session {
            Some((session, Some(named))) if named == index => {
                cluster.stats.record_affinity(AffinityEvent::Hit);
                if !policy.needs_refresh(&session, self.now) {
                    return (None, Some(Verdict::Hit));
                }
                Verdict::Hit
            }
            Some(_) => {
                cluster.stats.record_affinity(AffinityEvent::Moved);
                Verdict::Moved
            }
            None => {
                cluster.stats.record_affinity(AffinityEvent::New);
                Verdict::New
            }
        };
        let id = cluster.affinity.ids.get(index).copied();
        let header = id.and_then(|id| policy.set_cookie(&policy.encode(id, self.now)));
        (header, Some(verdict))
    }
}

// === impl Verdict ===

impl Verdict {
    /// The word the decision record uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::New => "new",
            Self::Moved => "moved",
        }
    }
}

/// The process's random cookie key: made on first use, kept for the life of the process (so
/// across reloads), never written anywhere.
fn generated_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::Snapshot;

    fn compile(affinity: &str) -> Snapshot {
        let yaml = format!(
            "clusters:
  - name: c
    session_affinity: {affinity}
    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]
"
        );
        let config = weir_config::load_str(&yaml, "t.yaml").unwrap();
        Snapshot::compile(&config, None).unwrap()
    }

    fn input(headers: &HeaderMap) -> HashInput<'_> {
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        HashInput {
            headers: Some(headers),
            path: Some("/"),
            query: None,
            client,
            local: client,
        }
    }

    fn cookie_for(cluster: &Cluster, index: usize, now: u64) -> String {
        let policy = match &cluster.session_affinity.as_ref().unwrap().mode {
            Mode::Cookie(p) => p,
            _ => panic!("not a cookie policy"),
        };
        policy.encode(cluster.affinity.ids[index], now)
    }

    #[test]
    fn a_drained_endpoint_keeps_sessions_only_until_the_deadline() {
        // The same drained endpoint under a long deadline and under none (`0`).
        for (timeout, kept) in [("1h", true), ("0", false)] {
            let snapshot = compile(&format!(
                "{{ cookie: {{ ttl: 1h }}, drain_timeout: {timeout} }}"
            ));
            let c = snapshot.cluster("c").unwrap();
            let affinity = c.session_affinity.as_ref().unwrap();
            let value = cookie_for(c, 1, cookie::unix_now());
            let headers = HeaderMap::new();
            let picked = |c: &Cluster| {
                let r = affinity.begin(c, Some(&value));
                r.pick(c, &input(&headers), false).map(|(i, _)| i)
            };
            assert_eq!(picked(c), Some(1));
            let state = &c.endpoints[1].state;
            let now = c.clock().now();
            let _ = state.set_unhealthy(Unhealthy::Drained, true, now);
            assert_eq!(picked(c), kept.then_some(1), "drain_timeout {timeout}");
            state.set_healthy(false, now);
            assert_eq!(
                picked(c),
                None,
                "a drained and failing endpoint keeps no session"
            );
        }
    }

    #[test]
    fn finish_issues_cookies_only_when_new_moved_or_stale() {
        let snapshot = compile("{ cookie: { ttl: 100s } }");
        let c = snapshot.cluster("c").unwrap();
        let affinity = c.session_affinity.as_ref().unwrap();
        let at = |i: usize| c.endpoints[i].address;
        let now = cookie::unix_now();

        let (set, verdict) = affinity.begin(c, None).finish(c, at(0));
        assert_eq!(verdict, Some(Verdict::New));
        let set = set.unwrap();
        let value = set.to_str().unwrap();
        assert!(value.starts_with("weir-affinity=") && value.contains("Max-Age=100"));

        let fresh = cookie_for(c, 0, now);
        let (set, verdict) = affinity.begin(c, Some(&fresh)).finish(c, at(0));
        assert_eq!((set, verdict), (None, Some(Verdict::Hit)));
        let stale = cookie_for(c, 0, now - 60);
        let (set, verdict) = affinity.begin(c, Some(&stale)).finish(c, at(0));
        assert!(set.is_some(), "refreshed with less than half its life left");
        assert_eq!(verdict, Some(Verdict::Hit));
        let (set, verdict) = affinity.begin(c, Some(&fresh)).finish(c, at(2));
        assert!(set.is_some());
        assert_eq!(verdict, Some(Verdict::Moved));
        let (_, verdict) = affinity.begin(c, Some("forged")).finish(c, at(1));
        assert_eq!(verdict, Some(Verdict::New));
        // A session whose endpoint left the cluster is not sticky and moves.
        let policy = match &affinity.mode {
            Mode::Cookie(p) => p,
            _ => unreachable!("a cookie policy"),
        };
        let gone = policy.encode(cookie::endpoint_id("127.0.0.1:9999".parse().unwrap()), now);
        let request = affinity.begin(c, Some(&gone));
        assert!(request.pick(c, &input(&HeaderMap::new()), false).is_none());
        assert_eq!(request.finish(c, at(1)).1, Some(Verdict::Moved));

        let stats = c.upstream_stats();
        let counts: Vec<u64> = AffinityEvent::ALL
            .iter()
            .map(|&e| stats.affinity(e))
            .collect();
        assert_eq!(counts, [2, 2, 2, 1], "hits, new, moved, invalid");
    }

    #[test]
    fn header_hashing_is_stable_and_only_a_down_endpoints_keys_move() {
        let snapshot = compile("{ header: x-user }");
        let c = snapshot.cluster("c").unwrap();
        let affinity = c.session_affinity.as_ref().unwrap();
        let request = affinity.begin(c, None);
        let home = |user: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", user.parse().unwrap());
            request.pick(c, &input(&headers), false).map(|(i, _)| i)
        };
        let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
        let before: Vec<usize> = users.iter().map(|u| home(u).unwrap()).collect();
        assert!((0..3).all(|e| before.contains(&e)));
        assert_eq!(
            before,
            users.iter().map(|u| home(u).unwrap()).collect::<Vec<_>>()
        );
        let now = c.clock().now();
        let _ = c.endpoints[0]
            .state
            .set_unhealthy(Unhealthy::Drained, true, now);
        for (u, &b) in users.iter().zip(&before) {
            let after = home(u).unwrap();
            assert_ne!(after, 0, "no keys on a drained endpoint");
            if b != 0 {
                assert_eq!(after, b, "{u} kept its endpoint");
            }
        }
        assert_eq!(request.pick(c, &input(&HeaderMap::new()), false), None);
    }
}
