//! etcd discovery against a real `etcd` server (`Etcd` in `tests/support`): the prefix is
//! listed, then watched; keys outside the prefix are ignored; a bad value is skipped and
//! counted, never fatal; an etcd server that refuses connections is passed over for the next. Skips with a printed reason when etcd is not installed (fails under
//! `CI=true`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_config::{ConfigDuration, EndpointConfig, EtcdDiscoveryConfig};
use weir_discovery::{Discovery, DiscoveryTarget, Source};
use weir_test_support::{Etcd, wait_until};

type Seen = Arc<Mutex<Vec<Vec<EndpointConfig>>>>;

fn ep(addr: &str, weight: u32) -> EndpointConfig {
    EndpointConfig {
        address: addr.parse::<SocketAddr>().unwrap(),
        weight,
    }
}

/// A loopback address nothing listens on (bound, then closed).
fn refused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn last(seen: &Seen) -> Option<Vec<EndpointConfig>> {
    seen.lock().unwrap().last().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_is_listed_then_watched_and_bad_values_are_skipped() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    etcd.put("/weir/api/a", r#"{"address":"127.0.0.2:80","weight":2}"#)
        .await;
    etcd.put("/weir/api/bad", "not json").await;
    // Outside the prefix: the next key after the range end, and a sibling prefix.
    etcd.put("/weir/api0", r#"{"address":"127.0.0.8:80"}"#)
        .await;
    etcd.put("/weir/web/x", r#"{"address":"127.0.0.9:80"}"#)
        .await;

    let seen: Seen = Arc::default();
    let sink = {
        let seen = Arc::clone(&seen);
        Arc::new(move |_: &str, eps: Vec<EndpointConfig>| seen.lock().unwrap().push(eps))
    };
    let mut d = Discovery::new(sink);
    d.reconcile(vec![DiscoveryTarget {
        cluster: "api".into(),
        source: Source::Etcd(EtcdDiscoveryConfig {
            // The first server refuses connections: weir moves on to the next one.
            endpoints: vec![format!("http://{}", refused_addr()), etcd.url()],
            prefix: "/weir/api/".into(),
            connect_timeout: ConfigDuration(Duration::from_secs(2)),
            username: None,
            password: None,
        }),
    }]);
    let wait = |want: Vec<EndpointConfig>| {
        let seen = Arc::clone(&seen);
        async move {
            let ok = wait_until(Duration::from_secs(10), || {
                last(&seen).as_ref() == Some(&want)
            })
            .await;
            assert!(ok, "wanted {want:?}, last reported {:?}", last(&seen));
        }
    };
    wait(vec![ep("127.0.0.2:80", 2)]).await;
    assert_eq!(d.bad_values(), 1, "the bad value is counted");

    // Watched: a put adds, a put with a bad value drops the key (counted), a delete removes.
    etcd.put(
        "/weir/api/b",
        r#"{"address":"127.0.0.3:80","metadata":{"zone":"a"}}"#,
    )
    .await;
    wait(vec![ep("127.0.0.2:80", 2), ep("127.0.0.3:80", 1)]).await;
    etcd.put("/weir/api/a", r#"{"address":"127.0.0.2:80","weight":0}"#)
        .await;
    wait(vec![ep("127.0.0.3:80", 1)]).await;
    assert_eq!(d.bad_values(), 2);
    etcd.delete("/weir/api/b").await;
    wait(vec![]).await;
    // Every change was reported once, in order, and nothing from outside the prefix.
    assert_eq!(seen.lock().unwrap().len(), 4, "{:?}", seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_and_password_authenticate_and_a_wrong_password_gets_nothing() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    etcd.put("/weir/api/a", r#"{"address":"127.0.0.2:80"}"#)
        .await;
    etcd.enable_auth("s3cret").await;
    let start = |password: &str| {
        let seen: Seen = Arc::default();
        let sink = {
            let seen = Arc::clone(&seen);
            Arc::new(move |_: &str, eps: Vec<EndpointConfig>| seen.lock().unwrap().push(eps))
        };
        let mut d = Discovery::new(sink);
        d.reconcile(vec![DiscoveryTarget {
            cluster: "api".into(),
            source: Source::Etcd(EtcdDiscoveryConfig {
                endpoints: vec![etcd.url()],
                prefix: "/weir/api/".into(),
                connect_timeout: ConfigDuration(Duration::from_secs(2)),
                username: Some("root".into()),
                password: Some(password.into()),
            }),
        }]);
        (d, seen)
    };
    let (_wrong, wrong_seen) = start("wrong");
    let (_right, seen) = start("s3cret");
    assert!(
        wait_until(Duration::from_secs(10), || last(&seen)
            == Some(vec![ep("127.0.0.2:80", 1)]))
        .await
    );
    // The token also carries the watch.
    etcd.put("/weir/api/b", r#"{"address":"127.0.0.3:80"}"#)
        .await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            last(&seen) == Some(vec![ep("127.0.0.2:80", 1), ep("127.0.0.3:80", 1)])
        })
        .await
    );
    assert!(
        wrong_seen.lock().unwrap().is_empty(),
        "a wrong password read the prefix"
    );
}
