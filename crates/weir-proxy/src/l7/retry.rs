//! A route's retry policy, compiled: which failed attempts are worth another, and how long to
//! wait before it.
//!
//! Safe by default: a request that is not idempotent (RFC 9110 §9.2.2) is resent only when
//! the endpoint provably never processed it (the connection was never made, or an HTTP/2
//! stream was refused), whatever the route lists in `on`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use weir_config::{RetryConfig, RetryOn};
use weir_core::{Error, ErrorKind};

use super::outcome::retry_after;

/// The compiled `retry` block of a route.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included.
    pub(crate) attempts: u32,
    on: Vec<RetryOn>,
    pub(crate) per_try_timeout: Option<Duration>,
    backoff_base: Duration,
    backoff_max: Duration,
    honor_retry_after: bool,
    /// Request bodies up to this size are kept for a replay.
    pub(crate) max_replay_bytes: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The answer stands: success, a failure not listed in `on`, or not safe to resend.
    Final,
    /// Retry, waiting at least this long first (a `Retry-After`), or the backoff if `None`.
    Retry(Option<Duration>),
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// Compiles a route's `retry` block.
    pub(crate) fn compile(cfg: &RetryConfig) -> Self {
        Self {
            attempts: cfg.attempts.max(1),
            on: cfg.on.clone(),
            per_try_timeout: cfg.per_try_timeout.map(|t| t.get()),
            backoff_base: cfg.backoff.base.get(),
            backoff_max: cfg.backoff.max_wait(),
            honor_retry_after: cfg.honor_retry_after,
            max_replay_bytes: cfg.max_replay_bytes,
        }
    }

    /// Whether an attempt that got this response should be made again.
    pub(crate) fn judge_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        idempotent: bool,
    ) -> Verdict {
        let code = status.as_u16();
        let grpc = grpc_status(headers);
        let listed = self.on.iter().any(|on| match on {
            RetryOn::Status5xx => status.is_server_error(),
            RetryOn::GatewayError => matches!(code, 502..=504),
            RetryOn::Status(s) => *s == code,
            RetryOn::Grpc(c) => grpc == Some(*c),
            RetryOn::ConnectFailure | RetryOn::RefusedStream | RetryOn::Reset => false,
        });
        // An answer means the endpoint saw the request: only idempotent ones go again.
        if !listed || !idempotent {
            return Verdict::Final;
        }
        let wait = if self.honor_retry_after {
            retry_after(headers, SystemTime::now())
        } else {
            None
        };
        match wait {
            Some(w) if w > self.backoff_max => Verdict::Final,
            w => Verdict::Retry(w),
        }
    }

    /// Whether an attempt that failed without a response should be made again.
    pub(crate) fn judge_error(&self, error: &Error, idempotent: bool) -> Verdict {
        let connect = matches!(
            error.kind(),
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout
        );
        let refused = error.kind() == ErrorKind::UpstreamProtocol && error.is_retryable();
        let gone = matches!(
            error.kind(),
            ErrorKind::UpstreamProtocol | ErrorKind::UpstreamTimeout
        );
        if !(connect || gone) {
            // The client's own failure, a local limit, nothing healthy: another try won't help.
            return Verdict::Final;
        }
        let listed = self.on.iter().any(|on| match on {
            RetryOn::ConnectFailure => connect,
            RetryOn::RefusedStream => refused,
            RetryOn::Reset => gone && !refused,
            RetryOn::Status5xx | RetryOn::GatewayError => true,
            RetryOn::Status(_) | RetryOn::Grpc(_) => false,
        });
        let unprocessed = connect || refused;
        if listed && (idempotent || unprocessed) {
            Verdict::Retry(None)
        } else {
            Verdict::Final
        }
    }

    /// The wait before retry number `retry` (1 for the first retry): a uniform draw from
    /// `[0, min(max, base × 2^(retry-1))]` (exponential backoff with full jitter); `roll` is
    /// uniform in `[0, 1)`.
    pub(crate) fn backoff(&self, retry: u32, roll: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let cap = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        cap.mul_f64(roll.clamp(0.0, 1.0))
    }
}

/// Whether a request with `method` may be sent twice (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The `grpc-status` of a trailers-only gRPC response, if any.
fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::{BackoffConfig, ConfigDuration};

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy::compile(&RetryConfig {
            attempts: 3,
            on: on.to_vec(),
            per_try_timeout: None,
            backoff: BackoffConfig {
                base: ConfigDuration(Duration::from_millis(10)),
                max: Some(ConfigDuration(Duration::from_millis(100))),
            },
            honor_retry_after: true,
            max_replay_bytes: 1024,
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_retried_only_when_listed_and_idempotent() {
        let p = policy(&[RetryOn::GatewayError, RetryOn::Status(409)]);
        let none = HeaderMap::new();
        let judge = |s: u16, idem| p.judge_response(StatusCode::from_u16(s).unwrap(), &none, idem);
        assert_eq!(judge(503, true), Verdict::Retry(None));
        assert_eq!(judge(409, true), Verdict::Retry(None));
        assert_eq!(
            judge(500, true),
            Verdict::Final,
            "500 is not a gateway error"
        );
        assert_eq!(judge(200, true), Verdict::Final);
        assert_eq!(
            judge(503, false),
            Verdict::Final,
            "a POST that got an answer is never resent"
        );
        let all = policy(&[RetryOn::Status5xx]);
        assert_eq!(
            all.judge_response(StatusCode::INTERNAL_SERVER_ERROR, &none, true),
            Verdict::Retry(None)
        );
    }

    #[test]
    fn grpc_codes_come_from_trailers_only_responses() {
        let p = policy(&[RetryOn::Grpc(14)]);
        let unavailable = headers(&[("grpc-status", "14")]);
        let internal = headers(&[("grpc-status", "13")]);
        assert_eq!(
            p.judge_response(StatusCode::OK, &unavailable, true),
            Verdict::Retry(None)
        );
        assert_eq!(
            p.judge_response(StatusCode::OK, &internal, true),
            Verdict::Final
        );
    }

    #[test]
    fn retry_after_sets_the_wait_or_forbids_the_retry() {
        let p = policy(&[RetryOn::Status(503)]);
        let soon = headers(&[("retry-after", "0")]);
        let late = headers(&[("retry-after", "5")]);
        assert_eq!(
            p.judge_response(StatusCode::SERVICE_UNAVAILABLE, &soon, true),
            Verdict::Retry(Some(Duration::ZERO))
        );
        assert_eq!(
            p.judge_response(StatusCode::SERVICE_UNAVAILABLE, &late, true),
            Verdict::Final,
            "five seconds is past backoff.max"
        );
    }

    #[test]
    fn unprocessed_requests_are_retried_whatever_the_method() {
        let p = policy(&[RetryOn::ConnectFailure, RetryOn::RefusedStream]);
        let connect = Error::new(ErrorKind::ConnectFailed, "refused");
        let refused = Error::new(ErrorKind::UpstreamProtocol, "refused stream").unprocessed();
        let reset = Error::new(ErrorKind::UpstreamProtocol, "reset");
        assert_eq!(p.judge_error(&connect, false), Verdict::Retry(None));
        assert_eq!(p.judge_error(&refused, false), Verdict::Retry(None));
        assert_eq!(
            p.judge_error(&reset, true),
            Verdict::Final,
            "reset not listed"
        );
        let r = policy(&[RetryOn::Reset]);
        assert_eq!(r.judge_error(&reset, true), Verdict::Retry(None));
        assert_eq!(
            r.judge_error(&reset, false),
            Verdict::Final,
            "a reset POST may have been processed"
        );
        let local = Error::new(ErrorKind::Overloaded, "max_pending_requests");
        assert_eq!(r.judge_error(&local, true), Verdict::Final);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let p = policy(&[]);
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_millis(10) * 999_999 / 1_000_000
        );
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(40));
        assert_eq!(
            p.backoff(9, 1.0),
            Duration::from_millis(100),
            "capped at max"
        );
        assert_eq!(p.backoff(9, 0.0), Duration::ZERO);
    }
}
