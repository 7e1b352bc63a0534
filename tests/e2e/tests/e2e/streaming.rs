//! Bodies stream through weir: 100 MiB each way without the proxy holding more than a few MiB.
//!
//! This file holds one test on purpose: it measures the peak RSS of the test process, so no
//! other test may allocate alongside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir_e2e::{TestProxy, h1_client};
use weir_test_support::{MockHttp, pattern_byte};

const BODY: u64 = 100 * 1024 * 1024;
/// Allowed growth of peak RSS while 2 × 100 MiB stream through proxy, mock and client.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_each_way_in_constant_memory() {
    let ep = MockHttp::start("big").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
clusters:
  - name: c
    endpoints: [ {} ]
",
        ep.addr()
    ))
    .await;
    let client = h1_client();
    // Warm up pools, buffers and lazy statics, then reset the peak (clear_refs 5, Linux ≥ 4.0).
    let warm = client
        .get(p.url("/bytes/1048576").parse().unwrap())
        .await
        .unwrap();
    warm.into_body().collect().await.unwrap();
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_kib("VmRSS:");

    // Download: the endpoint generates 100 MiB; check every byte as it arrives.
    let res = client
        .get(p.url(&format!("/bytes/{BODY}")).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            for &b in data.iter() {
                assert_eq!(b, pattern_byte(offset), "byte {offset}");
                offset += 1;
            }
        }
    }
    assert_eq!(offset, BODY);

    // Upload: the client generates 100 MiB in 64 KiB chunks; the endpoint counts them.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = futures_util::stream::iter(0..BODY / (64 * 1024))
        .map(move |_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone())));
    let upload = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(p.url("/sink"))
        .body(StreamBody::new(chunks))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(120), upload.request(req))
        .await
        .unwrap()
        .unwrap();
    let counted = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&counted), BODY.to_string());

    let peak = status_kib("VmHWM:");
    let growth = peak.saturating_sub(base);
    println!("streaming 2 x 100 MiB: base RSS {base} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(growth < MAX_GROWTH_KIB, "peak RSS grew by {growth} KiB");
}
