//! The host's services on the system bus, end to end through the agent:
//! ModemManager (python-dbusmock's template from PyPI, its simple modem
//! given a SIM, extended signal figures and a GPS fix) and
//! systemd-timedated (python-dbusmock's). An ACS reads the modem's and the
//! SIM's identities under their TR-181 names and changes the time
//! settings, which reach timedated; `dump` shows the fix as LwM2M /6.

use dm_tests::dbus_stack::Stack;
use dm_tests::mini_acs::MiniAcs;

const MM: &str = "org.freedesktop.ModemManager1";
const TIMEDATE: &str = "org.freedesktop.timedate1";

fn call(stack: &mut Stack, service: &str, path: &str, rest: &str) -> String {
    // `--`: negative figures are not busctl options.
    let answer = stack.command(&format!("call -- {service} {path} {rest}"));
    assert!(answer.starts_with("ok"), "{rest}: {answer}");
    answer
}

fn modem_manager_with_a_modem(stack: &mut Stack) {
    assert_eq!(stack.command("start modemmanager"), "ok");
    call(
        stack,
        MM,
        "/org/freedesktop/ModemManager1",
        "org.freedesktop.DBus.Mock AddSimpleModem",
    );
    call(
        stack,
        MM,
        "/org/freedesktop/ModemManager1/SIM/2",
        "org.freedesktop.DBus.Mock AddProperty ssv org.freedesktop.ModemManager1.Sim \
         SimIdentifier s 8949000000000000017",
    );
    call(
        stack,
        MM,
        "/org/freedesktop/ModemManager1/SIM/2",
        "org.freedesktop.DBus.Mock UpdateProperties 'sa{sv}' org.freedesktop.ModemManager1.Sim \
         1 Imsi s 001010123456789",
    );
    let modem = "/org/freedesktop/ModemManager1/Modems/8";
    call(
        stack,
        MM,
        modem,
        "org.freedesktop.DBus.Mock AddProperties 'sa{sv}' org.freedesktop.ModemManager1.Modem.Signal \
         1 Lte 'a{sv}' 2 rsrp d -95 rsrq d -9",
    );
    call(
        stack,
        MM,
        modem,
        "org.freedesktop.DBus.Mock AddProperties 'sa{sv}' org.freedesktop.ModemManager1.Modem.Location \
         1 Location 'a{uv}' 1 2 'a{sv}' 2 latitude d 48.8584 longitude d 2.2945",
    );
    call(
        stack,
        MM,
        modem,
        "org.freedesktop.DBus.Mock UpdateProperties 'sa{sv}' \
         org.freedesktop.ModemManager1.Modem.Modem3gpp 1 Imei s 356938035643809",
    );
}

const READ: &str = "<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType=\"xsd:string[7]\">\
    <string>Device.Cellular.Interface.1.IMEI</string>\
    <string>Device.Cellular.Interface.1.USIM.IMSI</string>\
    <string>Device.Cellular.Interface.1.USIM.ICCID</string>\
    <string>Device.Cellular.Interface.1.RSRP</string>\
    <string>Device.Time.Enable</string>\
    <string>Device.Time.Status</string>\
    <string>Device.Time.LocalTimeZone</string>\
    </ParameterNames></cwmp:GetParameterValues>";

/// The value of `name` in a GetParameterValuesResponse.
fn value_of(response: &str, name: &str) -> String {
    let at = response
        .find(&format!("<Name>{name}</Name>"))
        .unwrap_or_else(|| panic!("{name} is not in {response}"));
    let value = &response[at..];
    let start = value.find("<Value").unwrap();
    let start = start + value[start..].find('>').unwrap() + 1;
    let end = start + value[start..].find("</Value>").unwrap();
    value[start..end].to_owned()
}

#[test]
fn the_modem_and_the_clock_are_the_hosts_services() {
    let mut stack = Stack::mock();
    modem_manager_with_a_modem(&mut stack);
    assert_eq!(stack.command("start timedated"), "ok");
    // The rules of Europe/Paris, as an ACS following TR-181 writes them.
    let rules = "CET-1CEST,M3.5.0,M10.5.0/3";
    let set = format!(
        "<cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[2]\">\
         <ParameterValueStruct><Name>Device.Time.Enable</Name>\
         <Value xsi:type=\"xsd:boolean\">false</Value></ParameterValueStruct>\
         <ParameterValueStruct><Name>Device.Time.LocalTimeZone</Name>\
         <Value xsi:type=\"xsd:string\">{rules}</Value></ParameterValueStruct>\
         </ParameterList><ParameterKey>time</ParameterKey></cwmp:SetParameterValues>"
    );
    // Popped from the end: a read, the change, a read again.
    let mut requests = vec![READ.to_owned(), set, READ.to_owned()];
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.is_empty() || body.contains("Response>") {
            return requests.pop();
        }
        None
    }));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nserial_number = \"SN-HOST\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [cwmp]\nacs_url = \"{}\"\nconnection_request_port = {}\n\
             connection_request_bind = \"127.0.0.1\"\n\n[lwm2m]\nenabled = false\n",
            acs.url(),
            dm_tests::files::free_tcp_port()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let agent =
        dm_tests::agent::run_on_bus(env!("CARGO_BIN_EXE_dmagent"), &config, &state, &stack.bus);

    let first = acs.post_with("<cwmp:GetParameterValuesResponse>");
    assert_eq!(
        value_of(&first, "Device.Cellular.Interface.1.IMEI"),
        "356938035643809"
    );
    assert_eq!(
        value_of(&first, "Device.Cellular.Interface.1.USIM.IMSI"),
        "001010123456789"
    );
    assert_eq!(
        value_of(&first, "Device.Cellular.Interface.1.USIM.ICCID"),
        "8949000000000000017"
    );
    assert_eq!(value_of(&first, "Device.Cellular.Interface.1.RSRP"), "-95");
    // The mock's clock: NTP on and synchronised, in "Etc/Utc" (no such
    // zone file: its name is what there is to say).
    assert_eq!(value_of(&first, "Device.Time.Enable"), "true");
    assert_eq!(value_of(&first, "Device.Time.Status"), "Synchronized");
    assert_eq!(value_of(&first, "Device.Time.LocalTimeZone"), "Etc/Utc");

    let set = acs.post_with("<cwmp:SetParameterValuesResponse>");
    assert!(set.contains("<Status>0</Status>"), "{set}");
    let second = acs.post_with("<cwmp:GetParameterValuesResponse>");
    assert_eq!(value_of(&second, "Device.Time.Enable"), "false");
    assert_eq!(value_of(&second, "Device.Time.Status"), "Disabled");
    assert_eq!(value_of(&second, "Device.Time.LocalTimeZone"), rules);
    // timedated was asked: NTP off, and a zone with those rules.
    let time = call(
        &mut stack,
        TIMEDATE,
        "/org/freedesktop/timedate1",
        "org.freedesktop.DBus.Properties GetAll s org.freedesktop.timedate1",
    );
    assert!(time.contains("\"NTP\" b false"), "{time}");
    let zone = time
        .split("\"Timezone\" s \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{time}"));
    let tzif = std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(zone)).unwrap();
    assert!(
        tzif.ends_with(format!("\n{rules}\n").as_bytes()),
        "{zone} does not have the rules {rules}"
    );
    drop(agent);

    // The fix, as LwM2M /6 in the agent's view of the host.
    let dump = std::process::Command::new(env!("CARGO_BIN_EXE_dmagent"))
        .args(["--config", config.to_str().unwrap(), "--state-dir"])
        .arg(&state)
        .arg("dump")
        .env_remove("DMAGENT_CONFIG")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
        .output()
        .unwrap();
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(dump.contains("\n/6/0/0 = 48.8584\n"), "{dump}");
    assert!(dump.contains("\n/6/0/1 = 2.2945\n"), "{dump}");
}

/// LwM2M /3/0/15 (Timezone, read-write in OMA's object 3) as a server
/// writes it: the zone reaches timedated (python-dbusmock's), as
/// Device.Time.LocalTimeZone's does; read back, it is the host's. (Leshan
/// 2.0's write of it was refused with 4.05 before: the resource was only
/// read from the host.)
#[test]
fn an_lwm2m_servers_time_zone_reaches_timedated() {
    use dm_tests::py_peers::{json_lines, next_json as next};
    use std::io::Write as _;
    use std::process::Stdio;
    let mut stack = Stack::mock();
    assert_eq!(stack.command("start timedated"), "ok");
    let port = dm_tests::files::free_udp_port();
    let mut server = dm_tests::process::Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&port.to_string(), "write", "/3/0/15", "Asia/Tokyo"])
            .stdin(Stdio::piped())
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
            "[device]\nserial_number = \"SN-ZONE\"\n\n[platform]\nkind = \"dbus\"\n\n\
             [cwmp]\nenabled = false\n\n[lwm2m]\nserver_uri = \"coap://127.0.0.1:{port}\"\n\
             endpoint = \"dmagent-zone\"\n"
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run_on_bus(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
        &stack.bus,
    );
    assert_eq!(next(&events)["event"], "register");
    let mut input = server.0.stdin.take().unwrap();
    writeln!(input).unwrap();
    let write = next(&events);
    assert_eq!(write["step"], "write", "{write}");
    assert_eq!(write["code"], "2.04 Changed", "{write}");
    let time = call(
        &mut stack,
        TIMEDATE,
        "/org/freedesktop/timedate1",
        "org.freedesktop.DBus.Properties Get ss org.freedesktop.timedate1 Timezone",
    );
    assert!(time.contains("\"Asia/Tokyo\""), "{time}");
    writeln!(input, "read /3/0/15").unwrap();
    let read = next(&events);
    assert_eq!(read["text"], "Asia/Tokyo", "{read}");
}
