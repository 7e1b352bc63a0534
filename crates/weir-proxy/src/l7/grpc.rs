//! gRPC specifics: recognising gRPC requests and reading their deadline.
//!
//! gRPC over HTTP/2 (PROTOCOL-HTTP2.md in grpc/grpc): requests carry
//! `content-type: application/grpc[+proto|+json…]` and optionally `grpc-timeout: <1-8 digits><unit>`
//! with units H, M, S, m (ms), u (µs), n (ns). Errors are reported as HTTP 200 with a
//! `grpc-status` (a "trailers-only" response), not as HTTP error codes.

use std::time::Duration;

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// Whether the request is a gRPC call: `application/grpc`, optionally followed by `+format`
/// or parameters (`application/grpcfoo` is not gRPC).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .strip_prefix(b"application/grpc")
            .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
    })
}

/// The call's deadline from `grpc-timeout`, if present and well-formed.
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// gRPC status codes weir produces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcStatus {
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_bad_values() {
        let t = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1M"), Some(Duration::from_secs(60)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("10x"), None);
        assert_eq!(t("m"), None);
        assert_eq!(t("+5S"), None, "digits only");
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn recognises_grpc_content_types() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/grpcfoo".parse().unwrap());
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
        assert!(is_grpc(&h));
    }
}
