//! Listening sockets with an accept backlog we choose.
//!
//! `TcpListener::bind` in tokio (through mio) asks the kernel for a backlog
//! of 128, as the standard library does. A burst of more new connections
//! than that while the accept loop is busy (or held back by
//! `max_connections`) overflows the queue: the kernel drops the SYNs and the
//! clients retry after a full second. nginx asks for 511, Envoy for 1024.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog asked for when the config names none. Linux caps it
/// at `net.core.somaxconn` (4096 by default since 5.4).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Binds `addr` (with `SO_REUSEADDR`, as tokio does) and listens with room
/// for `backlog` connections not yet accepted. Needs a tokio runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A listener on a free loopback port with the default backlog, for the
/// demo's and the tests' own servers.
pub fn bind_loopback() -> io::Result<TcpListener> {
    bind(SocketAddr::from(([127, 0, 0, 1], 0)), DEFAULT_BACKLOG)
}
