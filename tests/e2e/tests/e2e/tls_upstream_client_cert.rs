//! Upstream mTLS end to end: an endpoint that requires a client certificate (verified against
//! its own CA) is reached when the cluster names a `client_cert`, refused (502) when it does
//! not, and a client certificate rotated on disk is what new connections present.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, TestCa};

use crate::tls_client::Pki;

/// A proxy on plain HTTP in front of `ep` over TLS with `tls` as the cluster's TLS block;
/// idle upstream connections close after 100 ms so that later requests open new ones.
async fn proxy(ep: &MockHttp, tls: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: secure }} ]
clusters:
  - name: secure
    pool_idle_timeout: 100ms
    tls: {tls}
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_presents_its_client_certificate_and_rotates_it() {
    let pki = Pki::new();
    // The endpoint trusts client certificates of its own CA only.
    let clients = TestCa::new();
    let ep = MockHttp::builder("mtls-ep")
        .tls(
            pki.ca
                .issue_pem("api", &["api.internal"])
                .mtls_server_config(&clients, &[b"http/1.1"]),
        )
        .start()
        .await;
    let ca = pki.ca_file().display().to_string();
    let dir = pki.dir.path();
    let (cert, key) = clients
        .issue_client("weir-1", &["weir.test"], &[])
        .write(dir, "weir");
    let client = h1_client();

    // Without a client certificate the endpoint refuses the handshake: 502.
    let p = proxy(&ep, &format!("{{ sni: api.internal, ca: \"{ca}\" }}")).await;
    let r = get(&client, &p.url("/"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(ep.requests(), 0, "no request reached the endpoint");

    // With one, it is served and saw weir's certificate.
    let p = proxy(
        &ep,
        &format!(
            "{{ sni: api.internal, ca: \"{ca}\", client_cert: {{ cert: \"{}\", key: \"{}\" }} }}",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let r = get(&client, &p.url("/"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-seen-client-subject"), "CN=weir-1");

    // Rotate the client certificate in place: new connections present the new one. Each try
    // waits out the pool's idle timeout, so that it opens a new connection.
    clients
        .issue_client("weir-2", &["weir.test"], &[])
        .write(dir, "weir");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.header("x-seen-client-subject") == "CN=weir-2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections did not present the rotated certificate"
        );
    }
    assert!(
        ep.connections() >= 2,
        "the rotation opened a new connection"
    );
}
