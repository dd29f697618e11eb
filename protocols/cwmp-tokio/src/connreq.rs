//! The connection-request server (TR-069 Amendment 6 §3.2.2): an HTTP GET
//! on the ConnectionRequestURL, authenticated with Digest (RFC 7616, MD5,
//! qop=auth), asks the CPE to start a session.
//!
//! Nonces expire and are single use; an opaque ties a response to its
//! challenge. Basic is refused unless configured. Requests beyond the
//! rate limit get 503, as the spec lets a CPE do.
//!
//! Credentials are the values of ConnectionRequestUsername and
//! ConnectionRequestPassword (§3.2.2). When both are empty (a stock
//! GenieACS provisions none), a Digest computed over the empty pair is
//! accepted, as GenieACS sends it: connection requests are then
//! unprotected, which the driver reports, but every other check (nonce,
//! replay, rate limits) holds.
//!
//! A flood cannot lock the ACS out: challenges are rate-limited per source
//! address, each source holds a bounded share of the outstanding nonces
//! and of the connections, and when every connection slot is taken the
//! longest-open connection is dropped for the new one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use dm_core::lock;
use std::time::{Duration, Instant};

use dm_rt::clock;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Where the current credentials come from: the ACS may change them
/// (Device.ManagementServer.ConnectionRequestUsername/Password) at any time.
pub type CredentialSource = Arc<dyn Fn() -> (String, String) + Send + Sync>;

/// Connection-request settings.
#[derive(Clone)]
pub struct ConnectionRequestConfig {
    pub bind: SocketAddr,
    /// The URL path, e.g. `/cr/SN0001`.
    pub path: String,
    /// Username and password, read at every request.
    pub credentials: CredentialSource,
    /// Accept HTTP Basic too (off by default: it sends the password).
    pub allow_basic: bool,
    /// Rate limit: a burst of [`BURST`] requests, then one per this
    /// interval.
    pub min_interval: Duration,
}

/// How many connection requests are accepted back to back before the rate
/// limit applies. An ACS driving a sequence of API calls sends one per
/// call; requests accepted while a session is wanted are coalesced anyway.
pub const BURST: u32 = 8;

const REALM: &str = "dmagent";
const NONCE_LIFETIME: Duration = Duration::from_secs(60);

/// Challenges (new nonces) per source address: a burst, then one a
/// second. A flooding source gets 503s; an ACS at another address is
/// challenged as usual (one shared bucket let two unauthenticated GETs a
/// second lock a real ACS out).
const CHALLENGE_BURST: u32 = 16;
const CHALLENGE_INTERVAL: Duration = Duration::from_secs(1);
/// Outstanding nonces in all, and per source: a source that asks for
/// more loses its own oldest, never another's.
const MAX_NONCES: usize = 128;
const MAX_NONCES_PER_SOURCE: usize = 8;
/// Sources whose challenge buckets are remembered; the least recently
/// seen is forgotten beyond this.
const MAX_SOURCES: usize = 256;

/// Connections served at once, and per source address. A new connection
/// beyond them drops the connection open longest (its own source's when
/// that source is at its share): slow connections re-opened as they close
/// cannot keep an ACS out.
const MAX_CONNECTIONS: usize = 8;
const MAX_CONNECTIONS_PER_SOURCE: usize = 4;
/// Time a client has to send its request headers (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one connection may stay open in all.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A token bucket: `burst` at once, then one per `interval`.
struct Bucket {
    tokens: u32,
    since: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            since: now,
        }
    }

    fn take(&mut self, burst: u32, interval: Duration, now: Instant) -> bool {
        let refill = match interval.as_millis() {
            0 => burst,
            ms => (now.duration_since(self.since).as_millis() / ms).min(u128::from(burst)) as u32,
        };
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(burst);
            self.since = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

struct State {
    config: ConnectionRequestConfig,
    /// Issued nonces: when, the opaque that went with them, and to whom.
    nonces: HashMap<String, (Instant, String, IpAddr)>,
    /// Accepted connection requests.
    accepted: Bucket,
    /// Challenges issued, per source address.
    challenges: HashMap<IpAddr, Bucket>,
}

/// The connections being served: id, source, when opened, and how to
/// drop one.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: Vec<(u64, IpAddr, Instant, tokio::task::AbortHandle)>,
}

impl Connections {
    /// Makes room for a connection from `source`: drops the longest-open
    /// connection of that source when it holds its whole share, else the
    /// longest-open of all when every slot is taken.
    fn make_room(&mut self, source: IpAddr) {
        let own = self.open.iter().filter(|c| c.1 == source).count();
        let victim = if own >= MAX_CONNECTIONS_PER_SOURCE {
            self.open
                .iter()
                .enumerate()
                .filter(|(_, c)| c.1 == source)
                .min_by_key(|(_, c)| c.2)
        } else if self.open.len() >= MAX_CONNECTIONS {
            self.open.iter().enumerate().min_by_key(|(_, c)| c.2)
        } else {
            None
        };
        if let Some((i, _)) = victim {
            let (_, peer, _, handle) = self.open.remove(i);
            debug!(%peer, "connection request connection dropped for a newer one");
            handle.abort();
        }
    }
}

/// Binds the server and returns its address; accepted requests are sent
/// on `requests`.
pub async fn serve(
    config: ConnectionRequestConfig,
    requests: mpsc::Sender<()>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = crate::dual::tcp_listener(config.bind)?;
    let address = listener.local_addr()?;
    info!(%address, path = %config.path, "connection-request server listening");
    let state = Arc::new(Mutex::new(State {
        config,
        nonces: HashMap::new(),
        accepted: Bucket::full(BURST, clock::now()),
        challenges: HashMap::new(),
    }));
    let connections = Arc::new(Mutex::new(Connections::default()));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let source = canonical(peer.ip());
            // Never more than MAX_CONNECTIONS tasks and sockets: room is
            // made before the new one is served.
            let mut open = lock(&connections);
            open.make_room(source);
            let id = open.next_id;
            open.next_id += 1;
            let state = Arc::clone(&state);
            let requests = requests.clone();
            let registry = Arc::clone(&connections);
            let served = tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = handle(&state, &requests, &request, peer);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                lock(&registry).open.retain(|c| c.0 != id);
            });
            open.open
                .push((id, source, clock::now(), served.abort_handle()));
        }
    });
    Ok((address, task))
}

fn handle(
    state: &Mutex<State>,
    requests: &mpsc::Sender<()>,
    request: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let mut state = lock(state);
    let now = clock::now();
    state
        .nonces
        .retain(|_, (issued, _, _)| now.duration_since(*issued) < NONCE_LIFETIME);
    let source = canonical(peer.ip());
    if request.method() != Method::GET || request.uri().path() != state.config.path {
        return reply(StatusCode::NOT_FOUND);
    }
    let authorized = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|header| {
            let uri = request.uri().path_and_query().map_or("/", |p| p.as_str());
            verify(&mut state, header, request.method().as_str(), uri, now)
        });
    if !authorized {
        if !challenge_allowed(&mut state, source, now) {
            debug!(%peer, "connection request refused: too many challenges from it");
            return reply(StatusCode::SERVICE_UNAVAILABLE);
        }
        if request.headers().contains_key(AUTHORIZATION) {
            // Wrong credentials (or a stale nonce): said at info, so an
            // operator sees why an ACS cannot reach the device.
            info!(%peer, "connection request with credentials that do not match; challenged again");
        } else {
            debug!(%peer, "connection request challenged");
        }
        return challenge(&mut state, source, now);
    }
    let interval = state.config.min_interval;
    if !state.accepted.take(BURST, interval, now) {
        warn!(%peer, "connection request refused: rate limit");
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    }
    info!(%peer, "connection request accepted");
    // A full channel means a session is already wanted.
    let _ = requests.try_send(());
    reply(StatusCode::OK)
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// An IPv4 peer on the dual-stack socket arrives v4-mapped: one source
/// whichever way it is written.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Takes a token from `source`'s challenge bucket, remembering at most
/// [`MAX_SOURCES`] sources.
fn challenge_allowed(state: &mut State, source: IpAddr, now: Instant) -> bool {
    if !state.challenges.contains_key(&source)
        && state.challenges.len() >= MAX_SOURCES
        && let Some(stalest) = state
            .challenges
            .iter()
            .min_by_key(|(_, b)| b.since)
            .map(|(ip, _)| *ip)
    {
        state.challenges.remove(&stalest);
    }
    state
        .challenges
        .entry(source)
        .or_insert_with(|| Bucket::full(CHALLENGE_BURST, now))
        .take(CHALLENGE_BURST, CHALLENGE_INTERVAL, now)
}

fn challenge(state: &mut State, source: IpAddr, now: Instant) -> Response<Full<Bytes>> {
    // Memory stays bounded: a source past its share loses its own oldest
    // nonce; past the total, the source holding most loses its oldest. A
    // flood from one address never evicts the nonce an ACS elsewhere is
    // about to answer.
    // Among equals, the oldest nonce goes: an ACS answers its challenge
    // within milliseconds, so only a flood of MAX_NONCES challenges from
    // as many addresses in that time could take its nonce away.
    let own = state.nonces.values().filter(|n| n.2 == source).count();
    let evict_from: Option<Vec<IpAddr>> = if own >= MAX_NONCES_PER_SOURCE {
        Some(vec![source])
    } else if state.nonces.len() >= MAX_NONCES {
        let mut counts: HashMap<IpAddr, usize> = HashMap::new();
        for n in state.nonces.values() {
            *counts.entry(n.2).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        Some(
            counts
                .into_iter()
                .filter(|(_, c)| *c == most)
                .map(|(ip, _)| ip)
                .collect(),
        )
    } else {
        None
    };
    if let Some(from) = evict_from
        && let Some(oldest) = state
            .nonces
            .iter()
            .filter(|(_, n)| from.contains(&n.2))
            .min_by_key(|(_, n)| n.0)
            .map(|(nonce, _)| nonce.clone())
    {
        state.nonces.remove(&oldest);
    }
    let (Some(nonce), Some(opaque)) = (random_hex(16), random_hex(8)) else {
        warn!("connection request refused: no random nonce");
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    };
    state
        .nonces
        .insert(nonce.clone(), (now, opaque.clone(), source));
    let mut response = reply(StatusCode::UNAUTHORIZED);
    let value = format!(
        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\", opaque=\"{opaque}\""
    );
    if let Ok(value) = value.parse() {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// Checks an Authorization header; a good Digest response consumes its
/// nonce.
fn verify(state: &mut State, header: &str, method: &str, request_uri: &str, now: Instant) -> bool {
    let header = header.trim();
    if header.starts_with("Basic ") {
        if !state.config.allow_basic {
            return false;
        }
        let (username, password) = (state.config.credentials)();
        if username.is_empty() {
            return false;
        }
        // "Basic " and the base64 of user:password, as a whole.
        let expected = http_auth::basic::encode_credentials(&username, &password);
        return constant_time_eq(header.as_bytes(), expected.as_bytes());
    }
    let Some(params) = header.strip_prefix("Digest ") else {
        return false;
    };
    let params = parse_params(params);
    let get = |k: &str| params.get(k).map(String::as_str);
    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return false;
    };
    let Some((issued, opaque, _)) = state.nonces.get(nonce).cloned() else {
        return false;
    };
    let (expected_user, password) = (state.config.credentials)();
    // An empty username with a password set is a half-made configuration:
    // refused. Both empty is "no credentials" (§3.2.2: the credentials
    // are those two values), answered over the empty pair as a stock
    // GenieACS computes it.
    if (expected_user.is_empty() && !password.is_empty())
        || now.duration_since(issued) >= NONCE_LIFETIME
        || get("opaque") != Some(opaque.as_str())
        || username != expected_user
        || realm != REALM
        || get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        // RFC 7616 §3.4: the digest covers the uri field, which must be
        // the request's own, or a response could be replayed elsewhere.
        || uri != request_uri
    {
        return false;
    }
    let ha1 = md5_hex(&format!("{username}:{REALM}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match (get("qop"), get("nc"), get("cnonce")) {
        (Some("auth"), Some(nc), Some(cnonce)) => {
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        // qop="auth" was offered: a response without it (RFC 2069 style)
        // is a downgrade and refused.
        _ => return false,
    };
    if constant_time_eq(
        expected.as_bytes(),
        response.to_ascii_lowercase().as_bytes(),
    ) {
        state.nonces.remove(nonce);
        true
    } else {
        false
    }
}

/// [`verify`] on a fresh state with one nonce ("n0", opaque "op") issued
/// for `credentials`: what the fuzz target drives.
#[cfg(fuzzing)]
pub(crate) fn fuzz_verify(header: &str, uri: &str, credentials: (&str, &str)) -> bool {
    let (username, password) = (credentials.0.to_owned(), credentials.1.to_owned());
    let now = clock::now();
    let mut state = State {
        config: ConnectionRequestConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            path: "/cr".into(),
            credentials: Arc::new(move || (username.clone(), password.clone())),
            allow_basic: true,
            min_interval: Duration::ZERO,
        },
        nonces: HashMap::new(),
        accepted: Bucket::full(BURST, now),
        challenges: HashMap::new(),
    };
    state.nonces.insert(
        "n0".into(),
        (now, "op".into(), IpAddr::from([127, 0, 0, 1])),
    );
    verify(&mut state, header, "GET", uri, now)
}

/// `k=v, k="v"` pairs of an auth header.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn md5_hex(text: &str) -> String {
    dm_core::support::hex::encode(&Md5::digest(text.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random hex from the OS's generator; `None` if it failed (the request
/// is then refused: a guessable nonce is worse than none).
fn random_hex(bytes: usize) -> Option<String> {
    dm_rt::random::hex(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let p = parse_params(
            r#"username="acs", realm="dmagent", nonce="abc", uri="/cr", qop=auth, nc=00000001, cnonce="x\"y", response="f00""#,
        );
        assert_eq!(p["username"], "acs");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["cnonce"], "x\"y");
        assert_eq!(p["response"], "f00");
        assert!(parse_params("garbage").is_empty());
        let _ = parse_params("a=\"unterminated");
    }

    fn state() -> State {
        State {
            config: ConnectionRequestConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                path: "/cr".into(),
                credentials: Arc::new(|| ("acs".into(), "pw".into())),
                allow_basic: false,
                min_interval: Duration::ZERO,
            },
            nonces: HashMap::new(),
            accepted: Bucket::full(BURST, clock::now()),
            challenges: HashMap::new(),
        }
    }

    /// A Digest header for `uri`, with or without qop.
    fn digest(state: &mut State, uri: &str, qop: bool) -> String {
        let now = clock::now();
        let nonce = random_hex(4).unwrap();
        state.nonces.insert(
            nonce.clone(),
            (now, "op".into(), IpAddr::from([127, 0, 0, 1])),
        );
        let ha1 = md5_hex(&format!("acs:{REALM}:pw"));
        let ha2 = md5_hex(&format!("GET:{uri}"));
        if qop {
            let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c:auth:{ha2}"));
            format!(
                r#"Digest username="acs", realm="{REALM}", nonce="{nonce}", uri="{uri}", qop=auth, nc=00000001, cnonce="c", opaque="op", response="{response}""#
            )
        } else {
            let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                r#"Digest username="acs", realm="{REALM}", nonce="{nonce}", uri="{uri}", opaque="op", response="{response}""#
            )
        }
    }

    #[test]
    fn digest_must_name_the_request_uri_and_use_the_offered_qop() {
        let mut state = state();
        let now = clock::now();
        let good = digest(&mut state, "/cr", true);
        assert!(verify(&mut state, &good, "GET", "/cr", now));
        assert!(!verify(&mut state, &good, "GET", "/cr", now), "single use");
        let elsewhere = digest(&mut state, "/other", true);
        assert!(!verify(&mut state, &elsewhere, "GET", "/cr", now));
        let downgraded = digest(&mut state, "/cr", false);
        assert!(!verify(&mut state, &downgraded, "GET", "/cr", now));
    }

    /// A Digest over `username`/`password` on a fresh nonce.
    fn digest_as(state: &mut State, username: &str, password: &str) -> String {
        let nonce = random_hex(4).unwrap();
        state.nonces.insert(
            nonce.clone(),
            (clock::now(), "op".into(), IpAddr::from([127, 0, 0, 1])),
        );
        let ha1 = md5_hex(&format!("{username}:{REALM}:{password}"));
        let ha2 = md5_hex("GET:/cr");
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c:auth:{ha2}"));
        format!(
            r#"Digest username="{username}", realm="{REALM}", nonce="{nonce}", uri="/cr", qop=auth, nc=00000001, cnonce="c", opaque="op", response="{response}""#
        )
    }

    #[test]
    fn empty_credentials_take_the_empty_pair_and_nothing_else() {
        let mut state = state();
        state.config.credentials = Arc::new(|| (String::new(), String::new()));
        let now = clock::now();
        let empty = digest_as(&mut state, "", "");
        assert!(verify(&mut state, &empty, "GET", "/cr", now));
        assert!(!verify(&mut state, &empty, "GET", "/cr", now), "single use");
        let other = digest_as(&mut state, "acs", "pw");
        assert!(!verify(&mut state, &other, "GET", "/cr", now));
        // A password without a username is a half-made configuration.
        state.config.credentials = Arc::new(|| (String::new(), "pw".into()));
        let half = digest_as(&mut state, "", "pw");
        assert!(!verify(&mut state, &half, "GET", "/cr", now));
    }

    #[test]
    fn basic_is_the_whole_header_when_allowed() {
        let mut state = state();
        let now = clock::now();
        let basic = http_auth::basic::encode_credentials("acs", "pw");
        assert!(
            !verify(&mut state, &basic, "GET", "/cr", now),
            "off by default"
        );
        state.config.allow_basic = true;
        assert!(verify(&mut state, &basic, "GET", "/cr", now));
        let wrong = http_auth::basic::encode_credentials("acs", "guess");
        assert!(!verify(&mut state, &wrong, "GET", "/cr", now));
    }

    #[test]
    fn a_flooding_source_never_evicts_another_sources_nonce() {
        let mut state = state();
        let start = clock::now();
        let mut tick = 0u64;
        let mut now = || {
            tick += 1;
            start + Duration::from_millis(tick)
        };
        let flood = |state: &mut State, now: &mut dyn FnMut() -> Instant, from: u32, to: u32| {
            for i in from..to {
                let flooder = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
                let _ = challenge(state, flooder, now());
                let _ = challenge(state, IpAddr::from([10, 9, 9, 9]), now());
            }
        };
        flood(&mut state, &mut now, 0, 1000);
        let acs = IpAddr::from([127, 0, 0, 1]);
        let _ = challenge(&mut state, acs, now());
        let kept: Vec<String> = state
            .nonces
            .iter()
            .filter(|(_, n)| n.2 == acs)
            .map(|(nonce, _)| nonce.clone())
            .collect();
        // What many addresses can send while the ACS answers, and any
        // number from one address.
        flood(&mut state, &mut now, 1000, 1000 + MAX_NONCES as u32 / 2);
        for _ in 0..1000 {
            let _ = challenge(&mut state, IpAddr::from([10, 9, 9, 9]), now());
        }
        assert!(state.nonces.len() <= MAX_NONCES);
        assert!(state.nonces.contains_key(&kept[0]), "the ACS's nonce stays");
        let one = state
            .nonces
            .values()
            .filter(|n| n.2 == IpAddr::from([10, 9, 9, 9]))
            .count();
        assert!(one <= MAX_NONCES_PER_SOURCE, "{one}");
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let start = clock::now();
        let mut bucket = Bucket::full(2, start);
        assert!(bucket.take(2, Duration::from_secs(1), start));
        assert!(bucket.take(2, Duration::from_secs(1), start));
        assert!(!bucket.take(2, Duration::from_secs(1), start));
        let later = start + Duration::from_millis(1500);
        assert!(bucket.take(2, Duration::from_secs(1), later));
        assert!(!bucket.take(2, Duration::from_secs(1), later));
    }
}
