//! File service discovery through the running proxy: an endpoints file next to the config
//! (relative path) feeds a cluster; an in-place edit, an atomic rename and a symlink swap are
//! each followed without a reload; a bad file leaves the last good set serving; a reload that
//! names another file switches to it, one that leaves discovery alone keeps the set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "end-to-end test: a panic is a failed test"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use http::StatusCode;
use weir::Weir;
use weir_e2e::{TestProxy, answering, get, h1_client, until_answering};
use weir_test_support::MockHttp;

fn endpoints_yaml(mocks: &[&MockHttp]) -> String {
    let mut s = "endpoints:\n".to_owned();
    for m in mocks {
        s.push_str(&format!("  - {{ address: {}, weight: 1 }}\n", m.addr()));
    }
    s
}

/// Replaces `path` atomically: write a sibling, then rename over it.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_file_drives_routing() {
    let (a, b, c) = (
        MockHttp::start("a").await,
        MockHttp::start("b").await,
        MockHttp::start("c").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let eps = dir.path().join("eps.yaml");
    std::fs::write(&eps, endpoints_yaml(&[&a])).unwrap();
    let config = dir.path().join("weir.yaml");
    std::fs::write(
        &config,
        "listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [ { cluster: api } ]
clusters:
  - name: api
    connect_timeout: 1s
    discovery:
      file: { path: eps.yaml, interval: 100ms }   # relative to this file
",
    )
    .unwrap();
    let weir = Weir::start_file(&config).await.unwrap();
    let addr = weir.proxy().listener_addrs()[0].1;
    let p = TestProxy { weir, addr };
    let client = h1_client();
    // No static endpoints: 503 until the file is first read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&client, &p.url("/"), &[]).await.status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "file discovery never fed the cluster"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_answering(&client, &p, &["a"]).await;

    // In-place write.
    std::fs::write(&eps, endpoints_yaml(&[&a, &b])).unwrap();
    let edited = until_answering(&client, &p, &["a", "b"]).await;

    // A bad file (an endpoint with port 0 on line 3) is rejected: a and b keep serving for
    // many intervals.
    std::fs::write(
        &eps,
        format!("endpoints:\n  - {}\n  - 127.0.0.1:0\n", c.addr()),
    )
    .unwrap();
    let bad = Instant::now();
    while bad.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            answering(&client, &p, 4).await,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
    }

    // An atomic rename (as editors and config tools do) is followed.
    write_atomic(&eps, &endpoints_yaml(&[&c]));
    let renamed = until_answering(&client, &p, &["c"]).await;

    // A symlink swap (as a Kubernetes ConfigMap volume does) is followed too.
    let v1 = dir.path().join("v1.yaml");
    std::fs::write(&v1, endpoints_yaml(&[&a])).unwrap();
    let link = dir.path().join("link.tmp");
    std::os::unix::fs::symlink(&v1, &link).unwrap();
    std::fs::rename(&link, &eps).unwrap();
    let swapped = until_answering(&client, &p, &["a"]).await;

    // A reload that points the cluster at another file switches to it (starting afresh: until
    // the new file is read, the cluster has no endpoints); a reload that leaves the discovery
    // block alone keeps the discovered set (no gap, no 503).
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, endpoints_yaml(&[&b])).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("path: eps.yaml", "path: other.yaml")).unwrap();
    p.weir.reload_file().unwrap();
    until_answering(&client, &p, &["b"]).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("connect_timeout: 1s", "connect_timeout: 2s"),
    )
    .unwrap();
    p.weir.reload_file().unwrap();
    assert_eq!(
        answering(&client, &p, 4).await,
        BTreeSet::from(["b".to_owned()])
    );

    eprintln!(
        "file discovery (100ms interval): edit {edited:?}, rename {renamed:?}, symlink {swapped:?}"
    );
    for took in [edited, renamed, swapped] {
        assert!(took < Duration::from_secs(5), "followed after {took:?}");
    }
}
