//! TLS to the upstreams: the platform's roots plus an optional CA file, an
//! optional client certificate for mutual TLS, and `insecure_skip_verify`
//! for test setups.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::warn;

use crate::config::UpstreamSettings;
use crate::runtime::tls::{load_chain, load_key, provider, VERSIONS};

/// The rustls client config for one https upstream.
pub fn upstream_client_config(u: &UpstreamSettings) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS).map_err(|e| e.to_string())?;
    let roots = if u.insecure_skip_verify { rustls::RootCertStore::empty() } else { authgear_tls_roots::root_store(u.ca_file.as_deref())? };
    let builder = builder.with_root_certificates(roots);
    let mut cfg = match &u.client_auth {
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_chain(cert)?, load_key(key)?).map_err(|e| format!("client certificate {}: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    if u.insecure_skip_verify {
        warn!(upstream = %u.name, "insecure_skip_verify = true: the upstream's TLS certificate is NOT verified; use this for test setups only");
        cfg.dangerous().set_certificate_verifier(Arc::new(AcceptAnyCert(provider())));
    }
    Ok(cfg)
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake
/// signatures are still checked so the connection is at least coherent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
