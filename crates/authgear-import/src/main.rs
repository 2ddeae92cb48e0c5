//! `authgear-import`: bulk-imports users into Authgear (see docs/IMPORT.md).

use clap::Parser;

use authgear_import::cli::{self, Cli, Command};
use authgear_import::{exec, EXIT_FATAL};

fn main() {
    // jsonwebtoken and rustls both use aws-lc-rs; install rustls' provider
    // explicitly so TLS never has to guess between backends.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Logs (retries, warnings) go to stderr so stdout stays clean for --json and `mapping`.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("AUTHGEAR_IMPORT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    std::process::exit(execute(cli));
}

/// Runs the parsed command and returns the process exit code.
fn execute(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Validate(a) => cli::validate(&a),
        Command::Mapping(a) => cli::mapping(&a),
        Command::Run(a) => exec::run(&a),
        Command::Resume(a) => exec::resume(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FATAL
        }
    }
}
