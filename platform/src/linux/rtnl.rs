//! Dumps of the kernel's rtnetlink tables the files in `/proc` do not
//! give whole: every address of both families with its flags (IPv4's
//! `IFA_F_PERMANENT` tells a configured address from a leased one), and
//! the neighbour tables of both families (`/proc/net/arp` has IPv4 only).
//!
//! The entries are parsed by `netlink-packet-route`, the crate under
//! `rtnetlink`: its address and neighbour parsers only, by message type
//! (its whole-message parser brings every rtnetlink family's, some 390 KiB
//! of the release binary, for these two). The request, a netlink header
//! and a zeroed family header, is written here. The socket is a plain
//! blocking one from `nix`, read on the caller's thread (the platform's
//! snapshot thread, or a host read off the tree's lock), so no async
//! netlink stack comes with it.
//!
//! What the kernel answers is bounded: a dump is cut at [`MAX_ENTRIES`],
//! each wait for a datagram at [`RECV_TIMEOUT`], and a message that does
//! not parse is skipped (its header's length finds the next).

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, Parseable as _};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use crate::{InterfaceAddress, Neighbour};

/// The most entries one dump gives the agent (a gateway's neighbour table
/// on a busy LAN is a few hundred).
pub const MAX_ENTRIES: usize = 4096;

/// The longest wait for the kernel's next datagram of a dump.
pub const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// struct nlmsghdr's size; the message types used (linux/rtnetlink.h).
const HEADER: usize = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
/// struct ifaddrmsg's and struct ndmsg's sizes.
const IFADDRMSG: usize = 8;
const NDMSG: usize = 12;

/// One entry of a dump: the two kinds the agent asks for.
#[derive(Debug)]
pub enum Entry {
    Address(AddressMessage),
    Neighbour(NeighbourMessage),
}

/// Every address the kernel holds, with the index of its interface.
pub fn addresses() -> std::io::Result<Vec<(u32, InterfaceAddress)>> {
    // struct ifaddrmsg, zeroed: both families, every interface.
    Ok(dump(&request(RTM_GETADDR, IFADDRMSG))?
        .iter()
        .filter_map(address_of)
        .collect())
}

/// Both neighbour tables. `names` gives an interface's name by index.
pub fn neighbours(names: &HashMap<u32, String>) -> std::io::Result<Vec<Neighbour>> {
    // struct ndmsg, zeroed.
    Ok(dump(&request(RTM_GETNEIGH, NDMSG))?
        .iter()
        .filter_map(|m| neighbour_of(m, names))
        .collect())
}

/// One address message: its interface index and the address as the
/// platform says it. IFA_LOCAL is the interface's own address where the
/// link is point-to-point (IFA_ADDRESS is then the peer's).
pub fn address_of(message: &Entry) -> Option<(u32, InterfaceAddress)> {
    let Entry::Address(message) = message else {
        return None;
    };
    let mut address = None;
    let mut local = None;
    // The 32-bit IFA_FLAGS, where the kernel sends it, supersedes the
    // header's 8 bits.
    let mut flags = AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()));
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    let address: IpAddr = local.or(address)?;
    let limit = if address.is_ipv4() { 32 } else { 128 };
    (message.header.prefix_len <= limit).then_some(())?;
    Some((
        message.header.index,
        InterfaceAddress {
            address,
            prefix: message.header.prefix_len,
            permanent: flags.contains(AddressFlags::Permanent),
            tentative: flags.contains(AddressFlags::Tentative),
            deprecated: flags.contains(AddressFlags::Deprecated),
        },
    ))
}

/// One neighbour message, if it is a host on a link: an IPv4 or IPv6
/// address with a hardware address. Entries that never resolved
/// (incomplete, failed) and those of links without neighbour discovery
/// (NOARP: loopback, multicast) are no host; `active` is whether the
/// kernel holds the entry as reachable or recently so (a stale entry is
/// still a host on the LAN, as `/proc/net/arp`'s complete flag said).
pub fn neighbour_of(message: &Entry, names: &HashMap<u32, String>) -> Option<Neighbour> {
    let Entry::Neighbour(message) = message else {
        return None;
    };
    let active = match message.header.state {
        NeighbourState::Reachable
        | NeighbourState::Permanent
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe => true,
        _ => return None,
    };
    let mut address = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                address = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                address = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) if bytes.len() == 6 => {
                mac = Some(mac_text(bytes));
            }
            _ => {}
        }
    }
    let mac = mac.filter(|m| m != "00:00:00:00:00:00")?;
    Some(Neighbour {
        address: address?,
        mac,
        interface: names.get(&message.header.ifindex)?.clone(),
        active,
    })
}

/// Lower-case and colon-separated, as the platform says MAC addresses.
fn mac_text(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(":")
}

/// A dump request of `kind`: the netlink header, then the family's
/// header of `body` bytes, zeroed (netlink's byte order is the host's).
fn request(kind: u16, body: usize) -> Vec<u8> {
    let length = HEADER + body;
    let mut bytes = Vec::with_capacity(length);
    bytes.extend_from_slice(&(length as u32).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // Sequence number and port id (0: the kernel's).
    bytes.extend_from_slice(&1u32.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.resize(length, 0);
    bytes
}

/// Sends a dump request and collects what the kernel answers until its
/// Done (or an error, or [`MAX_ENTRIES`]).
fn dump(request: &[u8]) -> std::io::Result<Vec<Entry>> {
    use nix::sys::socket::{
        AddressFamily as Family, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind,
        recv, send, socket,
    };
    use std::os::fd::AsRawFd as _;
    let fd = socket(
        Family::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as nix::sys::time::time_t, 0);
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    send(fd.as_raw_fd(), request, MsgFlags::empty())?;
    // A dump comes in datagrams of at most a page or two each (the
    // kernel's NLMSG_GOODSIZE); 32 KiB holds any of them.
    let mut buffer = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    loop {
        let received = match recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("rtnetlink: no answer in {RECV_TIMEOUT:?}"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match split(&buffer[..received], &mut out) {
            Some(Ended::Done) => return Ok(out),
            Some(Ended::Error(code)) => {
                return Err(std::io::Error::from_raw_os_error(code));
            }
            None if out.len() >= MAX_ENTRIES => return Ok(out),
            None => {}
        }
    }
}

/// How a dump ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Done,
    /// The kernel's errno.
    Error(i32),
}

/// Splits one datagram into its messages, appending the tables' entries
/// to `out`; says when the dump is over. Each message is found by its
/// header (length, type: netlink's own framing, host byte order); one
/// whose body does not parse is skipped; a header that cannot be right (a
/// length shorter than a header or past the datagram) ends the datagram.
fn split(mut datagram: &[u8], out: &mut Vec<Entry>) -> Option<Ended> {
    /// NLMSG_ERROR, NLMSG_DONE.
    const ERROR: u16 = 2;
    const DONE: u16 = 3;
    while datagram.len() >= HEADER {
        let length = u32::from_ne_bytes(datagram[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().ok()?);
        if length < HEADER || length > datagram.len() {
            return None;
        }
        match kind {
            DONE => return Some(Ended::Done),
            ERROR => {
                // struct nlmsgerr: the negative errno first; 0 acknowledges.
                let code = datagram
                    .get(HEADER..HEADER + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                return Some(if code == 0 {
                    Ended::Done
                } else {
                    Ended::Error(code.saturating_neg())
                });
            }
            RTM_NEWADDR | RTM_NEWNEIGH if out.len() < MAX_ENTRIES => {
                let body = &datagram[HEADER..length];
                let entry = if kind == RTM_NEWADDR {
                    AddressMessage::parse(body).ok().map(Entry::Address)
                } else {
                    NeighbourMessage::parse(body).ok().map(Entry::Neighbour)
                };
                out.extend(entry);
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let next = (length + 3) & !3;
        datagram = datagram.get(next..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::address::AddressHeaderFlags;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn bytes(payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), payload);
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    /// `messages` and a Done in one datagram, as the kernel sends a dump,
    /// split back into entries.
    fn through_bytes(messages: impl IntoIterator<Item = RouteNetlinkMessage>) -> Vec<Entry> {
        let datagram = messages
            .into_iter()
            .map(|m| bytes(NetlinkPayload::InnerMessage(m)))
            .chain([bytes(NetlinkPayload::Done(Default::default()))])
            .collect::<Vec<_>>()
            .concat();
        let mut out = Vec::new();
        assert_eq!(split(&datagram, &mut out), Some(Ended::Done));
        out
    }

    fn address(index: u32, a: IpAddr, prefix: u8, flags: AddressFlags) -> RouteNetlinkMessage {
        let mut m = AddressMessage::default();
        m.header.family = if a.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.index = index;
        m.header.prefix_len = prefix;
        m.header.flags = AddressHeaderFlags::from_bits_truncate(flags.bits() as u8);
        m.attributes.push(AddressAttribute::Address(a));
        m.attributes.push(AddressAttribute::Flags(flags));
        RouteNetlinkMessage::NewAddress(m)
    }

    fn neighbour(index: u32, a: IpAddr, mac: &[u8], state: NeighbourState) -> RouteNetlinkMessage {
        let mut m = NeighbourMessage::default();
        // The kernel names the family: the destination is read by it.
        m.header.family = if a.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.ifindex = index;
        m.header.state = state;
        m.attributes.push(NeighbourAttribute::Destination(match a {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        RouteNetlinkMessage::NewNeighbour(m)
    }

    /// The requests written here are the bytes the crate would write for
    /// the same dump requests.
    #[test]
    fn requests_are_what_the_crate_would_write() {
        for (kind, body, message) in [
            (
                RTM_GETADDR,
                IFADDRMSG,
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            ),
            (
                RTM_GETNEIGH,
                NDMSG,
                RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            ),
        ] {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            header.sequence_number = 1;
            let mut crate_message = NetlinkMessage::new(header, NetlinkPayload::from(message));
            crate_message.finalize();
            let mut expected = vec![0; crate_message.buffer_len()];
            crate_message.serialize(&mut expected);
            assert_eq!(request(kind, body), expected, "kind {kind}");
        }
    }

    /// Messages as the kernel would send them, through bytes and back:
    /// IPv4 addresses leased and configured, IPv6 ones tentative and
    /// deprecated, a point-to-point link's own address.
    #[test]
    fn addresses_keep_their_flags() {
        let leased = address(
            2,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            24,
            AddressFlags::empty(),
        );
        let fixed = address(
            2,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
            24,
            AddressFlags::Permanent | AddressFlags::Secondary,
        );
        let tentative = address(
            3,
            IpAddr::V6("2001:db8::1".parse().unwrap()),
            64,
            AddressFlags::Tentative | AddressFlags::Permanent,
        );
        let old = address(
            3,
            IpAddr::V6("2001:db8::2".parse().unwrap()),
            64,
            AddressFlags::Deprecated,
        );
        let mut ptp = AddressMessage::default();
        ptp.header.index = 4;
        ptp.header.prefix_len = 32;
        ptp.attributes
            .push(AddressAttribute::Address("198.51.100.1".parse().unwrap()));
        ptp.attributes
            .push(AddressAttribute::Local("198.51.100.2".parse().unwrap()));
        let out = through_bytes(vec![
            leased,
            fixed,
            tentative,
            old,
            RouteNetlinkMessage::NewAddress(ptp),
        ]);
        let found: Vec<(u32, String, u8, bool, bool, bool)> = out
            .iter()
            .filter_map(address_of)
            .map(|(i, a)| {
                (
                    i,
                    a.address.to_string(),
                    a.prefix,
                    a.permanent,
                    a.tentative,
                    a.deprecated,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (2, "192.0.2.10".into(), 24, false, false, false),
                (2, "192.0.2.11".into(), 24, true, false, false),
                (3, "2001:db8::1".into(), 64, true, true, false),
                (3, "2001:db8::2".into(), 64, false, false, true),
                (4, "198.51.100.2".into(), 32, false, false, false),
            ]
        );
    }

    #[test]
    fn neighbours_are_hosts_that_resolved() {
        let names = HashMap::from([(2, "eth0".to_owned()), (3, "wlan0".to_owned())]);
        let mac = [0x02, 0xfc, 0, 0, 0, 5];
        let v6: Ipv6Addr = "fe80::5".parse().unwrap();
        let messages = [
            neighbour(
                2,
                IpAddr::V4([192, 0, 2, 1].into()),
                &mac,
                NeighbourState::Reachable,
            ),
            neighbour(3, IpAddr::V6(v6), &mac, NeighbourState::Stale),
            // Never resolved, no link of the agent, a broken address.
            neighbour(
                2,
                IpAddr::V4([192, 0, 2, 9].into()),
                &[0; 6],
                NeighbourState::Failed,
            ),
            neighbour(
                2,
                IpAddr::V4([192, 0, 2, 8].into()),
                &[0; 6],
                NeighbourState::Reachable,
            ),
            neighbour(
                9,
                IpAddr::V4([192, 0, 2, 7].into()),
                &mac,
                NeighbourState::Reachable,
            ),
            neighbour(
                2,
                IpAddr::V4([192, 0, 2, 6].into()),
                &[1, 2],
                NeighbourState::Reachable,
            ),
        ];
        let found: Vec<Neighbour> = through_bytes(messages)
            .iter()
            .filter_map(|m| neighbour_of(m, &names))
            .collect();
        assert_eq!(
            found,
            [
                Neighbour {
                    address: "192.0.2.1".parse().unwrap(),
                    mac: "02:fc:00:00:00:05".into(),
                    interface: "eth0".into(),
                    active: true,
                },
                Neighbour {
                    address: IpAddr::V6(v6),
                    mac: "02:fc:00:00:00:05".into(),
                    interface: "wlan0".into(),
                    active: true,
                },
            ]
        );
    }

    /// Garbage in a datagram ends it, with what came before kept; an
    /// error message ends the dump with the kernel's errno.
    #[test]
    fn broken_datagrams_are_cut_not_trusted() {
        let good = bytes(NetlinkPayload::InnerMessage(neighbour(
            2,
            IpAddr::V4([192, 0, 2, 1].into()),
            &[2, 0, 0, 0, 0, 1],
            NeighbourState::Reachable,
        )));
        for tail in [
            vec![0xff; 3],
            vec![0; 16],
            vec![0xff, 0xff, 0xff, 0x7f, 0x10, 0, 0, 0],
        ] {
            let mut out = Vec::new();
            assert_eq!(split(&[good.clone(), tail].concat(), &mut out), None);
            assert_eq!(out.len(), 1);
        }
        let mut error = netlink_packet_core::ErrorMessage::default();
        error.code = std::num::NonZeroI32::new(-1);
        let mut out = Vec::new();
        assert_eq!(
            split(&bytes(NetlinkPayload::Error(error)), &mut out),
            Some(Ended::Error(1))
        );
        // A message whose body does not parse (a neighbour message cut
        // short, its header still right) is skipped: the next one and the
        // Done of the same datagram are still read.
        let mut cut = vec![0u8; 20];
        cut[0..4].copy_from_slice(&20u32.to_ne_bytes());
        cut[4..6].copy_from_slice(&28u16.to_ne_bytes()); // RTM_NEWNEIGH
        let datagram = [
            cut,
            good.clone(),
            bytes(NetlinkPayload::Done(Default::default())),
        ]
        .concat();
        let mut out = Vec::new();
        assert_eq!(split(&datagram, &mut out), Some(Ended::Done));
        assert_eq!(out.len(), 1);
    }

    /// On this machine: the addresses as `ip` lists them, each with the
    /// flag `ip` shows as "dynamic" when it is not permanent. `ip` is run
    /// before and after the dump: an address that came or went between
    /// them (a temporary IPv6 address) is not held against either.
    #[test]
    fn addresses_are_the_kernels() {
        let shown = || {
            let out = std::process::Command::new("ip")
                .args(["-o", "addr"])
                .output()
                .expect("ip");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let before = shown();
        let found = addresses().expect("an rtnetlink dump");
        let after = shown();
        assert!(!found.is_empty(), "no address, loopback's included");
        let line = |text: &str, index: u32, a: &InterfaceAddress| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("{index}: "))
                        && l.contains(&format!(" {}/{} ", a.address, a.prefix))
                })
                .map(str::to_owned)
        };
        for (index, a) in &found {
            let line = line(&before, *index, a)
                .or_else(|| line(&after, *index, a))
                .unwrap_or_else(|| panic!("{a:?} on {index} not in {before}"));
            assert_eq!(line.contains(" dynamic "), !a.permanent, "{line}");
        }
        // Every address `ip` showed both times is in the dump.
        let stable = before
            .lines()
            .filter(|l| l.contains(" inet") && after.contains(*l))
            .count();
        assert!(found.len() >= stable, "{found:?} vs {before}");
    }
}
