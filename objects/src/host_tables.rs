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
        &[lan_host::IP_ADDRESS, lan_host::PHYS_ADDRESS],
        move || Ok(host_rows(neighbours.as_ref())),
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

fn host_rows(network: &dyn Network) -> Vec<Row> {
    let interfaces = network.ip_interfaces();
    network
        .neighbours()
        .into_iter()
        .map(|n| {
            vec![
                (lan_host::PHYS_ADDRESS, Value::String(n.mac)),
                (lan_host::IP_ADDRESS, Value::String(n.address.to_string())),
                (lan_host::ACTIVE, Value::Boolean(n.active)),
                (
                    lan_host::LAYER3_INTERFACE,
                    crate::ip_interface::reference(&interfaces, &n.interface),
                ),
            ]
        })
        .collect()
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
}
