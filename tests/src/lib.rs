//! Shared set-up for the cross-crate scenarios: a full tree on the
//! in-memory platform, as the agent builds it.

pub mod agent;
pub mod dbus_stack;
pub mod dtls;
pub mod files;
pub mod mini_acs;
pub mod netns;
pub mod pki;
pub mod process;
pub mod py_peers;
pub mod tls;

use std::sync::Arc;

use dm_core::Tree;
use dm_objects::{Identity, Platform, Provisioning};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};

/// The demo platform with the real host.
pub fn platform() -> (Platform, Arc<MemoryNetwork>) {
    let network = Arc::new(MemoryNetwork::demo());
    let platform = Platform {
        host: Arc::new(LinuxHost::default()),
        network: network.clone(),
        log: Arc::new(MemoryLog::default()),
    };
    (platform, network)
}

/// A provisioned tree with platform facts loaded.
pub fn tree(platform: &Platform) -> Tree {
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, platform).expect("register objects");
    dm_objects::populate(&mut tree, &[]).expect("populate");
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                manufacturer: "Acme".into(),
                oui: "00D09E".into(),
                product_class: "Gateway".into(),
                model_name: "GW-1".into(),
                serial_number: "SN0001".into(),
                ..Identity::default()
            },
            ..Provisioning::default()
        },
    )
    .expect("provision");
    let warnings = dm_objects::sync_platform(&mut tree, platform).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
    tree
}
