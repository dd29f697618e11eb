//! What an operator sees of a running agent: why a session or a
//! registration failed, in the log at info and in `status --json`; log
//! files and the journal without colour codes; SIGHUP as a reload.

use dm_tests::process::Guard;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dm_tests::agent::{cli_on_bus, wait_for_control_api};

/// An ACS that answers every POST with 403 Forbidden.
fn forbidding_acs() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = writer.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

/// The agent's log lines as they come (stderr piped).
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    dm_tests::process::lines(child.stderr.take().unwrap())
}

/// The first line with every one of `needles`, within a minute; every
/// line read on the way must be free of ANSI escapes (stderr is a pipe).
fn line_with(lines: &mpsc::Receiver<String>, needles: &[&str]) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no log line with {needles:?}: {e}"));
        assert!(!line.contains('\x1b'), "colour in a piped log: {line:?}");
        if needles.iter().all(|n| line.contains(n)) {
            return line;
        }
    }
}

fn agent_on_bus(config: &Path, state: &Path, bus: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmagent"));
    command
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .env_remove("DMAGENT_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .env("DMAGENT_PLATFORM", "memory")
        .env("DMAGENT_BUS", "system")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    command
}

/// An ACS that answers 403 and a DTLS server that does not know our key:
/// each failure is said at info (warn) with its reason, and `status
/// --json` carries it, long before the minute a handshake may take.
#[test]
fn a_forbidding_acs_and_a_wrong_psk_are_in_the_log_and_the_status() {
    let stack = dm_tests::dbus_stack::Stack::mock();
    let acs_port = forbidding_acs();
    let dtls_port = dm_tests::files::free_udp_port();
    // s_server ends when its input does: kept open by the guard.
    let _dtls = dm_tests::dtls::psk_server(
        &format!("127.0.0.1:{dtls_port}"),
        "dev",
        "000102030405060708090a0b0c0d0e0f",
        Stdio::null(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-OPS\"\n\n\
             [cwmp]\nacs_url = \"http://127.0.0.1:{acs_port}/acs\"\n\
             connection_request_port = {}\n\n\
             [lwm2m]\nserver_uri = \"coaps://127.0.0.1:{dtls_port}\"\nendpoint = \"ops\"\n\
             security = \"psk\"\npsk_identity = \"dev\"\n\
             psk_key = \"ffffffffffffffffffffffffffffffff\"\n",
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        agent_on_bus(&config, &dir.path().join("state"), &stack.bus)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = log_lines(&mut agent.0);
    let cwmp = line_with(&lines, &["CWMP session failed", "HTTP 403"]);
    assert!(cwmp.contains("WARN"), "{cwmp}");
    let dtls = line_with(&lines, &["DTLS session failed", "PSK identity or key"]);
    assert!(dtls.contains("WARN"), "{dtls}");

    let out = cli_on_bus(
        env!("CARGO_BIN_EXE_dmagent"),
        &stack.bus,
        &["status", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acs_error = status["cwmp"]["last_error"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(acs_error.contains("HTTP 403"), "{status}");
    assert!(status["cwmp"]["last_error"]["at"].as_i64().unwrap() > 0);
    let server = &status["lwm2m"]["servers"][0];
    let lwm2m_error = server["last_error"].as_str().unwrap_or_default();
    assert!(
        lwm2m_error.starts_with("DTLS:") && lwm2m_error.contains("PSK"),
        "{status}"
    );
    assert_eq!(server["registered"], false);
    // The same for people.
    let human = cli_on_bus(env!("CARGO_BIN_EXE_dmagent"), &stack.bus, &["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("last failure") && human.contains("HTTP 403"),
        "{human}"
    );
    assert!(human.contains("(DTLS: "), "{human}");
}

/// Written to a file, the log has no colour codes; when that file is the
/// journal's stream (JOURNAL_STREAM names it), each line starts with its
/// syslog priority instead of a time stamp.
#[test]
fn a_log_file_has_no_colour_and_the_journal_gets_priorities() {
    let stack = dm_tests::dbus_stack::Stack::mock();
    for journal in [false, true] {
        let acs = dm_tests::mini_acs::MiniAcs::start(Box::new(|_| None));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dmagent.toml");
        std::fs::write(
            &config,
            format!(
                "[device]\nserial_number = \"SN-LOG\"\n\n[cwmp]\nacs_url = \"{}\"\n\
                 connection_request_port = {}\n\n[lwm2m]\nenabled = false\n\
                 server_uri = \"coap://127.0.0.1:1\"\n",
                acs.url(),
                dm_tests::files::free_tcp_port()
            ),
        )
        .unwrap();
        let log = dir.path().join("agent.log");
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut command = agent_on_bus(&config, &dir.path().join("state"), &stack.bus);
        if journal {
            command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let mut agent = Guard(command.stderr(file).spawn().unwrap());
        // A session ran (and was logged), and the agent answers its API.
        acs.post_with("1 BOOT");
        wait_for_control_api(&stack.bus);
        let stopped = cli_on_bus(env!("CARGO_BIN_EXE_dmagent"), &stack.bus, &["stop"]);
        assert!(stopped.status.success());
        assert!(agent.0.wait().unwrap().success());

        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains('\x1b'), "colour in a log file:\n{text}");
        assert!(text.contains("CWMP session started"), "{text}");
        for line in text.lines() {
            if journal {
                let priority = line.get(..3).unwrap_or_default();
                assert!(
                    ["<3>", "<4>", "<6>", "<7>"].contains(&priority),
                    "no priority: {line:?}"
                );
            } else {
                assert!(line.starts_with("20"), "no time stamp: {line:?}");
            }
        }
        if journal {
            assert!(text.contains("<6> INFO"), "{text}");
        }
    }
}

/// SIGHUP re-reads the configuration, as `dmagent reload` does, and the
/// agent goes on (procd and sysvinit send it to reload; it used to kill).
#[test]
fn sighup_reloads_the_configuration() {
    let stack = dm_tests::dbus_stack::Stack::mock();
    let acs = dm_tests::mini_acs::MiniAcs::start(Box::new(|_| None));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    let write = |interval: u32| {
        std::fs::write(
            &config,
            format!(
                "[device]\nserial_number = \"SN-HUP\"\n\n[cwmp]\nacs_url = \"{}\"\n\
                 periodic_interval = {interval}\nconnection_request_port = {}\n\n\
                 [lwm2m]\nenabled = false\nserver_uri = \"coap://127.0.0.1:1\"\n",
                acs.url(),
                dm_tests::files::free_tcp_port()
            ),
        )
        .unwrap();
    };
    write(3600);
    let mut agent = Guard(
        agent_on_bus(&config, &dir.path().join("state"), &stack.bus)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = log_lines(&mut agent.0);
    wait_for_control_api(&stack.bus);
    let get = || {
        let out = cli_on_bus(
            env!("CARGO_BIN_EXE_dmagent"),
            &stack.bus,
            &["get", "Device.ManagementServer.PeriodicInformInterval"],
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        get(),
        "Device.ManagementServer.PeriodicInformInterval 3600\n"
    );
    write(1200);
    let hup = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    line_with(&lines, &["configuration reloaded"]);
    assert_eq!(
        get(),
        "Device.ManagementServer.PeriodicInformInterval 1200\n"
    );
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent goes on");
}
