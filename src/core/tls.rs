//! TLS trust: one rustls client config (ring provider, no OpenSSL) shared by discovery,
//! the WebSocket and `https://` proxies.
//!
//! Trusted roots are the bundled Mozilla set, plus the caller's private CAs
//! (`tls.caPem`), plus, on request, the operating system's store (`tls.systemRoots`).
//! Certificates are always verified: there is deliberately no way to turn that off, so a
//! company CA is added rather than verification removed.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use super::error::TransportError;

/// The `tls` option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM text of extra CA certificates to trust (`tls.caPem`); several may be
    /// concatenated.
    pub ca_pem: Option<String>,
    /// Also trust the operating system's roots (`tls.systemRoots`).
    pub system_roots: bool,
}

impl TlsOptions {
    /// Fails for a `caPem` that holds no usable certificate. The system store is read
    /// only when the client config is built.
    pub fn validate(&self) -> Result<(), TransportError> {
        if let Some(pem) = &self.ca_pem {
            add_pem(&mut TrustedRoots::empty(), pem)?;
        }
        Ok(())
    }
}

/// What the transport trusts: the bundled Mozilla roots, `tls.caPem`, and the system's
/// roots when asked. Kept both as rustls's store and as the certificates it was built
/// from, because not every client takes a rustls config: the Redis store's client (the
/// `redis` crate) takes its roots as PEM, and a PEM bundle *replaces* its defaults, so it
/// is given this whole set to trust exactly what the sockets trust. That is why the
/// bundled roots come from `webpki-root-certs` (whole certificates) rather than
/// `webpki-roots` (trust anchors only, which cannot be written as PEM).
pub struct TrustedRoots {
    store: rustls::RootCertStore,
    certs: Vec<CertificateDer<'static>>,
}

impl TrustedRoots {
    pub fn load(opts: &TlsOptions) -> Result<TrustedRoots, TransportError> {
        let mut roots = TrustedRoots::empty();
        for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            // Every bundled root is usable (a unit test checks); none is skipped in practice.
            let _ = roots.add(cert.clone());
        }
        if let Some(pem) = &opts.ca_pem {
            add_pem(&mut roots, pem)?;
        }
        if opts.system_roots {
            let found = rustls_native_certs::load_native_certs();
            // Certificates that do not parse as trust anchors are left out, as rustls's
            // `add_parsable_certificates` would (a system store often holds a few).
            let added = found
                .certs
                .into_iter()
                .filter(|c| roots.add(c.clone()).is_ok())
                .count();
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(TransportError::invalid_config(format!(
                    "tls.systemRoots: no certificate could be loaded from the operating system's store{why}"
                )));
            }
        }
        Ok(roots)
    }

    fn empty() -> TrustedRoots {
        TrustedRoots {
            store: rustls::RootCertStore::empty(),
            certs: Vec::new(),
        }
    }

    fn add(&mut self, cert: CertificateDer<'static>) -> Result<(), rustls::Error> {
        self.store.add(cert.clone())?;
        self.certs.push(cert);
        Ok(())
    }

    /// Every trusted root as one PEM bundle, for clients that take roots as PEM.
    pub fn pem(&self) -> String {
        let blocks: Vec<pem::Pem> = self
            .certs
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref()))
            .collect();
        pem::encode_many(&blocks)
    }
}

/// The client config for these options.
pub fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, TransportError> {
    let roots = TrustedRoots::load(opts)?.store;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::invalid_config(format!("TLS setup failed: {e}")))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn add_pem(roots: &mut TrustedRoots, pem: &str) -> Result<(), TransportError> {
    let mut count = 0;
    for (i, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| {
            TransportError::invalid_config(format!(
                "tls.caPem: PEM section {} does not decode: {e}",
                i + 1
            ))
        })?;
        roots.add(cert).map_err(|e| {
            TransportError::invalid_config(format!(
                "tls.caPem: certificate {} is not a usable CA certificate: {e}",
                i + 1
            ))
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TransportError::invalid_config(
            "tls.caPem holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(())
}

/// Why a TLS handshake failed, when the failure is TLS's own (a certificate that does not
/// verify, an alert, a peer that does not speak TLS). `None` for plain I/O failures
/// (reset, EOF), which belong to the caller's error code.
pub fn tls_failure(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(describe(inner))
}

/// [`tls_failure`] for an error from another crate (the Redis client's), which carries the
/// I/O or rustls error somewhere in its chain of sources.
pub fn tls_failure_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        if let Some(why) = e.downcast_ref::<std::io::Error>().and_then(tls_failure) {
            return Some(why);
        }
        // The redis crate keeps its cause as an `Arc<dyn Error>`, which reports the
        // cause's *source* as its own: look inside it, or the I/O error is skipped.
        next = match e.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(inner) => Some(&**inner),
            None => e.source(),
        };
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => {
                    "its certificate was not issued by a trusted authority; trust a private CA with tls.caPem (or tls.systemRoots)"
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "its certificate is not valid for this host name"
                }
                C::Expired | C::ExpiredContext { .. } => "its certificate has expired",
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "its certificate is not valid yet (check the clock)"
                }
                C::Revoked => "its certificate has been revoked",
                // webpki picks the trusted CA by name: a different CA of the same name
                // (a regenerated test CA, say) shows up as a bad signature.
                C::BadSignature => {
                    "its certificate's signature does not verify against the trusted authority of that name (a different CA with the same name?)"
                }
                _ => "its certificate was rejected",
            };
            format!("{why} ({e})")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the TLS handshake with alert {alert:?}")
        }
        rustls::Error::InvalidMessage(_) => {
            format!("the server does not speak TLS, or sent a corrupt handshake ({e})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn ca_pem_is_parsed_and_checked() {
        let one = ca_pem();
        let two = format!("{one}\n{}", ca_pem());
        for pem in [&one, &two] {
            let o = TlsOptions {
                ca_pem: Some(pem.clone()),
                system_roots: false,
            };
            o.validate().unwrap();
            client_config(&o).unwrap();
        }
        for bad in [
            "",
            "not pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = TlsOptions {
                ca_pem: Some(bad.into()),
                system_roots: false,
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.message.contains("tls.caPem"), "{}", e.message);
        }
        let e = TlsOptions {
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            system_roots: false,
        }
        .validate()
        .unwrap_err();
        assert!(
            e.message.contains("not a usable CA certificate"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_pem_bundle_holds_every_trusted_root() {
        let ca = ca_pem();
        let roots = TrustedRoots::load(&TlsOptions {
            ca_pem: Some(ca.clone()),
            system_roots: false,
        })
        .unwrap();
        // Every bundled root is usable, and the CA is added to them.
        let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert_eq!(roots.store.len(), bundled + 1);
        let back = CertificateDer::pem_slice_iter(roots.pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(back, roots.certs);
        assert_eq!(back.len(), bundled + 1);
        assert!(back.contains(&CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()));
    }

    #[test]
    fn default_config_verifies_with_bundled_roots() {
        client_config(&TlsOptions::default()).unwrap();
    }

    #[test]
    fn failures_are_explained() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let why = tls_failure(&io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
        .unwrap();
        assert!(why.contains("not issued by a trusted authority"), "{why}");
        assert!(why.contains("tls.caPem"));
        let why = tls_failure(&io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        )))
        .unwrap();
        assert!(why.contains("not valid for this host name"));
        assert!(tls_failure(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)).is_none());
    }
}
