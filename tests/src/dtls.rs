//! OpenSSL's `s_server` as a DTLS 1.2 server, the DTLS peer of the
//! end-to-end tests: with a PSK (TLS_PSK_WITH_AES_128_CCM_8, LwM2M's
//! mandatory PSK suite) or with certificates
//! (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, the mandatory certificate one).

use std::process::{Command, Stdio};

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::process::Guard;

/// `s_server` accepting on `address` (`127.0.0.1:PORT`, `[::1]:PORT`)
/// with one identity and its key (hex); its output to `stdout`. Its input
/// is kept open (s_server ends when it closes), until the guard drops.
pub fn psk_server(address: &str, identity: &str, key_hex: &str, stdout: Stdio) -> Guard {
    s_server(
        Command::new("openssl")
            .args([
                "s_server",
                "-dtls1_2",
                "-nocert",
                "-cipher",
                "PSK-AES128-CCM8",
            ])
            .args(["-psk_identity", identity, "-psk", key_hex])
            .args(["-accept", address]),
        stdout,
    )
}

/// Starts `command` (an s_server): input kept open, output to `stdout`.
fn s_server(command: &mut Command, stdout: Stdio) -> Guard {
    Guard(
        command
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is missing: run scripts/install-deps.sh"),
    )
}

/// `s_server` accepting on `address` with `chain` (its certificate, then
/// intermediates) and `key`, asking for and checking the client's
/// certificate against `client_ca`; its output to `stdout`.
pub fn certificate_server(
    address: &str,
    chain: &Path,
    key: &Path,
    client_ca: &Path,
    stdout: Stdio,
) -> Guard {
    s_server(
        Command::new("openssl")
            .args(["s_server", "-dtls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM8"])
            .arg("-cert")
            .arg(chain)
            .arg("-key")
            .arg(key)
            // The intermediates after the certificate go out with it.
            .arg("-cert_chain")
            .arg(chain)
            .arg("-CAfile")
            .arg(client_ca)
            .args(["-Verify", "2", "-verify_return_error"])
            .args(["-accept", address]),
        stdout,
    )
}

/// What `s_server` prints, to wait on: it prints what it decrypts as it
/// comes, without newlines for a binary CoAP message, so everything seen
/// so far is passed on at every read.
pub struct Output(mpsc::Receiver<String>);

impl Output {
    /// Takes the server's piped stdout.
    pub fn of(server: &mut Guard) -> Output {
        let mut stdout = server.0.stdout.take().expect("s_server's stdout is piped");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
                if tx
                    .send(String::from_utf8_lossy(&seen).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Output(rx)
    }

    /// Everything printed so far once it holds `needle` (30 s at most).
    pub fn wait_for(&self, needle: &str) -> String {
        loop {
            let text = self
                .0
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("s_server never showed {needle:?}"));
            if text.contains(needle) {
                return text;
            }
        }
    }
}
