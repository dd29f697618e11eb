//! The connection-request server (TR-069 Amendment 6 §3.2.2): an HTTP GET
//! on the ConnectionRequestURL, authenticated with Digest (RFC 7616, MD5,
//! qop=auth), asks the CPE to start a session.
//!
//! Nonces expire and are single use; an opaque ties a response to its
//! challenge. Basic is refused unless configured. Requests beyond the
//! rate limit get 503, as the spec lets a CPE do.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Challenges (new nonces): a burst, then one a second. With
/// [`MAX_NONCES`] above what that rate can issue in a nonce's lifetime, a
/// flood of unauthenticated requests gets 503s but never evicts the nonce
/// a real ACS is about to answer.
const CHALLENGE_BURST: u32 = 16;
const CHALLENGE_INTERVAL: Duration = Duration::from_secs(1);
const MAX_NONCES: usize = 128;

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 8;
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
    /// Issued nonces: when, and the opaque that went with them.
    nonces: HashMap<String, (Instant, String)>,
    /// Accepted connection requests.
    accepted: Bucket,
    /// Challenges issued.
    challenges: Bucket,
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
        accepted: Bucket::full(BURST, Instant::now()),
        challenges: Bucket::full(CHALLENGE_BURST, Instant::now()),
    }));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            // Beyond MAX_CONNECTIONS the connection is closed at once: a
            // peer cannot tie up unbounded tasks and sockets.
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                debug!(%peer, "connection request refused: too many connections");
                continue;
            };
            let state = Arc::clone(&state);
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = handle(&state, &requests, &request, peer);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(slot);
            });
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
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    state
        .nonces
        .retain(|_, (issued, _)| now.duration_since(*issued) < NONCE_LIFETIME);
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
        if !state
            .challenges
            .take(CHALLENGE_BURST, CHALLENGE_INTERVAL, now)
        {
            warn!(%peer, "connection request refused: too many challenges");
            return reply(StatusCode::SERVICE_UNAVAILABLE);
        }
        debug!(%peer, "connection request challenged");
        return challenge(&mut state, now);
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

fn challenge(state: &mut State, now: Instant) -> Response<Full<Bytes>> {
    if state.nonces.len() >= MAX_NONCES {
        // Forget the oldest: a flood of challenges must not grow memory.
        if let Some(oldest) = state
            .nonces
            .iter()
            .min_by_key(|(_, (t, _))| *t)
            .map(|(n, _)| n.clone())
        {
            state.nonces.remove(&oldest);
        }
    }
    let nonce = random_hex(16);
    let opaque = random_hex(8);
    state.nonces.insert(nonce.clone(), (now, opaque.clone()));
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
    if let Some(encoded) = header.strip_prefix("Basic ") {
        if !state.config.allow_basic {
            return false;
        }
        let (username, password) = (state.config.credentials)();
        if username.is_empty() {
            return false;
        }
        let expected = http_auth::basic::encode_credentials(&username, &password);
        return constant_time_eq(encoded.trim().as_bytes(), expected.as_bytes());
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
    let Some((issued, opaque)) = state.nonces.get(nonce).cloned() else {
        return false;
    };
    let (expected_user, password) = (state.config.credentials)();
    // An empty username means no credentials are configured: refuse all
    // rather than accept anyone.
    if expected_user.is_empty()
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
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random hex from the kernel's generator.
fn random_hex(bytes: usize) -> String {
    use std::io::Read as _;
    let mut buffer = vec![0u8; bytes];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .is_ok();
    if !filled {
        // Without /dev/urandom, fall back to time-derived bits: weaker, but
        // nonces stay single use and short lived.
        let seed = Instant::now().elapsed().as_nanos() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        for (i, b) in buffer.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32 * 7) & 0xff) as u8;
        }
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
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
            accepted: Bucket::full(BURST, Instant::now()),
            challenges: Bucket::full(CHALLENGE_BURST, Instant::now()),
        }
    }

    /// A Digest header for `uri`, with or without qop.
    fn digest(state: &mut State, uri: &str, qop: bool) -> String {
        let now = Instant::now();
        let nonce = random_hex(4);
        state.nonces.insert(nonce.clone(), (now, "op".into()));
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
        let now = Instant::now();
        let good = digest(&mut state, "/cr", true);
        assert!(verify(&mut state, &good, "GET", "/cr", now));
        assert!(!verify(&mut state, &good, "GET", "/cr", now), "single use");
        let elsewhere = digest(&mut state, "/other", true);
        assert!(!verify(&mut state, &elsewhere, "GET", "/cr", now));
        let downgraded = digest(&mut state, "/cr", false);
        assert!(!verify(&mut state, &downgraded, "GET", "/cr", now));
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::full(2, start);
        assert!(bucket.take(2, Duration::from_secs(1), start));
        assert!(bucket.take(2, Duration::from_secs(1), start));
        assert!(!bucket.take(2, Duration::from_secs(1), start));
        let later = start + Duration::from_millis(1500);
        assert!(bucket.take(2, Duration::from_secs(1), later));
        assert!(!bucket.take(2, Duration::from_secs(1), later));
    }
}
