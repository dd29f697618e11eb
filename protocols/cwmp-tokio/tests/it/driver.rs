//! The driver over real sockets on 127.0.0.1 against a scripted ACS: a
//! Digest challenge, session cookies, one connection per session, a GPV,
//! 204; and a Digest-authenticated connection request starting a session.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::Tree;
use dm_cwmp_tokio::{Config, ConnectionRequestServer, HostRequest, TlsSettings};
use dm_objects::{CwmpSettings, Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

fn tree(acs_url: &str) -> Tree {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                manufacturer: "Acme".into(),
                oui: "00D09E".into(),
                product_class: "Gateway".into(),
                serial_number: "SN1".into(),
                ..Identity::default()
            },
            cwmp: Some(CwmpSettings {
                acs_url: acs_url.into(),
                username: "cpe".into(),
                password: "cpe-secret".into(),
                periodic_inform: true,
                periodic_interval: 3600,
                connection_request_username: "acs".into(),
                connection_request_password: "cr-secret".into(),
                ..CwmpSettings::default()
            }),
            ..Provisioning::default()
        },
    )
    .unwrap();
    tree
}

/// One HTTP request as the scripted ACS saw it.
#[derive(Debug, Clone)]
struct Seen {
    connection: usize,
    authorization: Option<String>,
    cookie: Option<String>,
    /// The Content-Length and Transfer-Encoding headers.
    framing: (Option<String>, Option<String>),
    body: String,
}

/// A scripted ACS: answers each request with the next scripted reply,
/// after a Digest challenge on the very first one.
struct Acs {
    address: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn scripted_acs(script: Vec<(u16, String)>) -> Acs {
    scripted_acs_on("127.0.0.1", script).await
}

async fn scripted_acs_on(host: &str, script: Vec<(u16, String)>) -> Acs {
    let listener = TcpListener::bind((host, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let challenged = Arc::new(Mutex::new(false));
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            connection += 1;
            let (tx, script, challenged) =
                (tx.clone(), Arc::clone(&script), Arc::clone(&challenged));
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (tx, script, challenged) =
                        (tx.clone(), Arc::clone(&script), Arc::clone(&challenged));
                    async move {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let authorization = header("authorization");
                        let cookie = header("cookie");
                        let framing = (header("content-length"), header("transfer-encoding"));
                        let body = String::from_utf8_lossy(
                            &request.into_body().collect().await.unwrap().to_bytes(),
                        )
                        .into_owned();
                        tx.send(Seen {
                            connection,
                            authorization: authorization.clone(),
                            cookie,
                            framing,
                            body,
                        })
                        .unwrap();
                        let mut response = Response::new(Full::new(Bytes::new()));
                        let first = !std::mem::replace(&mut *challenged.lock().unwrap(), true);
                        if first {
                            *response.status_mut() = StatusCode::UNAUTHORIZED;
                            response.headers_mut().insert(
                                "www-authenticate",
                                "Digest realm=\"acs\", qop=\"auth,auth-int\", nonce=\"n0nce\", opaque=\"op\"".parse().unwrap(),
                            );
                            return Ok::<_, Infallible>(response);
                        }
                        // Every later request must carry a correct Digest.
                        let auth = authorization.unwrap_or_default();
                        let ha1 = md5_hex("cpe:acs:cpe-secret");
                        let ha2 = md5_hex("POST:/acs");
                        let field = |k: &str| {
                            auth.split(", ")
                                .find_map(|kv| {
                                    kv.trim_start_matches("Digest ")
                                        .strip_prefix(&format!("{k}="))
                                })
                                .map(|v| v.trim_matches('"').to_owned())
                                .unwrap_or_default()
                        };
                        let expected = md5_hex(&format!(
                            "{ha1}:n0nce:{}:{}:auth:{ha2}",
                            field("nc"),
                            field("cnonce")
                        ));
                        if field("response") != expected || field("qop") != "auth" {
                            *response.status_mut() = StatusCode::FORBIDDEN;
                            return Ok(response);
                        }
                        let (status, body) = script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or((204, String::new()));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        response
                            .headers_mut()
                            .insert("set-cookie", "session=abc123; Path=/".parse().unwrap());
                        *response.body_mut() = Full::new(Bytes::from(body));
                        Ok(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Acs { address, seen }
}

fn acs_message(body: &str) -> String {
    format!(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">x1</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the ACS hears from the CPE")
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_boot_session_with_digest_cookies_and_keep_alive() {
    let mut acs = scripted_acs(vec![
        (200, acs_message("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>")),
        (
            200,
            acs_message("<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.SerialNumber</string></ParameterNames></cwmp:GetParameterValues>"),
        ),
        (204, String::new()),
    ])
    .await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: None,
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));

    let challenged = next(&mut acs.seen).await;
    assert!(challenged.body.contains("<cwmp:Inform>"));
    assert!(challenged.authorization.is_none());
    let inform = next(&mut acs.seen).await;
    assert!(
        inform.body.contains("<cwmp:Inform>"),
        "the Inform is re-sent with credentials"
    );
    assert!(
        inform
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Digest ")
    );
    assert!(inform.body.contains("<EventCode>1 BOOT</EventCode>"));
    let empty = next(&mut acs.seen).await;
    assert_eq!(empty.body, "");
    assert_eq!(empty.cookie.as_deref(), Some("session=abc123"));
    let gpv = next(&mut acs.seen).await;
    assert!(gpv.body.contains("<cwmp:GetParameterValuesResponse>"));
    assert!(gpv.body.contains(">SN1</Value>"));
    assert!(gpv.body.contains(">x1</cwmp:ID>"));
    // One TCP connection for the whole session.
    assert!(
        [&inform, &empty, &gpv]
            .iter()
            .all(|s| s.connection == challenged.connection)
    );

    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// Field interop (GenieACS asks for the whole tree's names): a
/// GetParameterNames of over 10,000 parameters goes out written piece by
/// piece, with its exact Content-Length (no chunked coding), as one valid
/// response the ACS reads whole.
#[tokio::test(flavor = "current_thread")]
async fn a_whole_tree_get_parameter_names_is_sent_with_its_length() {
    let mut acs = scripted_acs(vec![
        (200, acs_message("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>")),
        (
            200,
            acs_message("<cwmp:GetParameterNames><ParameterPath></ParameterPath><NextLevel>false</NextLevel></cwmp:GetParameterNames>"),
        ),
        (204, String::new()),
    ])
    .await;
    let mut tree = tree(&format!("http://{}/acs", acs.address));
    tree.set_instance_limit(2000);
    let mut tx = tree.begin(dm_core::Origin::Cli);
    for _ in 0..1500 {
        tx.create(dm_core::catalog::wlan::ID, None);
    }
    tx.commit().unwrap();
    let tree = Arc::new(Mutex::new(tree));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: None,
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    let mut empty = None;
    let gpn = loop {
        let seen = next(&mut acs.seen).await;
        if seen.body.contains("GetParameterNamesResponse") {
            break seen;
        }
        if seen.body.is_empty() {
            empty = Some(seen);
        }
    };
    assert_eq!(
        gpn.framing,
        (Some(gpn.body.len().to_string()), None),
        "Content-Length, not chunked"
    );
    let names = gpn.body.matches("<ParameterInfoStruct>").count();
    assert!(names > 10_000, "{names} names");
    assert!(
        gpn.body
            .contains(&format!("cwmp:ParameterInfoStruct[{names}]"))
    );
    assert!(gpn.body.ends_with("</soap-env:Body></soap-env:Envelope>"));
    assert!(gpn.body.contains("<Name>Device.WiFi.SSID.1500.SSID</Name>"));
    // The empty POST before it said so with a length of 0.
    let empty = empty.expect("an empty POST after the Inform");
    assert_eq!(empty.framing, (Some("0".into()), None));
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_digest_connection_request_starts_a_session() {
    let mut acs = scripted_acs(vec![
        (
            200,
            acs_message(
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
            ),
        ),
        (204, String::new()),
        (
            200,
            acs_message(
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
            ),
        ),
        (204, String::new()),
    ])
    .await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let port = free_port();
    let bind = format!("127.0.0.1:{port}").parse().unwrap();
    let (driver, stop_tx) = driver_with_connection_requests(&tree, bind, "/cr/SN1");
    // The boot session.
    for _ in 0..3 {
        next(&mut acs.seen).await;
    }
    // The ConnectionRequestURL names the loopback address and port.
    let cr_url = published_cr_url(&tree);
    assert_eq!(cr_url, format!("http://127.0.0.1:{port}/cr/SN1"));

    // The ACS sends a connection request: challenged, then accepted.
    let mut client = CrClient::connect("127.0.0.1", port, "/cr/SN1").await;
    let challenge = client.get(None).await;
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    // Basic is refused.
    let basic = client
        .get(Some(http_auth::basic::encode_credentials(
            "acs",
            "cr-secret",
        )))
        .await;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    let authorization = client.answer(&challenge);
    let accepted = client.get(Some(authorization.clone())).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    // A replayed authorization is refused: nonces are single use.
    let replay = client.get(Some(authorization)).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);

    let inform = next(&mut acs.seen).await;
    assert!(
        inform
            .body
            .contains("<EventCode>6 CONNECTION REQUEST</EventCode>"),
        "{}",
        inform.body
    );

    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
    let _: Option<HostRequest> = None;
}

/// A TCP port free on both families a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The driver on `tree` with its connection-request server on `bind`,
/// serving `path`; stopped through the returned sender.
fn driver_with_connection_requests(
    tree: &Arc<Mutex<Tree>>,
    bind: SocketAddr,
    path: &str,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    watch::Sender<bool>,
) {
    let (driver, stop, _) = driver_with_status(tree, bind, path);
    (driver, stop)
}

/// The same, with the driver's status for `dmagent status`.
fn driver_with_status(
    tree: &Arc<Mutex<Tree>>,
    bind: SocketAddr,
    path: &str,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    watch::Sender<bool>,
    Arc<Mutex<dm_cwmp_tokio::Status>>,
) {
    let status = Arc::new(Mutex::new(dm_cwmp_tokio::Status::default()));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(tree),
        Config {
            connection_request: Some(ConnectionRequestServer {
                bind,
                path: path.into(),
                allow_basic: false,
                min_interval: Duration::ZERO,
            }),
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            status: Arc::clone(&status),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    (driver, stop_tx, status)
}

/// An ACS's side of connection requests: GETs of `path` on one kept-alive
/// connection to `host`, with an Authorization header or none.
struct CrClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
}

impl CrClient {
    async fn connect(host: &str, port: u16, path: &str) -> CrClient {
        let stream = tokio::net::TcpStream::connect((host, port)).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        CrClient {
            sender,
            authority,
            path: path.into(),
        }
    }

    async fn get(&mut self, authorization: Option<String>) -> Response<Incoming> {
        let mut builder = Request::get(self.path.as_str()).header("host", self.authority.as_str());
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        let request = builder.body(Full::new(Bytes::new())).unwrap();
        self.sender.send_request(request).await.unwrap()
    }

    /// The Digest answer to `challenge` (a 401's WWW-Authenticate) with
    /// the connection-request credentials the test tree holds.
    fn answer(&self, challenge: &Response<Incoming>) -> String {
        self.answer_as(challenge, "acs", "cr-secret")
    }

    fn answer_as(&self, challenge: &Response<Incoming>, username: &str, password: &str) -> String {
        let header = challenge.headers()["www-authenticate"].to_str().unwrap();
        http_auth::PasswordClient::builder()
            .challenges(header)
            .build()
            .unwrap()
            .respond(&http_auth::PasswordParams {
                username,
                password,
                uri: &self.path,
                method: "GET",
                body: None,
            })
            .unwrap()
    }
}

/// A string of Device.ManagementServer, as the driver published it.
fn management_server(tree: &Mutex<Tree>, resource: dm_core::ResourceId) -> String {
    let tree = tree.lock().unwrap();
    match tree
        .read(
            dm_core::Origin::Agent,
            &dm_core::Path::resource(
                dm_core::catalog::management_server::ID,
                dm_core::InstanceId(0),
                resource,
            ),
        )
        .unwrap()
    {
        dm_core::ResourceValue::Single(dm_core::Value::String(s)) => s,
        other => panic!("{other:?}"),
    }
}

/// The ConnectionRequestURL a driver published.
fn published_cr_url(tree: &Mutex<Tree>) -> String {
    management_server(
        tree,
        dm_core::catalog::management_server::CONNECTION_REQUEST_URL,
    )
}

/// Field case (issue 8, dual stack): with the connection-request server
/// on its default `::`, the ConnectionRequestURL names the address of the
/// family that reaches the ACS (IPv4 for an IPv4 ACS, IPv6 for an IPv6
/// one), and a Digest connection request to that very URL starts a
/// session.
#[tokio::test(flavor = "current_thread")]
async fn the_connection_request_url_follows_the_family_of_the_acs() {
    for (host, url_host) in [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")] {
        let inform = || {
            (
                200,
                acs_message(
                    "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
                ),
            )
        };
        let mut acs = scripted_acs_on(
            host,
            vec![
                inform(),
                (204, String::new()),
                inform(),
                (204, String::new()),
            ],
        )
        .await;
        let acs_url = match acs.address {
            SocketAddr::V4(a) => format!("http://{a}/acs"),
            SocketAddr::V6(a) => format!("http://[{}]:{}/acs", a.ip(), a.port()),
        };
        let tree = Arc::new(Mutex::new(tree(&acs_url)));
        let port = free_port();
        let bind = format!("[::]:{port}").parse().unwrap();
        let (driver, stop_tx) = driver_with_connection_requests(&tree, bind, "/cr");
        for _ in 0..3 {
            next(&mut acs.seen).await;
        }
        assert_eq!(
            published_cr_url(&tree),
            format!("http://{url_host}:{port}/cr")
        );
        let mut client = CrClient::connect(host, port, "/cr").await;
        let challenge = client.get(None).await;
        assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED, "{host}");
        let authorization = client.answer(&challenge);
        let accepted = client.get(Some(authorization)).await;
        assert_eq!(accepted.status(), StatusCode::OK, "{host}");
        let inform = next(&mut acs.seen).await;
        assert!(
            inform
                .body
                .contains("<EventCode>6 CONNECTION REQUEST</EventCode>"),
            "{host}: {}",
            inform.body
        );
        stop_tx.send(true).unwrap();
        driver.await.unwrap().unwrap();
    }
}

/// An ACS front that redirects every POST (TR-069 §3.4.5).
async fn redirecting_front(to: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let to = to.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request: Request<Incoming>| {
                    let to = to.clone();
                    async move {
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                        response
                            .headers_mut()
                            .insert("location", to.parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "current_thread")]
async fn a_redirected_session_goes_on_at_the_new_url() {
    let mut acs = scripted_acs(vec![(
        200,
        acs_message("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"),
    )])
    .await;
    let front = redirecting_front(format!("http://{}/acs", acs.address)).await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{front}/front"))));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: None,
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    // The redirected Inform reaches the real ACS, which challenges it;
    // the session then completes there.
    let challenged = next(&mut acs.seen).await;
    assert!(challenged.body.contains("<cwmp:Inform>"));
    let inform = next(&mut acs.seen).await;
    assert!(inform.body.contains("<cwmp:Inform>"));
    let empty = next(&mut acs.seen).await;
    assert_eq!(empty.body, "");
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// An ACS that renews its Digest nonce mid-session (RFC 7616 stale=true):
/// GenieACS and others expire nonces on a timer. Each reply in `script`
/// says whether to answer a correct request with a stale challenge
/// instead (for nonce `n{k}`, the next one `n{k+1}`), and the body.
async fn nonce_renewing_acs(script: Vec<(bool, u16, String)>) -> Acs {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    // (script, current nonce number, challenged once)
    let state = Arc::new(Mutex::new((VecDeque::from(script), 0u32, false)));
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            connection += 1;
            let (tx, state) = (tx.clone(), Arc::clone(&state));
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (tx, state) = (tx.clone(), Arc::clone(&state));
                    async move {
                        let authorization = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = String::from_utf8_lossy(
                            &request.into_body().collect().await.unwrap().to_bytes(),
                        )
                        .into_owned();
                        tx.send(Seen {
                            connection,
                            authorization: authorization.clone(),
                            cookie: None,
                            framing: (None, None),
                            body,
                        })
                        .unwrap();
                        let mut state = state.lock().unwrap();
                        let mut response = Response::new(Full::new(Bytes::new()));
                        let challenge = |nonce: u32, stale: bool| {
                            format!(
                                "Digest realm=\"acs\", qop=\"auth\", nonce=\"n{nonce}\"{}",
                                if stale { ", stale=true" } else { "" }
                            )
                        };
                        if !state.2 {
                            state.2 = true;
                            *response.status_mut() = StatusCode::UNAUTHORIZED;
                            response.headers_mut().insert(
                                "www-authenticate",
                                challenge(state.1, false).parse().unwrap(),
                            );
                            return Ok::<_, Infallible>(response);
                        }
                        let auth = authorization.unwrap_or_default();
                        let field = |k: &str| {
                            auth.split(", ")
                                .find_map(|kv| {
                                    kv.trim_start_matches("Digest ")
                                        .strip_prefix(&format!("{k}="))
                                })
                                .map(|v| v.trim_matches('"').to_owned())
                                .unwrap_or_default()
                        };
                        let nonce = format!("n{}", state.1);
                        let expected = md5_hex(&format!(
                            "{}:{nonce}:{}:{}:auth:{}",
                            md5_hex("cpe:acs:cpe-secret"),
                            field("nc"),
                            field("cnonce"),
                            md5_hex("POST:/acs")
                        ));
                        if field("nonce") != nonce || field("response") != expected {
                            *response.status_mut() = StatusCode::FORBIDDEN;
                            return Ok(response);
                        }
                        let (stale, status, body) =
                            state.0.pop_front().unwrap_or((false, 204, String::new()));
                        if stale {
                            state.1 += 1;
                            // The request is not served: it comes again.
                            state.0.push_front((false, status, body));
                            *response.status_mut() = StatusCode::UNAUTHORIZED;
                            response.headers_mut().insert(
                                "www-authenticate",
                                challenge(state.1, true).parse().unwrap(),
                            );
                            return Ok(response);
                        }
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        *response.body_mut() = Full::new(Bytes::from(body));
                        Ok(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Acs { address, seen }
}

/// Field case (issue 8): the nonce goes stale right after the first
/// challenge was answered, and again between the Inform and the empty
/// POST; the CPE answers each new nonce and the session goes on (no new
/// session, nothing failed), on the same connection.
#[tokio::test(flavor = "current_thread")]
async fn a_stale_nonce_mid_session_is_renewed() {
    let mut acs = nonce_renewing_acs(vec![
        (
            true,
            200,
            acs_message("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"),
        ),
        // The empty POST meets a stale nonce, then goes through.
        (
            true,
            200,
            acs_message("<cwmp:GetParameterValues><ParameterNames><string>Device.DeviceInfo.SerialNumber</string></ParameterNames></cwmp:GetParameterValues>"),
        ),
        (false, 204, String::new()),
    ])
    .await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let status = Arc::new(Mutex::new(dm_cwmp_tokio::Status::default()));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: None,
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            status: Arc::clone(&status),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    let mut seen = Vec::new();
    loop {
        let request = next(&mut acs.seen).await;
        let done = request.body.contains("GetParameterValuesResponse");
        seen.push(request);
        if done {
            break;
        }
    }
    let nonce = |s: &Seen| {
        s.authorization
            .as_deref()
            .and_then(|a| a.split("nonce=\"").nth(1))
            .and_then(|n| n.split('"').next())
            .map(str::to_owned)
    };
    let bodies: Vec<(bool, Option<String>)> = seen
        .iter()
        .map(|s| (s.body.contains("<cwmp:Inform>"), nonce(s)))
        .collect();
    assert_eq!(
        bodies,
        [
            (true, None),
            (true, Some("n0".into())),
            (true, Some("n1".into())),
            (false, Some("n1".into())),
            (false, Some("n2".into())),
            (false, Some("n2".into())),
        ],
        "Inform challenged, stale, renewed; empty POST stale, renewed; the GPV response"
    );
    assert!(seen[1..].iter().all(|s| s.connection == seen[1].connection));
    assert!(seen[5].body.contains(">SN1</Value>"));
    // The session ends (the ACS's 204) as a success: the stale nonces
    // failed nothing. The driver runs on this thread: yield to it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while status.lock().unwrap().sessions_ok == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the session ends");
    assert_eq!(status.lock().unwrap().sessions_failed, 0);
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// UDP connection requests (TR-069 Annex G) over IPv4 and IPv6: the
/// driver publishes UDPConnectionRequestAddress (the interface toward the
/// ACS, the connection-request port), and a message signed as GenieACS
/// signs it, sent three times as UDP senders do, starts one session with
/// 6 CONNECTION REQUEST.
#[tokio::test(flavor = "current_thread")]
async fn a_udp_connection_request_starts_a_session_over_ipv4_and_ipv6() {
    for host in ["127.0.0.1", "::1"] {
        let inform = || {
            (
                200,
                acs_message(
                    "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
                ),
            )
        };
        let mut acs = scripted_acs_on(host, vec![inform(), (204, String::new())]).await;
        let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
        let port = std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bind = SocketAddr::new(host.parse().unwrap(), port);
        let (host_tx, _host_rx) = mpsc::channel(4);
        let (_commands, commands) = mpsc::channel(1);
        let (stop_tx, stop) = watch::channel(false);
        let driver = tokio::spawn(dm_cwmp_tokio::run(
            Arc::clone(&tree),
            Config {
                connection_request: Some(ConnectionRequestServer {
                    bind,
                    path: "/cr".into(),
                    allow_basic: false,
                    min_interval: Duration::ZERO,
                }),
                http_timeout: Duration::from_secs(10),
                tls: TlsSettings::default(),
                ..Config::default()
            },
            host_tx,
            commands,
            stop,
        ));
        for _ in 0..3 {
            next(&mut acs.seen).await;
        }
        let address = management_server(
            &tree,
            dm_core::catalog::management_server::UDP_CONNECTION_REQUEST_ADDRESS,
        );
        assert_eq!(address, bind.to_string(), "{host}");
        // As GenieACS builds it: ts in seconds, random id and cn, HMAC-SHA1
        // with the ConnectionRequestPassword as key, lower-case hex.
        let (ts, id, cn) = (1_764_000_000u64, "3735928559", "c0ffee0123456789");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"cr-secret");
        let sig: String = ring::hmac::sign(&key, format!("{ts}{id}acs{cn}").as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let message = format!(
            "GET http://{address}?ts={ts}&id={id}&un=acs&cn={cn}&sig={sig} HTTP/1.1\r\nHost: {address}\r\n\r\n"
        );
        let sender = tokio::net::UdpSocket::bind((host, 0)).await.unwrap();
        for _ in 0..3 {
            sender.send_to(message.as_bytes(), bind).await.unwrap();
        }
        let session = next(&mut acs.seen).await;
        assert!(
            session
                .body
                .contains("<EventCode>6 CONNECTION REQUEST</EventCode>"),
            "{host}: {}",
            session.body
        );
        stop_tx.send(true).unwrap();
        driver.await.unwrap().unwrap();
    }
}

/// A STUN server (coturn's turnserver, STUN only) on loopback.
struct Turn {
    child: std::process::Child,
    /// Its database and pid file, removed with it.
    _dir: tempfile::TempDir,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn turnserver() -> (Turn, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new("turnserver")
        .args([
            "--stun-only",
            "--listening-ip",
            "127.0.0.1",
            "--listening-port",
        ])
        .arg(port.to_string())
        .args([
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--simple-log",
            "--log-file",
            "stdout",
        ])
        .arg("--db")
        .arg(dir.path().join("turndb"))
        .arg("--pidfile")
        .arg(dir.path().join("pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("turnserver (coturn) is missing: run scripts/install-deps.sh");
    (Turn { child, _dir: dir }, port)
}

/// STUN (TR-069 Annex G, TR-111) against coturn: with STUNEnable the
/// driver keeps a binding from its UDP connection-request port, publishes
/// the address the STUN server saw as UDPConnectionRequestAddress (no NAT
/// here: NATDetected false), and UDP connection requests still arrive on
/// the same socket.
#[tokio::test(flavor = "current_thread")]
async fn stun_binds_the_udp_connection_request_port() {
    use dm_core::catalog::management_server as ms;
    let (_turn, stun_port) = turnserver();
    let inform = || {
        (
            200,
            acs_message(
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
            ),
        )
    };
    let mut acs = scripted_acs(vec![inform(), (204, String::new())]).await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let at = |r| dm_core::Path::resource(ms::ID, dm_core::InstanceId(0), r);
    tree.lock()
        .unwrap()
        .begin(dm_core::Origin::Acs)
        .set(at(ms::STUN_ENABLE), dm_core::Value::Boolean(true))
        .set(
            at(ms::STUN_SERVER_ADDRESS),
            dm_core::Value::String("127.0.0.1".into()),
        )
        .set(
            at(ms::STUN_SERVER_PORT),
            dm_core::Value::Unsigned(u64::from(stun_port)),
        )
        .set(
            at(ms::STUN_MINIMUM_KEEP_ALIVE_PERIOD),
            dm_core::Value::Unsigned(1),
        )
        .commit()
        .unwrap();
    let changed = Arc::new(tokio::sync::Notify::new());
    let changes = tree.lock().unwrap().subscribe(64);
    {
        let changed = Arc::clone(&changed);
        changes.set_waker(move || changed.notify_one());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let status = Arc::new(Mutex::new(dm_cwmp_tokio::Status::default()));
    let (host_tx, _host_rx) = mpsc::channel(4);
    let (_commands, commands) = mpsc::channel(1);
    let (stop_tx, stop) = watch::channel(false);
    let driver = tokio::spawn(dm_cwmp_tokio::run(
        Arc::clone(&tree),
        Config {
            connection_request: Some(ConnectionRequestServer {
                bind,
                path: "/cr".into(),
                allow_basic: false,
                min_interval: Duration::ZERO,
            }),
            http_timeout: Duration::from_secs(10),
            tls: TlsSettings::default(),
            status: Arc::clone(&status),
            ..Config::default()
        },
        host_tx,
        commands,
        stop,
    ));
    // Wait for the address to be written: the STUN answer came.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if changes
                .drain()
                .iter()
                .any(|c| c.path == at(ms::UDP_CONNECTION_REQUEST_ADDRESS))
            {
                return;
            }
            changed.notified().await;
        }
    })
    .await
    .expect("a STUN binding");
    assert_eq!(
        status.lock().unwrap().stun_binding.as_deref(),
        Some(bind.to_string().as_str())
    );
    let read = |r| {
        tree.lock()
            .unwrap()
            .read(dm_core::Origin::Agent, &at(r))
            .unwrap()
    };
    assert_eq!(
        read(ms::UDP_CONNECTION_REQUEST_ADDRESS),
        dm_core::ResourceValue::Single(dm_core::Value::String(bind.to_string()))
    );
    assert_eq!(
        read(ms::NAT_DETECTED),
        dm_core::ResourceValue::Single(dm_core::Value::Boolean(false))
    );
    // The socket STUN keeps open still takes connection requests.
    for _ in 0..3 {
        next(&mut acs.seen).await;
    }
    let (ts, id, cn) = (1_764_000_100u64, "42", "feedface00112233");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"cr-secret");
    let sig: String = ring::hmac::sign(&key, format!("{ts}{id}acs{cn}").as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let message =
        format!("GET http://{bind}?ts={ts}&id={id}&un=acs&cn={cn}&sig={sig} HTTP/1.1\r\n\r\n");
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sender.send_to(message.as_bytes(), bind).await.unwrap();
    let session = next(&mut acs.seen).await;
    assert!(
        session.body.contains("6 CONNECTION REQUEST"),
        "{}",
        session.body
    );
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// STUN turned on while the driver runs (the ACS sets STUNEnable): the
/// Binding Request goes out at once, on the change, not at a poll (an
/// idle agent with STUN off is woken by nothing; the footprint issue). The
/// test's own UDP socket is the STUN server: what it receives is the
/// request, its magic cookie checked (RFC 5389 §6).
#[tokio::test(flavor = "current_thread")]
async fn stun_turned_on_later_sends_a_binding_request_at_once() {
    use dm_core::catalog::management_server as ms;
    let stun_server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut acs = scripted_acs(vec![
        (
            200,
            acs_message(
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
            ),
        ),
        (204, String::new()),
    ])
    .await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let at = |r| dm_core::Path::resource(ms::ID, dm_core::InstanceId(0), r);
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (driver, stop_tx) = driver_with_connection_requests(&tree, bind, "/cr");
    // The boot session is over: the driver is idle, STUN off.
    for _ in 0..2 {
        next(&mut acs.seen).await;
    }
    tree.lock()
        .unwrap()
        .begin(dm_core::Origin::Acs)
        .set(at(ms::STUN_ENABLE), dm_core::Value::Boolean(true))
        .set(
            at(ms::STUN_SERVER_ADDRESS),
            dm_core::Value::String("127.0.0.1".into()),
        )
        .set(
            at(ms::STUN_SERVER_PORT),
            dm_core::Value::Unsigned(u64::from(stun_server.local_addr().unwrap().port())),
        )
        .commit()
        .unwrap();
    let mut request = [0u8; 548];
    // Well under the 30 s a poll for the setting used to take.
    let (n, from) =
        tokio::time::timeout(Duration::from_secs(10), stun_server.recv_from(&mut request))
            .await
            .expect("a Binding Request on the change")
            .unwrap();
    assert_eq!(
        from.port(),
        bind.port(),
        "from the UDP connection-request port"
    );
    assert!(n >= 20, "{n} bytes");
    assert_eq!(&request[0..2], &[0x00, 0x01], "a Binding Request");
    assert_eq!(
        &request[4..8],
        &[0x21, 0x12, 0xa4, 0x42],
        "the magic cookie"
    );
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

fn two_sessions() -> Vec<(u16, String)> {
    let inform_response =
        acs_message("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>");
    vec![
        (200, inform_response.clone()),
        (204, String::new()),
        (200, inform_response),
        (204, String::new()),
    ]
}

/// Field case (stock GenieACS 1.2.16, no preset): it provisions no
/// connection-request credentials and answers the challenge with a
/// Digest over the empty pair. "Refuse all" left every task waiting for
/// the next periodic Inform. Both empty: the empty pair is accepted
/// (TR-069 §3.2.2: the credentials are those two values) and `status`
/// says requests are unprotected; other credentials are still refused.
#[tokio::test(flavor = "current_thread")]
async fn a_stock_genieacs_without_credentials_reaches_the_device() {
    let mut acs = scripted_acs(two_sessions()).await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    {
        let at = |r| {
            dm_core::Path::resource(
                dm_core::catalog::management_server::ID,
                dm_core::InstanceId(0),
                r,
            )
        };
        tree.lock()
            .unwrap()
            .begin(dm_core::Origin::Acs)
            .set(
                at(dm_core::catalog::management_server::CONNECTION_REQUEST_USERNAME),
                dm_core::Value::String(String::new()),
            )
            .set(
                at(dm_core::catalog::management_server::CONNECTION_REQUEST_PASSWORD),
                dm_core::Value::String(String::new()),
            )
            .commit()
            .unwrap();
    }
    let port = free_port();
    let bind = format!("127.0.0.1:{port}").parse().unwrap();
    let (driver, stop_tx, status) = driver_with_status(&tree, bind, "/cr");
    for _ in 0..3 {
        next(&mut acs.seen).await;
    }
    assert!(status.lock().unwrap().connection_requests_unprotected);
    let mut client = CrClient::connect("127.0.0.1", port, "/cr").await;
    let challenge = client.get(None).await;
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let wrong = client.answer_as(&challenge, "acs", "guess");
    assert_eq!(
        client.get(Some(wrong)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let challenge = client.get(None).await;
    let empty = client.answer_as(&challenge, "", "");
    assert_eq!(client.get(Some(empty)).await.status(), StatusCode::OK);
    let inform = next(&mut acs.seen).await;
    assert!(
        inform
            .body
            .contains("<EventCode>6 CONNECTION REQUEST</EventCode>"),
        "{}",
        inform.body
    );
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// Field case: a connection-request port in use killed CWMP for good
/// ("CWMP stopped: Address already in use", port not named) while the
/// process lived on. Binding is retried; `status` names the address and
/// the error meanwhile; sessions to the ACS go on; once the port is free,
/// connection requests are served.
#[tokio::test(flavor = "current_thread")]
async fn a_port_in_use_is_bound_once_free_and_sessions_go_on() {
    let mut acs = scripted_acs(two_sessions()).await;
    let tree = Arc::new(Mutex::new(tree(&format!("http://{}/acs", acs.address))));
    let occupier = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupier.local_addr().unwrap().port();
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (driver, stop_tx, status) = driver_with_status(&tree, bind, "/cr/SN1");
    // The boot session happens all the same.
    for _ in 0..3 {
        next(&mut acs.seen).await;
    }
    let error = status.lock().unwrap().connection_request_error.clone();
    let error = error.expect("the bind failure is in the status");
    assert!(error.contains(&bind.to_string()), "{error}");
    assert!(status.lock().unwrap().connection_request_address.is_none());
    drop(occupier);
    // Retried after 1, 2, 4 s...: wait for the status to say it listens.
    let listening = async {
        loop {
            if let Some(address) = status.lock().unwrap().connection_request_address.clone() {
                return address;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let address = tokio::time::timeout(Duration::from_secs(20), listening)
        .await
        .expect("bound once the port is free");
    assert_eq!(address, bind.to_string());
    assert!(status.lock().unwrap().connection_request_error.is_none());
    let mut client = CrClient::connect("127.0.0.1", port, "/cr/SN1").await;
    let challenge = client.get(None).await;
    let authorization = client.answer(&challenge);
    assert_eq!(
        client.get(Some(authorization)).await.status(),
        StatusCode::OK
    );
    assert!(
        next(&mut acs.seen)
            .await
            .body
            .contains("<EventCode>6 CONNECTION REQUEST</EventCode>")
    );
    stop_tx.send(true).unwrap();
    driver.await.unwrap().unwrap();
}

/// Hostile input: one challenge bucket for everyone (16, then 1 a second)
/// let two unauthenticated GETs a second lock a real ACS out (503), and
/// eight slow connections re-opened as they closed held every slot. With
/// a flood of both from 127.0.0.2 running, an ACS at 127.0.0.1 is served
/// every time, each round within 2 s.
#[tokio::test(flavor = "current_thread")]
async fn an_acs_is_served_while_another_address_floods() {
    let (requests_tx, mut requests) = mpsc::channel(64);
    let (address, _server) = dm_cwmp_tokio::connreq::serve(
        dm_cwmp_tokio::ConnectionRequestConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            path: "/cr".into(),
            credentials: Arc::new(|| ("acs".into(), "cr-secret".into())),
            allow_basic: false,
            min_interval: Duration::ZERO,
        },
        requests_tx,
    )
    .await
    .unwrap();
    let flooder = |address: SocketAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        socket.connect(address).await
    };
    // Slow connections: a request line, then nothing; re-opened at once
    // when the server drops them.
    for _ in 0..8 {
        tokio::spawn(async move {
            loop {
                let Ok(mut stream) = flooder(address).await else {
                    continue;
                };
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let _ = stream.write_all(b"GET /cr HTTP/1.1\r\nHost: x\r\n").await;
                let mut sink = [0u8; 64];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        });
    }
    // Unauthenticated GETs as fast as the server answers them.
    for _ in 0..2 {
        tokio::spawn(async move {
            loop {
                let Ok(stream) = flooder(address).await else {
                    continue;
                };
                let Ok((mut sender, connection)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    continue;
                };
                tokio::spawn(connection);
                loop {
                    let request = Request::get("/cr")
                        .header("host", "x")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    if sender.send_request(request).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    // Let the flood fill the challenge buckets and the slots first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..10 {
        let served = async {
            let mut client = CrClient::connect("127.0.0.1", address.port(), "/cr").await;
            let challenge = client.get(None).await;
            assert_eq!(
                challenge.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}"
            );
            let authorization = client.answer(&challenge);
            client.get(Some(authorization)).await.status()
        };
        let status = tokio::time::timeout(Duration::from_secs(2), served)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the ACS waited more than 2 s"));
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert!(requests.recv().await.is_some());
    }
}
