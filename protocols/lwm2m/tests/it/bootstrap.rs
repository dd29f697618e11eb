//! Client-initiated bootstrap against a scripted bootstrap server, in
//! simulated time: Bootstrap-Request, Delete, Write, Discover, Read limits
//! and Finish with its consistency check.

use crate::NextEvent as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::Tree;
use dm_lwm2m::bootstrap::{self, Account};
use dm_lwm2m::client::{Client, ClientConfig, ClientEvent};
use dm_lwm2m::coap::Parameters;
use dm_lwm2m::format::tlv::{self, Kind};
use dm_objects::{Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};

fn tree() -> Tree {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN-BS".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            lwm2m: vec![Lwm2mServer {
                uri: "coap://127.0.0.1:5693".into(),
                bootstrap: true,
                short_server_id: 0,
                lifetime: 300,
                binding: "U".into(),
                security: SecurityMode::NoSec,
                client_hold_off: 0,
                sni: None,
            }],
            ..Provisioning::default()
        },
    )
    .unwrap();
    tree
}

struct Run {
    tree: Tree,
    client: Client,
    now: Instant,
    id: u16,
}

impl Run {
    /// Sends the Bootstrap-Request and acknowledges it as the bootstrap
    /// server would: the bootstrap has started.
    fn start_bootstrap(&mut self) {
        self.client.bootstrap_request(self.now);
        let request = Packet::from_bytes(&self.client.poll_transmit().unwrap()).unwrap();
        let mut ack = Packet::new();
        ack.header.set_type(MessageType::Acknowledgement);
        ack.header.message_id = request.header.message_id;
        ack.header.code = MessageClass::Response(ResponseType::Changed);
        ack.set_token(request.get_token().to_vec());
        self.client
            .handle_datagram(&mut self.tree, self.now, &ack.to_bytes().unwrap());
        assert_eq!(
            self.client.next_event(),
            Some(ClientEvent::BootstrapStarted)
        );
    }

    fn request(
        &mut self,
        method: RequestType,
        path: &str,
        build: impl FnOnce(&mut Packet),
    ) -> Packet {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        self.id += 1;
        packet.header.message_id = self.id;
        packet.set_token(vec![7, self.id as u8]);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        build(&mut packet);
        self.client
            .handle_datagram(&mut self.tree, self.now, &packet.to_bytes().unwrap());
        Packet::from_bytes(&self.client.poll_transmit().expect("a response")).unwrap()
    }
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(c) => c,
        other => panic!("{other:?}"),
    }
}

fn tlv_instance(resources: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in resources {
        tlv::write(&mut out, Kind::Resource, *id, value);
    }
    out
}

fn with_tlv(payload: Vec<u8>) -> impl FnOnce(&mut Packet) {
    move |p: &mut Packet| {
        p.add_option(CoapOption::ContentFormat, 11542u16.to_be_bytes().to_vec());
        p.payload = payload;
    }
}

#[test]
fn bootstrap_provisions_a_server_account() {
    let mut run = Run {
        tree: tree(),
        client: Client::new(
            ClientConfig {
                endpoint: "dmagent-bs".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            3,
        ),
        now: Instant::now(),
        id: 500,
    };
    run.client.bootstrap_request(run.now);
    let request = Packet::from_bytes(&run.client.poll_transmit().unwrap()).unwrap();
    let query: Vec<String> = request
        .get_option(CoapOption::UriQuery)
        .unwrap()
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(query, ["ep=dmagent-bs", "pct=110"]);
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.message_id = request.header.message_id;
    ack.header.code = MessageClass::Response(ResponseType::Changed);
    ack.set_token(request.get_token().to_vec());
    run.client
        .handle_datagram(&mut run.tree, run.now, &ack.to_bytes().unwrap());
    assert_eq!(run.client.next_event(), Some(ClientEvent::BootstrapStarted));

    // Finishing with no server account is refused.
    assert_eq!(
        code(&run.request(RequestType::Post, "/bs", |_| {})),
        ResponseType::NotAcceptable
    );

    assert_eq!(
        code(&run.request(RequestType::Delete, "/", |_| {})),
        ResponseType::Deleted
    );
    // The bootstrap account survives a Delete of everything.
    assert_eq!(
        run.tree
            .instances(dm_core::catalog::security::ID)
            .unwrap()
            .len(),
        1
    );

    let security = tlv_instance(&[
        (0, b"coap://127.0.0.1:5683".to_vec()),
        (1, vec![0]),
        (2, vec![3]),
        (3, Vec::new()),
        (4, Vec::new()),
        (5, Vec::new()),
        (10, tlv::integer(202)),
    ]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/0/1", with_tlv(security))),
        ResponseType::Changed
    );
    let server = tlv_instance(&[
        (0, tlv::integer(202)),
        (1, tlv::integer(120)),
        (6, vec![1]),
        (7, b"U".to_vec()),
    ]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/1/1", with_tlv(server))),
        ResponseType::Changed
    );

    let discover = run.request(RequestType::Get, "/", |p| {
        p.add_option(CoapOption::Accept, vec![40])
    });
    let links = String::from_utf8(discover.payload).unwrap();
    assert!(links.starts_with("lwm2m=\"1.1\""), "{links}");
    assert!(
        links.contains("</0/1>;ssid=202;uri=\"coap://127.0.0.1:5683\""),
        "{links}"
    );
    assert!(links.contains("</1/1>;ssid=202"), "{links}");
    assert_eq!(
        code(&run.request(RequestType::Get, "/0", |_| {})),
        ResponseType::MethodNotAllowed
    );
    assert_eq!(
        code(&run.request(RequestType::Get, "/1", |_| {})),
        ResponseType::Content
    );

    assert_eq!(
        code(&run.request(RequestType::Post, "/bs", |_| {})),
        ResponseType::Changed
    );
    assert_eq!(
        run.client.next_event(),
        Some(ClientEvent::BootstrapFinished)
    );
    assert_eq!(
        bootstrap::account(&run.tree),
        Some(Account {
            uri: "coap://127.0.0.1:5683".into(),
            short_server_id: 202,
            server_instance: 1,
            credentials: None,
            sni: None,
        })
    );
}

#[test]
fn a_bad_bootstrap_write_leaves_nothing_behind() {
    let mut run = Run {
        tree: tree(),
        client: Client::new(
            ClientConfig {
                endpoint: "dmagent-bs".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            4,
        ),
        now: Instant::now(),
        id: 900,
    };
    run.client.bootstrap_request(run.now);
    let _ = run.client.poll_transmit();
    // Binding "X" is refused by the Server object's rules.
    let server = tlv_instance(&[(0, vec![9]), (1, vec![60]), (7, b"X".to_vec())]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/1/4", with_tlv(server))),
        ResponseType::BadRequest
    );
    assert!(
        run.tree
            .instances(dm_core::catalog::server::ID)
            .unwrap()
            .iter()
            .all(|i| i.0 != 4)
    );
}

#[test]
fn a_bootstrap_server_that_goes_quiet_is_retried_with_backoff() {
    let mut run = Run {
        tree: tree(),
        client: Client::new(
            ClientConfig {
                endpoint: "dmagent-bs".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            5,
        ),
        now: Instant::now(),
        id: 900,
    };
    run.client.bootstrap_request(run.now);
    // A server that accepts every Bootstrap-Request and never finishes:
    // the waits between attempts double from 30 s and stop at an hour
    // (accepting the request is not a success that would reset them).
    let expected = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600];
    for (n, wait) in expected.into_iter().enumerate() {
        let request = Packet::from_bytes(&run.client.poll_transmit().unwrap()).unwrap();
        let path: Vec<String> = request
            .get_option(CoapOption::UriPath)
            .unwrap()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert_eq!(path, ["bs"]);
        let mut ack = Packet::new();
        ack.header.set_type(MessageType::Acknowledgement);
        ack.header.message_id = request.header.message_id;
        ack.header.code = MessageClass::Response(ResponseType::Changed);
        ack.set_token(request.get_token().to_vec());
        run.client
            .handle_datagram(&mut run.tree, run.now, &ack.to_bytes().unwrap());
        assert_eq!(run.client.next_event(), Some(ClientEvent::BootstrapStarted));
        // One operation, then silence: no Bootstrap-Finish ever comes.
        run.request(RequestType::Delete, "/1", |_| {});
        let deadline = run.client.poll_timeout(&run.tree).expect("a deadline");
        assert!(deadline > run.now, "the deadline is in the future");
        run.now = deadline;
        run.client.handle_timeout(&mut run.tree, run.now);
        // Nothing to roll back to but the empty state from before.
        assert_eq!(
            run.client.next_event(),
            Some(ClientEvent::BootstrapRolledBack { error: None })
        );
        let Some(ClientEvent::RegistrationFailed {
            failures, retry_in, ..
        }) = run.client.next_event()
        else {
            panic!("attempt {n}: no failure reported");
        };
        assert_eq!(failures as usize, n + 1);
        assert_eq!(
            retry_in,
            Duration::from_secs(wait),
            "after failure {failures}"
        );
        assert!(run.client.poll_transmit().is_none(), "backing off first");
        // After the back-off, a new Bootstrap-Request.
        let retry = run.client.poll_timeout(&run.tree).expect("a retry");
        assert_eq!(retry - run.now, retry_in);
        run.now = retry;
        run.client.handle_timeout(&mut run.tree, run.now);
    }
}

#[test]
fn a_bootstrap_that_fails_half_way_rolls_back_to_the_previous_accounts() {
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: Arc::new(MemoryNetwork::demo()),
        log: Arc::new(MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    let server = |uri: &str, bootstrap: bool, ssid: u16| Lwm2mServer {
        uri: uri.into(),
        bootstrap,
        short_server_id: ssid,
        lifetime: 300,
        binding: "U".into(),
        security: SecurityMode::NoSec,
        client_hold_off: 0,
        sni: None,
    };
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN-RB".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            lwm2m: vec![
                server("coap://127.0.0.1:5683", false, 101),
                server("coap://127.0.0.1:5693", true, 0),
            ],
            ..Provisioning::default()
        },
    )
    .unwrap();
    let before = bootstrap::account(&tree).expect("a server account");
    let mut run = Run {
        tree,
        client: Client::new(
            ClientConfig {
                endpoint: "dmagent-rb".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            9,
        ),
        now: Instant::now(),
        id: 1200,
    };
    run.start_bootstrap();
    // The bootstrap server deletes everything, then goes quiet.
    assert_eq!(
        code(&run.request(RequestType::Delete, "/", |_| {})),
        ResponseType::Deleted
    );
    assert!(bootstrap::account(&run.tree).is_none());
    let deadline = run.client.poll_timeout(&run.tree).unwrap();
    run.now = deadline;
    run.client.handle_timeout(&mut run.tree, run.now);
    assert_eq!(
        run.client.next_event(),
        Some(ClientEvent::BootstrapRolledBack { error: None })
    );
    assert_eq!(bootstrap::account(&run.tree), Some(before));
    assert!(bootstrap::bootstrap_account(&run.tree).is_some());
}

/// Server-initiated bootstrap (LwM2M Core §6.1.3): within the Client Hold
/// Off Time the client asks nothing and serves the bootstrap server's
/// operations; Finish provisions the account and no Bootstrap-Request is
/// ever sent. Without the server, the Bootstrap-Request goes out once the
/// hold-off has passed.
#[test]
fn the_bootstrap_server_may_start_on_its_own_within_the_hold_off() {
    let hold_off = std::time::Duration::from_secs(10);
    let client = || {
        Client::new(
            ClientConfig {
                endpoint: "dmagent-si".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            5,
        )
    };
    let mut run = Run {
        tree: tree(),
        client: client(),
        now: Instant::now(),
        id: 900,
    };
    run.client.await_bootstrap(run.now, hold_off);
    assert_eq!(run.client.poll_transmit(), None, "nothing asked yet");
    assert_eq!(
        code(&run.request(RequestType::Delete, "/", |_| {})),
        ResponseType::Deleted
    );
    assert_eq!(run.client.next_event(), Some(ClientEvent::BootstrapStarted));
    let security = tlv_instance(&[
        (0, b"coap://127.0.0.1:5683".to_vec()),
        (1, vec![0]),
        (2, vec![3]),
        (3, Vec::new()),
        (4, Vec::new()),
        (5, Vec::new()),
        (10, tlv::integer(303)),
    ]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/0/1", with_tlv(security))),
        ResponseType::Changed
    );
    let server = tlv_instance(&[
        (0, tlv::integer(303)),
        (1, tlv::integer(120)),
        (6, vec![1]),
        (7, b"U".to_vec()),
    ]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/1/1", with_tlv(server))),
        ResponseType::Changed
    );
    assert_eq!(
        code(&run.request(RequestType::Post, "/bs", |_| {})),
        ResponseType::Changed
    );
    assert_eq!(
        run.client.next_event(),
        Some(ClientEvent::BootstrapFinished)
    );
    assert_eq!(
        bootstrap::account(&run.tree).map(|a| a.short_server_id),
        Some(303)
    );
    // The hold-off passes: no Bootstrap-Request.
    run.now += hold_off * 2;
    run.client.handle_timeout(&mut run.tree, run.now);
    assert_eq!(run.client.poll_transmit(), None);

    // A bootstrap server that does not start: the client asks at the end
    // of the hold-off, not before.
    let mut quiet = Run {
        tree: tree(),
        client: client(),
        now: Instant::now(),
        id: 950,
    };
    quiet.client.await_bootstrap(quiet.now, hold_off);
    assert_eq!(
        quiet.client.poll_timeout(&quiet.tree),
        Some(quiet.now + hold_off)
    );
    quiet.now += hold_off;
    quiet.client.handle_timeout(&mut quiet.tree, quiet.now);
    let request =
        Packet::from_bytes(&quiet.client.poll_transmit().expect("Bootstrap-Request")).unwrap();
    assert_eq!(
        request
            .get_option(CoapOption::UriPath)
            .unwrap()
            .front()
            .unwrap(),
        b"bs"
    );
}

/// Security Mode 2 material written by a bootstrap server is checked at
/// Bootstrap-Finish (Core §6.1.7.8): a truncated certificate and a key
/// that is not the certificate's get 4.06 with the reason, and the
/// bootstrap goes on; whole, matching material is accepted, and the
/// account carries it with its Certificate Usage (/0/x/15).
#[test]
fn certificate_material_is_checked_before_bootstrap_finish_is_accepted() {
    use dm_lwm2m::security::{CertificateUsage, Credentials};
    let mut run = Run {
        tree: tree(),
        client: Client::new(
            ClientConfig {
                endpoint: "dmagent-bs".into(),
                short_server_id: 0,
                server_instance: 0,
                nat_timeout: None,
            },
            Parameters::default(),
            5,
        ),
        now: Instant::now(),
        id: 2000,
    };
    run.start_bootstrap();

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let ours_key = rcgen::KeyPair::generate().unwrap();
    let ours = rcgen::CertificateParams::new(vec!["dmagent-bs".to_owned()])
        .unwrap()
        .signed_by(&ours_key, &issuer)
        .unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();

    let write_security = |run: &mut Run, certificate: &[u8], key: &[u8], usage: i64| {
        let security = tlv_instance(&[
            (0, b"coaps://127.0.0.1:5684".to_vec()),
            (1, vec![0]),
            (2, tlv::integer(2)),
            (3, certificate.to_vec()),
            (4, ca.der().to_vec()),
            (5, key.to_vec()),
            (10, tlv::integer(202)),
            (14, b"lwm2m.example.net".to_vec()),
            (15, tlv::integer(usage)),
        ]);
        assert_eq!(
            code(&run.request(RequestType::Put, "/0/1", with_tlv(security))),
            ResponseType::Changed
        );
    };
    let server = tlv_instance(&[
        (0, tlv::integer(202)),
        (1, tlv::integer(120)),
        (6, vec![1]),
        (7, b"U".to_vec()),
    ]);
    assert_eq!(
        code(&run.request(RequestType::Put, "/1/1", with_tlv(server))),
        ResponseType::Changed
    );
    let finish = |run: &mut Run| run.request(RequestType::Post, "/bs", |_| {});

    let truncated = &ours.der()[..ours.der().len() - 10];
    write_security(&mut run, truncated, &ours_key.serialize_der(), 2);
    let refused = finish(&mut run);
    assert_eq!(code(&refused), ResponseType::NotAcceptable);
    let reason = String::from_utf8_lossy(&refused.payload).into_owned();
    assert!(reason.starts_with("/0/1: our certificate"), "{reason}");

    write_security(&mut run, ours.der(), &other_key.serialize_der(), 2);
    let refused = finish(&mut run);
    assert_eq!(code(&refused), ResponseType::NotAcceptable);
    let reason = String::from_utf8_lossy(&refused.payload).into_owned();
    assert!(
        reason.contains("is not the key of our certificate"),
        "{reason}"
    );
    // Nothing of the key is in the answer.
    assert!(
        !refused
            .payload
            .windows(8)
            .any(|w| other_key.serialize_der().windows(8).any(|k| k == w))
    );
    assert_eq!(run.client.next_event(), None);

    // Usage 0 validates to trust anchors this client was not given.
    write_security(&mut run, ours.der(), &ours_key.serialize_der(), 0);
    let refused = finish(&mut run);
    assert_eq!(code(&refused), ResponseType::NotAcceptable);
    let reason = String::from_utf8_lossy(&refused.payload).into_owned();
    assert!(reason.contains("no trust anchors configured"), "{reason}");

    write_security(&mut run, ours.der(), &ours_key.serialize_der(), 2);
    assert_eq!(code(&finish(&mut run)), ResponseType::Changed);
    assert_eq!(
        run.client.next_event(),
        Some(ClientEvent::BootstrapFinished)
    );
    let account = bootstrap::account(&run.tree).unwrap();
    assert_eq!(account.sni.as_deref(), Some("lwm2m.example.net"));
    let Some(Credentials::Certificate(certificates)) = account.credentials else {
        panic!("{account:?}");
    };
    assert_eq!(certificates.chain, ours.der().to_vec());
    assert_eq!(certificates.server, ca.der().to_vec());
    assert_eq!(certificates.usage, CertificateUsage::TrustAnchorAssertion);
}
