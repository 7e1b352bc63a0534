//! Parking idle HTTP/1.1 connections: the pieces that let a downstream connection wait for its
//! next request without holding hyper's buffers.
//!
//! hyper's HTTP/1.1 connection keeps a read buffer (8 KiB, often grown to 16) and a write buffer
//! (8 KiB) for its whole life, idle or not; with thousands of idle keep-alive clients that is
//! most of weir's memory (docs/benchmarks.md, scenario 6). HAProxy and nginx give their buffers
//! back while a connection has nothing to read or write. hyper has no such mode, so weir does it
//! one level up: once a connection has been idle for a moment, it asks hyper to close it
//! gracefully — which hyper does at once when no message is under way — takes the socket back
//! with `into_parts` instead of letting hyper shut it down ([`ParkIo`] turns that shutdown into
//! a no-op), waits for the next bytes itself with a few dozen bytes of stack, and hands the
//! socket with those bytes to a new hyper connection. Bytes hyper had read but not parsed come
//! back in `into_parts` and are replayed the same way, so nothing the client sent is lost.
//!
//! The same first read tells an HTTP/2 connection (its 24-byte preface) from HTTP/1.1, so a
//! new connection holds no hyper buffers until its client has sent something.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// The client preface that opens every HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes weir reads itself while it waits for a parked connection's next request; the
/// rest of the request head is hyper's to read.
const WAIT_READ: usize = 64;

/// How much weir reads past replayed bytes in the same read (the rest of a typical request
/// head), so hyper parses the head from one read.
const READ_ON: usize = 4096;

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// HTTP/1.x (anything that is not the HTTP/2 preface; hyper judges it).
    Http1,
    /// HTTP/2 with prior knowledge or after ALPN `h2`.
    Http2,
}

/// State the connection's driver shares with its [`ParkIo`] while hyper owns the latter.
#[derive(Debug, Default)]
pub(super) struct ParkFlags {
    /// The last write hyper attempted did not complete: hyper holds bytes it has not flushed,
    /// so the connection must not be parked.
    write_blocked: AtomicBool,
    /// The driver asked hyper to close so the connection can park: hyper's shutdown of the
    /// socket must not reach it.
    parking: AtomicBool,
}

/// The downstream socket as hyper sees it: bytes read ahead of hyper are replayed first, and
/// hyper's shutdown is skipped while the connection parks.
#[derive(Debug)]
pub(super) struct ParkIo<I> {
    io: I,
    /// Bytes read from `io` that hyper has not seen yet.
    prefix: Bytes,
    flags: Arc<ParkFlags>,
}

impl ParkFlags {
    /// True when hyper has unflushed bytes (its last write was refused).
    pub(super) fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
    }

    /// Marks (or unmarks) that the next graceful close is a park, not the end.
    pub(super) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    /// Whether the current graceful close is a park.
    pub(super) fn parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }
}

impl<I: Read + Write + Unpin> ParkIo<I> {
    /// Wraps a freshly accepted (and, if TLS, handshaken) connection.
    pub(super) fn new(io: I, flags: Arc<ParkFlags>) -> Self {
        Self {
            io,
            prefix: Bytes::new(),
            flags,
        }
    }

    /// Puts bytes hyper read but did not parse back in front of the socket's. They are
    /// copied: `unread` is a view of hyper's whole read buffer, which it would keep alive.
    pub(super) fn rewind(&mut self, unread: &Bytes) {
        debug_assert!(self.prefix.is_empty(), "rewinding over unread bytes");
        self.prefix = if unread.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(unread)
        };
    }

    /// Whether bytes are waiting for hyper already.
    pub(super) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// Waits until the client sends something and keeps it for hyper. `Ok(false)` when the
    /// client closed (or half-closed) the connection first.
    pub(super) async fn wait_for_data(&mut self) -> io::Result<bool> {
        if self.has_prefix() {
            return Ok(true);
        }
        let mut buf = [0u8; WAIT_READ];
        let n = self.read_some(&mut buf).await?;
        self.prefix = Bytes::copy_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// Reads the connection's first bytes, enough to tell the HTTP/2 preface from anything
    /// else, and keeps them for hyper. `None` when the client closed before sending a byte.
    pub(super) async fn sniff(&mut self) -> io::Result<Option<Protocol>> {
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut len = 0;
        loop {
            let n = self.read_some(&mut buf[len..]).await?;
            len += n;
            let so_far = &buf[..len];
            // The preface is 24 bytes: an HTTP/1 request that starts with "PRI" is cut short
            // only by a client that closes, which hyper then reports.
            let h2 = len == H2_PREFACE.len() && so_far == H2_PREFACE;
            if n == 0 || h2 || len == H2_PREFACE.len() || !H2_PREFACE.starts_with(so_far) {
                let mut prefix = BytesMut::with_capacity(len);
                prefix.extend_from_slice(so_far);
                self.prefix = prefix.freeze();
                return Ok(match (len, h2) {
                    (0, _) => None,
                    (_, true) => Some(Protocol::Http2),
                    (_, false) => Some(Protocol::Http1),
                });
            }
        }
    }

    /// One read from the socket into `dst` (0 at end of stream).
    async fn read_some(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut *dst);
            ready!(Pin::new(&mut self.io).poll_read(cx, buf.unfilled()))?;
            Poll::Ready(Ok(buf.filled().len()))
        })
        .await
    }

    /// Shuts the socket's write side down (hyper's own shutdown is skipped while parking).
    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
    }

    /// Records whether a write completed, for [`ParkFlags::write_blocked`].
    fn record_write<T>(&self, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let blocked = res.is_pending();
        if self.flags.write_blocked.load(Ordering::Relaxed) != blocked {
            self.flags.write_blocked.store(blocked, Ordering::Relaxed);
        }
        res
    }
}

impl<I: Read + Write + Unpin> Read for ParkIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        // Read on past the replayed bytes: given only those, hyper would find an incomplete
        // head and grow its read buffer from 8 to 16 KiB to read the rest. An error or the
        // end of the stream shows on hyper's next read.
        if self.prefix.is_empty() && buf.remaining() > 0 {
            let mut more = [0u8; READ_ON];
            let len = more.len().min(buf.remaining());
            let mut rb = ReadBuf::new(&mut more[..len]);
            if let Poll::Ready(Ok(())) = Pin::new(&mut self.io).poll_read(cx, rb.unfilled()) {
                buf.put_slice(rb.filled());
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: Read + Write + Unpin> Write for ParkIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.record_write(res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.record_write(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        self.record_write(res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.flags.parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    fn server() -> (DuplexStream, ParkIo<TokioIo<DuplexStream>>, Arc<ParkFlags>) {
        let (client, server) = duplex(1024);
        let flags = Arc::new(ParkFlags::default());
        (
            client,
            ParkIo::new(TokioIo::new(server), Arc::clone(&flags)),
            flags,
        )
    }

    /// Everything hyper would read from `io` until the client closes.
    async fn read_all(io: ParkIo<TokioIo<DuplexStream>>) -> Vec<u8> {
        let mut out = Vec::new();
        TokioIo::new(io).read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_http2_preface_is_recognised_across_reads_and_replayed() {
        let (mut client, mut io, _) = server();
        let writer = tokio::spawn(async move {
            client.write_all(&H2_PREFACE[..10]).await.unwrap();
            tokio::task::yield_now().await;
            client.write_all(&H2_PREFACE[10..]).await.unwrap();
            client.write_all(b"frames").await.unwrap();
        });
        assert_eq!(io.sniff().await.unwrap(), Some(Protocol::Http2));
        writer.await.unwrap();
        let mut want = H2_PREFACE.to_vec();
        want.extend_from_slice(b"frames");
        assert_eq!(read_all(io).await, want);
    }

    #[tokio::test]
    async fn anything_else_is_http1_and_nothing_read_is_lost() {
        let (mut client, mut io, _) = server();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(io.sniff().await.unwrap(), Some(Protocol::Http1));
        drop(client);
        assert_eq!(read_all(io).await, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    }

    #[tokio::test]
    async fn a_client_that_closes_first_is_no_protocol() {
        let (client, mut io, _) = server();
        drop(client);
        assert_eq!(io.sniff().await.unwrap(), None);
        let (client, mut io, _) = server();
        drop(client);
        assert!(!io.wait_for_data().await.unwrap());
    }

    #[tokio::test]
    async fn rewound_bytes_come_before_the_sockets() {
        let (mut client, mut io, _) = server();
        io.rewind(&Bytes::from_static(b"GET / HT"));
        client.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        assert!(io.wait_for_data().await.unwrap(), "the rewound bytes count");
        // One read returns both, so hyper sees the whole head at once.
        let mut io = TokioIo::new(io);
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn hypers_shutdown_does_not_reach_a_parking_socket() {
        let (mut client, io, flags) = server();
        let mut io = TokioIo::new(io);
        flags.set_parking(true);
        io.shutdown().await.unwrap();
        // Still open: the next response goes out on the same socket.
        io.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here");
        flags.set_parking(false);
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed once not parking");
    }
}
