//! `health_check`, `outlier_detection` and the admin token: defaults, every probe kind, status
//! ranges, and each rule's error with its YAML path, line and hint.

use std::time::Duration;

use crate::common::{assert_error, load_err, load_ok};
use weir_config::{ProbeKind, StatusRange};

fn cluster<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut lines = vec![
        "clusters:",
        "  - name: api",
        "    endpoints: [ 127.0.0.1:9001 ]",
    ];
    lines.extend_from_slice(extra);
    lines
}

#[test]
fn defaults_follow_envoy_and_haproxy() {
    let cfg = load_ok(&cluster(&[
        "    health_check: { http: {} }",
        "    outlier_detection: {}",
    ]));
    let c = &cfg.config().clusters[0];
    let hc = c.health_check.as_ref().unwrap();
    assert_eq!(hc.interval.get(), Duration::from_secs(5));
    assert_eq!(hc.unhealthy_interval(), Duration::from_secs(5));
    assert_eq!(hc.timeout.get(), Duration::from_secs(1));
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
    assert!(!hc.skip_when_traffic_healthy && !hc.start_healthy);
    let Some(ProbeKind::Http(http)) = hc.probe() else {
        panic!("an http probe")
    };
    assert_eq!(
        (http.path.as_str(), http.method.as_str()),
        ("/healthz", "GET")
    );
    assert!(http.expects(200) && http.expects(399) && !http.expects(404));
    let od = c.outlier_detection.as_ref().unwrap();
    assert_eq!(
        (
            od.consecutive_5xx,
            od.consecutive_gateway_errors,
            od.consecutive_connect_failures
        ),
        (5, 0, 5)
    );
    assert_eq!(od.max_ejection_percent, 50);
    assert_eq!(od.base_ejection_time.get(), Duration::from_secs(30));
}

#[test]
fn every_probe_kind_and_status_ranges_load() {
    let cfg = load_ok(&cluster(&[
        "    health_check:",
        "      interval: 2s",
        "      unhealthy_interval: 10s",
        "      http: { path: /ready, method: HEAD, host: api.internal, expected_statuses: [204, \"300-302\"], body_contains: ok }",
    ]));
    let hc = cfg.config().clusters[0].health_check.as_ref().unwrap();
    assert_eq!(hc.unhealthy_interval(), Duration::from_secs(10));
    let Some(ProbeKind::Http(http)) = hc.probe() else {
        panic!("an http probe")
    };
    assert_eq!(
        http.expected_statuses,
        vec![
            StatusRange {
                start: 204,
                end: 204
            },
            StatusRange {
                start: 300,
                end: 302
            }
        ]
    );
    for (block, kind) in [
        ("tcp: { send: \"PING\\r\\n\", expect: \"+PONG\" }", "tcp"),
        ("grpc: { service: echo }", "grpc"),
        ("udp: { send: ping, expect: pong }", "udp"),
    ] {
        let line = format!("    health_check: {{ {block} }}");
        let cfg = load_ok(&cluster(&[line.as_str()]));
        let probe = cfg.config().clusters[0]
            .health_check
            .as_ref()
            .unwrap()
            .probe();
        let name = match probe {
            Some(ProbeKind::Tcp(t)) => {
                assert_eq!(t.send.as_deref(), Some("PING\r\n"));
                "tcp"
            }
            Some(ProbeKind::Grpc(g)) => {
                assert_eq!(g.service, "echo");
                "grpc"
            }
            Some(ProbeKind::Udp(u)) => {
                assert_eq!(u.expect.as_deref(), Some("pong"));
                "udp"
            }
            other => panic!("unexpected probe {other:?}"),
        };
        assert_eq!(name, kind);
    }
}

#[test]
fn bad_status_ranges_name_the_entry() {
    for (range, message) in [
        ("\"299-200\"", "runs backwards"),
        ("600", "is not an HTTP status"),
        ("\"2xx\"", "is not an HTTP status"),
    ] {
        let line = format!("    health_check: {{ http: {{ expected_statuses: [200, {range}] }} }}");
        let e = load_err(&cluster(&[line.as_str()]));
        assert_eq!(
            e.path, "clusters[0].health_check.http.expected_statuses[1]",
            "{e}"
        );
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn every_health_rule_names_path_line_and_fix() {
    type Case = (
        Vec<&'static str>,
        &'static str,
        usize,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            cluster(&["    health_check: { interval: 1s }"]),
            "clusters[0].health_check",
            4,
            "names no probe",
            "add one of `http: {}`",
        ),
        (
            cluster(&["    health_check:", "      http: {}", "      tcp: {}"]),
            "clusters[0].health_check.tcp",
            6,
            "several probes (http, tcp)",
            "keep exactly one",
        ),
        (
            cluster(&["    health_check:", "      tcp: {}", "      timeout: 0s"]),
            "clusters[0].health_check.timeout",
            6,
            "timeout is 0",
            "positive duration",
        ),
        (
            cluster(&[
                "    health_check:",
                "      tcp: {}",
                "      unhealthy_threshold: 0",
            ]),
            "clusters[0].health_check.unhealthy_threshold",
            6,
            "could never change",
            "at least 1",
        ),
        (
            cluster(&["    health_check:", "      http: { path: healthz }"]),
            "clusters[0].health_check.http.path",
            5,
            "does not start with /",
            "/healthz",
        ),
        (
            cluster(&["    health_check:", "      http: { method: \"GE T\" }"]),
            "clusters[0].health_check.http.method",
            5,
            "is not an HTTP method",
            "GET or HEAD",
        ),
        (
            cluster(&["    health_check:", "      http: { expected_statuses: [] }"]),
            "clusters[0].health_check.http.expected_statuses",
            5,
            "no check could pass",
            "200-399",
        ),
        (
            cluster(&["    health_check:", "      udp: { send: \"\" }"]),
            "clusters[0].health_check.udp.send",
            5,
            "payload is empty",
            "ping",
        ),
        (
            cluster(&[
                "    outlier_detection:",
                "      consecutive_5xx: 0",
                "      consecutive_connect_failures: 0",
            ]),
            "clusters[0].outlier_detection",
            4,
            "every detector turned off",
            "or remove the block",
        ),
        (
            cluster(&["    outlier_detection:", "      max_ejection_percent: 120"]),
            "clusters[0].outlier_detection.max_ejection_percent",
            5,
            "is over 100",
            "from 0 to 100",
        ),
        (
            cluster(&["    outlier_detection:", "      max_ejection_time: 10s"]),
            "clusters[0].outlier_detection.max_ejection_time",
            5,
            "max_ejection_time 10s is shorter than base_ejection_time 30s",
            "at least base_ejection_time",
        ),
        (
            cluster(&["    outlier_detection:", "      base_ejection_time: 0s"]),
            "clusters[0].outlier_detection.base_ejection_time",
            5,
            "base_ejection_time is 0",
            "positive duration",
        ),
        (
            cluster(&[
                "    outlier_detection:",
                "      failure_percentage: { threshold: 0 }",
            ]),
            "clusters[0].outlier_detection.failure_percentage.threshold",
            5,
            "not a percentage",
            "such as 85",
        ),
    ];
    for (lines, path, line, message, hint) in cases {
        assert_error(&lines, path, line, message, hint);
    }
}

#[test]
fn a_short_admin_token_is_rejected() {
    assert_error(
        &["admin: { address: 127.0.0.1:9901, token: short }"],
        "admin.token",
        1,
        "at least 16 visible ASCII characters",
        "openssl rand -hex 24",
    );
    let ok = load_ok(&["admin: { address: 127.0.0.1:9901, token: 0123456789abcdef }"]);
    assert_eq!(
        ok.config().admin.as_ref().and_then(|a| a.token.as_deref()),
        Some("0123456789abcdef")
    );
}
