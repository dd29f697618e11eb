//! TR-143's throughput tests over HTTP (TR-181 DownloadDiagnostics and
//! UploadDiagnostics): one file fetched (GET) or sent (PUT of
//! TestFileLength bytes) over each of NumberOfConnections connections at
//! once, each step timed to the microsecond (TR-143 §4.1 and §4.2:
//! TCPOpenRequestTime, TCPOpenResponseTime, ROMTime, BOMTime, EOMTime),
//! the bytes at the IP layer read from the interface's counters.
//!
//! HTTP is hyper's; the connection is opened here, so that its opening is
//! timed and it takes the test's interface and DSCP.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dm_core::lock;
use dm_platform::linux::ping::{self, DiagnosticError, Family};
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;

/// How long a connection may stay silent before the test ends with
/// Error_Timeout.
const IDLE: Duration = Duration::from_secs(30);
/// The size of the chunks an upload sends.
const CHUNK: usize = 16 * 1024;

/// A test to run.
#[derive(Clone, Debug)]
pub struct Request {
    pub url: String,
    /// Bytes to PUT; `None` for a download.
    pub upload: Option<u64>,
    pub connections: u32,
    pub interface: Option<String>,
    pub family: Family,
    pub dscp: u8,
}

/// One connection's times (µs since the Unix epoch) and bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    pub tcp_open_request: i64,
    pub tcp_open_response: i64,
    pub rom: i64,
    pub bom: i64,
    pub eom: i64,
    /// The file's bytes received (download) or sent (upload).
    pub test_bytes: u64,
    /// The interface's counters between TCPOpenRequestTime and EOMTime.
    pub total_received: u64,
    pub total_sent: u64,
}

/// What a test measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub source: Option<IpAddr>,
    pub connections: Vec<Connection>,
    /// The interface's counters over the whole test.
    pub total_received: u64,
    pub total_sent: u64,
    /// While every connection was transferring (from the last BOMTime to
    /// the first EOMTime): its length in µs, the file's bytes moved then,
    /// and the interface's counters over it.
    pub full_loading: (u64, u64, u64, u64),
}

/// Why a test failed, as TR-181 names it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Diagnostic(#[from] DiagnosticError),
    #[error("cannot connect: {0}")]
    InitConnectionFailed(String),
    #[error("no HTTP response: {0}")]
    NoResponse(String),
    #[error("transfer failed: {0}")]
    TransferFailed(String),
    #[error("the server went silent")]
    Timeout,
}

impl Failure {
    /// The DiagnosticsState it ends the test with.
    pub fn state(&self) -> &'static str {
        match self {
            Failure::Diagnostic(DiagnosticError::CannotResolveHostName(_)) => {
                "Error_CannotResolveHostName"
            }
            Failure::Diagnostic(DiagnosticError::NoRouteToHost(_)) => "Error_NoRouteToHost",
            Failure::Diagnostic(DiagnosticError::Internal(_)) => "Error_Internal",
            Failure::Diagnostic(DiagnosticError::Other(_)) => "Error_Other",
            Failure::InitConnectionFailed(_) => "Error_InitConnectionFailed",
            Failure::NoResponse(_) => "Error_NoResponse",
            Failure::TransferFailed(_) => "Error_TransferFailed",
            Failure::Timeout => "Error_Timeout",
        }
    }
}

/// Wall-clock µs of an instant of the test.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    wall: i64,
}

impl Clock {
    fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Clock {
            base: Instant::now(),
            wall,
        }
    }

    fn now(&self) -> i64 {
        self.at(Instant::now())
    }

    fn at(&self, instant: Instant) -> i64 {
        let since = instant.saturating_duration_since(self.base).as_micros();
        self.wall
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// The interface's byte counters (received, sent), 0 when unknown.
fn counters(interface: Option<&str>) -> (u64, u64) {
    let read = |file: &str| {
        interface
            .and_then(|name| {
                std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{file}")).ok()
            })
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    };
    (read("rx_bytes"), read("tx_bytes"))
}

/// The host, port and path of an http:// URL.
fn parse(url: &str) -> Result<(String, u16, String, String), Failure> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Failure::Diagnostic(DiagnosticError::Other(format!("{url:?}: {e}"))))?;
    if uri.scheme_str() != Some("http") {
        return Err(Failure::Diagnostic(DiagnosticError::Other(format!(
            "{url:?}: not an http:// URL"
        ))));
    }
    let host = dm_rt::uri::host(&uri).to_owned();
    let port = dm_rt::uri::port(&uri)
        .map_err(|e| Failure::Diagnostic(DiagnosticError::Other(e.reason)))?
        .unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    Ok((host, port, path, authority))
}

/// Opens a connection to `address`, bound to the test's interface and
/// marked with its DSCP; returns it and the local address.
async fn connect(
    address: SocketAddr,
    request: &Request,
) -> Result<(tokio::net::TcpStream, Option<IpAddr>), Failure> {
    use socket2::{Domain, Protocol, Socket, Type};
    let internal = |what: &str, e: std::io::Error| {
        Failure::Diagnostic(DiagnosticError::Internal(format!("{what}: {e}")))
    };
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| internal("socket", e))?;
    if let Some(interface) = &request.interface {
        let source = ping::source_of(interface, address.is_ipv6()).ok_or_else(|| {
            Failure::Diagnostic(DiagnosticError::Other(format!(
                "{interface} has no address of {address}'s family"
            )))
        })?;
        // The device itself where the kernel lets us (root); the source
        // address always.
        let _ = socket.bind_device(Some(interface.as_bytes()));
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| internal("bind", e))?;
    }
    let tos = u32::from(request.dscp) << 2;
    if address.is_ipv6() {
        socket.set_tclass_v6(tos)
    } else {
        socket.set_tos_v4(tos)
    }
    .map_err(|e| internal("DSCP", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| internal("socket", e))?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    let stream = tokio::time::timeout(IDLE, socket.connect(address))
        .await
        .map_err(|_| Failure::InitConnectionFailed(format!("{address}: timed out")))?
        .map_err(|e| match e.raw_os_error() {
            Some(libc_unreachable) if is_unreachable(libc_unreachable) => {
                Failure::Diagnostic(DiagnosticError::NoRouteToHost(address.to_string()))
            }
            _ => Failure::InitConnectionFailed(format!("{address}: {e}")),
        })?;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok().map(|a| a.ip());
    Ok((stream, local))
}

/// ENETUNREACH, EHOSTUNREACH.
fn is_unreachable(errno: i32) -> bool {
    errno == 101 || errno == 113
}

/// An upload's body: `left` zero bytes in chunks; the first chunk taken
/// is the beginning of the transfer (BOMTime).
struct Zeros {
    left: u64,
    started: Arc<Mutex<Option<Instant>>>,
    cancel: Arc<AtomicBool>,
}

impl hyper::body::Body for Zeros {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.cancel.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(std::io::Error::other("canceled"))));
        }
        if this.left == 0 {
            return Poll::Ready(None);
        }
        lock(&this.started).get_or_insert_with(Instant::now);
        let size = usize::try_from(this.left).unwrap_or(CHUNK).min(CHUNK);
        this.left -= size as u64;
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..size])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// What one connection recorded, in instants.
struct Timed {
    connection: Connection,
    /// When each piece of the file moved, and its size (a download's
    /// chunks; an upload's one span).
    pieces: Vec<(Instant, u64)>,
    bom: Instant,
    eom: Instant,
}

async fn one(
    request: &Request,
    address: SocketAddr,
    target: (&str, &str),
    clock: Clock,
    interface: &Mutex<Option<String>>,
    source: &Mutex<Option<IpAddr>>,
    cancel: &Arc<AtomicBool>,
) -> Result<Timed, Failure> {
    let (path, authority) = target;
    let before = counters(lock(interface).as_deref());
    let open_request = clock.now();
    let (stream, local) = connect(address, request).await?;
    let open_response = clock.now();
    if let Some(local) = local {
        lock(source).get_or_insert(local);
        let mut interface = lock(interface);
        if interface.is_none() {
            *interface = request
                .interface
                .clone()
                .or_else(|| ping::interface_with(local));
        }
    }
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::InitConnectionFailed(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let started = Arc::new(Mutex::new(None));
    let (method, body) = match request.upload {
        Some(length) => (
            hyper::Method::PUT,
            Zeros {
                left: length,
                started: Arc::clone(&started),
                cancel: Arc::clone(cancel),
            },
        ),
        None => (
            hyper::Method::GET,
            Zeros {
                left: 0,
                started: Arc::clone(&started),
                cancel: Arc::clone(cancel),
            },
        ),
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    if let Some(length) = request.upload {
        builder = builder
            .header(hyper::header::CONTENT_LENGTH, length)
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
    }
    let http = builder
        .body(body)
        .map_err(|e| Failure::Diagnostic(DiagnosticError::Internal(e.to_string())))?;
    let rom = Instant::now();
    let response = tokio::time::timeout(IDLE, sender.send_request(http))
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|e| Failure::NoResponse(e.to_string()))?;
    let answered = Instant::now();
    let status = response.status();
    let mut pieces = Vec::new();
    let (bom, eom, test_bytes) = if let Some(length) = request.upload {
        if !status.is_success() {
            driver.abort();
            return Err(Failure::TransferFailed(format!(
                "the server answered {status}"
            )));
        }
        let bom = lock(&started).unwrap_or(answered);
        pieces.push((answered, length));
        (bom, answered, length)
    } else {
        if !status.is_success() {
            driver.abort();
            return Err(Failure::NoResponse(format!("the server answered {status}")));
        }
        // The response's first bytes came with its head: the beginning
        // of the transfer.
        let mut body = response.into_body();
        let mut received = 0u64;
        loop {
            if cancel.load(Ordering::Relaxed) {
                driver.abort();
                return Err(Failure::Diagnostic(DiagnosticError::Other(
                    "canceled".into(),
                )));
            }
            let frame = tokio::time::timeout(IDLE, body.frame())
                .await
                .map_err(|_| Failure::Timeout)?;
            match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        received += data.len() as u64;
                        pieces.push((Instant::now(), data.len() as u64));
                    }
                }
                Some(Err(e)) => {
                    driver.abort();
                    return Err(Failure::TransferFailed(e.to_string()));
                }
            }
        }
        (answered, Instant::now(), received)
    };
    let after = counters(lock(interface).as_deref());
    driver.abort();
    Ok(Timed {
        connection: Connection {
            tcp_open_request: open_request,
            tcp_open_response: open_response,
            rom: clock.at(rom),
            bom: clock.at(bom),
            eom: clock.at(eom),
            test_bytes,
            total_received: after.0.saturating_sub(before.0),
            total_sent: after.1.saturating_sub(before.1),
        },
        pieces,
        bom,
        eom,
    })
}

/// Runs the test; `cancel` stops it.
pub async fn run(request: Request, cancel: Arc<AtomicBool>) -> Result<Outcome, Failure> {
    let (host, port, path, authority) = parse(&request.url)?;
    let resolved = {
        let (host, family) = (host.clone(), request.family);
        tokio::task::spawn_blocking(move || ping::resolve(&host, family))
            .await
            .map_err(|e| Failure::Diagnostic(DiagnosticError::Internal(e.to_string())))??
    };
    let address = SocketAddr::new(resolved, port);
    let clock = Clock::new();
    let interface = Mutex::new(request.interface.clone());
    let source = Mutex::new(None);
    // The interface's counters over the whole test: read once the first
    // connection says which interface it is.
    let connections = request.connections.clamp(1, 4);
    let runs = (0..connections).map(|_| {
        one(
            &request,
            address,
            (&path, &authority),
            clock,
            &interface,
            &source,
            &cancel,
        )
    });
    let start_counters = counters(request.interface.as_deref());
    let results = futures_util::future::join_all(runs).await;
    let mut timed = Vec::new();
    for result in results {
        timed.push(result?);
    }
    let end_counters = counters(lock(&interface).as_deref());
    let (total_received, total_sent) = if request.interface.is_some() {
        (
            end_counters.0.saturating_sub(start_counters.0),
            end_counters.1.saturating_sub(start_counters.1),
        )
    } else {
        // The interface was known only once connected: the connections'
        // own windows, which began with the test.
        (
            timed
                .iter()
                .map(|t| t.connection.total_received)
                .max()
                .unwrap_or(0),
            timed
                .iter()
                .map(|t| t.connection.total_sent)
                .max()
                .unwrap_or(0),
        )
    };
    // Full loading: from the last connection's beginning to the first's
    // end.
    let from = timed.iter().map(|t| t.bom).max();
    let to = timed.iter().map(|t| t.eom).min();
    let full_loading = match (from, to) {
        (Some(from), Some(to)) if to > from => {
            let bytes: u64 = timed
                .iter()
                .flat_map(|t| &t.pieces)
                .filter(|(at, _)| *at > from && *at <= to)
                .map(|(_, n)| n)
                .sum();
            let period = u64::try_from((to - from).as_micros()).unwrap_or(u64::MAX);
            // The interface's counters over the period, in proportion to
            // the file's bytes moved then (the counters are not read at
            // those instants).
            let test: u64 = timed.iter().map(|t| t.connection.test_bytes).sum();
            let share = |total: u64| {
                if test == 0 {
                    0
                } else {
                    u64::try_from(u128::from(total) * u128::from(bytes) / u128::from(test))
                        .unwrap_or(u64::MAX)
                }
            };
            (period, bytes, share(total_received), share(total_sent))
        }
        _ => (0, 0, 0, 0),
    };
    let source = *lock(&source);
    Ok(Outcome {
        source,
        connections: timed.into_iter().map(|t| t.connection).collect(),
        total_received,
        total_sent,
        full_loading,
    })
}
