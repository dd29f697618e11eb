//! HTTPS to the ACS (TR-069 §3.4.1): rustls with certificate validation
//! against a configurable CA bundle, and an optional client certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Where trust and identity come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM bundle of trusted CAs; the system bundle when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, when the ACS asks
    /// for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Debian's (and most distributions') system CA bundle.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why HTTPS to the ACS cannot be set up: the file and what is wrong with
/// it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", .file.display())]
pub struct TlsError {
    pub file: PathBuf,
    pub reason: String,
}

fn at(file: &Path) -> impl Fn(String) -> TlsError + '_ {
    move |reason| TlsError {
        file: file.to_path_buf(),
        reason,
    }
}

/// Builds the client configuration once; errors name the file.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let ca_file = settings
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
    let mut roots = RootCertStore::empty();
    for certificate in certificates(&ca_file)? {
        roots
            .add(certificate)
            .map_err(|e| at(&ca_file)(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(at(&ca_file)("no CA certificate".into()));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| at(&ca_file)(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &settings.client_certificate {
        Some((chain, key)) => {
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| at(key)(e.to_string()))?;
            builder
                .with_client_auth_cert(certificates(chain)?, key_der)
                .map_err(|e| at(chain)(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| at(path)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(path)(e.to_string()))
}
