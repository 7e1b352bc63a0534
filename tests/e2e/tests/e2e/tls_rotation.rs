//! Certificate rotation on a TLS listener while weir runs: new handshakes get the new
//! certificate within 1 s of the write, whether the files are swapped atomically (a symlinked
//! directory replaced, as Kubernetes does with secrets) or rewritten in place one after the
//! other; connections opened before keep working; a broken new certificate keeps the old one
//! serving and says why (`weir_tls_certificate_reload_failures_total`, `/listeners`) until a
//! change or a reload loads. The 1 s is measured from just after the write to the end of the
//! first handshake served the new certificate, and printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, wait_until_async};

use crate::tls_client::{Client, Pki, common_name, connect, get1, h1};

/// What the issue asks of a rotation: measured from just after the write to the end of the
/// first handshake served the new certificate.
const WITHIN: Duration = Duration::from_secs(1);

/// The config: certificate files under `<dir>/live/`, an admin API without a token.
fn config(live: &str, app: &MockHttp) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: https
    address: 127.0.0.1:0
    routes: [ {{ cluster: app }} ]
    tls: {{ certificates: [ {{ cert: \"{live}/site.pem\", key: \"{live}/site.key\" }} ] }}
clusters:
  - {{ name: app, endpoints: [ {} ] }}
",
        app.addr()
    )
}

/// The CN of the certificate a new handshake for `site.test` is served (`client` never
/// resumes, so each is a full handshake).
async fn served(p: &TestProxy, client: &Client) -> String {
    let c = client.connect(p.addr, "site.test").await.unwrap();
    common_name(&c.served)
}

/// How long after `written` (taken right after the files were written) the first new handshake
/// is served the certificate with CN `cn`, up to the end of that handshake; fails after 10 s.
/// `what` names the rotation in the figure printed.
async fn until_served(
    p: &TestProxy,
    client: &Client,
    cn: &str,
    written: Instant,
    what: &str,
) -> Duration {
    loop {
        let now = served(p, client).await;
        let took = written.elapsed();
        if now == cn {
            println!("tls_rotation: {what}: new certificate served {took:?} after the write");
            return took;
        }
        assert!(
            took < Duration::from_secs(10),
            "still served {now:?}, want {cn:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The text of `/metrics`.
async fn metrics(p: &TestProxy) -> String {
    let admin = p.weir.admin_addr().unwrap();
    get(&h1_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .text()
}

/// The value of `weir_tls_certificate_reload_failures_total{listener="https"}` in `/metrics`.
async fn failures(p: &TestProxy) -> u64 {
    let text = metrics(p).await;
    let series = "weir_tls_certificate_reload_failures_total{listener=\"https\"}";
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

/// The `tls_reload_error` of listener `https` in `/listeners`, if any.
async fn listed_error(p: &TestProxy) -> Option<String> {
    let admin = p.weir.admin_addr().unwrap();
    let r = get(&h1_client(), &format!("http://{admin}/listeners"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["listeners"][0]["tls_reload_error"]
        .as_str()
        .map(str::to_owned)
}

/// Writes a certificate with CN `cn` for site.test as `<dir>/site.pem` and `.key`.
fn issue(pki: &Pki, dir: &Path, cn: &str) {
    std::fs::create_dir_all(dir).unwrap();
    pki.ca.issue_pem(cn, &["site.test"]).write(dir, "site");
}

/// Points the `live` symlink at `target` atomically (a new link renamed over the old one).
fn swap(live: &Path, target: &Path) {
    let tmp = live.with_extension("tmp");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, live).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_serve_new_handshakes_within_a_second_and_keep_old_connections() {
    let pki = Pki::new();
    let (v1, v2) = (pki.dir.path().join("v1"), pki.dir.path().join("v2"));
    let live = pki.dir.path().join("live");
    issue(&pki, &v1, "one");
    std::os::unix::fs::symlink(&v1, &live).unwrap();
    let app = MockHttp::start("app").await;
    let proxy = TestProxy::start(&config(&live.display().to_string(), &app)).await;
    // Built once: only the handshakes are inside the measured intervals.
    let client = Client::full_handshakes(&pki.ca, &[b"http/1.1"]);

    let old = connect(proxy.addr, "site.test", &pki.ca, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(common_name(&old.served), "one");
    let mut old = h1(old.stream).await;
    assert_eq!(
        get1(&mut old, "site.test", "/", &[]).await.unwrap().status,
        200
    );

    // Atomic: a new directory, then the symlink swapped to it.
    issue(&pki, &v2, "two");
    swap(&live, &v2);
    let took = until_served(&proxy, &client, "two", Instant::now(), "symlink swap").await;
    assert!(took < WITHIN, "symlink swap served after {took:?}");
    // The connection opened before the rotation goes on working.
    assert_eq!(
        get1(&mut old, "site.test", "/", &[]).await.unwrap().status,
        200
    );

    // In place, certificate first and key a moment later: a poll in between sees the new
    // certificate with the old key. That is a rotation in progress, not a failure.
    let three = pki.ca.issue_pem("three", &["site.test"]);
    std::fs::write(v2.join("site.pem"), &three.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(v2.join("site.key"), &three.key_pem).unwrap();
    let written = Instant::now();
    let took = until_served(&proxy, &client, "three", written, "in-place write").await;
    assert!(took < WITHIN, "in-place write served after {took:?}");
    assert_eq!(
        failures(&proxy).await,
        0,
        "a settling rotation is no failure"
    );
    assert_eq!(listed_error(&proxy).await, None);

    // A broken file keeps the last good certificate serving and says why, once.
    std::fs::write(
        v2.join("site.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    let reported = wait_until_async(Duration::from_secs(10), || async {
        failures(&proxy).await == 1
    })
    .await;
    assert!(reported, "the failure was not counted");
    let why = listed_error(&proxy).await.unwrap_or_default();
    assert!(why.contains("site.pem"), "{why}");
    assert_eq!(served(&proxy, &client).await, "three");
    assert_eq!(failures(&proxy).await, 1, "counted once");
    crate::metrics::promtool_check(&metrics(&proxy).await);

    // A good one after it is picked up again, and the reason goes away.
    issue(&pki, &v2, "four");
    let took = until_served(&proxy, &client, "four", Instant::now(), "recovery").await;
    assert!(took < WITHIN, "recovery served after {took:?}");
    assert_eq!(listed_error(&proxy).await, None);

    // A reload reads the files too, keeps the count, and ends a reported failure at once: the
    // files it now names load, though the broken ones the watcher saw are still there.
    std::fs::write(v2.join("site.pem"), "not a certificate\n").unwrap();
    let reported = wait_until_async(Duration::from_secs(10), || async {
        failures(&proxy).await == 2
    })
    .await;
    assert!(reported, "the second failure was not counted");
    assert!(listed_error(&proxy).await.is_some());
    let v3 = pki.dir.path().join("v3");
    issue(&pki, &v3, "five");
    let cfg = weir_config::load_str(&config(&v3.display().to_string(), &app), "reload.yaml");
    proxy.weir.reload(&cfg.unwrap()).unwrap();
    assert_eq!(served(&proxy, &client).await, "five");
    assert_eq!(
        listed_error(&proxy).await,
        None,
        "the reload loaded its files"
    );
    assert_eq!(failures(&proxy).await, 2);
}
