//! Counting an HTTP connection's bytes on its listener while the connection lives.
//!
//! [`CountedIo`] wraps the accepted socket — after the TLS handshake on a TLS listener, so the
//! counts are HTTP bytes as Envoy's `downstream_cx_rx_bytes_total` counts them, not TLS
//! records — underneath everything weir does with it: the first-bytes sniff, hyper's HTTP/1.1
//! and HTTP/2 servers, the parked waits between requests ([`super::park`]) and upgraded
//! tunnels. Each completed read or write adds its length to the listener's totals with one
//! relaxed atomic add, so `/metrics` shows a long-lived connection's traffic as it flows rather
//! than when the connection ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stats::ListenerCounters;

/// A downstream stream whose bytes count on its listener's [`ListenerCounters`].
#[derive(Debug)]
pub(crate) struct CountedIo<S> {
    inner: S,
    counters: Arc<ListenerCounters>,
}

// === impl CountedIo ===

impl<S> CountedIo<S> {
    /// Wraps `inner`; its reads and writes count on `counters`.
    pub(crate) fn new(inner: S, counters: Arc<ListenerCounters>) -> Self {
        Self { inner, counters }
    }

    /// Counts the bytes a completed write took.
    #[inline]
    fn sent(&self, res: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = res
            && *n > 0
        {
            (self.counters.sent_counter()).fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            (self.counters.received_counter()).fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.sent(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.sent(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn reads_and_writes_count_as_they_happen() {
        let counters = Arc::new(ListenerCounters::default());
        let (mut client, server) = duplex(64);
        let mut io = CountedIo::new(server, Arc::clone(&counters));
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).await.unwrap(), 5);
        assert_eq!((counters.received_bytes(), counters.sent_bytes()), (5, 0));
        io.write_all(b"world!!").await.unwrap();
        assert_eq!(counters.sent_bytes(), 7);
        // The end of the stream counts nothing.
        drop(client);
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(counters.received_bytes(), 5);
    }
}
