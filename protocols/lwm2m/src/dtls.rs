//! DTLS 1.2 with a pre-shared key (LwM2M Core §7.1, mandatory suite
//! TLS_PSK_WITH_AES_128_CCM_8) under the CoAP layer: sans-IO.
//!
//! A thin wrapper over rtc-dtls (the sans-IO continuation of webrtc-dtls):
//! ciphertext datagrams and time in, plaintext and ciphertext out. The
//! handshake retransmits its flights on rtc-dtls's RFC 6347 timers; the
//! driver gives up after [`HANDSHAKE_TIMEOUT`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;

/// How long a handshake may take before the connection counts as failed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after our first Finished the handshake may stay unfinished
/// before the server counts as having refused our key. A server that
/// cannot decrypt our Finished (a wrong PSK) drops it without a word (RFC
/// 6347 §4.1.2.7; OpenSSL's s_server does), so without this the only sign
/// would be a time-out a minute later; three retransmissions of our last
/// flight (1 + 2 + 4 s, RFC 6347 §4.2.4) fit well within it.
pub const SILENT_AFTER_FINISHED: Duration = Duration::from_secs(15);

/// The DTLS record content type of ChangeCipherSpec (RFC 6347 §4.1), which
/// travels in the same flight as our Finished.
const CHANGE_CIPHER_SPEC: u8 = 20;

/// A DTLS client association with one server.
pub struct DtlsClient {
    endpoint: Endpoint,
    remote: SocketAddr,
    connected: bool,
    /// The handshake completed once (the session may have ended since).
    established: bool,
    started: Instant,
    /// When our first Finished went out (the flight with our
    /// ChangeCipherSpec): the server has all it needs to finish from then.
    finished_sent: Option<Instant>,
    /// Application data written before the handshake finished.
    queued: Vec<Vec<u8>>,
    plaintext: VecDeque<Vec<u8>>,
    failure: Option<String>,
}

/// Why a DTLS session could not even start (the library refused its
/// configuration or the connect).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DTLS: {0}")]
pub struct DtlsError(pub String);

impl DtlsClient {
    /// Starts the handshake with `remote` as `identity` with `key`.
    /// `server_name` is the server's host name, sent as SNI (RFC 6066
    /// §3); `None` for a server given by address. (rtc-dtls then fills
    /// the address in itself, which §3 forbids: its builder has no way to
    /// send no SNI.)
    pub fn connect(
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        server_name: Option<&str>,
        identity: Vec<u8>,
        key: Vec<u8>,
    ) -> Result<DtlsClient, DtlsError> {
        let provider =
            rtc_dtls::crypto_provider::default_provider().map_err(|e| DtlsError(e.to_string()))?;
        let mut builder = ConfigBuilder::default();
        if let Some(name) = server_name {
            builder = builder.with_server_name(name.to_owned());
        }
        let config = builder
            .with_crypto_provider(provider)
            .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
            .with_psk_identity_hint(Some(identity))
            .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8])
            // tinydtls-based servers differ on RFC 7627; offer it without
            // requiring it.
            .with_extended_master_secret(ExtendedMasterSecretType::Request)
            .build(true, Some(remote))
            .map_err(|e| DtlsError(e.to_string()))?;
        let mut endpoint = Endpoint::new(local, TransportProtocol::UDP, None);
        endpoint
            .connect(now, remote, Arc::new(config), None)
            .map_err(|e| DtlsError(e.to_string()))?;
        Ok(DtlsClient {
            endpoint,
            remote,
            connected: false,
            established: false,
            started: now,
            finished_sent: None,
            queued: Vec::new(),
            plaintext: VecDeque::new(),
            failure: None,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The handshake completed at some point: a failure now is the loss
    /// of a working session (the server restarted or closed it), not a
    /// server that cannot be reached.
    pub fn was_established(&self) -> bool {
        self.established
    }

    /// Why the association failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// A ciphertext datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        match self
            .endpoint
            .read(now, self.remote, None, BytesMut::from(bytes))
        {
            Ok(events) => {
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => {
                            self.connected = true;
                            self.established = true;
                            for data in std::mem::take(&mut self.queued) {
                                self.send(now, &data);
                            }
                        }
                        EndpointEvent::ApplicationData(data) => {
                            self.plaintext.push_back(data.to_vec())
                        }
                        EndpointEvent::PeerClosed => {
                            self.connected = false;
                            self.failure = Some("the server closed the DTLS session".into());
                        }
                        _ => {}
                    }
                }
            }
            // A bad record is dropped (RFC 6347 §4.1.2.7); a fatal alert
            // ends the association.
            Err(e) => {
                if !self.connected && matches!(e, rtc_shared::error::Error::ErrAlertFatalOrClose) {
                    // With PSK, what a server refuses in a handshake is
                    // almost always the identity or the key.
                    self.failure = Some(
                        "the server ended the DTLS handshake with a fatal alert: it likely \
                         does not accept our PSK identity or key"
                            .into(),
                    );
                } else if !self.connected {
                    self.failure = Some(e.to_string());
                } else if matches!(e, rtc_shared::error::Error::ErrAlertFatalOrClose) {
                    // The server ended the association (e.g. it restarted
                    // and refused our records): a new handshake is needed.
                    self.connected = false;
                    self.failure = Some("the server ended the DTLS session (alert)".into());
                }
            }
        }
    }

    /// Sends plaintext, after the handshake if it is still running.
    pub fn send(&mut self, now: Instant, data: &[u8]) {
        if !self.connected {
            self.queued.push(data.to_vec());
            return;
        }
        if let Err(e) = self.endpoint.write(now, self.remote, data) {
            self.failure = Some(e.to_string());
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // A failure already known (an alert) is not replaced.
        if self.failure.is_some() {
            return;
        }
        if !self.connected
            && let Some(sent) = self.finished_sent
            && now.saturating_duration_since(sent) >= SILENT_AFTER_FINISHED
        {
            self.failure = Some(format!(
                "the server did not finish the DTLS handshake within {} s of our Finished: \
                 it likely does not accept our PSK identity or key",
                SILENT_AFTER_FINISHED.as_secs()
            ));
            return;
        }
        if !self.connected && now.duration_since(self.started) >= HANDSHAKE_TIMEOUT {
            self.failure = Some(format!(
                "the DTLS handshake did not finish within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
            return;
        }
        if let Err(e) = self.endpoint.handle_timeout(self.remote, now) {
            self.failure = Some(e.to_string());
        }
    }

    /// The next ciphertext datagram to send, `now` being the time of
    /// sending. The handshake's transmissions are looked at for our
    /// ChangeCipherSpec ([`SILENT_AFTER_FINISHED`]).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let datagram = self.endpoint.poll_transmit().map(|m| m.message.to_vec())?;
        if !self.connected && self.finished_sent.is_none() && has_change_cipher_spec(&datagram) {
            self.finished_sent = Some(now);
        }
        Some(datagram)
    }

    pub fn poll_plaintext(&mut self) -> Option<Vec<u8>> {
        self.plaintext.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let handshake = (!self.connected).then(|| {
            let limit = self.started + HANDSHAKE_TIMEOUT;
            self.finished_sent
                .map_or(limit, |at| limit.min(at + SILENT_AFTER_FINISHED))
        });
        [self.endpoint.poll_timeout(&self.remote), handshake]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Whether a datagram carries a ChangeCipherSpec record: the records are
/// walked by their 13-byte headers (type, version, epoch, sequence number,
/// length; RFC 6347 §4.1).
fn has_change_cipher_spec(mut datagram: &[u8]) -> bool {
    while datagram.len() >= 13 {
        if datagram[0] == CHANGE_CIPHER_SPEC {
            return true;
        }
        let length = usize::from(u16::from_be_bytes([datagram[11], datagram[12]]));
        let Some(rest) = datagram.get(13 + length..) else {
            return false;
        };
        datagram = rest;
    }
    false
}
