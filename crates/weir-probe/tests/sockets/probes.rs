//! One probe of each kind against the mocks: what passes, what fails and the detail it reports.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use weir_config::{HealthCheckConfig, HttpCheckConfig, StatusRange, UpstreamProtocol};
use weir_probe::{ProbeResult, probe};
use weir_test_support::{GrpcHealth, MockHttp, MockTcp, MockUdp};

use crate::config;

const PROTOCOLS: [UpstreamProtocol; 2] = [UpstreamProtocol::Http1, UpstreamProtocol::Http2];

async fn run(config: &HealthCheckConfig, addr: SocketAddr) -> ProbeResult {
    probe(config, UpstreamProtocol::Http1, addr).await
}

#[track_caller]
fn passes(result: &ProbeResult, detail: &str) {
    assert!(result.success, "expected a pass, got {result:?}");
    assert_eq!(result.detail, detail);
}

#[track_caller]
fn fails(result: &ProbeResult, detail: &str) {
    assert!(!result.success, "expected a failure, got {result:?}");
    assert_eq!(result.detail, detail);
}

/// A UDP address nothing listens on (bound and released).
fn udp_refusing_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn http_probe_passes_on_healthz_and_fails_on_a_bad_status() {
    let mock = MockHttp::start("alpha").await;
    let check = config::http(HttpCheckConfig::default());
    for protocol in PROTOCOLS {
        passes(&probe(&check, protocol, mock.addr()).await, "200 OK");
        mock.set_fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
        let result = probe(&check, protocol, mock.addr()).await;
        fails(&result, "status 503 not in [200-399]");
        mock.set_fail_with(None);
        passes(&probe(&check, protocol, mock.addr()).await, "200 OK");
    }
    assert_eq!(mock.requests(), 6);
    assert_eq!(mock.connections(), 6, "one fresh connection per probe");
}

#[tokio::test]
async fn http_probe_matches_statuses_and_body() {
    let mock = MockHttp::start("alpha").await;
    for protocol in PROTOCOLS {
        let mut http = HttpCheckConfig {
            body_contains: Some("ok".to_owned()),
            ..HttpCheckConfig::default()
        };
        passes(
            &probe(&config::http(http.clone()), protocol, mock.addr()).await,
            "200 OK",
        );
        http.body_contains = Some("nope".to_owned());
        let result = probe(&config::http(http), protocol, mock.addr()).await;
        fails(&result, "body does not contain \"nope\"");

        let http = HttpCheckConfig {
            path: "/status/204".to_owned(),
            expected_statuses: vec![StatusRange {
                start: 204,
                end: 204,
            }],
            ..HttpCheckConfig::default()
        };
        let result = probe(&config::http(http), protocol, mock.addr()).await;
        passes(&result, "204 No Content");

        let http = HttpCheckConfig {
            path: "/status/302".to_owned(),
            expected_statuses: vec![
                StatusRange {
                    start: 200,
                    end: 200,
                },
                StatusRange {
                    start: 500,
                    end: 599,
                },
            ],
            ..HttpCheckConfig::default()
        };
        let result = probe(&config::http(http), protocol, mock.addr()).await;
        fails(&result, "status 302 not in [200, 500-599]");
    }
}

#[tokio::test]
async fn http_probe_sends_host_user_agent_and_connection_close() {
    let mock = MockHttp::start("alpha").await;
    let wants = |protocol, host: Option<&str>, text: &str| {
        let http = HttpCheckConfig {
            path: "/headers".to_owned(),
            method: "POST".to_owned(),
            host: host.map(str::to_owned),
            body_contains: Some(text.to_owned()),
            ..HttpCheckConfig::default()
        };
        let config = config::http(http);
        let addr = mock.addr();
        async move { probe(&config, protocol, addr).await }
    };
    let h1 = UpstreamProtocol::Http1;
    let default_host = format!("host: {}", mock.addr());
    passes(&wants(h1, None, &default_host).await, "200 OK");
    passes(
        &wants(h1, Some("health.test"), "host: health.test").await,
        "200 OK",
    );
    passes(
        &wants(h1, None, "user-agent: weir-health-check").await,
        "200 OK",
    );
    passes(&wants(h1, None, "connection: close").await, "200 OK");
    let h2 = UpstreamProtocol::Http2;
    passes(
        &wants(h2, None, "user-agent: weir-health-check").await,
        "200 OK",
    );

    // A method that is no HTTP token is refused before anything is sent.
    let sent = mock.requests();
    let bad = HttpCheckConfig {
        method: "G E T".to_owned(),
        ..HttpCheckConfig::default()
    };
    let result = run(&config::http(bad), mock.addr()).await;
    assert!(!result.success);
    assert!(result.detail.starts_with("invalid method"), "{result:?}");
    assert_eq!(mock.requests(), sent);
}

#[tokio::test]
async fn http_probe_reports_refused_connections_and_timeouts() {
    let check = config::http(HttpCheckConfig::default());
    fails(
        &run(&check, MockTcp::refusing_addr()).await,
        "connection refused",
    );

    let blackhole = MockTcp::blackhole().await;
    let check = config::with_timeout(check, Duration::from_millis(100));
    for protocol in PROTOCOLS {
        let result = probe(&check, protocol, blackhole.addr()).await;
        fails(&result, "timed out after 100ms");
        assert!(result.latency >= Duration::from_millis(100));
    }
}

#[tokio::test]
async fn tcp_probe_connects_and_matches_replies() {
    let echo = MockTcp::echo().await;
    passes(
        &run(&config::tcp(None, None), echo.addr()).await,
        "connected",
    );
    let ping = config::tcp(Some("PING\r\n"), Some("PING"));
    passes(&run(&ping, echo.addr()).await, "reply contains \"PING\"");

    let pong = config::with_timeout(
        config::tcp(Some("PING\r\n"), Some("PONG")),
        Duration::from_millis(100),
    );
    fails(
        &run(&pong, echo.addr()).await,
        "reply does not contain \"PONG\"",
    );

    let refused = run(&config::tcp(None, None), MockTcp::refusing_addr()).await;
    fails(&refused, "connection refused");

    let blackhole = MockTcp::blackhole().await;
    let silent = config::with_timeout(
        config::tcp(Some("PING"), Some("PONG")),
        Duration::from_millis(100),
    );
    fails(
        &run(&silent, blackhole.addr()).await,
        "timed out after 100ms",
    );
}

#[tokio::test]
async fn udp_probe_sends_and_matches_the_reply() {
    let echo = MockUdp::echo("udp").await;
    passes(
        &run(&config::udp("PING", None), echo.addr()).await,
        "reply of 4 bytes",
    );
    let ping = config::udp("PING", Some("PING"));
    passes(&run(&ping, echo.addr()).await, "reply contains \"PING\"");
    let pong = config::udp("PING", Some("PONG"));
    fails(
        &run(&pong, echo.addr()).await,
        "reply does not contain \"PONG\"",
    );
    assert_eq!(echo.datagrams(), 3);

    let refused = run(&config::udp("PING", None), udp_refusing_addr()).await;
    fails(&refused, "connection refused");
}

#[tokio::test]
async fn udp_probe_times_out_without_a_reply() {
    // A bound socket that never answers: no ICMP error, no reply.
    let silent = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let check = config::with_timeout(config::udp("PING", None), Duration::from_millis(100));
    let result = run(&check, silent.local_addr().unwrap()).await;
    fails(&result, "timed out after 100ms");
}

#[tokio::test]
async fn grpc_probe_reports_the_serving_status() {
    let server = GrpcHealth::start().await;
    let whole = config::grpc("", None);
    passes(&run(&whole, server.addr()).await, "grpc status SERVING");
    let named = config::grpc(GrpcHealth::SERVICE, Some("health.test"));
    passes(&run(&named, server.addr()).await, "grpc status SERVING");

    server.set_serving(GrpcHealth::SERVICE, false).await;
    fails(&run(&named, server.addr()).await, "grpc status NOT_SERVING");
    passes(&run(&whole, server.addr()).await, "grpc status SERVING");
    server.set_serving("", false).await;
    fails(&run(&whole, server.addr()).await, "grpc status NOT_SERVING");

    let unknown = run(&config::grpc("no.such.Service", None), server.addr()).await;
    assert!(!unknown.success);
    assert!(
        unknown.detail.starts_with("grpc error NotFound"),
        "{unknown:?}"
    );

    let refused = run(&whole, MockTcp::refusing_addr()).await;
    fails(&refused, "connection refused");
}
