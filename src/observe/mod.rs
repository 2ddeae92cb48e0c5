//! What the gateway records: the Prometheus metrics, the access log and its
//! writer, and the fate of each client body. The floor of the tree with
//! `error`: every stage records here, and nothing here knows the stages.

pub mod access;
pub mod body;
pub mod exposition;
pub mod logwriter;
pub mod metrics;
pub mod text;
pub mod trace;
