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
use tokio::net::TcpListener;
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
const MAX_NONCES: usize = 64;

struct State {
    config: ConnectionRequestConfig,
    /// Issued nonces: when, and the opaque that went with them.
    nonces: HashMap<String, (Instant, String)>,
    /// Token bucket: tokens left and when they were last counted.
    tokens: (u32, Instant),
}

/// Binds the server and returns its address; accepted requests are sent
/// on `requests`.
pub async fn serve(
    config: ConnectionRequestConfig,
    requests: mpsc::Sender<()>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(config.bind).await?;
    let address = listener.local_addr()?;
    info!(%address, path = %config.path, "connection-request server listening");
    let state = Arc::new(Mutex::new(State {
        config,
        nonces: HashMap::new(),
        tokens: (BURST, Instant::now()),
    }));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = handle(&state, &requests, &request, peer);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
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
        .is_some_and(|header| verify(&mut state, header, request.method().as_str(), now));
    if !authorized {
        debug!(%peer, "connection request challenged");
        return challenge(&mut state, now);
    }
    let (tokens, since) = state.tokens;
    let refill = match state.config.min_interval.as_millis() {
        0 => BURST,
        interval => {
            (now.duration_since(since).as_millis() / interval).min(u128::from(BURST)) as u32
        }
    };
    let tokens = (tokens + refill).min(BURST);
    let since = if refill > 0 { now } else { since };
    if tokens == 0 {
        state.tokens = (0, since);
        warn!(%peer, "connection request refused: rate limit");
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    }
    state.tokens = (tokens - 1, since);
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
fn verify(state: &mut State, header: &str, method: &str, now: Instant) -> bool {
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
    {
        return false;
    }
    let ha1 = md5_hex(&format!("{username}:{REALM}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match (get("qop"), get("nc"), get("cnonce")) {
        (Some("auth"), Some(nc), Some(cnonce)) => {
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        (None, _, _) => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
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
}
