//! ICMP echo (TR-143 IPPing): one echo request at a time, each waited
//! for up to the timeout, over an unprivileged ICMP datagram socket where
//! `net.ipv4.ping_group_range` lets the agent's group open one, and a raw
//! socket otherwise (root, CAP_NET_RAW). IPv4 and IPv6.
//!
//! Blocking: the caller runs it on a thread of its own (a test takes
//! seconds), and may stop it between echoes with `cancel`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt,
};

/// Which family a test uses (TR-181 ProtocolVersion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// What a test is asked to do.
#[derive(Clone, Debug)]
pub struct PingRequest {
    pub host: String,
    pub family: Family,
    /// The interface to leave by, by name (its first address of the
    /// family is the source).
    pub interface: Option<String>,
    pub repetitions: u32,
    pub timeout: Duration,
    /// Bytes of data in each echo.
    pub size: usize,
    pub dscp: u8,
}

/// What a test found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PingResult {
    pub address: Option<IpAddr>,
    /// The source address the echoes left from.
    pub source: Option<IpAddr>,
    pub success: u32,
    pub failure: u32,
    /// The round-trip time of each echo answered.
    pub times: Vec<Duration>,
}

/// Why a test could not run (TR-181's Error_ states).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiagnosticError {
    #[error("cannot resolve {0:?}")]
    CannotResolveHostName(String),
    #[error("no route to {0}")]
    NoRouteToHost(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Other(String),
}

/// The address of `host` of the family asked for: an address as is, or a
/// name through the system's resolver (getaddrinfo).
pub fn resolve(host: &str, family: Family) -> Result<IpAddr, DiagnosticError> {
    let wanted = |a: &IpAddr| match family {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    };
    let unresolved = || DiagnosticError::CannotResolveHostName(host.to_owned());
    // A URL or anything else that is no host name is not looked up.
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:_%".contains(&b))
    {
        return Err(unresolved());
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return if wanted(&address) {
            Ok(address)
        } else {
            Err(unresolved())
        };
    }
    (host, 0)
        .to_socket_addrs()
        .map_err(|_| unresolved())?
        .map(|a| a.ip())
        .find(wanted)
        .ok_or_else(unresolved)
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type 8 (ICMP) or 128 (ICMPv6), identifier, sequence,
/// `size` bytes of data. The ICMP checksum is filled in (the kernel fills
/// ICMPv6's, and a datagram socket's).
pub fn echo_request(v6: bool, identifier: u16, sequence: u16, size: usize) -> Vec<u8> {
    let mut packet = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend((0..size).map(|i| (i % 251) as u8));
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// Whether `received` answers the echo `sequence`: an echo reply (0 or
/// 129) with that sequence and, from a raw socket, our identifier (a
/// datagram socket's identifier is the kernel's, and it only hands us
/// ours). A raw IPv4 socket's packets start with the IP header.
pub fn is_reply(received: &[u8], v6: bool, raw: bool, identifier: u16, sequence: u16) -> bool {
    let icmp = if raw && !v6 {
        let Some(&first) = received.first() else {
            return false;
        };
        match received.get(usize::from(first & 0x0f) * 4..) {
            Some(icmp) => icmp,
            None => return false,
        }
    } else {
        received
    };
    let [kind, 0, _, _, id0, id1, seq0, seq1, ..] = icmp else {
        return false;
    };
    *kind == if v6 { 129 } else { 0 }
        && u16::from_be_bytes([*seq0, *seq1]) == sequence
        && (!raw || u16::from_be_bytes([*id0, *id1]) == identifier)
}

struct Echo {
    fd: OwnedFd,
    raw: bool,
}

fn open(v6: bool) -> Result<Echo, DiagnosticError> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    match socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, protocol) {
        Ok(fd) => Ok(Echo { fd, raw: false }),
        Err(datagram) => socket::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
            .map(|fd| Echo { fd, raw: true })
            .map_err(|raw| {
                DiagnosticError::Internal(format!(
                    "no ICMP socket: {datagram} (datagram: net.ipv4.ping_group_range does not \
                     include the agent's group), {raw} (raw: not root)"
                ))
            }),
    }
}

/// The first address of `interface` of the family of `v6`.
pub fn source_of(interface: &str, v6: bool) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == interface)
        .filter_map(|a| {
            let address = a.address?;
            if v6 {
                address.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip()))
            } else {
                address.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()))
            }
        })
        .next()
}

/// The interface that holds `address` (the source a connection was
/// given), for its counters.
pub fn interface_with(address: IpAddr) -> Option<String> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .find(|a| {
            a.address.is_some_and(|s| {
                s.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())) == Some(address)
                    || s.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())) == Some(address)
            })
        })
        .map(|a| a.interface_name)
}

/// Runs the test. Echoes go one at a time; `cancel` stops it between
/// them (the result so far is then dropped by the caller).
pub fn ping(request: &PingRequest, cancel: &AtomicBool) -> Result<PingResult, DiagnosticError> {
    let address = resolve(&request.host, request.family)?;
    let v6 = address.is_ipv6();
    let echo = open(v6)?;
    let fd = echo.fd.as_fd();
    let internal = |what: &str, e: nix::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    if let Some(interface) = &request.interface {
        let source = source_of(interface, v6).ok_or_else(|| {
            DiagnosticError::Other(format!("{interface} has no address of {address}'s family"))
        })?;
        // The device itself where the kernel lets us (root); the source
        // address always, which picks the route's interface otherwise.
        let _ = socket::setsockopt(&fd, sockopt::BindToDevice, &interface.into());
        let local = SockaddrStorage::from(SocketAddr::new(source, 0));
        socket::bind(fd.as_raw_fd_compat(), &local).map_err(|e| internal("bind", e))?;
    }
    let tos = i32::from(request.dscp) << 2;
    let set = if v6 {
        socket::setsockopt(&fd, sockopt::Ipv6TClass, &tos)
    } else {
        socket::setsockopt(&fd, sockopt::Ipv4Tos, &tos)
    };
    set.map_err(|e| internal("DSCP", e))?;
    let destination = SockaddrStorage::from(SocketAddr::new(address, 0));
    socket::connect(fd.as_raw_fd_compat(), &destination).map_err(|e| match e {
        nix::Error::ENETUNREACH | nix::Error::EHOSTUNREACH => {
            DiagnosticError::NoRouteToHost(address.to_string())
        }
        e => internal("connect", e),
    })?;
    let source = socket::getsockname::<SockaddrStorage>(fd.as_raw_fd_compat())
        .ok()
        .and_then(|s| {
            s.as_sockaddr_in()
                .map(|a| IpAddr::V4(a.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
        })
        .filter(|a| !a.is_unspecified());
    // Random per test: two tests at once (IPPing and ServerSelection)
    // on raw sockets each see the other's replies, and tell them apart
    // by it.
    let identifier = {
        use std::hash::{BuildHasher as _, Hasher as _};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u16
    };
    let mut result = PingResult {
        address: Some(address),
        source,
        ..PingResult::default()
    };
    let mut buffer = vec![0u8; request.size + 128];
    for n in 0..request.repetitions {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let sequence = n as u16;
        let packet = echo_request(v6, identifier, sequence, request.size);
        let sent = Instant::now();
        match socket::send(fd.as_raw_fd_compat(), &packet, MsgFlags::empty()) {
            Ok(_) => {}
            Err(nix::Error::ENETUNREACH | nix::Error::EHOSTUNREACH) => {
                result.failure += 1;
                continue;
            }
            Err(e) => return Err(internal("send", e)),
        }
        let deadline = sent + request.timeout;
        let answered = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            let timeout = nix::sys::time::TimeVal::new(
                left.as_secs() as i64,
                left.subsec_micros().max(1) as i64,
            );
            socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
                .map_err(|e| internal("timeout", e))?;
            match socket::recv(fd.as_raw_fd_compat(), &mut buffer, MsgFlags::empty()) {
                Ok(length) if is_reply(&buffer[..length], v6, echo.raw, identifier, sequence) => {
                    break true;
                }
                Ok(_) => {}
                // Timed out; an ICMP error for the echo (unreachable) on a
                // connected socket: not answered.
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                Err(_) => break false,
            }
        };
        if answered {
            result.success += 1;
            result.times.push(sent.elapsed());
        } else {
            result.failure += 1;
        }
    }
    Ok(result)
}

/// `AsRawFd` for the nix calls that still take a raw descriptor.
trait RawFdCompat {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd;
}

impl RawFdCompat for std::os::fd::BorrowedFd<'_> {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_their_checksum_and_replies_are_matched() {
        let packet = echo_request(false, 0x1234, 7, 10);
        assert_eq!(packet.len(), 18);
        assert_eq!(&packet[..2], &[8, 0]);
        // A packet with its checksum sums to zero.
        assert_eq!(checksum(&packet), 0);
        let v6 = echo_request(true, 1, 2, 0);
        assert_eq!(v6, [128, 0, 0, 0, 0, 1, 0, 2]);

        let mut reply = packet.clone();
        reply[0] = 0;
        assert!(is_reply(&reply, false, false, 0, 7));
        assert!(!is_reply(&reply, false, false, 0, 8));
        // Raw: the identifier counts, and the IP header comes first.
        let mut raw = vec![0x45; 1];
        raw.extend_from_slice(&[0; 19]);
        raw.extend_from_slice(&reply);
        assert!(is_reply(&raw, false, true, 0x1234, 7));
        assert!(!is_reply(&raw, false, true, 0x4321, 7));
        // A request is no reply; truncated data is not either.
        assert!(!is_reply(&packet, false, false, 0, 7));
        assert!(!is_reply(&[0, 0, 0], false, false, 0, 0));
        assert!(!is_reply(&[0x4f], false, true, 0, 0));
        assert!(is_reply(&[129, 0, 0, 0, 0, 1, 0, 2], true, true, 1, 2));
    }

    #[test]
    fn hosts_that_are_no_names_are_not_looked_up() {
        for host in [
            "",
            "http://example.com/",
            "a b",
            "exa mple",
            &"x".repeat(300),
        ] {
            assert!(matches!(
                resolve(host, Family::Any),
                Err(DiagnosticError::CannotResolveHostName(_))
            ));
        }
        assert_eq!(
            resolve("127.0.0.1", Family::Any),
            Ok("127.0.0.1".parse().unwrap())
        );
        assert!(resolve("127.0.0.1", Family::V6).is_err());
        assert_eq!(resolve("::1", Family::V6), Ok("::1".parse().unwrap()));
    }

    /// The loopback answers: a real echo over a real socket (datagram or
    /// raw, whichever this machine allows).
    #[test]
    fn loopback_answers_every_echo() {
        let request = PingRequest {
            host: "127.0.0.1".into(),
            family: Family::Any,
            interface: None,
            repetitions: 3,
            timeout: Duration::from_secs(2),
            size: 32,
            dscp: 10,
        };
        let result = ping(&request, &AtomicBool::new(false)).unwrap();
        assert_eq!((result.success, result.failure), (3, 0), "{result:?}");
        assert_eq!(result.times.len(), 3);
        assert_eq!(result.source, Some("127.0.0.1".parse().unwrap()));
    }
}
