//! One downstream HTTP connection: the TLS handshake when the listener terminates TLS, then
//! hyper's automatic HTTP/1.1-or-HTTP/2 server with the listener's limits, an idle timer and
//! graceful shutdown. Over TLS the protocol is the one ALPN chose (hyper's auto server reads
//! the preface either way).
//!
//! A connection is closed gracefully when it has had no request in flight for the listener's
//! idle timeout (Envoy's meaning of `idle_timeout`), or when it drains (the proxy shuts down,
//! hands over to a new process, or a reload removes the listener); in-flight requests finish
//! first. A draining HTTP/2 connection gets GOAWAY at once. A draining HTTP/1.1 connection is
//! not closed under a client that may be writing its next request — the race every keep-alive
//! client loses now and then — but answers that request with `Connection: close`; only once it
//! has been idle for [`DRAIN_IDLE`] is it closed without a word.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::handle;
use crate::access_log::HttpEntry;
use crate::server::ConnInfo;
use crate::snapshot::Listener;

/// How long a draining HTTP/1.1 connection with no request in flight stays open for its
/// client's next request (which is answered with `Connection: close`) before it is closed.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

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
                // Boxed: a TLS stream is large (~5 KiB), and inline it would size the task of
                // every connection, plain HTTP ones too (10 KiB instead of under 5).
                Box::pin(serve_io(TokioIo::new(stream), info, options)).await;
            }
        }
    }
}

/// Runs hyper's auto server over `io` until the connection closes.
async fn serve_io<I>(io: I, info: ConnInfo, options: super::listener::HttpOptions)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (shutdown, hard_stop) = (info.shutdown.clone(), info.hard_stop.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_request_headers)
        .max_buf_size(options.max_request_headers_bytes.max(8192))
        // Flattened writes, as on the pool's connections (upstream/connect.rs says why).
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_request_headers_bytes).unwrap_or(u32::MAX));

    let activity = Arc::new(Activity {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        h2: AtomicBool::new(false),
    });
    let info = Arc::new(info);
    let service = {
        let activity = Arc::clone(&activity);
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
                let (access, spans) = (info.access_log.as_ref(), spans.as_ref());
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
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let idle = options.idle_timeout;
    let mut draining = false;
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "downstream connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                activity.draining.store(true, Ordering::Relaxed);
                if activity.h2.load(Ordering::Relaxed) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            // The grace period is over: drop the connection, in-flight requests and all.
            () = hard_stop.cancelled() => return,
            _ = idle_expired(&activity, idle), if !closing => {
                (draining, closing) = (true, true);
                conn.as_mut().graceful_shutdown();
            }
            _ = idle_expired(&activity, DRAIN_IDLE), if draining && !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once the connection has had no request in flight for `idle`.
async fn idle_expired(activity: &Activity, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.last_ms.load(Ordering::SeqCst));
        let idle_since = activity.start + last;
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
