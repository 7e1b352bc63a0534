//! Session affinity: keep a client on the endpoint it started with, whatever the cluster's LB
//! policy (`session_affinity:` on a cluster or a route; `docs/affinity.md`).
//!
//! Three modes. `cookie`: weir sets a signed cookie naming the endpoint ([`cookie`]); a valid
//! cookie for a healthy endpoint (or a drained one, until `drain_timeout` after the drain)
//! bypasses the LB policy; otherwise the LB policy picks and the cookie is (re)issued. The
//! cookie never reaches the endpoint (HAProxy's `indirect`). `header` and `client_address`:
//! the key is hashed onto the cluster's eligible endpoints with weir-balance's [`Maglev`], so a
//! key keeps its endpoint while the set is stable and about `1/n` of keys move when an
//! endpoint joins or leaves (Eisenbud et al., NSDI 2016). Hashing alone keeps no per-key state,
//! so the cluster also remembers recent keys' endpoints in a bounded [`sessions`] table: a key
//! whose session is on a draining endpoint keeps going there until `drain_timeout` after the
//! drain, while new keys and keys of healthy endpoints follow Maglev exactly.
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
use sessions::{SessionTable, Target};

pub(crate) mod cookie;
pub(crate) mod sessions;

/// A compiled `session_affinity` block.
#[derive(Debug)]
pub(crate) struct SessionAffinity {
    mode: Mode,
    /// How long a drained endpoint keeps its sessions, in clock nanoseconds.
    drain_timeout: Nanos,
    /// How long a hashed session lasts without traffic, in clock nanoseconds.
    session_idle: Nanos,
    /// Whether hashed sessions are remembered (`max_sessions` above 0).
    track: bool,
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
/// modes pick from with the table of their recent sessions (built with the cluster when some
/// route or the cluster hashes).
#[derive(Debug)]
pub(crate) struct ClusterAffinity {
    /// [`cookie::endpoint_id`] of each endpoint, in endpoint order.
    ids: Vec<u64>,
    table: Option<Maglev>,
    /// Recent hashed sessions; carried over reloads while `max_sessions` stays the same.
    sessions: Option<Arc<SessionTable>>,
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
            drain_timeout: weir_core::nanos(cfg.drain_timeout.get()),
            session_idle: weir_core::nanos(cfg.session_idle()),
            track: cfg.max_sessions() > 0,
        })
    }

    /// The cookie name, in cookie mode.
    pub(crate) fn cookie_name(&self) -> Option<&str> {
        match &self.mode {
            Mode::Cookie(c) => Some(&c.name),
            _ => None,
        }
    }

    /// Whether this policy hashes (and so needs its cluster's Maglev and session tables).
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
        let hash = crate::hash_key::hash_ip(input.client.ip());
        self.hashed_pick(cluster, hash, false).map(|(i, _, _)| i)
    }

    /// The endpoint hashing gives key `hash`: its live session's endpoint when that endpoint is
    /// draining within the deadline and had the session before the drain, else the Maglev
    /// choice among eligible endpoints; the session is recorded and the outcome counted. With
    /// `explain`, also the explanation; the flag says whether a draining endpoint kept it.
    fn hashed_pick(
        &self,
        cluster: &Cluster,
        hash: u64,
        explain: bool,
    ) -> Option<(usize, Option<Explanation>, bool)> {
        let table = cluster.affinity.table.as_ref()?;
        let ctx = PickContext {
            hash: Some(hash),
            attempt: 0,
        };
        let (home, why) = if explain {
            table
                .pick_explained(&ctx)
                .map_or((None, None), |(i, e)| (Some(i), Some(e)))
        } else {
            (table.pick(&ctx), None)
        };
        let Some(sessions) = cluster.affinity.sessions.as_ref().filter(|_| self.track) else {
            cluster.stats.record_affinity(AffinityEvent::Hit);
            return Some((home?, why, false));
        };
        let ids = &cluster.affinity.ids;
        let now = cluster.clock().now();
        let visit = sessions.visit(hash, now, self.session_idle, |live| {
            let home_id = home.and_then(|i| ids.get(i).copied());
            if let Some(session) = live.filter(|s| Some(s.endpoint) != home_id)
                && let Some(index) = cluster.affinity.index_of(session.endpoint, session.index)
                && let Some(endpoint) = cluster.endpoints.get(index)
                && self.keeps_drained(endpoint, session.since, now)
            {
                let target = Target {
                    endpoint: session.endpoint,
                    index,
                };
                return Some((target, (index, AffinityEvent::Hit, true)));
            }
            let (index, endpoint) = (home?, home_id?);
            let event = match live {
                None => AffinityEvent::New,
                Some(s) if s.endpoint == endpoint => AffinityEvent::Hit,
                Some(_) => AffinityEvent::Moved,
            };
            Some((Target { endpoint, index }, (index, event, false)))
        });
        if visit.evicted {
            cluster.stats.record_affinity(AffinityEvent::Evicted);
        }
        let (index, event, kept) = visit.result?;
        cluster.stats.record_affinity(event);
        let why = match (why, kept) {
            (_, true) if explain => Some(Explanation::new("session_affinity", index)),
            (why, _) => why,
        };
        Some((index, why, kept))
    }

    /// Whether a session on `endpoint` may continue at clock reading `now`: it is healthy, or
    /// drained (and nothing else) less than `drain_timeout` ago.
    fn may_keep(&self, endpoint: &Endpoint, now: Nanos) -> bool {
        let flags = endpoint.state.health();
        flags.is_healthy() || self.within_drain(endpoint, now)
    }

    /// Whether a hashed session that went to `endpoint` at `since` stays there at `now`: the
    /// endpoint is drained (and nothing else), the session began before the drain or in the same
    /// clock tick (a draining
    /// endpoint gets no new sessions), and the drain began less than `drain_timeout` ago.
    fn keeps_drained(&self, endpoint: &Endpoint, since: Nanos, now: Nanos) -> bool {
        endpoint
            .state
            .drained_since()
            .is_some_and(|drained| since <= drained)
            && self.within_drain(endpoint, now)
    }

    /// Whether `endpoint` is drained and nothing else, less than `drain_timeout` before `now`.
    fn within_drain(&self, endpoint: &Endpoint, now: Nanos) -> bool {
        let flags = endpoint.state.health();
        !flags.is_healthy()
            && flags.reasons().all(|r| r == Unhealthy::Drained)
            && endpoint
                .state
                .drained_since()
                .is_some_and(|since| now.saturating_sub(since) < self.drain_timeout)
    }
}

// === impl ClusterAffinity ===

impl ClusterAffinity {
    /// The affinity side of a cluster over `endpoints`. With `hashing` (the largest
    /// `max_sessions` of the hashing policies that use the cluster), the Maglev table that
    /// hashing modes use (eligibility follows the cluster's health and panic threshold; loads
    /// are not bounded, since a session must not move because its endpoint is busy) and, unless
    /// it is 0, the session table, taken over from `previous` when its size is the same.
    pub(crate) fn new(
        cfg: &ClusterConfig,
        endpoints: &[Arc<Endpoint>],
        ctx: &BuildContext,
        hashing: Option<u32>,
        previous: Option<&ClusterAffinity>,
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
            table: hashing.map(|_| Maglev::new(endpoints, ctx, &options, &MaglevConfig::default())),
            sessions: hashing
                .and_then(|max| usize::try_from(max).ok())
                .filter(|&max| max > 0)
                .map(|max| {
                    previous
                        .and_then(|p| p.sessions.as_ref())
                        .filter(|t| t.capacity() == max)
                        .map_or_else(|| Arc::new(SessionTable::new(max)), Arc::clone)
                }),
        }
    }

    /// Hashed sessions live at clock reading `now`; `None` when the cluster keeps no table.
    pub(crate) fn sessions(&self, now: Nanos) -> Option<usize> {
        self.sessions.as_ref().map(|t| t.live(now))
    }

    /// The index of the endpoint with id `id`, trying `hint` (its index when recorded) first.
    fn index_of(&self, id: u64, hint: usize) -> Option<usize> {
        match self.ids.get(hint) {
            Some(&at) if at == id => Some(hint),
            _ => self.ids.iter().position(|&at| at == id),
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
        let (index, why, kept) = self.policy.hashed_pick(cluster, hash, explain)?;
        let why = why.map(|mut e| {
            e.policy = "session_affinity";
            e.note = Some(match (kept, note) {
                (false, note) => note,
                (true, "header") => "header, session kept on its draining endpoint",
                (true, _) => "client_address, session kept on its draining endpoint",
            });
            e
        });
        Some((index, why))
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
mod tests;
