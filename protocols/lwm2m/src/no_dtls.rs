//! DTLS left out of the build (cargo feature `dtls` off): the API of
//! `dtls.rs` over a type with no values, so the driver's secured paths
//! compile to nothing and every attempt to secure a session says why.

use std::net::SocketAddr;
use std::time::Instant;

/// No DTLS session can exist in this build.
pub enum DtlsClient {}

/// Certificates cannot be used without DTLS.
pub fn check_certificates(_certificates: &crate::security::Certificates) -> Result<(), String> {
    Err(crate::DTLS_NOT_BUILT.into())
}

pub fn certificates_from_pem(_pem: &[u8]) -> Result<Vec<u8>, String> {
    Err(crate::DTLS_NOT_BUILT.into())
}

pub fn private_key_from_pem(_pem: &[u8]) -> Result<Vec<u8>, String> {
    Err(crate::DTLS_NOT_BUILT.into())
}

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
        _credentials: &crate::security::Credentials,
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
