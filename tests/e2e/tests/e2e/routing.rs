//! Every route match kind and every route action, end to end through weir.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::HashMap;

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::MockHttp;

struct Setup {
    proxy: TestProxy,
    _eps: Vec<MockHttp>,
}

/// Endpoints named after their cluster; routes as the test gives them.
async fn setup(routes: &str, clusters: &[&str]) -> Setup {
    let mut eps = Vec::new();
    let mut yaml =
        format!("listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n{routes}");
    yaml.push_str(if clusters.is_empty() {
        "clusters: []\n"
    } else {
        "clusters:\n"
    });
    for name in clusters {
        let ep = MockHttp::start(*name).await;
        yaml.push_str(&format!(
            "  - name: {name}\n    endpoints: [ {} ]\n",
            ep.addr()
        ));
        eps.push(ep);
    }
    Setup {
        proxy: TestProxy::start(&yaml).await,
        _eps: eps,
    }
}

async fn who(s: &Setup, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get(&h1_client(), &s.proxy.url(path), headers).await;
    if r.status == 404 {
        return "404".into();
    }
    r.header("x-endpoint").to_owned()
}

#[tokio::test]
async fn host_exact_and_wildcard() {
    let s = setup(
        "      - { match: { host: api.example.com }, cluster: api }
      - { match: { host: \"*.example.com\" }, cluster: wild }
",
        &["api", "wild"],
    )
    .await;
    assert_eq!(
        who(&s, "/", &[("host", "API.example.com:8080")]).await,
        "api"
    );
    assert_eq!(who(&s, "/", &[("host", "www.example.com")]).await, "wild");
    assert_eq!(who(&s, "/", &[("host", "example.com")]).await, "404");
}

#[tokio::test]
async fn path_exact_prefix_and_regex() {
    let s = setup(
        "      - { match: { path: /exact }, cluster: exact }
      - { match: { path_regex: \"/users/[0-9]+\" }, cluster: regex }
      - { match: { path_prefix: /v1 }, cluster: prefix }
",
        &["exact", "regex", "prefix"],
    )
    .await;
    assert_eq!(who(&s, "/exact", &[]).await, "exact");
    assert_eq!(who(&s, "/exact/more", &[]).await, "404");
    assert_eq!(who(&s, "/users/42", &[]).await, "regex");
    assert_eq!(who(&s, "/users/abc", &[]).await, "404");
    assert_eq!(who(&s, "/v1/anything", &[]).await, "prefix");
}

#[tokio::test]
async fn method_headers_and_query() {
    let s = setup(
        "      - { match: { method: POST }, cluster: post }
      - { match: { headers: { x-canary: \"1\" } }, cluster: canary }
      - { match: { headers: { x-debug: { present: true } } }, cluster: debug }
      - { match: { headers: { x-tier: { regex: \"gold|silver\" } } }, cluster: tier }
      - { match: { query: { v: \"2\" } }, cluster: v2 }
      - { match: { query: { beta: { present: true } } }, cluster: beta }
",
        &["post", "canary", "debug", "tier", "v2", "beta"],
    )
    .await;
    let client = h1_client();
    let r = weir_e2e::send(
        &client,
        http::Request::post(s.proxy.url("/"))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.header("x-endpoint"), "post");
    assert_eq!(who(&s, "/", &[("x-canary", "1")]).await, "canary");
    assert_eq!(who(&s, "/", &[("x-canary", "0")]).await, "404");
    assert_eq!(who(&s, "/", &[("x-debug", "")]).await, "debug");
    assert_eq!(who(&s, "/", &[("x-tier", "silver")]).await, "tier");
    assert_eq!(who(&s, "/", &[("x-tier", "bronze")]).await, "404");
    assert_eq!(who(&s, "/?v=2", &[]).await, "v2");
    assert_eq!(who(&s, "/?a=1&beta", &[]).await, "beta");
    assert_eq!(who(&s, "/?v=3", &[]).await, "404");
}

#[tokio::test]
async fn all_conditions_of_a_route_must_hold() {
    let s = setup(
        "      - match: { host: api.example.com, path_prefix: /v1, method: GET, headers: { x-canary: \"1\" } }
        cluster: api
",
        &["api"],
    )
    .await;
    let ok = [("host", "api.example.com"), ("x-canary", "1")];
    assert_eq!(who(&s, "/v1/x", &ok).await, "api");
    assert_eq!(who(&s, "/v2/x", &ok).await, "404");
    assert_eq!(
        who(&s, "/v1/x", &[("host", "api.example.com")]).await,
        "404"
    );
}

#[tokio::test]
async fn weighted_clusters_split_by_weight() {
    let s = setup(
        "      - match: { path_prefix: / }
        weighted_clusters: [ { cluster: web, weight: 90 }, { cluster: next, weight: 10 } ]
",
        &["web", "next"],
    )
    .await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    let client = h1_client();
    for _ in 0..2_000 {
        let r = get(&client, &s.proxy.url("/"), &[]).await;
        *counts.entry(r.header("x-endpoint").to_owned()).or_default() += 1;
    }
    let next = f64::from(counts["next"]) / 2_000.0;
    // 10 % expected; binomial sd at n=2000 is 0.67 %, so ±3 % is > 4 sd.
    assert!((0.07..=0.13).contains(&next), "next got {next}: {counts:?}");
}

#[tokio::test]
async fn redirect_and_direct_response() {
    let s = setup(
        "      - { match: { path: /old }, redirect: { path: /new, status: 301 } }
      - { match: { path: /moved }, redirect: { scheme: https, host: example.org, status: 308 } }
      - { match: { path: /health }, direct_response: { status: 200, body: \"ok\\n\" } }
      - { match: { path: /teapot }, direct_response: { status: 418, body: \"{}\", content_type: application/json } }
",
        &[],
    )
    .await;
    let client = h1_client();
    let r = get(&client, &s.proxy.url("/old?q=1"), &[("host", "a.test")]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), "http://a.test/new?q=1");
    let r = get(&client, &s.proxy.url("/moved"), &[("host", "a.test")]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), "https://example.org/moved");
    let r = get(&client, &s.proxy.url("/health"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));
    let r = get(&client, &s.proxy.url("/teapot"), &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.text(), "{}");
}

#[tokio::test]
async fn header_rules_edit_requests_and_responses() {
    let s = setup(
        "      - match: { path_prefix: / }
        cluster: web
        request_headers: { add: { x-added: \"1\" }, set: { x-set: new }, remove: [ x-drop ] }
        response_headers: { set: { x-endpoint: rewritten }, add: { x-resp: \"yes\" }, remove: [ x-seen-method ] }
",
        &["web"],
    )
    .await;
    let r = get(
        &h1_client(),
        &s.proxy.url("/headers"),
        &[("x-set", "old"), ("x-drop", "1"), ("x-added", "0")],
    )
    .await;
    let seen = r.text();
    assert!(
        seen.contains("x-set: new") && !seen.contains("x-set: old"),
        "{seen}"
    );
    assert!(!seen.contains("x-drop"), "{seen}");
    assert!(
        seen.contains("x-added: 0") && seen.contains("x-added: 1"),
        "add appends: {seen}"
    );
    assert_eq!(r.header("x-endpoint"), "rewritten");
    assert_eq!(r.header("x-resp"), "yes");
    assert!(r.headers.get("x-seen-method").is_none());
}

#[tokio::test]
async fn no_matching_route_is_404() {
    let s = setup(
        "      - { match: { path: /only }, direct_response: { status: 200 } }\n",
        &[],
    )
    .await;
    let r = get(&h1_client(), &s.proxy.url("/other"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no route"), "{}", r.text());
}
