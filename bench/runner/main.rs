//! `weir-bench`: weir side by side with HAProxy, nginx and no proxy at all (issue #11).
//!
//! `cargo run -p weir-bench --release -- all` installs the peers from Debian when missing,
//! builds weir in release, starts the shared endpoint and every proxy (one thread each, pinned
//! to CPU 0; endpoint and load generators on CPU 1), runs each scenario through every peer in
//! interleaved rounds after a warm-up, and writes a Markdown summary plus the raw runs (JSON and
//! CSV) under `target/bench/`. The method is `../shared/docs/anchors-performance.md` §4–5 and
//! `docs/benchmarks.md`.
//!
//! The other subcommands are the pieces it starts: `endpoint` (the hyper server every peer
//! forwards to) and `rate` (the constant-rate load generator of scenario 2).

mod endpoint;
mod orchestrate;
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
    /// Rebuild the Markdown summary from a saved `runs.json`.
    Report {
        /// The raw results written by `all`.
        #[arg(default_value = "target/bench/runs.json")]
        runs: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::All(options) => orchestrate::all(&options),
        Command::Endpoint { addr } => endpoint::serve(addr),
        Command::Rate {
            addr,
            conns,
            rate,
            duration,
        } => rate::run(addr, conns, rate, Duration::from_secs(duration)).and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        Command::Report { runs } => report::from_file(&runs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
