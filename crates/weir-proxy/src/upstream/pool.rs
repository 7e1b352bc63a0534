//! Per-endpoint connection pools.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use weir_config::UpstreamProtocol;
use weir_core::{Error, ErrorKind};

use super::connect;
use crate::ProxyBody;

/// How an endpoint's connections are made and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
}

/// The connections of one endpoint.
pub(crate) struct EndpointPool {
    addr: SocketAddr,
    settings: PoolSettings,
    idle: Arc<ArrayQueue<IdleSender>>,
    h2: ArcSwapOption<http2::SendRequest<ProxyBody>>,
    h2_connecting: tokio::sync::Mutex<()>,
}

/// An HTTP/1.1 connection lent to one exchange; [`PooledSender::release`] returns it.
pub(crate) struct PooledSender {
    sender: http1::SendRequest<ProxyBody>,
    idle: Arc<ArrayQueue<IdleSender>>,
}

/// The upstream's answer, and the HTTP/1.1 connection to return once its body is read.
pub(crate) struct UpstreamResponse {
    pub(crate) response: Response<Incoming>,
    pub(crate) sender: Option<PooledSender>,
}

struct IdleSender {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

// === impl EndpointPool ===

impl EndpointPool {
    /// An empty pool for `addr`.
    pub(crate) fn new(addr: SocketAddr, settings: PoolSettings) -> Self {
        Self {
            addr,
            idle: Arc::new(ArrayQueue::new(settings.max_idle.max(1))),
            settings,
            h2: ArcSwapOption::empty(),
            h2_connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings this pool was built with (a changed config gets a new pool).
    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Sends `req` (already in the right form for the protocol) and waits for response headers.
    pub(crate) async fn send(&self, req: Request<ProxyBody>) -> Result<UpstreamResponse, Error> {
        match self.settings.protocol {
            UpstreamProtocol::Http1 => self.send_http1(req).await,
            UpstreamProtocol::Http2 => self.send_http2(req).await,
        }
    }

    async fn send_http1(&self, mut req: Request<ProxyBody>) -> Result<UpstreamResponse, Error> {
        // A pooled connection may have been closed by the endpoint while idle. hyper hands the
        // request back if it was never written, so we can try the next connection safely.
        loop {
            let (mut sender, fresh) = match self.take_idle().await {
                Some(s) => (s, false),
                None => (
                    connect::http1(self.addr, self.settings.connect_timeout).await?,
                    true,
                ),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let sender = PooledSender {
                        sender,
                        idle: Arc::clone(&self.idle),
                    };
                    return Ok(UpstreamResponse {
                        response,
                        sender: Some(sender),
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(exchange_error(self.addr, e.into_error())),
                },
            }
        }
    }

    async fn take_idle(&self) -> Option<http1::SendRequest<ProxyBody>> {
        while let Some(IdleSender { mut sender, since }) = self.idle.pop() {
            if sender.is_closed() || since.elapsed() > self.settings.idle_timeout {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }

    async fn send_http2(&self, req: Request<ProxyBody>) -> Result<UpstreamResponse, Error> {
        let mut sender = self.h2_sender().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| exchange_error(self.addr, e))?;
        Ok(UpstreamResponse {
            response,
            sender: None,
        })
    }

    /// The shared HTTP/2 connection, opening one if there is none or it has closed.
    async fn h2_sender(&self) -> Result<http2::SendRequest<ProxyBody>, Error> {
        if let Some(s) = self.h2.load().as_deref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let _connecting = self.h2_connecting.lock().await;
        // Another request may have connected while we waited.
        if let Some(s) = self.h2.load().as_deref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let sender = connect::http2(self.addr, self.settings.connect_timeout).await?;
        self.h2.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("addr", &self.addr)
            .field("settings", &self.settings)
            .field("idle", &self.idle.len())
            .finish()
    }
}

// === impl PooledSender ===

impl PooledSender {
    /// Returns the connection to the idle queue (dropped if the queue is full or it closed).
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let _ = self.idle.push(IdleSender {
            sender: self.sender,
            since: Instant::now(),
        });
    }
}

/// Maps a failed exchange: no response headers arrived.
fn exchange_error(addr: SocketAddr, e: hyper::Error) -> Error {
    let context = if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
        format!("endpoint {addr} closed the connection before responding")
    } else {
        format!("exchange with {addr} failed")
    };
    Error::new(ErrorKind::UpstreamProtocol, context).with_cause(e)
}
