//! DTLS left out of the build (cargo feature `dtls` off): the API of
//! `dtls.rs` over a type with no values, so the driver's secured paths
//! compile to nothing and every attempt to secure a session says why.

use std::net::SocketAddr;
use std::time::Instant;

/// No DTLS session can exist in this build.
pub enum DtlsClient {}

/// Why a DTLS session could not even start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DTLS: {0}")]
pub struct DtlsError(pub String);

impl DtlsClient {
    pub fn connect(
        _now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        _server_name: Option<&str>,
        _identity: Vec<u8>,
        _key: Vec<u8>,
    ) -> Result<DtlsClient, DtlsError> {
        Err(DtlsError(crate::DTLS_NOT_BUILT.into()))
    }

    pub fn is_connected(&self) -> bool {
        match *self {}
    }

    pub fn was_established(&self) -> bool {
        match *self {}
    }

    pub fn failure(&self) -> Option<&str> {
        match *self {}
    }

    pub fn handle_datagram(&mut self, _now: Instant, _bytes: &[u8]) {
        match *self {}
    }

    pub fn send(&mut self, _now: Instant, _data: &[u8]) {
        match *self {}
    }

    pub fn handle_timeout(&mut self, _now: Instant) {
        match *self {}
    }

    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Vec<u8>> {
        match *self {}
    }

    pub fn poll_plaintext(&mut self) -> Option<Vec<u8>> {
        match *self {}
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match *self {}
    }
}
