//! Sealed cookie values: AES-256-GCM (aws-lc-rs) under a key id, so keys
//! can rotate (the first key seals, every listed key opens). The cookie's
//! purpose (its name) is the associated data, so a value sealed for one
//! cookie never opens as another.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::CookieKey;

/// Why a sealed value did not open; none of them says more to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not `v1.<kid>.<base64>`, or too short to hold a nonce and a tag.
    Malformed,
    /// Sealed under a key id no longer listed (a retired key).
    UnknownKey,
    /// The tag does not verify: tampered, truncated or for another purpose.
    Tampered,
}

impl OpenError {
    /// Stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            OpenError::Malformed => "cookie_malformed",
            OpenError::UnknownKey => "cookie_retired_key",
            OpenError::Tampered => "cookie_tampered",
        }
    }
}

/// The configured keys, ready to seal and open.
pub struct Sealer {
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl Sealer {
    /// Builds the AEAD keys; `None` for an empty list.
    pub fn new(keys: &[CookieKey]) -> Option<Sealer> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let unbound = UnboundKey::new(&AES_256_GCM, &k.key).ok()?;
            out.push((k.id.clone(), LessSafeKey::new(unbound)));
        }
        (!out.is_empty()).then(|| Sealer { keys: out, rng: SystemRandom::new() })
    }

    /// `v1.<kid>.<base64url(nonce | ciphertext | tag)>`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Option<String> {
        let (kid, key) = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut buf).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Some(format!("v1.{kid}.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plaintext of a value sealed for `purpose` under a listed key.
    pub fn open(&self, purpose: &str, value: &str) -> Result<Vec<u8>, OpenError> {
        let rest = value.strip_prefix("v1.").ok_or(OpenError::Malformed)?;
        let (kid, body) = rest.split_once('.').ok_or(OpenError::Malformed)?;
        let (_, key) = self.keys.iter().find(|(id, _)| id == kid).ok_or(OpenError::UnknownKey)?;
        let mut raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).map_err(|_| OpenError::Malformed)?;
        let mut sealed = raw.split_off(NONCE_LEN);
        let plain = key.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut sealed).map_err(|_| OpenError::Tampered)?;
        Ok(plain.to_vec())
    }
}

/// `n` random bytes as base64url (ids, `state`, `nonce`, PKCE verifiers).
pub fn random_token(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> CookieKey {
        CookieKey { id: id.into(), key: [byte; 32] }
    }

    #[test]
    fn seal_open_rotation_and_purpose() {
        let old = Sealer::new(&[key("k1", 1)]).expect("sealer");
        let rotated = Sealer::new(&[key("k2", 2), key("k1", 1)]).expect("sealer");
        let retired = Sealer::new(&[key("k2", 2)]).expect("sealer");
        let v = old.seal("session", b"hello").expect("seal");
        assert_eq!(rotated.open("session", &v).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(retired.open("session", &v), Err(OpenError::UnknownKey));
        assert_eq!(old.open("state-x", &v), Err(OpenError::Tampered));
        let mut t = v.clone().into_bytes();
        let last = t.len() - 3;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(old.open("session", &String::from_utf8(t).expect("ascii")), Err(OpenError::Tampered));
        assert!(old.open("session", &v[..v.len() - 20]).is_err());
        assert_eq!(old.open("session", "v1.k1.AAAA"), Err(OpenError::Malformed));
        assert!(rotated.seal("session", b"x").is_some_and(|s| s.starts_with("v1.k2.")));
    }
}
