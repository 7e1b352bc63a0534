//! `weir`: the command-line entry point. Parses arguments, sets up logging and hands off to
//! the subcommand; all wiring of long-running tasks happens here and nowhere below.

mod demo;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: ~3 % fewer instructions per request, and memory freed when
/// connections close goes back to the system — all of it with `MIMALLOC_PURGE_DELAY` and
/// friends set (docs/benchmarks.md, scenario 6); glibc keeps it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// weir — an L4/L7 load balancer and proxy.
#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "weir — a load balancer and proxy for HTTP/1.1, HTTP/2 and gRPC",
    after_help = "Examples:\n  \
        weir demo                      start demo endpoints with weir in front and print URLs\n  \
        weir check -c weir.yaml        validate a config file (exit 0 when valid)\n  \
        weir run -c weir.yaml          serve traffic as the config says\n  \
        weir run -c weir.yaml --watch  ... and reload when the file changes\n  \
        weir run -c weir.yaml --drain-timeout 10s   ... and drain at most 10 s on SIGTERM\n  \
        weir run -c weir.yaml --upgrade-socket /run/weir.sock   ... and accept binary upgrades\n  \
        weir run -c weir.yaml --upgrade-socket /run/weir.sock --takeover /run/weir.sock\n  \
        \x20                              a new binary takes over from the running one\n  \
        RUST_LOG=debug weir run -c weir.yaml   the same, with debug logs\n\n\
        Config reference: docs/config.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve traffic as the config file says, until SIGINT/SIGTERM.
    #[command(after_help = "Example:\n  weir run -c weir.yaml")]
    Run {
        /// Path to the YAML config.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Reload when the config file changes, checking once a second.
        #[arg(long)]
        watch: bool,
        /// Threads that serve traffic: 1 runs everything on one thread (tokio current-thread
        /// runtime, as a one-worker nginx or `nbthread 1` HAProxy); default: one per CPU.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Wait on this Unix socket for a new weir to take over (binary upgrade); when one does,
        /// stop accepting, drain and exit. See docs/operations.md.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
        /// Take the listening sockets over from the weir running with `--upgrade-socket PATH`,
        /// serve this config on them, then let the old one drain; if this fails to start, the
        /// old one keeps serving.
        #[arg(long, value_name = "PATH")]
        takeover: Option<PathBuf>,
        /// How long in-flight requests and connections may take to finish after SIGTERM/SIGINT
        /// (or a takeover) before they are closed, e.g. `10s`; overrides the config's
        /// `shutdown.drain_timeout` (default 30s).
        #[arg(long, value_name = "DURATION", value_parser = drain_timeout)]
        drain_timeout: Option<std::time::Duration>,
    },
    /// Validate a config file and exit: 0 when valid, 1 with the error otherwise.
    #[command(after_help = "Example:\n  weir check -c weir.yaml && echo valid")]
    Check {
        /// Path to the YAML config.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start three demo endpoints and weir in front of them, send light traffic, print URLs.
    #[command(after_help = "Example:\n  weir demo            # then: curl http://127.0.0.1:8080/")]
    Demo {
        /// Port of the demo listener on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
}

/// The async runtime: `threads` workers (1: a current-thread runtime), or one per CPU.
fn build_runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    }
}

/// Parses `--drain-timeout` as the config writes durations (`500ms`, `10s`, `1m`); not zero.
fn drain_timeout(text: &str) -> Result<std::time::Duration, String> {
    let d = weir_config::ConfigDuration::parse(text)?.get();
    if d.is_zero() {
        return Err("0 would cut every request in flight; give e.g. 30s".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let threads = match &cli.command {
        Command::Run { threads, .. } => *threads,
        _ => None,
    };
    let runtime = match build_runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                watch,
                upgrade_socket,
                takeover,
                drain_timeout,
                ..
            } => {
                let options = run::RunOptions {
                    watch: watch.then_some(std::time::Duration::from_secs(1)),
                    upgrade_socket,
                    takeover,
                    drain_timeout,
                };
                run::run(&config, options).await
            }
            Command::Check { config } => run::check(&config),
            Command::Demo { port, duration } => demo::demo(port, duration).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
