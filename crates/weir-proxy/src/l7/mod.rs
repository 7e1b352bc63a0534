//! HTTP (L7) proxying: routes, the per-request service, header handling and error responses.

mod attempts;
pub(crate) mod conn;
mod counted;
mod decision;
mod fault;
mod grpc;
mod headers;
mod listener;
mod mirror;
mod outcome;
mod park;
mod proxy;
mod replay;
pub(crate) mod respond;
mod retry;
mod route;
pub(crate) mod trace;
mod upgrade;

pub use fault::FaultStats;
pub(crate) use listener::HttpListener;
pub use mirror::MirrorStats;
pub(crate) use proxy::handle;
