//! The same program without DTLS: std, the arguments and a socket.

#[path = "../common.rs"]
mod common;

fn main() {
    let probe = common::setup();
    if let Err(e) = probe.socket.send(probe.identity.as_bytes()) {
        common::fail("send", e);
    }
    let mut buf = [0u8; 1500];
    let _ = probe.socket.recv(&mut buf);
    println!("bare {}", probe.key.len());
}
