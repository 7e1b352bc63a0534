//! Active health checks through a running weir (proxy + checker + admin API): an endpoint whose
//! `/healthz` fails is taken out and gets no requests until it passes again; UDP endpoints get
//! their health from a UDP probe; the admin API shows health and the last check. Real sockets and
//! short intervals; every wait is for a condition.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use tokio::net::UdpSocket;
use weir_core::{HealthFlags, Unhealthy};
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockUdp, wait_until};

const SECS_10: Duration = Duration::from_secs(10);

fn health(p: &TestProxy, i: usize) -> HealthFlags {
    p.proxy().snapshots().load().cluster("c").unwrap().endpoints[i]
        .state
        .health()
}

fn http_config(endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    health_check:
      interval: 50ms
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 3
      http: {{ path: /healthz, body_contains: ok }}
    endpoints: [ {} ]
",
        eps.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_healthz_takes_the_endpoint_out_until_it_passes_again() {
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let p = TestProxy::start(&http_config(&[a.addr(), b.addr()])).await;
    assert_eq!(p.weir.checked_endpoints(), 2);
    assert!(
        wait_until(SECS_10, || health(&p, 0).is_healthy()
            && health(&p, 1).is_healthy())
        .await
    );

    a.set_fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(wait_until(SECS_10, || health(&p, 0).contains(Unhealthy::ActiveCheck)).await);
    let snapshot = p.proxy().snapshots().load();
    let state = &snapshot.cluster("c").unwrap().endpoints[0].state;
    let (total, failed) = state.check.counts();
    assert!(
        failed >= 3 && total > failed,
        "{total} checks, {failed} failed"
    );
    let last = state.check.last().unwrap();
    assert!(!last.success);
    assert_eq!(last.detail, "status 503 not in [200-399]");

    // Taken out: every request goes to b.
    let client = h1_client();
    for _ in 0..20 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!((r.status, r.header("x-endpoint")), (StatusCode::OK, "b"));
    }

    a.set_fail_with(None);
    assert!(wait_until(SECS_10, || health(&p, 0).is_healthy()).await);
    let mut seen_a = false;
    for _ in 0..4 {
        seen_a |= get(&client, &p.url("/"), &[]).await.header("x-endpoint") == "a";
    }
    assert!(seen_a, "back in rotation after passing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_shows_health_and_the_last_check() {
    let a = MockHttp::start("a").await;
    let p = TestProxy::start(&http_config(&[a.addr()])).await;
    let admin = p.weir.admin_addr().expect("admin configured");
    assert!(wait_until(SECS_10, || health(&p, 0).is_healthy()).await);
    let r = get(&h1_client(), &format!("http://{admin}/clusters/c"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ep = &json["endpoints"][0];
    assert_eq!(ep["address"], a.addr().to_string());
    assert_eq!(ep["health"], "healthy");
    assert_eq!(ep["active_check"]["success"], true);
    assert_eq!(ep["active_check"]["detail"], "200 OK");
    assert_eq!(json["healthy_endpoints"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_endpoints_get_their_health_from_a_udp_probe() {
    let echo = MockUdp::echo("echo").await;
    let dead = {
        let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.local_addr().unwrap()
    };
    let yaml = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: udp
    cluster: c
clusters:
  - name: c
    health_check:
      interval: 50ms
      timeout: 500ms
      udp: {{ send: ping, expect: ping }}
    endpoints: [ {dead}, {} ]
",
        echo.addr()
    );
    let p = TestProxy::start(&yaml).await;
    assert!(wait_until(SECS_10, || health(&p, 1).is_healthy()).await);
    assert!(
        health(&p, 0).contains(Unhealthy::ActiveCheck),
        "nothing answers there"
    );

    // Every client session goes to the endpoint that answers its probe.
    for i in 0..10u8 {
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        client.send_to(&[i], p.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = tokio::time::timeout(SECS_10, client.recv_from(&mut buf))
            .await
            .expect("a reply from the healthy endpoint")
            .unwrap();
        assert_eq!(&buf[..n], &[i]);
    }
}
