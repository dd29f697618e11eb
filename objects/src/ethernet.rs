//! TR-181 `Device.Ethernet.Interface.{i}.` and the `Device.Ethernet.Link.{i}.`
//! over each, `Device.DNS.Client.Server.{i}.`
//! and `Device.Routing.Router.1.IPv4Forwarding.{i}.` / `IPv6Forwarding`:
//! the kernel's Ethernet links, the resolver's name servers and the main
//! routing table, as the platform reports them. Read-only: the agent reports these facts, it
//! does not change them (a client's add or delete is refused).
//!
//! A link's instance number is its kernel interface index, stable while
//! the link exists, in both tables (TR-181's stack: an IP interface over
//! Ethernet.Link.n over Ethernet.Interface.n); its counters are read from the platform at every read
//! (they change with every packet, and no event says so).

use std::sync::Arc;

use dm_core::catalog::{dns_server, ethernet, ethernet_link, ipv4_forwarding, ipv6_forwarding};
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Slot, Tree, Value,
};
use dm_platform::Network;

use dm_core::facts::{fill, held_keys, stage_fact};

/// Ethernet.Interface or Ethernet.Link: rows of the platform's links,
/// their counters read live.
struct Ethernet {
    network: Arc<dyn Network>,
    schema: &'static ObjectSchema,
    counters: &'static [ResourceId; 9],
}

/// A read-only table of platform facts, every resource stored; with
/// `on_demand`, its rows are read from the host when a request lists it
/// ([`ObjectHandler::host_rows`]).
pub(crate) struct Facts {
    pub(crate) schema: &'static ObjectSchema,
    pub(crate) on_demand: Option<OnDemand>,
}

/// How a table's rows are read on demand.
pub(crate) struct OnDemand {
    /// For logs: "the processes".
    pub(crate) what: &'static str,
    /// The resources a row keeps its instance number by.
    pub(crate) key: &'static [ResourceId],
    pub(crate) rows: Arc<dyn Fn() -> Result<Vec<dm_core::Row>, Error> + Send + Sync>,
}

impl Facts {
    pub(crate) fn reported(schema: &'static ObjectSchema) -> Box<Facts> {
        Box::new(Facts {
            schema,
            on_demand: None,
        })
    }
}

pub fn register(tree: &mut Tree, network: Arc<dyn Network>) -> Result<(), Error> {
    tree.register(Box::new(Ethernet {
        network: Arc::clone(&network),
        schema: &ethernet::SCHEMA,
        counters: &COUNTERS,
    }))?;
    tree.register(Box::new(Ethernet {
        network,
        schema: &ethernet_link::SCHEMA,
        counters: &LINK_COUNTERS,
    }))?;
    tree.register(Facts::reported(&dns_server::SCHEMA))?;
    tree.register(Facts::reported(&ipv4_forwarding::SCHEMA))?;
    tree.register(Facts::reported(&ipv6_forwarding::SCHEMA))
}

/// A row of a table of host facts: every resource at its zero value but
/// `live` ones, read from the host at each read.
pub(crate) fn facts_row(schema: &ObjectSchema, live: &[ResourceId]) -> Instance {
    schema
        .resources
        .iter()
        .fold(Instance::new(), |instance, r| {
            let slot = if live.contains(&r.id) {
                Slot::Live
            } else {
                dm_core::tree::default_slot(r)
            };
            instance.with(r.id, slot)
        })
}

/// A client may not add or remove the host's facts.
pub(crate) fn refuse_clients(origin: Origin, path: Path) -> Result<(), Error> {
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

const LINK_COUNTERS: [ResourceId; 9] = [
    ethernet_link::STATS_BYTES_SENT,
    ethernet_link::STATS_BYTES_RECEIVED,
    ethernet_link::STATS_PACKETS_SENT,
    ethernet_link::STATS_PACKETS_RECEIVED,
    ethernet_link::STATS_ERRORS_SENT,
    ethernet_link::STATS_ERRORS_RECEIVED,
    ethernet_link::STATS_DISCARD_PACKETS_SENT,
    ethernet_link::STATS_DISCARD_PACKETS_RECEIVED,
    ethernet_link::STATS_MULTICAST_PACKETS_RECEIVED,
];

/// A Stats parameter of a row numbered by kernel interface index (an IP
/// interface, a Wi-Fi radio), read now from that interface's counters.
pub(crate) fn read_counter_of_row(
    network: &dyn Network,
    object: dm_core::ObjectId,
    columns: &[ResourceId],
    instance: InstanceId,
    resource: ResourceId,
) -> Result<ResourceValue, Error> {
    let name = network
        .ip_interface_name(u32::from(instance.0))
        .ok_or(Error::InstanceNotFound(Path::instance(object, instance)))?;
    read_counter(network, &name, columns, resource)
        .ok_or(Error::NotReadable(Path::resource(
            object, instance, resource,
        )))?
        .map(ResourceValue::Single)
}

/// The counter a Stats parameter is (its position in `columns`, the
/// table's Stats resources in `LinkCounter::ALL`'s order, a prefix of it), read now.
pub(crate) fn read_counter(
    network: &dyn Network,
    name: &str,
    columns: &[ResourceId],
    resource: ResourceId,
) -> Option<Result<Value, Error>> {
    let counter = dm_platform::LinkCounter::ALL[columns.iter().position(|r| *r == resource)?];
    Some(
        network
            .link_counter(name, counter)
            .map(|v| {
                Value::Unsigned(if counter.is_32_bit() {
                    v.min(u64::from(u32::MAX))
                } else {
                    v
                })
            })
            .map_err(Error::from),
    )
}

impl ObjectHandler for Ethernet {
    fn schema(&self) -> &'static ObjectSchema {
        self.schema
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(facts_row(self.schema, self.counters))
    }

    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        let path = Path::resource(self.schema.id, instance, resource);
        let link = self
            .network
            .links()
            .into_iter()
            .find(|l| l.index == u32::from(instance.0))
            .ok_or(Error::InstanceNotFound(Path::instance(
                self.schema.id,
                instance,
            )))?;
        read_counter(self.network.as_ref(), &link.name, self.counters, resource)
            .ok_or(Error::NotReadable(path))?
            .map(ResourceValue::Single)
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(self.schema.id, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(self.schema.id, instance))
    }
}

impl ObjectHandler for Facts {
    fn schema(&self) -> &'static ObjectSchema {
        self.schema
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(facts_row(self.schema, &[]))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(self.schema.id, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(self.schema.id, instance))
    }

    fn host_rows(&self) -> Option<dm_core::HostRows> {
        let on_demand = self.on_demand.as_ref()?;
        let rows = Arc::clone(&on_demand.rows);
        Some(dm_core::HostRows::new(
            on_demand.what,
            on_demand.key,
            move || rows(),
        ))
    }
}

/// The links and name servers as the platform reports them now: instances
/// made, updated and removed as the platform, all in one transaction.
pub fn sync(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[dm_platform::IpInterface],
    warnings: &mut Vec<String>,
) {
    let links: Vec<_> = network
        .links()
        .into_iter()
        .filter(|l| l.index > 0 && l.index < u32::from(u16::MAX))
        .collect();
    let servers = network.dns_servers();
    let routes = network.routes();
    let upstream = network.state().interface;
    let held_links = tree.instances(ethernet::ID).unwrap_or_default();
    const SERVER_KEY: [ResourceId; 1] = [dns_server::DNS_SERVER];
    const V4_KEY: [ResourceId; 4] = [
        ipv4_forwarding::DEST_IP_ADDRESS,
        ipv4_forwarding::DEST_SUBNET_MASK,
        ipv4_forwarding::GATEWAY_IP_ADDRESS,
        ipv4_forwarding::FORWARDING_METRIC,
    ];
    const V6_KEY: [ResourceId; 3] = [
        ipv6_forwarding::DEST_IP_PREFIX,
        ipv6_forwarding::NEXT_HOP,
        ipv6_forwarding::FORWARDING_METRIC,
    ];
    let held_servers = held_keys(tree, dns_server::ID, &SERVER_KEY);
    let held_v4 = held_keys(tree, ipv4_forwarding::ID, &V4_KEY);
    let held_v6 = held_keys(tree, ipv6_forwarding::ID, &V6_KEY);
    let held_upper = tree.instances(ethernet_link::ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    for (table, held) in [
        (ethernet::ID, &held_links),
        (ethernet_link::ID, &held_upper),
    ] {
        for gone in held
            .iter()
            .filter(|i| !links.iter().any(|l| l.index == u32::from(i.0)))
        {
            tx.delete(table, *gone);
        }
    }
    for link in &links {
        let instance = InstanceId(u16::try_from(link.index).unwrap_or(u16::MAX));
        if !held_links.contains(&instance) {
            tx.create(ethernet::ID, Some(instance));
        }
        if !held_upper.contains(&instance) {
            tx.create(ethernet_link::ID, Some(instance));
        }
        // RFC 2863's states are TR-181's, one to one.
        let status = Value::String(
            match link.operstate.as_str() {
                "up" => "Up",
                "down" => "Down",
                "dormant" => "Dormant",
                "notpresent" => "NotPresent",
                "lowerlayerdown" => "LowerLayerDown",
                _ => "Unknown",
            }
            .into(),
        );
        let upper = [
            (ethernet_link::ENABLE, Value::Boolean(link.enabled)),
            (ethernet_link::STATUS, status.clone()),
            (ethernet_link::NAME, Value::String(link.name.clone())),
            (
                ethernet_link::LOWER_LAYERS,
                Value::ObjectLink(dm_core::ObjectLink {
                    object: ethernet::ID,
                    instance: instance.0,
                }),
            ),
            (ethernet_link::MAC_ADDRESS, Value::String(link.mac.clone())),
        ];
        for (resource, value) in upper {
            let at = Path::resource(ethernet_link::ID, instance, resource);
            stage_fact(&mut tx, &ethernet_link::SCHEMA, at, value, warnings);
        }
        let at = |r| Path::resource(ethernet::ID, instance, r);
        let facts = [
            (ethernet::ENABLE, Value::Boolean(link.enabled)),
            (ethernet::STATUS, status),
            (ethernet::NAME, Value::String(link.name.clone())),
            (ethernet::MAC_ADDRESS, Value::String(link.mac.clone())),
            // The most it may use: chosen by autonegotiation (TR-181: -1).
            (ethernet::MAX_BIT_RATE, Value::Integer(-1)),
            // What it runs at now; 0: unknown (no carrier, a virtual link).
            (
                ethernet::CURRENT_BIT_RATE,
                Value::Unsigned(link.speed.map_or(0, u64::from)),
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
    let servers = servers
        .iter()
        .map(|server| {
            vec![
                (dns_server::ENABLE, Value::Boolean(true)),
                (dns_server::STATUS, Value::String("Enabled".into())),
                (dns_server::DNS_SERVER, Value::String(server.to_string())),
                // Written in resolv.conf: whoever wrote it, the host
                // holds it as configured.
                (dns_server::TYPE, Value::String("Static".into())),
            ]
        })
        .collect();
    fill(
        &held_servers,
        &mut tx,
        &dns_server::SCHEMA,
        &SERVER_KEY,
        servers,
        1,
        warnings,
    );
    // Routes, each family in the kernel's order, each naming its IP
    // interface's row.
    let reference = |interface: &str| crate::ip_interface::reference(interfaces, interface);
    let (v4, v6): (Vec<_>, Vec<_>) = routes.iter().partition(|r| r.destination.is_ipv4());
    let v4 = v4
        .into_iter()
        .map(|r| {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(r.prefix.min(32)))
                .unwrap_or(0);
            vec![
                (ipv4_forwarding::ENABLE, Value::Boolean(true)),
                (ipv4_forwarding::STATUS, Value::String("Enabled".into())),
                (
                    ipv4_forwarding::DEST_IP_ADDRESS,
                    Value::String(if r.prefix == 0 {
                        String::new()
                    } else {
                        r.destination.to_string()
                    }),
                ),
                (
                    ipv4_forwarding::DEST_SUBNET_MASK,
                    Value::String(if r.prefix == 0 {
                        String::new()
                    } else {
                        std::net::Ipv4Addr::from(mask).to_string()
                    }),
                ),
                (
                    ipv4_forwarding::GATEWAY_IP_ADDRESS,
                    Value::String(r.gateway.map(|g| g.to_string()).unwrap_or_default()),
                ),
                (ipv4_forwarding::INTERFACE, reference(&r.interface)),
                (
                    ipv4_forwarding::FORWARDING_METRIC,
                    Value::Integer(i64::from(r.metric)),
                ),
            ]
        })
        .collect();
    fill(
        &held_v4,
        &mut tx,
        &ipv4_forwarding::SCHEMA,
        &V4_KEY,
        v4,
        1,
        warnings,
    );
    let v6 = v6
        .into_iter()
        .map(|r| {
            vec![
                (ipv6_forwarding::ENABLE, Value::Boolean(true)),
                (ipv6_forwarding::STATUS, Value::String("Enabled".into())),
                (
                    ipv6_forwarding::DEST_IP_PREFIX,
                    Value::String(format!("{}/{}", r.destination, r.prefix)),
                ),
                (
                    ipv6_forwarding::NEXT_HOP,
                    Value::String(r.gateway.map(|g| g.to_string()).unwrap_or_default()),
                ),
                (ipv6_forwarding::INTERFACE, reference(&r.interface)),
                (
                    ipv6_forwarding::FORWARDING_METRIC,
                    Value::Integer(i64::from(r.metric)),
                ),
            ]
        })
        .collect();
    fill(
        &held_v6,
        &mut tx,
        &ipv6_forwarding::SCHEMA,
        &V6_KEY,
        v6,
        1,
        warnings,
    );
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
