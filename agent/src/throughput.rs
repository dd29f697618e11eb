//! TR-143's throughput tests over HTTP (TR-181 DownloadDiagnostics and
//! UploadDiagnostics): one file fetched (GET) or sent (PUT of
//! TestFileLength bytes) over each of NumberOfConnections connections at
//! once, each step timed to the microsecond (TCPOpenRequestTime,
//! TCPOpenResponseTime, ROMTime, BOMTime, EOMTime).
//!
//! HTTP is hyper's; the connection is opened here, so that its opening is
//! timed and it takes the test's interface and DSCP, and every byte it
//! carries is counted as it passes (TR-181's TestBytes count the HTTP
//! headers too): the beginning and end of each transfer are its first
//! and last bytes, and the period of full loading (every connection
//! transferring) is sampled when it begins and ends. The interface's
//! counters are read at those instants, and only when the test names an
//! Interface (TR-181: otherwise they "cannot be determined and SHOULD be
//! 0").
//!
//! Bounded: a connection silent for [`IDLE`] or a test longer than
//! [`LONGEST`] ends with Error_Timeout; nothing is kept per packet.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dm_core::lock;
use dm_platform::linux::ping::{self, DiagnosticError, Family};
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a connection may stay silent before the test ends with
/// Error_Timeout.
pub const IDLE: Duration = Duration::from_secs(30);
/// The longest a whole test may take.
pub const LONGEST: Duration = Duration::from_secs(3600);
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
    /// The bytes of the HTTP transaction (headers included) received
    /// (download) or sent (upload).
    pub test_bytes: u64,
    /// The interface's counters from the test's first request to this
    /// connection's EOMTime.
    pub total_received: u64,
    pub total_sent: u64,
}

/// What a test measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub source: Option<IpAddr>,
    pub connections: Vec<Connection>,
    /// The interface's counters from the first request to the last
    /// EOMTime.
    pub total_received: u64,
    pub total_sent: u64,
    /// While every connection was transferring (from the last BOMTime to
    /// the first EOMTime): its length in µs, the test's bytes moved then,
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
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("FTP login refused: {0}")]
    LoginFailed(String),
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
            Failure::Timeout(_) => "Error_Timeout",
            Failure::LoginFailed(_) => "Error_LoginFailed",
        }
    }
}

/// Wall-clock µs of the test's instants.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    wall: i64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: dm_rt::clock::now(),
            wall: dm_rt::clock::wall_micros(),
        }
    }

    fn at(&self, instant: Instant) -> i64 {
        let since = instant.saturating_duration_since(self.base).as_micros();
        self.wall
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// The interface's byte counters (received, sent); none without an
/// interface.
fn counters(interface: Option<&str>) -> Option<(u64, u64)> {
    let interface = interface?;
    let read = |file: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{file}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    };
    Some((read("rx_bytes"), read("tx_bytes")))
}

fn delta(from: Option<(u64, u64)>, to: Option<(u64, u64)>) -> (u64, u64) {
    match (from, to) {
        (Some(a), Some(b)) => (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)),
        _ => (0, 0),
    }
}

/// An instant and what had moved by then.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    bytes: u64,
    counters: Option<(u64, u64)>,
}

/// What the connections share.
struct Shared {
    connections: u32,
    interface: Option<String>,
    /// The test's bytes moved so far, on every connection.
    bytes: AtomicU64,
    begun: AtomicU32,
    ended: AtomicU32,
    first_request: Mutex<Option<Mark>>,
    full_begin: Mutex<Option<Mark>>,
    full_end: Mutex<Option<Mark>>,
    last_end: Mutex<Option<Mark>>,
}

impl Shared {
    fn mark(&self, at: Instant) -> Mark {
        Mark {
            at,
            bytes: self.bytes.load(Ordering::Relaxed),
            counters: counters(self.interface.as_deref()),
        }
    }

    /// A connection sent its request (GET, PUT, RETR, STOR): the first
    /// one starts the window of the interface's counters. Read then, not
    /// at the first byte received: by the time the test reads that
    /// byte, the kernel has taken a window's worth of the answer.
    fn requested(&self, at: Instant) {
        if lock(&self.first_request).is_some() {
            return;
        }
        // Read off the lock (sysfs); two first requests at once keep the
        // one marked first.
        let mark = self.mark(at);
        lock(&self.first_request).get_or_insert(mark);
    }

    /// A connection's transfer began.
    fn begin(&self, at: Instant) {
        let begun = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        if begun == self.connections {
            *lock(&self.full_begin) = Some(self.mark(at));
        }
    }

    /// A connection's transfer ended.
    fn end(&self, at: Instant) {
        let ended = self.ended.fetch_add(1, Ordering::Relaxed) + 1;
        if ended == 1 {
            *lock(&self.full_end) = Some(self.mark(at));
        }
        if ended == self.connections {
            *lock(&self.last_end) = Some(self.mark(at));
        }
    }
}

/// One connection's own progress, written by its stream.
#[derive(Default)]
struct Progress {
    /// The test's bytes on this connection.
    bytes: AtomicU64,
    /// µs since the clock's base of the first and the latest byte moved
    /// (-1: none yet).
    first: AtomicI64,
    last: AtomicI64,
}

/// The connection's stream, counting the bytes of the test's direction as
/// they pass.
struct Counted {
    inner: tokio::net::TcpStream,
    upload: bool,
    base: Instant,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
}

impl Counted {
    fn moved(&self, n: usize) {
        record(&self.progress, &self.shared, self.base, n);
    }
}

/// `n` of the test's bytes moved on a connection now: its first begins
/// its transfer.
fn record(progress: &Progress, shared: &Shared, base: Instant, n: usize) {
    if n == 0 {
        return;
    }
    let now = dm_rt::clock::now();
    let micros = i64::try_from(now.saturating_duration_since(base).as_micros()).unwrap_or(i64::MAX);
    if progress
        .first
        .compare_exchange(-1, micros, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        shared.begin(now);
    }
    progress.last.store(micros, Ordering::Relaxed);
    progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
    shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
}

/// An FTP transfer's steps, for the test.
struct FtpMeter {
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    base: Instant,
    opened: Option<(Instant, Instant)>,
    local: Option<IpAddr>,
    command: Option<Instant>,
    finished: Option<Instant>,
}

impl dm_cwmp_tokio::ftp::Meter for FtpMeter {
    fn data_opened(&mut self, asked: Instant, opened: Instant, local: Option<IpAddr>) {
        self.opened = Some((asked, opened));
        self.local = local;
    }

    fn command(&mut self, at: Instant) {
        self.command = Some(at);
        self.shared.requested(at);
    }

    fn moved(&mut self, n: usize) {
        record(&self.progress, &self.shared, self.base, n);
    }

    fn finished(&mut self, at: Instant) {
        self.finished = Some(at);
    }
}

/// An FTP failure as TR-181 names it.
fn ftp_failure(e: dm_cwmp_tokio::http::HttpError) -> Failure {
    use dm_cwmp_tokio::http::HttpError;
    match e {
        HttpError::Connect(m) => Failure::InitConnectionFailed(m),
        HttpError::Timeout => Failure::Timeout("the server went silent"),
        HttpError::Unauthorized(m) => Failure::LoginFailed(m),
        other => Failure::TransferFailed(other.to_string()),
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.upload && polled.is_ready() {
            this.moved(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if this.upload
            && let Poll::Ready(Ok(n)) = polled
        {
            this.moved(n);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The host, port, path and authority of an http:// URL.
fn parse(url: &str) -> Result<(String, u16, String, String), Failure> {
    let other = |e: String| Failure::Diagnostic(DiagnosticError::Other(e));
    let uri: hyper::Uri = url.parse().map_err(|e| other(format!("{url:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "ftp")) {
        return Err(other(format!("{url:?}: not an http:// or ftp:// URL")));
    }
    let host = dm_rt::uri::host(&uri).to_owned();
    let port = dm_rt::uri::port(&uri)
        .map_err(|e| other(e.reason))?
        .unwrap_or(if uri.scheme_str() == Some("ftp") {
            21
        } else {
            80
        });
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    Ok((host, port, path, authority))
}

/// Opens a connection to `address`, bound to the test's interface and
/// marked with its DSCP.
async fn connect(address: SocketAddr, request: &Request) -> Result<tokio::net::TcpStream, Failure> {
    let internal = |what: &str, e: std::io::Error| {
        Failure::Diagnostic(DiagnosticError::Internal(format!("{what}: {e}")))
    };
    let socket = crate::diagnostics::test_socket(
        address,
        socket2::Type::STREAM,
        request.interface.as_deref(),
        request.dscp,
    )?;
    socket
        .set_nonblocking(true)
        .map_err(|e| internal("socket", e))?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    let stream = tokio::time::timeout(IDLE, socket.connect(address))
        .await
        .map_err(|_| Failure::InitConnectionFailed(format!("{address}: timed out")))?
        .map_err(|e| match e.raw_os_error() {
            // ENETUNREACH, EHOSTUNREACH.
            Some(101 | 113) => {
                Failure::Diagnostic(DiagnosticError::NoRouteToHost(address.to_string()))
            }
            _ => Failure::InitConnectionFailed(format!("{address}: {e}")),
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An upload's body: `left` zero bytes in chunks.
struct Zeros {
    left: u64,
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

/// `work`, given up when its connection has moved nothing for [`IDLE`]
/// or the test has run past `deadline`.
async fn watched<T>(
    work: impl Future<Output = T>,
    progress: &Progress,
    deadline: Instant,
) -> Result<T, Failure> {
    tokio::pin!(work);
    let mut last = (progress.last.load(Ordering::Relaxed), dm_rt::clock::now());
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                let now = dm_rt::clock::now();
                if now >= deadline {
                    return Err(Failure::Timeout("the test ran too long"));
                }
                let moved = progress.last.load(Ordering::Relaxed);
                if moved != last.0 {
                    last = (moved, now);
                } else if now.saturating_duration_since(last.1) >= IDLE {
                    return Err(Failure::Timeout("the server went silent"));
                }
            }
        }
    }
}

/// One connection's test.
async fn one(
    request: &Request,
    address: SocketAddr,
    target: (&str, &str),
    clock: Clock,
    shared: &Arc<Shared>,
    cancel: &Arc<AtomicBool>,
    deadline: Instant,
) -> Result<(Connection, Option<IpAddr>), Failure> {
    let (path, authority) = target;
    let open_request = dm_rt::clock::now();
    let stream = connect(address, request).await?;
    let open_response = dm_rt::clock::now();
    let local = stream.local_addr().ok().map(|a| a.ip());
    let progress = Arc::new(Progress {
        first: AtomicI64::new(-1),
        last: AtomicI64::new(-1),
        ..Progress::default()
    });
    let counted = Counted {
        inner: stream,
        upload: request.upload.is_some(),
        base: clock.base,
        progress: Arc::clone(&progress),
        shared: Arc::clone(shared),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(counted))
        .await
        .map_err(|e| Failure::InitConnectionFailed(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    // The connection's task goes with this test, however it ends.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _driver = Abort(driver);
    let (method, left) = match request.upload {
        Some(length) => (hyper::Method::PUT, length),
        None => (hyper::Method::GET, 0),
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
    let body = Zeros {
        left,
        cancel: Arc::clone(cancel),
    };
    let http = builder
        .body(body)
        .map_err(|e| Failure::Diagnostic(DiagnosticError::Internal(e.to_string())))?;
    let rom = dm_rt::clock::now();
    shared.requested(rom);
    let response = watched(sender.send_request(http), &progress, deadline)
        .await?
        .map_err(|e| Failure::NoResponse(e.to_string()))?;
    // An upload ends when the server says it has the file (its answer),
    // not when the last byte went into the kernel's buffer.
    let answered = dm_rt::clock::now();
    let status = response.status();
    if !status.is_success() {
        let failure = format!("the server answered {status}");
        return Err(if request.upload.is_some() {
            Failure::TransferFailed(failure)
        } else {
            Failure::NoResponse(failure)
        });
    }
    if request.upload.is_none() {
        let mut body = response.into_body();
        let read = async {
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Failure::Diagnostic(DiagnosticError::Other(
                        "canceled".into(),
                    )));
                }
                match body.frame().await {
                    None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(Failure::TransferFailed(e.to_string())),
                }
            }
        };
        watched(read, &progress, deadline).await??;
    }
    let instant =
        |micros: i64| clock.base + Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    let first = progress.first.load(Ordering::Relaxed);
    let last = progress.last.load(Ordering::Relaxed);
    let (bom, eom) = match (first < 0, request.upload.is_some()) {
        (true, _) => (rom, answered),
        (false, true) => (instant(first), answered),
        (false, false) => (instant(first), instant(last)),
    };
    let before = lock(&shared.first_request).and_then(|m| m.counters);
    shared.end(eom);
    let after = counters(shared.interface.as_deref());
    let (total_received, total_sent) = delta(before, after);
    Ok((
        Connection {
            tcp_open_request: clock.at(open_request),
            tcp_open_response: clock.at(open_response),
            rom: clock.at(rom),
            bom: clock.at(bom),
            eom: clock.at(eom),
            test_bytes: progress.bytes.load(Ordering::Relaxed),
            total_received,
            total_sent,
        },
        local,
    ))
}

/// One connection's test over FTP: the data connection's opening and
/// its bytes are the test's (TR-143 §4: for FTP the times are the data
/// connection's; ROMTime is when RETR or STOR is sent).
async fn one_ftp(
    request: &Request,
    clock: Clock,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Result<(Connection, Option<IpAddr>), Failure> {
    let progress = Arc::new(Progress {
        first: AtomicI64::new(-1),
        last: AtomicI64::new(-1),
        ..Progress::default()
    });
    let mut meter = FtpMeter {
        progress: Arc::clone(&progress),
        shared: Arc::clone(shared),
        base: clock.base,
        opened: None,
        local: None,
        command: None,
        finished: None,
    };
    // Both connections as the test's: its Interface, its DSCP, its
    // family (ProtocolVersion).
    let (interface, dscp, family) = (request.interface.clone(), request.dscp, request.family);
    let sockets: dm_cwmp_tokio::ftp::Sockets = Arc::new(move |address: SocketAddr| {
        let wanted = match family {
            Family::Any => true,
            Family::V4 => address.is_ipv4(),
            Family::V6 => address.is_ipv6(),
        };
        if !wanted {
            return Err(std::io::Error::other("not of the test's ProtocolVersion"));
        }
        let socket = crate::diagnostics::test_socket(
            address,
            socket2::Type::STREAM,
            interface.as_deref(),
            dscp,
        )
        .map_err(std::io::Error::other)?;
        socket.set_nonblocking(true)?;
        Ok(tokio::net::TcpSocket::from_std_stream(socket.into()))
    });
    let transfer =
        dm_cwmp_tokio::ftp::measure(&request.url, request.upload, IDLE, sockets, &mut meter);
    watched(transfer, &progress, deadline)
        .await?
        .map_err(ftp_failure)?;
    let start = meter.command.unwrap_or(clock.base);
    let (asked, opened) = meter.opened.unwrap_or((start, start));
    let instant =
        |micros: i64| clock.base + Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    let first = progress.first.load(Ordering::Relaxed);
    let finished = meter.finished.unwrap_or(start);
    let (bom, eom) = match (first < 0, request.upload.is_some()) {
        (true, _) => (start, finished),
        // An upload ends with the server's 226: it has the file.
        (false, true) => (instant(first), finished),
        (false, false) => (
            instant(first),
            instant(progress.last.load(Ordering::Relaxed)),
        ),
    };
    let before = lock(&shared.first_request).and_then(|m| m.counters);
    shared.end(eom);
    let (total_received, total_sent) = delta(before, counters(shared.interface.as_deref()));
    Ok((
        Connection {
            tcp_open_request: clock.at(asked),
            tcp_open_response: clock.at(opened),
            rom: clock.at(start),
            bom: clock.at(bom),
            eom: clock.at(eom),
            test_bytes: progress.bytes.load(Ordering::Relaxed),
            total_received,
            total_sent,
        },
        meter.local,
    ))
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
    let deadline = clock.base + LONGEST;
    let connections = request.connections.clamp(1, 4);
    let shared = Arc::new(Shared {
        connections,
        interface: request.interface.clone(),
        bytes: AtomicU64::new(0),
        begun: AtomicU32::new(0),
        ended: AtomicU32::new(0),
        first_request: Mutex::new(None),
        full_begin: Mutex::new(None),
        full_end: Mutex::new(None),
        last_end: Mutex::new(None),
    });
    let ftp = request
        .url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("ftp://"));
    let results = if ftp {
        let runs = (0..connections).map(|_| one_ftp(&request, clock, &shared, deadline));
        futures_util::future::try_join_all(runs).await?
    } else {
        let runs = (0..connections).map(|_| {
            one(
                &request,
                address,
                (&path, &authority),
                clock,
                &shared,
                &cancel,
                deadline,
            )
        });
        // The first connection to fail ends the test (the others are
        // dropped, their connections with them).
        futures_util::future::try_join_all(runs).await?
    };
    let mut measured = Vec::new();
    let mut source = None;
    for (connection, local) in results {
        source = source.or(local);
        measured.push(connection);
    }
    let first_request = *lock(&shared.first_request);
    let last_end = *lock(&shared.last_end);
    let (total_received, total_sent) = delta(
        first_request.and_then(|m| m.counters),
        last_end.and_then(|m| m.counters),
    );
    let full_loading = match (*lock(&shared.full_begin), *lock(&shared.full_end)) {
        (Some(from), Some(to)) if to.at > from.at => {
            let (received, sent) = delta(from.counters, to.counters);
            let period = u64::try_from(to.at.saturating_duration_since(from.at).as_micros())
                .unwrap_or(u64::MAX);
            (period, to.bytes.saturating_sub(from.bytes), received, sent)
        }
        _ => (0, 0, 0, 0),
    };
    Ok(Outcome {
        source,
        connections: measured,
        total_received,
        total_sent,
        full_loading,
    })
}
