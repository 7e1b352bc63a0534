//! The gRPC probe: `grpc.health.v1.Health/Check` (the standard health protocol, see
//! <https://github.com/grpc/grpc/blob/master/doc/health-checking.md>) over a fresh h2c channel,
//! using the client of the maintained `tonic-health` crate — or over TLS with ALPN `h2` when the
//! cluster has upstream `tls:` (the handshake is ours, [`ProbeTls`], plugged into tonic as its
//! connector).
//!
//! `SERVING` passes; `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN` and any RPC error fail with the
//! status in the detail.

use std::net::SocketAddr;

use http::Uri;
use hyper_util::rt::TokioIo;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use weir_config::GrpcCheckConfig;

use super::tls::ProbeTls;
use super::{USER_AGENT, Verdict, error_detail};

/// Asks `addr` about `config.service`, over TLS when `tls` is given; the caller bounds the call.
pub(super) async fn check(
    config: &GrpcCheckConfig,
    tls: Option<&ProbeTls>,
    addr: SocketAddr,
) -> Verdict {
    let invalid = |e: &dyn std::fmt::Display| format!("invalid grpc target: {e}");
    let mut endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| invalid(&e))?
        .user_agent(USER_AGENT)
        .map_err(|e| invalid(&e))?;
    let authority = match (&config.authority, tls) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(tls)) => Some(tls.authority(addr)),
        (None, None) => None,
    };
    if let Some(authority) = authority {
        let origin = Uri::builder()
            .scheme(if tls.is_some() { "https" } else { "http" })
            .authority(authority.as_str())
            .path_and_query("/")
            .build()
            .map_err(|e| invalid(&e))?;
        endpoint = endpoint.origin(origin);
    }
    let channel = match tls {
        None => endpoint.connect().await.map_err(|e| error_detail(&e))?,
        Some(tls) => {
            // The handshake runs here first, so its failure keeps its own words.
            let stream = tls.connect(addr).await?;
            let mut stream = Some(stream);
            let connector = tower::service_fn(move |_: Uri| {
                let stream = stream.take().map(TokioIo::new).ok_or_else(|| {
                    std::io::Error::other("the probe's one connection is already used")
                });
                std::future::ready(stream)
            });
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(|e| error_detail(&e))?
        }
    };
    let request = HealthCheckRequest {
        service: config.service.clone(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => {
            let status = ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown);
            let detail = format!("grpc status {}", status.as_str_name());
            if status == ServingStatus::Serving {
                Ok(detail)
            } else {
                Err(detail)
            }
        }
        Err(status) => Err(format!(
            "grpc error {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}
