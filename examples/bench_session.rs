//! A sealed browser-login session for `bench/login.sh`: prints one
//! `Cookie` header value (`NAME=VALUE`) holding a session as a login
//! leaves it (Authgear-shaped claims, the given access token, an ID token
//! and a refresh token), sealed under the key the bench's `[login]` lists.
//!
//! `cargo run --release --example bench_session -- COOKIE_NAME KEY_ID KEY_BASE64 ACCESS_TOKEN [REDIS_URL]`
//!
//! With `REDIS_URL` the session is written to Redis as `store = "redis"`
//! keeps it (under `agw:s:` and the SHA-256 of a random id) and the cookie
//! holds the sealed id only.

use authgear_gateway::config::CookieKey;
use authgear_gateway::login::seal::Sealer;
use base64::Engine;
use serde_json::json;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, kid, key, access, redis_url) = match args.as_slice() {
        [n, k, b, a] => (n, k, b, a, None),
        [n, k, b, a, r] => (n, k, b, a, Some(r)),
        _ => return Err("usage: bench_session COOKIE_NAME KEY_ID KEY_BASE64 ACCESS_TOKEN [REDIS_URL]".into()),
    };
    let raw = base64::engine::general_purpose::STANDARD.decode(key).map_err(|e| e.to_string())?;
    let key: [u8; 32] = raw.try_into().map_err(|_| "the key is not 32 bytes")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let claims = json!({"iss": "bench", "sub": "user-bench", "sid": "sid-bench", "aud": ["bench"],
        "https://authgear.com/claims/user/roles": ["reader", "writer"], "https://authgear.com/claims/user/is_verified": true,
        "email": "bench@example.com", "auth_time": now, "iat": now, "exp": now + 3600});
    let session = json!({"id": "s".repeat(43), "claims": claims, "access_token": access, "refresh_token": "r".repeat(43),
        "id_token": access, "access_exp": now + 3600, "expires": now + 7200});
    let sealer = Sealer::new(&[CookieKey { id: kid.clone(), key }]).ok_or("no sealer")?;
    let sealed = match redis_url {
        None => session.to_string().into_bytes(),
        Some(url) => {
            let id = "b".repeat(43);
            let mut conn = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).map_err(|e| e.to_string())?;
            let key = format!("agw:s:{}", authgear_gateway::login::store::hashed(&id));
            let _: () = redis::cmd("SET").arg(key).arg(session.to_string()).arg("EX").arg(7200).query(&mut conn).map_err(|e| e.to_string())?;
            format!("rid:{id}").into_bytes()
        }
    };
    let value = sealer.seal(name, &sealed).ok_or("sealing failed")?;
    println!("{name}={value}");
    Ok(())
}
