//! OpenSSL's `s_server` as a DTLS 1.2 PSK server
//! (TLS_PSK_WITH_AES_128_CCM_8, LwM2M's mandatory suite), the DTLS peer
//! of the end-to-end tests.

use std::process::{Command, Stdio};

use crate::process::Guard;

/// `s_server` accepting on `address` (`127.0.0.1:PORT`, `[::1]:PORT`)
/// with one identity and its key (hex); its output to `stdout`. Its input
/// is kept open (s_server ends when it closes), until the guard drops.
pub fn psk_server(address: &str, identity: &str, key_hex: &str, stdout: Stdio) -> Guard {
    Guard(
        Command::new("openssl")
            .args([
                "s_server",
                "-dtls1_2",
                "-nocert",
                "-cipher",
                "PSK-AES128-CCM8",
            ])
            .args(["-psk_identity", identity, "-psk", key_hex])
            .args(["-accept", address])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is missing: run scripts/install-deps.sh"),
    )
}
