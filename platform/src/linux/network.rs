//! The network as the kernel sees it, without D-Bus: the default routes
//! from `/proc/net/route` and `/proc/net/ipv6_route`, addresses and
//! neighbours from rtnetlink dumps ([`super::rtnl`]), each link's kind
//! and state from sysfs, and changes
//! from rtnetlink's multicast groups (links, IPv4 and IPv6 addresses and
//! routes), which wake a thread of its own only when something changed:
//! nothing is polled.
//!
//! Read only, and only what the kernel knows: no Wi-Fi profiles, no
//! packet-data contexts and no radio (those need NetworkManager, oFono or
//! ModemManager; writes are refused as unavailable), and nothing
//! invented where the kernel says nothing (a link of unknown kind has no
//! bearer).
//!
//! Why not the `rtnetlink` crate: its messages are `netlink-packet-route`'s,
//! which [`super::rtnl`] uses directly over a blocking `nix` socket; the
//! change notifications are only a wake-up (not parsed). rtnetlink would
//! add an async stack for reads that are a few datagrams each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, Once};

use dm_core::lock;

use crate::{
    ApnContext, ApnSettings, BearerKind, ChangeCallback, IpInterface, Link, LinkStats, Neighbour,
    Network, NetworkState, PlatformError, RadioState, Route, WifiProfile, WifiSettings,
};

/// Where the kernel's files are (other roots, for tests).
#[derive(Clone, Debug)]
struct Roots {
    proc: String,
    sys: String,
    resolv_conf: String,
}

/// What was read at the last change: reads copy it (no I/O for them).
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    state: NetworkState,
    links: Vec<Link>,
    interfaces: Vec<IpInterface>,
    dns: Vec<IpAddr>,
    routes: Vec<Route>,
}

/// The kernel's network (or another root's, for tests).
pub struct LinuxNetwork {
    roots: Roots,
    /// Subscribed before the first read, so that no change between the
    /// two is missed; handed to the watching thread.
    changes: Mutex<Option<std::os::fd::OwnedFd>>,
    snapshot: Arc<Mutex<Snapshot>>,
    callbacks: Arc<Mutex<Vec<ChangeCallback>>>,
    watching: Once,
}

impl Default for LinuxNetwork {
    fn default() -> LinuxNetwork {
        LinuxNetwork::new("/proc", "/sys", "/etc/resolv.conf")
    }
}

impl LinuxNetwork {
    /// Reads the network once now; later, at each change rtnetlink
    /// reports (see [`Network::on_change`]).
    pub fn new(proc_root: &str, sys_root: &str, resolv_conf: &str) -> LinuxNetwork {
        let roots = Roots {
            proc: proc_root.trim_end_matches('/').to_owned(),
            sys: sys_root.trim_end_matches('/').to_owned(),
            resolv_conf: resolv_conf.to_owned(),
        };
        let changes = Mutex::new(subscribe());
        LinuxNetwork {
            changes,
            snapshot: Arc::new(Mutex::new(roots.read())),
            roots,
            callbacks: Arc::new(Mutex::new(Vec::new())),
            watching: Once::new(),
        }
    }
}

impl Roots {
    fn read(&self) -> Snapshot {
        // Each file read once: the state's default routes are the table's.
        let routes = [
            self.read_file(&format!("{}/net/route", self.proc))
                .map(|t| parse_ipv4_routes(&t))
                .unwrap_or_default(),
            self.read_file(&format!("{}/net/ipv6_route", self.proc))
                .map(|t| parse_ipv6_routes(&t))
                .unwrap_or_default(),
        ]
        .concat();
        let interfaces = self.ip_interfaces();
        Snapshot {
            state: self.state(&routes, &interfaces),
            links: self.links(),
            interfaces,
            dns: std::fs::read_to_string(&self.resolv_conf)
                .map(|t| parse_resolv_conf(&t))
                .unwrap_or_default(),
            routes,
        }
    }

    fn read_file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// The Ethernet links: ARPHRD_ETHER, not Wi-Fi, not a bridge, and a
    /// port (a device behind it, or a veth pair's end), in ifindex order.
    fn links(&self) -> Vec<Link> {
        let Ok(entries) = std::fs::read_dir(format!("{}/class/net", self.sys)) else {
            return Vec::new();
        };
        let mut links: Vec<(u32, Link)> = entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .filter_map(|name| {
                let dir = format!("{}/class/net/{name}", self.sys);
                let exists = |f: &str| std::path::Path::new(&format!("{dir}/{f}")).exists();
                let text = |f: &str| {
                    self.read_file(&format!("{dir}/{f}"))
                        .map(|t| t.trim().to_owned())
                };
                if text("type")? != "1"
                    || exists("wireless")
                    || exists("phy80211")
                    || exists("bridge")
                {
                    return None;
                }
                let index: u32 = text("ifindex")?.parse().ok()?;
                let peer = text("iflink").and_then(|i| i.parse::<u32>().ok());
                if !exists("device") && peer == Some(index) {
                    return None;
                }
                let flags = text("flags")
                    .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
                let link = Link {
                    index,
                    mac: text("address").unwrap_or_default(),
                    enabled: flags.is_some_and(|f| f & 0x1 != 0),
                    up: text("operstate").as_deref() == Some("up"),
                    operstate: text("operstate").unwrap_or_default(),
                    speed: text("speed")
                        .and_then(|s| s.parse::<i64>().ok())
                        .and_then(|s| u32::try_from(s).ok()),
                    duplex: text("duplex").filter(|d| d == "full" || d == "half"),
                    name,
                };
                Some((index, link))
            })
            .collect();
        links.sort_by_key(|(index, _)| *index);
        links.into_iter().map(|(_, link)| link).collect()
    }

    /// Every link, in ifindex order, with its addresses and their flags.
    fn ip_interfaces(&self) -> Vec<IpInterface> {
        let Ok(entries) = std::fs::read_dir(format!("{}/class/net", self.sys)) else {
            return Vec::new();
        };
        // Without netlink (a sandbox), interfaces without addresses.
        let addresses = super::rtnl::addresses().unwrap_or_default();
        let mut interfaces: Vec<IpInterface> = entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .filter_map(|name| {
                let dir = format!("{}/class/net/{name}", self.sys);
                let text = |f: &str| {
                    self.read_file(&format!("{dir}/{f}"))
                        .map(|t| t.trim().to_owned())
                };
                let index: u32 = text("ifindex")?.parse().ok()?;
                let flags = text("flags")
                    .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                    .unwrap_or(0);
                let addresses = addresses
                    .iter()
                    .filter(|(owner, _)| *owner == index)
                    .map(|(_, a)| *a)
                    .collect();
                Some(IpInterface {
                    index,
                    enabled: flags & 0x1 != 0,
                    operstate: text("operstate").unwrap_or_default(),
                    carrier: text("carrier").as_deref() == Some("1"),
                    // IFF_LOOPBACK.
                    loopback: flags & 0x8 != 0,
                    mtu: text("mtu").and_then(|m| m.parse().ok()).unwrap_or(0),
                    ipv6: self
                        .read_file(&format!(
                            "{}/sys/net/ipv6/conf/{name}/disable_ipv6",
                            self.proc
                        ))
                        .is_some_and(|d| d.trim() == "0"),
                    addresses,
                    name,
                })
            })
            .collect();
        interfaces.sort_by_key(|i| i.index);
        interfaces
    }

    fn stats(&self, name: &str) -> Result<LinkStats, PlatformError> {
        use crate::LinkCounter::*;
        Ok(LinkStats {
            bytes_sent: self.counter(name, BytesSent)?,
            bytes_received: self.counter(name, BytesReceived)?,
            packets_sent: self.counter(name, PacketsSent)?,
            packets_received: self.counter(name, PacketsReceived)?,
            errors_sent: self.counter(name, ErrorsSent)?,
            errors_received: self.counter(name, ErrorsReceived)?,
            discards_sent: self.counter(name, DiscardsSent)?,
            discards_received: self.counter(name, DiscardsReceived)?,
            multicast_received: self.counter(name, MulticastReceived)?,
        })
    }

    /// One counter of `name`: its file in `statistics/`.
    fn counter(&self, name: &str, counter: crate::LinkCounter) -> Result<u64, PlatformError> {
        use crate::LinkCounter::*;
        if name.contains('/') || name.starts_with('.') {
            return Err(PlatformError::InvalidArgument(format!(
                "{name:?}: not a link name"
            )));
        }
        let file = match counter {
            BytesSent => "tx_bytes",
            BytesReceived => "rx_bytes",
            PacketsSent => "tx_packets",
            PacketsReceived => "rx_packets",
            ErrorsSent => "tx_errors",
            ErrorsReceived => "rx_errors",
            DiscardsSent => "tx_dropped",
            DiscardsReceived => "rx_dropped",
            MulticastReceived => "multicast",
        };
        let path = format!("{}/class/net/{name}/statistics/{file}", self.sys);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PlatformError::Unavailable(format!("the counters of {name} ({e})")))?;
        text.trim()
            .parse()
            .map_err(|_| PlatformError::Failed(format!("{path}: {text:?}")))
    }

    /// What kind of link `interface` is, from sysfs: Wi-Fi when it has
    /// wireless extensions or a phy, Ethernet when its hardware type is
    /// ARPHRD_ETHER; unknown (no bearer) otherwise.
    fn kind(&self, interface: &str) -> Option<BearerKind> {
        let dir = format!("{}/class/net/{interface}", self.sys);
        if std::path::Path::new(&format!("{dir}/wireless")).exists()
            || std::path::Path::new(&format!("{dir}/phy80211")).exists()
        {
            return Some(BearerKind::Wlan);
        }
        match self.read_file(&format!("{dir}/type"))?.trim() {
            "1" => Some(BearerKind::Ethernet),
            _ => None,
        }
    }

    /// The links that are up, but loopback.
    fn up_interfaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(format!("{}/class/net", self.sys)) else {
            return Vec::new();
        };
        let mut up: Vec<String> = entries
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .filter(|name| {
                self.read_file(&format!("{}/class/net/{name}/operstate", self.sys))
                    .is_some_and(|s| s.trim() == "up")
            })
            .collect();
        up.sort();
        up
    }
}

/// The default routes among `routes`, one family, lowest metric first
/// (the one the kernel uses).
fn defaults(routes: &[Route], v4: bool) -> Vec<&Route> {
    let mut defaults: Vec<&Route> = routes
        .iter()
        .filter(|r| r.prefix == 0 && r.destination.is_ipv4() == v4)
        .collect();
    defaults.sort_by_key(|r| r.metric);
    defaults
}

/// Every route of `/proc/net/route` that is up, in the file's order.
pub fn parse_ipv4_routes(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [iface, destination, gateway, flags, _, _, metric, mask, ..] = fields[..] else {
                return None;
            };
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let flags = hex(flags)?;
            if flags & RTF_UP == 0 {
                return None;
            }
            // The file prints network-order values as host integers.
            let mask = u32::from_be_bytes(hex(mask)?.to_ne_bytes());
            Some(Route {
                destination: IpAddr::V4(Ipv4Addr::from(hex(destination)?.to_ne_bytes())),
                prefix: u8::try_from(mask.leading_ones()).ok()?,
                gateway: (flags & RTF_GATEWAY != 0)
                    .then(|| hex(gateway).map(|g| IpAddr::V4(Ipv4Addr::from(g.to_ne_bytes()))))
                    .flatten(),
                interface: iface.to_owned(),
                // Printed signed (%d).
                metric: metric.parse::<i64>().ok()? as u32,
            })
        })
        .collect()
}

/// The routes of `/proc/net/ipv6_route` a host forwards by: up, not
/// rejected, not loopback's, not multicast, not the local table's routes
/// to its own addresses (what `ip -6 route` lists).
pub fn parse_ipv6_routes(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_REJECT: u32 = 0x200;
    const RTF_LOCAL: u32 = 0x8000_0000;
    const RTF_ANYCAST: u32 = 0x0010_0000;
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                destination,
                prefix,
                _,
                _,
                next_hop,
                metric,
                _,
                _,
                flags,
                iface,
            ] = fields[..]
            else {
                return None;
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let destination = u128::from_str_radix(destination, 16).ok()?;
            if flags & RTF_UP == 0
                || flags & (RTF_REJECT | RTF_LOCAL | RTF_ANYCAST) != 0
                || iface == "lo"
                || destination >> 120 == 0xff
            {
                return None;
            }
            let hop = Ipv6Addr::from(u128::from_str_radix(next_hop, 16).ok()?);
            Some(Route {
                destination: IpAddr::V6(Ipv6Addr::from(destination)),
                prefix: u8::from_str_radix(prefix, 16).ok().filter(|p| *p <= 128)?,
                gateway: (!hop.is_unspecified()).then_some(IpAddr::V6(hop)),
                interface: iface.to_owned(),
                metric: u32::from_str_radix(metric, 16).ok()?,
            })
        })
        .collect()
}

/// The name servers of a resolv.conf (`nameserver ADDRESS` lines, in
/// order; a scope suffix `%eth0` dropped; systemd-resolved's stub
/// 127.0.0.53 kept, as it is what the host asks).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let address = words.next()?;
            address.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The addresses of `interface` a server can use (no IPv6 link-local
/// ones), IPv4 first.
fn addresses(interfaces: &[IpInterface], interface: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interfaces
        .iter()
        .filter(|i| i.name == interface)
        .flat_map(|i| i.addresses.iter().map(|a| a.address))
        // fe80::/10: meaningful on the link only.
        .filter(|a| !matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect();
    out.sort_by_key(IpAddr::is_ipv6);
    out.dedup();
    out
}

impl Roots {
    fn state(&self, routes: &[Route], interfaces: &[IpInterface]) -> NetworkState {
        let (v4, v6) = (defaults(routes, true), defaults(routes, false));
        // The interface the default route leaves by, IPv4's first.
        let interface = v4.first().or(v6.first()).map(|r| r.interface.clone());
        let routers = interface
            .as_ref()
            .map(|interface| {
                let mut routers: Vec<IpAddr> = v4
                    .iter()
                    .chain(&v6)
                    .filter(|r| &r.interface == interface)
                    .filter_map(|r| r.gateway)
                    .collect();
                routers.dedup();
                routers
            })
            .unwrap_or_default();
        let mut available: Vec<BearerKind> = self
            .up_interfaces()
            .iter()
            .filter(|i| i.as_str() != "lo")
            .filter_map(|i| self.kind(i))
            .collect();
        available.sort_by_key(|k| *k as u8);
        available.dedup();
        NetworkState {
            bearer: interface.as_deref().and_then(|i| self.kind(i)),
            available,
            addresses: interface
                .as_deref()
                .map(|i| addresses(interfaces, i))
                .unwrap_or_default(),
            interface,
            routers,
            dhcp_acs_url: None,
        }
    }
}

impl Network for LinuxNetwork {
    fn state(&self) -> NetworkState {
        lock(&self.snapshot).state.clone()
    }

    fn links(&self) -> Vec<Link> {
        lock(&self.snapshot).links.clone()
    }

    fn ip_interfaces(&self) -> Vec<IpInterface> {
        lock(&self.snapshot).interfaces.clone()
    }

    fn link_stats(&self, name: &str) -> Result<LinkStats, PlatformError> {
        self.roots.stats(name)
    }

    fn link_counter(&self, name: &str, counter: crate::LinkCounter) -> Result<u64, PlatformError> {
        self.roots.counter(name, counter)
    }

    fn ip_interface_name(&self, index: u32) -> Option<String> {
        lock(&self.snapshot)
            .interfaces
            .iter()
            .find(|i| i.index == index)
            .map(|i| i.name.clone())
    }

    fn dns_servers(&self) -> Vec<IpAddr> {
        lock(&self.snapshot).dns.clone()
    }

    fn routes(&self) -> Vec<Route> {
        lock(&self.snapshot).routes.clone()
    }

    /// A dump that fails (no answer in time) is an error: the table
    /// stays as it was rather than look emptied.
    fn neighbours(&self) -> Result<Vec<Neighbour>, PlatformError> {
        let names = lock(&self.snapshot)
            .interfaces
            .iter()
            .map(|i| (i.index, i.name.clone()))
            .collect();
        super::rtnl::neighbours(&names)
            .map_err(|e| PlatformError::Failed(format!("the neighbour tables: {e}")))
    }

    fn radio(&self) -> RadioState {
        RadioState::default()
    }

    fn masqueraded(&self) -> Result<Vec<String>, PlatformError> {
        super::nat::masqueraded("nft")
    }

    fn wifi_profiles(&self) -> Vec<WifiProfile> {
        Vec::new()
    }

    fn apn_contexts(&self) -> Vec<ApnContext> {
        Vec::new()
    }

    fn on_change(&self, callback: ChangeCallback) {
        lock(&self.callbacks).push(callback);
        self.watching.call_once(|| {
            if let Some(fd) = lock(&self.changes).take() {
                watch(
                    fd,
                    self.roots.clone(),
                    Arc::clone(&self.snapshot),
                    Arc::clone(&self.callbacks),
                );
            }
        });
    }

    fn add_wifi_profile(&self, _: &WifiSettings) -> Result<String, PlatformError> {
        Err(unavailable("Wi-Fi profiles"))
    }

    fn update_wifi_profile(&self, _: &str, _: &WifiSettings) -> Result<(), PlatformError> {
        Err(unavailable("Wi-Fi profiles"))
    }

    fn delete_wifi_profile(&self, _: &str) -> Result<(), PlatformError> {
        Err(unavailable("Wi-Fi profiles"))
    }

    fn add_apn_context(&self, _: &ApnSettings) -> Result<String, PlatformError> {
        Err(unavailable("packet-data contexts"))
    }

    fn update_apn_context(&self, _: &str, _: &ApnSettings) -> Result<(), PlatformError> {
        Err(unavailable("packet-data contexts"))
    }

    fn delete_apn_context(&self, _: &str) -> Result<(), PlatformError> {
        Err(unavailable("packet-data contexts"))
    }
}

fn unavailable(what: &str) -> PlatformError {
    PlatformError::Unavailable(format!(
        "{what} (the plain Linux platform has none: they need NetworkManager or oFono)"
    ))
}

/// A socket on rtnetlink's multicast groups for links, addresses and
/// routes; `None` where netlink is refused (a sandbox).
fn subscribe() -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket,
    };
    use std::os::fd::AsRawFd as _;
    const GROUPS: u32 = (nix::libc::RTMGRP_LINK
        | nix::libc::RTMGRP_IPV4_IFADDR
        | nix::libc::RTMGRP_IPV4_ROUTE
        | nix::libc::RTMGRP_IPV6_IFADDR
        | nix::libc::RTMGRP_IPV6_ROUTE) as u32;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .ok()?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS)).ok()?;
    Some(fd)
}

/// Reads the network again and runs the callbacks after every burst of
/// rtnetlink notifications that changed it, on a thread of its own that
/// sleeps in `recv` otherwise. Without netlink (a sandbox that forbids
/// it) there are no change events: the snapshot of the start stays.
fn watch(
    fd: std::os::fd::OwnedFd,
    roots: Roots,
    snapshot: Arc<Mutex<Snapshot>>,
    callbacks: Arc<Mutex<Vec<ChangeCallback>>>,
) {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd as _;
    let spawned = std::thread::Builder::new()
        .name("dmagent-netlink".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                match recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
                    // An overrun (ENOBUFS) lost messages: something changed.
                    Ok(_) | Err(nix::errno::Errno::ENOBUFS) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
                // The rest of the burst, then one callback round.
                while recv(fd.as_raw_fd(), &mut buffer, MsgFlags::MSG_DONTWAIT).is_ok() {}
                // Read here, on this thread: readers only copy it. A
                // burst that changed nothing the agent serves (an IPv6
                // address's lifetimes refreshed by a router
                // advertisement) wakes nobody.
                let fresh = roots.read();
                {
                    let mut held = lock(&snapshot);
                    if *held == fresh {
                        continue;
                    }
                    *held = fresh;
                }
                let callbacks: Vec<ChangeCallback> = lock(&callbacks).clone();
                for callback in callbacks {
                    callback();
                }
            }
        });
    drop(spawned);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t100\t000000FF\t0\t0\t0
";

    const IPV6_ROUTE: &str = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001     eth0
";

    #[test]
    fn default_routes_are_read_lowest_metric_first() {
        let v4 = parse_ipv4_routes(ROUTE);
        let found: Vec<(&str, Option<IpAddr>, u32)> = defaults(&v4, true)
            .iter()
            .map(|r| (r.interface.as_str(), r.gateway, r.metric))
            .collect();
        assert_eq!(
            found,
            [
                ("eth0", Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), 100),
                (
                    "wlan0",
                    Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))),
                    600
                ),
            ]
        );
        let v6 = parse_ipv6_routes(IPV6_ROUTE);
        let found: Vec<(&str, Option<IpAddr>, u32)> = defaults(&v6, false)
            .iter()
            .map(|r| (r.interface.as_str(), r.gateway, r.metric))
            .collect();
        assert_eq!(
            found,
            [("eth0", Some("fe80::1".parse::<IpAddr>().unwrap()), 0x400)]
        );
        // Garbage is no route, not a panic.
        assert!(parse_ipv4_routes("Iface\nx y z\n\u{0}").is_empty());
        assert!(parse_ipv6_routes("zz 00 zz").is_empty());
    }

    #[test]
    fn every_route_is_read_with_its_prefix() {
        let routes = parse_ipv4_routes(ROUTE);
        assert_eq!(routes.len(), 3);
        assert_eq!(
            routes[2],
            Route {
                destination: "10.0.0.0".parse().unwrap(),
                // 000000FF in host order: 255.0.0.0.
                prefix: 8,
                gateway: None,
                interface: "eth0".into(),
                metric: 100,
            }
        );
        assert_eq!(routes[0].gateway, Some("192.168.1.1".parse().unwrap()));
        let routes = parse_ipv6_routes(IPV6_ROUTE);
        assert_eq!(
            routes,
            [
                Route {
                    destination: "::".parse().unwrap(),
                    prefix: 0,
                    gateway: Some("fe80::1".parse().unwrap()),
                    interface: "eth0".into(),
                    metric: 0x400,
                },
                Route {
                    destination: "fd00::".parse().unwrap(),
                    prefix: 64,
                    gateway: None,
                    interface: "eth0".into(),
                    metric: 0x100,
                },
            ]
        );
    }

    #[test]
    fn name_servers_are_read_from_resolv_conf() {
        assert_eq!(
            parse_resolv_conf(
                "# comment\nnameserver 10.0.0.53\nsearch lan\nnameserver fe80::1%eth0\n\
                 nameserver bogus\noptions edns0\n"
            ),
            [
                "10.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }

    /// A sysfs of two links, one a port and one not: the port is listed,
    /// with its facts; its counters are read at each read, so they follow
    /// the kernel's.
    #[test]
    fn links_and_counters_come_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let link = |name: &str, index: u32, iflink: u32, device: bool| {
            let dir = sys.join("class/net").join(name);
            std::fs::create_dir_all(dir.join("statistics")).unwrap();
            for (file, text) in [
                ("type", "1"),
                ("ifindex", &index.to_string()),
                ("iflink", &iflink.to_string()),
                ("address", "02:00:00:00:00:0a"),
                ("flags", "0x1003"),
                ("operstate", "up"),
                ("speed", "1000"),
                ("duplex", "full"),
            ] {
                std::fs::write(dir.join(file), format!("{text}\n")).unwrap();
            }
            for counter in [
                "tx_bytes",
                "rx_bytes",
                "tx_packets",
                "rx_packets",
                "tx_errors",
                "rx_errors",
                "tx_dropped",
                "rx_dropped",
                "multicast",
            ] {
                std::fs::write(dir.join("statistics").join(counter), "7\n").unwrap();
            }
            if device {
                std::fs::create_dir_all(dir.join("device")).unwrap();
            }
            dir
        };
        let port = link("enp1s0", 2, 2, true);
        link("ifb0", 3, 3, false);
        let network = LinuxNetwork::new(
            root.path().join("proc").to_str().unwrap(),
            sys.to_str().unwrap(),
            root.path().join("resolv.conf").to_str().unwrap(),
        );
        assert_eq!(
            network.links(),
            [Link {
                index: 2,
                name: "enp1s0".into(),
                mac: "02:00:00:00:00:0a".into(),
                enabled: true,
                up: true,
                operstate: "up".into(),
                speed: Some(1000),
                duplex: Some("full".into()),
            }]
        );
        assert_eq!(network.link_stats("enp1s0").unwrap().bytes_received, 7);
        std::fs::write(port.join("statistics/rx_bytes"), "4096\n").unwrap();
        assert_eq!(network.link_stats("enp1s0").unwrap().bytes_received, 4096);
        std::fs::write(port.join("statistics/rx_bytes"), "garbage\n").unwrap();
        assert!(network.link_stats("enp1s0").is_err());
        assert!(network.dns_servers().is_empty());
    }

    /// On this machine: the Ethernet links and their MAC addresses as
    /// `ip` shows them, counters that read, the resolver's servers.
    #[test]
    fn links_and_name_servers_are_the_kernels() {
        let network = LinuxNetwork::default();
        let shown = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip");
        let shown = String::from_utf8_lossy(&shown.stdout);
        for link in network.links() {
            assert!(
                (shown.contains(&format!(" {}:", link.name))
                    || shown.contains(&format!(" {}@", link.name)))
                    && shown.contains(&link.mac),
                "{link:?} not in {shown}"
            );
            network.link_stats(&link.name).unwrap();
        }
        assert!(network.link_stats("../x").is_err());
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(network.dns_servers(), parse_resolv_conf(&resolv));
    }

    /// On this machine: the state names the interface the kernel's own
    /// default route uses, and that interface's addresses as `ip` lists
    /// them.
    #[test]
    fn the_state_is_the_kernels() {
        let state = LinuxNetwork::default().state();
        // The device of the kernel's first default route, as `ip` says.
        let default_dev = |family: &str| {
            let out = std::process::Command::new("ip")
                .args([family, "route", "show", "default"])
                .output()
                .expect("ip");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .skip_while(|w| *w != "dev")
                .nth(1)
                .map(str::to_owned)
        };
        assert_eq!(
            state.interface,
            default_dev("-4").or_else(|| default_dev("-6"))
        );
        if let Some(interface) = &state.interface {
            let shown = std::process::Command::new("ip")
                .args(["-o", "addr", "show", "dev", interface])
                .output()
                .expect("ip");
            let shown = String::from_utf8_lossy(&shown.stdout);
            for address in &state.addresses {
                assert!(
                    shown.contains(&format!(" {address}/")),
                    "{address} not in {shown}"
                );
            }
        }
        // Nothing invented.
        assert_eq!(LinuxNetwork::default().radio(), RadioState::default());
    }
}
