//! USP over MQTT end to end: the agent binary, a real broker (Debian's
//! mosquitto on 127.0.0.1) and a controller that is not the agent's code
//! (tests/peers/usp_controller.py: paho-mqtt, and the USP messages
//! compiled from the official .proto files by grpcio-tools' protoc).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use dm_tests::process::Guard;
use serde_json::{Value, json};

const CONTROLLER: &str = "self::usp-test-controller";
const CONTROLLER_TOPIC: &str = "usp/controller";
const AGENT: &str = "os::00D09E-USP1";

/// mosquitto on `port` of 127.0.0.1, anonymous, started once it says it
/// runs.
fn mosquitto(dir: &std::path::Path, port: u16) -> Guard {
    mosquitto_with(dir, port, "")
}

/// mosquitto with `more` in its configuration (another listener).
fn mosquitto_with(dir: &std::path::Path, port: u16, more: &str) -> Guard {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            // As root (CI), mosquitto stays root: it must read the test's
            // key and write its sessions in the test's directory.
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\n\
             log_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\n{more}",
            dir.display()
        ),
    )
    .unwrap();
    let mut broker = Guard(
        // Line-buffered: it says "running" when it is, not at exit.
        Command::new("stdbuf")
            .args(["-oL", "mosquitto", "-c"])
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto runs (scripts/install-deps.sh installs it)"),
    );
    let lines = dm_tests::process::lines(broker.0.stdout.take().unwrap());
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("mosquitto starts");
        if line.contains("running") {
            break;
        }
    }
    broker
}

struct Controller {
    _process: Guard,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Controller {
    /// The controller on the MQTT broker at `port`.
    fn start(port: u16) -> Controller {
        Controller::on(&port.to_string(), CONTROLLER_TOPIC)
    }

    /// The controller on `transport`: a broker's port, or `ws:PORT` to
    /// listen for the agent's WebSocket session.
    fn on(transport: &str, topic: &str) -> Controller {
        Controller::with(transport, topic, &[])
    }

    /// [`Controller::on`] with environment variables (`wss:PORT`'s
    /// certificate and key).
    fn with(transport: &str, topic: &str, env: &[(&str, &std::path::Path)]) -> Controller {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut process = Guard(
            Command::new(dm_tests::py_peers::python())
                .envs(env.iter().map(|(k, v)| (*k, *v)))
                .arg(format!("{root}/tests/peers/usp_controller.py"))
                .arg(transport)
                .arg(CONTROLLER)
                .arg(topic)
                .arg(format!("{root}/model/usp"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let input = process.0.stdin.take().unwrap();
        let mut output = BufReader::new(process.0.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY");
        Controller {
            _process: process,
            input,
            output,
        }
    }

    fn ask(&mut self, command: Value) -> Value {
        let answer = self.try_ask(command);
        assert!(answer.get("error").is_none(), "{answer}");
        answer
    }

    /// [`Controller::ask`], an `error` answer included.
    fn try_ask(&mut self, command: Value) -> Value {
        writeln!(self.input, "{command}").unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Sends a request to the agent's topic and returns the answer's
    /// message (its body).
    fn request(&mut self, topic: &str, msg_id: &str, msg_type: &str, request: Value) -> Value {
        let answer = self.ask(json!({
            "op": "send",
            "to": AGENT,
            "topic": topic,
            "msg": {
                "header": {"msgId": msg_id, "msgType": msg_type},
                "body": {"request": request},
            },
        }));
        assert_eq!(answer["from"], AGENT, "{answer}");
        assert_eq!(answer["to"], CONTROLLER, "{answer}");
        let msg = &answer["msg"];
        assert_eq!(msg["header"]["msgId"], msg_id, "{answer}");
        msg["body"].clone()
    }
}

/// A broker, the controller and the agent (with `more` in its
/// configuration), each stopped when dropped.
struct Usp {
    controller: Controller,
    agent: dm_tests::agent::Agent,
    broker: Guard,
    port: u16,
    dir: tempfile::TempDir,
}

impl Usp {
    fn start(more: &str) -> Usp {
        Usp::start_on(more, None)
    }

    /// [`Usp::start`] with `bus` as the agent's system bus (its control
    /// API and D-Bus providers there), when given.
    fn start_on(more: &str, bus: Option<&str>) -> Usp {
        let dir = tempfile::tempdir().unwrap();
        let port = dm_tests::files::free_tcp_port();
        let broker = mosquitto(dir.path(), port);
        let controller = Controller::start(port);
        let config = dir.path().join("dmagent.toml");
        std::fs::write(
            &config,
            format!(
                "[device]\noui = \"00D09E\"\nserial_number = \"USP1\"\n\n\
                 [usp]\nbroker = \"mqtt://127.0.0.1:{port}\"\n\
                 controller_endpoint_id = \"{CONTROLLER}\"\n\
                 controller_topic = \"{CONTROLLER_TOPIC}\"\n\n{more}"
            ),
        )
        .unwrap();
        let (binary, state) = (env!("CARGO_BIN_EXE_dmagent"), dir.path().join("state"));
        let agent = match bus {
            Some(bus) => dm_tests::agent::run_on_bus(binary, &config, &state, bus),
            None => dm_tests::agent::run(binary, &config, &state),
        };
        Usp {
            controller,
            agent,
            broker,
            port,
            dir,
        }
    }

    /// The broker stopped as a service manager stops it (SIGTERM: it
    /// saves its sessions) and started again on the same port.
    fn restart_broker(&mut self) {
        let stopped = Command::new("kill")
            .arg(self.broker.0.id().to_string())
            .status()
            .unwrap();
        assert!(stopped.success());
        self.broker.0.wait().unwrap();
        self.broker = mosquitto(self.dir.path(), self.port);
    }

    /// The agent started again, on the same configuration and state.
    fn restart(&mut self) {
        self.agent = dm_tests::agent::run(
            env!("CARGO_BIN_EXE_dmagent"),
            &self.dir.path().join("dmagent.toml"),
            &self.dir.path().join("state"),
        );
    }
}

fn get_one(controller: &mut Controller, topic: &str, path: &str) -> String {
    let body = controller.request(topic, "get", "GET", json!({"get": {"paramPaths": [path]}}));
    let result = &body["response"]["getResp"]["reqPathResults"][0];
    assert!(result.get("errCode").is_none(), "{body}");
    let leaf = path.rsplit('.').next().unwrap();
    result["resolvedPathResults"][0]["resultParams"][leaf]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// The agent connects, sends its connect record, and answers Get, Set,
/// Add, Delete, GetInstances and GetSupportedProtocol from a controller;
/// a record that is not protobuf and one for another endpoint are
/// passed over without an answer, and the agent goes on serving.
#[test]
fn a_controller_reads_and_writes_the_tree_over_mqtt() {
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    // R-MTP.6: the connect record names the topic the agent listens on,
    // the same it names as every PUBLISH's Response Topic.
    let connect = controller.ask(json!({"op": "connect_record"}));
    assert_eq!(connect["from"], AGENT, "{connect}");
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    assert_eq!(topic, format!("usp/agent/{AGENT}"));
    assert_eq!(connect["reply_to"], topic.as_str());

    let body = controller.request(
        &topic,
        "proto",
        "GET_SUPPORTED_PROTO",
        json!({"getSupportedProtocol": {"controllerSupportedProtocolVersions": "1.3"}}),
    );
    let versions = body["response"]["getSupportedProtocolResp"]["agentSupportedProtocolVersions"]
        .as_str()
        .unwrap();
    assert!(versions.split(',').any(|v| v == "1.4"), "{body}");

    assert_eq!(
        get_one(controller, &topic, "Device.DeviceInfo.SerialNumber"),
        "USP1"
    );
    // A table the host gives on demand (the processes): read from the
    // host before the Get is answered.
    let body = controller.request(
        &topic,
        "processes",
        "GET",
        json!({"get": {"paramPaths": ["Device.DeviceInfo.ProcessStatus."]}}),
    );
    let results = body["response"]["getResp"]["reqPathResults"][0]["resolvedPathResults"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    let counted: u64 = results
        .iter()
        .find(|r| r["resolvedPath"] == "Device.DeviceInfo.ProcessStatus.")
        .and_then(|r| r["resultParams"]["ProcessNumberOfEntries"].as_str())
        .unwrap_or_else(|| panic!("{body}"))
        .parse()
        .unwrap();
    let rows = results
        .iter()
        .filter(|r| r["resultParams"]["PID"].is_string())
        .count();
    assert!(counted > 0, "{body}");
    assert_eq!(rows as u64, counted, "{body}");

    // Set, then read back.
    let body = set_ssid(controller, &topic, "usp-net");
    let updated = &body["response"]["setResp"]["updatedObjResults"][0];
    assert_eq!(
        updated["operStatus"]["operSuccess"]["updatedInstResults"][0]["updatedParams"]["SSID"],
        "usp-net",
        "{body}"
    );
    assert_eq!(
        get_one(controller, &topic, "Device.WiFi.SSID.1.SSID"),
        "usp-net"
    );
    // A value out of range: the Error names the parameter; nothing changed.
    let body = set_ssid(controller, &topic, &"x".repeat(40));
    assert_eq!(body["error"]["errCode"], 7004, "{body}");
    assert_eq!(
        body["error"]["paramErrs"][0]["paramPath"],
        "Device.WiFi.SSID.1.SSID"
    );
    assert_eq!(
        get_one(controller, &topic, "Device.WiFi.SSID.1.SSID"),
        "usp-net"
    );

    // Add with a value, find it by a search, delete it.
    let body = controller.request(
        &topic,
        "add",
        "ADD",
        json!({"add": {"createObjs": [{
            "objPath": "Device.WiFi.SSID.",
            "paramSettings": [{"param": "SSID", "value": "guest", "required": true}],
        }]}}),
    );
    let made = body["response"]["addResp"]["createdObjResults"][0]["operStatus"]["operSuccess"]
        ["instantiatedPath"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let found = controller.request(
        &topic,
        "search",
        "GET",
        json!({"get": {"paramPaths": ["Device.WiFi.SSID.[SSID==\"guest\"].SSID"]}}),
    );
    assert_eq!(
        found["response"]["getResp"]["reqPathResults"][0]["resolvedPathResults"][0]["resolvedPath"],
        made.as_str(),
        "{found}"
    );
    let listed = controller.request(
        &topic,
        "instances",
        "GET_INSTANCES",
        json!({"getInstances": {"objPaths": ["Device.WiFi.SSID."], "firstLevelOnly": true}}),
    );
    let instances: Vec<&str> =
        listed["response"]["getInstancesResp"]["reqPathResults"][0]["currInsts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["instantiatedObjPath"].as_str().unwrap())
            .collect();
    assert_eq!(instances, ["Device.WiFi.SSID.1.", made.as_str()]);
    let body = controller.request(
        &topic,
        "delete",
        "DELETE",
        json!({"delete": {"objPaths": [made]}}),
    );
    assert_eq!(
        body["response"]["deleteResp"]["deletedObjResults"][0]["operStatus"]["operSuccess"]["affectedPaths"]
            [0],
        made.as_str(),
        "{body}"
    );

    // Bytes that are not a record, and a record for another endpoint:
    // no answer to either; the next answer is the next request's.
    controller.ask(json!({"op": "raw", "topic": topic, "hex": "ffff00c0ffee"}));
    controller.ask(json!({
        "op": "post",
        "to": "os::someone-else",
        "topic": topic,
        "msg": {"header": {"msgId": "not-mine", "msgType": "GET"},
                "body": {"request": {"get": {"paramPaths": ["Device."]}}}},
    }));
    let quiet = controller.ask(json!({"op": "quiet", "topic": topic, "to": AGENT}));
    assert_eq!(quiet["msg"]["header"]["msgId"], "quiet", "{quiet}");
}

/// The feature no single-protocol agent has: a USP subscription is told
/// of a change an ACS makes with SetParameterValues, and a USP Set
/// reaches the ACS as "4 VALUE CHANGE" (the ACS asked for active
/// notification in the boot session). The ACS's Set rides in the very
/// session the USP Set started.
#[test]
fn usp_and_cwmp_see_each_others_changes() {
    use dm_tests::mini_acs::{MiniAcs, scripted, set_parameter_values};
    const SSID: &str = "Device.WiFi.SSID.1.SSID";
    let attributes = "<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct>\
         <Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange>\
         <Notification>2</Notification><AccessListChange>0</AccessListChange><AccessList/>\
         </SetParameterAttributesStruct></ParameterList></cwmp:SetParameterAttributes>"
        .to_owned();
    let set = set_parameter_values("from-acs", &[(SSID, "string", "from-acs")]);
    let acs = MiniAcs::start(scripted(vec![vec![set], vec![attributes]]));
    let mut usp = Usp::start(&format!(
        "[cwmp]\nacs_url = \"{}\"\nperiodic_inform = false\n\
         connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
         [lwm2m]\nenabled = false\n",
        acs.url(),
        dm_tests::files::free_tcp_port()
    ));
    let controller = &mut usp.controller;
    acs.post_with("SetParameterAttributesResponse");
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();

    // The controller subscribes; the subscription is its own.
    let subscription = subscribe(
        controller,
        &topic,
        &[
            ("ID", "ssid"),
            ("NotifType", "ValueChange"),
            ("ReferenceList", SSID),
            ("Persistent", "true"),
            ("Enable", "true"),
        ],
    );
    assert_eq!(
        get_one(controller, &topic, &format!("{subscription}Recipient")),
        "Device.LocalAgent.Controller.1"
    );

    // A USP Set: the subscription is told, and the ACS.
    let body = set_ssid(controller, &topic, "from-usp");
    assert!(body["response"]["setResp"].is_object(), "{body}");
    let notified = |controller: &mut Controller, value: &str| {
        let notification = controller.ask(json!({"op": "notification"}));
        let notify = &notification["msg"]["body"]["request"]["notify"];
        assert_eq!(notify["subscriptionId"], "ssid", "{notification}");
        assert_eq!(notify["valueChange"]["paramPath"], SSID, "{notification}");
        assert_eq!(notify["valueChange"]["paramValue"], value, "{notification}");
    };
    notified(controller, "from-usp");
    let inform = acs.post_with("4 VALUE CHANGE");
    assert!(inform.contains("from-usp"), "{inform}");

    // In that session the ACS sets the SSID: the subscription is told.
    acs.post_with("SetParameterValuesResponse");
    notified(controller, "from-acs");
    assert_eq!(get_one(controller, &topic, SSID), "from-acs");
}

/// Operate `Device.Reboot()`: the OperateResp comes first, then the
/// agent stops and the device's reboot command runs (here it leaves a
/// file); started again, the agent tells the controller's persistent
/// subscription Boot!, with the command key and the cause.
#[test]
fn a_usp_reboot_is_answered_then_boot_is_notified() {
    let marker = tempfile::tempdir().unwrap();
    let rebooted = marker.path().join("rebooted");
    let mut usp = Usp::start(&format!(
        "[platform]\nreboot_command = [\"touch\", \"{}\"]\n",
        rebooted.display()
    ));
    let connect = usp.controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        &mut usp.controller,
        &topic,
        &[
            ("ID", "boot"),
            ("NotifType", "Event"),
            ("ReferenceList", "Device.Boot!"),
            ("Persistent", "true"),
            ("Enable", "true"),
        ],
    );

    // A command the agent does not have, then Reboot().
    let body = usp.controller.request(
        &topic,
        "nothing",
        "OPERATE",
        json!({"operate": {"command": "Device.NoSuchThing()", "sendResp": true}}),
    );
    assert_eq!(body["error"]["errCode"], 7026, "{body}");
    let body = usp.controller.request(
        &topic,
        "reboot",
        "OPERATE",
        json!({"operate": {"command": "Device.Reboot()", "commandKey": "ck-1", "sendResp": true}}),
    );
    let result = &body["response"]["operateResp"]["operationResults"][0];
    assert_eq!(result["executedCommand"], "Device.Reboot()", "{body}");
    let status = usp.agent.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(rebooted.exists(), "the reboot command ran");

    usp.restart();
    let connect = usp.controller.ask(json!({"op": "connect_record"}));
    assert_eq!(connect["from"], AGENT);
    let boot = usp.controller.ask(json!({"op": "notification"}));
    let notify = &boot["msg"]["body"]["request"]["notify"];
    assert_eq!(notify["subscriptionId"], "boot", "{boot}");
    let event = &notify["event"];
    assert_eq!(event["objPath"], "Device.", "{boot}");
    assert_eq!(event["eventName"], "Boot!", "{boot}");
    assert_eq!(event["params"]["CommandKey"], "ck-1", "{boot}");
    assert_eq!(event["params"]["Cause"], "RemoteReboot", "{boot}");
}

/// Sets Device.WiFi.SSID.1.SSID (required, all or nothing) and returns
/// the answer's body.
fn set_ssid(controller: &mut Controller, topic: &str, value: &str) -> Value {
    controller.request(
        topic,
        "set",
        "SET",
        json!({"set": {"updateObjs": [{
            "objPath": "Device.WiFi.SSID.1.",
            "paramSettings": [{"param": "SSID", "value": value, "required": true}],
        }]}}),
    )
}

/// Adds a subscription with `settings` (each required) and returns its
/// instance's path.
/// GetSupportedDM of `object`, its first level, with its commands.
fn commands_of(controller: &mut Controller, topic: &str, object: &str) -> Value {
    controller.request(
        topic,
        "supported",
        "GET_SUPPORTED_DM",
        json!({"getSupportedDm": {"objPaths": [object],
                                   "firstLevelOnly": true, "returnCommands": true}}),
    )
}

/// A subscription to value changes of the example vendor object's
/// Greeting (examples/vendor).
fn subscribe_greeting(controller: &mut Controller, topic: &str) -> String {
    subscribe(
        controller,
        topic,
        &[
            ("ID", "greeting"),
            ("NotifType", "ValueChange"),
            ("ReferenceList", "Device.X_000000_Example.Greeting"),
            ("Enable", "true"),
        ],
    )
}

/// A subscription to every DUStateChange! (TR-181 2.16).
fn subscribe_du_events(controller: &mut Controller, topic: &str) -> String {
    subscribe(
        controller,
        topic,
        &[
            ("ID", "du-events"),
            ("NotifType", "Event"),
            ("ReferenceList", "Device.SoftwareModules.DUStateChange!"),
            ("Enable", "true"),
        ],
    )
}

fn subscribe(controller: &mut Controller, topic: &str, settings: &[(&str, &str)]) -> String {
    let params: Vec<Value> = settings
        .iter()
        .map(|(param, value)| json!({"param": param, "value": value, "required": true}))
        .collect();
    let body = controller.request(
        topic,
        "subscribe",
        "ADD",
        json!({"add": {"createObjs": [{
            "objPath": "Device.LocalAgent.Subscription.",
            "paramSettings": params,
        }]}}),
    );
    body["response"]["addResp"]["createdObjResults"][0]["operStatus"]["operSuccess"]
        ["instantiatedPath"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// The broker goes away and comes back: the agent connects again after
/// its back-off, sends its connect record again (R-MTP.6) and serves.
#[test]
fn the_agent_connects_again_when_the_broker_comes_back() {
    let mut usp = Usp::start("");
    let connect = usp.controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    usp.restart_broker();
    let again = usp.controller.ask(json!({"op": "connect_record"}));
    assert_eq!(again["from"], AGENT, "{again}");
    assert_eq!(again["subscribed_topic"], topic.as_str());
    assert_eq!(
        get_one(
            &mut usp.controller,
            &topic,
            "Device.DeviceInfo.SerialNumber"
        ),
        "USP1"
    );
    // The MTP's objects: the configuration, and the connection up again.
    let port = usp.port.to_string();
    for (path, expected) in [
        ("Device.LocalAgent.MTP.1.Status", "Up"),
        ("Device.LocalAgent.MTP.1.Protocol", "MQTT"),
        (
            "Device.LocalAgent.MTP.1.MQTT.Reference",
            "Device.MQTT.Client.1",
        ),
        (
            "Device.LocalAgent.MTP.1.MQTT.ResponseTopicDiscovered",
            topic.as_str(),
        ),
        ("Device.MQTT.Client.1.Status", "Connected"),
        ("Device.MQTT.Client.1.BrokerAddress", "127.0.0.1"),
        ("Device.MQTT.Client.1.BrokerPort", port.as_str()),
        ("Device.MQTT.Client.1.TransportProtocol", "TCP/IP"),
        ("Device.MQTT.Client.1.ProtocolVersion", "5.0"),
        ("Device.LocalAgent.Controller.1.MTP.1.Protocol", "MQTT"),
        (
            "Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic",
            CONTROLLER_TOPIC,
        ),
    ] {
        assert_eq!(
            get_one(&mut usp.controller, &topic, path),
            expected,
            "{path}"
        );
    }
}

/// The launcher in front of the agent: `--usp-broker`, `--usp-controller`
/// and `--usp-controller-topic` are all it takes, with no configuration
/// file; the agent's endpoint ID comes from the serial given.
#[test]
fn the_launcher_connects_to_the_broker_and_controller_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let port = dm_tests::files::free_tcp_port();
    let _broker = mosquitto(dir.path(), port);
    let mut controller = Controller::start(port);
    let mut launcher = Guard(
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/dmagent-launch"
        ))
        .arg("--usp-broker")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .args([
            "--usp-controller",
            CONTROLLER,
            "--usp-controller-topic",
            CONTROLLER_TOPIC,
            "--no-cwmp",
            "--no-lwm2m",
            "--platform",
            "memory",
            "--serial",
            "USP-LAUNCH",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .env("DMAGENT_BIN", env!("CARGO_BIN_EXE_dmagent"))
        .env_remove("DMAGENT_CONFIG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let connect = controller.ask(json!({"op": "connect_record"}));
    // The embedded default's OUI, the serial given.
    let from = connect["from"].as_str().unwrap();
    assert!(
        from.starts_with("os::") && from.ends_with("-USP-LAUNCH"),
        "{connect}"
    );
    // SIGTERM to the launcher stops the agent too, then the launcher.
    let status = Command::new("kill")
        .args(["-TERM", &launcher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(launcher.0.wait().unwrap().success());
}

/// LwM2M and USP on one tree: an LwM2M server's write reaches a USP
/// subscription as a ValueChange, and a USP Set reaches the LwM2M
/// server that observes the resource as a Notify (aiocoap's server,
/// tests/peers/lwm2m_server.py in `write` mode).
#[test]
fn usp_and_lwm2m_see_each_others_changes() {
    use dm_tests::py_peers::{json_lines, next_json};
    const SSID: &str = "Device.WiFi.SSID.1.SSID";
    let coap_port = dm_tests::files::free_udp_port();
    let mut lwm2m = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([&coap_port.to_string(), "write", "/12/1/5", "from-lwm2m"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lwm2m_in = lwm2m.0.stdin.take().unwrap();
    let events = json_lines(&mut lwm2m.0);
    let until = |what: &str, key: &str| loop {
        let event = next_json(&events);
        if event[key] == what {
            return event;
        }
    };
    let mut usp = Usp::start(&format!(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{coap_port}\"\n"
    ));
    until("register", "event");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "ssid"),
            ("NotifType", "ValueChange"),
            ("ReferenceList", SSID),
            ("Enable", "true"),
        ],
    );

    // The LwM2M server writes /12/1/5: the USP controller is told.
    writeln!(lwm2m_in, "go").unwrap();
    let write = until("write", "step");
    assert_eq!(write["code"], "2.04 Changed", "{write}");
    let notification = controller.ask(json!({"op": "notification"}));
    let change = &notification["msg"]["body"]["request"]["notify"]["valueChange"];
    assert_eq!(change["paramPath"], SSID, "{notification}");
    assert_eq!(change["paramValue"], "from-lwm2m", "{notification}");

    // The LwM2M server observes it; a USP Set reaches it as a Notify.
    writeln!(lwm2m_in, "observe /12/1/5").unwrap();
    let observed = until("observe", "step");
    assert_eq!(observed["text"], "from-lwm2m", "{observed}");
    let body = set_ssid(controller, &topic, "from-usp");
    assert!(body["response"]["setResp"].is_object(), "{body}");
    let notified = until("notification", "step");
    assert_eq!(notified["text"], "from-usp", "{notified}");
}

/// An asynchronous command: Operate `Device.IP.Diagnostics.IPPing()`
/// answers with the Request row that stands for it; the ping runs (the
/// agent's TR-143 runner, on the loopback) and its end comes as an
/// OperationComplete with the results, the row gone.
#[test]
fn an_async_ping_ends_with_operation_complete() {
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "pings"),
            ("NotifType", "OperationComplete"),
            ("ReferenceList", "Device.IP.Diagnostics.IPPing()"),
            ("Enable", "true"),
        ],
    );
    let ping = |args: Value| {
        json!({"operate": {
            "command": "Device.IP.Diagnostics.IPPing()",
            "commandKey": "ping-1",
            "sendResp": true,
            "inputArgs": args,
        }})
    };
    let body = controller.request(&topic, "bogus", "OPERATE", ping(json!({"Bogus": "1"})));
    assert_eq!(body["error"]["errCode"], 7027, "{body}");
    // A mandatory input left out (TR-181: Host).
    let body = controller.request(
        &topic,
        "no-host",
        "OPERATE",
        ping(json!({"ProtocolVersion": "Any", "NumberOfRepetitions": "1",
                    "Timeout": "1000", "DataBlockSize": "64"})),
    );
    assert_eq!(body["error"]["errCode"], 7027, "{body}");
    let body = controller.request(
        &topic,
        "ping",
        "OPERATE",
        ping(json!({
            "ProtocolVersion": "Any",
            "Host": "127.0.0.1",
            "NumberOfRepetitions": "2",
            "Timeout": "2000",
            "DataBlockSize": "64",
        })),
    );
    let result = &body["response"]["operateResp"]["operationResults"][0];
    assert_eq!(
        result["executedCommand"], "Device.IP.Diagnostics.IPPing()",
        "{body}"
    );
    let request = result["reqObjPath"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(request.starts_with("Device.LocalAgent.Request."), "{body}");

    let done = controller.ask(json!({"op": "notification"}));
    let notify = &done["msg"]["body"]["request"]["notify"];
    assert_eq!(notify["subscriptionId"], "pings", "{done}");
    let complete = &notify["operComplete"];
    assert_eq!(complete["objPath"], "Device.IP.Diagnostics.", "{done}");
    assert_eq!(complete["commandName"], "IPPing()", "{done}");
    assert_eq!(complete["commandKey"], "ping-1", "{done}");
    let outputs = &complete["reqOutputArgs"]["outputArgs"];
    assert_eq!(outputs["Status"], "Complete", "{done}");
    assert_eq!(outputs["SuccessCount"], "2", "{done}");
    assert_eq!(outputs["FailureCount"], "0", "{done}");
    // The row is gone with the command.
    let listed = controller.request(
        &topic,
        "requests",
        "GET_INSTANCES",
        json!({"getInstances": {"objPaths": ["Device.LocalAgent.Request."], "firstLevelOnly": true}}),
    );
    let result = &listed["response"]["getInstancesResp"]["reqPathResults"][0];
    assert!(result.get("errCode").is_none(), "{listed}");
    assert!(result.get("currInsts").is_none(), "{listed}");
}

/// USP over WebSocket: the agent opens the session to the controller with
/// the v1.usp subprotocol and its endpoint ID in the query, sends its
/// connect record, is read and written, notifies; a message that is not
/// a record ends the session (R-WS.16) and the agent opens it again.
#[test]
fn a_controller_reaches_the_agent_over_websocket() {
    const SSID: &str = "Device.WiFi.SSID.1.SSID";
    let dir = tempfile::tempdir().unwrap();
    let port = dm_tests::files::free_tcp_port();
    let mut controller = Controller::on(&format!("ws:{port}"), "-");
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\noui = \"00D09E\"\nserial_number = \"USP1\"\n\n\
             [usp]\ncontroller_url = \"ws://127.0.0.1:{port}/usp\"\n\
             controller_endpoint_id = \"{CONTROLLER}\"\n"
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
    );
    let session = controller.ask(json!({"op": "session"}));
    assert_eq!(session["eid"], AGENT, "{session}");
    assert_eq!(session["subprotocol"], "v1.usp", "{session}");
    assert!(
        session["path"].as_str().unwrap().starts_with("/usp?eid="),
        "{session}"
    );
    let connect = controller.ask(json!({"op": "connect_record"}));
    assert_eq!(connect["from"], AGENT, "{connect}");
    assert_eq!(connect["websocket_connect"], true, "{connect}");

    assert_eq!(
        get_one(&mut controller, "-", "Device.DeviceInfo.SerialNumber"),
        "USP1"
    );
    // The MTP's objects: the session up, the controller where it listens.
    let port = port.to_string();
    for (path, expected) in [
        ("Device.LocalAgent.MTP.1.Status", "Up"),
        ("Device.LocalAgent.MTP.1.Protocol", "WebSocket"),
        (
            "Device.LocalAgent.Controller.1.MTP.1.WebSocket.Host",
            "127.0.0.1",
        ),
        (
            "Device.LocalAgent.Controller.1.MTP.1.WebSocket.Port",
            port.as_str(),
        ),
        (
            "Device.LocalAgent.Controller.1.MTP.1.WebSocket.Path",
            "/usp",
        ),
        (
            "Device.LocalAgent.Controller.1.MTP.1.WebSocket.IsEncrypted",
            "false",
        ),
    ] {
        assert_eq!(get_one(&mut controller, "-", path), expected, "{path}");
    }
    subscribe(
        &mut controller,
        "-",
        &[
            ("NotifType", "ValueChange"),
            ("ReferenceList", SSID),
            ("Enable", "true"),
        ],
    );
    let body = set_ssid(&mut controller, "-", "over-ws");
    assert!(body["response"]["setResp"].is_object(), "{body}");
    let notification = controller.ask(json!({"op": "notification"}));
    let change = &notification["msg"]["body"]["request"]["notify"]["valueChange"];
    assert_eq!(change["paramValue"], "over-ws", "{notification}");

    // Not a record: the agent closes the session, then opens another.
    controller.ask(json!({"op": "raw", "topic": "-", "hex": "ffff00c0ffee"}));
    let again = controller.ask(json!({"op": "session"}));
    assert_eq!(again["eid"], AGENT, "{again}");
    let connect = controller.ask(json!({"op": "connect_record"}));
    assert_eq!(connect["websocket_connect"], true, "{connect}");
    assert_eq!(get_one(&mut controller, "-", SSID), "over-ws");
}

/// NotifRetry: a Notify the controller does not acknowledge comes again
/// (same message, after the retry wait); once acknowledged with a
/// NotifyResp it stops.
#[test]
fn an_unacknowledged_notification_is_sent_again() {
    const SSID: &str = "Device.WiFi.SSID.1.SSID";
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "sure"),
            ("NotifType", "ValueChange"),
            ("ReferenceList", SSID),
            ("NotifRetry", "true"),
            ("Enable", "true"),
        ],
    );
    let set = |controller: &mut Controller, value: &str| {
        let body = set_ssid(controller, &topic, value);
        assert!(body["response"]["setResp"].is_object(), "{body}");
    };
    let notified = |controller: &mut Controller| {
        let n = controller.ask(json!({"op": "notification"}));
        let notify = &n["msg"]["body"]["request"]["notify"];
        assert_eq!(notify["sendResp"], true, "{n}");
        (
            n["msg"]["header"]["msgId"].as_str().unwrap().to_owned(),
            notify["valueChange"]["paramValue"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    set(controller, "first");
    let (id, value) = notified(controller);
    assert_eq!(value, "first");
    // Not acknowledged: the same Notify again.
    let (again, value) = notified(controller);
    assert_eq!((again.as_str(), value.as_str()), (id.as_str(), "first"));
    controller.ask(json!({
        "op": "post",
        "to": AGENT,
        "topic": topic,
        "msg": {"header": {"msgId": id, "msgType": "NOTIFY_RESP"},
                "body": {"response": {"notifyResp": {"subscriptionId": "sure"}}}},
    }));
    // Acknowledged: what comes next is the next change's.
    set(controller, "second");
    let (next, value) = notified(controller);
    assert_ne!(next, id);
    assert_eq!(value, "second");
    // Both acknowledged: nothing comes again within 21 s, longer than
    // the first's next retry wait would have been (10 to 20 s).
    controller.ask(json!({
        "op": "post",
        "to": AGENT,
        "topic": topic,
        "msg": {"header": {"msgId": next, "msgType": "NOTIFY_RESP"},
                "body": {"response": {"notifyResp": {"subscriptionId": "sure"}}}},
    }));
    controller.ask(json!({"op": "no_notification", "seconds": 21}));
}

/// TLS under both MTPs, with the agent's CA file: mqtts:// to a broker's
/// TLS listener, and wss:// to a controller serving a certificate the
/// test's CA signed (openssl). The connect record arriving is the proof
/// that the agent's handshake verified the server.
#[test]
fn usp_runs_over_mqtt_and_websocket_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = dm_tests::tls::certificates(dir.path());
    // MQTT: the controller on the plain listener, the agent on the TLS one.
    let (plain, tls_port) = (
        dm_tests::files::free_tcp_port(),
        dm_tests::files::free_tcp_port(),
    );
    let _broker = mosquitto_with(
        dir.path(),
        plain,
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    let mut controller = Controller::start(plain);
    let config = dir.path().join("mqtts.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\noui = \"00D09E\"\nserial_number = \"USP1\"\n\n\
             [usp]\nbroker = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{}\"\n\
             controller_endpoint_id = \"{CONTROLLER}\"\ncontroller_topic = \"{CONTROLLER_TOPIC}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    // Without the test's CA (the system's only), the broker is not
    // trusted: no connection, so no connect record.
    let untrusting = dir.path().join("untrusting.toml");
    std::fs::write(
        &untrusting,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&format!("ca_file = \"{}\"\n", ca.display()), ""),
    )
    .unwrap();
    let agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &untrusting,
        &dir.path().join("untrusting-state"),
    );
    let refused = controller.try_ask(json!({"op": "connect_record", "timeout": 4}));
    assert_eq!(refused["error"], "nothing came", "{refused}");
    drop(agent);
    let agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("mqtts-state"),
    );
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    assert_eq!(
        get_one(&mut controller, &topic, "Device.DeviceInfo.SerialNumber"),
        "USP1"
    );
    drop(agent);

    // WebSocket over TLS.
    let port = dm_tests::files::free_tcp_port();
    let mut controller = Controller::with(
        &format!("wss:{port}"),
        "-",
        &[("USP_TLS_CERT", &cert), ("USP_TLS_KEY", &key)],
    );
    let config = dir.path().join("wss.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\noui = \"00D09E\"\nserial_number = \"USP1\"\n\n\
             [usp]\ncontroller_url = \"wss://127.0.0.1:{port}/usp\"\nca_file = \"{}\"\n\
             controller_endpoint_id = \"{CONTROLLER}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let _agent = dm_tests::agent::run(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("wss-state"),
    );
    let session = controller.ask(json!({"op": "session"}));
    assert_eq!(session["eid"], AGENT, "{session}");
    let connect = controller.ask(json!({"op": "connect_record"}));
    assert_eq!(connect["websocket_connect"], true, "{connect}");
    assert_eq!(
        get_one(&mut controller, "-", "Device.DeviceInfo.SerialNumber"),
        "USP1"
    );
}

/// The next notification's OperationComplete.
fn next_complete(controller: &mut Controller) -> Value {
    let done = controller.ask(json!({"op": "notification"}));
    let complete = done["msg"]["body"]["request"]["notify"]["operComplete"].clone();
    assert!(complete.is_object(), "not an OperationComplete: {done}");
    complete
}

/// The Request row an asynchronous command's OperateResp names.
fn row_of(body: &Value) -> Option<&str> {
    body["response"]["operateResp"]["operationResults"][0]["reqObjPath"].as_str()
}

/// A command whose results are a table: Operate
/// `Device.IP.Diagnostics.TraceRoute()` to the loopback, with only its
/// mandatory inputs (the others take the object's starting values, not
/// what an earlier run left); its OperationComplete carries each hop's
/// row by number (`RouteHops.1.HostAddress`). GetSupportedDM lists it
/// with its table's output names.
#[test]
fn an_async_trace_route_reports_its_hops() {
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let supported = commands_of(controller, &topic, "Device.IP.Diagnostics.");
    let text = supported.to_string();
    assert!(
        text.contains("TraceRoute()") && text.contains("RouteHops.{i}.HostAddress"),
        "{supported}"
    );
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "traces"),
            ("NotifType", "OperationComplete"),
            ("ReferenceList", "Device.IP.Diagnostics.TraceRoute()"),
            ("Enable", "true"),
        ],
    );
    let body = controller.request(
        &topic,
        "trace",
        "OPERATE",
        json!({"operate": {
            "command": "Device.IP.Diagnostics.TraceRoute()",
            "commandKey": "trace-1",
            "sendResp": true,
            "inputArgs": {"ProtocolVersion": "IPv4", "Host": "127.0.0.1"},
        }}),
    );
    let result = &body["response"]["operateResp"]["operationResults"][0];
    assert_eq!(
        result["executedCommand"], "Device.IP.Diagnostics.TraceRoute()",
        "{body}"
    );
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "TraceRoute()", "{complete}");
    assert_eq!(complete["commandKey"], "trace-1", "{complete}");
    let outputs = &complete["reqOutputArgs"]["outputArgs"];
    assert_eq!(outputs["Status"], "Complete", "{complete}");
    assert_eq!(
        outputs["RouteHops.1.HostAddress"], "127.0.0.1",
        "{complete}"
    );
    assert!(
        outputs.get("RouteHops.2.HostAddress").is_none(),
        "{complete}"
    );
    // The inputs not given took the object's starting values.
    let read = controller.request(
        &topic,
        "read",
        "GET",
        json!({"get": {"paramPaths": ["Device.IP.Diagnostics.TraceRoute.MaxHopCount",
                                      "Device.IP.Diagnostics.TraceRoute.NumberOfTries"]}}),
    );
    let text = read.to_string();
    assert!(
        text.contains("\"MaxHopCount\":\"30\"") && text.contains("\"NumberOfTries\":\"3\""),
        "{read}"
    );
}

/// `Device.LocalAgent.Request.{i}.Cancel()`: a UDP echo test waiting on a
/// socket that never answers (30 s) is stopped; its
/// OperationComplete is the failure 7023 and its row goes. A row that
/// runs nothing is 7026.
#[test]
fn a_running_command_is_canceled_by_its_request_row() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "echoes"),
            ("NotifType", "OperationComplete"),
            (
                "ReferenceList",
                "Device.IP.Diagnostics.UDPEchoDiagnostics()",
            ),
            ("Enable", "true"),
        ],
    );
    let body = controller.request(
        &topic,
        "nothing",
        "OPERATE",
        json!({"operate": {"command": "Device.LocalAgent.Request.77.Cancel()", "sendResp": true}}),
    );
    assert_eq!(body["error"]["errCode"], 7026, "{body}");
    let body = controller.request(
        &topic,
        "echo",
        "OPERATE",
        json!({"operate": {
            "command": "Device.IP.Diagnostics.UDPEchoDiagnostics()",
            "commandKey": "echo-1",
            "sendResp": true,
            "inputArgs": {"Host": "127.0.0.1", "Port": port.to_string(), "Timeout": "30000"},
        }}),
    );
    let request = body["response"]["operateResp"]["operationResults"][0]["reqObjPath"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let body = controller.request(
        &topic,
        "cancel",
        "OPERATE",
        json!({"operate": {"command": format!("{request}Cancel()"), "sendResp": true}}),
    );
    assert_eq!(
        body["response"]["operateResp"]["operationResults"][0]["executedCommand"],
        format!("{request}Cancel()"),
        "{body}"
    );
    let complete = next_complete(controller);
    assert_eq!(complete["commandKey"], "echo-1", "{complete}");
    // A failure, not the test's results: it was stopped, not timed out.
    assert_eq!(complete["cmdFailure"]["errCode"], 7023, "{complete}");
    let listed = controller.request(
        &topic,
        "requests",
        "GET_INSTANCES",
        json!({"getInstances": {"objPaths": ["Device.LocalAgent.Request."], "firstLevelOnly": true}}),
    );
    let result = &listed["response"]["getInstancesResp"]["reqPathResults"][0];
    assert!(result.get("currInsts").is_none(), "{listed}");
    drop(silent);
}

/// A controller the configuration gives the Untrusted role: over MQTT it
/// reads the device's identity, and its Set is refused with 7006 (TR-369
/// §Access control), the value unchanged.
#[test]
fn an_untrusted_controller_is_refused_writes() {
    let mut usp = Usp::start("controller_role = \"untrusted\"\n");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let read = controller.request(
        &topic,
        "read",
        "GET",
        json!({"get": {"paramPaths": ["Device.DeviceInfo.SerialNumber", "Device.WiFi.SSID.1.SSID"]}}),
    );
    let results = &read["response"]["getResp"]["reqPathResults"];
    assert_eq!(
        results[0]["resolvedPathResults"][0]["resultParams"]["SerialNumber"], "USP1",
        "{read}"
    );
    assert_eq!(results[1]["errCode"], 7006, "{read}");
    let body = set_ssid(controller, &topic, "not-mine");
    assert_eq!(body["error"]["errCode"], 7006, "{body}");
}

/// `Device.LocalAgent.Controller.{i}.SendOnBoardRequest()`: answered,
/// then an OnBoardRequest Notify with the device's OUI, product class and
/// serial number and the USP versions the agent speaks, with send_resp
/// (TR-369). A row that is no controller is 7026.
#[test]
fn an_on_board_request_is_sent_when_asked() {
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let operate = |command: &str| json!({"operate": {"command": command, "commandKey": "onboard", "sendResp": true}});
    let body = controller.request(
        &topic,
        "none",
        "OPERATE",
        operate("Device.LocalAgent.Controller.7.SendOnBoardRequest()"),
    );
    assert_eq!(body["error"]["errCode"], 7026, "{body}");
    let body = controller.request(
        &topic,
        "onboard",
        "OPERATE",
        operate("Device.LocalAgent.Controller.1.SendOnBoardRequest()"),
    );
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let notification = controller.ask(json!({"op": "notification"}));
    let notify = &notification["msg"]["body"]["request"]["notify"];
    assert_eq!(notify["sendResp"], true, "{notification}");
    let request = &notify["onBoardReq"];
    assert_eq!(request["oui"], "00D09E", "{notification}");
    assert_eq!(request["serialNumber"], "USP1", "{notification}");
    assert!(
        request["agentSupportedProtocolVersions"]
            .as_str()
            .is_some_and(|v| v.split(',').any(|v| v == "1.4")),
        "{notification}"
    );
    assert_eq!(
        request["productClass"],
        get_one(controller, &topic, "Device.DeviceInfo.ProductClass"),
        "{notification}"
    );
}

/// TimeToLive (TR-181 2.16): a subscription made with one is removed when
/// it runs out, which another subscription (to deletions of
/// subscriptions) is told of; one without stays.
#[test]
fn a_subscription_goes_when_its_time_to_live_runs_out() {
    let mut usp = Usp::start("");
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let watcher = subscribe(
        controller,
        &topic,
        &[
            ("ID", "watcher"),
            ("NotifType", "ObjectDeletion"),
            ("ReferenceList", "Device.LocalAgent.Subscription."),
            ("Enable", "true"),
        ],
    );
    let short = subscribe(
        controller,
        &topic,
        &[
            ("ID", "short"),
            ("NotifType", "ValueChange"),
            ("ReferenceList", "Device.WiFi.SSID.1.SSID"),
            ("TimeToLive", "1"),
            ("Enable", "true"),
        ],
    );
    let gone = controller.ask(json!({"op": "notification"}));
    let notify = &gone["msg"]["body"]["request"]["notify"];
    assert_eq!(notify["subscriptionId"], "watcher", "{gone}");
    assert_eq!(notify["objDeletion"]["objPath"], short.as_str(), "{gone}");
    let listed = controller.request(
        &topic,
        "left",
        "GET_INSTANCES",
        json!({"getInstances": {"objPaths": ["Device.LocalAgent.Subscription."], "firstLevelOnly": true}}),
    );
    let rows: Vec<&str> = listed["response"]["getInstancesResp"]["reqPathResults"][0]["currInsts"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|i| i["instantiatedObjPath"].as_str())
        .collect();
    assert_eq!(rows, [watcher.as_str()], "{listed}");
}

/// Firmware over USP: `FirmwareImage.2.Download()` hands the URL to the
/// firmware pipeline (as an LwM2M Package URI), and its end is the
/// pipeline's: a URL that answers 404 fails (7022, the Update Result in
/// the message); a good one with AutoActivate is fetched and applied by
/// the update program, then OperationComplete says so. Activate() with
/// no image waiting, and a Download() into the running image's row,
/// are refused.
#[test]
fn a_firmware_image_is_downloaded_and_activated() {
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let http_port = dm_tests::files::image_server(image.clone());
    let program_dir = tempfile::tempdir().unwrap();
    let (program, applied) = dm_tests::files::copying_program(program_dir.path());
    let mut usp = Usp::start(&format!(
        "[firmware]\ncommand = [\"{}\"]\n",
        program.display()
    ));
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    const DOWNLOAD: &str = "Device.DeviceInfo.FirmwareImage.2.Download()";
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "firmware"),
            ("NotifType", "OperationComplete"),
            ("ReferenceList", DOWNLOAD),
            ("Enable", "true"),
        ],
    );
    let download = |command: &str, url: &str, activate: &str| {
        json!({"operate": {
            "command": command,
            "commandKey": "fw",
            "sendResp": true,
            "inputArgs": {"URL": url, "AutoActivate": activate},
        }})
    };
    let url = |path: &str| format!("http://127.0.0.1:{http_port}/{path}");
    let body = controller.request(
        &topic,
        "row-1",
        "OPERATE",
        download(
            "Device.DeviceInfo.FirmwareImage.1.Download()",
            &url("image"),
            "true",
        ),
    );
    assert_eq!(body["error"]["errCode"], 7022, "{body}");
    let body = controller.request(
        &topic,
        "missing",
        "OPERATE",
        download(DOWNLOAD, &url("missing"), "false"),
    );
    assert!(row_of(&body).is_some(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "Download()", "{complete}");
    assert_eq!(complete["cmdFailure"]["errCode"], 7022, "{complete}");
    assert!(
        complete["cmdFailure"]["errMsg"]
            .as_str()
            .is_some_and(|m| m.contains("Update Result 7")),
        "{complete}"
    );
    // A download that stalls: a second firmware command meanwhile is
    // refused (the pipeline is the first's); Cancel() on its Request row
    // stops it, and its OperationComplete says canceled (7023).
    let (stall_port, stalled) = dm_tests::files::stalling_server();
    let body = controller.request(
        &topic,
        "stall",
        "OPERATE",
        download(
            DOWNLOAD,
            &format!("http://127.0.0.1:{stall_port}/image"),
            "false",
        ),
    );
    let request = body["response"]["operateResp"]["operationResults"][0]["reqObjPath"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    stalled
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the download never began");
    let body = controller.request(
        &topic,
        "second",
        "OPERATE",
        download(DOWNLOAD, &url("image"), "false"),
    );
    assert_eq!(body["error"]["errCode"], 7022, "{body}");
    let body = controller.request(
        &topic,
        "cancel",
        "OPERATE",
        json!({"operate": {"command": format!("{request}Cancel()"), "sendResp": true}}),
    );
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["cmdFailure"]["errCode"], 7023, "{complete}");
    let body = controller.request(
        &topic,
        "image",
        "OPERATE",
        download(DOWNLOAD, &url("image"), "true"),
    );
    assert!(row_of(&body).is_some(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "Download()", "{complete}");
    assert_eq!(complete["commandKey"], "fw", "{complete}");
    assert!(complete["reqOutputArgs"].is_object(), "{complete}");
    assert_eq!(std::fs::read(&applied).unwrap(), image);
    // Nothing waits to be applied now.
    let body = controller.request(
        &topic,
        "activate",
        "OPERATE",
        json!({"operate": {"command": "Device.DeviceInfo.FirmwareImage.2.Activate()", "sendResp": true}}),
    );
    assert_eq!(body["error"]["errCode"], 7022, "{body}");
}

/// Software modules over USP: InstallDU() runs CWMP ChangeDUState's
/// operation (the package fetched, then `PROGRAM install`), and its end is
/// the OperationComplete; the unit is then a DeploymentUnit row with the
/// name and version the program printed; Uninstall() on that row removes
/// it; a URL that answers 404 is a failure (7022) with the CWMP fault.
#[test]
fn a_deployment_unit_is_installed_and_uninstalled() {
    let package: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let http_port = dm_tests::files::image_server(package.clone());
    let program_dir = tempfile::tempdir().unwrap();
    let program = program_dir.path().join("packages");
    let calls = program_dir.path().join("calls");
    dm_tests::files::executable(
        &program,
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{calls}'\n\
             case \"$1\" in install) echo 'demo-pkg 1.2.3';; esac\n",
            calls = calls.display()
        ),
    );
    let mut usp = Usp::start(&format!(
        "[software]\ncommand = [\"{}\"]\n",
        program.display()
    ));
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "software"),
            ("NotifType", "OperationComplete"),
            (
                "ReferenceList",
                "Device.SoftwareModules.InstallDU(),Device.SoftwareModules.DeploymentUnit.*.Update(),\
                 Device.SoftwareModules.DeploymentUnit.*.Uninstall()",
            ),
            ("Enable", "true"),
        ],
    );
    let install = |url: String| {
        json!({"operate": {
            "command": "Device.SoftwareModules.InstallDU()",
            "commandKey": "du",
            "sendResp": true,
            "inputArgs": {"URL": url, "UUID": "6c5e0e3c-0b1f-4c0e-9d4f-0c0ffee00001"},
        }})
    };
    let body = controller.request(
        &topic,
        "missing",
        "OPERATE",
        install(format!("http://127.0.0.1:{http_port}/missing")),
    );
    assert!(row_of(&body).is_some(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "InstallDU()", "{complete}");
    assert_eq!(complete["cmdFailure"]["errCode"], 7022, "{complete}");
    let body = controller.request(
        &topic,
        "install",
        "OPERATE",
        install(format!("http://127.0.0.1:{http_port}/image")),
    );
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let complete = next_complete(controller);
    assert!(complete["reqOutputArgs"].is_object(), "{complete}");
    // The unit, by its UUID.
    let search =
        "Device.SoftwareModules.DeploymentUnit.[UUID==\"6c5e0e3c-0b1f-4c0e-9d4f-0c0ffee00001\"].";
    let unit = controller.request(
        &topic,
        "unit",
        "GET",
        json!({"get": {"paramPaths": [search]}}),
    );
    let found = &unit["response"]["getResp"]["reqPathResults"][0]["resolvedPathResults"][0];
    assert_eq!(found["resultParams"]["Name"], "demo-pkg", "{unit}");
    assert_eq!(found["resultParams"]["Version"], "1.2.3", "{unit}");
    let row = found["resolvedPath"].as_str().unwrap().to_owned();
    // Update() of that row: fetched and installed again.
    let body = controller.request(
        &topic,
        "update",
        "OPERATE",
        json!({"operate": {"command": format!("{row}Update()"), "commandKey": "du", "sendResp": true,
                           "inputArgs": {"URL": format!("http://127.0.0.1:{http_port}/image")}}}),
    );
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "Update()", "{complete}");
    assert!(complete["reqOutputArgs"].is_object(), "{complete}");
    // The package's Execution Unit (the row of the same number): started
    // and stopped by the package program, its Status following.
    let unit_row = row.replace("DeploymentUnit", "ExecutionUnit");
    assert_eq!(
        get_one(controller, &topic, &format!("{unit_row}Name")),
        "demo-pkg"
    );
    assert_eq!(
        get_one(controller, &topic, &format!("{unit_row}Status")),
        "Idle"
    );
    subscribe(
        controller,
        &topic,
        &[
            ("ID", "eu"),
            ("NotifType", "ValueChange"),
            (
                "ReferenceList",
                "Device.SoftwareModules.ExecutionUnit.*.Status",
            ),
            ("Enable", "true"),
        ],
    );
    let set_state = |controller: &mut Controller, state: &str| {
        controller.request(
            &topic,
            state,
            "OPERATE",
            json!({"operate": {"command": format!("{unit_row}SetRequestedState()"),
                               "commandKey": "eu", "sendResp": true,
                               "inputArgs": {"RequestedState": state}}}),
        )
    };
    // Starting (Stopping) while the program runs, then Active (Idle).
    for (state, moving) in [("Active", "Starting"), ("Idle", "Stopping")] {
        let body = set_state(controller, state);
        let result = &body["response"]["operateResp"]["operationResults"][0];
        assert!(result["reqOutputArgs"].is_object(), "{body}");
        for status in [moving, state] {
            let notification = controller.ask(json!({"op": "notification"}));
            let change = &notification["msg"]["body"]["request"]["notify"]["valueChange"];
            assert_eq!(
                change["paramPath"],
                format!("{unit_row}Status"),
                "{notification}"
            );
            assert_eq!(change["paramValue"], status, "{notification}");
        }
    }
    // Asking for the state it is in does nothing; a state TR-181 does not
    // have is 7027.
    let body = set_state(controller, "Idle");
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let body = set_state(controller, "Running");
    assert_eq!(body["error"]["errCode"], 7027, "{body}");
    // From here, DUStateChange! too (TR-181 2.16's event of a unit's
    // operation).
    subscribe_du_events(controller, &topic);
    let body = controller.request(
        &topic,
        "uninstall",
        "OPERATE",
        json!({"operate": {"command": format!("{row}Uninstall()"), "commandKey": "du", "sendResp": true}}),
    );
    assert!(body["response"]["operateResp"].is_object(), "{body}");
    let complete = next_complete(controller);
    assert_eq!(complete["commandName"], "Uninstall()", "{complete}");
    assert!(complete["reqOutputArgs"].is_object(), "{complete}");
    let event = controller.ask(json!({"op": "notification"}));
    let event = &event["msg"]["body"]["request"]["notify"]["event"];
    assert_eq!(event["eventName"], "DUStateChange!", "{event}");
    assert_eq!(
        event["params"]["OperationPerformed"], "Uninstall",
        "{event}"
    );
    assert_eq!(event["params"]["CurrentState"], "Uninstalled", "{event}");
    assert_eq!(
        event["params"]["UUID"], "6c5e0e3c-0b1f-4c0e-9d4f-0c0ffee00001",
        "{event}"
    );
    assert_eq!(event["params"]["Fault.FaultCode"], "0", "{event}");
    let unit = controller.request(
        &topic,
        "gone",
        "GET",
        json!({"get": {"paramPaths": [search]}}),
    );
    let result = &unit["response"]["getResp"]["reqPathResults"][0];
    assert!(
        result["resolvedPathResults"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{unit}"
    );
    let called = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        called.lines().collect::<Vec<_>>(),
        ["install", "install", "activate", "deactivate", "uninstall"]
    );
}

/// A command a DM document declares (examples/vendor's Reset()) is listed
/// by GetSupportedDM and operated through the object's provider: its
/// input reaches the provider, whose push comes back as a ValueChange; an
/// input the document does not declare is 7027 and reaches nothing.
#[test]
fn a_declared_command_is_carried_out_by_its_provider() {
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vendor");
    let mut usp = Usp::start(&format!(
        "[[object]]\ndefinition = \"{dir}/example.xml\"\n\
         provider = [\"{python}\", \"{dir}/provider.py\"]\n\
         volatile = [\"Changes\"]\n",
        dir = example.display(),
        python = dm_tests::py_peers::python().display(),
    ));
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let supported = commands_of(controller, &topic, "Device.X_000000_Example.");
    let object =
        &supported["response"]["getSupportedDmResp"]["reqObjResults"][0]["supportedObjs"][0];
    let command = &object["supportedCommands"][0];
    assert_eq!(command["commandName"], "Reset()", "{supported}");
    assert_eq!(command["inputArgNames"], json!(["Greeting"]), "{supported}");
    subscribe_greeting(controller, &topic);
    let reset = |controller: &mut Controller, inputs: Value| {
        controller.request(
            &topic,
            "reset",
            "OPERATE",
            json!({"operate": {"command": "Device.X_000000_Example.Reset()",
                               "commandKey": "r", "sendResp": true, "inputArgs": inputs}}),
        )
    };
    let body = reset(controller, json!({"Colour": "red"}));
    assert_eq!(body["error"]["errCode"], 7027, "{body}");
    let body = reset(controller, json!({"Greeting": "from-usp"}));
    let result = &body["response"]["operateResp"]["operationResults"][0];
    assert_eq!(
        result["executedCommand"], "Device.X_000000_Example.Reset()",
        "{body}"
    );
    // The provider's first push ("hello") may come after the
    // subscription was made: it is the only other change there may be.
    for _ in 0..2 {
        let notification = controller.ask(json!({"op": "notification"}));
        let change = &notification["msg"]["body"]["request"]["notify"]["valueChange"];
        assert_eq!(
            change["paramPath"], "Device.X_000000_Example.Greeting",
            "{notification}"
        );
        match change["paramValue"].as_str() {
            Some("from-usp") => return,
            Some("hello") => continue,
            _ => panic!("{notification}"),
        }
    }
    panic!("the provider's value did not come");
}

/// A deployment unit an ACS installs with ChangeDUState is told to a USP
/// controller's DUStateChange! subscription (TR-181 2.16: the event of
/// every unit's state change, whoever asked), with its Execution Unit.
/// The ACS's session is started by a USP Set of a parameter it asked
/// active notification of.
#[test]
fn a_unit_an_acs_installs_is_a_du_state_change_over_usp() {
    use dm_tests::mini_acs::MiniAcs;
    let http_port = dm_tests::files::image_server(vec![7u8; 20_000]);
    let uuid = "0d6f5c3e-2a1b-4c9d-8e7f-6a5b4c3d2e1f";
    let attributes = "<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct>\
         <Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange>\
         <Notification>2</Notification><AccessListChange>0</AccessListChange><AccessList/>\
         </SetParameterAttributesStruct></ParameterList></cwmp:SetParameterAttributes>"
        .to_owned();
    let install = format!(
        "<cwmp:ChangeDUState><Operations><InstallOpStruct><URL>http://127.0.0.1:{http_port}/image</URL>\
         <UUID>{uuid}</UUID><Username/><Password/><ExecutionEnvRef/></InstallOpStruct></Operations>\
         <CommandKey>acs-du</CommandKey></cwmp:ChangeDUState>"
    );
    let mut empties = 0;
    let acs = MiniAcs::start(Box::new(move |body| {
        if body.contains("<cwmp:DUStateChangeComplete>") {
            return Some("<cwmp:DUStateChangeCompleteResponse/>".into());
        }
        if body.is_empty() {
            empties += 1;
            return match empties {
                1 => Some(attributes.clone()),
                2 => Some(install.clone()),
                _ => None,
            };
        }
        None
    }));
    let program_dir = tempfile::tempdir().unwrap();
    let program = program_dir.path().join("packages");
    dm_tests::files::executable(
        &program,
        "#!/bin/sh\ncase \"$1\" in install) echo 'acs-pkg 2.0';; esac\n",
    );
    let mut usp = Usp::start(&format!(
        "[cwmp]\nacs_url = \"{}\"\nperiodic_inform = false\n\
         connection_request_port = {}\nconnection_request_bind = \"127.0.0.1\"\n\n\
         [lwm2m]\nenabled = false\n\n[software]\ncommand = [\"{}\"]\n",
        acs.url(),
        dm_tests::files::free_tcp_port(),
        program.display()
    ));
    let controller = &mut usp.controller;
    acs.post_with("SetParameterAttributesResponse");
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe_du_events(controller, &topic);
    let body = set_ssid(controller, &topic, "start-a-session");
    assert!(body["response"]["setResp"].is_object(), "{body}");
    acs.post_with("ChangeDUStateResponse");
    let event = controller.ask(json!({"op": "notification"}));
    let event = &event["msg"]["body"]["request"]["notify"]["event"];
    assert_eq!(event["eventName"], "DUStateChange!", "{event}");
    let params = &event["params"];
    assert_eq!(params["OperationPerformed"], "Install", "{event}");
    assert_eq!(params["CurrentState"], "Installed", "{event}");
    assert_eq!(params["UUID"], uuid, "{event}");
    assert_eq!(params["Version"], "2.0", "{event}");
    let unit = params["DeploymentUnitRef"].as_str().unwrap();
    assert_eq!(
        params["ExecutionUnitRefList"],
        unit.replace("DeploymentUnit", "ExecutionUnit"),
        "{event}"
    );
    let complete = acs.post_with("<cwmp:DUStateChangeComplete>");
    assert!(
        complete.contains("<CommandKey>acs-du</CommandKey>"),
        "{complete}"
    );
}

/// The D-Bus side of a declared command: a service that registered for
/// the vendor object gets the controller's Operate as
/// `ExecuteCommand(instance, "Reset()", inputs)`, and its push comes back
/// as the value.
#[test]
fn a_declared_command_reaches_a_dbus_provider() {
    const PROVIDER: &str = r#"
import dbus, dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
agent = dbus.Interface(
    bus.get_object("org.dmagent.Agent1", "/org/dmagent/Agent1", introspect=False),
    "org.dmagent.Agent1")
OBJECT = "Device.X_000000_Example."
def push(instance, greeting):
    agent.PushValues(OBJECT, dbus.UInt32(instance), {"Greeting": greeting}, signature="sua{sv}")
    return False
class Provider(dbus.service.Object):
    @dbus.service.method("org.dmagent.Provider1", in_signature="usa{ss}")
    def ExecuteCommand(self, instance, command, inputs):
        print(f"{command} {inputs.get('Greeting')}", flush=True)
        GLib.idle_add(push, instance, inputs.get("Greeting", "hello"))
Provider(bus, "/org/example/Example")
agent.RegisterProvider(OBJECT, dbus.ObjectPath("/org/example/Example"))
print("registered", flush=True)
GLib.MainLoop().run()
"#;
    let stack = dm_tests::dbus_stack::Stack::mock();
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/vendor");
    let mut usp = Usp::start_on(
        &format!(
            "[[object]]\ndefinition = \"{}/example.xml\"\nprovider = \"dbus\"\n",
            example.display()
        ),
        Some(&stack.bus),
    );
    let controller = &mut usp.controller;
    // Connected: the control API is on the bus by then.
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    let mut provider = Guard(
        Command::new("/usr/bin/python3")
            .args(["-c", PROVIDER])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = dm_tests::process::lines(provider.0.stdout.take().unwrap());
    let line = |what: &str| {
        lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the provider's {what}"))
    };
    assert_eq!(line("registration"), "registered");
    subscribe_greeting(controller, &topic);
    let body = controller.request(
        &topic,
        "reset",
        "OPERATE",
        json!({"operate": {"command": "Device.X_000000_Example.Reset()", "commandKey": "r",
                           "sendResp": true, "inputArgs": {"Greeting": "over-dbus"}}}),
    );
    let result = &body["response"]["operateResp"]["operationResults"][0];
    assert!(result["reqOutputArgs"].is_object(), "{body}");
    assert_eq!(line("command"), "Reset() over-dbus");
    // Its push is the value now: the only change there is.
    let notification = controller.ask(json!({"op": "notification"}));
    let change = &notification["msg"]["body"]["request"]["notify"]["valueChange"];
    assert_eq!(
        change["paramPath"], "Device.X_000000_Example.Greeting",
        "{notification}"
    );
    assert_eq!(change["paramValue"], "over-dbus", "{notification}");
}

/// A unit an LwM2M server installs and uninstalls through /9 (E.9's
/// Install and Uninstall, the package program behind them) is told to a
/// USP controller's DUStateChange! subscription, as CWMP's are.
#[test]
fn a_unit_an_lwm2m_server_installs_is_a_du_state_change_over_usp() {
    use dm_tests::py_peers::{json_lines, next_json};
    let http_port = dm_tests::files::image_server(vec![9u8; 20_000]);
    let coap_port = dm_tests::files::free_udp_port();
    let mut lwm2m = Guard(
        dm_tests::py_peers::lwm2m_server()
            .args([
                coap_port.to_string(),
                "software".into(),
                format!("http://127.0.0.1:{http_port}/image"),
                "wait".into(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lwm2m_in = lwm2m.0.stdin.take().unwrap();
    let events = json_lines(&mut lwm2m.0);
    let program_dir = tempfile::tempdir().unwrap();
    let program = program_dir.path().join("packages");
    dm_tests::files::executable(
        &program,
        "#!/bin/sh\ncase \"$1\" in install) echo 'lwm2m-pkg 4.1';; esac\n",
    );
    let mut usp = Usp::start(&format!(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:{coap_port}\"\n\n\
         [software]\ncommand = [\"{}\"]\n",
        program.display()
    ));
    while next_json(&events)["event"] != "register" {}
    let controller = &mut usp.controller;
    let connect = controller.ask(json!({"op": "connect_record"}));
    let topic = connect["subscribed_topic"].as_str().unwrap().to_owned();
    subscribe_du_events(controller, &topic);
    writeln!(lwm2m_in, "go").unwrap();
    for (operation, state) in [("Install", "Installed"), ("Uninstall", "Uninstalled")] {
        let notification = controller.ask(json!({"op": "notification"}));
        let event = &notification["msg"]["body"]["request"]["notify"]["event"];
        assert_eq!(event["eventName"], "DUStateChange!", "{notification}");
        let params = &event["params"];
        assert_eq!(params["OperationPerformed"], operation, "{event}");
        assert_eq!(params["CurrentState"], state, "{event}");
        assert_eq!(params["Version"], "4.1", "{event}");
        assert_eq!(params["Fault.FaultCode"], "0", "{event}");
        assert!(
            params["DeploymentUnitRef"]
                .as_str()
                .is_some_and(|r| r.starts_with("Device.SoftwareModules.DeploymentUnit.")),
            "{event}"
        );
    }
}
