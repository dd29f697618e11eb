//! TR-143 TraceRoute: UDP probes to the classic high ports with the hop
//! limit raised one at a time; each router on the way answers "time
//! exceeded", the destination "port unreachable". The answers are read
//! from the socket's error queue (IP_RECVERR: the kernel hands an
//! unprivileged UDP socket the ICMP errors its datagrams caused, with the
//! address that sent them), so no raw socket and no root are needed.
//!
//! Blocking, like [`super::ping`]: the caller runs it on a thread of its
//! own and may stop it between probes with `cancel`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrStorage, sockopt,
};

use super::ping::{DiagnosticError, Family, resolve};

/// The first destination port (traceroute(8)'s), one more per probe.
const FIRST_PORT: u16 = 33434;

#[derive(Clone, Debug)]
pub struct TraceRequest {
    pub host: String,
    pub family: Family,
    /// The interface to leave by, by name (its first address of the
    /// family is the source).
    pub interface: Option<String>,
    pub tries: u32,
    /// How long each probe is waited for.
    pub timeout: Duration,
    pub size: usize,
    pub dscp: u8,
    pub max_hops: u8,
}

/// One hop of the route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hop {
    /// Who answered (none when no probe was answered).
    pub address: Option<IpAddr>,
    /// The round-trip time of each answered probe.
    pub times: Vec<Duration>,
    /// The ICMP error's code when it was neither "time exceeded" nor the
    /// destination's "port unreachable" (a router saying the destination
    /// is unreachable), else 0.
    pub error: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceResult {
    pub address: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub hops: Vec<Hop>,
    /// The destination answered (before the hop limit ran out).
    pub reached: bool,
    /// A router said the destination is unreachable (the last hop's
    /// error code says why): the trace ended there.
    pub stopped_by_error: bool,
}

/// What an ICMP error from the error queue says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A router on the way: time exceeded.
    Router,
    /// The destination: port unreachable.
    Destination,
    /// Unreachable for another reason: the code.
    Unreachable(u8),
    /// Anything else (a local error, another ICMP message).
    Other,
}

/// Reads an ICMP error's type and code (ICMP or ICMPv6).
pub fn classify(v6: bool, kind: u8, code: u8) -> Answer {
    match (v6, kind, code) {
        (false, 11, _) | (true, 3, _) => Answer::Router,
        (false, 3, 3) | (true, 1, 4) => Answer::Destination,
        (false, 3, code) | (true, 1, code) => Answer::Unreachable(code),
        _ => Answer::Other,
    }
}

/// SO_EE_ORIGIN_ICMP and SO_EE_ORIGIN_ICMP6.
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;

pub fn traceroute(
    request: &TraceRequest,
    cancel: &AtomicBool,
) -> Result<TraceResult, DiagnosticError> {
    let address = resolve(&request.host, request.family)?;
    let v6 = address.is_ipv6();
    let internal = |what: &str, e: nix::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket::socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )
    .map_err(|e| internal("socket", e))?;
    let mut bound = None;
    if let Some(interface) = &request.interface {
        let source = super::ping::source_of(interface, v6).ok_or_else(|| {
            DiagnosticError::Other(format!("{interface} has no address of {address}'s family"))
        })?;
        let _ = socket::setsockopt(&fd, sockopt::BindToDevice, &interface.into());
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(source, 0)),
        )
        .map_err(|e| internal("bind", e))?;
        bound = Some(source);
    }
    let tos = i32::from(request.dscp) << 2;
    if v6 {
        socket::setsockopt(&fd, sockopt::Ipv6RecvErr, &true)
            .and_then(|()| socket::setsockopt(&fd, sockopt::Ipv6TClass, &tos))
    } else {
        socket::setsockopt(&fd, sockopt::Ipv4RecvErr, &true)
            .and_then(|()| socket::setsockopt(&fd, sockopt::Ipv4Tos, &tos))
    }
    .map_err(|e| internal("socket options", e))?;
    // The source the route gives: what a connected socket is bound to
    // (connecting a UDP socket sends nothing).
    let source = std::net::UdpSocket::bind(SocketAddr::new(
        if v6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        },
        0,
    ))
    .and_then(|probe| {
        probe.connect(SocketAddr::new(address, FIRST_PORT))?;
        probe.local_addr()
    })
    .map(|a| a.ip())
    .ok();
    let source = bound.or(source);
    let mut result = TraceResult {
        address: Some(address),
        source,
        ..TraceResult::default()
    };
    let payload = vec![0x40u8; request.size];
    let mut port = FIRST_PORT;
    'hops: for ttl in 1..=request.max_hops.max(1) {
        let mut hop = Hop::default();
        let mut answer = None;
        for _ in 0..request.tries.max(1) {
            if cancel.load(Ordering::Relaxed) {
                break 'hops;
            }
            let set = if v6 {
                socket::setsockopt(&fd, sockopt::Ipv6Ttl, &i32::from(ttl))
            } else {
                socket::setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(ttl))
            };
            set.map_err(|e| internal("hop limit", e))?;
            let probe = port;
            let destination = SockaddrStorage::from(SocketAddr::new(address, probe));
            port = port.wrapping_add(1).max(FIRST_PORT);
            let sent = Instant::now();
            match socket::sendto(fd.as_raw_fd(), &payload, &destination, MsgFlags::empty()) {
                Ok(_) => {}
                Err(nix::Error::ENETUNREACH | nix::Error::EHOSTUNREACH) => {
                    return Err(DiagnosticError::NoRouteToHost(address.to_string()));
                }
                Err(e) => return Err(internal("send", e)),
            }
            if let Some((from, what)) = wait_error(&fd, v6, address, probe, sent + request.timeout)?
            {
                hop.times.push(sent.elapsed());
                hop.address = Some(from);
                answer = Some(what);
            }
        }
        match answer {
            Some(Answer::Unreachable(code)) => {
                hop.error = u32::from(code);
                result.stopped_by_error = true;
            }
            Some(Answer::Destination) => result.reached = true,
            _ => {}
        }
        let stop = matches!(answer, Some(Answer::Destination | Answer::Unreachable(_)));
        result.hops.push(hop);
        if stop {
            break;
        }
    }
    Ok(result)
}

/// Waits until `deadline` for the answer to the probe sent to `port`:
/// an ICMP error on the socket's error queue about that probe (the queue
/// names the datagram's destination: a late answer to an earlier probe is
/// dropped), or a datagram from the destination itself. The address that
/// answered and what it says.
fn wait_error(
    fd: &std::os::fd::OwnedFd,
    v6: bool,
    destination: IpAddr,
    port: u16,
    deadline: Instant,
) -> Result<Option<(IpAddr, Answer)>, DiagnosticError> {
    let internal = |what: &str, e: nix::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    let address_of = |s: &SockaddrStorage| {
        s.as_sockaddr_in()
            .map(|a| (IpAddr::V4(a.ip()), a.port()))
            .or_else(|| s.as_sockaddr_in6().map(|a| (IpAddr::V6(a.ip()), a.port())))
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(fd),
            PollFlags::POLLERR | PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(internal("poll", e)),
        }
        let mut data = [0u8; 512];
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!([u8; 512]);
        let received = socket::recvmsg::<SockaddrStorage>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        );
        let message = match received {
            Ok(message) => message,
            // No error queued: a datagram (the destination answering a
            // probe, which some UDP services do).
            Err(nix::Error::EAGAIN) => {
                let mut sink = [0u8; 512];
                if let Ok((_, Some(from))) =
                    socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut sink)
                    && address_of(&from).is_some_and(|(a, _)| a == destination)
                {
                    return Ok(Some((destination, Answer::Destination)));
                }
                continue;
            }
            Err(e) => return Err(internal("recvmsg", e)),
        };
        // The queue names the datagram the error is about.
        if message
            .address
            .as_ref()
            .and_then(address_of)
            .is_some_and(|(_, p)| p != port)
        {
            continue;
        }
        let cmsgs = message.cmsgs().map_err(|e| internal("cmsg", e))?;
        for cmsg in cmsgs {
            let (error, from) = match cmsg {
                ControlMessageOwned::Ipv4RecvErr(error, Some(from)) if !v6 => (
                    error,
                    IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr))),
                ),
                ControlMessageOwned::Ipv6RecvErr(error, Some(from)) if v6 => (
                    error,
                    IpAddr::V6(std::net::Ipv6Addr::from(from.sin6_addr.s6_addr)),
                ),
                _ => continue,
            };
            if error.ee_origin != ORIGIN_ICMP && error.ee_origin != ORIGIN_ICMP6 {
                continue;
            }
            return Ok(Some((from, classify(v6, error.ee_type, error.ee_code))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_errors_say_router_destination_or_unreachable() {
        assert_eq!(classify(false, 11, 0), Answer::Router);
        assert_eq!(classify(false, 3, 3), Answer::Destination);
        assert_eq!(classify(false, 3, 1), Answer::Unreachable(1));
        assert_eq!(classify(true, 3, 0), Answer::Router);
        assert_eq!(classify(true, 1, 4), Answer::Destination);
        assert_eq!(classify(true, 1, 0), Answer::Unreachable(0));
        assert_eq!(classify(false, 0, 0), Answer::Other);
    }

    /// The loopback is one hop away: its port unreachable ends the trace.
    #[test]
    fn the_loopback_is_reached_in_one_hop() {
        let request = TraceRequest {
            host: "127.0.0.1".into(),
            family: Family::Any,
            interface: None,
            tries: 2,
            timeout: Duration::from_secs(2),
            size: 32,
            dscp: 0,
            max_hops: 5,
        };
        let result = traceroute(&request, &AtomicBool::new(false)).unwrap();
        assert!(result.reached, "{result:?}");
        assert_eq!(result.hops.len(), 1);
        assert_eq!(result.hops[0].address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(result.hops[0].times.len(), 2);
    }
}
