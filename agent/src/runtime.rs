//! Building the agent: platform, objects and tree, wired together; and the
//! run loop that keeps them in step.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use dm_core::{Tree, lock};
use dm_objects::declared::ProviderKind;
use dm_objects::{HostAction, Platform};
use dm_platform::linux::LinuxHost;
use dm_platform::memory::{MemoryActions, MemoryLog, MemoryNetwork};
use dm_platform::store::{FileStore, StoreError};
use dm_platform::{Actions, CommandActions};

use crate::config::{Config, PlatformKind};

/// What the control API asks of the run loop.
#[derive(Debug)]
pub enum Request {
    Exit,
    Reload(tokio::sync::mpsc::Sender<Result<(), String>>),
}

/// How long a platform refresh waits for a host write of the same objects
/// to end before it looks again.
const RESYNC_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// The platform the objects reach the host through, and what performs
/// reboots and factory resets.
pub struct Host {
    pub platform: Platform,
    pub actions: Arc<dyn Actions>,
}

/// Creates the configured platform.
pub fn host(config: &Config) -> anyhow::Result<Host> {
    let mut host = platform(config.platform)?;
    if config.reboot_command.is_some() || config.factory_reset_command.is_some() {
        host.actions = Arc::new(CommandActions {
            reboot: config.reboot_command.clone(),
            factory_reset: config.factory_reset_command.clone(),
            fallback: host.actions,
        });
    }
    Ok(host)
}

/// The real host (`/proc`, the journal) with `network` and `actions`,
/// its time settings through `host` (timedated on the D-Bus platforms).
fn real_host(
    host: Arc<dyn dm_platform::Host>,
    network: Arc<dyn dm_platform::Network>,
    actions: Arc<dyn dm_platform::Actions>,
) -> Host {
    Host {
        platform: Platform {
            host,
            network,
            log: Arc::new(dm_platform::linux::JournalLog::default()),
        },
        actions,
    }
}

fn platform(kind: PlatformKind) -> anyhow::Result<Host> {
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
                // A developer's machine must not reboot: recorded, and the
                // agent exits as if the device had rebooted.
                actions: Arc::new(MemoryActions::default()),
            })
        }
        #[cfg(not(feature = "dbus"))]
        PlatformKind::Dbus => anyhow::bail!("{}", crate::NOT_BUILT_DBUS),
        #[cfg(feature = "dbus")]
        PlatformKind::Dbus => {
            // NetworkManager and oFono on the system bus
            // (DBUS_SYSTEM_BUS_ADDRESS or the standard socket); either may
            // be missing now and appear later.
            let network = dm_platform::dbus::DbusNetwork::start(None)
                .context("starting the D-Bus platform")?;
            Ok(real_host(
                Arc::new(network.host(LinuxHost::default())),
                Arc::new(network),
                Arc::new(dm_platform::dbus::LogindActions::new(None)),
            ))
        }
        // With a system bus that answers, its services where they answer
        // and the kernel for the rest; without one, the kernel alone (a
        // dead bus is not retried forever: that would wake the agent
        // every few seconds for nothing).
        #[cfg(feature = "dbus")]
        PlatformKind::Auto if dm_platform::auto::system_bus_present() => {
            let network = dm_platform::dbus::DbusNetwork::start(None)
                .context("starting the D-Bus platform")?;
            if !network.reached() {
                warn!("no system bus answers: the kernel's network only, and reboot by command");
                drop(network);
                return platform(PlatformKind::Linux);
            }
            Ok(real_host(
                Arc::new(network.host(LinuxHost::default())),
                Arc::new(dm_platform::auto::AutoNetwork::new(
                    network,
                    dm_platform::linux::network::LinuxNetwork::default(),
                )),
                Arc::new(dm_platform::dbus::LogindActions::new(None)),
            ))
        }
        PlatformKind::Auto | PlatformKind::Linux => Ok(real_host(
            Arc::new(LinuxHost::default()),
            Arc::new(dm_platform::linux::network::LinuxNetwork::default()),
            Arc::new(dm_platform::NoActions),
        )),
    }
}

/// Builds the tree: objects registered, saved state restored, first-start
/// instances created, configuration applied and platform facts loaded.
/// Returns the warnings met on the way.
pub fn build(
    config: &Config,
    platform: &Platform,
    saved: Option<dm_core::Snapshot>,
    providers: &[(dm_core::ObjectId, Arc<dyn dm_objects::declared::Provider>)],
) -> anyhow::Result<(Tree, Vec<String>)> {
    // Before anything resolves a TR-181 path.
    dm_cwmp::mapping::declare(&config.tr181).context("declaring TR-181 parameters")?;
    dm_cwmp::mapping::declare_commands(config.commands.clone())
        .context("declaring TR-181 commands")?;
    for table in dm_cwmp::mapping::replaced() {
        info!("{table} is the declared object's, not the host's");
    }
    let mut tree = Tree::new();
    tree.set_instance_limit(config.max_instances);
    dm_objects::register(&mut tree, platform).context("registering objects")?;
    dm_objects::declared::register(&mut tree, &config.objects, &|declared| {
        providers
            .iter()
            .find(|(object, _)| *object == declared.schema.id)
            .map(|(_, p)| Arc::clone(p))
    })
    .context("registering declared objects")?;
    let (mut warnings, covered) = match saved {
        Some(mut snapshot) => {
            let upgraded = dm_objects::upgrade(&mut snapshot);
            let (mut warnings, covered) = tree.restore(snapshot);
            warnings.extend(upgraded);
            (warnings, covered)
        }
        None => (Vec::new(), Vec::new()),
    };
    dm_objects::populate(&mut tree, &covered).context("creating the device's instances")?;
    dm_objects::declared::populate(&mut tree, &config.objects, &covered)
        .context("creating the declared objects' instances")?;
    dm_objects::provision(&mut tree, &config.provisioning())
        .context("applying the configuration")?;
    warnings.extend(dm_objects::sync_platform(&mut tree, platform).warnings);
    // FirmwareImage from the saved /3 and /5 (the run loop keeps it).
    warnings.extend(dm_objects::firmware_image::follow(&mut tree));
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
pub async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, String>,
) -> anyhow::Result<u8> {
    // First of all: a SIGTERM that comes while the agent starts must stop
    // it cleanly (de-register), not kill it by the default action.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SIGHUP is how procd, sysvinit scripts and `systemctl reload` ask a
    // daemon to re-read its configuration: the same as `dmagent reload`.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let (store, saved) = open_state(&config)?;
    let first_start = saved.is_none();
    let host = host(&config)?;
    // Declared objects' providers: programs started once the tree is up,
    // and services that register over D-Bus.
    let programs: Vec<Arc<crate::provider::command::Process>> = config
        .objects
        .iter()
        .filter_map(|d| match &d.provider {
            Some(ProviderKind::Command(command)) => Some(crate::provider::command::Process::new(
                command.clone(),
                d.schema,
            )),
            _ => None,
        })
        .collect();
    #[cfg(feature = "dbus")]
    let services = crate::provider::dbus::Registry::new(
        &config
            .objects
            .iter()
            .filter(|d| d.provider == Some(ProviderKind::Dbus))
            .map(|d| d.schema)
            .collect::<Vec<_>>(),
    );
    let mut providers: Vec<(dm_core::ObjectId, Arc<dyn dm_objects::declared::Provider>)> =
        Vec::new();
    for program in &programs {
        providers.push((program.object(), Arc::clone(program) as _));
    }
    #[cfg(feature = "dbus")]
    for declared in &config.objects {
        if let Some(service) = services.provider(declared.schema.id) {
            providers.push((declared.schema.id, service as _));
        }
    }
    let (mut tree, warnings) = build(&config, &host.platform, saved, &providers)?;
    for w in &warnings {
        warn!("{w}");
    }
    tree.set_store(Box::new(store));
    #[cfg(feature = "usp")]
    if let Some(usp) = &config.usp {
        dm_objects::local_agent::provision(
            &mut tree,
            &usp.endpoint_id,
            &[(usp.controller_endpoint_id.clone(), usp.controller_role)],
            &dm_usp::permissions::BUILT_IN_ROLES,
        )
        .context("setting up USP's objects")?;
        dm_objects::local_agent::provision_mtp(&mut tree, &crate::usp::mtp_facts(usp))
            .context("setting up USP's MTP objects")?;
    }
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
    crate::firmware::announce(&tree);
    let dhcp_acs_url = config.cwmp.as_ref().is_some_and(|c| c.acs_url_from_dhcp);
    if dhcp_acs_url {
        adopt_dhcp_acs_url(&mut lock(&tree), &host.platform);
    }
    info!(
        state_dir = %config.state_dir.display(),
        first_start,
        platform = ?config.platform,
        "dmagent started"
    );

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    for program in &programs {
        tokio::spawn(Arc::clone(program).run(Arc::clone(&tree), stop.clone()));
    }
    let (host_tx, mut host_rx) = tokio::sync::mpsc::channel(4);
    // A firmware update asks for the reboot that confirms it (A/B).
    let (reboot_tx, mut reboot_rx) = tokio::sync::mpsc::channel::<&'static str>(1);
    // An activated update of the agent itself: exit for the launcher.
    let (update_ready_tx, mut update_ready_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut exit_code = 0u8;
    let cwmp_status = Arc::new(Mutex::new(dm_cwmp_tokio::Status::default()));
    let lwm2m_status = Arc::new(Mutex::new(dm_lwm2m_tokio::Status::default()));
    let (cwmp_commands, cwmp_commands_rx) = tokio::sync::mpsc::channel(4);
    let image_store = crate::firmware::store(&config.state_dir, config.firmware_max_size);
    // LwM2M firmware transfers are announced to the ACS, as
    // AutonomousTransferCompletePolicy says.
    let announcer = crate::firmware::Announcer::new(
        config.cwmp.is_some().then(|| cwmp_commands.clone()),
        Arc::clone(&tree),
    );
    // Transfers and updates a restart interrupted, and A/B updates the
    // reboot decides: before the drivers start.
    let firmware_updated = crate::firmware::recover(&tree, &image_store, &announcer);
    crate::software::recover(&tree);
    let (mut diagnostics, mut diagnostics_ended) = crate::diagnostics::Runner::new(
        Arc::clone(&tree),
        config.cwmp.is_some().then(|| Arc::clone(&cwmp_status)),
    );
    diagnostics.resume();
    // The last change of the tree this loop has handled.
    let mut seen = lock(&tree).last_sequence();
    // The host's addresses: when they change, LwM2M registers again from
    // a new socket (issue: NAT and DTLS bindings die with the address).
    let (network_tx, network_rx) = tokio::sync::watch::channel(0u64);
    let mut addresses = host_addresses(&host.platform);
    let mut pulling: Option<tokio::task::JoinHandle<()>> = None;
    // HTTPS pulls trust the system's CA bundle, loaded for each pull
    // (not held while idle).
    let pull_tls = dm_cwmp_tokio::tls::Trust::OnDemand(dm_cwmp_tokio::TlsSettings::default());
    // Deployment units' operations LwM2M's /9 and CWMP's ChangeDUState
    // carry out, for USP's DUStateChange!.
    #[cfg_attr(not(feature = "usp"), allow(unused_variables))]
    let (du_events, du_events_rx) = tokio::sync::broadcast::channel::<crate::software::DuEvent>(16);
    // Software Management (/9) operations, in order per instance.
    let performer = crate::software::Performer {
        tree: Arc::clone(&tree),
        state_dir: config.state_dir.clone(),
        max_size: config.firmware_max_size,
        command: config.software_command.clone(),
        tls: pull_tls.clone(),
        self_update: config.self_update.then(|| update_ready_tx.clone()),
        events: Some(du_events.clone()),
    };
    let mut software_queues = crate::software::Queues::default();
    // Bulk data profiles report over HTTPS with the ACS's TLS settings.
    let mut bulk_data = crate::bulkdata::Collector::new(
        Arc::clone(&tree),
        dm_cwmp_tokio::tls::Trust::OnDemand(
            config
                .cwmp
                .as_ref()
                .map(|cwmp| cwmp.tls.clone())
                .unwrap_or_default(),
        ),
    );
    bulk_data.settle();
    // TR-143's UDP echo server, when UDPEchoConfig enables it.
    let mut echo_server = crate::udp_echo::Server::new(Arc::clone(&tree));
    echo_server.settle().await;
    let mut cwmp_commands_rx = Some(cwmp_commands_rx);
    // The control API (dmagent get/set/status/...), if a bus is there:
    // up before the drivers, so that whoever sees the agent act can reach it.
    let (requests_tx, mut requests) = tokio::sync::mpsc::channel(4);
    let transfer = Arc::new(Mutex::new(None));
    let expected_sha256 = Arc::new(Mutex::new(None::<[u8; 32]>));
    // Without the API, its sender is all that stands for it: the loop's
    // requests branch stays pending rather than see a closed channel.
    #[cfg(not(feature = "dbus"))]
    let control = requests_tx;
    // Before the API is on the bus: a provider may push at once.
    #[cfg(feature = "dbus")]
    services.attach(Arc::clone(&tree));
    #[cfg(feature = "dbus")]
    let control = crate::control::serve(crate::control::Control {
        tree: Arc::clone(&tree),
        started: dm_rt::clock::wall(),
        cwmp: config
            .cwmp
            .is_some()
            .then(|| (Arc::clone(&cwmp_status), cwmp_commands.clone())),
        lwm2m: config.lwm2m.is_some().then(|| Arc::clone(&lwm2m_status)),
        requests: requests_tx,
        transfer: Arc::clone(&transfer),
        expected_sha256: Arc::clone(&expected_sha256),
        providers: Arc::clone(&services),
        platform: config.platform.name(),
    })
    .await;

    #[cfg(not(feature = "cwmp"))]
    let cwmp = None::<tokio::task::JoinHandle<()>>;
    #[cfg(feature = "cwmp")]
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
            allow_basic_over_http: cwmp.allow_basic_over_http,
            tls: cwmp.tls.clone(),
            status: Arc::clone(&cwmp_status),
            transfers: Some(crate::firmware::cwmp_transfers(
                Arc::clone(&tree),
                image_store.clone(),
                config.firmware_command.clone(),
                config.firmware_reboot,
                pull_tls.clone(),
                Arc::clone(&host.platform.log),
            )),
            deployment_units: Some(crate::software::cwmp_handler(
                Arc::clone(&tree),
                config.state_dir.clone(),
                config.firmware_max_size,
                config.software_command.clone(),
                pull_tls.clone(),
                Some(du_events.clone()),
            )),
        };
        let commands = cwmp_commands_rx
            .take()
            .unwrap_or_else(|| tokio::sync::mpsc::channel(1).1);
        let run = dm_cwmp_tokio::run(
            Arc::clone(&tree),
            driver,
            host_tx.clone(),
            commands,
            stop.clone(),
        );
        tokio::spawn(async move {
            let result = run.await;
            if let Err(e) = &result {
                error!("CWMP stopped: {e}");
            }
            result
        })
    });

    #[cfg(not(feature = "lwm2m"))]
    let lwm2m = None::<tokio::task::JoinHandle<()>>;
    #[cfg(feature = "lwm2m")]
    let lwm2m = config.lwm2m.as_ref().and_then(|lwm2m| {
        // The name is looked up by the driver at each connection, without
        // blocking and again until it resolves; only a URI that cannot be
        // one is an error here (the configuration check refuses it).
        if let Err(e) = dm_lwm2m_tokio::parse_server_uri(&lwm2m.server.uri) {
            error!("LwM2M not started: {e}");
            return None;
        }
        let driver = dm_lwm2m_tokio::Config {
            uri: lwm2m.server.uri.clone(),
            server: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            client: dm_lwm2m::client::ClientConfig {
                endpoint: lwm2m.endpoint.clone(),
                short_server_id: lwm2m.server.short_server_id,
                server_instance: 0,
                nat_timeout: lwm2m.nat_timeout,
            },
            credentials: credentials(&lwm2m.server.security),
            trust_anchors: lwm2m.trust_anchors.clone(),
            // The configured server has none: bootstrap may provision one.
            sni: None,
            coap: dm_lwm2m::coap::Parameters::default(),
            bootstrap: lwm2m.server.bootstrap,
            status: Arc::clone(&lwm2m_status),
            firmware: Some(dm_lwm2m_tokio::PackageSinks(Arc::new({
                let store = image_store.clone();
                let announcer = announcer.clone();
                move || {
                    Box::new(crate::firmware::FileSink::new(
                        store.clone(),
                        announcer.clone(),
                    ))
                }
            }))),
            network: Some(network_rx.clone()),
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
    #[cfg(feature = "lwm2m")]
    fn credentials(security: &dm_objects::SecurityMode) -> Option<dm_lwm2m::security::Credentials> {
        use dm_lwm2m::security::{CertificateUsage, Certificates, Credentials};
        match security {
            dm_objects::SecurityMode::NoSec => None,
            dm_objects::SecurityMode::PreSharedKey { identity, key } => Some(Credentials::Psk {
                identity: identity.clone(),
                key: key.clone(),
            }),
            dm_objects::SecurityMode::Certificate {
                chain,
                private_key,
                server,
                usage,
            } => Some(Credentials::Certificate(Certificates {
                chain: chain.clone(),
                private_key: private_key.clone(),
                server: server.clone(),
                usage: CertificateUsage::from_value((*usage).into())?,
                trust_anchors: Vec::new(),
            })),
        }
    }
    let (usp_host_tx, mut usp_host_rx) = tokio::sync::mpsc::channel::<HostAction>(1);
    #[cfg(not(feature = "usp"))]
    let usp = None::<tokio::task::JoinHandle<()>>;
    #[cfg(feature = "usp")]
    let usp = config.usp.clone().map(|usp| {
        // Deployment units' operations: the handler CWMP's ChangeDUState
        // uses, on the same /9 instances.
        let software = crate::software::cwmp_handler(
            Arc::clone(&tree),
            config.state_dir.clone(),
            config.firmware_max_size,
            config.software_command.clone(),
            pull_tls.clone(),
            None,
        );
        let run = crate::usp::run(
            Arc::clone(&tree),
            usp,
            config.state_dir.clone(),
            usp_host_tx,
            crate::usp::Software {
                handler: software,
                others: du_events_rx,
            },
            firmware_updated,
            stop.clone(),
        );
        tokio::spawn(async move {
            let result = run.await;
            if let Err(e) = &result {
                error!("USP stopped: {e}");
            }
            result
        })
    });

    notify_systemd("READY=1");

    let mut offline = config
        .offline_reboot_after
        .map(|limit| Offline::new(limit, dm_rt::clock::now()));
    let mut offline_tick = tokio::time::interval(config.offline_reboot_after.map_or(
        std::time::Duration::from_secs(3600),
        |limit| {
            (limit / 4).clamp(
                std::time::Duration::from_millis(250),
                std::time::Duration::from_secs(30),
            )
        },
    ));
    offline_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bearer Selection (/13): registration failures walk down the list,
    // judged when a registration is made or fails (no polling: an idle
    // agent is not woken for it).
    let mut bearers = crate::bearer::Fallback::default();
    let registration_changed = lock(&lwm2m_status).changed.clone();

    // systemd's watchdog (WatchdogSec=): a ping at half the interval from
    // the loop that does the work, so a stuck loop is restarted.
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|us| *us > 0)
        .map(|us| std::time::Duration::from_micros(us / 2));
    let mut watchdog_tick =
        tokio::time::interval(watchdog.unwrap_or(std::time::Duration::from_secs(3600)));

    // A reboot or factory reset ends the loop: the drivers stop first (LwM2M
    // de-registers, TR-069's session is over), then the host acts.
    let mut action: Option<(HostAction, String)> = None;
    // `dmagent reload` and SIGHUP: the new configuration's provisioning
    // applied to the tree, or nothing changed and the reason logged.
    let reload_now = || {
        let result = reload().and_then(|new| {
            if new.objects != config.objects
                || new.tr181 != config.tr181
                || new.commands != config.commands
            {
                warn!("declared objects ([[object]]) change at the next start, not on reload");
            }
            dm_objects::provision(&mut lock(&tree), &new.provisioning())
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        });
        match &result {
            Ok(()) => info!("configuration reloaded"),
            Err(e) => warn!("configuration not reloaded: {e}"),
        }
        result
    };
    let mut resync: Option<std::time::Instant> = None;
    while action.is_none() {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                info!("SIGHUP: re-reading the configuration");
                let _ = reload_now();
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify_systemd("WATCHDOG=1"),
            () = registration_changed.0.notified(), if config.lwm2m.is_some() => {
                let (registered, failures) = {
                    let status = lock(&lwm2m_status);
                    (
                        status.servers.values().any(|s| s.registered),
                        status.servers.values().map(|s| s.failures).sum::<u64>(),
                    )
                };
                let preferred = crate::bearer::preferred(&lock(&tree));
                let state = host.platform.network.state();
                if let Some(kind) = bearers.observe(registered, failures, &preferred, &state) {
                    info!(from = ?state.bearer, to = ?kind, "registration keeps failing: trying the next preferred bearer");
                    let network = Arc::clone(&host.platform.network);
                    // One selection at a time: awaited here (a D-Bus round
                    // trip), off the runtime's thread.
                    let selected = tokio::task::spawn_blocking(move || network.select_bearer(kind)).await;
                    if let Ok(Err(e)) = selected {
                        warn!(?kind, "bearer not selected: {e}");
                        bearers.refused(kind);
                    }
                }
            }
            _ = offline_tick.tick(), if offline.is_some() => {
                let up = reachable(
                    config.cwmp.is_some().then_some(&*cwmp_status),
                    config.lwm2m.is_some().then_some(&*lwm2m_status),
                );
                if let Some(watch) = offline.as_mut()
                    && watch.observe(up, dm_rt::clock::now())
                {
                    error!(
                        after = ?watch.limit,
                        "no management server reachable for too long: rebooting (connectivity watchdog)"
                    );
                    action = Some((HostAction::Reboot, "connectivity watchdog".to_owned()));
                }
            }
            Some(request) = requests.recv() => match request {
                Request::Exit => break,
                Request::Reload(answer) => {
                    let _ = answer.try_send(reload_now());
                }
            },
            Some(origin) = reboot_rx.recv() => {
                action = Some((HostAction::Reboot, origin.to_owned()));
            }
            Some(()) = update_ready_rx.recv() => {
                info!("exiting for the launcher to start the updated agent");
                exit_code = crate::software::UPDATE_READY;
                break;
            }
            Some(request) = usp_host_rx.recv() => {
                action = Some((request, "usp".to_owned()));
            }
            Some(request) = host_rx.recv() => {
                action = Some((match request {
                    dm_cwmp_tokio::HostRequest::Reboot => HostAction::Reboot,
                    dm_cwmp_tokio::HostRequest::FactoryReset => HostAction::FactoryReset,
                }, "acs".to_owned()));
            }
            () = dm_rt::sleep_until(resync), if resync.is_some() => {
                resync = None;
                platform_changed.notify_one();
            }
            () = platform_changed.notified() => {
                let synced = dm_objects::sync_platform(&mut lock(&tree), &host.platform);
                for w in synced.warnings {
                    warn!("{w}");
                }
                // A write of the objects is being made on the host: look
                // again shortly, when it has ended (wakes only then).
                if synced.deferred && resync.is_none() {
                    resync = Some(dm_rt::clock::now() + RESYNC_AFTER);
                }
                if dhcp_acs_url {
                    adopt_dhcp_acs_url(&mut lock(&tree), &host.platform);
                }
                let now = host_addresses(&host.platform);
                if now != addresses {
                    info!(from = ?addresses, to = ?now, "the host's addresses changed");
                    if !now.is_empty() {
                        network_tx.send_modify(|generation| *generation += 1);
                    }
                    addresses = now;
                }
            }
            Some(done) = diagnostics_ended.recv() => diagnostics.finish(done, seen),
            () = tree_changed.notified() => {
                let lagged = changes.take_lagged();
                if lagged > 0 {
                    warn!(lagged, "change stream overflowed");
                    // What was lost may have been theirs.
                    bulk_data.refresh();
                    echo_server.refresh();
                }
                let drained = changes.drain();
                // Whether /3 or /5 changed: FirmwareImage follows them.
                let mut firmware_images = lagged > 0;
                if let Some(last) = drained.last() {
                    seen = seen.max(last.sequence);
                }
                if lagged > 0 {
                    seen = lock(&tree).last_sequence().max(seen);
                }
                for change in drained {
                    if let dm_core::ChangeKind::Progress { done, total } = change.kind {
                        *lock(&transfer) =
                            Some((done, total));
                        continue;
                    }
                    if let Some(uri) = crate::firmware::package_uri(&change) {
                        // A new URI replaces a download in progress; the old
                        // one is gone (its image slot free) before the new
                        // one starts.
                        if let Some(previous) = pulling.take() {
                            previous.abort();
                            let _ = previous.await;
                        }
                        *lock(&transfer) = None;
                        pulling = Some(tokio::spawn(crate::firmware::pull(
                            Arc::clone(&tree),
                            image_store.clone(),
                            uri,
                            pull_tls.clone(),
                            announcer.clone(),
                            // A hash named with the pull (dmagent firmware
                            // pull --sha256) is for this pull only.
                            lock(&expected_sha256)
                                .take(),
                        )));
                    }
                    if crate::firmware::is_cancel(&change) {
                        // The pull stops (its partial image goes with its
                        // writer) before the store is cleared.
                        if let Some(previous) = pulling.take() {
                            previous.abort();
                            let _ = previous.await;
                        }
                        *lock(&transfer) = None;
                        crate::firmware::cancelled(&tree, &image_store);
                    }
                    diagnostics.observe(&change);
                    bulk_data.observe(&change);
                    firmware_images |= dm_objects::firmware_image::concerns(&change.path);
                    echo_server.observe(&change);
                    if let Some((instance, operation)) = crate::software::operation(&change) {
                        software_queues.submit(&performer, instance, operation);
                    }
                    if crate::firmware::is_update(&change) {
                        tokio::spawn(crate::firmware::apply(
                            Arc::clone(&tree),
                            image_store.clone(),
                            config.firmware_command.clone(),
                            config.firmware_reboot.then(|| reboot_tx.clone()),
                            announcer.clone(),
                        ));
                    }
                    if let Some(wanted) = dm_objects::perform(&mut lock(&tree), &change) {
                        action.get_or_insert((wanted, change.origin.to_string()));
                    }
                }
                diagnostics.retry(seen);
                if std::mem::take(&mut firmware_images) {
                    for warning in dm_objects::firmware_image::follow(&mut lock(&tree)) {
                        warn!("{warning}");
                    }
                }
                bulk_data.settle();
                echo_server.settle().await;
            }
        }
    }
    info!("dmagent stopping");
    bulk_data.stop();
    echo_server.stop().await;
    notify_systemd("STOPPING=1");
    // No more local writes: they would not be reported to the servers,
    // and after a factory reset they would bring the erased state back.
    drop(control);
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
    if let Some(task) = usp
        && let Err(e) = task.await
    {
        error!("USP driver: {e}");
    }
    let Some((action, origin)) = action else {
        return Ok(exit_code);
    };
    info!(?action, origin, "performing the host action");
    // TR-181 Device.Boot!'s Cause at the next start (a USP Reboot() has
    // left its own, with its command key).
    let cause = boot_cause(action, &origin);
    let usp_on = config.usp.is_some();
    #[cfg(feature = "usp")]
    if usp_on && action == HostAction::Reboot {
        crate::usp::remember_boot_cause(&mut lock(&tree), cause);
    }
    let done = match action {
        HostAction::Reboot => host.actions.reboot(),
        HostAction::FactoryReset if !host.actions.can_factory_reset() => {
            // Nothing here resets the device: the agent's state is kept,
            // not erased for a reset that will not happen.
            Err(dm_platform::PlatformError::Unavailable(
                "factory reset: configure [platform] factory_reset_command".into(),
            ))
        }
        HostAction::FactoryReset => {
            // The agent's own data goes back to the first start; the
            // device's is the platform's (a configured command).
            // A USP FactoryReset()'s command key, before the erase takes it.
            #[cfg(feature = "usp")]
            let command_key = crate::usp::left_command_key(&lock(&tree));
            FileStore::erase(&config.state_dir)
                .with_context(|| format!("erasing {}", config.state_dir.display()))?;
            // The cause outlives the erase, beside the new state.
            #[cfg(feature = "usp")]
            if usp_on {
                crate::usp::remember_boot_cause_after_erase(&config.state_dir, cause, &command_key);
            }
            host.actions.factory_reset()
        }
    };
    // A failed action is an error exit: the supervisor restarts the agent
    // rather than leave it running after promising a reboot.
    done.with_context(|| format!("{action:?} failed"))?;
    info!(?action, "host action accepted; exiting");
    Ok(0)
}

/// Tells systemd (Type=notify) about the agent's state, when started by it:
/// a datagram to $NOTIFY_SOCKET (sd_notify(3)'s protocol; abstract
/// sockets start with '@').
pub fn notify_systemd(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|datagram| {
        if let Some(name) = socket.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            datagram.send_to_addr(state.as_bytes(), &address)
        } else {
            datagram.send_to(state.as_bytes(), &socket)
        }
    });
    if let Err(e) = sent {
        warn!("sd_notify {state}: {e}");
    }
}

/// The connectivity watchdog (`[platform] offline_reboot_after`): how long
/// no management server has been reachable. Reachable means registered
/// with an LwM2M server, or the last CWMP session went through; the
/// drivers themselves back off and register again when the network comes
/// back (an address change makes LwM2M register from a new socket).
#[derive(Debug)]
struct Offline {
    limit: std::time::Duration,
    since: Option<std::time::Instant>,
}

impl Offline {
    fn new(limit: std::time::Duration, now: std::time::Instant) -> Offline {
        // Counting from the start: a device that never reached a server
        // since it booted is offline since then.
        Offline {
            limit,
            since: Some(now),
        }
    }

    /// Whether the reboot is due now.
    fn observe(&mut self, reachable: bool, now: std::time::Instant) -> bool {
        if reachable {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) >= self.limit
    }
}

/// TR-181 2.16 Device.Boot!'s Cause of a host action: remote when a
/// management protocol asked for it (an ACS, an LwM2M server, a USP
/// controller), local otherwise (the CLI, the watchdog, a firmware
/// update's confirming reboot).
fn boot_cause(action: HostAction, origin: &str) -> &'static str {
    let remote = matches!(origin, "acs" | "usp" | "bootstrap") || origin.starts_with("server:");
    if origin == "firmware update" {
        // The update program's reboot into the new image (A/B); a
        // controller's firmware command left RemoteFWUpdate before.
        return "LocalFWUpdate";
    }
    match (action, remote) {
        (HostAction::Reboot, true) => "RemoteReboot",
        (HostAction::Reboot, false) => "LocalReboot",
        (HostAction::FactoryReset, true) => "RemoteFactoryReset",
        (HostAction::FactoryReset, false) => "LocalFactoryReset",
    }
}

fn reachable(
    cwmp: Option<&Mutex<dm_cwmp_tokio::Status>>,
    lwm2m: Option<&Mutex<dm_lwm2m_tokio::Status>>,
) -> bool {
    // A server that disabled us on purpose (Disable, /1/x/4) is not a
    // lost network: rebooting would undo what it asked.
    let now = dm_rt::clock::wall();
    let lwm2m = lwm2m.is_some_and(|s| {
        lock(s)
            .servers
            .values()
            .any(|server| server.registered || server.disabled_until.is_some_and(|t| t > now))
    });
    let cwmp = cwmp.is_some_and(|s| lock(s).last_session_ok == Some(true));
    lwm2m || cwmp
}

/// `[cwmp] acs_url_from_dhcp`: an ACS URL in the DHCPv4 lease (option 43)
/// becomes Device.ManagementServer.URL, as icwmp's dhcp_discovery does; the
/// CWMP engine then bootstraps with the new ACS. A lease without one
/// leaves the URL as it is.
fn adopt_dhcp_acs_url(tree: &mut dm_core::Tree, platform: &Platform) {
    use dm_core::catalog::management_server as ms;
    let Some(url) = platform.network.state().dhcp_acs_url else {
        return;
    };
    let path = dm_core::Path::resource(ms::ID, dm_core::InstanceId(0), ms::URL);
    let current = tree.read(dm_core::Origin::Agent, &path);
    if matches!(&current, Ok(dm_core::ResourceValue::Single(dm_core::Value::String(u))) if *u == url)
    {
        return;
    }
    match tree
        .begin(dm_core::Origin::Platform)
        .set(path, dm_core::Value::String(url.clone()))
        .commit()
    {
        Ok(_) => info!(url, "ACS URL from DHCP option 43"),
        Err(e) => warn!(url, "the ACS URL from DHCP was refused: {e:?}"),
    }
}

/// The host's addresses, sorted: what a change of network is judged by.
fn host_addresses(platform: &Platform) -> Vec<std::net::IpAddr> {
    let mut addresses = platform.network.state().addresses;
    addresses.sort();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_causes_say_who_asked() {
        assert_eq!(boot_cause(HostAction::Reboot, "acs"), "RemoteReboot");
        assert_eq!(boot_cause(HostAction::Reboot, "server:101"), "RemoteReboot");
        assert_eq!(
            boot_cause(HostAction::FactoryReset, "usp"),
            "RemoteFactoryReset"
        );
        assert_eq!(boot_cause(HostAction::Reboot, "cli"), "LocalReboot");
        assert_eq!(
            boot_cause(HostAction::Reboot, "firmware update"),
            "LocalFWUpdate"
        );
        assert_eq!(
            boot_cause(HostAction::Reboot, "connectivity watchdog"),
            "LocalReboot"
        );
    }
    use dm_core::catalog::management_server as ms;
    use dm_platform::Network as _;

    fn url(tree: &Tree) -> String {
        match tree
            .read(
                dm_core::Origin::Agent,
                &dm_core::Path::resource(ms::ID, dm_core::InstanceId(0), ms::URL),
            )
            .unwrap()
        {
            dm_core::ResourceValue::Single(dm_core::Value::String(u)) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_server_that_disabled_us_counts_as_reachable() {
        let lwm2m = Mutex::new(dm_lwm2m_tokio::Status::default());
        assert!(!reachable(None, Some(&lwm2m)));
        lwm2m
            .lock()
            .unwrap()
            .servers
            .entry(101)
            .or_default()
            .disabled_until = Some(i64::MAX);
        assert!(reachable(None, Some(&lwm2m)));
        lwm2m
            .lock()
            .unwrap()
            .servers
            .get_mut(&101)
            .unwrap()
            .disabled_until = Some(0);
        assert!(!reachable(None, Some(&lwm2m)), "the Disable ran out");
    }

    #[test]
    fn the_watchdog_counts_only_unbroken_time_offline() {
        let start = std::time::Instant::now();
        let at = |s| start + std::time::Duration::from_secs(s);
        let mut watch = Offline::new(std::time::Duration::from_secs(60), start);
        assert!(!watch.observe(false, at(59)));
        // Reached a server: the count starts over.
        assert!(!watch.observe(true, at(59)));
        assert!(!watch.observe(false, at(100)));
        assert!(!watch.observe(false, at(159)));
        assert!(watch.observe(false, at(160)));
    }

    /// `[cwmp] acs_url_from_dhcp`: the lease's URL replaces the ACS URL;
    /// a lease without one leaves it.
    #[cfg(feature = "cwmp")]
    #[test]
    fn the_acs_url_follows_dhcp_option_43() {
        let network = Arc::new(dm_platform::memory::MemoryNetwork::demo());
        let platform = Platform {
            host: Arc::new(dm_platform::linux::LinuxHost::default()),
            network: network.clone(),
            log: Arc::new(dm_platform::memory::MemoryLog::default()),
        };
        let config = crate::config::embedded(crate::config::Overrides::default()).unwrap();
        let (mut tree, _) = build(&config, &platform, None, &[]).unwrap();
        let configured = url(&tree);
        adopt_dhcp_acs_url(&mut tree, &platform);
        assert_eq!(url(&tree), configured, "no option 43: unchanged");
        let mut state = network.state();
        state.dhcp_acs_url = Some("http://192.0.2.10:7547/acs".into());
        network.set_network(state);
        adopt_dhcp_acs_url(&mut tree, &platform);
        assert_eq!(url(&tree), "http://192.0.2.10:7547/acs");
    }
}
