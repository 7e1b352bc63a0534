//! Unit tests of session affinity: cookie sessions and draining, cookie issuing, and hashing
//! with and without the session table (draining keeps a key's session until the deadline).

use http::HeaderMap;

use super::*;
use crate::Snapshot;

fn compile(affinity: &str) -> Snapshot {
    let yaml = format!(
        "clusters:
  - name: c
    session_affinity: {affinity}
    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]
"
    );
    let config = weir_config::load_str(&yaml, "t.yaml").unwrap();
    Snapshot::compile(&config, None).unwrap()
}

fn input(headers: &HeaderMap) -> HashInput<'_> {
    let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
    HashInput {
        headers: Some(headers),
        path: Some("/"),
        query: None,
        client,
        local: client,
    }
}

fn cookie_for(cluster: &Cluster, index: usize, now: u64) -> String {
    let policy = match &cluster.session_affinity.as_ref().unwrap().mode {
        Mode::Cookie(p) => p,
        _ => panic!("not a cookie policy"),
    };
    policy.encode(cluster.affinity.ids[index], now)
}

#[test]
fn a_drained_endpoint_keeps_sessions_only_until_the_deadline() {
    // The same drained endpoint under a long deadline and under none (`0`).
    for (timeout, kept) in [("1h", true), ("0", false)] {
        let snapshot = compile(&format!(
            "{{ cookie: {{ ttl: 1h }}, drain_timeout: {timeout} }}"
        ));
        let c = snapshot.cluster("c").unwrap();
        let affinity = c.session_affinity.as_ref().unwrap();
        let value = cookie_for(c, 1, cookie::unix_now());
        let headers = HeaderMap::new();
        let picked = |c: &Cluster| {
            let r = affinity.begin(c, Some(&value));
            r.pick(c, &input(&headers), false).map(|(i, _)| i)
        };
        assert_eq!(picked(c), Some(1));
        let state = &c.endpoints[1].state;
        let now = c.clock().now();
        let _ = state.set_unhealthy(Unhealthy::Drained, true, now);
        assert_eq!(picked(c), kept.then_some(1), "drain_timeout {timeout}");
        state.set_healthy(false, now);
        assert_eq!(
            picked(c),
            None,
            "a drained and failing endpoint keeps no session"
        );
    }
}

#[test]
fn finish_issues_cookies_only_when_new_moved_or_stale() {
    let snapshot = compile("{ cookie: { ttl: 100s } }");
    let c = snapshot.cluster("c").unwrap();
    let affinity = c.session_affinity.as_ref().unwrap();
    let at = |i: usize| c.endpoints[i].address;
    let now = cookie::unix_now();

    let (set, verdict) = affinity.begin(c, None).finish(c, at(0));
    assert_eq!(verdict, Some(Verdict::New));
    let set = set.unwrap();
    let value = set.to_str().unwrap();
    assert!(value.starts_with("weir-affinity=") && value.contains("Max-Age=100"));

    let fresh = cookie_for(c, 0, now);
    let (set, verdict) = affinity.begin(c, Some(&fresh)).finish(c, at(0));
    assert_eq!((set, verdict), (None, Some(Verdict::Hit)));
    let stale = cookie_for(c, 0, now - 60);
    let (set, verdict) = affinity.begin(c, Some(&stale)).finish(c, at(0));
    assert!(set.is_some(), "refreshed with less than half its life left");
    assert_eq!(verdict, Some(Verdict::Hit));
    let (set, verdict) = affinity.begin(c, Some(&fresh)).finish(c, at(2));
    assert!(set.is_some());
    assert_eq!(verdict, Some(Verdict::Moved));
    let (_, verdict) = affinity.begin(c, Some("forged")).finish(c, at(1));
    assert_eq!(verdict, Some(Verdict::New));
    // A session whose endpoint left the cluster is not sticky and moves.
    let policy = match &affinity.mode {
        Mode::Cookie(p) => p,
        _ => unreachable!("a cookie policy"),
    };
    let gone = policy.encode(cookie::endpoint_id("127.0.0.1:9999".parse().unwrap()), now);
    let request = affinity.begin(c, Some(&gone));
    assert!(request.pick(c, &input(&HeaderMap::new()), false).is_none());
    assert_eq!(request.finish(c, at(1)).1, Some(Verdict::Moved));

    let stats = c.upstream_stats();
    let counts: Vec<u64> = AffinityEvent::ALL
        .iter()
        .map(|&e| stats.affinity(e))
        .collect();
    assert_eq!(
        counts,
        [2, 2, 2, 1, 0],
        "hits, new, moved, invalid, evicted"
    );
}

#[test]
fn without_a_session_table_a_drained_endpoints_keys_move_at_once() {
    let snapshot = compile("{ header: x-user, max_sessions: 0 }");
    let c = snapshot.cluster("c").unwrap();
    let affinity = c.session_affinity.as_ref().unwrap();
    let request = affinity.begin(c, None);
    let home = |user: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", user.parse().unwrap());
        request.pick(c, &input(&headers), false).map(|(i, _)| i)
    };
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let before: Vec<usize> = users.iter().map(|u| home(u).unwrap()).collect();
    assert!((0..3).all(|e| before.contains(&e)));
    assert_eq!(
        before,
        users.iter().map(|u| home(u).unwrap()).collect::<Vec<_>>()
    );
    let now = c.clock().now();
    let _ = c.endpoints[0]
        .state
        .set_unhealthy(Unhealthy::Drained, true, now);
    for (u, &b) in users.iter().zip(&before) {
        let after = home(u).unwrap();
        assert_ne!(after, 0, "no keys on a drained endpoint");
        if b != 0 {
            assert_eq!(after, b, "{u} kept its endpoint");
        }
    }
    assert_eq!(request.pick(c, &input(&HeaderMap::new()), false), None);
}

/// The endpoint `x-user: user` hashes to on `c`.
fn home(c: &Cluster, user: &str) -> Option<usize> {
    let affinity = c.session_affinity.as_ref().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-user", user.parse().unwrap());
    let request = affinity.begin(c, None);
    request.pick(c, &input(&headers), false).map(|(i, _)| i)
}

#[test]
fn a_draining_endpoint_keeps_its_hashed_sessions_until_the_deadline_and_gets_no_new_ones() {
    for (timeout, kept) in [("1h", true), ("0", false)] {
        let snapshot = compile(&format!("{{ header: x-user, drain_timeout: {timeout} }}"));
        let c = snapshot.cluster("c").unwrap();
        let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
        let before: Vec<usize> = users.iter().map(|u| home(c, u).unwrap()).collect();
        assert!((0..3).all(|e| before.contains(&e)));
        let stats = c.upstream_stats();
        assert_eq!(stats.affinity(AffinityEvent::New), 300);
        assert_eq!(c.affinity_sessions(), Some(300));

        let now = c.clock().now();
        let _ = c.endpoints[0]
            .state
            .set_unhealthy(Unhealthy::Drained, true, now);
        for (u, &b) in users.iter().zip(&before) {
            let after = home(c, u).unwrap();
            if b != 0 || kept {
                assert_eq!(after, b, "{u} kept its endpoint (drain_timeout {timeout})");
            } else {
                assert_ne!(after, 0, "{u} moved at once (drain_timeout 0)");
            }
        }
        for i in 300..600 {
            assert_ne!(
                home(c, &format!("u{i}")),
                Some(0),
                "a new key on a draining endpoint"
            );
        }
        let on_drained = before.iter().filter(|&&b| b == 0).count() as u64;
        let moved = if kept { 0 } else { on_drained };
        assert_eq!(stats.affinity(AffinityEvent::Moved), moved);
        assert_eq!(stats.affinity(AffinityEvent::Hit), 300 - moved);
        assert_eq!(stats.affinity(AffinityEvent::New), 600);

        // Drained and failing: no session stays.
        c.endpoints[0].state.set_healthy(false, now);
        assert!(users.iter().all(|u| home(c, u) != Some(0)));
        // Back in service: pure Maglev again, so every key is home.
        c.endpoints[0].state.set_healthy(true, now);
        let _ = c.endpoints[0]
            .state
            .set_unhealthy(Unhealthy::Drained, false, now);
        let back: Vec<usize> = users.iter().map(|u| home(c, u).unwrap()).collect();
        assert_eq!(back, before);
    }
}

#[test]
fn a_session_that_began_after_the_drain_does_not_stick_to_the_draining_endpoint() {
    let snapshot = compile("{ header: x-user, drain_timeout: 1h }");
    let c = snapshot.cluster("c").unwrap();
    let now = c.clock().now();
    let _ = c.endpoints[0]
        .state
        .set_unhealthy(Unhealthy::Drained, true, now);
    // A key recorded on endpoint 0 just after its drain (a pick racing the drain).
    let user = "late";
    let hash = xxhash_rust::xxh3::xxh3_64(user.as_bytes());
    let sessions = c.affinity.sessions.as_ref().unwrap();
    let target = Target {
        endpoint: c.affinity.ids[0],
        index: 0,
    };
    let _ = sessions.visit(hash, now + 1, 60_000_000_000, |_| Some((target, ())));
    assert_ne!(
        home(c, user),
        Some(0),
        "no new session for a draining endpoint"
    );
    assert_eq!(c.upstream_stats().affinity(AffinityEvent::Moved), 1);
}

#[test]
fn the_session_table_survives_a_reload_and_a_removed_endpoints_keys_move_at_once() {
    let yaml = "clusters:
  - name: c
    session_affinity: { client_address: true, drain_timeout: 1h }
    endpoints: [ 127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003 ]
";
    let config = weir_config::load_str(yaml, "t.yaml").unwrap();
    let first = Snapshot::compile(&config, None).unwrap();
    let c = first.cluster("c").unwrap();
    let headers = HeaderMap::new();
    let clients: Vec<SocketAddr> = (1..=60)
        .map(|i| SocketAddr::from(([10, 0, 0, i], 4000)))
        .collect();
    let at = |c: &Cluster, client: SocketAddr| {
        let mut input = input(&headers);
        input.client = client;
        input.headers = None;
        c.session_affinity
            .as_ref()
            .unwrap()
            .connection_pick(c, &input)
            .unwrap()
    };
    let before: Vec<usize> = clients.iter().map(|&a| at(c, a)).collect();
    let now = c.clock().now();
    let _ = c.endpoints[1]
        .state
        .set_unhealthy(Unhealthy::Drained, true, now);
    // A reload that reorders the endpoints keeps the table and the drain.
    let reordered = yaml.replace(
        "127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003",
        "127.0.0.1:9003, 127.0.0.1:9002, 127.0.0.1:9001",
    );
    let config = weir_config::load_str(&reordered, "t.yaml").unwrap();
    let second = Snapshot::compile(&config, Some(&first)).unwrap();
    let n = second.cluster("c").unwrap();
    assert_eq!(n.affinity_sessions(), Some(60));
    for (&client, &b) in clients.iter().zip(&before) {
        let address = c.endpoints[b].address;
        assert_eq!(n.endpoints[at(n, client)].address, address, "{client} kept");
    }
    assert_eq!(n.upstream_stats().affinity(AffinityEvent::Moved), 0);

    // Removing the draining endpoint moves its clients at once, and only them.
    let without = yaml.replace("127.0.0.1:9002, ", "");
    let config = weir_config::load_str(&without, "t.yaml").unwrap();
    let third = Snapshot::compile(&config, Some(&second)).unwrap();
    let r = third.cluster("c").unwrap();
    for (&client, &b) in clients.iter().zip(&before) {
        let address = r.endpoints[at(r, client)].address;
        if b != 1 {
            assert_eq!(address, c.endpoints[b].address, "{client} stayed");
        }
    }
    let on_removed = before.iter().filter(|&&b| b == 1).count() as u64;
    assert!(on_removed > 0);
    assert_eq!(
        r.upstream_stats().affinity(AffinityEvent::Moved),
        on_removed
    );
}

/// The cost of the session table on the request path, printed (not asserted: tests never
/// assert speed). Run in release:
/// `cargo test --release -p weir-proxy --lib -- --ignored --nocapture session_table_cost`.
#[test]
#[ignore = "a timing loop; run by hand in release"]
fn session_table_cost() {
    use std::time::Instant;
    const N: u64 = 2_000_000;
    let table = SessionTable::new(65_536);
    let target = Target {
        endpoint: 1,
        index: 1,
    };
    let timed = |label: &str, keys: u64| {
        let start = Instant::now();
        for i in 0..N {
            let key = (i % keys).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let v = table.visit(key, i + 1, u64::MAX / 2, |_| Some((target, ())));
            std::hint::black_box(v);
        }
        let ns = start.elapsed().as_nanos() as f64 / N as f64;
        eprintln!("session table visit, {label}: {ns:.1} ns");
    };
    timed("10k live keys (lookup + update)", 10_000);
    timed("all new keys, full table (insert + evict)", N);
    // Two threads on one table (the box has two cores): shards keep them apart.
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let table = &table;
            scope.spawn(move || {
                for i in 0..N {
                    let key = (i % 10_000 + t * 10_000).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let v = table.visit(key, i + 1, u64::MAX / 2, |_| Some((target, ())));
                    std::hint::black_box(v);
                }
            });
        }
    });
    let ns = start.elapsed().as_nanos() as f64 / N as f64;
    eprintln!("session table visit, 2 threads x 10k live keys: {ns:.1} ns per visit per thread");
    for (label, affinity) in [
        (
            "pure Maglev (max_sessions: 0)",
            "{ header: x-user, max_sessions: 0 }",
        ),
        ("with the session table", "{ header: x-user }"),
    ] {
        let snapshot = compile(affinity);
        let c = snapshot.cluster("c").unwrap();
        let users: Vec<HeaderMap> = (0..10_000)
            .map(|i| {
                let mut h = HeaderMap::new();
                h.insert("x-user", format!("user-{i}").parse().unwrap());
                h
            })
            .collect();
        let request = c.session_affinity.as_ref().unwrap().begin(c, None);
        let start = Instant::now();
        for i in 0..N as usize {
            let picked = request.pick(c, &input(&users[i % users.len()]), false);
            std::hint::black_box(picked);
        }
        let ns = start.elapsed().as_nanos() as f64 / N as f64;
        eprintln!("header affinity pick, {label}: {ns:.1} ns");
    }
}
