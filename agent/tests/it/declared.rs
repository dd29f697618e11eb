//! Declared objects over CWMP: IPSO Temperature (3303) declared from its
//! OMA definition, bound to TR-181's TemperatureSensor and served by the
//! example command provider, against the scripted ACS.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dm_tests::mini_acs::MiniAcs;

fn gpv(names: &[&str]) -> String {
    let strings: String = names
        .iter()
        .map(|n| format!("<string>{n}</string>"))
        .collect();
    format!(
        "<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[{}]\">\
         {strings}</ParameterNames></cwmp:GetParameterValues>",
        names.len()
    )
}

fn set_name(value: &str, key: &str) -> String {
    format!(
        "<cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[1]\">\
         <ParameterValueStruct><Name>{SENSOR}Name</Name>\
         <Value xsi:type=\"xsd:string\">{value}</Value></ParameterValueStruct>\
         </ParameterList><ParameterKey>{key}</ParameterKey></cwmp:SetParameterValues>"
    )
}

const SENSOR: &str = "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.";

/// The temperature example's D-Bus provider (provider.py --bus),
/// started by the test on a private bus and registered with the agent's
/// control API. Its stdout says "registered" each time it has.
pub fn dbus_provider(bus: &str, instance: u16) -> (dm_tests::agent::Agent, mpsc::Receiver<()>) {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature");
    let mut child = Command::new("/usr/bin/python3")
        .arg(example.join("provider.py"))
        .args(["--bus", "--interval", "0.3", "--instance"])
        .arg(instance.to_string())
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("DMAGENT_BUS", "system")
        // The simulated readings (20.5, 25, 23.5, ...), not this
        // machine's thermal zone.
        .env("PROVIDER_SIMULATE", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "registered" && tx.send(()).is_err() {
                return;
            }
        }
    });
    (dm_tests::agent::Agent(child), rx)
}

/// GetParameterNames lists the declared table, SetParameterValues
/// reaches the D-Bus provider, GetParameterValues reads what it pushed (an
/// LwM2M Float as a TR-181 int), a refused value gets 9003 with the
/// provider's reason, a provider that dies before answering 9002, and
/// while it is away reads get 9002 too; once it has registered again,
/// writes work again, and an active notification on Value brings a 4
/// VALUE CHANGE Inform when the provider pushes a new reading.
#[test]
fn a_declared_object_bound_to_tr181_is_served_to_the_acs_through_a_dbus_provider() {
    let bus = dm_tests::dbus_stack::Stack::mock();
    let (mut provider, registered) = dbus_provider(&bus.bus, 1);
    // The ACS waits for the provider before its first write.
    let (ready_tx, ready) = mpsc::channel::<()>();
    // Popped from the end, in the first session.
    let mut requests = vec![
        gpv(&["Device.DeviceInfo.TemperatureStatus."]),
        gpv(&[&format!("{SENSOR}Value")]),
        set_name("exit", "k3"),
        "<cwmp:SetParameterAttributes><ParameterList soap-enc:arrayType=\"cwmp:SetParameterAttributesStruct[1]\">\
         <SetParameterAttributesStruct><Name>Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value</Name>\
         <NotificationChange>1</NotificationChange><Notification>2</Notification>\
         <AccessListChange>0</AccessListChange><AccessList/></SetParameterAttributesStruct>\
         </ParameterList></cwmp:SetParameterAttributes>"
            .to_owned(),
        set_name("refuse", "k2"),
        gpv(&[&format!("{SENSOR}Value"), &format!("{SENSOR}Name")]),
        set_name("kitchen", "k1"),
        "<cwmp:GetParameterNames><ParameterPath>Device.DeviceInfo.TemperatureStatus.</ParameterPath>\
         <NextLevel>false</NextLevel></cwmp:GetParameterNames>"
            .to_owned(),
    ];
    // Later sessions (the value changes the provider's readings bring)
    // write again until the provider, registered again, takes it.
    let mut first_session = true;
    let mut written_again = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if first_session {
            if body.contains("GetParameterNamesResponse") {
                ready
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the provider registers");
            }
            let next = requests.pop();
            first_session = next.is_some();
            return next;
        }
        if body.contains("SetParameterValuesResponse") {
            written_again = true;
        }
        (body.is_empty() && !written_again).then(|| set_name("hall", "k4"))
    }));
    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-DECL\"\n\n\
             [cwmp]\nacs_url = \"{url}\"\nconnection_request_port = {port}\n\
             connection_request_bind = \"127.0.0.1\"\n\n\
             [[object]]\ndefinition = \"{dir}/3303.xml\"\ninstances = [1]\n\
             values = {{ \"1/5701\" = \"Cel\", \"1/5750\" = \"room\" }}\n\
             provider = \"dbus\"\n\n\
             [object.tr181]\n\
             \"Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{{i}}.Value\" = {{ resource = 5700, type = \"int\" }}\n\
             \"Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{{i}}.Name\" = 5750\n",
            url = acs.url(),
            port = dm_tests::files::free_tcp_port(),
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
    registered
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider registers");
    ready_tx.send(()).unwrap();

    let names = acs.post_with("GetParameterNamesResponse");
    for name in [
        "<Name>Device.DeviceInfo.TemperatureStatus.</Name>",
        "<Name>Device.DeviceInfo.TemperatureStatus.TemperatureSensor.</Name>",
        "<Name>Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.</Name>",
        "<Name>Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value</Name><Writable>0</Writable>",
        "<Name>Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Name</Name><Writable>1</Writable>",
    ] {
        assert!(names.contains(name), "{name} missing from {names}");
    }
    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    let values = acs.post_with("GetParameterValuesResponse");
    // A reading the provider pushed (it pushes one as it registers),
    // rounded to the int TR-181 has.
    assert!(
        ["21", "25", "24"].iter().any(|v| values.contains(&format!(
            "<Name>{SENSOR}Value</Name><Value xsi:type=\"xsd:int\">{v}</Value>"
        ))),
        "{values}"
    );
    assert!(
        values.contains(&format!(
            "<Name>{SENSOR}Name</Name><Value xsi:type=\"xsd:string\">kitchen</Value>"
        )),
        "{values}"
    );
    let refused = acs.post_with("<cwmp:Fault>");
    // A host refusal names no parameter: 9003, with the provider's reason.
    assert!(refused.contains("<FaultCode>9003</FaultCode>"), "{refused}");
    assert!(refused.contains("is not an application type"), "{refused}");
    acs.post_with("<cwmp:SetParameterAttributesResponse");
    let died = acs.post_with("<cwmp:Fault>");
    assert!(died.contains("<FaultCode>9002</FaultCode>"), "{died}");
    // Away: its values are nobody's.
    let away = acs.post_with("<cwmp:Fault>");
    assert!(away.contains("<FaultCode>9002</FaultCode>"), "{away}");
    assert!(away.contains("none is registered"), "{away}");
    // Under a partial path it is left out, not a fault for the whole.
    let partial = acs.post_with("GetParameterValuesResponse");
    assert!(!partial.contains(SENSOR), "{partial}");
    let _ = provider.0.wait();

    // Back: it registers again and pushes its readings, notified.
    let (_provider, registered) = dbus_provider(&bus.bus, 1);
    registered
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider registers again");
    let inform = acs.post_with("<EventCode>4 VALUE CHANGE</EventCode>");
    assert!(
        inform.contains(&format!(
            "<Name>{SENSOR}Value</Name><Value xsi:type=\"xsd:int\">"
        )),
        "{inform}"
    );
    // A later session's write reaches it.
    let again = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(again.contains("<Status>0</Status>"), "{again}");
}

/// A vendor object declared from a Broadband Forum DM document
/// (examples/vendor): GetParameterNames lists it, GetParameterValues
/// reads what its provider pushed and asks it for the volatile one (a
/// host read before the answer), SetParameterValues of the writable
/// parameter reaches the provider, a value it refuses gets 9003, and the
/// read-only one cannot be set.
#[test]
fn a_vendor_object_from_a_dm_document_is_served_through_its_provider() {
    let set = |name: &str, value: &str, xsd: &str| {
        format!(
            "<cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[1]\">\
             <ParameterValueStruct><Name>Device.X_000000_Example.{name}</Name>\
             <Value xsi:type=\"xsd:{xsd}\">{value}</Value></ParameterValueStruct>\
             </ParameterList><ParameterKey>v</ParameterKey></cwmp:SetParameterValues>"
        )
    };
    let mut requests = vec![
        set("Changes", "5", "unsignedInt"),
        set("Greeting", "refuse", "string"),
        gpv(&["Device.X_000000_Example."]),
        set("Greeting", "hi", "string"),
        gpv(&["Device.X_000000_Example."]),
        "<cwmp:GetParameterNames><ParameterPath>Device.X_000000_Example.</ParameterPath>\
         <NextLevel>true</NextLevel></cwmp:GetParameterNames>"
            .to_owned(),
    ];
    let acs = MiniAcs::start(Box::new(move |_| requests.pop()));
    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vendor");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-VENDOR\"\n\n\
             [cwmp]\nacs_url = \"{url}\"\nconnection_request_port = {port}\n\
             connection_request_bind = \"127.0.0.1\"\n\n\
             [[object]]\ndefinition = \"{dir}/example.xml\"\n\
             provider = [\"{python}\", \"{dir}/provider.py\"]\n\
             volatile = [\"Changes\"]\n",
            url = acs.url(),
            port = dm_tests::files::free_tcp_port(),
            dir = example.display(),
            python = dm_tests::py_peers::python().display(),
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::Agent(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "session")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let names = acs.post_with("GetParameterNamesResponse");
    for name in [
        "<Name>Device.X_000000_Example.Greeting</Name><Writable>1</Writable>",
        "<Name>Device.X_000000_Example.Changes</Name><Writable>0</Writable>",
    ] {
        assert!(names.contains(name), "{name} missing from {names}");
    }
    // Its command is USP's: CWMP has none.
    assert!(!names.contains("Reset()"), "{names}");
    // Before the provider has answered anything, its first push may or
    // may not be in: the first read is not asserted on.
    acs.post_with("GetParameterValuesResponse");
    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    // Changes is volatile: asked of the provider for this request.
    let values = acs.post_with("GetParameterValuesResponse");
    for value in [
        "<Name>Device.X_000000_Example.Greeting</Name><Value xsi:type=\"xsd:string\">hi</Value>",
        "<Name>Device.X_000000_Example.Changes</Name><Value xsi:type=\"xsd:unsignedInt\">1</Value>",
    ] {
        assert!(values.contains(value), "{value} missing from {values}");
    }
    let refused = acs.post_with("<cwmp:Fault>");
    assert!(refused.contains("<FaultCode>9003</FaultCode>"), "{refused}");
    assert!(refused.contains("not a greeting"), "{refused}");
    let read_only = acs.post_with("<cwmp:Fault>");
    assert!(
        read_only.contains("<FaultCode>9008</FaultCode>"),
        "{read_only}"
    );
}

/// examples/temperature/run.sh as a user runs it, against aiocoap and the
/// scripted ACS: it starts a session bus of its own, the agent and the
/// D-Bus provider; the LwM2M server reads, writes and executes
/// /3303/1, the ACS reads TemperatureSensor.1; a SIGTERM to the script
/// ends all of it.
#[test]
fn the_temperature_example_runs_against_both_servers() {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    let port = dm_tests::files::free_udp_port();
    let mut server = dm_tests::agent::Agent(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "write", "/3303/1/5750", "kitchen"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = {
        let stdout = server.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<serde_json::Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        rx
    };
    let next = || {
        events
            .recv_timeout(Duration::from_secs(60))
            .expect("the LwM2M server reports")
    };
    assert_eq!(next()["event"], "listening");
    let (ready_tx, ready) = mpsc::channel::<()>();
    let mut asked = false;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() && !asked {
            asked = true;
            ready
                .recv_timeout(Duration::from_secs(30))
                .expect("the provider registers");
            return Some(gpv(&[SENSOR]));
        }
        None
    }));
    let state = tempfile::tempdir().unwrap();
    let mut example = Command::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature/run.sh"),
    );
    example
        .arg(format!("coap://127.0.0.1:{port}"))
        .arg(acs.url())
        .env("DMAGENT", env!("CARGO_BIN_EXE_dmagent"))
        .env("DMAGENT_STATE_DIR", state.path())
        .env_remove("DMAGENT_CONFIG")
        .env("PROVIDER_SIMULATE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: the SIGTERM below is the user's Ctrl-C.
        .process_group(0);
    let mut run = dm_tests::agent::Agent(example.spawn().unwrap());
    let mut output = BufReader::new(run.0.stdout.take().unwrap()).lines();
    assert_eq!(output.next().unwrap().unwrap(), "registered");
    ready_tx.send(()).unwrap();

    assert_eq!(next()["event"], "register");
    let stdin = server.0.stdin.as_mut().unwrap();
    let mut say = |line: &str| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    say("go");
    assert_eq!(next()["code"], "2.04 Changed");
    say("read /3303/1/5700");
    let read = next();
    assert_eq!(read["code"], "2.05 Content", "{read}");
    say("exec /3303/1/5605");
    assert_eq!(next()["code"], "2.04 Changed");
    let values = acs.post_with("GetParameterValuesResponse");
    // The provider's reading, rounded (its session may come before or
    // after the LwM2M write).
    assert!(
        ["21", "25", "24"].iter().any(|v| values.contains(&format!(
            "<Name>{SENSOR}Value</Name><Value xsi:type=\"xsd:int\">{v}</Value>"
        ))),
        "{values}"
    );

    // Ctrl-C: the script, the agent, the provider and the bus all end.
    let group = run.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = run.0.wait().unwrap();
    assert!(!status.success(), "{status}");
    let left = Command::new("pgrep").args(["-g", &group]).output().unwrap();
    assert!(
        left.stdout.is_empty(),
        "still running in its group: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
