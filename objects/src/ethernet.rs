//! TR-181 `Device.Ethernet.Interface.{i}.` and `Device.DNS.Client.Server.{i}.`:
//! the kernel's Ethernet links and the resolver's name servers, as the
//! platform reports them. Read-only: the agent reports these facts, it
//! does not change them (a client's add or delete is refused).
//!
//! A link's instance number is its kernel interface index, stable while
//! the link exists; its counters are read from the platform at every read
//! (they change with every packet, and no event says so).

use std::sync::Arc;

use dm_core::catalog::{dns_server, ethernet};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};
use dm_platform::{LinkStats, Network};

use crate::stage_fact;

struct Ethernet {
    network: Arc<dyn Network>,
}

struct DnsServer;

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Ethernet { network }))?;
    tree.register(Box::new(DnsServer))
}

/// A client may not add or remove the host's facts.
fn refuse_clients(origin: Origin, path: Path) -> Result<(), Error> {
    if origin.is_client() {
        return Err(Error::NotSupported(path));
    }
    Ok(())
}

const COUNTERS: [ResourceId; 9] = [
    ethernet::STATS_BYTES_SENT,
    ethernet::STATS_BYTES_RECEIVED,
    ethernet::STATS_PACKETS_SENT,
    ethernet::STATS_PACKETS_RECEIVED,
    ethernet::STATS_ERRORS_SENT,
    ethernet::STATS_ERRORS_RECEIVED,
    ethernet::STATS_DISCARD_PACKETS_SENT,
    ethernet::STATS_DISCARD_PACKETS_RECEIVED,
    ethernet::STATS_MULTICAST_PACKETS_RECEIVED,
];

fn counter(stats: &LinkStats, resource: ResourceId) -> Option<Value> {
    // TR-181 keeps errors and discards in 32 bits.
    let narrow = |v: u64| Value::Unsigned(v.min(u64::from(u32::MAX)));
    Some(match resource {
        ethernet::STATS_BYTES_SENT => Value::Unsigned(stats.bytes_sent),
        ethernet::STATS_BYTES_RECEIVED => Value::Unsigned(stats.bytes_received),
        ethernet::STATS_PACKETS_SENT => Value::Unsigned(stats.packets_sent),
        ethernet::STATS_PACKETS_RECEIVED => Value::Unsigned(stats.packets_received),
        ethernet::STATS_ERRORS_SENT => narrow(stats.errors_sent),
        ethernet::STATS_ERRORS_RECEIVED => narrow(stats.errors_received),
        ethernet::STATS_DISCARD_PACKETS_SENT => narrow(stats.discards_sent),
        ethernet::STATS_DISCARD_PACKETS_RECEIVED => narrow(stats.discards_received),
        ethernet::STATS_MULTICAST_PACKETS_RECEIVED => Value::Unsigned(stats.multicast_received),
        _ => return None,
    })
}

impl ObjectHandler for Ethernet {
    fn schema(&self) -> &'static ObjectSchema {
        &ethernet::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        let mut instance = Instance::new();
        for resource in ethernet::SCHEMA.resources {
            let slot = if COUNTERS.contains(&resource.id) {
                Slot::Live
            } else {
                dm_core::tree::default_slot(resource)
            };
            instance = instance.with(resource.id, slot);
        }
        Ok(instance)
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let path = Path::resource(ethernet::ID, instance, resource);
        let link = self
            .network
            .links()
            .into_iter()
            .find(|l| l.index == u32::from(instance.0))
            .ok_or(Error::InstanceNotFound(Path::instance(
                ethernet::ID,
                instance,
            )))?;
        let stats = self.network.link_stats(&link.name)?;
        counter(&stats, resource)
            .map(ResourceValue::Single)
            .ok_or(Error::NotReadable(path))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ethernet::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ethernet::ID, instance))
    }
}

impl ObjectHandler for DnsServer {
    fn schema(&self) -> &'static ObjectSchema {
        &dns_server::SCHEMA
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(dns_server::SCHEMA
            .resources
            .iter()
            .fold(Instance::new(), |instance, r| {
                instance.with(r.id, dm_core::tree::default_slot(r))
            }))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(dns_server::ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(dns_server::ID, instance))
    }
}

/// The links and name servers as the platform reports them now: instances
/// made, updated and removed as the platform, all in one transaction.
pub fn sync(tree: &mut Tree, network: &dyn Network, warnings: &mut Vec<String>) {
    let links: Vec<_> = network
        .links()
        .into_iter()
        .filter(|l| l.index > 0 && l.index < u32::from(u16::MAX))
        .collect();
    let servers = network.dns_servers();
    let upstream = network.state().interface;
    let held_links = tree.instances(ethernet::ID).unwrap_or_default();
    let held_servers = tree.instances(dns_server::ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    for gone in held_links
        .iter()
        .filter(|i| !links.iter().any(|l| l.index == u32::from(i.0)))
    {
        tx.delete(ethernet::ID, *gone);
    }
    for link in &links {
        let instance = InstanceId(u16::try_from(link.index).unwrap_or(u16::MAX));
        if !held_links.contains(&instance) {
            tx.create(ethernet::ID, Some(instance));
        }
        let at = |r| Path::resource(ethernet::ID, instance, r);
        let facts = [
            (ethernet::ENABLE, Value::Boolean(link.enabled)),
            (
                ethernet::STATUS,
                Value::String(if link.up { "Up" } else { "Down" }.into()),
            ),
            (ethernet::NAME, Value::String(link.name.clone())),
            (ethernet::MAC_ADDRESS, Value::String(link.mac.clone())),
            (
                ethernet::MAX_BIT_RATE,
                // -1: the driver does not say (TR-181: "auto").
                Value::Integer(link.speed.map_or(-1, i64::from)),
            ),
            (
                ethernet::DUPLEX_MODE,
                Value::String(
                    match link.duplex.as_deref() {
                        Some("full") => "Full",
                        Some("half") => "Half",
                        _ => "Auto",
                    }
                    .into(),
                ),
            ),
            (
                ethernet::UPSTREAM,
                Value::Boolean(upstream.as_deref() == Some(link.name.as_str())),
            ),
        ];
        for (resource, value) in facts {
            stage_fact(&mut tx, &ethernet::SCHEMA, at(resource), value, warnings);
        }
    }
    // Name servers: one instance each, in the resolver's order.
    let wanted: Vec<InstanceId> = (1..=servers.len())
        .filter_map(|n| u16::try_from(n).ok().map(InstanceId))
        .collect();
    for extra in held_servers.iter().filter(|i| !wanted.contains(i)) {
        tx.delete(dns_server::ID, *extra);
    }
    for (instance, server) in wanted.iter().zip(&servers) {
        if !held_servers.contains(instance) {
            tx.create(dns_server::ID, Some(*instance));
        }
        let at = |r| Path::resource(dns_server::ID, *instance, r);
        for (resource, value) in [
            (dns_server::ENABLE, Value::Boolean(true)),
            (dns_server::STATUS, Value::String("Enabled".into())),
            (dns_server::DNS_SERVER, Value::String(server.to_string())),
            // Written in resolv.conf: whoever wrote it, the host holds it
            // as configured.
            (dns_server::TYPE, Value::String("Static".into())),
        ] {
            stage_fact(&mut tx, &dns_server::SCHEMA, at(resource), value, warnings);
        }
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
