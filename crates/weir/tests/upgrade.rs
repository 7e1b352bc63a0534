//! Hitless binary upgrade with the real `weir` binary: five successive takeovers
//! (`weir run --takeover`) under ~500 requests/s refuse no connection and fail no request, and
//! each old process drains and exits 0 (at once: the config's `shutdown.ready_delay` is for
//! SIGTERM, not for a handover); a takeover with a bad config exits non-zero with the
//! reason while the running weir keeps serving. Under the same load, `SIGHUP` reloads of three
//! invalid files (bad YAML, a bad value, a listener that cannot bind) are rejected and counted
//! without failing a request.
//!
//! The load is three clients, each sending its next request every 4 ms:
//! - a keep-alive HTTP/1.1 client and an HTTP/2 client (hyper-util's pooled client, as
//!   `reload_live.rs` uses). Like real clients, they retry a request only when the server
//!   cannot have seen it: over HTTP/1.1 when the pooled connection was closed before any byte
//!   of the request was written (hyper-util's `retry_canceled_requests`, on by default); over
//!   HTTP/2 also when the server's GOAWAY says the stream was not processed, which RFC 9113
//!   §6.8 makes safe to retry and Go's and browsers' clients do (hyper hands that case to the
//!   caller, hyperium/hyper#2500). Anything else — a reset, a connection closed after the
//!   request went out, a non-200 — counts as a failed request;
//! - a client that opens a new TCP connection for every request (`Connection: close`), so that
//!   connects happen throughout each handover; a refused connect is counted as such.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use weir_test_support::MockHttp;

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// HTTP/2 requests a GOAWAY rejected unprocessed, sent again on a new connection.
    retried: AtomicU64,
}

/// Whether `e` says the server rejected the request unprocessed with a GOAWAY (HTTP/2).
fn rejected_by_goaway(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote();
        }
        source = s.source();
    }
    false
}

/// A running `weir run` and what it printed.
struct Running {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
}

/// Starts `weir run` with `args` and waits until it printed its upgrade socket (it serves by
/// then); its stderr goes to the test's.
async fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut listener, mut admin) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("listener main on http://") {
                listener = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("admin API on http://") {
                admin = Some(a.trim_end_matches("/clusters").parse().unwrap());
            } else if line.starts_with("upgrade socket on ") {
                return;
            }
        }
        panic!("weir exited before it served");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("weir started in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        child,
        listener: listener.expect("weir printed its listener"),
        admin: admin.expect("weir printed its admin API"),
    }
}

/// Sends a GET with `client` every `period` until `stop`, tallying outcomes.
async fn pooled_load(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(4));
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let mut attempt = 0;
        let result = loop {
            let req = http::Request::get(&url).body(Full::default()).unwrap();
            match client.request(req).await {
                Err(e) if attempt < 3 && rejected_by_goaway(&e) => {
                    attempt += 1;
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                }
                other => break other,
            }
        };
        let ok = match result {
            Ok(res) => {
                let status = res.status();
                res.into_body().collect().await.is_ok() && status == http::StatusCode::OK
            }
            Err(e) if e.is_connect() => {
                eprintln!("connect failed: {e:?}");
                tally.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                eprintln!("request failed: {e:?}");
                false
            }
        };
        let counter = if ok { &tally.ok } else { &tally.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens a connection per request, every 4 ms, until `stop`.
async fn connect_load(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(4));
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let mut conn = match tokio::net::TcpStream::connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("connect failed: {e}");
                tally.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let exchange = async {
            conn.write_all(b"GET / HTTP/1.1\r\nhost: weir\r\nconnection: close\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            conn.read_to_end(&mut response).await?;
            std::io::Result::Ok(response)
        };
        let ok = match tokio::time::timeout(Duration::from_secs(20), exchange).await {
            Ok(Ok(response)) => response.starts_with(b"HTTP/1.1 200"),
            other => {
                eprintln!("fresh-connection request failed: {other:?}");
                false
            }
        };
        let counter = if ok { &tally.ok } else { &tally.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A config serving `endpoint`, with an admin API and `shutdown.ready_delay` set to `ready_delay`.
fn write_config(path: &Path, endpoint: SocketAddr, ready_delay: &str) {
    let yaml = format!(
        "admin: {{ address: 127.0.0.1:0 }}
shutdown: {{ ready_delay: {ready_delay} }}
listeners:
  - name: main
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
clusters:
  - name: app
    endpoints: [ {endpoint} ]
"
    );
    std::fs::write(path, yaml).unwrap();
}

/// Waits for `child` to exit and returns whether it exited 0.
async fn exited_ok(child: &mut Child, within: Duration) -> bool {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("the old weir exited after draining")
        .unwrap();
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_upgrades_under_load_refuse_nothing_and_fail_nothing() {
    let endpoint = MockHttp::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.yaml");
    // An upgrade hands the sockets over, so the old weir must not wait this out.
    write_config(&config, endpoint.addr(), "1h");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners:\n  - name: main\n    adress: 127.0.0.1:0\n",
    )
    .unwrap();
    let socket = dir.path().join("weir.sock");
    let (config, socket) = (config.to_str().unwrap(), socket.to_str().unwrap());

    let mut current = spawn(&["-c", config, "--upgrade-socket", socket]).await;
    let (addr, admin) = (current.listener, current.admin);
    let url = format!("http://{addr}/");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let h1 = Client::builder(TokioExecutor::new()).build_http();
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let load = [
        tokio::spawn(pooled_load(
            h1,
            url.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        )),
        tokio::spawn(pooled_load(
            h2,
            url.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        )),
        tokio::spawn(connect_load(addr, Arc::clone(&tally), Arc::clone(&stop))),
    ];

    for round in 1..=5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if round == 3 {
            // A takeover that cannot start: it exits non-zero with the reason; nothing stops.
            let out = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["run", "-c", bad.to_str().unwrap(), "--takeover", socket])
                .output()
                .await
                .unwrap();
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("listeners[0].adress (line 3)"), "{stderr}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let before = tally.ok.load(Ordering::Relaxed);
        let next = spawn(&[
            "-c",
            config,
            "--upgrade-socket",
            socket,
            "--takeover",
            socket,
        ])
        .await;
        assert_eq!(
            next.listener, addr,
            "round {round}: the same listening socket"
        );
        assert_eq!(next.admin, admin, "round {round}: the same admin socket");
        assert!(
            exited_ok(&mut current.child, Duration::from_secs(60)).await,
            "round {round}: the old weir exited 0, without waiting for the 1 h ready delay"
        );
        current = next;
        assert!(
            tally.ok.load(Ordering::Relaxed) > before,
            "round {round}: the load ran"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed, refused, retried) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
    );
    eprintln!(
        "upgrade load: {ok} ok, {failed} failed, {refused} refused, {retried} retried after GOAWAY"
    );
    assert_eq!(refused, 0, "refused connections");
    assert_eq!(failed, 0, "failed requests");
    assert!(ok > 500, "the load ran: {ok} requests");

    // Each new weir bound its upgrade socket beside the path and moved it there: no leftovers.
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["bad.yaml", "weir.sock", "weir.yaml"]);

    // The admin API came over too and answers on its original address.
    let admin_up = tokio::net::TcpStream::connect(admin).await.is_ok();
    assert!(admin_up, "admin API on {admin}");
    // The last weir has no successor: SIGTERM starts its 1 h ready delay (/ready says 503),
    // and a second SIGTERM ends the delay, so it drains and exits.
    let pid = current.child.id().unwrap().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ready_status(admin).await != Some(503) {
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never said 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(
        exited_ok(&mut current.child, Duration::from_secs(60)).await,
        "a second SIGTERM ended the ready delay"
    );
}

/// The status `GET /ready` answers on the admin API at `admin`, if it answers.
async fn ready_status(admin: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: weir\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut head = Vec::new();
    s.read_to_end(&mut head).await.ok()?;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `GET http://{admin}/metrics`: the count of rejected reloads.
async fn rejected_reloads(admin: SocketAddr) -> u64 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .body(Full::default())
        .unwrap();
    let body = client.request(req).await.unwrap().into_body();
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("weir_config_reloads_total{result=\"rejected\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_invalid_files_under_load_fails_nothing() {
    let endpoint = MockHttp::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.yaml");
    write_config(&config, endpoint.addr(), "0s");
    let good = std::fs::read_to_string(&config).unwrap();
    let socket = dir.path().join("weir.sock");
    let mut weir = spawn(&[
        "-c",
        config.to_str().unwrap(),
        "--upgrade-socket",
        socket.to_str().unwrap(),
    ])
    .await;
    let url = format!("http://{}/", weir.listener);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let h1 = Client::builder(TokioExecutor::new()).build_http();
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let load = [h1, h2].map(|c| {
        tokio::spawn(pooled_load(
            c,
            url.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        ))
    });

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = [
        good.replace("- name: main\n", "- name: \"main\n"),
        good.replace(
            "127.0.0.1:0\n    routes",
            "127.0.0.1:0\n    protocol: htp\n    routes",
        ),
        good.replace(
            "clusters:\n",
            &format!(
                "  - name: extra\n    address: {}\n    routes: [ {{ cluster: app }} ]\nclusters:\n",
                taken.local_addr().unwrap()
            ),
        ),
    ];
    let pid = weir.child.id().unwrap().to_string();
    for (i, text) in bad.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&config, text).unwrap();
        let _ = Command::new("kill").args(["-HUP", &pid]).status().await;
        let want = i as u64 + 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while rejected_reloads(weir.admin).await < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reload {want} not rejected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    eprintln!("SIGHUP with 3 invalid files under load: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "failed requests");
    assert!(ok > 200, "the load ran: {ok} requests");
    assert_eq!(rejected_reloads(weir.admin).await, 3);
    let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(exited_ok(&mut weir.child, Duration::from_secs(60)).await);
}

/// A takeover that failed after asking for the sockets (its config adds a listener on a port
/// that is taken) leaves the old weir as it was: on SIGTERM it still keeps accepting for its
/// ready delay while `/ready` says 503, rather than acting as if a successor served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_takeover_leaves_the_ready_delay_in_force() {
    let endpoint = MockHttp::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.yaml");
    write_config(&config, endpoint.addr(), "3s");
    let socket = dir.path().join("weir.sock");
    let socket = socket.to_str().unwrap();
    let mut old = spawn(&["-c", config.to_str().unwrap(), "--upgrade-socket", socket]).await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "  - name: extra\n    address: {}\n    routes: [ {{ cluster: app }} ]\nclusters:\n",
        taken.local_addr().unwrap()
    );
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("clusters:\n", &extra);
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", bad.to_str().unwrap(), "--takeover", socket])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "the takeover could not bind `extra`");

    let pid = old.child.id().unwrap().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ready_status(old.admin).await != Some(503) {
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never said 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still accepting: a new connection is answered during the 3 s delay.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = client
        .get(format!("http://{}/", old.listener).parse().unwrap())
        .await
        .expect("a new connection during the ready delay is served");
    assert_eq!(res.status(), http::StatusCode::OK);
    assert!(exited_ok(&mut old.child, Duration::from_secs(60)).await);
}
