//! FTP file transfers for CWMP Download and Upload (TR-069 §3.6 lists
//! FTP beside HTTP): the client side of RFC 959 that a transfer needs
//! (USER/PASS, TYPE I, SIZE, REST, EPSV or PASV, RETR, STOR, QUIT),
//! streaming into a [`DownloadSink`] and resumed with REST (RFC 3659 §5)
//! where the server allows it. Failures map to TR-069's fault codes
//! through [`HttpError`], which the HTTP transfers share.
//!
//! Written here rather than taken from suppaftp: that crate added 1.5 MiB
//! (27%) to the release binary (its LIST parsing brings regex and chrono),
//! for the handful of commands used here; this module adds about 90 KiB.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::Credentials;
use crate::http::{DownloadSink, HttpError};

/// How many times a download cut short is resumed before it fails.
const RESUMES: u32 = 3;
/// The longest reply line, and the longest reply, read from a server.
const MAX_LINE: u64 = 4096;
const MAX_REPLY: usize = 64 * 1024;

/// An `ftp://` URL's parts (RFC 1738 §3.2).
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    /// The file, relative to the login directory, percent-decoded.
    path: String,
    user: String,
    password: String,
}

/// The URL's host, port and file, and who to log in as: the transfer's
/// Username/Password when given, else the URL's own, else anonymous.
fn target(url: &str, credentials: &Credentials) -> Result<Target, HttpError> {
    let bad = |why: &str| HttpError::Protocol(format!("{}: {why}", crate::redacted(url)));
    let parsed = dm_rt::uri::parse(url).map_err(|e| bad(&e.reason))?;
    if parsed.scheme_str() != Some("ftp") {
        return Err(bad("not an ftp:// URL"));
    }
    let host = dm_rt::uri::host(&parsed);
    let port = dm_rt::uri::port(&parsed)
        .map_err(|e| bad(&e.reason))?
        .unwrap_or(21);
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| bad("not UTF-8 once decoded"))
    };
    // ";type=i" (RFC 1738) is the default anyway: binary.
    let raw = parsed.path().split(';').next().unwrap_or("");
    let path = decode(raw.strip_prefix('/').unwrap_or(raw))?;
    if path.is_empty() || path.ends_with('/') {
        return Err(bad("no file name"));
    }
    let userinfo = parsed
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(info, _)| info);
    let (user, password) = if !credentials.username.is_empty() {
        (credentials.username.clone(), credentials.password.clone())
    } else if let Some(info) = userinfo.filter(|i| !i.is_empty()) {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        (decode(user)?, decode(password)?)
    } else {
        ("anonymous".to_owned(), "dmagent@".to_owned())
    };
    // Each goes on a command line: a CR or LF would end it and start
    // another command of the URL's choosing.
    if [&path, &user, &password]
        .iter()
        .any(|s| s.contains(['\r', '\n', '\0']))
    {
        return Err(bad("a line break in the file name or the login"));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        path,
        user,
        password,
    })
}

/// A server reply (RFC 959 §4.2): its code and its text, all lines.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    /// The failure a refusal stands for.
    fn failure(&self) -> HttpError {
        let text = format!("FTP {}", self.text.trim());
        match self.code {
            // Not logged in, need an account, invalid credentials.
            530 | 332 | 532 | 430 => HttpError::Unauthorized(text),
            // The server or the data connection gave up mid-way: worth
            // resuming, as a dropped HTTP connection is.
            421 | 425 | 426 | 451 => HttpError::Protocol(text),
            code @ 400..=599 => HttpError::Status(code),
            _ => HttpError::Protocol(format!("unexpected {text}")),
        }
    }
}

/// The code of a reply line and whether more lines follow ("123-").
pub(crate) fn reply_line(line: &str) -> Option<(u16, bool)> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || code.starts_with('0') {
        return None;
    }
    let more = match line.as_bytes().get(3) {
        Some(b'-') => true,
        Some(b' ') | None => false,
        _ => return None,
    };
    Some((code.parse().ok()?, more))
}

/// The data port of a 229 reply: "Entering Extended Passive Mode (|||6446|)".
pub(crate) fn epsv_port(text: &str) -> Option<u16> {
    let after = &text[text.find('(')? + 1..];
    let inner = &after[..after.find(')')?];
    let delimiter = inner.chars().next()?;
    let fields: Vec<&str> = inner.split(delimiter).collect();
    match fields.as_slice() {
        ["", "", "", port, ""] => port.parse().ok(),
        _ => None,
    }
}

/// The data port of a 227 reply: "Entering Passive Mode (h1,h2,h3,h4,p1,p2)".
/// Its address is not used: the data connection goes to the control
/// connection's peer, which also covers a server behind a NAT that
/// announces its inside address, and refuses to be pointed at a third
/// host (the "FTP bounce").
pub(crate) fn pasv_port(text: &str) -> Option<u16> {
    // After the reply code; RFC 1123 §4.1.2.6: the numbers may come
    // without parentheses, so scan for them.
    let text = text.get(4..)?;
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    match numbers.as_slice() {
        [_, _, _, _, high, low] => Some(u16::from(*high) << 8 | u16::from(*low)),
        _ => None,
    }
}

async fn timed<T>(
    idle: Duration,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T, HttpError> {
    tokio::time::timeout(idle, step)
        .await
        .map_err(|_| HttpError::Timeout)?
        .map_err(|e| HttpError::Protocol(format!("FTP: {e}")))
}

/// Makes the socket of a connection to an address (bound to an
/// interface, marked with a DSCP: a TR-143 test's), or refuses the
/// address (one of a family the test does not use).
pub type Sockets =
    std::sync::Arc<dyn Fn(SocketAddr) -> std::io::Result<tokio::net::TcpSocket> + Send + Sync>;

/// Connects to `address`, through `sockets` when given.
async fn connect(sockets: Option<&Sockets>, address: SocketAddr) -> std::io::Result<TcpStream> {
    match sockets {
        Some(sockets) => sockets(address)?.connect(address).await,
        None => TcpStream::connect(address).await,
    }
}

/// The control connection.
struct Control {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    peer: IpAddr,
    idle: Duration,
    sockets: Option<Sockets>,
}

impl Control {
    /// Connects and logs in, then switches to binary.
    async fn open(
        target: &Target,
        idle: Duration,
        sockets: Option<Sockets>,
    ) -> Result<Control, HttpError> {
        let connect = async {
            let mut last = None;
            for address in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
                match connect(sockets.as_ref(), address).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
        };
        let stream = tokio::time::timeout(idle, connect)
            .await
            .map_err(|_| HttpError::Connect(format!("{}: timed out", target.host)))?
            .map_err(|e| HttpError::Connect(format!("{}: {e}", target.host)))?;
        let peer = stream
            .peer_addr()
            .map_err(|e| HttpError::Connect(e.to_string()))?
            .ip();
        let (read, writer) = stream.into_split();
        let mut control = Control {
            reader: BufReader::new(read),
            writer,
            peer,
            idle,
            sockets,
        };
        // 120: ready in a moment; 220 follows.
        let mut greeting = control.reply().await?;
        if greeting.code == 120 {
            greeting = control.reply().await?;
        }
        if greeting.code != 220 {
            // 421: the server will not take us now, as good as not there.
            return Err(match greeting.failure() {
                HttpError::Protocol(m) => HttpError::Connect(m),
                other => other,
            });
        }
        let user = control.command(&format!("USER {}", target.user)).await?;
        match user.code {
            230 => {}
            331 => control
                .expect(&format!("PASS {}", target.password), &[230, 202])
                .await
                .map(drop)?,
            _ => return Err(user.failure()),
        }
        control.expect("TYPE I", &[200]).await?;
        Ok(control)
    }

    /// Reads one reply, all its lines.
    async fn reply(&mut self) -> Result<Reply, HttpError> {
        let mut text = String::new();
        let mut code = None;
        loop {
            let mut line = Vec::new();
            let n = timed(
                self.idle,
                (&mut self.reader)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut line),
            )
            .await?;
            if n == 0 {
                return Err(HttpError::Protocol(
                    "FTP: the server closed the connection".into(),
                ));
            }
            if line.last() != Some(&b'\n') {
                return Err(HttpError::Protocol("FTP: a reply line too long".into()));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            text.push_str(line);
            text.push('\n');
            if text.len() > MAX_REPLY {
                return Err(HttpError::Protocol("FTP: a reply too long".into()));
            }
            match (code, reply_line(line)) {
                // The first line sets the code; "ddd " ends the reply.
                (None, Some((first, more))) => {
                    if !more {
                        return Ok(Reply { code: first, text });
                    }
                    code = Some(first);
                }
                (None, None) => {
                    return Err(HttpError::Protocol(format!("FTP: not a reply: {line:?}")));
                }
                (Some(first), Some((last, false))) if last == first => {
                    return Ok(Reply { code: first, text });
                }
                // Lines of a multi-line reply.
                (Some(_), _) => {}
            }
        }
    }

    /// Sends a command and reads its reply.
    async fn command(&mut self, line: &str) -> Result<Reply, HttpError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        timed(self.idle, self.writer.write_all(&bytes)).await?;
        self.reply().await
    }

    /// A command whose reply must be one of `ok`.
    async fn expect(&mut self, line: &str, ok: &[u16]) -> Result<Reply, HttpError> {
        let reply = self.command(line).await?;
        if ok.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(reply.failure())
        }
    }

    /// Opens a passive data connection: EPSV (RFC 2428), else PASV.
    async fn data(&mut self) -> Result<TcpStream, HttpError> {
        self.data_timed().await.map(|(data, _)| data)
    }

    /// [`Control::data`], and when its opening was asked for and answered
    /// (TR-143's TCPOpenRequestTime and TCPOpenResponseTime).
    async fn data_timed(&mut self) -> Result<(TcpStream, (Instant, Instant)), HttpError> {
        let sockets = self.sockets.clone();
        let extended = self.command("EPSV").await?;
        let port = if extended.code == 229 {
            epsv_port(&extended.text)
        } else if self.peer.is_ipv4() {
            let passive = self.expect("PASV", &[227]).await?;
            pasv_port(&passive.text)
        } else {
            return Err(extended.failure());
        }
        .ok_or_else(|| HttpError::Protocol("FTP: a passive reply without a port".into()))?;
        let asked = dm_rt::clock::now();
        let data = timed(
            self.idle,
            connect(sockets.as_ref(), SocketAddr::new(self.peer, port)),
        )
        .await?;
        Ok((data, (asked, dm_rt::clock::now())))
    }

    /// Starts a transfer: the data connection, then the command, which
    /// the server answers 125 or 150 before the data flows.
    async fn transfer(&mut self, line: &str) -> Result<TcpStream, HttpError> {
        let data = self.data().await?;
        self.expect(line, &[125, 150]).await?;
        Ok(data)
    }

    /// The reply that ends a transfer: 226 or 250 when the server has
    /// sent or stored the whole file.
    async fn finished(&mut self) -> Result<(), HttpError> {
        let reply = self.reply().await?;
        if matches!(reply.code, 226 | 250) {
            Ok(())
        } else {
            Err(reply.failure())
        }
    }

    async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }
}

/// Downloads an `ftp://` URL into `sink`; a transfer cut short is resumed
/// with REST from where it stopped, up to [`RESUMES`] times. Returns the
/// size received.
pub async fn download(
    url: &str,
    credentials: &Credentials,
    idle: Duration,
    sink: &mut dyn DownloadSink,
) -> Result<u64, HttpError> {
    let target = target(url, credentials)?;
    let mut received = 0u64;
    let mut resumes = 0;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let before = received;
        let attempt = async {
            let mut control = Control::open(&target, idle, None).await?;
            if received == 0 {
                // SIZE (RFC 3659 §4) is optional: only for progress.
                let size = control.command(&format!("SIZE {}", target.path)).await?;
                if size.code == 213 {
                    sink.length(size.text.get(4..).and_then(|s| s.trim().parse().ok()));
                }
            } else {
                control.expect(&format!("REST {received}"), &[350]).await?;
            }
            let mut data = control.transfer(&format!("RETR {}", target.path)).await?;
            loop {
                let n = timed(idle, data.read(&mut buffer)).await?;
                if n == 0 {
                    break;
                }
                sink.write(&buffer[..n])
                    .map_err(|e| HttpError::Sink(e.to_string()))?;
                received += n as u64;
            }
            // 226: the server sent the whole file; 426 if it broke off.
            control.finished().await?;
            control.quit().await;
            Ok::<_, HttpError>(())
        };
        match attempt.await {
            Ok(()) => return Ok(received),
            Err(e @ (HttpError::Protocol(_) | HttpError::Timeout))
                if resumes < RESUMES && received > before =>
            {
                resumes += 1;
                tracing::warn!(at = received, "FTP download cut short ({e}); resuming");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Stores `body` at an `ftp://` URL (STOR).
pub async fn upload(
    url: &str,
    credentials: &Credentials,
    idle: Duration,
    body: &[u8],
) -> Result<(), HttpError> {
    let target = target(url, credentials)?;
    let mut control = Control::open(&target, idle, None).await?;
    let mut data = control.transfer(&format!("STOR {}", target.path)).await?;
    // The idle limit is per chunk: a large file on a slow link is fine,
    // a stalled one is not.
    for chunk in body.chunks(16 * 1024) {
        timed(idle, data.write_all(chunk)).await?;
    }
    // The end of the file is the end of the data connection.
    timed(idle, data.shutdown()).await?;
    drop(data);
    control.finished().await?;
    control.quit().await;
    Ok(())
}

/// What a TR-143 throughput test (TR-181 DownloadDiagnostics and
/// UploadDiagnostics over FTP) observes of a transfer.
pub trait Meter: Send {
    /// The data connection was asked for and opened, from `local`.
    fn data_opened(&mut self, asked: Instant, opened: Instant, local: Option<IpAddr>);
    /// RETR or STOR is sent now.
    fn command(&mut self, at: Instant);
    /// `n` bytes of the file moved on the data connection.
    fn moved(&mut self, n: usize);
    /// The server said the transfer is complete (226 or 250).
    fn finished(&mut self, at: Instant);
}

/// A TR-143 FTP test transfer: RETR of the URL's file (read and
/// dropped), or STOR of `upload` zero bytes, each step told to `meter`;
/// both connections made by `sockets`. The login is the URL's, else
/// anonymous.
pub async fn measure(
    url: &str,
    upload: Option<u64>,
    idle: Duration,
    sockets: Sockets,
    meter: &mut dyn Meter,
) -> Result<(), HttpError> {
    let target = target(url, &Credentials::default())?;
    let mut control = Control::open(&target, idle, Some(sockets)).await?;
    let (mut data, (asked, opened)) = control.data_timed().await?;
    let local = data.local_addr().ok().map(|a| a.ip());
    meter.data_opened(asked, opened, local);
    let command = match upload {
        Some(_) => format!("STOR {}", target.path),
        None => format!("RETR {}", target.path),
    };
    meter.command(dm_rt::clock::now());
    control.expect(&command, &[125, 150]).await?;
    let mut buffer = vec![0u8; 16 * 1024];
    match upload {
        None => loop {
            let n = timed(idle, data.read(&mut buffer)).await?;
            if n == 0 {
                break;
            }
            meter.moved(n);
        },
        Some(mut left) => {
            buffer.fill(0);
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(buffer.len())
                    .min(buffer.len());
                timed(idle, data.write_all(&buffer[..n])).await?;
                meter.moved(n);
                left -= n as u64;
            }
            timed(idle, data.shutdown()).await?;
        }
    }
    drop(data);
    control.finished().await?;
    meter.finished(dm_rt::clock::now());
    control.quit().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Credentials {
        Credentials::default()
    }

    #[test]
    fn urls_give_host_port_file_and_login() {
        let t = target("ftp://files.example:2121/fw/image%201.bin", &none()).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("files.example", 2121));
        assert_eq!(t.path, "fw/image 1.bin");
        assert_eq!(
            (t.user.as_str(), t.password.as_str()),
            ("anonymous", "dmagent@")
        );

        let t = target("ftp://u%40x:p%3Aw@[::1]/a.bin;type=i", &none()).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 21));
        assert_eq!(t.path, "a.bin");
        assert_eq!((t.user.as_str(), t.password.as_str()), ("u@x", "p:w"));

        // The Download's own Username/Password win over the URL's.
        let given = Credentials {
            username: "acs".into(),
            password: "secret".into(),
        };
        let t = target("ftp://u:p@127.0.0.1/a.bin", &given).unwrap();
        assert_eq!((t.user.as_str(), t.password.as_str()), ("acs", "secret"));
    }

    #[test]
    fn unusable_urls_are_clear_errors() {
        for url in [
            "ftp://127.0.0.1/",
            "ftp://127.0.0.1",
            "http://127.0.0.1/a.bin",
            "ftp:///a.bin",
            "ftp://127.0.0.1/%FF.bin",
            "ftp://127.0.0.1:99999/a.bin",
            "ftp://127.0.0.1/a.bin%0D%0ADELE%20b.bin",
            "ftp://x%0A:y@127.0.0.1/a.bin",
        ] {
            assert!(
                matches!(target(url, &none()), Err(HttpError::Protocol(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn replies_and_passive_ports_parse() {
        assert_eq!(reply_line("220 ready"), Some((220, false)));
        assert_eq!(reply_line("211-Features:"), Some((211, true)));
        assert_eq!(reply_line("226"), Some((226, false)));
        assert_eq!(reply_line(" MDTM"), None);
        assert_eq!(reply_line("22x oops"), None);
        assert_eq!(reply_line("2201 no"), None);
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (!!!21!)"),
            Some(21)
        );
        assert_eq!(epsv_port("229 (|1|127.0.0.1|6446|)"), None);
        // A ")" before the "(" is not a panic.
        assert_eq!(epsv_port("229 OK :-) (|||5000|"), None);
        assert_eq!(epsv_port("229 ) ("), None);
        assert_eq!(
            pasv_port("227 Entering Passive Mode (192,168,1,2,19,137)."),
            Some(19 * 256 + 137)
        );
        assert_eq!(pasv_port("227 =10,0,0,1,4,1"), Some(1025));
        assert_eq!(
            pasv_port("227 Entering Passive Mode (192,168,1,2,19)"),
            None
        );
        assert_eq!(pasv_port("227 (300,1,1,1,1,1)"), None);
    }

    #[test]
    fn refusals_map_to_transfer_failures() {
        let reply = |code| Reply {
            code,
            text: format!("{code} text"),
        };
        assert!(matches!(reply(530).failure(), HttpError::Unauthorized(_)));
        assert!(matches!(reply(426).failure(), HttpError::Protocol(_)));
        assert!(matches!(reply(550).failure(), HttpError::Status(550)));
        assert!(matches!(reply(200).failure(), HttpError::Protocol(_)));
    }

    proptest::proptest! {
        /// Whatever a server or a URL holds: an answer or an error, never
        /// a panic (a panic aborts the agent).
        #[test]
        fn replies_and_urls_never_panic(
            text in ".{0,80}",
            // The characters replies and URLs are made of, so that odd
            // orders ("229 :-) (|||1|") come up often.
            shaped in "[0-9()|,: .@/%\\[\\]a-z-]{0,40}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let lossy = String::from_utf8_lossy(&bytes);
            for input in [text.as_str(), &shaped, &lossy] {
                let _ = reply_line(input);
                let _ = epsv_port(input);
                let _ = pasv_port(input);
                let _ = target(input, &none());
                let _ = target(&format!("ftp://{input}"), &none());
                let _ = crate::redacted(input);
                let _ = Reply { code: 550, text: input.to_owned() }.failure();
            }
        }
    }
}
