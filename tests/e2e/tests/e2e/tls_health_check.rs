//! Active health checks of a cluster with upstream `tls:` speak TLS, with the cluster's own
//! settings (SNI, CA, ALPN): a TLS-only endpoint passes an HTTP check over TLS (HTTP/1.1 and
//! HTTP/2 by ALPN), fails it when its `/healthz` fails, and a CA that does not sign the
//! endpoint's certificate fails the check with the handshake's reason in `/clusters`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use http::StatusCode;
use weir_core::Unhealthy;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, wait_until};

use crate::tls_client::Pki;

const SECS_10: Duration = Duration::from_secs(10);

fn config(protocol: &str, ca: &str, endpoint: std::net::SocketAddr) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    protocol: {protocol}
    tls: {{ sni: api.internal, ca: \"{ca}\" }}
    health_check:
      interval: 50ms
      timeout: 2s
      healthy_threshold: 1
      unhealthy_threshold: 2
      start_healthy: false
      http: {{ path: /healthz, body_contains: ok }}
    endpoints: [ {endpoint} ]
"
    )
}

/// The last check of the endpoint as `GET /clusters/c` shows it: success and detail.
async fn last_check(p: &TestProxy) -> (bool, String) {
    let admin = p.weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/clusters/c"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let check = &v["endpoints"][0]["active_check"];
    (
        check["success"].as_bool().unwrap_or(false),
        check["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

fn healthy(p: &TestProxy) -> bool {
    p.proxy().snapshots().load().cluster("c").unwrap().endpoints[0]
        .state
        .health()
        .is_healthy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_runs_over_the_clusters_tls() {
    let pki = Pki::new();
    let issued = pki.ca.issue_pem("api", &["api.internal"]);
    // TLS only: a plaintext probe gets no answer from it.
    let ep = MockHttp::builder("secure")
        .tls(issued.server_config(&[b"h2", b"http/1.1"]))
        .start()
        .await;
    let ca = pki.ca_file().display().to_string();
    for protocol in ["http1", "http2"] {
        let p = TestProxy::start(&config(protocol, &ca, ep.addr())).await;
        assert!(wait_until(SECS_10, || healthy(&p)).await, "{protocol}");
        assert_eq!(
            last_check(&p).await,
            (true, "200 OK".to_owned()),
            "{protocol}"
        );
        assert_eq!(get(&h1_client(), &p.url("/"), &[]).await.status, 200);

        ep.set_fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
        let out = || {
            p.proxy().snapshots().load().cluster("c").unwrap().endpoints[0]
                .state
                .health()
                .contains(Unhealthy::ActiveCheck)
        };
        assert!(wait_until(SECS_10, out).await, "{protocol}");
        let (success, detail) = last_check(&p).await;
        assert!(!success);
        assert_eq!(detail, "status 503 not in [200-399]", "{protocol}");
        ep.set_fail_with(None);
        assert!(
            wait_until(SECS_10, || healthy(&p)).await,
            "{protocol}: back"
        );
        p.weir.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_the_check_with_the_handshake_reason() {
    let pki = Pki::new();
    let issued = pki.ca.issue_pem("api", &["api.internal"]);
    let ep = MockHttp::builder("secure")
        .tls(issued.server_config(&[b"http/1.1"]))
        .start()
        .await;
    let other = Pki::new();
    let wrong_ca = other.ca_file().display().to_string();
    let p = TestProxy::start(&config("http1", &wrong_ca, ep.addr())).await;
    let failed = wait_until(SECS_10, || {
        let snapshot = p.proxy().snapshots().load();
        let state = &snapshot.cluster("c").unwrap().endpoints[0].state;
        state.check.last().is_some_and(|l| !l.success)
    })
    .await;
    assert!(failed, "the check never failed");
    assert!(!healthy(&p));
    // The reason, as `/clusters` shows it: the certificate was not trusted (the test CAs
    // share a name, so rustls reports the signature that does not verify).
    let (success, detail) = last_check(&p).await;
    assert!(!success);
    assert!(
        detail.starts_with("TLS handshake failed: invalid peer certificate"),
        "{detail}"
    );
    assert_eq!(ep.requests(), 0, "no request got through");
}
