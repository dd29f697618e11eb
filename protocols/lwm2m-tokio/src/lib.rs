//! The tokio driver of dmagent's LwM2M client: one UDP socket per server,
//! datagrams and timer expiries into the engine, datagrams out. All LwM2M
//! decisions are the engine's (`dm_lwm2m::client::Client`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dm_core::Tree;
use dm_lwm2m::client::{Client, ClientConfig, ClientEvent};
use dm_lwm2m::coap::Parameters;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// Where and as whom to register.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: SocketAddr,
    pub client: ClientConfig,
}

/// How long de-registration may take at shutdown.
const DEREGISTER_GRACE: Duration = Duration::from_secs(5);

/// Runs the client for one server until `shutdown` turns true, then
/// de-registers (LwM2M Core §6.2.3).
pub async fn run(
    tree: Arc<Mutex<Tree>>,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let bind: SocketAddr = if config.server.is_ipv6() {
        "[::]:0".parse().expect("literal address")
    } else {
        "0.0.0.0:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(config.server).await?;
    let changed = Arc::new(Notify::new());
    let changes = {
        let mut tree = lock(&tree);
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
    client.register(&lock(&tree), Instant::now());
    let mut buffer = vec![0u8; 64 * 1024];
    let mut stopping: Option<Instant> = None;
    loop {
        while let Some(datagram) = client.poll_transmit() {
            if let Err(e) = socket.send(&datagram).await {
                // ICMP errors (server down) surface here; the engine's
                // retransmission and back-off handle it.
                warn!(server = %config.server, "LwM2M send failed: {e}");
            }
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
                    warn!(server = %config.server, reason, "LwM2M registration failed")
                }
                ClientEvent::Deregistered => {
                    info!(server = %config.server, "LwM2M deregistered");
                    if stopping.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        if let Some(deadline) = stopping
            && (Instant::now() >= deadline || !client.is_registered())
        {
            return Ok(());
        }
        let deadline = {
            let tree = lock(&tree);
            client.poll_timeout(&tree)
        };
        let deadline = match (deadline, stopping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
                match received {
                    Ok(n) => client.handle_datagram(&mut lock(&tree), Instant::now(), &buffer[..n]),
                    Err(e) => warn!(server = %config.server, "LwM2M receive failed: {e}"),
                }
            }
            () = changed.notified() => {
                let now = Instant::now();
                let mut tree = lock(&tree);
                for change in changes.drain() {
                    client.handle_change(&mut tree, now, &change);
                }
            }
            () = sleep_until(deadline) => {
                client.handle_timeout(&mut lock(&tree), Instant::now());
            }
        }
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
