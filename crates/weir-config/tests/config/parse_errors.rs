//! One test per error class that is found while reading the file: YAML syntax, unknown keys,
//! wrong types, addresses, durations. Each checks the YAML path, the line and the hint.

use crate::common::{assert_error, load_err};

#[test]
fn yaml_syntax_error_has_the_parser_line() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "   routes: []",
        ],
        "",
        4,
        "YAML syntax error",
        "check indentation",
    );
}

#[test]
fn duplicate_yaml_key_is_a_syntax_error_on_its_line() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "    name: again",
        ],
        "",
        4,
        "duplicate key",
        "only once per map",
    );
}

#[test]
fn unknown_key_lists_the_valid_keys() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - match: { path_prefix: / }",
            "        clustr: web",
            "clusters: [ { name: web } ]",
        ],
        "listeners[0].routes[0].clustr",
        6,
        "unknown key `clustr`",
        "did you mean `cluster`? valid keys here: match, cluster, weighted_clusters, redirect, \
         direct_response, timeout,",
    );
}

#[test]
fn unknown_top_level_key() {
    assert_error(
        &["listeners: []", "cluster: []"],
        "cluster",
        2,
        "unknown key `cluster`",
        "did you mean `clusters`? valid keys here: admin, listeners, clusters",
    );
}

#[test]
fn unknown_key_inside_a_string_match_rule() {
    // StringMatchConfig is "a string or a map"; a typo inside the map must still be precise.
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - match:",
            "          headers:",
            "            x-canary: { regx: \"[0-9]+\" }",
            "        direct_response: { status: 200 }",
        ],
        "listeners[0].routes[0].match.headers.x-canary.regx",
        7,
        "unknown key `regx`",
        "did you mean `regex`? valid keys here: exact, regex, present",
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    endpoints:",
            "      - address: 127.0.0.1:9001",
            "      - { address: 127.0.0.1:9002, weight: heavy }",
        ],
        "clusters[0].endpoints[1].weight",
        5,
        "wrong type: found string \"heavy\"",
        "expected a whole number",
    );
}

#[test]
fn a_number_where_text_is_expected_suggests_quoting() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - match: { headers: { x-canary: 1 } }",
            "        direct_response: { status: 200 }",
        ],
        "listeners[0].routes[0].match.headers.x-canary",
        5,
        "wrong type: found integer `1`",
        "quote the value to make it text, e.g. \"1\"",
    );
}

#[test]
fn a_map_where_a_list_is_expected() {
    assert_error(
        &["listeners:", "  name: public", "  address: 127.0.0.1:8080"],
        "listeners",
        1,
        "wrong type: found a map",
        "expected a list",
    );
}

#[test]
fn unknown_enum_value_lists_the_valid_values() {
    assert_error(
        &["clusters:", "  - name: api", "    lb_policy: roundrobin"],
        "clusters[0].lb_policy",
        3,
        "unknown value `roundrobin`",
        "did you mean `round_robin`? valid values: round_robin, random, least_request",
    );
}

#[test]
fn missing_required_key_points_at_the_map() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "  - name: second",
            "    protocol: http",
        ],
        "listeners[1]",
        4,
        "missing required key `address`",
        "add `address: ...`",
    );
}

#[test]
fn address_without_a_port() {
    assert_error(
        &["listeners:", "  - name: public", "    address: 127.0.0.1"],
        "listeners[0].address",
        3,
        "`127.0.0.1` has no port",
        "add one, e.g. 127.0.0.1:8080",
    );
}

#[test]
fn address_with_a_hostname() {
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    endpoints: [ \"nope:80\" ]",
        ],
        "clusters[0].endpoints[0]",
        3,
        "`nope` is not an IP address",
        "hostnames are not resolved here",
    );
}

#[test]
fn endpoint_address_in_the_long_form() {
    assert_error(
        &[
            "clusters:",
            "  - name: api",
            "    endpoints:",
            "      - address: 10.0.0.1:http",
        ],
        "clusters[0].endpoints[0].address",
        4,
        "`http` is not a port",
        "write ip:port",
    );
}

#[test]
fn bad_duration_unit() {
    assert_error(
        &["clusters:", "  - name: api", "    connect_timeout: 5sec"],
        "clusters[0].connect_timeout",
        3,
        "unknown unit `sec`",
        "use ms, s, m or h",
    );
}

#[test]
fn duration_without_a_unit() {
    assert_error(
        &[
            "listeners:",
            "  - name: public",
            "    address: 127.0.0.1:8080",
            "    routes:",
            "      - match: {}",
            "        direct_response: { status: 200 }",
            "        timeout: 30",
        ],
        "listeners[0].routes[0].timeout",
        7,
        "`30` has no unit",
        "e.g. 30s or 30ms",
    );
}

#[test]
fn merge_keys_are_called_out() {
    assert_error(
        &[
            "clusters:",
            "  - &base { name: a, connect_timeout: 2s }",
            "  - <<: *base",
            "    name: b",
        ],
        "clusters[1].<<",
        3,
        "unknown key `<<`",
        "merge keys (`<<`) are not supported",
    );
}

#[test]
fn alias_to_an_unknown_anchor() {
    assert_error(
        &["clusters:", "  - name: a", "    endpoints: *missing"],
        "",
        3,
        "alias to an unknown anchor",
        "define the anchor",
    );
}

#[test]
fn non_string_keys_are_rejected() {
    assert_error(
        &["listeners: []", "clusters: []", "3: x"],
        "",
        3,
        "map key `3` is not a string",
        "quote the key",
    );
}

#[test]
fn an_empty_file_is_an_error() {
    let error = load_err(&["# nothing here yet"]);
    assert_eq!(error.line, None);
    assert!(
        error.to_string().contains("holds no configuration"),
        "{error}"
    );
}
