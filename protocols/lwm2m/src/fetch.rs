//! Pulling a resource from a CoAP server block by block (RFC 7959 §2.4,
//! Block2): the firmware object's CoAP(S) pull delivery (LwM2M Core E.6,
//! /5/0/1 with a coap:// or coaps:// URI). Sans-IO over the message layer:
//! datagrams and time in; datagrams, data and the outcome out. The caller
//! writes each block where it wants as it arrives, so memory stays at one
//! block whatever the resource's size.
//!
//! The client asks for each block in turn (a late-negotiation GET with
//! Block2 and Size2 on the first). A server may answer with smaller blocks
//! than asked (RFC 7959 §2.4); the next request follows its size. An ETag
//! that changes mid-transfer means the resource changed: the transfer
//! fails rather than splicing two versions.

use std::collections::VecDeque;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use crate::coap::{Block, Endpoint, Incoming, Parameters, option_number};

/// Why a pull failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// 4.04: the URI names nothing.
    NotFound,
    /// 4.01 or 4.03.
    Unauthorized(String),
    /// Another error response.
    Status(String),
    /// No answer after every retransmission, or a Reset.
    Timeout,
    /// The server broke RFC 7959 (a block out of order, an ETag change).
    Protocol(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => write!(f, "4.04 Not Found"),
            FetchError::Unauthorized(code) | FetchError::Status(code) => write!(f, "{code}"),
            FetchError::Timeout => write!(f, "the server stopped answering"),
            FetchError::Protocol(m) => write!(f, "{m}"),
        }
    }
}

/// What the pull reports, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchEvent {
    /// The next bytes of the resource.
    Data(Vec<u8>),
    /// Every byte has come; `size` in all.
    Finished {
        size: u64,
    },
    Failed(FetchError),
}

/// One GET of one resource, block by block.
pub struct Fetch {
    coap: Endpoint,
    path: Vec<String>,
    query: Vec<String>,
    szx: u8,
    token: Option<Vec<u8>>,
    received: u64,
    blocks: u64,
    etag: Option<Vec<u8>>,
    total: Option<u64>,
    events: VecDeque<FetchEvent>,
    done: bool,
}

impl Fetch {
    /// Starts the pull of `path?query`, asking for blocks of `16 << szx`
    /// bytes (szx 0..=6).
    pub fn new(
        now: Instant,
        path: Vec<String>,
        query: Vec<String>,
        szx: u8,
        parameters: Parameters,
        seed: u64,
    ) -> Fetch {
        let mut fetch = Fetch {
            coap: Endpoint::new(parameters, seed),
            path,
            query,
            szx: szx.min(6),
            token: None,
            received: 0,
            blocks: 0,
            etag: None,
            total: None,
            events: VecDeque::new(),
            done: false,
        };
        fetch.ask(now, 0);
        fetch
    }

    /// The resource's size, once the server said it (Size2).
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Blocks received so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    fn ask(&mut self, now: Instant, number: u32) {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Request(RequestType::Get);
        for segment in &self.path {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for query in &self.query {
            packet.add_option(CoapOption::UriQuery, query.as_bytes().to_vec());
        }
        let block = Block {
            number,
            more: false,
            szx: self.szx,
        };
        packet.add_option(CoapOption::Block2, block.encode());
        if number == 0 {
            // RFC 7959 §4: Size2 0 in a request asks for the size.
            packet.add_option(CoapOption::Size2, Vec::new());
        }
        self.token = Some(self.coap.request(now, packet));
    }

    fn fail(&mut self, error: FetchError) {
        self.done = true;
        self.token = None;
        self.events.push_back(FetchEvent::Failed(error));
    }

    /// A datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.coap.handle_datagram(now, bytes);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.coap.handle_timeout(now);
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        while let Some(incoming) = self.coap.poll_incoming() {
            match incoming {
                Incoming::Response { token, packet } if Some(&token) == self.token.as_ref() => {
                    self.response(now, packet);
                }
                Incoming::Failed { token, .. } if Some(&token) == self.token.as_ref() => {
                    self.fail(FetchError::Timeout);
                }
                // The server has no business sending requests here.
                Incoming::Request(request) => {
                    let mut answer = Packet::new();
                    answer.header.code = MessageClass::Response(ResponseType::NotImplemented);
                    self.coap.respond(now, &request, answer);
                }
                _ => {}
            }
        }
    }

    fn response(&mut self, now: Instant, packet: Packet) {
        self.token = None;
        let code = packet.header.code;
        match code {
            MessageClass::Response(ResponseType::Content) => {}
            MessageClass::Response(ResponseType::NotFound) => {
                return self.fail(FetchError::NotFound);
            }
            MessageClass::Response(ResponseType::Unauthorized | ResponseType::Forbidden) => {
                return self.fail(FetchError::Unauthorized(code.to_string()));
            }
            other => return self.fail(FetchError::Status(other.to_string())),
        }
        let etag = packet
            .get_first_option(CoapOption::ETag)
            .map(|v| v.to_vec());
        if self.blocks == 0 {
            self.etag = etag;
            self.total = packet
                .get_first_option(CoapOption::Size2)
                .map(|v| option_number(v));
        } else if etag != self.etag {
            return self.fail(FetchError::Protocol(
                "the resource changed during the transfer (ETag)".into(),
            ));
        }
        let block = match packet.get_first_option(CoapOption::Block2) {
            None if self.blocks == 0 => None,
            None => {
                return self.fail(FetchError::Protocol(
                    "the server stopped sending blocks".into(),
                ));
            }
            Some(v) => match Block::decode(v) {
                Some(block) => Some(block),
                None => return self.fail(FetchError::Protocol("a malformed Block2 option".into())),
            },
        };
        if let Some(block) = block {
            let offset = u64::from(block.number) * block.size() as u64;
            if offset != self.received
                || block.szx > self.szx
                || (block.more && packet.payload.len() != block.size())
            {
                return self.fail(FetchError::Protocol(format!(
                    "block {} of {} bytes does not follow the {} bytes received",
                    block.number,
                    block.size(),
                    self.received
                )));
            }
            self.szx = block.szx;
        }
        self.received += packet.payload.len() as u64;
        self.blocks += 1;
        let more = block.is_some_and(|b| b.more);
        if !packet.payload.is_empty() {
            self.events.push_back(FetchEvent::Data(packet.payload));
        }
        if more {
            let size = 16u64 << self.szx;
            match u32::try_from(self.received / size) {
                // Block numbers are 20 bits (RFC 7959 §2.2).
                Ok(next) if next < 1 << 20 => self.ask(now, next),
                _ => self.fail(FetchError::Protocol(
                    "more blocks than Block2 can number".into(),
                )),
            }
        } else if self.total.is_some_and(|t| t != self.received) {
            // The server said how large the resource is, and sent less.
            let total = self.total.unwrap_or(0);
            self.fail(FetchError::Protocol(format!(
                "the transfer ended at {} of the {total} bytes Size2 announced",
                self.received
            )));
        } else {
            self.done = true;
            self.events.push_back(FetchEvent::Finished {
                size: self.received,
            });
        }
    }

    /// Whether the pull has finished or failed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.coap.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<FetchEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            None
        } else {
            self.coap.poll_timeout()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::MessageType;

    /// A server holding `body`, answering each GET with the block asked
    /// for, in blocks no larger than `16 << max_szx`.
    fn answer(request: &[u8], body: &[u8], max_szx: u8, etag: &[u8]) -> Vec<u8> {
        let request = Packet::from_bytes(request).unwrap();
        let asked = Block::decode(request.get_first_option(CoapOption::Block2).unwrap()).unwrap();
        let szx = asked.szx.min(max_szx);
        // A smaller size: the same offset in the server's numbering.
        let number = asked.number * (asked.size() as u32) / (16 << szx);
        let size = 16usize << szx;
        let start = number as usize * size;
        let end = (start + size).min(body.len());
        let mut response = Packet::new();
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
        response.header.code = MessageClass::Response(ResponseType::Content);
        response.set_token(request.get_token().to_vec());
        response.add_option(CoapOption::ETag, etag.to_vec());
        response.add_option(
            CoapOption::Block2,
            Block {
                number,
                more: end < body.len(),
                szx,
            }
            .encode(),
        );
        if request.get_first_option(CoapOption::Size2).is_some() {
            response.add_option(
                CoapOption::Size2,
                crate::coap::encode_uint(body.len() as u64),
            );
        }
        response.payload = body[start..end].to_vec();
        response.to_bytes().unwrap()
    }

    fn run(fetch: &mut Fetch, now: Instant, mut server: impl FnMut(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut data = Vec::new();
        while !fetch.is_done() {
            let request = fetch.poll_transmit().expect("a request");
            fetch.handle_datagram(now, &server(&request));
        }
        while let Some(event) = fetch.poll_event() {
            match event {
                FetchEvent::Data(bytes) => data.extend(bytes),
                FetchEvent::Finished { size } => assert_eq!(size, data.len() as u64),
                FetchEvent::Failed(e) => panic!("{e}"),
            }
        }
        data
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn pulls_every_block_in_order_and_learns_the_size() {
        let now = Instant::now();
        let image = body(10_000);
        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 1);
        let got = run(&mut fetch, now, |r| answer(r, &image, 6, b"v1"));
        assert_eq!(got, image);
        assert_eq!(fetch.total(), Some(10_000));
        assert_eq!(fetch.blocks(), 10);
    }

    #[test]
    fn follows_a_server_that_sends_smaller_blocks() {
        let now = Instant::now();
        let image = body(3000);
        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 2);
        let got = run(&mut fetch, now, |r| answer(r, &image, 4, b"v1"));
        assert_eq!(got, image);
        assert_eq!(fetch.blocks(), 3000u64.div_ceil(256));
    }

    #[test]
    fn a_resource_that_changes_mid_transfer_fails() {
        let now = Instant::now();
        let image = body(5000);
        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 3);
        let mut n = 0;
        while !fetch.is_done() {
            let request = fetch.poll_transmit().unwrap();
            n += 1;
            let etag: &[u8] = if n < 3 { b"v1" } else { b"v2" };
            fetch.handle_datagram(now, &answer(&request, &image, 6, etag));
        }
        let events: Vec<_> = std::iter::from_fn(|| fetch.poll_event()).collect();
        assert!(matches!(
            events.last(),
            Some(FetchEvent::Failed(FetchError::Protocol(m))) if m.contains("ETag")
        ));
    }

    #[test]
    fn not_found_and_silence_are_reported() {
        let now = Instant::now();
        let mut fetch = Fetch::new(
            now,
            vec!["nothing".into()],
            vec![],
            6,
            Parameters::default(),
            4,
        );
        let request = Packet::from_bytes(&fetch.poll_transmit().unwrap()).unwrap();
        let mut response = Packet::new();
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
        response.header.code = MessageClass::Response(ResponseType::NotFound);
        response.set_token(request.get_token().to_vec());
        fetch.handle_datagram(now, &response.to_bytes().unwrap());
        assert_eq!(
            fetch.poll_event(),
            Some(FetchEvent::Failed(FetchError::NotFound))
        );

        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 5);
        let mut at = now;
        while !fetch.is_done() {
            at = fetch.poll_timeout().expect("a retransmission is due");
            fetch.handle_timeout(at);
        }
        assert_eq!(
            fetch.poll_event(),
            Some(FetchEvent::Failed(FetchError::Timeout))
        );
        assert!(at > now);
    }

    #[test]
    fn a_transfer_shorter_than_size2_fails() {
        let now = Instant::now();
        let image = body(3000);
        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 7);
        let first = fetch.poll_transmit().unwrap();
        // The server announces 4000 bytes and then ends at 3000.
        let mut response = Packet::from_bytes(&answer(&first, &image, 6, b"")).unwrap();
        response.clear_option(CoapOption::Size2);
        response.add_option(CoapOption::Size2, crate::coap::encode_uint(4000));
        fetch.handle_datagram(now, &response.to_bytes().unwrap());
        while !fetch.is_done() {
            let request = fetch.poll_transmit().unwrap();
            fetch.handle_datagram(now, &answer(&request, &image, 6, b""));
        }
        let events: Vec<_> = std::iter::from_fn(|| fetch.poll_event()).collect();
        assert!(
            matches!(events.last(), Some(FetchEvent::Failed(FetchError::Protocol(m))) if m.contains("Size2")),
            "{events:?}"
        );
    }

    #[test]
    fn a_block_out_of_place_is_refused() {
        let now = Instant::now();
        let image = body(4000);
        let mut fetch = Fetch::new(now, vec!["fw".into()], vec![], 6, Parameters::default(), 6);
        let first = fetch.poll_transmit().unwrap();
        fetch.handle_datagram(now, &answer(&first, &image, 6, b""));
        let second = Packet::from_bytes(&fetch.poll_transmit().unwrap()).unwrap();
        // The server answers block 1 with block 2's number.
        let mut wrong =
            Packet::from_bytes(&answer(&second.to_bytes().unwrap(), &image, 6, b"")).unwrap();
        wrong.clear_option(CoapOption::Block2);
        wrong.add_option(
            CoapOption::Block2,
            Block {
                number: 2,
                more: true,
                szx: 6,
            }
            .encode(),
        );
        fetch.handle_datagram(now, &wrong.to_bytes().unwrap());
        let events: Vec<_> = std::iter::from_fn(|| fetch.poll_event()).collect();
        assert!(matches!(
            events.last(),
            Some(FetchEvent::Failed(FetchError::Protocol(_)))
        ));
    }
}
