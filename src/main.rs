//! The `authgear-gateway` command line. Kept thin: everything lives in the
//! library so tests run the same code in-process.

use std::path::PathBuf;
use std::process::ExitCode;

use authgear_gateway::commands::explain;
use authgear_gateway::config::{Config, LogFormat};
use authgear_gateway::observe::logwriter::{self, LogGuard};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "authgear-gateway", version, about = "Authentication gateway for Authgear access tokens")]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, env = "GATEWAY_CONFIG", default_value = "gateway.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config: exit 0, or list every problem and exit 1.
    Check {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Start a self-contained demo on 127.0.0.1 (no internet, no files).
    Demo,
    /// Show which route a request matches, what it needs, and (given a
    /// token) every check and the headers the upstream would receive.
    Explain {
        /// HTTP method, e.g. GET.
        method: String,
        /// Full URL, e.g. https://app.example.com/admin/users?page=2
        url: String,
        /// A bearer token to check (its signature is never printed).
        #[arg(long)]
        token: Option<String>,
        /// A `Cookie` header value: on a `method = "login"` route, the
        /// session cookie is opened and its identity shown (its tokens never).
        #[arg(long)]
        cookie: Option<String>,
        /// Do not contact the issuer: skip the signature check.
        #[arg(long)]
        no_fetch: bool,
        /// Explain a forward-auth decision request (method and URL as the
        /// ingress sends them, with its headers in `-H`): show the rebuilt
        /// original request, then how it is judged.
        #[arg(long)]
        forward_auth: bool,
        /// A header of the decision request, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        header: Vec<String>,
    },
}

/// Logs go to stderr through a writer thread (see `logwriter`); keep the
/// guard until exit so the last lines are flushed.
fn init_logging(format: LogFormat, level: &str) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let (writer, guard) = logwriter::stderr();
    // The writer is a channel, so tracing cannot see whether stderr is a
    // terminal: colours only for one, never escape codes in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        LogFormat::Json => logwriter::install_access(&writer, logwriter::AccessFormat::Json),
        // A terminal gets tracing's coloured lines.
        LogFormat::Pretty if !ansi => logwriter::install_access(&writer, logwriter::AccessFormat::Text),
        LogFormat::Pretty => {}
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    guard
}

fn main() -> ExitCode {
    authgear_gateway::runtime::memory::tune_allocator();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check { format } => check(&cli.config, format),
        Command::Explain { method, url, token, cookie, no_fetch, forward_auth, header } => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(d) => {
                    eprint!("{d}");
                    return ExitCode::FAILURE;
                }
            };
            let keys = if no_fetch { explain::Keys::Skip } else { explain::Keys::Fetch };
            run_async(async move {
                authgear_gateway::install_crypto_provider();
                let now = authgear_gateway::auth::now_unix();
                let text = if forward_auth {
                    authgear_gateway::commands::explain_forward_auth::explain_forward_auth(&config, &method, &url, &header, keys, now).await?
                } else {
                    explain::explain_with(&config, &method, &url, token.as_deref(), cookie.as_deref(), keys, now).await?
                };
                print!("{text}");
                Ok(())
            })
        }
        Command::Demo => {
            let _log = init_logging(LogFormat::Pretty, "warn");
            run_async(async { authgear_gateway::commands::demo::run().await })
        }
        Command::Run => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(d) => {
                    eprint!("{d}");
                    eprintln!("authgear-gateway: the config has errors; nothing started");
                    return ExitCode::FAILURE;
                }
            };
            let _log = init_logging(config.log.format, &config.log.level);
            for w in config.warnings.warnings() {
                tracing::warn!("{w}");
            }
            run_async(authgear_gateway::run(config, cli.config.clone()))
        }
    }
}

fn run_async<F: std::future::Future<Output = Result<(), String>>>(f: F) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authgear-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgear-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, format: Format) -> ExitCode {
    let result = Config::load(path);
    let (diags, ok) = match &result {
        Ok(c) => (c.warnings.clone(), true),
        Err(d) => (d.clone(), false),
    };
    match format {
        Format::Json => {
            let v = serde_json::json!({"ok": ok, "file": path.display().to_string(), "diagnostics": diags.items});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            print!("{diags}");
            if ok {
                println!("{}: ok", path.display());
            } else {
                let n = diags.errors().count();
                println!("{}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
