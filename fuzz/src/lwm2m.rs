//! Structure-aware driving of the LwM2M client engine: CoAP requests with
//! valid headers (every method, real and near-miss paths, content formats,
//! Observe, Block1/Block2, attributes) from a server, answers to the
//! client's own requests, tree changes and time, in a registered client or
//! one being bootstrapped.

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use dm_core::{InstanceId, Origin, Path, Value};
use dm_lwm2m::client::{Client, ClientConfig, PackageError, PackageSink};
use dm_lwm2m::coap::{Block, Parameters};

use crate::LWM2M_PATHS;

#[derive(Arbitrary, Debug)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Fetch,
    IPatch,
}

#[derive(Arbitrary, Debug)]
pub enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    /// TLV resources: (id, value bytes).
    Tlv(Vec<(u16, Vec<u8>)>),
    /// SenML JSON records: (path, kind, text).
    Senml(Vec<(u8, u8, String)>),
}

#[derive(Arbitrary, Debug)]
pub struct Request {
    method: Method,
    path: u8,
    confirmable: bool,
    accept: Option<u16>,
    content: Option<u16>,
    observe: Option<bool>,
    block1: Option<(u16, bool, u8)>,
    block2: Option<(u16, u8)>,
    size1: Option<u32>,
    queries: Vec<(u8, Option<u32>)>,
    payload: Payload,
    token: u8,
}

#[derive(Arbitrary, Debug)]
pub enum Step {
    Request(Request),
    /// Answers the client's last request with this code (a Register, an
    /// Update, a Bootstrap-Request, a notification).
    Answer {
        code: u8,
        empty_ack: bool,
    },
    Reset,
    Raw(Vec<u8>),
    Advance {
        millis: u16,
    },
    /// The platform's signal moves (an observed value changes).
    Signal(i8),
}

const FORMATS: [u16; 11] = [0, 40, 42, 60, 110, 112, 11542, 11543, 11544, 9999, 65535];
const QUERIES: [&str; 8] = ["pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "bogus"];

fn number(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

fn payload(payload: &Payload) -> Vec<u8> {
    match payload {
        Payload::Bytes(b) => b.clone(),
        Payload::Text(t) => t.clone().into_bytes(),
        Payload::Tlv(resources) => {
            let mut out = Vec::new();
            for (id, value) in resources.iter().take(16) {
                dm_lwm2m::format::tlv::write(
                    &mut out,
                    dm_lwm2m::format::tlv::Kind::Resource,
                    *id,
                    value,
                );
            }
            out
        }
        Payload::Senml(records) => {
            let records: Vec<String> = records
                .iter()
                .take(16)
                .map(|(path, kind, text)| {
                    let name = format!("/{}", LWM2M_PATHS[usize::from(*path) % LWM2M_PATHS.len()]);
                    let value = match kind % 4 {
                        0 => format!(r#""vs":{text:?}"#),
                        1 => format!(r#""v":{}"#, text.len()),
                        2 => r#""vb":true"#.to_owned(),
                        _ => format!(r#""vd":{text:?}"#),
                    };
                    format!(r#"{{"n":{name:?},{value}}}"#)
                })
                .collect();
            format!("[{}]", records.join(",")).into_bytes()
        }
    }
}

fn packet(request: &Request, id: u16) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(if request.confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    packet.header.message_id = id;
    packet.set_token(vec![0xF0, request.token]);
    packet.header.code = MessageClass::Request(match request.method {
        Method::Get => RequestType::Get,
        Method::Post => RequestType::Post,
        Method::Put => RequestType::Put,
        Method::Delete => RequestType::Delete,
        Method::Fetch => RequestType::Fetch,
        Method::IPatch => RequestType::IPatch,
    });
    let path = LWM2M_PATHS[usize::from(request.path) % LWM2M_PATHS.len()];
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    if let Some(format) = request.accept {
        let n = FORMATS[usize::from(format) % FORMATS.len()];
        packet.add_option(CoapOption::Accept, number(n.into()));
    }
    if let Some(format) = request.content {
        let n = FORMATS[usize::from(format) % FORMATS.len()];
        packet.add_option(CoapOption::ContentFormat, number(n.into()));
    }
    if let Some(observe) = request.observe {
        packet.set_observe_value(u32::from(!observe));
    }
    if let Some((number, more, szx)) = request.block1 {
        packet.add_option(
            CoapOption::Block1,
            Block {
                number: u32::from(number % 64),
                more,
                szx: szx % 8,
            }
            .encode(),
        );
    }
    if let Some((number, szx)) = request.block2 {
        packet.add_option(
            CoapOption::Block2,
            Block {
                number: u32::from(number % 64),
                more: false,
                szx: szx % 8,
            }
            .encode(),
        );
    }
    if let Some(size) = request.size1 {
        packet.add_option(CoapOption::Size1, number(size.into()));
    }
    for (key, value) in request.queries.iter().take(4) {
        let key = QUERIES[usize::from(*key) % QUERIES.len()];
        let query = match value {
            Some(v) => format!("{key}={v}"),
            None => key.to_owned(),
        };
        packet.add_option(CoapOption::UriQuery, query.into_bytes());
    }
    packet.payload = payload(&request.payload);
    packet
}

/// A package sink that keeps at most 64 KiB, as a full disk would refuse.
struct Sink(usize);

impl PackageSink for Sink {
    fn begin(&mut self) -> Result<(), PackageError> {
        self.0 = 0;
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), PackageError> {
        self.0 += bytes.len();
        if self.0 > 64 * 1024 {
            return Err(PackageError::NoSpace("full".into()));
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), PackageError> {
        Ok(())
    }
    fn abort(&mut self) {
        self.0 = 0;
    }
}

/// Drives a client through `steps`, registered (or bootstrapping). What it
/// sends must be CoAP; it must not panic or run unbounded.
pub fn run(bootstrap: bool, steps: &[Step]) {
    let mut tree = crate::tree();
    let changes = tree.subscribe(1024);
    let mut now = Instant::now();
    let mut client = Client::new(
        ClientConfig {
            endpoint: "urn:dev:fuzz".into(),
            short_server_id: if bootstrap { 0 } else { 101 },
            server_instance: 0,
            nat_timeout: None,
        },
        Parameters::default(),
        7,
    );
    client.set_package_sink(Box::new(Sink(0)));
    if bootstrap {
        client.bootstrap_request(now);
    } else {
        client.register(&tree, now);
    }
    let mut last: Option<Packet> = None;
    let mut id: u16 = 1000;
    for step in steps.iter().take(64) {
        match step {
            Step::Request(request) => {
                id = id.wrapping_add(1);
                if let Ok(bytes) = packet(request, id).to_bytes_unlimited() {
                    client.handle_datagram(&mut tree, now, &bytes);
                }
            }
            Step::Answer { code, empty_ack } => {
                if let Some(request) = last.take() {
                    let mut answer = Packet::new();
                    answer.header.set_type(MessageType::Acknowledgement);
                    answer.header.message_id = request.header.message_id;
                    if *empty_ack {
                        answer.header.code = MessageClass::Empty;
                    } else {
                        answer.set_token(request.get_token().to_vec());
                        let codes = [
                            ResponseType::Created,
                            ResponseType::Changed,
                            ResponseType::NotFound,
                            ResponseType::BadRequest,
                            ResponseType::Content,
                            ResponseType::InternalServerError,
                        ];
                        answer.header.code =
                            MessageClass::Response(codes[usize::from(*code) % codes.len()]);
                        answer.add_option(CoapOption::LocationPath, b"rd".to_vec());
                        answer.add_option(CoapOption::LocationPath, vec![b'0' + code % 10]);
                    }
                    if let Ok(bytes) = answer.to_bytes() {
                        client.handle_datagram(&mut tree, now, &bytes);
                    }
                }
            }
            Step::Reset => {
                if let Some(request) = last.take() {
                    let mut reset = Packet::new();
                    reset.header.set_type(MessageType::Reset);
                    reset.header.code = MessageClass::Empty;
                    reset.header.message_id = request.header.message_id;
                    if let Ok(bytes) = reset.to_bytes() {
                        client.handle_datagram(&mut tree, now, &bytes);
                    }
                }
            }
            Step::Raw(bytes) => client.handle_datagram(&mut tree, now, bytes),
            Step::Advance { millis } => {
                now += Duration::from_millis(u64::from(*millis) * 50);
                client.handle_timeout(&mut tree, now);
            }
            Step::Signal(dbm) => {
                let path = Path::resource(
                    dm_core::catalog::connectivity::ID,
                    InstanceId(0),
                    dm_core::catalog::connectivity::RADIO_SIGNAL_STRENGTH,
                );
                let _ = tree
                    .begin(Origin::Platform)
                    .set(path, Value::Integer(i64::from(*dbm)))
                    .commit();
            }
        }
        for change in changes.drain() {
            client.handle_change(&mut tree, now, &change);
        }
        let _ = changes.take_lagged();
        let mut sent = 0;
        while let Some(datagram) = client.poll_transmit() {
            sent += 1;
            assert!(sent < 10_000, "unbounded output");
            let packet = Packet::from_bytes(&datagram).expect("the client sends CoAP");
            if matches!(packet.header.code, MessageClass::Request(_))
                || packet.header.get_type() == MessageType::Confirmable
            {
                last = Some(packet);
            }
        }
        while client.poll_event().is_some() {}
        let _ = client.poll_timeout(&tree);
    }
}
