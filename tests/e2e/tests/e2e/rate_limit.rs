//! Rate limits end to end: a local token bucket per client address, a connections-per-second
//! limit on a TCP listener, and a global limit that two weir instances share through a real
//! redis-server — including what happens when that server dies.
//!
//! Load is offered at a fixed pace from tokio intervals; the bounds compare accepted counts with
//! `rate × measured time + burst`, so a slow machine changes the offered load, not the verdict.
//! On a loaded machine the runtime that both weir and the clients run on can stall: requests are
//! then decided late or in bursts, and a token bucket rightly loses the tokens of a stall longer
//! than `burst / rate`. So the local test replays a bucket over the times the answers arrived
//! and compares weir's count with that, and the global test bounds its count from both sides
//! (everything sent inside the windows; everything answered inside them). The tests that offer heavy load run one at
//! a time ([`HEAVY`]), so they do not skew each other's timing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use weir_e2e::{Reply, TestClient, TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp};

use crate::redis::start_redis;

/// No request may take longer than this, Redis up or down.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// Held by the tests that offer heavy load, so that they do not run at the same time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a run of paced requests got back.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    limited: u64,
    unavailable: u64,
    /// One 429, to look at its headers.
    sample_429: Option<Reply>,
    /// The slowest answer.
    slowest: Duration,
    /// From the first send to the last answer.
    elapsed: Duration,
    /// From the first send to the last send.
    sending: Duration,
    /// Accepted requests answered before the `cutoff` given to [`offer`].
    ok_before_cutoff: u64,
    /// When each answer (of any status) arrived, in order.
    answered: Vec<Instant>,
}

/// An HTTP/1.1 client whose connections come from `ip` (any 127.0.0.0/8 address works on
/// Linux loopback).
fn client_from(ip: IpAddr) -> TestClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends GET `url` at `rate` per second for `duration` (each on its own task, so slow answers do
/// not lower the offered rate) and tallies the answers. Every answer must come within
/// [`ANSWER_BOUND`].
async fn offer(
    client: &TestClient,
    url: &str,
    headers: &'static [(&'static str, &'static str)],
    rate: u32,
    duration: Duration,
    cutoff: Option<SystemTime>,
) -> Tally {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let total = (u128::from(rate) * duration.as_millis() / 1000) as usize;
    for _ in 0..total {
        tick.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            let sent = Instant::now();
            let reply = tokio::time::timeout(ANSWER_BOUND, get(&client, &url, headers))
                .await
                .unwrap_or_else(|_| panic!("a request to {url} took longer than {ANSWER_BOUND:?}"));
            (reply, sent.elapsed(), SystemTime::now(), Instant::now())
        });
    }
    let mut tally = Tally {
        sending: start.elapsed(),
        ..Tally::default()
    };
    while let Some(done) = tasks.join_next().await {
        let (reply, took, answered, at) = done.unwrap();
        tally.slowest = tally.slowest.max(took);
        tally.answered.push(at);
        match reply.status {
            StatusCode::OK => {
                tally.ok += 1;
                if cutoff.is_some_and(|c| answered < c) {
                    tally.ok_before_cutoff += 1;
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {
                tally.limited += 1;
                tally.sample_429.get_or_insert(reply);
            }
            StatusCode::SERVICE_UNAVAILABLE => tally.unavailable += 1,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    tally.elapsed = start.elapsed();
    tally.answered.sort();
    tally
}

/// How many of requests decided at `times` a token bucket of `burst` refilled at `rate` per
/// second would admit: the reference for weir's count, with the machine's stalls in it.
fn replay_bucket(times: &[Instant], rate: f64, burst: f64) -> u64 {
    let Some(&first) = times.first() else {
        return 0;
    };
    let (mut tokens, mut last, mut admitted) = (burst, first, 0);
    for &t in times {
        tokens = (tokens + (t - last).as_secs_f64() * rate).min(burst);
        last = t;
        if tokens >= 1.0 {
            tokens -= 1.0;
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_limit_per_client_address() {
    let app = MockHttp::start("app").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - cluster: app
        rate_limit:
          key: client_address
          local: {{ requests_per_second: 100, burst: 10 }}
clusters:
  - name: app
    endpoints: [ {} ]
",
        app.addr()
    ))
    .await;
    let url = p.url("/");
    // The figures: 1,000 req/s offered for 5 s against 100 req/s → 500 ± 5 % accepted.
    let run = Duration::from_secs(5);
    let _heavy = HEAVY.lock().await;
    // A greedy client on 127.0.0.1 at ~1000/s, a polite one on 127.0.0.2 at 5/s, together.
    let greedy = h1_client();
    let polite = client_from("127.0.0.2".parse().unwrap());
    let (greedy, polite) = tokio::join!(
        offer(&greedy, &url, &[], 1000, run, None),
        offer(&polite, &url, &[], 5, run, None),
    );
    // burst + rate × time on a quiet machine; the replayed bucket also loses what stalls lose.
    let ideal = 10.0 + 100.0 * greedy.sending.as_secs_f64();
    let replayed = replay_bucket(&greedy.answered, 100.0, 10.0) as f64;
    println!(
        "local limit: greedy client accepted {} and limited {} (burst + rate x {:.2?} = {ideal:.0}; \
         bucket replayed over the answer times: {replayed:.0}); polite client accepted {} of {}",
        greedy.ok,
        greedy.limited,
        greedy.sending,
        polite.ok,
        polite.ok + polite.limited
    );
    let ok = greedy.ok as f64;
    assert!(
        (ok - replayed).abs() <= replayed * 0.05,
        "greedy client accepted {ok} (expected {replayed:.0} ± 5 %)"
    );
    let most = 10.0 + 100.0 * greedy.elapsed.as_secs_f64();
    assert!(
        ok <= most * 1.05,
        "{ok} is over burst + rate x time ({most:.0})"
    );
    assert!(greedy.limited > greedy.ok, "most of 1000/s is over 100/s");
    assert_eq!(
        polite.limited, 0,
        "the other client address is never limited"
    );
    assert_eq!(polite.ok, 25);
    let refused = greedy.sample_429.expect("a 429");
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert_eq!(retry_after, 1, "a 10 ms wait rounds up to one second");
    assert_eq!(refused.header("x-ratelimit-limit"), "100");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(refused.header("x-ratelimit-reset"), "1");
    let stats = p.proxy().route_rate_limit_stats("public", 0).unwrap();
    assert_eq!(stats.limited.load(Ordering::Relaxed), greedy.limited);
    assert_eq!(
        app.requests(),
        greedy.ok + polite.ok,
        "refused requests never reach the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_limit_each_api_key_separately() {
    let app = MockHttp::start("app").await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - cluster: app
        rate_limit:
          key: [ client_address, \"header:x-api-key\" ]
          local: {{ requests_per_second: 1, burst: 3 }}
clusters:
  - name: app
    endpoints: [ {} ]
",
        app.addr()
    ))
    .await;
    let client = h1_client();
    let url = p.url("/");
    let statuses = |key: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(
                    get(&client, &url, &[("x-api-key", key)])
                        .await
                        .status
                        .as_u16(),
                );
            }
            out
        }
    };
    // Five requests well inside one second: three pass per key, whatever the other key does.
    assert_eq!(statuses("alpha").await, [200, 200, 200, 429, 429]);
    assert_eq!(statuses("beta").await, [200, 200, 200, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_buckets() {
    let app = MockHttp::start("app").await;
    let config = |rate: u32| {
        format!(
            "listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - cluster: app
        rate_limit: {{ key: route, local: {{ requests_per_second: {rate}, burst: 2 }} }}
clusters:
  - name: app
    endpoints: [ {} ]
",
            app.addr()
        )
    };
    let load = |yaml: String| weir_config::load_str(&yaml, "reload.yaml").unwrap();
    let p = TestProxy::start(&config(1)).await;
    let client = h1_client();
    let url = p.url("/");
    let status = || async { get(&client, &url, &[]).await.status };
    assert_eq!(status().await, StatusCode::OK);
    assert_eq!(status().await, StatusCode::OK);
    assert_eq!(status().await, StatusCode::TOO_MANY_REQUESTS);
    // The same limits: the spent bucket stays spent (a reload grants no extra burst).
    p.weir.reload(&load(config(1))).unwrap();
    assert_eq!(status().await, StatusCode::TOO_MANY_REQUESTS);
    // New limits: a new bucket.
    p.weir.reload(&load(config(2))).unwrap();
    assert_eq!(status().await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_closes_connections_over_the_rate() {
    let echo = MockTcp::echo().await;
    let p = TestProxy::start(&format!(
        "listeners:
  - name: tcp
    address: 127.0.0.1:0
    protocol: tcp
    cluster: echo
    rate_limit: {{ connections_per_second: 5, burst: 5 }}
clusters:
  - name: echo
    endpoints: [ {} ]
",
        echo.addr()
    ))
    .await;
    let start = Instant::now();
    let mut served = Vec::new();
    let mut closed = 0u64;
    for _ in 0..20 {
        match echo_or_closed(p.addr).await {
            Some(stream) => served.push(stream),
            None => closed += 1,
        }
    }
    let elapsed = start.elapsed();
    // Burst 5, plus what 5/s refilled while the loop ran.
    let most = 5 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    println!(
        "L4 limit: {} of 20 connections served, {closed} closed, in {elapsed:.2?}",
        served.len()
    );
    assert!(
        (5..=most).contains(&served.len()),
        "{} served (expected 5..={most})",
        served.len()
    );
    let stats = p.proxy().listener_stats("tcp").unwrap();
    assert_eq!(stats.rate_limited.load(Ordering::Relaxed), closed);
    // Connections already served are untouched, and a token comes back within a second.
    for s in &mut served {
        s.write_all(b"still").await.unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if echo_or_closed(p.addr).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection admitted after a refill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects and checks an echo: the stream if it works, `None` if weir closed it.
async fn echo_or_closed(addr: SocketAddr) -> Option<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A closed connection may already refuse the write (reset); that counts as closed.
    if s.write_all(b"ping").await.is_err() {
        return None;
    }
    let mut back = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("a connection was neither served nor closed");
    match read {
        Ok(_) => {
            assert_eq!(&back, b"ping");
            Some(s)
        }
        Err(_) => None,
    }
}

/// Sleeps until `offset` past the next whole unix second, where the global windows start.
async fn align_to_second(offset: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    tokio::time::sleep(Duration::from_secs(1) - into + offset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_shared_by_two_instances_and_redis_failure_modes() {
    let redis = start_redis().await;
    let app = MockHttp::start("app").await;
    let config = format!(
        "rate_limit_service: {{ redis: {}, sync_interval: 20ms, timeout: 250ms }}
listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /open }}
        cluster: app
        rate_limit:
          key: route
          local: {{ requests_per_second: 1000 }}
          global: {{ requests_per_second: 100 }}
      - match: {{ path_prefix: /closed }}
        cluster: app
        rate_limit:
          key: route
          global: {{ requests_per_second: 1000, failure_mode: closed }}
clusters:
  - name: app
    endpoints: [ {} ]
",
        redis.addr,
        app.addr()
    );
    let a = TestProxy::start(&config).await;
    let b = TestProxy::start(&config).await;
    let (ca, cb) = (h1_client(), h1_client());
    let (url_a, url_b) = (a.url("/open"), b.url("/open"));

    // Three whole one-second windows, each instance offered 200/s.
    let _heavy = HEAVY.lock().await;
    align_to_second(Duration::from_millis(5)).await;
    let run = Duration::from_secs(3);
    // Answers that came before the end of the third window were decided inside the three.
    let cutoff = SystemTime::now() + run - Duration::from_millis(5);
    let (ta, tb) = tokio::join!(
        offer(&ca, &url_a, &[], 200, run, Some(cutoff)),
        offer(&cb, &url_b, &[], 200, run, Some(cutoff)),
    );
    let together = ta.ok + tb.ok;
    let inside = ta.ok_before_cutoff + tb.ok_before_cutoff;
    println!(
        "global limit: instance A accepted {} of {}, B {} of {}; together {together} in 3 windows, \
         {inside} of them answered inside the windows (expected 300 ± 10 %)",
        ta.ok,
        ta.ok + ta.limited,
        tb.ok,
        tb.ok + tb.limited
    );
    // All sent inside the three windows: at least the windows' worth (some may have been
    // decided in the fourth on a loaded machine); answered inside them: at most.
    assert!(
        together >= 270 && inside <= 330,
        "two instances together accepted {together} ({inside} answered inside the 3 windows); \
         expected 300 ± 10 %"
    );
    assert!(ta.ok > 0 && tb.ok > 0, "both instances admit a share");
    let refused = ta.sample_429.or(tb.sample_429).expect("a 429");
    assert_eq!(refused.header("x-ratelimit-limit"), "100");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        get(&ca, &a.url("/closed"), &[]).await.status,
        StatusCode::OK
    );

    // Redis dies. The closed route refuses with 503 once a sync has failed; no request waits.
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        let reply = get(&ca, &a.url("/closed"), &[]).await;
        assert!(
            started.elapsed() < ANSWER_BOUND,
            "a request waited on Redis"
        );
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.header("retry-after"), "1");
            break;
        }
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "failure_mode: closed never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open route lets everything through that its local limit (1000/s) allows: 200/s on
    // each instance, far over the global 100/s, all pass, each within the bound.
    let (ta, tb) = tokio::join!(
        offer(&ca, &url_a, &[], 200, Duration::from_secs(1), None),
        offer(&cb, &url_b, &[], 200, Duration::from_secs(1), None),
    );
    println!(
        "redis down: open route accepted {} + {} of 400, slowest answer {:.2?}",
        ta.ok,
        tb.ok,
        ta.slowest.max(tb.slowest)
    );
    assert_eq!((ta.limited, tb.limited), (0, 0), "failure_mode: open");
    assert_eq!(ta.ok + tb.ok, 400);
    let (closed_a, closed_b) = (a.url("/closed"), b.url("/closed"));
    let closed = tokio::join!(
        offer(&ca, &closed_a, &[], 50, Duration::from_secs(1), None),
        offer(&cb, &closed_b, &[], 50, Duration::from_secs(1), None),
    );
    assert_eq!(closed.0.unavailable + closed.1.unavailable, 100);
    let stats = a.proxy().route_rate_limit_stats("public", 1).unwrap();
    assert!(stats.unavailable.load(Ordering::Relaxed) >= 50);
}
