//! What the driver tests share: a tree with the given server accounts,
//! the driver's configuration, and a running driver to stop.

#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dm_core::Tree;
use dm_lwm2m::client::ClientConfig;
use dm_lwm2m::coap::Parameters;
use dm_lwm2m_tokio::Config;
use dm_objects::{Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};
use tokio::sync::watch;

/// A server account at `uri`: a PSK one when `psk` (identity, key) is
/// given, NoSec otherwise.
pub fn account(
    uri: String,
    bootstrap: bool,
    short_server_id: u16,
    lifetime: u32,
    psk: Option<(&[u8], &[u8])>,
) -> Lwm2mServer {
    Lwm2mServer {
        uri,
        bootstrap,
        short_server_id,
        lifetime,
        binding: "U".into(),
        security: match psk {
            Some((identity, key)) => SecurityMode::PreSharedKey {
                identity: identity.to_vec(),
                key: key.to_vec(),
            },
            None => SecurityMode::NoSec,
        },
        client_hold_off: 0,
        sni: None,
    }
}

/// The object tree on the in-memory platform, provisioned with `accounts`.
pub fn tree(accounts: Vec<Lwm2mServer>) -> Tree {
    let platform = Platform {
        host: Arc::new(dm_platform::linux::LinuxHost::default()),
        network: Arc::new(dm_platform::memory::MemoryNetwork::demo()),
        log: Arc::new(dm_platform::memory::MemoryLog::default()),
    };
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, &platform).unwrap();
    dm_objects::populate(&mut tree, &[]).unwrap();
    dm_objects::provision(
        &mut tree,
        &Provisioning {
            identity: Identity {
                serial_number: "SN-DRIVER".into(),
                oui: "00D09E".into(),
                ..Identity::default()
            },
            lwm2m: accounts,
            ..Provisioning::default()
        },
    )
    .unwrap();
    tree
}

/// The driver's configuration for `server` (used when the tree holds no
/// account), with `psk` and CoAP `coap` parameters.
pub fn config(server: SocketAddr, psk: Option<(&[u8], &[u8])>, coap: Parameters) -> Config {
    Config {
        uri: String::new(),
        server,
        client: ClientConfig {
            endpoint: "dmagent-driver".into(),
            short_server_id: 101,
            server_instance: 0,
            nat_timeout: None,
        },
        credentials: psk.map(|(identity, key)| dm_lwm2m::security::Credentials::Psk {
            identity: identity.to_vec(),
            key: key.to_vec(),
        }),
        trust_anchors: Vec::new(),
        sni: None,
        coap,
        bootstrap: false,
        status: Arc::default(),
        firmware: None,
        network: None,
    }
}

/// CoAP timers that make an unanswered request fail in about `ack_timeout`
/// times (2^(max_retransmit+1) - 1).
pub fn short_coap(ack_timeout_ms: u64, max_retransmit: u32) -> Parameters {
    Parameters {
        ack_timeout: Duration::from_millis(ack_timeout_ms),
        ack_random_factor: 1.0,
        max_retransmit,
    }
}

/// A driver running on `tree`.
pub struct Running {
    driver: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
}

impl Running {
    pub fn start(tree: &Arc<Mutex<Tree>>, config: Config) -> Running {
        let (stop, shutdown) = watch::channel(false);
        let driver = tokio::spawn(dm_lwm2m_tokio::run(Arc::clone(tree), config, shutdown));
        Running { driver, stop }
    }

    /// Asks it to stop and waits (at most 10 s) until it has.
    pub async fn stop(self) {
        self.request_stop();
        self.stopped().await;
    }

    /// Asks it to stop (as SIGTERM does).
    pub fn request_stop(&self) {
        self.stop.send(true).unwrap();
    }

    /// Waits (at most 10 s) until it has stopped.
    pub async fn stopped(self) {
        tokio::time::timeout(Duration::from_secs(10), self.driver)
            .await
            .expect("the driver stops")
            .unwrap()
            .unwrap();
    }
}
