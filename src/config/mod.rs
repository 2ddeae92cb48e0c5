//! Configuration: `gateway.toml` parsed, validated and compiled into the
//! types the hot path uses. Loading never stops at the first problem: every
//! error is collected with its line and column.
//!
//! `raw` is the file as serde reads it, `compile*` and `values` turn it into
//! `settings`, `diag` collects what was wrong. Nothing in this folder imports
//! this file; the rest of the gateway imports through it.

mod compile;
mod compile_assertion;
mod compile_forward_auth;
mod compile_login;
mod compile_routes;
mod compile_session;
mod compile_tracing;
pub mod diag;
pub mod raw;
pub mod settings;
mod values;

use std::path::Path;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use settings::*;

impl Config {
    /// Parses and compiles `text`; `file` names it in diagnostics. Environment
    /// variables come from the process.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, Diagnostics> {
        Self::from_toml_with_env(text, file, &|k| std::env::var(k).ok())
    }

    /// Same as [`from_toml`](Self::from_toml) with an explicit environment.
    pub fn from_toml_with_env(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Diagnostics> {
        compile::compile(text, file, env)
    }

    /// Reads and compiles a config file.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, &name),
            Err(e) => Err(Diagnostics {
                items: vec![Diagnostic {
                    severity: Severity::Error,
                    file: name,
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: format!("cannot read the config file: {e}"),
                    hint: None,
                }],
            }),
        }
    }
}
