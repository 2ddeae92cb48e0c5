//! The app side: rewriting a judged request for the upstream and sending it
//! (HTTP/1.1 pool, HTTP/2, TLS to the upstream), and relaying an allowed
//! protocol upgrade, and signing the identity assertion it carries.

pub mod assertion;
pub mod body;
pub mod pool;
pub mod proxy;
pub mod tls;
pub mod upgrade;
