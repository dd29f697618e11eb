//! The CLI, the control API (org.dmagent.Agent1 on a private bus) and the
//! agent, end to end: every verb against a running agent, and `inform`
//! reaching an ACS (dm_tests' minimal ACS, which records every POST).

use std::process::{Child, Command, Output, Stdio};

use dm_tests::mini_acs::MiniAcs;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_cli_verb_round_trips_through_the_control_api() {
    let stack = dm_tests::dbus_stack::Stack::mock();
    let acs = MiniAcs::start(Box::new(|body| {
        body.contains("<cwmp:Kicked>").then(|| {
            "<cwmp:KickedResponse><NextURL>http://portal.example/welcome</NextURL>\
             </cwmp:KickedResponse>"
                .to_owned()
        })
    }));
    let acs_port = acs.port;
    let cr_port = dm_tests::files::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(dir.path());
    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-CLI\"\noui = \"00D09E\"\n\n\
             [cwmp]\nacs_url = \"http://127.0.0.1:{acs_port}/acs\"\nconnection_request_port = {cr_port}\n\n\
             [firmware]\ncommand = [\"{}\"]\n",
            program.display()
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
            // The in-memory platform, whose values this test knows.
            .env("DMAGENT_PLATFORM", "memory")
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
    acs.post_with("1 BOOT");

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
    // Status, for scripts. (The boot session counts once it has ended,
    // a little after the ACS saw its Inform: asked again until then.)
    let status = || -> serde_json::Value {
        serde_json::from_str(&text(&dmagent(&["status", "--json"]))).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let now = status();
        if now["cwmp"]["sessions_ok"].as_u64() >= Some(1) {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the boot session is not counted in status: {now}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["agent"]["started"].as_i64().unwrap() > 0);
    assert_eq!(
        status["cwmp"]["acs_url"],
        format!("http://127.0.0.1:{acs_port}/acs")
    );
    assert!(status["lwm2m"].is_null(), "LwM2M is not configured");
    assert_eq!(status["firmware"]["state"], 0);
    assert!(status["firmware"]["transfer"].is_null(), "no transfer yet");
    let human = text(&dmagent(&["status"]));
    assert!(human.contains("cwmp        http://127.0.0.1:"), "{human}");
    assert!(human.contains("firmware    idle, last result 0"), "{human}");
    // Firmware through the CLI: a pull that fails says why; one that works
    // says how much came, status shows the transfer, and update applies it.
    let missing = dmagent(&[
        "firmware",
        "pull",
        &format!("http://127.0.0.1:{http_port}/missing"),
    ]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("invalid URI (result 7)"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let pulled = text(&dmagent(&[
        "firmware",
        "pull",
        &format!("http://127.0.0.1:{http_port}/image"),
    ]));
    assert_eq!(pulled, format!("downloaded {} bytes\n", image.len()));
    let status: serde_json::Value =
        serde_json::from_str(&text(&dmagent(&["status", "--json"]))).unwrap();
    assert_eq!(status["firmware"]["state"], 2, "{status}");
    assert_eq!(status["firmware"]["transfer"]["done"], image.len());
    assert_eq!(status["firmware"]["transfer"]["total"], image.len());
    // A named SHA-256: another image is refused, the right one accepted.
    let url = format!("http://127.0.0.1:{http_port}/image");
    let wrong = dmagent(&["firmware", "pull", &url, "--sha256", &"0".repeat(64)]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("integrity check failed (result 5)"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let image_file = dir.path().join("image.copy");
    std::fs::write(&image_file, &image).unwrap();
    let sum = Command::new("sha256sum").arg(&image_file).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    assert_eq!(
        text(&dmagent(&["firmware", "pull", &url, "--sha256", sum])),
        format!("downloaded {} bytes\n", image.len())
    );
    let bad = dmagent(&["firmware", "pull", &url, "--sha256", "xyz"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64 hexadecimal digits"));
    // 64 bytes with two-byte characters off the even offsets: refused, and
    // the agent (which once sliced them by byte pairs, and panicked) still
    // answers.
    let odd = format!("a{}b", "é".repeat(31));
    assert_eq!(odd.len(), 64);
    let bad = dmagent(&["firmware", "pull", &url, "--sha256", &odd]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64 hexadecimal digits"));
    text(&dmagent(&["status"]));
    assert_eq!(text(&dmagent(&["firmware", "update"])), "updated\n");
    assert_eq!(std::fs::read(&applied).unwrap(), image);
    // A session on demand, with the event asked for.
    text(&dmagent(&["inform", "2 PERIODIC"]));
    acs.post_with("<EventCode>2 PERIODIC</EventCode>");
    let bad = dmagent(&["inform", "7 TRANSFER COMPLETE"]);
    assert!(!bad.status.success());
    // Requests of the CPE's own: GetRPCMethods and RequestDownload.
    text(&dmagent(&["inform", "GetRPCMethods"]));
    acs.post_with("<cwmp:GetRPCMethods/>");
    text(&dmagent(&["request-download"]));
    let request = acs.post_with("<cwmp:RequestDownload>");
    assert!(
        request.contains("<FileType>1 Firmware Upgrade Image</FileType>"),
        "{request}"
    );
    // Kicked: the ACS's NextURL is printed.
    let next = text(&dmagent(&[
        "kick",
        "setup",
        "--referer",
        "http://portal.example/",
        "--next",
        "http://portal.example/done",
    ]));
    assert_eq!(next, "http://portal.example/welcome\n");
    let kicked = acs.post_with("<cwmp:Kicked>");
    assert!(
        kicked.contains("<Command>setup</Command><Referer>http://portal.example/</Referer>"),
        "{kicked}"
    );
    let long = dmagent(&["kick", &"c".repeat(40)]);
    assert!(!long.status.success());
    assert!(
        String::from_utf8_lossy(&long.stderr).contains("Command is longer than 32"),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );
    // Stop: the agent exits cleanly.
    text(&dmagent(&["stop"]));
    assert!(agent.0.wait().unwrap().success());
}
