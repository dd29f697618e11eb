//! The Python peers of `scripts/install-py-peers.sh`: aiocoap's LwM2M
//! server (`tests/peers/lwm2m_server.py`) and pyftpdlib's FTP server.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The virtual environment's python (`DMAGENT_AIOCOAP_PYTHON` overrides).
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("DMAGENT_AIOCOAP_PYTHON") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let path = cache.join("dmagent/venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// `tests/peers/lwm2m_server.py`, the aiocoap LwM2M server the end-to-end
/// tests and the demo drive.
pub fn lwm2m_server_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/lwm2m_server.py")
}

/// The LwM2M server as a command (the venv's python and the script),
/// its mode's arguments to be added.
pub fn lwm2m_server() -> Command {
    let mut command = Command::new(python());
    command.arg(lwm2m_server_script());
    command
}

/// pyftpdlib serving `root` on 127.0.0.1 for user "dm", password
/// "ftp-secret" (and anonymous reads); stopped when dropped.
pub struct FtpServer {
    child: Child,
    input: Option<ChildStdin>,
    pub port: u16,
}

impl FtpServer {
    /// `cut`: the first download's data connection breaks after that many
    /// bytes.
    pub fn start(root: &Path, cut: Option<u64>) -> FtpServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ftp_server.py");
        let mut command = Command::new(python());
        command
            .arg(script)
            .arg(root)
            .args(["dm", "ftp-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(cut) = cut {
            command.arg(format!("--cut={cut}"));
        }
        let mut child = command.spawn().expect("the FTP server starts");
        let input = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("ftp_server.py did not start: {line:?}"));
        FtpServer { child, input, port }
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        // Its input closes: it stops by itself; kill in case it hangs.
        drop(self.input.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each line a peer prints on stdout as JSON (the aiocoap LwM2M server's
/// steps and events), as it comes; shown on stderr too, so that a
/// failing test's output says what the peer said.
pub fn json_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().expect("the peer's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("peer: {line}");
            if let Ok(value) = serde_json::from_str(&line)
                && tx.send(value).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// The next of those lines (at most 60 s).
pub fn next_json(rx: &std::sync::mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the peer reports")
}
