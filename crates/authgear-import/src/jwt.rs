//! Admin API JWTs: RS256, `kid` in the header, `aud` = project id, short `exp`.
//!
//! The private key is read from a file, an environment variable or stdin —
//! never from a command-line argument, which other local users could read
//! from the process list.

use std::io::Read;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::ImportError;

/// Token lifetime: long enough for one request, short enough to be harmless if leaked.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Where the private key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A PEM file.
    File(PathBuf),
    /// An environment variable holding the PEM text.
    Env(String),
    /// Standard input.
    Stdin,
}

impl KeySource {
    /// Reads the PEM text.
    pub fn read(&self) -> Result<Vec<u8>, ImportError> {
        match self {
            KeySource::File(p) => std::fs::read(p).map_err(|e| ImportError::Key(format!("cannot read {}: {e}", p.display()))),
            KeySource::Env(name) => {
                std::env::var(name).map(String::into_bytes).map_err(|_| ImportError::Key(format!("environment variable {name} is not set")))
            }
            KeySource::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| ImportError::Key(format!("cannot read stdin: {e}")))?;
                Ok(buf)
            }
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Mints Admin API tokens for one project.
pub struct AdminSigner {
    key: EncodingKey,
    header: Header,
    project_id: String,
}

impl std::fmt::Debug for AdminSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("AdminSigner").field("kid", &self.header.kid).field("project_id", &self.project_id).finish()
    }
}

impl AdminSigner {
    /// Builds a signer from PEM (PKCS#1 or PKCS#8) and checks it can sign.
    pub fn from_pem(pem: &[u8], key_id: &str, project_id: &str) -> Result<Self, ImportError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| ImportError::Key(format!("not an RSA private key in PEM form: {e}")))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key_id.to_string());
        let signer = AdminSigner { key, header, project_id: project_id.to_string() };
        signer.token()?;
        Ok(signer)
    }

    /// A fresh token valid from now for `TOKEN_LIFETIME_SECS`.
    pub fn token(&self) -> Result<String, ImportError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims { aud: &self.project_id, iat: now, exp: now + TOKEN_LIFETIME_SECS };
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|e| ImportError::Key(format!("cannot sign token: {e}")))
    }
}
