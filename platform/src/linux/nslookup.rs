//! TR-143 NSLookupDiagnostics: the host name asked of a DNS server (the
//! one named, or the host resolver's first), A then AAAA, over UDP, once
//! per repetition; each answer's status, addresses and time. Messages are
//! built and read by `simple-dns`.
//!
//! Blocking, like [`super::ping`].

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};

use super::ping::{DiagnosticError, Family, resolve};

#[derive(Clone, Debug)]
pub struct LookupRequest {
    pub host_name: String,
    /// The server's name or address; the host resolver's first when
    /// `None`.
    pub server: Option<String>,
    pub interface: Option<String>,
    pub timeout: Duration,
    pub repetitions: u32,
}

/// One repetition's outcome (TR-181's Result.{i}.Status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupStatus {
    Success,
    ServerNotAvailable,
    NotResolved,
    Timeout,
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    pub status: LookupStatus,
    /// The answer came from an authoritative server (None: no answer).
    pub authoritative: Option<bool>,
    /// The name the addresses belong to (the end of a CNAME chain).
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub server: IpAddr,
    pub time: Duration,
}

/// The server to ask: the one named (a name goes through the host's
/// resolver; one that does not resolve is DiagnosticError::
/// CannotResolveHostName), else the first of `resolv_conf`.
pub fn server_address(named: Option<&str>, resolv_conf: &str) -> Result<IpAddr, DiagnosticError> {
    match named.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => resolve(name, Family::Any),
        None => super::network::parse_resolv_conf(resolv_conf)
            .into_iter()
            .next()
            .ok_or_else(|| {
                DiagnosticError::Other("no DNS server: none named, none in resolv.conf".into())
            }),
    }
}

/// Whether `name` is a host name (RFC 1123 §2.1 letters, digits and
/// hyphens, underscores as seen in service names; labels of 1 to 63,
/// 253 in all, an ending dot allowed).
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A query for `name` of `kind`, recursion desired.
pub fn query(id: u16, name: &str, kind: TYPE) -> Result<Vec<u8>, DiagnosticError> {
    if !is_host_name(name) {
        return Err(DiagnosticError::Other(format!(
            "{name:?} is not a host name"
        )));
    }
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    let name = Name::new(name)
        .map_err(|e| DiagnosticError::Other(format!("{name:?} is not a host name: {e}")))?;
    packet.questions.push(Question::new(
        name,
        QTYPE::TYPE(kind),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet
        .build_bytes_vec()
        .map_err(|e| DiagnosticError::Internal(format!("a DNS query: {e}")))
}

/// What an answer to query `id` says: its code, whether authoritative,
/// the addresses in it and the name they belong to. `None` when it is
/// not an answer to that query (or not DNS at all).
pub fn answer(data: &[u8], id: u16) -> Option<(RCODE, bool, Vec<IpAddr>, Option<String>)> {
    let packet = Packet::parse(data).ok()?;
    if packet.id() != id || !packet.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let mut addresses = Vec::new();
    let mut owner = None;
    for record in &packet.answers {
        let address = match &record.rdata {
            RData::A(a) => IpAddr::from(std::net::Ipv4Addr::from(a.address)),
            RData::AAAA(a) => IpAddr::from(std::net::Ipv6Addr::from(a.address)),
            _ => continue,
        };
        addresses.push(address);
        owner = Some(record.name.to_string());
    }
    Some((
        packet.rcode(),
        packet.has_flags(PacketFlag::AUTHORITATIVE_ANSWER),
        addresses,
        owner,
    ))
}

pub fn nslookup(
    request: &LookupRequest,
    cancel: &AtomicBool,
) -> Result<Vec<Lookup>, DiagnosticError> {
    if !is_host_name(&request.host_name) {
        return Err(DiagnosticError::Other(format!(
            "{:?} is not a host name",
            request.host_name
        )));
    }
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let server = server_address(request.server.as_deref(), &resolv_conf)?;
    let internal =
        |what: &str, e: std::io::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    let local: IpAddr = match (&request.interface, server) {
        (Some(interface), server) => super::ping::source_of(interface, server.is_ipv6())
            .ok_or_else(|| {
                DiagnosticError::Other(format!("{interface} has no address of {server}'s family"))
            })?,
        (None, IpAddr::V4(_)) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        (None, IpAddr::V6(_)) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).map_err(|e| internal("bind", e))?;
    socket
        .connect(SocketAddr::new(server, 53))
        .map_err(|e| internal("connect", e))?;
    let mut results = Vec::new();
    let mut id = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..request.repetitions.max(1) {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let deadline = started + request.timeout;
        let mut lookup = Lookup {
            status: LookupStatus::Success,
            authoritative: None,
            name: String::new(),
            addresses: Vec::new(),
            server,
            time: Duration::ZERO,
        };
        let mut resolved = false;
        for kind in [TYPE::A, TYPE::AAAA] {
            id = id.wrapping_add(1);
            match ask(&socket, id, &request.host_name, kind, deadline)? {
                Asked::Answer(code, authoritative, addresses, owner) => {
                    lookup.authoritative = Some(authoritative);
                    if code == RCODE::NameError {
                        lookup.status = LookupStatus::NotResolved;
                        break;
                    }
                    if code != RCODE::NoError {
                        lookup.status = LookupStatus::Other;
                        break;
                    }
                    resolved |= !addresses.is_empty();
                    // TR-181 lists 10 addresses at most.
                    let room = 10usize.saturating_sub(lookup.addresses.len());
                    lookup.addresses.extend(addresses.into_iter().take(room));
                    // A name the server made up that is no host name
                    // (escaped dots, 300 characters) is not repeated.
                    if let Some(owner) = owner.filter(|o| is_host_name(o)) {
                        lookup.name = owner;
                    } else if lookup.name.is_empty() && resolved {
                        lookup.name = request.host_name.clone();
                    }
                }
                Asked::Timeout => {
                    lookup.status = LookupStatus::Timeout;
                    break;
                }
                Asked::Refused => {
                    lookup.status = LookupStatus::ServerNotAvailable;
                    break;
                }
            }
        }
        if lookup.status == LookupStatus::Success && !resolved {
            lookup.status = LookupStatus::NotResolved;
        }
        lookup.time = started.elapsed();
        results.push(lookup);
    }
    Ok(results)
}

enum Asked {
    Answer(RCODE, bool, Vec<IpAddr>, Option<String>),
    Timeout,
    /// Nothing listens there (an ICMP port unreachable came back).
    Refused,
}

fn ask(
    socket: &UdpSocket,
    id: u16,
    name: &str,
    kind: TYPE,
    deadline: Instant,
) -> Result<Asked, DiagnosticError> {
    let message = query(id, name, kind)?;
    match socket.send(&message) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(Asked::Refused),
        Err(e) => return Err(DiagnosticError::Internal(format!("send: {e}"))),
    }
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Asked::Timeout);
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| DiagnosticError::Internal(format!("timeout: {e}")))?;
        match socket.recv(&mut buffer) {
            Ok(length) => {
                // Someone else's datagram, or an old answer: not ours.
                if let Some((code, authoritative, addresses, owner)) = answer(&buffer[..length], id)
                {
                    return Ok(Asked::Answer(code, authoritative, addresses, owner));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Ok(Asked::Refused);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(DiagnosticError::Internal(format!("recv: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_round_trip() {
        let bytes = query(7, "host.example", TYPE::A).unwrap();
        let asked = Packet::parse(&bytes).unwrap();
        assert_eq!(asked.id(), 7);
        assert!(asked.has_flags(PacketFlag::RECURSION_DESIRED));
        let mut reply = asked.into_reply();
        reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        reply.answers.push(simple_dns::ResourceRecord::new(
            Name::new_unchecked("host.example"),
            CLASS::IN,
            60,
            RData::A(simple_dns::rdata::A {
                address: u32::from(std::net::Ipv4Addr::new(192, 0, 2, 7)),
            }),
        ));
        let bytes = reply.build_bytes_vec().unwrap();
        let (code, authoritative, addresses, owner) = answer(&bytes, 7).unwrap();
        assert_eq!(code, RCODE::NoError);
        assert!(authoritative);
        assert_eq!(addresses, ["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(owner.as_deref(), Some("host.example"));
        // Another id, garbage, a query: no answer to ours.
        assert!(answer(&bytes, 8).is_none());
        assert!(answer(b"\x00\x07garbage", 7).is_none());
        assert!(answer(&query(7, "x.example", TYPE::A).unwrap(), 7).is_none());
        assert!(query(1, "not a name..", TYPE::A).is_err());
        assert!(is_host_name("a-b.example."));
        assert!(!is_host_name("http://x/"));
        assert!(!is_host_name(&format!("{}.example", "a".repeat(64))));
    }

    #[test]
    fn the_server_is_the_one_named_or_the_resolvers_first() {
        let conf = "# comment\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n";
        assert_eq!(
            server_address(None, conf),
            Ok("192.0.2.53".parse().unwrap())
        );
        assert_eq!(
            server_address(Some("198.51.100.1"), conf),
            Ok("198.51.100.1".parse().unwrap())
        );
        assert!(matches!(
            server_address(Some("http://dns/"), conf),
            Err(DiagnosticError::CannotResolveHostName(_))
        ));
        assert!(matches!(
            server_address(None, ""),
            Err(DiagnosticError::Other(_))
        ));
    }
}
