//! Packs serialised records into request bodies that never exceed a byte cap.
//!
//! The body is assembled here byte for byte as it will be sent, so its length
//! is exact rather than estimated: `prefix + records joined by ',' + suffix`.

use serde::{Deserialize, Serialize};

use super::mapping::Identifier;

/// The server's documented request-body cap.
pub const SERVER_CAP: usize = 500_000;
/// Default cap: the server's minus a 2% margin, in case a proxy adds anything
/// or the server counts "500 KB" differently.
pub const DEFAULT_CAP: usize = 490_000;

/// Per-row facts carried alongside a batch (never the record itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchRow {
    /// Source line.
    pub line: u64,
    /// The identifier value (email, username or phone).
    pub identifier: String,
    /// Warnings found while preparing the row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The user is imported without a password and must reset it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_reset: bool,
}

/// One request body and the rows it holds, in record order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// 1-based batch number (continues across resumes).
    pub number: u64,
    /// Rows, index-aligned with the `records` array in `body`.
    pub rows: Vec<BatchRow>,
    /// The exact JSON request body.
    pub body: Vec<u8>,
}

/// Accumulates records until the next one would overflow the cap.
#[derive(Debug)]
pub struct Packer {
    cap: usize,
    prefix: Vec<u8>,
    body: Vec<u8>,
    rows: Vec<BatchRow>,
    next_number: u64,
}

const SUFFIX: &[u8] = b"]}";

impl Packer {
    /// A packer for bodies of at most `cap` bytes; numbering starts at `first_number`.
    pub fn new(identifier: Identifier, upsert: bool, cap: usize, first_number: u64) -> Self {
        let prefix = format!(r#"{{"identifier":"{}","upsert":{},"records":["#, identifier.key(), upsert).into_bytes();
        let mut body = Vec::with_capacity(cap.min(1 << 20));
        body.extend_from_slice(&prefix);
        Packer { cap, prefix, body, rows: Vec::new(), next_number: first_number }
    }

    /// Whether a single record of `len` bytes can be sent at all.
    pub fn fits_alone(&self, len: usize) -> bool {
        self.prefix.len() + len + SUFFIX.len() <= self.cap
    }

    /// Adds a record; returns the previous batch if this record did not fit in it.
    /// Callers must check `fits_alone` first.
    pub fn push(&mut self, row: BatchRow, record: &[u8]) -> Option<Batch> {
        let sep = usize::from(!self.rows.is_empty());
        let flushed = if self.body.len() + sep + record.len() + SUFFIX.len() > self.cap && !self.rows.is_empty() { self.take() } else { None };
        if !self.rows.is_empty() {
            self.body.push(b',');
        }
        self.body.extend_from_slice(record);
        self.rows.push(row);
        flushed
    }

    /// Emits the batch in progress, if any.
    pub fn finish(&mut self) -> Option<Batch> {
        if self.rows.is_empty() {
            None
        } else {
            self.take()
        }
    }

    fn take(&mut self) -> Option<Batch> {
        let mut body = std::mem::replace(&mut self.body, Vec::with_capacity(self.cap.min(1 << 20)));
        self.body.extend_from_slice(&self.prefix);
        body.extend_from_slice(SUFFIX);
        let number = self.next_number;
        self.next_number += 1;
        Some(Batch { number, rows: std::mem::take(&mut self.rows), body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_exact_and_capped() {
        let mut p = Packer::new(Identifier::Email, false, 120, 1);
        let rec = br#"{"email":"a@example.com","name":"xxxxxxxxxxxxxxxxxxxx"}"#;
        let mut batches = Vec::new();
        for i in 0..5 {
            let row = BatchRow { line: i, identifier: "a".into(), warnings: vec![], password_reset: false };
            batches.extend(p.push(row, rec));
        }
        batches.extend(p.finish());
        assert!(batches.len() >= 3);
        let total: usize = batches.iter().map(|b| b.rows.len()).sum();
        assert_eq!(total, 5);
        for b in &batches {
            assert!(b.body.len() <= 120, "{}", b.body.len());
            let v: serde_json::Value = serde_json::from_slice(&b.body).expect("valid JSON");
            assert_eq!(v["records"].as_array().map(Vec::len), Some(b.rows.len()));
        }
    }
}
