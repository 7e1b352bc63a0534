//! Request mirroring: the shadow gets the configured share of requests with `Host: <host>-shadow`
//! and intact bodies, oversized bodies abandon only the copy, and a shadow that hangs or fails
//! changes neither the primary's answers nor its latency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weir_e2e::{TestProxy, get, h1_client, send};
use weir_proxy::MirrorStats;
use weir_test_support::{MockHttp, MockTcp, wait_until};

const SECS_20: Duration = Duration::from_secs(20);

/// What the recording shadow saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    host: String,
    body: Result<Bytes, String>,
}

/// A shadow endpoint that records every request's host and body and answers 200.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let host = req
                                .headers()
                                .get(http::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .map_err(|e| e.to_string());
                            log.lock().unwrap().push(Seen { host, body });
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One listener whose single route goes to `primary` and mirrors to `shadow` with `mirror`
/// (the inside of the `mirror:` map, without `cluster`); `shadow_extra` adds cluster keys.
fn config(primary: SocketAddr, shadow: SocketAddr, mirror: &str, shadow_extra: &str) -> String {
    format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: primary
        mirror: {{ cluster: shadow, {mirror} }}
clusters:
  - name: primary
    endpoints: [ {primary} ]
  - name: shadow
    {shadow_extra}
    endpoints: [ {shadow} ]
"
    )
}

fn stats(p: &TestProxy) -> MirrorStats {
    p.proxy().snapshots().load().mirror_stats(0, 0).unwrap()
}

/// Every selected copy has ended one way or another.
fn settled(s: &MirrorStats) -> bool {
    s.succeeded + s.failed + s.abandoned == s.selected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_about_the_configured_fraction() {
    let primary = MockHttp::start("primary").await;
    let shadow = MockHttp::start("shadow").await;
    let p = TestProxy::start(&config(primary.addr(), shadow.addr(), "fraction: 0.2", "")).await;
    let client = h1_client();
    let n = 1000;
    for _ in 0..n {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    assert!(
        wait_until(SECS_20, || settled(&stats(&p))).await,
        "{:?}",
        stats(&p)
    );
    let s = stats(&p);
    // Binomial(1000, 0.2): mean 200, σ ≈ 12.6; ±5σ.
    eprintln!("mirrored {} of {n} at fraction 0.2: {s:?}", s.selected);
    assert!((137..=263).contains(&s.selected), "{s:?}");
    assert_eq!(s.succeeded, s.selected, "{s:?}");
    assert_eq!(shadow.requests(), s.selected);
    assert_eq!(primary.requests(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_sees_a_suffixed_host_and_the_whole_body() {
    let primary = MockHttp::start("primary").await;
    let shadow = Recorder::start().await;
    let p = TestProxy::start(&config(primary.addr(), shadow.addr, "percent: 100", "")).await;
    let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let req = http::Request::post(p.url("/echo"))
        .header("host", "api.example.com:8080")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body.as_ref(),
        &body[..],
        "the primary echoed the body"
    );
    assert_eq!(reply.header("x-seen-host"), "api.example.com:8080");
    let plain = get(&h1_client(), &p.url("/"), &[("host", "web")]).await;
    assert_eq!(plain.status, 200);

    assert!(wait_until(SECS_20, || shadow.seen().len() == 2).await);
    let seen = shadow.seen();
    let posted = seen.iter().find(|s| s.host.starts_with("api")).unwrap();
    assert_eq!(posted.host, "api.example.com-shadow:8080");
    assert_eq!(
        posted.body.as_deref().unwrap(),
        &body[..],
        "intact at the shadow"
    );
    assert!(seen.iter().any(|s| s.host == "web-shadow"), "{seen:?}");
    assert!(wait_until(SECS_20, || stats(&p).succeeded == 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_abandon_only_the_copy() {
    let primary = MockHttp::start("primary").await;
    let shadow = Recorder::start().await;
    let p = TestProxy::start(&config(
        primary.addr(),
        shadow.addr,
        "max_body_bytes: 1024",
        "",
    ))
    .await;
    // With a content-length past the limit the copy is never started.
    let big = Bytes::from(vec![b'x'; 4096]);
    let req = http::Request::post(p.url("/echo"))
        .body(Full::new(big.clone()))
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_eq!((reply.status.as_u16(), reply.body.len()), (200, 4096));

    // A chunked body (no length) is cut when it passes the limit.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 1000]))))
        .collect();
    let chunked: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(p.url("/echo"))
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = tokio::time::timeout(SECS_20, chunked.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let echoed = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), 4000, "the primary got the whole chunked body");

    // A small body still goes through whole.
    let req = http::Request::post(p.url("/echo"))
        .body(Full::new(Bytes::from_static(b"small")))
        .unwrap();
    assert_eq!(send(&h1_client(), req).await.status, 200);

    assert!(
        wait_until(SECS_20, || settled(&stats(&p))).await,
        "{:?}",
        stats(&p)
    );
    let s = stats(&p);
    assert_eq!((s.selected, s.abandoned, s.succeeded), (3, 2, 1), "{s:?}");
    let seen = shadow.seen();
    assert!(
        seen.iter()
            .any(|s| s.body.as_deref().ok() == Some(&b"small"[..])),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.body.as_ref().is_ok_and(|b| b.len() > 1024)),
        "no copy past the limit completed: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shadow_moves_the_diff_counter_not_the_primary() {
    let primary = MockHttp::start("primary").await;
    let shadow = MockHttp::builder("shadow")
        .fail_with(http::StatusCode::INTERNAL_SERVER_ERROR)
        .start()
        .await;
    let p = TestProxy::start(&config(
        primary.addr(),
        shadow.addr(),
        "compare_status: true",
        "",
    ))
    .await;
    let client = h1_client();
    for _ in 0..20 {
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "primary"));
    }
    assert!(
        wait_until(SECS_20, || stats(&p).status_diffs == 20).await,
        "{:?}",
        stats(&p)
    );
    let s = stats(&p);
    assert_eq!((s.selected, s.failed, s.succeeded), (20, 20, 0), "{s:?}");
    // The shadow's 500s were not held against the primary cluster.
    let snapshot = p.proxy().snapshots().load();
    let primary_cluster = snapshot.cluster("primary").unwrap();
    assert_eq!(primary_cluster.breaker_stats().request_overflows, 0);
    assert_eq!(primary.requests(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shadow_breaker_drops_copies_and_counts_them() {
    let primary = MockHttp::start("primary").await;
    let shadow = MockTcp::blackhole().await;
    let p = TestProxy::start(&config(
        primary.addr(),
        shadow.addr(),
        "timeout: 30s",
        "circuit_breakers: { max_requests: 1 }",
    ))
    .await;
    let client = h1_client();
    for _ in 0..10 {
        assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);
    }
    // The first copy hangs on the blackhole holding the only slot; the rest are dropped.
    assert!(
        wait_until(SECS_20, || stats(&p).abandoned == 9).await,
        "{:?}",
        stats(&p)
    );
    let s = stats(&p);
    assert_eq!((s.selected, s.succeeded, s.failed), (10, 0, 0), "{s:?}");
    let snapshot = p.proxy().snapshots().load();
    assert_eq!(
        snapshot
            .cluster("shadow")
            .unwrap()
            .breaker_stats()
            .request_overflows,
        9
    );
    assert_eq!(
        snapshot
            .cluster("primary")
            .unwrap()
            .breaker_stats()
            .request_overflows,
        0,
        "the primary's breakers never saw the copies"
    );
}

/// A shadow that accepts connections and never reads or answers, on its own OS thread so that
/// (like a real remote shadow) its own work does not compete with the proxy's runtime.
struct Hanging {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Hanging {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                held.extend(stream.ok());
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and closes every held socket.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// The p99 of `latencies`.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_changes_neither_answers_nor_latency() {
    let primary = MockHttp::start("primary").await;
    let hanging = Hanging::start();
    let mirrored =
        TestProxy::start(&config(primary.addr(), hanging.addr, "fraction: 1.0", "")).await;
    let plain = TestProxy::start(&format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: primary }} ]
clusters:
  - name: primary
    endpoints: [ {} ]
",
        primary.addr()
    ))
    .await;
    let (client_m, client_p) = (h1_client(), h1_client());
    // Warm both connection pools, then interleave so drift hits both sides alike.
    get(&client_m, &mirrored.url("/"), &[]).await;
    get(&client_p, &plain.url("/"), &[]).await;
    let rounds = 500;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let r = get(&client_m, &mirrored.url("/"), &[]).await;
        with.push(t.elapsed());
        assert_eq!(r.status, 200);
        let t = Instant::now();
        let r = get(&client_p, &plain.url("/"), &[]).await;
        without.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    let (p99_with, p99_without) = (p99(&mut with), p99(&mut without));
    let s = stats(&mirrored);
    eprintln!(
        "p99 over {rounds} requests: {p99_with:?} with a hanging shadow, {p99_without:?} without; \
         median {:?} vs {:?}; {s:?}",
        with[rounds / 2],
        without[rounds / 2]
    );
    assert_eq!(s.selected, rounds as u64 + 1);
    assert_eq!(s.succeeded, 0, "the blackhole never answers");
    // The primary never waits for the shadow: a wait would show as the mirror timeout (10 s).
    let slowest = with.last().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(5), "slowest {slowest:?}");
    // What remains is the copy's own work (spawn, connect, send) on the same two cores as the
    // client, the proxy and the endpoint, in a debug build: measured at +70–120 µs median and
    // +0.06–1.3 ms p99 run alone (docs/mirroring-and-faults.md), more with the suite running in
    // parallel. Not reliably 10 %, so the bound is within 10 % or 10 ms, whichever is larger.
    let bound = (p99_without * 11 / 10).max(p99_without + Duration::from_millis(10));
    assert!(
        p99_with <= bound,
        "p99 {p99_with:?} with a hanging shadow vs {p99_without:?} without"
    );
}
