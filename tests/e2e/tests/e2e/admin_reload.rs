//! Admin and access-log settings follow a reload (issue #9): a new `admin.token` guards
//! `POST /reload` and drains at once, `admin.metrics.per_endpoint: false` removes the endpoint
//! series, a new `access_log.path` gets the next lines, and a changed admin address is reported
//! as needing a restart; a reload that removes `admin:` or its token keeps the last token in
//! force while the admin API stays bound.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::Value;
use weir::Weir;
use weir_e2e::{Reply, TestProxy, get, h1_client, send};
use weir_test_support::{MockHttp, wait_until};

const FIRST: &str = "first-token-0123456789";
const SECOND: &str = "second-token-0123456789";

async fn post(url: &str, token: Option<&str>) -> Reply {
    let mut req = http::Request::post(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(&h1_client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

fn config(admin: &str, endpoint: std::net::SocketAddr) -> String {
    format!(
        "admin: {admin}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {endpoint} ]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_token_guards_reload_and_drain_at_once() {
    let ep = MockHttp::start("ep").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    std::fs::write(&file, config("{ address: 127.0.0.1:0 }", ep.addr())).unwrap();
    let weir = Weir::start_file(&file).await.unwrap();
    let admin = weir.admin_addr().unwrap();
    let reload = format!("http://{admin}/reload");
    let drain = format!("http://{admin}/clusters/c/endpoints/{}/drain", ep.addr());

    // No token yet: anyone may reload; the reload adds one.
    let with_first = config(
        &format!("{{ address: 127.0.0.1:0, token: {FIRST} }}"),
        ep.addr(),
    );
    std::fs::write(&file, &with_first).unwrap();
    let r = post(&reload, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body.get("needs_restart").is_none(), "{body}");
    assert_eq!(post(&reload, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&drain, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&reload, Some(FIRST)).await.status, StatusCode::OK);

    // Changed: the old token no longer works, the new one does.
    std::fs::write(
        &file,
        config(
            &format!("{{ address: 127.0.0.1:0, token: {SECOND} }}"),
            ep.addr(),
        ),
    )
    .unwrap();
    assert_eq!(post(&reload, Some(FIRST)).await.status, StatusCode::OK);
    assert_eq!(
        post(&drain, Some(FIRST)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&reload, Some(FIRST)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(&drain, Some(SECOND)).await.status, StatusCode::OK);
    assert_eq!(post(&reload, Some(SECOND)).await.status, StatusCode::OK);
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turning_per_endpoint_off_removes_the_endpoint_series() {
    let ep = MockHttp::start("ep").await;
    let p = TestProxy::start(&config("{ address: 127.0.0.1:0 }", ep.addr())).await;
    let metrics = format!("http://{}/metrics", p.weir.admin_addr().unwrap());
    let client = h1_client();
    assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    let before = get(&client, &metrics, &[]).await.text();
    assert!(before.contains("weir_endpoint_requests_total{"), "{before}");

    let off = config(
        "{ address: 127.0.0.1:0, metrics: { per_endpoint: false } }",
        ep.addr(),
    );
    p.weir
        .reload(&weir_config::load_str(&off, "off.yaml").unwrap())
        .unwrap();
    let after = get(&client, &metrics, &[]).await.text();
    assert!(!after.contains("weir_endpoint_"), "{after}");
    assert!(
        after.contains("weir_cluster_"),
        "cluster series stay: {after}"
    );
}

/// Every line of the file at `path`, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_the_access_log_path_writes_the_next_lines_there() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let yaml = |path: &Path, fields: &str| {
        format!(
            "access_log: {{ path: {}, fields: [{fields}] }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - direct_response: {{ status: 200 }}
",
            path.display()
        )
    };
    let p = TestProxy::start(&yaml(&first, "path")).await;
    let client = h1_client();
    let written = |n: u64| {
        let log = p.proxy().access_log().unwrap();
        async move {
            assert!(wait_until(Duration::from_secs(10), || log.written() >= n).await);
            log.flush().await.unwrap();
        }
    };
    get(&client, &p.url("/one"), &[]).await;
    written(1).await;

    let next = weir_config::load_str(&yaml(&second, "path, status"), "b.yaml").unwrap();
    p.weir.reload(&next).unwrap();
    get(&client, &p.url("/two"), &[]).await;
    // The counters go on across the swap.
    written(2).await;

    let old: Vec<Value> = lines(&first);
    let new: Vec<Value> = lines(&second);
    assert_eq!(old, [serde_json::json!({ "path": "/one" })]);
    assert_eq!(new, [serde_json::json!({ "path": "/two", "status": 200 })]);
    assert_eq!(p.proxy().access_log().unwrap().dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_admin_address_is_reported_as_needing_a_restart() {
    let ep = MockHttp::start("ep").await;
    let p = TestProxy::start(&config("{ address: 127.0.0.1:0 }", ep.addr())).await;
    let admin = p.weir.admin_addr().unwrap();
    let moved = config("{ address: 127.0.0.1:1 }", ep.addr());
    let report = p
        .weir
        .reload(&weir_config::load_str(&moved, "moved.yaml").unwrap())
        .unwrap();
    assert_eq!(report.needs_restart.len(), 1, "{report:?}");
    assert!(
        report.needs_restart[0].contains("admin.address changed from 127.0.0.1:0 to 127.0.0.1:1"),
        "{report:?}"
    );
    // Still served where it was.
    let ready = get(&h1_client(), &format!("http://{admin}/ready"), &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
}

/// A reload whose config drops `admin:` (or just its `token`) cannot open the admin API, which
/// stays bound: the last token stays in force, the reload says so in `needs_restart`, and a
/// later reload that sets a token again changes it as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_admin_or_its_token_keeps_the_last_token_in_force() {
    let ep = MockHttp::start("ep").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    let with = |token: &str| {
        config(
            &format!("{{ address: 127.0.0.1:0, token: {token} }}"),
            ep.addr(),
        )
    };
    std::fs::write(&file, with(FIRST)).unwrap();
    let weir = Weir::start_file(&file).await.unwrap();
    let admin = weir.admin_addr().unwrap();
    let reload = format!("http://{admin}/reload");
    let drain = format!("http://{admin}/clusters/c/endpoints/{}/drain", ep.addr());
    let undrain = drain.replace("/drain", "/undrain");

    let without_admin = config("{}", ep.addr()).replace("admin: {}\n", "");
    let without_token = config("{ address: 127.0.0.1:0 }", ep.addr());
    for (what, yaml) in [("admin:", &without_admin), ("token", &without_token)] {
        std::fs::write(&file, yaml).unwrap();
        let r = post(&reload, Some(FIRST)).await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let notes = body["needs_restart"].to_string();
        assert!(
            notes.contains("admin.token removed: the admin API keeps requiring the last token"),
            "{what}: {body}"
        );
        // Still guarded, by the same token.
        assert_eq!(post(&reload, None).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(post(&drain, None).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(post(&undrain, None).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            post(&drain, Some(SECOND)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(post(&drain, Some(FIRST)).await.status, StatusCode::OK);
        assert_eq!(post(&undrain, Some(FIRST)).await.status, StatusCode::OK);
        // The rest of the reload applied: `/config` shows the new admin block.
        let shown = get(&h1_client(), &format!("http://{admin}/config"), &[])
            .await
            .text();
        assert!(!shown.contains("<redacted>"), "{what}: {shown}");
    }

    // An explicit new token applies, as any token change does.
    std::fs::write(&file, with(SECOND)).unwrap();
    let r = post(&reload, Some(FIRST)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body.get("needs_restart").is_none(), "{body}");
    assert_eq!(
        post(&reload, Some(FIRST)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(&drain, Some(SECOND)).await.status, StatusCode::OK);
    assert_eq!(weir.reload_counts().applied, 3);
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}
