//! The records being filled in on the data path: an [`HttpEntry`] per request, a [`TcpEntry`]
//! per L4 connection, a [`UdpEntry`] per UDP session. Each is submitted by its `Drop`, so every
//! way a request, connection or session can end — response body done, client gone, task
//! cancelled, session evicted — leaves exactly one line. An
//! [`HttpEntry`] also feeds the OTLP exporter: a sampled request's record goes there as a span.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use weir_core::{BoxError, ErrorKind};

use super::{AccessLog, HttpRecord, Record, TcpEnd, TcpRecord, UdpRecord};
use crate::otlp::{AttemptTracer, RouteSpan, RouteSpanStart, SpanExporter, SpanIds, SpanRecord};

/// An HTTP request's record while the request runs; submitted when dropped (by the downstream
/// response body wrapper, once the body has ended).
#[derive(Debug)]
pub(crate) struct HttpEntry {
    record: HttpRecord,
    start: Instant,
    /// Request body bytes, counted by a [`CountedBody`] on the forwarded body.
    bytes_in: Option<Arc<AtomicU64>>,
    log: Option<Arc<AccessLog>>,
    /// The span exporter, and weir's span ids once trace context has been handled.
    spans: Option<Arc<SpanExporter>>,
    span: Option<SpanIds>,
    /// The route span, once a route matched (sampled requests with an exporter only).
    route_span: Option<RouteSpanStart>,
}

/// An L4 connection's record while it is open; submitted when dropped.
#[derive(Debug)]
pub(crate) struct TcpEntry {
    record: TcpRecord,
    start: Instant,
    log: Arc<AccessLog>,
}

/// A UDP session's record while the session lives: counters the relay adds to per datagram
/// (relaxed atomics: the listener task and the session task both write), and how it ended.
/// Submitted when dropped, with the last owner of the session.
#[derive(Debug)]
pub(crate) struct UdpEntry {
    time: SystemTime,
    start: Instant,
    listener: Arc<str>,
    cluster: Arc<str>,
    endpoint: SocketAddr,
    client: SocketAddr,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    /// A [`UdpEnd`] as its number; 0 until one is known (then `shutdown`).
    end: AtomicU8,
    log: Arc<AccessLog>,
}

/// Why a UDP session ended (the first reason given wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum UdpEnd {
    /// No datagram either way for the idle timeout.
    Idle = 1,
    /// The table was full and this was the least recently used session.
    Evicted = 2,
    /// The endpoint answered with ICMP port unreachable.
    Refused = 3,
    /// The session socket failed.
    Failed = 4,
}

pin_project_lite::pin_project! {
    /// A body that adds the length of each data frame to a shared counter (the request body
    /// bytes of the access log); a plain pass-through when there is no counter.
    pub(crate) struct CountedBody<B> {
        #[pin]
        inner: B,
        counter: Option<Arc<AtomicU64>>,
    }
}

// === impl HttpEntry ===

impl HttpEntry {
    /// Starts the record of a request that arrived on `listener` from `client`, for the access
    /// log and/or the span exporter.
    pub(crate) fn begin(
        log: Option<&Arc<AccessLog>>,
        spans: Option<&Arc<SpanExporter>>,
        listener: Arc<str>,
        client: SocketAddr,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Self {
        Self {
            record: HttpRecord {
                time: SystemTime::now(),
                listener,
                route: None,
                cluster: None,
                endpoint: None,
                method: method.clone(),
                uri: uri.clone(),
                host: headers.get(http::header::HOST).cloned(),
                status: 0,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                upstream_duration: None,
                attempts: 0,
                trace_id: None,
                client,
            },
            start: Instant::now(),
            bytes_in: None,
            log: log.map(Arc::clone),
            spans: spans.map(Arc::clone),
            span: None,
            route_span: None,
        }
    }

    /// Weir's span for the request (trace context propagation is on): exported when sampled.
    pub(crate) fn set_span(&mut self, ids: SpanIds) {
        self.record.trace_id = Some(ids.trace_id);
        self.span = Some(ids);
    }

    /// What gives each upstream attempt to `cluster` its own client span, a child of the
    /// route span: `Some` only when the request is sampled and spans are exported.
    pub(crate) fn attempt_tracer(&self, cluster: &Arc<str>) -> Option<AttemptTracer> {
        let server = self.span?;
        let parent = self.route_span.map_or(server.span_id, |r| r.span_id);
        AttemptTracer::new(self.spans.as_ref()?, server, parent, cluster)
    }

    /// The trace the request belongs to.
    pub(crate) fn set_trace_id(&mut self, id: Option<[u8; 16]>) {
        self.record.trace_id = id;
    }

    /// The index of the route that matched, in its listener's `routes`; starts the route span
    /// of a sampled request whose spans are exported.
    pub(crate) fn set_route(&mut self, index: usize) {
        self.record.route = Some(index);
        if self.spans.is_some() && self.span.is_some_and(|s| s.sampled) {
            self.route_span = Some(RouteSpanStart::now());
        }
    }

    /// The cluster the request is sent to, and its balancing policy (for the route span).
    pub(crate) fn set_cluster(&mut self, name: &Arc<str>, lb_policy: &'static str) {
        self.record.cluster = Some(Arc::clone(name));
        if let Some(route) = &mut self.route_span {
            route.lb_policy = Some(lb_policy);
        }
    }

    /// How many upstream attempts were made (retries and hedges included).
    pub(crate) fn set_attempts(&mut self, attempts: u32) {
        self.record.attempts = attempts;
    }

    /// The endpoint whose answer went to the client, and its time to response headers.
    pub(crate) fn set_upstream(&mut self, endpoint: SocketAddr, elapsed: Duration) {
        self.record.endpoint = Some(endpoint);
        self.record.upstream_duration = Some(elapsed);
    }

    /// The status sent to the client.
    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.record.status = status.as_u16();
    }

    /// Response body bytes sent on.
    pub(crate) fn add_bytes_out(&mut self, n: usize) {
        self.record.bytes_out += n as u64;
    }

    /// A counter for the request body's bytes, shared with the body that counts them.
    pub(crate) fn request_body_counter(&mut self) -> Arc<AtomicU64> {
        Arc::clone(self.bytes_in.get_or_insert_with(Arc::default))
    }
}

impl Drop for HttpEntry {
    fn drop(&mut self) {
        let now = Instant::now();
        let r = &mut self.record;
        let record = HttpRecord {
            time: r.time,
            listener: Arc::clone(&r.listener),
            route: r.route,
            cluster: r.cluster.take(),
            endpoint: r.endpoint,
            method: std::mem::take(&mut r.method),
            uri: std::mem::take(&mut r.uri),
            host: r.host.take(),
            status: r.status,
            bytes_in: self
                .bytes_in
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed)),
            bytes_out: r.bytes_out,
            duration: now.saturating_duration_since(self.start),
            upstream_duration: r.upstream_duration,
            attempts: r.attempts,
            trace_id: r.trace_id,
            client: r.client,
        };
        if let (Some(spans), Some(ids)) = (&self.spans, self.span.filter(|s| s.sampled)) {
            if let (Some(route), Some(index)) = (self.route_span, record.route) {
                let (start, duration) = route.times(record.time, self.start, now);
                spans.submit(SpanRecord::Route(RouteSpan {
                    trace_id: ids.trace_id,
                    span_id: route.span_id,
                    parent_id: ids.span_id,
                    start,
                    duration,
                    listener: Arc::clone(&record.listener),
                    route: index,
                    cluster: record.cluster.clone(),
                    lb_policy: route.lb_policy,
                    retries: record.attempts.saturating_sub(1),
                    status: record.status,
                }));
            }
            let http = match self.log {
                Some(_) => record.clone(),
                None => {
                    spans.submit(SpanRecord::Server { ids, http: record });
                    return;
                }
            };
            spans.submit(SpanRecord::Server { ids, http });
        }
        if let Some(log) = &self.log {
            log.submit(Record::Http(record));
        }
    }
}

// === impl TcpEntry ===

impl TcpEntry {
    /// Starts the record of a connection accepted on `listener` from `client`.
    pub(crate) fn begin(log: &Arc<AccessLog>, listener: Arc<str>, client: SocketAddr) -> Self {
        Self {
            record: TcpRecord {
                time: SystemTime::now(),
                listener,
                cluster: None,
                endpoint: None,
                client,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                // Replaced by every path that ends the connection on purpose.
                end: TcpEnd::Reason("aborted"),
            },
            start: Instant::now(),
            log: Arc::clone(log),
        }
    }

    /// The client as a trusted PROXY header named it.
    pub(crate) fn set_client(&mut self, client: SocketAddr) {
        self.record.client = client;
    }

    /// The cluster the connection goes to.
    pub(crate) fn set_cluster(&mut self, name: &Arc<str>) {
        self.record.cluster = Some(Arc::clone(name));
    }

    /// The endpoint the connection was made to.
    pub(crate) fn set_endpoint(&mut self, endpoint: SocketAddr) {
        self.record.endpoint = Some(endpoint);
    }

    /// Bytes copied from the client and to it, and why the copy ended.
    pub(crate) fn set_copied(&mut self, bytes_in: u64, bytes_out: u64, end: &'static str) {
        self.record.bytes_in = bytes_in;
        self.record.bytes_out = bytes_out;
        self.record.end = TcpEnd::Reason(end);
    }

    /// The connection ended without being forwarded, for this reason.
    pub(crate) fn set_end(&mut self, end: TcpEnd) {
        self.record.end = end;
    }

    /// The connection was not forwarded because of `kind`.
    pub(crate) fn set_error(&mut self, kind: ErrorKind) {
        self.set_end(TcpEnd::Error(kind));
    }
}

impl Drop for TcpEntry {
    fn drop(&mut self) {
        let r = &mut self.record;
        let record = TcpRecord {
            time: r.time,
            listener: Arc::clone(&r.listener),
            cluster: r.cluster.take(),
            endpoint: r.endpoint,
            client: r.client,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration: self.start.elapsed(),
            end: r.end,
        };
        self.log.submit(Record::Tcp(record));
    }
}

// === impl UdpEntry ===

impl UdpEntry {
    /// Starts the record of a session from `client` on `listener`, relayed to `endpoint` of
    /// `cluster`.
    pub(crate) fn begin(
        log: &Arc<AccessLog>,
        listener: &Arc<str>,
        cluster: &Arc<str>,
        endpoint: SocketAddr,
        client: SocketAddr,
    ) -> Self {
        Self {
            time: SystemTime::now(),
            start: Instant::now(),
            listener: Arc::clone(listener),
            cluster: Arc::clone(cluster),
            endpoint,
            client,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            datagrams_in: AtomicU64::new(0),
            datagrams_out: AtomicU64::new(0),
            end: AtomicU8::new(0),
            log: Arc::clone(log),
        }
    }

    /// A datagram of `len` bytes from the client went to the endpoint.
    pub(crate) fn client_sent(&self, len: usize) {
        self.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// A datagram of `len` bytes from the endpoint went to the client.
    pub(crate) fn endpoint_sent(&self, len: usize) {
        self.datagrams_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Why the session ends, unless a reason was given already.
    pub(crate) fn set_end(&self, end: UdpEnd) {
        let _ = self
            .end
            .compare_exchange(0, end as u8, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Drop for UdpEntry {
    fn drop(&mut self) {
        let end = match self.end.load(Ordering::Acquire) {
            1 => "idle",
            2 => "evicted",
            3 => "refused",
            4 => "failed",
            _ => "shutdown",
        };
        self.log.submit(Record::Udp(UdpRecord {
            time: self.time,
            listener: Arc::clone(&self.listener),
            cluster: Arc::clone(&self.cluster),
            endpoint: self.endpoint,
            client: self.client,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            datagrams_in: self.datagrams_in.load(Ordering::Relaxed),
            datagrams_out: self.datagrams_out.load(Ordering::Relaxed),
            duration: self.start.elapsed(),
            end,
        }));
    }
}

// === impl CountedBody ===

impl<B> CountedBody<B> {
    /// Wraps `inner`, adding its data bytes to `counter` when there is one.
    pub(crate) fn new(inner: B, counter: Option<Arc<AtomicU64>>) -> Self {
        Self { inner, counter }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Some(counter), Poll::Ready(Some(Ok(frame)))) = (this.counter.as_ref(), &polled)
            && let Some(data) = frame.data_ref()
        {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
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
