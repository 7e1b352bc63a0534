//! The `weir` binary's commands as users run them: `--help`, `--version`, `check` on good and
//! bad files (certificate, key and CA files included), and `demo` probed with real curl (its
//! dashboard and the `/stats` the dashboard polls included). `weir run` is in `run.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a panic is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap()
}

fn check(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = weir(&["check", "-c", path.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_has_examples_and_version_prints() {
    let out = weir(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "run",
        "check",
        "demo",
        "Examples:",
        "weir check -c weir.yaml",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let out = weir(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("weir "));
}

#[test]
fn check_accepts_a_valid_config() {
    let (ok, stdout, stderr) = check(
        "listeners:
  - name: public
    address: 127.0.0.1:8080
    routes:
      - { match: { path_prefix: / }, cluster: web }
clusters:
  - name: web
    endpoints: [ 127.0.0.1:9001, { address: 127.0.0.1:9002, weight: 2 } ]
",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok (1 listeners, 1 routes, 1 clusters)"),
        "{stdout}"
    );
}

/// Each bad-config class: `weir check` exits non-zero and names the file, YAML path and line.
#[test]
fn check_rejects_each_error_class_with_path_and_line() {
    let head = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n    routes:\n";
    let cases: &[(&str, &str, &str)] = &[
        // (body after `head`, expected path + line, expected words of the message/hint)
        (
            "      - { match: { path_prefix: / }, cluster: apii }\nclusters:\n  - { name: api, endpoints: [] }\n",
            "listeners[0].routes[0].cluster (line 5)",
            "api",
        ),
        (
            "      - { match: { path_prefix: / }, clustr: api }\nclusters: []\n",
            "listeners[0].routes[0].clustr (line 5)",
            "cluster",
        ),
        (
            "      - { match: { path_prefix: / }, cluster: a }\nclusters:\n  - name: a\n    endpoints: [ { address: 127.0.0.1:1, weight: heavy } ]\n",
            "clusters[0].endpoints[0].weight (line 8)",
            "heavy",
        ),
        (
            "      - { match: { path_prefix: / }, cluster: a }\nclusters:\n  - { name: a, endpoints: [] }\n  - { name: a, endpoints: [] }\n",
            "clusters[1].name (line 8)",
            "line 7",
        ),
        (
            "      - { match: { path_prefix: / }, cluster: a }\nclusters:\n  - { name: a, endpoints: [ 127.0.0.1 ] }\n",
            "clusters[0].endpoints[0] (line 7)",
            "port",
        ),
    ];
    for (body, where_, words) in cases {
        let (ok, _, stderr) = check(&format!("{head}{body}"));
        assert!(!ok, "accepted:\n{head}{body}");
        assert!(
            stderr.contains("weir.yaml: "),
            "file name missing: {stderr}"
        );
        assert!(stderr.contains(where_), "want {where_:?} in: {stderr}");
        assert!(stderr.contains(words), "want {words:?} in: {stderr}");
    }
}

#[test]
fn check_reports_a_missing_file() {
    let out = weir(&["check", "-c", "/nonexistent/weir.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/weir.yaml"));
}

#[test]
fn demo_prints_urls_that_curl_can_use() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required (scripts/test installs it)");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["demo", "--port", "0", "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut dashboard) = (None, None);
    while url.is_none() || dashboard.is_none() {
        let line = lines
            .next()
            .expect("demo exited before printing its URLs")
            .unwrap();
        if let Some(rest) = line.strip_prefix("weir demo is running. weir listens on ") {
            url = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("dashboard at ") {
            dashboard = rest.split_whitespace().next().map(str::to_owned);
        }
        assert!(line != "Try:", "the banner has no dashboard line");
    }
    let (url, dashboard) = (url.unwrap(), dashboard.unwrap());
    // The demo keeps printing its traffic report: drained so it never blocks on the pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 && Instant::now() < deadline {
        let body = curl(&[&format!("{url}/")]);
        assert!(body.starts_with("hello from endpoint-"), "{body:?}");
        seen.insert(body.split(':').next().unwrap().to_owned());
    }
    assert_eq!(
        seen.len(),
        3,
        "round robin reached every demo endpoint: {seen:?}"
    );
    assert!(
        curl(&["--http2-prior-knowledge", &format!("{url}/api/x")])
            .starts_with("hello from endpoint-")
    );
    assert_eq!(curl(&[&format!("{url}/hello")]), "hello from weir\n");
    let redirect = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{url}/old"),
    ]);
    assert_eq!(redirect, format!("301 {url}/"));

    // The dashboard: its page, and the `/stats` it polls showing both demo clusters served.
    assert!(
        dashboard.starts_with("http://") && dashboard.ends_with('/'),
        "{dashboard}"
    );
    let page = curl(&[&dashboard]);
    assert!(
        page.to_ascii_lowercase().starts_with("<!doctype html"),
        "{page:.200}"
    );
    assert!(page.contains("fetch(\"stats\""), "the page polls /stats");
    let served = |stats: &serde_json::Value, cluster: &str| -> u64 {
        stats["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == cluster)
            .map_or(0, |c| c["responses"]["2xx"].as_u64().unwrap_or(0))
    };
    let stats = || {
        let body = curl(&[&format!("{dashboard}stats")]);
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {body:.200}"))
    };
    // The test's own requests are counted already; the demo's trickle of traffic (a request
    // a second to each cluster) must move both counts on from there.
    let first = stats();
    let (web, api) = (served(&first, "web"), served(&first, "api"));
    assert!(web > 0 && api > 0, "both clusters served the test: {first}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let now = stats();
        if served(&now, "web") > web && served(&now, "api") > api || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(served(&last, "web") > web, "web keeps serving: {last}");
    assert!(served(&last, "api") > api, "api keeps serving: {last}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `weir run -c <path>` that must fail at start: its stderr (killed after 30 s if it served).
fn run_fails(path: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("weir run started with a config weir check refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

/// `weir check` opens every certificate, key and CA file the config names — listener
/// certificates, the mTLS client CA, a cluster's CA and client certificate — and refuses a bad
/// one with the same words `weir run` fails with at start: the file, the YAML path, and what is
/// wrong (unreadable, not PEM, a key of another certificate, expired).
#[test]
fn check_opens_certificate_key_and_ca_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = weir_test_support::TestCa::new();
    ca.issue_pem("site", &["site.test"]).write(d, "site");
    ca.issue_pem("other", &["other.test"]).write(d, "other");
    ca.issue_expired("old", &["old.test"]).write(d, "old");
    ca.issue_client("weir", &["weir.test"], &[])
        .write(d, "client");
    ca.write_cert(&d.join("ca.pem"));
    std::fs::write(d.join("junk.pem"), "not a certificate\n").unwrap();
    let f = |name: &str| d.join(name).display().to_string();
    let yaml =
        |cert: &str, key: &str, client_ca: &str, upstream_ca: &str, cc: &str, cc_key: &str| {
            format!(
                "listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [ {{ cluster: c }} ]
    tls:
      certificates: [ {{ cert: \"{}\", key: \"{}\" }} ]
      client_auth: {{ ca: \"{}\" }}
clusters:
  - name: c
    tls: {{ sni: api.test, ca: \"{}\", client_cert: {{ cert: \"{}\", key: \"{}\" }} }}
    endpoints: [ 127.0.0.1:9 ]
",
                f(cert),
                f(key),
                f(client_ca),
                f(upstream_ca),
                f(cc),
                f(cc_key)
            )
        };
    let good = [
        "site.pem",
        "site.key",
        "ca.pem",
        "ca.pem",
        "client.pem",
        "client.key",
    ];
    let (ok, stdout, stderr) = check(&yaml(good[0], good[1], good[2], good[3], good[4], good[5]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");

    // (which file to replace, by what, the YAML path and words expected in the error)
    let cases: &[(usize, &str, &str, &str)] = &[
        (
            0,
            "missing.pem",
            "listeners[0].tls.certificates[0].cert",
            "cannot read",
        ),
        (
            0,
            "junk.pem",
            "listeners[0].tls.certificates[0].cert",
            "holds no certificate",
        ),
        (
            1,
            "other.key",
            "listeners[0].tls.certificates[0].key",
            "does not match",
        ),
        (
            0,
            "old.pem",
            "listeners[0].tls.certificates[0].cert",
            "expired",
        ),
        (
            2,
            "junk.pem",
            "listeners[0].tls.client_auth.ca",
            "holds no certificate",
        ),
        (
            2,
            "missing.pem",
            "listeners[0].tls.client_auth.ca",
            "cannot read",
        ),
        (3, "junk.pem", "clusters[0].tls.ca", "holds no certificate"),
        (4, "old.pem", "clusters[0].tls.client_cert.cert", "expired"),
        (
            5,
            "site.key",
            "clusters[0].tls.client_cert.key",
            "does not match",
        ),
        (5, "junk.pem", "clusters[0].tls.client_cert.key", "junk.pem"),
    ];
    for &(slot, file, path, words) in cases {
        let mut files = good;
        files[slot] = file;
        if slot == 0 && file == "old.pem" {
            files[1] = "old.key";
        }
        if slot == 4 {
            files[5] = "old.key";
        }
        let text = yaml(files[0], files[1], files[2], files[3], files[4], files[5]);
        let (ok, _, stderr) = check(&text);
        assert!(!ok, "accepted {file} as {path}");
        assert!(
            stderr.contains("weir.yaml: "),
            "file name missing: {stderr}"
        );
        assert!(stderr.contains(path), "want {path:?} in: {stderr}");
        assert!(stderr.contains(words), "want {words:?} in: {stderr}");
        assert!(stderr.contains(file), "want the file {file} in: {stderr}");

        // The same error stops `weir run` at start.
        let config = d.join("run.yaml");
        std::fs::write(&config, &text).unwrap();
        let started = run_fails(&config);
        let message = stderr
            .trim()
            .split_once(": ")
            .map(|(_, rest)| rest)
            .unwrap();
        assert!(
            started.contains(message.split_once(": ").unwrap().1),
            "check said {stderr:?}, run said {started:?}"
        );
    }
}
