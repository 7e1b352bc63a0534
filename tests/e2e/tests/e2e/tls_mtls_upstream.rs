//! Client certificates on a TLS listener (refused without one when required; the verified
//! identity reaches the endpoint in a header no client can forge) and TLS from weir to the
//! endpoints (SNI, the cluster's CA, HTTP/2 by ALPN, 502 on a certificate weir cannot trust).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::rcgen::{DnType, SanType};
use weir_test_support::{MockHttp, TestCa};

use crate::tls_client::{Pki, connect, get1, h1};

/// Listeners `mtls` (client certificate required) and `optional` (asked for, not required),
/// both passing the identity in `x-client-cert-subject`, in front of `app`.
async fn mtls_setup() -> (Pki, MockHttp, TestProxy) {
    let pki = Pki::new();
    pki.server("site", "site", &["site.test"]);
    let ca = pki.ca_file().display().to_string();
    let app = MockHttp::start("app").await;
    let proxy = TestProxy::start(&format!(
        "listeners:
  - name: mtls
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls:
      certificates: [ {site} ]
      client_auth: {{ ca: \"{ca}\" }}
      client_cert_header: x-client-cert-subject
  - name: optional
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls:
      certificates: [ {site} ]
      client_auth: {{ ca: \"{ca}\", required: false }}
      client_cert_header: x-client-cert-subject
clusters:
  - {{ name: app, endpoints: [ {} ] }}
",
        app.addr(),
        site = pki.entry("site"),
    ))
    .await;
    (pki, app, proxy)
}

#[tokio::test]
async fn a_required_client_certificate_is_enforced_and_its_identity_forwarded() {
    let (pki, _app, proxy) = mtls_setup().await;
    let addr = proxy.addr;

    // Without a certificate: TLS 1.3 lets the client finish first, so the refusal arrives as
    // the connection failing on first use.
    let refused = match connect(addr, "site.test", &pki.ca, &[b"http/1.1"], None).await {
        Err(_) => true,
        Ok(c) => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake::<
                _,
                http_body_util::Empty<bytes::Bytes>,
            >(hyper_util::rt::TokioIo::new(c.stream))
            .await
            .unwrap();
            let driver = tokio::spawn(conn);
            let req = http::Request::get("/")
                .header("host", "site.test")
                .body(Default::default())
                .unwrap();
            let failed = sender.send_request(req).await.is_err();
            driver.abort();
            failed
        }
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate from another CA is refused the same way.
    let stranger = TestCa::new().issue_client("mallory", &["mallory.test"], &[]);
    let c = connect(addr, "site.test", &pki.ca, &[b"http/1.1"], Some(&stranger)).await;
    let refused = match c {
        Err(_) => true,
        Ok(c) => get1(&mut h1(c.stream).await, "site.test", "/", &[])
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA was accepted");

    // A valid certificate: the endpoint sees the verified identity (the whole subject and
    // every SAN), never the forged one.
    let client = pki.ca.issue_client_with(
        &[
            (DnType::OrganizationName, "Weir Test"),
            (DnType::OrganizationalUnitName, "edge"),
            (DnType::CommonName, "client-1"),
        ],
        vec![
            SanType::URI("spiffe://weir.test/client-1".try_into().unwrap()),
            SanType::DnsName("client1.test".try_into().unwrap()),
            SanType::IpAddress("10.1.2.3".parse().unwrap()),
            SanType::Rfc822Name("client@weir.test".try_into().unwrap()),
        ],
    );
    let c = connect(addr, "site.test", &pki.ca, &[b"http/1.1"], Some(&client))
        .await
        .unwrap();
    let mut s = h1(c.stream).await;
    let r = get1(
        &mut s,
        "site.test",
        "/headers",
        &[("x-client-cert-subject", "CN=admin")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r
        .body
        .lines()
        .filter(|l| l.starts_with("x-client-cert-subject:"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "x-client-cert-subject: Subject=\"CN=client-1,OU=edge,O=Weir Test\";URI=spiffe://weir.test/client-1;DNS=client1.test;IP=10.1.2.3;Email=client@weir.test"
        ],
        "{}",
        r.body
    );
}

#[tokio::test]
async fn an_optional_client_certificate_still_strips_the_identity_header() {
    let (pki, _app, proxy) = mtls_setup().await;
    let optional = proxy.proxy().listener_addr("optional").unwrap();
    let c = connect(optional, "site.test", &pki.ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    let mut s = h1(c.stream).await;
    let r = get1(
        &mut s,
        "site.test",
        "/headers",
        &[("x-client-cert-subject", "CN=admin")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("x-client-cert-subject"), "{}", r.body);

    let client = pki.ca.issue_client("client-2", &[], &[]);
    let c = connect(
        optional,
        "site.test",
        &pki.ca,
        &[b"http/1.1"],
        Some(&client),
    )
    .await
    .unwrap();
    let r = get1(&mut h1(c.stream).await, "site.test", "/headers", &[])
        .await
        .unwrap();
    assert!(
        r.body
            .contains("x-client-cert-subject: Subject=\"CN=client-2\"\n"),
        "{}",
        r.body
    );
}

/// A proxy on plain HTTP in front of `ep` over TLS with `tls` as the cluster's TLS block.
async fn upstream_proxy(ep: &MockHttp, protocol: &str, tls: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: secure }} ]
clusters:
  - name: secure
    protocol: {protocol}
    tls: {tls}
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await
}

#[tokio::test]
async fn endpoints_over_tls_with_sni_the_clusters_ca_and_alpn() {
    let pki = Pki::new();
    let issued = pki.ca.issue_pem("api", &["api.internal"]);
    let ep = MockHttp::builder("secure-ep")
        .tls(issued.server_config(&[b"h2", b"http/1.1"]))
        .start()
        .await;
    let ca = pki.ca_file().display().to_string();
    let client = h1_client();
    for (protocol, version) in [("http1", "HTTP/1.1"), ("http2", "HTTP/2.0")] {
        let p = upstream_proxy(
            &ep,
            protocol,
            &format!("{{ sni: api.internal, ca: \"{ca}\" }}"),
        )
        .await;
        for _ in 0..2 {
            let r = get(&client, &p.url("/headers"), &[]).await;
            assert_eq!(r.status, 200, "{protocol}: {}", r.text());
            assert_eq!(r.header("x-endpoint"), "secure-ep");
            assert_eq!(r.header("x-seen-sni"), "api.internal", "SNI sent");
            assert_eq!(r.header("x-seen-version"), version, "ALPN for {protocol}");
        }
    }
}

#[tokio::test]
async fn an_untrusted_or_misnamed_endpoint_certificate_is_a_502() {
    let pki = Pki::new();
    let issued = pki.ca.issue_pem("api", &["api.internal"]);
    let ep = MockHttp::builder("secure-ep")
        .tls(issued.server_config(&[b"http/1.1"]))
        .start()
        .await;
    let client = h1_client();

    let other = Pki::new();
    let wrong_ca = other.ca_file().display().to_string();
    let p = upstream_proxy(
        &ep,
        "http1",
        &format!("{{ sni: api.internal, ca: \"{wrong_ca}\" }}"),
    )
    .await;
    assert_eq!(get(&client, &p.url("/"), &[]).await.status, 502);

    let ca = pki.ca_file().display().to_string();
    let p = upstream_proxy(
        &ep,
        "http1",
        &format!("{{ sni: other.internal, ca: \"{ca}\" }}"),
    )
    .await;
    assert_eq!(
        get(&client, &p.url("/"), &[]).await.status,
        502,
        "name not on the certificate"
    );

    // Neither do the default roots (the system store) nor Mozilla's compiled-in list.
    for tls in [
        "{ sni: api.internal }",
        "{ sni: api.internal, roots: webpki }",
    ] {
        let p = upstream_proxy(&ep, "http1", tls).await;
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 502, "{tls}");
    }

    // insecure_skip_verify accepts it (tests only).
    let p = upstream_proxy(
        &ep,
        "http1",
        "{ sni: api.internal, insecure_skip_verify: true }",
    )
    .await;
    assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
}
