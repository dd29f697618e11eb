//! UDP connection requests (TR-069 Annex G): for a CPE behind a NAT the
//! ACS cannot open TCP to, the ACS sends a small HTTP-formatted GET over
//! UDP, to UDPConnectionRequestAddress:
//!
//! `GET http://host:port?ts=T&id=I&un=U&cn=C&sig=S HTTP/1.1`
//!
//! with S = hex(HMAC-SHA1(ConnectionRequestPassword, T I U C)). The CPE
//! accepts it when the username matches and the signature is right,
//! ignores a message with the id of the last accepted one (the ACS sends
//! several copies: UDP may lose them), and refuses a timestamp not later
//! than the last accepted one (a replay). An accepted message starts a
//! session with "6 CONNECTION REQUEST". Nothing is ever sent back.
//! GenieACS builds its messages this way (ts in seconds, a random id and
//! cn, the lower-case hex signature).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dm_rt::clock;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::connreq::CredentialSource;

/// The largest message looked at; GenieACS's are about 200 bytes.
const MAX_MESSAGE: usize = 1024;

/// What was decided about one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// A copy of the last accepted message: ignored quietly.
    Duplicate,
    Reject(String),
}

/// The replay state: the last accepted timestamp and id.
#[derive(Debug, Default)]
pub struct Validator {
    last_ts: Option<u64>,
    last_id: Option<String>,
}

/// Keeps the last accepted timestamp across restarts, so that a message
/// captured before one cannot be replayed after it.
#[derive(Clone)]
pub struct ReplayStore {
    pub load: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
    pub save: Arc<dyn Fn(u64) + Send + Sync>,
}

/// A query value, `application/x-www-form-urlencoded` ('+' is a space,
/// then percent escapes); `None` when it is not UTF-8 once decoded.
fn decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn signature(password: &str, text: &str) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        password.as_bytes(),
    );
    dm_core::support::hex::encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

impl Validator {
    /// A validator that remembers `last_ts` from before.
    pub fn starting_after(last_ts: Option<u64>) -> Validator {
        Validator {
            last_ts,
            last_id: None,
        }
    }

    /// The last accepted timestamp.
    pub fn last_ts(&self) -> Option<u64> {
        self.last_ts
    }

    /// Judges one datagram against the current credentials.
    pub fn check(&mut self, message: &[u8], username: &str, password: &str) -> Verdict {
        let reject = |why: &str| Verdict::Reject(why.to_owned());
        if message.len() > MAX_MESSAGE {
            return reject("too large");
        }
        let Ok(text) = std::str::from_utf8(message) else {
            return reject("not text");
        };
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (Some("GET"), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return reject("not a GET request line");
        };
        if !version.starts_with("HTTP/1.") {
            return reject("not HTTP/1.x");
        }
        let Some((_, query)) = uri.split_once('?') else {
            return reject("no query");
        };
        let mut fields = std::collections::HashMap::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(value) = decode(value) else {
                return reject("not UTF-8 once decoded");
            };
            fields.insert(key, value);
        }
        let field = |k: &str| fields.get(k).map(String::as_str);
        let (Some(ts), Some(id), Some(un), Some(cn), Some(sig)) = (
            field("ts"),
            field("id"),
            field("un"),
            field("cn"),
            field("sig"),
        ) else {
            return reject("ts, id, un, cn and sig are required");
        };
        if username.is_empty() || un != username {
            return reject("unknown username");
        }
        let expected = signature(password, &format!("{ts}{id}{un}{cn}"));
        // Compared in constant time: the signature is a secret's image.
        if !ring_eq(sig.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            return reject("bad signature");
        }
        if self.last_id.as_deref() == Some(id) {
            return Verdict::Duplicate;
        }
        let Ok(ts) = ts.parse::<u64>() else {
            return reject("ts is not a number");
        };
        // A new id in the same second is a new request (GenieACS's ts is
        // in seconds); an older ts is a replay.
        if self.last_ts.is_some_and(|last| ts < last) {
            return reject("ts before the last accepted one (a replay)");
        }
        self.last_ts = Some(ts);
        self.last_id = Some(id.to_owned());
        Verdict::Accept
    }
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// STUN on the connection-request port (TR-069 Annex G, TR-111): the
/// settings are read before each Binding Request (ManagementServer.STUN*;
/// `None` when STUN is off), and every new public address is handed on.
#[derive(Clone)]
pub struct Stun {
    pub settings: Arc<dyn Fn() -> Option<StunSettings> + Send + Sync>,
    /// Notified when the settings change: a Binding Request goes out at
    /// once (STUN just turned on, another server). While STUN is off this
    /// is all that wakes the listener's STUN side: nothing polls.
    pub changed: Arc<tokio::sync::Notify>,
    /// The public address and whether a NAT stands between.
    pub learned: Arc<dyn Fn(SocketAddr, bool) + Send + Sync>,
}

/// What a Binding Request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunSettings {
    pub server: String,
    pub port: u16,
    /// USERNAME and the MESSAGE-INTEGRITY key, when a username is set.
    pub credentials: Option<(String, String)>,
    /// How often the binding is refreshed.
    pub keepalive: Duration,
}

/// How long a Binding Request waits for its answer before it is sent
/// again, whatever the keep-alive period.
const STUN_RETRY: Duration = Duration::from_secs(5);

/// Listens for UDP connection requests on `bind`; each accepted one (at
/// most one per `min_interval`) is sent on `requests`. With `stun`, the
/// same socket keeps the NAT binding open with Binding Requests.
pub async fn serve(
    bind: SocketAddr,
    credentials: CredentialSource,
    min_interval: Duration,
    requests: mpsc::Sender<()>,
    stun: Option<Stun>,
    replay: Option<ReplayStore>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = crate::dual::udp_socket(bind)?;
    let address = socket.local_addr()?;
    info!(%address, "UDP connection-request listener up");
    let task = tokio::spawn(async move {
        let mut validator = Validator::starting_after(replay.as_ref().and_then(|r| (r.load)()));
        let mut last: Option<Instant> = None;
        let mut buffer = vec![0u8; MAX_MESSAGE + 1];
        let random = ring::rand::SystemRandom::new();
        // STUN: the request waiting for its answer, the address learned,
        // and whether it changed since the last request said so.
        let mut pending: Option<[u8; 12]> = None;
        let mut mapped: Option<SocketAddr> = None;
        let mut changed = false;
        // When the next Binding Request is due; `None` while STUN is off.
        let mut next_binding = Some(clock::now());
        let stun_changed = stun.as_ref().map(|s| Arc::clone(&s.changed));
        loop {
            let stun_on = stun.is_some();
            tokio::select! {
                received = socket.recv_from(&mut buffer) => {
                    let Ok((n, from)) = received else {
                        continue;
                    };
                    let datagram = &buffer[..n];
                    if crate::stun::is_stun(datagram) {
                        let Some(txid) = pending else { continue };
                        match crate::stun::binding_response(datagram, txid) {
                            Ok(public) => {
                                pending = None;
                                if mapped != Some(public) {
                                    changed = mapped.is_some();
                                    mapped = Some(public);
                                    let behind_nat = public.port() != address.port()
                                        || (!address.ip().is_unspecified() && public.ip() != address.ip());
                                    info!(%public, behind_nat, "STUN binding");
                                    if let Some(stun) = &stun {
                                        (stun.learned)(public, behind_nat);
                                    }
                                }
                            }
                            Err(crate::stun::StunError::NotOurs) => {}
                            Err(e) => warn!(%from, "STUN answer unusable: {e:?}"),
                        }
                        continue;
                    }
                    let (username, password) = credentials();
                    match validator.check(datagram, &username, &password) {
                        Verdict::Accept => {
                            if let (Some(replay), Some(ts)) = (&replay, validator.last_ts()) {
                                (replay.save)(ts);
                            }
                            if last.is_some_and(|t| clock::since(t) < min_interval) {
                                debug!(%from, "UDP connection request within the rate limit: dropped");
                                continue;
                            }
                            last = Some(clock::now());
                            info!(%from, "UDP connection request accepted");
                            let _ = requests.try_send(());
                        }
                        Verdict::Duplicate => debug!(%from, "UDP connection request repeated"),
                        Verdict::Reject(why) => warn!(%from, "UDP connection request refused: {why}"),
                    }
                }
                () = async {
                    match &stun_changed {
                        Some(changed) => changed.notified().await,
                        None => std::future::pending().await,
                    }
                } => next_binding = Some(clock::now()),
                () = dm_rt::sleep_until(next_binding), if stun_on => {
                    let settings = stun.as_ref().and_then(|s| (s.settings)());
                    let Some(settings) = settings else {
                        // Off: until the settings change.
                        next_binding = None;
                        continue;
                    };
                    let server = tokio::net::lookup_host((settings.server.as_str(), settings.port))
                        .await
                        .ok()
                        // IPv4 first: the NAT binding worth keeping open
                        // is the IPv4 one (IPv6 needs none).
                        .and_then(|a| {
                            a.filter_map(|a| crate::dual::peer_for(address, a))
                                .min_by_key(|a| a.is_ipv6() && !is_v4_mapped(a))
                        });
                    let Some(server) = server else {
                        warn!(server = settings.server, "STUN server not found");
                        next_binding = Some(clock::now() + STUN_RETRY);
                        continue;
                    };
                    let mut txid = [0u8; 12];
                    if ring::rand::SecureRandom::fill(&random, &mut txid).is_err() {
                        continue;
                    }
                    let request = crate::stun::binding_request(
                        txid,
                        changed,
                        settings
                            .credentials
                            .as_ref()
                            .map(|(u, p)| (u.as_str(), p.as_str())),
                    );
                    if socket.send_to(&request, server).await.is_ok() {
                        changed = false;
                        pending = Some(txid);
                    }
                    // Unanswered: again soon; answered: at the keep-alive.
                    next_binding = Some(
                        clock::now()
                            + if mapped.is_none() {
                                STUN_RETRY.min(settings.keepalive)
                            } else {
                                settings.keepalive
                            },
                    );
                }
            }
        }
    });
    Ok((address, task))
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`).
fn is_v4_mapped(address: &std::net::SocketAddr) -> bool {
    match address {
        std::net::SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        std::net::SocketAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as GenieACS builds it.
    fn message(ts: u64, id: &str, un: &str, password: &str) -> Vec<u8> {
        let cn = "0a1b2c3d4e5f6789";
        let sig = signature(password, &format!("{ts}{id}{un}{cn}"));
        format!(
            "GET http://192.0.2.1:7548?ts={ts}&id={id}&un={un}&cn={cn}&sig={sig} HTTP/1.1\r\n\
             Host: 192.0.2.1:7548\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn signature_matches_a_known_hmac_sha1() {
        // RFC 2202 test case 2.
        assert_eq!(
            signature("Jefe", "what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn accepts_once_ignores_copies_and_refuses_replays_and_forgeries() {
        let mut v = Validator::default();
        assert_eq!(
            v.check(&message(1000, "7", "acs", "pw"), "acs", "pw"),
            Verdict::Accept
        );
        // The ACS's retransmission of the same message.
        assert_eq!(
            v.check(&message(1000, "7", "acs", "pw"), "acs", "pw"),
            Verdict::Duplicate
        );
        // A replay of an older request with a new id.
        assert!(matches!(
            v.check(&message(999, "8", "acs", "pw"), "acs", "pw"),
            Verdict::Reject(_)
        ));
        // Wrong password, wrong user, tampered query.
        assert!(matches!(
            v.check(&message(1001, "9", "acs", "nope"), "acs", "pw"),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            v.check(&message(1001, "9", "eve", "pw"), "acs", "pw"),
            Verdict::Reject(_)
        ));
        let tampered = String::from_utf8(message(1001, "9", "acs", "pw"))
            .unwrap()
            .replace("ts=1001", "ts=1002");
        assert!(matches!(
            v.check(tampered.as_bytes(), "acs", "pw"),
            Verdict::Reject(_)
        ));
        // Garbage is refused, never a panic.
        for junk in [
            &b""[..],
            b"\xff\xfe",
            b"GET",
            b"GET /?ts=1 HTTP/1.1",
            b"POST / HTTP/1.1",
        ] {
            assert!(
                matches!(v.check(junk, "acs", "pw"), Verdict::Reject(_)),
                "{junk:?}"
            );
        }
        assert_eq!(
            v.check(&message(1001, "9", "acs", "pw"), "acs", "pw"),
            Verdict::Accept
        );
    }
}
