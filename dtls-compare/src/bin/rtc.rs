//! rtc-dtls (what the agent uses), with its default ring provider.

#[path = "../common.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::ConfigBuilder;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};

fn main() {
    let common::Probe {
        socket,
        identity,
        key,
        deadline,
    } = common::setup();
    let (local, remote) = match (socket.local_addr(), socket.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        _ => common::fail("socket", "no address"),
    };
    let provider = rtc_dtls::crypto_provider::default_provider()
        .unwrap_or_else(|e| common::fail("provider", e));
    let config = ConfigBuilder::default()
        .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
        .with_psk_identity_hint(Some(identity.into_bytes()))
        .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8])
        .with_crypto_provider(provider)
        .build(true, Some(remote))
        .unwrap_or_else(|e| common::fail("config", e));
    let mut endpoint = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
    if let Err(e) = endpoint.connect(Instant::now(), remote, Arc::new(config), None) {
        common::fail("connect", e);
    }
    let mut buf = [0u8; 1500];
    let mut connected = false;
    while Instant::now() < deadline {
        while let Some(datagram) = endpoint.poll_transmit() {
            let _ = socket.send(&datagram.message);
        }
        if connected {
            println!("rtc-dtls connected");
            return;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let datagram = bytes::BytesMut::from(&buf[..n]);
                let events = endpoint
                    .read(Instant::now(), remote, None, datagram)
                    .unwrap_or_else(|e| common::fail("handshake", e));
                if events
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete))
                {
                    if let Err(e) = endpoint.write(Instant::now(), remote, b"hello from rtc-dtls\n")
                    {
                        common::fail("write", e);
                    }
                    connected = true;
                }
            }
            Err(_) => {
                let _ = endpoint.handle_timeout(remote, Instant::now());
            }
        }
    }
    common::fail("handshake", "not complete in time");
}
