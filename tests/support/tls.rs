//! Certificates generated in the test: a CA and leaf certificates it signs.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that can issue leaf certificates.
pub struct TestCa {
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA cert");
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        TestCa { cert_pem, cert_der, issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes a leaf for `names` as `NAME.crt` (leaf then this CA: a full
    /// chain) and `NAME.key` into `dir`; returns both paths.
    pub fn write_leaf(&self, names: &[&str], dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let leaf = self.leaf(names);
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, format!("{}{}", leaf.cert_pem, self.cert_pem)).expect("write cert");
        std::fs::write(&key, &leaf.key_pem).expect("write key");
        (cert, key)
    }

    /// A leaf for `names` (DNS names or IPs), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// [`leaf`](Self::leaf) with its parameters adjusted by `tune` first
    /// (validity, CRL distribution points, ...).
    pub fn leaf_with(&self, names: &[&str], tune: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        tune(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

impl Leaf {
    /// A rustls server config presenting this leaf.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("server cert");
        Arc::new(cfg)
    }
}
