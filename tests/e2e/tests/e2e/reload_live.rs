//! Reloading a running weir from its config file: through `POST /reload` (token-guarded, a bad
//! file answered with its path and line while the old config serves), through the file
//! watcher, and 20 times under steady HTTP/1.1 and HTTP/2 load with no failed request and the
//! new routes and weights in force for every request that starts after the reload; and six
//! invalid reloads (bad YAML, a bad value, a listener that cannot bind; by `POST /reload` and by
//! the watcher) under the same load: none fails a request, each is answered with the file, the
//! YAML path and the line, counted, and the old config answers throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use weir::Weir;
use weir_e2e::{Reply, TestClient, get, h1_client, h2_client, send};
use weir_test_support::{MockHttp, wait_until};

const TOKEN: &str = "0123456789abcdef-test";

/// A config with an admin API, whose route tags responses `x-config: {tag}` and whose cluster
/// weighs endpoints `a` and `b` as given.
fn config(tag: &str, a: (&MockHttp, u32), b: (&MockHttp, u32)) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: c
        response_headers: {{ set: {{ x-config: {tag} }} }}
clusters:
  - name: c
    endpoints:
      - {{ address: {}, weight: {} }}
      - {{ address: {}, weight: {} }}
",
        a.0.addr(),
        a.1,
        b.0.addr(),
        b.1
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn post(url: &str, token: Option<&str>) -> Reply {
    let mut req = http::Request::post(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(&h1_client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

fn url(weir: &Weir, path: &str) -> String {
    format!("http://{}{path}", weir.proxy().listener_addrs()[0].1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_the_file_and_rejects_a_bad_one_with_its_line() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    write(&file, &config("one", (&a, 1), (&b, 1)));
    let weir = Weir::start_file(&file).await.unwrap();
    let admin = weir.admin_addr().unwrap();
    let reload = format!("http://{admin}/reload");
    let client = h1_client();
    assert_eq!(
        get(&client, &url(&weir, "/"), &[]).await.header("x-config"),
        "one"
    );

    write(&file, &config("two", (&a, 1), (&b, 1)));
    let r = post(&reload, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(
        get(&client, &url(&weir, "/"), &[]).await.header("x-config"),
        "one"
    );
    let r = post(&reload, Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["reloaded"], true);
    assert_eq!(v["clusters"], 1);
    assert_eq!(
        get(&client, &url(&weir, "/"), &[]).await.header("x-config"),
        "two"
    );

    // A bad file: 400 naming the file, YAML path and line; the running config keeps serving.
    let bad = config("three", (&a, 1), (&b, 1)).replace("weight: 1", "weight: lots");
    write(&file, &bad);
    let r = post(&reload, Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = r.text();
    assert!(message.contains("weir.yaml"), "{message}");
    assert!(
        message.contains("clusters[0].endpoints[0].weight"),
        "{message}"
    );
    assert!(message.contains("line 11"), "{message}");
    assert_eq!(
        get(&client, &url(&weir, "/"), &[]).await.header("x-config"),
        "two"
    );
    let counts = weir.reload_counts();
    assert_eq!((counts.applied, counts.rejected), (1, 1));
    let metrics = get(&client, &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("weir_config_reloads_total{result=\"applied\"} 1")
            && metrics.contains("weir_config_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );

    let r = get(&client, &reload, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_reloads_when_the_file_changes() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    write(&file, &config("one", (&a, 1), (&b, 1)));
    let weir = Weir::start_file(&file).await.unwrap();
    weir.watch(Duration::from_millis(20));
    let client = h1_client();
    let target = url(&weir, "/");

    // Replaced the way editors and ConfigMaps do it: a new file renamed over the old one.
    let next = dir.path().join("weir.yaml.new");
    write(&next, &config("two", (&a, 1), (&b, 1)));
    std::fs::rename(&next, &file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = get(&client, &target, &[])
            .await
            .header("x-config")
            .to_owned();
        if seen == "two" {
            break;
        }
        assert!(Instant::now() < deadline, "still {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A broken edit is rejected and counted; the running config stays.
    write(&file, "listeners: [ {");
    assert!(
        wait_until(Duration::from_secs(10), || weir.reload_counts().rejected
            == 1)
        .await
    );
    assert_eq!(get(&client, &target, &[]).await.header("x-config"), "two");
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

/// One request of the load: when it started, and what answered.
struct Seen {
    started: Instant,
    finished: Instant,
    status: StatusCode,
    tag: String,
    endpoint: String,
}

/// Sends requests with `client` every `period` until `stop`; every failure is recorded too.
async fn load(
    client: TestClient,
    target: String,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut ticks = tokio::time::interval(period);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let started = Instant::now();
        let req = http::Request::get(&target)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, tag, endpoint) = match client.request(req).await {
            Ok(res) => {
                let h = |n: &str| {
                    res.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let out = (res.status(), h("x-config"), h("x-endpoint"));
                let _ = http_body_util::BodyExt::collect(res.into_body()).await;
                out
            }
            Err(_) => (
                StatusCode::BAD_GATEWAY,
                "client error".into(),
                String::new(),
            ),
        };
        seen.push(Seen {
            started,
            finished: Instant::now(),
            status,
            tag,
            endpoint,
        });
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_nothing_and_apply_at_once() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    let configs = [
        config("heavy-a", (&a, 9), (&b, 1)),
        config("heavy-b", (&a, 1), (&b, 9)),
    ];
    write(&file, &configs[0]);
    let weir = Weir::start_file(&file).await.unwrap();
    let target = url(&weir, "/");
    let stop = Arc::new(AtomicBool::new(false));
    // ~250 req/s over keep-alive HTTP/1.1 and ~250 req/s over one HTTP/2 connection.
    let clients = [h1_client(), h2_client()].map(|c| {
        tokio::spawn(load(
            c,
            target.clone(),
            Duration::from_millis(4),
            Arc::clone(&stop),
        ))
    });

    let mut reloads = Vec::new();
    for i in 1..=20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        write(&file, &configs[i % 2]);
        let before = Instant::now();
        weir.reload_file().unwrap();
        let tag = if i % 2 == 0 { "heavy-a" } else { "heavy-b" };
        reloads.push((before, Instant::now(), tag));
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }

    let failed = seen.iter().filter(|s| s.status != StatusCode::OK).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", seen.len());
    // ~5,000 requests on an idle machine; far fewer when it is loaded, which weakens nothing
    // below as long as there is traffic around every reload.
    assert!(seen.len() > 500, "the load ran: {} requests", seen.len());
    // A request that starts after reload k returned and ends before reload k+1 begins must see
    // config k; one that overlaps a reload may see either.
    for (k, &(_, at, tag)) in reloads.iter().enumerate() {
        let until = reloads.get(k + 1).map(|r| r.0);
        let after: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.started >= at && until.is_none_or(|u| s.finished < u))
            .collect();
        let stale = after.iter().filter(|s| s.tag != tag).count();
        assert_eq!(
            stale, 0,
            "reload {k}: {stale} requests started after it saw the old routes"
        );
        let heavy = if tag == "heavy-a" { "a" } else { "b" };
        let share =
            after.iter().filter(|s| s.endpoint == heavy).count() as f64 / after.len().max(1) as f64;
        assert!(
            after.len() < 20 || share >= 0.75,
            "reload {k}: {heavy} took {share:.2} of {} requests, weight says 0.9",
            after.len()
        );
    }
    let counts = weir.reload_counts();
    assert_eq!((counts.applied, counts.rejected), (20, 0));
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}

/// Waits until the endpoints have served 100 more requests of the running load, so traffic
/// flows around every reload (the reloads themselves are awaited on their counts).
async fn more_traffic(a: &MockHttp, b: &MockHttp) {
    let served = || a.requests() + b.requests();
    let want = served() + 100;
    assert!(
        wait_until(Duration::from_secs(10), || served() >= want).await,
        "the load stalled"
    );
}

/// Replaces `path`'s contents at once (a rename), so the watcher never reads half a file.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("yaml.next");
    write(&next, text);
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reloads_under_load_fail_nothing_and_say_where() {
    let (a, b) = (MockHttp::start("a").await, MockHttp::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    let good = config("one", (&a, 1), (&b, 1));
    write(&file, &good);
    let weir = Weir::start_file(&file).await.unwrap();
    let admin = weir.admin_addr().unwrap();
    let reload = format!("http://{admin}/reload");
    let target = url(&weir, "/");
    let stop = Arc::new(AtomicBool::new(false));
    let clients = [h1_client(), h2_client()].map(|c| {
        tokio::spawn(load(
            c,
            target.clone(),
            Duration::from_millis(4),
            Arc::clone(&stop),
        ))
    });

    // An address the new listener cannot bind: taken by the test.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shown = file.display().to_string();
    // (the file, what the rejection must say: the file, YAML path and line, and a word)
    let bad = [
        (
            good.replace("- name: l\n", "- name: \"l\n"),
            format!("{shown} (line "),
            "",
        ),
        (
            good.replace("weight: 1", "weight: lots"),
            format!("{shown}: clusters[0].endpoints[0].weight (line 11)"),
            "lots",
        ),
        (
            good.replace(
                "clusters:\n",
                &format!(
                    "  - name: extra\n    address: {}\n    routes: [ {{ cluster: c }} ]\nclusters:\n",
                    taken.local_addr().unwrap()
                ),
            ),
            format!("{shown}: listeners[1].address (line 9)"),
            "cannot bind",
        ),
    ];
    for (text, place, word) in &bad {
        more_traffic(&a, &b).await;
        replace(&file, text);
        let r = post(&reload, Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let message = v["error"].as_str().unwrap();
        assert!(
            message.starts_with(place.as_str()),
            "want {place:?}: {message}"
        );
        assert!(message.contains(word), "want {word:?}: {message}");
    }

    // The same three through the file watcher, started on the good file.
    replace(&file, &good);
    weir.watch(Duration::from_millis(20));
    for (i, (text, _, _)) in bad.iter().enumerate() {
        more_traffic(&a, &b).await;
        replace(&file, text);
        let want = 4 + i as u64;
        assert!(
            wait_until(Duration::from_secs(10), || weir.reload_counts().rejected
                == want)
            .await,
            "the watcher rejected bad file {i}"
        );
    }
    more_traffic(&a, &b).await;
    // A good file at last: the watcher applies it, so it was watching all along.
    let applied_at = Instant::now();
    replace(&file, &config("two", (&a, 1), (&b, 1)));
    assert!(
        wait_until(Duration::from_secs(10), || weir.reload_counts().applied
            == 1)
        .await
    );
    more_traffic(&a, &b).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }

    let failed = seen.iter().filter(|s| s.status != StatusCode::OK).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", seen.len());
    assert!(seen.len() > 300, "the load ran: {} requests", seen.len());
    let stale = seen
        .iter()
        .filter(|s| s.finished < applied_at && s.tag != "one")
        .count();
    assert_eq!(stale, 0, "the old config answered until the good reload");
    assert!(seen.iter().any(|s| s.tag == "two"));
    let counts = weir.reload_counts();
    assert_eq!((counts.applied, counts.rejected), (1, 6));
    let metrics = get(&h1_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("weir_config_reloads_total{result=\"rejected\"} 6")
            && metrics.contains("weir_config_reloads_total{result=\"applied\"} 1"),
        "{metrics}"
    );
    println!(
        "{} requests over HTTP/1.1 and HTTP/2 through 6 rejected reloads: 0 failed",
        seen.len()
    );
    assert!(weir.shutdown(Duration::from_secs(5)).await);
}
