//! The subcommands beside serving: `explain` (how one request would be
//! judged), `demo` (the embedded issuer, upstream and gateway), and the dev
//! issuer the demo, the tests and the benches sign tokens with.

pub mod demo;
pub mod devissuer;
pub mod devissuer_oauth;
pub mod explain;
pub mod explain_forward_auth;
pub mod explain_session;
