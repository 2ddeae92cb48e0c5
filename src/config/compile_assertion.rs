//! `[assertion]`: the signed identity assertion (issue 17), compiled into
//! [`AssertionSettings`]. The key files are read and parsed here, so a
//! reload that names an unreadable or wrong key is refused whole; a
//! diagnostic names the file, never its contents.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use toml::de::DeValue;
use toml::Spanned;

use super::raw::RawAssertion;
use super::settings::{AssertionAlg, AssertionKey, AssertionKeyPair, AssertionSettings};
use super::values::Compiler;

/// The header name when `header` is not set.
pub const DEFAULT_HEADER: &str = "x-authgear-gateway-assertion";
/// Bounds of `lifetime`: long enough to be cached, short enough that a
/// stolen assertion is soon worthless.
const LIFETIME: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));

/// Headers the gateway or the hop itself owns: an assertion there would be
/// dropped or would replace what the app needs.
const RESERVED: &[&str] =
    &["host", "authorization", "cookie", "connection", "content-length", "content-type", "transfer-encoding", "te", "upgrade", "forwarded", "traceparent"];

impl Compiler<'_> {
    /// `None` when the section is absent, `enabled = false`, or wrong
    /// (every problem reported).
    pub(super) fn assertion(&mut self, v: Option<Spanned<DeValue<'_>>>) -> Option<AssertionSettings> {
        let v = v?;
        let span = v.span();
        let raw: RawAssertion = self.try_de(Some(v), "assertion")?;
        if raw.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
            return None;
        }
        let header = self.assertion_header(&raw);
        let issuer = match &raw.issuer {
            Some(i) if !i.get_ref().trim().is_empty() => Some(i.get_ref().trim().to_owned()),
            Some(i) => {
                self.rep.error(i.span(), "assertion.issuer", "must not be empty");
                None
            }
            None => {
                self.rep.error_hint(
                    span.clone(),
                    "assertion.issuer",
                    "missing",
                    "the gateway's name as apps pin it in `iss`, e.g. \"https://gateway.example.com\"",
                );
                None
            }
        };
        let algorithm = self.assertion_alg(&raw);
        let keys = algorithm.and_then(|alg| self.assertion_keys(&raw, alg, span));
        let lifetime = self.duration(&raw.lifetime, "assertion.lifetime", Duration::from_secs(60));
        if let (Some(l), true) = (&raw.lifetime, lifetime < LIFETIME.0 || lifetime > LIFETIME.1) {
            self.rep.error_hint(l.span(), "assertion.lifetime", format!("{} is out of bounds", l.get_ref()), "between 1s and 10m; about a minute is usual");
        }
        let jwks_path = self.jwks_path(&raw);
        Some(AssertionSettings { header: header?, issuer: issuer?, algorithm: algorithm?, keys: keys?, lifetime, jwks_path: jwks_path? })
    }

    fn assertion_header(&mut self, raw: &RawAssertion) -> Option<http::HeaderName> {
        let Some(h) = &raw.header else { return Some(http::HeaderName::from_static(DEFAULT_HEADER)) };
        match http::HeaderName::from_bytes(h.get_ref().trim().as_bytes()) {
            Ok(n) if RESERVED.contains(&n.as_str()) || n.as_str().starts_with("x-forwarded") || n.as_str().starts_with("proxy-") => {
                self.rep.error_hint(
                    h.span(),
                    "assertion.header",
                    format!("`{n}` is a header the gateway or the hop owns"),
                    "a name of its own, such as \"X-Authgear-Gateway-Assertion\"",
                );
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                self.rep.error(h.span(), "assertion.header", format!("`{}` is not a header name", h.get_ref()));
                None
            }
        }
    }

    fn assertion_alg(&mut self, raw: &RawAssertion) -> Option<AssertionAlg> {
        let Some(a) = &raw.algorithm else { return Some(AssertionAlg::Es256) };
        let key = "assertion.algorithm";
        let text = a.get_ref().trim();
        let why = match text {
            "ES256" => return Some(AssertionAlg::Es256),
            "EdDSA" => return Some(AssertionAlg::EdDsa),
            "HS256" | "HS384" | "HS512" => "HMAC is refused: every app that checks an assertion would hold the secret and could forge one for any user",
            "none" | "" => "an unsigned assertion proves nothing",
            t if t.starts_with("RS") || t.starts_with("PS") => "RSA is not offered: its keys and signatures are large and slow to make on every request",
            _ => "not a supported algorithm",
        };
        self.rep.error_hint(a.span(), key, format!("`{text}`: {why}"), "\"ES256\" (the default) or \"EdDSA\"");
        None
    }

    /// Every file of `key_files`, parsed for `alg`; `None` on any error.
    fn assertion_keys(&mut self, raw: &RawAssertion, alg: AssertionAlg, span: std::ops::Range<usize>) -> Option<Vec<AssertionKey>> {
        let key = "assertion.key_files";
        let hint = match alg {
            AssertionAlg::Es256 => "PEM P-256 private keys, e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`",
            AssertionAlg::EdDsa => "PEM Ed25519 private keys, e.g. from `openssl genpkey -algorithm ed25519`",
        };
        let Some(files) = &raw.key_files else {
            self.rep.error_hint(span, key, "missing: the first key signs, all are published", hint);
            return None;
        };
        if files.get_ref().is_empty() {
            self.rep.error_hint(files.span(), key, "an empty list has no key to sign with", hint);
            return None;
        }
        let mut out: Vec<AssertionKey> = Vec::new();
        let mut ok = true;
        for f in files.get_ref() {
            match load_key(f.get_ref(), alg) {
                Ok(k) if out.iter().any(|o| o.kid == k.kid) => {
                    self.rep.error(f.span(), key, format!("{} holds the same key as an earlier file", f.get_ref()));
                    ok = false;
                }
                Ok(k) => out.push(k),
                Err(e) => {
                    self.rep.error_hint(f.span(), key, format!("{}: {e}", f.get_ref()), hint);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn jwks_path(&mut self, raw: &RawAssertion) -> Option<Option<String>> {
        let Some(p) = &raw.jwks_path else { return Some(None) };
        let text = p.get_ref();
        let plain = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
        if !text.starts_with('/') || text.len() < 2 || !plain || text.contains("//") || text.split('/').any(|s| s == "." || s == "..") {
            self.rep.error_hint(p.span(), "assertion.jwks_path", format!("`{text}` is not a plain absolute path"), "e.g. \"/.well-known/gateway-jwks.json\"");
            return None;
        }
        Some(Some(text.clone()))
    }
}

/// Reads one PEM private key for `alg` and derives its public JWK.
pub fn load_key(path: &str, alg: AssertionAlg) -> Result<AssertionKey, String> {
    let der = PrivateKeyDer::from_pem_file(path).map_err(|e| format!("cannot read a PEM private key: {e}"))?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (pair, members) = match (alg, &der) {
        (AssertionAlg::Es256, PrivateKeyDer::Sec1(_) | PrivateKeyDer::Pkcs8(_)) => {
            let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(|e| format!("not a P-256 EC private key ({e})"))?;
            // The uncompressed point: 0x04, x, y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err("unexpected public key encoding".into());
            }
            let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
            (AssertionKeyPair::Es256(Arc::new(pair)), format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#))
        }
        (AssertionAlg::EdDsa, PrivateKeyDer::Pkcs8(p)) => {
            let pair = Ed25519KeyPair::from_pkcs8(p.secret_pkcs8_der()).map_err(|e| format!("not an Ed25519 private key ({e})"))?;
            let x = b64(pair.public_key().as_ref());
            (AssertionKeyPair::EdDsa(Arc::new(pair)), format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#))
        }
        (_, PrivateKeyDer::Pkcs1(_)) => return Err(format!("an RSA key; {} needs another kind", alg.as_str())),
        _ => return Err(format!("not a key for {}", alg.as_str())),
    };
    // RFC 7638: the SHA-256 of the required members, sorted, no spaces.
    let kid = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, members.as_bytes()).as_ref());
    let mut jwk: serde_json::Value = serde_json::from_str(&members).map_err(|e| e.to_string())?;
    jwk["kid"] = kid.clone().into();
    jwk["alg"] = alg.as_str().into();
    jwk["use"] = "sig".into();
    Ok(AssertionKey { kid, jwk, pair })
}
