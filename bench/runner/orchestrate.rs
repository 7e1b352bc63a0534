//! `weir-bench all`: install, build, start the endpoint and the peers, run the scenarios in
//! interleaved rounds, measure each peer's CPU time from procfs, and save the results.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::report::{Meta, Results, Run};

/// Options of `weir-bench all`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Measured rounds per scenario (each round runs every peer once), after one warm-up round.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Scenarios to run, comma-separated: h1, h1-rate, h2, tcp, bulk, idle, churn, quality
    /// (all by default; quality, scenario 8, takes ~5 min with the default
    /// `--quality-duration` and ignores `--runs`).
    #[arg(
        long,
        default_value = "h1,h1-rate,h2,tcp,bulk,idle,churn,quality",
        value_delimiter = ','
    )]
    scenarios: Vec<Scenario>,
    /// Bytes per transfer in scenario 5 (bulk).
    #[arg(long, default_value_t = 1 << 30)]
    bulk_bytes: u64,
    /// Idle keep-alive connections held in scenario 6 (idle).
    #[arg(long, default_value_t = 10_000)]
    idle_conns: u32,
    /// Concurrent connect-request-close clients in scenario 7 (churn).
    #[arg(long, default_value_t = 1000)]
    churn_conns: u32,
    /// Seconds per peer and policy in scenario 8 (quality), the stall window included.
    #[arg(long, default_value_t = 40)]
    quality_duration: u64,
    /// Seconds the stalled endpoint answers late in scenario 8, centred in the run.
    #[arg(long, default_value_t = 30)]
    quality_stall: u64,
    /// Do not apt-get install missing peers (fail instead).
    #[arg(long)]
    no_install: bool,
    /// Also save the run into `DIR/<YYYY-MM-DD-HHMM>/` and point `DIR/latest.md` at it
    /// (default DIR: `bench/results`); the raw results always go to `target/bench/`.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    save: Option<Option<PathBuf>>,
}

/// The scenarios of issue #11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// 1: HTTP/1.1 keep-alive, 64 connections, 12-byte body, saturation (wrk).
    H1,
    /// 2: the same at a constant 5,000 req/s (weir-bench rate).
    H1Rate,
    /// 3: HTTP/2 front end (h2load -c8 -m32), HTTP/1.1 to the endpoint.
    H2,
    /// 4: L4 TCP relay of the same small HTTP/1.1 exchanges (wrk, 64 connections).
    Tcp,
    /// 5: L4 bulk: one 1 GiB transfer per run through the L4 listener; Gbit/s per proxy core.
    Bulk,
    /// 6: memory: proxy RSS while 10,000 keep-alive client connections sit idle.
    Idle,
    /// 7: upstream reuse: 1,000 clients connecting, making one request and closing, in a loop;
    /// new endpoint connections per 1,000 requests.
    Churn,
    /// 8: balancing quality: 10 endpoints, one answering 2 s late for a window, clients with a
    /// 1 s timeout; success rate and p99 per peer and load-balancing policy.
    Quality,
}

impl Scenario {
    /// Short name used in the raw results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::H1 => "h1",
            Scenario::H1Rate => "h1-rate",
            Scenario::H2 => "h2",
            Scenario::Tcp => "tcp",
            Scenario::Bulk => "bulk",
            Scenario::Idle => "idle",
            Scenario::Churn => "churn",
            Scenario::Quality => "quality",
        }
    }
}

/// The constant rate of scenario 2 and the connection count of scenarios 1, 2 and 4.
const RATE: u32 = 5000;
const CONNS: u32 = 64;
const ENDPOINT: &str = "127.0.0.1:18080";
/// The endpoint's bulk source (scenario 5).
const BULK: &str = "127.0.0.1:18070";

/// One system under test: its name and the ports of its HTTP/1.1, HTTP/2, TCP and bulk TCP
/// listeners.
struct Peer {
    name: &'static str,
    h1: u16,
    h2: u16,
    tcp: u16,
    bulk: u16,
}

const PEERS: [Peer; 4] = [
    Peer {
        name: "weir",
        h1: 18081,
        h2: 18081,
        tcp: 18091,
        bulk: 18191,
    },
    Peer {
        name: "haproxy",
        h1: 18082,
        h2: 18083,
        tcp: 18092,
        bulk: 18192,
    },
    Peer {
        name: "nginx",
        h1: 18084,
        h2: 18085,
        tcp: 18094,
        bulk: 18194,
    },
    Peer {
        name: "direct",
        h1: 18080,
        h2: 18080,
        tcp: 18080,
        bulk: 18070,
    },
];

impl Peer {
    fn port(&self, s: Scenario) -> u16 {
        match s {
            Scenario::H1
            | Scenario::H1Rate
            | Scenario::Idle
            | Scenario::Churn
            | Scenario::Quality => self.h1,
            Scenario::H2 => self.h2,
            Scenario::Tcp => self.tcp,
            Scenario::Bulk => self.bulk,
        }
    }
}

/// A started process, stopped with SIGTERM (then SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole benchmark; see the module docs.
pub(crate) fn all(o: &Options) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let out = root.join("target/bench");
    std::fs::create_dir_all(out.join("nginx/tmp"))?;
    crate::prepare::install(o.no_install)?;
    crate::prepare::build_weir(&root)?;
    let me = std::env::current_exe()?;
    for p in all_ports() {
        if TcpListener::bind(("127.0.0.1", p)).is_err() {
            bail!("port {p} is in use (a previous run still alive?)");
        }
    }

    let endpoint = spawn(
        &root,
        "1",
        &me,
        &["endpoint", "--addr", ENDPOINT, "--bulk-addr", BULK],
        &[],
    )?;
    let endpoints = spawn(
        &root,
        "1",
        &me,
        &[
            "endpoints",
            "--first",
            crate::quality_run::FIRST,
            "--count",
            &crate::quality_run::COUNT.to_string(),
        ],
        &[],
    )?;
    let peers = [
        spawn(
            &root,
            "0",
            &root.join("target/release/weir"),
            &["run", "-c", "bench/peers/weir.yaml", "--threads", "1"],
            // mimalloc's purge settings recommended for many idle connections
            // (docs/architecture.md, "Allocator"): RSS follows the live heap.
            &[
                ("RUST_LOG", "warn"),
                ("MIMALLOC_PURGE_DECOMMITS", "1"),
                ("MIMALLOC_PURGE_DELAY", "50"),
                ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
            ],
        )?,
        spawn(
            &root,
            "0",
            Path::new("haproxy"),
            &["-db", "-f", "bench/peers/haproxy.cfg"],
            &[],
        )?,
        spawn(
            &root,
            "0",
            Path::new("nginx"),
            &[
                "-p",
                &format!("{}/", out.join("nginx").display()),
                "-c",
                &root.join("bench/peers/nginx.conf").display().to_string(),
            ],
            &[],
        )?,
    ];
    for p in all_ports() {
        wait_listening(p)?;
    }
    let pid_of = |name: &str| match name {
        "weir" => Some(peers[0].pid()),
        "haproxy" => Some(peers[1].pid()),
        "nginx" => Some(peers[2].pid()),
        _ => None,
    };
    let tick_us = 1e6 / clk_tck();
    let mut results = Results {
        meta: meta(o, &root)?,
        runs: Vec::new(),
    };
    for &scenario in &o.scenarios {
        if scenario == Scenario::Quality {
            results.runs.extend(crate::quality_run::all(
                &me,
                o.quality_duration,
                o.quality_stall,
            )?);
            continue;
        }
        for round in 0..=o.runs {
            let secs = if round == 0 { 2 } else { o.duration };
            for peer in &PEERS {
                let proxy = pid_of(peer.name);
                let before = proxy.map(tree_ticks);
                let ep_before = tree_ticks(endpoint.pid());
                let port = peer.port(scenario);
                let mut run = match (scenario, proxy) {
                    (Scenario::Idle, Some(pid)) => idle(&me, port, o.idle_conns, pid),
                    // No proxy, no proxy memory to measure.
                    (Scenario::Idle, None) => continue,
                    (Scenario::Churn, _) => churn(&me, port, secs, o.churn_conns),
                    _ => load(&me, scenario, port, secs, o),
                }
                .with_context(|| format!("{} through {}", scenario.name(), peer.name))?;
                let reqs = run.requests.max(1) as f64;
                run.proxy_cpu_us_per_req = proxy
                    .zip(before)
                    .map(|(pid, b)| (tree_ticks(pid) - b) * tick_us / reqs);
                run.endpoint_cpu_us_per_req =
                    (tree_ticks(endpoint.pid()) - ep_before) * tick_us / reqs;
                run.peer = peer.name.into();
                run.loadavg = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0.0);
                run.round = round;
                eprintln!(
                    "{:8} {:8} round {round}: {:>9.0} req/s, proxy {} µs/req, endpoint {:.1} µs/req, errors {}{}",
                    scenario.name(),
                    peer.name,
                    run.rps,
                    run.proxy_cpu_us_per_req
                        .map_or("-".into(), |c| format!("{c:.1}")),
                    run.endpoint_cpu_us_per_req,
                    run.errors,
                    run.extra()
                );
                // The idle scenario keeps its first round: only a fresh process shows what the
                // connections cost, since freed memory is not always given back to the system.
                if round > 0 || scenario == Scenario::Idle {
                    results.runs.push(run);
                }
            }
        }
    }
    drop(peers);
    drop(endpoints);
    drop(endpoint);
    println!("{}", crate::report::save(&results, &out)?);
    if let Some(dir) = crate::publish::save_dir(o.save.as_ref()) {
        crate::publish::publish(&results, &dir)?;
    }
    Ok(())
}

/// Every port the runner's processes listen on: the endpoint's, the peers' and scenario 8's.
fn all_ports() -> Vec<u16> {
    let first = crate::quality_run::FIRST
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(18101);
    PEERS
        .iter()
        .flat_map(|p| [p.h1, p.h2, p.tcp, p.bulk])
        .chain(crate::quality_run::POLICIES.iter().map(|p| p.port))
        .chain((0..crate::quality_run::COUNT).map(|i| first + i))
        .collect()
}

pub(crate) fn sh_out(script: &str) -> String {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// Starts `program args` pinned to `cpu` with `taskset`, in `dir`.
fn spawn(
    dir: &Path,
    cpu: &str,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let child = Command::new("taskset")
        .args(["-c", cpu])
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Proc { child })
}

fn wait_listening(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Clock ticks per second of procfs' CPU times.
pub(crate) fn clk_tck() -> f64 {
    sh_out("getconf CLK_TCK").parse().unwrap_or(100.0)
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        all.push(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    stack.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
    }
    all
}

/// utime + stime, in clock ticks, of `pid` (all its threads) and of its descendants.
pub(crate) fn tree_ticks(pid: u32) -> f64 {
    let mut total = 0.0;
    for p in tree(pid) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name (which may hold spaces): state is field 3.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            total += field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0);
        }
    }
    total
}

/// Resident memory of `pid` and its descendants (nginx's master and worker), in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .sum()
}

/// Scenario 6: the proxy's RSS before and while `conns` keep-alive connections sit idle.
fn idle(me: &Path, port: u16, conns: u32, proxy: u32) -> anyhow::Result<Run> {
    use std::io::{BufRead, BufReader};
    let before = tree_rss_kib(proxy);
    let start = Instant::now();
    let mut client = Command::new("taskset")
        .args(["-c", "1"])
        .arg(me)
        .args(["idle", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--conns", &conns.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the idle client")?;
    let mut line = String::new();
    if let Some(out) = client.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Let the proxy settle (timers, buffers given back) before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    let held = tree_rss_kib(proxy);
    drop(client.stdin.take());
    let _ = client.wait();
    let mut words = line.split_whitespace().skip(1);
    let (Some(ok), Some(failed)) = (
        words.next().and_then(|w| w.parse::<u64>().ok()),
        words.next().and_then(|w| w.parse::<u64>().ok()),
    ) else {
        bail!("the idle client said {line:?}");
    };
    Ok(Run {
        scenario: Scenario::Idle.name().into(),
        requests: ok,
        errors: failed,
        seconds,
        rps: ok as f64 / seconds,
        rss_before_kib: Some(before),
        rss_kib: Some(held),
        ..Run::default()
    })
}

/// Scenario 7: churning clients through `port`, counting the endpoint's new connections.
fn churn(me: &Path, port: u16, secs: u64, conns: u32) -> anyhow::Result<Run> {
    let before = endpoint_accepts()?;
    let output = Command::new("taskset")
        .args(["-c", "1"])
        .arg(me)
        .args(["churn", "--addr", &format!("127.0.0.1:{port}")])
        .args([
            "--conns",
            &conns.to_string(),
            "--duration",
            &secs.to_string(),
        ])
        .output()
        .context("running the churn client")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "churn failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The count's own connection is the one more.
    let opened = endpoint_accepts()?.saturating_sub(before + 1);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("churn said {text:?}"))?;
    let requests = v["requests"].as_u64().context("requests")?;
    let seconds = v["seconds"].as_f64().context("seconds")?;
    Ok(Run {
        scenario: Scenario::Churn.name().into(),
        requests,
        errors: v["errors"].as_u64().context("errors")?,
        seconds,
        rps: requests as f64 / seconds,
        upstream_conns: Some(opened),
        ..Run::default()
    })
}

/// The endpoint's count of accepted HTTP connections, asked directly on a connection of its own.
fn endpoint_accepts() -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(ENDPOINT)?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: endpoint\r\nConnection: close\r\n\r\n",
        crate::endpoint::ACCEPTS_PATH
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.split_once("\r\n\r\n")
        .and_then(|(_, body)| body.trim().parse().ok())
        .with_context(|| format!("the endpoint's accept count: {text:?}"))
}

/// Runs one load of `scenario` against `port` for `secs` seconds on CPU 1.
fn load(me: &Path, scenario: Scenario, port: u16, secs: u64, o: &Options) -> anyhow::Result<Run> {
    let url = format!("http://127.0.0.1:{port}/");
    let d = secs.to_string();
    let conns = CONNS.to_string();
    let (program, args): (PathBuf, Vec<String>) = match scenario {
        Scenario::H1 | Scenario::Tcp => (
            "wrk".into(),
            vec![
                "-t1".into(),
                format!("-c{conns}"),
                format!("-d{d}s"),
                "--latency".into(),
                url,
            ],
        ),
        Scenario::H1Rate => (
            me.to_path_buf(),
            vec![
                "rate".into(),
                "--addr".into(),
                format!("127.0.0.1:{port}"),
                "--conns".into(),
                conns,
                "--rate".into(),
                RATE.to_string(),
                "--duration".into(),
                d,
            ],
        ),
        Scenario::H2 => (
            "h2load".into(),
            vec!["-c8".into(), "-m32".into(), "-D".into(), d, url],
        ),
        Scenario::Bulk => (
            me.to_path_buf(),
            vec![
                "bulk".into(),
                "--addr".into(),
                format!("127.0.0.1:{port}"),
                "--bytes".into(),
                o.bulk_bytes.to_string(),
            ],
        ),
        Scenario::Idle | Scenario::Churn | Scenario::Quality => {
            bail!("{} has its own runner", scenario.name())
        }
    };
    let output = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&program)
        .args(&args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} failed: {}{}",
            program.display(),
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut run = match scenario {
        Scenario::H1 | Scenario::Tcp => parse_wrk(&text),
        Scenario::H1Rate => parse_rate(&text),
        Scenario::H2 => parse_h2load(&text),
        Scenario::Bulk => parse_bulk(&text),
        Scenario::Idle | Scenario::Churn | Scenario::Quality => None,
    }
    .with_context(|| format!("unexpected output of {}:\n{text}", program.display()))?;
    run.scenario = scenario.name().into();
    Ok(run)
}

/// `512.00us`, `1.20ms`, `2.00s` → µs.
fn duration_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn parse_wrk(text: &str) -> Option<Run> {
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => run.p50_us = duration_us(v),
            ["99%", v] => run.p99_us = duration_us(v),
            [n, "requests", "in", secs, ..] => {
                run.requests = n.parse().ok()?;
                run.seconds = secs.trim_end_matches(',').strip_suffix('s')?.parse().ok()?;
            }
            ["Latency", avg, ..] => run.mean_us = duration_us(avg),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    (run.requests > 0).then(|| {
        run.rps = run.requests as f64 / run.seconds;
        run
    })
}

fn parse_rate(text: &str) -> Option<Run> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    Some(Run {
        requests: v["requests"].as_u64()?,
        errors: v["errors"].as_u64()?,
        seconds: v["seconds"].as_f64()?,
        rps: v["rps"].as_f64()?,
        p50_us: v["p50_us"].as_f64(),
        p99_us: v["p99_us"].as_f64(),
        ..Run::default()
    })
}

fn parse_bulk(text: &str) -> Option<Run> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let seconds = v["seconds"].as_f64()?;
    Some(Run {
        requests: 1,
        errors: v["errors"].as_u64()?,
        seconds,
        rps: 1.0 / seconds,
        bytes: v["bytes"].as_u64()?,
        ..Run::default()
    })
}

fn parse_h2load(text: &str) -> Option<Run> {
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["finished", "in", secs, ..] => {
                run.seconds = secs.trim_end_matches(',').strip_suffix('s')?.parse().ok()?;
            }
            ["requests:", ..] => {
                // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
                let num = |label: &str| {
                    words
                        .windows(2)
                        .find(|w| w[1].trim_end_matches(',') == label)
                        .and_then(|w| w[0].parse::<u64>().ok())
                };
                run.requests = num("succeeded")?;
                run.errors = num("failed")? + num("errored")? + num("timeout")?;
            }
            ["time", "for", "request:", _min, _max, mean, ..] => run.mean_us = duration_us(mean),
            _ => {}
        }
    }
    (run.requests > 0 && run.seconds > 0.0).then(|| {
        run.rps = run.requests as f64 / run.seconds;
        run
    })
}

fn meta(o: &Options, root: &Path) -> anyhow::Result<Meta> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    Ok(Meta {
        date: sh_out("date -u '+%Y-%m-%d %H:%M UTC'"),
        command: format!(
            "cargo run -p weir-bench --release -- all --runs {} --duration {} --scenarios {}{}",
            o.runs,
            o.duration,
            o.scenarios
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(","),
            if o.scenarios.contains(&Scenario::Quality) {
                format!(
                    " --quality-duration {} --quality-stall {}",
                    o.quality_duration, o.quality_stall
                )
            } else {
                String::new()
            }
        ),
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu,
        kernel: sh_out("uname -r"),
        os: sh_out(". /etc/os-release && echo \"$PRETTY_NAME\""),
        weir: sh_out(&format!("git -C {} rev-parse --short HEAD", root.display())),
        nginx: sh_out("nginx -v"),
        haproxy: sh_out("haproxy -v"),
        wrk: sh_out("wrk -v"),
        h2load: sh_out("h2load --version"),
        runs: o.runs,
        duration_s: o.duration,
    })
}
