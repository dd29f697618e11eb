//! TR-181 `Device.IP.Interface.{i}.`: every link the kernel has, loopback
//! included, with its IPv4 and IPv6 addresses (`IPv4Address.{j}`,
//! `IPv6Address.{j}`, one value per address in each column) and its
//! counters. Read-only, like the other tables of host facts.
//!
//! An interface's instance number is its kernel interface index, as an
//! Ethernet link's is: an interface over an Ethernet link names the
//! Ethernet.Link row of the same number as its LowerLayers. References to an interface (a
//! route's Interface, a host's Layer3Interface) are object links the
//! adapters write in their own terms ([`reference`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use dm_core::catalog::{ethernet, ethernet_link, interface_stack, ip_interface::*};
use dm_core::facts::{fill, held_keys, stage_fact};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectLink, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Tree, Value,
};
use dm_platform::{InterfaceAddress, IpInterface, Network};

use crate::ethernet::refuse_clients;

struct Interfaces {
    network: Arc<dyn Network>,
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Interfaces { network }))?;
    tree.register(Box::new(crate::ethernet::Facts {
        schema: &interface_stack::SCHEMA,
        on_demand: None,
    }))
}

const COUNTERS: [ResourceId; 9] = [
    STATS_BYTES_SENT,
    STATS_BYTES_RECEIVED,
    STATS_PACKETS_SENT,
    STATS_PACKETS_RECEIVED,
    STATS_ERRORS_SENT,
    STATS_ERRORS_RECEIVED,
    STATS_DISCARD_PACKETS_SENT,
    STATS_DISCARD_PACKETS_RECEIVED,
    STATS_MULTICAST_PACKETS_RECEIVED,
];

impl ObjectHandler for Interfaces {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(crate::ethernet::facts_row(&SCHEMA, &COUNTERS))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        crate::ethernet::read_counter_of_row(
            self.network.as_ref(),
            ID,
            &COUNTERS,
            instance,
            resource,
        )
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }
}

/// The instance an interface index is, if it fits one.
fn instance_of(index: u32) -> Option<InstanceId> {
    u16::try_from(index)
        .ok()
        .filter(|i| *i > 0 && *i < u16::MAX)
        .map(InstanceId)
}

/// The row number of the interface named `name` (its kernel index), for
/// the tables numbered as the IP interfaces are.
pub(crate) fn instance_named(interfaces: &[IpInterface], name: &str) -> Option<InstanceId> {
    instance_of(interfaces.iter().find(|i| i.name == name)?.index)
}

/// Facts of interfaces (leases, radios), each with its row number: its
/// interface's (those of an interface the kernel does not have are left
/// out).
pub(crate) fn by_interface<T>(
    items: Vec<T>,
    interface: impl Fn(&T) -> &str,
    interfaces: &[IpInterface],
) -> Vec<(InstanceId, T)> {
    items
        .into_iter()
        .filter_map(|item| Some((instance_named(interfaces, interface(&item))?, item)))
        .collect()
}

/// Makes `object` hold the rows `wanted`: those `held` and not wanted
/// deleted, those wanted and not held made, in `tx`.
pub(crate) fn keep_rows(
    tx: &mut dm_core::tree::Transaction<'_>,
    object: dm_core::ObjectId,
    held: &[InstanceId],
    wanted: &[InstanceId],
) {
    for gone in held.iter().filter(|i| !wanted.contains(i)) {
        tx.delete(object, *gone);
    }
    for new in wanted.iter().filter(|i| !held.contains(i)) {
        tx.create(object, Some(*new));
    }
}

/// The row of the interface named `name` among `interfaces`, as an
/// object link; the null link when there is none (TR-181: an empty
/// reference).
pub fn reference(interfaces: &[IpInterface], name: &str) -> Value {
    let row = interfaces
        .iter()
        .find(|i| i.name == name)
        .and_then(|i| instance_of(i.index));
    Value::ObjectLink(match row {
        Some(instance) => ObjectLink {
            object: ID,
            instance: instance.0,
        },
        None => ObjectLink::NULL,
    })
}

/// TR-181 `Status` from the kernel's operational state (RFC 2863). Links
/// that do not track it (loopback, most tunnels: `unknown`) are Up while
/// enabled with carrier; a link enabled but down lacks its lower layer.
fn status(interface: &IpInterface) -> &'static str {
    match interface.operstate.as_str() {
        "up" => "Up",
        "dormant" => "Dormant",
        "lowerlayerdown" => "LowerLayerDown",
        "notpresent" => "NotPresent",
        "testing" => "Testing",
        "down" if interface.enabled => "LowerLayerDown",
        "unknown" if interface.enabled && interface.carrier => "Up",
        _ => "Down",
    }
}

/// TR-181 `IPv6Address.{i}.Origin`: link-local and loopback addresses
/// are well known, configured ones static, the rest autoconfigured
/// (SLAAC or DHCPv6: the kernel does not say which).
fn origin(address: &InterfaceAddress) -> &'static str {
    match address.address {
        IpAddr::V6(v6) if v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80 => "WellKnown",
        _ if address.permanent => "Static",
        _ => "AutoConfigured",
    }
}

/// TR-181 `IPv6Prefix.{i}`: the prefixes of the interface's IPv6
/// addresses, each once, as (Prefix, Origin, PrefixStatus). The kernel
/// keeps no table of prefixes (RTM_NEWPREFIX is an event only), so a
/// prefix is what an address says of itself: link-local and loopback ones
/// are well known, a configured address's prefix is static, an
/// autoconfigured one's came in a Router Advertisement (SLAAC), and a
/// leased /128 (DHCPv6's IA_NA) is its own, autoconfigured. Deprecated
/// when every address in it is.
fn prefixes(v6: &[&InterfaceAddress]) -> Vec<(String, &'static str, &'static str)> {
    let mut out: Vec<(String, &'static str, &'static str)> = Vec::new();
    for a in v6 {
        let IpAddr::V6(address) = a.address else {
            continue;
        };
        let bits = u128::MAX
            .checked_shl(128 - u32::from(a.prefix.min(128)))
            .unwrap_or(0);
        let prefix = format!(
            "{}/{}",
            std::net::Ipv6Addr::from(u128::from(address) & bits),
            a.prefix
        );
        let origin = match origin(a) {
            "WellKnown" => "WellKnown",
            "Static" => "Static",
            _ if a.prefix == 128 => "AutoConfigured",
            _ => "RouterAdvertisement",
        };
        let status = if a.deprecated {
            "Deprecated"
        } else {
            "Preferred"
        };
        match out.iter_mut().find(|(p, _, _)| *p == prefix) {
            Some(held) if status == "Preferred" => held.2 = status,
            Some(_) => {}
            None => out.push((prefix, origin, status)),
        }
    }
    out
}

/// TR-181 `IPv4Address.{i}.AddressingType`: a link-local address
/// (169.254/16, RFC 3927) is AutoIP; one the kernel holds as permanent
/// was configured (Static); one with a lifetime was leased (DHCP: on
/// Linux only a DHCP client gives an IPv4 address a lifetime).
fn addressing_type(address: &InterfaceAddress) -> &'static str {
    match address.address {
        IpAddr::V4(v4) if v4.is_link_local() => "AutoIP",
        _ if address.permanent => "Static",
        _ => "DHCP",
    }
}

fn mask(prefix: u8) -> String {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    std::net::Ipv4Addr::from(bits).to_string()
}

fn column(values: impl Iterator<Item = Value>) -> BTreeMap<u16, Value> {
    (0..u16::MAX).zip(values).collect()
}

/// Makes the table hold the platform's interfaces, and InterfaceStack
/// each interface over its Ethernet link, as the platform, in one
/// transaction.
pub fn sync(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[IpInterface],
    warnings: &mut Vec<String>,
) {
    const STACK_KEY: [ResourceId; 2] =
        [interface_stack::HIGHER_LAYER, interface_stack::LOWER_LAYER];
    let held_stack = held_keys(tree, interface_stack::ID, &STACK_KEY);
    let interfaces: Vec<&IpInterface> = interfaces
        .iter()
        .filter(|i| instance_of(i.index).is_some())
        .collect();
    let ethernet: Vec<u32> = network.links().iter().map(|l| l.index).collect();
    let held = tree.instances(ID).unwrap_or_default();
    let mut stack = Vec::new();
    let mut tx = tree.begin(Origin::Platform);
    for gone in held
        .iter()
        .filter(|i| !interfaces.iter().any(|f| f.index == u32::from(i.0)))
    {
        tx.delete(ID, *gone);
    }
    for interface in &interfaces {
        let Some(instance) = instance_of(interface.index) else {
            continue;
        };
        if !held.contains(&instance) {
            tx.create(ID, Some(instance));
        }
        let at = |r| Path::resource(ID, instance, r);
        // TR-181's stack: this interface over the Ethernet.Link of the
        // same number, over the Ethernet.Interface of the same number.
        let lower = if ethernet.contains(&interface.index) {
            let row = |object| {
                Value::ObjectLink(ObjectLink {
                    object,
                    instance: instance.0,
                })
            };
            stack.push(vec![
                (interface_stack::HIGHER_LAYER, row(ID)),
                (interface_stack::LOWER_LAYER, row(ethernet_link::ID)),
            ]);
            stack.push(vec![
                (interface_stack::HIGHER_LAYER, row(ethernet_link::ID)),
                (interface_stack::LOWER_LAYER, row(ethernet::ID)),
            ]);
            ObjectLink {
                object: ethernet_link::ID,
                instance: instance.0,
            }
        } else {
            ObjectLink::NULL
        };
        let facts = [
            (ENABLE, Value::Boolean(interface.enabled)),
            // Linux attaches every link to the IPv4 stack.
            (IPV4_ENABLE, Value::Boolean(true)),
            (IPV6_ENABLE, Value::Boolean(interface.ipv6)),
            (STATUS, Value::String(status(interface).into())),
            (NAME, Value::String(interface.name.clone())),
            (LOWER_LAYERS, Value::ObjectLink(lower)),
            // Loopback's 65536 is past TR-181's range.
            (
                MAX_MTU_SIZE,
                Value::Unsigned(u64::from(interface.mtu.clamp(64, 65535))),
            ),
            (
                TYPE,
                Value::String(
                    if interface.loopback {
                        "Loopback"
                    } else {
                        "Normal"
                    }
                    .into(),
                ),
            ),
            (LOOPBACK, Value::Boolean(interface.loopback)),
        ];
        for (resource, value) in facts {
            stage_fact(&mut tx, &SCHEMA, at(resource), value, warnings);
        }
        let (v4, v6): (Vec<&InterfaceAddress>, Vec<&InterfaceAddress>) = interface
            .addresses
            .iter()
            .partition(|a| a.address.is_ipv4());
        let enabled = |n: usize| column(std::iter::repeat_n(Value::Boolean(true), n));
        let word = |w: &str, n: usize| column(std::iter::repeat_n(Value::String(w.into()), n));
        tx.set_multiple(at(IPV4_ADDRESS_ENABLE), enabled(v4.len()));
        tx.set_multiple(at(IPV4_ADDRESS_STATUS), word("Enabled", v4.len()));
        tx.set_multiple(
            at(IPV4_ADDRESS_IP_ADDRESS),
            column(v4.iter().map(|a| Value::String(a.address.to_string()))),
        );
        tx.set_multiple(
            at(IPV4_ADDRESS_SUBNET_MASK),
            column(v4.iter().map(|a| Value::String(mask(a.prefix)))),
        );
        tx.set_multiple(
            at(IPV4_ADDRESS_ADDRESSING_TYPE),
            column(v4.iter().map(|a| Value::String(addressing_type(a).into()))),
        );
        tx.set_multiple(at(IPV6_ADDRESS_ENABLE), enabled(v6.len()));
        tx.set_multiple(at(IPV6_ADDRESS_STATUS), word("Enabled", v6.len()));
        tx.set_multiple(
            at(IPV6_ADDRESS_IP_ADDRESS_STATUS),
            column(v6.iter().map(|a| {
                Value::String(
                    if a.tentative {
                        "Tentative"
                    } else if a.deprecated {
                        "Deprecated"
                    } else {
                        "Preferred"
                    }
                    .into(),
                )
            })),
        );
        tx.set_multiple(
            at(IPV6_ADDRESS_IP_ADDRESS),
            column(v6.iter().map(|a| Value::String(a.address.to_string()))),
        );
        tx.set_multiple(
            at(IPV6_ADDRESS_ORIGIN),
            column(v6.iter().map(|a| Value::String(origin(a).into()))),
        );
        let prefixes = prefixes(&v6);
        tx.set_multiple(at(IPV6_PREFIX_ENABLE), enabled(prefixes.len()));
        tx.set_multiple(at(IPV6_PREFIX_STATUS), word("Enabled", prefixes.len()));
        let text = |pick: fn(&(String, &str, &str)) -> String| {
            column(prefixes.iter().map(|p| Value::String(pick(p))))
        };
        tx.set_multiple(at(IPV6_PREFIX_PREFIX), text(|p| p.0.clone()));
        tx.set_multiple(at(IPV6_PREFIX_ORIGIN), text(|p| p.1.into()));
        tx.set_multiple(at(IPV6_PREFIX_PREFIX_STATUS), text(|p| p.2.into()));
    }
    fill(
        &held_stack,
        &mut tx,
        &interface_stack::SCHEMA,
        &STACK_KEY,
        stack,
        1,
        warnings,
    );
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(operstate: &str, enabled: bool, carrier: bool) -> IpInterface {
        IpInterface {
            operstate: operstate.into(),
            enabled,
            carrier,
            ..IpInterface::default()
        }
    }

    #[test]
    fn the_status_follows_the_kernels_operational_state() {
        assert_eq!(status(&interface("up", true, true)), "Up");
        assert_eq!(status(&interface("down", true, false)), "LowerLayerDown");
        assert_eq!(status(&interface("down", false, false)), "Down");
        // Loopback: unknown, up with carrier.
        assert_eq!(status(&interface("unknown", true, true)), "Up");
        assert_eq!(status(&interface("unknown", false, true)), "Down");
        assert_eq!(status(&interface("dormant", true, true)), "Dormant");
    }

    #[test]
    fn masks_and_origins() {
        assert_eq!(mask(24), "255.255.255.0");
        assert_eq!(mask(0), "0.0.0.0");
        assert_eq!(mask(32), "255.255.255.255");
        let address = |a: &str, permanent| InterfaceAddress {
            address: a.parse().unwrap(),
            prefix: 64,
            permanent,
            tentative: false,
            deprecated: false,
        };
        assert_eq!(origin(&address("fe80::1", true)), "WellKnown");
        assert_eq!(origin(&address("::1", true)), "WellKnown");
        assert_eq!(origin(&address("2001:db8::1", true)), "Static");
        assert_eq!(origin(&address("2001:db8::2", false)), "AutoConfigured");
        assert_eq!(addressing_type(&address("192.0.2.1", true)), "Static");
        assert_eq!(addressing_type(&address("192.0.2.1", false)), "DHCP");
        assert_eq!(addressing_type(&address("169.254.7.1", false)), "AutoIP");
    }

    #[test]
    fn prefixes_are_the_addresses_own() {
        let address = |a: &str, prefix, permanent, deprecated| InterfaceAddress {
            address: a.parse().unwrap(),
            prefix,
            permanent,
            tentative: false,
            deprecated,
        };
        let held = [
            address("2001:db8:0:1::5", 64, false, true),
            address("2001:db8:0:1::6", 64, false, false),
            address("2001:db8:0:2::1", 64, true, false),
            address("2001:db8:0:3::9", 128, false, false),
            address("fe80::1", 64, true, false),
            address("2001:db8:0:4::1", 64, false, true),
        ];
        let held: Vec<&InterfaceAddress> = held.iter().collect();
        assert_eq!(
            prefixes(&held),
            [
                (
                    "2001:db8:0:1::/64".into(),
                    "RouterAdvertisement",
                    "Preferred"
                ),
                ("2001:db8:0:2::/64".into(), "Static", "Preferred"),
                ("2001:db8:0:3::9/128".into(), "AutoConfigured", "Preferred"),
                ("fe80::/64".into(), "WellKnown", "Preferred"),
                (
                    "2001:db8:0:4::/64".into(),
                    "RouterAdvertisement",
                    "Deprecated"
                ),
            ]
        );
        // A prefix length the kernel would not send is no panic.
        assert_eq!(prefixes(&[&address("::1", 0, true, false)])[0].0, "::/0");
    }
}
