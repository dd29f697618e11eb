//! The CoAP message layer (RFC 7252 §4) over coap-lite's codec: sans-IO.
//!
//! Confirmable requests are retransmitted with exponential back-off from
//! ACK_TIMEOUT × random(1, ACK_RANDOM_FACTOR) up to MAX_RETRANSMIT times;
//! responses are matched by token (piggybacked in the ACK or separate);
//! duplicate confirmable requests from the peer are answered from a cache
//! for EXCHANGE_LIFETIME instead of being processed twice. Time comes in as
//! `Instant`s; nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coap_lite::{MessageClass, MessageType, Packet};

/// RFC 7252 §4.8 transmission parameters.
#[derive(Clone, Copy, Debug)]
pub struct Parameters {
    pub ack_timeout: Duration,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
}

impl Default for Parameters {
    fn default() -> Parameters {
        Parameters {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
        }
    }
}

impl Parameters {
    /// Within what the timers can hold (they come from configuration):
    /// ACK_TIMEOUT 10 ms to 60 s, ACK_RANDOM_FACTOR 1 to 4, at most 20
    /// retransmissions; anything else is the RFC 7252 default.
    pub fn sane(self) -> Parameters {
        let default = Parameters::default();
        Parameters {
            ack_timeout: self
                .ack_timeout
                .clamp(Duration::from_millis(10), Duration::from_secs(60)),
            ack_random_factor: if (1.0..=4.0).contains(&self.ack_random_factor) {
                self.ack_random_factor
            } else {
                default.ack_random_factor
            },
            max_retransmit: self.max_retransmit.min(20),
        }
    }

    /// EXCHANGE_LIFETIME (RFC 7252 §4.8.2), with MAX_LATENCY 100 s and
    /// PROCESSING_DELAY = ACK_TIMEOUT.
    pub fn exchange_lifetime(&self) -> Duration {
        let span = self.ack_timeout.as_secs_f64()
            * (2f64.powi(self.max_retransmit as i32) - 1.0)
            * self.ack_random_factor;
        Duration::from_secs_f64(span + 200.0 + self.ack_timeout.as_secs_f64())
    }
}

/// What the message layer reports.
#[derive(Debug)]
pub enum Incoming {
    /// A request from the peer; answer it with [`Endpoint::respond`].
    Request(Packet),
    /// The response to one of our requests, by its token.
    Response { token: Vec<u8>, packet: Packet },
    /// One of our requests got no response after every retransmission, or
    /// was reset.
    Failed { token: Vec<u8>, reset: bool },
}

struct Outstanding {
    message_id: u16,
    token: Vec<u8>,
    bytes: Vec<u8>,
    /// Retransmissions so far.
    attempts: u32,
    timeout: Duration,
    next: Instant,
    /// Acknowledged with an empty ACK: the response comes separately.
    acknowledged: bool,
    /// A request (a response is expected) rather than a confirmable
    /// response such as a notification, which an empty ACK completes.
    is_request: bool,
}

/// Answers kept for duplicate detection: at most this many bytes in all.
/// A server retransmits within EXCHANGE_LIFETIME; a busy one can have many
/// exchanges in that window, so the bound is on bytes, not on entries.
const ANSWERED_BUDGET: usize = 256 * 1024;

/// One CoAP endpoint talking to one peer.
pub struct Endpoint {
    parameters: Parameters,
    next_message_id: u16,
    next_token: u64,
    outstanding: Vec<Outstanding>,
    /// Recently answered requests: (message id, response bytes, expiry);
    /// a NON request's entry holds no bytes (its duplicate is dropped).
    answered: VecDeque<(u16, Vec<u8>, Instant)>,
    answered_bytes: usize,
    transmit: VecDeque<Vec<u8>>,
    incoming: VecDeque<Incoming>,
    rng: dm_core::support::rng::XorShift64Star,
}

impl Endpoint {
    /// `seed` randomises the first message id, tokens and back-off.
    pub fn new(parameters: Parameters, seed: u64) -> Endpoint {
        let mut endpoint = Endpoint {
            parameters: parameters.sane(),
            next_message_id: 0,
            next_token: 0,
            outstanding: Vec::new(),
            answered: VecDeque::new(),
            answered_bytes: 0,
            transmit: VecDeque::new(),
            incoming: VecDeque::new(),
            rng: dm_core::support::rng::XorShift64Star::new(seed),
        };
        endpoint.next_message_id = endpoint.random() as u16;
        endpoint.next_token = endpoint.random();
        endpoint
    }

    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    /// Sends a confirmable request; returns its token.
    pub fn request(&mut self, now: Instant, mut packet: Packet) -> Vec<u8> {
        let token = self.next_token.to_be_bytes().to_vec();
        self.next_token = self.next_token.wrapping_add(1);
        packet.set_token(token.clone());
        self.send_confirmable(now, packet);
        token
    }

    /// Sends a confirmable message with the token it carries (a
    /// notification keeps its observation's token).
    pub fn send_confirmable(&mut self, now: Instant, mut packet: Packet) {
        let is_request = matches!(packet.header.code, MessageClass::Request(_));
        packet.header.set_type(MessageType::Confirmable);
        packet.header.message_id = self.message_id();
        let Ok(bytes) = packet.to_bytes_unlimited() else {
            return;
        };
        let factor = 1.0 + (self.parameters.ack_random_factor - 1.0) * self.unit();
        let timeout = self.parameters.ack_timeout.mul_f64(factor);
        self.outstanding.push(Outstanding {
            message_id: packet.header.message_id,
            token: packet.get_token().to_vec(),
            bytes: bytes.clone(),
            attempts: 0,
            timeout,
            next: now + timeout,
            acknowledged: false,
            is_request,
        });
        self.transmit.push_back(bytes);
    }

    /// Keeps the answer to a request for its duplicates (RFC 7252 §4.5: a
    /// duplicate CON gets the same answer again, a duplicate NON is
    /// ignored; neither is processed twice).
    fn remember(&mut self, now: Instant, message_id: u16, cached: Vec<u8>) {
        self.answered_bytes += cached.len() + 32;
        let expiry = now + self.parameters.exchange_lifetime();
        self.answered.push_back((message_id, cached, expiry));
        // Bound the cache: a peer cannot make it grow without limit.
        while self.answered_bytes > ANSWERED_BUDGET {
            match self.answered.pop_front() {
                Some((_, old, _)) => self.answered_bytes -= old.len() + 32,
                None => break,
            }
        }
    }

    /// Acknowledges a request whose response comes later (RFC 7252
    /// §5.2.2, a separate response): an empty ACK for a confirmable one,
    /// the same again to its duplicates; a non-confirmable one's
    /// duplicates are dropped.
    pub fn acknowledge(&mut self, now: Instant, request: &Packet) {
        let bytes = if request.header.get_type() == MessageType::Confirmable {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.code = MessageClass::Empty;
            ack.header.message_id = request.header.message_id;
            let Ok(bytes) = ack.to_bytes() else {
                return;
            };
            self.transmit.push_back(bytes.clone());
            bytes
        } else {
            Vec::new()
        };
        self.remember(now, request.header.message_id, bytes);
    }

    /// The separate response to a request [`Endpoint::acknowledge`]d:
    /// confirmable (retransmitted until acknowledged) for a confirmable
    /// request, non-confirmable otherwise; with the request's token.
    pub fn respond_later(&mut self, now: Instant, request: &Packet, mut response: Packet) {
        response.set_token(request.get_token().to_vec());
        if request.header.get_type() == MessageType::Confirmable {
            self.send_confirmable(now, response);
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.message_id();
            if let Ok(bytes) = response.to_bytes_unlimited() {
                self.transmit.push_back(bytes);
            }
        }
    }

    /// Answers a request received with [`Incoming::Request`]: piggybacked
    /// in the ACK for a confirmable request, as a non-confirmable message
    /// otherwise.
    pub fn respond(&mut self, now: Instant, request: &Packet, mut response: Packet) {
        response.set_token(request.get_token().to_vec());
        match request.header.get_type() {
            MessageType::Confirmable => {
                response.header.set_type(MessageType::Acknowledgement);
                response.header.message_id = request.header.message_id;
            }
            _ => {
                response.header.set_type(MessageType::NonConfirmable);
                response.header.message_id = self.message_id();
            }
        }
        let Ok(bytes) = response.to_bytes_unlimited() else {
            return;
        };
        // RFC 7252 §4.5: a duplicate CON gets the same answer again, a
        // duplicate NON is ignored; neither is processed twice.
        let cached = if request.header.get_type() == MessageType::Confirmable {
            bytes.clone()
        } else {
            Vec::new()
        };
        self.remember(now, request.header.message_id, cached);
        self.transmit.push_back(bytes);
    }

    /// A datagram from the peer. Malformed ones are dropped (RFC 7252
    /// §4.2: a confirmable message that cannot be parsed is rejected with
    /// a Reset when its header can be read).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.expire(now);
        let packet = match Packet::from_bytes(bytes) {
            Ok(packet) => packet,
            Err(_) => {
                if bytes.len() >= 4 && bytes[0] >> 6 == 1 && (bytes[0] >> 4) & 0b11 == 0 {
                    let mut reset = Packet::new();
                    reset.header.set_type(MessageType::Reset);
                    reset.header.code = MessageClass::Empty;
                    reset.header.message_id = u16::from_be_bytes([bytes[2], bytes[3]]);
                    if let Ok(out) = reset.to_bytes() {
                        self.transmit.push_back(out);
                    }
                }
                return;
            }
        };
        let kind = packet.header.get_type();
        match (kind, &packet.header.code) {
            (MessageType::Acknowledgement, MessageClass::Empty) => {
                if let Some(i) = self
                    .outstanding
                    .iter()
                    .position(|o| o.message_id == packet.header.message_id)
                {
                    if self.outstanding[i].is_request {
                        self.outstanding[i].acknowledged = true;
                    } else {
                        // A confirmable response (a notification) is done
                        // once acknowledged.
                        self.outstanding.remove(i);
                    }
                }
            }
            // CoAP ping (RFC 7252 §4.3): an empty CON is answered with a
            // Reset.
            (MessageType::Confirmable, MessageClass::Empty) => {
                let mut reset = Packet::new();
                reset.header.set_type(MessageType::Reset);
                reset.header.code = MessageClass::Empty;
                reset.header.message_id = packet.header.message_id;
                if let Ok(out) = reset.to_bytes() {
                    self.transmit.push_back(out);
                }
            }
            (MessageType::Reset, _) => {
                if let Some(i) = self
                    .outstanding
                    .iter()
                    .position(|o| o.message_id == packet.header.message_id)
                {
                    let o = self.outstanding.remove(i);
                    self.incoming.push_back(Incoming::Failed {
                        token: o.token,
                        reset: true,
                    });
                }
            }
            // A request comes as CON or NON; anything else is malformed.
            (MessageType::Confirmable | MessageType::NonConfirmable, MessageClass::Request(_)) => {
                if let Some((_, cached, _)) = self
                    .answered
                    .iter()
                    .find(|(id, _, _)| *id == packet.header.message_id)
                {
                    if kind == MessageType::Confirmable {
                        self.transmit.push_back(cached.clone());
                    }
                    return;
                }
                self.incoming.push_back(Incoming::Request(packet));
            }
            (_, MessageClass::Response(_)) => {
                let token = packet.get_token().to_vec();
                let matched = self.outstanding.iter().position(|o| {
                    o.token == token
                        && (kind != MessageType::Acknowledgement
                            || o.message_id == packet.header.message_id)
                });
                if kind == MessageType::Confirmable {
                    // A separate response: acknowledge it.
                    let mut ack = Packet::new();
                    ack.header.set_type(MessageType::Acknowledgement);
                    ack.header.code = MessageClass::Empty;
                    ack.header.message_id = packet.header.message_id;
                    if let Ok(out) = ack.to_bytes() {
                        self.transmit.push_back(out);
                    }
                }
                if let Some(i) = matched {
                    self.outstanding.remove(i);
                    self.incoming
                        .push_back(Incoming::Response { token, packet });
                }
            }
            _ => {}
        }
    }

    /// The most retransmissions any outstanding, unacknowledged request
    /// has had: a session that carried requests and now answers none is
    /// likely gone on the other side (a server that restarted).
    pub fn unanswered_retransmissions(&self) -> u32 {
        self.outstanding
            .iter()
            .filter(|o| o.is_request && !o.acknowledged)
            .map(|o| o.attempts)
            .max()
            .unwrap_or(0)
    }

    /// Retransmits what is due; gives up after MAX_RETRANSMIT.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let mut failed = Vec::new();
        for o in &mut self.outstanding {
            if o.acknowledged || o.next > now {
                continue;
            }
            if o.attempts >= self.parameters.max_retransmit {
                failed.push(o.message_id);
                continue;
            }
            o.attempts += 1;
            o.timeout *= 2;
            o.next = now + o.timeout;
            self.transmit.push_back(o.bytes.clone());
        }
        for id in failed {
            if let Some(i) = self.outstanding.iter().position(|o| o.message_id == id) {
                let o = self.outstanding.remove(i);
                self.incoming.push_back(Incoming::Failed {
                    token: o.token,
                    reset: false,
                });
            }
        }
        // An acknowledged request whose separate response never comes
        // fails after EXCHANGE_LIFETIME.
        let lifetime = self.parameters.exchange_lifetime();
        let stale: Vec<u16> = self
            .outstanding
            .iter()
            .filter(|o| o.acknowledged && o.next + lifetime <= now)
            .map(|o| o.message_id)
            .collect();
        for id in stale {
            if let Some(i) = self.outstanding.iter().position(|o| o.message_id == id) {
                let o = self.outstanding.remove(i);
                self.incoming.push_back(Incoming::Failed {
                    token: o.token,
                    reset: false,
                });
            }
        }
    }

    /// Forgets a request (the caller gave up on it).
    pub fn cancel(&mut self, token: &[u8]) {
        self.outstanding.retain(|o| o.token != token);
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_incoming(&mut self) -> Option<Incoming> {
        self.incoming.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let lifetime = self.parameters.exchange_lifetime();
        self.outstanding
            .iter()
            .map(|o| {
                if o.acknowledged {
                    o.next + lifetime
                } else {
                    o.next
                }
            })
            .min()
    }

    fn expire(&mut self, now: Instant) {
        while self.answered.front().is_some_and(|(_, _, t)| *t <= now) {
            if let Some((_, old, _)) = self.answered.pop_front() {
                self.answered_bytes -= old.len() + 32;
            }
        }
    }

    fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1);
        id
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.rng.unit()
    }
}

/// A Block1/Block2 option value (RFC 7959 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub number: u32,
    pub more: bool,
    pub szx: u8,
}

impl Block {
    pub fn decode(bytes: &[u8]) -> Option<Block> {
        if bytes.len() > 3 {
            return None;
        }
        let value = option_number(bytes) as u32;
        let szx = (value & 0b111) as u8;
        // SZX 7 is reserved (BERT on TCP only).
        (szx < 7).then_some(Block {
            number: value >> 4,
            more: value & 0b1000 != 0,
            szx,
        })
    }

    pub fn size(&self) -> usize {
        16 << self.szx
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_uint(u64::from(
            self.number << 4 | u32::from(self.more) << 3 | u32::from(self.szx),
        ))
    }
}

/// A CoAP uint option: big-endian without leading zero bytes.
pub fn encode_uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

/// A CoAP uint option's value (at most 8 bytes are read).
pub fn option_number(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{RequestType, ResponseType};

    fn empty(kind: MessageType, message_id: u16) -> Vec<u8> {
        let mut packet = Packet::new();
        packet.header.set_type(kind);
        packet.header.code = MessageClass::Empty;
        packet.header.message_id = message_id;
        packet.to_bytes().unwrap()
    }

    #[test]
    fn an_empty_ack_completes_a_confirmable_notification() {
        let now = Instant::now();
        let mut endpoint = Endpoint::new(Parameters::default(), 7);
        let mut notification = Packet::new();
        notification.header.code = MessageClass::Response(ResponseType::Content);
        notification.set_token(vec![1, 2]);
        endpoint.send_confirmable(now, notification);
        let sent = Packet::from_bytes(&endpoint.poll_transmit().unwrap()).unwrap();
        assert!(endpoint.poll_timeout().is_some());
        endpoint.handle_datagram(
            now,
            &empty(MessageType::Acknowledgement, sent.header.message_id),
        );
        assert_eq!(endpoint.poll_timeout(), None, "nothing left outstanding");
        endpoint.handle_timeout(now + Duration::from_secs(600));
        assert!(endpoint.poll_incoming().is_none(), "no spurious failure");
    }

    #[test]
    fn an_empty_ack_to_a_request_waits_for_the_separate_response() {
        let now = Instant::now();
        let mut endpoint = Endpoint::new(Parameters::default(), 7);
        let mut request = Packet::new();
        request.header.code = MessageClass::Request(RequestType::Post);
        endpoint.request(now, request);
        let sent = Packet::from_bytes(&endpoint.poll_transmit().unwrap()).unwrap();
        endpoint.handle_datagram(
            now,
            &empty(MessageType::Acknowledgement, sent.header.message_id),
        );
        assert!(endpoint.poll_timeout().is_some(), "still waiting");
    }

    #[test]
    fn a_ping_is_answered_with_a_reset() {
        let now = Instant::now();
        let mut endpoint = Endpoint::new(Parameters::default(), 7);
        endpoint.handle_datagram(now, &empty(MessageType::Confirmable, 0x1234));
        let reset = Packet::from_bytes(&endpoint.poll_transmit().unwrap()).unwrap();
        assert_eq!(reset.header.get_type(), MessageType::Reset);
        assert_eq!(reset.header.message_id, 0x1234);
        assert!(endpoint.poll_incoming().is_none());
    }

    #[test]
    fn a_duplicate_non_request_is_dropped_and_the_cache_is_bounded() {
        let now = Instant::now();
        let mut endpoint = Endpoint::new(Parameters::default(), 7);
        let mut request = Packet::new();
        request.header.set_type(MessageType::NonConfirmable);
        request.header.code = MessageClass::Request(RequestType::Get);
        request.header.message_id = 5;
        let bytes = request.to_bytes().unwrap();
        endpoint.handle_datagram(now, &bytes);
        let Some(Incoming::Request(first)) = endpoint.poll_incoming() else {
            panic!("the first copy is a request");
        };
        endpoint.respond(now, &first, Packet::new());
        endpoint.handle_datagram(now, &bytes);
        assert!(
            endpoint.poll_incoming().is_none(),
            "the duplicate is dropped"
        );
        // Many large answers: the cache stays within its byte budget.
        for id in 0..2000u16 {
            let mut request = Packet::new();
            request.header.set_type(MessageType::Confirmable);
            request.header.code = MessageClass::Request(RequestType::Get);
            request.header.message_id = id.wrapping_add(100);
            let mut response = Packet::new();
            response.payload = vec![0; 1000];
            endpoint.respond(now, &request, response);
        }
        assert!(endpoint.answered_bytes <= ANSWERED_BUDGET);
        assert!(endpoint.answered.len() > 64);
    }
}
