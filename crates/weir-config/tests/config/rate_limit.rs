//! Rate limit config: the schema loads with its defaults, and every bad value is reported with
//! its YAML path, line and a hint.

use std::time::Duration;

use crate::common::{assert_error, load_ok};
use weir_config::{FailureMode, RateLimitKeyPart};

/// A listener with one rate-limited route (lines 7 onwards are the `rate_limit` block), with a
/// rate limit service on line 1.
fn with_limit(block: &[&'static str]) -> Vec<&'static str> {
    let mut lines = vec![
        "rate_limit_service: { redis: 127.0.0.1:6379 }",
        "clusters: [ { name: api } ]",
        "listeners:",
        "  - name: public",
        "    address: 127.0.0.1:8080",
        "    routes:",
        "      - cluster: api",
    ];
    lines.extend_from_slice(block);
    lines
}

#[test]
fn full_schema_loads_with_defaults() {
    let config = load_ok(&[
        "rate_limit_service:",
        "  redis: 127.0.0.1:6379",
        "  sync_interval: 20ms",
        "clusters: [ { name: api } ]",
        "listeners:",
        "  - name: public",
        "    address: 127.0.0.1:8080",
        "    routes:",
        "      - cluster: api",
        "        rate_limit:",
        "          key: [client_address, \"header:x-api-key\"]",
        "          local: { requests_per_second: 100, burst: 10 }",
        "          global: { requests_per_second: 1000, failure_mode: closed }",
        "      - cluster: api",
        "        rate_limit: { local: { requests_per_second: 5 } }",
        "  - name: tcp",
        "    address: 127.0.0.1:8081",
        "    protocol: tcp",
        "    cluster: api",
        "    rate_limit: { connections_per_second: 50 }",
    ]);
    let cfg = config.config();
    let service = cfg.rate_limit_service.as_ref().unwrap();
    assert_eq!(service.sync_interval.get(), Duration::from_millis(20));
    assert_eq!(service.timeout.get(), Duration::from_millis(100), "default");
    let routes = &cfg.listeners[0].routes;
    let first = routes[0].rate_limit.as_ref().unwrap();
    let parts: Vec<_> = first
        .key
        .iter()
        .map(|k| RateLimitKeyPart::parse(k).unwrap())
        .collect();
    assert_eq!(
        parts,
        [
            RateLimitKeyPart::ClientAddress,
            RateLimitKeyPart::Header("x-api-key".into())
        ]
    );
    let local = first.local.as_ref().unwrap();
    assert_eq!((local.requests_per_second, local.burst()), (100, 10));
    assert_eq!(local.max_keys, 100_000, "default");
    let global = first.global.as_ref().unwrap();
    assert_eq!(global.failure_mode, FailureMode::Closed);
    let second = routes[1].rate_limit.as_ref().unwrap();
    assert_eq!(second.key, ["client_address"], "default key");
    assert_eq!(
        second.local.as_ref().unwrap().burst(),
        5,
        "burst defaults to the rate"
    );
    assert!(second.global.is_none());
    let tcp = cfg.listeners[1].rate_limit.as_ref().unwrap();
    assert_eq!((tcp.connections_per_second, tcp.burst()), (50, 50));
}

#[test]
fn key_may_be_one_string() {
    let config = load_ok(&with_limit(&[
        "        rate_limit: { key: route, local: { requests_per_second: 1 } }",
    ]));
    let limit = config.config().listeners[0].routes[0]
        .rate_limit
        .clone()
        .unwrap();
    assert_eq!(limit.key, ["route"]);
}

#[test]
fn zero_requests_per_second() {
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          local: { requests_per_second: 0 }",
        ]),
        "listeners[0].routes[0].rate_limit.local.requests_per_second",
        9,
        "requests_per_second is 0",
        "give a positive number",
    );
}

#[test]
fn zero_burst_and_zero_global_rate() {
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          local:",
            "            requests_per_second: 10",
            "            burst: 0",
        ]),
        "listeners[0].routes[0].rate_limit.local.burst",
        11,
        "burst is 0",
        "give a positive number",
    );
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          global: { requests_per_second: 0 }",
        ]),
        "listeners[0].routes[0].rate_limit.global.requests_per_second",
        9,
        "requests_per_second is 0",
        "positive",
    );
}

#[test]
fn unknown_key_kind() {
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          key: [client_address, \"cookie:session\"]",
            "          local: { requests_per_second: 10 }",
        ]),
        "listeners[0].routes[0].rate_limit.key[1]",
        9,
        "unknown rate limit key \"cookie:session\"",
        "client_address, route, header:<name>",
    );
}

#[test]
fn bad_header_name_in_key() {
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          key:",
            "            - \"header:X-Api-Key\"",
            "          local: { requests_per_second: 10 }",
        ]),
        "listeners[0].routes[0].rate_limit.key[0]",
        10,
        "header name \"X-Api-Key\" is not lower case",
        "write x-api-key",
    );
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          key: \"header:x api\"",
            "          local: { requests_per_second: 10 }",
        ]),
        "listeners[0].routes[0].rate_limit.key[0]",
        9,
        "is not a valid header name",
        "header names are lowercase",
    );
}

#[test]
fn global_limit_without_service() {
    let mut lines = with_limit(&[
        "        rate_limit:",
        "          global: { requests_per_second: 100 }",
    ]);
    lines[0] = "admin: { address: 127.0.0.1:9901 }";
    assert_error(
        &lines,
        "listeners[0].routes[0].rate_limit.global",
        9,
        "a global rate limit needs a `rate_limit_service`",
        "rate_limit_service: { redis: 127.0.0.1:6379 }",
    );
}

#[test]
fn limit_without_local_or_global() {
    assert_error(
        &with_limit(&["        rate_limit: { key: route }"]),
        "listeners[0].routes[0].rate_limit",
        8,
        "neither `local` nor `global`",
        "requests_per_second",
    );
}

#[test]
fn service_with_zero_sync_interval() {
    let mut lines = with_limit(&["        rate_limit: { local: { requests_per_second: 1 } }"]);
    lines[0] = "rate_limit_service: { redis: 127.0.0.1:6379, sync_interval: 0 }";
    assert_error(
        &lines,
        "rate_limit_service.sync_interval",
        1,
        "sync_interval is 0",
        "positive duration",
    );
}

#[test]
fn unknown_failure_mode() {
    assert_error(
        &with_limit(&[
            "        rate_limit:",
            "          global: { requests_per_second: 5, failure_mode: deny }",
        ]),
        "listeners[0].routes[0].rate_limit.global.failure_mode",
        9,
        "unknown value `deny`",
        "open, closed",
    );
}

#[test]
fn listener_connection_limits() {
    assert_error(
        &[
            "clusters: [ { name: api } ]",
            "listeners:",
            "  - name: tcp",
            "    address: 127.0.0.1:8081",
            "    protocol: tcp",
            "    cluster: api",
            "    rate_limit: { connections_per_second: 0 }",
        ],
        "listeners[0].rate_limit.connections_per_second",
        7,
        "connections_per_second is 0",
        "positive",
    );
    assert_error(
        &[
            "clusters: [ { name: api } ]",
            "listeners:",
            "  - name: web",
            "    address: 127.0.0.1:8081",
            "    rate_limit: { connections_per_second: 10 }",
        ],
        "listeners[0].rate_limit",
        5,
        "applies to `tcp` and `tls_passthrough` listeners only",
        "routes[].rate_limit",
    );
}
