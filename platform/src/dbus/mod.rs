//! The D-Bus platform: NetworkManager (devices, addresses, Wi-Fi profiles)
//! and oFono (radio, cell, packet-data contexts) through zbus, and
//! ModemManager for the radio where oFono has no modem
//! ([`modem_manager`], read only); systemd-timedated for the time
//! settings ([`DbusHost`]).
//!
//! Design note. The [`Network`] trait is synchronous and its reads must not
//! block, while D-Bus is asynchronous and the agent's runtime is a single
//! thread that the trait's callers may be running on. So a dedicated
//! thread owns the bus connection on its own current-thread runtime. It
//! keeps a [`Snapshot`] of everything the reads return, refreshed whenever
//! NetworkManager or oFono signal anything (debounced) and when either
//! service appears or goes; reads copy from the snapshot. Writes are sent
//! to the thread and waited for with a timeout: they block the caller for
//! one D-Bus round trip, which is what makes a refusal by the host a fault
//! of the client's request. The caller is a host write
//! (`dm_core::HostWork`), made on a thread of its own with the tree
//! unlocked, so a slow NetworkManager (polkit, a disk write) holds up
//! only the request that waits for it. The thread never takes the core
//! tree's lock, so a caller holding it cannot deadlock with it.
//!
//! Without NetworkManager or oFono the reads are empty and writes fail as
//! "not available"; both are picked up when they appear.

mod convert;
mod modem_manager;
mod proxies;
mod timedate;

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use dm_core::lock;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use zbus::{Connection, MatchRule, MessageStream};

use crate::{
    ApnContext, ApnSettings, ChangeCallback, Network, NetworkState, PlatformError, RadioState,
    TimeSync, WifiProfile, WifiSettings,
};
use proxies::{nm, ofono};

/// How long a write may take before it counts as failed: one D-Bus call
/// and the refresh after it. It blocks only the host write that waits
/// for it (the tree is not locked meanwhile), and stays within
/// `dm_core::tree::HOST_WRITE_LIMIT`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bearer Selection waits for the link (NetworkManager's DHCP, oFono's
/// packet context): its own, longer limit, and it runs beside the other
/// requests rather than before them.
const SELECT_TIMEOUT: Duration = Duration::from_secs(40);
/// One D-Bus call of a write (the connection's method timeout): with the
/// refresh after it (two services' reads, [`READ_TIMEOUT`] each) it fits
/// [`WRITE_TIMEOUT`].
const CALL_TIMEOUT: Duration = Duration::from_secs(6);
/// One service's reads in a refresh: a service that hangs leaves the last
/// view in place this long at most, rather than stall the writes queued
/// behind the refresh.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Signals come in bursts (a device change touches several objects): one
/// refresh after the burst.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often to try again when the bus itself cannot be reached.
const RECONNECT: Duration = Duration::from_secs(5);

/// Everything the reads answer from.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    network: NetworkState,
    radio: RadioState,
    wifi: Vec<WifiProfile>,
    apn: Vec<ApnContext>,
    /// Who reports the modem.
    modem: Option<ModemService>,
    /// timedated's view, when it runs.
    time: Option<TimeSync>,
    leases: Vec<crate::DhcpLease>,
    leases6: Vec<crate::Dhcp6Lease>,
    radios: Vec<crate::WifiRadio>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModemService {
    Ofono,
    ModemManager,
}

type Reply<T> = std_mpsc::SyncSender<Result<T, PlatformError>>;

enum Request {
    AddWifi(WifiSettings, Reply<String>),
    UpdateWifi(String, WifiSettings, Reply<()>),
    DeleteWifi(String, Reply<()>),
    AddApn(ApnSettings, Reply<String>),
    UpdateApn(String, ApnSettings, Reply<()>),
    DeleteApn(String, Reply<()>),
    SelectBearer(crate::BearerKind, Reply<()>),
    SetNtp(bool, Reply<()>),
    SetTimezone(String, Reply<()>),
    ReadTime(Reply<TimeSync>),
}

/// A request and when its caller stops waiting: one that waited in the
/// queue past that is refused, never carried out behind the caller's back.
struct Envelope {
    deadline: std::time::Instant,
    request: Request,
}

struct Shared {
    snapshot: Mutex<Snapshot>,
    callbacks: Mutex<Vec<ChangeCallback>>,
}

/// NetworkManager and oFono over the system bus.
pub struct DbusNetwork {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Envelope>,
    /// The bus could be connected to at start.
    reached: bool,
}

impl DbusNetwork {
    /// Starts the D-Bus thread on `address` (a D-Bus address such as
    /// `unix:path=/run/dbus/system_bus_socket`), or on the system bus
    /// (`DBUS_SYSTEM_BUS_ADDRESS` or the standard socket) when `None`.
    /// Returns once the first look at NetworkManager and oFono is done, so
    /// that the objects start from real values.
    pub fn start(address: Option<String>) -> Result<DbusNetwork, PlatformError> {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Snapshot::default()),
            callbacks: Mutex::new(Vec::new()),
        });
        let (requests, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("dmagent-dbus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(PlatformError::Failed(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(serve(address, thread_shared, receiver, ready_tx));
            })
            .map_err(|e| PlatformError::Failed(format!("cannot start the D-Bus thread: {e}")))?;
        // The first snapshot, or the reason there is none; a missing bus
        // is not fatal (the thread keeps trying).
        let reached = match ready_rx.recv_timeout(WRITE_TIMEOUT) {
            Ok(Err(e)) => {
                warn!("D-Bus platform: {e}; retrying in the background");
                false
            }
            Ok(Ok(())) => true,
            // Connected, but the services are slow to answer (a busy
            // boot): the bus is there.
            Err(_) => {
                warn!("D-Bus platform: no answer from the bus yet; going on");
                true
            }
        };
        Ok(DbusNetwork {
            shared,
            requests,
            reached,
        })
    }

    /// Whether the bus could be connected to at start (a socket file
    /// with no daemon behind it cannot).
    pub fn reached(&self) -> bool {
        self.reached
    }

    /// The host on this connection: the kernel's facts, and
    /// systemd-timedated for the time settings.
    pub fn host(&self, host: crate::linux::LinuxHost) -> DbusHost {
        DbusHost {
            host,
            shared: Arc::clone(&self.shared),
            requests: self.requests.clone(),
        }
    }

    fn call<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, PlatformError> {
        call_within(&self.requests, WRITE_TIMEOUT, request)
    }

    fn call_within<T>(
        &self,
        timeout: Duration,
        request: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, PlatformError> {
        call_within(&self.requests, timeout, request)
    }

    fn snapshot(&self) -> MutexGuard<'_, Snapshot> {
        lock(&self.shared.snapshot)
    }

    /// oFono's contexts are written; ModemManager's bearers are read only
    /// here (see [`modem_manager`]).
    fn contexts_writable(&self) -> Result<(), PlatformError> {
        match self.snapshot().modem {
            Some(ModemService::ModemManager) => Err(PlatformError::Unavailable(
                "changing ModemManager's bearers (read only: the agent reports them)".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Sends a request to the D-Bus thread and waits `timeout` for its answer.
fn call_within<T>(
    requests: &mpsc::UnboundedSender<Envelope>,
    timeout: Duration,
    request: impl FnOnce(Reply<T>) -> Request,
) -> Result<T, PlatformError> {
    let (reply, answer) = std_mpsc::sync_channel(1);
    requests
        .send(Envelope {
            deadline: std::time::Instant::now() + timeout,
            request: request(reply),
        })
        .map_err(|_| PlatformError::Unavailable("the D-Bus thread".into()))?;
    answer
        .recv_timeout(timeout)
        .map_err(|_| PlatformError::Unavailable("D-Bus (no answer in time)".into()))?
}

/// The real host with systemd-timedated, through the D-Bus platform's
/// connection: the kernel's facts from [`LinuxHost`](crate::linux::LinuxHost),
/// the time settings from timedated (kept fresh from its signals, read
/// again on demand for the synchronisation state, which timedated does
/// not signal).
pub struct DbusHost {
    host: crate::linux::LinuxHost,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Envelope>,
}

impl crate::Host for DbusHost {
    fn now(&self) -> std::time::SystemTime {
        self.host.now()
    }

    fn uptime(&self) -> Result<Duration, PlatformError> {
        self.host.uptime()
    }

    fn memory(&self) -> Result<crate::Memory, PlatformError> {
        self.host.memory()
    }

    fn cpu_usage(&self, reader: &str) -> Result<u8, PlatformError> {
        self.host.cpu_usage(reader)
    }

    fn timezone(&self) -> Option<String> {
        self.host.timezone()
    }

    fn utc_offset(&self) -> i32 {
        self.host.utc_offset()
    }

    fn processes(&self) -> Result<Vec<crate::Process>, PlatformError> {
        self.host.processes()
    }

    fn processors(&self) -> Vec<String> {
        self.host.processors()
    }

    fn temperature_sensors(&self) -> Vec<String> {
        self.host.temperature_sensors()
    }

    fn power_sources(&self) -> Vec<crate::PowerSource> {
        self.host.power_sources()
    }

    fn temperature(&self, n: usize) -> Result<f64, PlatformError> {
        self.host.temperature(n)
    }

    fn time_sync(&self) -> Option<TimeSync> {
        lock(&self.shared.snapshot).time.clone()
    }

    fn read_time_sync(&self) -> Result<TimeSync, PlatformError> {
        call_within(&self.requests, WRITE_TIMEOUT, Request::ReadTime)
    }

    fn set_ntp(&self, on: bool) -> Result<(), PlatformError> {
        call_within(&self.requests, WRITE_TIMEOUT, |reply| {
            Request::SetNtp(on, reply)
        })
    }

    fn set_timezone(&self, zone: &str) -> Result<(), PlatformError> {
        call_within(&self.requests, WRITE_TIMEOUT, |reply| {
            Request::SetTimezone(zone.to_owned(), reply)
        })
    }
}

impl Network for DbusNetwork {
    fn state(&self) -> NetworkState {
        self.snapshot().network.clone()
    }

    fn radio(&self) -> RadioState {
        self.snapshot().radio.clone()
    }

    fn wifi_profiles(&self) -> Vec<WifiProfile> {
        self.snapshot().wifi.clone()
    }

    fn wifi_radios(&self) -> Vec<crate::WifiRadio> {
        self.snapshot().radios.clone()
    }

    fn apn_contexts(&self) -> Vec<ApnContext> {
        self.snapshot().apn.clone()
    }

    fn dhcpv6_leases(&self) -> Vec<crate::Dhcp6Lease> {
        self.snapshot().leases6.clone()
    }

    fn dhcp_leases(&self) -> Vec<crate::DhcpLease> {
        self.snapshot().leases.clone()
    }

    fn on_change(&self, callback: ChangeCallback) {
        lock(&self.shared.callbacks).push(callback);
    }

    fn add_wifi_profile(&self, settings: &WifiSettings) -> Result<String, PlatformError> {
        self.call(|reply| Request::AddWifi(settings.clone(), reply))
    }

    fn update_wifi_profile(&self, id: &str, settings: &WifiSettings) -> Result<(), PlatformError> {
        self.call(|reply| Request::UpdateWifi(id.to_owned(), settings.clone(), reply))
    }

    fn delete_wifi_profile(&self, id: &str) -> Result<(), PlatformError> {
        self.call(|reply| Request::DeleteWifi(id.to_owned(), reply))
    }

    fn add_apn_context(&self, settings: &ApnSettings) -> Result<String, PlatformError> {
        self.contexts_writable()?;
        self.call(|reply| Request::AddApn(settings.clone(), reply))
    }

    fn update_apn_context(&self, id: &str, settings: &ApnSettings) -> Result<(), PlatformError> {
        self.contexts_writable()?;
        self.call(|reply| Request::UpdateApn(id.to_owned(), settings.clone(), reply))
    }

    fn delete_apn_context(&self, id: &str) -> Result<(), PlatformError> {
        self.contexts_writable()?;
        self.call(|reply| Request::DeleteApn(id.to_owned(), reply))
    }

    fn select_bearer(&self, kind: crate::BearerKind) -> Result<(), PlatformError> {
        self.call_within(SELECT_TIMEOUT, |reply| Request::SelectBearer(kind, reply))
    }
}

/// The D-Bus thread: connect, watch, refresh, serve writes.
async fn serve(
    address: Option<String>,
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<Envelope>,
    ready: std_mpsc::SyncSender<Result<(), PlatformError>>,
) {
    let mut ready = Some(ready);
    loop {
        let connection = match connect(address.as_deref()).await {
            Ok(connection) => connection,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                }
                // Writes meanwhile fail at once rather than time out.
                let sleep = tokio::time::sleep(RECONNECT);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        request = requests.recv() => match request {
                            Some(envelope) => refuse(envelope.request, PlatformError::Unavailable("the system bus".into())),
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        match watch(&connection, &shared, &mut requests, &mut ready).await {
            Ok(()) => return,
            Err(e) => warn!("D-Bus platform: {e}; reconnecting"),
        }
    }
}

async fn connect(address: Option<&str>) -> Result<Connection, PlatformError> {
    let builder = match address {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    };
    let built = builder.method_timeout(CALL_TIMEOUT).build().await;
    built.map_err(|e| PlatformError::Unavailable(format!("the system bus ({e})")))
}

/// Serves one connection until the request channel closes (`Ok`) or the
/// connection breaks (`Err`).
///
/// zbus stops reading the socket while any of its message streams is
/// full, replies included, and its client-side matching hands each
/// stream every signal the connection receives. So every stream is
/// drained by its own task, which only marks the snapshot stale: a slow
/// refresh or write can never stall the connection it waits on.
async fn watch(
    connection: &Connection,
    shared: &Arc<Shared>,
    requests: &mut mpsc::UnboundedReceiver<Envelope>,
    ready: &mut Option<std_mpsc::SyncSender<Result<(), PlatformError>>>,
) -> Result<(), PlatformError> {
    let failed = |e: zbus::Error| PlatformError::Failed(e.to_string());
    let stale = Arc::new(tokio::sync::Notify::new());
    let closed = Arc::new(tokio::sync::Notify::new());
    let mut drains = tokio::task::JoinSet::new();
    // Subscribe before the first look, so nothing between is missed.
    for rule in [
        signals_from(nm::SERVICE),
        signals_from(ofono::SERVICE),
        signals_from(modem_manager::SERVICE),
        // timedated's changes while it runs; not its comings and goings:
        // the bus starts it on demand and it exits when idle.
        signals_from(timedate::SERVICE),
        owner_changes(nm::SERVICE),
        owner_changes(ofono::SERVICE),
        owner_changes(modem_manager::SERVICE),
    ] {
        let mut stream = MessageStream::for_match_rule(
            rule.map_err(failed)?,
            connection,
            std::num::NonZeroUsize::new(64),
        )
        .await
        .map_err(failed)?;
        let (stale, closed) = (Arc::clone(&stale), Arc::clone(&closed));
        drains.spawn(async move {
            while stream.next().await.is_some() {
                stale.notify_one();
            }
            closed.notify_one();
        });
    }
    // The first look wakes timedated: whether there is one, and what it
    // says. Later refreshes only ask it while it runs.
    if let Ok(Ok(time)) = tokio::time::timeout(READ_TIMEOUT, timedate::read(connection, true)).await
    {
        lock(&shared.snapshot).time = Some(time);
    }
    refresh(connection, shared).await;
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => {
                let Some(Envelope { deadline, request }) = request else { return Ok(()) };
                if std::time::Instant::now() >= deadline {
                    refuse(request, PlatformError::Unavailable("D-Bus (the request waited too long)".into()));
                    continue;
                }
                match request {
                    // Waits for a link to come up: beside the other
                    // requests, which must not wait that long.
                    Request::SelectBearer(kind, reply) => {
                        let (connection, shared) = (connection.clone(), Arc::clone(shared));
                        tokio::spawn(async move {
                            let result = convert::select_bearer(&connection, kind).await;
                            refresh(&connection, &shared).await;
                            let _ = reply.send(result);
                        });
                    }
                    request => {
                        // A write refreshes after it; a read does not, so
                        // a refresh that is due stays due.
                        let refreshes = !matches!(request, Request::ReadTime(_));
                        write(connection, shared, request).await;
                        if refreshes {
                            due = None;
                        }
                    }
                }
            }
            () = stale.notified() => {
                due.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
            }
            () = closed.notified() => {
                return Err(PlatformError::Failed("the bus connection closed".into()));
            }
            () = wait => {
                due = None;
                refresh(connection, shared).await;
            }
        }
    }
}

/// NameOwnerChanged for one name: the service appeared or went.
fn owner_changes(name: &str) -> zbus::Result<MatchRule<'_>> {
    MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .arg(0, name)
        .build()
}

/// Every signal a service sends (the bus filters on the sender).
fn signals_from(service: &str) -> zbus::Result<MatchRule<'_>> {
    MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(service)
        .build()
}

/// Reads everything again; runs the callbacks when anything changed.
async fn refresh(connection: &Connection, shared: &Shared) {
    // A service that is not there reads as empty; a read that failed
    // part way keeps what was known, rather than look like deletions.
    let previous = lock(&shared.snapshot).clone();
    let bounded = |e| PlatformError::Failed(format!("no answer in {READ_TIMEOUT:?} ({e})"));
    let read = tokio::time::timeout(READ_TIMEOUT, convert::read_network_manager(connection));
    let view = match read.await.map_err(bounded).and_then(|r| r) {
        Ok(read) => read,
        Err(PlatformError::Unavailable(e)) => {
            debug!("NetworkManager: {e}");
            convert::NetworkManagerView::default()
        }
        Err(e) => {
            warn!("NetworkManager read incomplete, keeping the last view: {e}");
            convert::NetworkManagerView {
                network: previous.network.clone(),
                wifi: previous.wifi.clone(),
                leases: previous.leases.clone(),
                leases6: previous.leases6.clone(),
                radios: previous.radios.clone(),
            }
        }
    };
    // oFono's modem, else ModemManager's: a device runs one of them.
    let kept = || (previous.radio.clone(), previous.apn.clone(), previous.modem);
    let read = tokio::time::timeout(READ_TIMEOUT, convert::read_ofono(connection));
    let ofono = match read.await.map_err(bounded).and_then(|r| r) {
        Ok(read) => Ok(read),
        Err(PlatformError::Unavailable(e)) => {
            debug!("oFono: {e}");
            Ok(None)
        }
        Err(e) => {
            warn!("oFono read incomplete, keeping the last view: {e}");
            Err(())
        }
    };
    let (radio, apn, modem) = match ofono {
        Ok(Some((radio, apn))) => (radio, apn, Some(ModemService::Ofono)),
        Err(()) => kept(),
        Ok(None) => {
            let read = tokio::time::timeout(READ_TIMEOUT, modem_manager::read(connection));
            match read.await.map_err(bounded).and_then(|r| r) {
                Ok(Some((radio, apn))) => (radio, apn, Some(ModemService::ModemManager)),
                Ok(None) => (RadioState::default(), Vec::new(), None),
                Err(PlatformError::Unavailable(e)) => {
                    debug!("ModemManager: {e}");
                    (RadioState::default(), Vec::new(), None)
                }
                Err(e) => {
                    warn!("ModemManager read incomplete, keeping the last view: {e}");
                    kept()
                }
            }
        }
    };
    // Not running (idle, or none): what it last said stands.
    let read = tokio::time::timeout(READ_TIMEOUT, timedate::read(connection, false));
    let time = match read.await.map_err(bounded).and_then(|r| r) {
        Ok(time) => Some(time),
        Err(PlatformError::Unavailable(e)) => {
            debug!("timedated: {e}");
            previous.time.clone()
        }
        Err(e) => {
            warn!("timedated read failed, keeping the last view: {e}");
            previous.time.clone()
        }
    };
    let convert::NetworkManagerView {
        mut network,
        wifi,
        leases,
        leases6,
        radios,
    } = view;
    convert::add_cellular_bearer(&mut network, &radio);
    let fresh = Snapshot {
        network,
        radio,
        wifi,
        apn,
        modem,
        time,
        leases,
        leases6,
        radios,
    };
    let changed = {
        let mut snapshot = lock(&shared.snapshot);
        let changed = *snapshot != fresh;
        *snapshot = fresh;
        changed
    };
    if changed {
        let callbacks: Vec<ChangeCallback> = lock(&shared.callbacks).clone();
        for callback in callbacks {
            callback();
        }
    }
}

/// Carries out a write, refreshes the snapshot, then answers: the caller
/// reads back what it wrote. (A read of the time settings is answered
/// here too, refreshing only them.)
async fn write(connection: &Connection, shared: &Shared, request: Request) {
    match request {
        Request::AddWifi(settings, reply) => {
            let result = convert::add_wifi(connection, &settings).await;
            refresh(connection, shared).await;
            // The caller gave up: its transaction failed, so the profile
            // must not stay behind.
            if let Err(std_mpsc::SendError(Ok(id))) = reply.send(result) {
                let _ = convert::delete_wifi(connection, &id).await;
                refresh(connection, shared).await;
            }
        }
        Request::UpdateWifi(id, settings, reply) => {
            let result = convert::update_wifi(connection, &id, &settings).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::DeleteWifi(id, reply) => {
            let result = convert::delete_wifi(connection, &id).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::AddApn(settings, reply) => {
            let result = convert::add_apn(connection, &settings).await;
            refresh(connection, shared).await;
            if let Err(std_mpsc::SendError(Ok(id))) = reply.send(result) {
                let _ = convert::delete_apn(connection, &id).await;
                refresh(connection, shared).await;
            }
        }
        Request::UpdateApn(id, settings, reply) => {
            let result = convert::update_apn(connection, &id, &settings).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::DeleteApn(id, reply) => {
            let result = convert::delete_apn(connection, &id).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::SelectBearer(kind, reply) => {
            let result = convert::select_bearer(connection, kind).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::SetNtp(on, reply) => {
            let result = timedate::set_ntp(connection, on).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::SetTimezone(zone, reply) => {
            let current = lock(&shared.snapshot).time.as_ref().map(|t| t.zone.clone());
            let result = timedate::set_timezone(connection, &zone, current.as_deref()).await;
            refresh(connection, shared).await;
            let _ = reply.send(result);
        }
        Request::ReadTime(reply) => {
            let result = timedate::read(connection, true).await;
            if let Ok(time) = &result {
                lock(&shared.snapshot).time = Some(time.clone());
            }
            let _ = reply.send(result);
        }
    }
}

fn refuse(request: Request, error: PlatformError) {
    match request {
        Request::AddWifi(_, reply) | Request::AddApn(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Request::UpdateWifi(_, _, reply)
        | Request::DeleteWifi(_, reply)
        | Request::UpdateApn(_, _, reply)
        | Request::DeleteApn(_, reply)
        | Request::SelectBearer(_, reply)
        | Request::SetNtp(_, reply)
        | Request::SetTimezone(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Request::ReadTime(reply) => {
            let _ = reply.send(Err(error));
        }
    }
}

/// Reboot through systemd-logind (`org.freedesktop.login1.Manager.Reboot`,
/// not interactive). Factory reset has no logind call: after the caller
/// reset the agent's own state, it is a reboot.
pub struct LogindActions {
    address: Option<String>,
}

impl LogindActions {
    /// `address` as for [`DbusNetwork::start`].
    pub fn new(address: Option<String>) -> LogindActions {
        LogindActions { address }
    }
}

impl crate::Actions for LogindActions {
    fn reboot(&self) -> Result<(), PlatformError> {
        let address = self.address.clone();
        // A short-lived connection on a short-lived runtime, on its own
        // thread: the caller's runtime is not involved.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| PlatformError::Failed(e.to_string()))?;
            runtime.block_on(async {
                let connection = connect(address.as_deref()).await?;
                proxies::login1::ManagerProxy::new(&connection)
                    .await
                    .map_err(|e| convert::error(proxies::login1::SERVICE, e))?
                    .reboot(false)
                    .await
                    .map_err(|e| convert::error(proxies::login1::SERVICE, e))
            })
        })
        .join()
        .map_err(|_| PlatformError::Failed("the logind call panicked".into()))?
    }

    fn factory_reset(&self) -> Result<(), PlatformError> {
        self.reboot()
    }
}
