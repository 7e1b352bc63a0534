//! Graceful shutdown of the real `weir run` process: SIGTERM and SIGINT both stop it the same
//! way — a request in flight on a keep-alive HTTP/1.1 connection finishes and its response says
//! `Connection: close`, an HTTP/2 connection gets GOAWAY (new streams are refused) while its
//! stream in flight completes, then the process exits 0 without waiting for the drain timeout.
//! A request that does not finish is cut when the drain timeout (`shutdown.drain_timeout`, or
//! `--drain-timeout`, which overrides it) runs out, and the process exits right after. With
//! `shutdown.ready_delay`, `/ready` says 503 at once while new connections are still served
//! until the delay ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use weir_test_support::{MockHttp, wait_until};

/// A running `weir run`.
struct Running {
    child: Child,
    /// Listener `l`.
    addr: SocketAddr,
    /// The admin API, when the config has one.
    admin: Option<SocketAddr>,
    /// Its log lines so far (also passed on to the test's stderr).
    log: Arc<Mutex<Vec<String>>>,
}

/// A config that routes everything to `endpoint`, after `extra` config lines and with
/// `listeners` (more listener entries) after listener `l`.
fn config(endpoint: &MockHttp, extra: &str, listeners: &str) -> String {
    format!(
        "{extra}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
{listeners}clusters:
  - name: c
    endpoints: [ {} ]
",
        endpoint.addr()
    )
}

/// `weir run` on `dir/weir.yaml`, written from [`config`] with `extra`, and `args`; returns it
/// once it serves.
async fn spawn(
    dir: &tempfile::TempDir,
    endpoint: &MockHttp,
    extra: &str,
    args: &[&str],
) -> Running {
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, config(endpoint, extra, "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = address_after(&mut lines, "listener l on http://").await;
    let admin = if extra.contains("admin:") {
        Some(address_after(&mut lines, "admin API on http://").await)
    } else {
        None
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            eprintln!("{line}");
            kept.lock().unwrap().push(line);
        }
    });
    Running {
        child,
        addr,
        admin,
        log,
    }
}

/// The address on the first line of `weir run`'s output that starts with `prefix`.
async fn address_after(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> SocketAddr {
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix(prefix) {
                let a = a.split('/').next().unwrap();
                return a.parse().unwrap();
            }
        }
        panic!("weir exited before it printed {prefix:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), find)
        .await
        .expect("weir started in time")
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child runs").to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Waits for the process to exit (at most `limit`): its status and when it exited.
async fn exit_within(child: &mut Child, limit: Duration) -> (ExitStatus, Instant) {
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .unwrap_or_else(|_| panic!("weir still ran {limit:?} after the signal"))
        .unwrap();
    (status, Instant::now())
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header("host", "weir.test")
        .body(Empty::new())
        .unwrap()
}

/// A request in flight on each protocol when `sig` arrives: both finish, HTTP/1.1 with
/// `Connection: close`, HTTP/2 after a GOAWAY; weir exits 0 long before its 20 s drain timeout.
async fn drains_on(sig: &str) {
    let slow = MockHttp::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let Running {
        mut child, addr, ..
    } = spawn(&dir, &slow, "shutdown: { drain_timeout: 20s }", &[]).await;

    // HTTP/1.1 keep-alive, one connection driven by hand to see its headers and its end.
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let h1_conn = tokio::spawn(h1_conn);
    // HTTP/2 prior knowledge with the h2 crate, which reports a GOAWAY as such.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (h2, h2_conn) = h2::client::handshake(tcp).await.unwrap();
    let h2_conn = tokio::spawn(h2_conn);

    let h1_response = tokio::spawn(h1.send_request(get("/delay/1500")));
    let (h2_response, _) = h2
        .clone()
        .send_request(
            http::Request::get(format!("http://{addr}/delay/1500"))
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || slow.requests() == 2).await,
        "both requests reached the endpoint"
    );
    let signalled = Instant::now();
    signal(&child, sig);

    // GOAWAY arrives at once: the connection refuses new streams from then on.
    let mut probe = h2.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let goaway = loop {
        let req = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        // A stream opened before the GOAWAY arrived is dropped (reset) at once.
        if let Err(e) = probe.send_request(req, true) {
            break e;
        }
        assert!(Instant::now() < deadline, "no GOAWAY after {sig}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(goaway.is_go_away() && goaway.is_remote(), "{goaway:?}");
    let goaway_after = signalled.elapsed();

    let res = h1_response.await.unwrap().unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    assert_eq!(
        res.headers().get(http::header::CONNECTION).unwrap(),
        "close",
        "the in-flight HTTP/1.1 response tells the client to close"
    );
    res.into_body().collect().await.unwrap();
    // …and the connection then ends cleanly.
    tokio::time::timeout(Duration::from_secs(5), h1_conn)
        .await
        .expect("the HTTP/1.1 connection closed after its response")
        .unwrap()
        .unwrap();

    let res = h2_response.await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    let mut body = res.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), h2_conn)
        .await
        .expect("the HTTP/2 connection closed after its stream")
        .unwrap()
        .unwrap();

    let (status, exited) = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(status.success(), "exit after {sig}: {status}");
    let took = exited - signalled;
    println!("{sig}: GOAWAY after {goaway_after:?}, exited after {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "exited as soon as the requests finished, not at the 20 s drain timeout: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_h1_with_connection_close_and_h2_after_goaway() {
    drains_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    drains_on("INT").await;
}

/// A request that never finishes is cut when the drain timeout ends, and weir exits then:
/// set by the config, and by `--drain-timeout` over a config that says 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_is_cut_at_the_drain_timeout() {
    let stuck = MockHttp::start("stuck").await;
    let setups: [(&str, &[&str]); 2] = [
        ("shutdown: { drain_timeout: 1s }", &[]),
        (
            "shutdown: { drain_timeout: 30s }",
            &["--drain-timeout", "1s"],
        ),
    ];
    for (extra, args) in setups {
        let dir = tempfile::tempdir().unwrap();
        let Running {
            mut child, addr, ..
        } = spawn(&dir, &stuck, extra, args).await;
        let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let h1_conn = tokio::spawn(h1_conn);
        let before = stuck.requests();
        let response = tokio::spawn(h1.send_request(get("/delay/60000")));
        assert!(wait_until(Duration::from_secs(10), || stuck.requests() == before + 1).await);

        let signalled = Instant::now();
        signal(&child, "TERM");
        let (status, exited) = exit_within(&mut child, Duration::from_secs(10)).await;
        let took = exited - signalled;
        println!("{extra} {args:?}: exited {took:?} after SIGTERM");
        assert!(status.success(), "{status}");
        assert!(
            took >= Duration::from_millis(900) && took <= Duration::from_secs(5),
            "exited after {took:?}, the drain timeout is 1 s"
        );
        // The stuck request got no answer: its connection was closed under it.
        let answer = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("the request ended with the process")
            .unwrap();
        assert!(answer.is_err(), "{answer:?}");
        let _ = h1_conn.await;
    }
}

#[test]
fn a_zero_drain_timeout_flag_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", "/nonexistent.yaml", "--drain-timeout", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--drain-timeout") && stderr.contains("30s"),
        "{stderr}"
    );
}

const DELAYED: &str =
    "admin: { address: 127.0.0.1:0 }\nshutdown: { ready_delay: 3s, drain_timeout: 20s }";

/// With `shutdown.ready_delay: 3s`, `/ready` answers 503 at once after SIGTERM while new
/// connections are still accepted and answered (and a SIGHUP is refused); once the delay is
/// over they are refused, and weir exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_delay_keeps_accepting_while_ready_says_503() {
    let ep = MockHttp::start("ep").await;
    let dir = tempfile::tempdir().unwrap();
    let Running {
        mut child,
        addr,
        admin,
        log,
    } = spawn(&dir, &ep, DELAYED, &[]).await;
    let ready = format!("http://{}/ready", admin.unwrap());
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let status = |url: String| {
        let client = client.clone();
        async move {
            let res = client.request(get(&url)).await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
        }
    };
    assert_eq!(status(ready.clone()).await.unwrap(), http::StatusCode::OK);

    let signalled = Instant::now();
    signal(&child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(ready.clone()).await.unwrap() != http::StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unready_after = signalled.elapsed();
    // A new connection, opened after /ready said 503, is accepted and answered.
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(h1_conn);
    let res = h1.send_request(get("/")).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    // (Accepted, so before the listener closed: no bound on the time is needed.)
    let answered_after = signalled.elapsed();

    // A SIGHUP now, with a file that adds a listener: refused and logged, nothing bound.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "  - name: extra\n    address: 127.0.0.1:{port}\n    routes: [ {{ cluster: c }} ]\n"
    );
    std::fs::write(dir.path().join("weir.yaml"), config(&ep, DELAYED, &extra)).unwrap();
    signal(&child, "HUP");
    let refused = "reload refused: weir is shutting down";
    assert!(
        wait_until(Duration::from_secs(10), || log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(refused)))
        .await,
        "SIGHUP during the shutdown is logged as refused"
    );

    // Once the delay is over, connects are refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting long after the delay"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_after = signalled.elapsed();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the SIGHUP bound nothing");
    let (exit, exited) = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit}");
    let took = exited - signalled;
    println!(
        "ready_delay 3s: /ready 503 after {unready_after:?}, a new connection answered after \
         {answered_after:?}, connects refused after {refused_after:?}, exited after {took:?}"
    );
    assert!(
        refused_after >= Duration::from_secs(3),
        "refused before the delay ended: {refused_after:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}
