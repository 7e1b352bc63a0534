//! [`GrpcHealth`]: a `grpc.health.v1.Health` server (the standard health protocol, served by
//! `tonic-health`'s reporter) whose answers a test switches between `SERVING` and
//! `NOT_SERVING`, for testing active gRPC health checks.
//!
//! It starts with the server as a whole (`""`) and [`GrpcHealth::SERVICE`] both `SERVING`; any
//! other service name is unknown (`NOT_FOUND`). Like [`crate::GrpcEcho`], every accepted socket
//! fails once the mock stops, so dropping the handle closes the listener and every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc::killable_incoming;
use crate::util::{Background, bind_loopback};

/// A running `grpc.health.v1.Health` service. Dropping it closes the listener and every
/// connection.
#[derive(Debug)]
pub struct GrpcHealth {
    addr: SocketAddr,
    reporter: HealthReporter,
    connections: Arc<AtomicU64>,
    background: Background,
}

impl GrpcHealth {
    /// The named service the mock reports on besides the server as a whole (`""`).
    pub const SERVICE: &'static str = "weir.test.Echo";

    /// Starts the service on `127.0.0.1:0`, reporting `SERVING` for `""` and [`Self::SERVICE`].
    pub async fn start() -> Self {
        let (listener, addr) = bind_loopback().await;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(Self::SERVICE, ServingStatus::Serving)
            .await;
        let token = CancellationToken::new();
        let connections = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&connections);
        let incoming = killable_incoming(listener, token.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let server = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, token.clone().cancelled_owned());
        let serve = async move {
            if let Err(error) = server.await {
                tracing::debug!(%error, "mock grpc health server ended with an error");
            }
        };
        Self {
            addr,
            reporter,
            connections,
            background: Background::spawn(token, serve),
        }
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Reports `service` (`""` for the server as a whole) as `SERVING` or `NOT_SERVING` from the
    /// next check on.
    pub async fn set_serving(&self, service: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }

    /// Stops accepting, closes every connection and waits until the server has stopped.
    pub async fn shutdown(self) {
        self.background.shutdown().await;
    }
}
