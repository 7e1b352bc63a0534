//! The decision record: why a request went to the endpoint it went to (issue #9).
//!
//! A client inside the listener's `http.debug_trusted` networks that sends `x-weir-debug: 1`
//! gets the record in the `x-weir-decision` response header; at `weir_proxy=debug` it is also
//! logged for every request. `x-weir-debug` is stripped from every request, trusted or not, so
//! it never reaches an endpoint. Nothing here runs unless the record was asked for: the normal
//! pick path is untouched. The format is documented in `docs/observability.md`.
//!
//! The record is collected per request by a [`Recorder`] that the attempts share by reference:
//! a fixed number of set-once slots behind an atomic cursor, so it needs no lock.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_balance::Explanation;
use weir_config::CidrList;

use crate::Cluster;

/// The request header that asks for the record.
pub(crate) const DEBUG: HeaderName = HeaderName::from_static("x-weir-debug");
/// The response header that carries it.
pub(crate) const DECISION: HeaderName = HeaderName::from_static("x-weir-decision");

/// Picks and attempts a record keeps; later ones are counted but not described.
const SLOTS: usize = 8;

/// Marks a request whose record was asked for (a request extension until the attempts start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    /// A trusted client asked: the response carries the record.
    pub(crate) header: bool,
}

/// One attempt: where it went, whether it was a hedge, how it ended.
#[derive(Debug)]
pub(crate) struct AttemptRecord {
    pub(crate) endpoint: SocketAddr,
    pub(crate) hedge: bool,
    /// `200`, `503`, or an error kind such as `connect_failed`.
    pub(crate) result: String,
}

/// Collects one request's picks and attempts without a lock.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    picks: [OnceLock<Explanation>; SLOTS],
    next_pick: AtomicUsize,
    attempts: [OnceLock<AttemptRecord>; SLOTS],
    next_attempt: AtomicUsize,
    /// Set by a hedge just before its attempt starts.
    hedge_next: AtomicBool,
    /// What session affinity did (`hit`, `new`, `moved`), when the route or cluster has it.
    affinity: OnceLock<&'static str>,
}

/// Strips `x-weir-debug` from `headers` and says whether (and how) the record is wanted:
/// by a trusted `client` asking for it, or by debug logging.
pub(crate) fn requested(
    headers: &mut HeaderMap,
    trusted: &CidrList,
    client: IpAddr,
) -> Option<Wanted> {
    let asked = headers
        .remove(DEBUG)
        .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
    let header = asked && trusted.contains(client);
    (header || tracing::enabled!(tracing::Level::DEBUG)).then_some(Wanted { header })
}

// === impl Recorder ===

impl Recorder {
    /// Notes the explanation of a pick that an attempt will use.
    pub(crate) fn pick(&self, explanation: Explanation) {
        let i = self.next_pick.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.picks.get(i) {
            let _ = slot.set(explanation);
        }
    }

    /// The next attempt to start is a hedge.
    pub(crate) fn hedging(&self) {
        self.hedge_next.store(true, Ordering::Relaxed);
    }

    /// Whether the attempt starting now is a hedge (clears the mark).
    pub(crate) fn take_hedge(&self) -> bool {
        self.hedge_next.swap(false, Ordering::Relaxed)
    }

    /// Notes what session affinity did for the request.
    pub(crate) fn affinity(&self, verdict: &'static str) {
        let _ = self.affinity.set(verdict);
    }

    /// Notes a finished attempt.
    pub(crate) fn attempt(&self, record: AttemptRecord) {
        let i = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.attempts.get(i) {
            let _ = slot.set(record);
        }
    }

    /// The record as one header-safe line; `answered` is the endpoint whose response the client
    /// gets (`None` when every attempt failed).
    pub(crate) fn render(&self, cluster: &Cluster, answered: Option<SocketAddr>) -> String {
        let addr = |i: usize| {
            cluster
                .endpoints
                .get(i)
                .map_or_else(|| format!("#{i}"), |e| e.address.to_string())
        };
        let picks: Vec<&Explanation> = self.picks.iter().filter_map(OnceLock::get).collect();
        // The pick that chose the answering endpoint explains the answer; else the last one.
        let e = picks
            .iter()
            .rev()
            .find(|e| answered.is_some_and(|a| addr(e.picked) == a.to_string()))
            .or(picks.last());
        let mut out = String::new();
        let Some(e) = e else {
            let _ = write!(out, "cluster={}; chose=none", cluster.name);
            return self.with_attempts(out);
        };
        let _ = write!(out, "policy={}; cluster={}", e.policy, cluster.name);
        let chose = answered.map_or_else(|| addr(e.picked), |a| a.to_string());
        let _ = write!(out, "; chose={chose}");
        if !e.candidates.is_empty() {
            let listed: Vec<String> = e
                .candidates
                .iter()
                .map(|c| format!("{}({}={})", addr(c.index), e.score, score(c.score)))
                .collect();
            let _ = write!(out, "; candidates={}", listed.join(","));
        }
        if let Some(h) = e.hash {
            let _ = write!(out, "; hash={h:016x}");
        }
        if let Some(home) = e.home {
            let _ = write!(out, "; home={}", addr(home));
        }
        if !e.walked.is_empty() {
            let walked: Vec<String> = e.walked.iter().map(|&i| addr(i)).collect();
            let _ = write!(out, "; walked={}", walked.join(","));
        }
        if let Some((slot, len)) = e.position {
            let _ = write!(out, "; position={slot}/{len}");
        }
        let x = e.excluded;
        let _ = write!(out, "; excluded={}", x.total());
        if x.total() > 0 {
            let reasons: Vec<String> = [
                ("unhealthy", x.unhealthy),
                ("ejected", x.ejected),
                ("drained", x.drained),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
            let _ = write!(out, "({})", reasons.join(","));
        }
        if e.panic {
            out.push_str("; panic=yes");
        }
        if let Some(note) = e.note {
            let _ = write!(out, "; note={note}");
        }
        if let Some(verdict) = self.affinity.get() {
            let _ = write!(out, "; affinity={verdict}");
        }
        self.with_attempts(out)
    }

    /// Appends `attempts=N(...)`: each attempt's endpoint and result, and why the next one was
    /// made; then the best-effort caveat.
    fn with_attempts(&self, mut out: String) -> String {
        let made = self.next_attempt.load(Ordering::Relaxed);
        let listed: Vec<String> = self
            .attempts
            .iter()
            .filter_map(OnceLock::get)
            .enumerate()
            .map(|(n, a)| {
                let why = match (n, a.hedge) {
                    (0, _) => "first",
                    (_, true) => "hedge",
                    (_, false) => "retry",
                };
                format!("{why} {} -> {}", a.endpoint, a.result)
            })
            .collect();
        let _ = write!(out, "; attempts={made}({})", listed.join(", "));
        out.push_str("; scores=best effort, read after the pick");
        out
    }
}

/// A score compactly: integers without a fraction, others to 3 decimals, `inf` when penalised.
fn score(v: f64) -> String {
    if v.is_infinite() {
        "inf".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `line` as a header value; any byte a header cannot carry becomes `?`.
pub(crate) fn header_value(line: &str) -> HeaderValue {
    let clean: String = line
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::try_from(clean).unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> CidrList {
        CidrList(vec!["10.1.0.0/16".parse().unwrap()])
    }

    #[test]
    fn the_header_is_always_stripped_and_honoured_only_from_trusted_clients() {
        let ask = || {
            let mut h = HeaderMap::new();
            h.insert(DEBUG, HeaderValue::from_static("1"));
            h
        };
        let mut h = ask();
        let wanted = requested(&mut h, &trusted(), "10.1.2.3".parse().unwrap());
        assert!(wanted.is_some_and(|w| w.header));
        assert!(h.get(DEBUG).is_none());
        let mut h = ask();
        // No subscriber in unit tests, so debug logging is off: nothing is wanted.
        assert!(requested(&mut h, &trusted(), "10.2.0.1".parse().unwrap()).is_none());
        assert!(h.get(DEBUG).is_none());
        assert!(requested(&mut h, &CidrList::default(), "10.1.2.3".parse().unwrap()).is_none());
    }

    #[test]
    fn scores_and_header_values_are_compact_and_safe() {
        assert_eq!(score(3.0), "3");
        assert_eq!(score(0.5), "0.500");
        assert_eq!(score(f64::INFINITY), "inf");
        assert_eq!(header_value("a=1; b=é\n").to_str().unwrap(), "a=1; b=??");
    }
}
