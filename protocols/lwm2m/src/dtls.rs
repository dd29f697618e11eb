//! DTLS 1.2 under the CoAP layer, sans-IO: with a pre-shared key (LwM2M
//! Core §7.1, Security Mode 0, mandatory suite TLS_PSK_WITH_AES_128_CCM_8)
//! or with X.509 certificates (Mode 2: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
//! the mandatory one, and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, on
//! ECDSA P-256 keys).
//!
//! A thin wrapper over rtc-dtls (the sans-IO continuation of webrtc-dtls):
//! ciphertext datagrams and time in, plaintext and ciphertext out. The
//! handshake's flights are sent again on RFC 6347 §4.2.4.1's timer (1 s,
//! doubled at each retransmission, at most 60 s; [`DtlsClient::poll_timeout`]
//! paces rtc-dtls, whose own timer does not double); the handshake gives up
//! after [`HANDSHAKE_TIMEOUT`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType, VerifyPeerCertificateFn};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use rustls_pki_types::CertificateDer;

use crate::security::{CertificateUsage, Certificates, Credentials, split_der};

/// How long a handshake may take before the connection counts as failed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after our first Finished the handshake may stay unfinished
/// before the server counts as having refused our key (or certificate).
/// A server that cannot decrypt our Finished (a wrong PSK) drops it
/// without a word (RFC 6347 §4.1.2.7; OpenSSL's s_server and
/// Californium's Scandium do), so without this the only sign would be a
/// time-out a minute later; three retransmissions of our last flight
/// (after 1, 3 and 7 s) fit within it.
pub const SILENT_AFTER_FINISHED: Duration = Duration::from_secs(15);

/// RFC 6347 §4.2.4.1: a flight is sent again after 1 s without an
/// answer, then after twice the wait each time, up to 60 s. (rtc-dtls
/// 0.21 on its own sends it every second and gives up after seven, about
/// 8 s: too soon for a cellular link's first round trip after it wakes.)
const FIRST_RETRANSMISSION: Duration = Duration::from_secs(1);
const LONGEST_RETRANSMISSION: Duration = Duration::from_secs(60);

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
    /// What the server would refuse of ours, for the errors that guess.
    ours: &'static str,
    /// During the handshake: when our last flight is sent again if the
    /// server has not answered, and how many times it has been.
    retransmit_at: Instant,
    retransmissions: u32,
    /// Our last flight as it went out, and what of it is to go out
    /// again (see [`DtlsClient::handle_datagram`]).
    last_flight: Vec<Vec<u8>>,
    resend: VecDeque<Vec<u8>>,
}

/// Why a DTLS session could not even start (the library refused its
/// configuration or the connect).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DTLS: {0}")]
pub struct DtlsError(pub String);

impl DtlsClient {
    /// Starts the handshake with `remote` with `credentials`.
    /// `server_name` is the server's host name, sent as SNI (RFC 6066
    /// §3) and matched against its certificate; `None` for a server
    /// given by address. (rtc-dtls then fills the address in itself,
    /// which §3 forbids for SNI: its builder has no way to send no SNI;
    /// a certificate is then matched by its IP address SAN.)
    pub fn connect(
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        server_name: Option<&str>,
        credentials: &Credentials,
    ) -> Result<DtlsClient, DtlsError> {
        let provider =
            rtc_dtls::crypto_provider::default_provider().map_err(|e| DtlsError(e.to_string()))?;
        // RFC 6066 §3: the name goes without a trailing dot.
        let server_name = server_name.map(|name| name.strip_suffix('.').unwrap_or(name));
        let mut builder = ConfigBuilder::default();
        if let Some(name) = server_name {
            builder = builder.with_server_name(name.to_owned());
        }
        let ours = match credentials {
            Credentials::Psk { identity, key } => {
                let key = key.clone();
                builder = builder
                    .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
                    .with_psk_identity_hint(Some(identity.clone()))
                    .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8]);
                "PSK identity or key"
            }
            Credentials::Certificate(certificates) => {
                // The name the path is checked for: the one rtc-dtls uses.
                let name = server_name.map_or_else(|| remote.ip().to_string(), str::to_owned);
                builder = with_certificates(builder, certificates, &name, provider.crypto())?;
                "certificate"
            }
        };
        let config = builder
            .with_crypto_provider(provider)
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
            ours,
            retransmit_at: now + FIRST_RETRANSMISSION,
            retransmissions: 0,
            last_flight: Vec::new(),
            resend: VecDeque::new(),
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
    ///
    /// rtc-dtls 0.21 stops its retransmission timer whenever handshake
    /// records come, and starts it again only when they complete the
    /// flight it waits for. A server that lost our last flight repeats its
    /// own, which the library takes and drops, and is left with nothing to
    /// send again: the handshake would hang until a time-out blamed our
    /// key. So after our Finished, the datagram that stops the library's
    /// timer (the handshake unfinished) has our last flight sent again as
    /// it went, at once, as RFC 6347 §4.2.4 has a client answer a repeated
    /// flight; and our own timer sends it after that (before our Finished
    /// too, when a server's flight came in part). Its records keep their
    /// numbers: a server that has them drops the copies as replays, one
    /// that lost them takes them.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        let pending = self.endpoint.poll_timeout(&self.remote);
        match self
            .endpoint
            .read(now, self.remote, None, BytesMut::from(bytes))
        {
            Ok(events) => {
                let library_timer = self.endpoint.poll_timeout(&self.remote);
                let finished = events
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
                if !self.connected && !finished {
                    match library_timer {
                        // A new flight of ours: its timer starts afresh
                        // (RFC 6347 §4.2.4.1; a replay or a stray record
                        // changes nothing).
                        Some(next) if Some(next) != pending => {
                            self.last_flight.clear();
                            self.retransmissions = 0;
                            self.retransmit_at = now + FIRST_RETRANSMISSION;
                        }
                        // The datagram that stopped the library's timer is
                        // answered; later ones wait for our timer (RFC
                        // 6347 §4.2.4: the timer starts again).
                        None if self.finished_sent.is_some() && pending.is_some() => {
                            self.resend.extend(self.last_flight.iter().cloned());
                            self.retransmit_at = now + self.retransmission_wait();
                        }
                        _ => {}
                    }
                }
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => {
                            self.connected = true;
                            self.last_flight = Vec::new();
                            self.resend.clear();
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
                    // What a server refuses in a handshake is almost
                    // always the identity, the key or the certificate.
                    self.failure = Some(format!(
                        "the server ended the DTLS handshake with a fatal alert: it likely \
                         does not accept our {}",
                        self.ours
                    ));
                } else if !self.connected {
                    // Ours refusing the server (its certificate) lands
                    // here, with the verifier's reason.
                    self.failure = Some(format!("handshake failed: {e}"));
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
                 it likely does not accept our {}",
                SILENT_AFTER_FINISHED.as_secs(),
                self.ours
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
        if !self.connected {
            if now < self.retransmit_at {
                return;
            }
            self.retransmissions += 1;
            self.retransmit_at = now + self.retransmission_wait();
            match self.endpoint.poll_timeout(&self.remote) {
                // The library sends the flight again now, with new
                // numbers (its deadline is never after ours).
                Some(due) if due <= now => self.last_flight.clear(),
                Some(_) => {}
                // It stopped its timer ([`DtlsClient::handle_datagram`];
                // also before our Finished, when a server's flight came
                // in part): ours goes again as it went.
                None => {
                    self.resend.extend(self.last_flight.iter().cloned());
                    return;
                }
            }
        }
        if let Err(e) = self.endpoint.handle_timeout(self.remote, now) {
            // During the handshake the library fails only when its seven
            // retransmissions ran out, with an error that names its state
            // machine ("invalid state machine transition"); paced as
            // above, that comes after the limits above, so this is for a
            // library that behaves otherwise: what the server did not
            // answer is the news.
            self.failure = Some(match (self.connected, self.finished_sent) {
                (true, _) => e.to_string(),
                (false, Some(sent)) => format!(
                    "the server did not finish the DTLS handshake: our Finished went \
                     unanswered for {} s of retransmissions ({e}): it likely does not \
                     accept our {}",
                    now.saturating_duration_since(sent).as_secs(),
                    self.ours
                ),
                (false, None) => format!(
                    "the server stopped answering the DTLS handshake before our Finished: \
                     our retransmissions went unanswered for {} s ({e})",
                    now.saturating_duration_since(self.started).as_secs()
                ),
            });
        }
    }

    /// The wait before our last flight goes again (RFC 6347 §4.2.4.1).
    fn retransmission_wait(&self) -> Duration {
        dm_core::support::backoff::doubling(
            FIRST_RETRANSMISSION,
            self.retransmissions + 1,
            LONGEST_RETRANSMISSION,
        )
    }

    /// The next ciphertext datagram to send, `now` being the time of
    /// sending. The handshake's transmissions are looked at for our
    /// ChangeCipherSpec ([`SILENT_AFTER_FINISHED`]).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(again) = self.resend.pop_front() {
            return Some(again);
        }
        let datagram = self.endpoint.poll_transmit().map(|m| m.message.to_vec())?;
        if !self.connected {
            if self.finished_sent.is_none() && has_change_cipher_spec(&datagram) {
                self.finished_sent = Some(now);
            }
            self.last_flight.push(datagram.clone());
        }
        Some(datagram)
    }

    pub fn poll_plaintext(&mut self) -> Option<Vec<u8>> {
        self.plaintext.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.connected {
            return self.endpoint.poll_timeout(&self.remote);
        }
        // The handshake: our retransmission timer, not the library's
        // (which rtc-dtls also checks when it is called then).
        let limit = self.started + HANDSHAKE_TIMEOUT;
        let limit = self
            .finished_sent
            .map_or(limit, |at| limit.min(at + SILENT_AFTER_FINISHED));
        Some(limit.min(self.retransmit_at))
    }
}

/// Mode 2: our certificate and key, the suites for them, and the check of
/// the server's certificates as the Certificate Usage says (/0/x/15).
fn with_certificates(
    builder: ConfigBuilder,
    certificates: &Certificates,
    server_name: &str,
    crypto: &dyn rtc_dtls::crypto_provider::RTCCrypto,
) -> Result<ConfigBuilder, DtlsError> {
    let key = import_key(&certificates.private_key, crypto)?;
    let chain = split_der(&certificates.chain)
        .map_err(|e| DtlsError(format!("our certificate (/0/x/3): {e}")))?
        .into_iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
    if certificates.server.is_empty() {
        return Err(DtlsError(
            "no server certificate (/0/x/4) to check the server against".into(),
        ));
    }
    let server = certificates.server.clone();
    let anchors = |ders: &[&[u8]]| {
        let mut roots = rustls::RootCertStore::empty();
        for der in ders {
            roots
                .add(CertificateDer::from(der.to_vec()))
                .map_err(|e| DtlsError(format!("a trust anchor is not usable: {e}")))?;
        }
        Ok::<_, DtlsError>(roots)
    };
    let configured: Vec<&[u8]> = certificates
        .trust_anchors
        .iter()
        .map(Vec::as_slice)
        .collect();
    if certificates.usage.needs_trust_anchors() && configured.is_empty() {
        return Err(DtlsError(format!(
            "certificate usage {} validates the server's path, and no trust anchors are configured",
            certificates.usage.value()
        )));
    }
    // The end-entity certificate is `presented[0]`, then its issuers.
    let check: Option<VerifyPeerCertificateFn> = match certificates.usage {
        CertificateUsage::DomainIssuedCertificate
        | CertificateUsage::ServiceCertificateConstraint => {
            let usage = certificates.usage.value();
            Some(Arc::new(move |presented: &[Vec<u8>], _| {
                if presented.first() == Some(&server) {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::Other(format!(
                        "the server's certificate is not the one in its Server Public Key \
                         (/0/x/4, certificate usage {usage})"
                    )))
                }
            }))
        }
        // PKIX-TA (RFC 7671 §4.1): besides the validation to a configured
        // anchor (below), the presented path must also validate with
        // /0/x/4 as its anchor, so /0/x/4 is a CA that certifies this
        // server. (Only comparing certificates would let a server add
        // /0/x/4, which is public, to what it presents.)
        CertificateUsage::CaConstraint => {
            let constraint = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(anchors(&[certificates.server.as_slice()])?),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .map_err(|e| DtlsError(format!("the Server Public Key (/0/x/4) as a CA: {e}")))?;
            let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                .map_err(|e| DtlsError(format!("{server_name:?}: {e}")))?;
            Some(Arc::new(move |presented: &[Vec<u8>], _| {
                use rustls::client::danger::ServerCertVerifier as _;
                let presented: Vec<CertificateDer<'static>> = presented
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect();
                let Some((end_entity, intermediates)) = presented.split_first() else {
                    return Err(rtc_shared::error::Error::ErrServerMustHaveCertificate);
                };
                constraint
                    .verify_server_cert(
                        end_entity,
                        intermediates,
                        &name,
                        &[],
                        rustls_pki_types::UnixTime::now(),
                    )
                    .map(|_| ())
                    .map_err(|e| {
                        rtc_shared::error::Error::Other(format!(
                            "the server's path does not go through the CA in its Server Public \
                             Key (/0/x/4, certificate usage 0): {e}"
                        ))
                    })
            }))
        }
        CertificateUsage::TrustAnchorAssertion => None,
    };
    let builder = match certificates.usage {
        // RFC 7671 §5.1: the certificate itself is what is trusted.
        CertificateUsage::DomainIssuedCertificate => builder.with_insecure_skip_verify(true),
        CertificateUsage::TrustAnchorAssertion => {
            builder.with_roots_cas(anchors(&[certificates.server.as_slice()])?)
        }
        CertificateUsage::CaConstraint | CertificateUsage::ServiceCertificateConstraint => {
            builder.with_roots_cas(anchors(&configured)?)
        }
    };
    Ok(builder
        .with_verify_peer_certificate(check)
        .with_certificates(vec![Certificate::from_signing_key(chain, key)])
        .with_cipher_suites(vec![
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
        ]))
}

fn import_key(
    pkcs8: &[u8],
    crypto: &dyn rtc_dtls::crypto_provider::RTCCrypto,
) -> Result<Arc<dyn rtc_dtls::crypto_provider::SigningKey>, DtlsError> {
    crypto
        .import_signing_key(
            rtc_dtls::crypto_provider::SignatureScheme::EcdsaP256Sha256,
            pkcs8,
        )
        .map_err(|_| {
            DtlsError("our private key (/0/x/5) is not an ECDSA P-256 key in PKCS#8 DER".into())
        })
}

/// Checks Mode 2 material before it is used (at Bootstrap-Finish, and
/// when the configuration is read): every certificate parses, the key is
/// an ECDSA P-256 PKCS#8 key, it is the key of our certificate, and there
/// is one server certificate. (The trust anchors usages 0 and 1 need are
/// the agent's configuration, checked when a session starts.) Says what
/// is wrong, never what the key is.
pub fn check_certificates(certificates: &Certificates) -> Result<(), String> {
    // The certificates first, the key last: a bad key is then the only
    // problem left (and fuzzing reaches the X.509 parsing).
    let chain =
        split_der(&certificates.chain).map_err(|e| format!("our certificate (/0/x/3): {e}"))?;
    let ours = parse_certificate(chain[0]).map_err(|e| format!("our certificate (/0/x/3): {e}"))?;
    for der in &chain[1..] {
        parse_certificate(der).map_err(|e| format!("our certificate chain (/0/x/3): {e}"))?;
    }
    let provider = rtc_dtls::crypto_provider::default_provider().map_err(|e| e.to_string())?;
    let key = import_key(&certificates.private_key, provider.crypto()).map_err(|e| e.0)?;
    let public = key.public_key();
    if ours.public_key().subject_public_key.data.as_ref() != public.bytes {
        return Err("our private key (/0/x/5) is not the key of our certificate (/0/x/3)".into());
    }
    if certificates.server.is_empty() {
        return Err(
            "the Server Public Key (/0/x/4) is empty: no certificate to check the server against"
                .into(),
        );
    }
    let server = split_der(&certificates.server)
        .map_err(|e| format!("the Server Public Key (/0/x/4): {e}"))?;
    if server.len() != 1 {
        return Err("the Server Public Key (/0/x/4) holds more than one certificate".into());
    }
    parse_certificate(server[0]).map_err(|e| format!("the Server Public Key (/0/x/4): {e}"))?;
    for anchor in &certificates.trust_anchors {
        parse_certificate(anchor).map_err(|e| format!("a trust anchor: {e}"))?;
    }
    Ok(())
}

/// The certificates of a PEM text, DER, one after another (the form of
/// /0/x/3 and /0/x/4).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut der = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|e| format!("not PEM: {e}"))?;
        der.extend_from_slice(&certificate);
    }
    if der.is_empty() {
        return Err("holds no CERTIFICATE block".into());
    }
    Ok(der)
}

/// The PKCS#8 DER of a PEM private key (the form of /0/x/5). A SEC1 (`EC
/// PRIVATE KEY`) key is refused with how to convert it.
pub fn private_key_from_pem(pem: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject as _;
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(PrivateKeyDer::Pkcs8(key)) => Ok(key.secret_pkcs8_der().to_vec()),
        Ok(_) => Err("is not a PKCS#8 key (BEGIN PRIVATE KEY); convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
            .into()),
        Err(e) => Err(format!("holds no private key: {e}")),
    }
}

fn parse_certificate(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("not an X.509 certificate ({e})")),
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
