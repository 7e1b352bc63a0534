//! HTTP (L7) proxying: routes, the per-request service, header handling and error responses.

mod attempts;
pub(crate) mod conn;
mod grpc;
mod headers;
mod listener;
mod outcome;
mod proxy;
mod replay;
mod respond;
mod retry;
mod route;
mod upgrade;

pub(crate) use listener::HttpListener;
pub(crate) use proxy::handle;
