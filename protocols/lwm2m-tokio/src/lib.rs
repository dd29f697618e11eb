//! The tokio driver of dmagent's LwM2M client: one UDP socket per server,
//! datagrams and timer expiries into the engine, datagrams out. All LwM2M
//! decisions are the engine's (`dm_lwm2m::client::Client`).

pub mod pull;
mod status;

pub use status::{ServerStatus, Status, StatusChanged};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dm_core::support::backoff;
use dm_core::{Tree, lock};
use dm_lwm2m::client::{Client, ClientConfig, ClientEvent, PackageSink};
use dm_lwm2m::coap::Parameters;
use dm_lwm2m::dtls::DtlsClient;
use dm_lwm2m::security::Credentials;
use dm_rt::clock::{self, wall};
use dm_rt::sleep_until;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Where and as whom to register.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server's coap:// or coaps:// URI. Its host name is looked up at
    /// each connection (a name that does not resolve yet, at boot before
    /// the network is up, is tried again with the registration back-off).
    /// Empty: `server` is the address, as given.
    pub uri: String,
    /// The server's address: looked up from `uri` when there is one.
    pub server: SocketAddr,
    pub client: ClientConfig,
    /// What DTLS authenticates with (coaps://); `None` is NoSec.
    pub credentials: Option<Credentials>,
    /// The name to send as SNI and match the server's certificate with,
    /// instead of the URI's host (the account's /0/x/14).
    pub sni: Option<String>,
    /// Trust anchors (DER) for the certificate usages that validate the
    /// server's path (0 and 1), for every account with certificates:
    /// the agent's configured CA file (the Security object has no room
    /// for them).
    pub trust_anchors: Vec<Vec<u8>>,
    /// CoAP transmission parameters (RFC 7252 §4.8; the defaults unless
    /// a network needs longer ones, or a test shorter ones).
    pub coap: Parameters,
    /// `server` is a bootstrap server: bootstrap first, then register with
    /// the account it provisions.
    pub bootstrap: bool,
    /// What the driver reports about each server (for `dmagent status`).
    pub status: Arc<Mutex<Status>>,
    /// Where firmware packages pushed to /5/0/0 go.
    pub firmware: Option<PackageSinks>,
    /// Bumped when the host's addresses change: each connection then
    /// opens a new socket (and DTLS session) and registers again in full
    /// (LwM2M Core §6.2: a new address is a new registration; an Update
    /// from it would be refused or misrouted behind NAT).
    pub network: Option<watch::Receiver<u64>>,
}

/// Makes a package sink for each engine.
#[derive(Clone)]
pub struct PackageSinks(pub Arc<dyn Fn() -> Box<dyn PackageSink> + Send + Sync>);

impl std::fmt::Debug for PackageSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackageSinks")
    }
}

fn server_status<'s>(status: &'s Mutex<Status>, config: &Config) -> MutexGuard<'s, Status> {
    let mut status = lock(status);
    status
        .servers
        .entry(config.client.short_server_id)
        .or_default()
        .address = config.server.to_string();
    status
}

/// How a connection to one server ended.
#[derive(Debug)]
enum Outcome {
    Stopped,
    Bootstrapped,
    /// Bootstrap again: registration kept failing and the server allows
    /// bootstrap on failure (/1/x/16), or it executed its Bootstrap-Request
    /// Trigger (/1/x/9).
    Rebootstrap,
    /// The server's name now resolves to another address: connect again.
    Moved,
}

/// Why a server URI gives no address.
pub use dm_rt::uri::UriError;

/// The UDP address of a coap:// or coaps:// URI and whether it is coaps.
/// Looks the host name up, blocking: see [`resolve`].
pub fn server_address(uri: &str) -> Result<(SocketAddr, bool), UriError> {
    let (host, port, secure) = parse_server_uri(uri)?;
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| UriError::new(uri, e))?
        .next()
        .map(|address| (address, secure))
        .ok_or_else(|| UriError::new(uri, "no address"))
}

/// The host, port and coaps-ness of a coap:// or coaps:// URI, without
/// looking anything up.
pub fn parse_server_uri(uri: &str) -> Result<(String, u16, bool), UriError> {
    let secure = match uri.split_once("://") {
        Some(("coap", _)) => false,
        Some(("coaps", _)) => true,
        _ => return Err(UriError::new(uri, "not a coap:// or coaps:// URI")),
    };
    // RFC 7252 §6.1, §6.2: the default ports.
    let (host, port) = dm_rt::uri::host_port(uri, if secure { 5684 } else { 5683 })?;
    Ok((host, port, secure))
}

/// The longest wait between two lookups of a name that does not resolve.
const LOOKUP_RETRY_MAX: Duration = Duration::from_secs(60);

/// How long a name lookup may take before the attempt counts as failed.
const RESOLVE_LIMIT: Duration = Duration::from_secs(15);

/// How long to wait before a new DTLS handshake after one failed; it
/// doubles with each failure in a row up to [`REHANDSHAKE_MAX`].
const REHANDSHAKE_DELAY: Duration = Duration::from_secs(30);
const REHANDSHAKE_MAX: Duration = Duration::from_secs(3600);

/// A lost working session is replaced without delay at most this often.
const QUICK_REHANDSHAKE_EVERY: Duration = Duration::from_secs(60);

/// A new engine for `config`'s server.
fn new_client(config: &Config) -> Client {
    let mut client = Client::new(config.client.clone(), config.coap, dm_rt::random::seed());
    client.set_trust_anchors(!config.trust_anchors.is_empty());
    client
}

/// A new DTLS session from `local` to the server, for a coaps:// account
/// (`None` for plain CoAP).
fn new_session(config: &Config, local: SocketAddr) -> Option<Result<DtlsClient, String>> {
    let credentials = with_trust_anchors(config.credentials.as_ref()?, &config.trust_anchors);
    Some(
        DtlsClient::connect(
            clock::now(),
            local,
            config.server,
            config
                .sni
                .clone()
                .or_else(|| server_name(&config.uri))
                .as_deref(),
            &credentials,
        )
        .map_err(|e| e.to_string()),
    )
}

/// `credentials` with the configured trust anchors when they are
/// certificates (the Security object's own accounts come without).
pub fn with_trust_anchors(credentials: &Credentials, anchors: &[Vec<u8>]) -> Credentials {
    let mut credentials = credentials.clone();
    if let Credentials::Certificate(certificates) = &mut credentials
        && certificates.trust_anchors.is_empty()
    {
        certificates.trust_anchors = anchors.to_vec();
    }
    credentials
}

/// The host jobs of one connection, each tagged with the engine that asked
/// for it. A write job left behind when the connection ends is finished on
/// a task of its own and its writes taken back: the engine that waited is
/// gone, and its transaction never reached the tree.
#[derive(Default)]
struct HostJobs {
    /// Bumped each time the connection makes a new engine.
    engine: u64,
    write: Option<(
        u64,
        tokio::task::JoinHandle<Result<dm_core::HostWork, dm_core::Error>>,
    )>,
    read: Option<(u64, tokio::task::JoinHandle<dm_core::Fetched>)>,
}

impl HostJobs {
    /// Stopping: a write still being made is waited for (at most its
    /// limit) and taken back, since no engine will answer for it; the
    /// runtime may be about to end, and a task spawned on drop with it.
    async fn settle(&mut self, server: &SocketAddr) {
        let Some((_, job)) = self.write.take() else {
            return;
        };
        warn!(%server, "stopping while a change is carried to the host: taking it back");
        if let Ok(Ok(Ok(undo))) = tokio::time::timeout(dm_core::tree::HOST_WRITE_LIMIT, job).await {
            let _ = tokio::task::spawn_blocking(move || undo.undo()).await;
        }
    }
}

impl Drop for HostJobs {
    fn drop(&mut self) {
        let (Some((_, job)), Ok(runtime)) =
            (self.write.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            if let Ok(Ok(undo)) = job.await {
                let _ = tokio::task::spawn_blocking(move || undo.undo()).await;
            }
        });
    }
}

/// The SNI of a server URI: its host when that is a name, none for an
/// address (RFC 6066 §3 forbids IP literals).
pub fn server_name(uri: &str) -> Option<String> {
    let (host, _, _) = parse_server_uri(uri).ok()?;
    host.parse::<std::net::IpAddr>().is_err().then_some(host)
}

/// Whether a lost session may be replaced at once: never for a bootstrap
/// server (its back-off must hold: a new engine would start its count
/// again), only when a registration went through since the last time, and
/// at most once a [`QUICK_REHANDSHAKE_EVERY`]. Records the use.
fn quick_rehandshake_allowed(
    config: &Config,
    registered_since: &mut bool,
    last: &mut Option<Instant>,
    now: Instant,
) -> bool {
    let allowed = !config.bootstrap
        && *registered_since
        && last.is_none_or(|t| now.duration_since(t) >= QUICK_REHANDSHAKE_EVERY);
    if allowed {
        *registered_since = false;
        *last = Some(now);
    }
    allowed
}

fn rehandshake_delay(failures: u32) -> Duration {
    backoff::doubling(
        REHANDSHAKE_DELAY,
        failures.saturating_add(1),
        REHANDSHAKE_MAX,
    )
}

/// How long de-registration may take at shutdown.
const DEREGISTER_GRACE: Duration = Duration::from_secs(5);

/// Runs the client until `shutdown` turns true, then de-registers (LwM2M
/// Core §6.2.3). With a bootstrap server, bootstraps first; then registers
/// with every server account in the tree at once (one per Server
/// instance), and bootstraps again when one of them asks for it.
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let endpoint = config.client.endpoint.clone();
    // A client that already holds a server account (kept in the state
    // directory from an earlier bootstrap) registers with it; it
    // bootstraps only when it has none or when registration keeps failing.
    let provisioned = !dm_lwm2m::bootstrap::accounts(&lock(&tree)).is_empty();
    let mut bootstrap_first = (config.bootstrap && !provisioned).then(|| config.clone());
    // Bootstraps in a row whose accounts then registered nowhere: a
    // bootstrap server that keeps handing out an account no server
    // accepts is asked again after a growing wait (the first time at
    // once: it may have been fixed meanwhile).
    let mut fruitless: u32 = 0;
    loop {
        if let Some(bootstrap) = bootstrap_first.take() {
            if fruitless > 1 {
                let wait = dm_lwm2m::client::retry_wait(fruitless - 1);
                warn!(
                    in_a_row = fruitless,
                    retry_in_s = wait.as_secs(),
                    "LwM2M: no server accepted the accounts the last bootstraps gave; bootstrapping again later"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                }
            }
            match connection(&tree, &bootstrap, &mut shutdown).await? {
                Outcome::Stopped => return Ok(()),
                // (`connection` connects again itself when a server moved.)
                Outcome::Bootstrapped | Outcome::Rebootstrap | Outcome::Moved => {}
            }
        }
        let mut servers = Vec::new();
        let accounts = dm_lwm2m::bootstrap::accounts(&lock(&tree));
        for account in accounts {
            match server_config(&account, &endpoint, &config).await {
                Ok(server) => {
                    info!(uri = %account.uri, ssid = account.short_server_id, "LwM2M server account");
                    servers.push(server);
                }
                Err(e) => warn!(uri = %account.uri, "LwM2M server account skipped: {e}"),
            }
        }
        if servers.is_empty() {
            if config.bootstrap {
                return Err(std::io::Error::other(
                    "bootstrap left no usable server account",
                ));
            }
            // No account in the tree: the configured server as given.
            servers.push(config.clone());
        }
        let registered_before = registrations(&config.status);
        match serve_all(&tree, servers, &mut shutdown).await? {
            Outcome::Stopped => return Ok(()),
            Outcome::Bootstrapped | Outcome::Moved => {}
            Outcome::Rebootstrap => {
                fruitless = if registrations(&config.status) == registered_before {
                    fruitless.saturating_add(1)
                } else {
                    0
                };
                let account = dm_lwm2m::bootstrap::bootstrap_account(&lock(&tree));
                let Some(account) = account else {
                    warn!("bootstrap wanted, but there is no bootstrap server account");
                    continue;
                };
                match server_config(&account, &endpoint, &config).await {
                    Ok(mut bootstrap) => {
                        bootstrap.bootstrap = true;
                        info!(uri = %account.uri, "LwM2M bootstrapping again");
                        bootstrap_first = Some(bootstrap);
                    }
                    Err(e) => {
                        return Err(std::io::Error::other(format!(
                            "bootstrap server {}: {e}",
                            account.uri
                        )));
                    }
                }
            }
        }
    }
}

/// Registrations accepted so far, all servers together.
fn registrations(status: &Mutex<Status>) -> u64 {
    lock(status).servers.values().map(|s| s.registrations).sum()
}

/// The driver configuration for one account.
async fn server_config(
    account: &dm_lwm2m::bootstrap::Account,
    endpoint: &str,
    template: &Config,
) -> Result<Config, String> {
    let (_, _, secure) = parse_server_uri(&account.uri).map_err(|e| e.to_string())?;
    // An account a bootstrap server (or a build with DTLS) left: skipped
    // with the reason, not tried and failed at each connection.
    #[cfg(not(feature = "dtls"))]
    if secure {
        return Err(format!("{}: {}", account.uri, dm_lwm2m::DTLS_NOT_BUILT));
    }
    if secure && account.credentials.is_none() {
        return Err(format!(
            "{}: coaps:// needs Security Mode 0 (PSK) or 2 (Certificate)",
            account.uri
        ));
    }
    Ok(Config {
        uri: account.uri.clone(),
        server: template.server,
        client: ClientConfig {
            endpoint: endpoint.to_owned(),
            short_server_id: account.short_server_id,
            server_instance: account.server_instance,
            nat_timeout: template.client.nat_timeout,
        },
        credentials: if secure {
            account.credentials.clone()
        } else {
            None
        },
        trust_anchors: template.trust_anchors.clone(),
        sni: account.sni.clone(),
        coap: template.coap,
        bootstrap: false,
        status: Arc::clone(&template.status),
        firmware: template.firmware.clone(),
        network: template.network.clone(),
    })
}

/// `server_address` with the name looked up without blocking the runtime,
/// within [`RESOLVE_LIMIT`].
async fn resolve(uri: &str) -> Result<(SocketAddr, bool), UriError> {
    let owned = uri.to_owned();
    match tokio::time::timeout(
        RESOLVE_LIMIT,
        tokio::task::spawn_blocking(move || server_address(&owned)),
    )
    .await
    {
        Ok(joined) => joined.map_err(|e| UriError::new(uri, e))?,
        Err(_) => Err(UriError::new(
            uri,
            format!(
                "no answer to the name lookup in {} s",
                RESOLVE_LIMIT.as_secs()
            ),
        )),
    }
}

/// `config` with its server's name looked up now; a lookup that fails is
/// logged, shown in `status`, and tried again after a growing wait (1 s
/// doubling to a minute: a name that does not resolve at boot usually
/// does once the network is up, much sooner than a refusing server
/// recovers). `None`: stopped meanwhile.
async fn resolved(config: &Config, shutdown: &mut watch::Receiver<bool>) -> Option<Config> {
    if config.uri.is_empty() {
        return Some(config.clone());
    }
    let mut failures = 0u32;
    loop {
        match resolve(&config.uri).await {
            Ok((server, _)) => {
                return Some(Config {
                    server,
                    ..config.clone()
                });
            }
            Err(error) => {
                let reason = error.reason;
                failures = failures.saturating_add(1);
                let wait = backoff::doubling(Duration::from_secs(1), failures, LOOKUP_RETRY_MAX);
                warn!(
                    uri = %config.uri,
                    reason,
                    in_a_row = failures,
                    retry_in_s = wait.as_secs(),
                    "LwM2M server name not resolved; trying again later"
                );
                {
                    let mut status = lock(&config.status);
                    let entry = status
                        .servers
                        .entry(config.client.short_server_id)
                        .or_default();
                    entry.address = config.uri.clone();
                    entry.registered = false;
                    entry.failures += 1;
                    entry.last_error = Some(reason);
                    status.changed.notify();
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            }
        }
    }
}

/// One connection per server, concurrently, until shutdown or until one
/// wants a new bootstrap (then the others de-register too).
async fn serve_all(
    tree: &Arc<Mutex<Tree>>,
    servers: Vec<Config>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Outcome> {
    let (stop_all, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for server in servers {
        let (tree, mut stop) = (Arc::clone(tree), stop_rx.clone());
        tasks.spawn(async move { connection(&tree, &server, &mut stop).await });
    }
    let mut outcome = Outcome::Stopped;
    let mut stopping = false;
    loop {
        tokio::select! {
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() || *shutdown.borrow() {
                    stopping = true;
                    let _ = stop_all.send(true);
                }
            }
            finished = tasks.join_next() => {
                let Some(finished) = finished else {
                    return Ok(outcome);
                };
                match finished.map_err(std::io::Error::other)? {
                    Ok(Outcome::Rebootstrap) => {
                        outcome = Outcome::Rebootstrap;
                        let _ = stop_all.send(true);
                    }
                    Ok(_) => {}
                    Err(e) => warn!("LwM2M connection ended: {e}"),
                }
            }
        }
        if *shutdown.borrow() {
            outcome = Outcome::Stopped;
        }
    }
}

/// One connection to one server, until shutdown or a finished bootstrap;
/// the server's name is looked up first, and again when registering
/// keeps failing (it may have moved).
async fn connection(
    tree: &Arc<Mutex<Tree>>,
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Outcome> {
    loop {
        let Some(resolved) = resolved(config, shutdown).await else {
            return Ok(Outcome::Stopped);
        };
        match connected(tree, &resolved, shutdown).await? {
            Outcome::Moved => continue,
            outcome => return Ok(outcome),
        }
    }
}

/// One connection to one server at its address.
async fn connected(
    tree: &Arc<Mutex<Tree>>,
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Outcome> {
    let bind: SocketAddr = if config.server.is_ipv6() {
        "[::]:0".parse().expect("literal address")
    } else {
        "0.0.0.0:0".parse().expect("literal address")
    };
    let mut socket = UdpSocket::bind(bind).await?;
    socket.connect(config.server).await?;
    let mut network = config.network.clone();
    if let Some(network) = network.as_mut() {
        network.mark_unchanged();
    }
    let changed = Arc::new(Notify::new());
    let changes = {
        let mut tree = lock(tree);
        let subscription = tree.subscribe(4096);
        let notify = Arc::clone(&changed);
        subscription.set_waker(move || notify.notify_one());
        subscription
    };
    let mut client = new_client(config);
    if let Some(sinks) = &config.firmware {
        client.set_package_sink((sinks.0)());
    }
    let mut local = socket.local_addr()?;
    let mut dtls = new_session(config, local)
        .transpose()
        .map_err(std::io::Error::other)?;
    let mut rehandshake_at: Option<Instant> = None;
    let mut dtls_failures: u32 = 0;
    let mut last_quick_rehandshake: Option<Instant> = None;
    // A registration went through since the last quick re-handshake: only
    // then is a lost session worth replacing without back-off.
    let mut registered_since_quick = false;
    let mut registration_failures: u64 = 0;
    start(&mut client, config, tree);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stopping: Option<Instant> = None;
    // Host writes and reads a request waits for (a Wi-Fi profile written
    // to NetworkManager, the system log), made on threads of their own
    // while this loop goes on serving: the tree is not locked meanwhile.
    let mut jobs = HostJobs::default();
    loop {
        if jobs.read.is_none()
            && let Some(reads) = client.poll_host_reads()
        {
            tracing::debug!(server = %config.server, what = reads.describe(), "reading from the host");
            let job = tokio::task::spawn_blocking(move || {
                reads.run_within(dm_core::tree::HOST_READ_LIMIT)
            });
            jobs.read = Some((jobs.engine, job));
        }
        if jobs.write.is_none()
            && let Some(work) = client.poll_host_work()
        {
            info!(server = %config.server, what = work.describe(), "carrying a change to the host");
            let job = tokio::task::spawn_blocking(move || {
                work.run_within(dm_core::tree::HOST_WRITE_LIMIT)
            });
            jobs.write = Some((jobs.engine, job));
        }
        // Tree changes first, every turn: a change made by one request is
        // seen before the next request is served, so an observation
        // created after a write never reports that earlier write.
        {
            let now = clock::now();
            let mut tree = lock(tree);
            for change in changes.drain() {
                client.handle_change(&mut tree, now, &change);
            }
            let lost = changes.take_lagged();
            if lost > 0 {
                warn!(server = %config.server, lost, "change stream overflowed; re-reading observed values");
                client.handle_lost_changes(&mut tree, now);
            }
        }
        // Plaintext from the engine goes through DTLS when configured;
        // with no DTLS session to a coaps:// server it is dropped, never
        // sent in the clear (the engine sends again after the next
        // handshake).
        while let Some(datagram) = client.poll_transmit() {
            match dtls.as_mut() {
                Some(session) => session.send(clock::now(), &datagram),
                None if config.credentials.is_some() => {}
                None => send(&socket, &datagram, config.server).await,
            }
        }
        if let Some(session) = dtls.as_mut() {
            while let Some(datagram) = session.poll_transmit(clock::now()) {
                send(&socket, &datagram, config.server).await;
            }
            if session.is_connected() {
                dtls_failures = 0;
            }
            if let Some(reason) = session.failure() {
                // Stopping: no new session (it would only register again).
                if stopping.is_some() {
                    jobs.settle(&config.server).await;
                    return Ok(Outcome::Stopped);
                }
                // The session is gone (handshake failed, server lost it):
                // a new handshake, then a full Register (LwM2M Core §6.2:
                // a new DTLS session is a new registration). A session
                // that carried a registration and ended (a server
                // restart, a close_notify) is replaced at once, at most
                // once a minute; a server that cannot be reached is
                // retried with back-off.
                let now = clock::now();
                let at_once = session.was_established()
                    && quick_rehandshake_allowed(
                        config,
                        &mut registered_since_quick,
                        &mut last_quick_rehandshake,
                        now,
                    );
                let wait = if at_once {
                    Duration::ZERO
                } else {
                    dtls_failures = dtls_failures.saturating_add(1);
                    rehandshake_delay(dtls_failures - 1)
                };
                {
                    // What `status` shows until a registration succeeds
                    // (set before it is logged: a reader of the log finds
                    // it there). Not a registration failure: Bearer
                    // Selection counts those only (a refused key is no
                    // bearer's fault).
                    let mut status = server_status(&config.status, config);
                    let entry = status
                        .servers
                        .entry(config.client.short_server_id)
                        .or_default();
                    entry.registered = false;
                    entry.last_error = Some(format!("DTLS: {reason}"));
                    status.changed.notify();
                }
                warn!(server = %config.server, reason, retry_in = ?wait, "DTLS session failed");
                dtls = None;
                rehandshake_at = Some(now + wait);
            }
        }
        if dtls.is_none()
            && stopping.is_none()
            && let Some(at) = rehandshake_at
            && clock::now() >= at
            && let Some(session) = new_session(config, local)
        {
            rehandshake_at = None;
            dtls = match session {
                Ok(session) => Some(session),
                Err(reason) => {
                    let wait = rehandshake_delay(dtls_failures);
                    warn!(server = %config.server, reason, retry_in = ?wait, "DTLS connect failed");
                    dtls_failures = dtls_failures.saturating_add(1);
                    rehandshake_at = Some(clock::now() + wait);
                    None
                }
            };
            client = new_client(config);
            jobs.engine += 1;
            if let Some(sinks) = &config.firmware {
                client.set_package_sink((sinks.0)());
            }
            start(&mut client, config, tree);
            continue;
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Registered { location } => {
                    registration_failures = 0;
                    registered_since_quick = true;
                    info!(server = %config.server, %location, "LwM2M registered");
                    // Stopping while the Register was on its way: the
                    // server now holds a registration; end it.
                    if stopping.is_some() {
                        client.deregister(clock::now());
                    }
                    let mut status = server_status(&config.status, config);
                    let entry = status
                        .servers
                        .entry(config.client.short_server_id)
                        .or_default();
                    entry.registered = true;
                    entry.disabled_until = None;
                    entry.location = Some(location);
                    entry.last_registration = Some(wall());
                    entry.registrations += 1;
                    entry.last_error = None;
                    status.changed.notify();
                }
                ClientEvent::Updated => {
                    info!(server = %config.server, "LwM2M registration updated");
                    let mut status = server_status(&config.status, config);
                    let entry = status
                        .servers
                        .entry(config.client.short_server_id)
                        .or_default();
                    entry.last_update = Some(wall());
                }
                ClientEvent::RegistrationFailed {
                    reason,
                    failures,
                    retry_in,
                } => {
                    let what = if config.bootstrap {
                        "LwM2M bootstrap failed"
                    } else {
                        "LwM2M registration failed"
                    };
                    // Said with the wait that really follows: over DTLS a
                    // first failure brings a new session at once (below).
                    let quick = !config.bootstrap
                        && failures == 1
                        && config.credentials.is_some()
                        && dtls.as_ref().is_some_and(DtlsClient::is_connected)
                        && registered_since_quick
                        && last_quick_rehandshake
                            .is_none_or(|t| clock::since(t) >= QUICK_REHANDSHAKE_EVERY);
                    if quick {
                        warn!(
                            server = %config.server,
                            reason,
                            "{what}; a new DTLS session and Register now"
                        );
                    } else {
                        warn!(
                            server = %config.server,
                            reason,
                            in_a_row = failures,
                            retry_in_s = retry_in.as_secs(),
                            "{what}; trying again later"
                        );
                    }
                    {
                        let mut status = server_status(&config.status, config);
                        let entry = status
                            .servers
                            .entry(config.client.short_server_id)
                            .or_default();
                        entry.registered = false;
                        entry.failures += 1;
                        entry.last_error = Some(reason.clone());
                        status.changed.notify();
                    }
                    registration_failures += 1;
                    if stopping.is_some() {
                        continue;
                    }
                    // A name may have moved (a server that was replaced):
                    // looked up again, and a new address is a new
                    // connection.
                    if !config.uri.is_empty()
                        && let Ok((moved, _)) = resolve(&config.uri).await
                        && moved != config.server
                    {
                        info!(uri = %config.uri, from = %config.server, to = %moved, "LwM2M server moved");
                        return Ok(Outcome::Moved);
                    }
                    if !config.bootstrap
                        && gives_up(
                            &lock(tree),
                            config.client.server_instance,
                            registration_failures,
                        )
                    {
                        warn!(
                            server = %config.server,
                            failures = registration_failures,
                            "LwM2M registration keeps failing: bootstrapping again"
                        );
                        return Ok(Outcome::Rebootstrap);
                    }
                    // A server that restarted has lost our DTLS session
                    // and drops its records silently: the next attempt
                    // starts with a new handshake. When a registration
                    // that worked fails for the first time, that is the
                    // likely cause: a new session and a full Register go
                    // at once (at most once a minute), not after the
                    // engine's back-off.
                    if dtls.as_ref().is_some_and(DtlsClient::is_connected)
                        && config.credentials.is_some()
                    {
                        let now = clock::now();
                        let at_once = failures == 1
                            && quick_rehandshake_allowed(
                                config,
                                &mut registered_since_quick,
                                &mut last_quick_rehandshake,
                                now,
                            );
                        if at_once {
                            dtls = None;
                            rehandshake_at = Some(now);
                        } else {
                            dtls = new_session(config, local).and_then(Result::ok);
                            rehandshake_at = dtls
                                .is_none()
                                .then(|| now + rehandshake_delay(dtls_failures));
                        }
                    }
                }
                ClientEvent::Deregistered => {
                    info!(server = %config.server, "LwM2M deregistered");
                    if let Some(entry) = server_status(&config.status, config)
                        .servers
                        .get_mut(&config.client.short_server_id)
                    {
                        entry.registered = false;
                        entry.location = None;
                    }
                    if stopping.is_some() {
                        jobs.settle(&config.server).await;
                        return Ok(Outcome::Stopped);
                    }
                }
                ClientEvent::BootstrapStarted => {
                    info!(server = %config.server, "LwM2M bootstrap started")
                }
                ClientEvent::BootstrapFinished => return Ok(Outcome::Bootstrapped),
                ClientEvent::Sent => info!(server = %config.server, "LwM2M Send acknowledged"),
                ClientEvent::BootstrapRolledBack { error } => {
                    match error {
                        Some(error) => {
                            warn!(server = %config.server, error, "LwM2M bootstrap failed; rollback failed")
                        }
                        None => {
                            warn!(server = %config.server, "LwM2M bootstrap failed; previous accounts restored")
                        }
                    }
                    // With an account to go back to, use it; otherwise keep
                    // trying the bootstrap server (with back-off).
                    if !dm_lwm2m::bootstrap::accounts(&lock(tree)).is_empty() {
                        return Ok(Outcome::Bootstrapped);
                    }
                }
                ClientEvent::BootstrapRequested => {
                    info!(server = %config.server, "LwM2M Bootstrap-Request Trigger executed");
                    client.deregister(clock::now());
                    flush(&mut client, dtls.as_mut(), &socket, config).await;
                    return Ok(Outcome::Rebootstrap);
                }
                ClientEvent::Served {
                    operation,
                    path,
                    code,
                } => {
                    info!(server = %config.server, operation, path, %code, "served the LwM2M server's request")
                }
                ClientEvent::Disabled { until } => {
                    let seconds = until.saturating_duration_since(clock::now()).as_secs();
                    info!(server = %config.server, for_s = seconds, "LwM2M server disabled");
                    let mut status = server_status(&config.status, config);
                    let entry = status
                        .servers
                        .entry(config.client.short_server_id)
                        .or_default();
                    entry.registered = false;
                    entry.disabled_until = Some(clock::wall_at(until));
                }
                ClientEvent::SendFailed { reason } => {
                    warn!(server = %config.server, reason, "LwM2M Send failed")
                }
            }
        }
        // Stopped once de-registered: a Register still on its way is
        // awaited first (then de-registered), so that the server is not
        // left holding a registration until its lifetime ends.
        if let Some(deadline) = stopping
            && (clock::now() >= deadline || !(client.is_registered() || client.is_registering()))
        {
            jobs.settle(&config.server).await;
            return Ok(Outcome::Stopped);
        }
        let deadline = {
            let tree = lock(tree);
            client.poll_timeout(&tree)
        };
        let deadline = [
            deadline,
            stopping,
            // Only while there is no session: a stale time would make the
            // sleep below ready on every turn.
            rehandshake_at.filter(|_| dtls.is_none()),
            dtls.as_ref().and_then(DtlsClient::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        let network_changed = async {
            match network.as_mut() {
                Some(network) => network.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed(), if stopping.is_none() => {
                if *shutdown.borrow() {
                    stopping = Some(clock::now() + DEREGISTER_GRACE);
                    if client.is_registered() {
                        client.deregister(clock::now());
                    }
                }
            }
            alive = network_changed, if stopping.is_none() => {
                if !alive {
                    network = None;
                    continue;
                }
                info!(server = %config.server, "the host's addresses changed: registering again");
                // Changes made before the network moved (the new address
                // itself, typically) are notified first, on the old
                // registration: select! may have picked this branch
                // before the one that wakes the loop for them.
                {
                    let now = clock::now();
                    let mut tree = lock(tree);
                    for change in changes.drain() {
                        client.handle_change(&mut tree, now, &change);
                    }
                }
                flush(&mut client, dtls.as_mut(), &socket, config).await;
                socket = UdpSocket::bind(bind).await?;
                socket.connect(config.server).await?;
                local = socket.local_addr()?;
                dtls = new_session(config, local).and_then(Result::ok);
                // A handshake that cannot even start is tried again later
                // (meanwhile nothing goes out in the clear).
                if config.credentials.is_some() && dtls.is_none() {
                    rehandshake_at = Some(clock::now() + rehandshake_delay(dtls_failures));
                }
                client = new_client(config);
                jobs.engine += 1;
                if let Some(sinks) = &config.firmware {
                    client.set_package_sink((sinks.0)());
                }
                start(&mut client, config, tree);
            }
            received = socket.recv(&mut buffer) => {
                match (received, dtls.as_mut()) {
                    (Ok(n), Some(session)) => {
                        session.handle_datagram(clock::now(), &buffer[..n]);
                        while let Some(plaintext) = session.poll_plaintext() {
                            client.handle_datagram(&mut lock(tree), clock::now(), &plaintext);
                        }
                    }
                    (Ok(n), None) if config.credentials.is_none() => {
                        client.handle_datagram(&mut lock(tree), clock::now(), &buffer[..n]);
                    }
                    // Plaintext on a DTLS association is never accepted.
                    (Ok(_), None) => {}
                    (Err(e), _) => warn!(server = %config.server, "LwM2M receive failed: {e}"),
                }
            }
            // Changes are applied at the top of every turn (below); this
            // only wakes the loop for them.
            () = changed.notified() => {}
            (engine, joined) = async {
                match jobs.write.as_mut() {
                    Some((engine, job)) => (*engine, job.await),
                    None => std::future::pending().await,
                }
            }, if jobs.write.is_some() => {
                jobs.write = None;
                let outcome = joined.unwrap_or_else(|e| Err(dm_core::Error::Platform(e.to_string())));
                if let Err(e) = &outcome {
                    warn!(server = %config.server, "the host refused the change: {e}");
                }
                let undo = if engine == jobs.engine {
                    client.host_work_done(&mut lock(tree), clock::now(), outcome)
                } else {
                    // The engine that asked was replaced (its transaction
                    // dropped with it): the host goes back as the tree is.
                    outcome.ok()
                };
                if let Some(undo) = undo {
                    tokio::task::spawn_blocking(move || undo.undo());
                }
            }
            (engine, joined) = async {
                match jobs.read.as_mut() {
                    Some((engine, job)) => (*engine, job.await),
                    None => std::future::pending().await,
                }
            }, if jobs.read.is_some() => {
                jobs.read = None;
                // A read thread that panicked: the request is served with
                // what the tree has. Values for a replaced engine are
                // dropped.
                if engine == jobs.engine {
                    let fetched = joined.unwrap_or_default();
                    client.host_reads_done(&mut lock(tree), clock::now(), fetched);
                }
            }
            () = sleep_until(deadline) => {
                if let Some(session) = dtls.as_mut() {
                    session.handle_timeout(clock::now());
                }
                client.handle_timeout(&mut lock(tree), clock::now());
                // A server that restarted forgets our DTLS session and drops
                // its records silently: waiting out every retransmission
                // (about 90 s) before a new handshake kept the device
                // unreachable for 97-110 s, where plain CoAP sees the 4.04
                // in milliseconds. After the second unanswered
                // retransmission over a session that worked, a new
                // handshake and a full Register (at most once a minute).
                let now = clock::now();
                if stopping.is_none()
                    && client.unanswered_retransmissions() >= 2
                    && dtls.as_ref().is_some_and(|d| d.is_connected() && d.was_established())
                    && quick_rehandshake_allowed(
                        config,
                        &mut registered_since_quick,
                        &mut last_quick_rehandshake,
                        now,
                    )
                {
                    warn!(
                        server = %config.server,
                        "LwM2M requests unanswered over the DTLS session: a new handshake now"
                    );
                    dtls = None;
                    rehandshake_at = Some(now);
                }
            }
        }
    }
}

/// Whether to stop trying this server and bootstrap instead (LwM2M Core
/// §6.2.1.1): after Communication Retry Count failures in a row (default
/// 5), when Bootstrap on Registration Failure (/1/x/16, default true)
/// allows it and there is a bootstrap server to go to.
fn gives_up(tree: &Tree, server_instance: u16, failures: u64) -> bool {
    use dm_core::catalog::server;
    let read = |resource| match tree.read(
        dm_core::Origin::Agent,
        &dm_core::Path::resource(server::ID, dm_core::InstanceId(server_instance), resource),
    ) {
        Ok(dm_core::ResourceValue::Single(v)) => Some(v),
        _ => None,
    };
    let allowed = !matches!(
        read(server::BOOTSTRAP_ON_REGISTRATION_FAILURE),
        Some(dm_core::Value::Boolean(false))
    );
    let limit = match read(server::COMMUNICATION_RETRY_COUNT) {
        Some(dm_core::Value::Unsigned(n)) if n > 0 => n,
        _ => 5,
    };
    allowed && failures >= limit && dm_lwm2m::bootstrap::bootstrap_account(tree).is_some()
}

/// Sends what the engine has queued (a De-register before leaving).
async fn flush(
    client: &mut Client,
    mut dtls: Option<&mut DtlsClient>,
    socket: &UdpSocket,
    config: &Config,
) {
    while let Some(datagram) = client.poll_transmit() {
        match dtls.as_deref_mut() {
            Some(session) => session.send(clock::now(), &datagram),
            None if config.credentials.is_some() => {}
            None => send(socket, &datagram, config.server).await,
        }
    }
    if let Some(session) = dtls {
        while let Some(datagram) = session.poll_transmit(clock::now()) {
            send(socket, &datagram, config.server).await;
        }
    }
}

/// Bootstrap-Request or Register, as the configuration says.
fn start(client: &mut Client, config: &Config, tree: &Mutex<Tree>) {
    if config.bootstrap {
        // Client Hold Off Time: the bootstrap server may start on its own
        // meanwhile (server-initiated bootstrap).
        client.await_bootstrap(
            clock::now(),
            dm_lwm2m::bootstrap::client_hold_off(&lock(tree)),
        );
    } else {
        client.register(&lock(tree), clock::now());
    }
}

async fn send(socket: &UdpSocket, datagram: &[u8], server: SocketAddr) {
    if let Err(e) = socket.send(datagram).await {
        // ICMP errors (server down) surface here; the engine's
        // retransmission and back-off handle it.
        warn!(%server, "LwM2M send failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dm_objects::{Identity, Lwm2mServer, Platform, Provisioning, SecurityMode};

    #[test]
    fn sni_is_the_host_name_never_an_address() {
        assert_eq!(
            server_name("coaps://lwm2m.example.net:5684").as_deref(),
            Some("lwm2m.example.net")
        );
        assert_eq!(server_name("coaps://127.0.0.1:5684"), None);
        assert_eq!(server_name("coaps://[::1]:5684"), None);
        assert_eq!(server_name("not a uri"), None);
    }

    fn tree(with_bootstrap: bool) -> Tree {
        let platform = Platform {
            host: Arc::new(dm_platform::linux::LinuxHost::default()),
            network: Arc::new(dm_platform::memory::MemoryNetwork::demo()),
            log: Arc::new(dm_platform::memory::MemoryLog::default()),
        };
        let mut tree = Tree::new();
        dm_objects::register(&mut tree, &platform).unwrap();
        dm_objects::populate(&mut tree, &[]).unwrap();
        let server = |uri: &str, bootstrap: bool, ssid: u16| Lwm2mServer {
            uri: uri.into(),
            bootstrap,
            short_server_id: ssid,
            lifetime: 60,
            binding: "U".into(),
            security: SecurityMode::NoSec,
            client_hold_off: 0,
            sni: None,
        };
        let mut lwm2m = vec![server("coap://127.0.0.1:5683", false, 101)];
        if with_bootstrap {
            lwm2m.push(server("coap://127.0.0.1:5693", true, 0));
        }
        dm_objects::provision(
            &mut tree,
            &Provisioning {
                identity: Identity {
                    serial_number: "SN1".into(),
                    oui: "00D09E".into(),
                    ..Identity::default()
                },
                lwm2m,
                ..Provisioning::default()
            },
        )
        .unwrap();
        tree
    }

    #[test]
    fn registration_failures_fall_back_to_bootstrap_as_the_server_object_says() {
        let mut tree = tree(true);
        let instance = dm_lwm2m::bootstrap::account(&tree).unwrap().server_instance;
        assert!(!gives_up(&tree, instance, 4));
        assert!(gives_up(&tree, instance, 5), "default retry count 5");
        let path = |r| {
            dm_core::Path::resource(
                dm_core::catalog::server::ID,
                dm_core::InstanceId(instance),
                r,
            )
        };
        tree.begin(dm_core::Origin::Bootstrap)
            .set(
                path(dm_core::catalog::server::COMMUNICATION_RETRY_COUNT),
                dm_core::Value::Unsigned(2),
            )
            .commit()
            .unwrap();
        assert!(gives_up(&tree, instance, 2));
        tree.begin(dm_core::Origin::Bootstrap)
            .set(
                path(dm_core::catalog::server::BOOTSTRAP_ON_REGISTRATION_FAILURE),
                dm_core::Value::Boolean(false),
            )
            .commit()
            .unwrap();
        assert!(!gives_up(&tree, instance, 10), "/1/x/16 false");
        // No bootstrap server: keep trying the server.
        let tree = tree_without_bootstrap();
        assert!(!gives_up(&tree, 0, 10));
    }

    fn tree_without_bootstrap() -> Tree {
        tree(false)
    }

    #[test]
    fn delays_back_off_and_stay_bounded() {
        assert_eq!(rehandshake_delay(0), Duration::from_secs(30));
        assert_eq!(rehandshake_delay(1), Duration::from_secs(60));
        assert_eq!(rehandshake_delay(100), REHANDSHAKE_MAX);
    }
}
