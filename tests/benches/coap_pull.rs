//! Firmware pull over CoAP Block2: 1 MB in 1024-byte blocks on loopback,
//! through the agent's own path (`dm_lwm2m_tokio::pull`: the sans-IO
//! Fetch over the CoAP message layer, one UDP socket), against the floor
//! of the same lock-step exchange done bare (a small datagram out, a
//! 1 KiB datagram back, no CoAP) in the same run.
//!
//! `cargo bench -p dmagent-tests --bench coap_pull`.

use std::net::UdpSocket;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use dm_lwm2m::coap::{Block, encode_uint, option_number};

const SIZE: usize = 1024 * 1024;

/// Answers Block2 GETs for SIZE bytes; a datagram that is not CoAP gets a
/// bare 1 KiB datagram back (the floor's exchange).
fn server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
        let mut buffer = [0u8; 2048];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            if buffer[..n].starts_with(b"bare") {
                let _ = socket.send_to(&body[..1024], peer);
                continue;
            }
            let Ok(request) = Packet::from_bytes(&buffer[..n]) else {
                continue;
            };
            let asked = request
                .get_first_option(CoapOption::Block2)
                .and_then(|v| Block::decode(v))
                .unwrap_or(Block {
                    number: 0,
                    more: false,
                    szx: 6,
                });
            let size = asked.size();
            let start = (asked.number as usize * size).min(SIZE);
            let end = (start + size).min(SIZE);
            let mut response = Packet::new();
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = request.header.message_id;
            response.header.code = MessageClass::Response(ResponseType::Content);
            response.set_token(request.get_token().to_vec());
            response.add_option(
                CoapOption::Block2,
                Block {
                    number: asked.number,
                    more: end < SIZE,
                    szx: asked.szx,
                }
                .encode(),
            );
            if request
                .get_first_option(CoapOption::Size2)
                .is_some_and(|v| option_number(v) == 0)
            {
                response.add_option(CoapOption::Size2, encode_uint(SIZE as u64));
            }
            response.payload = body[start..end].to_vec();
            if let Ok(bytes) = response.to_bytes() {
                let _ = socket.send_to(&bytes, peer);
            }
        }
    });
    port
}

fn main() {
    let port = server();
    let uri = format!("coap://127.0.0.1:{port}/fw");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let blocks = SIZE / 1024;

    // The floor: the same number of lock-step round trips, bare.
    let bare = UdpSocket::bind("127.0.0.1:0").unwrap();
    bare.connect(("127.0.0.1", port)).unwrap();
    let mut buffer = [0u8; 2048];
    let start = Instant::now();
    for _ in 0..blocks {
        bare.send(b"bare").unwrap();
        assert_eq!(bare.recv(&mut buffer).unwrap(), 1024);
    }
    let floor = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut received = 0u64;
    let size = runtime
        .block_on(dm_lwm2m_tokio::pull::pull(
            &uri,
            None,
            None,
            &mut |bytes| {
                received += bytes.len() as u64;
                Ok(())
            },
            &mut |_, _| {},
        ))
        .unwrap();
    let ours = start.elapsed().as_secs_f64();
    assert_eq!(size as usize, SIZE);
    assert_eq!(received as usize, SIZE);
    println!(
        "1 MB over CoAP Block2 (1024-byte blocks) on loopback, one run: dmagent {:.1} MB/s, \
         {:.0} blocks/s; bare lock-step UDP {:.0} exchanges/s; ratio to the bare floor {:.2}",
        SIZE as f64 / 1e6 / ours,
        blocks as f64 / ours,
        blocks as f64 / floor,
        floor / ours
    );
}
