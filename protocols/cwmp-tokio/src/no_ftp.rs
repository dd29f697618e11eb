//! FTP left out of the build (cargo feature `ftp` off): the API of
//! `ftp.rs`, each transfer refused with the reason. Callers check the
//! scheme first (`cfg!(feature = "ftp")` in the agent) and answer with their
//! protocol's "unsupported protocol"; these are what is left if one does
//! not.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::Credentials;
use crate::http::{DownloadSink, HttpError};

/// What an `ftp://` URL gets in a build without FTP.
pub const NOT_BUILT: &str = "this dmagent was built without FTP (cargo feature `ftp`)";

pub type Sockets =
    std::sync::Arc<dyn Fn(SocketAddr) -> std::io::Result<tokio::net::TcpSocket> + Send + Sync>;

pub trait Meter: Send {
    fn data_opened(&mut self, asked: Instant, opened: Instant, local: Option<IpAddr>);
    fn command(&mut self, at: Instant);
    fn moved(&mut self, n: usize);
    fn finished(&mut self, at: Instant);
}

pub async fn download(
    _url: &str,
    _credentials: &Credentials,
    _idle: Duration,
    _sink: &mut dyn DownloadSink,
) -> Result<u64, HttpError> {
    Err(HttpError::Connect(NOT_BUILT.into()))
}

pub async fn upload(
    _url: &str,
    _credentials: &Credentials,
    _idle: Duration,
    _body: &[u8],
) -> Result<(), HttpError> {
    Err(HttpError::Connect(NOT_BUILT.into()))
}

pub async fn measure(
    _url: &str,
    _upload: Option<u64>,
    _idle: Duration,
    _sockets: Sockets,
    _meter: &mut dyn Meter,
) -> Result<(), HttpError> {
    Err(HttpError::Connect(NOT_BUILT.into()))
}
