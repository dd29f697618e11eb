//! STUN for TR-069 Annex G (TR-111 Part 2): a CPE behind a NAT keeps a
//! binding open from its UDP connection-request port with Binding
//! Requests to the STUN server, learns its public address from the answer,
//! and publishes it as UDPConnectionRequestAddress. Only what that needs of
//! RFC 5389 (and RFC 3489's MAPPED-ADDRESS, which older servers answer):
//! pure functions over bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const MAGIC: u32 = 0x2112_A442;

const MAPPED_ADDRESS: u16 = 0x0001;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// TR-111: tells the server the binding is for UDP connection requests.
const CONNECTION_REQUEST_BINDING: u16 = 0xC001;
/// TR-111: the binding changed since the last request.
const BINDING_CHANGE: u16 = 0xC002;
const TR111: &[u8] = b"dslforum.org/TR-111 ";

/// Whether a datagram is STUN rather than an HTTP-formatted connection
/// request: STUN messages start with two zero bits and carry the cookie.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[0] & 0xC0 == 0
        && u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) == MAGIC
}

fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A Binding Request with transaction id `txid`, marked as a TR-111
/// connection-request binding, with BINDING-CHANGE when `changed`, and
/// USERNAME and MESSAGE-INTEGRITY (HMAC-SHA1 keyed with the password,
/// RFC 5389 §15.4) when a username is set.
pub fn binding_request(
    txid: [u8; 12],
    changed: bool,
    credentials: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&txid);
    attribute(&mut out, CONNECTION_REQUEST_BINDING, TR111);
    if changed {
        attribute(&mut out, BINDING_CHANGE, &[]);
    }
    if let Some((username, password)) = credentials {
        attribute(&mut out, USERNAME, username.as_bytes());
        // The length covers MESSAGE-INTEGRITY itself while it is computed.
        let length = (out.len() - 20 + 24) as u16;
        out[2..4].copy_from_slice(&length.to_be_bytes());
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            password.as_bytes(),
        );
        let mac = ring::hmac::sign(&key, &out);
        attribute(&mut out, MESSAGE_INTEGRITY, mac.as_ref());
    }
    let length = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&length.to_be_bytes());
    out
}

/// Why a response gives no address.
#[derive(Debug, PartialEq, Eq)]
pub enum StunError {
    /// Not a response to this transaction.
    NotOurs,
    /// The server refused (its ERROR-CODE, e.g. 401 when credentials are
    /// wrong).
    Refused(u16),
    Malformed(&'static str),
}

/// The mapped address in the server's answer to transaction `txid`.
pub fn binding_response(datagram: &[u8], txid: [u8; 12]) -> Result<SocketAddr, StunError> {
    if !is_stun(datagram) {
        return Err(StunError::Malformed("not STUN"));
    }
    if datagram[8..20] != txid {
        return Err(StunError::NotOurs);
    }
    let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram
        .get(20..20 + length)
        .ok_or(StunError::Malformed("shorter than its length"))?;
    let mut attributes = Vec::new();
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest
            .get(4..4 + len)
            .ok_or(StunError::Malformed("an attribute runs past the end"))?;
        attributes.push((kind, value));
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    match kind {
        BINDING_SUCCESS => {}
        BINDING_ERROR => {
            let code = attributes
                .iter()
                .find(|(k, _)| *k == ERROR_CODE)
                .and_then(|(_, v)| {
                    (v.len() >= 4).then(|| u16::from(v[2] & 7) * 100 + u16::from(v[3]))
                })
                .unwrap_or(0);
            return Err(StunError::Refused(code));
        }
        _ => return Err(StunError::Malformed("not a Binding response")),
    }
    let mut cookie_and_txid = [0u8; 16];
    cookie_and_txid[..4].copy_from_slice(&MAGIC.to_be_bytes());
    cookie_and_txid[4..].copy_from_slice(&txid);
    let address = |value: &[u8], xor: bool| -> Option<SocketAddr> {
        let family = *value.get(1)?;
        let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
        if xor {
            port ^= (MAGIC >> 16) as u16;
        }
        let ip = match family {
            1 => {
                let mut b: [u8; 4] = value.get(4..8)?.try_into().ok()?;
                if xor {
                    b.iter_mut()
                        .zip(&cookie_and_txid)
                        .for_each(|(x, k)| *x ^= k);
                }
                IpAddr::V4(Ipv4Addr::from(b))
            }
            2 => {
                let mut b: [u8; 16] = value.get(4..20)?.try_into().ok()?;
                if xor {
                    b.iter_mut()
                        .zip(&cookie_and_txid)
                        .for_each(|(x, k)| *x ^= k);
                }
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    };
    attributes
        .iter()
        .find(|(k, _)| *k == XOR_MAPPED_ADDRESS)
        .and_then(|(_, v)| address(v, true))
        .or_else(|| {
            attributes
                .iter()
                .find(|(k, _)| *k == MAPPED_ADDRESS)
                .and_then(|(_, v)| address(v, false))
        })
        .ok_or(StunError::Malformed("no mapped address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(txid: [u8; 12], mapped: SocketAddr) -> Vec<u8> {
        let mut value = vec![0, if mapped.is_ipv4() { 1 } else { 2 }];
        value.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
        let mut key = MAGIC.to_be_bytes().to_vec();
        key.extend_from_slice(&txid);
        match mapped.ip() {
            IpAddr::V4(ip) => value.extend(ip.octets().iter().zip(&key).map(|(a, k)| a ^ k)),
            IpAddr::V6(ip) => value.extend(ip.octets().iter().zip(&key).map(|(a, k)| a ^ k)),
        }
        let mut out = BINDING_SUCCESS.to_be_bytes().to_vec();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&txid);
        attribute(&mut out, XOR_MAPPED_ADDRESS, &value);
        let length = (out.len() - 20) as u16;
        out[2..4].copy_from_slice(&length.to_be_bytes());
        out
    }

    #[test]
    fn a_request_is_a_tr111_binding_request() {
        let request = binding_request([7; 12], true, None);
        assert!(is_stun(&request));
        assert_eq!(&request[..2], &[0, 1]);
        assert_eq!(
            usize::from(u16::from_be_bytes([request[2], request[3]])),
            request.len() - 20
        );
        let text = String::from_utf8_lossy(&request);
        assert!(text.contains("dslforum.org/TR-111 "));
        assert!(
            request.windows(4).any(|w| w == [0xC0, 0x02, 0, 0]),
            "BINDING-CHANGE"
        );
        // With credentials: USERNAME, then a 20-byte MESSAGE-INTEGRITY last.
        let signed = binding_request([7; 12], false, Some(("cpe", "secret")));
        let mi = signed.len() - 24;
        assert_eq!(&signed[mi..mi + 4], &[0, 8, 0, 20]);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret");
        assert!(ring::hmac::verify(&key, &signed[..mi], &signed[mi + 4..]).is_ok());
    }

    #[test]
    fn mapped_addresses_are_read_for_ipv4_and_ipv6() {
        for mapped in ["192.0.2.7:40123", "[2001:db8::5]:7547"] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            assert_eq!(
                binding_response(&response([3; 12], mapped), [3; 12]),
                Ok(mapped)
            );
            assert_eq!(
                binding_response(&response([3; 12], mapped), [4; 12]),
                Err(StunError::NotOurs)
            );
        }
        // Garbage never panics.
        for junk in [
            &b""[..],
            b"GET / HTTP/1.1",
            &[0u8; 20],
            &[
                0, 1, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ] {
            assert!(binding_response(junk, [0; 12]).is_err());
        }
    }
}
