//! The one error type of the data path.
//!
//! Every failure while proxying is an [`Error`] that says *what* went wrong ([`ErrorKind`]),
//! *which side* caused it ([`Side`]) and whether a retry is safe. One module in the proxy
//! (`l7::respond`) turns it into a status code, so the mapping lives in a single place.

use std::borrow::Cow;
use std::fmt;

use crate::BoxError;

/// What went wrong, in terms a status code can be chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The cluster has no endpoint that may take traffic.
    NoHealthyEndpoint,
    /// Connecting to the endpoint failed (refused, unreachable, reset during handshake).
    ConnectFailed,
    /// Connecting to the endpoint took longer than the cluster's `connect_timeout`.
    ConnectTimeout,
    /// The upstream did not answer within the route's timeout (or the gRPC deadline).
    UpstreamTimeout,
    /// The upstream broke the protocol or closed/reset the exchange.
    UpstreamProtocol,
    /// The downstream sent something we cannot proxy.
    DownstreamProtocol,
    /// The request's method is not one weir proxies (e.g. `CONNECT`).
    MethodNotAllowed,
    /// The request body is larger than the route lets weir buffer.
    PayloadTooLarge,
    /// A circuit breaker of the cluster is full; the context names the limit.
    Overloaded,
    /// The client went over a rate limit of the route.
    RateLimited,
    /// A global rate limit with `failure_mode: closed` cannot reach its rate limit service.
    RateLimitUnavailable,
    /// A bug or resource problem inside weir.
    Internal,
}

/// Which side of the proxied exchange an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client side.
    Downstream,
    /// The endpoint side.
    Upstream,
    /// weir itself.
    Internal,
}

/// A data-path error: kind, side, retry safety, a short context and an optional cause.
pub struct Error {
    kind: ErrorKind,
    side: Side,
    retryable: bool,
    context: Cow<'static, str>,
    cause: Option<BoxError>,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// The side this kind of error usually comes from.
    pub fn side(self) -> Side {
        match self {
            ErrorKind::NoRoute
            | ErrorKind::DownstreamProtocol
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::RateLimited => Side::Downstream,
            ErrorKind::NoHealthyEndpoint
            | ErrorKind::Overloaded
            | ErrorKind::RateLimitUnavailable
            | ErrorKind::Internal => Side::Internal,
            ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamProtocol => Side::Upstream,
        }
    }

    /// Whether a request that failed this way never reached an endpoint, so resending is safe.
    pub fn is_retry_safe(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout | ErrorKind::NoHealthyEndpoint
        )
    }
}

// === impl Error ===

impl Error {
    /// A new error of `kind` with a short human context (shown in logs and error bodies).
    pub fn new(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            side: kind.side(),
            retryable: kind.is_retry_safe(),
            context: context.into(),
            cause: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_cause(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Which side caused it.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Marks the request as provably not processed by the endpoint (an HTTP/2 stream it
    /// refused, or one above its GOAWAY's last stream id), so resending is safe.
    pub fn unprocessed(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// Whether the request may be resent to another endpoint.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The short human context.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("side", &self.side)
            .field("retryable", &self.retryable)
            .field("context", &self.context)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for Error {
    // One level only, as hyper does: callers walk `source()` for the chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_decides_side_and_retry_safety() {
        let e = Error::new(ErrorKind::ConnectFailed, "connect to 127.0.0.1:1");
        assert_eq!(e.side(), Side::Upstream);
        assert!(e.is_retryable());
        let e = Error::new(ErrorKind::UpstreamTimeout, "timeout");
        assert!(!e.is_retryable(), "the endpoint may have acted on it");
        assert_eq!(e.to_string(), "timeout");
        let e =
            Error::new(ErrorKind::UpstreamProtocol, "reset").with_cause(std::io::Error::other("x"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
