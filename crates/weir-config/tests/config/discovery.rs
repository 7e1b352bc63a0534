//! `discovery` on clusters: defaults, and each rule's error with path, line and hint.

use std::time::Duration;

use crate::common::{assert_error, load_ok};
use weir_config::DnsRecordKind;

fn cluster<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut lines = vec!["clusters:", "  - name: api"];
    lines.extend_from_slice(extra);
    lines
}

#[test]
fn dns_defaults() {
    let cfg = load_ok(&cluster(&[
        "    discovery: { dns: { name: api.internal, port: 8080 } }",
    ]));
    let dns = cfg.config().clusters[0]
        .discovery
        .as_ref()
        .unwrap()
        .dns
        .as_ref()
        .unwrap();
    assert_eq!(dns.record, DnsRecordKind::Both);
    assert_eq!((dns.port, dns.weight), (Some(8080), 1));
    assert_eq!(dns.min_ttl.get(), Duration::from_secs(1));
    assert_eq!(dns.max_ttl.get(), Duration::from_secs(300));
    assert!(dns.nameservers.is_empty());
    let srv = load_ok(&cluster(&[
        "    discovery:",
        "      dns: { name: _http._tcp.api.internal, record: srv, nameservers: [ 10.0.0.53:53 ] }",
    ]));
    let dns = srv.config().clusters[0]
        .discovery
        .as_ref()
        .unwrap()
        .dns
        .as_ref()
        .unwrap();
    assert_eq!(dns.record, DnsRecordKind::Srv);
    assert_eq!(dns.nameservers, ["10.0.0.53:53".parse().unwrap()]);
}

#[test]
fn every_discovery_rule_names_path_line_and_fix() {
    let cases: Vec<(Vec<&'static str>, &str, usize, &str, &str)> = vec![
        (
            cluster(&["    discovery: {}"]),
            "clusters[0].discovery",
            3,
            "names no source",
            "dns:",
        ),
        (
            cluster(&["    discovery: { dns: { name: api.internal } }"]),
            "clusters[0].discovery.dns",
            3,
            "needs a port",
            "record: srv",
        ),
        (
            cluster(&["    discovery: { dns: { name: \"api internal\", port: 80 } }"]),
            "clusters[0].discovery.dns.name",
            3,
            "is not a DNS name",
            "api.internal",
        ),
        (
            cluster(&["    discovery: { dns: { name: _x._tcp.api, record: srv, port: 80 } }"]),
            "clusters[0].discovery.dns.port",
            3,
            "SRV records carry their own",
            "remove `port`",
        ),
        (
            cluster(&[
                "    discovery:",
                "      dns: { name: api, port: 80, min_ttl: 10s, max_ttl: 5s }",
            ]),
            "clusters[0].discovery.dns.max_ttl",
            4,
            "below min_ttl",
            "at least as long",
        ),
        (
            cluster(&["    discovery: { dns: { name: api, port: 80, min_ttl: 0s } }"]),
            "clusters[0].discovery.dns.min_ttl",
            3,
            "busy loop",
            "positive duration",
        ),
    ];
    for (lines, path, line, message, hint) in cases {
        assert_error(&lines, path, line, message, hint);
    }
}
