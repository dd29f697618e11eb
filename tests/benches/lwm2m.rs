//! LwM2M figures: content-format encode/decode of /3/0 and of a
//! 200-instance object, and the round trip of a Read of /3/0 over loopback
//! UDP, plain and through DTLS 1.2 PSK (AES-128-CCM-8), with the server in
//! this process.
//!
//! `cargo bench -p dmagent-tests --bench lwm2m`. Prints µs per operation
//! (best of several passes) and p50/p99 latency over 2,000 reads.

use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use dm_core::{InstanceId, Origin, Path, ResourceValue};
use dm_lwm2m::client::{Client, ClientConfig, type_of};
use dm_lwm2m::coap::Parameters;
use dm_lwm2m::format::{self, ContentFormat, Item};
use dm_lwm2m::mapping::{self, Lwm2mPath};

fn best_micros(passes: usize, mut f: impl FnMut()) -> f64 {
    (0..passes)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .fold(f64::INFINITY, f64::min)
}

fn device_items(tree: &dm_core::Tree) -> Vec<Item> {
    let mut items = Vec::new();
    tree.walk(
        Origin::Agent,
        &Path::instance(dm_core::catalog::device::ID, InstanceId(0)),
        &mut |p, v| {
            if let (Ok(v), Some(path)) = (v, mapping::from_core(&p)) {
                match v {
                    ResourceValue::Single(value) => items.push(Item { path, value }),
                    ResourceValue::Multiple(values) => {
                        for (i, value) in values {
                            items.push(Item {
                                path: Lwm2mPath {
                                    index: Some(i),
                                    ..path
                                },
                                value,
                            });
                        }
                    }
                }
            }
        },
    )
    .unwrap();
    items
}

/// 200 WLAN instances with four resources each.
fn wlan_items() -> Vec<Item> {
    (1..=200u16)
        .flat_map(|i| {
            let at = move |r: u16| Lwm2mPath {
                object: 12,
                instance: Some(i),
                resource: Some(r),
                index: None,
            };
            [
                Item {
                    path: at(0),
                    value: dm_core::Value::String("wlan0".into()),
                },
                Item {
                    path: at(1),
                    value: dm_core::Value::Boolean(true),
                },
                Item {
                    path: at(5),
                    value: dm_core::Value::String(format!("ssid-{i}")),
                },
                Item {
                    path: at(9),
                    value: dm_core::Value::Integer(i64::from(i % 13)),
                },
            ]
        })
        .collect()
}

fn formats(tree: &dm_core::Tree) {
    let cases = [
        ("/3/0", "/3/0".parse().unwrap(), device_items(tree)),
        ("200 x /12", "/12".parse().unwrap(), wlan_items()),
    ];
    println!("content formats, µs per operation (best of 50):");
    for (name, base, items) in &cases {
        for f in [
            ContentFormat::Tlv,
            ContentFormat::SenmlJson,
            ContentFormat::SenmlCbor,
            ContentFormat::LwM2mCbor,
        ] {
            let bytes = format::encode(f, base, items).unwrap();
            let encode = best_micros(50, || {
                black_box(format::encode(f, base, black_box(items)).unwrap());
            });
            let decode = best_micros(50, || {
                black_box(format::decode(f, base, black_box(&bytes), &type_of).unwrap());
            });
            println!(
                "  {name:10} {:10} {:6} bytes  encode {encode:8.1}  decode {decode:8.1}",
                format!("{f:?}"),
                bytes.len()
            );
        }
    }
}

fn latency() {
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").unwrap();
    device.connect(server.local_addr().unwrap()).unwrap();
    server.connect(device.local_addr().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_device = Arc::clone(&stop);
    // The device side: the engine driven by blocking receives.
    let agent = std::thread::spawn(move || {
        let mut client = Client::new(
            ClientConfig {
                endpoint: "bench".into(),
                short_server_id: 101,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            1,
        );
        device
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buffer = [0u8; 2048];
        while !stop_device.load(Ordering::Relaxed) {
            if let Ok(n) = device.recv(&mut buffer) {
                client.handle_datagram(&mut tree, Instant::now(), &buffer[..n]);
                while let Some(out) = client.poll_transmit() {
                    device.send(&out).unwrap();
                }
            }
        }
    });
    let mut samples = Vec::with_capacity(2000);
    let mut buffer = [0u8; 2048];
    for id in 0..2200u16 {
        let mut request = Packet::new();
        request.header.set_type(MessageType::Confirmable);
        request.header.code = MessageClass::Request(RequestType::Get);
        request.header.message_id = id;
        request.set_token(id.to_be_bytes().to_vec());
        request.add_option(CoapOption::UriPath, b"3".to_vec());
        request.add_option(CoapOption::UriPath, b"0".to_vec());
        request.add_option(CoapOption::Accept, 11542u16.to_be_bytes().to_vec());
        let bytes = request.to_bytes().unwrap();
        let start = Instant::now();
        server.send(&bytes).unwrap();
        let n = server.recv(&mut buffer).unwrap();
        let elapsed = start.elapsed();
        assert!(n > 60 && buffer[1] == 0x45, "expected 2.05 Content");
        if id >= 200 {
            samples.push(elapsed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
    samples.sort();
    let p = |q: f64| {
        samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "Read /3/0 (TLV) round trip over loopback UDP, 2,000 reads: p50 {:.0} µs, p99 {:.0} µs",
        p(0.5),
        p(0.99)
    );
}

/// A Read of /3/0 in TLV, as CoAP bytes.
fn read_request(id: u16) -> Vec<u8> {
    let mut request = Packet::new();
    request.header.set_type(MessageType::Confirmable);
    request.header.code = MessageClass::Request(RequestType::Get);
    request.header.message_id = id;
    request.set_token(id.to_be_bytes().to_vec());
    request.add_option(CoapOption::UriPath, b"3".to_vec());
    request.add_option(CoapOption::UriPath, b"0".to_vec());
    request.add_option(CoapOption::Accept, 11542u16.to_be_bytes().to_vec());
    request.to_bytes().unwrap()
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p = |q: f64| {
        samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "{label}, {} reads: p50 {:.0} µs, p99 {:.0} µs",
        samples.len(),
        p(0.5),
        p(0.99)
    );
}

/// The same Read over DTLS: the device side is the agent's engine behind
/// `DtlsClient`; the server side is rtc-dtls in the server role.
fn dtls_latency() {
    use bytes::BytesMut;
    use dm_lwm2m::dtls::DtlsClient;
    use rtc_dtls::endpoint::{Endpoint, EndpointEvent};

    const KEY: [u8; 16] = [7; 16];
    let (platform, _) = dm_tests::platform();
    let mut tree = dm_tests::tree(&platform);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (server_address, device_address) =
        (server.local_addr().unwrap(), device.local_addr().unwrap());
    device.connect(server_address).unwrap();
    server.connect(device_address).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_device = Arc::clone(&stop);
    let agent = std::thread::spawn(move || {
        let mut client = Client::new(
            ClientConfig {
                endpoint: "bench".into(),
                short_server_id: 101,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            1,
        );
        let mut dtls = DtlsClient::connect(
            Instant::now(),
            device_address,
            server_address,
            None,
            &dm_lwm2m::security::Credentials::Psk {
                identity: b"bench".to_vec(),
                key: KEY.to_vec(),
            },
        )
        .unwrap();
        device
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buffer = [0u8; 4096];
        while !stop_device.load(Ordering::Relaxed) {
            while let Some(out) = dtls.poll_transmit(Instant::now()) {
                device.send(&out).unwrap();
            }
            match device.recv(&mut buffer) {
                Ok(n) => dtls.handle_datagram(Instant::now(), &buffer[..n]),
                Err(_) => dtls.handle_timeout(Instant::now()),
            }
            while let Some(plaintext) = dtls.poll_plaintext() {
                client.handle_datagram(&mut tree, Instant::now(), &plaintext);
            }
            while let Some(out) = client.poll_transmit() {
                dtls.send(Instant::now(), &out);
            }
        }
    });
    let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
    let config = rtc_dtls::config::ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_psk(Some(Arc::new(|_: &[u8]| Ok(KEY.to_vec()))))
        .with_cipher_suites(vec![
            rtc_dtls::cipher_suite::CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
        ])
        .build(false, None)
        .unwrap();
    let mut endpoint = Endpoint::new(
        server_address,
        rtc_shared::TransportProtocol::UDP,
        Some(Arc::new(config)),
    );
    let mut buffer = [0u8; 4096];
    // Serves datagrams until `want` plaintext bytes (or the handshake).
    let mut exchange = |endpoint: &mut Endpoint, handshake: bool| -> Vec<u8> {
        loop {
            let n = server.recv(&mut buffer).unwrap();
            let events = endpoint
                .read(
                    Instant::now(),
                    device_address,
                    None,
                    BytesMut::from(&buffer[..n]),
                )
                .unwrap_or_default();
            while let Some(out) = endpoint.poll_transmit() {
                server.send(&out.message).unwrap();
            }
            for event in events {
                match event {
                    EndpointEvent::HandshakeComplete if handshake => return Vec::new(),
                    EndpointEvent::ApplicationData(data) if !handshake => return data.to_vec(),
                    _ => {}
                }
            }
        }
    };
    exchange(&mut endpoint, true);
    let mut samples = Vec::with_capacity(2000);
    for id in 0..2200u16 {
        let start = Instant::now();
        endpoint
            .write(Instant::now(), device_address, &read_request(id))
            .unwrap();
        while let Some(out) = endpoint.poll_transmit() {
            server.send(&out.message).unwrap();
        }
        let reply = exchange(&mut endpoint, false);
        let elapsed = start.elapsed();
        assert!(
            reply.len() > 60 && reply[1] == 0x45,
            "expected 2.05 Content"
        );
        if id >= 200 {
            samples.push(elapsed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
    percentiles(
        "Read /3/0 (TLV) round trip over loopback DTLS 1.2 PSK CCM-8",
        samples,
    );
}

fn main() {
    let (platform, _) = dm_tests::platform();
    let tree = dm_tests::tree(&platform);
    formats(&tree);
    latency();
    dtls_latency();
}
