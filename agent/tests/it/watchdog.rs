//! The connectivity watchdog (issue 7): with `[platform]
//! offline_reboot_after`, an agent that reaches no management server for
//! that long reboots the device (here a configured reboot command) and
//! exits; without it, it keeps trying.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn an_agent_that_reaches_no_server_reboots_after_the_configured_time() {
    let dir = tempfile::tempdir().unwrap();
    // Ports nothing listens on: the ACS refuses, the LwM2M server is gone.
    let closed_tcp = dm_tests::files::free_tcp_port();
    let closed_udp = dm_tests::files::free_udp_port();
    let cr_port = dm_tests::files::free_tcp_port();
    let rebooted = dir.path().join("rebooted");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-WD\"\n\n[cwmp]\nacs_url = \"http://127.0.0.1:{closed_tcp}/acs\"\n\
             connection_request_port = {cr_port}\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{closed_udp}\"\n\
             endpoint = \"wd\"\n\n[platform]\noffline_reboot_after = 2\n\
             reboot_command = [\"touch\", \"{}\"]\n",
            rebooted.display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("run")
        .env_remove("DMAGENT_CONFIG")
        .env("DMAGENT_BUS", "session")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(agent.wait());
    });
    match exited.recv_timeout(Duration::from_secs(60)) {
        Ok(status) => assert!(status.unwrap().success()),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the agent did not reboot within 60 s");
        }
    }
    assert!(rebooted.exists(), "the reboot command ran");
}
