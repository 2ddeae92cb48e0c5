//! The benchmark's token issuer: the dev issuer (discovery + JWKS over HTTP
//! on 127.0.0.1) plus the token files the load generator reads.
//!
//! `cargo run --release --example bench_issuer -- DIR FRESH_COUNT`
//! writes `DIR/issuer` (the issuer URL), `DIR/one.txt` (1 token),
//! `DIR/pool.txt` (1,000 distinct tokens), `DIR/fresh.txt` (FRESH_COUNT
//! distinct tokens, minted on every core), then `DIR/ready`, and keeps
//! serving the JWKS until killed. All tokens are RS256, valid for 30 minutes,
//! or `TOKEN_TTL` seconds when that is set (the soak outlives 30 minutes).

use std::io::Write;
use std::path::{Path, PathBuf};

use authgear_gateway::commands::devissuer::DevIssuer;
use serde_json::json;

fn write_tokens(path: &Path, tokens: &[String]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for t in tokens {
        writeln!(f, "{t}")?;
    }
    f.flush()
}

fn mint_many(issuer: &DevIssuer, prefix: &str, n: usize) -> Vec<String> {
    let ttl: Option<u64> = std::env::var("TOKEN_TTL").ok().and_then(|t| t.parse().ok());
    let extra = match ttl {
        Some(t) => json!({ "exp": authgear_gateway::auth::now_unix() + t }),
        None => json!({}),
    };
    let extra = &extra;
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (t * per..((t + 1) * per).min(n)).map(|i| issuer.mint(&format!("{prefix}-{i:07}"), extra.clone())).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_default()).collect()
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    authgear_gateway::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "bench/run".to_owned()));
    let fresh: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    std::fs::create_dir_all(&dir)?;
    let issuer = DevIssuer::start().await?;
    std::fs::write(dir.join("issuer"), &issuer.issuer)?;
    let issuer_ref = &issuer;
    let (one, pool, fresh_tokens) =
        tokio::task::block_in_place(|| (mint_many(issuer_ref, "one", 1), mint_many(issuer_ref, "pool", 1000), mint_many(issuer_ref, "fresh", fresh)));
    write_tokens(&dir.join("one.txt"), &one)?;
    write_tokens(&dir.join("pool.txt"), &pool)?;
    write_tokens(&dir.join("fresh.txt"), &fresh_tokens)?;
    std::fs::write(dir.join("ready"), "")?;
    println!("bench issuer {} ready, tokens in {}", issuer.issuer, dir.display());
    std::future::pending::<()>().await;
    Ok(())
}
