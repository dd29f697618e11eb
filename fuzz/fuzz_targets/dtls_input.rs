//! The DTLS client's input path: records from a peer that is not a DTLS
//! server (or a broken one), before and during the handshake.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let Ok(mut client) = dm_lwm2m::dtls::DtlsClient::connect(
        now,
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:5684".parse().unwrap(),
        None,
        &dm_lwm2m::security::Credentials::Psk {
            identity: b"dev".to_vec(),
            key: vec![7; 16],
        },
    ) else {
        return;
    };
    client.send(now, b"\x44\x02\x00\x01register");
    for record in data.split(|b| *b == 0xd7).take(64) {
        while client.poll_transmit(now).is_some() {}
        client.handle_datagram(now, record);
        while client.poll_plaintext().is_some() {}
        now += Duration::from_millis(500);
        client.handle_timeout(now);
        if client.failure().is_some() {
            break;
        }
    }
});
