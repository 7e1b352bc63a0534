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
fn etcd_and_file_defaults() {
    let cfg = load_ok(&cluster(&[
        "    discovery:",
        "      etcd: { endpoints: [ http://127.0.0.1:2379, \"http://etcd-2:2379/\" ], prefix: /weir/api/ }",
    ]));
    let etcd = cfg.config().clusters[0]
        .discovery
        .as_ref()
        .unwrap()
        .etcd
        .as_ref()
        .unwrap();
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.prefix, "/weir/api/");
    assert_eq!(etcd.connect_timeout.get(), Duration::from_secs(2));
    assert_eq!((&etcd.username, &etcd.password), (&None, &None));
    let cfg = load_ok(&cluster(&[
        "    discovery: { file: { path: endpoints/api.yaml } }",
    ]));
    let file = cfg.config().clusters[0]
        .discovery
        .as_ref()
        .unwrap()
        .file
        .as_ref()
        .unwrap();
    assert_eq!(file.path, std::path::Path::new("endpoints/api.yaml"));
    assert_eq!(file.interval.get(), Duration::from_secs(1));
}

#[test]
fn endpoints_files_are_checked_like_cluster_endpoints() {
    let eps = weir_config::load_endpoints_str(
        "endpoints:\n  - 127.0.0.1:80\n  - { address: 127.0.0.2:80, weight: 5 }\n",
        "eps.yaml",
    )
    .unwrap();
    assert_eq!((eps.len(), eps[1].weight), (2, 5));
    let err = weir_config::load_endpoints_str(
        "endpoints:\n  - 127.0.0.1:80\n  - { address: 127.0.0.2:0 }\n",
        "eps.yaml",
    )
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.path.as_str(), err.line),
        ("eps.yaml", "endpoints[1]", Some(3))
    );
    let err =
        weir_config::load_endpoints_str("endpoints: [ 127.0.0.1:80 ]\nextra: 1\n", "eps.yaml")
            .unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
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
        (
            cluster(&[
                "    discovery:",
                "      dns: { name: api, port: 80 }",
                "      file: { path: eps.yaml }",
            ]),
            "clusters[0].discovery",
            3,
            "more than one source",
            "keep one of",
        ),
        (
            cluster(&["    discovery: { etcd: { endpoints: [], prefix: /a/ } }"]),
            "clusters[0].discovery.etcd.endpoints",
            3,
            "no etcd endpoints",
            "http://127.0.0.1:2379",
        ),
        (
            cluster(&[
                "    discovery:",
                "      etcd:",
                "        endpoints:",
                "          - http://127.0.0.1:2379",
                "          - https://etcd:2379",
                "        prefix: /a/",
            ]),
            "clusters[0].discovery.etcd.endpoints[1]",
            7,
            "not an etcd client URL",
            "TLS to etcd is not supported",
        ),
        (
            cluster(&["    discovery: { etcd: { endpoints: [ \"http://etcd\" ], prefix: /a/ } }"]),
            "clusters[0].discovery.etcd.endpoints[0]",
            3,
            "not an etcd client URL",
            "http://host:port",
        ),
        (
            cluster(&[
                "    discovery: { etcd: { endpoints: [ \"http://etcd:2379\" ], prefix: \"\" } }",
            ]),
            "clusters[0].discovery.etcd.prefix",
            3,
            "every key in etcd",
            "/weir/clusters/api/",
        ),
        (
            cluster(&[
                "    discovery:",
                "      etcd: { endpoints: [ \"http://etcd:2379\" ], prefix: /a/, username: weir }",
            ]),
            "clusters[0].discovery.etcd.username",
            4,
            "without a password",
            "add `password`",
        ),
        (
            cluster(&["    discovery: { file: { path: eps.yaml, interval: 0s } }"]),
            "clusters[0].discovery.file.interval",
            3,
            "busy loop",
            "positive duration",
        ),
    ];
    for (lines, path, line, message, hint) in cases {
        assert_error(&lines, path, line, message, hint);
    }
}
