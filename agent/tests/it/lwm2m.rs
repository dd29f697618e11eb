//! End to end over real UDP on 127.0.0.1 against an LwM2M server no one
//! here wrote the CoAP of: aiocoap (PyPI) driven by
//! tests/peers/lwm2m_server.py. The script prints one JSON object per step;
//! this test asserts on those.

use dm_tests::process::Guard;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use dm_tests::py_peers::{json_lines, next_json as next};

#[test]
fn aiocoap_server_registers_reads_writes_observes_executes_creates_deletes_discovers() {
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-LW\"\noui = \"00D09E\"\nmanufacturer = \"Acme\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-e2e\"\nlifetime = 300\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            // The in-memory platform, whose values this test knows.
            .env("DMAGENT_PLATFORM", "memory")
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let register = next(&events);
    assert_eq!(register["event"], "register");
    assert_eq!(register["query"]["ep"], "dmagent-e2e");
    assert_eq!(register["query"]["lt"], "300");
    assert_eq!(register["query"]["lwm2m"], "1.1");
    assert_eq!(register["content_format"], 40);
    let links = register["links"].as_str().unwrap();
    // Registered as LwM2M 1.1: the 1.1 version of the objects is named.
    assert!(links.contains("</3>;ver=1.1,</3/0>"), "{links}");

    let mut steps: HashMap<String, Value> = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    let step = |name: &str| {
        steps
            .get(name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
    };
    assert_eq!(step("read-text")["code"], "2.05 Content");
    assert_eq!(step("read-text")["text"], "Acme");
    assert_eq!(step("read-tlv")["content_format"], 11542);
    assert!(
        step("read-tlv")["payload"]
            .as_str()
            .unwrap()
            .starts_with("c40041636d65"),
        "{}",
        step("read-tlv")
    );
    assert_eq!(step("read-senml")["content_format"], 110);
    let senml: Value = serde_json::from_str(step("read-senml")["text"].as_str().unwrap()).unwrap();
    assert_eq!(senml[0]["bn"], "/3/0/");
    assert_eq!(senml[0]["vs"], "Acme");
    assert_eq!(step("write")["code"], "2.04 Changed");
    assert_eq!(step("observe")["text"], "120");
    assert_eq!(step("notification")["text"], "150");
    assert_eq!(step("execute")["code"], "2.04 Changed");
    assert_eq!(step("create")["code"], "2.01 Created");
    assert_eq!(step("create")["location"], serde_json::json!(["12", "2"]));
    assert_eq!(step("read-created")["text"], "guest");
    assert_eq!(step("delete")["code"], "2.02 Deleted");
    assert_eq!(step("read-deleted")["code"], "4.04 Not Found");
    assert!(
        step("discover")["text"]
            .as_str()
            .unwrap()
            .starts_with("</1/0>,</1/0/0>")
    );

    assert_eq!(step("firmware-push")["code"], "2.04 Changed");
    assert_eq!(step("read-composite")["code"], "2.05 Content");
    assert_eq!(step("read-composite")["content_format"], 110);
    let composite: Value =
        serde_json::from_str(step("read-composite")["text"].as_str().unwrap()).unwrap();
    assert_eq!(composite[0]["n"], "/3/0/0");
    assert_eq!(composite[0]["vs"], "Acme");
    assert_eq!(composite[1]["n"], "/1/0/1");
    assert_eq!(composite[1]["v"], 150);
    assert_eq!(step("write-composite")["code"], "2.04 Changed");
    assert_eq!(step("read-after-composite")["text"], "composite");

    // SIGTERM: the agent de-registers before it exits.
    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        let event = next(&events);
        if event["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// The agent registers over DTLS 1.2 PSK (TLS_PSK_WITH_AES_128_CCM_8):
/// OpenSSL's s_server, listening on `host` (an IPv4 address or a
/// bracketed IPv6 one), completes the handshake and prints the decrypted
/// Register request.
fn register_over_dtls(host: &str) {
    let port = std::net::UdpSocket::bind(format!("{host}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = dm_tests::dtls::psk_server(
        &format!("{host}:{port}"),
        "dev-dtls",
        "000102030405060708090a0b0c0d0e0f",
        Stdio::piped(),
    );
    let output = dm_tests::dtls::Output::of(&mut server);
    let wait_for = |needle: &str| output.wait_for(needle);
    wait_for("ACCEPT");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DTLS\"\n\n[lwm2m]\nserver_uri = \"coaps://{host}:{port}\"\n\
             endpoint = \"dmagent-dtls\"\nsecurity = \"psk\"\npsk_identity = \"dev-dtls\"\n\
             psk_key = \"000102030405060708090a0b0c0d0e0f\"\n"
        ),
    )
    .unwrap();
    let _agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cipher = wait_for("CIPHER is");
    assert!(cipher.contains("PSK-AES128-CCM8"), "{cipher}");
    let register = wait_for("ep=dmagent-dtls");
    assert!(register.contains("rd"), "{register}");
}

#[test]
fn registers_over_dtls_psk_with_openssl_s_server() {
    register_over_dtls("127.0.0.1");
}

/// DTLS over IPv6 (coaps://[::1]:PORT): a field case from the issue.
#[test]
fn registers_over_dtls_over_ipv6() {
    register_over_dtls("[::1]");
}

/// DTLS 1.2 PSK with tinydtls, the DTLS of Wakaama and of many LwM2M
/// servers (here under aiocoap's coaps:// server): the agent registers,
/// the server reads /3/0/0 over the agent's session, and the agent
/// de-registers over it when stopped.
#[test]
fn registers_over_dtls_psk_with_tinydtls_and_answers_a_read() {
    let port = dm_tests::files::free_udp_port();
    let (identity, key) = ("dev-tinydtls", "0f0e0d0c0b0a09080706050403020100");
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "psk", identity, key])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-TINY\"\nmanufacturer = \"Acme\"\n\n[lwm2m]\n\
             server_uri = \"coaps://127.0.0.1:{port}\"\nendpoint = \"dmagent-tinydtls\"\n\
             security = \"psk\"\npsk_identity = \"{identity}\"\npsk_key = \"{key}\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .env("DMAGENT_PLATFORM", "memory")
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let register = next(&events);
    assert_eq!(register["event"], "register", "{register}");
    assert_eq!(register["query"]["ep"], "dmagent-tinydtls");
    let read = next(&events);
    assert_eq!(read["step"], "read", "{read}");
    assert_eq!(read["code"], "2.05 Content");
    assert_eq!(read["text"], "Acme");

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(next(&events)["event"], "deregister");
    assert!(agent.0.wait().unwrap().success());
}

/// Client-initiated bootstrap with aiocoap as the bootstrap server: it
/// deletes, writes a Security and a Server instance, discovers and
/// finishes; the agent then registers with the server it was given.
#[test]
fn bootstraps_then_registers_with_the_provisioned_server() {
    let free = || dm_tests::files::free_udp_port();
    let (port, bootstrap_port) = (free(), free());
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "bootstrap".into(),
                bootstrap_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    assert_eq!(next(&events)["event"], "bootstrap-listening");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-BS\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{bootstrap_port}\"\n\
             bootstrap = true\nendpoint = \"dmagent-bs\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let request = next(&events);
    assert_eq!(request["event"], "bootstrap-request");
    assert_eq!(request["query"]["ep"], "dmagent-bs");
    // The finish step and the registration it leads to race in the
    // script's output: collect until both are in.
    let mut seen = HashMap::new();
    let mut register = None;
    while register.is_none() || !seen.contains_key("bootstrap-finish") {
        let event = next(&events);
        if event["event"] == "register" {
            register = Some(event.clone());
        }
        if let Some(step) = event["step"].as_str() {
            seen.insert(step.to_owned(), event.clone());
        }
    }
    let register = register.unwrap();
    assert_eq!(seen["bootstrap-delete"]["code"], "2.02 Deleted");
    assert_eq!(seen["bootstrap-write-security"]["code"], "2.04 Changed");
    assert_eq!(seen["bootstrap-write-server"]["code"], "2.04 Changed");
    let discover = seen["bootstrap-discover"]["text"].as_str().unwrap();
    assert!(discover.contains("</0/1>;ssid=202"), "{discover}");
    assert_eq!(seen["bootstrap-finish"]["code"], "2.04 Changed");
    // Registered with the server bootstrap provisioned, lifetime from /1/1.
    assert_eq!(register["query"]["ep"], "dmagent-bs");
    assert_eq!(register["query"]["lt"], "120");

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
    drop(server);

    // Started again on the same state: the account from the bootstrap is
    // kept, so the agent registers at once (no bootstrap server runs now).
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "write".into(),
                "/1/1/1".into(),
                "300".into(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let register = next(&events);
    assert_eq!(register["event"], "register");
    assert_eq!(register["query"]["lt"], "120");
    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Bootstrap provisions two servers; the agent registers with both and
/// de-registers from both at shutdown.
#[test]
fn bootstraps_then_registers_with_both_provisioned_servers_at_once() {
    let free = || dm_tests::files::free_udp_port();
    let (port, bootstrap_port, second_port) = (free(), free(), free());
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "bootstrap".into(),
                bootstrap_port.to_string(),
                second_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    assert_eq!(next(&events)["event"], "listening");
    assert_eq!(next(&events)["event"], "bootstrap-listening");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-BS\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{bootstrap_port}\"\n\
             bootstrap = true\nendpoint = \"dmagent-bs\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let request = next(&events);
    assert_eq!(request["event"], "bootstrap-request");
    assert_eq!(request["query"]["ep"], "dmagent-bs");
    // The finish step and the registration it leads to race in the
    // script's output: collect until both are in.
    let mut seen = HashMap::new();
    let mut registers = HashMap::new();
    while registers.len() < 2 || !seen.contains_key("bootstrap-finish") {
        let event = next(&events);
        if event["event"] == "register" {
            registers.insert(event["port"].as_u64().unwrap() as u16, event.clone());
        }
        if let Some(step) = event["step"].as_str() {
            seen.insert(step.to_owned(), event.clone());
        }
    }
    let register = &registers[&port];
    assert_eq!(registers[&second_port]["query"]["ep"], "dmagent-bs");
    assert_eq!(seen["bootstrap-write-security-2"]["code"], "2.04 Changed");
    assert_eq!(seen["bootstrap-write-server-2"]["code"], "2.04 Changed");
    assert_eq!(seen["bootstrap-delete"]["code"], "2.02 Deleted");
    assert_eq!(seen["bootstrap-write-security"]["code"], "2.04 Changed");
    assert_eq!(seen["bootstrap-write-server"]["code"], "2.04 Changed");
    let discover = seen["bootstrap-discover"]["text"].as_str().unwrap();
    assert!(discover.contains("</0/1>;ssid=202"), "{discover}");
    assert_eq!(seen["bootstrap-finish"]["code"], "2.04 Changed");
    // Registered with the server bootstrap provisioned, lifetime from /1/1.
    assert_eq!(register["query"]["ep"], "dmagent-bs");
    assert_eq!(register["query"]["lt"], "120");

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // De-registered from both.
    let mut deregistered = std::collections::HashSet::new();
    while deregistered.len() < 2 {
        let event = next(&events);
        if event["event"] == "deregister" {
            deregistered.insert(event["port"].as_u64().unwrap() as u16);
        }
    }
    assert_eq!(deregistered, [port, second_port].into_iter().collect());
    assert!(agent.0.wait().unwrap().success());
}

/// Through the agent to the host: on the D-Bus platform, an LwM2M Create
/// on /12 makes a real NetworkManager profile (keyfile) appear and a
/// Write of /11/1/1 changes the real oFono context's APN.
#[test]
fn lwm2m_writes_reach_real_network_manager_and_ofono() {
    use dm_platform::Network as _;
    let stack = dm_tests::dbus_stack::Stack::start();
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "platform".into(), "/11/1/1".into()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DBUS\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-dbus\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["create-wlan"]["code"], "2.01 Created", "{steps:?}");
    assert_eq!(steps["write-apn"]["code"], "2.04 Changed", "{steps:?}");
    let keyfile = stack
        .keyfile_with("ssid=dmagent-e2e")
        .expect("NetworkManager has the profile");
    assert!(keyfile.contains("type=wifi"), "{keyfile}");
    let network = dm_platform::dbus::DbusNetwork::start(Some(stack.bus.clone())).unwrap();
    assert!(
        network.apn_contexts().iter().any(|c| c.apn == "iot.e2e"),
        "{:?}",
        network.apn_contexts()
    );

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// An LwM2M Execute of /3/0/4 on the D-Bus platform: the agent answers,
/// de-registers, asks logind to reboot (python-dbusmock's, which records
/// the call) and exits.
#[test]
fn an_lwm2m_reboot_deregisters_then_goes_through_logind() {
    let mut stack = dm_tests::dbus_stack::Stack::mock();
    assert_eq!(stack.command("start logind"), "ok");
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "reboot".into()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-RB\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-reboot\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut executed = None;
    loop {
        let event = next(&events);
        if event["step"] == "execute-reboot" {
            executed = Some(event.clone());
        }
        if event["event"] == "deregister" {
            break;
        }
    }
    assert_eq!(
        executed.expect("the Execute was answered")["code"],
        "2.04 Changed"
    );
    assert!(
        agent.0.wait().unwrap().success(),
        "the agent exits after the reboot request"
    );
    let calls = stack.command(
        "call org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.DBus.Mock GetCalls",
    );
    assert!(calls.contains("\"Reboot\""), "{calls}");
}

/// Field case (issue 8): a Reboot (/3/0/4) or Factory Reset (/3/0/5)
/// executed by the server de-registers first, then performs the action:
/// the action's command creates a marker file, which the server finds
/// still absent when the De-register arrives, and present after the agent
/// has exited.
#[test]
fn reboot_and_factory_reset_deregister_before_acting() {
    for (resource, setting) in [
        ("/3/0/4", "reboot_command"),
        ("/3/0/5", "factory_reset_command"),
    ] {
        let port = dm_tests::files::free_udp_port();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("acted");
        let mut server = Guard(
            dm_tests::py_peers::lwm2m_server()
                .args([port.to_string(), "host-action".into(), resource.into()])
                .arg(&marker)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let events = json_lines(&mut server.0);
        assert_eq!(next(&events)["event"], "listening");
        let config = dir.path().join("dmagent.toml");
        std::fs::write(
            &config,
            format!(
                "[device]\nserial_number = \"SN-ACT\"\n\n[platform]\n{setting} = [\"touch\", {:?}]\n\n\
                 [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-act\"\n",
                marker.to_str().unwrap()
            ),
        )
        .unwrap();
        let mut agent = dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &config,
            &dir.path().join("state"),
        );
        let mut executed = None;
        let deregister = loop {
            let event = next(&events);
            if event["step"] == "execute" {
                executed = Some(event.clone());
            }
            if event["event"] == "deregister" {
                break event;
            }
        };
        assert_eq!(
            executed.expect("the Execute was answered")["code"],
            "2.04 Changed",
            "{resource}"
        );
        assert_eq!(
            deregister["action_done"], false,
            "{resource}: de-registered before acting"
        );
        assert!(agent.0.wait().unwrap().success(), "{resource}");
        assert!(marker.exists(), "{resource}: then acted");
    }
}

/// The feature no other agent has, on the real daemons: NetworkManager
/// changes veth0's address, its signal reaches the D-Bus platform, the
/// tree changes, and the LwM2M server observing /4/0/4 (IP addresses) is
/// notified.
#[test]
fn an_address_change_in_network_manager_is_notified_over_lwm2m() {
    let mut stack = dm_tests::dbus_stack::Stack::start();
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "observe".into(), "/4/0/4".into()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-IP\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-ip\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let observed = loop {
        let event = next(&events);
        if event["step"] == "observe" {
            break event;
        }
    };
    assert_eq!(observed["code"], "2.05 Content");
    assert!(
        observed["text"].as_str().unwrap().contains("198.51.100.1"),
        "{observed}"
    );
    assert_eq!(
        stack.command("nm connection modify wired ipv4.addresses 198.51.100.77/24"),
        "ok"
    );
    assert_eq!(stack.command("nm connection up wired"), "ok");
    loop {
        let event = next(&events);
        if event["event"] == "notification"
            && event["text"].as_str().unwrap().contains("198.51.100.77")
        {
            break;
        }
    }
    // The address changed: a full Register from a new socket follows,
    // never an Update (a field case: NAT and DTLS bindings die with it).
    loop {
        let event = next(&events);
        assert_ne!(event["event"], "update", "{event}");
        if event["event"] == "register" {
            assert_eq!(event["query"]["ep"], "dmagent-ip");
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(agent.0.wait().unwrap().success());
}

/// The IG60-style launcher in front of the real agent: `--server HOST
/// --server-port PORT -e ENDPOINT` registers there under that endpoint, and
/// SIGTERM to the launcher reaches the agent, which de-registers.
#[test]
fn the_launcher_registers_with_the_server_it_is_given() {
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "observe".into(), "/3/0/0".into()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let dir = tempfile::tempdir().unwrap();
    let launcher = Guard(
        Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/dmagent-launch"))
            .args(["--server", "127.0.0.1", "--server-port"])
            .arg(port.to_string())
            .args([
                "-e",
                "my-ig60",
                "--no-cwmp",
                "--serial",
                "SN-LAUNCH",
                "--state-dir",
            ])
            .arg(dir.path().join("state"))
            .env("DMAGENT_BIN", env!("CARGO_BIN_EXE_dmagent"))
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let register = next(&events);
    assert_eq!(register["event"], "register");
    assert_eq!(register["query"]["ep"], "my-ig60");
    let status = Command::new("kill")
        .args(["-TERM", &launcher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    let mut launcher = launcher;
    assert!(launcher.0.wait().unwrap().success());
}

/// An IPv6 server URI (`coap://[::1]:PORT`): the agent registers over IPv6
/// and answers there.
#[test]
fn registers_with_an_ipv6_server_uri() {
    let port = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "observe".into(), "/3/0/2".into()])
            .env("LWM2M_BIND", "::1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-V6\"\n\n[lwm2m]\nserver_uri = \"coap://[::1]:{port}\"\nendpoint = \"v6\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(next(&events)["event"], "register");
    let observed = next(&events);
    assert_eq!(observed["step"], "observe");
    assert_eq!(observed["text"], "SN-V6");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Firmware push over LwM2M through the agent: a 5 MiB package in Block1
/// blocks lands in a file (never whole in memory), State goes Downloaded,
/// Update runs the configured program with the image path, which gets
/// the exact bytes, and the Update Result notified is 1. Both protocols at
/// once: the ACS is told with AutonomousTransferComplete.
#[test]
fn a_pushed_firmware_package_is_applied_by_the_configured_program() {
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(dir.path());

    // The ACS hears of it: AutonomousTransferComplete (TR-069 §A.3.3.3).
    let acs = dm_tests::mini_acs::MiniAcs::start(Box::new(|body| {
        body.contains("<cwmp:AutonomousTransferComplete>")
            .then(|| "<cwmp:AutonomousTransferCompleteResponse/>".to_owned())
    }));
    let cr_port = dm_tests::files::free_tcp_port();
    let size = 5 * 1024 * 1024;
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "firmware".into(), size.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-FW\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"fw\"\n\n[cwmp]\nacs_url = \"{}\"\nconnection_request_port = {cr_port}\n\
             autonomous_transfer_complete = true\n\n\
             [firmware]\ncommand = [\"{}\"]\n",
            acs.url(),
            program.display()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["result-before"]["text"], "0");
    assert_eq!(steps["push"]["code"], "2.04 Changed", "{steps:?}");
    assert_eq!(steps["state-after-push"]["text"], "2", "Downloaded");
    assert_eq!(steps["update"]["code"], "2.04 Changed");
    assert_eq!(steps["result-after"]["text"], "1", "success");
    assert_eq!(steps["state-after-update"]["text"], "0", "Idle");
    let expected: Vec<u8> = (0..size).map(|i| (i % 256) as u8).collect();
    assert_eq!(std::fs::read(&applied).unwrap(), expected);
    let inform = acs.post_with("10 AUTONOMOUS TRANSFER COMPLETE");
    assert!(!inform.contains("7 TRANSFER COMPLETE"), "{inform}");
    let atc = acs.post_with("<cwmp:AutonomousTransferComplete>");
    assert!(atc.contains("<FaultCode>0</FaultCode>"), "{atc}");
    assert!(
        atc.contains(&format!("<FileSize>{size}</FileSize>")),
        "{atc}"
    );
    assert!(atc.contains("<IsDownload>1</IsDownload>"), "{atc}");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Pull delivery: a Package URI that answers 404 leaves the state Idle
/// with Update Result 7; a good one is downloaded (streamed to the image
/// file), then Update applies it and the result is 1. /5/0/8 says CoAP,
/// CoAPS, HTTP and HTTPS are pulled.
#[test]
fn a_firmware_package_is_pulled_over_http_and_applied() {
    let image: Vec<u8> = (0..5_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(dir.path());
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "firmware-pull".into(),
                format!("http://127.0.0.1:{http_port}/missing"),
                format!("http://127.0.0.1:{http_port}/image"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-PULL\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"pull\"\n\n[firmware]\ncommand = [\"{}\"]\n",
            program.display()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["write-bad-uri"]["code"], "2.04 Changed");
    assert_eq!(steps["bad-uri-result"]["text"], "7");
    assert_eq!(steps["downloaded"]["text"], "2");
    assert_eq!(steps["updated"]["text"], "1");
    let protocols: Value =
        serde_json::from_str(steps["protocols"]["text"].as_str().unwrap()).unwrap();
    let values: Vec<i64> = protocols
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["v"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [0, 1, 2, 3]);
    assert_eq!(std::fs::read(&applied).unwrap(), image);
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Disk full during a push: the state directory is a 256 KiB tmpfs, the
/// package 1 MiB. The push is refused (4.13), Update Result 2, State
/// Idle, and the agent goes on (its state file still saves).
#[test]
fn a_push_that_fills_the_disk_is_refused_with_result_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "dmagent-test"])
        .arg(&state)
        .status()
        .expect("mount (the tests run as root, as CI does)");
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let _tmpfs = Tmpfs(state.clone());
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "firmware-full".into(),
                (1024 * 1024).to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-FULL\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"full\"\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(&state)
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(
        steps["push"]["code"], "4.13 Request Entity Too Large",
        "{steps:?}"
    );
    assert_eq!(steps["result"]["text"], "2");
    assert_eq!(steps["state"]["text"], "0");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Pull delivery over CoAP: a 5 MB package from the server's own
/// coap://.../fw/image.bin, which aiocoap serves in Block2 blocks; the
/// agent asks block after block (1024 bytes) into the image file, then
/// Update applies it byte for byte.
#[test]
fn a_5_mb_firmware_package_is_pulled_over_coap_block2_and_applied() {
    let size = 5 * 1024 * 1024;
    let image: Vec<u8> = (0..size).map(|i| (i % 256) as u8).collect();
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(dir.path());
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "firmware-coap".into(), size.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-COAP-PULL\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"coap-pull\"\n\n[firmware]\ncommand = [\"{}\"]\n",
            program.display()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["write-uri"]["code"], "2.04 Changed");
    assert_eq!(steps["downloaded"]["text"], "2");
    // aiocoap renders the resource once and serves its blocks from a
    // cache; 5 MB cannot come in one datagram (64 KiB at most), so every
    // byte came block-wise.
    assert_eq!(steps["gets"]["count"], 1);
    assert_eq!(steps["updated"]["text"], "1");
    assert!(
        std::fs::read(&applied).unwrap() == image,
        "the applied image differs"
    );
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Field case (issue 8, from Anjay's and Zephyr's trackers): a long
/// firmware download must not starve the registration. The package server
/// stalls mid-transfer; Updates keep coming meanwhile (every 3 s here, from
/// a 4 s NAT timeout).
#[test]
fn updates_continue_while_a_firmware_download_runs() {
    let (http_port, started) = dm_tests::files::stalling_server();
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "write".into(),
                "/5/0/1".into(),
                format!("http://127.0.0.1:{http_port}/image"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-LONG\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"long-download\"\nnat_timeout = 4\n"
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(next(&events)["event"], "register");
    {
        use std::io::Write as _;
        let stdin = server.0.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
    started
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the download started");
    let mut updates = 0;
    while updates < 2 {
        let event = next(&events);
        if event["event"] == "update" {
            updates += 1;
        }
    }
    // Those Updates came while the download still ran: State (/5/0/3)
    // is 1, Downloading, and the server is still holding the transfer.
    {
        use std::io::Write as _;
        let stdin = server.0.stdin.as_mut().unwrap();
        stdin.write_all(b"read /5/0/3\n").unwrap();
        stdin.flush().unwrap();
    }
    let state = loop {
        let event = next(&events);
        if event["step"] == "read" {
            break event;
        }
    };
    assert_eq!(state["text"], "1", "{state}");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Field case: /5/0/10 Cancel was answered 2.04 and ignored, the
/// download went on. Against aiocoap: a pull stalls mid-transfer, the
/// server executes Cancel, the pull stops, its partial image is deleted,
/// State is 0 and Update Result 10 "Firmware update cancelled".
#[test]
fn cancel_stops_a_firmware_pull_and_deletes_its_image() {
    let (http_port, started) = dm_tests::files::stalling_server();
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "write".into(),
                "/5/0/1".into(),
                format!("http://127.0.0.1:{http_port}/image"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-CANCEL\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"cancel\"\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(&state)
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(next(&events)["event"], "register");
    let mut say = |line: &str| {
        use std::io::Write as _;
        let stdin = server.0.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    say("go");
    started
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the download started");
    let partial = state.join("firmware/image.part");
    assert!(partial.exists(), "the pull is writing its image");
    say("exec /5/0/10");
    let exec = loop {
        let event = next(&events);
        if event["step"] == "exec" {
            break event;
        }
    };
    assert_eq!(exec["code"], "2.04 Changed", "{exec}");
    let mut read = |path: &str| {
        say(&format!("read {path}"));
        loop {
            let event = next(&events);
            if event["step"] == "read" {
                return event["text"].as_str().unwrap_or_default().to_owned();
            }
        }
    };
    // The Execute's answer comes before the agent acts on it: read until
    // the state machine shows the cancel.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut result = read("/5/0/5");
    while result != "10" && std::time::Instant::now() < deadline {
        result = read("/5/0/5");
    }
    assert_eq!(result, "10");
    assert_eq!(read("/5/0/3"), "0");
    assert!(!partial.exists(), "the partial image is deleted");
    assert!(!state.join("firmware/image.bin").exists());
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(agent.0.wait().unwrap().success());
}

/// Field case: a server host name that did not resolve at start (a boot
/// before the network is up) meant LwM2M never started while the process
/// lived on. The name is looked up at each attempt, without blocking, and
/// again after a growing wait. The agent runs with a hosts file of its own
/// (a private mount namespace) that first lacks the name, then has it.
#[test]
fn a_server_name_that_resolves_later_is_registered_with() {
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "write".into(),
                "/1/0/1".into(),
                "120".into(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DNS\"\n\n[lwm2m]\n\
             server_uri = \"coap://lwm2m-server.test:{port}\"\nendpoint = \"dns-later\"\n"
        ),
    )
    .unwrap();
    let agent = format!(
        "mount --bind '{}' /etc/hosts && exec '{}' --config '{}' --state-dir '{}' --log-format json run",
        hosts.display(),
        env!("CARGO_BIN_EXE_dmagent"),
        config.display(),
        dir.path().join("state").display()
    );
    let mut agent = Guard(
        Command::new("unshare")
            .args(["--map-root-user", "--mount", "sh", "-c", &agent])
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = {
        let stderr = agent.0.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent says why it is not registering");
        if line.contains("name not resolved") {
            assert!(line.contains("lwm2m-server.test"), "{line}");
            break;
        }
    }
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 lwm2m-server.test\n").unwrap();
    assert_eq!(next(&events)["event"], "register");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Software Management (/9, issue 6) against aiocoap: the server creates
/// an instance, writes a Package URI (pulled over HTTP), Install runs the
/// configured program with the package, which names it; Activate and
/// Uninstall run it too, and an Install with nothing delivered is refused.
#[test]
fn a_software_package_is_pulled_installed_activated_and_uninstalled() {
    let package: Vec<u8> = (0..40_000u32).map(|i| (i % 199) as u8).collect();
    let http_port = dm_tests::files::image_server(package.clone());
    let port = dm_tests::files::free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let received = dir.path().join("received.ipk");
    let program = dir.path().join("packages");
    dm_tests::files::executable(
        &program,
        &format!(
            "#!/bin/sh\necho \"$1 $(basename \"$2\")\" >> '{calls}'\n\
             case \"$1\" in install) cp \"$2\" '{received}'; echo 'demo-pkg 1.2.3';; esac\n",
            calls = calls.display(),
            received = received.display()
        ),
    );
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "software".into(),
                format!("http://127.0.0.1:{http_port}/image"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-SW\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"sw\"\n\n[software]\ncommand = [\"{}\"]\n",
            program.display()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["create"]["code"], "2.01 Created", "{steps:?}");
    assert_eq!(steps["write-uri"]["code"], "2.04 Changed");
    assert_eq!(steps["delivered"]["text"], "3");
    assert_eq!(steps["install"]["code"], "2.04 Changed");
    assert_eq!(steps["installed"]["text"], "4");
    assert_eq!(steps["name"]["text"], "demo-pkg");
    assert_eq!(steps["version"]["text"], "1.2.3");
    assert_eq!(steps["result-installed"]["text"], "2");
    assert_eq!(steps["activate"]["code"], "2.04 Changed");
    assert_eq!(steps["uninstall-early"]["code"], "4.04 Not Found");
    assert_eq!(steps["uninstall"]["code"], "2.04 Changed");
    assert_eq!(steps["uninstalled"]["text"], "0");
    // Nothing delivered any more: Install is refused, saying why.
    assert_eq!(steps["install-again"]["code"], "4.00 Bad Request");
    assert!(
        steps["install-again"]["text"]
            .as_str()
            .unwrap()
            .contains("install needs a delivered package")
    );
    assert_eq!(std::fs::read(&received).unwrap(), package);
    let calls = std::fs::read_to_string(&calls).unwrap();
    let verbs: Vec<&str> = calls
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(verbs, ["install", "activate", "uninstall"], "{calls}");
    assert!(calls.contains("activate demo-pkg"), "{calls}");
    Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    assert!(agent.0.wait().unwrap().success());
}

/// Self-update through /9 (issue 6): with `[software] self_update`, a
/// package that is a dmagent binary (it answers `--version` with
/// "dmagent VERSION") is staged for the launcher instead of going to the
/// package program; Activate makes the agent de-register and exit with 75
/// for dmagent-launch to swap it in (tested in launch.rs).
#[test]
fn a_dmagent_package_is_staged_and_activating_it_exits_for_the_launcher() {
    // A real executable for this machine that answers as dmagent 9.9.9
    // does (only ELF files are ever tried as the agent).
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("fake.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <string.h>\nint main(int c, char **v) {\n\
         if (c > 1 && !strcmp(v[1], \"--version\")) puts(\"dmagent 9.9.9\");\nreturn 0;\n}\n",
    )
    .unwrap();
    let binary = dir.path().join("fake-dmagent");
    let built = Command::new("cc")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("cc is missing: run scripts/install-deps.sh");
    assert!(built.success());
    let package = std::fs::read(&binary).unwrap();
    let http_port = dm_tests::files::image_server(package.clone());
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                port.to_string(),
                "self-update".into(),
                format!("http://127.0.0.1:{http_port}/image"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-SELF\"\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"self\"\n\n[software]\nself_update = true\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(&state)
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            // As dmagent-launch runs it: only then is the update handed over.
            .env("DMAGENT_LAUNCHER", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut steps = HashMap::new();
    loop {
        let event = next(&events);
        if event["event"] == "checks-done" {
            break;
        }
        if let Some(step) = event["step"].as_str() {
            steps.insert(step.to_owned(), event.clone());
        }
    }
    assert_eq!(steps["installed"]["text"], "4", "{steps:?}");
    assert_eq!(steps["name"]["text"], "dmagent");
    assert_eq!(steps["version"]["text"], "9.9.9");
    assert_eq!(steps["activate"]["code"], "2.04 Changed");
    loop {
        if next(&events)["event"] == "deregister" {
            break;
        }
    }
    let status = agent.0.wait().unwrap();
    assert_eq!(status.code(), Some(75), "update ready");
    assert_eq!(
        std::fs::read(state.join("update/dmagent.new")).unwrap(),
        package
    );
}

/// The host boundary, end to end: NetworkManager (python-dbusmock's, its
/// AddConnection held until the test lets it go, 8 s at most: under the
/// platform's 10 s limit for a write) is slow to take a Wi-Fi profile an
/// LwM2M server creates, and meanwhile the same server's Read and an
/// ACS's GetParameterValues are answered: the write is made off the
/// tree's lock, and the Create is answered when NetworkManager has
/// answered.
#[test]
fn reads_are_answered_while_network_manager_holds_a_write() {
    let mut stack = dm_tests::dbus_stack::Stack::mock();
    assert_eq!(stack.command("start networkmanager"), "ok");
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let slow = stack.command(&format!(
        "call org.freedesktop.NetworkManager /org/freedesktop/NetworkManager/Settings \
         org.freedesktop.DBus.Mock AddMethod sssss org.freedesktop.NetworkManager.Settings \
         AddConnection 'a{{sa{{sv}}}}' o 'import os, time; \
         [time.sleep(0.05) for _ in range(160) if not os.path.exists(\"{}\")]; \
         ret = self.SettingsAddConnection(args[0])'",
        release.display()
    ));
    assert!(slow.starts_with("ok"), "{slow}");

    let acs = dm_tests::mini_acs::MiniAcs::start(Box::new(|body| {
        body.is_empty().then(|| {
            "<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[1]\" \
             xmlns:soap-enc=\"http://schemas.xmlsoap.org/soap/encoding/\">\
             <string>Device.DeviceInfo.SerialNumber</string></ParameterNames>\
             </cwmp:GetParameterValues>"
                .to_owned()
        })
    }));
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([port.to_string(), "concurrent".into()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");
    let mut commands = server.0.stdin.take().unwrap();

    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-SLOW\"\noui = \"00D09E\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [cwmp]\nacs_url = \"{}\"\nperiodic_interval = 3600\n\
             connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-slow\"\n",
            acs.url(),
            dm_tests::files::free_tcp_port(),
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .args(["--log-format", "json", "run"])
            .env_remove("DMAGENT_CONFIG")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = {
        let stderr = agent.0.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    assert_eq!(next(&events)["event"], "register");
    acs.post_with("GetParameterValuesResponse");

    use std::io::Write as _;
    writeln!(commands, "create slow-ssid").unwrap();
    // The agent has handed the profile to NetworkManager, which now sits
    // on it until released.
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent carries the Create to the host");
        if line.contains("carrying a change to the host") {
            break;
        }
    }
    writeln!(commands, "read /3/0/2").unwrap();
    let read = next(&events);
    assert_eq!(read["step"], "read", "the Read is answered first: {read}");
    assert_eq!(read["code"], "2.05 Content");
    assert_eq!(read["text"], "SN-SLOW");

    while acs.posts.try_recv().is_ok() {}
    let inform = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .arg("inform")
        .env_remove("DMAGENT_CONFIG")
        .env("DMAGENT_BUS", "system")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
        .output()
        .unwrap();
    assert!(
        inform.status.success(),
        "{}",
        String::from_utf8_lossy(&inform.stderr)
    );
    let gpv = acs.post_with("GetParameterValuesResponse");
    assert!(gpv.contains("SN-SLOW"), "{gpv}");
    assert!(
        events.try_recv().is_err(),
        "the GetParameterValues is answered while the Create waits"
    );
    std::fs::write(&release, "").unwrap();

    let created = next(&events);
    assert_eq!(created["step"], "create", "{created}");
    assert_eq!(created["code"], "2.01 Created", "{created}");
    let location = created["location"].as_array().unwrap();
    assert_eq!(location[0], "12", "{created}");
    writeln!(commands, "read /12/{}/5", location[1].as_str().unwrap()).unwrap();
    // (The new instance also brings a Registration Update.)
    let ssid = std::iter::repeat_with(|| next(&events))
        .find(|e| e["step"] == "read")
        .unwrap();
    assert_eq!(ssid["text"], "slow-ssid", "{ssid}");
    let calls = stack.command(
        "call org.freedesktop.NetworkManager /org/freedesktop/NetworkManager/Settings \
         org.freedesktop.NetworkManager.Settings ListConnections",
    );
    assert!(calls.contains("/Settings/0"), "{calls}");
}

/// An object the agent is not built with, declared from its OMA
/// definition (`[[object]]`, examples/temperature/3303.xml): aiocoap sees
/// it registered, reads the configured value, writes another, and what it
/// wrote outlives the agent.
#[test]
fn a_declared_object_is_served_to_aiocoap_and_its_writes_are_kept() {
    use std::io::Write as _;
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "write", "/3303/0/5750", "kitchen"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let definition =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature/3303.xml");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-declared\"\n\n\
             [[object]]\ndefinition = \"{}\"\n\
             values = {{ \"0/5700\" = 21.5, \"0/5701\" = \"Cel\", \"0/5750\" = \"room\" }}\n",
            definition.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(&state)
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let register = next(&events);
    assert_eq!(register["event"], "register");
    let links = register["links"].as_str().unwrap();
    assert!(links.contains(",</3303>;ver=1.1,</3303/0>,"), "{links}");

    let stdin = server.0.stdin.as_mut().unwrap();
    stdin
        .write_all(b"go\nread /3303/0/5700\nread /3303/0/5750\n")
        .unwrap();
    stdin.flush().unwrap();
    let write = next(&events);
    assert_eq!(write["step"], "write");
    assert_eq!(write["code"], "2.04 Changed");
    let sensor = next(&events);
    assert_eq!(
        (&sensor["step"], &sensor["text"]),
        (&"read".into(), &"21.5".into())
    );
    let written = next(&events);
    assert_eq!(written["text"], "kitchen");

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(agent.0.wait().unwrap().success());
    // Saved: the next start serves what the server wrote, not the
    // configured initial value.
    let dump = Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(&state)
        .arg("dump")
        .env_remove("DMAGENT_CONFIG")
        .output()
        .unwrap();
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(dump.contains("\n/3303/0/5750 = kitchen\n"), "{dump}");
    assert!(dump.contains("\n/3303/0/5700 = 21.5\n"), "{dump}");
}

/// A declared object served by a command provider
/// (examples/temperature/provider.py): the value it pushes is read and
/// notified, an Execute reaches it, a value it refuses gets 4.00, its
/// death in the middle of a write gets 5.03, and once the agent has
/// started it again, writes reach it again.
#[test]
fn a_command_provider_serves_its_object_and_is_restarted_when_it_dies() {
    use std::io::Write as _;
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "write", "/3303/0/5750", "kitchen"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-provider\"\n\n\
             [[object]]\ndefinition = \"{dir}/3303.xml\"\n\
             values = {{ \"0/5700\" = 1.0, \"0/5701\" = \"Cel\", \"0/5750\" = \"room\" }}\n\
             provider = [\"{python}\", \"{dir}/provider.py\", \"--interval\", \"0\"]\n",
            dir = example.display(),
            python = dm_tests::py_peers::python().display(),
        ),
    )
    .unwrap();
    let _agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            // The simulated readings, not this machine's thermal zone.
            .env("PROVIDER_SIMULATE", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(next(&events)["event"], "register");
    let stdin = server.0.stdin.as_mut().unwrap();
    let mut say = |line: &str| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let step = |name: &str| {
        let event = next(&events);
        assert_eq!(event["step"], name, "{event}");
        event
    };

    // The provider answered the write: it had pushed its first reading
    // before (one ordered stream), so that is what is read.
    say("go");
    assert_eq!(step("write")["code"], "2.04 Changed");
    say("observe /3303/0/5700");
    let observed = step("observe");
    assert_eq!(observed["code"], "2.05 Content");
    assert_eq!(observed["text"], "20.5");
    // Reset Min and Max: the provider takes a fresh reading and pushes it.
    say("exec /3303/0/5605");
    assert_eq!(step("exec")["code"], "2.04 Changed");
    assert_eq!(step("notification")["text"], "25");
    say("read /3303/0/5602");
    assert_eq!(step("read")["text"], "25");
    // A value the provider refuses.
    say("write /3303/0/5750 refuse");
    let refused = step("write");
    assert_eq!(refused["code"], "4.00 Bad Request");
    say("read /3303/0/5750");
    assert_eq!(step("read")["text"], "kitchen");
    // The provider dies in the middle of a write: temporarily unavailable.
    say("write /3303/0/5750 exit");
    assert_eq!(step("write")["code"], "5.03 Service Unavailable");
    // Started again (after a second), it pushes its first reading again;
    // the tree kept the value it had.
    assert_eq!(step("notification")["text"], "20.5");
    say("read /3303/0/5750");
    assert_eq!(step("read")["text"], "kitchen");
    say("write /3303/0/5750 hall");
    assert_eq!(step("write")["code"], "2.04 Changed");
}

/// The temperature example as a D-Bus provider (provider.py --bus, on a
/// private bus): registered with the control API, its pushed value is read
/// and observed, an Execute reaches it and its new reading is notified, a
/// value it refuses gets 4.00, its death in the middle of a write 5.03,
/// and reads while it is away 5.03 too; once registered again, it is
/// served again, with the value the tree kept.
#[test]
fn a_dbus_provider_serves_its_object_and_is_unavailable_while_away() {
    use std::io::Write as _;
    let bus = dm_tests::dbus_stack::Stack::mock();
    let port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "write", "/3303/0/5750", "kitchen"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = json_lines(&mut server.0);
    assert_eq!(next(&events)["event"], "listening");

    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\nendpoint = \"dmagent-dbus-provider\"\n\n\
             [[object]]\ndefinition = \"{dir}/3303.xml\"\n\
             values = {{ \"0/5700\" = 1.0, \"0/5701\" = \"Cel\", \"0/5750\" = \"room\" }}\n\
             provider = \"dbus\"\n",
            dir = example.display(),
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run_on_bus(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
        &bus.bus,
    );
    assert_eq!(next(&events)["event"], "register");
    let stdin = server.0.stdin.as_mut().unwrap();
    let mut say = |line: &str| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let step = |name: &str| {
        let event = next(&events);
        assert_eq!(event["step"], name, "{event}");
        event
    };
    // Before any provider has registered: nobody stands behind the
    // values.
    say("go");
    assert_eq!(step("write")["code"], "5.03 Service Unavailable");
    say("read /3303/0/5700");
    assert_eq!(step("read")["code"], "5.03 Service Unavailable");

    // The provider's first reading is pushed as it registers (the
    // simulated 20.5; the test's own interval is 0.3 s, so later ones
    // follow).
    let (mut provider, registered) = crate::declared::dbus_provider(&bus.bus, 0);
    registered
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider registers");
    say("write /3303/0/5750 kitchen");
    assert_eq!(step("write")["code"], "2.04 Changed");
    say("read /3303/0/5700");
    let read = step("read");
    assert_eq!(read["code"], "2.05 Content");
    assert!(
        ["20.5", "25", "23.5"].contains(&read["text"].as_str().unwrap()),
        "{read}"
    );
    say("observe /3303/0/5700");
    assert_eq!(step("observe")["code"], "2.05 Content");
    // Pushed readings come as notifications.
    step("notification");
    // Reset Min and Max: the provider takes a fresh reading and pushes it.
    // From here, notifications of its periodic pushes may come between
    // the answers.
    let answer = || loop {
        let event = next(&events);
        if event["step"] != "notification" {
            break event;
        }
    };
    say("exec /3303/0/5605");
    assert_eq!(answer()["code"], "2.04 Changed");
    say("write /3303/0/5750 refuse");
    let refused = answer();
    assert_eq!(refused["step"], "write", "{refused}");
    assert_eq!(refused["code"], "4.00 Bad Request", "{refused}");

    // It dies in the middle of a write: 5.03, and reads while it is away
    // are 5.03 too.
    say("write /3303/0/5750 exit");
    let died = answer();
    assert_eq!(died["code"], "5.03 Service Unavailable", "{died}");
    let _ = provider.0.wait();
    say("read /3303/0/5750");
    let away = answer();
    assert_eq!(away["code"], "5.03 Service Unavailable", "{away}");

    // Registered again: served again, with the value the tree kept.
    let (_provider, registered) = crate::declared::dbus_provider(&bus.bus, 0);
    registered
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider registers again");
    say("read /3303/0/5750");
    let kept = answer();
    assert_eq!(kept["text"], "kitchen", "{kept}");
}
