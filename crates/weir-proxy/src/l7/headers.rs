//! Header hygiene for forwarded messages: hop-by-hop removal and forwarding headers.
//!
//! RFC 9110 §7.6.1: a proxy must remove the `Connection` header, every header it names, and the
//! hop-by-hop fields (`Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`)
//! before forwarding. Two exceptions keep protocols working end to end: `TE: trailers` (gRPC
//! needs it over HTTP/2) and, for a WebSocket upgrade we are proxying, `Connection: upgrade` +
//! `Upgrade`. Other upgrade tokens (notably `h2c`, whose 101 would hand the client a raw tunnel
//! past every route: "h2c smuggling") are stripped. A message that came with both
//! `Transfer-Encoding` and `Content-Length` loses the latter (RFC 9112 §6.3): the length it
//! claims is not the length of the body we forward.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes hop-by-hop headers; with `upgrade`, re-adds `connection: upgrade` and keeps `upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these: one pass over the names (comparisons, no hashing)
    // spares the removals, each of which hashes and probes.
    let hop_by_hop = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::TE
            || name == header::UPGRADE
            || name == PROXY_CONNECTION
            || name == KEEP_ALIVE
    };
    if !upgrade && !headers.keys().any(hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) && name != header::TE {
            headers.remove(&name);
        }
    }
    headers.remove(header::CONNECTION);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&KEEP_ALIVE);
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
    let keep_te = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !keep_te {
        headers.remove(header::TE);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether an HTTP/1.1 request asks to switch to WebSocket, the one upgrade weir proxies.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
    websocket
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Appends the client address to `x-forwarded-for` (keeping every earlier hop, from every
/// field line) and sets `x-forwarded-proto`.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: &HeaderValue, proto: &'static str) {
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    // The common case, a client talking to us directly: the value is the client's alone, and
    // shared (no copy, no allocation).
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        return;
    }
    let Ok(client) = client.to_str() else {
        return;
    };
    let mut hops: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    hops.push(client);
    let value = hops.join(", ");
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// Joins several `cookie` fields into one (RFC 9113 §8.2.3): HTTP/2 clients send one field per
/// cookie, and HTTP/1.1 servers expect a single `Cookie` line.
pub(crate) fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Appends our `via` entry.
pub(crate) fn add_via(headers: &mut HeaderMap, value: &HeaderValue) {
    headers.append(header::VIA, value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("x-secret", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_others_are_untouched() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ] {
            let mut h = map(&[(name, "x"), ("x-kept", "1"), ("content-length", "3")]);
            strip_hop_by_hop(&mut h, false);
            assert!(h.get(name).is_none(), "{name} was kept");
            assert_eq!(h.get("x-kept").unwrap(), "1", "{name}");
        }
        let mut h = map(&[("x-kept", "1"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("content-length").unwrap(), "3");
    }

    #[test]
    fn forwarded_for_of_a_direct_client_is_its_address() {
        let mut h = map(&[("x-forwarded-proto", "gopher")]);
        add_forwarded(&mut h, &HeaderValue::from_static("192.0.2.7"), "https");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get_all("x-forwarded-proto").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_when_proxying_one() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("upgrade").unwrap(), "WebSocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn h2c_upgrades_are_stripped_and_length_yields_to_chunking() {
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(!is_upgrade_request(&h), "only websocket is proxied");
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        let mut h = map(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("content-length").is_none());
    }

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2");
    }

    #[test]
    fn forwarded_for_keeps_every_line() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
        ]);
        add_forwarded(&mut h, &HeaderValue::from_static("127.0.0.1"), "http");
        assert_eq!(
            h.get("x-forwarded-for").unwrap(),
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"
        );
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarded(&mut h, &HeaderValue::from_static("127.0.0.1"), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &HeaderValue::from_static("::1"), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "::1");
    }
}
