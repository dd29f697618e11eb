//! What every probe shares: its arguments (the server's address, the PSK
//! identity and the key in hexadecimal) and a socket connected to the
//! server.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// How long a probe tries before it says the handshake failed.
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// Ends the probe with `what` and `error`.
pub fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {error}");
    std::process::exit(1);
}

pub struct Probe {
    pub socket: UdpSocket,
    pub identity: String,
    pub key: Vec<u8>,
    /// When the probe gives up (the OpenSSL probe leaves retransmits and
    /// time to OpenSSL; the bare one has no handshake).
    #[allow(dead_code)]
    pub deadline: Instant,
}

pub fn setup() -> Probe {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, identity, key] = args.as_slice() else {
        fail("usage", "PROBE HOST:PORT IDENTITY KEY-HEX");
    };
    let key = (0..key.len())
        .step_by(2)
        .map(|i| {
            key.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| fail("key", "not hexadecimal"));
    let socket = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.connect(server).map(|()| s))
        .and_then(|s| {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map(|()| s)
        })
        .unwrap_or_else(|e| fail("socket", e));
    Probe {
        socket,
        identity: identity.clone(),
        key,
        deadline: Instant::now() + GIVE_UP,
    }
}
