//! The client side: the listeners and their accept loops, each connection
//! (protocol detection, hyper's settings, parking idle ones, replacing
//! hyper's bare refusals), the TLS listener, and the admin listener. A
//! request that parses is handed to [`crate::pipeline::handle_request`].

pub mod admin;
pub mod conn;
pub mod forward_auth;
pub mod parkio;
pub mod readiness;
pub mod refusal;
pub mod server;
pub mod tls;
