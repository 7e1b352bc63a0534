//! The access log through the running proxy (issue #9): one JSON line per HTTP request, per
//! TCP connection and per UDP session with the values the traffic produced; a stalled log makes
//! lines drop, never requests wait; a reopen after a rename sends new lines to the new file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_e2e::{TestProxy, get, h1_client, h2_client, send};
use weir_test_support::{MockHttp, MockTcp, MockUdp, wait_until};

const SECS_10: Duration = Duration::from_secs(10);

/// Every line of the file at `path`, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the log has written `n` lines in all, then flushes it.
async fn written(p: &TestProxy, n: u64) {
    let log = p.proxy().access_log().unwrap();
    assert!(
        wait_until(SECS_10, || log.written() >= n).await,
        "{} of {n} lines written",
        log.written()
    );
    log.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lines_carry_route_cluster_endpoint_status_bytes_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let bad = MockHttp::builder("bad")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let good = MockHttp::start("good").await;
    let yaml = format!(
        "access_log: {{ path: {} }}
listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {{ path: /direct }}
        direct_response: {{ status: 202, body: hello }}
      - match: {{ path_prefix: /retry }}
        cluster: mixed
        retry: {{ attempts: 2, on: [5xx], backoff: {{ base: 1ms }} }}
      - cluster: web
clusters:
  - name: mixed
    retry_budget: {{ percent: 100 }}
    endpoints: [ {}, {} ]
  - name: web
    endpoints: [ {} ]
",
        path.display(),
        bad.addr(),
        good.addr(),
        good.addr()
    );
    let p = TestProxy::start(&yaml).await;
    let client = h1_client();

    let r = get(&client, &p.url("/direct"), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let upload = Bytes::from(vec![b'x'; 1000]);
    let r = send(
        &client,
        http::Request::post(p.url("/echo?q=1"))
            .body(Full::new(upload))
            .unwrap(),
    )
    .await;
    assert_eq!(r.body.len(), 1000);
    let r = get(&h2_client(), &p.url("/bytes/5000"), &[]).await;
    assert_eq!(r.body.len(), 5000);
    for _ in 0..10 {
        let r = get(&client, &p.url("/retry"), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the retry reaches the good endpoint"
        );
    }
    written(&p, 13).await;

    let all = lines(&path);
    assert_eq!(all.len(), 13, "one line per request");
    let direct = &all[0];
    assert_eq!(direct["kind"], "http");
    assert_eq!(direct["listener"], "public");
    assert_eq!(direct["route"], 0);
    assert_eq!(direct["cluster"], Value::Null);
    assert_eq!(direct["endpoint"], Value::Null);
    assert_eq!(direct["status"], 202);
    assert_eq!(direct["bytes_out"], 5);
    assert_eq!(direct["method"], "GET");
    assert_eq!(direct["path"], "/direct");
    assert_eq!(direct["authority"], p.addr.to_string());
    assert!(direct["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(direct["time"].as_str().unwrap().ends_with('Z'));

    let echo = &all[1];
    assert_eq!(echo["route"], 2);
    assert_eq!(echo["cluster"], "web");
    assert_eq!(echo["endpoint"], good.addr().to_string());
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo?q=1");
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["bytes_in"], 1000);
    assert_eq!(echo["bytes_out"], 1000);
    assert_eq!(echo["retries"], 0);
    let total = echo["duration_ms"].as_f64().unwrap();
    let upstream = echo["upstream_duration_ms"].as_f64().unwrap();
    assert!(upstream > 0.0 && upstream <= total, "{upstream} ≤ {total}");

    let h2 = &all[2];
    assert_eq!(h2["bytes_out"], 5000);
    assert_eq!(h2["authority"], p.addr.to_string(), "from :authority");

    let retried = &all[3..];
    let mut retries = 0;
    for line in retried {
        assert_eq!(line["route"], 1);
        assert_eq!(line["cluster"], "mixed");
        assert_eq!(line["status"], 200);
        assert_eq!(
            line["endpoint"],
            good.addr().to_string(),
            "the one that answered"
        );
        retries += line["retries"].as_u64().unwrap();
    }
    assert_eq!(
        retries,
        bad.requests(),
        "one retry per 503 of the bad endpoint"
    );
    assert!(
        retries > 0,
        "round robin sent some first attempts to the bad endpoint"
    );
    assert_eq!(p.proxy().access_log().unwrap().dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lines_carry_bytes_each_way_and_how_the_connection_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let echo = MockTcp::echo().await;
    let refused = MockTcp::refusing_addr();
    let yaml = format!(
        "access_log: {{ path: {}, fields: [kind, listener, cluster, endpoint, bytes_in, bytes_out, end, duration_ms] }}
listeners:
  - name: db
    address: 127.0.0.1:0
    protocol: tcp
    cluster: echo
  - name: dead
    address: 127.0.0.1:0
    protocol: tcp
    cluster: dead
    tcp: {{ connect_attempts: 1 }}
clusters:
  - name: echo
    endpoints: [ {} ]
  - name: dead
    connect_timeout: 1s
    endpoints: [ {refused} ]
",
        path.display(),
        echo.addr(),
    );
    let p = TestProxy::start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&[7u8; 3000]).await.unwrap();
    let mut back = vec![0u8; 3000];
    s.read_exact(&mut back).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(s.read(&mut back).await.unwrap(), 0, "closed both ways");
    drop(s);
    written(&p, 1).await;

    let dead = p.proxy().listener_addr("dead").unwrap();
    let mut s = tokio::net::TcpStream::connect(dead).await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0, "closed by weir");
    written(&p, 2).await;

    let all = lines(&path);
    let line = &all[0];
    assert_eq!(line["kind"], "tcp");
    assert_eq!(line["listener"], "db");
    assert_eq!(line["cluster"], "echo");
    assert_eq!(line["endpoint"], echo.addr().to_string());
    assert_eq!(line["bytes_in"], 3000);
    assert_eq!(line["bytes_out"], 3000);
    assert_eq!(line["end"], "closed");
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        line.as_object().unwrap().len(),
        8,
        "only the configured fields: {line}"
    );
    let failed = &all[1];
    assert_eq!(failed["listener"], "dead");
    assert_eq!(failed["cluster"], "dead");
    assert_eq!(failed["endpoint"], Value::Null);
    assert_eq!(failed["end"], "connect_failed");
    assert_eq!(failed["bytes_in"], 0);
}

/// Sends `payload` on the connected `socket` and expects it back.
async fn udp_echo(socket: &tokio::net::UdpSocket, payload: Vec<u8>) {
    socket.send(&payload).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(SECS_10, socket.recv(&mut buf))
        .await
        .expect("reply lost")
        .unwrap();
    assert_eq!(&buf[..n], &payload[..]);
}

/// A UDP session is one line when it ends, evicted from a full table or idle, with its
/// endpoint, client, and datagrams and bytes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sessions_are_one_line_each_when_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let ep = MockUdp::echo("ep").await;
    let yaml = format!(
        "access_log: {{ path: {}, fields: [kind, listener, cluster, endpoint, client, bytes_in, bytes_out, datagrams_in, datagrams_out, duration_ms, end, method] }}
listeners:
  - name: dns
    address: 127.0.0.1:0
    protocol: udp
    cluster: c
    udp: {{ max_sessions: 1, idle_timeout: 500ms }}
clusters:
  - name: c
    endpoints: [ {} ]
",
        path.display(),
        ep.addr(),
    );
    let p = TestProxy::start(&yaml).await;
    let first = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    first.connect(p.addr).await.unwrap();
    for n in [100, 200, 300] {
        udp_echo(&first, vec![1u8; n]).await;
    }
    // The table holds one session: the second client's evicts the first's.
    let second = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    second.connect(p.addr).await.unwrap();
    udp_echo(&second, vec![2u8; 50]).await;
    written(&p, 1).await;
    let evicted = &lines(&path)[0];
    assert_eq!(evicted["kind"], "udp");
    assert_eq!(evicted["listener"], "dns");
    assert_eq!(evicted["cluster"], "c");
    assert_eq!(evicted["endpoint"], ep.addr().to_string());
    assert_eq!(evicted["client"], first.local_addr().unwrap().to_string());
    assert_eq!(evicted["datagrams_in"], 3);
    assert_eq!(evicted["datagrams_out"], 3);
    assert_eq!(evicted["bytes_in"], 600);
    assert_eq!(evicted["bytes_out"], 600);
    assert_eq!(evicted["end"], "evicted");
    assert!(evicted["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(
        evicted.get("method").is_none(),
        "not a UDP field: {evicted}"
    );

    // The second session ends idle after 500 ms without a datagram.
    written(&p, 2).await;
    let idle = &lines(&path)[1];
    assert_eq!(idle["client"], second.local_addr().unwrap().to_string());
    assert_eq!(
        (idle["datagrams_in"].clone(), idle["datagrams_out"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(
        (idle["bytes_in"].clone(), idle["bytes_out"].clone()),
        (50.into(), 50.into())
    );
    assert_eq!(idle["end"], "idle");
    assert!(
        idle["duration_ms"].as_f64().unwrap() >= 500.0,
        "lived at least the idle timeout: {idle}"
    );

    // A session still open when weir shuts down is logged as ended by the shutdown.
    let third = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    third.connect(p.addr).await.unwrap();
    udp_echo(&third, vec![3u8; 10]).await;
    let log = p.proxy().access_log().unwrap();
    assert!(p.weir.shutdown(SECS_10).await);
    assert!(wait_until(SECS_10, || log.written() >= 3).await);
    log.flush().await.unwrap();
    let shut = &lines(&path)[2];
    assert_eq!(shut["client"], third.local_addr().unwrap().to_string());
    assert_eq!(shut["datagrams_in"], 1);
    assert_eq!(shut["end"], "shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_a_rename_sends_new_lines_to_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let yaml = format!(
        "access_log: {{ path: {}, fields: [path] }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - direct_response: {{ status: 200 }}
",
        path.display()
    );
    let p = TestProxy::start(&yaml).await;
    let client = h1_client();
    get(&client, &p.url("/before"), &[]).await;
    written(&p, 1).await;

    std::fs::rename(&path, &rotated).unwrap();
    // Still the old file until the reopen.
    get(&client, &p.url("/renamed"), &[]).await;
    written(&p, 2).await;
    p.weir.reopen_access_log().await.unwrap();
    get(&client, &p.url("/after"), &[]).await;
    written(&p, 3).await;

    let old: Vec<Value> = lines(&rotated).iter().map(|l| l["path"].clone()).collect();
    let new: Vec<Value> = lines(&path).iter().map(|l| l["path"].clone()).collect();
    assert_eq!(old, ["/before", "/renamed"]);
    assert_eq!(new, ["/after"]);
}

/// The log is a FIFO whose reader never reads: the writer blocks once the pipe and its buffer
/// are full, the queue fills, and from then on lines are dropped and counted while every
/// request still completes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_drops_lines_and_never_holds_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stalled.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // Opening a FIFO waits for the other end: the reader opens on a thread and holds it
    // until told to go.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(fifo).unwrap();
            let _ = stopped.recv();
            drop(f);
        })
    };
    let yaml = format!(
        "access_log: {{ path: {}, queue_capacity: 16 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - direct_response: {{ status: 200, body: ok }}
",
        fifo.display()
    );
    let p = TestProxy::start(&yaml).await;
    let client = h1_client();
    let mut slowest = Duration::ZERO;
    for _ in 0..2000 {
        let started = Instant::now();
        let r = get(&client, &p.url("/"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    let log = p.proxy().access_log().unwrap();
    // ~128 KiB (pipe and write buffer) hold a few hundred lines; the rest must be dropped.
    assert!(
        wait_until(SECS_10, || log.dropped() >= 1000).await,
        "dropped {} of 2000",
        log.dropped()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "no request waited for the log: slowest {slowest:?}"
    );
    stop.send(()).unwrap();
    reader.join().unwrap();
}
