//! The agent binary in end-to-end tests: started on a configuration and a
//! state directory, without a D-Bus session (the control API stays off),
//! and killed when the guard is dropped.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::mini_acs::MiniAcs;

/// A running agent, killed (and reaped) when dropped.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `BINARY --config CONFIG --state-dir STATE run`, its log dropped.
/// `binary` is the test's `env!("CARGO_BIN_EXE_dmagent")`.
pub fn run(binary: &str, config: &Path, state: &Path) -> Agent {
    Agent(
        Command::new(binary)
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(Stdio::null())
            .spawn()
            .expect("the agent starts"),
    )
}

/// The TransferCompletes `acs` receives, CommandKey → FaultCode, until
/// `count` different keys were reported.
pub fn transfer_completes(acs: &MiniAcs, count: usize) -> HashMap<String, String> {
    let mut reported = HashMap::new();
    while reported.len() < count {
        let complete = acs.post_with("<cwmp:TransferComplete>");
        let field = |name: &str| {
            let start = complete.find(&format!("<{name}>")).unwrap() + name.len() + 2;
            let end = complete[start..].find('<').unwrap() + start;
            complete[start..end].to_owned()
        };
        reported.insert(field("CommandKey"), field("FaultCode"));
    }
    reported
}
