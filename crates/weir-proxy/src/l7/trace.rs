//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): continue the caller's trace or
//! start one.
//!
//! A request with one valid `traceparent` keeps its trace id and sampled flag; weir is a new
//! span in it, so the `traceparent` sent upstream carries weir's own span id as the parent id
//! (when the request is sampled and spans are exported, each upstream attempt's own client
//! span id instead: `otlp::client`), and `tracestate` passes through untouched. A request without one (or with an invalid one,
//! or several) starts a new trace: random 16-byte trace id, random 8-byte span id, the sampled
//! flag set for the configured share of requests; a `tracestate` that came with it belongs to
//! another trace and is removed. Parsing is strict: lowercase hex only, ids not all zero,
//! version `ff` invalid; a higher (future) version is read as version `00` if its first 55
//! characters have that form and anything after them starts with `-`. What weir sends is
//! always version `00`.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::access_log::HttpEntry;
use crate::otlp::SpanIds;

/// `traceparent`.
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The fields of a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: [u8; 16],
    pub(crate) parent_id: [u8; 8],
    pub(crate) sampled: bool,
}

/// Parses one `traceparent` value; `None` when it is not valid.
pub(crate) fn parse(value: &[u8]) -> Option<TraceParent> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may append fields after a `-`.
    if (version == 0 && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// The trace of a request's headers when it has exactly one valid `traceparent`.
pub(crate) fn incoming(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(first.as_bytes())
}

/// Continues the request's trace or starts one (sampled with probability `sampling`), and sets
/// the `traceparent` the endpoint gets, with a new span id for weir. Returns the trace id.
#[cfg(test)]
pub(crate) fn propagate(headers: &mut HeaderMap, sampling: f64) -> [u8; 16] {
    propagate_span(headers, sampling).trace_id
}

/// [`propagate`], returning weir's span: its ids, the caller's span when continued, and
/// whether it is sampled.
pub(crate) fn propagate_span(headers: &mut HeaderMap, sampling: f64) -> SpanIds {
    let (trace_id, parent_id, sampled) = match incoming(headers) {
        Some(parent) => (parent.trace_id, Some(parent.parent_id), parent.sampled),
        None => {
            headers.remove(&TRACESTATE);
            let sampled = rand::random::<f64>() < sampling;
            (nonzero(rand::random), None, sampled)
        }
    };
    let span_id = new_span_id();
    headers.insert(&TRACEPARENT, format(trace_id, span_id, sampled));
    SpanIds {
        trace_id,
        span_id,
        parent_id,
        sampled,
    }
}

/// Trace context for one request: with `sampling` (propagation on) the trace is continued or
/// started and the headers rewritten; without it the headers are left alone. Either way the
/// entry, if any, gets the trace id (and weir's span, for export); `log` is handed back for the
/// rest of the request.
pub(crate) fn on_request<'a>(
    headers: &mut HeaderMap,
    sampling: Option<f64>,
    mut log: Option<&'a mut HttpEntry>,
) -> Option<&'a mut HttpEntry> {
    let id = match sampling {
        Some(sampling) => {
            let span = propagate_span(headers, sampling);
            if let Some(log) = log.as_deref_mut() {
                log.set_span(span);
            }
            Some(span.trace_id)
        }
        None if log.is_some() => incoming(headers).map(|t| t.trace_id),
        None => None,
    };
    if let Some(log) = log.as_deref_mut() {
        log.set_trace_id(id);
    }
    log
}

/// A version-00 `traceparent` value.
pub(crate) fn format(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let hex = |out: &mut [u8], bytes: &[u8]| {
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
    };
    hex(&mut out[3..35], &trace_id);
    hex(&mut out[36..52], &span_id);
    out[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    // Only ASCII hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A random span id (never all zeros).
pub(crate) fn new_span_id() -> [u8; 8] {
    nonzero(rand::random)
}

/// Draws from `random` until the value is not all zeros (an all-zero id is invalid).
fn nonzero<const N: usize>(random: impl Fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id != [0; N] {
            return id;
        }
    }
}

/// Two lowercase hex digits as a byte.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let p = parse(VALID.as_bytes()).unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.trace_id[15], 0x36);
        assert_eq!(
            p.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(p.sampled);
        let unsampled = VALID.replace("-01", "-00");
        assert!(!parse(unsampled.as_bytes()).unwrap().sampled);
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let bad = [
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            // All-zero trace id, all-zero parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, a non-hex version.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 with extra data, too short, wrong separators.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            // Non-hex flags.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            // A future version with data not separated by a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "",
        ];
        for value in bad {
            assert_eq!(parse(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn future_versions_are_read_as_version_00() {
        let longer =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let p = parse(longer.as_bytes()).unwrap();
        assert_eq!(Some(p), parse(VALID.as_bytes()));
        let same_length = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(same_length.as_bytes()), parse(VALID.as_bytes()));
    }

    #[test]
    fn formats_what_it_parses() {
        let p = parse(VALID.as_bytes()).unwrap();
        let v = format(p.trace_id, p.parent_id, p.sampled);
        assert_eq!(v.to_str().unwrap(), VALID);
        let v = format(p.trace_id, p.parent_id, false);
        assert!(v.to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn continues_a_trace_with_a_new_span() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let id = propagate(&mut headers, 0.0);
        let sent = parse(headers[&TRACEPARENT].as_bytes()).unwrap();
        let incoming = parse(VALID.as_bytes()).unwrap();
        assert_eq!(id, incoming.trace_id);
        assert_eq!(sent.trace_id, incoming.trace_id);
        assert_ne!(sent.parent_id, incoming.parent_id, "weir's own span");
        assert!(
            sent.sampled,
            "the caller's decision stands, whatever the ratio"
        );
        assert_eq!(headers[&TRACESTATE], "congo=t61rcWkgMzE");
    }

    #[test]
    fn starts_a_trace_when_absent_or_invalid() {
        for incoming in [None, Some("00-xyz"), Some(VALID)] {
            let mut headers = HeaderMap::new();
            if let Some(v) = incoming {
                headers.append(&TRACEPARENT, HeaderValue::from_static(v));
            }
            if incoming == Some(VALID) {
                // Two traceparent headers are invalid too.
                headers.append(&TRACEPARENT, HeaderValue::from_static(VALID));
            }
            headers.insert(&TRACESTATE, HeaderValue::from_static("other=1"));
            let id = propagate(&mut headers, 1.0);
            assert_eq!(headers.get_all(&TRACEPARENT).iter().count(), 1);
            let sent = parse(headers[&TRACEPARENT].as_bytes()).unwrap();
            assert_eq!(sent.trace_id, id);
            assert_ne!(id, parse(VALID.as_bytes()).unwrap().trace_id);
            assert!(sent.sampled, "sampling 1.0");
            assert!(
                headers.get(&TRACESTATE).is_none(),
                "belonged to another trace"
            );
        }
    }

    #[test]
    fn the_sampling_ratio_sets_the_flag_on_new_traces() {
        let sampled = (0..2000)
            .filter(|_| {
                let mut headers = HeaderMap::new();
                propagate(&mut headers, 0.1);
                parse(headers[&TRACEPARENT].as_bytes()).unwrap().sampled
            })
            .count();
        assert!(
            (100..=300).contains(&sampled),
            "about 10 % of 2000: {sampled}"
        );
        let mut headers = HeaderMap::new();
        propagate(&mut headers, 0.0);
        assert!(!parse(headers[&TRACEPARENT].as_bytes()).unwrap().sampled);
    }
}
