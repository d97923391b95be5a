//! `https`/`wss` serving: the emulator's one port speaks TLS when it is given a
//! certificate, and [`generate_test_certificates`] makes a throwaway CA and a server
//! certificate signed by it, so tests can prove a client trusts a private CA (and fails
//! without it). rustls with ring on both sides, like the transport.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

/// The certificate the emulator serves: a PEM chain (leaf first) and its PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, PartialEq, Eq)]
pub struct EmulatorTls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for EmulatorTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A private key is not something to print, even a test one.
        f.debug_struct("EmulatorTls").finish_non_exhaustive()
    }
}

/// Builds the server config; `InvalidInput` when the PEM does not hold a usable
/// certificate and key.
pub(crate) fn server_config(tls: &EmulatorTls) -> io::Result<Arc<rustls::ServerConfig>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("tls.certPem does not decode: {e}")))?;
    if chain.is_empty() {
        return Err(bad("tls.certPem holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| bad(format!("tls.keyPem holds no usable private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(format!("TLS setup failed: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| {
        bad(format!(
            "tls: the certificate and key do not work together: {e}"
        ))
    })?;
    Ok(Arc::new(config))
}

/// An accepted connection: plain TCP, or TLS over it.
pub(crate) type EmuStream =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// A throwaway CA and a server certificate it signed.
#[derive(Clone)]
pub struct TestCertificates {
    /// The CA certificate: what a client trusts (`tls.caPem`).
    pub ca_pem: String,
    /// The server certificate (signed by the CA), for [`EmulatorTls::cert_pem`].
    pub cert_pem: String,
    /// Its private key (PKCS#8), for [`EmulatorTls::key_pem`].
    pub key_pem: String,
}

/// The names a test certificate covers when none are given.
pub const DEFAULT_TEST_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Makes a fresh CA and a server certificate for `hosts` (names or IP addresses; empty:
/// [`DEFAULT_TEST_HOSTS`]). For tests only: the keys live in memory and are returned.
pub fn generate_test_certificates(hosts: &[String]) -> Result<TestCertificates, String> {
    let hosts: Vec<String> = if hosts.is_empty() {
        DEFAULT_TEST_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        hosts.to_vec()
    };
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Feishu emulator test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = rcgen::KeyPair::generate().map_err(e)?;
    let mut leaf = rcgen::CertificateParams::new(hosts).map_err(e)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "Feishu emulator");
    let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
    Ok(TestCertificates {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_make_a_server_config() {
        let c = generate_test_certificates(&[]).unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&EmulatorTls {
            cert_pem: c.cert_pem.clone(),
            key_pem: c.key_pem.clone(),
        })
        .unwrap();
        // a key that does not belong to the certificate
        let other = generate_test_certificates(&["example.test".into()]).unwrap();
        assert!(server_config(&EmulatorTls {
            cert_pem: c.cert_pem,
            key_pem: other.key_pem,
        })
        .is_err());
        assert!(server_config(&EmulatorTls {
            cert_pem: "nope".into(),
            key_pem: "nope".into(),
        })
        .is_err());
    }
}
