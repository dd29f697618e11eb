//! TR-181 tables the host gives on demand:
//! `Device.DeviceInfo.ProcessStatus.Process.{i}.` (`/proc`),
//! `Device.DeviceInfo.Processor.{i}.` (`/proc/cpuinfo`) and
//! `Device.Hosts.Host.{i}.` (the kernel's neighbour table) and
//! `Device.NAT.InterfaceSetting.{i}.` (the interfaces the host's nftables
//! rules source-NAT on). No event says
//! when they change (a process forks, a neighbour answers), so each is
//! read off the tree's lock when a request lists it
//! ([`dm_core::ObjectHandler::host_rows`]) and committed as the platform's, each
//! row keeping its instance number while its key (a PID, an address)
//! lasts. Read-only: a client's add or delete is refused; never saved.

use std::sync::Arc;

use dm_core::catalog::{lan_host, nat_interface, process, processor};
use dm_core::{Error, ObjectSchema, ResourceId, Row, Tree, Value};
use dm_platform::{Host, Network};

use crate::ethernet::{Facts, OnDemand};

/// A table of facts read when a request lists it.
fn on_demand(
    schema: &'static ObjectSchema,
    what: &'static str,
    key: &'static [ResourceId],
    rows: impl Fn() -> Result<Vec<Row>, Error> + Send + Sync + 'static,
) -> Box<Facts> {
    Box::new(Facts {
        schema,
        on_demand: Some(OnDemand {
            what,
            key,
            rows: Arc::new(rows),
        }),
    })
}

pub fn register(
    tree: &mut Tree,
    host: Arc<dyn Host>,
    network: Arc<dyn Network>,
) -> Result<(), Error> {
    let processes = Arc::clone(&host);
    tree.register(on_demand(
        &process::SCHEMA,
        "the processes",
        &[process::PID],
        move || process_rows(processes.as_ref()),
    ))?;
    // Processors are told apart by their place only.
    tree.register(on_demand(
        &processor::SCHEMA,
        "the processors",
        &[],
        move || {
            Ok(host
                .processors()
                .into_iter()
                .map(|arch| vec![(processor::ARCHITECTURE, Value::String(arch))])
                .collect())
        },
    ))?;
    let neighbours = Arc::clone(&network);
    tree.register(on_demand(
        &lan_host::SCHEMA,
        "the neighbour table",
        // TR-181's unique key: one host per hardware address.
        &[lan_host::PHYS_ADDRESS],
        move || host_rows(neighbours.as_ref()),
    ))?;
    tree.register(on_demand(
        &nat_interface::SCHEMA,
        "the NAT rules",
        &[nat_interface::INTERFACE],
        move || nat_rows(network.as_ref()),
    ))
}

/// One row per interface some rule translates source addresses on, the
/// interface named by its IP interface's row (none if the kernel has no
/// such interface now: a rule may name one that comes later).
fn nat_rows(network: &dyn Network) -> Result<Vec<Row>, Error> {
    let interfaces = network.ip_interfaces();
    Ok(network
        .masqueraded()?
        .into_iter()
        .map(|name| {
            vec![
                (nat_interface::ENABLE, Value::Boolean(true)),
                (nat_interface::STATUS, Value::String("Enabled".into())),
                (
                    nat_interface::INTERFACE,
                    crate::ip_interface::reference(&interfaces, &name),
                ),
            ]
        })
        .collect())
}

fn process_rows(host: &dyn Host) -> Result<Vec<Row>, Error> {
    let processes = host
        .processes()
        .map_err(|e| Error::Platform(e.to_string()))?;
    Ok(processes
        .into_iter()
        .map(|p| {
            vec![
                (process::PID, Value::Unsigned(u64::from(p.pid))),
                (
                    process::COMMAND,
                    Value::String(truncated(p.command, COMMAND_MAX)),
                ),
                // TR-181 keeps these in 32 bits.
                (
                    process::SIZE,
                    Value::Unsigned(p.size_kib.min(u64::from(u32::MAX))),
                ),
                (process::PRIORITY, Value::Unsigned(u64::from(p.priority))),
                (
                    process::CPU_TIME,
                    Value::Unsigned(p.cpu_time_ms.min(u64::from(u32::MAX))),
                ),
                (process::STATE, Value::String(p.state.into())),
            ]
        })
        .collect())
}

/// TR-181 `Process.{i}.Command` is a string(256); longer command lines
/// (a JVM's) are cut, as bbfdm does, rather than left out.
const COMMAND_MAX: usize = 256;

fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// One row per hardware address the neighbour tables know (TR-181's
/// unique key), with all its addresses: IPAddress the IPv4 one when it
/// has one, else a global IPv6 one, else its link-local one; active when
/// any of its entries is.
fn host_rows(network: &dyn Network) -> Result<Vec<Row>, Error> {
    let interfaces = network.ip_interfaces();
    // By hardware address, in the order first seen.
    let mut hosts: Vec<(String, Vec<dm_platform::Neighbour>)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for n in network.neighbours()? {
        match at.get(&n.mac) {
            Some(&i) => hosts[i].1.push(n),
            None => {
                at.insert(n.mac.clone(), hosts.len());
                hosts.push((n.mac.clone(), vec![n]));
            }
        }
    }
    Ok(hosts
        .into_iter()
        .map(|(mac, entries)| {
            let rank = |a: &std::net::IpAddr| match a {
                std::net::IpAddr::V4(_) => 0,
                std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) != 0xfe80 => 1,
                std::net::IpAddr::V6(_) => 2,
            };
            let main = entries
                .iter()
                .min_by_key(|n| rank(&n.address))
                .map(|n| (n.address, n.interface.clone()));
            let (address, interface) =
                main.unwrap_or((std::net::IpAddr::from([0, 0, 0, 0]), String::new()));
            let mut row = vec![
                (lan_host::PHYS_ADDRESS, Value::String(mac)),
                (lan_host::IP_ADDRESS, Value::String(address.to_string())),
                (
                    lan_host::ACTIVE,
                    Value::Boolean(entries.iter().any(|n| n.active)),
                ),
                (
                    lan_host::LAYER3_INTERFACE,
                    crate::ip_interface::reference(&interfaces, &interface),
                ),
            ];
            // IPv4Address.{j} and IPv6Address.{j}: each address a value.
            row.extend(entries.iter().map(|n| {
                let column = if n.address.is_ipv4() {
                    lan_host::IPV4_ADDRESS_IP_ADDRESS
                } else {
                    lan_host::IPV6_ADDRESS_IP_ADDRESS
                };
                (column, Value::String(n.address.to_string()))
            }));
            row
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short".into(), 256), "short");
        let long = "é".repeat(200); // 400 bytes
        let cut = truncated(long, 256);
        assert_eq!(cut.len(), 256);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("a{}", "é".repeat(200));
        assert_eq!(truncated(odd, 256).len(), 255);
    }

    /// One host per hardware address, with every address it answered
    /// from; its IPAddress the IPv4 one, else a global IPv6 one.
    #[test]
    fn neighbours_are_grouped_by_hardware_address() {
        use dm_platform::Neighbour;
        let network = dm_platform::memory::MemoryNetwork::default();
        let n = |address: &str, mac: &str, active| Neighbour {
            address: address.parse().unwrap(),
            mac: mac.into(),
            interface: "eth0".into(),
            active,
        };
        network.set_neighbours(vec![
            n("fe80::5", "02:00:00:00:00:05", false),
            n("192.0.2.5", "02:00:00:00:00:05", true),
            n("2001:db8::5", "02:00:00:00:00:05", false),
            n("fe80::6", "02:00:00:00:00:06", false),
            n("2001:db8::6", "02:00:00:00:00:06", false),
        ]);
        let rows = host_rows(&network).unwrap();
        assert_eq!(rows.len(), 2);
        let get = |row: &Row, r| -> Vec<Value> {
            row.iter()
                .filter(|(k, _)| *k == r)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let text = |s: &str| Value::String(s.into());
        assert_eq!(get(&rows[0], lan_host::IP_ADDRESS), [text("192.0.2.5")]);
        assert_eq!(get(&rows[0], lan_host::ACTIVE), [Value::Boolean(true)]);
        assert_eq!(
            get(&rows[0], lan_host::IPV6_ADDRESS_IP_ADDRESS),
            [text("fe80::5"), text("2001:db8::5")]
        );
        assert_eq!(get(&rows[1], lan_host::IP_ADDRESS), [text("2001:db8::6")]);
        assert_eq!(get(&rows[1], lan_host::ACTIVE), [Value::Boolean(false)]);
        assert!(get(&rows[1], lan_host::IPV4_ADDRESS_IP_ADDRESS).is_empty());
    }
}
