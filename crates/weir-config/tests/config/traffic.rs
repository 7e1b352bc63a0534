//! `mirror` and `fault` on routes: defaults, both share spellings, and each rule's error with
//! its YAML path, line and hint.

use std::time::Duration;

use crate::common::{assert_error, load_err, load_ok, with_route};
use weir_config::{DEFAULT_MIRROR_MAX_BODY_BYTES, StringMatchConfig};

#[test]
fn mirror_defaults_and_both_share_spellings() {
    let cfg = load_ok(&with_route(&[
        "      - cluster: api",
        "        mirror: { cluster: web }",
        "      - cluster: api",
        "        mirror:",
        "          cluster: web",
        "          fraction: 0.25",
        "          headers: { x-mirror: \"1\" }",
        "          max_body_bytes: 1024",
        "          compare_status: true",
        "          timeout: 2s",
        "      - cluster: api",
        "        mirror: { cluster: web, percent: 12.5 }",
    ]));
    let routes = &cfg.config().listeners[0].routes;
    let plain = routes[0].mirror.as_ref().unwrap();
    assert_eq!(plain.cluster, "web");
    assert_eq!(plain.share(), 1.0, "no share means every request");
    assert_eq!(plain.max_body_bytes, DEFAULT_MIRROR_MAX_BODY_BYTES);
    assert_eq!(plain.max_body_bytes, 65536);
    assert!(!plain.compare_status && plain.headers.is_empty());
    assert_eq!(plain.timeout.get(), Duration::from_secs(10));

    let full = routes[1].mirror.as_ref().unwrap();
    assert_eq!(full.share(), 0.25);
    assert_eq!(full.max_body_bytes, 1024);
    assert!(full.compare_status);
    assert_eq!(full.timeout.get(), Duration::from_secs(2));
    assert_eq!(
        full.headers.get("x-mirror"),
        Some(&StringMatchConfig::Exact("1".into()))
    );
    assert_eq!(routes[2].mirror.as_ref().unwrap().share(), 0.125);
}

#[test]
fn fault_defaults_and_full_form() {
    let cfg = load_ok(&with_route(&[
        "      - cluster: api",
        "        fault:",
        "          delay: { fixed: 100ms, percent: 10 }",
        "          abort: { status: 503, percent: 2.5 }",
        "          headers: { x-weir-fault: { present: true } }",
        "      - cluster: api",
        "        fault: { abort: { status: 429 } }",
    ]));
    let routes = &cfg.config().listeners[0].routes;
    let f = routes[0].fault.as_ref().unwrap();
    let delay = f.delay.as_ref().unwrap();
    assert_eq!(delay.fixed.get(), Duration::from_millis(100));
    assert_eq!(delay.percent.get(), 10.0);
    let abort = f.abort.as_ref().unwrap();
    assert_eq!((abort.status, abort.percent.get()), (503, 2.5));
    assert!(f.headers.contains_key("x-weir-fault"));
    let bare = routes[1].fault.as_ref().unwrap();
    assert_eq!(
        bare.abort.as_ref().unwrap().percent.get(),
        100.0,
        "percent defaults to every request"
    );
    assert!(bare.delay.is_none());
}

#[test]
fn mirror_to_an_unknown_cluster() {
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror:",
            "          cluster: shadow",
        ]),
        "listeners[0].routes[0].mirror.cluster",
        8,
        "unknown cluster \"shadow\"",
        "defined clusters: api, web",
    );
}

#[test]
fn mirror_shares_must_be_in_range_and_single() {
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror: { cluster: web, fraction: 1.5 }",
        ]),
        "listeners[0].routes[0].mirror.fraction",
        7,
        "fraction 1.5 is outside 0.0–1.0",
        "e.g. 0.1 for one request in ten",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror:",
            "          cluster: web",
            "          fraction: -0.1",
        ]),
        "listeners[0].routes[0].mirror.fraction",
        9,
        "fraction -0.1 is outside",
        "share of requests",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror:",
            "          cluster: web",
            "          percent: 101",
        ]),
        "listeners[0].routes[0].mirror.percent",
        9,
        "percent 101 is outside 0–100",
        "in percent",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror:",
            "          cluster: web",
            "          fraction: 0.1",
            "          percent: 10",
        ]),
        "listeners[0].routes[0].mirror.percent",
        10,
        "both fraction and percent",
        "give one of them",
    );
}

#[test]
fn mirror_needs_a_forwarding_route_and_a_positive_timeout() {
    assert_error(
        &with_route(&[
            "      - direct_response: { status: 200 }",
            "        mirror: { cluster: web }",
        ]),
        "listeners[0].routes[0].mirror",
        7,
        "route that answers by itself",
        "`cluster` or `weighted_clusters`",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror: { cluster: web, timeout: 0 }",
        ]),
        "listeners[0].routes[0].mirror.timeout",
        7,
        "mirror timeout is 0",
        "positive duration",
    );
}

#[test]
fn header_conditions_are_checked_like_route_matches() {
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        mirror:",
            "          cluster: web",
            "          headers:",
            "            X-Mirror: \"1\"",
        ]),
        "listeners[0].routes[0].mirror.headers.X-Mirror",
        10,
        "header name \"X-Mirror\" is not lower case",
        "write x-mirror",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          abort: { status: 503 }",
            "          headers:",
            "            \"x fault\": { present: true }",
        ]),
        "listeners[0].routes[0].fault.headers.x fault",
        10,
        "\"x fault\" is not a valid header name",
        "lowercase letters",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          abort: { status: 503 }",
            "          headers: { x-fault: { regex: \"(\" } }",
        ]),
        "listeners[0].routes[0].fault.headers.x-fault.regex",
        9,
        "invalid regex",
        "Rust regex syntax",
    );
}

#[test]
fn fault_rules() {
    assert_error(
        &with_route(&["      - cluster: api", "        fault: {}"]),
        "listeners[0].routes[0].fault",
        7,
        "fault has neither delay nor abort",
        "abort: { status: 503",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          abort: { status: 700, percent: 10 }",
        ]),
        "listeners[0].routes[0].fault.abort.status",
        8,
        "abort status 700 is out of range",
        "200 to 599",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          abort: { status: 503, percent: 150 }",
        ]),
        "listeners[0].routes[0].fault.abort.percent",
        8,
        "percent 150 is outside 0–100",
        "in percent",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          delay:",
            "            fixed: 0",
        ]),
        "listeners[0].routes[0].fault.delay.fixed",
        9,
        "fault delay is 0",
        "positive duration",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        fault:",
            "          delay: { fixed: 10ms, percent: 100.5 }",
        ]),
        "listeners[0].routes[0].fault.delay.percent",
        8,
        "percent 100.5 is outside 0–100",
        "in percent",
    );
}

#[test]
fn misspelt_and_mistyped_keys_name_their_place() {
    let e = load_err(&with_route(&[
        "      - cluster: api",
        "        mirror: { cluster: web, fration: 0.1 }",
    ]));
    assert_eq!(e.path, "listeners[0].routes[0].mirror.fration");
    assert_eq!(e.line, Some(7));
    assert!(e.to_string().contains("did you mean `fraction`"), "{e}");
    let e = load_err(&with_route(&[
        "      - cluster: api",
        "        fault:",
        "          delay: { fixed: 100ms, percent: lots }",
    ]));
    assert_eq!(e.path, "listeners[0].routes[0].fault.delay.percent");
    assert_eq!(e.line, Some(8));
}
