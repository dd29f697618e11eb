//! DTLS 1.2 PSK with TLS_PSK_WITH_AES_128_CCM_8: against OpenSSL's
//! s_server (Debian's openssl) over UDP on 127.0.0.1, and against a DTLS
//! server side of our own (rtc-dtls in the server role) in memory.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dm_lwm2m::dtls::DtlsClient;
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::ConfigBuilder;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;

const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Moves datagrams between the client and a UDP peer until `done` or the
/// deadline.
fn pump(
    client: &mut DtlsClient,
    socket: &UdpSocket,
    deadline: Instant,
    done: &mut dyn FnMut(&mut DtlsClient) -> bool,
) {
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        while let Some(datagram) = client.poll_transmit(Instant::now()) {
            socket.send(&datagram).unwrap();
        }
        if done(client) {
            return;
        }
        assert!(client.failure().is_none(), "{:?}", client.failure());
        let wait = client
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100))
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv(&mut buffer) {
            Ok(n) => client.handle_datagram(Instant::now(), &buffer[..n]),
            Err(_) => client.handle_timeout(Instant::now()),
        }
    }
    panic!("DTLS exchange did not finish in time");
}

#[test]
fn psk_ccm8_interoperates_with_openssl_s_server() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let mut server = Guard(
        Command::new("openssl")
            .args([
                "s_server",
                "-dtls1_2",
                "-nocert",
                "-psk_identity",
                "dev1",
                "-cipher",
                "PSK-AES128-CCM8",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}"), "-psk", &hex])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is missing: run scripts/install-deps.sh"),
    );
    let (tx, lines) = mpsc::channel();
    let stdout = server.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("s_server output");
        if line.contains(needle) {
            return line;
        }
    };
    wait_for("ACCEPT");

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(remote).unwrap();
    let local = socket.local_addr().unwrap();
    let mut client = DtlsClient::connect(
        Instant::now(),
        local,
        remote,
        None,
        &dm_lwm2m::security::Credentials::Psk {
            identity: b"dev1".to_vec(),
            key: KEY.to_vec(),
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    pump(&mut client, &socket, deadline, &mut |c| c.is_connected());
    let cipher = wait_for("CIPHER is");
    assert!(cipher.contains("PSK-AES128-CCM8"), "{cipher}");

    // Application data both ways.
    client.send(Instant::now(), b"hello over dtls\n");
    pump(&mut client, &socket, deadline, &mut |_| true);
    wait_for("hello over dtls");
    let stdin = server.0.stdin.as_mut().unwrap();
    stdin.write_all(b"answer from openssl\n").unwrap();
    stdin.flush().unwrap();
    let mut got = Vec::new();
    pump(&mut client, &socket, deadline, &mut |c| {
        while let Some(p) = c.poll_plaintext() {
            got.extend_from_slice(&p);
        }
        got.ends_with(b"answer from openssl\n")
    });
}

/// Our own server side: rtc-dtls in the server role with a PSK resolver.
fn server_endpoint(address: SocketAddr, key: Vec<u8>) -> Endpoint {
    let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
    let config = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_psk(Some(Arc::new(move |identity: &[u8]| {
            assert_eq!(identity, b"dev1");
            Ok(key.clone())
        })))
        .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8])
        .build(false, None)
        .unwrap();
    Endpoint::new(address, TransportProtocol::UDP, Some(Arc::new(config)))
}

/// A PSK client (identity dev1, [`KEY`]) of our own server side's
/// address, started at `now` from `local`.
fn psk_client(now: Instant, local: SocketAddr) -> DtlsClient {
    DtlsClient::connect(
        now,
        local,
        "127.0.0.1:5684".parse().unwrap(),
        None,
        &dm_lwm2m::security::Credentials::Psk {
            identity: b"dev1".to_vec(),
            key: KEY.to_vec(),
        },
    )
    .unwrap()
}

/// Runs client and server in memory until the client has `wanted`
/// plaintext or fails.
fn in_memory(server_key: Vec<u8>) -> (DtlsClient, Vec<u8>) {
    in_memory_dropping(server_key, false)
}

/// [`in_memory`]; with `drop_alerts`, the server's alert records never
/// reach the client (as a server that drops a Finished it cannot decrypt
/// behaves: RFC 6347 §4.1.2.7, OpenSSL's s_server).
fn in_memory_dropping(server_key: Vec<u8>, drop_alerts: bool) -> (DtlsClient, Vec<u8>) {
    let server_address: SocketAddr = "127.0.0.1:5684".parse().unwrap();
    let client_address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut server = server_endpoint(server_address, server_key);
    let now = Instant::now();
    let mut client = psk_client(now, client_address);
    client.send(now, b"register me");
    let mut received = Vec::new();
    for _ in 0..50 {
        while let Some(datagram) = client.poll_transmit(Instant::now()) {
            if let Ok(events) =
                server.read(now, client_address, None, BytesMut::from(&datagram[..]))
            {
                for event in events {
                    if let EndpointEvent::ApplicationData(data) = event {
                        received.extend_from_slice(&data);
                        let _ = server.write(now, client_address, b"created");
                    }
                }
            }
        }
        while let Some(message) = server.poll_transmit() {
            // Content type 21: an alert (RFC 6347 §4.1).
            if drop_alerts && message.message.first() == Some(&21) {
                continue;
            }
            client.handle_datagram(now, &message.message);
        }
        if client.failure().is_some() || !received.is_empty() && client.is_connected() {
            break;
        }
    }
    (client, received)
}

#[test]
fn psk_handshake_and_data_with_our_own_server_side() {
    let (mut client, received) = in_memory(KEY.to_vec());
    assert!(client.is_connected());
    assert_eq!(
        received, b"register me",
        "queued data is sent once the handshake ends"
    );
    assert_eq!(client.poll_plaintext().as_deref(), Some(&b"created"[..]));
}

/// A server that refuses our key with an alert: the failure says so.
#[test]
fn a_wrong_key_refused_with_an_alert_names_the_key() {
    let (client, received) = in_memory(vec![9; 16]);
    assert!(!client.is_connected());
    assert!(received.is_empty());
    let failure = client.failure().expect("failed at the alert");
    assert!(failure.contains("PSK identity or key"), "{failure}");
}

/// A server that drops our Finished without an alert (it cannot decrypt
/// it): SILENT_AFTER_FINISHED after it went out (its ChangeCipherSpec
/// seen among the records), the client gives up naming the key, well
/// before HANDSHAKE_TIMEOUT.
#[test]
fn a_wrong_key_dropped_in_silence_is_named_before_the_handshake_time_out() {
    let (mut client, received) = in_memory_dropping(vec![9; 16], true);
    assert!(!client.is_connected());
    assert!(received.is_empty());
    assert_eq!(client.failure(), None, "no alert reached the client");
    client.handle_timeout(Instant::now() + dm_lwm2m::dtls::SILENT_AFTER_FINISHED);
    let failure = client.failure().expect("failed");
    assert!(
        failure.contains("did not finish the DTLS handshake within 15 s of our Finished"),
        "{failure}"
    );
    assert!(failure.contains("PSK identity or key"), "{failure}");
}

/// A handshake that stalls before our Finished (a server that answered
/// with a HelloVerifyRequest, then nothing) is not blamed on the key: it
/// runs until HANDSHAKE_TIMEOUT and says so.
#[test]
fn a_handshake_that_stalls_early_is_not_blamed_on_the_key() {
    use dm_lwm2m::dtls::{HANDSHAKE_TIMEOUT, SILENT_AFTER_FINISHED};
    let server_address: SocketAddr = "127.0.0.1:5684".parse().unwrap();
    let client_address: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let mut server = server_endpoint(server_address, KEY.to_vec());
    let start = Instant::now();
    let mut client = psk_client(start, client_address);
    // ClientHello to the server; its first answer back; nothing after.
    let hello = client.poll_transmit(Instant::now()).expect("a ClientHello");
    let _ = server.read(start, client_address, None, BytesMut::from(&hello[..]));
    let answer = server.poll_transmit().expect("the server answers");
    client.handle_datagram(start, &answer.message);
    while client.poll_transmit(Instant::now()).is_some() {}
    client.handle_timeout(start + SILENT_AFTER_FINISHED + Duration::from_secs(1));
    if client.is_connected() {
        panic!("connected without the rest of the handshake");
    }
    assert_eq!(client.failure(), None);
    client.handle_timeout(start + HANDSHAKE_TIMEOUT);
    let failure = client.failure().expect("failed");
    assert!(failure.contains("did not finish within 60 s"), "{failure}");
}

/// Time as the driver gives it, from `start`: each deadline the client
/// asks for in turn, what it sends then lost, until it fails. Its failure
/// and when it came.
fn until_it_fails(client: &mut DtlsClient, start: Instant) -> (String, Duration) {
    use dm_lwm2m::dtls::HANDSHAKE_TIMEOUT;
    loop {
        if let Some(failure) = client.failure() {
            return (failure.to_owned(), Duration::ZERO);
        }
        let at = client
            .poll_timeout()
            .expect("a deadline while the handshake runs");
        assert!(
            at <= start + HANDSHAKE_TIMEOUT + Duration::from_secs(1),
            "no failure by the handshake's time-out"
        );
        client.handle_timeout(at);
        while client.poll_transmit(at).is_some() {}
        if let Some(failure) = client.failure() {
            return (failure.to_owned(), at.saturating_duration_since(start));
        }
    }
}

/// As the driver runs it (Leshan's Scandium drops our Finished so, by
/// hand): the key is named within SILENT_AFTER_FINISHED, not the
/// library's state machine when its own retransmissions run out (rtc-dtls
/// 0.21 alone failed after 8 s with "invalid state machine transition").
#[test]
fn a_wrong_key_dropped_in_silence_is_named_as_the_driver_runs_it() {
    let start = Instant::now();
    let (mut client, received) = in_memory_dropping(vec![9; 16], true);
    assert!(received.is_empty());
    assert_eq!(client.failure(), None, "no alert reached the client");
    let (failure, after) = until_it_fails(&mut client, start);
    assert!(failure.contains("PSK identity or key"), "{failure}");
    assert!(!failure.contains("state machine"), "{failure}");
    assert!(
        after <= dm_lwm2m::dtls::SILENT_AFTER_FINISHED + Duration::from_secs(1),
        "{after:?}"
    );
}

/// RFC 6347 §4.2.4.1: with no answer, the ClientHello goes again after
/// 1 s, then after 2, 4, 8 and 16 s (rtc-dtls alone: every second, seven
/// times); the handshake gives up at HANDSHAKE_TIMEOUT and says so.
#[test]
fn an_unanswered_flight_is_sent_again_after_doubling_waits() {
    use dm_lwm2m::dtls::HANDSHAKE_TIMEOUT;
    let start = Instant::now();
    let mut client = psk_client(start, "127.0.0.1:40004".parse().unwrap());
    let hello = client.poll_transmit(start).expect("a ClientHello");
    assert!(client.poll_transmit(start).is_none());
    let mut sent_again = Vec::new();
    while client.failure().is_none() {
        let at = client.poll_timeout().expect("a deadline");
        assert!(at <= start + HANDSHAKE_TIMEOUT, "past the time-out");
        client.handle_timeout(at);
        while let Some(datagram) = client.poll_transmit(at) {
            assert_eq!(datagram[0], hello[0], "the ClientHello again");
            sent_again.push(at.duration_since(start).as_secs());
        }
    }
    assert_eq!(sent_again, [1, 3, 7, 15, 31], "seconds after the first");
    let failure = client.failure().unwrap();
    assert!(failure.contains("did not finish within 60 s"), "{failure}");
}

/// The content types of a datagram's records, each with the first byte
/// of its fragment (the handshake message type of a handshake record).
fn record_kinds(mut datagram: &[u8]) -> Vec<(u8, Option<u8>)> {
    let mut kinds = Vec::new();
    while datagram.len() >= 13 {
        let length = usize::from(u16::from_be_bytes([datagram[11], datagram[12]]));
        kinds.push((datagram[0], datagram.get(13).copied()));
        datagram = datagram.get(13 + length..).unwrap_or_default();
    }
    kinds
}

/// rtc-dtls stops its timer when the server repeats its flight because
/// ours, with our Finished, was lost, and would wait for nothing: the
/// client sends its last flight again at once, as it went (RFC 6347
/// §4.2.4), and the handshake ends, the data queued before it delivered.
#[test]
fn a_server_repeating_its_flight_after_our_lost_finished_gets_ours_again() {
    let client_address: SocketAddr = "127.0.0.1:40005".parse().unwrap();
    let mut server = server_endpoint("127.0.0.1:5684".parse().unwrap(), KEY.to_vec());
    let start = Instant::now();
    let mut client = psk_client(start, client_address);
    client.send(start, b"register me");
    let (mut now, mut lost, mut received) = (start, false, Vec::new());
    for _ in 0..20 {
        now += Duration::from_millis(10);
        let mut ours = Vec::new();
        while let Some(datagram) = client.poll_transmit(now) {
            ours.push(datagram);
        }
        if lost {
            // Only the lost flight goes again, not the ones before it.
            assert!(
                !ours
                    .iter()
                    .any(|d| record_kinds(d).contains(&(22, Some(1)))),
                "a ClientHello sent again"
            );
        }
        let with_finished = ours
            .iter()
            .any(|d| record_kinds(d).iter().any(|(kind, _)| *kind == 20));
        if with_finished && !lost {
            // Lost on the way; the server's timer runs out and it sends
            // its flight again (with new record numbers).
            lost = true;
            now += Duration::from_millis(1500);
            server.handle_timeout(client_address, now).unwrap();
        } else {
            for datagram in ours {
                let events = server
                    .read(now, client_address, None, BytesMut::from(&datagram[..]))
                    .unwrap_or_default();
                for event in events {
                    if let EndpointEvent::ApplicationData(data) = event {
                        received.extend_from_slice(&data);
                    }
                }
            }
        }
        while let Some(answer) = server.poll_transmit() {
            client.handle_datagram(now, &answer.message);
        }
        if client.is_connected() && !received.is_empty() {
            break;
        }
    }
    assert!(lost, "our Finished was lost once");
    assert!(client.is_connected(), "{:?}", client.failure());
    assert_eq!(received, b"register me");
}

/// As the driver runs it: a server that stops answering before our
/// Finished is not blamed on the key.
#[test]
fn a_server_that_stops_answering_early_is_not_blamed_on_the_key() {
    let server_address: SocketAddr = "127.0.0.1:5684".parse().unwrap();
    let client_address: SocketAddr = "127.0.0.1:40003".parse().unwrap();
    let mut server = server_endpoint(server_address, KEY.to_vec());
    let start = Instant::now();
    let mut client = psk_client(start, client_address);
    let hello = client.poll_transmit(start).expect("a ClientHello");
    let _ = server.read(start, client_address, None, BytesMut::from(&hello[..]));
    let answer = server.poll_transmit().expect("the server answers");
    client.handle_datagram(start, &answer.message);
    while client.poll_transmit(start).is_some() {}
    let (failure, _) = until_it_fails(&mut client, start);
    assert!(failure.contains("did not finish within 60 s"), "{failure}");
    assert!(!failure.contains("PSK"), "{failure}");
}

/// The ClientHello names a server given by host name in SNI (RFC 6066
/// §3), as servers behind a name-based front end need.
#[test]
fn a_host_name_is_sent_as_sni() {
    let local: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:5684".parse().unwrap();
    let mut client = DtlsClient::connect(
        Instant::now(),
        local,
        remote,
        Some("lwm2m.example.net"),
        &dm_lwm2m::security::Credentials::Psk {
            identity: b"dev1".to_vec(),
            key: KEY.to_vec(),
        },
    )
    .unwrap();
    let hello = client.poll_transmit(Instant::now()).expect("a ClientHello");
    assert!(
        hello
            .windows(b"lwm2m.example.net".len())
            .any(|w| w == b"lwm2m.example.net"),
        "SNI missing"
    );
}
