//! What a request may do, decided from the config alone: the route table
//! and its patterns, path normalization, the authorization requirements, and
//! the header rules (identity headers stripped, claims rendered, forwarded
//! headers set).

pub mod authz;
pub mod headers;
pub mod hsts;
pub mod path;
pub mod routes;
