//! The one place where errors and weir's own answers become HTTP responses.
//!
//! Plain HTTP clients get a status code and a one-line text body. gRPC clients get what gRPC
//! expects: HTTP 200, `content-type: application/grpc` and a `grpc-status` in a trailers-only
//! response, so their libraries report UNAVAILABLE or DEADLINE_EXCEEDED instead of a
//! transport error.

use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};
use weir_core::{Error, ErrorKind};

use super::grpc::GrpcStatus;
use crate::ProxyBody;
use crate::body::{empty, full};

/// The HTTP status for an error kind.
pub(crate) fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NoRoute => StatusCode::NOT_FOUND,
        ErrorKind::NoHealthyEndpoint | ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::ConnectFailed | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
        ErrorKind::ConnectTimeout | ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::DownstreamProtocol => StatusCode::BAD_REQUEST,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What the client is told. Upstream and internal failures get a fixed phrase (as Envoy's "no
/// healthy upstream"): the detail, with endpoint addresses, goes to the log, not to clients.
fn client_message(e: &Error) -> &str {
    match e.kind() {
        ErrorKind::NoRoute
        | ErrorKind::DownstreamProtocol
        | ErrorKind::MethodNotAllowed
        | ErrorKind::PayloadTooLarge => e.context(),
        ErrorKind::NoHealthyEndpoint => "no healthy upstream",
        ErrorKind::Overloaded => "upstream overloaded: circuit breaker open",
        ErrorKind::ConnectFailed => "upstream connect error",
        ErrorKind::ConnectTimeout => "upstream connect timeout",
        ErrorKind::UpstreamTimeout => "upstream request timeout",
        ErrorKind::UpstreamProtocol => "upstream reset or closed before responding",
        ErrorKind::RateLimited => "rate limit exceeded",
        ErrorKind::RateLimitUnavailable => "rate limit service unavailable",
        _ => "internal error",
    }
}

fn grpc_status_for(kind: ErrorKind) -> GrpcStatus {
    match kind {
        ErrorKind::NoRoute | ErrorKind::MethodNotAllowed => GrpcStatus::Unimplemented,
        ErrorKind::UpstreamTimeout => GrpcStatus::DeadlineExceeded,
        ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => GrpcStatus::ResourceExhausted,
        ErrorKind::RateLimitUnavailable => GrpcStatus::Unavailable,
        ErrorKind::NoHealthyEndpoint
        | ErrorKind::Overloaded
        | ErrorKind::ConnectFailed
        | ErrorKind::ConnectTimeout
        | ErrorKind::UpstreamProtocol => GrpcStatus::Unavailable,
        _ => GrpcStatus::Internal,
    }
}

/// Names the circuit-breaker limit that refused a request (Envoy's `x-envoy-overloaded`).
pub(crate) const OVERLOADED: &str = "x-weir-overloaded";

/// The response for a failed request.
pub(crate) fn error(e: &Error, grpc: bool) -> Response<ProxyBody> {
    let mut res = error_response(e, grpc);
    if e.kind() == ErrorKind::Overloaded
        && let Ok(limit) = HeaderValue::from_str(e.context())
    {
        res.headers_mut().insert(OVERLOADED, limit);
    }
    res
}

fn error_response(e: &Error, grpc: bool) -> Response<ProxyBody> {
    tracing::debug!(kind = ?e.kind(), side = ?e.side(), error = %e, cause = ?std::error::Error::source(e), "request failed");
    if grpc {
        return grpc_error(grpc_status_for(e.kind()), client_message(e));
    }
    let status = status_for(e.kind());
    let body = format!("{} {}\n", status.as_u16(), client_message(e));
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A trailers-only gRPC error response.
fn grpc_error(status: GrpcStatus, message: &str) -> Response<ProxyBody> {
    let mut res = Response::new(empty());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(status as u16));
    // grpc-message is percent-encoded; our messages are ASCII, so only escape what must be.
    let msg: String = message
        .bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if let Ok(v) = HeaderValue::try_from(msg) {
        h.insert("grpc-message", v);
    }
    res
}

/// A fixed response from a `direct_response` route.
pub(crate) fn direct(
    status: StatusCode,
    content_type: &HeaderValue,
    body: bytes::Bytes,
) -> Response<ProxyBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, content_type.clone());
    res
}

/// A redirect to `location`.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    match HeaderValue::try_from(location) {
        Ok(v) => {
            res.headers_mut().insert(LOCATION, v);
            res
        }
        Err(_) => error(
            &Error::new(ErrorKind::Internal, "redirect target is not a valid header"),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_names_the_limit() {
        let res = error(&Error::new(ErrorKind::Overloaded, "max_requests"), false);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[OVERLOADED], "max_requests");
        let res = error(&Error::new(ErrorKind::Overloaded, "max_requests"), true);
        assert_eq!(res.headers()["grpc-status"], "14");
    }

    #[test]
    fn maps_each_kind_once() {
        assert_eq!(
            status_for(ErrorKind::NoHealthyEndpoint),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(ErrorKind::ConnectFailed),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status_for(ErrorKind::UpstreamTimeout),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(status_for(ErrorKind::NoRoute), StatusCode::NOT_FOUND);
        assert_eq!(
            status_for(ErrorKind::MethodNotAllowed),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_for(ErrorKind::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for(ErrorKind::RateLimitUnavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            grpc_status_for(ErrorKind::RateLimited),
            GrpcStatus::ResourceExhausted
        );
    }

    #[test]
    fn endpoint_details_stay_out_of_client_bodies() {
        let e = Error::new(ErrorKind::ConnectFailed, "connect to 10.1.2.3:8080 failed");
        assert_eq!(error(&e, false).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(client_message(&e), "upstream connect error");
        let e = Error::new(
            ErrorKind::UpstreamTimeout,
            "endpoint 10.1.2.3:8080 did not answer",
        );
        assert_eq!(client_message(&e), "upstream request timeout");
    }

    #[test]
    fn grpc_errors_are_trailers_only_with_status() {
        let res = error(
            &Error::new(ErrorKind::UpstreamTimeout, "10.0.0.1:80 slow"),
            true,
        );
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "4");
        assert_eq!(res.headers()["grpc-message"], "upstream request timeout");
        // Client-caused errors keep their context, percent-encoded as gRPC requires.
        let res = error(&Error::new(ErrorKind::DownstreamProtocol, "100% bad"), true);
        assert_eq!(res.headers()["grpc-message"], "100%25 bad");
        let res = error(&Error::new(ErrorKind::NoHealthyEndpoint, "none"), true);
        assert_eq!(res.headers()["grpc-status"], "14");
    }
}
