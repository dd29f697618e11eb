//! TR-181 `Device.DHCPv4.Client.{i}.`: the DHCPv4 leases the platform
//! knows (NetworkManager's), one row per interface, numbered by the
//! interface's index as its IP interface is. Read-only. The time left on
//! the lease is worked out at each read from its end.
//!
//! `Device.DHCPv6.Client.{i}.` the same way, from what the DHCPv6 clients
//! hold: the DUIDs and the options received (TR-181's ReceivedOption),
//! each rebuilt in its RFC 8415 wire form from what the client shows.

use std::sync::Arc;

use dm_core::catalog::dhcpv4_client::*;
use dm_core::catalog::dhcpv6_client;
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
    tree.register(Box::new(Clients { network, host }))?;
    tree.register(crate::ethernet::Facts::reported(&dhcpv6_client::SCHEMA))
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

/// RFC 1035 §3.1's wire form of domain names, as OPTION_DOMAIN_LIST
/// (RFC 8415 §10) carries them; a name that has no such form (an empty
/// label in the middle, a label over 63 bytes) is left out.
fn domain_list(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            continue;
        }
        for label in labels {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    out
}

/// The options a DHCPv6 client received, as TR-181's ReceivedOption
/// rows (tag, value): the server's identifier (2), the name servers (23),
/// the domain search list (24) and the SNTP servers (31), those it holds.
fn received_options(lease: &dm_platform::Dhcp6Lease) -> Vec<(u16, Vec<u8>)> {
    let addresses =
        |list: &[std::net::Ipv6Addr]| -> Vec<u8> { list.iter().flat_map(|a| a.octets()).collect() };
    [
        (2, lease.server_id.clone()),
        (23, addresses(&lease.dns_servers)),
        (24, domain_list(&lease.domain_search)),
        (31, addresses(&lease.sntp_servers)),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .collect()
}

/// One row per DHCPv6 client whose interface the platform knows.
fn sync_v6(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[dm_platform::IpInterface],
    warnings: &mut Vec<String>,
) {
    use dhcpv6_client as v6;
    let rows =
        crate::ip_interface::by_interface(network.dhcpv6_leases(), |l| &l.interface, interfaces);
    let held = tree.instances(v6::ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    let wanted: Vec<InstanceId> = rows.iter().map(|(i, _)| *i).collect();
    crate::ip_interface::keep_rows(&mut tx, v6::ID, &held, &wanted);
    for (instance, lease) in &rows {
        let at = |r| Path::resource(v6::ID, *instance, r);
        let facts = [
            (v6::ENABLE, Value::Boolean(true)),
            (
                v6::INTERFACE,
                crate::ip_interface::reference(interfaces, &lease.interface),
            ),
            (v6::STATUS, Value::String("Enabled".into())),
            (v6::DUID, Value::Opaque(lease.client_id.clone())),
        ];
        for (resource, value) in facts {
            stage_fact(&mut tx, &v6::SCHEMA, at(resource), value, warnings);
        }
        // What the server sent, as long as the schema takes it (a DUID is
        // at most 130 bytes): one value too long is left out with a
        // warning, not the whole table's commit refused.
        let fits = |resource, value: &Value, what: &str, warnings: &mut Vec<String>| {
            let fits = v6::SCHEMA
                .resource(resource)
                .is_some_and(|r| value.clone().check(r).is_ok());
            if !fits {
                warnings.push(format!(
                    "DHCPv6 client of {}: {what} left out: too long",
                    lease.interface
                ));
            }
            fits
        };
        let servers: Vec<Value> = Some(Value::Opaque(lease.server_id.clone()))
            .filter(|_| !lease.server_id.is_empty())
            .filter(|v| fits(v6::SERVER_DUID, v, "the server's DUID", warnings))
            .into_iter()
            .collect();
        tx.set_multiple(at(v6::SERVER_DUID), (0..).zip(servers).collect());
        let options: Vec<(u16, Vec<u8>)> = received_options(lease)
            .into_iter()
            .filter(|(tag, value)| {
                let what = format!("option {tag}");
                fits(
                    v6::RECEIVED_OPTION_VALUE,
                    &Value::Opaque(value.clone()),
                    &what,
                    warnings,
                )
            })
            .collect();
        tx.set_multiple(
            at(v6::RECEIVED_OPTION_TAG),
            (0..)
                .zip(options.iter().map(|(t, _)| Value::Unsigned(u64::from(*t))))
                .collect(),
        );
        tx.set_multiple(
            at(v6::RECEIVED_OPTION_VALUE),
            (0..)
                .zip(options.into_iter().map(|(_, v)| Value::Opaque(v)))
                .collect(),
        );
    }
    if let Err(e) = tx.commit() {
        warnings.push(e.to_string());
    }
}

/// One row per lease whose interface the platform knows (both
/// families).
pub fn sync(
    tree: &mut Tree,
    network: &dyn Network,
    interfaces: &[dm_platform::IpInterface],
    warnings: &mut Vec<String>,
) {
    let rows: Vec<(InstanceId, DhcpLease)> =
        crate::ip_interface::by_interface(network.dhcp_leases(), |l| &l.interface, interfaces);
    let held = tree.instances(ID).unwrap_or_default();
    let mut tx = tree.begin(Origin::Platform);
    let wanted: Vec<InstanceId> = rows.iter().map(|(i, _)| *i).collect();
    crate::ip_interface::keep_rows(&mut tx, ID, &held, &wanted);
    for (instance, lease) in &rows {
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
    sync_v6(tree, network, interfaces, warnings);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_options_take_their_wire_form() {
        let lease = dm_platform::Dhcp6Lease {
            interface: "eth0".into(),
            client_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
            server_id: vec![0, 1, 0, 1],
            dns_servers: vec!["2001:db8::53".parse().unwrap()],
            domain_search: vec!["lan".into(), "example.com.".into(), "bad..name".into()],
            sntp_servers: Vec::new(),
        };
        let options = received_options(&lease);
        let tags: Vec<u16> = options.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [2, 23, 24]);
        assert_eq!(options[0].1, [0, 1, 0, 1]);
        assert_eq!(options[1].1.len(), 16);
        assert_eq!(options[1].1[15], 0x53);
        assert_eq!(options[2].1, b"\x03lan\x00\x07example\x03com\x00".to_vec());
        // A label too long for the wire form is left out, not cut.
        assert!(domain_list(&["a".repeat(64)]).is_empty());
    }
}
