//! The happy paths of loading, file handling and error collection.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{EXAMPLE, load_err, load_ok};
use weir_config::{
    Config, EndpointConfig, LbPolicyConfig, ListenerProtocol, StringMatchConfig,
    StringMatchRuleConfig, UpstreamProtocol, load_file, load_str, load_str_all, validate_config,
};

#[allow(clippy::unwrap_used, reason = "test helper: a panic is a failed test")]
fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn the_issue_example_loads() {
    let loaded = load_str(EXAMPLE, "weir.yaml").unwrap();
    assert_eq!(loaded.source_name(), "weir.yaml");
    let config = loaded.config();
    assert_eq!(
        config.admin.as_ref().map(|a| a.address),
        Some(addr("127.0.0.1:9901"))
    );

    let listener = &config.listeners[0];
    assert_eq!(listener.name, "public");
    assert_eq!(listener.address, addr("127.0.0.1:8080"));
    assert_eq!(listener.protocol, ListenerProtocol::Http);
    assert_eq!(listener.routes.len(), 4);
    assert_eq!(listener.http.max_concurrent_streams, 100);

    let api = &listener.routes[0];
    assert_eq!(api.match_.host.as_deref(), Some("api.example.com"));
    assert_eq!(api.match_.path_prefix.as_deref(), Some("/v1"));
    assert_eq!(api.match_.method.as_deref(), Some("GET"));
    assert_eq!(
        api.match_.headers.get("x-canary"),
        Some(&StringMatchConfig::Exact("1".into()))
    );
    assert_eq!(api.cluster.as_deref(), Some("api"));
    assert_eq!(api.timeout.map(|t| t.get()), Some(Duration::from_secs(5)));

    let split = listener.routes[1].weighted_clusters.as_ref().unwrap();
    assert_eq!(
        (split[1].cluster.as_str(), split[1].weight),
        ("web-next", 10)
    );
    let redirect = listener.routes[2].redirect.as_ref().unwrap();
    assert_eq!(
        (redirect.path.as_deref(), redirect.status),
        (Some("/new"), 301)
    );

    let cluster = &config.clusters[0];
    assert_eq!(cluster.lb_policy, LbPolicyConfig::RoundRobin);
    assert_eq!(cluster.protocol, UpstreamProtocol::Http2);
    assert_eq!(cluster.connect_timeout.get(), Duration::from_secs(1));
    assert_eq!(
        cluster.endpoints,
        vec![
            EndpointConfig {
                address: addr("127.0.0.1:9001"),
                weight: 1
            },
            EndpointConfig {
                address: addr("127.0.0.1:9002"),
                weight: 2
            },
        ]
    );
    // The short form: a bare address with the default weight.
    assert_eq!(
        config.clusters[1].endpoints,
        vec![EndpointConfig {
            address: addr("127.0.0.1:9003"),
            weight: 1
        }]
    );
    assert_eq!(config.clusters[2].lb_policy, LbPolicyConfig::RoundRobin);
    assert_eq!(
        config.clusters[2].pool_idle_timeout.get(),
        Duration::from_secs(90)
    );
}

#[test]
fn string_match_rules_and_query_load() {
    let loaded = load_ok(&[
        "listeners:",
        "  - name: l",
        "    address: 127.0.0.1:0",
        "    routes:",
        "      - match:",
        "          headers: { x-a: { regex: \"[0-9]+\" }, x-b: { present: false } }",
        "          query: { debug: { exact: \"on\" } }",
        "        direct_response: { status: 204 }",
    ]);
    let m = &loaded.config().listeners[0].routes[0].match_;
    assert_eq!(
        m.headers.get("x-a"),
        Some(&StringMatchConfig::Rule(StringMatchRuleConfig {
            exact: None,
            regex: Some("[0-9]+".into()),
            present: None,
        }))
    );
    assert!(matches!(
        m.query.get("debug"),
        Some(StringMatchConfig::Rule(StringMatchRuleConfig { exact: Some(v), .. })) if v == "on"
    ));
}

#[test]
fn an_http_listener_without_routes_is_allowed() {
    let loaded = load_ok(&["listeners:", "  - { name: empty, address: 127.0.0.1:0 }"]);
    assert!(loaded.config().listeners[0].routes.is_empty());
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let loaded = load_ok(&[
        "clusters:",
        "  - name: a",
        "    endpoints: &shared [ 127.0.0.1:9001, { address: 127.0.0.1:9002, weight: 3 } ]",
        "  - name: b",
        "    endpoints: *shared",
    ]);
    let clusters = &loaded.config().clusters;
    assert_eq!(clusters[0].endpoints, clusters[1].endpoints);
    assert_eq!(clusters[1].endpoints[1].weight, 3);
}

#[test]
fn load_file_names_the_file_in_errors() {
    let dir = std::env::temp_dir().join(format!("weir-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, EXAMPLE).unwrap();
    let loaded = load_file(&good).unwrap();
    assert_eq!(loaded.source_name(), good.display().to_string());

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, EXAMPLE.replace("cluster: api\n", "cluster: apii\n")).unwrap();
    let error = load_file(&bad).unwrap_err();
    let shown = error.to_string();
    assert_eq!(error.file, bad.display().to_string());
    assert!(
        shown.starts_with(&format!(
            "{}: listeners[0].routes[0].cluster (line 8): unknown cluster \"apii\"",
            bad.display()
        )),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let error = load_file(std::path::Path::new("does/not/exist/weir.yaml")).unwrap_err();
    let shown = error.to_string();
    assert_eq!(error.file, "does/not/exist/weir.yaml");
    assert_eq!(error.line, None);
    assert!(
        shown.starts_with("does/not/exist/weir.yaml: cannot read the config file"),
        "{shown}"
    );
    assert!(
        shown.contains("check the path; relative paths are resolved from"),
        "{shown}"
    );
}

#[test]
fn load_str_all_reports_every_semantic_problem_in_file_order() {
    let text = crate::common::yaml(&[
        "clusters:",
        "  - { name: web, endpoints: [ { address: 127.0.0.1:1, weight: 0 } ] }",
        "listeners:",
        "  - name: l",
        "    address: 127.0.0.1:0",
        "    routes:",
        "      - { match: { path: nope }, cluster: api }",
    ]);
    let errors = load_str_all(&text, "weir.yaml").unwrap_err();
    let lines: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        lines,
        vec![
            ("clusters[0].endpoints[0].weight", Some(2)),
            ("listeners[0].routes[0].match.path", Some(7)),
            ("listeners[0].routes[0].cluster", Some(7)),
        ]
    );
    assert_eq!(errors.to_string().lines().count(), 3);
    // The single-error API reports the first of them.
    assert_eq!(load_str(&text, "weir.yaml").unwrap_err(), *errors.first());
}

#[test]
fn configs_built_in_code_are_validated_without_lines() {
    let mut config: Config = load_str(EXAMPLE, "weir.yaml").unwrap().into_config();
    assert!(validate_config(config.clone(), "code").is_ok());
    config.listeners[0].routes[0].cluster = Some("missing".into());
    let errors = validate_config(config, "code").unwrap_err();
    let error = errors.first();
    assert_eq!(error.line, None);
    assert_eq!(
        error.to_string(),
        "code: listeners[0].routes[0].cluster: unknown cluster \"missing\"; \
         defined clusters: api, web, web-next"
    );
}

#[test]
fn the_complete_example_in_the_reference_loads() {
    // Keeps docs/config.md honest: its first YAML block is the complete example.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
        .unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(
        blocks.len() >= 3,
        "expected YAML examples in docs/config.md"
    );
    let complete = load_str(blocks[0], "config.md").unwrap();
    assert_eq!(complete.config().listeners[0].routes.len(), 5);
    assert_eq!(complete.config().clusters.len(), 3);
}

#[test]
fn admin_metrics_per_endpoint_defaults_on_and_can_be_turned_off() {
    let on = load_ok(&["admin: { address: 127.0.0.1:9901 }"]);
    assert!(on.config().admin.as_ref().unwrap().metrics.per_endpoint);
    let off = load_ok(&[
        "admin:",
        "  address: 127.0.0.1:9901",
        "  metrics: { per_endpoint: false }",
    ]);
    assert!(!off.config().admin.as_ref().unwrap().metrics.per_endpoint);

    let wrong = load_err(&[
        "admin:",
        "  address: 127.0.0.1:9901",
        "  metrics: { per_endpoint: sometimes }",
    ]);
    assert_eq!(wrong.path, "admin.metrics.per_endpoint", "{wrong}");
    assert_eq!(wrong.line, Some(3), "{wrong}");
    let unknown = load_err(&[
        "admin:",
        "  address: 127.0.0.1:9901",
        "  metrics: { per_endpoint: true, per_route: true }",
    ]);
    assert_eq!(unknown.path, "admin.metrics.per_route", "{unknown}");
}

#[test]
fn the_admin_address_defaults_to_loopback() {
    for yaml in [
        &["admin: {}"][..],
        &["admin:", "  metrics: { per_endpoint: false }"][..],
    ] {
        let config = load_ok(yaml);
        let admin = config.config().admin.as_ref().unwrap();
        assert_eq!(admin.address, weir_config::DEFAULT_ADMIN_ADDRESS);
        assert_eq!(admin.address.to_string(), "127.0.0.1:9901");
    }
    let given = load_ok(&["admin: { address: 127.0.0.1:9000 }"]);
    assert_eq!(given.config().admin.as_ref().unwrap().address.port(), 9000);
    // A listener on the default admin address is still a conflict.
    let clash = load_err(&[
        "admin: {}",
        "listeners:",
        "  - name: web",
        "    address: 127.0.0.1:9901",
        "    routes: [ { direct_response: { status: 200 } } ]",
    ]);
    assert!(clash.to_string().contains("admin"), "{clash}");
}

/// What compiling or binding finds wrong later is reported like a validation error: the file,
/// the path and its line.
#[test]
fn a_later_stage_error_is_located_like_a_validation_error() {
    let config = load_ok(&[
        "listeners:",
        "  - name: a",
        "    address: 127.0.0.1:8080",
        "  - name: b",
        "    address: 127.0.0.1:8081",
    ]);
    let e = config.error_at(
        "listeners[1].address",
        "listener b: cannot bind 127.0.0.1:8081: Address already in use",
        Some("free the address".into()),
    );
    assert_eq!(
        e.to_string(),
        "weir.yaml: listeners[1].address (line 5): listener b: cannot bind 127.0.0.1:8081: \
         Address already in use; free the address"
    );
    // A path deeper than the file goes is located at its deepest existing part.
    let e = config.error_at("listeners[0].tls.certificates[0].cert", "cannot read", None);
    assert_eq!(e.line, Some(2));
    // Built in code: no line.
    let built = weir_config::validate_config(config.config().clone(), "built").unwrap();
    assert_eq!(built.error_at("listeners[1]", "x", None).line, None);
    assert_eq!(
        built,
        weir_config::validate_config(config.config().clone(), "built").unwrap()
    );
}
