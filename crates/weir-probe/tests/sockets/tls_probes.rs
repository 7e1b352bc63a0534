//! HTTP and gRPC probes over TLS (`probe_tls`), as a cluster with upstream `tls:` runs them:
//! a gRPC health service that speaks only TLS with ALPN `h2` passes, and a CA that did not
//! sign the endpoint's certificate fails the probe with the handshake's reason.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsAcceptor;
use tonic_health::ServingStatus;
use tower::Service;
use weir_config::UpstreamProtocol;
use weir_probe::{ProbeTls, probe_tls};
use weir_test_support::{MockHttp, TestCa};

use crate::config;

/// A `grpc.health.v1.Health` server speaking only TLS (ALPN `h2`) with a certificate for
/// `grpc.test` from `ca`; the reporter sets what it answers.
async fn tls_grpc_health(ca: &TestCa) -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let acceptor = TlsAcceptor::from(ca.issue_pem("grpc", &["grpc.test"]).server_config(&[b"h2"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, service) = (acceptor.clone(), service.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let handler = hyper::service::service_fn(move |req| {
                    let mut service = service.clone();
                    async move { service.call(req).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), handler)
                    .await;
            });
        }
    });
    (addr, reporter)
}

fn tls_for(ca: &TestCa, name: &str) -> ProbeTls {
    ProbeTls::new(
        Arc::new(ArcSwap::new(ca.client_config())),
        Some(ServerName::try_from(name.to_owned()).unwrap()),
    )
}

#[tokio::test]
async fn grpc_probe_runs_over_tls_with_h2() {
    let ca = TestCa::new();
    let (addr, reporter) = tls_grpc_health(&ca).await;
    let check = config::grpc("", None);
    let tls = tls_for(&ca, "grpc.test");
    // The cluster speaks HTTP/1.1 to its endpoints; the gRPC probe still offers h2.
    let r = probe_tls(&check, UpstreamProtocol::Http1, &tls, addr).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.detail, "grpc status SERVING");

    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let r = probe_tls(&check, UpstreamProtocol::Http1, &tls, addr).await;
    assert!(!r.success);
    assert_eq!(r.detail, "grpc status NOT_SERVING");

    let wrong = tls_for(&TestCa::new(), "grpc.test");
    let r = probe_tls(&check, UpstreamProtocol::Http2, &wrong, addr).await;
    assert!(!r.success);
    assert!(
        r.detail
            .starts_with("TLS handshake failed: invalid peer certificate"),
        "{r:?}"
    );
}

#[tokio::test]
async fn http_probe_runs_over_tls_for_either_protocol() {
    let ca = TestCa::new();
    let ep = MockHttp::builder("secure")
        .tls(
            ca.issue_pem("api", &["api.test"])
                .server_config(&[b"h2", b"http/1.1"]),
        )
        .start()
        .await;
    let check = config::http(weir_config::HttpCheckConfig::default());
    for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::Http2] {
        let r = probe_tls(&check, protocol, &tls_for(&ca, "api.test"), ep.addr()).await;
        assert!(r.success, "{protocol:?}: {r:?}");
        assert_eq!(r.detail, "200 OK");
    }
    // Plain HTTP gets nowhere with a TLS-only endpoint.
    let plain = weir_probe::probe(&check, UpstreamProtocol::Http1, ep.addr()).await;
    assert!(!plain.success, "{plain:?}");
}
