//! The objects dmagent serves, implemented on the core tree and the
//! platform traits.
//!
//! One module per family. Each registers an [`ObjectHandler`] (its rules:
//! live values, validation, which Executes it accepts) and knows how to
//! fill its instances from the platform. **Architecture Invariant:** no
//! protocol path appears here; the adapters' generated mappings place
//! these resources in `Device.` and `/obj/inst/res`.
//!
//! Start-up order, driven by the agent:
//! 1. [`register`] every handler;
//! 2. restore the saved snapshot into the tree;
//! 3. [`populate`] the objects the snapshot did not cover (first start);
//! 4. [`provision`] identity and settings from the configuration;
//! 5. [`sync_platform`] now and on every platform change.

pub mod bulk_data;
mod connectivity;
pub mod declared;
mod device;
mod dhcp;
pub mod diagnostics;
mod ethernet;
pub mod firmware;
pub mod firmware_image;
mod host_tables;
mod ip_interface;
pub mod local_agent;
mod location;
mod management;
mod provision;
mod software;
mod statistics;
mod system_log;
mod temperature;
mod time;
pub mod udp_echo;
pub mod vendor_config_file;
mod wifi_radio;
mod wlan;

use std::sync::Arc;

use dm_core::facts::stage_fact;
use dm_core::tree::default_slot;
use dm_core::{
    Change, ChangeKind, Error, Instance, ObjectId, ObjectSchema, Origin, Path, ResourceValue, Slot,
    Tree, Value,
};
use dm_platform::{Host, Network, SystemLog};

pub use management::{UNKNOWN_TIME, autonomous_transfer_reported};
pub use provision::{CwmpSettings, Identity, Lwm2mServer, Provisioning, SecurityMode, provision};

/// The platform the objects read from.
#[derive(Clone)]
pub struct Platform {
    pub host: Arc<dyn Host>,
    pub network: Arc<dyn Network>,
    pub log: Arc<dyn SystemLog>,
}

/// An action on the host that an Execute asked for. The agent runs it
/// when no management session is open (TR-069 §3.7.1.4: a Reboot takes
/// effect after the session ends), after de-registering from LwM2M servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAction {
    Reboot,
    FactoryReset,
}

/// Registers every object handler.
pub fn register(tree: &mut Tree, platform: &Platform) -> Result<(), Error> {
    management::register(tree)?;
    time::register(tree, Arc::clone(&platform.host))?;
    temperature::register(tree, Arc::clone(&platform.host))?;
    device::register(tree, platform)?;
    connectivity::register(tree, Arc::clone(&platform.network))?;
    location::register(tree)?;
    diagnostics::register(tree)?;
    bulk_data::register(tree)?;
    udp_echo::register(tree)?;
    local_agent::register(tree, Arc::clone(&platform.host))?;
    vendor_config_file::register(tree)?;
    statistics::register(tree, Arc::clone(&platform.network))?;
    firmware::register(tree)?;
    firmware_image::register(tree)?;
    software::register(tree)?;
    wlan::register(tree, Arc::clone(&platform.network))?;
    system_log::register(tree, platform)?;
    ethernet::register(tree, Arc::clone(&platform.network))?;
    ip_interface::register(tree, Arc::clone(&platform.network))?;
    wifi_radio::register(tree, Arc::clone(&platform.network))?;
    dhcp::register(
        tree,
        Arc::clone(&platform.network),
        Arc::clone(&platform.host),
    )?;
    host_tables::register(
        tree,
        Arc::clone(&platform.host),
        Arc::clone(&platform.network),
    )?;
    Ok(())
}

/// Brings a state saved by an earlier version to this one's data model,
/// before it is restored; returns what it could not carry over.
///
/// - TR-181's `Device.IP.Interface.1.IPv4Address.{j}.IPAddress` and
///   `IPv6Address.{j}.IPAddress` were /4's addresses (first its IP
///   Addresses, 4, then resources 1005 and 1006 of their own): the default
///   route's interface stood as interface 1. The IP interfaces are now the
///   kernel's table, numbered by interface index, so which row those names
///   meant is not known here: an ACS's notification and access list on
///   them are dropped (with a warning), and the values 1005 and 1006 held.
pub fn upgrade(snapshot: &mut dm_core::Snapshot) -> Vec<String> {
    use dm_core::catalog::connectivity;
    const RETIRED: [dm_core::ResourceId; 2] =
        [dm_core::ResourceId(1005), dm_core::ResourceId(1006)];
    let retired = |path: &Path| {
        path.object_id() == connectivity::ID
            && path
                .resource_id()
                .is_some_and(|r| r == connectivity::IP_ADDRESSES || RETIRED.contains(&r))
    };
    let mut warnings = Vec::new();
    let mut note = |what: &str, path: &Path| {
        warnings.push(format!(
            "{what} on {path} (Device.IP.Interface.1's addresses before the IP interfaces \
             became the host's table) dropped: set it again on Device.IP.Interface.{{i}}"
        ));
    };
    snapshot.notification.retain(|(path, _)| {
        let keep = !retired(path);
        if !keep {
            note("the notification attribute", path);
        }
        keep
    });
    snapshot.access_list.retain(|(path, _)| {
        let keep = !retired(path);
        if !keep {
            note("the access list", path);
        }
        keep
    });
    for object in snapshot
        .objects
        .iter_mut()
        .filter(|o| o.object == connectivity::ID)
    {
        for instance in &mut object.instances {
            instance.values.retain(|(r, _)| !RETIRED.contains(r));
        }
    }
    warnings
}

/// Creates the instances a device always has, for the objects a restored
/// snapshot did not cover.
pub fn populate(tree: &mut Tree, covered: &[ObjectId]) -> Result<(), dm_core::TransactionError> {
    let single: Vec<ObjectId> = tree
        .objects()
        .filter(|schema| {
            !schema.multiple && !covered.contains(&schema.id) && !tree.is_reported(schema.id)
        })
        .map(|schema| schema.id)
        .collect();
    let mut tx = tree.begin(Origin::Agent);
    for object in single {
        tx.create(object, None);
    }
    if !covered.contains(&dm_core::catalog::system_log::ID) {
        tx.create(dm_core::catalog::system_log::ID, None);
    }
    if !covered.contains(&dm_core::catalog::vendor_config_file::ID) {
        vendor_config_file::create(&mut tx);
    }
    tx.commit()?;
    Ok(())
}

/// What a refresh from the platform did.
#[derive(Debug, Default)]
#[must_use]
pub struct Synced {
    /// Values that did not fit their resource, skipped.
    pub warnings: Vec<String>,
    /// Some objects were left as they were because a write of theirs is
    /// still being made on the host ([`Tree::has_pending`]): refresh again
    /// once it has ended.
    pub deferred: bool,
}

/// Writes what the platform knows now into the tree, as the platform.
/// Values that do not fit their resource are skipped with a warning rather
/// than failing the whole refresh. The platform's reads come from its
/// cached snapshot: no host I/O happens here, under the tree's lock.
pub fn sync_platform(tree: &mut Tree, platform: &Platform) -> Synced {
    let mut synced = Synced::default();
    let network = platform.network.as_ref();
    if connectivity::pending(tree) {
        synced.deferred = true;
    } else {
        connectivity::sync(tree, network, &mut synced.warnings);
    }
    if tree.has_pending(dm_core::catalog::wlan::ID) {
        synced.deferred = true;
    } else {
        wlan::sync(tree, network, &mut synced.warnings);
    }
    if tree.has_pending(dm_core::catalog::time::ID) {
        synced.deferred = true;
    } else {
        time::sync(tree, platform.host.as_ref(), &mut synced.warnings);
    }
    if tree.has_pending(dm_core::catalog::device::ID) {
        synced.deferred = true;
    } else {
        device::sync(tree, platform.host.as_ref(), &mut synced.warnings);
    }
    // One copy of the interfaces for the tables that name them.
    let interfaces = network.ip_interfaces();
    ethernet::sync(tree, network, &interfaces, &mut synced.warnings);
    ip_interface::sync(tree, network, &interfaces, &mut synced.warnings);
    dhcp::sync(tree, network, &interfaces, &mut synced.warnings);
    wifi_radio::sync(tree, network, &interfaces, &mut synced.warnings);
    temperature::sync(tree, platform.host.as_ref(), &mut synced.warnings);
    location::sync(tree, network, platform.host.now(), &mut synced.warnings);
    synced
}

/// Performs the part of an Execute that stays inside the tree (Reset Error
/// Code) and returns the host action an Execute asks for, if any.
pub fn perform(tree: &mut Tree, change: &Change) -> Option<HostAction> {
    let ChangeKind::Executed(_) = &change.kind else {
        return None;
    };
    device::perform(tree, &change.path)
}

/// A stored single value.
fn stored(value: Value) -> Slot {
    Slot::Stored(ResourceValue::Single(value))
}

/// The default instance layout: every mandatory resource at its zero
/// value, plus `optional` resources.
fn layout(schema: &ObjectSchema, optional: &[dm_core::ResourceId]) -> Instance {
    schema
        .resources
        .iter()
        .filter(|r| r.mandatory || optional.contains(&r.id))
        .fold(Instance::new(), |instance, r| {
            instance.with(r.id, default_slot(r))
        })
}
