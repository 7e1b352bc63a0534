//! The end-to-end suite, one test binary: every module drives the whole proxy in-process
//! against real peers on loopback. One binary links once, which keeps CI fast and small.

mod access_log;
mod balancing;
mod circuit_breakers;
mod dashboard;
mod decision;
mod discovery;
mod drain;
mod errors;
mod fault;
mod grpc;
mod health_check;
mod http_proxy;
mod limits;
mod metrics;
mod mirror;
mod otlp_export;
mod outlier;
mod policies;
mod rate_limit;
mod redis;
mod reload;
mod reload_live;
mod request_hygiene;
mod retries;
mod routing;
mod shutdown;
mod streaming;
mod tcp;
mod tls_client;
mod tls_mtls_upstream;
mod tls_passthrough;
mod tls_termination;
mod trace_context;
mod udp;
mod websocket;
