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

/// `BINARY --config CONFIG --state-dir STATE run`, its log dropped, on
/// the in-memory platform (whose values and system log the tests know).
/// `binary` is the test's `env!("CARGO_BIN_EXE_dmagent")`.
pub fn run(binary: &str, config: &Path, state: &Path) -> Agent {
    spawn(
        command(binary, config, state)
            .env("DMAGENT_PLATFORM", "memory")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent"),
    )
}

/// [`run`] with `bus` as the system bus: the D-Bus platform and the
/// control API on a test's private bus.
pub fn run_on_bus(binary: &str, config: &Path, state: &Path, bus: &str) -> Agent {
    spawn(
        command(binary, config, state)
            .env("DMAGENT_BUS", "system")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus),
    )
}

/// `BINARY ARGS...` as the CLI, talking to the control API on `bus`.
pub fn cli_on_bus(binary: &str, bus: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary)
        .args(args)
        .env_remove("DMAGENT_CONFIG")
        .env("DMAGENT_BUS", "system")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .expect("the CLI runs")
}

/// Waits until the agent's control API is on `bus` (gdbus waits for the
/// name to appear: no polling here).
pub fn wait_for_control_api(bus: &str) {
    let waited = Command::new("gdbus")
        .args(["wait", "--system", "--timeout", "30", "org.dmagent.Agent1"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .status()
        .expect("gdbus runs");
    assert!(waited.success(), "the control API never appeared on {bus}");
}

/// `binary run` on `config` and `state`, its stderr dropped, without the
/// caller's DMAGENT_CONFIG.
pub fn command(binary: &str, config: &Path, state: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .env_remove("DMAGENT_CONFIG")
        .stderr(Stdio::null());
    command
}

fn spawn(command: &mut Command) -> Agent {
    Agent(command.spawn().expect("the agent starts"))
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
