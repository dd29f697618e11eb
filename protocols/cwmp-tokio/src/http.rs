//! The HTTP side of one CWMP session: POSTs on one kept-alive connection,
//! session cookies, and Basic or Digest authentication (TR-069 §3.4).

use std::time::Duration;

use dm_cwmp::soap::{Body, Cursor};
use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

use tokio::net::TcpStream;

/// The largest ACS response body read: a hostile or broken ACS cannot
/// exhaust the device's memory. A GetParameterValues of a whole large
/// tree is well under this.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// Redirects followed in one session (TR-069 §3.4.5 allows them; a loop
/// ends here).
const MAX_REDIRECTS: u32 = 5;

/// Why an HTTP exchange (a session's POST, a download, an upload), or an
/// FTP transfer (`crate::ftp`), failed.
#[derive(Debug)]
pub enum HttpError {
    Connect(String),
    Timeout,
    /// The ACS refused our credentials.
    Unauthorized(String),
    Protocol(String),
    /// A download answered with this status (404, 403, ...).
    Status(u16),
    /// Where the downloaded bytes go refused them (disk full, too large).
    Sink(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Timeout => f.write_str("timed out"),
            HttpError::Unauthorized(e) => write!(f, "authentication failed: {e}"),
            HttpError::Protocol(e) => write!(f, "protocol error: {e}"),
            HttpError::Status(code) => write!(f, "the server answered {code}"),
            HttpError::Sink(e) => write!(f, "{e}"),
        }
    }
}

/// A request body written out piece by piece from a shared [`Body`] (a
/// whole-tree GetParameterNamesResponse is never one string); a request
/// sent again after a challenge or a redirect starts it over.
pub struct Streamed {
    body: Payload,
    cursor: Cursor,
    sent: usize,
}

/// What a request carries: a SOAP message written out piece by piece, or
/// bytes made whole beforehand (a bulk data report, gzipped or not).
#[derive(Clone)]
enum Payload {
    Soap(Arc<Body>),
    Bytes(Bytes),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::Soap(body) => body.len(),
            Payload::Bytes(bytes) => bytes.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Streamed {
    fn new(body: &Payload) -> Streamed {
        Streamed {
            body: body.clone(),
            cursor: Cursor::default(),
            sent: 0,
        }
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let chunk = match &this.body {
            Payload::Soap(body) => body.next_chunk(&mut this.cursor).map(Bytes::from),
            Payload::Bytes(bytes) => (this.sent < bytes.len()).then(|| bytes.clone()),
        };
        std::task::Poll::Ready(chunk.map(|chunk| {
            this.sent += chunk.len();
            Ok(hyper::body::Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.body.len()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact((self.body.len() - self.sent.min(self.body.len())) as u64)
    }
}

/// Credentials for the ACS.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// One session's HTTP state: dropped at the end of the session, which
/// closes the connection and forgets the cookies.
pub struct HttpSession {
    uri: Uri,
    tls: crate::tls::Trust,
    credentials: Credentials,
    timeout: Duration,
    sender: Option<SendRequest<Streamed>>,
    connection: Option<tokio::task::JoinHandle<()>>,
    cookies: Vec<(String, String)>,
    auth: Option<http_auth::PasswordClient>,
    /// POST for a session; PUT (or POST) for an Upload.
    method: hyper::Method,
    /// The body is a file (an Upload), not SOAP.
    file_body: bool,
    /// A download resumed from this byte (0: from the start).
    range_from: u64,
    /// The ETag or Last-Modified of the download's first response.
    validator: Option<String>,
    /// Refuse a Basic challenge on a plain http:// URL (the ACS's session;
    /// file servers named in a Download are left as the ACS chose them).
    refuse_basic_over_http: bool,
    /// The headers of a [`HttpSession::send`] (its own Content-Type
    /// among them).
    headers: hyper::HeaderMap,
}

impl HttpSession {
    /// `tls` is needed for an https:// URI.
    pub fn new(
        uri: Uri,
        credentials: Credentials,
        timeout: Duration,
        tls: impl Into<crate::tls::Trust>,
    ) -> HttpSession {
        HttpSession {
            uri,
            tls: tls.into(),
            credentials,
            timeout,
            sender: None,
            connection: None,
            cookies: Vec::new(),
            auth: None,
            method: hyper::Method::POST,
            range_from: 0,
            file_body: false,
            validator: None,
            refuse_basic_over_http: false,
            headers: hyper::HeaderMap::new(),
        }
    }

    /// Whether a Basic challenge over plain HTTP is refused rather than
    /// answered with the password in base64 (TR-069 §3.4.4 recommends
    /// Basic only over TLS).
    pub fn refuse_basic_over_http(&mut self, refuse: bool) {
        self.refuse_basic_over_http = refuse;
    }

    /// POSTs `body` (empty for the empty POST) and returns the final
    /// status and body, answering one authentication challenge. The body
    /// is written out piece by piece as the connection takes it.
    pub async fn post(&mut self, body: &Arc<Body>) -> Result<(u16, Vec<u8>), HttpError> {
        self.post_payload(&Payload::Soap(Arc::clone(body))).await
    }

    async fn post_payload(&mut self, body: &Payload) -> Result<(u16, Vec<u8>), HttpError> {
        tokio::time::timeout(self.timeout, self.post_inner(body))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    /// A message other than SOAP (a bulk data report, TR-181 BulkData's
    /// HTTP transport): `body` by `method` with `headers` (its
    /// Content-Type among them), with the same authentication, redirects
    /// and time limit as a session's POSTs; returns the final status.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        headers: hyper::HeaderMap,
        body: Bytes,
    ) -> Result<u16, HttpError> {
        self.method = method;
        self.headers = headers;
        let result = self.post_payload(&Payload::Bytes(body)).await;
        self.method = hyper::Method::POST;
        self.headers.clear();
        result.map(|(status, _)| status)
    }

    /// PUTs `body` (an Upload, TR-069 §A.4.1.5) with the same
    /// authentication and redirects as a session's POSTs; returns the
    /// final status.
    pub async fn put(&mut self, body: &Arc<Body>) -> Result<u16, HttpError> {
        self.method = hyper::Method::PUT;
        let result = self.post(body).await.map(|(status, _)| status);
        self.method = hyper::Method::POST;
        result
    }

    /// A file upload (TR-069 §A.4.1.5): PUT, which TR-069 names for
    /// HTTP; a server that does not take PUT (405 Method Not Allowed, 501
    /// Not Implemented) gets the same body by POST, as file servers that
    /// only accept form-less POST uploads want. Returns the final status.
    pub async fn upload(&mut self, body: String) -> Result<u16, HttpError> {
        self.file_body = true;
        let body = Arc::new(Body::from(body));
        let result = match self.put(&body).await {
            Ok(405 | 501) => self.post(&body).await.map(|(status, _)| status),
            other => other,
        };
        self.file_body = false;
        result
    }

    async fn post_inner(&mut self, body: &Payload) -> Result<(u16, Vec<u8>), HttpError> {
        let mut challenged = false;
        let mut renewed = false;
        let mut redirects = 0;
        loop {
            let (status, headers, text) = self.exchange(body).await?;
            for value in headers.get_all(SET_COOKIE) {
                if let Ok(value) = value.to_str() {
                    self.store_cookie(value);
                }
            }
            if matches!(status.as_u16(), 301 | 302 | 307 | 308) {
                // TR-069 §3.4.5: the ACS may redirect the session; the
                // new URL holds for the rest of this session only (the
                // session owns this HttpSession and drops it at the end).
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(HttpError::Protocol("too many redirects".into()));
                }
                let location = headers
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| HttpError::Protocol(format!("{status} with no Location")))?;
                self.uri = redirect_target(&self.uri, location)?;
                self.sender = None;
                self.connection = None;
                self.cookies.clear();
                self.auth = None;
                challenged = false;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                let challenge = headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ");
                // RFC 7616 §3.3: stale=true means our nonce expired, not
                // our password: answer the new nonce, once.
                let stale = challenge.to_ascii_lowercase().contains("stale=true")
                    || challenge.to_ascii_lowercase().contains("stale=\"true\"");
                if stale && challenged && !renewed {
                    renewed = true;
                    challenged = false;
                }
                if challenged || self.credentials.username.is_empty() {
                    return Err(HttpError::Unauthorized(format!("{status}")));
                }
                let client = http_auth::PasswordClient::builder()
                    .challenges(&challenge)
                    .build()
                    .map_err(|e| {
                        HttpError::Unauthorized(format!("unusable challenge {challenge:?}: {e}"))
                    })?;
                if self.refuse_basic_over_http
                    && matches!(client, http_auth::PasswordClient::Basic(_))
                    && self.uri.scheme_str() != Some("https")
                {
                    return Err(HttpError::Unauthorized(
                        "the ACS asks for Basic authentication over plain HTTP, which would \
                         send the password readable; not answered (use an https:// ACS URL, \
                         or set [cwmp] allow_basic_over_http = true)"
                            .into(),
                    ));
                }
                self.auth = Some(client);
                challenged = true;
                continue;
            }
            return Ok((status.as_u16(), text));
        }
    }

    async fn exchange(
        &mut self,
        body: &Payload,
    ) -> Result<(StatusCode, hyper::HeaderMap, Vec<u8>), HttpError> {
        // A kept-alive connection the ACS closed is reopened once, but
        // only when the request was never written: a POST the ACS may
        // have received is not sent twice.
        for attempt in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.connect().await?;
            }
            let request = self.request(body)?;
            let Some(sender) = self.sender.as_mut() else {
                return Err(HttpError::Protocol("no connection".into()));
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let (parts, incoming) = response.into_parts();
                    let bytes = http_body_util::Limited::new(incoming, MAX_RESPONSE_BODY)
                        .collect()
                        .await
                        .map_err(|e| HttpError::Protocol(format!("response body: {e}")))?
                        .to_bytes();
                    // The bytes as they came: the engine refuses what is
                    // not UTF-8 rather than guess (TR-069 §3.4.1).
                    return Ok((status, parts.headers, Vec::from(bytes)));
                }
                Err(mut e) => {
                    if attempt == 0 && e.take_message().is_some() {
                        self.sender = None;
                        continue;
                    }
                    return Err(HttpError::Protocol(e.into_error().to_string()));
                }
            }
        }
        Err(HttpError::Protocol("connection closed twice".into()))
    }

    async fn connect(&mut self) -> Result<(), HttpError> {
        let secure = match self.uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(HttpError::Connect(format!(
                    "{}: not an http(s) URL",
                    self.uri
                )));
            }
        };
        let host = dm_rt::uri::host(&self.uri).to_owned();
        if host.is_empty() {
            return Err(HttpError::Connect("no host".into()));
        }
        let port = dm_rt::uri::port(&self.uri)
            .map_err(|e| HttpError::Connect(e.reason))?
            .unwrap_or(if secure { 443 } else { 80 });
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(format!("{host}:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, task) = if secure {
            let config = self.tls.config().map_err(HttpError::Connect)?;
            let tls = crate::tls::connect(config, &host, stream)
                .await
                .map_err(|e| HttpError::Connect(format!("TLS with {host}:{port}: {e}")))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| HttpError::Connect(e.to_string()))?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            (sender, task)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| HttpError::Connect(e.to_string()))?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            (sender, task)
        };
        self.connection = Some(task);
        self.sender = Some(sender);
        Ok(())
    }

    /// Ends the session's connection and waits until it is closed, so
    /// that an ACS that ties session state to the TCP connection (acsrs,
    /// GenieACS) sees the session over before the agent reports it over.
    pub async fn close(mut self) {
        self.sender = None;
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }

    fn request(&mut self, body: &Payload) -> Result<Request<Streamed>, HttpError> {
        self.request_with(self.method.clone(), body)
    }

    fn request_with(
        &mut self,
        method: hyper::Method,
        body: &Payload,
    ) -> Result<Request<Streamed>, HttpError> {
        let range = self.range_from;
        let path = self
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let authority = self
            .uri
            .authority()
            .map_or(String::new(), |a| a.to_string());
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path.as_str())
            .header(HOST, authority);
        if !self.headers.is_empty() {
            for (name, value) in &self.headers {
                builder = builder.header(name, value);
            }
        } else if method == hyper::Method::PUT || self.file_body {
            builder = builder.header(CONTENT_TYPE, "text/plain; charset=\"utf-8\"");
        } else if !body.is_empty() {
            // TR-069 §3.4.1: SOAP messages as text/xml; the empty POST
            // carries no body and no content type.
            builder = builder
                .header(CONTENT_TYPE, "text/xml; charset=\"utf-8\"")
                .header("SOAPAction", "");
        }
        if range > 0 {
            builder = builder.header(hyper::header::RANGE, format!("bytes={range}-"));
            if let Some(validator) = &self.validator {
                builder = builder.header(hyper::header::IF_RANGE, validator.as_str());
            }
        }
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header(COOKIE, cookie);
        }
        if let Some(auth) = self.auth.as_mut() {
            // No body is passed, so Digest uses qop=auth even when the ACS
            // also offers auth-int.
            let value = auth
                .respond(&http_auth::PasswordParams {
                    username: &self.credentials.username,
                    password: &self.credentials.password,
                    uri: &path,
                    method: method.as_str(),
                    body: None,
                })
                .map_err(HttpError::Unauthorized)?;
            builder = builder.header(AUTHORIZATION, value);
        }
        // The exact length up front: Content-Length, never chunked
        // transfer coding, which some ACSs do not take in a request (the
        // empty POST says 0, TR-069 §3.7.2.4; a GET says nothing).
        if method != hyper::Method::GET {
            builder = builder.header(hyper::header::CONTENT_LENGTH, body.len());
        }
        builder
            .body(Streamed::new(body))
            .map_err(|e| HttpError::Protocol(e.to_string()))
    }

    /// GETs the URI and hands the body to `sink` chunk by chunk, as it
    /// arrives (a firmware image is never whole in memory). Answers one
    /// Basic/Digest challenge, follows redirects; `idle` bounds the wait
    /// for each chunk, not the whole transfer. Returns the bytes received.
    pub async fn download(
        &mut self,
        idle: Duration,
        sink: &mut (dyn FnMut(&[u8]) -> Result<(), String> + Send),
    ) -> Result<u64, HttpError> {
        self.download_to(idle, 0, &mut ClosureSink(sink)).await
    }

    /// [`HttpSession::download`] from byte `offset` on (`Range: bytes=N-`,
    /// RFC 9110 §14.2) into a [`DownloadSink`]: a 206 continues where the
    /// sink is; a 200 (the server ignores ranges) makes the sink start
    /// over. Returns the bytes received in this call.
    pub async fn download_to(
        &mut self,
        idle: Duration,
        offset: u64,
        sink: &mut dyn DownloadSink,
    ) -> Result<u64, HttpError> {
        self.range_from = offset;
        let result = self.download_inner(idle, offset, sink).await;
        self.range_from = 0;
        if result.is_err() {
            // A body cut short leaves the connection unusable.
            self.sender = None;
            self.connection = None;
        }
        result
    }

    async fn download_inner(
        &mut self,
        idle: Duration,
        offset: u64,
        sink: &mut dyn DownloadSink,
    ) -> Result<u64, HttpError> {
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.connect().await?;
            }
            let request = self.request_with(hyper::Method::GET, &Payload::Bytes(Bytes::new()))?;
            let Some(sender) = self.sender.as_mut() else {
                return Err(HttpError::Protocol("no connection".into()));
            };
            let response = tokio::time::timeout(idle, sender.send_request(request))
                .await
                .map_err(|_| HttpError::Timeout)?
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 307 | 308) {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(HttpError::Protocol("too many redirects".into()));
                }
                let location = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| HttpError::Protocol(format!("{status} with no Location")))?
                    .to_owned();
                self.uri = redirect_target(&self.uri, &location)?;
                self.sender = None;
                self.connection = None;
                self.auth = None;
                challenged = false;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && !challenged
                && !self.credentials.username.is_empty()
            {
                let challenge = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.auth = Some(
                    http_auth::PasswordClient::builder()
                        .challenges(&challenge)
                        .build()
                        .map_err(|e| {
                            HttpError::Unauthorized(format!(
                                "unusable challenge {challenge:?}: {e}"
                            ))
                        })?,
                );
                challenged = true;
                // Read the 401's body so the connection can be reused.
                let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
                    .collect()
                    .await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(HttpError::Unauthorized(status.to_string()));
            }
            if !status.is_success() {
                return Err(HttpError::Status(status.as_u16()));
            }
            let header = |name: hyper::header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let length = header(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
            // Where this body must end: a 206 that stops short of the whole
            // is a cut the caller resumes, never a complete image.
            let mut must_reach = None;
            if status == StatusCode::PARTIAL_CONTENT && offset > 0 {
                // RFC 9110 §14.4: "bytes first-last/complete". Another
                // start (a cache's own range) would splice the image.
                let range = header(hyper::header::CONTENT_RANGE).unwrap_or_default();
                let (first, last, complete) = parse_content_range(&range).ok_or_else(|| {
                    HttpError::Protocol(format!("206 with Content-Range {range:?}"))
                })?;
                if first != offset {
                    return Err(HttpError::Protocol(format!(
                        "206 from byte {first}, asked from {offset}"
                    )));
                }
                sink.length(complete);
                must_reach = Some(complete.unwrap_or(last.saturating_add(1)));
            } else {
                if offset > 0 {
                    sink.restart().map_err(|e| HttpError::Sink(e.to_string()))?;
                }
                // The validator a resume sends back (If-Range), so that a
                // file replaced meanwhile is sent whole, not spliced.
                self.validator =
                    header(hyper::header::ETAG).or_else(|| header(hyper::header::LAST_MODIFIED));
                sink.length(length);
            }
            let start = if must_reach.is_some() { offset } else { 0 };
            let mut body = response.into_body();
            let mut total = 0u64;
            loop {
                let frame = tokio::time::timeout(idle, body.frame())
                    .await
                    .map_err(|_| HttpError::Timeout)?;
                let Some(frame) = frame else {
                    if let Some(end) = must_reach
                        && start.saturating_add(total) < end
                    {
                        return Err(HttpError::Protocol(format!(
                            "the server sent bytes up to {} of {end}",
                            start.saturating_add(total)
                        )));
                    }
                    return Ok(total);
                };
                let frame = frame.map_err(|e| HttpError::Protocol(e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    sink.write(data)
                        .map_err(|e| HttpError::Sink(e.to_string()))?;
                    total = total.saturating_add(data.len() as u64);
                }
            }
        }
    }
}

/// `bytes FIRST-LAST/COMPLETE` (COMPLETE may be `*`).
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes ")?;
    let (range, complete) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    let complete = match complete.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    (first <= last && complete.is_none_or(|c| last < c)).then_some((first, last, complete))
}

/// Why a sink refused bytes (a full disk, an image over its limit).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where a download goes.
pub trait DownloadSink: Send {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError>;
    /// The server sends the whole body again (it ignored the Range).
    fn restart(&mut self) -> Result<(), SinkError> {
        Err("the server cannot resume".into())
    }
    /// The size of the whole body, when the server says it.
    fn length(&mut self, _total: Option<u64>) {}
}

struct ClosureSink<'a>(&'a mut (dyn FnMut(&[u8]) -> Result<(), String> + Send));

impl DownloadSink for ClosureSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        (self.0)(bytes).map_err(Into::into)
    }
}

impl HttpSession {
    /// Keeps `name=value` of a Set-Cookie; attributes (Path, Expires...)
    /// do not matter within one session.
    fn store_cookie(&mut self, header: &str) {
        let Some((name, value)) = header.split(';').next().and_then(|kv| kv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        match self.cookies.iter_mut().find(|(k, _)| *k == name) {
            Some(entry) => entry.1 = value,
            None => self.cookies.push((name, value)),
        }
    }
}

/// The URL a redirect's Location names, absolute or relative to `base`.
fn redirect_target(base: &Uri, location: &str) -> Result<Uri, HttpError> {
    let bad =
        |e: &dyn std::fmt::Display| HttpError::Protocol(format!("redirect to {location:?}: {e}"));
    let target: Uri = location.parse().map_err(|e| bad(&e))?;
    if target.scheme().is_some() {
        return match target.scheme_str() {
            Some("http" | "https") => Ok(target),
            _ => Err(bad(&"not an http(s) URL")),
        };
    }
    let mut parts = target.into_parts();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    Uri::from_parts(parts).map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_or_are_refused() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, 199, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, 9, None)));
        for bad in [
            "",
            "bytes 5-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes x-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn redirect_targets_resolve() {
        let base: Uri = "http://acs.example:7547/cwmp".parse().unwrap();
        assert_eq!(
            redirect_target(&base, "https://other:443/x")
                .unwrap()
                .to_string(),
            "https://other:443/x"
        );
        assert_eq!(
            redirect_target(&base, "/elsewhere?a=1")
                .unwrap()
                .to_string(),
            "http://acs.example:7547/elsewhere?a=1"
        );
        assert!(redirect_target(&base, "ftp://x/").is_err());
    }
}
