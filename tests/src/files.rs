//! A file server for download tests.

/// A minimal HTTP server on 127.0.0.1: `/image` is `image`; `/short`
/// promises `image` but closes after half of it; `/auth` always answers
/// 401 with a Basic challenge; `/flaky` is `/short` to a plain GET but
/// answers `Range: bytes=N-` with 206 and the rest; `/badrange` is `/short`
/// but answers a range with 206 from byte 0; anything else 404.
/// Returns its port.
pub fn image_server(image: Vec<u8>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let request = String::from_utf8_lossy(&request);
            let reply = if request.starts_with("GET /image ") {
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len()
                )
                .into_bytes();
                reply.extend_from_slice(&image);
                reply
            } else if let (true, Some(from)) = (
                request.starts_with("GET /flaky "),
                request
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("range: bytes=")
                            .or(l.strip_prefix("Range: bytes="))
                    })
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok()),
            ) {
                let from = from.min(image.len());
                let mut reply = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len() - 1,
                    image.len(),
                    image.len() - from
                )
                .into_bytes();
                reply.extend_from_slice(&image[from..]);
                reply
            } else if request.starts_with("GET /badrange ")
                && request.to_ascii_lowercase().contains("range: bytes=")
            {
                // A cache that answers any range with the start of the file.
                let mut reply = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len() - 1,
                    image.len(),
                    image.len()
                )
                .into_bytes();
                reply.extend_from_slice(&image);
                reply
            } else if request.starts_with("GET /short ")
                || request.starts_with("GET /flaky ")
                || request.starts_with("GET /badrange ")
            {
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len()
                )
                .into_bytes();
                reply.extend_from_slice(&image[..image.len() / 2]);
                reply
            } else if request.starts_with("GET /auth ") {
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"fw\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec()
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&reply);
        }
    });
    port
}

/// A minimal HTTP server that accepts one request per connection and
/// sends (request line, body) on the channel, answering 201; a PUT under
/// /post-only/ is answered 405 Method Not Allowed (still sent on).
pub fn receiver() -> (u16, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut first = String::new();
            let mut length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if first.is_empty() {
                    first = line.trim().to_owned();
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer: &[u8] = if first.starts_with("PUT /post-only/") {
                b"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = writer.write_all(answer);
            let _ = tx.send((first, body));
        }
    });
    (port, rx)
}

/// A server that sends the headers and the first 64 KiB of a 1 MB image,
/// says so on the channel, and then sends nothing more.
pub fn stalling_server() -> (u16, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
            let _ = stream.write_all(&[7u8; 65536]);
            let _ = tx.send(());
            // Kept open and silent: the transfer is in progress.
            held.push(stream);
        }
    });
    (port, rx)
}

/// Writes `script` to `path` as an executable (mode 755): the stand-in
/// programs the agent runs in tests.
pub fn executable(path: &std::path::Path, script: &str) {
    std::fs::write(path, script).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

/// The stand-in firmware program most tests configure: `apply-firmware`
/// in `dir`, which copies the image it is given to `applied.bin` there.
/// Returns (program, applied).
pub fn copying_program(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let applied = dir.join("applied.bin");
    let program = dir.join("apply-firmware");
    executable(
        &program,
        &format!("#!/bin/sh\ncp \"$1\" '{}'\n", applied.display()),
    );
    (program, applied)
}

/// A port on 127.0.0.1 that was free for both TCP and UDP a moment ago,
/// for a peer or agent that a test starts next. Picked below the kernel's
/// ephemeral range, so that no socket bound to port 0 meanwhile (the
/// agent's own client sockets, another test's) can take it before the
/// peer binds it; each is handed out once per test process.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOWEST);
    let free = |port: u16| {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
    };
    if span >= 1_000 {
        let seed = std::process::id().wrapping_mul(7_919);
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (LOWEST + seed.wrapping_add(n) % span) as u16;
            if free(port) {
                return port;
            }
        }
    }
    // No room below the ephemeral range: what the kernel gives.
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago ([`free_port`]).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago ([`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A named pipe at `path` (mkfifo): a test peer writes lines to it, the
/// test reads them as they come.
pub fn fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}
