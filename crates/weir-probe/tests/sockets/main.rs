//! The probes and the checker against real sockets: the mock endpoints of `weir-test-support`
//! on `127.0.0.1:0`, real time with short intervals, conditions awaited with a generous timeout
//! (never a wall-clock assertion).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a panic is a failed assertion"
)]

mod checker;
mod config;
mod probes;
mod tls_probes;
