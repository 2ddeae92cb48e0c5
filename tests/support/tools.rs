//! The operator tools `.ci/install-protocols.sh` unpacks or installs:
//! promtool and Prometheus, testssl.sh, Python's grpcio in the venv.

use std::path::PathBuf;

/// Where `.ci/install-servers.sh` and `.ci/install-protocols.sh` put things.
pub fn prefix() -> PathBuf {
    PathBuf::from(std::env::var("AGW_DIFF_PREFIX").unwrap_or_else(|_| "/opt/agw-diff".into()))
}

/// A program from the unpacked `prometheus` package (`promtool`, `prometheus`).
pub fn prometheus_bin(name: &str) -> PathBuf {
    let p = prefix().join("prometheus/usr/bin").join(name);
    assert!(p.exists(), "{} is missing; `.ci/install-protocols.sh` unpacks it", p.display());
    p
}

/// The venv's Python, with grpcio installed.
pub fn python() -> PathBuf {
    let p = prefix().join("venv/bin/python");
    assert!(p.exists(), "{} is missing; `.ci/install-protocols.sh` makes it", p.display());
    p
}
