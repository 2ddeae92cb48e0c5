//! JWT checks: parse the compact form, pick and verify the key, then check
//! the registered claims. Every failure has its own reason, for the
//! `error_description`, the logs and the metrics.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use std::cell::RefCell;
use std::sync::Arc;

use super::keys::{Alg, KeySet, VerifyKey};

/// Longest token accepted; real access tokens are a few KB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Defined with every other refusal reason in `error`.
pub use crate::error::TokenError;

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
    // `jku`, `x5u`, `jwk`, `x5c` are deliberately not read: keys come only
    // from the configured JWKS.
}

/// A token's JOSE header, as far as the gateway reads it.
#[derive(Debug)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'t> {
    /// Shared: every token signed with one key carries the same header.
    pub header: Arc<Header>,
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what))
}

/// Splits and decodes a compact JWS. Rejects `none`, HMAC and anything else
/// outside [`Alg`] before any key is looked at.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    // memchr: `split('.')` over a kilobyte of token was 1,000 instructions.
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(d1), Some(d2), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let (h, p, s) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
    let header = header(h)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&b64(p, "payload is not base64url")?).map_err(|_| TokenError::Malformed("payload is not a JSON object"))?;
    let signature = b64(s, "signature is not base64url")?;
    if signature.is_empty() {
        return Err(TokenError::Malformed("empty signature"));
    }
    Ok(Parsed { header, claims, signing_input: &token[..h.len() + 1 + p.len()], signature })
}

thread_local! {
    /// The last header segment this thread decoded, and what it decoded to.
    static LAST_HEADER: RefCell<Option<(Box<str>, Arc<Header>)>> = const { RefCell::new(None) };
}

/// Decodes the header segment, or reuses this thread's last decoding of
/// the very same bytes: an issuer's tokens share one header, and decoding
/// it (base64, JSON, three strings) was a fifth of `parse` (callgrind).
/// Only a header that decoded and passed is kept, so every refusal is
/// judged afresh.
fn header(segment: &str) -> Result<Arc<Header>, TokenError> {
    let hit = LAST_HEADER.with(|last| last.borrow().as_ref().filter(|(seg, _)| **seg == *segment).map(|(_, h)| h.clone()));
    if let Some(h) = hit {
        return Ok(h);
    }
    let raw: RawHeader = serde_json::from_slice(&b64(segment, "header is not base64url")?).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
    let alg_name = raw.alg.ok_or(TokenError::Malformed("header has no alg"))?;
    let alg = Alg::from_name(&alg_name).ok_or_else(|| TokenError::UnsupportedAlg(sanitize(&alg_name)))?;
    if raw.crit.is_some() {
        return Err(TokenError::UnsupportedCrit);
    }
    let h = Arc::new(Header { alg, kid: raw.kid, typ: raw.typ });
    // Real headers are a few dozen bytes; a huge one is not worth keeping.
    if segment.len() <= 512 {
        LAST_HEADER.with(|last| *last.borrow_mut() = Some((segment.into(), h.clone())));
    }
    Ok(h)
}

/// Keeps only a short, printable excerpt of attacker-controlled text.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+')).take(16).collect()
}

/// Verifies the signature with the key the header names (or, without a
/// `kid`, any key that fits) and returns that key. `UnknownKid` tells the
/// caller a refetch of the JWKS may help.
pub fn verify_signature<'k>(p: &Parsed<'_>, keys: &'k KeySet) -> Result<&'k Arc<VerifyKey>, TokenError> {
    let alg = p.header.alg;
    match &p.header.kid {
        Some(kid) => {
            let key = keys.get(kid).ok_or(TokenError::UnknownKid)?;
            if !key.allows(alg) {
                return Err(TokenError::AlgMismatch);
            }
            if key.verify(alg, p.signing_input.as_bytes(), &p.signature) {
                Ok(key)
            } else {
                Err(TokenError::BadSignature)
            }
        }
        None => {
            let mut candidates = keys.all().iter().filter(|k| k.allows(alg)).peekable();
            if candidates.peek().is_none() {
                return Err(TokenError::UnknownKid);
            }
            candidates.find(|k| k.verify(alg, p.signing_input.as_bytes(), &p.signature)).ok_or(TokenError::BadSignature)
        }
    }
}

/// What the claim checks need from the issuer's settings.
pub struct ClaimRules<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway: Duration,
    pub token_types: &'a [String],
}

/// Checks `typ`, `iss`, `aud`, `exp`, `nbf` and `iat` at time `now` (Unix
/// seconds). `exp` is required.
pub fn check_claims(p: &Parsed<'_>, rules: &ClaimRules<'_>, now: u64) -> Result<(), TokenError> {
    check_claims_of(&p.view(), rules, now)
}

/// [`check_claims`] on claims kept from an earlier parse (the
/// verified-token cache re-runs every check on each hit).
pub fn check_claims_of(c: &ClaimsView<'_>, rules: &ClaimRules<'_>, now: u64) -> Result<(), TokenError> {
    for (_, check) in CLAIM_CHECKS {
        check(c, rules, now)?;
    }
    Ok(())
}

/// What the claim checks read: the header's `typ` and the claims.
pub struct ClaimsView<'a> {
    pub typ: Option<&'a str>,
    pub claims: &'a Map<String, Value>,
}

impl Parsed<'_> {
    /// The parts the claim checks read.
    pub fn view(&self) -> ClaimsView<'_> {
        ClaimsView { typ: self.header.typ.as_deref(), claims: &self.claims }
    }
}

type ClaimCheck = fn(&ClaimsView<'_>, &ClaimRules<'_>, u64) -> Result<(), TokenError>;

/// The claim checks in the order they run, named for `explain`.
pub const CLAIM_CHECKS: &[(&str, ClaimCheck)] =
    &[("typ", check_typ), ("iss", check_iss), ("aud", check_aud), ("exp", check_exp), ("nbf", check_nbf), ("iat", check_iat)];

fn check_typ(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, _now: u64) -> Result<(), TokenError> {
    match p.typ {
        Some(typ) if !rules.token_types.iter().any(|a| a.eq_ignore_ascii_case(typ)) => Err(TokenError::TypeNotAccepted(sanitize(typ))),
        _ => Ok(()),
    }
}

fn check_iss(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, _now: u64) -> Result<(), TokenError> {
    match p.claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == rules.issuer => Ok(()),
        Some(_) => Err(TokenError::UnknownIssuer),
        None => Err(TokenError::MissingClaim("iss")),
    }
}

fn check_aud(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, _now: u64) -> Result<(), TokenError> {
    let ok = match p.claims.get("aud") {
        Some(Value::String(a)) => rules.audiences.iter().any(|x| x == a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(|a| rules.audiences.iter().any(|x| x == a)),
        None => return Err(TokenError::MissingClaim("aud")),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

fn check_exp(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, now: u64) -> Result<(), TokenError> {
    let exp = numeric(p.claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(rules.leeway.as_secs()) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn check_nbf(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, now: u64) -> Result<(), TokenError> {
    match numeric(p.claims, "nbf")? {
        Some(nbf) if nbf > now.saturating_add(rules.leeway.as_secs()) => Err(TokenError::NotYetValid),
        _ => Ok(()),
    }
}

fn check_iat(p: &ClaimsView<'_>, rules: &ClaimRules<'_>, now: u64) -> Result<(), TokenError> {
    match numeric(p.claims, "iat")? {
        Some(iat) if iat > now.saturating_add(rules.leeway.as_secs()) => Err(TokenError::IssuedInFuture),
        _ => Ok(()),
    }
}

/// The `exp` claim as Unix seconds, when present and valid.
pub fn expiry(claims: &Map<String, Value>) -> Option<u64> {
    numeric(claims, "exp").ok().flatten()
}

/// Reads a NumericDate; fractional seconds are truncated, negative or
/// non-numeric values are malformed.
fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
                Ok(Some(f as u64))
            } else {
                Err(TokenError::Malformed("a time claim is not a valid number"))
            }
        }
        Some(_) => Err(TokenError::Malformed("a time claim is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
    }

    fn token(header: Value, claims: Value) -> String {
        format!("{}.{}.{}", enc(&header), enc(&claims), URL_SAFE_NO_PAD.encode(b"sig"))
    }

    #[test]
    fn refuses_none_and_hmac() {
        let c = serde_json::json!({"iss": "x"});
        for alg in ["none", "None", "HS256", "HS512", "", "RSA-OAEP"] {
            let t = token(serde_json::json!({"alg": alg}), c.clone());
            assert!(matches!(parse(&t), Err(TokenError::UnsupportedAlg(_))), "{alg}");
        }
        let t = format!("{}.{}.", enc(&serde_json::json!({"alg": "none"})), enc(&c));
        assert!(parse(&t).is_err());
    }

    #[test]
    fn a_header_is_decoded_once_per_spelling_and_refusals_are_never_kept() {
        let c = serde_json::json!({"iss": "x"});
        let a = token(serde_json::json!({"alg": "RS256", "kid": "k1"}), c.clone());
        let b = token(serde_json::json!({"alg": "ES256", "kid": "k2"}), c.clone());
        let (pa, pa2) = (parse(&a).unwrap(), parse(&a).unwrap());
        assert!(Arc::ptr_eq(&pa.header, &pa2.header), "the same header bytes: one decoding");
        let pb = parse(&b).unwrap();
        assert_eq!((pb.header.alg, pb.header.kid.as_deref()), (Alg::ES256, Some("k2")));
        let none = token(serde_json::json!({"alg": "none", "kid": "k1"}), c.clone());
        for _ in 0..2 {
            assert!(matches!(parse(&none), Err(TokenError::UnsupportedAlg(_))));
        }
        assert_eq!(parse(&a).unwrap().header.alg, Alg::RS256);
    }

    #[test]
    fn malformed_shapes() {
        assert!(matches!(parse("abc"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse("!!.b.c"), Err(TokenError::Malformed(_))));
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(parse(&big), Err(TokenError::Malformed(_))));
        let t = token(serde_json::json!({"alg": "RS256", "crit": ["exp"]}), serde_json::json!({}));
        assert_eq!(parse(&t).err(), Some(TokenError::UnsupportedCrit));
    }

    #[test]
    fn claim_rules() {
        let aud = vec!["api".to_owned()];
        let types = vec!["at+jwt".to_owned(), "jwt".to_owned()];
        let rules = ClaimRules { issuer: "https://iss", audiences: &aud, leeway: Duration::from_secs(30), token_types: &types };
        let check = |header: Value, claims: Value| {
            let t = token(header, claims);
            let p = parse(&t).unwrap();
            check_claims(&p, &rules, 1000)
        };
        let h = serde_json::json!({"alg": "RS256", "typ": "at+jwt"});
        let ok = serde_json::json!({"iss": "https://iss", "aud": ["x", "api"], "exp": 2000});
        assert_eq!(check(h.clone(), ok.clone()), Ok(()));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": "api", "exp": 980})), Ok(()), "within leeway");
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": "api", "exp": 970})), Err(TokenError::Expired));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": "api"})), Err(TokenError::MissingClaim("exp")));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://other", "aud": "api", "exp": 2000})), Err(TokenError::UnknownIssuer));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": ["x"], "exp": 2000})), Err(TokenError::WrongAudience));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": "api", "exp": 2000, "nbf": 1100})), Err(TokenError::NotYetValid));
        assert_eq!(check(h.clone(), serde_json::json!({"iss": "https://iss", "aud": "api", "exp": 2000, "iat": 1100})), Err(TokenError::IssuedInFuture));
        assert_eq!(
            check(h, serde_json::json!({"iss": "https://iss", "aud": "api", "exp": "2000"})),
            Err(TokenError::Malformed("a time claim is not a number"))
        );
        let idt = serde_json::json!({"alg": "RS256", "typ": "id+jwt"});
        assert!(matches!(check(idt, ok), Err(TokenError::TypeNotAccepted(_))));
    }
}
