//! The tokio driver of dmagent's LwM2M client: one UDP socket per server,
//! datagrams and timer expiries into the engine, datagrams out. All LwM2M
//! decisions are the engine's (`dm_lwm2m::client::Client`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dm_core::Tree;
use dm_lwm2m::client::{Client, ClientConfig, ClientEvent};
use dm_lwm2m::coap::Parameters;
use dm_lwm2m::dtls::DtlsClient;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Where and as whom to register.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: SocketAddr,
    pub client: ClientConfig,
    /// PSK identity and key for DTLS (coaps://); `None` is NoSec.
    pub psk: Option<(Vec<u8>, Vec<u8>)>,
    /// `server` is a bootstrap server: bootstrap first, then register with
    /// the account it provisions.
    pub bootstrap: bool,
}

/// How a connection to one server ended.
enum Outcome {
    Stopped,
    Bootstrapped,
}

/// The UDP address of a coap:// or coaps:// URI and whether it is coaps.
pub fn server_address(uri: &str) -> Result<(SocketAddr, bool), String> {
    let (secure, rest) = match uri.split_once("://") {
        Some(("coap", rest)) => (false, rest),
        Some(("coaps", rest)) => (true, rest),
        _ => return Err(format!("{uri}: not a coap:// or coaps:// URI")),
    };
    let default_port = if secure { "5684" } else { "5683" };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{uri}: unterminated IPv6 literal"))?;
        (host, after.strip_prefix(':').unwrap_or(default_port))
    } else {
        authority
            .rsplit_once(':')
            .unwrap_or((authority, default_port))
    };
    let port: u16 = port.parse().map_err(|_| format!("{uri}: bad port"))?;
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("{uri}: {e}"))?
        .next()
        .map(|address| (address, secure))
        .ok_or_else(|| format!("{uri}: no address"))
}

/// How long to wait before a new DTLS handshake after one failed; it
/// doubles with each failure in a row up to [`REHANDSHAKE_MAX`].
const REHANDSHAKE_DELAY: Duration = Duration::from_secs(30);
const REHANDSHAKE_MAX: Duration = Duration::from_secs(3600);

fn rehandshake_delay(failures: u32) -> Duration {
    REHANDSHAKE_DELAY
        .saturating_mul(1 << failures.min(7))
        .min(REHANDSHAKE_MAX)
}

/// How long de-registration may take at shutdown.
const DEREGISTER_GRACE: Duration = Duration::from_secs(5);

/// Runs the client until `shutdown` turns true, then de-registers (LwM2M
/// Core §6.2.3). With a bootstrap server, bootstraps first and then
/// registers with the account the bootstrap server wrote.
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    mut config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        match connection(&tree, &config, &mut shutdown).await? {
            Outcome::Stopped => return Ok(()),
            Outcome::Bootstrapped => {
                let account = dm_lwm2m::bootstrap::account(&lock(&tree))
                    .ok_or_else(|| std::io::Error::other("bootstrap left no server account"))?;
                let (server, secure) =
                    server_address(&account.uri).map_err(std::io::Error::other)?;
                if secure && account.psk.is_none() {
                    return Err(std::io::Error::other(format!(
                        "{}: coaps:// needs a PSK account (Security Mode 0)",
                        account.uri
                    )));
                }
                info!(uri = %account.uri, ssid = account.short_server_id, "LwM2M bootstrap finished");
                config = Config {
                    server,
                    client: ClientConfig {
                        endpoint: config.client.endpoint.clone(),
                        short_server_id: account.short_server_id,
                        server_instance: account.server_instance,
                    },
                    psk: if secure { account.psk } else { None },
                    bootstrap: false,
                };
            }
        }
    }
}

/// One connection to one server, until shutdown or a finished bootstrap.
async fn connection(
    tree: &Arc<Mutex<Tree>>,
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Outcome> {
    let bind: SocketAddr = if config.server.is_ipv6() {
        "[::]:0".parse().expect("literal address")
    } else {
        "0.0.0.0:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(config.server).await?;
    let changed = Arc::new(Notify::new());
    let changes = {
        let mut tree = lock(tree);
        let subscription = tree.subscribe(4096);
        let notify = Arc::clone(&changed);
        subscription.set_waker(move || notify.notify_one());
        subscription
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(config.client.short_server_id);
    let mut client = Client::new(config.client.clone(), Parameters::default(), seed);
    let local = socket.local_addr()?;
    let mut dtls = match &config.psk {
        Some((identity, key)) => Some(
            DtlsClient::connect(
                Instant::now(),
                local,
                config.server,
                identity.clone(),
                key.clone(),
            )
            .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let mut rehandshake_at: Option<Instant> = None;
    let mut dtls_failures: u32 = 0;
    start(&mut client, config, tree);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stopping: Option<Instant> = None;
    loop {
        // Tree changes first, every turn: a change made by one request is
        // seen before the next request is served, so an observation
        // created after a write never reports that earlier write.
        {
            let now = Instant::now();
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
                Some(session) => session.send(Instant::now(), &datagram),
                None if config.psk.is_some() => {}
                None => send(&socket, &datagram, config.server).await,
            }
        }
        if let Some(session) = dtls.as_mut() {
            while let Some(datagram) = session.poll_transmit() {
                send(&socket, &datagram, config.server).await;
            }
            if session.is_connected() {
                dtls_failures = 0;
            }
            if let Some(reason) = session.failure() {
                // The session is gone (handshake failed, server lost it):
                // a new handshake later, then a full Register (LwM2M Core
                // §6.2: a new DTLS session is a new registration).
                let wait = rehandshake_delay(dtls_failures);
                warn!(server = %config.server, reason, retry_in = ?wait, "DTLS session failed");
                dtls = None;
                dtls_failures = dtls_failures.saturating_add(1);
                rehandshake_at = Some(Instant::now() + wait);
            }
        }
        if dtls.is_none()
            && let (Some(at), Some((identity, key))) = (rehandshake_at, &config.psk)
            && Instant::now() >= at
        {
            rehandshake_at = None;
            dtls = match DtlsClient::connect(
                Instant::now(),
                local,
                config.server,
                identity.clone(),
                key.clone(),
            ) {
                Ok(session) => Some(session),
                Err(reason) => {
                    let wait = rehandshake_delay(dtls_failures);
                    warn!(server = %config.server, reason, retry_in = ?wait, "DTLS connect failed");
                    dtls_failures = dtls_failures.saturating_add(1);
                    rehandshake_at = Some(Instant::now() + wait);
                    None
                }
            };
            client = Client::new(
                config.client.clone(),
                Parameters::default(),
                seed.rotate_left(7),
            );
            start(&mut client, config, tree);
            continue;
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Registered { location } => {
                    info!(server = %config.server, %location, "LwM2M registered")
                }
                ClientEvent::Updated => {
                    info!(server = %config.server, "LwM2M registration updated")
                }
                ClientEvent::RegistrationFailed { reason } => {
                    warn!(server = %config.server, reason, "LwM2M registration failed");
                    // A server that restarted has lost our DTLS session
                    // and may drop its records silently: the next attempt
                    // starts with a new handshake.
                    if dtls.as_ref().is_some_and(DtlsClient::is_connected)
                        && let Some((identity, key)) = &config.psk
                    {
                        dtls = DtlsClient::connect(
                            Instant::now(),
                            local,
                            config.server,
                            identity.clone(),
                            key.clone(),
                        )
                        .ok();
                        if dtls.is_none() {
                            rehandshake_at =
                                Some(Instant::now() + rehandshake_delay(dtls_failures));
                        }
                    }
                }
                ClientEvent::Deregistered => {
                    info!(server = %config.server, "LwM2M deregistered");
                    if stopping.is_some() {
                        return Ok(Outcome::Stopped);
                    }
                }
                ClientEvent::BootstrapStarted => {
                    info!(server = %config.server, "LwM2M bootstrap started")
                }
                ClientEvent::BootstrapFinished => return Ok(Outcome::Bootstrapped),
                ClientEvent::Sent => info!(server = %config.server, "LwM2M Send acknowledged"),
                ClientEvent::SendFailed { reason } => {
                    warn!(server = %config.server, reason, "LwM2M Send failed")
                }
            }
        }
        if let Some(deadline) = stopping
            && (Instant::now() >= deadline || !client.is_registered())
        {
            return Ok(Outcome::Stopped);
        }
        let deadline = {
            let tree = lock(tree);
            client.poll_timeout(&tree)
        };
        let deadline = [
            deadline,
            stopping,
            rehandshake_at,
            dtls.as_ref().and_then(DtlsClient::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            _ = shutdown.changed(), if stopping.is_none() => {
                if *shutdown.borrow() {
                    stopping = Some(Instant::now() + DEREGISTER_GRACE);
                    if client.is_registered() {
                        client.deregister(Instant::now());
                    }
                }
            }
            received = socket.recv(&mut buffer) => {
                match (received, dtls.as_mut()) {
                    (Ok(n), Some(session)) => {
                        session.handle_datagram(Instant::now(), &buffer[..n]);
                        while let Some(plaintext) = session.poll_plaintext() {
                            client.handle_datagram(&mut lock(tree), Instant::now(), &plaintext);
                        }
                    }
                    (Ok(n), None) if config.psk.is_none() => {
                        client.handle_datagram(&mut lock(tree), Instant::now(), &buffer[..n]);
                    }
                    // Plaintext on a DTLS association is never accepted.
                    (Ok(_), None) => {}
                    (Err(e), _) => warn!(server = %config.server, "LwM2M receive failed: {e}"),
                }
            }
            // Changes are applied at the top of every turn (below); this
            // only wakes the loop for them.
            () = changed.notified() => {}
            () = sleep_until(deadline) => {
                if let Some(session) = dtls.as_mut() {
                    session.handle_timeout(Instant::now());
                }
                client.handle_timeout(&mut lock(tree), Instant::now());
            }
        }
    }
}

/// Bootstrap-Request or Register, as the configuration says.
fn start(client: &mut Client, config: &Config, tree: &Mutex<Tree>) {
    if config.bootstrap {
        client.bootstrap_request(Instant::now());
    } else {
        client.register(&lock(tree), Instant::now());
    }
}

async fn send(socket: &UdpSocket, datagram: &[u8], server: SocketAddr) {
    if let Err(e) = socket.send(datagram).await {
        // ICMP errors (server down) surface here; the engine's
        // retransmission and back-off handle it.
        warn!(%server, "LwM2M send failed: {e}");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    tree.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
