//! The live dashboard in a real browser: weir with an admin API and live traffic, headless
//! Chromium (Debian package `chromium`, installed by `scripts/test`) loading `GET /`, letting the
//! page poll `/stats` for a while, and then the dumped DOM checked for the clusters, the
//! endpoints with their health and a non-zero request rate. A screenshot is saved to
//! `target/dashboard.png` for people to look at.
//!
//! `--virtual-time-budget` runs the page's timers on a virtual clock that waits for pending
//! fetches, so the page polls many times in little real time; its rates divide by the server's
//! clock (`at_unix_ms`), so they stay right. Without Chromium the test fails in CI
//! (`CI=true` or `WEIR_REQUIRE_PRIVILEGED=1`) and is skipped, saying why, elsewhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use weir_core::Unhealthy;
use weir_e2e::{TestProxy, get, h1_client};
use weir_test_support::{MockHttp, MockTcp};

/// Virtual milliseconds the page runs for: a poll a second, so about this many thousandths polls.
const VIRTUAL_BUDGET_MS: u64 = 30_000;
/// Real time one Chromium run may take on a loaded machine before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(180);

/// Whether the tests must have every external tool (CI), rather than skip without one.
fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("WEIR_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// The first Chromium binary on `PATH` that runs, if any.
fn find_chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Where the screenshot goes: the workspace's `target/` (or `CARGO_TARGET_DIR`).
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&target).unwrap();
    target.join("dashboard.png")
}

/// Runs headless Chromium on `url` with `extra` flags and returns its stdout.
async fn chromium(bin: &str, url: &str, extra: &[String]) -> String {
    // A profile of its own: runs in parallel with another Chromium never share a lock.
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--disable-gpu",
        // Needed as root (CI containers) and harmless otherwise.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,900",
        &format!("--virtual-time-budget={VIRTUAL_BUDGET_MS}"),
        &format!("--user-data-dir={}", profile.path().display()),
    ])
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{bin} did not finish within {CHROMIUM_TIMEOUT:?}"))
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `data-value` of the first element with `data-metric="{metric}"` inside the card of
/// `cluster` in the dumped DOM.
fn metric(dom: &str, cluster: &str, metric: &str) -> Option<f64> {
    let card = dom.split(&format!("data-cluster=\"{cluster}\"")).nth(1)?;
    let card = card.split("data-cluster=").next()?;
    let after = card.split(&format!("data-metric=\"{metric}\"")).nth(1)?;
    let value = after.split("data-value=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_clusters_endpoints_and_live_rates() {
    let Some(bin) = find_chromium() else {
        if tools_required() {
            panic!("chromium is required; scripts/test installs the chromium package");
        }
        eprintln!("skipping the dashboard browser test: no chromium on PATH; run scripts/test");
        return;
    };
    let a = MockHttp::start("a").await;
    let b = MockHttp::start("b").await;
    let c = MockHttp::start("c").await;
    // Nothing listens on the second `api` endpoint: its active check fails (red).
    let closed = MockTcp::refusing_addr();
    let p = TestProxy::start(&format!(
        "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ path_prefix: /api }}, cluster: api }}
      - {{ cluster: web }}
clusters:
  - name: web
    lb_policy: round_robin
    endpoints: [ {a}, {b}, {c} ]
  - name: api
    lb_policy: peak_ewma
    health_check: {{ interval: 1s, tcp: {{}} }}
    endpoints: [ {a}, {closed} ]
",
        a = a.addr(),
        b = b.addr(),
        c = c.addr(),
    ))
    .await;
    let admin = p.weir.admin_addr().unwrap();
    // One `web` endpoint drained (grey).
    let _ = p
        .proxy()
        .snapshots()
        .load()
        .cluster("web")
        .unwrap()
        .endpoints[2]
        .state
        .set_unhealthy(Unhealthy::Drained, true, 1);

    // Live traffic until the end of the test: two clients (a few hundred requests a second
    // each at most), one answer in twenty a 503.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for path in ["/", "/api/users"] {
        let (stop, sent, url) = (Arc::clone(&stop), Arc::clone(&sent), p.url(path));
        let error_url = p.url("/status/503");
        clients.push(tokio::spawn(async move {
            let client = h1_client();
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let url = if n % 20 == 19 { &error_url } else { &url };
                let _ = get(&client, url, &[]).await;
                // Steady, not flat out: the rest of the suite shares the machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    let stats_url = format!("http://{admin}/stats");
    let client = h1_client();
    let mut ready = false;
    for _ in 0..600 {
        let v: serde_json::Value =
            serde_json::from_slice(&get(&client, &stats_url, &[]).await.body).unwrap();
        let api_failed = v["clusters"][1]["endpoints"][1]["status"] == "unhealthy";
        if v["clusters"][0]["responses"]["2xx"].as_u64() > Some(20) && api_failed {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "traffic and the failed check never showed in /stats");

    let url = format!("http://{admin}/");
    // The page polls for many virtual seconds in a little real time; on a very loaded machine
    // a run may see no request between its first and last poll, so it gets a few tries.
    let mut dom = String::new();
    for _ in 0..3 {
        dom = chromium(bin, &url, &["--dump-dom".to_owned()]).await;
        if metric(&dom, "web", "rps").is_some_and(|r| r > 0.0) {
            break;
        }
    }
    assert!(
        dom.contains("data-cluster=\"web\"") && dom.contains("data-cluster=\"api\""),
        "{dom}"
    );
    for endpoint in [a.addr(), b.addr(), c.addr(), closed] {
        assert!(
            dom.contains(&format!("data-endpoint=\"{endpoint}\"")),
            "{endpoint} missing: {dom}"
        );
    }
    for cluster in ["web", "api"] {
        let rps = metric(&dom, cluster, "rps");
        assert!(
            rps.is_some_and(|r| r > 0.0),
            "{cluster} rate {rps:?}: {dom}"
        );
    }
    assert!(
        dom.contains("pill healthy") && dom.contains("pill unhealthy"),
        "{dom}"
    );
    assert!(dom.contains("pill drained\">drained"), "{dom}");
    assert!(
        dom.contains("live · updated"),
        "the page says it is live: {dom}"
    );

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    chromium(bin, &url, &[format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a real screenshot ({} bytes)",
        shot.display(),
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let _ = p.weir.shutdown(Duration::from_secs(5)).await;
}
