//! The body type that flows through the proxy, and the wrapper that ends an upstream exchange.
//!
//! Bodies stream frame by frame in both directions; nothing here buffers. [`UpstreamBody`] wraps
//! a response body from an endpoint so that the endpoint's in-flight count stays raised until the
//! body is finished, and a keep-alive HTTP/1.1 connection goes back to its pool only once the
//! response has been read to the end (a half-read connection cannot be reused).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use weir_core::{BoxError, InFlightGuard};

use crate::upstream::PooledSender;

/// The boxed, streaming body used for every request and response weir forwards or produces.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response body from an endpoint, holding the exchange's resources until it ends.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    done: bool,
    _held: ExchangeGuards,
    sender: Option<PooledSender>,
}

/// What one exchange holds until its response is done: the endpoint's in-flight count, the
/// cluster's `max_requests` unit and, for a sampled request, the answering attempt's client
/// span (which ends then). Only their `Drop` matters.
#[derive(Debug)]
pub(crate) struct ExchangeGuards {
    _in_flight: InFlightGuard,
    _request: crate::breakers::Slot,
    _span: Option<crate::otlp::AttemptSpan>,
}

impl ExchangeGuards {
    /// Holds both until dropped.
    pub(crate) fn new(in_flight: InFlightGuard, request: crate::breakers::Slot) -> Self {
        Self {
            _in_flight: in_flight,
            _request: request,
            _span: None,
        }
    }

    /// Also holds `span` (exported when dropped).
    pub(crate) fn with_span(mut self, span: Option<crate::otlp::AttemptSpan>) -> Self {
        self._span = span;
        self
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// Wraps `inner`; `sender` (HTTP/1.1 only) returns to its pool when the body completes.
    pub(crate) fn new(inner: Incoming, held: ExchangeGuards, sender: Option<PooledSender>) -> Self {
        Self {
            inner,
            done: false,
            _held: held,
            sender,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done = true,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done = true,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take()
            && (self.done || self.inner.is_end_stream())
        {
            sender.release();
        }
    }
}

/// A complete body from bytes (error pages, direct responses).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A downstream request body, boxed for forwarding.
pub(crate) fn incoming(body: Incoming) -> ProxyBody {
    // Most requests have no body; an empty one boxes a zero-sized value (no allocation).
    if body.is_end_stream() {
        return empty();
    }
    body.map_err(BoxError::from).boxed_unsync()
}

pin_project_lite::pin_project! {
    /// A downstream response body that keeps its request counted as active on the connection
    /// until the body is finished or dropped (drives the connection idle timeout), and holds
    /// the request's access log entry, which is written when the body is dropped.
    pub(crate) struct Tracked {
        #[pin]
        inner: ProxyBody,
        active: crate::l7::conn::ActiveRequest,
        log: Option<crate::access_log::HttpEntry>,
    }
}

impl Tracked {
    /// Wraps `inner`, holding `active` and `log` until the body is dropped.
    pub(crate) fn new(
        inner: ProxyBody,
        active: crate::l7::conn::ActiveRequest,
        log: Option<crate::access_log::HttpEntry>,
    ) -> Self {
        Self { inner, active, log }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log.as_mut(), &polled)
            && let Some(data) = frame.data_ref()
        {
            log.add_bytes_out(data.len());
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

pin_project_lite::pin_project! {
    /// Fails a body that moves no frame for `timeout` (Envoy's stream idle timeout): a stalled
    /// upload or download must not hold a connection, an endpoint slot and an in-flight count
    /// forever. The timer is re-armed only when it fires, not on every frame.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        timeout: std::time::Duration,
        last_frame: tokio::time::Instant,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner` with an idle limit of `timeout`.
    pub(crate) fn new(inner: B, timeout: std::time::Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            inner,
            sleep: tokio::time::sleep_until(now + timeout),
            timeout,
            last_frame: now,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.last_frame = tokio::time::Instant::now();
            return Poll::Ready(frame);
        }
        loop {
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = *this.last_frame + *this.timeout;
            if tokio::time::Instant::now() >= deadline {
                let e: BoxError = format!("no body bytes moved for {:?}", this.timeout).into();
                return Poll::Ready(Some(Err(e)));
            }
            // Frames arrived since the timer was set: re-arm for the remaining time.
            this.sleep.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
