//! Session affinity (issue #6) end to end: the signed cookie with a hyper client and with curl's
//! cookie jar (100 requests on one endpoint, tampered and expired cookies ignored and counted,
//! a dead endpoint moves the session once, draining keeps sessions until the deadline), header
//! hashing (stable, ~1/n of keys move when an endpoint joins), client-address hashing from many
//! loopback source addresses over HTTP, TCP and UDP, HTTP/2's split cookie fields, keys across
//! reloads and instances, the route overriding the cluster, and the decision record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use weir_e2e::{Reply, TestClient, TestProxy, endpoint_list, get, h1_client, send};
use weir_test_support::{MockHttp, MockTcp, MockUdp, TcpEcho, wait_until};

const TOKEN: &str = "0123456789abcdef-affinity";
const NAME: &str = "weir-affinity";

/// A proxy with an admin API, one route to cluster `c` (`route_extra` lines under it) and the
/// cluster's `cluster_extra` lines.
fn config(route_extra: &str, cluster_extra: &str, endpoints: &[SocketAddr]) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0, token: {TOKEN} }}
listeners:
  - name: l
    address: 127.0.0.1:0
    http: {{ debug_trusted: [ 127.0.0.1 ] }}
    routes:
      - cluster: c
{route_extra}
clusters:
  - name: c
{cluster_extra}
    endpoints:
{}",
        endpoint_list(endpoints, 6)
    )
}

async fn mocks(names: &[&str]) -> Vec<MockHttp> {
    let mut out = Vec::new();
    for n in names {
        out.push(MockHttp::start(*n).await);
    }
    out
}

fn addrs(mocks: &[MockHttp]) -> Vec<SocketAddr> {
    mocks.iter().map(MockHttp::addr).collect()
}

/// The affinity cookie's value in a reply's `Set-Cookie`, if it set one.
fn set_cookie(r: &Reply) -> Option<String> {
    r.headers.get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix(&format!("{NAME}="))?;
        Some(rest.split(';').next()?.to_owned())
    })
}

/// `GET /headers` with `cookie` as the affinity cookie, next to an unrelated one.
async fn with_cookie(client: &TestClient, p: &TestProxy, cookie: &str) -> Reply {
    let header = format!("theme=dark; {NAME}={cookie}");
    get(client, &p.url("/headers"), &[("cookie", &header)]).await
}

/// The `session_affinity` counters of cluster `c` from admin `/clusters`.
async fn counters(p: &TestProxy) -> serde_json::Value {
    let admin = p.weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/clusters"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["clusters"][0]["session_affinity"].clone()
}

/// The value of one series in admin `/metrics`.
async fn metric(p: &TestProxy, series: &str) -> u64 {
    let admin = p.weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/metrics"), &[]).await;
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

/// Flips one character in the signed part of a cookie value.
fn tamper(cookie: &str) -> String {
    let mut chars: Vec<char> = cookie.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_keeps_100_requests_on_one_endpoint_and_never_reaches_it() {
    let m = mocks(&["a", "b", "c"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1h, secure: true } }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let client = h1_client();

    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).expect("a new session gets a cookie");
    let raw = first.header("set-cookie");
    for attr in [
        "Path=/",
        "Max-Age=3600",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(raw.contains(attr), "{raw} lacks {attr}");
    }
    let home = first.header("x-endpoint").to_owned();
    for _ in 0..100 {
        let r = with_cookie(&client, &p, &cookie).await;
        assert_eq!(r.header("x-endpoint"), home, "the session stays put");
        assert_eq!(set_cookie(&r), None, "a fresh valid cookie is not re-sent");
        let seen = r.text();
        assert!(seen.contains("cookie: theme=dark\n"), "{seen}");
        assert!(
            !seen.contains(NAME),
            "the affinity cookie is weir's alone: {seen}"
        );
    }
    let c = counters(&p).await;
    assert_eq!(c["hits"], 100, "{c}");
    assert_eq!(c["new_sessions"], 1, "{c}");
    assert_eq!(
        (c["moved_sessions"].clone(), c["invalid_cookies"].clone()),
        (0.into(), 0.into())
    );
    let hits = metric(&p, "weir_cluster_affinity_hits_total{cluster=\"c\"}").await;
    assert_eq!(hits, 100);
    // Without the cookie, round robin spreads new sessions as usual.
    let mut homes = HashSet::new();
    for _ in 0..6 {
        homes.insert(
            get(&client, &p.url("/"), &[])
                .await
                .header("x-endpoint")
                .to_owned(),
        );
    }
    assert_eq!(homes.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_garbage_cookies_are_ignored_and_counted() {
    let m = mocks(&["a", "b"]).await;
    let cluster = "    session_affinity: { cookie: {} }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let client = h1_client();
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    assert!(
        !first.header("set-cookie").contains("Max-Age"),
        "ttl 0: a session cookie"
    );

    for bad in [
        tamper(&cookie),
        "garbage".to_owned(),
        String::new(),
        cookie[..40].to_owned(),
    ] {
        let r = with_cookie(&client, &p, &bad).await;
        assert_eq!(r.status, 200);
        let fresh = set_cookie(&r).expect("an ignored cookie is replaced");
        assert_ne!(fresh, bad);
        assert!(!r.text().contains(NAME));
    }
    let c = counters(&p).await;
    assert_eq!(c["invalid_cookies"], 4, "{c}");
    assert_eq!(c["new_sessions"], 5, "{c}");
    assert_eq!(
        metric(
            &p,
            "weir_cluster_affinity_invalid_cookies_total{cluster=\"c\"}"
        )
        .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_going_down_moves_the_session_once() {
    let mut m = mocks(&["a", "b", "c"]).await;
    let route = "        retry: { attempts: 3, on: [connect-failure], backoff: { base: 1ms } }";
    let cluster =
        "    session_affinity: { cookie: { ttl: 1h } }\n    retry_budget: { percent: 100 }";
    let p = TestProxy::start(&config(route, cluster, &addrs(&m))).await;
    let client = h1_client();
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    let home = first.header("x-endpoint").to_owned();
    let at = m.iter().position(|x| x.name() == home).unwrap();
    m.remove(at).shutdown().await;

    // The first request after the failure is retried elsewhere and gets the moved cookie.
    let moved = with_cookie(&client, &p, &cookie).await;
    assert_eq!(moved.status, 200);
    let new_home = moved.header("x-endpoint").to_owned();
    assert_ne!(new_home, home);
    let new_cookie = set_cookie(&moved).expect("the session moved with the answer");
    for _ in 0..30 {
        let r = with_cookie(&client, &p, &new_cookie).await;
        assert_eq!(r.header("x-endpoint"), new_home);
        assert_eq!(set_cookie(&r), None, "moved once, then stays");
    }
    let c = counters(&p).await;
    assert_eq!(c["moved_sessions"], 1, "{c}");
    assert_eq!(c["hits"], 30, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cookie_is_ignored_and_counted() {
    let m = mocks(&["a", "b"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1s } }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let client = h1_client();
    let cookie = set_cookie(&get(&client, &p.url("/"), &[]).await).unwrap();
    // Signed expiry is whole seconds of wall time: within ~2s the cookie must stop working.
    let deadline = Instant::now() + Duration::from_secs(15);
    let replaced = loop {
        let r = with_cookie(&client, &p, &cookie).await;
        if let Some(fresh) = set_cookie(&r) {
            break fresh;
        }
        assert!(Instant::now() < deadline, "the cookie never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(replaced, cookie);
    let c = counters(&p).await;
    assert_eq!(c["invalid_cookies"], 1, "{c}");
    assert_eq!(c["new_sessions"], 2, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_endpoint_keeps_its_sessions_until_the_deadline_and_gets_no_new_ones() {
    let m = mocks(&["a", "b"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1h }, drain_timeout: 2s }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let client = h1_client();
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    let home = first.header("x-endpoint").to_owned();
    let home_addr = m.iter().find(|x| x.name() == home).unwrap().addr();

    let admin = p.weir.admin_addr().unwrap();
    let drain = format!("http://{admin}/clusters/c/endpoints/{home_addr}/drain");
    // Taken before the drain, so "not before the deadline" cannot fail by the call's latency.
    let drained_at = Instant::now();
    let req = http::Request::post(&drain)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client, req).await.status, 200);

    // The session stays; new sessions all go to the other endpoint.
    for _ in 0..5 {
        assert_eq!(
            with_cookie(&client, &p, &cookie).await.header("x-endpoint"),
            home
        );
        let fresh = get(&client, &p.url("/"), &[]).await;
        assert_ne!(
            fresh.header("x-endpoint"),
            home,
            "no new session on a draining endpoint"
        );
        assert!(set_cookie(&fresh).is_some());
    }
    // Past the deadline the session moves (once).
    let moved = loop {
        let r = with_cookie(&client, &p, &cookie).await;
        if r.header("x-endpoint") != home {
            break r;
        }
        assert!(
            drained_at.elapsed() < Duration::from_secs(30),
            "never moved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        drained_at.elapsed() >= Duration::from_secs(2),
        "moved before the deadline"
    );
    assert!(set_cookie(&moved).is_some());
    assert_eq!(counters(&p).await["moved_sessions"], 1);
}

/// Maps each of `keys` to the endpoint that answers it under `x-user` affinity.
async fn homes(client: &TestClient, p: &TestProxy, keys: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for k in keys {
        let r = get(client, &p.url("/"), &[("x-user", k)]).await;
        assert_eq!(set_cookie(&r), None, "header affinity sets no cookie");
        out.insert(k.clone(), r.header("x-endpoint").to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_affinity_is_stable_and_moves_about_one_nth_when_an_endpoint_joins() {
    let m = mocks(&["a", "b", "c", "d", "e"]).await;
    let cluster = "    lb_policy: least_request\n    session_affinity: { header: x-user }";
    let four = addrs(&m[..4]);
    let p = TestProxy::start(&config("", cluster, &four)).await;
    let client = h1_client();
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let before = homes(&client, &p, &keys).await;
    assert_eq!(
        before,
        homes(&client, &p, &keys).await,
        "stable while the set is"
    );
    let spread: HashSet<&String> = before.values().collect();
    assert_eq!(spread.len(), 4, "keys spread over every endpoint");
    // No header: the cluster's own policy balances.
    assert_eq!(get(&client, &p.url("/"), &[]).await.status, 200);

    let yaml = config("", cluster, &addrs(&m));
    p.weir
        .reload(&weir_config::load_str(&yaml, "t.yaml").unwrap())
        .unwrap();
    let after = homes(&client, &p, &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    let to_new = moved.iter().filter(|k| after[**k] == "e").count();
    let fraction = moved.len() as f64 / keys.len() as f64;
    eprintln!(
        "header affinity: {} of {} keys moved ({fraction:.3}; ideal 1/5 = 0.2), {to_new} to the new endpoint",
        moved.len(),
        keys.len()
    );
    assert!((0.1..=0.3).contains(&fraction), "moved {fraction}");
    assert!(
        to_new * 10 >= moved.len() * 9,
        "moves go to the new endpoint"
    );
    // Each key began a session once; the keys Maglev moved are the moved sessions.
    let c = counters(&p).await;
    assert_eq!(c["new_sessions"], 400, "{c}");
    assert_eq!(c["moved_sessions"], moved.len(), "{c}");
    assert_eq!(c["hits"], 1200 - 400 - moved.len(), "{c}");
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on loopback).
fn client_from(ip: Ipv4Addr) -> TestClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::V4(ip)));
    Client::builder(TokioExecutor::new()).build(connector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_affinity_keeps_each_client_on_its_endpoint() {
    let m = mocks(&["a", "b", "c"]).await;
    let cluster = "    session_affinity: { client_address: true }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let mut seen = HashSet::new();
    for i in 1..=24u8 {
        let client = client_from(Ipv4Addr::new(127, 0, 1, i));
        let home = get(&client, &p.url("/"), &[])
            .await
            .header("x-endpoint")
            .to_owned();
        for _ in 0..5 {
            // A new connection each time: the address, not the connection, is the key.
            let again = client_from(Ipv4Addr::new(127, 0, 1, i));
            assert_eq!(
                get(&again, &p.url("/"), &[]).await.header("x-endpoint"),
                home
            );
        }
        seen.insert(home);
    }
    assert!(seen.len() >= 2, "24 clients all on one endpoint: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_overrides_the_cluster_and_the_record_says_affinity_decided() {
    let m = mocks(&["a", "b", "c"]).await;
    let route = "        session_affinity: { header: x-user }";
    let cluster = "    session_affinity: { cookie: {} }";
    let p = TestProxy::start(&config(route, cluster, &addrs(&m))).await;
    let client = h1_client();
    let r = get(
        &client,
        &p.url("/"),
        &[("x-user", "ann"), ("x-weir-debug", "1")],
    )
    .await;
    assert_eq!(
        set_cookie(&r),
        None,
        "the route's header affinity wins over the cookie"
    );
    let record = r.header("x-weir-decision");
    assert!(record.starts_with("policy=session_affinity;"), "{record}");
    assert!(record.contains("note=header"), "{record}");

    // The cluster's cookie affinity, with the verdict in the record.
    let yaml = config("", cluster, &addrs(&m));
    p.weir
        .reload(&weir_config::load_str(&yaml, "t.yaml").unwrap())
        .unwrap();
    let first = get(&client, &p.url("/"), &[("x-weir-debug", "1")]).await;
    assert!(
        first.header("x-weir-decision").contains("affinity=new"),
        "{first:?}"
    );
    let cookie = set_cookie(&first).unwrap();
    let header = format!("{NAME}={cookie}");
    let hit = get(
        &client,
        &p.url("/"),
        &[("cookie", &header), ("x-weir-debug", "1")],
    )
    .await;
    let record = hit.header("x-weir-decision");
    assert!(record.starts_with("policy=session_affinity;"), "{record}");
    assert!(
        record.contains("note=cookie") && record.contains("affinity=hit"),
        "{record}"
    );
}

/// Runs curl with a cookie jar against `url`; returns (endpoint name, headers text).
async fn curl(jar: &Path, url: &str) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "-c"])
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .arg(url)
        .output()
        .await
        .expect("curl runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8(out.stdout).unwrap();
    let endpoint = head
        .lines()
        .find_map(|l| l.strip_prefix("x-endpoint: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    (endpoint, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_cookie_jar_sticks_and_a_tampered_jar_is_ignored() {
    let m = mocks(&["a", "b", "c"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1h } }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar.txt");
    let url = p.url("/");
    let (home, head) = curl(&jar, &url).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: weir-affinity="),
        "{head}"
    );
    for _ in 0..20 {
        let (endpoint, head) = curl(&jar, &url).await;
        assert_eq!(endpoint, home);
        assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    }
    // Change the cookie's value in the jar (the last field of its line).
    let text = std::fs::read_to_string(&jar).unwrap();
    let edited: String = text
        .lines()
        .map(|l| match l.rsplit_once('\t') {
            Some((rest, value)) if l.contains(NAME) => format!("{rest}\t{}\n", tamper(value)),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(edited, text);
    std::fs::write(&jar, edited).unwrap();
    let (_, head) = curl(&jar, &url).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: weir-affinity="),
        "{head}"
    );
    let c = counters(&p).await;
    assert_eq!(c["invalid_cookies"], 1, "{c}");
    assert_eq!(c["hits"], 20, "{c}");
    // The jar now holds the fresh cookie, and the session sticks again.
    let (again, _) = curl(&jar, &url).await;
    let (twice, _) = curl(&jar, &url).await;
    assert_eq!(again, twice);
}

/// One echoed exchange through weir's TCP listener at `addr` from source address `ip`.
async fn tcp_from(ip: Ipv4Addr, addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_affinity_applies_to_tcp_listeners() {
    let echoes = [
        MockTcp::echo().await,
        MockTcp::echo().await,
        MockTcp::echo().await,
    ];
    let list: Vec<String> = echoes.iter().map(|e| e.addr().to_string()).collect();
    let yaml = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: tcp
    cluster: c
clusters:
  - name: c
    session_affinity: {{ client_address: true }}
    endpoints: [ {} ]
",
        list.join(", ")
    );
    let p = TestProxy::start(&yaml).await;
    let counts = || {
        echoes
            .iter()
            .map(TcpEcho::connections)
            .collect::<Vec<u64>>()
    };
    let mut homes = HashSet::new();
    for i in 1..=12u8 {
        let before = counts();
        for _ in 0..4 {
            tcp_from(Ipv4Addr::new(127, 0, 2, i), p.addr).await;
        }
        let after = counts();
        let took: Vec<usize> = (0..3).filter(|&k| after[k] != before[k]).collect();
        assert_eq!(took.len(), 1, "client {i} spread over {took:?}");
        assert_eq!(after[took[0]] - before[took[0]], 4);
        homes.insert(took[0]);
    }
    assert!(homes.len() >= 2, "12 clients all on one endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_survive_reloads_and_a_shared_key_works_across_instances() {
    let m = mocks(&["a", "b", "c"]).await;
    let client = h1_client();
    // The generated key outlives a reload.
    let generated = config("", "    session_affinity: { cookie: {} }", &addrs(&m));
    let p = TestProxy::start(&generated).await;
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    p.weir
        .reload(&weir_config::load_str(&generated, "t.yaml").unwrap())
        .unwrap();
    let r = with_cookie(&client, &p, &cookie).await;
    assert_eq!(r.header("x-endpoint"), first.header("x-endpoint"));
    assert_eq!(set_cookie(&r), None);

    // Two instances with one configured key accept each other's cookies.
    let key = "a1".repeat(32);
    let shared = config(
        "",
        &format!("    session_affinity: {{ cookie: {{ key: \"{key}\" }} }}"),
        &addrs(&m),
    );
    let one = TestProxy::start(&shared).await;
    let two = TestProxy::start(&shared).await;
    // Round robin on `two` would go to `a` first; take a session on `one` that is not on `a`.
    let _ = get(&client, &one.url("/"), &[]).await;
    let from_one = get(&client, &one.url("/"), &[]).await;
    let home = from_one.header("x-endpoint").to_owned();
    let cookie = set_cookie(&from_one).unwrap();
    for _ in 0..5 {
        let r = with_cookie(&client, &two, &cookie).await;
        assert_eq!(r.header("x-endpoint"), home);
        assert_eq!(set_cookie(&r), None);
    }
    assert_eq!(counters(&two).await["hits"], 5);
    // The generated key of this process is not the configured one.
    assert!(
        with_cookie(&client, &p, &cookie)
            .await
            .headers
            .contains_key("set-cookie")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_with_split_cookie_headers_stick_too() {
    let m = mocks(&["a", "b", "c"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1h } }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let client = weir_e2e::h2_client();
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    let home = first.header("x-endpoint").to_owned();
    // HTTP/2 clients may send each cookie in its own field (RFC 9113 §8.2.3).
    let ours = format!("{NAME}={cookie}");
    for _ in 0..10 {
        let r = get(
            &client,
            &p.url("/headers"),
            &[
                ("cookie", "theme=dark"),
                ("cookie", &ours),
                ("cookie", "lang=en"),
            ],
        )
        .await;
        assert_eq!(r.header("x-endpoint"), home);
        assert_eq!(set_cookie(&r), None);
        let seen = r.text();
        assert!(seen.contains("cookie: theme=dark; lang=en\n"), "{seen}");
        assert!(!seen.contains(NAME), "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_affinity_applies_to_udp_sessions() {
    let echoes = [
        MockUdp::echo("a").await,
        MockUdp::echo("b").await,
        MockUdp::echo("c").await,
    ];
    let list: Vec<String> = echoes.iter().map(|e| e.addr().to_string()).collect();
    let yaml = format!(
        "listeners:
  - name: l
    address: 127.0.0.1:0
    protocol: udp
    cluster: c
clusters:
  - name: c
    session_affinity: {{ client_address: true }}
    endpoints: [ {} ]
",
        list.join(", ")
    );
    let p = TestProxy::start(&yaml).await;
    let counts = || echoes.iter().map(MockUdp::datagrams).collect::<Vec<u64>>();
    let mut homes = HashSet::new();
    for i in 1..=12u8 {
        let before = counts();
        // Three sessions (three source ports) from one address share its endpoint.
        for port in 0..3u8 {
            let socket = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 3, i), 0))
                .await
                .unwrap();
            socket.connect(p.addr).await.unwrap();
            let payload = [i, port];
            socket.send(&payload).await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .expect("the echo answered")
                .unwrap();
            assert_eq!(&buf[..n], &payload);
        }
        let after = counts();
        let took: Vec<usize> = (0..3).filter(|&k| after[k] != before[k]).collect();
        assert_eq!(took.len(), 1, "client {i} spread over {took:?}");
        assert_eq!(after[took[0]] - before[took[0]], 3);
        homes.insert(took[0]);
    }
    assert!(homes.len() >= 2, "12 clients all on one endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_moves_the_session_once_and_recovery_does_not_move_it_back() {
    let m = mocks(&["a", "b"]).await;
    let cluster = "    session_affinity: { cookie: { ttl: 1h } }
    health_check:
      interval: 50ms
      timeout: 1s
      healthy_threshold: 1
      unhealthy_threshold: 1
      http: { path: /healthz, body_contains: ok }";
    let p = TestProxy::start(&config("", cluster, &addrs(&m))).await;
    let snapshot = p.proxy().snapshots().load();
    let states: Vec<_> = snapshot
        .cluster("c")
        .unwrap()
        .endpoints
        .iter()
        .map(|e| std::sync::Arc::clone(&e.state))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || states
            .iter()
            .all(|s| s.is_healthy()))
        .await
    );
    let client = h1_client();
    let first = get(&client, &p.url("/"), &[]).await;
    let cookie = set_cookie(&first).unwrap();
    let home = m
        .iter()
        .position(|x| x.name() == first.header("x-endpoint"))
        .unwrap();

    m[home].set_fail_with(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert!(wait_until(Duration::from_secs(10), || !states[home].is_healthy()).await);
    let moved = with_cookie(&client, &p, &cookie).await;
    assert_eq!(moved.status, 200);
    assert_eq!(moved.header("x-endpoint"), m[1 - home].name());
    let cookie = set_cookie(&moved).expect("the cookie follows the new endpoint");

    // The old endpoint recovers: the session stays where it moved.
    m[home].set_fail_with(None);
    assert!(wait_until(Duration::from_secs(10), || states[home].is_healthy()).await);
    for _ in 0..10 {
        let r = with_cookie(&client, &p, &cookie).await;
        assert_eq!(r.header("x-endpoint"), m[1 - home].name());
        assert_eq!(set_cookie(&r), None);
    }
    assert_eq!(counters(&p).await["moved_sessions"], 1);
}
