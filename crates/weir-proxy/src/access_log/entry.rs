//! The records being filled in on the data path: an [`HttpEntry`] per request, a [`TcpEntry`]
//! per L4 connection. Each is submitted by its `Drop`, so every way a request or connection can
//! end — response body done, client gone, task cancelled — leaves exactly one line. An
//! [`HttpEntry`] also feeds the OTLP exporter: a sampled request's record goes there as a span.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use weir_core::{BoxError, ErrorKind};

use super::{AccessLog, HttpRecord, Record, TcpEnd, TcpRecord};
use crate::otlp::{AttemptTracer, SpanExporter, SpanIds, SpanRecord};

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
}

/// An L4 connection's record while it is open; submitted when dropped.
#[derive(Debug)]
pub(crate) struct TcpEntry {
    record: TcpRecord,
    start: Instant,
    log: Arc<AccessLog>,
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
        listener: usize,
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
        }
    }

    /// Weir's span for the request (trace context propagation is on): exported when sampled.
    pub(crate) fn set_span(&mut self, ids: SpanIds) {
        self.record.trace_id = Some(ids.trace_id);
        self.span = Some(ids);
    }

    /// What gives each upstream attempt to `cluster` its own client span: `Some` only when
    /// the request is sampled and spans are exported.
    pub(crate) fn attempt_tracer(&self, cluster: &Arc<str>) -> Option<AttemptTracer> {
        AttemptTracer::new(self.spans.as_ref()?, self.span?, cluster)
    }

    /// The trace the request belongs to.
    pub(crate) fn set_trace_id(&mut self, id: Option<[u8; 16]>) {
        self.record.trace_id = id;
    }

    /// The index of the route that matched, in its listener's `routes`.
    pub(crate) fn set_route(&mut self, index: usize) {
        self.record.route = Some(index);
    }

    /// The cluster the request is sent to.
    pub(crate) fn set_cluster(&mut self, name: &Arc<str>) {
        self.record.cluster = Some(Arc::clone(name));
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
        let r = &mut self.record;
        let record = HttpRecord {
            time: r.time,
            listener: r.listener,
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
            duration: self.start.elapsed(),
            upstream_duration: r.upstream_duration,
            attempts: r.attempts,
            trace_id: r.trace_id,
            client: r.client,
        };
        if let (Some(spans), Some(ids)) = (&self.spans, self.span.filter(|s| s.sampled)) {
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
    pub(crate) fn begin(log: &Arc<AccessLog>, listener: usize, client: SocketAddr) -> Self {
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
            listener: r.listener,
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
