//! `session_affinity` on clusters and routes: defaults, the key encodings, and each rule's error
//! with path, line and hint.

use std::time::Duration;

use crate::common::{assert_error, load_ok, with_route};
use weir_config::SameSiteConfig;

#[test]
fn cookie_defaults_are_browser_friendly() {
    let cfg = load_ok(&[
        "clusters:",
        "  - name: web",
        "    session_affinity: { cookie: {} }",
    ]);
    let a = cfg.config().clusters[0].session_affinity.clone().unwrap();
    assert_eq!(a.set_modes(), ["cookie"]);
    assert_eq!(a.drain_timeout.get(), Duration::from_secs(300));
    let c = a.cookie.unwrap();
    assert_eq!(c.name, "weir-affinity");
    assert!(c.ttl.get().is_zero(), "a session cookie by default");
    assert_eq!(c.lifetime(), weir_config::SESSION_COOKIE_LIFETIME);
    assert_eq!(c.path, "/");
    assert_eq!(c.domain, None);
    assert!(!c.secure && c.http_only);
    assert_eq!(c.same_site, SameSiteConfig::Lax);
    assert_eq!(c.key_bytes().unwrap(), None);
}

#[test]
fn every_setting_loads_on_clusters_and_routes() {
    let cfg = load_ok(&[
        "clusters:",
        "  - name: api",
        "    lb_policy: least_request",
        "    session_affinity:",
        "      cookie:",
        "        name: sticky",
        "        ttl: 1h",
        "        path: /app",
        "        domain: example.com",
        "        secure: true",
        "        http_only: false",
        "        same_site: none",
        "        key: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "      drain_timeout: 30s",
        "listeners:",
        "  - name: public",
        "    address: 127.0.0.1:8080",
        "    routes:",
        "      - match: { path_prefix: /h }",
        "        cluster: api",
        "        session_affinity: { header: x-user }",
        "      - cluster: api",
        "        session_affinity: { client_address: true }",
    ]);
    let c = cfg.config();
    let a = c.clusters[0].session_affinity.as_ref().unwrap();
    let cookie = a.cookie.as_ref().unwrap();
    assert_eq!(cookie.ttl.get(), Duration::from_secs(3600));
    assert_eq!(cookie.same_site, SameSiteConfig::None);
    assert_eq!(
        cookie.key_bytes().unwrap().unwrap(),
        (0..32).collect::<Vec<u8>>()
    );
    assert_eq!(a.drain_timeout.get(), Duration::from_secs(30));
    let routes = &c.listeners[0].routes;
    assert_eq!(
        routes[0]
            .session_affinity
            .as_ref()
            .unwrap()
            .header
            .as_deref(),
        Some("x-user")
    );
    assert_eq!(
        routes[1].session_affinity.as_ref().unwrap().set_modes(),
        ["client_address"]
    );
}

#[test]
fn exactly_one_mode() {
    assert_error(
        &["clusters:", "  - name: web", "    session_affinity: {}"],
        "clusters[0].session_affinity",
        3,
        "names no mode",
        "exactly one of `cookie`, `header` or `client_address: true`",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      cookie: {}",
            "      header: x-user",
        ],
        "clusters[0].session_affinity",
        3,
        "sets cookie and header at once",
        "exactly one",
    );
}

#[test]
fn unknown_fields_name_their_position() {
    assert_error(
        &[
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      cookie: { name: s, max_age: 1h }",
        ],
        "clusters[0].session_affinity.cookie.max_age",
        4,
        "unknown key `max_age`",
        "ttl",
    );
    assert_error(
        &[
            "clusters:",
            "  - name: web",
            "    session_affinity: { hedaer: x-user }",
        ],
        "clusters[0].session_affinity.hedaer",
        3,
        "unknown key `hedaer`",
        "header",
    );
}

#[test]
fn a_bad_key_is_refused_without_echoing_it() {
    let short = assert_error(
        &[
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      cookie:",
            "        key: \"00112233\"",
        ],
        "clusters[0].session_affinity.cookie.key",
        5,
        "key is 4 bytes; HMAC-SHA256 wants at least 32",
        "openssl rand -hex 32",
    );
    assert!(!short.to_string().contains("00112233"));
    assert_error(
        &[
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      cookie:",
            "        key: \"not a key at all!\"",
        ],
        "clusters[0].session_affinity.cookie.key",
        5,
        "neither hex nor base64",
        "hex or base64",
    );
}

#[test]
fn ttl_path_domain_name_and_same_site_rules() {
    let cookie = |line: &'static str| {
        vec![
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      cookie:",
            line,
        ]
    };
    let at = |key: &str| format!("clusters[0].session_affinity.cookie.{key}");
    assert_error(
        &cookie("        ttl: 9601h"),
        &at("ttl"),
        5,
        "longer than a year",
        "8760h",
    );
    assert_error(
        &cookie("        ttl: soon"),
        &at("ttl"),
        5,
        "not a duration",
        "",
    );
    assert_error(
        &cookie("        path: app"),
        &at("path"),
        5,
        "not a valid path",
        "e.g. /",
    );
    assert_error(
        &cookie("        domain: \"a.com; Secure\""),
        &at("domain"),
        5,
        "not a host name",
        "example.com",
    );
    assert_error(
        &cookie("        name: \"my cookie\""),
        &at("name"),
        5,
        "not a valid cookie name",
        "weir-affinity",
    );
    assert_error(
        &cookie("        same_site: none"),
        &at("same_site"),
        5,
        "without secure",
        "secure: true",
    );
}

#[test]
fn header_names_and_route_actions() {
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        session_affinity: { header: X-User }",
        ]),
        "listeners[0].routes[0].session_affinity.header",
        7,
        "not lower case",
        "x-user",
    );
    assert_error(
        &with_route(&[
            "      - direct_response: { status: 200 }",
            "        session_affinity: { client_address: true }",
        ]),
        "listeners[0].routes[0].session_affinity",
        7,
        "forwards to no cluster",
        "`cluster` or `weighted_clusters`",
    );
}

#[test]
fn the_example_in_the_topic_doc_loads() {
    // Keeps docs/affinity.md honest: its first YAML block is a whole, valid config.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/affinity.md"
    ))
    .unwrap();
    let block = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let cfg = weir_config::load_str(block, "affinity.md").unwrap_or_else(|e| panic!("{e}"));
    let c = cfg.config();
    let cookie = c.clusters[0]
        .session_affinity
        .as_ref()
        .unwrap()
        .cookie
        .as_ref()
        .unwrap();
    assert_eq!(cookie.key_bytes().unwrap().unwrap().len(), 32);
    assert!(c.listeners[0].routes[0].session_affinity.is_some());
}

#[test]
fn the_session_table_has_defaults_and_loads_its_keys() {
    let cfg = load_ok(&[
        "clusters:",
        "  - name: web",
        "    session_affinity: { header: x-user }",
        "  - name: l4",
        "    session_affinity:",
        "      client_address: true",
        "      max_sessions: 1000",
        "      session_idle: 30s",
        "      drain_timeout: 2s",
    ]);
    let c = &cfg.config().clusters;
    let default = c[0].session_affinity.as_ref().unwrap();
    assert_eq!(default.max_sessions(), weir_config::DEFAULT_MAX_SESSIONS);
    assert_eq!(default.max_sessions(), 65_536);
    assert_eq!(default.session_idle(), Duration::from_secs(300));
    let set = c[1].session_affinity.as_ref().unwrap();
    assert_eq!(set.max_sessions(), 1000);
    assert_eq!(set.session_idle(), Duration::from_secs(30));
    assert_eq!(set.drain_timeout.get(), Duration::from_secs(2));
    // 0 remembers no sessions: valid.
    load_ok(&[
        "clusters:",
        "  - name: web",
        "    session_affinity: { header: x-user, max_sessions: 0 }",
    ]);
}

#[test]
fn session_table_rules() {
    let affinity = |line: &'static str| {
        vec![
            "clusters:",
            "  - name: web",
            "    session_affinity:",
            "      header: x-user",
            line,
        ]
    };
    let at = |key: &str| format!("clusters[0].session_affinity.{key}");
    assert_error(
        &affinity("      max_sessions: 16777217"),
        &at("max_sessions"),
        5,
        "max_sessions 16777217 is more than 16777216",
        "or 0 to remember none",
    );
    assert_error(
        &affinity("      session_idle: 0s"),
        &at("session_idle"),
        5,
        "session_idle 0 would end every session at once",
        "max_sessions: 0",
    );
    assert_error(
        &affinity("      max_sessions: -1"),
        &at("max_sessions"),
        5,
        "",
        "",
    );
    assert_error(
        &[
            "listeners:",
            "  - name: l",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - cluster: web",
            "        session_affinity:",
            "          cookie: {}",
            "          session_idle: 1m",
            "clusters:",
            "  - name: web",
        ],
        "listeners[0].routes[0].session_affinity.session_idle",
        8,
        "session_idle applies to header and client_address affinity only",
        "the cookie",
    );
}
