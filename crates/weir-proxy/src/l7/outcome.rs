//! What an exchange teaches the balancer: success, failure, or "back off" with `Retry-After`.
//!
//! Latency-aware balancing needs to know more than the RTT: a fast 500 is not a healthy
//! endpoint, and a 429/503 with `Retry-After` (RFC 9110 §10.2.3) asks for less traffic for a
//! while. This module classifies a response (or a failure to get one) into an [`Outcome`], and
//! a failure into the [`PassiveOutcome`] outlier detection counts.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use weir_balance::Outcome;
use weir_core::{EndpointError, Error, ErrorKind, PassiveOutcome};

/// The outcome of an exchange that produced response headers.
pub(crate) fn of_response(status: StatusCode, headers: &HeaderMap) -> Outcome {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Outcome::Overloaded {
            retry_after: retry_after(headers, SystemTime::now()),
        },
        s if s.is_server_error() => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// What a failed exchange says about the endpoint: a connection that could not be made, or
/// one that broke or went silent after (a gateway error). Failures that are not the endpoint's
/// doing (the client, a local limit) say nothing.
pub(crate) fn passive_of_error(error: &Error) -> Option<PassiveOutcome> {
    match error.kind() {
        ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout => {
            Some(PassiveOutcome::ConnectFailure)
        }
        ErrorKind::UpstreamTimeout | ErrorKind::UpstreamProtocol => {
            Some(PassiveOutcome::LocalGateway)
        }
        _ => None,
    }
}

/// Reports how one upstream exchange with endpoint `index` of `cluster` went: to its balancer
/// (`rtt` and the outcome), to passive health, and to the endpoint's own counters (latency
/// average, errors by reason). Only the endpoint's own behaviour is held
/// against it: a client whose body broke, or a local limit, says nothing about the endpoint.
pub(crate) fn report(
    cluster: &crate::Cluster,
    index: usize,
    result: &Result<crate::upstream::UpstreamResponse, Error>,
    rtt: std::time::Duration,
) {
    let observed = match result {
        Ok(up) => Some(of_response(up.response.status(), up.response.headers())),
        Err(e) if e.side() == weir_core::Side::Upstream => Some(Outcome::Failure),
        Err(_) => None,
    };
    if let Some(outcome) = observed {
        cluster.observe(index, &weir_balance::Observation { rtt, outcome });
    }
    match result {
        Ok(up) => {
            let status = up.response.status().as_u16();
            cluster.record_response(index, rtt, PassiveOutcome::of_status(status));
        }
        Err(e) => {
            if let Some(reason) = EndpointError::of(e) {
                cluster.record_error(index, reason);
            }
            if let Some(passive) = passive_of_error(e) {
                cluster.record_outcome(index, passive);
            }
        }
    }
}

/// `Retry-After` as a delay: delta-seconds or an HTTP-date relative to `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry.parse().unwrap());
        h
    }

    #[test]
    fn classifies_statuses() {
        let none = HeaderMap::new();
        assert_eq!(of_response(StatusCode::OK, &none), Outcome::Success);
        assert_eq!(of_response(StatusCode::NOT_FOUND, &none), Outcome::Success);
        assert_eq!(
            of_response(StatusCode::BAD_GATEWAY, &none),
            Outcome::Failure
        );
        assert_eq!(
            of_response(StatusCode::TOO_MANY_REQUESTS, &headers("7")),
            Outcome::Overloaded {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            of_response(StatusCode::SERVICE_UNAVAILABLE, &none),
            Outcome::Overloaded { retry_after: None }
        );
    }

    #[test]
    fn only_the_endpoints_own_failures_count_against_it() {
        let e = |kind| Error::new(kind, "x");
        assert_eq!(
            passive_of_error(&e(ErrorKind::ConnectTimeout)),
            Some(PassiveOutcome::ConnectFailure)
        );
        assert_eq!(
            passive_of_error(&e(ErrorKind::UpstreamProtocol)),
            Some(PassiveOutcome::LocalGateway)
        );
        assert_eq!(passive_of_error(&e(ErrorKind::Overloaded)), None);
        assert_eq!(passive_of_error(&e(ErrorKind::DownstreamProtocol)), None);
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h = headers("Sun, 06 Nov 1994 08:50:07 GMT");
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
    }
}
