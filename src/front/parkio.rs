//! The socket of a plain-text HTTP/1.1 connection, wrapped so that hyper
//! can hand it back while the connection is idle.
//!
//! hyper keeps an 8 KiB write buffer and an 8-16 KiB read buffer for every
//! connection for as long as the connection lives; with thousands of idle
//! keep-alive clients that is most of the gateway's memory. `conn.rs`
//! therefore "parks" a connection that has been idle for a moment: it asks
//! hyper to close it gracefully, but with [`Parking::park`] set, the close
//! does not reach the socket (shutdown is skipped) and hyper returns the
//! socket and whatever bytes it had already read. The socket then waits
//! for the next request with no buffers at all, and a fresh hyper
//! connection picks it up, reading the saved bytes first.
//!
//! The client never notices: a connection is only parked between requests,
//! after its last response was written in full with keep-alive semantics.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The switch that turns hyper's shutdown of a [`ParkIo`] into a no-op;
/// kept by the connection's driver while hyper owns the stream.
#[derive(Clone, Default)]
pub struct Parking(Arc<AtomicBool>);

impl Parking {
    /// From now on, `poll_shutdown` leaves the socket open.
    pub fn park(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once [`Parking::park`] was called (and until the next resume).
    pub fn is_parking(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A TCP stream with bytes to replay before reading the socket again, and a
/// [`Parking`] switch.
pub struct ParkIo {
    replay: Bytes,
    stream: TcpStream,
    parking: Parking,
}

impl ParkIo {
    /// Wraps a freshly accepted stream, with its connection's switch.
    pub fn new(stream: TcpStream, parking: Parking) -> ParkIo {
        ParkIo { replay: Bytes::new(), stream, parking }
    }

    /// The switch, for the driver to keep while hyper owns the stream.
    pub fn parking(&self) -> Parking {
        self.parking.clone()
    }

    /// Takes the socket back after hyper let go of it, with `unread` (the
    /// bytes hyper had read but not used) to be read again first.
    pub fn resume(mut self, unread: Bytes) -> ParkIo {
        self.parking.0.store(false, Ordering::Release);
        if !unread.is_empty() {
            // A copy, so the (much larger) buffer `unread` points into is freed.
            let mut joined = Vec::with_capacity(unread.len() + self.replay.len());
            joined.extend_from_slice(&unread);
            joined.extend_from_slice(&self.replay);
            self.replay = Bytes::from(joined);
        }
        self
    }

    /// True when bytes are waiting to be replayed: no need to wait for the socket.
    pub fn has_replay(&self) -> bool {
        !self.replay.is_empty()
    }

    /// Resolves when the socket has bytes to read or was closed: a peek,
    /// so a spurious readiness wake-up never starts an empty hyper connection.
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.peek(&mut [0u8; 1]).await.map(|_| ())
    }
}

impl AsyncRead for ParkIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ParkIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parking.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
