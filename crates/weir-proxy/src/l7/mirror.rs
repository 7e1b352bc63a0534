//! Request mirroring (shadowing) per route, in the spirit of Envoy's `request_mirror_policies`.
//!
//! It exists to try a new version of a service on real traffic without letting it answer
//! anyone. [`tee`] runs just before a request is forwarded: when the route has a `mirror`
//! block, the header condition holds and the uniform draw falls under the share, it clones the
//! request head and wraps the body in a [`TeeBody`] that hands each frame to a spawned shadow
//! exchange through a bounded channel. The copy is strictly fire and forget:
//!
//! - the tee never waits: a full channel (the shadow is slow to take the body) or a body past
//!   `max_body_bytes` abandons the copy, and the primary carries on untouched;
//! - the shadow exchange runs in its own task against the shadow cluster's balancer, pools and
//!   circuit breakers (a full breaker drops the copy), bounded by the mirror's `timeout`;
//! - its response body is read and discarded; only counters record what happened.
//!
//! The shadow sees the request as the primary endpoint does (hop-by-hop headers removed,
//! `x-forwarded-*`, `via`, the route's `request_headers`), except that its authority is
//! suffixed `-shadow` before any port (Envoy's `host-shadow`), so the shadow service can tell
//! copies from real traffic.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};
use weir_config::MirrorConfig;
use weir_core::{BoxError, Error, ErrorKind};
use weir_router::{RequestView, RouteMatcher};

use super::listener::HttpListener;
use super::route::Route;
use super::{headers, outcome, respond};
use crate::body::{ExchangeGuards, UpstreamBody, empty, incoming};
use crate::hash_key::HashInput;
use crate::server::ConnInfo;
use crate::snapshot::Listener;
use crate::{Cluster, CompileError, ProxyBody, Snapshot};

/// Body frames the shadow may fall behind the primary before its copy is abandoned.
const SHADOW_QUEUE_FRAMES: usize = 64;

/// A route's compiled `mirror` block and its counters.
#[derive(Debug)]
pub(crate) struct MirrorPolicy {
    /// Index of the shadow cluster in `Snapshot::clusters`.
    cluster: usize,
    /// Probability (0.0–1.0) that a request is copied.
    share: f64,
    /// Header conditions; `None` copies any request.
    condition: Option<RouteMatcher>,
    max_body_bytes: u64,
    compare_status: bool,
    timeout: Duration,
    counters: Arc<Counters>,
}

/// The live counters of one mirror policy, shared with its shadow tasks.
#[derive(Debug, Default)]
struct Counters {
    selected: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    status_diffs: AtomicU64,
}

/// What mirroring did on one route since the route was compiled (a reload starts afresh).
///
/// Every selected copy ends up in exactly one of `succeeded`, `failed` and `abandoned` once its
/// shadow exchange is over; until then it is only in `selected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MirrorStats {
    /// Requests chosen for copying (header condition met and share drawn).
    pub selected: u64,
    /// Shadow exchanges that got a non-5xx response and whose body was read to the end.
    pub succeeded: u64,
    /// Shadow exchanges that failed: 5xx, connect error, reset or past the mirror timeout.
    pub failed: u64,
    /// Copies weir gave up on: body past `max_body_bytes`, shadow too slow to take the body,
    /// a full shadow circuit breaker, no healthy shadow endpoint, the client's body broke off,
    /// or the proxy shutting down.
    pub abandoned: u64,
    /// With `compare_status`: shadow responses whose status class differed from the primary's.
    pub status_diffs: u64,
}

/// Handed back by [`tee`]: reports the primary's status to the shadow task for the
/// `compare_status` diff. Dropping it without a report skips the comparison.
#[derive(Debug)]
pub(crate) struct Shadow {
    primary: Option<oneshot::Sender<StatusCode>>,
}

/// State one copy's two ends share: how its body stream ended.
#[derive(Debug, Default)]
struct CopyState {
    /// The whole body went into the channel.
    complete: AtomicBool,
    /// The copy was given up (limit, slow shadow, broken client body).
    abandoned: AtomicBool,
}

pin_project_lite::pin_project! {
    /// The primary's request body, copying each frame to the shadow without ever waiting.
    struct TeeBody {
        #[pin]
        inner: ProxyBody,
        tx: Option<mpsc::Sender<Frame<Bytes>>>,
        sent: u64,
        limit: u64,
        copy: Arc<CopyState>,
    }
}

/// The shadow's request body: the frames the tee copied, then the end (or an error if the
/// copy was abandoned part way).
struct ShadowBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
    copy: Arc<CopyState>,
}

/// Everything a shadow task owns.
struct Copy {
    snapshot: Arc<Snapshot>,
    cluster: usize,
    request: Request<ProxyBody>,
    counters: Arc<Counters>,
    copy: Arc<CopyState>,
    primary: Option<oneshot::Receiver<StatusCode>>,
    timeout: Duration,
    client: std::net::SocketAddr,
    local: std::net::SocketAddr,
}

/// How a shadow exchange ended.
enum Ending {
    Answered(StatusCode),
    Failed,
    Abandoned,
}

// === impl MirrorPolicy ===

impl MirrorPolicy {
    /// Compiles `cfg` against `clusters`; `at` is its YAML path for error messages.
    pub(crate) fn compile(
        cfg: &MirrorConfig,
        clusters: &[Cluster],
        at: &str,
    ) -> Result<Self, CompileError> {
        let cluster = clusters
            .iter()
            .position(|c| *c.name == *cfg.cluster)
            .ok_or_else(|| CompileError {
                path: format!("{at}.cluster"),
                reason: format!("unknown cluster `{}`", cfg.cluster),
            })?;
        Ok(Self {
            cluster,
            share: cfg.share().clamp(0.0, 1.0),
            condition: super::fault::header_condition(&cfg.headers, &format!("{at}.headers"))?,
            max_body_bytes: cfg.max_body_bytes,
            compare_status: cfg.compare_status,
            timeout: cfg.timeout.get(),
            counters: Arc::default(),
        })
    }

    /// Whether this request is copied; `roll` is uniform in `[0, 1)`.
    fn selects(&self, req: &Request<Incoming>, roll: impl FnOnce() -> f64) -> bool {
        let view = RequestView {
            method: req.method(),
            host: None,
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
        };
        if self.condition.as_ref().is_some_and(|c| !c.matches(&view)) {
            return false;
        }
        // Upgrades become byte tunnels; there is nothing to copy them to.
        !headers::is_upgrade_request(req.headers()) && roll() < self.share
    }

    fn stats(&self) -> MirrorStats {
        let c = &self.counters;
        MirrorStats {
            selected: c.selected.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            status_diffs: c.status_diffs.load(Ordering::Relaxed),
        }
    }
}

/// The mirror hook, called just before a request is forwarded: returns the request to forward
/// (its body now also feeding the shadow, when the request was selected) and the handle that
/// takes the primary's status. Never fails and never waits.
pub(crate) fn tee(
    route: &Route,
    snapshot: &Arc<Snapshot>,
    listener: &HttpListener,
    conn: &ConnInfo,
    req: Request<Incoming>,
    authority: Option<&str>,
) -> (Request<ProxyBody>, Shadow) {
    let none = Shadow { primary: None };
    let Some(policy) = route.mirror.as_ref() else {
        return (req.map(incoming), none);
    };
    if !policy.selects(&req, rand::random::<f64>) {
        return (req.map(incoming), none);
    }
    let counters = &policy.counters;
    counters.selected.fetch_add(1, Ordering::Relaxed);
    if declared_length(&req).is_some_and(|n| n > policy.max_body_bytes) {
        counters.abandoned.fetch_add(1, Ordering::Relaxed);
        return (req.map(incoming), none);
    }
    let Some(cluster) = snapshot.clusters.get(policy.cluster) else {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return (req.map(incoming), none);
    };
    let Ok(head) = shadow_head(&req, route, listener, conn, cluster, authority) else {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return (req.map(incoming), none);
    };

    let copy = Arc::new(CopyState::default());
    let (parts, body) = req.into_parts();
    let body = incoming(body);
    let (primary_body, shadow_body) = if body.is_end_stream() {
        copy.complete.store(true, Ordering::Release);
        (body, empty())
    } else {
        let (tx, rx) = mpsc::channel(SHADOW_QUEUE_FRAMES);
        let tee = TeeBody {
            inner: body,
            tx: Some(tx),
            sent: 0,
            limit: policy.max_body_bytes,
            copy: Arc::clone(&copy),
        };
        let shadow = ShadowBody {
            rx,
            copy: Arc::clone(&copy),
        };
        (tee.boxed_unsync(), shadow.boxed_unsync())
    };

    let (status_tx, status_rx) = oneshot::channel();
    let task = Copy {
        snapshot: Arc::clone(snapshot),
        cluster: policy.cluster,
        request: Request::from_parts(head, shadow_body),
        counters: Arc::clone(&policy.counters),
        copy,
        primary: policy.compare_status.then_some(status_rx),
        timeout: policy.timeout,
        client: conn.remote,
        local: conn.local,
    };
    let shutdown = conn.shutdown.clone();
    conn.tasks.spawn(async move {
        let counters = Arc::clone(&task.counters);
        tokio::select! {
            () = task.run() => {}
            // Copies are best effort: a shutdown does not wait for them.
            () = shutdown.cancelled() => {
                counters.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let shadow = Shadow {
        primary: policy.compare_status.then_some(status_tx),
    };
    (Request::from_parts(parts, primary_body), shadow)
}

/// The shadow's request head: the downstream head rewritten as `forward` rewrites the
/// primary's, with the authority suffixed `-shadow`.
fn shadow_head(
    req: &Request<Incoming>,
    route: &Route,
    listener: &HttpListener,
    conn: &ConnInfo,
    cluster: &Cluster,
    authority: Option<&str>,
) -> Result<http::request::Parts, Error> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    let (mut parts, ()) = head.into_parts();
    let shadow_authority = authority.map(shadow_authority);
    super::proxy::upstream_head(
        &mut parts,
        listener,
        route,
        conn,
        cluster,
        shadow_authority.as_deref(),
        false,
    )?;
    Ok(parts)
}

/// `host[:port]` → `host-shadow[:port]` (Envoy's rule, keeping the port).
fn shadow_authority(authority: &str) -> String {
    let host = weir_router::host_without_port(authority);
    let port = &authority[host.len()..];
    format!("{host}-shadow{port}")
}

/// The request's `content-length`, when it has a readable one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether two statuses are of different classes (2xx, 3xx, 4xx, 5xx).
fn class_differs(a: StatusCode, b: StatusCode) -> bool {
    a.as_u16() / 100 != b.as_u16() / 100
}

// === impl Shadow ===

impl Shadow {
    /// Reports how the primary exchange went: its status, or the status weir answers for its
    /// error. A no-op unless the route compares statuses.
    pub(crate) fn primary_answered<B>(self, result: &Result<Response<B>, Error>) {
        if let Some(tx) = self.primary {
            let status = match result {
                Ok(res) => res.status(),
                Err(e) => respond::status_for(e.kind()),
            };
            let _ = tx.send(status);
        }
    }
}

// === impl Copy ===

impl Copy {
    /// Runs the shadow exchange and records how it ended.
    async fn run(self) {
        let Copy {
            snapshot,
            cluster,
            request,
            counters: c,
            copy,
            primary,
            timeout,
            client,
            local,
        } = self;
        let sent = exchange(&snapshot, cluster, request, client, local);
        let ending = tokio::time::timeout(timeout, sent)
            .await
            .unwrap_or(Ending::Failed);
        // Whatever the exchange saw, a copy whose body was cut short by us is abandoned.
        let ending = if copy.abandoned.load(Ordering::Acquire) {
            Ending::Abandoned
        } else {
            ending
        };
        match ending {
            Ending::Answered(status) => {
                if status.is_server_error() {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.succeeded.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(primary) = primary
                    && let Ok(primary) = primary.await
                    && class_differs(primary, status)
                {
                    c.status_diffs.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ending::Failed => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ending::Abandoned => {
                c.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends the copy to an endpoint of cluster `index` of `snapshot` and drains the answer.
async fn exchange(
    snapshot: &Snapshot,
    index: usize,
    request: Request<ProxyBody>,
    client: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> Ending {
    let Some(cluster) = snapshot.clusters.get(index) else {
        return Ending::Failed;
    };
    // The shadow cluster's own limits: a full breaker drops the copy.
    let Ok(slot) = cluster.breakers.request() else {
        return Ending::Abandoned;
    };
    let input = HashInput {
        headers: Some(request.headers()),
        path: Some(request.uri().path()),
        query: request.uri().query(),
        client,
        local,
    };
    let Some(picked) = cluster.pick(&input, 0) else {
        return Ending::Abandoned;
    };
    let held = ExchangeGuards::new(picked.endpoint.state.begin_request(), slot);
    let started = Instant::now();
    let result = picked.pool.send(request, &cluster.breakers).await;
    outcome::report(cluster, picked.index, &result, started.elapsed());
    let upstream = match result {
        Ok(up) => up,
        Err(e) if e.kind() == ErrorKind::Overloaded => return Ending::Abandoned,
        Err(e) => {
            tracing::debug!(error = %e, cluster = %cluster.name, "shadow request failed");
            return Ending::Failed;
        }
    };
    let status = upstream.response.status();
    let mut body = UpstreamBody::new(upstream.response.into_body(), held, upstream.sender);
    // The shadow's answer is read to the end (so its connection can be reused) and dropped.
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return Ending::Failed;
        }
    }
    Ending::Answered(status)
}

// === impl TeeBody ===

impl TeeBody {
    /// Gives up the copy: the shadow's body will end in an error.
    fn abandon(tx: &mut Option<mpsc::Sender<Frame<Bytes>>>, copy: &CopyState) {
        if tx.take().is_some() {
            copy.abandoned.store(true, Ordering::Release);
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(tx) = this.tx.as_ref() {
                    let copied = if let Some(data) = frame.data_ref() {
                        *this.sent += data.len() as u64;
                        (*this.sent <= *this.limit).then(|| Frame::data(data.clone()))
                    } else {
                        frame.trailers_ref().map(|t| Frame::trailers(t.clone()))
                    };
                    // Never wait: a full queue means the shadow is too slow for this copy.
                    match copied.map(|f| tx.try_send(f)) {
                        Some(Ok(())) => {}
                        _ => Self::abandon(this.tx, this.copy),
                    }
                }
                if this.inner.is_end_stream() && this.tx.take().is_some() {
                    this.copy.complete.store(true, Ordering::Release);
                }
            }
            Poll::Ready(None) => {
                if this.tx.take().is_some() {
                    this.copy.complete.store(true, Ordering::Release);
                }
            }
            Poll::Ready(Some(Err(_))) => Self::abandon(this.tx, this.copy),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ShadowBody ===

impl Body for ShadowBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) if self.copy.complete.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => {
                // The tee is gone without finishing: limit, slow shadow or a broken client body.
                self.copy.abandoned.store(true, Ordering::Release);
                Poll::Ready(Some(Err("shadow copy abandoned".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Snapshot {
    /// Mirroring counters of route `route` of listener `listener` (indices as in the config);
    /// `None` when there is no such HTTP route or it has no `mirror` block.
    pub fn mirror_stats(&self, listener: usize, route: usize) -> Option<MirrorStats> {
        let Some(Listener::Http(l)) = self.listeners.get(listener) else {
            return None;
        };
        l.routes
            .get(route)?
            .mirror
            .as_ref()
            .map(MirrorPolicy::stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `chunks`, boxed as the proxy boxes bodies.
    fn body_of(chunks: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    fn tee_pair(chunks: &[&'static str], limit: u64, queue: usize) -> (TeeBody, ShadowBody) {
        let (tx, rx) = mpsc::channel(queue);
        let copy = Arc::new(CopyState::default());
        let tee = TeeBody {
            inner: body_of(chunks),
            tx: Some(tx),
            sent: 0,
            limit,
            copy: Arc::clone(&copy),
        };
        (tee, ShadowBody { rx, copy })
    }

    /// Reads a body to its end: the data, and whether it ended in an error.
    async fn read_all<B>(body: B) -> (String, bool)
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin,
    {
        let mut body = body;
        let mut text = String::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        text.push_str(std::str::from_utf8(d).unwrap());
                    }
                }
                Err(_) => return (text, true),
            }
        }
        (text, false)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_both_sides_intact() {
        let (tee, shadow) = tee_pair(&["ab", "cd", "ef"], 6, 8);
        let copy = Arc::clone(&shadow.copy);
        assert_eq!(read_all(tee).await, ("abcdef".into(), false));
        assert_eq!(read_all(shadow).await, ("abcdef".into(), false));
        assert!(copy.complete.load(Ordering::Acquire));
        assert!(!copy.abandoned.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_abandons_only_the_copy() {
        let (tee, shadow) = tee_pair(&["ab", "cd", "ef"], 5, 8);
        let copy = Arc::clone(&shadow.copy);
        assert_eq!(
            read_all(tee).await,
            ("abcdef".into(), false),
            "primary intact"
        );
        assert_eq!(read_all(shadow).await, ("abcd".into(), true), "shadow cut");
        assert!(copy.abandoned.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_shadow_that_does_not_keep_up_is_abandoned_without_waiting() {
        // Queue of one frame and nobody reading: the second frame cannot be handed over.
        let (tee, shadow) = tee_pair(&["ab", "cd", "ef"], 1024, 1);
        let copy = Arc::clone(&shadow.copy);
        let primary = tokio::time::timeout(Duration::from_secs(5), read_all(tee)).await;
        assert_eq!(primary.unwrap(), ("abcdef".into(), false));
        assert!(copy.abandoned.load(Ordering::Acquire));
        assert_eq!(read_all(shadow).await, ("ab".into(), true));
    }

    #[tokio::test]
    async fn a_primary_body_dropped_part_way_abandons_the_copy() {
        let (mut tee, shadow) = tee_pair(&["ab", "cd"], 1024, 8);
        let copy = Arc::clone(&shadow.copy);
        let first = tee.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().unwrap().as_ref(), b"ab");
        drop(tee);
        assert_eq!(read_all(shadow).await, ("ab".into(), true));
        assert!(copy.abandoned.load(Ordering::Acquire));
    }

    #[test]
    fn shadow_authority_keeps_the_port() {
        assert_eq!(
            shadow_authority("api.example.com"),
            "api.example.com-shadow"
        );
        assert_eq!(
            shadow_authority("api.example.com:8080"),
            "api.example.com-shadow:8080"
        );
        assert_eq!(shadow_authority("127.0.0.1:80"), "127.0.0.1-shadow:80");
    }

    #[test]
    fn status_classes() {
        assert!(class_differs(
            StatusCode::OK,
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        assert!(!class_differs(StatusCode::OK, StatusCode::NO_CONTENT));
        assert!(!class_differs(
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE
        ));
    }
}
