//! `weir run` as users run it, with real curl: the access log to stdout and to a file
//! reopened on SIGUSR1, reloads by SIGHUP (a bad file keeps the running config), a rejected
//! reload saying exactly what `weir check` says, and endpoint TLS trusting the system store
//! that `SSL_CERT_FILE` names. Shutdown is in `shutdown.rs`, binary upgrades in `upgrade.rs`.
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

/// `weir run -c path`, its stdout piped (the addresses it prints); stderr is the caller's.
fn weir_run(path: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::piped());
    cmd
}

/// What follows `prefix` on the first stdout line of `child` that starts with it (the rest of
/// stdout is left unread).
fn printed(child: &mut std::process::Child, prefix: &str) -> Option<String> {
    BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
}

/// Sends `child` SIGTERM and checks it drained and exited 0.
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
}

/// The lines `output` (a child's stdout or stderr) writes, read on a thread of their own so
/// the child never blocks on a full pipe.
fn lines_of(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
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
    let mut child = weir_run(&path).stderr(Stdio::null()).spawn().unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
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
    stop(&mut child);
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
    let mut child = weir_run(&path).stderr(Stdio::piped()).spawn().unwrap();
    let url = printed(&mut child, "listener l on ").expect("weir printed its listener");
    let rx = lines_of(child.stderr.take().unwrap());
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

    stop(&mut child);
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
    let mut child = weir_run(&path).stderr(Stdio::null()).spawn().unwrap();
    let url = printed(&mut child, "listener l on ").expect("weir printed its listener");
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

    stop(&mut child);
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
    let mut child = weir_run(&path).stderr(Stdio::piped()).spawn().unwrap();
    let admin = printed(&mut child, "admin API on ")
        .map(|u| u.trim_end_matches("/clusters").to_owned())
        .expect("weir printed its admin API");
    let rx = lines_of(child.stderr.take().unwrap());

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
    stop(&mut child);
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
    let mut child = weir_run(&path)
        .env("SSL_CERT_FILE", &ca_file)
        .env_remove("SSL_CERT_DIR")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = printed(&mut child, "listener l on ");
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
    stop(&mut child);
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
