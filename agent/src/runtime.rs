//! Building the agent: platform, objects and tree, wired together; and the
//! run loop that keeps them in step.

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use dm_core::Tree;
use dm_objects::{HostAction, Platform};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryLog, MemoryNetwork};
use dm_platform::store::{FileStore, StoreError};

use crate::config::{Config, PlatformKind};

/// The platform the objects reach the host through.
pub struct Host {
    pub platform: Platform,
}

/// Creates the configured platform.
pub fn host(kind: PlatformKind) -> anyhow::Result<Host> {
    match kind {
        PlatformKind::Memory => {
            let network = Arc::new(MemoryNetwork::demo());
            let log = Arc::new(MemoryLog::default());
            log.append("dmagent: in-memory platform started");
            Ok(Host {
                platform: Platform {
                    host: Arc::new(LinuxHost::default()),
                    network,
                    log,
                },
            })
        }
        PlatformKind::Dbus => {
            // NetworkManager and oFono on the system bus
            // (DBUS_SYSTEM_BUS_ADDRESS or the standard socket); either may
            // be missing now and appear later.
            let network = dm_platform::dbus::DbusNetwork::start(None)
                .context("starting the D-Bus platform")?;
            Ok(Host {
                platform: Platform {
                    host: Arc::new(LinuxHost::default()),
                    network: Arc::new(network),
                    log: Arc::new(dm_platform::linux::JournalLog::default()),
                },
            })
        }
    }
}

/// Builds the tree: objects registered, saved state restored, first-start
/// instances created, configuration applied and platform facts loaded.
/// Returns the warnings met on the way.
pub fn build(
    config: &Config,
    platform: &Platform,
    saved: Option<dm_core::Snapshot>,
) -> anyhow::Result<(Tree, Vec<String>)> {
    let mut tree = Tree::new();
    dm_objects::register(&mut tree, platform).context("registering objects")?;
    let (mut warnings, covered) = match saved {
        Some(snapshot) => tree.restore(snapshot),
        None => (Vec::new(), Vec::new()),
    };
    dm_objects::populate(&mut tree, &covered).context("creating the device's instances")?;
    dm_objects::provision(&mut tree, &config.provisioning())
        .context("applying the configuration")?;
    warnings.extend(dm_objects::sync_platform(&mut tree, platform));
    Ok((tree, warnings))
}

/// Opens the state directory and loads its state; an unreadable state file
/// is moved aside (and said so loudly) rather than keeping the device
/// unmanageable.
pub fn open_state(config: &Config) -> anyhow::Result<(FileStore, Option<dm_core::Snapshot>)> {
    let store = FileStore::open(&config.state_dir)?;
    let saved = match store.load() {
        Ok(saved) => saved,
        Err(e @ StoreError::Corrupt { .. }) => {
            let aside = store.quarantine()?;
            error!("{e}; moved to {} and starting afresh", aside.display());
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok((store, saved))
}

/// `dmagent run`: start, then keep the tree in step with the platform
/// and act on executed actions until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (store, saved) = open_state(&config)?;
    let first_start = saved.is_none();
    let host = host(config.platform)?;
    let (mut tree, warnings) = build(&config, &host.platform, saved)?;
    for w in &warnings {
        warn!("{w}");
    }
    tree.set_store(Box::new(store));
    // Save once now, so a first start is durable before anything else.
    tree.set_pending_state("agent.started", Some(env!("CARGO_PKG_VERSION").into()))
        .context("saving the initial state")?;

    let platform_changed = Arc::new(Notify::new());
    {
        let notify = Arc::clone(&platform_changed);
        host.platform
            .network
            .on_change(Arc::new(move || notify.notify_one()));
    }
    let tree_changed = Arc::new(Notify::new());
    let changes = tree.subscribe(1024);
    {
        let notify = Arc::clone(&tree_changed);
        changes.set_waker(move || notify.notify_one());
    }
    let tree = Arc::new(Mutex::new(tree));
    info!(
        state_dir = %config.state_dir.display(),
        first_start,
        platform = ?config.platform,
        "dmagent started"
    );

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (host_tx, mut host_rx) = tokio::sync::mpsc::channel(4);
    let cwmp = config.cwmp.as_ref().map(|cwmp| {
        let driver = dm_cwmp_tokio::Config {
            connection_request: Some(dm_cwmp_tokio::ConnectionRequestServer {
                bind: std::net::SocketAddr::new(
                    cwmp.connection_request_bind,
                    cwmp.connection_request_port,
                ),
                path: "/".into(),
                allow_basic: false,
                min_interval: std::time::Duration::from_secs(2),
            }),
            http_timeout: std::time::Duration::from_secs(30),
            tls: cwmp.tls.clone(),
        };
        let run = dm_cwmp_tokio::run(Arc::clone(&tree), driver, host_tx.clone(), stop.clone());
        tokio::spawn(async move {
            let result = run.await;
            if let Err(e) = &result {
                error!("CWMP stopped: {e}");
            }
            result
        })
    });

    let lwm2m = config.lwm2m.as_ref().and_then(|lwm2m| {
        let server = match dm_lwm2m_tokio::server_address(&lwm2m.server.uri) {
            Ok((server, _)) => server,
            Err(e) => {
                error!("LwM2M not started: {e}");
                return None;
            }
        };
        let driver = dm_lwm2m_tokio::Config {
            server,
            client: dm_lwm2m::client::ClientConfig {
                endpoint: lwm2m.endpoint.clone(),
                short_server_id: lwm2m.server.short_server_id,
                server_instance: 0,
            },
            psk: (lwm2m.server.security == dm_objects::SecurityMode::PreSharedKey).then(|| {
                (
                    lwm2m.server.psk_identity.clone(),
                    lwm2m.server.psk_key.clone(),
                )
            }),
            bootstrap: lwm2m.server.bootstrap,
        };
        let run = dm_lwm2m_tokio::run(Arc::clone(&tree), driver, stop.clone());
        Some(tokio::spawn(async move {
            let result = run.await;
            if let Err(e) = &result {
                error!("LwM2M stopped: {e}");
            }
            result
        }))
    });

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(request) = host_rx.recv() => {
                let action = match request {
                    dm_cwmp_tokio::HostRequest::Reboot => HostAction::Reboot,
                    dm_cwmp_tokio::HostRequest::FactoryReset => HostAction::FactoryReset,
                };
                warn!(?action, origin = "acs", "host action requested; this platform cannot perform it yet");
            }
            () = platform_changed.notified() => {
                for w in dm_objects::sync_platform(&mut lock(&tree), &host.platform) {
                    warn!("{w}");
                }
            }
            () = tree_changed.notified() => {
                let lagged = changes.take_lagged();
                if lagged > 0 {
                    warn!(lagged, "change stream overflowed");
                }
                for change in changes.drain() {
                    if let Some(action) = dm_objects::perform(&mut lock(&tree), &change) {
                        host_action(action, &change);
                    }
                }
            }
        }
    }
    info!("dmagent stopping");
    let _ = stop_tx.send(true);
    if let Some(task) = cwmp
        && let Err(e) = task.await
    {
        error!("CWMP driver: {e}");
    }
    if let Some(task) = lwm2m
        && let Err(e) = task.await
    {
        error!("LwM2M driver: {e}");
    }
    Ok(())
}

fn host_action(action: HostAction, change: &dm_core::Change) {
    // Performing reboots and factory resets on the host belongs to the
    // platform layer (logind or a configured command); until it lands the
    // request is logged, never silently dropped.
    warn!(?action, origin = %change.origin, "host action requested; this platform cannot perform it yet");
}

/// Locks the tree. A poisoned lock means a panic while the tree was held;
/// with `panic = "abort"` that cannot be observed in release builds, and in
/// tests the state is still the last committed one (commits are atomic).
pub fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    tree.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
