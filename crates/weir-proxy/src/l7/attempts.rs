//! Sending one request to a cluster: the first attempt, then retries and an optional hedge.
//!
//! Each attempt picks an endpoint (another one than those already tried, when the cluster has
//! one), sends a copy of the request head with a body from [`RequestBody`], and reports the
//! result to the balancer and to outlier detection. After a failure the route's
//! [`RetryPolicy`] says whether to go again; the cluster's `max_retries` breaker and retry
//! budget say whether it can afford to; the route's `timeout` bounds the whole request,
//! retries and waits included. A hedge is a second attempt in parallel once the first has been
//! silent for the hedge delay: the first decisive answer wins and the other is dropped, which
//! cancels it (an HTTP/2 stream is reset, an HTTP/1.1 connection closed).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use weir_core::{BoxError, Error, ErrorKind, InFlightGuard};

use super::decision::{AttemptRecord, Recorder};
use super::outcome;
use super::replay::Replay;
use super::retry::{RetryPolicy, Verdict};
use crate::ProxyBody;
use crate::affinity::RequestAffinity;
use crate::cluster::Picked;
use crate::hash_key::HashInput;
use crate::otlp::{AttemptOutcome, AttemptSpan, AttemptTracer};
use crate::upstream::UpstreamResponse;
use crate::{BreakerLimit, Cluster, RouteClusterStats};

/// The request body, in the form the attempts need.
pub(crate) enum RequestBody {
    /// No body: every attempt sends an empty one.
    Empty,
    /// Sent once, never again (no retry or hedge is configured).
    Once(Option<ProxyBody>),
    /// Read in full before the first attempt (the route's `buffer`).
    Buffered(Bytes, Option<HeaderMap>),
    /// Kept while it streams to the first attempt, for replays.
    Replay(Replay),
}

/// What a request's attempts share.
pub(crate) struct Attempts<'a> {
    pub(crate) cluster: &'a Cluster,
    /// The route's counters for this cluster: retries, timeouts, breaker refusals.
    pub(crate) route: Option<&'a RouteClusterStats>,
    pub(crate) retry: Option<&'a RetryPolicy>,
    pub(crate) hedge: Option<Duration>,
    /// When the route's `timeout` (or gRPC deadline) runs out, for all attempts together.
    pub(crate) deadline: Option<Instant>,
    /// The request may be sent twice (RFC 9110 §9.2.2).
    pub(crate) idempotent: bool,
    pub(crate) client: SocketAddr,
    pub(crate) local: SocketAddr,
    /// Attempts sent so far, retries and hedges included (the access log's `retries`).
    pub(crate) sent: AtomicU32,
    /// Collects the decision record, when one was asked for.
    pub(crate) decision: Option<&'a Recorder>,
    /// The request's session affinity, which decides the first attempt when it can.
    pub(crate) affinity: Option<&'a RequestAffinity<'a>>,
    /// Gives each attempt its client span, when the request is sampled and spans are exported.
    pub(crate) trace: Option<AttemptTracer>,
}

/// The attempt whose answer goes to the client.
pub(crate) struct Answer {
    pub(crate) upstream: UpstreamResponse,
    /// The endpoint's in-flight count, held until the response body ends.
    pub(crate) in_flight: InFlightGuard,
    /// The endpoint that answered.
    pub(crate) endpoint: SocketAddr,
    /// From sending the attempt to its response headers.
    pub(crate) elapsed: Duration,
    /// The attempt's client span (sampled requests), to end with the response body.
    pub(crate) span: Option<AttemptSpan>,
}

/// The endpoints a request has been sent to, in order (inline up to four: no allocation).
type TriedEndpoints = smallvec::SmallVec<[usize; 4]>;

/// One finished attempt.
struct Tried {
    result: Result<UpstreamResponse, Error>,
    in_flight: InFlightGuard,
    endpoint: SocketAddr,
    elapsed: Duration,
    /// Its client span: ends when this is dropped, or with the response body of the answer.
    span: Option<AttemptSpan>,
}

// === impl RequestBody ===

impl RequestBody {
    /// The body of the next attempt; `None` once it cannot be sent again.
    fn next(&mut self) -> Option<ProxyBody> {
        match self {
            RequestBody::Empty => Some(crate::body::empty()),
            RequestBody::Once(body) => body.take(),
            RequestBody::Buffered(bytes, trailers) => Some(buffered(bytes.clone(), trailers)),
            RequestBody::Replay(replay) => replay.attempt(),
        }
    }

    /// Whether another attempt could be given a body.
    fn can_resend(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(..) => true,
            RequestBody::Once(body) => body.is_some(),
            RequestBody::Replay(replay) => replay.can_replay(),
        }
    }

    /// Whether two attempts may send the body at the same time (it has been read in full).
    fn is_complete(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(..) => true,
            RequestBody::Once(_) => false,
            RequestBody::Replay(replay) => replay.is_complete(),
        }
    }
}

fn buffered(bytes: Bytes, trailers: &Option<HeaderMap>) -> ProxyBody {
    let body = Full::new(bytes).map_err(|never| -> BoxError { match never {} });
    match trailers.clone() {
        Some(t) => body
            .with_trailers(async move { Some(Ok(t)) })
            .boxed_unsync(),
        None => body.boxed_unsync(),
    }
}

// === impl Attempts ===

impl<'a> Attempts<'a> {
    /// Sends the request (`head` already rewritten for the upstream) until an answer stands.
    pub(crate) async fn run(&self, head: Parts, mut body: RequestBody) -> Result<Answer, Error> {
        let cluster = self.cluster;
        cluster.retry_budget.record_request(cluster.clock().now());
        let attempts = self.retry.map_or(1, |r| r.attempts);
        let mut tried = TriedEndpoints::new();
        let mut template = Some(head);
        let mut picked = self.pick(&template, 0, &tried).ok_or_else(|| {
            Error::new(
                ErrorKind::NoHealthyEndpoint,
                format!("no healthy endpoint in cluster {}", cluster.name),
            )
        })?;
        // Held while a retry is in progress (the cluster's `max_retries`).
        let mut _retry_slot = None;
        let mut made = 0u32;
        loop {
            let Some(first_body) = body.next() else {
                return Err(Error::new(ErrorKind::Internal, "request body already sent"));
            };
            let hedge = self
                .hedge
                .filter(|_| made == 0 && self.idempotent && body.is_complete());
            let last = made + 1 >= attempts && hedge.is_none();
            let head = match (last, template.as_ref()) {
                (true, _) => template.take(),
                (false, Some(t)) => Some(clone_head(t)),
                (false, None) => None,
            }
            .ok_or_else(|| Error::new(ErrorKind::Internal, "request head already sent"))?;
            tried.push(picked.index);
            let t = match hedge {
                // Boxed: two attempts in flight make a large future, and inline it would
                // size (and be copied with) every request's future, hedged or not.
                Some(delay) => {
                    Box::pin(self.hedged(
                        picked, head, first_body, delay, &mut body, &template, &mut tried,
                    ))
                    .await
                }
                None => self.attempt(picked, head, first_body, false).await,
            };
            made += 1;
            let verdict = match (self.retry, &t.result) {
                (None, _) => Verdict::Final,
                (Some(p), Ok(up)) => {
                    p.judge_response(up.response.status(), up.response.headers(), self.idempotent)
                }
                (Some(p), Err(e)) => p.judge_error(e, self.idempotent),
            };
            let (Verdict::Retry(wait), Some(policy)) = (verdict, self.retry) else {
                return t.finish();
            };
            if made >= attempts || !body.can_resend() {
                return t.finish();
            }
            let wait = wait.unwrap_or_else(|| policy.backoff(made, rand::random()));
            if self.deadline.is_some_and(|d| Instant::now() + wait >= d) {
                return t.finish();
            }
            let Some(next) = self.pick(&template, made, &tried) else {
                return t.finish();
            };
            let Ok(slot) = cluster.breakers.retry() else {
                cluster.retry_budget.record_overflow();
                self.route_overflow();
                return t.refused("max_retries").finish();
            };
            if !cluster.retry_budget.try_retry(cluster.clock().now()) {
                return t.refused("retry_budget").finish();
            }
            if let Some(route) = self.route {
                route.record_retry();
            }
            // The failed answer is dropped before the wait: its connection and in-flight
            // count are not held while nothing happens.
            drop(t);
            _retry_slot = Some(slot);
            picked = next;
            tokio::time::sleep(wait).await;
        }
    }

    /// The first attempt, and a hedge to another endpoint if the first is silent for `delay`.
    #[allow(
        clippy::too_many_arguments,
        reason = "private helper of `run`; the arguments are its loop state"
    )]
    async fn hedged(
        &self,
        picked: Picked<'a>,
        head: Parts,
        first_body: ProxyBody,
        delay: Duration,
        body: &mut RequestBody,
        template: &Option<Parts>,
        tried: &mut TriedEndpoints,
    ) -> Tried {
        let first = self.attempt(picked, head, first_body, false);
        tokio::pin!(first);
        tokio::select! {
            t = &mut first => return t,
            () = tokio::time::sleep(delay) => {}
        }
        let cluster = self.cluster;
        let other = self
            .pick(template, 1, tried)
            .filter(|p| !tried.contains(&p.index));
        let (Some(other), Some(head)) = (other, template.as_ref().map(clone_head)) else {
            return first.await;
        };
        // Checked before a retry slot or budget token is taken for a hedge that cannot be sent.
        if !body.can_resend() {
            return first.await;
        }
        let Ok(_slot) = cluster.breakers.retry() else {
            cluster.retry_budget.record_overflow();
            self.route_overflow();
            return first.await;
        };
        if !cluster.retry_budget.try_retry(cluster.clock().now()) {
            return first.await;
        }
        let Some(second_body) = body.next() else {
            return first.await;
        };
        if let Some(route) = self.route {
            route.record_retry();
        }
        tried.push(other.index);
        if let Some(record) = self.decision {
            record.hedging();
        }
        let second = self.attempt(other, head, second_body, true);
        tokio::pin!(second);
        let (done, rest) = match select(first, second).await {
            Either::Left((t, rest)) | Either::Right((t, rest)) => (t, rest),
        };
        if self.is_decisive(&done) {
            return done;
        }
        // The faster attempt failed: the slower one may still succeed.
        rest.await
    }

    /// Whether an attempt's result ends a hedge race: an answer the route would not retry.
    fn is_decisive(&self, t: &Tried) -> bool {
        match (&t.result, self.retry) {
            (Err(_), _) => false,
            (Ok(_), None) => true,
            (Ok(up), Some(p)) => {
                p.judge_response(up.response.status(), up.response.headers(), true)
                    == Verdict::Final
            }
        }
    }

    /// One attempt against `picked` (`as_hedge`: in parallel with another), reported to the
    /// balancer and outlier detection.
    async fn attempt(
        &self,
        picked: Picked<'a>,
        mut head: Parts,
        body: ProxyBody,
        as_hedge: bool,
    ) -> Tried {
        let cluster = self.cluster;
        let hedge = self.decision.is_some_and(Recorder::take_hedge);
        let in_flight = picked.endpoint.state.begin_request();
        let number = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        // A hedge is an attempt sent while the first one still runs.
        let mut span = self
            .trace
            .as_ref()
            .map(|t| t.begin(&mut head, number, picked.endpoint.address, as_hedge));
        let now = Instant::now();
        let remaining = self.deadline.map(|d| d.saturating_duration_since(now));
        let timeout = match (self.retry.and_then(|r| r.per_try_timeout), remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sent = picked
            .pool
            .send(Request::from_parts(head, body), &cluster.breakers);
        let mut unanswered = Unanswered {
            cluster,
            index: picked.index,
            since: now,
            armed: true,
        };
        let result = match timeout {
            Some(d) => tokio::time::timeout(d, sent).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "endpoint {} did not answer within {d:?}",
                        picked.endpoint.address
                    ),
                ))
            }),
            None => sent.await,
        };
        unanswered.armed = false;
        let elapsed = now.elapsed();
        if let Some(span) = &mut span {
            span.finish(match &result {
                Ok(up) => AttemptOutcome::Status(up.response.status().as_u16()),
                Err(e) => AttemptOutcome::Error(e.kind()),
            });
        }
        cluster
            .stats
            .record_attempt(result.as_ref().map(|up| up.response.status()), elapsed);
        if let (Some(route), Err(e)) = (self.route, &result) {
            route.record_failure(e);
        }
        outcome::report(cluster, picked.index, &result, elapsed);
        if let Some(record) = self.decision {
            record.attempt(AttemptRecord {
                endpoint: picked.endpoint.address,
                hedge,
                result: match &result {
                    Ok(up) => up.response.status().as_u16().to_string(),
                    Err(e) => format!("{:?}", e.kind()),
                },
            });
        }
        Tried {
            result,
            in_flight,
            endpoint: picked.endpoint.address,
            elapsed,
            span,
        }
    }

    /// An endpoint for attempt number `made`, preferring one not yet tried.
    fn pick(&self, head: &Option<Parts>, made: u32, tried: &[usize]) -> Option<Picked<'a>> {
        let head = head.as_ref();
        let input = HashInput {
            headers: head.map(|h| &h.headers),
            path: head.map(|h| h.uri.path()),
            query: head.and_then(|h| h.uri.query()),
            client: self.client,
            local: self.local,
        };
        if made == 0
            && let Some(affinity) = self.affinity
            && let Some((index, why)) = affinity.pick(self.cluster, &input, self.decision.is_some())
            && let Some(p) = self.cluster.picked(index)
        {
            self.explained(why);
            return Some(p);
        }
        let mut fallback = None;
        // A few draws: random and least-request policies may repeat an endpoint; hashing
        // policies move on by the attempt number.
        for salt in 0..3 {
            let (p, why) = match self.decision {
                None => (self.cluster.pick(&input, made + salt)?, None),
                Some(_) => {
                    let (p, e) = self.cluster.pick_explained(&input, made + salt)?;
                    (p, Some(e))
                }
            };
            if !tried.contains(&p.index) {
                self.explained(why);
                return Some(p);
            }
            fallback.get_or_insert((p, why));
        }
        let (p, why) = fallback?;
        self.explained(why);
        Some(p)
    }

    /// Counts a retry or hedge the `max_retries` breaker refused on the route.
    fn route_overflow(&self) {
        if let Some(route) = self.route {
            route.record_overflow(BreakerLimit::MaxRetries);
        }
    }

    /// Hands a pick's explanation to the decision record.
    fn explained(&self, why: Option<weir_balance::Explanation>) {
        if let (Some(record), Some(e)) = (self.decision, why) {
            record.pick(e);
        }
    }
}

// === impl Tried ===

impl Tried {
    /// Marks a failed answer whose retry `limit` refused, as a full circuit breaker's 503 is
    /// marked (`x-weir-overloaded`); a failure without a response keeps its own error.
    fn refused(mut self, limit: &'static str) -> Self {
        if let Ok(up) = &mut self.result {
            up.response.headers_mut().insert(
                super::respond::OVERLOADED,
                http::HeaderValue::from_static(limit),
            );
        }
        self
    }

    fn finish(self) -> Result<Answer, Error> {
        let upstream = self.result?;
        Ok(Answer {
            upstream,
            in_flight: self.in_flight,
            endpoint: self.endpoint,
            elapsed: self.elapsed,
            span: self.span,
        })
    }
}

/// A copy of a request head for one more attempt (hyper's `Parts` is not `Clone`; nothing of
/// the downstream exchange lives in its extensions by now).
fn clone_head(p: &Parts) -> Parts {
    let mut req = Request::new(());
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.version_mut() = p.version;
    *req.headers_mut() = p.headers.clone();
    req.into_parts().0
}

/// An attempt whose answer never came: the client went away or gave up, or its hedge lost. When
/// dropped still armed it tells the balancer how long the attempt had waited, a lower bound of
/// the endpoint's latency. Without it a stalled endpoint's latency estimate (peak EWMA) would
/// only decay while its slow answers are cut off before they arrive, and the stalled endpoint
/// would look cheaper than the healthy ones.
struct Unanswered<'c> {
    cluster: &'c Cluster,
    index: usize,
    since: Instant,
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed {
            let observation = weir_balance::Observation {
                rtt: self.since.elapsed(),
                // Not the endpoint's failure: only its slowness is known.
                outcome: weir_balance::Outcome::Success,
            };
            self.cluster.observe(self.index, &observation);
        }
    }
}
