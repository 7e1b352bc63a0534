//! Per-endpoint connection pools.
//!
//! HTTP/1.1 connections are lent to one exchange at a time and come back to a bounded idle queue
//! when the exchange ends. A connection opened while the pool already lends out as many as it can
//! keep idle would be closed again at its release, so under a burst a request first waits for a
//! lent connection to come back as long as the pool keeps turning connections over (issue #11,
//! scenario 7: churning clients must not churn upstream connections).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use weir_config::UpstreamProtocol;
use weir_core::{BoxError, Error, ErrorKind};

use super::connect;
use crate::ProxyBody;
use crate::breakers::Breakers;

/// How an endpoint's connections are made and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
    /// TLS to the endpoint; a changed TLS config or file gets a new pool.
    pub(crate) tls: Option<Arc<crate::tls::UpstreamTls>>,
}

/// The connections of one endpoint.
pub(crate) struct EndpointPool {
    addr: SocketAddr,
    settings: PoolSettings,
    shared: Arc<Shared>,
    h2: ArcSwapOption<http2::SendRequest<ProxyBody>>,
    h2_connecting: tokio::sync::Mutex<()>,
    /// Bumped by every HTTP/2 connect attempt, so requests that waited for one share its
    /// outcome instead of each trying again in turn.
    h2_attempts: AtomicU64,
}

/// What the HTTP/1.1 connections lent out share with their pool.
struct Shared {
    idle: ArrayQueue<IdleSender>,
    /// Connections lent to exchanges right now.
    lent: AtomicUsize,
    /// Connections returned to `idle` so far: tells a waiting request whether the pool turns over.
    returned: AtomicU64,
    /// When the last connection came back, in milliseconds since `epoch`: a pool whose
    /// connections are all held by long exchanges is not worth waiting for.
    last_return_ms: AtomicU64,
    epoch: Instant,
    /// Wakes a request waiting for a lent connection to come back or end.
    lent_ended: tokio::sync::Notify,
}

/// Counts one connection as lent until dropped.
struct Lent(Arc<Shared>);

/// An HTTP/1.1 connection lent to one exchange; [`PooledSender::release`] returns it.
pub(crate) struct PooledSender {
    sender: http1::SendRequest<ProxyBody>,
    lent: Lent,
    /// Set once the request body was sent to the end; a connection still sending a body (the
    /// endpoint answered early) must not be reused. `None`: the request had no body.
    request_done: Option<Arc<AtomicBool>>,
}

pin_project_lite::pin_project! {
    /// A request body that records when it has been sent to the end.
    struct RequestBody {
        #[pin]
        inner: ProxyBody,
        done: Arc<AtomicBool>,
    }
}

/// How long a pooled HTTP/1.1 connection may take to report ready before it is dropped.
const READY_WAIT: Duration = Duration::from_millis(100);

/// How long a request waiting for a lent connection to come back waits without any connection
/// coming back before it opens one of its own (the pool is not turning over: slow exchanges).
const TURNOVER_WAIT: Duration = Duration::from_millis(50);

/// The upstream's answer, and the HTTP/1.1 connection to return once its body is read.
pub(crate) struct UpstreamResponse {
    pub(crate) response: Response<Incoming>,
    pub(crate) sender: Option<PooledSender>,
}

struct IdleSender {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

// === impl EndpointPool ===

impl EndpointPool {
    /// An empty pool for `addr`.
    pub(crate) fn new(addr: SocketAddr, settings: PoolSettings) -> Self {
        Self {
            addr,
            shared: Arc::new(Shared {
                idle: ArrayQueue::new(settings.max_idle.max(1)),
                lent: AtomicUsize::new(0),
                returned: AtomicU64::new(0),
                last_return_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                lent_ended: tokio::sync::Notify::new(),
            }),
            settings,
            h2: ArcSwapOption::empty(),
            h2_connecting: tokio::sync::Mutex::new(()),
            h2_attempts: AtomicU64::new(0),
        }
    }

    /// The settings this pool was built with (a changed config gets a new pool).
    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Sends `req` (already in the right form for the protocol) and waits for response headers.
    /// A request that must wait for a new connection holds a `max_pending_requests` unit of
    /// `breakers` meanwhile; every connection holds a `max_connections` unit while it lives.
    pub(crate) async fn send(
        &self,
        req: Request<ProxyBody>,
        breakers: &Breakers,
    ) -> Result<UpstreamResponse, Error> {
        match self.settings.protocol {
            UpstreamProtocol::Http1 => self.send_http1(req, breakers).await,
            UpstreamProtocol::Http2 => self.send_http2(req, breakers).await,
        }
    }

    async fn send_http1(
        &self,
        req: Request<ProxyBody>,
        breakers: &Breakers,
    ) -> Result<UpstreamResponse, Error> {
        // Most requests have no body: nothing to watch, and no allocation for it.
        let request_done = (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let mut req = match &request_done {
            None => req,
            Some(done) => req.map(|inner| {
                RequestBody {
                    inner,
                    done: Arc::clone(done),
                }
                .boxed_unsync()
            }),
        };
        // A pooled connection may have been closed by the endpoint while idle. hyper hands the
        // request back if it was never written, so we can try the next connection safely.
        loop {
            let idle = match self.take_idle().await {
                Some(s) => Some(s),
                None => self.wait_for_return().await,
            };
            let lent = Lent::new(&self.shared);
            let (mut sender, fresh) = match idle {
                Some(s) => (s, false),
                None => {
                    let _pending = breakers.pending()?;
                    let slot = breakers.connection()?;
                    // Boxed: a connect (TLS handshake included) is a large future, and
                    // inline it would size every request's future, pooled or not.
                    let connect = Box::pin(connect::http1(
                        self.addr,
                        self.settings.connect_timeout,
                        self.settings.tls.as_deref(),
                        slot,
                    ));
                    (connect.await?, true)
                }
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let sender = PooledSender {
                        sender,
                        lent,
                        request_done: request_done.clone(),
                    };
                    return Ok(UpstreamResponse {
                        response,
                        sender: Some(sender),
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(exchange_error(self.addr, e.into_error())),
                },
            }
        }
    }

    /// With nothing idle and as many connections lent out as the pool can keep, a new connection
    /// would be closed again when it is released. Waits instead for a lent one to come back, as
    /// long as connections keep coming back (at least one per [`TURNOVER_WAIT`]) and for no
    /// longer than the connect timeout. `None`: open a connection.
    async fn wait_for_return(&self) -> Option<http1::SendRequest<ProxyBody>> {
        let shared = &*self.shared;
        if shared.lent.load(Ordering::Acquire) < self.settings.max_idle {
            return None;
        }
        // Nothing came back lately: the lent connections are busy with long exchanges (streams,
        // long polls), and waiting would only add latency. Connect at once.
        let since_return =
            elapsed_ms(shared.epoch).saturating_sub(shared.last_return_ms.load(Ordering::Acquire));
        if since_return > TURNOVER_WAIT.as_millis() as u64 {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        loop {
            let returned = shared.returned.load(Ordering::Acquire);
            let signal = shared.lent_ended.notified();
            tokio::pin!(signal);
            // Registered before looking at the queue, so a return in between is not missed.
            // A lent connection that ends without coming back (closed) leaves room: connect.
            signal.as_mut().enable();
            if let Some(s) = self.take_idle().await {
                return Some(s);
            }
            let wait_until = deadline.min(tokio::time::Instant::now() + TURNOVER_WAIT);
            if tokio::time::timeout_at(wait_until, signal).await.is_err()
                && shared.returned.load(Ordering::Acquire) == returned
            {
                return None;
            }
            if tokio::time::Instant::now() >= deadline
                || shared.lent.load(Ordering::Acquire) < self.settings.max_idle
            {
                return self.take_idle().await;
            }
        }
    }

    async fn take_idle(&self) -> Option<http1::SendRequest<ProxyBody>> {
        while let Some(IdleSender { mut sender, since }) = self.shared.idle.pop() {
            if sender.is_closed() || since.elapsed() > self.settings.idle_timeout {
                continue;
            }
            // A released connection turns ready as soon as hyper has seen the exchange end; one
            // that does not within READY_WAIT is wedged and is dropped, never waited on.
            if sender.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WAIT, sender.ready()).await,
                    Ok(Ok(()))
                )
            {
                return Some(sender);
            }
        }
        None
    }

    async fn send_http2(
        &self,
        req: Request<ProxyBody>,
        breakers: &Breakers,
    ) -> Result<UpstreamResponse, Error> {
        let mut sender = self.h2_sender(breakers).await?;
        let response = match sender.try_send_request(req).await {
            Ok(r) => r,
            // The connection went away (GOAWAY, close) before the request was written: it is
            // safe to send once more on a fresh connection.
            Err(mut e) => match e.take_message() {
                Some(unsent) => {
                    self.forget_h2(&sender);
                    let mut fresh = self.h2_sender(breakers).await?;
                    fresh
                        .send_request(unsent)
                        .await
                        .map_err(|e| exchange_error(self.addr, e))?
                }
                None => return Err(exchange_error(self.addr, e.into_error())),
            },
        };
        Ok(UpstreamResponse {
            response,
            sender: None,
        })
    }

    /// Drops the shared HTTP/2 connection if it is still `dead`.
    fn forget_h2(&self, dead: &http2::SendRequest<ProxyBody>) {
        let current = self.h2.load();
        if let Some(c) = current.as_deref()
            && c.is_closed()
            && dead.is_closed()
        {
            self.h2.compare_and_swap(&current, None);
        }
    }

    /// The shared HTTP/2 connection, opening one if there is none or it has closed.
    async fn h2_sender(&self, breakers: &Breakers) -> Result<http2::SendRequest<ProxyBody>, Error> {
        if let Some(s) = self.h2.load().as_deref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        // Slow path: this request waits for a connection.
        let _pending = breakers.pending()?;
        let attempts_seen = self.h2_attempts.load(Ordering::Acquire);
        let _connecting = self.h2_connecting.lock().await;
        // Another request may have connected while we waited.
        if let Some(s) = self.h2.load().as_deref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        // ... or tried and failed: share that outcome rather than queue up another full
        // connect timeout per waiting request.
        if self.h2_attempts.load(Ordering::Acquire) != attempts_seen {
            return Err(Error::new(
                ErrorKind::ConnectFailed,
                format!(
                    "connect to {} failed (attempt shared with other requests)",
                    self.addr
                ),
            ));
        }
        self.h2_attempts.fetch_add(1, Ordering::AcqRel);
        let slot = breakers.connection()?;
        // Boxed, as for HTTP/1.1: a connect (TLS handshake included) is a large future.
        let sender = Box::pin(connect::http2(
            self.addr,
            self.settings.connect_timeout,
            self.settings.tls.as_deref(),
            slot,
        ))
        .await?;
        self.h2.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("addr", &self.addr)
            .field("settings", &self.settings)
            .field("idle", &self.shared.idle.len())
            .field("lent", &self.shared.lent.load(Ordering::Relaxed))
            .finish()
    }
}

// === impl PooledSender ===

impl PooledSender {
    /// Returns the connection to the idle queue once both bodies are done (dropped if the
    /// request body is still being sent, the queue is full or the connection closed).
    pub(crate) fn release(self) {
        let body_sent = self
            .request_done
            .as_ref()
            .is_none_or(|done| done.load(Ordering::Acquire));
        if self.sender.is_closed() || !body_sent {
            return;
        }
        let shared = &*self.lent.0;
        let now = Instant::now();
        if shared
            .idle
            .push(IdleSender {
                sender: self.sender,
                since: now,
            })
            .is_ok()
        {
            let ms = now.saturating_duration_since(shared.epoch).as_millis();
            shared
                .last_return_ms
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
            shared.returned.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Milliseconds since `epoch`.
fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// === impl Lent ===

impl Lent {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.lent.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(shared))
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.lent.fetch_sub(1, Ordering::AcqRel);
        // Back in the idle queue or gone for good: either way a waiting request can go on
        // (lock-free while nobody waits).
        self.0.lent_ended.notify_one();
    }
}

/// Maps a failed exchange: no response headers arrived.
fn exchange_error(addr: SocketAddr, e: hyper::Error) -> Error {
    if e.is_user() {
        // Our own input failed: the client's request body broke off mid-stream.
        return Error::new(ErrorKind::DownstreamProtocol, "the request body broke off")
            .with_cause(e);
    }
    if let Some(h2) = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<h2::Error>())
        && h2.is_remote()
        && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        && !h2.is_go_away()
    {
        // RFC 9113 §8.7: a refused stream was not processed, so it may go to another endpoint
        // whatever its method. (Streams above a GOAWAY's last stream id were not processed
        // either, but h2 reports them with the same error as streams the connection lost later,
        // so they are not told apart; a request not yet written when a GOAWAY arrives is
        // resent on a new connection by the pool itself.)
        let context = format!("endpoint {addr} refused the stream");
        return Error::new(ErrorKind::UpstreamProtocol, context)
            .with_cause(e)
            .unprocessed();
    }
    let context = if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
        format!("endpoint {addr} closed the connection before responding")
    } else {
        format!("exchange with {addr} failed")
    };
    Error::new(ErrorKind::UpstreamProtocol, context).with_cause(e)
}

// === impl RequestBody ===

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        // hyper may stop polling once the body says it has ended, without a final `None`.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            this.done.store(true, Ordering::Release);
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
