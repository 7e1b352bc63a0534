//! CA files are watched like listener certificates: a listener's client CA (`client_auth.ca`)
//! and a cluster's `ca` rotated on disk while weir runs take effect within a second, without a
//! reload; a broken new file keeps the previous CA in use and is counted in `/metrics`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{Issued, MockHttp, TestCa, wait_until_async};

use crate::tls_client::{Pki, connect, get1, h1};

const SECS_10: Duration = Duration::from_secs(10);

/// Whether a request with client certificate `client` gets through the mTLS listener.
async fn accepted(addr: SocketAddr, pki: &Pki, client: &Issued) -> bool {
    let Ok(c) = connect(addr, "site.test", &pki.ca, &[b"http/1.1"], Some(client)).await else {
        return false;
    };
    let mut s = h1(c.stream).await;
    get1(&mut s, "site.test", "/", &[])
        .await
        .is_ok_and(|r| r.status == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_is_used_within_seconds() {
    let pki = Pki::new();
    pki.server("site", "site", &["site.test"]);
    let ca_file = pki.ca_file();
    let app = MockHttp::start("app").await;
    let proxy = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: mtls
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls:
      certificates: [ {site} ]
      client_auth: {{ ca: \"{ca}\" }}
clusters:
  - {{ name: app, endpoints: [ {app} ] }}
",
        site = pki.entry("site"),
        ca = ca_file.display(),
        app = app.addr(),
    ))
    .await;
    let addr = proxy.addr;
    let old_client = pki.ca.issue_client("old", &["old.test"], &[]);
    let new_ca = TestCa::new();
    let new_client = new_ca.issue_client("new", &["new.test"], &[]);
    assert!(accepted(addr, &pki, &old_client).await);
    assert!(!accepted(addr, &pki, &new_client).await);

    // Rotate: the client CA file now holds the new CA.
    new_ca.write_cert(&ca_file);
    assert!(
        wait_until_async(SECS_10, || accepted(addr, &pki, &new_client)).await,
        "the new CA's client was not accepted within 10 s"
    );
    assert!(
        !accepted(addr, &pki, &old_client).await,
        "the old CA is gone"
    );

    // A broken file keeps the CA that works, and is counted once it has had time to settle.
    let series = "weir_tls_certificate_reload_failures_total{listener=\"mtls\"}";
    assert_eq!(metric(&proxy, series).await, 0);
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let counted = wait_until_async(SECS_10, || async { metric(&proxy, series).await == 1 }).await;
    assert!(counted, "the broken client CA was not counted");
    assert!(accepted(addr, &pki, &new_client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_cluster_ca_is_used_within_seconds() {
    let pki = Pki::new();
    let ca_file = pki.ca_file();
    // The endpoint's certificate comes from a CA the cluster does not trust yet.
    let endpoint_ca = TestCa::new();
    let ep = MockHttp::builder("secure")
        .tls(
            endpoint_ca
                .issue_pem("api", &["api.internal"])
                .server_config(&[b"http/1.1"]),
        )
        .start()
        .await;
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: secure }} ]
clusters:
  - name: secure
    tls: {{ sni: api.internal, ca: \"{}\" }}
    endpoints: [ {} ]
",
        ca_file.display(),
        ep.addr()
    ))
    .await;
    let client = h1_client();
    assert_eq!(get(&client, &p.url("/"), &[]).await.status, 502);

    endpoint_ca.write_cert(&ca_file);
    let url = p.url("/");
    let served = wait_until_async(SECS_10, || {
        let (client, url) = (&client, &url);
        async move { get(client, url, &[]).await.status == 200 }
    })
    .await;
    assert!(served, "the rotated CA was not used within 10 s");

    // A broken CA file keeps the one that works and is counted for the cluster.
    let series = "weir_tls_upstream_reload_failures_total{cluster=\"secure\"}";
    assert_eq!(metric(&p, series).await, 0);
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let counted = wait_until_async(SECS_10, || async { metric(&p, series).await == 1 }).await;
    assert!(counted, "the broken cluster CA was not counted");
    assert_eq!(get(&client, &url, &[]).await.status, 200);
}

/// The value of one series in admin `/metrics`.
async fn metric(p: &TestProxy, series: &str) -> u64 {
    let admin = p.weir.admin_addr().unwrap();
    let text = get(&h1_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}
