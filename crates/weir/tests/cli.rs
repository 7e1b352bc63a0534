//! The `weir` binary as users run it: `--help`, `--version`, `check` on good and bad files,
//! `demo` probed with real curl (its dashboard and the `/stats` the dashboard polls included),
//! reloads by SIGHUP and `POST /reload` rejected with exactly the `weir check` message, and
//! `weir run`'s signals and access log (to a file, to stdout, reopened on SIGUSR1).
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

/// `weir run` with `access_log: { path: stdout }` writes one JSON line per request on its
/// standard output, next to what it prints itself.
#[test]
fn run_writes_the_access_log_to_stdout() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required (scripts/test installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(
        &path,
        "access_log: { path: stdout, fields: [kind, listener, route, method, path, status] }
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - direct_response: { status: 202, body: ok }
",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = || {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("weir printed what the test waits for")
    };
    let url = loop {
        if let Some(url) = next().strip_prefix("listener l on ") {
            break url.to_owned();
        }
    };
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("{url}/seen?x=1")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let line = loop {
        let line = next();
        if line.starts_with('{') {
            break line;
        }
    };
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(
        v,
        serde_json::json!({
            "kind": "http", "listener": "l", "route": 0, "method": "GET",
            "path": "/seen?x=1", "status": 202,
        })
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
}

/// `weir run` reloads its file on SIGHUP; a broken file is reported with its path and line and
/// the running config keeps serving.
#[test]
fn run_reloads_on_sighup_and_keeps_serving_through_a_bad_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let config = |body: &str| {
        format!(
            "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ path_prefix: / }}, direct_response: {{ status: 200, body: {body} }} }}
"
        )
    };
    std::fs::write(&path, config("one")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listener l on ").map(str::to_owned))
        .expect("weir printed its listener");
    // stderr is drained on a thread so the child never blocks on a full pipe.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let fetch = || {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hangup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    let until = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if fetch() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert_eq!(fetch(), "one");

    std::fs::write(&path, config("two")).unwrap();
    hangup();
    assert!(until("two"), "SIGHUP applied the new file");

    std::fs::write(&path, "listeners:\n  - name: l\n    adress: 127.0.0.1:0\n").unwrap();
    hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rejected = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("weir logged the rejected reload");
        if line.contains("reload rejected") {
            break line;
        }
    };
    assert!(rejected.contains("weir.yaml"), "{rejected}");
    assert!(
        rejected.contains("listeners[0].adress (line 3)"),
        "{rejected}"
    );
    assert_eq!(fetch(), "two", "the running config keeps serving");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
}

/// `weir run` reopens its access log on SIGUSR1, as logrotate's `postrotate` asks: after the
/// file is renamed, lines keep going to the renamed file until the signal, then to a new file
/// at the configured path.
#[test]
fn run_reopens_the_access_log_on_sigusr1() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    std::fs::write(
        &path,
        format!(
            "access_log: {{ path: {}, fields: [path] }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - direct_response: {{ status: 200, body: ok }}
",
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listener l on ").map(str::to_owned))
        .expect("weir printed its listener");
    let fetch = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("{url}{path}")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    };
    let read = |file: &std::path::Path| std::fs::read_to_string(file).unwrap_or_default();
    let eventually = |file: &std::path::Path, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if read(file).contains(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };

    fetch("/before");
    assert!(eventually(&log, "/before"), "the first line is written");
    std::fs::rename(&log, &rotated).unwrap();
    let signalled = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(signalled, "kill -USR1");
    // The reopen is asynchronous: keep asking until a line lands in a new file.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while !read(&log).contains("/after") && Instant::now() < deadline {
        n += 1;
        fetch(&format!("/after/{n}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(read(&log).contains("/after"), "new lines go to a new file");
    assert!(read(&rotated).contains("/before"));
    assert!(!read(&log).contains("/before"));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
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

/// A rejected reload says exactly what `weir check` says about the same file, for an error
/// found while validating (a bad value) and for one found only when compiling (a certificate
/// file that does not exist): through `POST /reload` and in the log line of a SIGHUP reload.
#[test]
fn a_rejected_reload_says_what_weir_check_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let listener = |tls: &str| {
        format!(
            "admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ {{ direct_response: {{ status: 200, body: ok }} }} ]
{tls}"
        )
    };
    std::fs::write(&path, listener("")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("admin API on ")
                .map(|u| u.trim_end_matches("/clusters").to_owned())
        })
        .expect("weir printed its admin API");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let missing = dir.path().join("missing.pem");
    // (the file, where the error is)
    let cases = [
        // Compile stage: validation passes, loading the certificate fails.
        (
            listener(&format!(
                "    tls: {{ certificates: [ {{ cert: \"{0}\", key: \"{0}\" }} ] }}\n",
                missing.display()
            )),
            "listeners[0].tls.certificates[0].cert (line 6): ",
        ),
        // Validation stage.
        (
            listener("    protocol: htp\n"),
            "listeners[0].protocol (line 6): ",
        ),
    ];
    for (yaml, place) in &cases {
        std::fs::write(&path, yaml).unwrap();
        let out = weir(&["check", "-c", path.to_str().unwrap()]);
        assert!(!out.status.success());
        let checked = String::from_utf8_lossy(&out.stderr);
        let checked = checked
            .trim_end()
            .strip_prefix("error: ")
            .expect("weir check prints `error: <message>`")
            .to_owned();
        assert!(
            checked.starts_with(&format!("{}: {place}", path.display())),
            "want the file, path and line {place:?}: {checked}"
        );

        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-X", "POST"])
            .arg(format!("{admin}/reload"))
            .output()
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            answer["error"].as_str().unwrap(),
            checked,
            "POST /reload and weir check disagree"
        );

        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
        // Two rejections logged: the POST's and the SIGHUP's.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut logged = Vec::new();
        while logged.len() < 2 {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("weir logged both rejected reloads");
            if line.contains("reload rejected, the running config keeps serving") {
                logged.push(line);
            }
        }
        for line in logged {
            assert!(
                line.contains(&format!("keeps serving: {checked}")),
                "the log line {line:?} lacks {checked:?}"
            );
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

/// A cluster without `ca` verifies endpoints against the system store, which `SSL_CERT_FILE`
/// replaces (as in OpenSSL): `weir run` with it naming a test CA reaches an endpoint that CA
/// signed, while a cluster with `roots: webpki` (Mozilla's list) is refused with a 502. A store
/// that holds no certificate stops `weir check` naming `clusters[i].tls.roots`.
#[test]
fn system_roots_come_from_ssl_cert_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = weir_test_support::TestCa::new();
    let ca_file = ca.write_cert(&dir.path().join("ca.pem"));
    let tls = ca
        .issue_pem("api", &["api.internal"])
        .server_config(&[b"http/1.1"]);
    let ep = rt.block_on(
        weir_test_support::MockHttp::builder("secure-ep")
            .tls(tls)
            .start(),
    );
    let path = dir.path().join("weir.yaml");
    std::fs::write(
        &path,
        format!(
            "listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ path_prefix: /webpki }}, cluster: webpki }}
      - {{ cluster: system }}
clusters:
  - {{ name: system, tls: {{ sni: api.internal }}, endpoints: [ {ep} ] }}
  - {{ name: webpki, tls: {{ sni: api.internal, roots: webpki }}, endpoints: [ {ep} ] }}
",
            ep = ep.addr()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .env("SSL_CERT_FILE", &ca_file)
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listener l on ").map(str::to_owned));
    let status = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("{}{path}", url.as_deref().unwrap_or_default()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (system, webpki) = (status("/"), status("/webpki"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    assert!(url.is_some(), "weir did not start with SSL_CERT_FILE set");
    assert_eq!(
        system, "200",
        "the system store (SSL_CERT_FILE) trusts the test CA"
    );
    assert_eq!(webpki, "502", "Mozilla's list does not");
    assert!(ep.requests() >= 1);

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an empty store was accepted");
    assert!(stderr.contains("clusters[0].tls.roots"), "{stderr}");
    assert!(stderr.contains("empty.pem"), "{stderr}");
    assert!(stderr.contains("roots: webpki"), "{stderr}");
    rt.block_on(ep.shutdown());
}
