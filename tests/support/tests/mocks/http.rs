//! `MockHttp`: routes, fixed behaviours, counters and lifetime, over HTTP/1.1 and HTTP/2.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use weir_test_support::{MockHttp, pattern_byte, wait_until};

use crate::client::{Conn, channel_body, collect, empty, full, header};

const VERSIONS: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn default_response_names_the_endpoint_and_echoes_request_facts() {
    for version in VERSIONS {
        let mock = MockHttp::start("alpha").await;
        let (mut conn, _driver) = Conn::open(mock.addr(), version).await;
        let (resp, body) = conn.get("/some/path?q=1").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body, "alpha");
        assert_eq!(header(&resp, "x-endpoint"), "alpha");
        assert_eq!(header(&resp, "x-seen-path"), "/some/path?q=1");
        assert_eq!(header(&resp, "x-seen-method"), "GET");
        assert_eq!(header(&resp, "x-seen-version"), format!("{version:?}"));
        assert_eq!(header(&resp, "x-seen-host"), mock.addr().to_string());
        assert_eq!(mock.name(), "alpha");
        assert_eq!(mock.url("/x"), format!("http://{}/x", mock.addr()));
    }
}

#[tokio::test]
async fn counts_requests_and_connections() {
    let mock = MockHttp::start("alpha").await;
    let (mut h1, _d1) = Conn::open(mock.addr(), Version::HTTP_11).await;
    for _ in 0..3 {
        h1.get("/").await;
    }
    assert_eq!((mock.requests(), mock.connections()), (3, 1));

    let (h2, _d2) = Conn::open(mock.addr(), Version::HTTP_2).await;
    let concurrent = (0..4).map(|_| {
        let mut h2 = h2.clone_h2();
        async move { h2.get("/").await }
    });
    futures_util::future::join_all(concurrent).await;
    assert_eq!((mock.requests(), mock.connections()), (7, 2));
}

#[tokio::test]
async fn echo_streams_each_chunk_back_before_the_body_ends() {
    for version in VERSIONS {
        let mock = MockHttp::start("alpha").await;
        let (mut conn, _driver) = Conn::open(mock.addr(), version).await;
        let (tx, body) = channel_body();
        tx.send(Bytes::from_static(b"one")).await.unwrap();
        let req = conn.request(Method::POST, "/echo", body);
        let mut resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.body_mut();
        // Each chunk comes back while the request body is still open: nothing is buffered.
        for chunk in ["one", "two", "three"] {
            if chunk != "one" {
                tx.send(Bytes::from(chunk)).await.unwrap();
            }
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), chunk, "{version:?}");
        }
        drop(tx);
        // HTTP/2 may end the body with an empty DATA frame, which the echo forwards too.
        let rest = body.collect().await.unwrap().to_bytes();
        assert!(rest.is_empty(), "{version:?} {rest:?}");
    }
}

#[tokio::test]
async fn headers_lists_every_request_header() {
    for version in VERSIONS {
        let mock = MockHttp::start("alpha").await;
        let (mut conn, _driver) = Conn::open(mock.addr(), version).await;
        let mut req = conn.request(Method::GET, "/headers", empty());
        req.headers_mut()
            .insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        req.headers_mut().append("x-multi", "a".parse().unwrap());
        req.headers_mut().append("x-multi", "b".parse().unwrap());
        let (_, body) = collect(conn.send(req).await.unwrap()).await;
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("x-forwarded-for: 10.0.0.1\n"), "{body}");
        assert!(body.contains("x-multi: a\nx-multi: b\n"), "{body}");
    }
}

#[tokio::test]
async fn status_delay_and_bad_paths() {
    let mock = MockHttp::start("alpha").await;
    let (mut conn, _driver) = Conn::open(mock.addr(), Version::HTTP_11).await;
    let (resp, body) = conn.get("/status/503").await;
    assert_eq!(
        (resp.status(), &body[..]),
        (StatusCode::SERVICE_UNAVAILABLE, &b"alpha"[..])
    );
    let (resp, body) = conn.get("/status/204").await;
    assert_eq!((resp.status(), body.len()), (StatusCode::NO_CONTENT, 0));
    for bad in ["/status/abc", "/status/100", "/delay/x", "/bytes/-1"] {
        assert_eq!(
            conn.get(bad).await.0.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let start = Instant::now();
    let (resp, _) = conn.get("/delay/40").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn bytes_streams_the_pattern() {
    const LEN: u64 = 16 * 1024 * 1024 + 13;
    for version in VERSIONS {
        let mock = MockHttp::start("alpha").await;
        let (mut conn, _driver) = Conn::open(mock.addr(), version).await;
        let req = conn.request(Method::GET, &format!("/bytes/{LEN}"), empty());
        let mut resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut offset = 0u64;
        while let Some(frame) = resp.body_mut().frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            let mismatch = data
                .iter()
                .zip(offset..)
                .find(|(byte, at)| **byte != pattern_byte(*at));
            assert!(mismatch.is_none(), "{version:?}: {mismatch:?}");
            offset += data.len() as u64;
        }
        assert_eq!(offset, LEN, "{version:?}");
    }
}

#[tokio::test]
async fn sink_counts_a_streamed_body() {
    const CHUNKS: usize = 64;
    const CHUNK: usize = 64 * 1024;
    for version in VERSIONS {
        let mock = MockHttp::start("alpha").await;
        let (mut conn, _driver) = Conn::open(mock.addr(), version).await;
        let (tx, body) = channel_body();
        let req = conn.request(Method::POST, "/sink", body);
        let feed = tokio::spawn(async move {
            let chunk = Bytes::from(vec![7u8; CHUNK]);
            for _ in 0..CHUNKS {
                tx.send(chunk.clone()).await.unwrap();
            }
        });
        let (resp, body) = collect(conn.send(req).await.unwrap()).await;
        feed.await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body, (CHUNKS * CHUNK).to_string(), "{version:?}");
    }
}

#[tokio::test]
async fn fail_with_answers_every_path() {
    let mock = MockHttp::builder("down")
        .fail_with(StatusCode::SERVICE_UNAVAILABLE)
        .start()
        .await;
    let (mut conn, _driver) = Conn::open(mock.addr(), Version::HTTP_2).await;
    for path in ["/", "/echo", "/status/200"] {
        let (resp, body) = conn.get(path).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "down");
        assert_eq!(header(&resp, "x-endpoint"), "down");
    }
    assert_eq!(mock.requests(), 3);
}

#[tokio::test]
async fn healthz_answers_ok_until_set_fail_with_switches_failing_on() {
    let mock = MockHttp::start("alpha").await;
    let (mut conn, _driver) = Conn::open(mock.addr(), Version::HTTP_11).await;
    let (resp, body) = conn.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body, "ok");

    mock.set_fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    for path in ["/healthz", "/", "/status/200"] {
        let (resp, body) = conn.get(path).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body, "alpha");
    }

    mock.set_fail_with(None);
    let (resp, body) = conn.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn delay_holds_every_response() {
    let mock = MockHttp::builder("slow")
        .delay(Duration::from_millis(40))
        .start()
        .await;
    let (mut conn, _driver) = Conn::open(mock.addr(), Version::HTTP_11).await;
    let start = Instant::now();
    let (resp, _) = conn.get("/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn reset_closes_connections_without_answering() {
    let mock = MockHttp::builder("rst").reset().start().await;
    for version in VERSIONS {
        let io = TcpStream::connect(mock.addr()).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(io);
        let result = if version == Version::HTTP_2 {
            match hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
            {
                Ok((mut send, conn)) => {
                    tokio::spawn(conn);
                    let req = http::Request::get(format!("http://{}/", mock.addr()))
                        .body(full(""))
                        .unwrap();
                    send.send_request(req).await.map(drop)
                }
                Err(error) => Err(error),
            }
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::get("/").body(full("")).unwrap();
            send.send_request(req).await.map(drop)
        };
        assert!(result.is_err(), "{version:?}");
    }
    assert_eq!((mock.requests(), mock.connections()), (0, 2));
}

#[tokio::test]
async fn drop_closes_open_connections() {
    let mock = MockHttp::start("alpha").await;
    let (mut conn, driver) = Conn::open(mock.addr(), Version::HTTP_11).await;
    conn.get("/").await;
    drop(mock);
    tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let mock = MockHttp::start("alpha").await;
    let addr = mock.addr();
    let (mut conn, driver) = Conn::open(addr, Version::HTTP_2).await;
    conn.get("/").await;
    mock.shutdown().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
}

#[tokio::test]
async fn requests_are_counted_on_arrival() {
    let mock = MockHttp::start("alpha").await;
    let (mut conn, _driver) = Conn::open(mock.addr(), Version::HTTP_2).await;
    let req = conn.request(Method::GET, "/delay/60000", empty());
    let pending = tokio::spawn(async move { conn.send(req).await.map(drop) });
    assert!(wait_until(WAIT, || mock.requests() == 1).await);
    pending.abort();
}
