//! Upstream connections: connecting to endpoints and pooling what can be reused.
//!
//! Each endpoint has one [`EndpointPool`], owned by the cluster and carried across snapshot
//! rebuilds. HTTP/1.1 keeps a bounded queue of idle keep-alive connections (lock-free); HTTP/2
//! keeps one multiplexed connection that every request clones a handle to. Connecting is the
//! only slow path and the only place that waits on a (tokio) lock, to avoid opening several
//! HTTP/2 connections at once.

mod connect;
mod pool;

pub(crate) use connect::tcp as connect_tcp;
pub(crate) use pool::{EndpointPool, PoolSettings, PooledSender, UpstreamResponse};
