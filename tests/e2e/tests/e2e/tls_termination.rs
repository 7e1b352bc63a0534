//! TLS termination on an HTTP listener: real curl and a rustls client over HTTPS, HTTP/2 chosen
//! by ALPN, certificates chosen by SNI (curl and rustls), session resumption (TLS 1.3 tickets,
//! TLS 1.2 tickets and session IDs) and certificate errors at load. Rotation is in
//! `tls_rotation`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use rustls::client::Tls12Resumption;
use weir_e2e::TestProxy;
use weir_test_support::MockHttp;

use crate::tls_client::{Client, Pki, common_name, connect, curl, get1, get2, h1, h2, try_curl};

/// Certificates: `default` (CN default, default.test), `a` (a.test), `b` (*.b.test, named
/// explicitly); a listener `https` serving them in front of `app`.
async fn setup() -> (Pki, MockHttp, TestProxy) {
    let pki = Pki::new();
    pki.server("default", "default", &["default.test"]);
    pki.server("a", "a", &["a.test"]);
    pki.server("b", "b", &["*.b.test"]);
    let app = MockHttp::start("app").await;
    let b = pki.path("b");
    let proxy = TestProxy::start(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls:
      certificates:
        - {}
        - {}
        - {{ cert: \"{b}.pem\", key: \"{b}.key\", server_names: [ \"*.b.test\" ] }}
clusters:
  - {{ name: app, endpoints: [ {} ] }}
",
        pki.entry("default"),
        pki.entry("a"),
        app.addr()
    ))
    .await;
    (pki, app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_http2_by_alpn_and_http11_when_asked() {
    let (pki, _app, proxy) = setup().await;
    let ca = pki.ca_file();
    let port = proxy.addr.port();

    let out = curl(&ca, "a.test", port, &["--http2"]).await;
    assert!(out.ends_with("\n2"), "HTTP/2 chosen by ALPN: {out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    assert!(out.contains("host: a.test:"), "{out}");

    let out = curl(&ca, "a.test", port, &["--http1.1"]).await;
    assert!(out.ends_with("\n1.1"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");

    // The wildcard certificate verifies for curl too.
    let out = curl(&ca, "x.b.test", port, &[]).await;
    assert!(out.ends_with("\n2"), "{out}");
}

#[tokio::test]
async fn a_rustls_client_speaks_both_protocols() {
    let (pki, _app, proxy) = setup().await;
    let c = connect(proxy.addr, "a.test", &pki.ca, &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(c.stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut s = h2(c.stream).await;
    let r = get2(&mut s, "a.test", "/").await.unwrap();
    assert_eq!((r.status.as_u16(), r.version), (200, http::Version::HTTP_2));
    assert_eq!(r.body, "app");

    let c = connect(proxy.addr, "a.test", &pki.ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(c.stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut s = h1(c.stream).await;
    for _ in 0..3 {
        let r = get1(&mut s, "a.test", "/", &[]).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.version),
            (200, http::Version::HTTP_11)
        );
        assert_eq!(r.header_value("x-seen-version"), "HTTP/1.1");
    }

    // No ALPN at all: hyper's auto server still serves HTTP/1.1.
    let c = connect(proxy.addr, "a.test", &pki.ca, &[], None)
        .await
        .unwrap();
    let mut s = h1(c.stream).await;
    assert_eq!(get1(&mut s, "a.test", "/", &[]).await.unwrap().status, 200);
}

#[tokio::test]
async fn sessions_resume_with_tickets() {
    let (pki, _app, proxy) = setup().await;
    let client = Client::new(&pki.ca, &[b"http/1.1"], None);
    let first = client.connect(proxy.addr, "a.test").await.unwrap();
    assert_eq!(
        first.stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // TLS 1.3 tickets arrive after the handshake: one exchange reads them.
    let mut s = h1(first.stream).await;
    assert_eq!(get1(&mut s, "a.test", "/", &[]).await.unwrap().status, 200);
    let second = client.connect(proxy.addr, "a.test").await.unwrap();
    assert_eq!(
        second.stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let mut s = h1(second.stream).await;
    assert_eq!(get1(&mut s, "a.test", "/", &[]).await.unwrap().status, 200);
}

#[tokio::test]
async fn tls_1_2_sessions_resume_by_ticket_and_by_session_id() {
    let (pki, _app, proxy) = setup().await;
    for how in [
        Tls12Resumption::SessionIdOrTickets,
        Tls12Resumption::SessionIdOnly,
    ] {
        let client = Client::tls12(&pki.ca, &[b"http/1.1"], how);
        let first = client.connect(proxy.addr, "a.test").await.unwrap();
        let conn = first.stream.get_ref().1;
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let mut s = h1(first.stream).await;
        assert_eq!(get1(&mut s, "a.test", "/", &[]).await.unwrap().status, 200);
        let second = client.connect(proxy.addr, "a.test").await.unwrap();
        assert_eq!(
            second.stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{how:?}"
        );
        let mut s = h1(second.stream).await;
        assert_eq!(get1(&mut s, "a.test", "/", &[]).await.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_an_unknown_sni_gets_the_default_certificate() {
    let (_pki, _app, proxy) = setup().await;
    let port = proxy.addr.port();
    for (name, cn) in [("unknown.test", "default"), ("a.test", "a")] {
        // -k: the default certificate does not cover the unknown name; -v shows which one
        // curl was served.
        let out = tokio::process::Command::new("curl")
            .args(["-sSvk", "--max-time", "10", "-o", "/dev/null", "--resolve"])
            .arg(format!("{name}:{port}:127.0.0.1"))
            .arg(format!("https://{name}:{port}/"))
            .output()
            .await
            .expect("curl runs (scripts/test installs it)");
        let verbose = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{verbose}");
        let subject = verbose
            .lines()
            .find_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix("subject: "))
            .unwrap_or_else(|| panic!("no subject in curl -v output:\n{verbose}"));
        assert_eq!(subject.trim(), format!("CN={cn}"), "SNI {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    let pki = Pki::new();
    pki.server("site", "site", &["site.test"]);
    let ca = pki.ca_file();
    let proxy = TestProxy::start(&format!(
        "listeners:
  - name: strict
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
    tls: {{ certificates: [ {site} ], min_version: \"1.3\" }}
  - name: default
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
    tls: {{ certificates: [ {site} ] }}
",
        site = pki.entry("site")
    ))
    .await;
    let strict = proxy.proxy().listener_addr("strict").unwrap().port();
    let default = proxy.proxy().listener_addr("default").unwrap().port();
    let tls12 = ["--tlsv1.2", "--tls-max", "1.2"];
    let refused = try_curl(&ca, "site.test", strict, &tls12).await;
    assert!(refused.is_err(), "TLS 1.2 accepted: {refused:?}");
    assert!(try_curl(&ca, "site.test", default, &tls12).await.is_ok());
    assert!(curl(&ca, "site.test", strict, &[]).await.starts_with("ok"));
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_with_a_default() {
    let (pki, _app, proxy) = setup().await;
    for (sni, cn) in [
        ("a.test", "a"),
        ("A.Test", "a"),
        ("x.b.test", "b"),
        ("default.test", "default"),
        // Unknown names, and a wildcard's deeper subdomain, get the default certificate.
        ("unknown.test", "default"),
        ("y.x.b.test", "default"),
    ] {
        let c = connect(proxy.addr, sni, &pki.ca, &[b"h2"], None)
            .await
            .unwrap();
        assert_eq!(common_name(&c.served), cn, "SNI {sni}");
    }
}

#[tokio::test]
async fn bad_certificates_are_refused_at_load_naming_the_file() {
    let pki = Pki::new();
    pki.ca
        .issue_expired("old", &["old.test"])
        .write(pki.dir.path(), "old");
    let (_, good) = pki.server("good", "good", &["good.test"]);
    let (_, other) = pki.server("other", "other", &["other.test"]);
    std::fs::write(format!("{good}.txt"), "not a certificate").unwrap();
    let start = |cert: String, key: String, names: &str| {
        let yaml = format!(
            "listeners:
  - name: https
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200 }} }} ]
    tls:
      certificates: [ {{ cert: \"{cert}\", key: \"{key}\"{names} }} ]
"
        );
        async move {
            let config = weir_config::load_str(&yaml, "tls.yaml").unwrap();
            match weir::Weir::start(&config).await {
                Ok(_) => panic!("weir started with a bad certificate"),
                Err(e) => format!("{e:#}"),
            }
        }
    };
    let old = pki.path("old");
    let e = start(format!("{old}.pem"), format!("{old}.key"), "").await;
    assert!(e.contains(&format!("{old}.pem")), "{e}");
    assert!(e.contains("expired"), "{e}");
    assert!(e.contains("listeners[0].tls.certificates[0].cert"), "{e}");

    let e = start(format!("{good}.pem"), format!("{other}.key"), "").await;
    assert!(e.contains("does not match"), "{e}");
    assert!(e.contains("listeners[0].tls.certificates[0].key"), "{e}");
    assert!(e.contains(&format!("{other}.key")), "{e}");

    let e = start(format!("{good}.txt"), format!("{good}.key"), "").await;
    assert!(e.contains("holds no certificate"), "{e}");

    let e = start(format!("{good}.pem"), format!("{good}.pem"), "").await;
    assert!(e.contains("holds no private key"), "{e}");

    let e = start(format!("{good}.pem"), format!("{good}.missing"), "").await;
    assert!(
        e.contains("cannot read") && e.contains("good.missing"),
        "{e}"
    );

    let e = start(
        format!("{good}.pem"),
        format!("{good}.key"),
        ", server_names: [ api.test ]",
    )
    .await;
    assert!(e.contains("does not cover server name \"api.test\""), "{e}");
}
