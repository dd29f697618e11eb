//! USP over WebSocket (TR-369 §WebSocket binding), the agent as the
//! client (R-WS.5): it opens one session to the controller's URL with
//! the `v1.usp` subprotocol and its endpoint ID in the query (R-WS.9,
//! R-WS.10, R-WS.10b), sends the WebSocket connect record (R-MTP.6),
//! carries records in binary messages (R-WS.14), pings at the keep-alive
//! interval (R-WS.17, R-WS.18), and opens it again after the retry wait
//! of R-WS.19 when it ends. wss:// is the agent's own rustls stream
//! under the session (R-WS.22: certificates, as for HTTPS to the ACS).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};
use tracing::{info, warn};

use super::{MAX_RECORD, Mtp, Received, Shared};

/// R-WS.9: the subprotocol of USP records in protocol buffers.
const SUBPROTOCOL: &str = "v1.usp";
/// The longest a session's opening (TCP, TLS, WebSocket) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The session as the serving task sees it.
pub(super) struct Link {
    outgoing: tokio::sync::mpsc::Sender<Vec<u8>>,
    online: AtomicBool,
}

impl Mtp for Link {
    fn send(&self, _reply_to: Option<&str>, record: Vec<u8>) {
        if !self.online.load(Ordering::Relaxed) {
            warn!("USP: no WebSocket session; a record is dropped");
            return;
        }
        if self.outgoing.try_send(record).is_err() {
            warn!("USP: the WebSocket session does not keep up; a record is dropped");
        }
    }

    fn fits(&self, size: usize) -> bool {
        size <= MAX_RECORD as usize
    }
}

/// The session's side.
pub(super) struct Connection {
    link: Arc<Link>,
    outgoing: tokio::sync::mpsc::Receiver<Vec<u8>>,
    url: String,
    keep_alive: Duration,
    /// wss://: the agent's rustls configuration (its CAs, its
    /// certificate when the controller asks), as for HTTPS to the ACS.
    tls: Option<Arc<dm_cwmp_tokio::tls::ClientConfig>>,
}

/// What a session runs on: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Connection {
    /// The session's settings; an error when its TLS settings cannot be
    /// used.
    pub(super) fn new(
        url: &str,
        config: &crate::config::Usp,
    ) -> Result<(Arc<Link>, Connection), String> {
        let (endpoint_id, keep_alive) = (&config.endpoint_id, config.keep_alive);
        let tls = if url.starts_with("wss://") {
            Some(dm_cwmp_tokio::tls::client_config(&config.tls).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let link = Arc::new(Link {
            outgoing: tx,
            online: AtomicBool::new(false),
        });
        // R-WS.10b, R-WS.10c: `eid`, the endpoint ID percent-encoded
        // (its `%` too), in the query.
        let eid =
            percent_encoding::utf8_percent_encode(endpoint_id, percent_encoding::NON_ALPHANUMERIC);
        let separator = if url.contains('?') { '&' } else { '?' };
        let connection = Connection {
            link: Arc::clone(&link),
            outgoing: rx,
            url: format!("{url}{separator}eid={eid}"),
            keep_alive,
            tls,
        };
        Ok((link, connection))
    }

    /// Runs until `stop` says so.
    pub(super) async fn run(
        mut self,
        mut shared: Shared,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        info!(url = %self.url, endpoint = %shared.agent.endpoint_id(), "USP over WebSocket starting");
        let mut failures = 0u32;
        loop {
            // A controller that takes the TCP connection but stalls the
            // TLS or WebSocket handshake is given up on, then retried.
            let session = tokio::select! {
                session = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.open()) => {
                    session.unwrap_or_else(|_| Err(format!("no handshake in {HANDSHAKE_TIMEOUT:?}")))
                }
                _ = stop.changed() => return,
            };
            match session {
                Ok(mut ws) => {
                    info!(url = %self.url, "WebSocket session to the USP controller open");
                    let stopped = self.serve(&mut ws, &mut shared, &mut stop).await;
                    self.link.online.store(false, Ordering::Relaxed);
                    shared.status(false, None);
                    if stopped {
                        return;
                    }
                    // R-WS.20: a session was open: the count starts again.
                    failures = 1;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn!("USP: WebSocket session: {e}");
                }
            }
            let wait = super::retry_wait(failures);
            warn!("USP: opening the WebSocket session again in {wait:?}");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The handshake, refused when the controller does not answer with
    /// the USP subprotocol (R-WS.12).
    async fn open(&self) -> Result<Socket, String> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
        );
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_RECORD as usize))
            .max_frame_size(Some(MAX_RECORD as usize));
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let (host, port) = dm_rt::uri::host_port(&self.url, default_port).map_err(|e| e.reason)?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let stream = dm_cwmp_tokio::tls::connect(Arc::clone(tls), &host, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
                Box::new(stream)
            }
        };
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| e.to_string())?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if protocol != Some(SUBPROTOCOL) {
            return Err(format!(
                "the controller answered subprotocol {protocol:?}, not {SUBPROTOCOL} (R-WS.12)"
            ));
        }
        Ok(ws)
    }

    /// One session, until it ends (false) or the agent stops (true).
    async fn serve(
        &mut self,
        ws: &mut Socket,
        shared: &mut Shared,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let connect = shared.agent.websocket_connect_record(&shared.controller);
        if let Err(e) = ws.send(Message::Binary(connect.into())).await {
            warn!("USP: WebSocket: {e}");
            return false;
        }
        self.link.online.store(true, Ordering::Relaxed);
        shared.status(true, None);
        shared.connected();
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + self.keep_alive,
            self.keep_alive,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A session that answers nothing, not even our pings, for two
        // keep-alive intervals is dead (a half-open TCP connection would
        // otherwise swallow records for many minutes).
        let mut heard = tokio::time::Instant::now();
        loop {
            let silent = heard + self.keep_alive * 2;
            tokio::select! {
                // What has come first: a pong waiting is not taken for
                // silence.
                biased;
                message = ws.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => {
                        heard = tokio::time::Instant::now();
                        // R-WS.16: what is not a record ends the session.
                        if !dm_usp::engine::is_record(&bytes) {
                            warn!("USP: a WebSocket message that is not a USP record: closing (1003)");
                            close(ws, CloseCode::Unsupported, "not a USP record").await;
                            return false;
                        }
                        shared.received(Received { payload: bytes.to_vec(), reply_to: None });
                    }
                    Some(Ok(Message::Text(_))) => {
                        warn!("USP: a text WebSocket message: closing (1003)");
                        close(ws, CloseCode::Unsupported, "USP records are binary").await;
                        return false;
                    }
                    // Pings are answered by tungstenite as it reads.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        heard = tokio::time::Instant::now();
                    }
                    Some(Ok(Message::Close(frame))) => {
                        info!("USP: the controller closed the WebSocket session: {frame:?}");
                        return false;
                    }
                    Some(Err(e)) => {
                        warn!("USP: WebSocket: {e}");
                        return false;
                    }
                    None => return false,
                },
                // A send that a dead peer's full buffers hold is given up
                // on when the session counts as silent.
                Some(record) = self.outgoing.recv() => {
                    let sent = tokio::time::timeout_at(silent, ws.send(Message::Binary(record.into())));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        warn!("USP: WebSocket: a record could not be sent; opening the session again");
                        return false;
                    }
                }
                _ = ping.tick() => {
                    let sent = tokio::time::timeout_at(silent, ws.send(Message::Ping(Vec::new().into())));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        warn!("USP: WebSocket: a ping could not be sent; opening the session again");
                        return false;
                    }
                }
                () = tokio::time::sleep_until(silent) => {
                    warn!("USP: the WebSocket session is silent; opening it again");
                    return false;
                }
                _ = stop.changed() => {
                    // What is queued goes first (a Reboot()'s OperateResp).
                    while let Ok(record) = self.outgoing.try_recv() {
                        let _ = ws.send(Message::Binary(record.into())).await;
                    }
                    close(ws, CloseCode::Away, "the agent stops").await;
                    return true;
                }
            }
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// A Close frame, waited for at most 2 s.
async fn close(ws: &mut Socket, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
}
