//! The CLI, the control API (org.dmagent.Agent1 on a private bus) and the
//! agent, end to end: every verb against a running agent, and `inform`
//! reaching an ACS. The ACS here is a minimal HTTP peer on 127.0.0.1 that
//! answers Inform with InformResponse and records every POST.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal ACS: InformResponse to an Inform, 204 to anything else; each
/// request body is sent on the channel.
fn acs() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let reply = if body.contains("<cwmp:Inform>") {
                        let id = body
                            .split("<cwmp:ID")
                            .nth(1)
                            .and_then(|r| r.split('>').nth(1))
                            .and_then(|r| r.split('<').next())
                            .unwrap_or("1");
                        let envelope = format!(
                            r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">{id}</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soap-env:Body></soap-env:Envelope>"#
                        );
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{envelope}",
                            envelope.len()
                        )
                    } else {
                        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_owned()
                    };
                    let _ = tx.send(body);
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Waits for an Inform whose body contains `needle`.
fn inform_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let body = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no Inform with {needle}"));
        if body.contains("<cwmp:Inform>") && body.contains(needle) {
            return body;
        }
    }
}

#[test]
fn every_cli_verb_round_trips_through_the_control_api() {
    let stack = dm_tests::dbus_stack::Stack::mock();
    let (acs_port, posts) = acs();
    let cr_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-CLI\"\noui = \"00D09E\"\n\n\
             [cwmp]\nacs_url = \"http://127.0.0.1:{acs_port}/acs\"\nconnection_request_port = {cr_port}\n"
        ),
    )
    .unwrap();
    let bus = stack.bus.clone();
    let dmagent = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(args)
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "system")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .output()
            .unwrap()
    };
    let text = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout.clone()).unwrap()
    };
    // No agent yet: a clear error.
    let none = dmagent(&["status"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no agent is running"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );

    let mut agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "system")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The boot session tells us the agent is up (and its API with it: the
    // API is served before the run loop starts).
    inform_with(&posts, "1 BOOT");

    assert_eq!(
        text(&dmagent(&["get", "Device.DeviceInfo.SerialNumber"])),
        "Device.DeviceInfo.SerialNumber SN-CLI\n"
    );
    // Both path forms.
    assert_eq!(text(&dmagent(&["get", "/3/0/2"])), "/3/0/2 SN-CLI\n");
    text(&dmagent(&[
        "set",
        "Device.ManagementServer.PeriodicInformInterval",
        "1200",
    ]));
    assert_eq!(
        text(&dmagent(&[
            "get",
            "Device.ManagementServer.PeriodicInformInterval"
        ])),
        "Device.ManagementServer.PeriodicInformInterval 1200\n"
    );
    // A refused value: non-zero exit, the reason on stderr.
    let refused = dmagent(&[
        "set",
        "Device.ManagementServer.PeriodicInformInterval",
        "often",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("9007"));
    // Instances.
    let added = text(&dmagent(&["add", "Device.WiFi.SSID."]));
    assert!(added.starts_with("Device.WiFi.SSID."), "{added}");
    let names = text(&dmagent(&["get-names", added.trim(), "true"]));
    assert!(
        names.contains(&format!("{}SSID rw", added.trim())),
        "{names}"
    );
    text(&dmagent(&["del", added.trim()]));
    let gone = dmagent(&["get", added.trim()]);
    assert!(!gone.status.success());
    let lwm2m_added = text(&dmagent(&["add", "/12"]));
    assert!(lwm2m_added.starts_with("/12/"), "{lwm2m_added}");
    text(&dmagent(&["del", lwm2m_added.trim()]));
    // Notification.
    text(&dmagent(&["set-notif", "Device.WiFi.SSID.1.SSID", "2"]));
    assert_eq!(
        text(&dmagent(&["get-notif", "Device.WiFi.SSID.1.SSID"])),
        "Device.WiFi.SSID.1.SSID 2\n"
    );
    // Status, for scripts.
    let status: serde_json::Value =
        serde_json::from_str(&text(&dmagent(&["status", "--json"]))).unwrap();
    assert_eq!(status["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["agent"]["started"].as_i64().unwrap() > 0);
    assert_eq!(
        status["cwmp"]["acs_url"],
        format!("http://127.0.0.1:{acs_port}/acs")
    );
    assert!(status["cwmp"]["sessions_ok"].as_u64().unwrap() >= 1);
    assert!(status["lwm2m"].is_null(), "LwM2M is not configured");
    let human = text(&dmagent(&["status"]));
    assert!(human.contains("cwmp        http://127.0.0.1:"), "{human}");
    // A session on demand, with the event asked for.
    text(&dmagent(&["inform", "2 PERIODIC"]));
    inform_with(&posts, "<EventCode>2 PERIODIC</EventCode>");
    let bad = dmagent(&["inform", "7 TRANSFER COMPLETE"]);
    assert!(!bad.status.success());
    // Stop: the agent exits cleanly.
    text(&dmagent(&["stop"]));
    assert!(agent.0.wait().unwrap().success());
}
