//! The driver over DTLS on 127.0.0.1 against a DTLS server of our own
//! (rtc-dtls in the server role) that speaks just enough LwM2M: when the
//! server ends a working session (a close_notify, as a restarting server
//! sends), the client makes a new session at once and registers in full,
//! never an Update over the new session (field interop issue: Leshan and
//! Wakaama forget a registration with its DTLS session).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::Tree;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::ConfigBuilder;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use tokio::net::UdpSocket;

const IDENTITY: &[u8] = b"dev-dtls";
const KEY: [u8; 16] = [7; 16];

fn server_endpoint(address: SocketAddr) -> Endpoint {
    let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
    let config = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_psk(Some(Arc::new(|identity: &[u8]| {
            assert_eq!(identity, IDENTITY);
            Ok(KEY.to_vec())
        })))
        .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8])
        .build(false, None)
        .unwrap();
    Endpoint::new(address, TransportProtocol::UDP, Some(Arc::new(config)))
}

/// The tree with one PSK account at the test server.
fn tree(port: u16, lifetime: u32) -> Arc<std::sync::Mutex<Tree>> {
    Arc::new(std::sync::Mutex::new(common::tree(vec![common::account(
        format!("coaps://127.0.0.1:{port}"),
        false,
        101,
        lifetime,
        Some((IDENTITY, &KEY)),
    )])))
}

/// What the server heard, in order.
#[derive(Debug, PartialEq)]
enum Heard {
    Handshake,
    Register,
    Update,
    Deregister,
}

/// The server's answer to a request: Register → 2.01 at /rd/N, Update →
/// 2.04, De-register → 2.02.
fn answer(request: &Packet, registrations: usize) -> (Heard, Packet) {
    let path: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|p| {
            p.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut response = Packet::new();
    response.header.set_type(MessageType::Acknowledgement);
    response.header.message_id = request.header.message_id;
    response.set_token(request.get_token().to_vec());
    let heard = match (&request.header.code, path.len()) {
        (MessageClass::Request(RequestType::Post), 1) => {
            response.header.code = MessageClass::Response(ResponseType::Created);
            response.add_option(CoapOption::LocationPath, b"rd".to_vec());
            response.add_option(
                CoapOption::LocationPath,
                registrations.to_string().into_bytes(),
            );
            Heard::Register
        }
        (MessageClass::Request(RequestType::Post), _) => {
            response.header.code = MessageClass::Response(ResponseType::Changed);
            Heard::Update
        }
        _ => {
            response.header.code = MessageClass::Response(ResponseType::Deleted);
            Heard::Deregister
        }
    };
    (heard, response)
}

/// A DTLS LwM2M server on 127.0.0.1: what it heard, in order.
struct Server {
    socket: UdpSocket,
    address: SocketAddr,
    endpoint: Endpoint,
    peer: Option<SocketAddr>,
    heard: Vec<Heard>,
    /// Leaves Registers unanswered, noting each exchange's token.
    silent: bool,
    /// A handshake completed: a new ClientHello then starts over with a
    /// fresh association, as servers do (RFC 6347 §4.2.8).
    established: bool,
    register_tokens: std::collections::BTreeSet<Vec<u8>>,
}

impl Server {
    async fn start() -> Server {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        Server {
            endpoint: server_endpoint(address),
            socket,
            address,
            peer: None,
            heard: Vec::new(),
            silent: false,
            established: false,
            register_tokens: Default::default(),
        }
    }

    fn registers(&self) -> usize {
        self.heard.iter().filter(|h| **h == Heard::Register).count()
    }

    /// Serves one datagram (or a timer tick when none comes in 50 ms).
    async fn step(&mut self) {
        let mut buffer = [0u8; 4096];
        let received = tokio::time::timeout(
            Duration::from_millis(50),
            self.socket.recv_from(&mut buffer),
        )
        .await;
        let now = Instant::now();
        if let Ok(Ok((n, from))) = received {
            self.peer = Some(from);
            // Handshake record, epoch 0, ClientHello.
            let client_hello =
                n > 13 && buffer[0] == 22 && buffer[3..5] == [0, 0] && buffer[13] == 1;
            if client_hello && self.established {
                self.endpoint = server_endpoint(self.address);
                self.established = false;
            }
            let events = self
                .endpoint
                .read(now, from, None, BytesMut::from(&buffer[..n]))
                .unwrap_or_default();
            for event in events {
                match event {
                    EndpointEvent::HandshakeComplete => {
                        self.established = true;
                        self.heard.push(Heard::Handshake);
                    }
                    EndpointEvent::ApplicationData(data) => {
                        let request = Packet::from_bytes(&data).unwrap();
                        if self.silent {
                            self.register_tokens.insert(request.get_token().to_vec());
                            continue;
                        }
                        let (what, response) = answer(&request, self.registers() + 1);
                        self.heard.push(what);
                        self.endpoint
                            .write(now, from, &response.to_bytes().unwrap())
                            .unwrap();
                    }
                    _ => {}
                }
            }
        } else if let Some(peer) = self.peer {
            let _ = self.endpoint.handle_timeout(peer, now);
        }
        self.flush().await;
    }

    async fn flush(&mut self) {
        while let Some(message) = self.endpoint.poll_transmit() {
            self.socket
                .send_to(&message.message, message.transport.peer_addr)
                .await
                .unwrap();
        }
    }

    /// Serves until `done`, failing after `limit`.
    async fn until(&mut self, limit: Duration, done: impl Fn(&Server) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "heard only {:?}", self.heard);
            self.step().await;
        }
    }
}

/// The driver's configuration for `server`, with `coap` transmission
/// parameters.
fn config(server: SocketAddr, coap: dm_lwm2m::coap::Parameters) -> dm_lwm2m_tokio::Config {
    common::config(server, Some((IDENTITY, &KEY)), coap)
}

const REGISTERED_TWICE: [Heard; 4] = [
    Heard::Handshake,
    Heard::Register,
    Heard::Handshake,
    Heard::Register,
];

#[tokio::test(flavor = "current_thread")]
async fn a_session_the_server_ends_is_replaced_at_once_with_a_full_register() {
    let mut server = Server::start().await;
    let tree = tree(server.address.port(), 300);
    let driver = common::Running::start(
        &tree,
        config(server.address, dm_lwm2m::coap::Parameters::default()),
    );
    server
        .until(Duration::from_secs(15), |s| s.registers() == 1)
        .await;
    // Registered: the server ends the session (close_notify), as one
    // that restarts does. Well under the 30 s back-off a failed handshake
    // gets, the session is replaced and the client registers in full.
    let peer = server.peer.unwrap();
    server.endpoint.stop(Instant::now(), peer);
    server.flush().await;
    server
        .until(Duration::from_secs(15), |s| s.registers() == 2)
        .await;
    assert_eq!(
        server.heard, REGISTERED_TWICE,
        "a new handshake, then Register, never an Update"
    );
    drop(server);
    driver.stop().await;
}

/// The server restarts and forgets the session without a word: the
/// client's next Update goes unanswered. Then a new handshake and a full
/// Register follow at once, not after the engine's 30 s back-off. (CoAP
/// timers shortened so the Update fails in about a second.)
#[tokio::test(flavor = "current_thread")]
async fn a_session_the_server_forgot_is_replaced_after_one_failed_update() {
    let mut server = Server::start().await;
    // Lifetime 4 s: the Update is due after 2 s.
    let tree = tree(server.address.port(), 4);
    let driver = common::Running::start(&tree, config(server.address, common::short_coap(200, 2)));
    server
        .until(Duration::from_secs(15), |s| s.registers() == 1)
        .await;
    // The restart: a new endpoint that knows no session.
    server.endpoint = server_endpoint(server.address);
    server
        .until(Duration::from_secs(15), |s| s.registers() == 2)
        .await;
    assert_eq!(server.heard, REGISTERED_TWICE);
    drop(server);
    driver.stop().await;
}

/// A server that completes the handshake but never answers the Register
/// (a broken application behind a working DTLS stack): the failed Register
/// is retried after the engine's back-off, not at once with a new session
/// and a new engine each time (which would hammer the server every few
/// seconds). Over a 4 s window with CoAP timers that make a Register fail
/// in about a second, one Register exchange is seen.
#[tokio::test(flavor = "current_thread")]
async fn a_register_never_answered_over_dtls_backs_off() {
    let mut server = Server::start().await;
    server.silent = true;
    let tree = tree(server.address.port(), 300);
    let driver = common::Running::start(&tree, config(server.address, common::short_coap(100, 2)));
    server
        .until(Duration::from_secs(15), |s| !s.register_tokens.is_empty())
        .await;
    // The window: a failed Register (0.7 s), then nothing until the
    // 30 s back-off ends.
    let window = Instant::now() + Duration::from_secs(4);
    while Instant::now() < window {
        server.step().await;
    }
    assert_eq!(
        server.register_tokens.len(),
        1,
        "Register exchanges seen: {:?}",
        server.register_tokens
    );
    drop(server);
    driver.stop().await;
}

/// Field case: after a server restart that forgot the DTLS session the
/// agent retransmitted for 85 s before a new handshake (re-registration
/// took 97-110 s, against milliseconds for plain CoAP, which sees the
/// 4.04). With the default CoAP timers, the second unanswered
/// retransmission of the Update (about 6-9 s after it) starts a new
/// handshake and a full Register.
#[tokio::test(flavor = "current_thread")]
async fn a_forgotten_session_is_replaced_after_two_unanswered_retransmissions() {
    let mut server = Server::start().await;
    // Lifetime 4 s: the Update is due after 2 s.
    let tree = tree(server.address.port(), 4);
    let driver = common::Running::start(
        &tree,
        config(server.address, dm_lwm2m::coap::Parameters::default()),
    );
    server
        .until(Duration::from_secs(15), |s| s.registers() == 1)
        .await;
    server.endpoint = server_endpoint(server.address);
    // Well inside the 93 s the Update's retransmissions alone would take.
    server
        .until(Duration::from_secs(30), |s| s.registers() == 2)
        .await;
    assert_eq!(server.heard, REGISTERED_TWICE);
    drop(server);
    driver.stop().await;
}
