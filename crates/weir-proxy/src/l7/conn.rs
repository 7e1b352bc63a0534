//! One downstream HTTP connection: the TLS handshake when the listener terminates TLS, then
//! hyper's automatic HTTP/1.1-or-HTTP/2 server with the listener's limits, an idle timer and
//! graceful shutdown. Over TLS the protocol is the one ALPN chose (hyper's auto server reads
//! the preface either way).
//!
//! A connection is closed gracefully when it has had no request in flight for the listener's
//! idle timeout (Envoy's meaning of `idle_timeout`), or when the proxy shuts down; in-flight
//! requests finish first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Tracks requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

/// Serves one accepted HTTP connection until it closes; a TLS listener first completes the
/// handshake (within `header_read_timeout`), and the connection ends if it fails.
pub(crate) async fn serve_connection(stream: TcpStream, mut info: ConnInfo) {
    let _ = stream.set_nodelay(true);
    let snapshot = info.snapshots.load();
    let Some(Listener::Http(listener)) = snapshot.listeners.get(info.listener) else {
        return;
    };
    let options = listener.options.clone();
    match &listener.tls {
        None => {
            drop(snapshot);
            serve_io(TokioIo::new(stream), info, options).await;
        }
        Some(tls) => {
            // Boxed so the handshake's state does not size every connection's task.
            let handshake = Box::pin(crate::tls::accept(tls, stream, options.header_read_timeout));
            let accepted = tokio::select! {
                accepted = handshake => accepted,
                () = info.shutdown.cancelled() => None,
            };
            drop(snapshot);
            if let Some((stream, peer)) = accepted {
                info.tls = Some(peer);
                serve_io(TokioIo::new(stream), info, options).await;
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
        .max_buf_size(options.max_request_headers_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_request_headers_bytes).unwrap_or(u32::MAX));

    let activity = Arc::new(Activity {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
    });
    let info = Arc::new(info);
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let info = Arc::clone(&info);
            let active = ActiveRequest::new(Arc::clone(&activity));
            async move {
                // The access log entry ends with the response body (or with this future).
                // The exporter current when the request starts serves it to the end.
                let spans = info.spans.as_ref().and_then(|s| s.current());
                let (access, spans) = (info.access_log.as_ref(), spans.as_ref());
                let mut log = (access.is_some() || spans.is_some()).then(|| {
                    let (m, u, h) = (req.method(), req.uri(), req.headers());
                    HttpEntry::begin(access, spans, info.listener, info.remote, m, u, h)
                });
                // Boxed: the request's future is large (routing, retries, hedging, mirroring)
                // and hyper keeps a slot of the service future's size per connection, idle or
                // not; boxed, an idle keep-alive connection costs a pointer instead.
                let res = Box::pin(handle(&info, req, log.as_mut())).await;
                res.map(|r| {
                    if let Some(log) = &mut log {
                        log.set_status(r.status());
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
                conn.as_mut().graceful_shutdown();
            }
            // The grace period is over: drop the connection, in-flight requests and all.
            () = hard_stop.cancelled() => return,
            _ = idle_expired(&activity, idle), if !draining => {
                draining = true;
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
