//! TR-143's UDP echo (Annex A.1): the CPE's server as UDPEchoConfig sets
//! it up, and the client of UDPEchoDiagnostics. Both speak UDP Echo Plus
//! (A.1.4) where the packet has room: after the client's 4-byte
//! TestGenSN, the server writes its TestRespSN, the packet's reception
//! and reply times (the low 32 bits of µs) and its TestRespReplyFailureCount.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dm_core::catalog::udp_echo_config as config;
use dm_core::{Change, InstanceId, Origin, Path, ResourceValue, Tree, Value, lock};
use dm_objects::udp_echo::COUNTERS;
use dm_platform::linux::ping::{self, DiagnosticError, Family};
use std::sync::Mutex;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The UDP Echo Plus header: TestGenSN, TestRespSN, TestRespRcvTimeStamp,
/// TestRespReplyTimeStamp, TestRespReplyFailureCount.
pub const PLUS_HEADER: usize = 20;

/// µs since the Unix epoch, now.
fn now_micros() -> i64 {
    dm_rt::clock::wall_micros()
}

fn word(packet: &[u8], at: usize) -> u32 {
    packet
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

fn put(packet: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = packet.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// The server's settings, as the tree has them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    interface: Option<String>,
    source: Option<IpAddr>,
    port: u16,
    plus: bool,
}

fn settings(tree: &Tree) -> Option<Settings> {
    let read = |r| match tree.read(Origin::Agent, &Path::resource(config::ID, InstanceId(0), r)) {
        Ok(ResourceValue::Single(v)) => Some(v),
        _ => None,
    };
    if read(config::ENABLE) != Some(Value::Boolean(true)) {
        return None;
    }
    let port = match read(config::UDP_PORT) {
        Some(Value::Unsigned(p)) => u16::try_from(p).ok().filter(|p| *p != 0)?,
        _ => return None,
    };
    let interface = match read(config::INTERFACE) {
        Some(Value::ObjectLink(link)) if link != dm_core::ObjectLink::NULL => {
            // An Interface that names none is not every interface: the
            // server stays off rather than listen on the WAN too.
            let Some(name) = crate::diagnostics::interface_name(tree, link) else {
                warn!("UDP echo server: its Interface names no network interface; not started");
                return None;
            };
            Some(name)
        }
        _ => None,
    };
    let source = match read(config::SOURCE_IP_ADDRESS) {
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(Settings {
        interface,
        source,
        port,
        plus: read(config::ECHO_PLUS_ENABLED) == Some(Value::Boolean(true)),
    })
}

/// The echo server: started, restarted and stopped as UDPEchoConfig
/// changes.
pub struct Server {
    tree: Arc<Mutex<Tree>>,
    running: Option<(Settings, JoinHandle<()>)>,
    dirty: bool,
}

impl Server {
    pub fn new(tree: Arc<Mutex<Tree>>) -> Server {
        Server {
            tree,
            running: None,
            dirty: true,
        }
    }

    pub fn observe(&mut self, change: &Change) {
        let object = change.path.object_id();
        // Its own settings; or the host's interfaces, when it is wanted
        // and not running (its Interface may have come up since).
        if object == config::ID
            || (self.running.is_none()
                && (object == dm_core::catalog::ip_interface::ID
                    || object == dm_core::catalog::ethernet::ID
                    || object == dm_core::catalog::ethernet_link::ID))
        {
            self.dirty = true;
        }
    }

    /// Looks at UDPEchoConfig again at the next [`Server::settle`] (the
    /// change stream lost changes).
    pub fn refresh(&mut self) {
        self.dirty = true;
    }

    /// Stops the server (the agent is stopping).
    pub async fn stop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Brings the server in line with UDPEchoConfig.
    pub async fn settle(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let wanted = settings(&lock(&self.tree));
        if self.running.as_ref().map(|(s, _)| s) == wanted.as_ref() {
            return;
        }
        let was_running = self.running.is_some();
        // The old socket is closed before the new one takes the port.
        self.stop().await;
        if was_running {
            info!("UDP echo server stopped");
        }
        let Some(settings) = wanted else {
            return;
        };
        if !was_running {
            COUNTERS.clear();
        }
        match bind(&settings) {
            Ok(socket) => {
                info!(
                    port = settings.port,
                    plus = settings.plus,
                    "UDP echo server listening"
                );
                let task = tokio::spawn(serve(socket, settings.clone()));
                self.running = Some((settings, task));
            }
            Err(e) => warn!(port = settings.port, "UDP echo server: {e}"),
        }
    }
}

/// The server's socket: both families on the port, on the interface
/// when one is named.
fn bind(settings: &Settings) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        .and_then(|s| {
            s.set_only_v6(false)?;
            s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), settings.port).into())?;
            Ok(s)
        })
        .or_else(|_| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::new([0, 0, 0, 0].into(), settings.port).into())?;
            Ok::<_, std::io::Error>(s)
        })?;
    if let Some(interface) = &settings.interface {
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// The address as IPv4 where it is one mapped into IPv6.
fn plain(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

async fn serve(socket: UdpSocket, settings: Settings) {
    let mut packet = vec![0u8; 65_536];
    let mut failures = 0u32;
    loop {
        let (size, from) = match socket.recv_from(&mut packet).await {
            Ok(got) => got,
            Err(e) => {
                warn!("UDP echo server: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // TR-181 SourceIPAddress: only that source is answered.
        if settings.source.is_some_and(|s| s != plain(from.ip())) {
            continue;
        }
        let received = now_micros();
        COUNTERS.received(size, received);
        let reply = &mut packet[..size];
        if settings.plus && size >= PLUS_HEADER {
            let responded = COUNTERS.packets_responded.load(Ordering::Relaxed);
            put(reply, 4, (responded + 1) as u32);
            put(reply, 8, received as u32);
            put(reply, 12, now_micros() as u32);
            put(reply, 16, failures);
        }
        match socket.send_to(reply, from).await {
            Ok(sent) => {
                COUNTERS.responded(sent);
            }
            Err(e) => {
                failures = failures.wrapping_add(1);
                // Said once, then every thousandth: a peer that cannot
                // be answered does not flood the log.
                if failures % 1000 == 1 {
                    warn!(%from, failures, "UDP echo reply: {e}");
                }
            }
        }
    }
}

/// A UDPEchoDiagnostics test.
#[derive(Clone, Debug)]
pub struct EchoRequest {
    pub host: String,
    pub port: u16,
    pub repetitions: u32,
    pub timeout: Duration,
    pub size: usize,
    pub dscp: u8,
    pub spacing: Duration,
    pub family: Family,
    pub interface: Option<String>,
}

/// One packet's fate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EchoPacket {
    pub success: bool,
    /// µs since the Unix epoch.
    pub sent: i64,
    pub received: i64,
    pub gen_sn: u32,
    /// The server's UDP Echo Plus fields (0 from a plain echo server).
    pub resp_sn: u32,
    pub rcv_timestamp: u32,
    pub reply_timestamp: u32,
    pub reply_failures: u32,
}

#[derive(Clone, Debug, Default)]
pub struct EchoOutcome {
    pub source: Option<IpAddr>,
    pub packets: Vec<EchoPacket>,
}

/// Runs the test: the packets one at a time, InterTransmissionTime
/// apart, each waited for up to Timeout.
pub async fn echo(
    request: EchoRequest,
    cancel: Arc<AtomicBool>,
) -> Result<EchoOutcome, DiagnosticError> {
    let address = {
        let (host, family) = (request.host.clone(), request.family);
        tokio::task::spawn_blocking(move || ping::resolve(&host, family))
            .await
            .map_err(|e| DiagnosticError::Internal(e.to_string()))??
    };
    if request.port == 0 {
        return Err(DiagnosticError::Other("no Port to send to".into()));
    }
    let target = SocketAddr::new(address, request.port);
    let internal =
        |what: &str, e: std::io::Error| DiagnosticError::Internal(format!("{what}: {e}"));
    let socket = crate::diagnostics::test_socket(
        target,
        socket2::Type::DGRAM,
        request.interface.as_deref(),
        request.dscp,
    )?;
    socket
        .connect(&target.into())
        .map_err(|e| match e.raw_os_error() {
            Some(101 | 113) => DiagnosticError::NoRouteToHost(address.to_string()),
            _ => internal("connect", e),
        })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| internal("socket", e))?;
    let socket = UdpSocket::from_std(socket.into()).map_err(|e| internal("socket", e))?;
    let source = socket.local_addr().ok().map(|a| a.ip());
    let size = request.size.clamp(4, 65_507);
    let mut outcome = EchoOutcome {
        source,
        packets: Vec::new(),
    };
    let mut reply = vec![0u8; 65_536];
    for n in 0..request.repetitions {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let started = tokio::time::Instant::now();
        let gen_sn = n + 1;
        let mut packet = vec![0u8; size];
        put(&mut packet, 0, gen_sn);
        let mut result = EchoPacket {
            gen_sn,
            sent: now_micros(),
            ..EchoPacket::default()
        };
        if let Err(e) = socket.send(&packet).await {
            warn!("UDP echo: {e}");
        } else {
            let deadline = started + request.timeout;
            // Replies to earlier packets (late ones) are passed over; a
            // peer that floods the socket does not hold the test past
            // the deadline.
            while tokio::time::Instant::now() < deadline
                && let Ok(Ok(got)) =
                    tokio::time::timeout_at(deadline, socket.recv(&mut reply)).await
            {
                if got >= 4 && word(&reply, 0) == gen_sn {
                    result.success = true;
                    result.received = now_micros();
                    if got >= PLUS_HEADER {
                        result.resp_sn = word(&reply, 4);
                        result.rcv_timestamp = word(&reply, 8);
                        result.reply_timestamp = word(&reply, 12);
                        result.reply_failures = word(&reply, 16);
                    }
                    break;
                }
            }
        }
        outcome.packets.push(result);
        if n + 1 < request.repetitions {
            tokio::time::sleep_until(started + request.spacing).await;
        }
    }
    Ok(outcome)
}
