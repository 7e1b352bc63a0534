//! `HealthChecker` following real endpoints: new endpoints come up on their first pass, go down
//! when their mock starts failing and come back when it recovers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use weir_config::{HealthCheckConfig, HttpCheckConfig, UpstreamProtocol};
use weir_core::{Endpoint, SystemClock, Unhealthy};
use weir_probe::{CheckTarget, HealthChecker};
use weir_test_support::{GrpcHealth, MockHttp, MockTcp, MockUdp, trace_init, wait_until};

use crate::config;

/// Upper bound for a condition that needs a few 50ms checks; only a stalled machine hits it.
const WAIT: Duration = Duration::from_secs(10);

/// An endpoint as the data plane adds it to a checked cluster: out until its first pass.
fn new_endpoint(addr: SocketAddr) -> Arc<Endpoint> {
    let endpoint = Endpoint::new(addr, 1);
    let _ = endpoint
        .state
        .set_unhealthy(Unhealthy::ActiveCheck, true, 1);
    Arc::new(endpoint)
}

fn target(
    cluster: &str,
    config: &HealthCheckConfig,
    protocol: UpstreamProtocol,
    endpoints: &[Arc<Endpoint>],
) -> CheckTarget {
    CheckTarget {
        tls: None,
        cluster: Arc::from(cluster),
        config: config.clone(),
        protocol,
        endpoints: endpoints.to_vec(),
    }
}

fn checker() -> HealthChecker {
    trace_init();
    HealthChecker::new(Arc::new(SystemClock))
}

fn is_down(endpoint: &Endpoint) -> bool {
    endpoint.state.health().contains(Unhealthy::ActiveCheck)
}

fn last_detail(endpoint: &Endpoint) -> String {
    endpoint
        .state
        .check
        .last()
        .map(|c| c.detail)
        .unwrap_or_default()
}

#[tokio::test]
async fn checker_follows_an_http_endpoint_down_and_up() {
    for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::Http2] {
        let mock = MockHttp::start("alpha").await;
        let endpoint = new_endpoint(mock.addr());
        let check = config::http(HttpCheckConfig::default());
        let mut checker = checker();
        checker.reconcile(vec![target(
            "web",
            &check,
            protocol,
            &[Arc::clone(&endpoint)],
        )]);
        assert_eq!(checker.len(), 1);

        assert!(wait_until(WAIT, || endpoint.state.is_healthy()).await);
        assert_eq!(last_detail(&endpoint), "200 OK");

        mock.set_fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(wait_until(WAIT, || is_down(&endpoint)).await);
        assert_eq!(last_detail(&endpoint), "status 503 not in [200-399]");

        mock.set_fail_with(None);
        assert!(wait_until(WAIT, || endpoint.state.is_healthy()).await);
        checker.shutdown();
    }
}

#[tokio::test]
async fn checker_follows_a_grpc_service_through_reconcile() {
    let server = GrpcHealth::start().await;
    let endpoint = new_endpoint(server.addr());
    let check = config::grpc(GrpcHealth::SERVICE, None);
    let targets = || {
        vec![target(
            "grpc",
            &check,
            UpstreamProtocol::Http2,
            &[Arc::clone(&endpoint)],
        )]
    };
    let mut checker = checker();
    checker.reconcile(targets());
    assert!(wait_until(WAIT, || endpoint.state.is_healthy()).await);

    server.set_serving(GrpcHealth::SERVICE, false).await;
    assert!(wait_until(WAIT, || is_down(&endpoint)).await);
    assert_eq!(last_detail(&endpoint), "grpc status NOT_SERVING");

    // A reload with the same cluster keeps the task; it keeps following the service.
    checker.reconcile(targets());
    assert_eq!(checker.len(), 1);
    server.set_serving(GrpcHealth::SERVICE, true).await;
    assert!(wait_until(WAIT, || endpoint.state.is_healthy()).await);
    assert_eq!(last_detail(&endpoint), "grpc status SERVING");

    // Removing the cluster stops checking it.
    checker.reconcile(Vec::new());
    assert!(checker.is_empty());
}

#[tokio::test]
async fn checker_brings_up_l4_endpoints_that_answer_and_keeps_refusing_ones_out() {
    let tcp = MockTcp::echo().await;
    let udp = MockUdp::echo("udp").await;
    let tcp_up = new_endpoint(tcp.addr());
    let tcp_refusing = new_endpoint(MockTcp::refusing_addr());
    let udp_up = new_endpoint(udp.addr());
    let tcp_check = config::tcp(Some("PING\r\n"), Some("PING"));
    let udp_check = config::udp("PING", Some("PING"));
    let mut checker = checker();
    checker.reconcile(vec![
        target(
            "tcp",
            &tcp_check,
            UpstreamProtocol::Http1,
            &[Arc::clone(&tcp_up), Arc::clone(&tcp_refusing)],
        ),
        target(
            "udp",
            &udp_check,
            UpstreamProtocol::Http1,
            &[Arc::clone(&udp_up)],
        ),
    ]);
    assert_eq!(checker.len(), 3);

    assert!(
        wait_until(WAIT, || tcp_up.state.is_healthy()
            && udp_up.state.is_healthy())
        .await
    );
    assert!(wait_until(WAIT, || tcp_refusing.state.check.counts().1 >= 2).await);
    assert!(is_down(&tcp_refusing));
    assert_eq!(last_detail(&tcp_refusing), "connection refused");
    assert_eq!(last_detail(&udp_up), "reply contains \"PING\"");
}
