//! Retries, the retry budget, hedging and request buffering through the running proxy, with
//! the figures of issue #7: retries hide a flaky endpoint completely, never send a POST twice,
//! stop at the budget when everything fails; a dead endpoint is invisible; a hedge keeps the
//! tail near the fast endpoint; a slow 1 MiB upload reaches the endpoint in one fast write.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir_e2e::{Reply, TestProxy, get, h1_client, h2_client, send};
use weir_test_support::{MockHttp, MockTcp};

/// One listener routing everything to cluster `c` with `route_extra` on the route and
/// `cluster_extra` on the cluster.
fn config(route_extra: &str, cluster_extra: &str, endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: c
{route_extra}
clusters:
  - name: c
{cluster_extra}
    endpoints: [ {} ]
",
        eps.join(", ")
    )
}

fn post(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_flaky_endpoint_and_never_repeat_a_post() {
    let flaky = MockHttp::builder("flaky")
        .fail_every(2, StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let route = "        retry: { attempts: 3, on: [gateway-error], backoff: { base: 1ms } }";
    // A generous budget: this test is about the retries themselves.
    let cluster = "    retry_budget: { percent: 100 }";
    let p = TestProxy::start(&config(route, cluster, &[flaky.addr(), good.addr()])).await;
    let client = h1_client();

    let mut ok = 0;
    for _ in 0..1000 {
        let r = get(&client, &p.url("/"), &[]).await;
        ok += usize::from(r.status == StatusCode::OK);
    }
    assert_eq!(ok, 1000, "every GET succeeds despite the flaky endpoint");
    let failed_gets = flaky.requests().div_ceil(2);
    let retries = p
        .proxy()
        .snapshots()
        .load()
        .cluster("c")
        .unwrap()
        .retry_stats();
    assert_eq!(retries.retries, failed_gets, "one retry per failed GET");
    assert!(
        failed_gets > 100,
        "the flaky endpoint did fail: {failed_gets}"
    );

    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(send(&client, post(&p.url("/"))).await.status);
    }
    let posts = flaky.posts() + good.posts();
    assert_eq!(posts, 200, "a POST that got an answer is never sent again");
    let unavailable = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(
        unavailable > 0,
        "the flaky endpoint's 503s reach POST clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_when_every_endpoint_fails() {
    let a = MockHttp::builder("a")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let b = MockHttp::builder("b")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let route = "        retry: { attempts: 3, on: [5xx], backoff: { base: 1ms } }";
    let cluster = "    retry_budget: { percent: 20, min_per_second: 0, window: 60s }";
    let p = TestProxy::start(&config(route, cluster, &[a.addr(), b.addr()])).await;
    let client = h1_client();

    let mut marked = 0;
    for _ in 0..500 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        marked += usize::from(r.header("x-weir-overloaded") == "retry_budget");
    }
    // Without the budget 500 requests would be 1,500 attempts; with it, 20 % more at most.
    let attempts = a.requests() + b.requests();
    assert_eq!(attempts, 600, "500 requests + 20 % retries");
    let stats = p
        .proxy()
        .snapshots()
        .load()
        .cluster("c")
        .unwrap()
        .retry_stats();
    assert_eq!(stats.retries, 100);
    assert!(stats.budget_exhausted >= 400, "{stats:?}");
    assert_eq!(
        marked as u64, stats.budget_exhausted,
        "an answer whose retry the budget refused says so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_caps_retries_in_progress() {
    let slow_fail = MockHttp::builder("slow-fail")
        .delay(Duration::from_millis(300))
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let route = "        retry: { attempts: 2, on: [503], backoff: { base: 1ms } }";
    let cluster = "    circuit_breakers: { max_retries: 1 }\n    retry_budget: { percent: 100 }";
    let p = TestProxy::start(&config(route, cluster, &[slow_fail.addr()])).await;
    let client = h1_client();
    // Six requests fail together after 300 ms; one retry slot is held for the next 300 ms.
    let url = p.url("/");
    let replies = futures_util::future::join_all((0..6).map(|_| get(&client, &url, &[]))).await;
    let refused = replies
        .iter()
        .filter(|r| r.header("x-weir-overloaded") == "max_retries")
        .count();
    let snapshot = p.proxy().snapshots().load();
    let cluster = snapshot.cluster("c").unwrap();
    let (breakers, retries) = (cluster.breaker_stats(), cluster.retry_stats());
    assert!(refused >= 3, "{refused} refused; {breakers:?}");
    assert_eq!(breakers.retry_overflows, refused as u64);
    assert_eq!(retries.overflowed, refused as u64);
    assert_eq!(retries.retries + refused as u64, 6);
    assert_eq!(breakers.retries, 0, "every slot was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_retried_elsewhere_unnoticed_even_for_posts() {
    let dead = MockTcp::refusing_addr();
    let live = MockHttp::start("live").await;
    let route = "        retry: { attempts: 2 }";
    let p = TestProxy::start(&config(route, "", &[dead, live.addr()])).await;
    let client = h1_client();
    for _ in 0..50 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, StatusCode::OK);
        assert_eq!(
            send(&client, post(&p.url("/"))).await.status,
            StatusCode::OK,
            "a connect failure is safe to retry whatever the method"
        );
    }
    assert_eq!(live.posts(), 50);
    let cluster = p.proxy().snapshots().load();
    let dead_state = &cluster.cluster("c").unwrap().endpoints[0].state;
    assert!(
        dead_state.connect_failures() > 0,
        "the dead endpoint was tried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_keeps_the_tail_near_the_fast_endpoint() {
    let slow = MockHttp::builder("slow")
        .delay(Duration::from_secs(1))
        .start()
        .await;
    let fast = MockHttp::start("fast").await;
    let route = "        hedge: { delay: 50ms }";
    let p = TestProxy::start(&config(route, "", &[slow.addr(), fast.addr()])).await;
    let client = h1_client();

    let mut latencies = Vec::new();
    let mut from_fast = 0;
    for _ in 0..40 {
        let started = Instant::now();
        let r = get(&client, &p.url("/"), &[]).await;
        latencies.push(started.elapsed());
        assert_eq!(r.status, StatusCode::OK);
        from_fast += usize::from(r.header("x-endpoint") == "fast");
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "hedged p50 {:?}, p99 {p99:?}",
        latencies[latencies.len() / 2]
    );
    // The fast endpoint answers in ~1 ms; with the 50 ms hedge the tail stays far below the
    // slow endpoint's second.
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    assert_eq!(from_fast, 40, "the fast answer wins every race");
    let stats = p
        .proxy()
        .snapshots()
        .load()
        .cluster("c")
        .unwrap()
        .retry_stats();
    assert!(
        stats.retries >= 15,
        "about half the requests were hedged: {stats:?}"
    );
}

/// Sends `chunks` × 64 KiB to `url` with `pause` between chunks, over HTTP/2 when `h2` (an
/// early answer such as 413 then ends only the stream, where HTTP/1.1 would close the
/// connection under a client still writing).
async fn slow_upload(url: &str, chunks: usize, pause: Duration, h2: bool) -> (Reply, Duration) {
    let stream = Box::pin(futures_util::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(pause).await;
        let frame: Result<Frame<Bytes>, std::io::Error> =
            Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])));
        Some((frame, i + 1))
    }));
    let client = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http();
    let req = http::Request::post(url)
        .body(StreamBody::new(stream))
        .unwrap();
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let reply = Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    (reply, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_route_sends_a_slow_upload_in_one_fast_write() {
    let sink = MockHttp::start("sink").await;
    let routes = "        buffer: { max_request_bytes: 1048576 }";
    let p = TestProxy::start(&config(routes, "", &[sink.addr()])).await;

    // 1 MiB in 16 chunks, 40 ms apart: the client needs at least 600 ms.
    let (reply, took) = slow_upload(&p.url("/sink"), 16, Duration::from_millis(40), false).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "1048576");
    assert!(took >= Duration::from_millis(600));
    let at_endpoint: u64 = reply.header("x-body-ms").parse().unwrap();
    eprintln!("client sent 1 MiB in {took:?}; the endpoint read it in {at_endpoint} ms");
    assert!(
        at_endpoint < 300,
        "the endpoint read the body in {at_endpoint} ms; the client took {took:?}"
    );

    // One byte over the limit: 413, and the endpoint never sees it.
    let before = sink.requests();
    let (reply, _) = slow_upload(&p.url("/sink"), 17, Duration::ZERO, true).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let declared = http::Request::post(p.url("/sink"))
        .body(Full::new(Bytes::from(vec![0u8; 2 * 1024 * 1024])))
        .unwrap();
    assert_eq!(
        send(&h2_client(), declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(sink.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_is_replayed_after_a_failure() {
    let flaky = MockHttp::builder("flaky")
        .fail_every(2, StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    // The mock answers 503 before reading the body and closes the connection: under load the
    // proxy may see the close (a reset) before the 503, hence both conditions.
    let route = "        retry: { attempts: 2, on: [503, reset], backoff: { base: 1ms } }";
    let p = TestProxy::start(&config(route, "", &[flaky.addr()])).await;
    // PUT is idempotent; 32 KiB fits the 64 KiB replay buffer.
    for _ in 0..10 {
        let req = http::Request::put(p.url("/sink"))
            .body(Full::new(Bytes::from(vec![7u8; 32 * 1024])))
            .unwrap();
        let r = send(&h1_client(), req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), "32768", "the replayed body is whole");
    }
    assert_eq!(
        flaky.requests(),
        20,
        "every first attempt failed and was replayed once"
    );
}
