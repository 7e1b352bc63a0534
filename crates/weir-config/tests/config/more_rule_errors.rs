//! The remaining semantic rules (redirect targets, timeouts, endpoint lists, HTTP options),
//! table-driven: each case checks the YAML path, the line, the message and the hint.

use crate::common::{assert_error, with_route};

#[test]
fn the_remaining_rules() {
    type Case = (
        Vec<&'static str>,
        &'static str,
        usize,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            with_route(&["      - redirect: { status: 302 }"]),
            "listeners[0].routes[0].redirect",
            6,
            "redirect changes nothing",
            "set at least one of path, host, scheme",
        ),
        (
            with_route(&["      - redirect: { scheme: ftp }"]),
            "listeners[0].routes[0].redirect.scheme",
            6,
            "unknown scheme \"ftp\"",
            "use http or https",
        ),
        (
            with_route(&["      - cluster: api", "        timeout: 0"]),
            "listeners[0].routes[0].timeout",
            7,
            "timeout is 0",
            "leave `timeout` out for no limit",
        ),
        (
            with_route(&[
                "      - cluster: api",
                "        request_headers: { set: { x-a: \"a\\nb\" } }",
            ]),
            "listeners[0].routes[0].request_headers.set.x-a",
            7,
            "contains a control character",
            "may not contain line breaks",
        ),
        (
            vec![
                "clusters:",
                "  - name: api",
                "    endpoints:",
                "      - 127.0.0.1:9001",
                "      - { address: 127.0.0.1:9001, weight: 5 }",
            ],
            "clusters[0].endpoints[1]",
            5,
            "endpoint 127.0.0.1:9001 is listed twice in cluster \"api\" (first at line 4)",
            "raise its weight instead",
        ),
        (
            vec![
                "clusters:",
                "  - name: api",
                "    endpoints: [ 127.0.0.1:0 ]",
            ],
            "clusters[0].endpoints[0]",
            3,
            "has port 0",
            "give the port the endpoint listens on",
        ),
        (
            vec!["clusters:", "  - name: api", "    connect_timeout: 0s"],
            "clusters[0].connect_timeout",
            3,
            "connect_timeout is 0",
            "give a positive duration",
        ),
        (
            vec!["clusters:", "  - name: \"\""],
            "clusters[0].name",
            2,
            "cluster name is empty",
            "give every cluster a unique, non-empty name",
        ),
        (
            vec![
                "listeners:",
                "  - name: public",
                "    address: 127.0.0.1:0",
                "    http:",
                "      max_concurrent_streams: 0",
            ],
            "listeners[0].http.max_concurrent_streams",
            5,
            "max_concurrent_streams is 0",
            "give a positive number",
        ),
        (
            vec![
                "listeners:",
                "  - name: public",
                "    address: 127.0.0.1:0",
                "    http: { via: \"weir proxy\" }",
            ],
            "listeners[0].http.via",
            4,
            "is not a valid token",
            "e.g. weir",
        ),
        (
            with_route(&["      - match: { host: \"*\" }", "        cluster: api"]),
            "listeners[0].routes[0].match.host",
            6,
            "host `*` is not a pattern weir supports",
            "leave `host` out to match every host",
        ),
    ];
    for (lines, path, line, message, hint) in cases {
        assert_error(&lines, path, line, message, hint);
    }
}
