//! Mock endpoints for weir's end-to-end tests.
//!
//! Every mock binds `127.0.0.1:0` (never a fixed port), runs on the caller's tokio runtime and
//! shuts down — listener and every open connection — when its handle is dropped or
//! `shutdown().await` is called. Nothing here synchronises with sleeps: only configured response
//! delays sleep, and [`wait_until`] polls a condition for tests that must await a side effect.
//!
//! - [`MockHttp`]: HTTP/1.1 and HTTP/2 prior knowledge on one port, echo/status/delay/bytes/sink
//!   routes, fixed failure modes and a WebSocket echo.
//! - [`MockTcp`]: a loopback address that refuses connections, a blackhole that accepts and never
//!   answers, and a byte echo for L4 tests.
//! - [`MockTls`]: a TLS server with a certificate from a throwaway [`TestCa`] that names itself
//!   and echoes, and [`tls_connect`], a client that verifies against that CA (TLS passthrough).
//! - [`GrpcEcho`]: the `weir.test.Echo` gRPC service (unary, server streaming, bidi streaming)
//!   with request and cancellation counters.
//! - [`GrpcHealth`]: the standard `grpc.health.v1.Health` service, switchable between
//!   `SERVING` and `NOT_SERVING` per service name (active gRPC health checks).
//! - [`Etcd`]: not a mock but a real `etcd` server on free loopback ports, with `etcdctl` puts
//!   and deletes, a kill and a restart (etcd discovery).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a panic is a failed test"
)]

pub mod dns;
pub mod etcd;
pub mod grpc;
pub mod grpc_health;
pub mod http;
pub mod netns;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod util;
mod ws;

pub use self::dns::MockDns;
pub use self::etcd::Etcd;
pub use self::grpc::GrpcEcho;
pub use self::grpc_health::GrpcHealth;
pub use self::http::{DRIP_CHUNK, MockHttp, MockHttpBuilder, pattern_byte};
pub use self::tcp::{Blackhole, MockTcp, TcpEcho};
pub use self::tls::{Issued, MockTls, TestCa, TlsStream, tls_connect};
pub use self::udp::MockUdp;
pub use self::util::{trace_init, wait_until, wait_until_async};

/// Certificate parameters ([`rcgen::DnType`], [`rcgen::SanType`]) for [`TestCa::issue_client_with`].
pub use rcgen;
/// Re-exported so tests can open WebSocket clients without naming a tungstenite version.
pub use tokio_tungstenite;
/// Re-exported so tests can drive [`grpc::pb`] clients without naming a tonic version.
pub use tonic;
