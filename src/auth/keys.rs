//! Signing keys: a JWKS document turned into pre-parsed verification keys.
//! Bad keys are skipped one by one (with a reason), never fatal to the set.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

/// The JOSE algorithms the gateway accepts: asymmetric signatures only.
/// `none` and the HMAC family are absent by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The kind of public key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Alg {
    /// Parses a JOSE `alg` name; `None` for anything not accepted.
    pub fn from_name(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" | "Ed25519" => Alg::EdDSA,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The key family this algorithm needs.
    pub fn family(self) -> Family {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => Family::Rsa,
            Alg::ES256 => Family::P256,
            Alg::ES384 => Family::P384,
            Alg::EdDSA => Family::Ed25519,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            // RSA keys below 2048 bits are refused by these parameters.
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            // JWS ECDSA signatures are fixed-width r||s, not DER.
            Alg::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Alg::EdDSA => &sig::ED25519,
        }
    }

    fn all_of(family: Family) -> &'static [Alg] {
        match family {
            Family::Rsa => &[Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512],
            Family::P256 => &[Alg::ES256],
            Family::P384 => &[Alg::ES384],
            Family::Ed25519 => &[Alg::EdDSA],
        }
    }
}

/// One usable public key, parsed once for each algorithm it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// Set when the JWK named an `alg`: then only that algorithm is allowed.
    pub alg: Option<Alg>,
    pub family: Family,
    parsed: Vec<(Alg, ParsedPublicKey)>,
    /// The public key material, so a key can be recognised across JWKS
    /// reloads (the verified-token cache asks "is this still the same key?").
    public: Box<[u8]>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).field("family", &self.family).finish()
    }
}

impl VerifyKey {
    /// True when this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Alg) -> bool {
        match self.alg {
            Some(a) => a == alg,
            None => alg.family() == self.family,
        }
    }

    /// True when `other` is the same key: same `kid`, same algorithm
    /// restriction and the same public key material.
    pub fn same_key(&self, other: &VerifyKey) -> bool {
        self.kid == other.kid && self.alg == other.alg && self.family == other.family && self.public == other.public
    }

    /// Verifies `signature` over `message`; false on any mismatch.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.allows(alg) {
            return false;
        }
        self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, k)| k.verify_sig(message, signature).is_ok())
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    /// Every key, in document order (for tokens without `kid`).
    all: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when no key was usable.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// True when this set still holds `key` (the same `kid` and material):
    /// one map lookup, and a pointer comparison while the set is unchanged.
    pub fn contains(&self, key: &Arc<VerifyKey>) -> bool {
        match &key.kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|k| Arc::ptr_eq(k, key) || k.same_key(key)),
            None => self.all.iter().any(|k| Arc::ptr_eq(k, key) || k.same_key(key)),
        }
    }

    /// All keys (for a token without `kid`).
    pub fn all(&self) -> &[Arc<VerifyKey>] {
        &self.all
    }

    /// The key ids, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.all.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// Parses a JWKS document. Returns the usable keys and one message per
    /// skipped key; an error only when the document itself is unusable.
    pub fn from_jwks(body: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc.get("keys").and_then(|k| k.as_array()).ok_or("JWKS has no `keys` array")?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, raw) in keys.iter().enumerate() {
            let label = raw.get("kid").and_then(|k| k.as_str()).map_or_else(|| format!("#{i}"), |k| format!("`{k}`"));
            match parse_key(raw) {
                Ok(k) => {
                    let k = Arc::new(k);
                    if let Some(kid) = &k.kid {
                        if set.by_kid.contains_key(kid) {
                            skipped.push(format!("key {label}: duplicate kid, the first one is kept"));
                            continue;
                        }
                        set.by_kid.insert(kid.clone(), k.clone());
                    }
                    set.all.push(k);
                }
                Err(why) => skipped.push(format!("key {label}: {why}")),
            }
        }
        Ok((set, skipped))
    }
}

fn parse_key(raw: &serde_json::Value) -> Result<VerifyKey, String> {
    let kty = raw.get("kty").and_then(|v| v.as_str()).ok_or("missing `kty`")?;
    if kty == "oct" {
        // A symmetric key in a JWKS would turn the public key set into a
        // shared secret; never accept one.
        return Err("symmetric (`oct`) keys are never accepted".into());
    }
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| format!("not a valid JWK: {e}"))?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("`use` is not `sig`".into()),
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify)) {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(key_alg(a).ok_or_else(|| format!("unsupported `alg` {a:?}"))?),
    };
    let (family, public): (Family, Vec<u8>) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64(&p.n, "n")?;
            let e = b64(&p.e, "e")?;
            let bits = n.iter().position(|&b| b != 0).map_or(0, |first| (n.len() - first) * 8);
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA modulus of about {bits} bits (2048 to 8192 accepted)"));
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent is out of range".into());
            }
            (Family::Rsa, rsa_public_key_der(&n, &e))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (family, len) = match p.curve {
                EllipticCurve::P256 => (Family::P256, 32),
                EllipticCurve::P384 => (Family::P384, 48),
                _ => return Err(format!("unsupported curve {:?}", p.curve)),
            };
            let x = b64(&p.x, "x")?;
            let y = b64(&p.y, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, point)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!("unsupported OKP curve {:?}", p.curve));
            }
            let x = b64(&p.x, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key has the wrong length".into());
            }
            (Family::Ed25519, x)
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never accepted".into()),
        _ => return Err(format!("unsupported `kty` {kty}")),
    };
    if let Some(a) = alg {
        if a.family() != family {
            return Err(format!("`alg` {} does not fit a {family:?} key", a.name()));
        }
    }
    let algs: Vec<Alg> = match alg {
        Some(a) => vec![a],
        None => Alg::all_of(family).to_vec(),
    };
    let mut parsed = Vec::with_capacity(algs.len());
    for a in algs {
        let k = ParsedPublicKey::new(a.verification(), &public).map_err(|e| format!("key rejected: {e}"))?;
        parsed.push((a, k));
    }
    Ok(VerifyKey { kid: jwk.common.key_id.clone(), alg, family, parsed, public: public.into_boxed_slice() })
}

fn key_alg(a: &KeyAlgorithm) -> Option<Alg> {
    Some(match a {
        KeyAlgorithm::RS256 => Alg::RS256,
        KeyAlgorithm::RS384 => Alg::RS384,
        KeyAlgorithm::RS512 => Alg::RS512,
        KeyAlgorithm::PS256 => Alg::PS256,
        KeyAlgorithm::PS384 => Alg::PS384,
        KeyAlgorithm::PS512 => Alg::PS512,
        KeyAlgorithm::ES256 => Alg::ES256,
        KeyAlgorithm::ES384 => Alg::ES384,
        KeyAlgorithm::EdDSA => Alg::EdDSA,
        _ => return None,
    })
}

fn b64(s: &str, field: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| format!("`{field}` is not base64url"))
}

/// DER of PKCS#1 `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }`.
pub fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8], out: &mut Vec<u8>) {
        let trimmed = {
            let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
            &bytes[first.min(bytes.len())..]
        };
        let pad = trimmed.first().is_some_and(|&b| b & 0x80 != 0);
        out.push(0x02);
        length(trimmed.len() + usize::from(pad), out);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(trimmed);
    }
    fn length(len: usize, out: &mut Vec<u8>) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(n, &mut body);
    integer(e, &mut body);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}
