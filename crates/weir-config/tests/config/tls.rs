//! `tls:` on listeners (termination) and clusters (TLS to endpoints): what loads, defaults, and
//! each rule's error with path and line. The files are not read here: that happens when the
//! data plane compiles the config.

use crate::common::{assert_error, load_err, load_ok};
use weir_config::{RootStore, TlsVersion};

const HEAD: &[&str] = &[
    "clusters:",
    "  - { name: c, endpoints: [ 127.0.0.1:9001 ] }",
    "listeners:",
    "  - name: https",
    "    address: 127.0.0.1:8443",
    "    routes: [ { cluster: c } ]",
];

fn with_head(rest: &[&'static str]) -> Vec<&'static str> {
    HEAD.iter().chain(rest).copied().collect()
}

#[test]
fn a_full_listener_and_cluster_tls_block_loads() {
    let cfg = load_ok(&[
        "clusters:",
        "  - name: c",
        "    protocol: http2",
        "    tls:",
        "      sni: api.internal",
        "      ca: /etc/weir/internal-ca.pem",
        "      client_cert: { cert: /etc/weir/weir.pem, key: /etc/weir/weir.key }",
        "    endpoints: [ 127.0.0.1:9001 ]",
        "listeners:",
        "  - name: https",
        "    address: 127.0.0.1:8443",
        "    routes: [ { cluster: c } ]",
        "    tls:",
        "      certificates:",
        "        - { cert: default.pem, key: default.key }",
        "        - cert: api.pem",
        "          key: api.key",
        "          server_names: [ api.example.com, \"*.api.example.com\" ]",
        "      min_version: 1.3",
        "      client_auth: { ca: clients.pem, required: false }",
        "      client_cert_header: x-client-cert-subject",
    ]);
    let l = cfg.config().listeners[0].tls.as_ref().unwrap();
    assert_eq!(l.certificates.len(), 2);
    assert_eq!(l.certificates[1].server_names[1], "*.api.example.com");
    assert_eq!(l.min_version, TlsVersion::Tls13, "unquoted 1.3 is a number");
    let auth = l.client_auth.as_ref().unwrap();
    assert!(!auth.required);
    assert_eq!(
        l.client_cert_header.as_deref(),
        Some("x-client-cert-subject")
    );
    let c = cfg.config().clusters[0].tls.as_ref().unwrap();
    assert_eq!(c.sni.as_deref(), Some("api.internal"));
    assert!(!c.insecure_skip_verify, "verification is on by default");
    assert!(c.client_cert.is_some());
}

#[test]
fn defaults_are_tls_1_2_and_required_client_certificates() {
    let cfg = load_ok(&with_head(&[
        "    tls:",
        "      certificates: [ { cert: a.pem, key: a.key } ]",
        "      client_auth: { ca: ca.pem }",
    ]));
    let l = cfg.config().listeners[0].tls.as_ref().unwrap();
    assert_eq!(l.min_version, TlsVersion::Tls12);
    assert!(l.client_auth.as_ref().unwrap().required);
    let quoted = load_ok(&with_head(&[
        "    tls: { certificates: [ { cert: a.pem, key: a.key } ], min_version: \"1.2\" }",
    ]));
    assert_eq!(
        quoted.config().listeners[0]
            .tls
            .as_ref()
            .unwrap()
            .min_version,
        TlsVersion::Tls12
    );
}

#[test]
fn unknown_versions_and_keys_are_errors() {
    let e = load_err(&with_head(&[
        "    tls: { certificates: [ { cert: a.pem, key: a.key } ], min_version: \"1.1\" }",
    ]));
    assert_eq!(e.path, "listeners[0].tls.min_version");
    assert_eq!(e.line, Some(7));
    assert!(e.to_string().contains("1.1"), "{e}");
    let e = load_err(&with_head(&[
        "    tls: { certificates: [ { cert: a.pem, key: a.key, chain: b.pem } ] }",
    ]));
    assert_eq!(e.path, "listeners[0].tls.certificates[0].chain", "{e}");
    let e = load_err(&with_head(&[
        "    tls: { certificates: [ { cert: a.pem } ] }",
    ]));
    assert!(e.to_string().contains("`key`"), "{e}");
}

#[test]
fn a_listener_needs_a_certificate() {
    assert_error(
        &with_head(&["    tls:", "      certificates: []"]),
        "listeners[0].tls.certificates",
        8,
        "certificates is empty",
        "the first is the default",
    );
}

#[test]
fn server_names_must_be_host_names() {
    assert_error(
        &with_head(&[
            "    tls:",
            "      certificates:",
            "        - { cert: a.pem, key: a.key, server_names: [ \"a.*.example.com\" ] }",
        ]),
        "listeners[0].tls.certificates[0].server_names[0]",
        9,
        "wildcard",
        "*.example.com",
    );
    assert_error(
        &with_head(&[
            "    tls:",
            "      certificates:",
            "        - { cert: a.pem, key: a.key, server_names: [ \"[::1]\" ] }",
        ]),
        "listeners[0].tls.certificates[0].server_names[0]",
        9,
        "is an address",
        "DNS name",
    );
}

#[test]
fn the_identity_header_needs_client_auth_and_a_header_of_its_own() {
    assert_error(
        &with_head(&[
            "    tls:",
            "      certificates: [ { cert: a.pem, key: a.key } ]",
            "      client_cert_header: x-client-cert",
        ]),
        "listeners[0].tls.client_cert_header",
        9,
        "needs client_auth",
        "client_auth: { ca:",
    );
    assert_error(
        &with_head(&[
            "    tls:",
            "      certificates: [ { cert: a.pem, key: a.key } ]",
            "      client_auth: { ca: ca.pem }",
            "      client_cert_header: x-forwarded-for",
        ]),
        "listeners[0].tls.client_cert_header",
        10,
        "manages itself",
        "x-client-cert-subject",
    );
    assert_error(
        &with_head(&[
            "    tls:",
            "      certificates: [ { cert: a.pem, key: a.key } ]",
            "      client_auth: { ca: ca.pem }",
            "      client_cert_header: X-Client",
        ]),
        "listeners[0].tls.client_cert_header",
        10,
        "not lower case",
        "x-client",
    );
}

#[test]
fn tls_termination_is_for_http_listeners_only() {
    assert_error(
        &[
            "clusters: [ { name: c, endpoints: [ 127.0.0.1:9001 ] } ]",
            "listeners:",
            "  - name: t",
            "    address: 127.0.0.1:8443",
            "    protocol: tls_passthrough",
            "    default_cluster: c",
            "    tls: { certificates: [ { cert: a.pem, key: a.key } ] }",
        ],
        "listeners[0].tls",
        7,
        "does not apply to a `tls_passthrough` listener",
        "remove the key",
    );
    assert_error(
        &[
            "clusters: [ { name: c, endpoints: [ 127.0.0.1:9001 ] } ]",
            "listeners:",
            "  - name: t",
            "    address: 127.0.0.1:8443",
            "    protocol: tcp",
            "    cluster: c",
            "    tls: { certificates: [ { cert: a.pem, key: a.key } ] }",
        ],
        "listeners[0].tls",
        7,
        "does not apply to a `tcp` listener",
        "remove the key",
    );
}

#[test]
fn cluster_roots_default_to_the_system_store() {
    let cfg = load_ok(&[
        "clusters:",
        "  - { name: s, tls: { sni: a.example }, endpoints: [ 127.0.0.1:9001 ] }",
        "  - { name: w, tls: { sni: a.example, roots: webpki }, endpoints: [ 127.0.0.1:9001 ] }",
        "  - { name: x, tls: { sni: a.example, roots: system }, endpoints: [ 127.0.0.1:9001 ] }",
    ]);
    let roots = |i: usize| cfg.config().clusters[i].tls.as_ref().unwrap().roots;
    assert_eq!(roots(0).unwrap_or_default(), RootStore::System);
    assert_eq!(roots(1), Some(RootStore::Webpki));
    assert_eq!(roots(2), Some(RootStore::System));
    let e = load_err(&[
        "clusters:",
        "  - { name: c, tls: { roots: mozilla }, endpoints: [] }",
    ])
    .to_string();
    assert!(e.contains("clusters[0].tls.roots"), "{e}");
    assert!(e.contains("system") && e.contains("webpki"), "{e}");
}

#[test]
fn cluster_tls_rules() {
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    tls:",
            "      ca: ca.pem",
            "      roots: webpki",
        ],
        "clusters[0].tls.roots",
        5,
        "would never be used: `ca` is given",
        "remove `roots`",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    tls: { insecure_skip_verify: true, roots: system }",
        ],
        "clusters[0].tls.roots",
        3,
        "insecure_skip_verify is true",
        "remove `roots`",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    tls: { sni: \"*.internal\" }",
        ],
        "clusters[0].tls.sni",
        3,
        "not a DNS name",
        "leave sni out",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    tls:",
            "      ca: ca.pem",
            "      insecure_skip_verify: true",
        ],
        "clusters[0].tls.insecure_skip_verify",
        5,
        "`ca` would never be used",
        "remove one of them",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    tls:",
            "      client_cert: { cert: \"\", key: k.pem }",
        ],
        "clusters[0].tls.client_cert.cert",
        4,
        "file path is empty",
        "PEM file",
    );
}
