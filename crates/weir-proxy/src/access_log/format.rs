//! One record as one JSON line, in the configured field order.
//!
//! A field that does not apply to a record's kind (`method` on an L4 connection, `end` on an
//! HTTP request) is left out; one that applies but is unknown (the endpoint of a request no
//! endpoint answered) is `null`, so every line of a kind has the same keys.

use std::fmt::Display;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use weir_config::AccessLogField;

use super::{HttpRecord, Record, TcpEnd, TcpRecord, UdpRecord};

/// Appends `record` as a JSON object and a newline to `out`.
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    record: &Record,
    fields: &[AccessLogField],
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::new(&mut *out);
    let mut map = ser.serialize_map(None)?;
    for &field in fields {
        let key = field.name();
        match record {
            Record::Http(r) => http_field(&mut map, key, field, r)?,
            Record::Tcp(r) => tcp_field(&mut map, key, field, r)?,
            Record::Udp(r) => udp_field(&mut map, key, field, r)?,
        }
    }
    map.end()?;
    out.push(b'\n');
    Ok(())
}

fn http_field<M: SerializeMap>(
    map: &mut M,
    key: &str,
    field: AccessLogField,
    r: &HttpRecord,
) -> Result<(), M::Error> {
    use AccessLogField::*;
    match field {
        Time => map.serialize_entry(key, &Shown(Rfc3339(r.time))),
        Kind => map.serialize_entry(key, "http"),
        Listener => map.serialize_entry(key, &*r.listener),
        Route => map.serialize_entry(key, &r.route),
        Cluster => map.serialize_entry(key, &r.cluster.as_deref()),
        Endpoint => map.serialize_entry(key, &r.endpoint.map(Shown)),
        Method => map.serialize_entry(key, r.method.as_str()),
        Authority => {
            let authority = match r.uri.authority() {
                Some(a) => Some(a.as_str()),
                None => r.host.as_ref().and_then(|h| h.to_str().ok()),
            };
            map.serialize_entry(key, &authority)
        }
        Path => {
            let path = r.uri.path_and_query().map_or("/", |p| p.as_str());
            map.serialize_entry(key, path)
        }
        Status => map.serialize_entry(key, &r.status),
        BytesIn => map.serialize_entry(key, &r.bytes_in),
        BytesOut => map.serialize_entry(key, &r.bytes_out),
        DurationMs => map.serialize_entry(key, &millis(r.duration)),
        UpstreamDurationMs => map.serialize_entry(key, &r.upstream_duration.map(millis)),
        Retries => map.serialize_entry(key, &r.attempts.saturating_sub(1)),
        TraceId => map.serialize_entry(key, &r.trace_id.map(|id| Shown(Hex(id)))),
        Client => map.serialize_entry(key, &Shown(r.client)),
        End | DatagramsIn | DatagramsOut => Ok(()),
    }
}

fn tcp_field<M: SerializeMap>(
    map: &mut M,
    key: &str,
    field: AccessLogField,
    r: &TcpRecord,
) -> Result<(), M::Error> {
    use AccessLogField::*;
    match field {
        Time => map.serialize_entry(key, &Shown(Rfc3339(r.time))),
        Kind => map.serialize_entry(key, "tcp"),
        Listener => map.serialize_entry(key, &*r.listener),
        Cluster => map.serialize_entry(key, &r.cluster.as_deref()),
        Endpoint => map.serialize_entry(key, &r.endpoint.map(Shown)),
        BytesIn => map.serialize_entry(key, &r.bytes_in),
        BytesOut => map.serialize_entry(key, &r.bytes_out),
        DurationMs => map.serialize_entry(key, &millis(r.duration)),
        Client => map.serialize_entry(key, &Shown(r.client)),
        End => match r.end {
            TcpEnd::Reason(reason) => map.serialize_entry(key, reason),
            TcpEnd::Error(kind) => map.serialize_entry(key, &snake_case(&format!("{kind:?}"))),
        },
        Route | Method | Authority | Path | Status | UpstreamDurationMs | Retries | TraceId
        | DatagramsIn | DatagramsOut => Ok(()),
    }
}

fn udp_field<M: SerializeMap>(
    map: &mut M,
    key: &str,
    field: AccessLogField,
    r: &UdpRecord,
) -> Result<(), M::Error> {
    use AccessLogField::*;
    match field {
        Time => map.serialize_entry(key, &Shown(Rfc3339(r.time))),
        Kind => map.serialize_entry(key, "udp"),
        Listener => map.serialize_entry(key, &*r.listener),
        Cluster => map.serialize_entry(key, &*r.cluster),
        Endpoint => map.serialize_entry(key, &Shown(r.endpoint)),
        BytesIn => map.serialize_entry(key, &r.bytes_in),
        BytesOut => map.serialize_entry(key, &r.bytes_out),
        DatagramsIn => map.serialize_entry(key, &r.datagrams_in),
        DatagramsOut => map.serialize_entry(key, &r.datagrams_out),
        DurationMs => map.serialize_entry(key, &millis(r.duration)),
        Client => map.serialize_entry(key, &Shown(r.client)),
        End => map.serialize_entry(key, r.end),
        Route | Method | Authority | Path | Status | UpstreamDurationMs | Retries | TraceId => {
            Ok(())
        }
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `NoHealthyEndpoint` → `no_healthy_endpoint`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Serializes any `Display` as a JSON string without an intermediate `String`.
struct Shown<T>(T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A trace id as 32 lowercase hex digits.
struct Hex([u8; 16]);

impl Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A wall-clock time as RFC 3339 in UTC with microseconds, e.g.
/// `2026-05-15T09:30:00.250000Z`; times before the unix epoch print as the epoch.
pub(crate) struct Rfc3339(pub(crate) SystemTime);

impl Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = weir_core::civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_micros()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        let at = |secs: u64, micros: u64| {
            Rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
                .to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29 (a leap day) 12:34:56.789012.
        assert_eq!(at(1_709_210_096, 789_012), "2024-02-29T12:34:56.789012Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
    }

    #[test]
    fn error_kinds_print_in_snake_case() {
        assert_eq!(snake_case("NoHealthyEndpoint"), "no_healthy_endpoint");
        assert_eq!(snake_case("Internal"), "internal");
    }
}
