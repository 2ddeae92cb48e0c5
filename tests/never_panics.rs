//! Hostile input never panics: property tests over the parsers that see
//! network or file input (paths, tokens, JWKS documents, configs, claims).

use authgear_gateway::auth::jwt;
use authgear_gateway::auth::keys::KeySet;
use authgear_gateway::policy::path::normalize;
use authgear_gateway::Config;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;

fn path_strategy() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("/".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%00".to_owned()),
        Just("%3b".to_owned()),
        Just("%25".to_owned()),
        Just("%252e".to_owned()),
        Just(";jsessionid=1".to_owned()),
        Just(";".to_owned()),
        Just("%".to_owned()),
        Just("%zz".to_owned()),
        Just("admin".to_owned()),
        Just("é".to_owned()),
        "[a-zA-Z0-9%._~-]{0,4}",
    ];
    proptest::collection::vec(atoms, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalized_paths_are_canonical(raw in path_strategy()) {
        if let Ok(n) = normalize(&raw) {
            let p = n.judged();
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"), "{p}");
            prop_assert!(!p.split('/').any(|s| s == "." || s == ".."), "{p}");
            prop_assert!(!p.contains(';') && !p.contains('\\') && p.is_ascii(), "{p}");
            let lower = p.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"), "{p}");
            // No `%25` and two hex digits: a second decode would make an
            // escape (`%252e` -> `%2e`). `%25` before one digit and the end
            // (`/a%252`) is a plain percent sign, as path.rs's tests pin.
            let b = lower.as_bytes();
            prop_assert!(!b.windows(5).any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit()), "{p}");
            // The forwarded form adds only a parameter without `/`, `\` or `%`.
            let f = n.forwarded();
            prop_assert!(f.starts_with(p));
            let params = &f[p.len()..];
            prop_assert!(params.is_empty() || (params.starts_with(';') && !params.contains(['/', '\\', '%'])), "{f}");
            prop_assert_eq!(normalize(f), Ok(n.clone()), "normalization must be idempotent");
        }
    }

    #[test]
    fn any_string_is_a_safe_path_input(raw in "\\PC{0,64}") {
        let _ = normalize(&raw);
    }

    #[test]
    fn token_parsing_never_panics(raw in "\\PC{0,200}") {
        let _ = jwt::parse(&raw);
    }

    #[test]
    fn structured_garbage_tokens_never_panic(header in "\\PC{0,80}", payload in "\\PC{0,80}", sig in proptest::collection::vec(any::<u8>(), 0..64)) {
        let t = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(sig));
        let _ = jwt::parse(&t);
    }

    #[test]
    fn jwks_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = KeySet::from_jwks(&body);
    }

    #[test]
    fn jwks_shaped_garbage_never_panics(kty in "(RSA|EC|OKP|oct|x)", n in "[A-Za-z0-9_-]{0,40}", crv in "(P-256|P-384|P-521|Ed25519|x)", alg in "(RS256|ES256|EdDSA|HS256|none|x)") {
        let doc = serde_json::json!({"keys": [{"kty": kty, "n": n, "e": "AQAB", "x": n, "y": n, "crv": crv, "alg": alg, "kid": "k"}]});
        let _ = KeySet::from_jwks(doc.to_string().as_bytes());
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Config::from_toml(&text, "fuzz.toml");
    }

    #[test]
    fn claims_never_become_header_injection(s in "\\PC{0,40}|[\\r\\n\\t\\x00-\\x1f%,]{0,10}") {
        if let Some(v) = authgear_gateway::policy::headers::render_claim(&serde_json::Value::String(s.clone())) {
            let b = v.as_bytes();
            prop_assert!(!b.contains(&b'\r') && !b.contains(&b'\n') && !b.contains(&0));
        }
    }
}
