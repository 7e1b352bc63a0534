//! One test per semantic rule: names, references, actions, ranges, patterns. Each checks the
//! YAML path, the line and the hint.

use crate::common::{EXAMPLE, assert_error, load_ok, with_route};
use weir_config::load_str;

#[test]
fn the_issue_example_message_format() {
    let text = EXAMPLE.replace("        cluster: web\n", "        cluster: apii\n");
    let error = load_str(&text, "weir.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "weir.yaml: listeners[0].routes[3].cluster (line 15): unknown cluster \"apii\"; \
         defined clusters: api, web, web-next"
    );
}

#[test]
fn route_naming_a_missing_cluster() {
    assert_error(
        &with_route(&["      - match: { path_prefix: / }", "        cluster: apii"]),
        "listeners[0].routes[0].cluster",
        7,
        "unknown cluster \"apii\"",
        "defined clusters: api, web",
    );
}

#[test]
fn weighted_clusters_naming_a_missing_cluster() {
    assert_error(
        &with_route(&[
            "      - weighted_clusters:",
            "          - { cluster: api, weight: 1 }",
            "          - { cluster: wbe, weight: 1 }",
        ]),
        "listeners[0].routes[0].weighted_clusters[1].cluster",
        8,
        "unknown cluster \"wbe\"",
        "defined clusters: api, web",
    );
}

#[test]
fn duplicate_listener_names() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "  - name: public",
            "    address: 127.0.0.1:8081",
        ],
        "listeners[1].name",
        4,
        "duplicate listener name \"public\" (first defined at line 2)",
        "listener names must be unique",
    );
}

#[test]
fn duplicate_cluster_names() {
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    endpoints: [ 127.0.0.1:9001 ]",
            "  - name: web",
            "  - name: api",
        ],
        "clusters[2].name",
        5,
        "duplicate cluster name \"api\" (first defined at line 2)",
        "cluster names must be unique",
    );
}

#[test]
fn duplicate_listener_addresses() {
    assert_error(
        &[
            "admin: { address: 127.0.0.1:9901 }",
            "listeners:",
            "  - { name: a, address: 0.0.0.0:8080 }",
            "  - { name: b, address: 127.0.0.1:9901 }",
            "  - { name: c, address: 127.0.0.1:8080 }",
        ],
        "listeners[1].address",
        4,
        "127.0.0.1:9901 is already used by the admin endpoint (line 1)",
        "every listener needs its own address",
    );
    assert_error(
        &[
            "listeners:",
            "  - { name: a, address: 0.0.0.0:8080 }",
            "  - { name: c, address: 127.0.0.1:8080 }",
        ],
        "listeners[1].address",
        3,
        "is already used by listener \"a\" (line 2)",
        "port 0 picks a free port",
    );
}

#[test]
fn route_without_an_action() {
    assert_error(
        &with_route(&["      - match: { path_prefix: / }", "        timeout: 5s"]),
        "listeners[0].routes[0]",
        6,
        "route has no action",
        "give exactly one of cluster, weighted_clusters, redirect, direct_response",
    );
}

#[test]
fn route_with_two_actions() {
    assert_error(
        &with_route(&[
            "      - match: { path_prefix: / }",
            "        cluster: api",
            "        redirect: { path: /elsewhere }",
        ]),
        "listeners[0].routes[0].redirect",
        8,
        "route has 2 actions (cluster, redirect)",
        "give exactly one of cluster, weighted_clusters, redirect, direct_response",
    );
}

#[test]
fn at_most_one_path_condition() {
    assert_error(
        &with_route(&[
            "      - match:",
            "          path: /a",
            "          path_prefix: /b",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.path_prefix",
        8,
        "match has both path and path_prefix",
        "give at most one of path, path_prefix, path_regex",
    );
}

#[test]
fn paths_start_with_a_slash() {
    assert_error(
        &with_route(&[
            "      - match: { path_prefix: api }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.path_prefix",
        6,
        "path_prefix \"api\" does not start with `/`",
        "e.g. /api",
    );
    assert_error(
        &with_route(&["      - match: { path: old }", "        cluster: api"]),
        "listeners[0].routes[0].match.path",
        6,
        "path \"old\" does not start with `/`",
        "e.g. /old",
    );
}

#[test]
fn invalid_path_regex() {
    assert_error(
        &with_route(&[
            "      - match: { path_regex: \"/v(1|2\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.path_regex",
        6,
        "invalid regex \"/v(1|2\": unclosed group",
        "use Rust regex syntax",
    );
}

#[test]
fn invalid_header_and_query_regex() {
    assert_error(
        &with_route(&[
            "      - match:",
            "          headers:",
            "            x-version: { regex: \"[0-9\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.headers.x-version.regex",
        8,
        "invalid regex \"[0-9\"",
        "use Rust regex syntax",
    );
    assert_error(
        &with_route(&[
            "      - match:",
            "          query:",
            "            page: { regex: \"*\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.query.page.regex",
        8,
        "invalid regex \"*\"",
        "use Rust regex syntax",
    );
}

#[test]
fn string_match_rule_needs_exactly_one_condition() {
    assert_error(
        &with_route(&[
            "      - match: { headers: { x-a: {} } }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.headers.x-a",
        6,
        "match rule is empty",
        "give exactly one of exact, regex, present",
    );
    assert_error(
        &with_route(&[
            "      - match:",
            "          headers:",
            "            x-a:",
            "              exact: yes",
            "              present: true",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.headers.x-a.present",
        10,
        "match rule has both exact and present",
        "give exactly one of exact, regex, present",
    );
}

#[test]
fn weighted_clusters_must_carry_weight() {
    assert_error(
        &with_route(&["      - weighted_clusters: []"]),
        "listeners[0].routes[0].weighted_clusters",
        6,
        "weighted_clusters is empty",
        "list at least one cluster with a weight",
    );
    assert_error(
        &with_route(&[
            "      - weighted_clusters:",
            "          - { cluster: api, weight: 0 }",
            "          - { cluster: web, weight: 0 }",
        ]),
        "listeners[0].routes[0].weighted_clusters",
        6,
        "add up to 0",
        "give at least one entry a weight above 0",
    );
}

#[test]
fn redirect_status_must_be_a_redirect() {
    assert_error(
        &with_route(&[
            "      - redirect:",
            "          path: /new",
            "          status: 200",
        ]),
        "listeners[0].routes[0].redirect.status",
        8,
        "200 is not a redirect status",
        "use 301, 302, 303, 307 or 308",
    );
}

#[test]
fn direct_response_status_range() {
    assert_error(
        &with_route(&["      - direct_response: { status: 700, body: nope }"]),
        "listeners[0].routes[0].direct_response.status",
        6,
        "status 700 is out of range",
        "use a status from 200 to 599",
    );
}

#[test]
fn endpoint_weight_range() {
    for (weight, line) in [("0", 4), ("10001", 4)] {
        let entry = format!("      - {{ address: 127.0.0.1:9001, weight: {weight} }}");
        let lines = [
            "clusters:",
            "  - name: api",
            "    endpoints:",
            entry.as_str(),
        ];
        assert_error(
            &lines,
            "clusters[0].endpoints[0].weight",
            line,
            &format!("endpoint weight {weight} is out of range"),
            "use a weight from 1 to 10000",
        );
    }
}

#[test]
fn method_must_be_an_uppercase_token() {
    assert_error(
        &with_route(&["      - match: { method: get }", "        cluster: api"]),
        "listeners[0].routes[0].match.method",
        6,
        "method \"get\" is not upper case",
        "write GET",
    );
    assert_error(
        &with_route(&[
            "      - match: { method: \"GET POST\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.method",
        6,
        "\"GET POST\" is not a valid HTTP method",
        "such as GET, POST",
    );
}

#[test]
fn header_names_must_be_lowercase_tokens() {
    assert_error(
        &with_route(&[
            "      - match: { headers: { X-Canary: \"1\" } }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.headers.X-Canary",
        6,
        "header name \"X-Canary\" is not lower case",
        "write x-canary",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        request_headers:",
            "          set: { x-ok: fine }",
            "          remove: [ x-old, \"bad name\" ]",
        ]),
        "listeners[0].routes[0].request_headers.remove[1]",
        9,
        "\"bad name\" is not a valid header name",
        "header names are lowercase letters, digits",
    );
    assert_error(
        &with_route(&[
            "      - cluster: api",
            "        response_headers:",
            "          add:",
            "            \"x(y)\": v",
        ]),
        "listeners[0].routes[0].response_headers.add.x(y)",
        9,
        "\"x(y)\" is not a valid header name",
        "e.g. x-canary",
    );
}

#[test]
fn host_is_exact_or_a_leading_wildcard() {
    assert_error(
        &with_route(&[
            "      - match: { host: \"api.*.example.com\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.host",
        6,
        "has a wildcard other than a leading `*.`",
        "*.example.com for every subdomain",
    );
    assert_error(
        &with_route(&[
            "      - match: { host: \"api.example.com:8080\" }",
            "        cluster: api",
        ]),
        "listeners[0].routes[0].match.host",
        6,
        "has a port",
        "hosts are matched without the port",
    );
    load_ok(&with_route(&[
        "      - match: { host: \"*.example.com\" }",
        "        cluster: api",
    ]));
}

#[test]
fn header_rules_may_not_touch_framing_headers() {
    assert_error(
        &[
            "listeners:",
            "  - name: l",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - cluster: c",
            "        response_headers: { set: { content-length: \"1\" } }",
            "clusters: [ { name: c } ]",
        ],
        "listeners[0].routes[0].response_headers.set.content-length",
        6,
        "header rules may not change `content-length`",
        "weir manages framing",
    );
}

#[test]
fn circuit_breaker_limits_must_be_positive() {
    assert_error(
        &[
            "clusters:",
            "  - name: c",
            "    circuit_breakers: { max_requests: 0 }",
        ],
        "clusters[0].circuit_breakers.max_requests",
        3,
        "max_requests is 0",
        "default is 1024",
    );
}
