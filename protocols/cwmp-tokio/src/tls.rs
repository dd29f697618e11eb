//! HTTPS to the ACS (TR-069 §3.4.1): rustls with certificate validation
//! against a configurable CA bundle, and an optional client certificate.
//!
//! Without the `https` feature the same API stands over a configuration
//! type with no values: [`client_config`] says the build has no TLS, and
//! the code that would use a configuration compiles to nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;

#[cfg(feature = "https")]
use rustls_pki_types::pem::PemObject as _;
#[cfg(feature = "https")]
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
#[cfg(feature = "https")]
pub use tokio_rustls::rustls::ClientConfig;
#[cfg(feature = "https")]
use tokio_rustls::rustls::RootCertStore;

/// A build without TLS (cargo feature `https` off) has no client
/// configuration.
#[cfg(not(feature = "https"))]
pub enum ClientConfig {}

/// What `https://`, `wss://` and `mqtts://` get in a build without TLS.
pub const NOT_BUILT: &str = "this dmagent was built without TLS (cargo feature `https`)";

/// Where trust and identity come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM bundle of trusted CAs; the system bundle when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, when the ACS asks
    /// for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Where an HTTPS transfer's client configuration comes from.
#[derive(Clone, Default)]
pub enum Trust {
    /// None: an https:// URI is refused ("HTTPS is not configured").
    #[default]
    None,
    /// A configuration the caller built and holds.
    Built(Arc<ClientConfig>),
    /// Built from these settings when a connection needs it, and shared
    /// while any transfer holds it ([`client_config`]). Users that
    /// connect now and then (firmware and package pulls, bulk data) take
    /// this: a root store held while idle is about 100 KB of heap (the
    /// footprint issue). A bad file is reported then, naming the file.
    OnDemand(TlsSettings),
}

impl Trust {
    /// The configuration, built now if no transfer holds one; an error
    /// says why https:// cannot be used.
    pub fn config(&self) -> Result<Arc<ClientConfig>, String> {
        match self {
            Trust::None => Err("HTTPS is not configured".into()),
            Trust::Built(config) => Ok(Arc::clone(config)),
            Trust::OnDemand(settings) => client_config(settings).map_err(|e| e.to_string()),
        }
    }
}

impl From<Option<Arc<ClientConfig>>> for Trust {
    fn from(config: Option<Arc<ClientConfig>>) -> Trust {
        config.map_or(Trust::None, Trust::Built)
    }
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::None => f.write_str("None"),
            Trust::Built(_) => f.write_str("Built"),
            Trust::OnDemand(settings) => f.debug_tuple("OnDemand").field(settings).finish(),
        }
    }
}

/// Debian's (and most distributions') system CA bundle.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why HTTPS to the ACS cannot be set up: the file and what is wrong with
/// it.
#[derive(Debug, thiserror::Error)]
#[error("{}{reason}", in_file(.file))]
pub struct TlsError {
    /// Empty when no file is at fault (a build without TLS).
    pub file: PathBuf,
    pub reason: String,
}

fn in_file(file: &Path) -> String {
    if file.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", file.display())
    }
}

#[cfg(feature = "https")]
fn at(file: &Path) -> impl Fn(String) -> TlsError + '_ {
    move |reason| TlsError {
        file: file.to_path_buf(),
        reason,
    }
}

/// Builds the client configuration once; errors name the file.
#[cfg(not(feature = "https"))]
pub fn client_config(_settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    Err(TlsError {
        file: PathBuf::new(),
        reason: NOT_BUILT.into(),
    })
}

/// A TLS client stream over `stream` to `host`, the server's certificate
/// checked against `host`.
#[cfg(feature = "https")]
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())
}

/// No configuration exists in a build without TLS: never called.
#[cfg(not(feature = "https"))]
pub async fn connect(
    config: Arc<ClientConfig>,
    _host: &str,
    _stream: TcpStream,
) -> Result<TcpStream, String> {
    match *config {}
}

/// What a configuration was built from: the settings, and each file's
/// modification time and length then.
#[cfg(feature = "https")]
type Source = (TlsSettings, Vec<Option<(std::time::SystemTime, u64)>>);

/// Configurations built and still held, by what they were built from.
#[cfg(feature = "https")]
static BUILT: std::sync::Mutex<Vec<(Source, std::sync::Weak<ClientConfig>)>> =
    std::sync::Mutex::new(Vec::new());

/// The client configuration for `settings`; errors name the file. Users
/// of the same settings (the CWMP session, transfers, bulk data, USP)
/// share one while any holds it and its files are unchanged: its root
/// store, a system bundle's some 150 CAs, is most of its memory.
#[cfg(feature = "https")]
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let ca_file = settings
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
    let files = std::iter::once(&ca_file)
        .chain(settings.client_certificate.iter().flat_map(|(c, k)| [c, k]))
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect();
    let source = (settings.clone(), files);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    built.retain(|(_, config)| config.strong_count() > 0);
    if let Some(config) = built
        .iter()
        .find(|(s, _)| *s == source)
        .and_then(|(_, config)| config.upgrade())
    {
        return Ok(config);
    }
    let config = build(settings)?;
    built.push((source, Arc::downgrade(&config)));
    Ok(config)
}

#[cfg(feature = "https")]
fn build(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
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

#[cfg(feature = "https")]
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| at(path)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(path)(e.to_string()))
}
