//! The tokio driver of dmagent's CWMP engine.
//!
//! A thin loop: it feeds the engine (`dm_cwmp::session::Engine`) with tree
//! changes, connection requests and timer expiries, carries each POST the
//! engine produces to the ACS over HTTP, and hands back the responses. All
//! CWMP decisions are the engine's.

pub mod connreq;
mod dual;
#[cfg(feature = "ftp")]
pub mod ftp;
#[cfg(not(feature = "ftp"))]
#[path = "no_ftp.rs"]
pub mod ftp;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod http;
pub mod stun;
pub mod tls;
pub mod udpcr;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dm_core::catalog::management_server;
use dm_core::support::backoff;
use dm_core::{InstanceId, Origin, Path, ResourceValue, Tree, Value, lock};
use dm_cwmp::session::{Engine, EngineEvent};
use dm_rt::clock::{self, wall};
use dm_rt::sleep_until;
use hyper::Uri;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, trace, warn};

pub use connreq::ConnectionRequestConfig;
pub use http::Credentials;
pub use tls::TlsSettings;

/// Driver settings. The ACS URL and all credentials are read from the
/// tree (Device.ManagementServer) when used, so an ACS can change them.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub connection_request: Option<ConnectionRequestServer>,
    /// Limit for each HTTP exchange.
    pub http_timeout: Duration,
    /// Answer a Basic challenge from an http:// ACS (off by default: the
    /// password would cross the network readable).
    pub allow_basic_over_http: bool,
    /// For https:// ACS URLs.
    pub tls: TlsSettings,
    /// What the driver reports about itself (for `dmagent status`).
    pub status: Arc<Mutex<Status>>,
    /// Who carries out Downloads; without one they fail with 9010.
    pub transfers: Option<TransferHandler>,
    /// Who carries out ChangeDUState; without one each operation fails.
    pub deployment_units: Option<DuHandler>,
}

/// Performs a ChangeDUState's operations in order; one result each.
pub type DuFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<dm_cwmp::soap::DuResult>> + Send>>;

#[derive(Clone)]
pub struct DuHandler(pub Arc<dyn Fn(dm_cwmp::session::DuChange) -> DuFuture + Send + Sync>);

impl std::fmt::Debug for DuHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DuHandler")
    }
}

/// The CWMP side as `dmagent status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub acs_url: String,
    pub in_session: bool,
    /// Unix times.
    pub last_session_start: Option<i64>,
    pub last_session_end: Option<i64>,
    pub last_session_ok: Option<bool>,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// When the next session is due (Unix time), if one is scheduled.
    pub next_session: Option<i64>,
    /// What the ACS said it serves, when asked (GetRPCMethods).
    pub acs_methods: Vec<String>,
    /// The public address of the UDP connection-request port, as the STUN
    /// server saw it.
    pub stun_binding: Option<String>,
    /// Where the connection-request server listens, once bound.
    pub connection_request_address: Option<String>,
    /// Why it is not listening yet (the address and the error), while
    /// binding is retried.
    pub connection_request_error: Option<String>,
    /// ConnectionRequestUsername and ConnectionRequestPassword are both
    /// empty: anyone who reaches the port can start a session.
    pub connection_requests_unprotected: bool,
    /// Why the last failed session failed, and when (Unix time): kept
    /// after later sessions succeed, so an operator sees the last trouble.
    pub last_error: Option<(i64, String)>,
    /// Notified when a session ends: for work that waits for none to be
    /// open (a diagnostic test the ACS asked for starts after the session,
    /// as TR-181's DiagnosticsState says).
    pub ended: SessionEnded,
}

/// A wake-up shared by the clones of a [`Status`], for every waiter at
/// once (`notify_waiters`): a waiter enables its `Notified` before it
/// looks at `in_session`, so an end between the two is not missed.
#[derive(Clone, Debug, Default)]
pub struct SessionEnded(pub Arc<tokio::sync::Notify>);

// Not part of what the status says.
impl PartialEq for SessionEnded {
    fn eq(&self, _: &SessionEnded) -> bool {
        true
    }
}

impl Eq for SessionEnded {}

/// How a transfer that succeeded ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Installed into the inactive slot (A/B): the device must reboot into
    /// it, and the outcome is known only then, by the software version
    /// (which must differ from `version_before`).
    AwaitingReboot {
        version_before: String,
    },
}

/// Performs a download the ACS asked for; `Err` carries the
/// TransferComplete fault.
pub type TransferFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Applied, dm_cwmp::soap::TransferFault>> + Send>,
>;

#[derive(Clone)]
pub struct TransferHandler(
    pub Arc<dyn Fn(dm_cwmp::session::QueuedDownload) -> TransferFuture + Send + Sync>,
);

impl std::fmt::Debug for TransferHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferHandler")
    }
}

/// What the agent may ask of the driver.
#[derive(Clone, Debug)]
pub enum Command {
    /// Start a session reporting this EventCode; the answer says whether
    /// the request was accepted.
    Inform(String, tokio::sync::mpsc::Sender<Result<(), String>>),
    /// Ask the ACS for a file (RequestDownload): file type and arguments.
    RequestDownload(
        String,
        Vec<(String, String)>,
        tokio::sync::mpsc::Sender<Result<(), String>>,
    ),
    /// A transfer the ACS did not ask for ended (a firmware update through
    /// LwM2M): reported with AutonomousTransferComplete.
    AutonomousTransfer(Box<dm_cwmp::session::TransferResult>),
    /// Send a Kicked; the answer is the ACS's NextURL, or why there is
    /// none (refused at once, or by the ACS).
    Kicked(
        dm_cwmp::soap::Kick,
        tokio::sync::mpsc::Sender<Result<String, String>>,
    ),
}

/// Callers waiting for the ACS's answer to their Kicked.
type KickWaiters = Vec<(
    dm_cwmp::soap::Kick,
    tokio::sync::mpsc::Sender<Result<String, String>>,
)>;

/// Where the connection-request server listens.
#[derive(Clone, Debug)]
pub struct ConnectionRequestServer {
    pub bind: SocketAddr,
    pub path: String,
    /// Accept HTTP Basic too (off by default: it sends the password).
    pub allow_basic: bool,
    /// At most one accepted request per this interval.
    pub min_interval: Duration,
}

/// What the driver asks the agent to do on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRequest {
    Reboot,
    FactoryReset,
}

/// Runs the CWMP side until `shutdown` turns true. Host actions the ACS
/// asked for are sent on `host` once their session has ended.
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    config: Config,
    host: mpsc::Sender<HostRequest>,
    mut commands: mpsc::Receiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let changed = Arc::new(Notify::new());
    let changes = {
        let mut tree = lock(&tree);
        let subscription = tree.subscribe(4096);
        let notify = Arc::clone(&changed);
        subscription.set_waker(move || notify.notify_one());
        subscription
    };
    let (cr_tx, mut cr_rx) = mpsc::channel(1);
    let mut cr_cache: Option<(String, Instant, Option<String>)> = None;
    let (transfer_results_tx, mut transfer_results) = mpsc::unbounded_channel();
    let (du_results_tx, mut du_results) = mpsc::unbounded_channel();
    let mut transferring = false;
    let mut kick_waiters = KickWaiters::new();
    let mut cr_path = String::new();
    // Where the connection-request server listens once bound (port, and
    // whether UDP requests are served too): binding is retried in the
    // background, sessions to the ACS go on meanwhile.
    let (cr_bound_tx, mut cr_bound) = watch::channel::<Option<(u16, bool)>>(None);
    // ManagementServer.STUN* changed: the UDP listener looks again.
    let stun_changed = Arc::new(tokio::sync::Notify::new());
    if let Some(cr) = config.connection_request.clone() {
        cr_path = cr.path.clone();
        let source = Arc::clone(&tree);
        let credentials: connreq::CredentialSource = Arc::new(move || {
            let tree = lock(&source);
            (
                string(&tree, management_server::CONNECTION_REQUEST_USERNAME),
                string(&tree, management_server::CONNECTION_REQUEST_PASSWORD),
            )
        });
        let server = ConnectionRequestConfig {
            bind: cr.bind,
            path: cr.path,
            credentials: Arc::clone(&credentials),
            allow_basic: cr.allow_basic,
            min_interval: cr.min_interval,
        };
        let stun = udpcr::Stun {
            settings: {
                let tree = Arc::clone(&tree);
                Arc::new(move || stun_settings(&lock(&tree)))
            },
            changed: Arc::clone(&stun_changed),
            learned: {
                let (tree, status) = (Arc::clone(&tree), Arc::clone(&config.status));
                Arc::new(move |public, behind_nat| {
                    lock(&status).stun_binding = Some(public.to_string());
                    let at = |r| Path::resource(management_server::ID, InstanceId(0), r);
                    let _ = lock(&tree)
                        .begin(Origin::Agent)
                        .set(
                            at(management_server::UDP_CONNECTION_REQUEST_ADDRESS),
                            Value::String(public.to_string()),
                        )
                        .set(
                            at(management_server::NAT_DETECTED),
                            Value::Boolean(behind_nat),
                        )
                        .commit();
                })
            },
        };
        let replay = udpcr::ReplayStore {
            load: {
                let tree = Arc::clone(&tree);
                Arc::new(move || {
                    lock(&tree)
                        .pending_state(UDP_CR_TS_KEY)
                        .and_then(|s| s.parse().ok())
                })
            },
            save: {
                let tree = Arc::clone(&tree);
                Arc::new(move |ts: u64| {
                    let _ = lock(&tree).set_pending_state(UDP_CR_TS_KEY, Some(ts.to_string()));
                })
            },
        };
        let requests = ConnectionRequests {
            server,
            credentials,
            stun,
            replay,
            requests: cr_tx,
            status: Arc::clone(&config.status),
        };
        // The first attempt before the first session, so that its Inform
        // carries the ConnectionRequestURL; retries in the background.
        match requests.bind().await {
            Ok(bound) => {
                let _ = cr_bound_tx.send(Some(bound));
            }
            Err(e) => {
                tokio::spawn(requests.bind_again(e, cr_bound_tx, shutdown.clone()));
            }
        }
    }
    let mut engine = Engine::new(
        &mut lock(&tree),
        clock::now(),
        wall(),
        dm_rt::random::seed(),
    );
    // Built when a session connects and dropped after it: the root store
    // held between sessions was about 100 KB of idle heap (the footprint
    // issue), for the milliseconds loading it takes (and a full TLS
    // handshake at each session, the resumption cache going with it). A
    // CA file fixed later is read then. Built once now too, so that a bad
    // one is reported at start. Plain http:// works without it; a build
    // without TLS says so when an https:// URL is used.
    if let Err(e) = tls::client_config(&config.tls)
        && cfg!(feature = "https")
    {
        warn!("HTTPS to the ACS is unavailable: {e}");
    }
    let tls = tls::Trust::OnDemand(config.tls.clone());

    loop {
        let (cr_port, udp_cr) = match *cr_bound.borrow() {
            Some((port, udp)) => (Some(port), udp),
            None => (None, false),
        };
        for change in changes.drain() {
            if is_stun_setting(&change.path) {
                stun_changed.notify_one();
            }
            engine.handle_change(&mut lock(&tree), &change);
        }
        let lost = changes.take_lagged();
        if lost > 0 {
            warn!(
                lost,
                "CWMP change stream overflowed; reporting every notified parameter"
            );
            engine.handle_lost_changes(&mut lock(&tree));
            // A change of STUN's settings may have been among them.
            stun_changed.notify_one();
        }
        let url = string(&lock(&tree), management_server::URL);
        // The ConnectionRequestURL follows the address of the interface
        // that reaches the ACS: looked up without holding the tree (DNS
        // may be slow), again when the URL changes or after a minute.
        if let Some(port) = cr_port
            && cr_cache.as_ref().is_none_or(|(for_url, at, _)| {
                *for_url != url || clock::since(*at) >= CR_URL_REFRESH
            })
        {
            let cr_url = connection_request_url(&url, port, &cr_path).await;
            cr_cache = Some((url.clone(), clock::now(), cr_url));
        }
        {
            let mut tree = lock(&tree);
            if let Some((_, _, Some(cr_url))) = &cr_cache {
                publish_connection_request_url(&mut tree, cr_url);
                if udp_cr {
                    publish_udp_address(&mut tree, cr_url);
                }
            }
            engine.poll_start(&mut tree, wall());
        }
        {
            let unprotected = config.connection_request.is_some() && {
                let tree = lock(&tree);
                string(&tree, management_server::CONNECTION_REQUEST_USERNAME).is_empty()
                    && string(&tree, management_server::CONNECTION_REQUEST_PASSWORD).is_empty()
            };
            let mut status = lock(&config.status);
            if unprotected && !status.connection_requests_unprotected {
                warn!(
                    "connection requests are unprotected: ConnectionRequestUsername and \
                     ConnectionRequestPassword are empty, so any host that can reach the \
                     port can start a session (set [cwmp] connection_request_username and \
                     connection_request_password, or have the ACS set them)"
                );
            }
            status.connection_requests_unprotected = unprotected;
            status.acs_url = url.clone();
        }
        dispatch(&mut engine, &host, &config.status, &mut kick_waiters).await;
        if engine.in_session() {
            session(
                &tree,
                &mut engine,
                &url,
                &config,
                tls.clone(),
                &mut shutdown,
            )
            .await;
            dispatch(&mut engine, &host, &config.status, &mut kick_waiters).await;
            // A stop that came during the session (its change is seen).
            if *shutdown.borrow() {
                return Ok(());
            }
        }
        if engine.in_session() {
            continue;
        }
        // Downloads that are due run beside the sessions, one at a time
        // (one image file, one update program; TR-069 lets the CPE work
        // through its queue in order).
        while !transferring {
            let due = engine.poll_transfer(&mut lock(&tree), wall());
            let Some(transfer) = due else { break };
            transferring = true;
            let results = transfer_results_tx.clone();
            let handler = config.transfers.clone();
            tokio::spawn(async move {
                let start = wall();
                let key = transfer.command_key.clone();
                let (upload, scheduled) = (transfer.upload, transfer.scheduled);
                info!(
                    key,
                    upload,
                    url = %redacted(&transfer.url),
                    "CWMP transfer started"
                );
                let outcome = match handler {
                    Some(handler) => (handler.0)(transfer).await,
                    None => Err(dm_cwmp::soap::TransferFault::new(
                        dm_cwmp::soap::FaultCode::DownloadFailure,
                        "Download failure: downloads are not configured",
                    )),
                };
                let (fault_code, fault_string, awaiting) = match outcome {
                    Ok(Applied::Done) => (0, String::new(), None),
                    Ok(Applied::AwaitingReboot { version_before }) => {
                        (0, String::new(), Some(version_before))
                    }
                    Err(fault) => (fault.code.code(), fault.text, None),
                };
                info!(key, upload, fault_code, "CWMP transfer finished");
                let _ = results.send((
                    dm_cwmp::session::TransferResult {
                        command_key: key,
                        fault_code,
                        fault_string,
                        start,
                        complete: wall(),
                        upload,
                        scheduled,
                        autonomous: None,
                    },
                    awaiting,
                ));
            });
        }
        // ChangeDUState requests, also one at a time and after transfers.
        if !transferring && let Some(change) = engine.poll_du_change(&mut lock(&tree)) {
            transferring = true;
            let results = du_results_tx.clone();
            let handler = config.deployment_units.clone();
            tokio::spawn(async move {
                let key = change.command_key.clone();
                info!(
                    key,
                    operations = change.operations.len(),
                    "ChangeDUState started"
                );
                let outcome = match handler {
                    Some(handler) => (handler.0)(change).await,
                    None => change
                        .operations
                        .iter()
                        .map(|op| dm_cwmp::soap::DuResult {
                            uuid: dm_cwmp::session::du_uuid(op).to_owned(),
                            current_state: "Failed".into(),
                            start: wall(),
                            complete: wall(),
                            fault_code: dm_cwmp::soap::FaultCode::RequestDenied.code(),
                            fault_string: "software management is not configured".into(),
                            ..Default::default()
                        })
                        .collect(),
                };
                let _ = results.send((key, outcome));
            });
        }
        lock(&config.status).next_session = engine.poll_timeout().map(clock::wall_at);
        let deadline = if transferring {
            engine.poll_session_timeout()
        } else {
            engine.poll_timeout()
        };
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
            () = changed.notified() => {}
            // The connection-request server came up: its URL is published
            // at the top of the loop.
            Ok(()) = cr_bound.changed() => {}
            Some(()) = cr_rx.recv() => engine.handle_connection_request(&mut lock(&tree)),
            Some((key, outcome)) = du_results.recv() => {
                transferring = false;
                info!(key, "ChangeDUState finished");
                engine.du_change_complete(&mut lock(&tree), &key, outcome);
            }
            Some((result, awaiting)) = transfer_results.recv() => {
                match awaiting {
                    // TransferComplete waits for the next start, where the
                    // software version tells whether the new image came up.
                    // No other transfer starts meanwhile: the device is
                    // rebooting into the slot just written.
                    Some(before) => {
                        info!(key = result.command_key, "firmware installed; rebooting into it");
                        engine.transfer_awaiting_reboot(&mut lock(&tree), &result.command_key, before);
                        let _ = host.send(HostRequest::Reboot).await;
                    }
                    None => {
                        transferring = false;
                        engine.transfer_complete(&mut lock(&tree), result);
                    }
                }
            }
            Some(command) = commands.recv() => match command {
                Command::Inform(event, answer) => {
                    let accepted = engine.request_session(&mut lock(&tree), &event);
                    let _ = answer.try_send(accepted.map_err(|e| e.to_string()));
                }
                Command::RequestDownload(file_type, args, answer) => {
                    let queued = engine.request_download(&mut lock(&tree), &file_type, args);
                    let _ = answer.try_send(queued.map_err(|e| e.to_string()));
                }
                Command::AutonomousTransfer(result) => {
                    engine.autonomous_transfer_complete(&mut lock(&tree), *result);
                }
                Command::Kicked(kick, answer) => {
                    match engine.kicked(&mut lock(&tree), kick.clone()) {
                        Ok(()) => {
                            kick_waiters.retain(|(_, waiting)| !waiting.is_closed());
                            kick_waiters.push((kick, answer));
                        }
                        Err(e) => {
                            let _ = answer.try_send(Err(e.to_string()));
                        }
                    }
                }
            },
            () = sleep_until(deadline) => {
                engine.handle_timeout(&mut lock(&tree), clock::now(), wall());
            }
        }
    }
}

/// The connection-request servers (TCP and, on the same port number,
/// UDP, TR-069 Annex G) and what they need.
struct ConnectionRequests {
    server: ConnectionRequestConfig,
    credentials: connreq::CredentialSource,
    stun: udpcr::Stun,
    replay: udpcr::ReplayStore,
    requests: mpsc::Sender<()>,
    status: Arc<Mutex<Status>>,
}

impl ConnectionRequests {
    /// Binds both; returns the port and whether UDP requests are served.
    /// Only the TCP bind failing is an error: without UDP, HTTP
    /// connection requests still work.
    async fn bind(&self) -> std::io::Result<(u16, bool)> {
        let bind = self.server.bind;
        let (address, _task) = connreq::serve(self.server.clone(), self.requests.clone())
            .await
            .inspect_err(|e| {
                lock(&self.status).connection_request_error = Some(format!("{bind}: {e}"));
            })?;
        {
            let mut status = lock(&self.status);
            status.connection_request_error = None;
            status.connection_request_address = Some(address.to_string());
        }
        let udp_bind = SocketAddr::new(bind.ip(), address.port());
        let udp = match udpcr::serve(
            udp_bind,
            Arc::clone(&self.credentials),
            self.server.min_interval,
            self.requests.clone(),
            Some(self.stun.clone()),
            Some(self.replay.clone()),
        )
        .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!(%udp_bind, "no UDP connection requests: {e}");
                false
            }
        };
        Ok((address.port(), udp))
    }

    /// Binds again after `error`, with a growing wait (1 s doubling to a
    /// minute), while the address cannot be bound (a port in use, an
    /// address not configured yet). CWMP sessions to the ACS go on
    /// meanwhile, and the log and `status` say why requests are not
    /// served; `bound` says where they are once they are.
    async fn bind_again(
        self,
        mut error: std::io::Error,
        bound: watch::Sender<Option<(u16, bool)>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 1;
        loop {
            let wait = backoff::doubling(Duration::from_secs(1), failures, Duration::from_secs(60));
            warn!(
                bind = %self.server.bind,
                "connection requests cannot be served: {error}; binding again in {} s",
                wait.as_secs()
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            failures = failures.saturating_add(1);
            match self.bind().await {
                Ok(done) => {
                    info!(bind = %self.server.bind, "connection requests served");
                    let _ = bound.send(Some(done));
                    return;
                }
                Err(e) => error = e,
            }
        }
    }
}

/// Logs session events and passes host actions on.
async fn dispatch(
    engine: &mut Engine,
    host: &mpsc::Sender<HostRequest>,
    status: &Mutex<Status>,
    kick_waiters: &mut KickWaiters,
) {
    while let Some(event) = engine.poll_event() {
        match event {
            EngineEvent::SessionStarted { events } => {
                info!(?events, "CWMP session started");
                let mut status = lock(status);
                status.in_session = true;
                status.last_session_start = Some(wall());
            }
            EngineEvent::SessionEnded { ok, error } => {
                let mut status = lock(status);
                match &error {
                    None => info!(ok, "CWMP session ended"),
                    Some(error) => warn!(
                        acs = %redacted(&status.acs_url),
                        "CWMP session failed: {error}"
                    ),
                }
                status.in_session = false;
                status.ended.0.notify_waiters();
                status.last_session_end = Some(wall());
                status.last_session_ok = Some(ok);
                if ok {
                    status.sessions_ok += 1;
                } else {
                    status.sessions_failed += 1;
                    status.last_error = error.map(|e| (wall(), e));
                }
            }
            EngineEvent::Served {
                rpc,
                asked,
                answered,
                fault,
            } => match fault {
                None => info!(rpc, asked, answered, "served the ACS's request"),
                Some(fault) => info!(rpc, asked, fault, "refused the ACS's request"),
            },
            EngineEvent::Reboot => {
                let _ = host.send(HostRequest::Reboot).await;
            }
            EngineEvent::FactoryReset => {
                let _ = host.send(HostRequest::FactoryReset).await;
            }
            EngineEvent::ReportRefused { what } => {
                warn!(what, "the ACS refused it; not sent again");
            }
            EngineEvent::AcsMethods { methods } => {
                info!(?methods, "the ACS serves these methods");
                lock(status).acs_methods = methods;
            }
            EngineEvent::Kicked { kick, next_url } => {
                info!(
                    command = kick.command,
                    ?next_url,
                    "the ACS answered a Kicked"
                );
                // The same kick asked twice is sent once: both hear.
                kick_waiters.retain(|(waiting, answer)| {
                    if *waiting != kick {
                        return true;
                    }
                    let _ = answer.try_send(
                        next_url
                            .clone()
                            .ok_or_else(|| "the ACS refused the Kicked".to_owned()),
                    );
                    false
                });
            }
        }
    }
}

/// Carries one session's POSTs until the engine closes it.
async fn session(
    tree: &Mutex<Tree>,
    engine: &mut Engine,
    url: &str,
    config: &Config,
    tls: tls::Trust,
    shutdown: &mut watch::Receiver<bool>,
) {
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => {
            warn!(url = %redacted(url), "ACS URL is not a URI: {e}");
            engine.handle_transport_error(
                &mut lock(tree),
                clock::now(),
                &format!("the ACS URL is not a URI: {e}"),
            );
            return;
        }
    };
    let credentials = {
        let tree = lock(tree);
        Credentials {
            username: string(&tree, management_server::USERNAME),
            password: string(&tree, management_server::PASSWORD),
        }
    };
    let mut http = http::HttpSession::new(uri, credentials, config.http_timeout, tls);
    http.refuse_basic_over_http(!config.allow_basic_over_http);
    while let Some(body) = engine.poll_transmit() {
        trace!(body = %body, "CWMP POST");
        let body = Arc::new(body);
        let answer = tokio::select! {
            answer = http.post(&body) => answer,
            // A stop does not wait for a slow ACS: what the session
            // accepted is saved already, and a failed session is retried
            // (its unacknowledged events with it) after the restart.
            _ = shutdown.wait_for(|stop| *stop) => {
                info!("stopping in the middle of a CWMP session; it is retried after the restart");
                engine.handle_transport_error(&mut lock(tree), clock::now(), "stopped during the session");
                break;
            }
        };
        match answer {
            Ok((status, body)) => {
                trace!(status, body = %String::from_utf8_lossy(&body), "CWMP response");
                engine.handle_response(&mut lock(tree), clock::now(), wall(), status, &body);
                // A write the host must make first (a Wi-Fi profile): made
                // on a thread of its own, the tree unlocked meanwhile, so
                // the other protocols and the CLI are served.
                while let Some(work) = engine.poll_host_work() {
                    let outcome = carry_to_host(work).await;
                    if let Some(undo) = engine.host_work_done(&mut lock(tree), outcome) {
                        tokio::task::spawn_blocking(move || undo.undo());
                    }
                }
                // Values that need slow host I/O before a read is
                // answered (a provider's volatile value): fetched the same
                // way.
                while let Some(reads) = engine.poll_host_reads() {
                    let what = reads.describe();
                    debug!(what, "reading from the host");
                    let fetched = tokio::task::spawn_blocking(move || {
                        reads.run_within(dm_core::tree::HOST_READ_LIMIT)
                    })
                    .await
                    .unwrap_or_default();
                    for warning in engine.host_reads_done(&mut lock(tree), fetched) {
                        warn!("{warning}");
                    }
                }
            }
            Err(e) => {
                engine.handle_transport_error(&mut lock(tree), clock::now(), &e.to_string());
            }
        }
    }
    http.close().await;
}

/// Makes a transaction's host writes off the runtime thread, within
/// [`dm_core::tree::HOST_WRITE_LIMIT`].
async fn carry_to_host(work: dm_core::HostWork) -> Result<dm_core::HostWork, dm_core::Error> {
    let what = work.describe();
    info!(what, "carrying a change to the host");
    let outcome =
        tokio::task::spawn_blocking(move || work.run_within(dm_core::tree::HOST_WRITE_LIMIT))
            .await
            .unwrap_or_else(|e| Err(dm_core::Error::Platform(e.to_string())));
    if let Err(e) = &outcome {
        warn!(what, "the host refused the change: {e}");
    }
    outcome
}

/// Where the last accepted UDP connection request's timestamp is kept.
const UDP_CR_TS_KEY: &str = "cwmp.udp_connection_request_ts";

/// How often the ConnectionRequestURL's address is looked up again.
const CR_URL_REFRESH: Duration = Duration::from_secs(60);

/// The ConnectionRequestURL on the address of the interface that reaches
/// the ACS. The UDP "connect" only selects a route; it sends nothing.
async fn connection_request_url(acs_url: &str, port: u16, path: &str) -> Option<String> {
    let default_port = if acs_url.starts_with("https:") {
        443
    } else {
        80
    };
    let (host, acs_port) = dm_rt::uri::host_port(acs_url, default_port).ok()?;
    let host = host.as_str();
    let acs = tokio::net::lookup_host((host, acs_port))
        .await
        .ok()?
        .next()?;
    let bind: SocketAddr = if acs.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .ok()?;
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(acs).ok()?;
    Some(match socket.local_addr().ok()? {
        SocketAddr::V4(v4) => format!("http://{}:{port}{path}", v4.ip()),
        SocketAddr::V6(v6) => format!("http://[{}]:{port}{path}", v6.ip()),
    })
}

/// Sets Device.ManagementServer.ConnectionRequestURL when it differs.
fn publish_connection_request_url(tree: &mut Tree, url: &str) {
    let target = Path::resource(
        management_server::ID,
        InstanceId(0),
        management_server::CONNECTION_REQUEST_URL,
    );
    if string(tree, management_server::CONNECTION_REQUEST_URL) != url {
        let _ = tree
            .begin(Origin::Agent)
            .set(target, Value::String(url.to_owned()))
            .commit();
    }
}

/// Sets Device.ManagementServer.UDPConnectionRequestAddress (host:port,
/// TR-181) to the connection-request URL's authority: the UDP listener
/// shares its address and port number.
fn publish_udp_address(tree: &mut Tree, cr_url: &str) {
    // With STUN, the address is the public one the STUN server saw.
    if stun_settings(tree).is_some() {
        return;
    }
    let Some(authority) = cr_url
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
    else {
        return;
    };
    if string(tree, management_server::UDP_CONNECTION_REQUEST_ADDRESS) != authority {
        let _ = tree
            .begin(Origin::Agent)
            .set(
                Path::resource(
                    management_server::ID,
                    InstanceId(0),
                    management_server::UDP_CONNECTION_REQUEST_ADDRESS,
                ),
                Value::String(authority),
            )
            .commit();
    }
}

/// Whether `path` is one of ManagementServer.STUN* (or the whole object).
fn is_stun_setting(path: &Path) -> bool {
    use management_server as ms;
    path.object_id() == ms::ID
        && path.resource_id().is_none_or(|r| {
            [
                ms::STUN_ENABLE,
                ms::STUN_SERVER_ADDRESS,
                ms::STUN_SERVER_PORT,
                ms::STUN_USERNAME,
                ms::STUN_PASSWORD,
                ms::STUN_MAXIMUM_KEEP_ALIVE_PERIOD,
                ms::STUN_MINIMUM_KEEP_ALIVE_PERIOD,
            ]
            .contains(&r)
        })
}

/// ManagementServer.STUN* when STUNEnable is true and a server is named.
/// The keep-alive is STUNMinimumKeepAlivePeriod (at least a second),
/// bounded by STUNMaximumKeepAlivePeriod when that is set.
fn stun_settings(tree: &Tree) -> Option<udpcr::StunSettings> {
    let read = |r| {
        tree.read(
            Origin::Agent,
            &Path::resource(management_server::ID, InstanceId(0), r),
        )
        .ok()
    };
    if !matches!(
        read(management_server::STUN_ENABLE),
        Some(ResourceValue::Single(Value::Boolean(true)))
    ) {
        return None;
    }
    let server = string(tree, management_server::STUN_SERVER_ADDRESS);
    if server.is_empty() {
        return None;
    }
    let port = match read(management_server::STUN_SERVER_PORT) {
        Some(ResourceValue::Single(Value::Unsigned(p))) => u16::try_from(p).unwrap_or(3478),
        _ => 3478,
    };
    let username = string(tree, management_server::STUN_USERNAME);
    let minimum = match read(management_server::STUN_MINIMUM_KEEP_ALIVE_PERIOD) {
        Some(ResourceValue::Single(Value::Unsigned(s))) => s,
        _ => 0,
    };
    let maximum = match read(management_server::STUN_MAXIMUM_KEEP_ALIVE_PERIOD) {
        Some(ResourceValue::Single(Value::Integer(s))) if s > 0 => Some(s as u64),
        _ => None,
    };
    let seconds = minimum.max(1).min(maximum.unwrap_or(u64::MAX)).max(1);
    Some(udpcr::StunSettings {
        server,
        port,
        credentials: (!username.is_empty())
            .then(|| (username, string(tree, management_server::STUN_PASSWORD))),
        keepalive: Duration::from_secs(seconds),
    })
}

fn string(tree: &Tree, resource: dm_core::ResourceId) -> String {
    match tree.read(
        Origin::Agent,
        &Path::resource(management_server::ID, InstanceId(0), resource),
    ) {
        Ok(ResourceValue::Single(Value::String(s))) => s,
        _ => String::new(),
    }
}

/// A URL as it may be logged (its password replaced by `***`).
pub use dm_rt::uri::redacted;
