//! Scenario 8 in `weir-bench all`: balancing quality. Ten endpoints (one process, ports
//! 18101–18110); for each peer and policy, the first endpoint is armed to answer 2 s late for a
//! window in the middle of the run, and impatient clients (1 s timeout, see `quality.rs`) send a
//! constant rate through the peer. A policy that notices the slow endpoint sends it little and
//! keeps its success rate and p99; one that does not loses ~1 request in 10.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::report::Run;

/// The first of the ten endpoints; the stalled one.
pub(crate) const FIRST: &str = "127.0.0.1:18101";
/// How many endpoints.
pub(crate) const COUNT: u16 = 10;
/// Client connections opened before the run (more open when all are busy).
const CONNS: u32 = 64;
/// Requests per second through each peer.
const RATE: u32 = 1000;
/// The client timeout, ms.
const TIMEOUT_MS: u64 = 1000;
/// How late the stalled endpoint answers, ms.
const STALL_MS: u64 = 2000;

/// One peer and load-balancing policy: a name for the results and the listener port.
pub(crate) struct Policy {
    /// `peer/policy`, as in the results.
    pub(crate) name: &'static str,
    /// Its HTTP/1.1 listener.
    pub(crate) port: u16,
}

/// The peers and policies compared (configs in `bench/peers/`).
pub(crate) const POLICIES: [Policy; 6] = [
    Policy {
        name: "weir/peak_ewma",
        port: 18111,
    },
    Policy {
        name: "weir/least_request",
        port: 18112,
    },
    Policy {
        name: "haproxy/roundrobin",
        port: 18113,
    },
    Policy {
        name: "haproxy/leastconn",
        port: 18114,
    },
    Policy {
        name: "nginx/least_conn",
        port: 18115,
    },
    Policy {
        name: "nginx/round_robin",
        port: 18116,
    },
];

/// Scenario 8: per peer and policy, a short warm-up without a stall, then one run with it.
pub(crate) fn all(me: &Path, duration: u64, stall: u64) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for policy in &POLICIES {
        run(me, policy, 2, 0)
            .with_context(|| format!("quality warm-up through {}", policy.name))?;
        let mut run = run(me, policy, duration, stall)
            .with_context(|| format!("quality through {}", policy.name))?;
        run.peer = policy.name.into();
        run.round = 1;
        run.loadavg = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        eprintln!(
            "quality  {:20}: success {:.2} %, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, {} timeouts, {} to the stalled endpoint",
            policy.name,
            run.success_rate.unwrap_or(0.0) * 100.0,
            run.p50_us.unwrap_or(0.0) / 1e3,
            run.p99_us.unwrap_or(0.0) / 1e3,
            run.p999_us.unwrap_or(0.0) / 1e3,
            run.timeouts.unwrap_or(0),
            run.stalled_requests.unwrap_or(0),
        );
        runs.push(run);
    }
    Ok(runs)
}

/// One run through `policy`: `secs` seconds of load with the first endpoint stalled for
/// `stall_s` seconds in the middle (no stall when `stall_s` is 0, as in the warm-up).
pub(crate) fn run(me: &Path, policy: &Policy, secs: u64, stall_s: u64) -> anyhow::Result<Run> {
    let before = counts()?;
    if stall_s > 0 {
        let after_ms = secs.saturating_sub(stall_s) * 1000 / 2;
        control(
            FIRST,
            &format!(
                "{}?after_ms={after_ms}&for_ms={}&delay_ms={STALL_MS}",
                crate::endpoint::STALL_PATH,
                stall_s * 1000
            ),
        )?;
    }
    let output = Command::new("taskset")
        .args(["-c", "1"])
        .arg(me)
        .args(["quality", "--addr", &format!("127.0.0.1:{}", policy.port)])
        .args(["--conns", &CONNS.to_string(), "--rate", &RATE.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--timeout-ms", &TIMEOUT_MS.to_string()])
        .output()
        .context("running the quality client")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "quality client failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Answers may still be on their way to the stalled endpoint's count: wait out its delay.
    std::thread::sleep(std::time::Duration::from_millis(STALL_MS + 200));
    let after = counts()?;
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("quality said {text:?}"))?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("{k} in {text:?}"));
    let requests = v["requests"].as_u64().context("requests")?;
    let sent = v["sent"].as_u64().context("sent")?;
    let per_endpoint: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    Ok(Run {
        scenario: "quality".into(),
        requests,
        errors: sent - requests,
        seconds: num("seconds")?,
        rps: requests as f64 / num("seconds")?,
        p50_us: Some(num("p50_us")?),
        p99_us: Some(num("p99_us")?),
        p999_us: Some(num("p999_us")?),
        timeouts: Some(v["timeouts"].as_u64().context("timeouts")?),
        success_rate: Some(requests as f64 / sent.max(1) as f64),
        stalled_requests: per_endpoint.first().copied(),
        endpoint_requests: Some(per_endpoint),
        ..Run::default()
    })
}

/// The requests each endpoint served so far.
fn counts() -> anyhow::Result<Vec<u64>> {
    let first: std::net::SocketAddr = FIRST.parse()?;
    (0..COUNT)
        .map(|i| {
            let addr = std::net::SocketAddr::new(first.ip(), first.port() + i);
            control(&addr.to_string(), crate::endpoint::COUNT_PATH)?
                .trim()
                .parse()
                .with_context(|| format!("the request count of {addr}"))
        })
        .collect()
}

/// `GET path` straight to an endpoint, on a connection of its own; the body.
fn control(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: endpoint\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .with_context(|| format!("{addr}{path} answered {text:?}"))
}
