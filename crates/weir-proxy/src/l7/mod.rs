//! HTTP (L7) proxying: routes, the per-request service, header handling and error responses.

pub(crate) mod conn;
mod grpc;
mod headers;
mod listener;
mod outcome;
mod proxy;
pub(crate) mod respond;
mod route;
mod upgrade;

pub(crate) use listener::HttpListener;
pub(crate) use proxy::handle;
