//! The process's machinery under every stage: the connection worker
//! threads, the allocator and its per-worker buffer stash, and listening
//! sockets with our backlog, and what both TLS sides share.

pub mod memory;
pub mod net;
pub mod tls;
pub mod workers;
