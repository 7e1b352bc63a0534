//! Integration tests proving each mock behaves as documented, driven by real clients: hyper
//! (HTTP/1.1 and HTTP/2 prior knowledge), tokio-tungstenite and the generated gRPC client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a panic is a failed assertion"
)]

mod client;
mod grpc;
mod grpc_health;
mod http;
mod tcp;
mod ws;
