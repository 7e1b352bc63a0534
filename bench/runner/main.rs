//! `weir-bench`: weir side by side with HAProxy, nginx and no proxy at all (issue #11).
//!
//! `cargo run -p weir-bench --release -- all` installs the peers from Debian when missing,
//! builds weir in release, starts the shared endpoint and every proxy (one thread each, pinned
//! to CPU 0; endpoint and load generators on CPU 1), runs each scenario through every peer in
//! interleaved rounds after a warm-up, and writes a Markdown summary, the raw runs (JSON and
//! CSV) and PNG charts under `target/bench/` (with `--save`, also under `bench/results/`). The
//! method is `../shared/docs/anchors-performance.md` §4–5 and `docs/benchmarks.md`.
//!
//! The other subcommands are the pieces it starts: `endpoint` (the hyper server every peer
//! forwards to, with the bulk source of scenario 5) and the load generators that wrk and h2load
//! do not cover: `rate` (scenario 2), `bulk` (5), `idle` (6) and `churn` (7); scenario 8 has
//! its own endpoints (`endpoints`, ten ports, one of which stalls on demand) and client
//! (`quality`, open-loop with a 1 s timeout per request).
//!
//! `kernel` (root only) measures the L4 data planes of issue #10 — XDP, nftables and the
//! userspace UDP proxy — in network namespaces, with its own UDP `flood` and counting `sink`.

mod bar;
mod bulk;
mod charts;
mod churn;
mod endpoint;
mod flood;
mod idle;
mod kernel;
mod kernel_live;
mod kernel_report;
mod kernel_topo;
mod live_gen;
mod orchestrate;
mod prepare;
mod publish;
mod quality;
mod quality_run;
mod rate;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// weir-bench — weir against HAProxy, nginx and direct, per scenario.
#[derive(Debug, Parser)]
#[command(name = "weir-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scenario through weir, HAProxy, nginx and direct; print and save the results.
    All(orchestrate::Options),
    /// Serve the benchmark endpoint (200, 12-byte body; HTTP/1.1 and h2c) until killed.
    Endpoint {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        addr: SocketAddr,
        /// Address of the bulk source (scenario 5): `<bytes>\n` in, that many bytes out.
        #[arg(long, default_value = "127.0.0.1:18070")]
        bulk_addr: SocketAddr,
    },
    /// Scenario 8's endpoints: `count` ports from `first` on, counting requests (`/__count`),
    /// stalling on demand (`/__stall?after_ms=&for_ms=&delay_ms=`), until killed.
    Endpoints {
        /// The first port's address.
        #[arg(long, default_value = "127.0.0.1:18101")]
        first: SocketAddr,
        /// How many consecutive ports.
        #[arg(long, default_value_t = 10)]
        count: u16,
    },
    /// Open-loop constant-rate HTTP/1.1 with a client timeout per request (scenario 8); prints
    /// JSON.
    Quality {
        /// Address to send `GET /` to.
        #[arg(long)]
        addr: SocketAddr,
        /// Keep-alive connections opened up front (more are opened when all are busy).
        #[arg(long, default_value_t = 64)]
        conns: u32,
        /// Requests per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 40)]
        duration: u64,
        /// Per-request timeout from its due time, ms.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// One bulk transfer from the endpoint's bulk source (scenario 5); prints JSON.
    Bulk {
        /// Address to connect to (a proxy's L4 listener or the bulk source).
        #[arg(long)]
        addr: SocketAddr,
        /// Bytes to ask for.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
    },
    /// Open keep-alive connections, one request each, and hold them idle (scenario 6).
    Idle {
        /// Address to send `GET /` to.
        #[arg(long)]
        addr: SocketAddr,
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        conns: u32,
    },
    /// Clients that connect, make one request and close, in a loop (scenario 7); prints JSON.
    Churn {
        /// Address to send `GET /` to.
        #[arg(long)]
        addr: SocketAddr,
        /// Concurrent clients.
        #[arg(long, default_value_t = 1000)]
        conns: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 8)]
        duration: u64,
    },
    /// Constant-rate HTTP/1.1 load: print one JSON object with rate and latency percentiles.
    Rate {
        /// Address to send `GET /` to.
        #[arg(long)]
        addr: SocketAddr,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        conns: u32,
        /// Requests per second, over all connections.
        #[arg(long, default_value_t = 5000)]
        rate: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 8)]
        duration: u64,
    },
    /// Kernel data planes (root): pps and CPU per packet of XDP, nftables and userspace UDP
    /// through a veth balancer namespace, with 1 to 10,000 VIPs; saves `target/bench/kernel.*`.
    Kernel(kernel::Options),
    /// The live-frames generator of `kernel --source live` (run inside the balancer
    /// namespace); prints its runs as JSON.
    #[command(hide = true)]
    KernelLiveGen(live_gen::GenOptions),
    /// A multi-flow UDP flood (one socket per flow, round-robin `sendmmsg`); prints JSON.
    Flood {
        /// Destination, repeated: flow `i` sends to target `i % n`.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Each `--target` stands for this many consecutive ports from its own (many VIPs).
        #[arg(long, default_value_t = 1)]
        ports: u16,
        /// Datagrams per `sendmmsg` call.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Flows (sockets, hence source ports).
        #[arg(long, default_value_t = 256)]
        flows: u32,
        /// Payload bytes.
        #[arg(long, default_value_t = 18)]
        size: usize,
        /// Seconds of flooding.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// Counts the UDP datagrams arriving on an address; prints JSON.
    Sink {
        /// Address to bind.
        #[arg(long)]
        addr: SocketAddr,
        /// Seconds to count.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// Rebuild the kernel benchmark's Markdown from a saved `kernel.json`.
    KernelReport {
        /// The raw results written by `kernel`.
        #[arg(default_value = "target/bench/kernel.json")]
        runs: PathBuf,
    },
    /// Rebuild the Markdown summary, the CSV and the PNG charts from a saved `runs.json`.
    Report {
        /// The raw results written by `all`.
        #[arg(default_value = "target/bench/runs.json")]
        runs: PathBuf,
        /// Directory for `summary.md`, `runs.csv` and the charts (default: the one holding
        /// `runs`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also save the run into `DIR/<YYYY-MM-DD-HHMM>/` and point `DIR/latest.md` at it
        /// (default DIR: `bench/results`).
        #[arg(long, value_name = "DIR", num_args = 0..=1)]
        save: Option<Option<PathBuf>>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::All(options) => orchestrate::all(&options),
        Command::Endpoint { addr, bulk_addr } => endpoint::serve(addr, bulk_addr),
        Command::Endpoints { first, count } => endpoint::serve_many(first, count),
        Command::Quality {
            addr,
            conns,
            rate,
            duration,
            timeout_ms,
        } => quality::run(
            addr,
            conns,
            rate,
            Duration::from_secs(duration),
            Duration::from_millis(timeout_ms),
        )
        .and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        Command::Bulk { addr, bytes } => bulk::run(addr, bytes).and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        Command::Idle { addr, conns } => idle::run(addr, conns),
        Command::Churn {
            addr,
            conns,
            duration,
        } => churn::run(addr, conns, Duration::from_secs(duration)).and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        Command::Rate {
            addr,
            conns,
            rate,
            duration,
        } => rate::run(addr, conns, rate, Duration::from_secs(duration)).and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        Command::Report { runs, out, save } => publish::report(
            &runs,
            out.as_deref(),
            publish::save_dir(save.as_ref()).as_deref(),
        ),
        Command::Kernel(options) => kernel::run(&options),
        Command::KernelLiveGen(options) => live_gen::generate(&options),
        Command::KernelReport { runs } => kernel_report::from_file(&runs),
        Command::Flood {
            targets,
            ports,
            batch,
            flows,
            size,
            duration,
        } => kernel::parse_targets(&targets, ports)
            .and_then(|t| Ok((t, Duration::try_from_secs_f64(duration)?)))
            .and_then(|(t, d)| flood::flood(&t, flows, size, batch, d))
            .and_then(|r| {
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }),
        Command::Sink { addr, duration } => Duration::try_from_secs_f64(duration)
            .map_err(anyhow::Error::from)
            .and_then(|d| flood::sink(addr, d))
            .and_then(|r| {
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
