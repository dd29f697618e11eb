//! The client engine against a scripted LwM2M server, in simulated time:
//! registration, updates, every device-management operation, observe,
//! retransmission and duplicate detection. No sockets, no clock.

use crate::NextEvent as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::{ChangeKind, InstanceId, Origin, Path, ResourceValue, Tree, Value};
use dm_lwm2m::client::{Client, ClientConfig, ClientEvent};
use dm_lwm2m::coap::Parameters;
use dm_lwm2m::format::{self, ContentFormat};
use dm_objects::{Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use dm_platform::Network as _;
use dm_platform::SystemLog as _;
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use proptest::prelude::*;

struct Fixture {
    tree: Tree,
    network: Arc<MemoryNetwork>,
    log: Arc<MemoryLog>,
    platform: Platform,
    client: Client,
    now: Instant,
    next_id: u16,
}

fn fixture() -> Fixture {
    fixture_on(Arc::new(LinuxHost::default()))
}

fn fixture_on(host: Arc<dyn dm_platform::Host>) -> Fixture {
    fixture_declaring(host, &[])
}

/// A fixture whose tree also serves `declared` objects.
fn fixture_declaring(
    host: Arc<dyn dm_platform::Host>,
    declared: &[dm_objects::declared::Declaration],
) -> Fixture {
    fixture_served(host, declared, None)
}

/// A fixture whose `declared` objects are served by `provider`.
fn fixture_served(
    host: Arc<dyn dm_platform::Host>,
    declared: &[dm_objects::declared::Declaration],
    provider: Option<Arc<dyn dm_objects::declared::Provider>>,
) -> Fixture {
    let network = Arc::new(MemoryNetwork::demo());
    let log = Arc::new(MemoryLog::default());
    let platform = Platform {
        host,
        network: network.clone(),
        log: log.clone(),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::declared::register(&mut tree, declared, &|_| provider.clone()).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::declared::populate(&mut tree, declared, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                manufacturer: "Acme".into(),
                serial_number: "SN1".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            lwm2m: vec![Lwm2mServer {
                uri: "coap://127.0.0.1:5683".into(),
                bootstrap: false,
                short_server_id: 101,
                lifetime: 60,
                binding: "U".into(),
                security: SecurityMode::NoSec,
                client_hold_off: 0,
                sni: None,
            }],
            ..Provisioning::default()
        },
    )
    .unwrap();
    assert!(
        dm_objects::sync_platform(&mut tree, &platform)
            .warnings
            .is_empty()
    );
    let client = Client::new(
        ClientConfig {
            endpoint: "urn:dev:ops:00D09E-test-SN1".into(),
            short_server_id: 101,
            server_instance: 0,
            nat_timeout: None,
        },
        Parameters::default(),
        42,
    );
    Fixture {
        tree,
        network,
        log,
        platform,
        client,
        now: Instant::now(),
        next_id: 1000,
    }
}

fn options(packet: &Packet, option: CoapOption) -> Vec<String> {
    packet
        .get_option(option)
        .map(|v| {
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Fixture {
    /// The next datagram the client sends, decoded.
    fn sent(&mut self) -> Packet {
        let bytes = self
            .client
            .poll_transmit()
            .expect("the client sends something");
        Packet::from_bytes(&bytes).unwrap()
    }

    fn nothing_sent(&mut self) {
        assert!(self.client.poll_transmit().is_none());
    }

    fn deliver(&mut self, packet: &Packet) {
        let bytes = packet.to_bytes().unwrap();
        self.client
            .handle_datagram(&mut self.tree, self.now, &bytes);
    }

    /// Answers a client request with a piggybacked response.
    fn answer(&mut self, request: &Packet, code: ResponseType, location: &[&str]) {
        let mut response = Packet::new();
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
        response.header.code = MessageClass::Response(code);
        response.set_token(request.get_token().to_vec());
        for segment in location {
            response.add_option(CoapOption::LocationPath, segment.as_bytes().to_vec());
        }
        self.deliver(&response);
    }

    fn register(&mut self) {
        self.client.register(&self.tree, self.now);
        let register = self.sent();
        self.answer(&register, ResponseType::Created, &["rd", "5a3f"]);
        assert_eq!(
            self.client.next_event(),
            Some(ClientEvent::Registered {
                location: "/rd/5a3f".into()
            })
        );
    }

    /// Sends a confirmable request from the server and returns the
    /// piggybacked response.
    fn request(
        &mut self,
        method: RequestType,
        path: &str,
        build: impl FnOnce(&mut Packet),
    ) -> Packet {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        self.next_id += 1;
        packet.header.message_id = self.next_id;
        packet.set_token(vec![0xAB, self.next_id as u8]);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        build(&mut packet);
        self.deliver(&packet);
        self.answer_of(&packet)
    }

    /// The response to `packet`, just delivered: piggybacked, or (a change
    /// the host must make first) separate.
    fn answer_of(&mut self, packet: &Packet) -> Packet {
        // Values the host must be asked for first (the system log): an
        // empty ACK now, the reads (here, at once), then the response as a
        // separate confirmable message.
        if let Some(reads) = self.client.poll_host_reads() {
            let ack = self.sent();
            assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
            assert_eq!(ack.header.code, MessageClass::Empty);
            assert_eq!(ack.header.message_id, packet.header.message_id);
            let fetched = reads.run_within(Duration::from_secs(5));
            self.client
                .host_reads_done(&mut self.tree, self.now, fetched);
            return self.separate(packet);
        }
        // A change the host must make first (a Wi-Fi profile): an empty
        // ACK now, the host writes (here, at once), then the response as a
        // separate confirmable message with the request's token.
        if let Some(work) = self.client.poll_host_work() {
            let ack = self.sent();
            assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
            assert_eq!(ack.header.code, MessageClass::Empty);
            assert_eq!(ack.header.message_id, packet.header.message_id);
            let outcome = work.run();
            assert!(
                self.client
                    .host_work_done(&mut self.tree, self.now, outcome)
                    .is_none()
            );
            return self.separate(packet);
        }
        let response = self.sent();
        assert_eq!(response.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(response.header.message_id, packet.header.message_id);
        assert_eq!(response.get_token(), packet.get_token());
        response
    }

    /// A separate response to `packet` (RFC 7252 §5.2.2), acknowledged.
    fn separate(&mut self, packet: &Packet) -> Packet {
        let response = self.sent();
        assert_eq!(response.header.get_type(), MessageType::Confirmable);
        assert_eq!(response.get_token(), packet.get_token());
        let mut ack = Packet::new();
        ack.header.set_type(MessageType::Acknowledgement);
        ack.header.code = MessageClass::Empty;
        ack.header.message_id = response.header.message_id;
        self.deliver(&ack);
        response
    }

    /// Queue mode (binding "UQ") with a lifetime of `lifetime` seconds.
    fn queue_mode(&mut self, lifetime: i64) {
        let at = |r| Path::resource(dm_core::catalog::server::ID, InstanceId(0), r);
        self.tree
            .begin(Origin::Agent)
            .set(
                at(dm_core::catalog::server::BINDING),
                Value::String("UQ".into()),
            )
            .set(
                at(dm_core::catalog::server::LIFETIME),
                Value::Integer(lifetime),
            )
            .commit()
            .unwrap();
    }

    /// The radio reports `dbm`: /4/0/2 changes, and the client hears of
    /// it through `changes`.
    fn signal(&mut self, changes: &dm_core::Subscription, dbm: i32) {
        let mut radio = self.network.radio();
        radio.signal_dbm = Some(dbm);
        self.network.set_radio(radio);
        let _ = dm_objects::sync_platform(&mut self.tree, &self.platform);
        for change in changes.drain() {
            self.client.handle_change(&mut self.tree, self.now, &change);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(&mut self.tree, self.now);
    }
}

/// The raw values of an option.
fn options_bytes(packet: &Packet, option: CoapOption) -> Vec<Vec<u8>> {
    packet
        .get_option(option)
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default()
}

fn code(packet: &Packet) -> ResponseType {
    match packet.header.code {
        MessageClass::Response(code) => code,
        other => panic!("{other:?}"),
    }
}

fn accept(format: ContentFormat) -> impl FnOnce(&mut Packet) {
    move |p: &mut Packet| {
        let n = format.number();
        p.add_option(
            CoapOption::Accept,
            if n < 256 {
                vec![n as u8]
            } else {
                n.to_be_bytes().to_vec()
            },
        );
    }
}

fn content(format: ContentFormat, payload: Vec<u8>) -> impl FnOnce(&mut Packet) {
    move |p: &mut Packet| {
        let n = format.number();
        let bytes = if n == 0 {
            Vec::new()
        } else if n < 256 {
            vec![n as u8]
        } else {
            n.to_be_bytes().to_vec()
        };
        p.add_option(CoapOption::ContentFormat, bytes);
        p.payload = payload;
    }
}

#[test]
fn register_carries_endpoint_lifetime_version_binding_and_objects() {
    let mut f = fixture();
    f.client.register(&f.tree, f.now);
    let register = f.sent();
    assert_eq!(register.header.get_type(), MessageType::Confirmable);
    assert_eq!(
        register.header.code,
        MessageClass::Request(RequestType::Post)
    );
    assert_eq!(options(&register, CoapOption::UriPath), ["rd"]);
    assert_eq!(
        options(&register, CoapOption::UriQuery),
        [
            "ep=urn:dev:ops:00D09E-test-SN1",
            "lt=60",
            "lwm2m=1.1",
            "b=U"
        ]
    );
    let links = String::from_utf8(register.payload.clone()).unwrap();
    assert!(links.starts_with("</>;rt=\"oma.lwm2m\";ct=110,"), "{links}");
    // Field case (Leshan 2.0, whose models are 1.1): the versions of a
    // 1.1 registration, not the catalog's 1.2 ones, or Leshan types every
    // /1 and /5 value as opaque.
    assert!(links.contains(",</1>;ver=1.1,</1/0>,"), "{links}");
    assert!(links.contains(",</3>;ver=1.1,</3/0>,"), "{links}");
    assert!(links.contains(",</4>;ver=1.2,</4/0>,"), "{links}");
    assert!(links.contains(",</5>,</5/0>,"), "{links}");
    assert!(links.contains(",</12>;ver=1.1,</12/1>"), "{links}");
    assert!(
        !links.contains("</0"),
        "Security is never announced: {links}"
    );
    f.answer(&register, ResponseType::Created, &["rd", "5a3f"]);
    assert!(f.client.is_registered());
    // The Update is due at half the lifetime.
    assert_eq!(
        f.client.poll_timeout(&f.tree),
        Some(f.now + Duration::from_secs(30))
    );
}

#[test]
fn updates_keep_the_registration_and_a_forgotten_one_registers_again() {
    let mut f = fixture();
    f.register();
    f.advance(Duration::from_secs(30));
    let update = f.sent();
    assert_eq!(options(&update, CoapOption::UriPath), ["rd", "5a3f"]);
    f.answer(&update, ResponseType::Changed, &[]);
    assert_eq!(f.client.next_event(), Some(ClientEvent::Updated));
    f.advance(Duration::from_secs(30));
    let update = f.sent();
    // The server restarted and lost us: 4.04, then a full Register.
    f.answer(&update, ResponseType::NotFound, &[]);
    let register = f.sent();
    assert_eq!(options(&register, CoapOption::UriPath), ["rd"]);
}

/// Field case (issue 8, Leshan/ThingsBoard behind carrier NAT): with a NAT
/// that forgets idle UDP bindings after 20 s, Updates come every 15 s
/// whatever the lifetime (60 s here, which alone means every 30 s).
#[test]
fn updates_come_before_the_nat_forgets_the_binding() {
    let mut f = fixture();
    f.client = Client::new(
        ClientConfig {
            endpoint: "urn:dev:ops:00D09E-test-SN1".into(),
            short_server_id: 101,
            server_instance: 0,
            nat_timeout: Some(Duration::from_secs(20)),
        },
        Parameters::default(),
        42,
    );
    f.register();
    let registered = f.now;
    for n in 1..=3u32 {
        let due = f.client.poll_timeout(&f.tree).unwrap();
        assert_eq!(due - registered, Duration::from_secs(15) * n, "Update {n}");
        f.now = due;
        f.client.handle_timeout(&mut f.tree, f.now);
        let update = f.sent();
        assert_eq!(options(&update, CoapOption::UriPath), ["rd", "5a3f"]);
        f.answer(&update, ResponseType::Changed, &[]);
        assert_eq!(f.client.next_event(), Some(ClientEvent::Updated));
    }
}

#[test]
fn retransmits_with_backoff_then_gives_up_and_retries_later() {
    let mut f = fixture();
    f.client.register(&f.tree, f.now);
    let first = f.client.poll_transmit().unwrap();
    let mut waits = Vec::new();
    let mut last = f.now;
    for _ in 0..4 {
        let due = f.client.poll_timeout(&f.tree).unwrap();
        waits.push(due - last);
        last = due;
        f.now = due;
        f.client.handle_timeout(&mut f.tree, f.now);
        assert_eq!(
            f.client.poll_transmit().unwrap(),
            first,
            "the same message again"
        );
    }
    // RFC 7252 §4.2: the first wait is in [2, 3) s, then it doubles.
    assert!(
        waits[0] >= Duration::from_secs(2) && waits[0] < Duration::from_secs(3),
        "{waits:?}"
    );
    for pair in waits.windows(2) {
        let ratio = pair[1].as_secs_f64() / pair[0].as_secs_f64();
        assert!((ratio - 2.0).abs() < 1e-6, "{waits:?}");
    }
    let due = f.client.poll_timeout(&f.tree).unwrap();
    f.now = due;
    f.client.handle_timeout(&mut f.tree, f.now);
    assert!(matches!(
        f.client.next_event(),
        Some(ClientEvent::RegistrationFailed { .. })
    ));
    f.nothing_sent();
    // A new Register after the back-off.
    let retry = f.client.poll_timeout(&f.tree).unwrap() - f.now;
    assert_eq!(retry, Duration::from_secs(30));
    f.advance(retry);
    assert_eq!(options(&f.sent(), CoapOption::UriPath), ["rd"]);
}

#[test]
fn read_in_every_format_and_the_default_ones() {
    let mut f = fixture();
    f.register();
    let one = f.request(RequestType::Get, "/3/0/0", |_| {});
    assert_eq!(code(&one), ResponseType::Content);
    // A single value with no Accept: text/plain (LwM2M Core §7.3.1).
    assert_eq!(
        one.get_content_format(),
        Some(coap_lite::ContentFormat::TextPlain)
    );
    assert_eq!(one.payload, b"Acme");
    let tlv = f.request(RequestType::Get, "/3/0", accept(ContentFormat::Tlv));
    assert_eq!(
        options_bytes(&tlv, CoapOption::ContentFormat),
        [11542u16.to_be_bytes().to_vec()]
    );
    let items = format::decode(
        ContentFormat::Tlv,
        &"/3/0".parse().unwrap(),
        &tlv.payload,
        &dm_lwm2m::client::type_of,
    )
    .unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.path.to_string() == "/3/0/2" && i.value == Value::String("SN1".into()))
    );
    // Live values are read from the host.
    assert!(items.iter().any(|i| i.path.to_string() == "/3/0/21"));
    let senml = f.request(RequestType::Get, "/3/0", accept(ContentFormat::SenmlJson));
    let text = String::from_utf8(senml.payload.clone()).unwrap();
    assert!(
        text.starts_with(r#"[{"bn":"/3/0/","n":"0","vs":"Acme"}"#),
        "{text}"
    );
    let multiple = f.request(RequestType::Get, "/4/0/4", |_| {});
    assert_eq!(code(&multiple), ResponseType::Content);
    let one_of = f.request(RequestType::Get, "/4/0/4/0", |_| {});
    assert_eq!(one_of.payload, b"127.0.0.2");
    assert_eq!(
        code(&f.request(RequestType::Get, "/3/0/4", |_| {})),
        ResponseType::MethodNotAllowed
    );
    assert_eq!(
        code(&f.request(RequestType::Get, "/3/1", |_| {})),
        ResponseType::NotFound
    );
    assert_eq!(
        code(&f.request(RequestType::Get, "/77", |_| {})),
        ResponseType::NotFound
    );
    assert_eq!(
        code(&f.request(RequestType::Get, "/3/0", accept(ContentFormat::Text))),
        ResponseType::NotAcceptable
    );
    let weird = f.request(RequestType::Get, "/3/0", |p| {
        p.add_option(CoapOption::Accept, vec![0x03, 0xe7])
    });
    assert_eq!(code(&weird), ResponseType::NotAcceptable);
    assert!(
        !weird.payload.is_empty(),
        "errors carry a diagnostic payload"
    );
}

#[test]
fn write_execute_create_delete_and_discover() {
    let mut f = fixture();
    f.register();
    let changes = f.tree.subscribe(32);
    let write = f.request(
        RequestType::Put,
        "/1/0/1",
        content(ContentFormat::Text, b"120".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::Changed);
    let lifetime = f
        .tree
        .read(
            Origin::Agent,
            &Path::resource(
                dm_core::catalog::server::ID,
                InstanceId(0),
                dm_core::catalog::server::LIFETIME,
            ),
        )
        .unwrap();
    assert_eq!(lifetime, ResourceValue::Single(Value::Integer(120)));
    let seen = changes.drain();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].origin, Origin::Server(101));

    assert_eq!(
        code(&f.request(
            RequestType::Put,
            "/3/0/0",
            content(ContentFormat::Text, b"x".to_vec())
        )),
        ResponseType::MethodNotAllowed
    );
    assert_eq!(
        code(&f.request(
            RequestType::Put,
            "/1/0/1",
            content(ContentFormat::Text, b"soon".to_vec())
        )),
        ResponseType::BadRequest
    );
    assert_eq!(
        code(&f.request(RequestType::Put, "/1/0/1", |p| p.payload = b"1".to_vec())),
        ResponseType::BadRequest
    );

    let execute = f.request(RequestType::Post, "/3/0/4", |_| {});
    assert_eq!(code(&execute), ResponseType::Changed);
    assert!(
        changes
            .drain()
            .iter()
            .any(|c| c.kind == ChangeKind::Executed(String::new()))
    );
    assert_eq!(
        code(&f.request(RequestType::Post, "/3/0/0", |_| {})),
        ResponseType::MethodNotAllowed
    );

    // Create /12 with TLV values; the tree numbers it.
    let mut body = Vec::new();
    dm_lwm2m::format::tlv::write(
        &mut body,
        dm_lwm2m::format::tlv::Kind::Resource,
        5,
        b"guest",
    );
    let created = f.request(RequestType::Post, "/12", content(ContentFormat::Tlv, body));
    assert_eq!(code(&created), ResponseType::Created);
    assert_eq!(options(&created, CoapOption::LocationPath), ["12", "2"]);
    let ssid = f.request(RequestType::Get, "/12/2/5", |_| {});
    assert_eq!(ssid.payload, b"guest");
    // A bad value in a Create leaves nothing behind.
    let mut bad = Vec::new();
    dm_lwm2m::format::tlv::write(
        &mut bad,
        dm_lwm2m::format::tlv::Kind::Resource,
        5,
        &[b'x'; 40],
    );
    assert_eq!(
        code(&f.request(RequestType::Post, "/12", content(ContentFormat::Tlv, bad))),
        ResponseType::BadRequest
    );
    assert_eq!(
        f.tree.instances(dm_core::catalog::wlan::ID).unwrap().len(),
        2
    );

    let discover = f.request(RequestType::Get, "/12/2", accept(ContentFormat::LinkFormat));
    let links = String::from_utf8(discover.payload.clone()).unwrap();
    assert!(links.starts_with("</12/2>,</12/2/0>,</12/2/1>"), "{links}");

    assert_eq!(
        code(&f.request(RequestType::Delete, "/12/2", |_| {})),
        ResponseType::Deleted
    );
    assert_eq!(
        code(&f.request(RequestType::Get, "/12/2/5", |_| {})),
        ResponseType::NotFound
    );
    assert_eq!(
        code(&f.request(RequestType::Delete, "/3/0", |_| {})),
        ResponseType::MethodNotAllowed
    );
}

#[test]
fn a_duplicate_request_is_answered_again_not_executed_again() {
    let mut f = fixture();
    f.register();
    let changes = f.tree.subscribe(8);
    let mut execute = Packet::new();
    execute.header.set_type(MessageType::Confirmable);
    execute.header.code = MessageClass::Request(RequestType::Post);
    execute.header.message_id = 77;
    execute.set_token(vec![9]);
    for segment in ["3", "0", "4"] {
        execute.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    f.deliver(&execute);
    let first = f.client.poll_transmit().unwrap();
    f.deliver(&execute);
    let second = f.client.poll_transmit().unwrap();
    assert_eq!(first, second);
    assert_eq!(changes.drain().len(), 1, "executed once");
}

#[test]
fn observe_notifies_on_change_honouring_pmin_and_pmax_and_stops_on_reset() {
    let mut f = fixture();
    f.register();
    let attrs = f.request(RequestType::Put, "/4/0/2", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=10".to_vec());
        p.add_option(CoapOption::UriQuery, b"pmax=60".to_vec());
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    let discover = f.request(
        RequestType::Get,
        "/4/0/2",
        accept(ContentFormat::LinkFormat),
    );
    assert_eq!(discover.payload, b"</4/0/2>;pmin=10;pmax=60");
    let observe = f.request(RequestType::Get, "/4/0/2", |p| p.set_observe_value(0));
    assert_eq!(code(&observe), ResponseType::Content);
    assert_eq!(observe.payload, b"-71");
    let token = observe.get_token().to_vec();
    assert!(observe.get_observe_value().is_some());

    let changes = f.tree.subscribe(8);
    f.signal(&changes, -80);
    // Changed at once, but pmin holds it back for 10 s.
    f.nothing_sent();
    assert_eq!(
        f.client.poll_timeout(&f.tree),
        Some(f.now + Duration::from_secs(10))
    );
    f.advance(Duration::from_secs(10));
    let notification = f.sent();
    assert_eq!(notification.get_token(), token.as_slice());
    assert_eq!(notification.payload, b"-80");
    assert_eq!(notification.header.get_type(), MessageType::Confirmable);
    let first_seq = notification.get_observe_value().unwrap().unwrap();
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = notification.header.message_id;
    f.deliver(&ack);

    // Unchanged: a notification all the same at pmax (the registration
    // Update falls due in the same span).
    f.advance(Duration::from_secs(60));
    let sent: Vec<Packet> = std::iter::from_fn(|| f.client.poll_transmit())
        .map(|b| Packet::from_bytes(&b).unwrap())
        .collect();
    let at_pmax = sent
        .iter()
        .find(|p| p.get_token() == token.as_slice())
        .expect("a notification at pmax")
        .clone();
    assert_eq!(at_pmax.payload, b"-80");
    assert!(at_pmax.get_observe_value().unwrap().unwrap() > first_seq);
    // The server resets it: the observation ends, nothing is retransmitted.
    let mut reset = Packet::new();
    reset.header.set_type(MessageType::Reset);
    reset.header.code = MessageClass::Empty;
    reset.header.message_id = at_pmax.header.message_id;
    f.deliver(&reset);
    f.advance(Duration::from_secs(120));
    let leftover: Vec<_> = std::iter::from_fn(|| f.client.poll_transmit())
        .map(|b| Packet::from_bytes(&b).unwrap())
        .filter(|p| p.get_token() == token.as_slice())
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
}

#[test]
fn malformed_write_attributes_are_refused() {
    let mut f = fixture();
    f.register();
    for query in ["pmin=abc", "bogus=1", "gt=x"] {
        let response = f.request(RequestType::Put, "/4/0/2", |p| {
            p.add_option(CoapOption::UriQuery, query.as_bytes().to_vec())
        });
        assert_eq!(code(&response), ResponseType::BadRequest, "{query}");
    }
    let inverted = f.request(RequestType::Put, "/4/0/2", |p| {
        p.add_option(CoapOption::UriQuery, b"pmin=50".to_vec());
        p.add_option(CoapOption::UriQuery, b"pmax=10".to_vec());
    });
    assert_eq!(code(&inverted), ResponseType::BadRequest);
}

fn block(number: u32, more: bool, szx: u8) -> Vec<u8> {
    let value = (number << 4) | (u32::from(more) << 3) | u32::from(szx);
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(4);
    bytes[first..].to_vec()
}

fn block_of(packet: &Packet, option: CoapOption) -> (u32, bool, u8) {
    let bytes = packet.get_first_option(option).expect("a block option");
    let value = bytes.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b));
    (value >> 4, value & 8 != 0, (value & 7) as u8)
}

#[test]
fn large_reads_go_out_in_block2_blocks() {
    let mut f = fixture();
    f.register();
    let line = "kernel: eth0: link up, 1000 Mbps, full duplex, flow control rx/tx";
    for _ in 0..60 {
        f.log.append(line);
    }
    let whole = f.log.read_all().unwrap();
    assert!(whole.len() > 3000);
    let instance = f.tree.instances(dm_core::catalog::system_log::ID).unwrap()[0].0;
    let path = format!("/10259/{instance}/1");
    let first = f.request(RequestType::Get, &path, |_| {});
    assert_eq!(code(&first), ResponseType::Content);
    assert_eq!(block_of(&first, CoapOption::Block2), (0, true, 6));
    let size2 = first.get_first_option(CoapOption::Size2).unwrap();
    assert_eq!(
        size2.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
        whole.len()
    );
    let mut received = first.payload.clone();
    // The log grows during the transfer: later blocks still come from the
    // first representation.
    f.log.append("late line");
    let mut number = 1;
    loop {
        let next = f.request(RequestType::Get, &path, |p| {
            p.add_option(CoapOption::Block2, block(number, false, 6))
        });
        let (n, more, _) = block_of(&next, CoapOption::Block2);
        assert_eq!(n, number);
        received.extend_from_slice(&next.payload);
        if !more {
            break;
        }
        number += 1;
    }
    assert_eq!(String::from_utf8(received).unwrap(), whole);
    // A smaller block size on request.
    let small = f.request(RequestType::Get, &path, |p| {
        p.add_option(CoapOption::Block2, block(0, false, 2))
    });
    assert_eq!(small.payload.len(), 64);
    let beyond = f.request(RequestType::Get, &path, |p| {
        p.add_option(CoapOption::Block2, block(999, false, 6))
    });
    assert_eq!(code(&beyond), ResponseType::BadOption);
}

/// A push whose server stops sending blocks is given up after
/// EXCHANGE_LIFETIME: Idle with Update Result 4 (connection lost), and the
/// image store is free again (review finding).
#[test]
fn an_abandoned_push_is_given_up() {
    /// Counts what the engine asks of it.
    #[derive(Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<&'static str>>>);
    impl dm_lwm2m::client::PackageSink for Sink {
        fn begin(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
            self.0.lock().unwrap().push("begin");
            Ok(())
        }
        fn write(&mut self, _: &[u8]) -> Result<(), dm_lwm2m::client::PackageError> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
            self.0.lock().unwrap().push("finish");
            Ok(())
        }
        fn abort(&mut self) {
            self.0.lock().unwrap().push("abort");
        }
    }
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut f = fixture();
    f.client
        .set_package_sink(Box::new(Sink(Arc::clone(&calls))));
    f.register();
    let response = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(0, true, 4));
        p.payload = vec![1; 256];
    });
    assert_eq!(code(&response), ResponseType::Continue);
    let read = |f: &Fixture, r| {
        f.tree
            .read(
                Origin::Agent,
                &Path::resource(dm_core::catalog::firmware::ID, InstanceId(0), r),
            )
            .unwrap()
    };
    assert_eq!(
        read(&f, dm_core::catalog::firmware::STATE),
        ResourceValue::Single(Value::Integer(1))
    );
    f.advance(Parameters::default().exchange_lifetime());
    assert_eq!(
        read(&f, dm_core::catalog::firmware::STATE),
        ResourceValue::Single(Value::Integer(0))
    );
    assert_eq!(
        read(&f, dm_core::catalog::firmware::UPDATE_RESULT),
        ResourceValue::Single(Value::Integer(4))
    );
    assert_eq!(
        *calls.lock().unwrap(),
        ["begin", "abort"],
        "the store is freed"
    );
    // (Updates went out meanwhile.)
    while f.client.poll_transmit().is_some() {}
    // A later block of that push is refused; a new push starts cleanly.
    let late = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(1, false, 4));
        p.payload = vec![1; 10];
    });
    assert_eq!(code(&late), ResponseType::RequestEntityIncomplete);
    let changes = f.tree.subscribe(16);
    let again = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.payload = vec![2; 10];
    });
    assert_eq!(code(&again), ResponseType::Changed);
    // A push reports its progress on the change stream, as pulls do.
    assert!(
        changes.drain().iter().any(|c| c.kind
            == dm_core::ChangeKind::Progress {
                done: 10,
                total: Some(10)
            }),
        "the end of the push is published"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        ["begin", "abort", "begin", "finish"]
    );
}

#[test]
fn a_firmware_package_pushed_in_block1_blocks_is_assembled() {
    let mut f = fixture();
    f.register();
    let image: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<&[u8]> = image.chunks(256).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let more = n + 1 < chunks.len();
        let response = f.request(RequestType::Put, "/5/0/0", |p| {
            p.add_option(CoapOption::ContentFormat, vec![42]);
            p.add_option(CoapOption::Block1, block(n as u32, more, 4));
            if n == 0 {
                p.add_option(
                    CoapOption::Size1,
                    (image.len() as u16).to_be_bytes().to_vec(),
                );
            }
            p.payload = chunk.to_vec();
        });
        let expected = if more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        assert_eq!(code(&response), expected, "block {n}");
        assert_eq!(block_of(&response, CoapOption::Block1), (n as u32, more, 4));
    }
    let package = f
        .tree
        .read(
            Origin::Agent,
            &Path::resource(
                dm_core::catalog::firmware::ID,
                InstanceId(0),
                dm_core::catalog::firmware::PACKAGE,
            ),
        )
        .unwrap();
    assert_eq!(package, ResourceValue::Single(Value::Opaque(image)));

    // A block out of sequence, and a body announced too large.
    let skipped = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(3, true, 4));
        p.payload = vec![0; 256];
    });
    assert_eq!(code(&skipped), ResponseType::RequestEntityIncomplete);
    let huge = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(0, true, 6));
        p.add_option(
            CoapOption::Size1,
            (64u32 * 1024 * 1024).to_be_bytes().to_vec(),
        );
        p.payload = vec![0; 1024];
    });
    assert_eq!(code(&huge), ResponseType::RequestEntityTooLarge);
    assert!(huge.get_first_option(CoapOption::Size1).is_some());
}

#[test]
fn a_new_instance_is_announced_in_an_update_at_once() {
    let mut f = fixture();
    f.register();
    let changes = f.tree.subscribe(8);
    f.tree
        .begin(Origin::Platform)
        .create(dm_core::catalog::wlan::ID, None)
        .commit()
        .unwrap();
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    f.advance(Duration::ZERO);
    let update = f.sent();
    assert_eq!(options(&update, CoapOption::UriPath), ["rd", "5a3f"]);
    let links = String::from_utf8(update.payload.clone()).unwrap();
    assert!(links.contains("</12/1>,</12/2>"), "{links}");
    f.answer(&update, ResponseType::Changed, &[]);
    // A plain value change does not touch the registration.
    f.signal(&changes, -60);
    f.advance(Duration::ZERO);
    f.nothing_sent();
}

/// A host whose free memory the test sets: a live value, read at every
/// read, with no change events.
struct FreeMemory(std::sync::Mutex<u64>);

impl dm_platform::Host for FreeMemory {
    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }
    fn uptime(&self) -> Result<Duration, dm_platform::PlatformError> {
        Ok(Duration::from_secs(100))
    }
    fn memory(&self) -> Result<dm_platform::Memory, dm_platform::PlatformError> {
        Ok(dm_platform::Memory {
            total_kib: 1 << 20,
            free_kib: *self.0.lock().unwrap(),
        })
    }
    fn cpu_usage(&self, _: &str) -> Result<u8, dm_platform::PlatformError> {
        Ok(0)
    }
    fn timezone(&self) -> Option<String> {
        None
    }
    fn utc_offset(&self) -> i32 {
        0
    }
}

/// epmin/epmax (LwM2M Core §5.1.2) on a live value (free memory, /3/0/10):
/// no change event ever comes, so the client samples it every epmax and
/// notifies when it moved by st; never more often than epmin.
#[test]
fn a_live_value_is_sampled_every_epmax_and_reported_when_it_moves() {
    let memory = Arc::new(FreeMemory(std::sync::Mutex::new(1000)));
    let mut f = fixture_on(memory.clone());
    f.register();
    let attrs = f.request(RequestType::Put, "/3/0/10", |p| {
        for q in ["epmin=5", "epmax=20", "st=100"] {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    let observe = f.request(RequestType::Get, "/3/0/10", |p| p.set_observe_value(0));
    assert_eq!(observe.payload, b"1000");
    let token = observe.get_token().to_vec();
    let ours = |f: &mut Fixture| -> Vec<Packet> {
        std::iter::from_fn(|| f.client.poll_transmit())
            .map(|b| Packet::from_bytes(&b).unwrap())
            .filter(|p| p.get_token() == token.as_slice())
            .collect()
    };
    // A small move (< st): sampled at epmax, not reported.
    *memory.0.lock().unwrap() = 1050;
    assert_eq!(
        f.client.poll_timeout(&f.tree),
        Some(f.now + Duration::from_secs(20)),
        "the next sample is due at epmax"
    );
    f.advance(Duration::from_secs(20));
    assert!(ours(&mut f).is_empty());
    // A big one: reported at the next sample.
    *memory.0.lock().unwrap() = 1500;
    f.advance(Duration::from_secs(20));
    let sent = ours(&mut f);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].payload, b"1500");
}

#[test]
fn observations_are_bounded() {
    let mut f = fixture();
    f.register();
    for n in 0..=dm_lwm2m::client::MAX_OBSERVATIONS {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(RequestType::Get);
        packet.header.message_id = 5000 + n as u16;
        packet.set_token((n as u32).to_be_bytes().to_vec());
        for segment in ["3", "0", "0"] {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        packet.set_observe_value(0);
        f.deliver(&packet);
        let response = f.sent();
        let observed = response.get_first_option(CoapOption::Observe).is_some();
        assert_eq!(
            observed,
            n < dm_lwm2m::client::MAX_OBSERVATIONS,
            "observation {n}"
        );
        assert_eq!(response.payload, b"Acme");
    }
}

#[test]
fn queue_mode_wakes_the_server_with_an_update_before_notifying() {
    let mut f = fixture();
    f.queue_mode(300);
    f.client.register(&f.tree, f.now);
    let register = f.sent();
    assert_eq!(
        options(&register, CoapOption::UriQuery),
        [
            "ep=urn:dev:ops:00D09E-test-SN1",
            "lt=300",
            "lwm2m=1.1",
            "b=U",
            "Q"
        ]
    );
    f.answer(&register, ResponseType::Created, &["rd", "q1"]);
    let observe = f.request(RequestType::Get, "/4/0/2", |p| p.set_observe_value(0));
    assert_eq!(code(&observe), ResponseType::Content);
    // Asleep after the awake window, well before the Update at 150 s.
    f.advance(dm_lwm2m::client::AWAKE_WINDOW + Duration::from_secs(1));
    f.nothing_sent();
    let changes = f.tree.subscribe(8);
    f.signal(&changes, -99);
    // No notification while the server sleeps on us: an Update first.
    let wake = f.sent();
    assert_eq!(wake.header.code, MessageClass::Request(RequestType::Post));
    assert_eq!(options(&wake, CoapOption::UriPath), ["rd", "q1"]);
    f.nothing_sent();
    assert!(
        f.client.poll_timeout(&f.tree).is_some_and(|t| t > f.now),
        "no timer spinning"
    );
    f.answer(&wake, ResponseType::Changed, &[]);
    let notification = f.sent();
    assert_eq!(notification.get_token(), observe.get_token());
    assert_eq!(notification.payload, b"-99");
}

/// Queue mode (field interop: Leshan takes a queue-mode client to sleep
/// 93 s after it last heard from it): a change 90 s after the last
/// exchange is notified at once, with no Update before it; from 93 s on
/// the client counts as asleep and wakes the server with an Update first.
#[test]
fn queue_mode_stays_awake_93_seconds_after_the_last_exchange() {
    assert_eq!(dm_lwm2m::client::AWAKE_WINDOW, Duration::from_secs(93));
    let mut f = fixture();
    // The Update falls due at 500 s, after this test's 276 s.
    f.queue_mode(1000);
    f.client.register(&f.tree, f.now);
    let register = f.sent();
    f.answer(&register, ResponseType::Created, &["rd", "q2"]);
    let observe = f.request(RequestType::Get, "/4/0/2", |p| p.set_observe_value(0));
    let changes = f.tree.subscribe(8);
    // Notifications may be confirmable: the server acknowledges them.
    let acknowledge = |f: &mut Fixture, packet: &Packet| {
        if packet.header.get_type() == MessageType::Confirmable {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.code = MessageClass::Empty;
            ack.header.message_id = packet.header.message_id;
            f.deliver(&ack);
        }
    };
    f.advance(Duration::from_secs(90));
    f.nothing_sent();
    f.signal(&changes, -61);
    let direct = f.sent();
    assert_eq!(direct.get_token(), observe.get_token());
    assert_eq!(direct.payload, b"-61");
    acknowledge(&mut f, &direct);
    // The notification was the last exchange: awake until 93 s after it.
    f.advance(Duration::from_secs(92));
    f.signal(&changes, -62);
    let direct = f.sent();
    assert_eq!(
        direct.get_token(),
        observe.get_token(),
        "still awake at 92 s"
    );
    assert_eq!(direct.payload, b"-62");
    acknowledge(&mut f, &direct);
    f.advance(Duration::from_secs(94));
    f.nothing_sent();
    f.signal(&changes, -63);
    let wake = f.sent();
    assert_eq!(wake.header.code, MessageClass::Request(RequestType::Post));
    assert_eq!(options(&wake, CoapOption::UriPath), ["rd", "q2"]);
}

/// Field interop (Leshan and ThingsBoard observe in TLV): an observation
/// made with Accept: TLV is notified in TLV, Content-Format 11542, with
/// the original token and a rising Observe number.
#[test]
fn an_observation_asked_in_tlv_is_notified_in_tlv() {
    let mut f = fixture();
    f.register();
    let observe = f.request(RequestType::Get, "/4/0", |p| {
        p.set_observe_value(0);
        accept(ContentFormat::Tlv)(p);
    });
    assert_eq!(code(&observe), ResponseType::Content);
    let tlv = [11542u16.to_be_bytes().to_vec()];
    assert_eq!(options_bytes(&observe, CoapOption::ContentFormat), tlv);
    let changes = f.tree.subscribe(8);
    f.signal(&changes, -55);
    let notification = f.sent();
    assert_eq!(notification.get_token(), observe.get_token());
    assert!(notification.get_observe_value().is_some());
    assert_eq!(options_bytes(&notification, CoapOption::ContentFormat), tlv);
    let items = format::decode(
        ContentFormat::Tlv,
        &"/4/0".parse().unwrap(),
        &notification.payload,
        &dm_lwm2m::client::type_of,
    )
    .unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.path.to_string() == "/4/0/2" && i.value == dm_core::Value::Integer(-55)),
        "{items:?}"
    );
}

#[test]
fn notifications_made_offline_are_stored_and_sent_after_registering_again() {
    let mut f = fixture();
    f.register();
    let observe = f.request(RequestType::Get, "/4/0/2", |p| p.set_observe_value(0));
    // The Update at 30 s finds the server gone (4.04 then it re-registers).
    f.advance(Duration::from_secs(30));
    let update = f.sent();
    f.answer(&update, ResponseType::NotFound, &[]);
    let register = f.sent();
    let changes = f.tree.subscribe(8);
    f.signal(&changes, -88);
    // Not registered: stored, not sent, and no timer spinning on it.
    f.nothing_sent();
    assert!(f.client.poll_timeout(&f.tree).is_some_and(|t| t > f.now));
    // A second change while offline is stored too.
    f.signal(&changes, -93);
    f.nothing_sent();
    f.answer(&register, ResponseType::Created, &["rd", "again"]);
    let _ = f.client.next_event();
    // Both, in order, with increasing sequence numbers.
    let first = f.sent();
    let second = f.sent();
    assert_eq!(first.get_token(), observe.get_token());
    assert_eq!(first.payload, b"-88");
    assert_eq!(second.payload, b"-93");
    assert!(
        second.get_observe_value().unwrap().unwrap() > first.get_observe_value().unwrap().unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut f = fixture();
        f.register();
        f.client.handle_datagram(&mut f.tree, f.now, &bytes);
        while f.client.poll_transmit().is_some() {}
    }
}

#[test]
fn partial_update_keeps_other_resource_instances_and_replace_drops_them() {
    use dm_lwm2m::format::tlv::{self, Kind};
    let mut f = fixture();
    f.register();
    let bearers = |f: &mut Fixture| match f
        .tree
        .read(
            Origin::Agent,
            &Path::resource(
                dm_core::catalog::bearer_selection::ID,
                InstanceId(0),
                dm_core::catalog::bearer_selection::PREFERRED_COMMUNICATIONS_BEARER,
            ),
        )
        .unwrap()
    {
        ResourceValue::Multiple(values) => values
            .into_iter()
            .map(|(i, v)| (i, v.to_string()))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    // The whole list, written as a resource: replaced.
    let mut list = Vec::new();
    tlv::write(&mut list, Kind::ResourceInstance, 0, &tlv::integer(6));
    tlv::write(&mut list, Kind::ResourceInstance, 1, &tlv::integer(21));
    let mut payload = Vec::new();
    tlv::write(&mut payload, Kind::MultipleResource, 0, &list);
    let put = f.request(
        RequestType::Put,
        "/13/0/0",
        content(ContentFormat::Tlv, payload),
    );
    assert_eq!(code(&put), ResponseType::Changed);
    assert_eq!(bearers(&mut f), [(0, "6".into()), (1, "21".into())]);
    // Partial update of the instance with one more resource instance:
    // the others stay.
    let mut list = Vec::new();
    tlv::write(&mut list, Kind::ResourceInstance, 2, &tlv::integer(41));
    let mut payload = Vec::new();
    tlv::write(&mut payload, Kind::MultipleResource, 0, &list);
    let post = f.request(
        RequestType::Post,
        "/13/0",
        content(ContentFormat::Tlv, payload),
    );
    assert_eq!(code(&post), ResponseType::Changed);
    assert_eq!(
        bearers(&mut f),
        [(0, "6".into()), (1, "21".into()), (2, "41".into())]
    );
    // Replace of the instance without the list: the list is emptied.
    let mut payload = Vec::new();
    tlv::write(&mut payload, Kind::Resource, 1, &tlv::integer(-90));
    let put = f.request(
        RequestType::Put,
        "/13/0",
        content(ContentFormat::Tlv, payload),
    );
    assert_eq!(code(&put), ResponseType::Changed);
    assert_eq!(bearers(&mut f), []);
}

#[test]
fn a_step_attribute_holds_back_small_changes() {
    let mut f = fixture();
    f.register();
    let attrs = f.request(RequestType::Put, "/4/0/2", |p| {
        p.add_option(CoapOption::UriQuery, b"st=5".to_vec());
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    let observe = f.request(RequestType::Get, "/4/0/2", |p| p.set_observe_value(0));
    assert_eq!(observe.payload, b"-71");
    let token = observe.get_token().to_vec();
    let changes = f.tree.subscribe(8);
    // -71 to -74: less than the step, not reported.
    f.signal(&changes, -74);
    f.nothing_sent();
    // -71 to -76: five from the last reported value.
    f.signal(&changes, -76);
    let notification = f.sent();
    assert_eq!(notification.get_token(), token.as_slice());
    assert_eq!(notification.payload, b"-76");
}

#[test]
fn a_large_notification_goes_out_block_wise() {
    let mut f = fixture();
    f.register();
    // A value too large for one block: the log's Name, set by the agent.
    let instance = f.tree.instances(dm_core::catalog::system_log::ID).unwrap()[0];
    let name = Path::resource(
        dm_core::catalog::system_log::ID,
        instance,
        dm_core::catalog::system_log::NAME,
    );
    let line = "kernel: eth0: link up, 1000 Mbps, full duplex, flow control rx/tx\n";
    let set = |f: &mut Fixture, text: String| {
        f.tree
            .begin(Origin::Agent)
            .set(name, Value::String(text))
            .commit()
            .unwrap();
    };
    set(&mut f, line.repeat(40));
    let path = format!("/10259/{}/0", instance.0);
    let changes = f.tree.subscribe(16);
    let observe = f.request(RequestType::Get, &path, |p| p.set_observe_value(0));
    assert_eq!(code(&observe), ResponseType::Content);
    assert!(observe.get_observe_value().is_some());
    let token = observe.get_token().to_vec();
    let whole = format!("{}a new line at the end\n", line.repeat(40));
    set(&mut f, whole.clone());
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    let notification = std::iter::from_fn(|| f.client.poll_transmit())
        .map(|b| Packet::from_bytes(&b).unwrap())
        .find(|p| p.get_token() == token.as_slice())
        .expect("a notification");
    assert!(notification.get_observe_value().is_some());
    assert_eq!(block_of(&notification, CoapOption::Block2), (0, true, 6));
    assert_eq!(notification.payload.len(), 1024);
    let mut received = notification.payload.clone();
    let mut number = 1;
    loop {
        let next = f.request(RequestType::Get, &path, |p| {
            p.add_option(CoapOption::Block2, block(number, false, 6))
        });
        let (n, more, _) = block_of(&next, CoapOption::Block2);
        assert_eq!(n, number);
        received.extend_from_slice(&next.payload);
        if !more {
            break;
        }
        number += 1;
    }
    assert_eq!(String::from_utf8(received).unwrap(), whole);
}

/// The system log is read from the host on request: an Observe of it is
/// answered as a plain GET (RFC 7641 §4.1), since no event would say when
/// to notify and each read moves "since the last read".
#[test]
fn the_system_log_is_read_but_not_observed() {
    let mut f = fixture();
    f.register();
    f.log.append("boot");
    let instance = f.tree.instances(dm_core::catalog::system_log::ID).unwrap()[0].0;
    let path = format!("/10259/{instance}/2");
    let read = f.request(RequestType::Get, &path, |p| p.set_observe_value(0));
    assert_eq!(code(&read), ResponseType::Content);
    assert_eq!(read.payload, b"boot\n");
    assert!(read.get_observe_value().is_none(), "not observed");
    // Nothing fetched is kept for a later read without a fetch.
    let core = Path::resource(
        dm_core::catalog::system_log::ID,
        InstanceId(instance),
        dm_core::catalog::system_log::READ,
    );
    assert!(f.tree.read(Origin::Server(101), &core).is_err());
}

/// A root request (no Uri-Path) with a SenML JSON payload.
fn composite(
    f: &mut Fixture,
    method: RequestType,
    payload: &str,
    build: impl FnOnce(&mut Packet),
) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(method);
    f.next_id += 1;
    packet.header.message_id = f.next_id;
    packet.set_token(vec![0xC0, f.next_id as u8]);
    packet.add_option(CoapOption::ContentFormat, vec![110]);
    packet.payload = payload.as_bytes().to_vec();
    build(&mut packet);
    f.deliver(&packet);
    f.answer_of(&packet)
}

fn senml(payload: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(payload).unwrap()
}

#[test]
fn read_composite_names_values_of_several_objects() {
    let mut f = fixture();
    f.register();
    let response = composite(
        &mut f,
        RequestType::Fetch,
        r#"[{"n":"/3/0/0"},{"n":"/4/0/2"},{"n":"/1/0/1"},{"n":"/3/0/404"}]"#,
        |_| {},
    );
    assert_eq!(code(&response), ResponseType::Content);
    assert_eq!(
        response.get_first_option(CoapOption::ContentFormat),
        Some(&vec![110])
    );
    let records = senml(&response.payload);
    let names: Vec<&str> = records.iter().map(|r| r["n"].as_str().unwrap()).collect();
    // The missing resource is left out; the others are named in full.
    assert_eq!(names, ["/3/0/0", "/4/0/2", "/1/0/1"]);
    assert_eq!(records[0]["vs"], "Acme");
    assert_eq!(records[1]["v"], -71);
    assert_eq!(records[2]["v"], 60);
    // In SenML CBOR on request.
    let cbor = composite(&mut f, RequestType::Fetch, r#"[{"n":"/3/0/0"}]"#, |p| {
        p.add_option(CoapOption::Accept, vec![112])
    });
    assert_eq!(code(&cbor), ResponseType::Content);
    let items = format::decode_composite(ContentFormat::SenmlCbor, &cbor.payload, &|_| {
        Some(dm_core::ValueType::String)
    })
    .unwrap();
    assert_eq!(items[0].value, Value::String("Acme".into()));
    // TLV cannot name paths of several objects.
    let tlv = composite(&mut f, RequestType::Fetch, r#"[{"n":"/3/0/0"}]"#, |p| {
        p.add_option(CoapOption::Accept, 11542u16.to_be_bytes().to_vec())
    });
    assert_eq!(code(&tlv), ResponseType::NotAcceptable);
    let nothing = composite(&mut f, RequestType::Fetch, r#"[{"n":"/3/0/404"}]"#, |_| {});
    assert_eq!(code(&nothing), ResponseType::NotFound);
    let garbage = composite(&mut f, RequestType::Fetch, "[{", |_| {});
    assert_eq!(code(&garbage), ResponseType::BadRequest);
}

#[test]
fn write_composite_is_all_or_nothing() {
    let mut f = fixture();
    f.register();
    let lifetime = Path::resource(
        dm_core::catalog::server::ID,
        InstanceId(0),
        dm_core::catalog::server::LIFETIME,
    );
    let ssid = Path::resource(
        dm_core::catalog::wlan::ID,
        InstanceId(1),
        dm_core::catalog::wlan::SSID,
    );
    let read = |f: &Fixture, p: &Path| f.tree.read(Origin::Agent, p).unwrap();
    let before = (read(&f, &lifetime), read(&f, &ssid));
    // One record is refused (a read-only resource): nothing changes.
    let refused = composite(
        &mut f,
        RequestType::IPatch,
        r#"[{"n":"/1/0/1","v":120},{"n":"/12/1/5","vs":"composite"},{"n":"/3/0/0","vs":"x"}]"#,
        |_| {},
    );
    assert_eq!(code(&refused), ResponseType::MethodNotAllowed);
    assert_eq!((read(&f, &lifetime), read(&f, &ssid)), before);
    let written = composite(
        &mut f,
        RequestType::IPatch,
        r#"[{"bn":"/","n":"1/0/1","v":120},{"n":"12/1/5","vs":"composite"}]"#,
        |_| {},
    );
    assert_eq!(code(&written), ResponseType::Changed);
    assert_eq!(
        read(&f, &lifetime),
        ResourceValue::Single(Value::Integer(120))
    );
    assert_eq!(
        read(&f, &ssid),
        ResourceValue::Single(Value::String("composite".into()))
    );
}

#[test]
fn observe_composite_notifies_when_any_path_changes() {
    let mut f = fixture();
    f.register();
    let observe = composite(
        &mut f,
        RequestType::Fetch,
        r#"[{"n":"/3/0/0"},{"n":"/4/0/2"}]"#,
        |p| p.set_observe_value(0),
    );
    assert_eq!(code(&observe), ResponseType::Content);
    assert!(observe.get_observe_value().is_some());
    let token = observe.get_token().to_vec();
    let changes = f.tree.subscribe(8);
    f.signal(&changes, -90);
    let notification = f.sent();
    assert_eq!(notification.get_token(), token.as_slice());
    let records = senml(&notification.payload);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["n"], "/3/0/0");
    assert_eq!(records[1]["v"], -90);
    // Cancelled with a FETCH and Observe 1.
    let mut cancel = Packet::new();
    cancel.header.set_type(MessageType::Confirmable);
    cancel.header.code = MessageClass::Request(RequestType::Fetch);
    cancel.header.message_id = 4242;
    cancel.set_token(token.clone());
    cancel.add_option(CoapOption::ContentFormat, vec![110]);
    cancel.payload = br#"[{"n":"/3/0/0"},{"n":"/4/0/2"}]"#.to_vec();
    cancel.set_observe_value(1);
    f.deliver(&cancel);
    let _ = f.sent();
    f.signal(&changes, -60);
    f.nothing_sent();
}

#[test]
fn send_posts_values_to_dp_unless_muted() {
    let mut f = fixture();
    let paths = ["/3/0/0".parse().unwrap(), "/4/0/2".parse().unwrap()];
    assert!(
        f.client.send(&f.tree, f.now, &paths).is_err(),
        "not registered"
    );
    f.register();
    f.client.send(&f.tree, f.now, &paths).unwrap();
    let send = f.sent();
    assert_eq!(send.header.code, MessageClass::Request(RequestType::Post));
    assert_eq!(options(&send, CoapOption::UriPath), ["dp"]);
    assert_eq!(
        send.get_first_option(CoapOption::ContentFormat),
        Some(&vec![112])
    );
    let items = format::decode_composite(ContentFormat::SenmlCbor, &send.payload, &|p| {
        Some(if p.object == 3 {
            dm_core::ValueType::String
        } else {
            dm_core::ValueType::Int
        })
    })
    .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].value, Value::Integer(-71));
    f.answer(&send, ResponseType::Changed, &[]);
    assert_eq!(f.client.next_event(), Some(ClientEvent::Sent));
    // The server mutes Send.
    f.tree
        .begin(Origin::Server(101))
        .set(
            Path::resource(
                dm_core::catalog::server::ID,
                InstanceId(0),
                dm_core::catalog::server::MUTE_SEND,
            ),
            Value::Boolean(true),
        )
        .commit()
        .unwrap();
    assert!(f.client.send(&f.tree, f.now, &paths).is_err());
    f.nothing_sent();
}

#[test]
fn server_executables_update_disable_and_ask_for_bootstrap() {
    let mut f = fixture();
    f.register();
    let changes = f.tree.subscribe(16);
    let feed = |f: &mut Fixture| {
        for change in changes.drain() {
            f.client.handle_change(&mut f.tree, f.now, &change);
        }
    };
    // Registration Update Trigger: an Update at once.
    assert_eq!(
        code(&f.request(RequestType::Post, "/1/0/8", |_| {})),
        ResponseType::Changed
    );
    feed(&mut f);
    f.advance(Duration::ZERO);
    let update = f.sent();
    assert_eq!(options(&update, CoapOption::UriPath), ["rd", "5a3f"]);
    f.answer(&update, ResponseType::Changed, &[]);
    assert_eq!(f.client.next_event(), Some(ClientEvent::Updated));

    // Disable with a 30 s timeout: De-register, then Register after 30 s.
    f.tree
        .begin(Origin::Server(101))
        .set(
            Path::resource(
                dm_core::catalog::server::ID,
                InstanceId(0),
                dm_core::catalog::server::DISABLE_TIMEOUT,
            ),
            Value::Integer(30),
        )
        .commit()
        .unwrap();
    assert_eq!(
        code(&f.request(RequestType::Post, "/1/0/4", |_| {})),
        ResponseType::Changed
    );
    feed(&mut f);
    assert!(matches!(
        f.client.next_event(),
        Some(ClientEvent::Disabled { .. })
    ));
    let deregister = f.sent();
    assert_eq!(
        deregister.header.code,
        MessageClass::Request(RequestType::Delete)
    );
    let mut deleted = Packet::new();
    deleted.header.set_type(MessageType::Acknowledgement);
    deleted.header.message_id = deregister.header.message_id;
    deleted.header.code = MessageClass::Response(ResponseType::Deleted);
    deleted.set_token(deregister.get_token().to_vec());
    f.deliver(&deleted);
    assert_eq!(f.client.next_event(), Some(ClientEvent::Deregistered));
    assert_eq!(
        f.client.poll_timeout(&f.tree),
        Some(f.now + Duration::from_secs(30))
    );
    f.advance(Duration::from_secs(30));
    let register = f.sent();
    assert_eq!(options(&register, CoapOption::UriPath), ["rd"]);
    f.answer(&register, ResponseType::Created, &["rd", "77"]);
    assert!(f.client.is_registered());
    f.client.next_event();

    // Bootstrap-Request Trigger: the driver is told.
    assert_eq!(
        code(&f.request(RequestType::Post, "/1/0/9", |_| {})),
        ResponseType::Changed
    );
    feed(&mut f);
    assert_eq!(f.client.next_event(), Some(ClientEvent::BootstrapRequested));
}

/// A sink that keeps what it is given, and can be told to run out of room.
#[derive(Clone, Default)]
struct MemorySink {
    bytes: std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>,
    limit: Option<usize>,
}

impl dm_lwm2m::client::PackageSink for MemorySink {
    fn begin(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
        *self.bytes.lock().unwrap() = (Vec::new(), false);
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), dm_lwm2m::client::PackageError> {
        let mut kept = self.bytes.lock().unwrap();
        if self.limit.is_some_and(|l| kept.0.len() + bytes.len() > l) {
            return Err(dm_lwm2m::client::PackageError::NoSpace("full".into()));
        }
        kept.0.extend_from_slice(bytes);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
        self.bytes.lock().unwrap().1 = true;
        Ok(())
    }
    fn abort(&mut self) {
        *self.bytes.lock().unwrap() = (Vec::new(), false);
    }
}

fn firmware_state(f: &Fixture) -> (Value, Value) {
    let read = |r| match f
        .tree
        .read(
            Origin::Agent,
            &Path::resource(dm_core::catalog::firmware::ID, InstanceId(0), r),
        )
        .unwrap()
    {
        ResourceValue::Single(v) => v,
        other => panic!("{other:?}"),
    };
    (
        read(dm_core::catalog::firmware::STATE),
        read(dm_core::catalog::firmware::UPDATE_RESULT),
    )
}

#[test]
fn a_pushed_package_streams_to_the_sink_and_moves_the_state_machine() {
    let mut f = fixture();
    f.register();
    let sink = MemorySink::default();
    f.client.set_package_sink(Box::new(sink.clone()));
    let image: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    let chunks: Vec<&[u8]> = image.chunks(1024).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let more = n + 1 < chunks.len();
        let response = f.request(RequestType::Put, "/5/0/0", |p| {
            p.add_option(CoapOption::ContentFormat, vec![42]);
            p.add_option(CoapOption::Block1, block(n as u32, more, 6));
            p.payload = chunk.to_vec();
        });
        if more {
            assert_eq!(code(&response), ResponseType::Continue);
            // Downloading while blocks come.
            assert_eq!(firmware_state(&f).0, Value::Integer(1));
        } else {
            assert_eq!(code(&response), ResponseType::Changed);
        }
    }
    let (kept, finished) = sink.bytes.lock().unwrap().clone();
    assert!(finished);
    assert_eq!(kept, image, "the sink got every byte, in order");
    assert_eq!(firmware_state(&f), (Value::Integer(2), Value::Integer(0)));
    // Nothing went into the tree: the image is not state.
    let package = f.tree.read(
        Origin::Agent,
        &Path::resource(
            dm_core::catalog::firmware::ID,
            InstanceId(0),
            dm_core::catalog::firmware::PACKAGE,
        ),
    );
    assert!(
        !matches!(package, Ok(ResourceValue::Single(Value::Opaque(ref b))) if !b.is_empty()),
        "{package:?}"
    );
    // An empty package resets the state machine (LwM2M Core E.6).
    let reset = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
    });
    assert_eq!(code(&reset), ResponseType::Changed);
    assert_eq!(firmware_state(&f), (Value::Integer(0), Value::Integer(0)));
    // Out of room: Idle with Update Result 2, 4.13.
    f.client.set_package_sink(Box::new(MemorySink {
        limit: Some(1500),
        ..MemorySink::default()
    }));
    let first = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::Block1, block(0, true, 6));
        p.payload = vec![1; 1024];
    });
    assert_eq!(code(&first), ResponseType::Continue);
    let second = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::Block1, block(1, true, 6));
        p.payload = vec![1; 1024];
    });
    assert_eq!(code(&second), ResponseType::RequestEntityTooLarge);
    assert_eq!(firmware_state(&f), (Value::Integer(0), Value::Integer(2)));
    // A block out of sequence.
    let skipped = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::Block1, block(4, true, 6));
        p.payload = vec![1; 1024];
    });
    assert_eq!(code(&skipped), ResponseType::RequestEntityIncomplete);
}

/// Access Control between two server accounts (LwM2M Core §7.3.3): an
/// ACL entry grants its bits, the owner has full rights, anyone else none;
/// a server's Create makes it the owner of the new instance (and its
/// Delete removes that Access Control instance); object-level reads and
/// Discover leave out what the server may not read. Instances no Access
/// Control instance names stay open to both (as the Leshan and Wakaama
/// clients serve them).
#[test]
fn access_control_decides_between_two_servers() {
    use dm_core::catalog::{access_control as aco, server, wlan};
    let mut f = fixture();
    let at = |i: u16, r| Path::resource(aco::ID, InstanceId(i), r);
    let mut tx = f.tree.begin(Origin::Agent);
    tx.create(server::ID, Some(InstanceId(1)));
    tx.set(
        Path::resource(server::ID, InstanceId(1), server::SHORT_SERVER_ID),
        Value::Integer(102),
    );
    // /3/0: 101 may read only; 102 is not named and does not own it.
    tx.create(aco::ID, Some(InstanceId(0)));
    tx.set(at(0, aco::OBJECT_ID), Value::Integer(3));
    tx.set(at(0, aco::OBJECT_INSTANCE_ID), Value::Integer(0));
    tx.set_multiple(
        at(0, aco::ACL),
        [(101, Value::Integer(1))].into_iter().collect(),
    );
    tx.set(at(0, aco::ACCESS_CONTROL_OWNER), Value::Integer(101));
    // Create on /12: 101 only.
    tx.create(aco::ID, Some(InstanceId(1)));
    tx.set(at(1, aco::OBJECT_ID), Value::Integer(12));
    tx.set(at(1, aco::OBJECT_INSTANCE_ID), Value::Integer(65535));
    tx.set_multiple(
        at(1, aco::ACL),
        [(101, Value::Integer(16))].into_iter().collect(),
    );
    tx.set(at(1, aco::ACCESS_CONTROL_OWNER), Value::Integer(101));
    tx.commit().unwrap();
    let mut other = Client::new(
        ClientConfig {
            endpoint: "urn:dev:ops:00D09E-test-SN1".into(),
            short_server_id: 102,
            server_instance: 1,
            nat_timeout: None,
        },
        Parameters::default(),
        43,
    );
    f.register();

    // 101: read yes, execute (Reboot) no.
    assert_eq!(
        code(&f.request(RequestType::Get, "/3/0/0", |_| {})),
        ResponseType::Content
    );
    assert_eq!(
        code(&f.request(RequestType::Post, "/3/0/4", |_| {})),
        ResponseType::Unauthorized
    );
    // 101 creates /12/2 and owns it.
    let mut body = Vec::new();
    dm_lwm2m::format::tlv::write(
        &mut body,
        dm_lwm2m::format::tlv::Kind::Resource,
        5,
        b"owned",
    );
    let created = f.request(RequestType::Post, "/12", content(ContentFormat::Tlv, body));
    assert_eq!(code(&created), ResponseType::Created);
    let controls = f.tree.instances(aco::ID).unwrap();
    assert_eq!(controls.len(), 3, "an Access Control instance for /12/2");

    std::mem::swap(&mut f.client, &mut other);
    f.register();
    // 102: nothing on /3/0, no Create on /12, nothing on 101's /12/2.
    for (method, path) in [
        (RequestType::Get, "/3/0/0"),
        (RequestType::Get, "/3/0"),
        (RequestType::Post, "/3/0/4"),
        (RequestType::Get, "/12/2/5"),
        (RequestType::Delete, "/12/2"),
    ] {
        assert_eq!(
            code(&f.request(method, path, |_| {})),
            ResponseType::Unauthorized,
            "{method:?} {path}"
        );
    }
    let mut body = Vec::new();
    dm_lwm2m::format::tlv::write(&mut body, dm_lwm2m::format::tlv::Kind::Resource, 5, b"mine");
    assert_eq!(
        code(&f.request(RequestType::Post, "/12", content(ContentFormat::Tlv, body))),
        ResponseType::Unauthorized
    );
    // Nor touch 101's account, nor grant itself rights (only an owner
    // changes an ACL); its own account is its own.
    for (method, path) in [
        (RequestType::Get, "/1/0/1"),
        (RequestType::Post, "/1/0/4"),
        (RequestType::Delete, "/1/0"),
    ] {
        assert_eq!(
            code(&f.request(method, path, |_| {})),
            ResponseType::Unauthorized,
            "{method:?} {path}"
        );
    }
    assert_eq!(
        code(&f.request(RequestType::Get, "/1/1/0", |_| {})),
        ResponseType::Content
    );
    assert_eq!(
        code(&f.request(
            RequestType::Put,
            "/2/0/2/102",
            content(ContentFormat::Text, b"31".to_vec())
        )),
        ResponseType::Unauthorized
    );
    // Instances no Access Control instance names: open. An object-level
    // read and a Discover show them, not /12/2.
    let read = f.request(RequestType::Get, "/12", accept(ContentFormat::SenmlJson));
    assert_eq!(code(&read), ResponseType::Content);
    let text = String::from_utf8(read.payload.clone()).unwrap();
    assert!(
        text.contains("\"n\":\"1/0\"") && !text.contains("\"n\":\"2/"),
        "{text}"
    );
    let discover = f.request(RequestType::Get, "/12", accept(ContentFormat::LinkFormat));
    let links = String::from_utf8(discover.payload.clone()).unwrap();
    assert!(
        links.contains("</12/1>") && !links.contains("</12/2>"),
        "{links}"
    );
    assert_eq!(
        code(&f.request(
            RequestType::Put,
            "/12/1/5",
            content(ContentFormat::Text, b"open".to_vec())
        )),
        ResponseType::Changed
    );

    // Back to 101: it deletes its instance, and its Access Control goes.
    std::mem::swap(&mut f.client, &mut other);
    assert_eq!(
        code(&f.request(RequestType::Delete, "/12/2", |_| {})),
        ResponseType::Deleted
    );
    assert_eq!(f.tree.instances(aco::ID).unwrap().len(), 2);
    assert_eq!(f.tree.instances(wlan::ID).unwrap().len(), 1);
}

/// A deletion handled after the instance was written again (a bootstrap
/// server deletes and rewrites accounts with their ACLs) keeps the new
/// Access Control instance.
#[test]
fn a_late_deletion_change_keeps_the_access_control_of_a_rewritten_instance() {
    use dm_core::catalog::{access_control as aco, wlan};
    let mut f = fixture();
    let changes = f.tree.subscribe(64);
    let at = |r| Path::resource(aco::ID, InstanceId(0), r);
    f.tree
        .begin(Origin::Agent)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    // Rewritten before the deletion's change is handled.
    let mut tx = f.tree.begin(Origin::Agent);
    tx.create(wlan::ID, Some(InstanceId(1)));
    tx.create(aco::ID, Some(InstanceId(0)));
    tx.set(at(aco::OBJECT_ID), Value::Integer(12));
    tx.set(at(aco::OBJECT_INSTANCE_ID), Value::Integer(1));
    tx.set(at(aco::ACCESS_CONTROL_OWNER), Value::Integer(101));
    tx.commit().unwrap();
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    assert_eq!(f.tree.instances(aco::ID).unwrap(), [InstanceId(0)]);
    // Deleted for good: its Access Control goes.
    f.tree
        .begin(Origin::Agent)
        .delete(wlan::ID, InstanceId(1))
        .commit()
        .unwrap();
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    assert!(f.tree.instances(aco::ID).unwrap().is_empty());
}

/// Hostile input: with one server account, a management server got 2.01
/// for an empty Create on /0 and /1 and 2.02 for Delete of /0/0 and /1/0,
/// and the deletes persisted (after a restart the agent registered with
/// the default lifetime). Security is the bootstrap server's alone (object
/// 0: "MUST NOT be accessible by any other LwM2M Server"); accounts and
/// Access Control instances are not a management server's to make or
/// remove.
#[test]
fn a_server_cannot_reach_security_nor_make_or_remove_accounts() {
    let mut f = fixture();
    f.register();
    let before = f.tree.snapshot();
    for (method, path) in [
        (RequestType::Get, "/0"),
        (RequestType::Get, "/0/0"),
        (RequestType::Get, "/0/0/0"),
        (RequestType::Post, "/0"),
        (RequestType::Put, "/0/0/0"),
        (RequestType::Delete, "/0/0"),
    ] {
        let response = f.request(method, path, |_| {});
        assert_eq!(code(&response), ResponseType::NotFound, "{method:?} {path}");
    }
    let discover = f.request(RequestType::Get, "/0", accept(ContentFormat::LinkFormat));
    assert_eq!(code(&discover), ResponseType::NotFound);
    for (method, path) in [
        (RequestType::Post, "/1"),
        (RequestType::Delete, "/1/0"),
        (RequestType::Post, "/2"),
    ] {
        assert_eq!(
            code(&f.request(method, path, |_| {})),
            ResponseType::Unauthorized,
            "{method:?} {path}"
        );
    }
    // Composite reads leave /0 out as if it were not there.
    let fetch = f.request(RequestType::Fetch, "/", |p| {
        content(ContentFormat::SenmlJson, br#"[{"n":"/0/0/0"}]"#.to_vec())(p)
    });
    assert_eq!(code(&fetch), ResponseType::NotFound);
    assert_eq!(f.tree.snapshot(), before, "nothing changed");
    // Its own account stays its own to read and write.
    let write = f.request(
        RequestType::Put,
        "/1/0/1",
        content(ContentFormat::Text, b"1000".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::Changed);
}

/// Hostile input: a write of `ab\x01\x00cd` got 2.04, and the next CWMP
/// GetParameterValues was no longer well-formed XML. What one protocol
/// stores the others must be able to report: 4.00, nothing stored.
#[test]
fn strings_xml_cannot_carry_are_refused() {
    let mut f = fixture();
    f.register();
    let mut body = Vec::new();
    dm_lwm2m::format::tlv::write(
        &mut body,
        dm_lwm2m::format::tlv::Kind::Resource,
        5,
        b"guest",
    );
    let created = f.request(RequestType::Post, "/12", content(ContentFormat::Tlv, body));
    assert_eq!(code(&created), ResponseType::Created);
    let instance: u16 = options(&created, CoapOption::LocationPath)[1]
        .parse()
        .unwrap();
    let path = Path::resource(
        dm_core::catalog::wlan::ID,
        InstanceId(instance),
        dm_core::ResourceId(5),
    );
    let uri = format!("/12/{instance}/5");
    let write = f.request(
        RequestType::Put,
        &uri,
        content(ContentFormat::Text, b"ab\x01\x00cd".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::BadRequest);
    assert!(
        String::from_utf8_lossy(&write.payload).contains("U+0001"),
        "{:?}",
        write.payload
    );
    assert_eq!(
        f.tree.read(Origin::Agent, &path).unwrap(),
        ResourceValue::Single(Value::String("guest".into()))
    );
    let write = f.request(
        RequestType::Put,
        &uri,
        content(ContentFormat::Text, b"office".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::Changed);
}

/// Hostile input: a Read-Composite naming /3 a hundred times (and
/// values under it again) reads and encodes /3 once, not 100 times (a Block1
/// body of 1 MiB could name it 100,000 times).
#[test]
fn a_composite_read_names_each_value_once() {
    let mut f = fixture();
    f.register();
    let size = |response: &Packet| {
        response
            .get_first_option(CoapOption::Size2)
            .map_or(response.payload.len() as u64, |v| {
                v.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
            })
    };
    let once = composite(&mut f, RequestType::Fetch, r#"[{"n":"/3"}]"#, |_| {});
    assert_eq!(code(&once), ResponseType::Content);
    let mut names = vec![r#"{"n":"/3/0/0"}"#.to_owned()];
    names.extend(std::iter::repeat_n(r#"{"n":"/3"}"#.to_owned(), 100));
    names.push(r#"{"n":"/3/0"}"#.to_owned());
    let payload = format!("[{}]", names.join(","));
    let many = composite(&mut f, RequestType::Fetch, &payload, |_| {});
    assert_eq!(code(&many), ResponseType::Content);
    assert_eq!(size(&many), size(&once));
}

/// Hostile input: 3,000 empty Creates of /12 were all accepted. Past the
/// instance limit a Create is 5.00 with the limit in the diagnostic, and
/// nothing is created.
#[test]
fn creates_past_the_instance_limit_are_refused() {
    let mut f = fixture();
    f.register();
    let have = f.tree.instances(dm_core::catalog::wlan::ID).unwrap().len();
    f.tree.set_instance_limit(have + 2);
    for _ in 0..2 {
        let created = f.request(RequestType::Post, "/12", |_| {});
        assert_eq!(code(&created), ResponseType::Created);
    }
    let refused = f.request(RequestType::Post, "/12", |_| {});
    assert_eq!(code(&refused), ResponseType::InternalServerError);
    assert!(
        String::from_utf8_lossy(&refused.payload).contains(&format!("no more than {}", have + 2)),
        "{:?}",
        refused.payload
    );
    assert_eq!(
        f.tree.instances(dm_core::catalog::wlan::ID).unwrap().len(),
        have + 2
    );
}

/// Field case (Leshan 2.0): after the server wrote /1/0/1 = 1000 the next
/// Update carried nothing, Leshan kept 300 s and expired the
/// registration. The Update goes at once and carries lt= (and b= when the
/// binding changed); the following one carries neither; the next Update
/// comes at half the new lifetime.
#[test]
fn a_lifetime_the_server_writes_reaches_it_in_the_next_update() {
    let mut f = fixture();
    f.register();
    let changes = f.tree.subscribe(16);
    let write = f.request(
        RequestType::Put,
        "/1/0/1",
        content(ContentFormat::Text, b"1000".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::Changed);
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    assert_eq!(f.client.poll_timeout(&f.tree), Some(f.now), "due at once");
    f.advance(Duration::ZERO);
    let update = f.sent();
    assert_eq!(options(&update, CoapOption::UriPath), ["rd", "5a3f"]);
    assert_eq!(options(&update, CoapOption::UriQuery), ["lt=1000"]);
    f.answer(&update, ResponseType::Changed, &[]);
    assert_eq!(f.client.next_event(), Some(ClientEvent::Updated));
    assert_eq!(
        f.client.poll_timeout(&f.tree),
        Some(f.now + Duration::from_secs(500))
    );
    f.advance(Duration::from_secs(500));
    let update = f.sent();
    assert!(options(&update, CoapOption::UriQuery).is_empty());
    f.answer(&update, ResponseType::Changed, &[]);
    // The binding: b= and Q when queue mode comes with it.
    f.queue_mode(1000);
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    assert_eq!(f.client.poll_timeout(&f.tree), Some(f.now), "due at once");
    f.advance(Duration::ZERO);
    let update = f.sent();
    assert_eq!(options(&update, CoapOption::UriQuery), ["b=U", "Q"]);
}

/// A host whose clock the test moves.
struct Clock(std::sync::Mutex<u64>);

impl dm_platform::Host for Clock {
    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(*self.0.lock().unwrap())
    }
    fn uptime(&self) -> Result<Duration, dm_platform::PlatformError> {
        Ok(Duration::from_secs(100))
    }
    fn memory(&self) -> Result<dm_platform::Memory, dm_platform::PlatformError> {
        Ok(dm_platform::Memory {
            total_kib: 1 << 20,
            free_kib: 1 << 19,
        })
    }
    fn cpu_usage(&self, _: &str) -> Result<u8, dm_platform::PlatformError> {
        Ok(0)
    }
    fn timezone(&self) -> Option<String> {
        None
    }
    fn utc_offset(&self) -> i32 {
        0
    }
}

/// Field case (Anjay's demo beside ours, Leshan observing): /3/0/13 Current
/// Time with pmin=2 pmax=5 was notified only at pmax, and with epmax=1
/// never (the change check ignored dateTime values). A value computed
/// when read is sampled at pmin and notified when it changed, whatever
/// its type; with epmax, every epmax, reported once pmin allows.
#[test]
fn a_computed_value_is_notified_at_pmin_when_it_changed() {
    let clock = Arc::new(Clock(std::sync::Mutex::new(1_800_000_000)));
    let mut f = fixture_on(clock.clone());
    f.register();
    let attrs = f.request(RequestType::Put, "/3/0/13", |p| {
        for q in ["pmin=2", "pmax=5"] {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    let observe = f.request(RequestType::Get, "/3/0/13", |p| p.set_observe_value(0));
    assert_eq!(observe.payload, b"1800000000");
    let token = observe.get_token().to_vec();
    // Each notification is acknowledged, as a server does: none comes
    // twice.
    let ours = |f: &mut Fixture| -> Vec<Packet> {
        let sent: Vec<Packet> = std::iter::from_fn(|| f.client.poll_transmit())
            .map(|b| Packet::from_bytes(&b).unwrap())
            .filter(|p| p.get_token() == token.as_slice())
            .collect();
        for packet in &sent {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.code = MessageClass::Empty;
            ack.header.message_id = packet.header.message_id;
            f.deliver(&ack);
        }
        sent
    };
    // The clock moves every second; the next notification comes at pmin.
    for second in 1..=2u64 {
        *clock.0.lock().unwrap() = 1_800_000_000 + second;
        f.advance(Duration::from_secs(1));
    }
    let sent = ours(&mut f);
    assert_eq!(sent.len(), 1, "at pmin, not pmax: {sent:?}");
    assert_eq!(sent[0].payload, b"1800000002");
    // Unchanged: nothing at pmin, the pmax notification only.
    f.advance(Duration::from_secs(2));
    assert!(ours(&mut f).is_empty());
    f.advance(Duration::from_secs(3));
    let sent = ours(&mut f);
    assert_eq!(sent.len(), 1, "at pmax: {sent:?}");
    // epmax=1 with pmin=2: sampled every second, reported at pmin.
    let attrs = f.request(RequestType::Put, "/3/0/13", |p| {
        p.add_option(CoapOption::UriQuery, b"epmax=1".to_vec());
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    *clock.0.lock().unwrap() += 10;
    f.advance(Duration::from_secs(1));
    assert!(ours(&mut f).is_empty(), "not before pmin");
    f.advance(Duration::from_secs(1));
    let sent = ours(&mut f);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].payload, b"1800000012");
}

/// Field case: the /10259 "read since last read" cursor was consumed by
/// every CWMP Inform and by each Block2 block of a large read, so a server
/// lost log lines. Each reader has its own cursor, and a block-wise read
/// takes one body at its first block.
#[test]
fn each_reader_has_its_own_log_cursor_and_a_block_wise_read_takes_one_body() {
    let mut f = fixture();
    f.register();
    let line = "kernel: eth0: link up, 1000 Mbps, full duplex, flow control rx/tx";
    for _ in 0..40 {
        f.log.append(line);
    }
    let instance = f.tree.instances(dm_core::catalog::system_log::ID).unwrap()[0].0;
    let path = format!("/10259/{instance}/2");
    let core = Path::resource(
        dm_core::catalog::system_log::ID,
        InstanceId(instance),
        dm_core::catalog::system_log::READ,
    );
    // What the ACS (or any other origin) would read, fetched from the host.
    let read_as = |tree: &mut Tree, origin: Origin| {
        let reads = tree.host_reads(origin, &[core]);
        tree.supply(reads.run_within(Duration::from_secs(5)));
        tree.read(origin, &core).unwrap()
    };
    // The ACS reads first.
    let acs = read_as(&mut f.tree, Origin::Acs);
    assert_eq!(
        acs,
        ResourceValue::Single(Value::String(f.log.read_all().unwrap()))
    );
    // The server still gets every line, block by block, from one body.
    let first = f.request(RequestType::Get, &path, |_| {});
    assert_eq!(block_of(&first, CoapOption::Block2), (0, true, 6));
    let mut received = first.payload.clone();
    let mut number = 1;
    loop {
        let next = f.request(RequestType::Get, &path, |p| {
            p.add_option(CoapOption::Block2, block(number, false, 6))
        });
        received.extend_from_slice(&next.payload);
        if !block_of(&next, CoapOption::Block2).1 {
            break;
        }
        number += 1;
    }
    assert_eq!(
        String::from_utf8(received).unwrap(),
        f.log.read_all().unwrap()
    );
    // Since its last read: nothing new for the server, one line for the
    // ACS, and the ACS's read took nothing from the server.
    f.log.append("one more");
    let again = f.request(RequestType::Get, &path, |_| {});
    assert_eq!(again.payload, b"one more\n");
    let again = f.request(RequestType::Get, &path, |_| {});
    assert_eq!(again.payload, b"");
    assert_eq!(
        read_as(&mut f.tree, Origin::Acs),
        ResourceValue::Single(Value::String("one more\n".into()))
    );
}

/// Field case: /5/0/10 Cancel was answered 2.04 and ignored. During a
/// push the engine drops it (the sink is aborted, later blocks are out of
/// sequence); in Updating, Cancel is 4.05 (object 5: "Method Not
/// Allowed"); with nothing to cancel, 4.00.
#[test]
fn cancel_ends_a_push_being_received() {
    #[derive(Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<&'static str>>>);
    impl dm_lwm2m::client::PackageSink for Sink {
        fn begin(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
            self.0.lock().unwrap().push("begin");
            Ok(())
        }
        fn write(&mut self, _: &[u8]) -> Result<(), dm_lwm2m::client::PackageError> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), dm_lwm2m::client::PackageError> {
            self.0.lock().unwrap().push("finish");
            Ok(())
        }
        fn abort(&mut self) {
            self.0.lock().unwrap().push("abort");
        }
    }
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut f = fixture();
    f.client
        .set_package_sink(Box::new(Sink(Arc::clone(&calls))));
    f.register();
    let changes = f.tree.subscribe(16);
    assert_eq!(
        code(&f.request(RequestType::Post, "/5/0/10", |_| {})),
        ResponseType::BadRequest,
        "nothing to cancel"
    );
    let first = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(0, true, 4));
        p.payload = vec![1; 256];
    });
    assert_eq!(code(&first), ResponseType::Continue);
    let cancel = f.request(RequestType::Post, "/5/0/10", |_| {});
    assert_eq!(code(&cancel), ResponseType::Changed);
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    assert_eq!(*calls.lock().unwrap(), ["begin", "abort"]);
    let late = f.request(RequestType::Put, "/5/0/0", |p| {
        p.add_option(CoapOption::ContentFormat, vec![42]);
        p.add_option(CoapOption::Block1, block(1, false, 4));
        p.payload = vec![1; 10];
    });
    assert_eq!(code(&late), ResponseType::RequestEntityIncomplete);
    // Installing: Method Not Allowed.
    f.tree
        .begin(Origin::Agent)
        .set(
            Path::resource(
                dm_core::catalog::firmware::ID,
                InstanceId(0),
                dm_core::catalog::firmware::STATE,
            ),
            Value::Integer(3),
        )
        .commit()
        .unwrap();
    assert_eq!(
        code(&f.request(RequestType::Post, "/5/0/10", |_| {})),
        ResponseType::MethodNotAllowed
    );
}

/// Field case (Leshan and servers built for LwM2M 1.0): the 1.0 JSON
/// format (11543) is served, read and written; plain CBOR (60) for a
/// single resource (Core §7.4); Discover gives a multiple resource's
/// number of instances (dim).
#[test]
fn the_1_0_json_format_plain_cbor_and_discover_dim() {
    let mut f = fixture();
    f.register();
    let read = f.request(RequestType::Get, "/3/0", accept(ContentFormat::LwM2mJson));
    assert_eq!(code(&read), ResponseType::Content);
    assert_eq!(
        read.get_first_option(CoapOption::ContentFormat),
        Some(&11543u16.to_be_bytes().to_vec())
    );
    let json: serde_json::Value = serde_json::from_slice(&read.payload).unwrap();
    assert_eq!(json["bn"], "/3/0/");
    let entries = json["e"].as_array().unwrap();
    assert!(
        entries.contains(&serde_json::json!({"n": "0", "sv": "Acme"})),
        "{json}"
    );
    let write = f.request(RequestType::Put, "/1/0/1", |p| {
        content(
            ContentFormat::LwM2mJson,
            br#"{"bn":"/1/0/1","e":[{"v":240}]}"#.to_vec(),
        )(p)
    });
    assert_eq!(code(&write), ResponseType::Changed);
    let lifetime = f.request(RequestType::Get, "/1/0/1", accept(ContentFormat::Cbor));
    assert_eq!(code(&lifetime), ResponseType::Content);
    assert_eq!(lifetime.payload, [0x18, 240], "CBOR unsigned 240");
    let write = f.request(
        RequestType::Put,
        "/1/0/1",
        content(ContentFormat::Cbor, vec![0x19, 0x01, 0x2c]),
    );
    assert_eq!(code(&write), ResponseType::Changed);
    let name = f.request(RequestType::Get, "/3/0/0", accept(ContentFormat::Cbor));
    assert_eq!(name.payload, [0x64, b'A', b'c', b'm', b'e']);
    // Plain CBOR carries one value only.
    let whole = f.request(RequestType::Get, "/3/0", accept(ContentFormat::Cbor));
    assert_eq!(code(&whole), ResponseType::NotAcceptable);
    let discover = f.request(RequestType::Get, "/3/0", accept(ContentFormat::LinkFormat));
    let links = String::from_utf8(discover.payload).unwrap();
    assert!(links.contains("</3/0/11>;dim=1"), "{links}");
    assert!(
        links.contains("</3/0/0>,") && !links.contains("</3/0/0>;dim"),
        "{links}"
    );
}

/// The host boundary in the engine: a write of a mirrored object (a Wi-Fi
/// profile) is acknowledged at once and answered when the host has made
/// it, with a separate response; meanwhile the server's other requests
/// are served, a second change that must wait is 5.03, a retransmission of
/// the waiting request gets the empty ACK again, and a host that refuses
/// makes the response an error with nothing changed.
#[test]
fn a_write_the_host_must_make_is_answered_when_it_is_made() {
    let mut f = fixture();
    f.register();
    let ssid = Path::resource(
        dm_core::catalog::wlan::ID,
        InstanceId(1),
        dm_core::catalog::wlan::SSID,
    );
    let mut write = Packet::new();
    write.header.set_type(MessageType::Confirmable);
    write.header.code = MessageClass::Request(RequestType::Put);
    write.header.message_id = 4242;
    write.set_token(vec![0xEE, 1]);
    for segment in ["12", "1", "5"] {
        write.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    content(ContentFormat::Text, b"office".to_vec())(&mut write);
    f.deliver(&write);
    let work = f
        .client
        .poll_host_work()
        .expect("the write waits for the host");
    let ack = f.sent();
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(ack.header.code, MessageClass::Empty);
    // The retransmitted request: the same empty ACK, not served again.
    f.deliver(&write);
    assert_eq!(f.sent().header.message_id, 4242);
    assert!(f.client.poll_host_work().is_none());
    // Other requests are served meanwhile; the old value is what reads see.
    let read = f.request(RequestType::Get, "/3/0/0", |_| {});
    assert_eq!(read.payload, b"Acme");
    let old = f.tree.read(Origin::Agent, &ssid).unwrap();
    let second = f.request(RequestType::Put, "/12/1/5", |p| {
        content(ContentFormat::Text, b"other".to_vec())(p)
    });
    assert_eq!(code(&second), ResponseType::ServiceUnavailable);
    // The host makes it: a separate response, confirmable, with the token.
    let outcome = work.run();
    assert!(
        f.client
            .host_work_done(&mut f.tree, f.now, outcome)
            .is_none()
    );
    let response = f.sent();
    assert_eq!(response.header.get_type(), MessageType::Confirmable);
    assert_eq!(response.get_token(), &[0xEE, 1]);
    assert_eq!(code(&response), ResponseType::Changed);
    assert_ne!(f.tree.read(Origin::Agent, &ssid).unwrap(), old);
    // A host that refuses: an error response, the value kept.
    f.network
        .refuse_writes(Some(dm_platform::PlatformError::AccessDenied(
            "read-only".into(),
        )));
    let before = f.tree.read(Origin::Agent, &ssid).unwrap();
    write.header.message_id = 4243;
    write.set_token(vec![0xEE, 2]);
    write.payload = b"refused".to_vec();
    f.deliver(&write);
    let work = f.client.poll_host_work().expect("waits again");
    let _ack = f.sent();
    let outcome = work.run();
    assert!(outcome.is_err());
    f.client.host_work_done(&mut f.tree, f.now, outcome);
    let response = f.sent();
    assert_eq!(response.get_token(), &[0xEE, 2]);
    assert_eq!(code(&response), ResponseType::Unauthorized);
    assert_eq!(f.tree.read(Origin::Agent, &ssid).unwrap(), before);
}

/// IPSO Temperature (3303), declared from its registry definition with
/// some values, as the agent's `[[object]]` does.
fn temperature() -> dm_objects::declared::Declaration {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/temperature/3303.xml"
    ))
    .unwrap();
    let schema = dm_lwm2m::declare::schema(&text).unwrap();
    let value = |resource: u16, value: Value| {
        (
            InstanceId(0),
            dm_core::ResourceId(resource),
            ResourceValue::Single(value),
        )
    };
    dm_objects::declared::Declaration {
        schema,
        instances: vec![InstanceId(0)],
        values: vec![
            value(5700, Value::Float(21.5)),
            value(5701, Value::String("Cel".into())),
            value(5750, Value::String("room".into())),
        ],
        provider: None,
        volatile: Vec::new(),
    }
}

#[test]
fn a_declared_object_is_registered_read_written_observed_and_discovered() {
    let declared = temperature();
    let object = declared.schema.id;
    let mut f = fixture_declaring(Arc::new(LinuxHost::default()), &[declared]);
    f.client.register(&f.tree, f.now);
    let register = f.sent();
    let links = String::from_utf8(register.payload.clone()).unwrap();
    assert!(
        links.contains(",</3303>;ver=1.1,</3303/0>,</10259>"),
        "{links}"
    );
    f.answer(&register, ResponseType::Created, &["rd", "5a3f"]);

    let read = f.request(
        RequestType::Get,
        "/3303/0/5700",
        accept(ContentFormat::Text),
    );
    assert_eq!(code(&read), ResponseType::Content);
    assert_eq!(read.payload, b"21.5");
    let read = f.request(
        RequestType::Get,
        "/3303/0",
        accept(ContentFormat::SenmlJson),
    );
    let text = String::from_utf8(read.payload.clone()).unwrap();
    assert!(text.contains("\"vs\":\"Cel\""), "{text}");

    // Written by the server, kept in the tree (and so saved).
    let write = f.request(
        RequestType::Put,
        "/3303/0/5750",
        content(ContentFormat::Text, b"kitchen".to_vec()),
    );
    assert_eq!(
        code(&write),
        ResponseType::Changed,
        "{}",
        String::from_utf8_lossy(&write.payload)
    );
    assert_eq!(
        f.tree
            .read(
                Origin::Agent,
                &Path::resource(object, InstanceId(0), dm_core::ResourceId(5750))
            )
            .unwrap(),
        ResourceValue::Single(Value::String("kitchen".into()))
    );
    // The definition's rules hold: Sensor Value is read-only.
    let write = f.request(
        RequestType::Put,
        "/3303/0/5700",
        content(ContentFormat::Text, b"30".to_vec()),
    );
    assert_eq!(code(&write), ResponseType::MethodNotAllowed);

    let discover = f.request(
        RequestType::Get,
        "/3303/0",
        accept(ContentFormat::LinkFormat),
    );
    assert_eq!(
        String::from_utf8(discover.payload).unwrap(),
        "</3303/0>,</3303/0/5700>,</3303/0/5701>,</3303/0/5750>"
    );

    // Observed, and notified when the value changes in the tree.
    let changes = f.tree.subscribe(8);
    let observe = f.request(RequestType::Get, "/3303/0/5700", |p| {
        p.set_observe_value(0);
        p.add_option(CoapOption::Accept, vec![ContentFormat::Text.number() as u8]);
    });
    assert_eq!(observe.get_observe_value(), Some(Ok(0)));
    f.tree
        .begin(Origin::Agent)
        .set(
            Path::resource(object, InstanceId(0), dm_core::ResourceId(5700)),
            Value::Float(22.0),
        )
        .commit()
        .unwrap();
    for change in changes.drain() {
        f.client.handle_change(&mut f.tree, f.now, &change);
    }
    f.advance(Duration::from_secs(1));
    let notification = f.sent();
    assert_eq!(notification.get_token(), observe.get_token());
    assert_eq!(notification.payload, b"22");
}

/// An observation of an object whose provider is away stays: its pmax
/// passes with nothing sent (not a 4.04, which would end it), and the
/// first pmax once the provider is back notifies again.
#[test]
fn an_observation_outlives_its_providers_absence() {
    use dm_objects::declared::{Provider, Request};
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Switch(AtomicBool);
    impl Provider for Switch {
        fn name(&self) -> String {
            "switch".into()
        }
        fn is_up(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
        fn call(&self, _: Request, _: Option<&Request>) -> Result<(), dm_core::Error> {
            Ok(())
        }
        fn get(
            &self,
            _: InstanceId,
            _: &[dm_core::ResourceId],
        ) -> Result<Vec<(dm_core::ResourceId, ResourceValue)>, dm_core::Error> {
            Err(dm_core::Error::PlatformUnavailable(
                "no volatile values".into(),
            ))
        }
        fn execute(
            &self,
            _: InstanceId,
            _: dm_core::ResourceId,
            _: &str,
        ) -> Result<(), dm_core::Error> {
            Ok(())
        }
    }
    let provider = Arc::new(Switch(AtomicBool::new(true)));
    let mut f = fixture_served(
        Arc::new(LinuxHost::default()),
        &[temperature()],
        Some(provider.clone()),
    );
    f.register();
    let attrs = f.request(RequestType::Put, "/3303/0/5700", |p| {
        p.add_option(CoapOption::UriQuery, b"pmax=60".to_vec());
    });
    assert_eq!(code(&attrs), ResponseType::Changed);
    let observe = f.request(RequestType::Get, "/3303/0/5700", |p| {
        p.set_observe_value(0);
        p.add_option(CoapOption::Accept, vec![ContentFormat::Text.number() as u8]);
    });
    assert_eq!(code(&observe), ResponseType::Content);
    let token = observe.get_token().to_vec();
    let ours = |f: &mut Fixture| -> Vec<Packet> {
        std::iter::from_fn(|| f.client.poll_transmit())
            .map(|b| Packet::from_bytes(&b).unwrap())
            .filter(|p| p.get_token() == token.as_slice())
            .collect()
    };

    // Away over a pmax: nothing for the observation, and it is not ended.
    provider.0.store(false, Ordering::SeqCst);
    let away = f.request(
        RequestType::Get,
        "/3303/0/5700",
        accept(ContentFormat::Text),
    );
    assert_eq!(code(&away), ResponseType::ServiceUnavailable);
    f.advance(Duration::from_secs(61));
    assert!(ours(&mut f).is_empty());

    // Back: the next pmax notifies, with the value the tree kept.
    provider.0.store(true, Ordering::SeqCst);
    f.advance(Duration::from_secs(61));
    let notified = ours(&mut f);
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(code(&notified[0]), ResponseType::Content);
    assert_eq!(notified[0].payload, b"21.5");
}

#[test]
fn declared_objects_map_one_to_one_and_built_in_ones_keep_their_table() {
    use dm_lwm2m::mapping::{Lwm2mPath, from_core, to_core};
    let path: Lwm2mPath = "/3303/0/5700/1".parse().unwrap();
    let core = to_core(&path).unwrap();
    assert_eq!(
        core,
        Path::resource_instance(
            dm_core::ObjectId(3303),
            InstanceId(0),
            dm_core::ResourceId(5700),
            1
        )
    );
    assert_eq!(from_core(&core), Some(path));
    // A TR-181-only object (numbered from 50000) stays invisible to
    // LwM2M, declared or not.
    let tr181_only = dm_core::catalog::ALL
        .iter()
        .find(|s| s.id.0 >= 50000)
        .expect("a TR-181-only object");
    assert!(from_core(&Path::object(tr181_only.id)).is_none());
    assert!(
        to_core(&Lwm2mPath {
            object: tr181_only.id.0,
            instance: None,
            resource: None,
            index: None
        })
        .is_err()
    );
}

/// Every request the server makes is said once, as the operation LwM2M
/// names it, with the path and the response code: what the agent logs
/// at info.
#[test]
fn each_request_served_is_said_once() {
    let mut f = fixture();
    f.register();
    let served = |f: &mut Fixture, method, path: &str, build: &dyn Fn(&mut Packet)| {
        f.request(method, path, |p| build(p));
        let events: Vec<_> = std::iter::from_fn(|| f.client.poll_event()).collect();
        let [
            ClientEvent::Served {
                operation,
                path: said,
                code,
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!(said, path);
        (*operation, code.clone())
    };
    assert_eq!(
        served(&mut f, RequestType::Get, "/3/0", &|_| {}),
        ("Read", "2.05".into())
    );
    assert_eq!(
        served(&mut f, RequestType::Get, "/3/0", &|p| p
            .add_option(CoapOption::Accept, vec![40])),
        ("Discover", "2.05".into())
    );
    assert_eq!(
        served(&mut f, RequestType::Get, "/77", &|_| {}),
        ("Read", "4.04".into())
    );
    assert_eq!(
        served(&mut f, RequestType::Delete, "/0/1", &|_| {}),
        ("Delete", "4.04".into())
    );
}
