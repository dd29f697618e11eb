//! TR-181 `Device.DHCPv4.Client.{i}.`: the DHCPv4 leases the platform
//! knows (NetworkManager's), one row per interface, numbered by the
//! interface's index as its IP interface is. Read-only. The time left on
//! the lease is worked out at each read from its end.

use std::sync::Arc;

use dm_core::catalog::dhcpv4_client::*;
use dm_core::facts::stage_fact;
use dm_core::{
    Error, Instance, InstanceId, ObjectHandler, ObjectSchema, Origin, Path, ResourceId,
    ResourceValue, Tree, Value,
};
use dm_platform::{DhcpLease, Host, Network};

use crate::ethernet::refuse_clients;

struct Clients {
    network: Arc<dyn Network>,
    host: Arc<dyn Host>,
}

pub fn register(
    tree: &mut Tree,
    network: Arc<dyn Network>,
    host: Arc<dyn Host>,
) -> Result<(), Error> {
    tree.register(Box::new(Clients { network, host }))
}

/// The lease of the interface with index `instance`.
fn lease_of(network: &dyn Network, instance: InstanceId) -> Option<DhcpLease> {
    let name = network.ip_interface_name(u32::from(instance.0))?;
    network
        .dhcp_leases()
        .into_iter()
        .find(|l| l.interface == name)
}

impl ObjectHandler for Clients {
    fn schema(&self) -> &'static ObjectSchema {
        &SCHEMA
    }

    fn reported(&self) -> bool {
        true
    }

    fn create(&self, _instance: InstanceId) -> Result<Instance, Error> {
        Ok(crate::ethernet::facts_row(&SCHEMA, &[LEASE_TIME_REMAINING]))
    }

    /// TR-181: seconds left, -1 for an infinite lease (or one whose end
    /// NetworkManager does not give), 0 once it ran out.
    fn read(
        &self,
        _origin: Origin,
        instance: InstanceId,
        resource: ResourceId,
    ) -> Result<ResourceValue, Error> {
        if resource != LEASE_TIME_REMAINING {
            return Err(Error::NotReadable(Path::resource(ID, instance, resource)));
        }
        let lease = lease_of(self.network.as_ref(), instance)
            .ok_or(Error::InstanceNotFound(Path::instance(ID, instance)))?;
        let now = dm_core::unix_seconds(self.host.now());
        let left = lease.expiry.map_or(-1, |end| {
            end.saturating_sub(now).clamp(0, i64::from(i32::MAX))
        });
        Ok(ResourceValue::Single(Value::Integer(left)))
    }

    fn validate(&self, origin: Origin, instance: InstanceId, _: &Instance) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }

    fn delete(&self, origin: Origin, instance: InstanceId) -> Result<(), Error> {
        refuse_clients(origin, Path::instance(ID, instance))
    }
}

fn list(addresses: &[std::net::IpAddr]) -> Value {
    Value::String(
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// One row per lease whose interface the platform knows.
pub fn sync(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[dm_platform::IpInterface],
    warnings: &mut Vec<String>,
) {
    let rows: Vec<(InstanceId, DhcpLease)> = network
        .dhcp_leases()
        .into_iter()
        .filter_map(|lease| {
            let index = interfaces.iter().find(|i| i.name == lease.interface)?.index;
            let instance = u16::try_from(index)
                .ok()
                .filter(|i| *i > 0 && *i < u16::MAX)?;
            Some((InstanceId(instance), lease))
        })
        .collect();
    let held = tree.instances(ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    for gone in held.iter().filter(|i| !rows.iter().any(|(r, _)| r == *i)) {
        tx.delete(ID, *gone);
    }
    for (instance, lease) in &rows {
        if !held.contains(instance) {
            tx.create(ID, Some(*instance));
        }
        let at = |r| Path::resource(ID, *instance, r);
        let text = |v: Option<String>| Value::String(v.unwrap_or_default());
        let facts = [
            (ENABLE, Value::Boolean(true)),
            (
                INTERFACE,
                crate::ip_interface::reference(interfaces, &lease.interface),
            ),
            (STATUS, Value::String("Enabled".into())),
            // NetworkManager shows a DHCP4Config only for a lease it holds.
            (DHCP_STATUS, Value::String("Bound".into())),
            (IP_ADDRESS, text(lease.address.map(|a| a.to_string()))),
            (SUBNET_MASK, text(lease.subnet_mask.map(|a| a.to_string()))),
            (IP_ROUTERS, list(&lease.routers)),
            (DNS_SERVERS, list(&lease.dns_servers)),
            (DHCP_SERVER, text(lease.server.map(|a| a.to_string()))),
        ];
        for (resource, value) in facts {
            stage_fact(&mut tx, &SCHEMA, at(resource), value, warnings);
        }
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}
