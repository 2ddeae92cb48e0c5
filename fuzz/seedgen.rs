//! Writes `fuzz/jwks.json` and the `auth_token` seed corpus: fresh dev
//! issuer keys sign tokens around `TOKEN_NOW`, the public halves become the
//! fixed JWKS, and the private halves are dropped. Run from `fuzz/` with
//! `cargo run --release --bin seedgen` only to remake the token seeds.

use authgear_gateway::commands::devissuer::DevKey;
use fuzz_targets::{TOKEN_ISSUER, TOKEN_NOW};
use serde_json::{json, Value};

fn main() -> std::io::Result<()> {
    let rsa = DevKey::rsa("rsa-1");
    let ec = DevKey::ec_p256("ec-1");
    let ed = DevKey::ed25519("ed-1");
    let jwks = json!({"keys": [rsa.jwk, ec.jwk, ed.jwk]});
    std::fs::write("jwks.json", serde_json::to_string_pretty(&jwks)? + "\n")?;

    let claims = |extra: Value| {
        let mut c = json!({
            "iss": TOKEN_ISSUER, "aud": [TOKEN_ISSUER], "sub": "user-1",
            "iat": TOKEN_NOW - 10, "exp": TOKEN_NOW + 3600, "auth_time": TOKEN_NOW - 20,
            "https://authgear.com/claims/user/roles": ["admin", "ops"],
            "https://authgear.com/claims/user/is_verified": true,
            "scope": "openid offline_access", "amr": ["pwd"],
        });
        if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
            for (k, v) in e {
                c.insert(k, v);
            }
        }
        c
    };
    let h = |alg: &str, kid: Option<&str>| match kid {
        Some(k) => json!({"alg": alg, "typ": "at+jwt", "kid": k}),
        None => json!({"alg": alg, "typ": "at+jwt"}),
    };
    let unsigned = |header: Value, claims: Value| {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
    };
    let seeds: Vec<(&str, String)> = vec![
        ("rs256", rsa.sign_jwt(&h("RS256", Some("rsa-1")), &claims(json!({})))),
        ("rs384", rsa.sign_jwt(&h("RS384", Some("rsa-1")), &claims(json!({})))),
        ("ps256", rsa.sign_jwt(&h("PS256", Some("rsa-1")), &claims(json!({})))),
        ("es256", ec.sign_jwt(&h("ES256", Some("ec-1")), &claims(json!({})))),
        ("eddsa", ed.sign_jwt(&h("EdDSA", Some("ed-1")), &claims(json!({})))),
        ("no-kid", ec.sign_jwt(&h("ES256", None), &claims(json!({})))),
        ("expired", rsa.sign_jwt(&h("RS256", Some("rsa-1")), &claims(json!({"exp": TOKEN_NOW - 3600})))),
        ("not-yet", rsa.sign_jwt(&h("RS256", Some("rsa-1")), &claims(json!({"nbf": TOKEN_NOW + 3600})))),
        ("float-exp", ed.sign_jwt(&h("EdDSA", Some("ed-1")), &claims(json!({"exp": 1.75e9 + 99.5, "iat": -1})))),
        ("wrong-aud", ec.sign_jwt(&h("ES256", Some("ec-1")), &claims(json!({"aud": "https://other.test"})))),
        ("wrong-iss", ec.sign_jwt(&h("ES256", Some("ec-1")), &claims(json!({"iss": "https://evil.test"})))),
        ("id-token", rsa.sign_jwt(&json!({"alg": "RS256", "typ": "id+jwt", "kid": "rsa-1"}), &claims(json!({})))),
        ("unknown-kid", rsa.sign_jwt(&h("RS256", Some("rsa-2")), &claims(json!({})))),
        ("alg-mismatch", rsa.sign_jwt(&h("RS256", Some("ec-1")), &claims(json!({})))),
        ("alg-none", unsigned(json!({"alg": "none"}), claims(json!({})))),
        ("hs256", unsigned(json!({"alg": "HS256", "kid": "rsa-1"}), claims(json!({})))),
        ("crit", unsigned(json!({"alg": "RS256", "crit": ["exp"]}), claims(json!({})))),
        ("jku", unsigned(json!({"alg": "RS256", "jku": "https://evil.test/jwks", "x5u": "https://evil.test/x"}), claims(json!({})))),
    ];
    let dir = std::path::Path::new("corpus/auth_token");
    std::fs::create_dir_all(dir)?;
    for (name, token) in &seeds {
        std::fs::write(dir.join(format!("seed-{name}")), format!("Bearer {token}"))?;
    }
    if let Some((_, t)) = seeds.first() {
        std::fs::write(dir.join("seed-lowercase-scheme"), format!("bearer   {t}  "))?;
        std::fs::write(dir.join("seed-two-headers"), format!("Bearer {t}\nBearer {t}"))?;
        std::fs::write(dir.join("seed-space-in-token"), format!("Bearer {t} x"))?;
    }
    std::fs::write(dir.join("seed-basic"), "Basic dXNlcjpwYXNz")?;
    std::fs::write(dir.join("seed-empty-bearer"), "Bearer ")?;
    Ok(())
}
