//! Reloading a running weir: routes and clusters change at once, endpoints that remain keep
//! their health and ejections, requests keep succeeding throughout, and a reload weir cannot
//! apply (a listener that cannot bind) changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::StatusCode;
use weir_core::Unhealthy;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::MockHttp;

fn config(listener: &str, body: &str, a: &MockHttp, b: &MockHttp) -> String {
    format!(
        "listeners:
  - name: {listener}
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ path: /version }}, direct_response: {{ status: 200, body: {body} }} }}
      - {{ cluster: c }}
clusters:
  - name: c
    outlier_detection: {{ consecutive_gateway_errors: 3, base_ejection_time: 1h }}
    endpoints: [ {}, {} ]
",
        a.addr(),
        b.addr()
    )
}

fn load(yaml: &str) -> weir_config::ValidatedConfig {
    weir_config::load_str(yaml, "reload.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_at_once_keep_endpoint_state_and_drop_nothing() {
    let bad = MockHttp::builder("bad")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let p = TestProxy::start(&config("l", "v1", &bad, &good)).await;
    let client = h1_client();
    for _ in 0..6 {
        get(&client, &p.url("/"), &[]).await;
    }
    let ejected = |p: &TestProxy| {
        let s = p.proxy().snapshots().load();
        s.cluster("c").unwrap().endpoints[0]
            .state
            .health()
            .contains(Unhealthy::Ejected)
    };
    assert!(ejected(&p));

    // Steady traffic to the /version route while reloading back and forth.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let load_task = {
        let (stop, failures, sent, url) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&sent),
            p.url("/version"),
        );
        tokio::spawn(async move {
            let client = h1_client();
            while !stop.load(Ordering::Relaxed) {
                let r = get(&client, &url, &[]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != StatusCode::OK || !(r.body == "v1" || r.body == "v2") {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for round in 0..20 {
        let body = if round % 2 == 0 { "v2" } else { "v1" };
        let report = p
            .weir
            .reload(&load(&config("l", body, &bad, &good)))
            .unwrap();
        assert_eq!(report.clusters, 1);
        // Applied at once: the very next request sees the new route.
        let r = get(&client, &p.url("/version"), &[]).await;
        assert_eq!(r.body, body);
    }
    stop.store(true, Ordering::Relaxed);
    load_task.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 20);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );

    // The ejected endpoint is still ejected: its state carried over twenty recompiles.
    assert!(ejected(&p));
    assert_eq!(bad.requests(), 3);

    // A reload whose new listener cannot bind (the address is taken) is refused and changes
    // nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = config("l", "v3", &bad, &good).replace(
        "clusters:",
        &format!(
            "  - {{ name: extra, address: {}, routes: [ {{ cluster: c }} ] }}\nclusters:",
            taken.local_addr().unwrap()
        ),
    );
    let e = p.weir.reload(&load(&yaml)).unwrap_err();
    assert!(e.to_string().contains("cannot bind"), "{e}");
    assert_eq!(get(&client, &p.url("/version"), &[]).await.body, "v1");
}
