//! The driver over DTLS on 127.0.0.1 against a DTLS server of our own
//! (rtc-dtls in the server role) that speaks just enough LwM2M: when the
//! server ends a working session (a close_notify, as a restarting server
//! sends), the client makes a new session at once and registers in full,
//! never an Update over the new session (field interop issue: Leshan and
//! Wakaama forget a registration with its DTLS session).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::Tree;
use dm_lwm2m::client::ClientConfig;
use dm_lwm2m_tokio::Config;
use dm_objects::{Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::ConfigBuilder;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use tokio::net::UdpSocket;
use tokio::sync::watch;

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

fn tree(port: u16) -> Tree {
    let platform = Platform {
        host: Arc::new(dm_platform::linux::LinuxHost::default()),
        network: Arc::new(dm_platform::memory::MemoryNetwork::demo()),
        log: Arc::new(dm_platform::memory::MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN-DTLS".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            lwm2m: vec![Lwm2mServer {
                uri: format!("coaps://127.0.0.1:{port}"),
                bootstrap: false,
                short_server_id: 101,
                lifetime: 300,
                binding: "U".into(),
                security: SecurityMode::PreSharedKey,
                psk_identity: IDENTITY.to_vec(),
                psk_key: KEY.to_vec(),
                client_hold_off: 0,
            }],
            ..Provisioning::default()
        },
    )
    .unwrap();
    tree
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

#[tokio::test(flavor = "current_thread")]
async fn a_session_the_server_ends_is_replaced_at_once_with_a_full_register() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let mut server = server_endpoint(address);
    let tree = Arc::new(std::sync::Mutex::new(tree(address.port())));
    let (stop, shutdown) = watch::channel(false);
    let driver = tokio::spawn(dm_lwm2m_tokio::run(
        Arc::clone(&tree),
        Config {
            server: address,
            client: ClientConfig {
                endpoint: "dmagent-dtls".into(),
                short_server_id: 101,
                server_instance: 0,
                nat_timeout: None,
            },
            psk: Some((IDENTITY.to_vec(), KEY.to_vec())),
            bootstrap: false,
            status: Arc::default(),
            firmware: None,
            network: None,
        },
        shutdown,
    ));
    let mut heard = Vec::new();
    let mut peer = None;
    let mut closed = false;
    let mut buffer = vec![0u8; 4096];
    // Well under the 30 s back-off a failed handshake gets: the lost
    // session must be replaced at once.
    let deadline = Instant::now() + Duration::from_secs(15);
    while heard.iter().filter(|h| **h == Heard::Register).count() < 2 {
        assert!(Instant::now() < deadline, "heard only {heard:?}");
        let received =
            tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buffer)).await;
        let now = Instant::now();
        if let Ok(Ok((n, from))) = received {
            peer = Some(from);
            let events = server
                .read(now, from, None, BytesMut::from(&buffer[..n]))
                .unwrap_or_default();
            for event in events {
                match event {
                    EndpointEvent::HandshakeComplete => heard.push(Heard::Handshake),
                    EndpointEvent::ApplicationData(data) => {
                        let request = Packet::from_bytes(&data).unwrap();
                        let registrations =
                            heard.iter().filter(|h| **h == Heard::Register).count() + 1;
                        let (what, response) = answer(&request, registrations);
                        heard.push(what);
                        server
                            .write(now, from, &response.to_bytes().unwrap())
                            .unwrap();
                    }
                    _ => {}
                }
            }
        } else if let Some(peer) = peer {
            let _ = server.handle_timeout(peer, now);
        }
        while let Some(message) = server.poll_transmit() {
            socket
                .send_to(&message.message, message.transport.peer_addr)
                .await
                .unwrap();
        }
        // Registered: the server ends the session (close_notify), as one
        // that restarts does.
        if !closed && heard.contains(&Heard::Register) {
            closed = true;
            server.stop(Instant::now(), peer.unwrap());
            while let Some(message) = server.poll_transmit() {
                socket
                    .send_to(&message.message, message.transport.peer_addr)
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(
        heard,
        [
            Heard::Handshake,
            Heard::Register,
            Heard::Handshake,
            Heard::Register
        ],
        "a new handshake, then Register, never an Update"
    );
    stop.send(true).unwrap();
    drop(socket);
    tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the driver stops")
        .unwrap()
        .unwrap();
}
