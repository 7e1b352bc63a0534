//! Balancing options and L4 listeners: what loads, and each rule's error with path and line.

use crate::common::{assert_error, load_ok};
use weir_config::{ChoiceCount, LbPolicyConfig, ListenerProtocol, ProxyProtocolVersion};

const L4_HEAD: &[&str] = &[
    "clusters:",
    "  - { name: c, endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002 ] }",
    "listeners:",
];

fn with_head(rest: &[&'static str]) -> Vec<&'static str> {
    L4_HEAD.iter().chain(rest).copied().collect()
}

#[test]
fn every_policy_and_option_loads() {
    let cfg = load_ok(&[
        "clusters:",
        "  - name: lr",
        "    lb_policy: least_request",
        "    least_request: { choice_count: all, active_request_bias: 0.5 }",
        "    slow_start: { window: 30s }",
        "    panic_threshold: 30",
        "    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]",
        "  - name: ewma",
        "    lb_policy: peak_ewma",
        "    peak_ewma: { decay: 5s, default_rtt: 5ms }",
        "  - name: ring",
        "    lb_policy: ring_hash",
        "    ring_hash: { table_size: 4096 }",
        "    hash_key: { header: x-user }",
        "    hash_balance_factor: 1.25",
        "  - name: mag",
        "    lb_policy: maglev",
        "    hash_key: { source_ip: true }",
        "    proxy_protocol: v2",
    ]);
    let c = &cfg.config().clusters;
    assert_eq!(c[0].lb_policy, LbPolicyConfig::LeastRequest);
    assert_eq!(
        c[0].least_request.as_ref().unwrap().choice_count,
        ChoiceCount::All
    );
    assert_eq!(c[0].panic_threshold, 30);
    assert_eq!(c[1].panic_threshold, 50, "default");
    assert_eq!(c[2].hash_balance_factor, Some(1.25));
    assert_eq!(c[3].proxy_protocol, Some(ProxyProtocolVersion::V2));
}

#[test]
fn option_block_for_another_policy_is_an_error() {
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    lb_policy: round_robin",
            "    maglev: { table_size: 65537 }",
        ],
        "clusters[0].maglev",
        4,
        "`maglev` settings are given but lb_policy is round_robin",
        "set `lb_policy: maglev`",
    );
}

#[test]
fn hash_key_needs_a_hashing_policy_and_exactly_one_key() {
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    hash_key: { header: x-user }",
        ],
        "clusters[0].hash_key",
        3,
        "only applies to hashing policies",
        "ring_hash",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    lb_policy: maglev",
            "    hash_key: { header: x-user, path: true }",
        ],
        "clusters[0].hash_key",
        4,
        "hash_key sets 2 keys (header, path)",
        "exactly one",
    );
}

#[test]
fn maglev_table_must_be_prime_and_factor_at_least_one() {
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    lb_policy: maglev",
            "    maglev: { table_size: 65536 }",
        ],
        "clusters[0].maglev.table_size",
        4,
        "not a prime",
        "65537",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    lb_policy: ring_hash",
            "    hash_balance_factor: 0.5",
        ],
        "clusters[0].hash_balance_factor",
        4,
        "below 1.0",
        "1.25",
    );
}

#[test]
fn choice_count_must_be_two_or_all() {
    assert_error(
        &[
            "clusters:",
            "  - name: a",
            "    lb_policy: least_request",
            "    least_request: { choice_count: 1 }",
        ],
        "clusters[0].least_request.choice_count",
        4,
        "too small",
        "`all`",
    );
}

#[test]
fn l4_listeners_load() {
    let cfg = load_ok(&with_head(&[
        "  - { name: t, address: 127.0.0.1:7000, protocol: tcp, cluster: c, tcp: { connect_attempts: 2 } }",
        "  - { name: u, address: 127.0.0.1:7000, protocol: udp, cluster: c, udp: { max_sessions: 5 } }",
        "  - name: s",
        "    address: 127.0.0.1:7443",
        "    protocol: tls_passthrough",
        "    sni: [ { server_names: [ a.example.com, \"*.b.example.com\" ], cluster: c } ]",
        "    default_cluster: c",
        "    proxy_protocol: { trusted: [ 10.0.0.0/8, 127.0.0.1 ] }",
    ]));
    let l = &cfg.config().listeners;
    assert_eq!(l[0].protocol, ListenerProtocol::Tcp);
    assert_eq!(l[0].tcp.connect_attempts, 2);
    assert_eq!(l[1].udp.max_sessions, 5, "udp and tcp may share an address");
    assert!(
        l[2].proxy_protocol
            .as_ref()
            .unwrap()
            .trusted
            .contains("127.0.0.1".parse().unwrap())
    );
}

#[test]
fn tcp_listener_needs_a_cluster_and_no_routes() {
    assert_error(
        &with_head(&["  - { name: t, address: 127.0.0.1:7000, protocol: tcp }"]),
        "listeners[0]",
        4,
        "a `tcp` listener needs a `cluster`",
        "cluster: <name>",
    );
    assert_error(
        &with_head(&["  - { name: t, address: 127.0.0.1:7000, protocol: tcp, cluster: x }"]),
        "listeners[0].cluster",
        4,
        "unknown cluster \"x\"",
        "defined clusters: c",
    );
    assert_error(
        &with_head(&[
            "  - name: t",
            "    address: 127.0.0.1:7000",
            "    protocol: tcp",
            "    cluster: c",
            "    routes: [ { cluster: c } ]",
        ]),
        "listeners[0].routes",
        8,
        "`routes` does not apply to a `tcp` listener",
        "tcp listeners use `cluster`",
    );
}

#[test]
fn http_listener_rejects_l4_keys() {
    assert_error(
        &with_head(&["  - { name: h, address: 127.0.0.1:7000, cluster: c }"]),
        "listeners[0].cluster",
        4,
        "`cluster` does not apply to a `http` listener",
        "routes",
    );
}

#[test]
fn tls_passthrough_rules() {
    assert_error(
        &with_head(&["  - { name: s, address: 127.0.0.1:7000, protocol: tls_passthrough }"]),
        "listeners[0]",
        4,
        "needs `sni` routes or a `default_cluster`",
        "server_names",
    );
    assert_error(
        &with_head(&[
            "  - name: s",
            "    address: 127.0.0.1:7000",
            "    protocol: tls_passthrough",
            "    sni: [ { server_names: [ \"a.*.com\" ], cluster: c } ]",
        ]),
        "listeners[0].sni[0].server_names[0]",
        7,
        "wildcard",
        "*.example.com",
    );
}

#[test]
fn proxy_protocol_needs_trusted_peers_and_real_cidrs() {
    assert_error(
        &with_head(&[
            "  - name: t",
            "    address: 127.0.0.1:7000",
            "    protocol: tcp",
            "    cluster: c",
            "    proxy_protocol: { trusted: [ 10.0.0.0/40 ] }",
        ]),
        "listeners[0].proxy_protocol.trusted",
        8,
        "not a network",
        "10.0.0.0/8",
    );
    assert_error(
        &with_head(&[
            "  - { name: u, address: 127.0.0.1:7000, protocol: udp, cluster: c, proxy_protocol: { trusted: [ 127.0.0.1 ] } }",
        ]),
        "listeners[0].proxy_protocol",
        4,
        "does not apply to a `udp` listener",
        "udp listeners",
    );
}

#[test]
fn debug_trusted_parses_and_is_checked() {
    let cfg = load_ok(&[
        "listeners:",
        "  - name: public",
        "    address: 127.0.0.1:0",
        "    http: { debug_trusted: [ 127.0.0.1, 10.1.0.0/16 ] }",
    ]);
    let trusted = &cfg.config().listeners[0].http.debug_trusted;
    assert!(trusted.contains("10.1.2.3".parse().unwrap()));
    assert!(!trusted.contains("10.2.0.1".parse().unwrap()));
    assert!(
        load_ok(&["listeners:", "  - { name: p, address: 127.0.0.1:0 }"])
            .config()
            .listeners[0]
            .http
            .debug_trusted
            .0
            .is_empty()
    );
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:0",
            "    http:",
            "      debug_trusted: [ 0.0.0.0/0 ]",
        ],
        "listeners[0].http.debug_trusted",
        5,
        "trusts every client",
        "operators' networks",
    );
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:0",
            "    http:",
            "      debug_trusted: [ 10.0.0.0/40 ]",
        ],
        "listeners[0].http.debug_trusted",
        5,
        "not a network",
        "10.0.0.0/8",
    );
    assert_error(
        &with_head(&[
            "  - name: t",
            "    address: 127.0.0.1:7000",
            "    protocol: tcp",
            "    cluster: c",
            "    http: { debug_trusted: [ 127.0.0.1 ] }",
        ]),
        "listeners[0].http.debug_trusted",
        8,
        "does not apply to a `tcp` listener",
        "remove the key",
    );
}
