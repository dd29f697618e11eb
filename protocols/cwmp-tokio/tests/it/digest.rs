//! Digest authentication through the session's own request path, against
//! an ACS on 127.0.0.1 that checks each answer itself (field interop
//! issue: the challenges GenieACS, FreeACS and easycwmp users met). After
//! the 401 the request goes again on the same TCP connection, which
//! GenieACS binds its session to.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_cwmp::soap::Body;
use dm_cwmp_tokio::http::{Credentials, HttpError, HttpSession};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::net::TcpListener;

const USER: &str = "cpe";
const PASSWORD: &str = "s3cret";
const REALM: &str = "acs";
const NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fields of a Digest Authorization header.
fn fields(header: &str) -> std::collections::HashMap<String, String> {
    let rest = header.strip_prefix("Digest ").unwrap_or(header);
    let mut out = std::collections::HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], &quoted[(end + 1).min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key.trim().to_owned(), value.to_owned());
        rest = after.trim_start_matches([',', ' ']);
    }
    out
}

/// What the ACS saw: (connection number, Authorization header).
type Seen = Arc<Mutex<Vec<(usize, Option<String>)>>>;

/// An ACS that challenges the first request with `challenge` and accepts
/// a later one only if `valid` says its Authorization is right.
async fn acs(challenge: &'static str, valid: fn(&str) -> bool) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            connection += 1;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let authorization = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        log.lock()
                            .unwrap()
                            .push((connection, authorization.clone()));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        match authorization {
                            None => {
                                *response.status_mut() = StatusCode::UNAUTHORIZED;
                                response
                                    .headers_mut()
                                    .insert("www-authenticate", challenge.parse().unwrap());
                            }
                            Some(a) if valid(&a) => *response.status_mut() = StatusCode::OK,
                            Some(_) => *response.status_mut() = StatusCode::FORBIDDEN,
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen)
}

async fn post(port: u16) -> Result<u16, HttpError> {
    post_refusing_basic(port, false).await
}

async fn post_refusing_basic(port: u16, refuse_basic: bool) -> Result<u16, HttpError> {
    let mut session = HttpSession::new(
        format!("http://127.0.0.1:{port}/acs").parse().unwrap(),
        Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        Duration::from_secs(10),
        None,
    );
    session.refuse_basic_over_http(refuse_basic);
    let body = Arc::new(Body::from("<x/>".to_owned()));
    let result = session.post(&body).await.map(|(status, _)| status);
    session.close().await;
    result
}

/// Both requests on one connection, the first without credentials.
fn one_connection(seen: &Seen) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].1.is_none());
    assert_eq!(
        seen[0].0, seen[1].0,
        "the same TCP connection after the 401"
    );
}

/// RFC 2069: no qop offered, so none in the answer, and the response is
/// MD5(HA1:nonce:HA2).
#[tokio::test(flavor = "current_thread")]
async fn a_challenge_without_qop_is_answered_rfc_2069_style() {
    let (port, seen) = acs(
        r#"Digest realm="acs", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        |header| {
            let f = fields(header);
            let ha1 = md5_hex(&format!("{USER}:{REALM}:{PASSWORD}"));
            let ha2 = md5_hex("POST:/acs");
            !f.contains_key("qop")
                && !f.contains_key("cnonce")
                && f["response"] == md5_hex(&format!("{ha1}:{NONCE}:{ha2}"))
        },
    )
    .await;
    assert_eq!(post(port).await.unwrap(), 200);
    one_connection(&seen);
}

/// qop="auth,auth-int": auth is chosen (no body is hashed).
#[tokio::test(flavor = "current_thread")]
async fn auth_is_chosen_when_auth_int_is_offered_too() {
    let (port, seen) = acs(
        r#"Digest realm="acs", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc""#,
        |header| {
            let f = fields(header);
            let ha1 = md5_hex(&format!("{USER}:{REALM}:{PASSWORD}"));
            let ha2 = md5_hex("POST:/acs");
            let expected = md5_hex(&format!(
                "{ha1}:{NONCE}:{}:{}:auth:{ha2}",
                f["nc"], f["cnonce"]
            ));
            f["qop"] == "auth" && f["opaque"] == "5ccc" && f["response"] == expected
        },
    )
    .await;
    assert_eq!(post(port).await.unwrap(), 200);
    one_connection(&seen);
}

/// algorithm=SHA-256 (RFC 7616).
#[tokio::test(flavor = "current_thread")]
async fn sha_256_is_answered_with_sha_256() {
    let (port, seen) = acs(
        r#"Digest realm="acs", qop="auth", algorithm=SHA-256, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        |header| {
            let f = fields(header);
            let ha1 = sha256_hex(&format!("{USER}:{REALM}:{PASSWORD}"));
            let ha2 = sha256_hex("POST:/acs");
            let expected = sha256_hex(&format!(
                "{ha1}:{NONCE}:{}:{}:auth:{ha2}",
                f["nc"], f["cnonce"]
            ));
            f.get("algorithm").map(String::as_str) == Some("SHA-256") && f["response"] == expected
        },
    )
    .await;
    assert_eq!(post(port).await.unwrap(), 200);
    one_connection(&seen);
}

/// An algorithm nobody implements: a clear error naming it, and no guess
/// sent to the ACS.
#[tokio::test(flavor = "current_thread")]
async fn an_unknown_algorithm_is_an_error_that_names_it() {
    let (port, seen) = acs(
        r#"Digest realm="acs", qop="auth", algorithm=XYZ-999, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#,
        |_| true,
    )
    .await;
    let error = post(port).await.unwrap_err();
    assert!(matches!(error, HttpError::Unauthorized(_)), "{error:?}");
    assert!(error.to_string().contains("XYZ-999"), "{error}");
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing sent after the 401");
}

/// Hostile input: a Basic challenge on an http:// ACS was answered with
/// the ACS password in base64, readable on the way. A session refuses it
/// (a clear error, nothing sent after the 401) unless the configuration
/// allows it.
#[tokio::test(flavor = "current_thread")]
async fn basic_over_plain_http_is_refused_unless_allowed() {
    let (port, seen) = acs(r#"Basic realm="acs""#, |_| true).await;
    let error = post_refusing_basic(port, true).await.unwrap_err();
    assert!(matches!(error, HttpError::Unauthorized(_)), "{error:?}");
    assert!(
        error.to_string().contains("allow_basic_over_http"),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "no password sent");
    let (port, seen) = acs(r#"Basic realm="acs""#, |header| {
        header == http_auth::basic::encode_credentials(USER, PASSWORD)
    })
    .await;
    assert_eq!(post_refusing_basic(port, false).await.unwrap(), 200);
    one_connection(&seen);
}
