//! dimpl (sans-IO DTLS 1.2/1.3), with RustCrypto (`dimpl-rc`) or
//! aws-lc-rs (`dimpl-aws`).

#[path = "../common.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use dimpl::{Config, Dtls, Output, PskResolver};

struct Key(Vec<u8>);

impl PskResolver for Key {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

fn main() {
    let common::Probe {
        socket,
        identity,
        key,
        deadline,
    } = common::setup();
    let config = Config::builder()
        .with_psk_client(identity.into_bytes(), Arc::new(Key(key)))
        .build()
        .unwrap_or_else(|e| common::fail("config", e));
    let mut dtls = Dtls::new_12_psk(Arc::new(config), Instant::now());
    dtls.set_active(true);
    let mut out = vec![0u8; 2048];
    let mut buf = [0u8; 1500];
    let mut connected = false;
    while Instant::now() < deadline {
        loop {
            match dtls.poll_output(&mut out) {
                Output::Packet(p) => {
                    let _ = socket.send(p);
                }
                Output::Connected => {
                    if let Err(e) = dtls.send_application_data(b"hello from dimpl\n") {
                        common::fail("write", e);
                    }
                    connected = true;
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        if connected {
            println!("dimpl connected");
            return;
        }
        let step = match socket.recv(&mut buf) {
            Ok(n) => dtls.handle_packet(&buf[..n]),
            Err(_) => dtls.handle_timeout(Instant::now()),
        };
        if let Err(e) = step {
            common::fail("handshake", e);
        }
    }
    common::fail("handshake", "not complete in time");
}
