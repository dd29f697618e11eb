//! Firmware download throughput and memory: 100 MB over HTTP on loopback
//! into the image store (the agent's own path: HttpSession::download
//! streaming into ImageWriter), against `curl -o /dev/null` on the same
//! server in the same run; and the peak RSS growth the transfer causes.
//!
//! `cargo bench -p dmagent-tests --bench download`.

use std::io::{Read as _, Write as _};
use std::time::Instant;

const SIZE: usize = 100 * 1000 * 1000;

/// Serves SIZE bytes at /image, from one 1 MiB buffer written repeatedly.
fn server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let chunk = vec![0x5au8; 1 << 20];
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
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
            );
            let mut left = SIZE;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n;
            }
        }
    });
    port
}

/// VmHWM (peak RSS) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let port = server();
    let url = format!("http://127.0.0.1:{port}/image");
    let dir = tempfile::tempdir().unwrap();
    let store = dm_platform::firmware::ImageStore::new(dir.path(), u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // curl first, so both read from a warm server.
    let start = Instant::now();
    let status = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", &url])
        .status()
        .expect("curl");
    assert!(status.success());
    let curl = start.elapsed().as_secs_f64();

    let before = peak_rss_kib();
    let start = Instant::now();
    let received = runtime.block_on(async {
        let mut writer = store.begin().unwrap();
        let mut session = dm_cwmp_tokio::http::HttpSession::new(
            url.parse().unwrap(),
            dm_cwmp_tokio::Credentials::default(),
            std::time::Duration::from_secs(30),
            None,
        );
        let received = session
            .download(std::time::Duration::from_secs(30), &mut |bytes| {
                writer.write(bytes).map_err(|e| e.to_string())
            })
            .await
            .unwrap();
        writer.finish().unwrap();
        received
    });
    let ours = start.elapsed().as_secs_f64();
    let growth = peak_rss_kib().saturating_sub(before);
    assert_eq!(received as usize, SIZE);
    // The HTTP path alone, bytes discarded as curl's are.
    let start = Instant::now();
    runtime.block_on(async {
        let mut session = dm_cwmp_tokio::http::HttpSession::new(
            url.parse().unwrap(),
            dm_cwmp_tokio::Credentials::default(),
            std::time::Duration::from_secs(30),
            None,
        );
        session
            .download(std::time::Duration::from_secs(30), &mut |bytes| {
                std::hint::black_box(bytes);
                Ok(())
            })
            .await
            .unwrap();
    });
    let discard = start.elapsed().as_secs_f64();
    let mb = SIZE as f64 / 1e6;
    println!(
        "100 MB over HTTP on loopback, one run: curl -o /dev/null {:.0} MB/s; dmagent discarding {:.0} MB/s \
         (ratio {:.2}); dmagent into the image file, synced {:.0} MB/s (ratio {:.2}); peak RSS growth {} KiB",
        mb / curl,
        mb / discard,
        curl / discard,
        mb / ours,
        curl / ours,
        growth
    );
}
