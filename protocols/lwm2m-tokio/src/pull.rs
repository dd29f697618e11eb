//! Drives a [`Fetch`]: a coap:// or coaps:// pull over its own UDP socket
//! (and its own DTLS association), for firmware pull delivery.

use std::time::Duration;

use dm_rt::clock;

use dm_lwm2m::coap::Parameters;
use dm_lwm2m::dtls::DtlsClient;
use dm_lwm2m::fetch::{Fetch, FetchError, FetchEvent};
use dm_lwm2m::security::Credentials;
use tokio::net::UdpSocket;

/// Why a pull failed, as the firmware object reports it.
#[derive(Debug)]
pub enum PullError {
    /// The URI is not one we can pull (LwM2M result 7).
    Uri(String),
    /// coaps:// without credentials for it (LwM2M result 9).
    Unsupported(String),
    /// The server said no, or stopped answering.
    Fetch(FetchError),
    /// The DTLS handshake or session failed (LwM2M result 4).
    Dtls(String),
    /// The sink refused the data (a full disk; LwM2M result 2).
    Sink(String),
    Io(String),
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Uri(m) | PullError::Unsupported(m) | PullError::Io(m) => write!(f, "{m}"),
            PullError::Fetch(e) => write!(f, "{e}"),
            PullError::Dtls(m) => write!(f, "DTLS: {m}"),
            PullError::Sink(m) => write!(f, "{m}"),
        }
    }
}

/// How long one pull may go without progress (no datagram from the
/// server) before it counts as lost, on top of CoAP's own retransmission.
const SILENCE: Duration = Duration::from_secs(120);

/// Pulls `uri` block by block (1024-byte blocks), handing each to `sink`
/// as it arrives; returns the size. coaps:// needs `credentials` (a
/// server account's, with the trust anchors it needs); `server_name` is
/// that account's SNI (/0/x/14), else the URI's host name is used.
/// `progress` is told the bytes so far and the size when known.
pub async fn pull(
    uri: &str,
    credentials: Option<Credentials>,
    server_name: Option<String>,
    sink: &mut (dyn FnMut(&[u8]) -> Result<(), String> + Send),
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<u64, PullError> {
    let (server, secure) = crate::resolve(uri)
        .await
        .map_err(|e| PullError::Uri(e.to_string()))?;
    let (path, query) =
        dm_rt::uri::path_and_query(uri).map_err(|e| PullError::Uri(e.to_string()))?;
    let credentials = match (secure, credentials) {
        (false, _) => None,
        (true, Some(credentials)) => Some(credentials),
        (true, None) => {
            return Err(PullError::Unsupported(format!(
                "{uri}: coaps:// needs a PSK or certificates, and no server account has them"
            )));
        }
    };
    let any: std::net::SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let io = |e: std::io::Error| PullError::Io(format!("{server}: {e}"));
    let socket = UdpSocket::bind(any).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let now = clock::now();
    let mut fetch = Fetch::new(
        now,
        path,
        query,
        6,
        Parameters::default(),
        dm_rt::random::seed(),
    );
    let mut dtls = match credentials {
        Some(credentials) => Some(
            DtlsClient::connect(
                now,
                socket.local_addr().map_err(io)?,
                server,
                server_name.or_else(|| crate::server_name(uri)).as_deref(),
                &credentials,
            )
            .map_err(|e| PullError::Dtls(e.to_string()))?,
        ),
        None => None,
    };
    let mut buffer = vec![0u8; 4096];
    let mut last_heard = clock::now();
    loop {
        let now = clock::now();
        while let Some(datagram) = fetch.poll_transmit() {
            match dtls.as_mut() {
                Some(session) => session.send(now, &datagram),
                None => {
                    let _ = socket.send(&datagram).await;
                }
            }
        }
        if let Some(session) = dtls.as_mut() {
            while let Some(datagram) = session.poll_transmit(clock::now()) {
                let _ = socket.send(&datagram).await;
            }
            if let Some(failure) = session.failure() {
                return Err(PullError::Dtls(failure.to_owned()));
            }
        }
        while let Some(event) = fetch.poll_event() {
            match event {
                FetchEvent::Data(bytes) => {
                    sink(&bytes).map_err(PullError::Sink)?;
                    progress(fetch.received(), fetch.total());
                }
                FetchEvent::Finished { size } => return Ok(size),
                FetchEvent::Failed(e) => return Err(PullError::Fetch(e)),
            }
        }
        let deadline = [
            fetch.poll_timeout(),
            dtls.as_ref().and_then(DtlsClient::poll_timeout),
            Some(last_heard + SILENCE),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            received = socket.recv(&mut buffer) => {
                let Ok(n) = received else {
                    // ICMP port unreachable and the like: CoAP's
                    // retransmission decides when to give up.
                    continue;
                };
                let now = clock::now();
                last_heard = now;
                match dtls.as_mut() {
                    Some(session) => {
                        session.handle_datagram(now, &buffer[..n]);
                        while let Some(plain) = session.poll_plaintext() {
                            fetch.handle_datagram(now, &plain);
                        }
                    }
                    None => fetch.handle_datagram(now, &buffer[..n]),
                }
            }
            () = crate::sleep_until(deadline) => {
                let now = clock::now();
                if now >= last_heard + SILENCE {
                    return Err(PullError::Fetch(FetchError::Timeout));
                }
                if let Some(session) = dtls.as_mut() {
                    session.handle_timeout(now);
                }
                fetch.handle_timeout(now);
            }
        }
    }
}
