//! The TLS client of the `url` upstreams and of the alert webhook: whom it trusts, and what a
//! refused certificate means for the user.
//!
//! Trust is `ca_file` when set (PEM certificates, RFC 7468), else the system's roots. A
//! certificate in `ca_file` is also trusted **as it is** when the server presents that very
//! certificate: a self-signed certificate made with `openssl req -x509` carries
//! `basicConstraints CA:TRUE`, which webpki refuses as a server's own certificate
//! (`CaUsedAsEndEntity`, RFC 5280 §4.2.1.9), while OpenSSL and curl accept it as `--cacert`.
//! Such a pinned certificate must still name the host (RFC 6125) and be within its validity
//! period; the handshake's signatures are checked with its key as always.

use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::rustls;

/// Why [`client_tls`] has no roots to trust.
#[derive(Debug)]
pub(crate) enum RootsError {
    /// `ca_file` cannot be read or holds no certificate.
    CaFile(String),
    /// The system has no root certificates.
    NoRoots(String),
}

impl From<RootsError> for String {
    fn from(e: RootsError) -> String {
        match e {
            RootsError::CaFile(why) => format!(
                "ca_file: {why}\n  hint: give a PEM file with the certificate(s) of the CA that signed the server's certificate"
            ),
            RootsError::NoRoots(why) => format!(
                "no trusted root certificates on this system: {why}\n  hint: install the system's CA bundle (Debian: apt-get install ca-certificates) or set ca_file"
            ),
        }
    }
}

/// A TLS client (ring, TLS 1.2 and 1.3, no client certificate) trusting `ca_file` if set,
/// else the system's roots when `https`, else nothing (plain http needs none). Shared by the
/// `url` upstreams and the alert webhook.
pub(crate) fn client_tls(
    ca_file: Option<&std::path::Path>,
    https: bool,
) -> Result<rustls::ClientConfig, RootsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let with_roots = match ca_file {
        Some(path) => {
            let bad = RootsError::CaFile;
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            let mut pinned = Vec::new();
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
                roots
                    .add(cert.clone())
                    .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
                pinned.push(cert);
            }
            if roots.is_empty() {
                return Err(bad("holds no CERTIFICATE block".into()));
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(format!("no usable certificate: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedOrChain { webpki, pinned }))
        }
        None if https => builder
            .with_native_roots()
            .map_err(|e| RootsError::NoRoots(e.to_string()))?,
        None => builder.with_root_certificates(rustls::RootCertStore::empty()),
    };
    Ok(with_roots.with_no_client_auth())
}

/// What to do about a certificate the TLS client refused, read from rustls' error text: its
/// certificate errors are debug-formatted names such as `CaUsedAsEndEntity` (RFC 5280 terms a
/// user does not act on as they are), or, for a host name and a validity period, sentences
/// (`certificate not valid for name …`, `certificate expired: …`, `certificate not valid
/// yet: …`).
pub(super) fn certificate_hint(text: &str) -> Option<&'static str> {
    if !text.contains("certificate") {
        return None;
    }
    let hints = [
        (
            &["CaUsedAsEndEntity"][..],
            "the server presents a CA certificate (basicConstraints CA:TRUE, which `openssl req -x509` sets by default) as its own, and ca_file does not hold that very certificate: put the server's certificate itself in ca_file (it is then trusted as it is; its host names and validity are still checked), or issue the server a certificate with CA:FALSE signed by a CA in ca_file",
        ),
        (
            &["UnknownIssuer"][..],
            "the server's certificate is not signed by a CA this proxy trusts: give that CA's certificate (PEM) in the upstream's ca_file",
        ),
        (
            &["BadSignature"][..],
            "the server's certificate is not signed by a CA this proxy trusts (a self-signed certificate, or the wrong CA in ca_file): give the CA that signed it in the upstream's ca_file",
        ),
        (
            &["NotValidForName", "not valid for name"][..],
            "the server's certificate does not name the host in the upstream's url: use a host name it lists (subjectAltName), or reissue it",
        ),
        (
            &["Expired", "certificate expired"][..],
            "the server's certificate has expired (or this machine's clock is wrong): renew it",
        ),
        (
            &["NotValidYet", "not valid yet"][..],
            "the server's certificate is not valid yet (or this machine's clock is wrong)",
        ),
    ];
    hints
        .into_iter()
        .find(|(names, _)| names.iter().any(|name| text.contains(name)))
        .map(|(_, hint)| hint)
}

/// Verifies a server's certificate against `ca_file` (webpki: chain, validity, host name),
/// and accepts the one case webpki refuses that OpenSSL does not: the server presents, byte
/// for byte, a CA certificate of `ca_file` as its own (`CaUsedAsEndEntity`). webpki (0.103)
/// checks a certificate's validity period before its basic constraints, so that error means
/// the period was checked and met (a test holds an expired one to it); the host name is then
/// checked here. Not checked for such a pinned certificate: its extended key usage, which
/// webpki checks after the basic constraints (the operator put that very certificate in
/// `ca_file` for this server).
#[derive(Debug)]
struct PinnedOrChain {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `ca_file`, DER.
    pinned: Vec<CertificateDer<'static>>,
}

impl PinnedOrChain {
    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|p| p.as_ref() == cert.as_ref())
    }
}

/// Whether webpki refused a certificate only because it is a CA's (RFC 5280 §4.2.1.9).
fn ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if ca_used_as_end_entity(&e) && self.is_pinned(end_entity) => {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            answer => answer,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
