//! What `scripts/demo.sh` runs: dmagent against the two local peers the
//! end-to-end tests use (the scripted ACS of `dm_tests::mini_acs` and the
//! aiocoap LwM2M server of `tests/peers/lwm2m_server.py`), narrated. It
//! shows the job in a few steps: registered to both; the ACS reads
//! values; an LwM2M write to a parameter the ACS watches reaches the ACS
//! as `4 VALUE CHANGE`; firmware pushed over LwM2M is reported to the ACS.
//! It stops the agent, which de-registers, and exits 0, or 1 with what did
//! not happen.
//!
//! Usage: demo [DMAGENT] (default: the `dmagent` of the same build,
//! `target/<profile>/dmagent` beside `target/<profile>/examples/`).

use dm_tests::process::Guard;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dm_tests::mini_acs::MiniAcs;

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The text of the first `<tag>` element in `xml`.
fn element<'x>(xml: &'x str, tag: &str) -> &'x str {
    xml.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("")
}

/// Every `<Name>`/`<Value>` pair of a ParameterList.
fn parameters(xml: &str) -> Vec<(String, String)> {
    xml.split("<ParameterValueStruct>")
        .skip(1)
        .map(|p| {
            let value = p
                .split("<Value")
                .nth(1)
                .and_then(|v| v.split_once('>'))
                .map_or("", |(_, v)| v.split('<').next().unwrap_or(""));
            (element(p, "Name").to_owned(), value.to_owned())
        })
        .collect()
}

fn events(xml: &str) -> Vec<String> {
    xml.split("<EventCode>")
        .skip(1)
        .filter_map(|e| e.split('<').next())
        .map(str::to_owned)
        .collect()
}

fn demo() -> Result<(), String> {
    let started = Instant::now();
    let dmagent = std::env::args_os().nth(1).map_or_else(
        || {
            std::env::current_exe()
                .ok()
                .and_then(|p| Some(p.parent()?.parent()?.join("dmagent")))
                .unwrap_or_else(|| PathBuf::from("dmagent"))
        },
        PathBuf::from,
    );
    let dir = tempfile_dir()?;

    // The ACS: reads two values in the boot session, then asks to be told
    // of SSID changes at once (active notification), and takes reports.
    let mut step = 0;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.contains("<cwmp:AutonomousTransferComplete>") {
            return Some("<cwmp:AutonomousTransferCompleteResponse/>".to_owned());
        }
        step += 1;
        match step {
            1 => Some(
                "<cwmp:GetParameterValues><ParameterNames>\
                 <string>Device.DeviceInfo.ModelName</string>\
                 <string>Device.DeviceInfo.SoftwareVersion</string>\
                 <string>Device.WiFi.SSID.1.SSID</string>\
                 </ParameterNames></cwmp:GetParameterValues>"
                    .to_owned(),
            ),
            2 => Some(
                "<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct>\
                 <Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange>\
                 <Notification>2</Notification><AccessListChange>0</AccessListChange>\
                 <AccessList/></SetParameterAttributesStruct></ParameterList>\
                 </cwmp:SetParameterAttributes>"
                    .to_owned(),
            ),
            _ => None,
        }
    }));

    // The LwM2M server: waits for a line, writes the SSID, then takes
    // commands ("observe", "push", "exec").
    let coap_port = dm_tests::files::free_udp_port();
    let mut server = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&coap_port.to_string(), "write", "/12/1/5", "from-lwm2m"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("the LwM2M server does not start: {e}"))?,
    );
    let mut to_server = server.0.stdin.take().ok_or("no stdin")?;
    let lwm2m = dm_tests::process::lines(server.0.stdout.take().ok_or("no stdout")?);
    let mut tell = |line: &str| {
        to_server
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| to_server.flush())
            .map_err(|e| format!("the LwM2M server stopped: {e}"))
    };
    wait_for(&lwm2m, "\"listening\"", "the LwM2M server listening")?;

    // The agent, on the in-memory platform: a Reboot or factory reset
    // asked of the demo is recorded, never done to this machine.
    let applied = dir.join("applied.bin");
    let program = dir.join("apply-firmware");
    dm_tests::files::executable(
        &program,
        &format!("#!/bin/sh\ncp \"$1\" '{}'\n", applied.display()),
    );
    let config = dir.join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"DEMO-0001\"\nmodel_name = \"dmagent demo\"\n\n\
             [platform]\nkind = \"memory\"\n\n\
             [cwmp]\nacs_url = \"{}\"\nperiodic_interval = 3600\n\
             connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\
             connection_request_username = \"demo\"\nconnection_request_password = \"demo-secret\"\n\
             autonomous_transfer_complete = true\n\n\
             [lwm2m]\nserver_uri = \"coap://127.0.0.1:{coap_port}\"\nendpoint = \"dmagent-demo\"\n\n\
             [firmware]\ncommand = [\"{}\"]\n",
            acs.url(),
            dm_tests::files::free_tcp_port(),
            program.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = dir.join("dmagent.log");
    let mut agent = Guard(
        Command::new(&dmagent)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{} does not start: {e}", dmagent.display()))?,
    );
    println!(
        "dmagent {} started: ACS {} (scripted), LwM2M server coap://127.0.0.1:{coap_port} (aiocoap)",
        agent.0.id(),
        acs.url()
    );

    // 1. Registered to both.
    let inform = acs_post(&acs, "<cwmp:Inform>")?;
    println!(
        "[acs]   Inform from serial {}: events {}",
        element(&inform, "SerialNumber"),
        events(&inform).join(", ")
    );
    let register: serde_json::Value =
        serde_json::from_str(&wait_for(&lwm2m, "\"register\"", "the LwM2M registration")?)
            .map_err(|e| e.to_string())?;
    let links = register["links"].as_str().unwrap_or_default();
    println!(
        "[lwm2m] registered endpoint {}, lifetime {} s, {} objects and instances: {}",
        register["query"]["ep"].as_str().unwrap_or("?"),
        register["query"]["lt"].as_str().unwrap_or("?"),
        links.matches("</").count().saturating_sub(1),
        links.chars().take(60).collect::<String>() + "..."
    );

    // 2. The ACS reads values.
    let values = acs_post(&acs, "<cwmp:GetParameterValuesResponse>")?;
    for (name, value) in parameters(&values) {
        println!("[acs]   GetParameterValues: {name} = {value:?}");
    }
    acs_post(&acs, "SetParameterAttributesResponse")?;
    println!("[acs]   SetParameterAttributes: Device.WiFi.SSID.1.SSID reported at once (active)");

    // 3. An LwM2M write reaches the ACS.
    tell("go")?;
    let write = wait_for(&lwm2m, "\"step\": \"write\"", "the LwM2M write")?;
    if !write.contains("2.04") {
        return Err(format!("the LwM2M write was refused: {write}"));
    }
    println!("[lwm2m] Write /12/1/5 (WLAN SSID) = \"from-lwm2m\": 2.04 Changed");
    let changed = acs_post(&acs, "4 VALUE CHANGE")?;
    for (name, value) in parameters(&changed) {
        if name.ends_with("SSID") {
            println!("[acs]   Inform 4 VALUE CHANGE: {name} = {value:?}");
        }
    }

    // 4. Firmware pushed over LwM2M, reported to the ACS.
    tell("observe /5/0/5")?;
    wait_for(
        &lwm2m,
        "\"step\": \"observe\"",
        "observing the Update Result",
    )?;
    tell("push 65536")?;
    let push = wait_for(&lwm2m, "\"step\": \"push\"", "the firmware push")?;
    if !push.contains("2.04") {
        return Err(format!("the firmware push was refused: {push}"));
    }
    println!("[lwm2m] firmware pushed to /5/0/0 (64 KiB in CoAP blocks); Execute /5/0/2 Update");
    tell("exec /5/0/2")?;
    let result = wait_for(&lwm2m, "\"text\": \"1\"", "the Update Result 1 (success)")?;
    drop(result);
    println!(
        "[lwm2m] Update Result 1 (success): the configured program applied {} bytes",
        std::fs::metadata(&applied).map(|m| m.len()).unwrap_or(0)
    );
    let report = acs_post(&acs, "<cwmp:AutonomousTransferComplete>")?;
    println!(
        "[acs]   AutonomousTransferComplete: {} bytes, fault {} (the ACS hears of an LwM2M update)",
        element(&report, "FileSize"),
        element(&report, "FaultCode")
    );

    // The end: SIGTERM, and the agent de-registers.
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    wait_for(&lwm2m, "\"deregister\"", "the de-registration")?;
    let status = agent.0.wait().map_err(|e| e.to_string())?;
    println!("[lwm2m] de-registered; dmagent stopped ({status})");
    println!(
        "\nDone in {:.1} s. The agent's log: {}\n\
         Against real servers: dmagent --acs-url http://ACS:7547/ --lwm2m-server \
         coap://SERVER:5683 run\n(or scripts/dmagent-launch --acs-url ... --server SERVER; \
         README: Quick start)",
        started.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("dmagent-demo.{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, what: &str) -> Result<String, String> {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(_) => {}
            Err(_) => return Err(format!("{what} did not happen within {} s", STEP.as_secs())),
        }
    }
}

/// The next POST the ACS receives that contains `needle`.
fn acs_post(acs: &MiniAcs, needle: &str) -> Result<String, String> {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match acs.posts.recv_timeout(left) {
            Ok(body) if body.contains(needle) => return Ok(body),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "the ACS never received {needle} within {} s",
                    STEP.as_secs()
                ));
            }
        }
    }
}
