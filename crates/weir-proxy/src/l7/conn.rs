//! One downstream HTTP connection: the TLS handshake when the listener terminates TLS, then
//! hyper's HTTP/2 or HTTP/1.1 server (weir reads the first bytes itself to tell them apart, over
//! TLS too) with the listener's limits, an idle timer and graceful shutdown. An HTTP/1.1
//! connection that idles parks between requests, holding no hyper buffers ([`super::park`]).
//!
//! A connection is closed gracefully when it has had no request in flight for the listener's
//! idle timeout (Envoy's meaning of `idle_timeout`), or when it drains (the proxy shuts down,
//! hands over to a new process, or a reload removes the listener); in-flight requests finish
//! first. A draining HTTP/2 connection gets GOAWAY at once. A draining HTTP/1.1 connection is
//! not closed under a client that may be writing its next request — the race every keep-alive
//! client loses now and then — but answers that request with `Connection: close`; only once it
//! has been idle for [`DRAIN_IDLE`] is it closed without a word.
//!
//! The socket (past TLS) is wrapped in [`CountedIo`] first: the listener's byte counters move
//! with every read and write, whatever happens above.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use futures_util::FutureExt;
use hyper::rt::{Read, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::counted::CountedIo;
use super::handle;
use super::park::{ParkFlags, ParkIo, Protocol};
use crate::access_log::HttpEntry;
use crate::server::ConnInfo;
use crate::snapshot::Listener;

/// How long a draining HTTP/1.1 connection with no request in flight stays open for its
/// client's next request (which is answered with `Connection: close`) before it is closed.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// How long an HTTP/1.1 connection has had no request in flight before it parks (gives hyper's
/// buffers back, see [`super::park`]). Parking and resuming cost a new hyper connection state
/// (two buffer allocations and a few hundred bytes), so a client that keeps the connection busy
/// never pays it; one that pauses for longer gets it once per pause.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// Tracks requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
    /// Set when the connection starts draining: HTTP/1.1 responses close it.
    draining: AtomicBool,
    /// Set once a request came over HTTP/2.
    h2: AtomicBool,
}

/// Serves one accepted HTTP connection until it closes; a TLS listener first completes the
/// handshake (within `header_read_timeout`), and the connection ends if it fails.
pub(crate) async fn serve_connection(stream: TcpStream, mut info: ConnInfo) {
    let _ = stream.set_nodelay(true);
    let snapshot = info.snapshot();
    let Some(Listener::Http(listener)) = info.listener.get(&snapshot) else {
        return;
    };
    let options = listener.options.clone();
    match &listener.tls {
        None => {
            drop(snapshot);
            let stream = CountedIo::new(stream, Arc::clone(&info.counters));
            serve_io(TokioIo::new(stream), info, options).await;
        }
        Some(tls) => {
            // Boxed for the same reason as the TLS connection below.
            let handshake = Box::pin(crate::tls::accept(tls, stream, options.header_read_timeout));
            let accepted = tokio::select! {
                accepted = handshake => accepted,
                // A handshake under way when the connection starts draining completes (its
                // request is then answered with `Connection: close`); the hard stop ends it.
                () = info.hard_stop.cancelled() => None,
            };
            drop(snapshot);
            if let Some((stream, peer)) = accepted {
                info.tls = Some(peer);
                let stream = CountedIo::new(stream, Arc::clone(&info.counters));
                // Boxed: a TLS stream is large (~5 KiB), and inline it would size the task of
                // every connection, plain HTTP ones too (10 KiB instead of under 5).
                Box::pin(serve_io(TokioIo::new(stream), info, options)).await;
            }
        }
    }
}

/// Serves HTTP over `io` until the connection closes: reads the first bytes itself (so a
/// connection that has sent nothing holds no hyper buffers), then runs hyper's HTTP/2 server
/// or, for HTTP/1.1, hyper's HTTP/1 server in rounds with the connection parked between them
/// whenever it idles (see [`super::park`]).
async fn serve_io<I>(io: I, info: ConnInfo, options: super::listener::HttpOptions)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let mut driver = Driver {
        shutdown: info.shutdown.clone(),
        hard_stop: info.hard_stop.clone(),
        activity: Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            h2: AtomicBool::new(false),
        }),
        idle: options.idle_timeout,
        draining: false,
    };
    let service = service(Arc::new(info), Arc::clone(&driver.activity));
    let flags = Arc::new(ParkFlags::default());
    let mut io = ParkIo::new(io, Arc::clone(&flags));
    let Some(protocol) = driver
        .wait(&mut io, true, options.header_read_timeout)
        .await
    else {
        return;
    };
    if protocol == Protocol::Http2 {
        // Boxed, like the HTTP/1.1 connection below: the task of a parked connection keeps
        // only what a parked connection needs.
        Box::pin(serve_h2(io, service, &options, &mut driver)).await;
        return;
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_request_headers)
        .max_buf_size(options.max_request_headers_bytes.max(8192))
        // Flattened writes, as on the pool's connections (upstream/connect.rs says why).
        .writev(false);
    loop {
        // Boxed: hyper's connection state exists only while the connection is not parked.
        let mut conn = Box::new(
            builder
                .serve_connection(io, service.clone())
                .with_upgrades(),
        );
        // Boxed too: only the wait below should size the task of a parked connection.
        if !Box::pin(driver.drive(Pin::new(&mut *conn), Some(&flags))).await {
            return;
        }
        // Parked: hyper has closed its side without touching the socket.
        flags.set_parking(false);
        let Some(parts) = conn.into_parts() else {
            return;
        };
        io = parts.io;
        io.rewind(&parts.read_buf);
        drop(parts.read_buf);
        // hyper times a request head from the moment it waits for one, which for a kept-alive
        // connection is the end of the previous request: the parked wait keeps that deadline.
        if driver
            .wait(&mut io, false, options.header_read_timeout)
            .await
            .is_none()
        {
            return;
        }
    }
}

/// Serves an HTTP/2 connection (never parked: hyper's HTTP/2 server keeps no large buffers
/// while idle).
async fn serve_h2<I, S>(
    io: ParkIo<I>,
    service: S,
    options: &super::listener::HttpOptions,
    driver: &mut Driver,
) where
    I: Read + Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::body::Tracked>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_request_headers_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    driver.drive(conn, None).await;
}

/// The per-request service: hands each request to the proxy and tracks it on the connection.
fn service(
    info: Arc<ConnInfo>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::body::Tracked>,
    Error = std::convert::Infallible,
    Future = impl Future<
        Output = Result<http::Response<crate::body::Tracked>, std::convert::Infallible>,
    > + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req| {
        let info = Arc::clone(&info);
        let active = ActiveRequest::new(Arc::clone(&activity));
        let activity = Arc::clone(&activity);
        async move {
            let h2 = req.version() == http::Version::HTTP_2;
            // A tunnel (CONNECT) leaves HTTP behind; its connection ends with the tunnel.
            let connect = req.method() == http::Method::CONNECT;
            if h2 {
                activity.h2.store(true, Ordering::Relaxed);
            }
            // The access log entry ends with the response body (or with this future).
            // The exporter current when the request starts serves it to the end.
            let spans = info.spans.as_ref().and_then(|s| s.current());
            let access = info.access_log.current();
            let (access, spans) = (access.as_ref(), spans.as_ref());
            let mut log = (access.is_some() || spans.is_some()).then(|| {
                let (m, u, h) = (req.method(), req.uri(), req.headers());
                HttpEntry::begin(
                    access,
                    spans,
                    Arc::clone(&info.listener.name),
                    info.remote,
                    m,
                    u,
                    h,
                )
            });
            // Boxed: the request's future is large (routing, retries, hedging, mirroring)
            // and hyper keeps a slot of the service future's size per connection, idle or
            // not; boxed, an idle keep-alive connection costs a pointer instead.
            let res = Box::pin(handle(&info, req, log.as_mut())).await;
            res.map(|mut r| {
                if let Some(log) = &mut log {
                    log.set_status(r.status());
                }
                // Not on a protocol switch (WebSocket): its `Connection: upgrade` stays.
                let switching = r.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                if !h2 && !connect && !switching && activity.draining.load(Ordering::Relaxed) {
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                r.map(|body| crate::body::Tracked::new(body, active, log))
            })
        }
    })
}

/// A hyper server connection weir can ask to close gracefully.
trait GracefulConn {
    /// Asks hyper to finish the exchange under way (if any) and close.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: Read + Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> GracefulConn for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: Read + Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Runs one connection's hyper rounds and the waits between them against its idle timeout,
/// drain and hard stop.
struct Driver {
    shutdown: tokio_util::sync::CancellationToken,
    hard_stop: tokio_util::sync::CancellationToken,
    activity: Arc<Activity>,
    idle: Duration,
    /// The connection is draining (HTTP/1.1 responses say `Connection: close`).
    draining: bool,
}

impl Driver {
    /// Drives `conn` until it ends (`false`) or, when `park` is given, until it has idled for
    /// [`PARK_AFTER`] and hyper has closed its side for the connection to park (`true`).
    async fn drive<C, E>(&mut self, mut conn: Pin<&mut C>, park: Option<&ParkFlags>) -> bool
    where
        C: GracefulConn + Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let activity = &*self.activity;
        let mut closing = false;
        let round_start = Instant::now();
        let mut park_not_before = round_start;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "downstream connection ended with an error");
                    }
                    return false;
                }
                _ = self.shutdown.cancelled(), if !self.draining => {
                    self.draining = true;
                    activity.draining.store(true, Ordering::Relaxed);
                    if activity.h2.load(Ordering::Relaxed) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                // The grace period is over: drop the connection, in-flight requests and all.
                () = self.hard_stop.cancelled() => return false,
                _ = idle_expired(activity, self.idle), if !closing => {
                    (self.draining, closing) = (true, true);
                    conn.as_mut().graceful_shutdown();
                }
                _ = idle_expired(activity, DRAIN_IDLE), if self.draining && !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = park_due(activity, park_not_before, round_start), if park.is_some() && !closing => {
                    let Some(flags) = park else { continue };
                    if flags.write_blocked() {
                        // hyper still has bytes for a client that is not reading: not idle.
                        park_not_before = Instant::now() + PARK_AFTER;
                        continue;
                    }
                    flags.set_parking(true);
                    conn.as_mut().graceful_shutdown();
                    // With no message under way hyper closes at once; otherwise it has just
                    // been told to close after the exchange in progress, and will.
                    match conn.as_mut().now_or_never() {
                        Some(Ok(())) => {
                            tracing::trace!("idle HTTP/1.1 connection parked");
                            return true;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "downstream connection ended with an error");
                            return false;
                        }
                        None => {
                            tracing::trace!("not parked: an exchange is under way; closing after it");
                            flags.set_parking(false);
                            closing = true;
                        }
                    }
                }
            }
        }
    }

    /// Waits (holding no hyper buffers) until the client sends something, within the
    /// connection's idle timeout and drain and within `header_read_timeout` of the connection's
    /// start or last request. The first wait (`first`) also tells HTTP/2 from HTTP/1.1. `None`
    /// when the connection is to close; it has then been shut down.
    async fn wait<I>(
        &mut self,
        io: &mut ParkIo<I>,
        first: bool,
        header_read_timeout: Duration,
    ) -> Option<Protocol>
    where
        I: Read + Write + Unpin,
    {
        if io.has_prefix() {
            return Some(Protocol::Http1);
        }
        let activity = &*self.activity;
        let deadline = activity.idle_since() + header_read_timeout;
        let got = {
            let read = async {
                if first {
                    io.sniff().await
                } else {
                    io.wait_for_data()
                        .await
                        .map(|data| data.then_some(Protocol::Http1))
                }
            };
            tokio::pin!(read);
            loop {
                tokio::select! {
                    got = &mut read => break got,
                    _ = self.shutdown.cancelled(), if !self.draining => {
                        self.draining = true;
                        activity.draining.store(true, Ordering::Relaxed);
                    }
                    () = self.hard_stop.cancelled() => return None,
                    _ = idle_expired(activity, self.idle) => break Ok(None),
                    _ = idle_expired(activity, DRAIN_IDLE), if self.draining => break Ok(None),
                    () = tokio::time::sleep_until(deadline.into()) => break Ok(None),
                }
            }
        };
        match got {
            Ok(Some(protocol)) => Some(protocol),
            Ok(None) => {
                // The client closed, or weir closes an idle connection: say so with a FIN (a
                // TLS close_notify first), as hyper would have.
                let _ = tokio::time::timeout(DRAIN_IDLE, io.shutdown()).await;
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "downstream connection ended with an error");
                None
            }
        }
    }
}

/// Resolves once the connection has had no request in flight for [`PARK_AFTER`], not before
/// `not_before`, and only after a request has ended since `round_start`: until hyper has
/// finished an exchange it does not count the connection idle, and asking it to close then
/// would turn keep-alive off instead of parking.
async fn park_due(activity: &Activity, mut not_before: Instant, round_start: Instant) {
    loop {
        tokio::time::sleep_until(not_before.into()).await;
        idle_expired(activity, PARK_AFTER).await;
        if activity.idle_since() > round_start {
            return;
        }
        not_before = Instant::now() + PARK_AFTER;
    }
}

/// Resolves once the connection has had no request in flight for `idle`.
async fn idle_expired(activity: &Activity, idle: Duration) {
    loop {
        let idle_since = activity.idle_since();
        if activity.in_flight.load(Ordering::SeqCst) == 0 && idle_since.elapsed() >= idle {
            return;
        }
        let wake = if activity.in_flight.load(Ordering::SeqCst) == 0 {
            idle_since + idle
        } else {
            Instant::now() + idle
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

impl Activity {
    /// When the last request ended (the connection's start before the first).
    fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::SeqCst))
    }
}

/// Counts one request as in flight on its connection until its response body is done.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    activity: Arc<Activity>,
}

impl ActiveRequest {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self { activity }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let a = &self.activity;
        let now = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.store(now, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
