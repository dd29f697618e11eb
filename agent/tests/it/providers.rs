//! D-Bus providers' registration and pushes, against the running agent on
//! a private bus: what is refused (a built-in or undeclared object, an
//! object another service serves, pushes from anyone but its provider,
//! values outside the declared types), what a push changes (values,
//! instances added and deleted, all or nothing) and the agent noticing the
//! provider leave the bus (NameOwnerChanged).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dm_tests::agent::Agent;

/// A provider that registers for /3303 and pushes, good and bad, printing
/// one JSON line per step; it goes on at each line of its input and exits
/// at the end of it.
const PROVIDER: &str = r#"
import dbus, json, sys
bus = dbus.SystemBus()
agent = dbus.Interface(
    bus.get_object("org.dmagent.Agent1", "/org/dmagent/Agent1", introspect=False),
    "org.dmagent.Agent1")
def attempt(step, call):
    try:
        call()
        out = {"step": step, "ok": True}
    except dbus.DBusException as e:
        out = {"step": step, "error": f"{e.get_dbus_name()}: {e.get_dbus_message()}"}
    print(json.dumps(out), flush=True)
u = dbus.UInt32
path = dbus.ObjectPath("/org/example/Temperature")
push = lambda i, v: agent.PushValues("/3303", u(i), v, signature="sua{sv}")
attempt("built-in", lambda: agent.RegisterProvider("/3", path))
attempt("undeclared", lambda: agent.RegisterProvider("/3304", path))
attempt("push before registering", lambda: push(0, {"5700": dbus.Double(1.0)}))
attempt("register", lambda: agent.RegisterProvider("/3303", path))
attempt("push a string for a float", lambda: push(0, {"5750": "lab", "5700": "hot"}))
attempt("push an unknown resource", lambda: push(0, {"9999": u(1)}))
attempt("push a dictionary", lambda: push(0, {"5700": dbus.Dictionary({"a": 1}, signature="sv")}))
attempt("push to a missing instance", lambda: push(5, {"5700": dbus.Double(2.0)}))
attempt("push", lambda: push(0, {"5700": dbus.Double(30.5), "5750": "lab"}))
attempt("add", lambda: agent.AddInstance("/3303", u(7), {"5700": dbus.Double(1.5)}, signature="sua{sv}"))
sys.stdin.readline()
attempt("delete", lambda: agent.DeleteInstance("/3303", u(7)))
sys.stdin.readline()
"#;

/// The temperature example's /3303 declared with a D-Bus provider.
fn provider_config(dir: &std::path::Path) -> PathBuf {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/temperature");
    let config = dir.join("dmagent.toml");
    std::fs::write(
        &config,
        format!(
            "[[object]]\ndefinition = \"{}/3303.xml\"\n\
             values = {{ \"0/5750\" = \"room\" }}\nprovider = \"dbus\"\n",
            example.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn dbus_providers_register_push_and_are_noticed_leaving() {
    let bus = dm_tests::dbus_stack::Stack::mock();
    let dir = tempfile::tempdir().unwrap();
    let config = provider_config(dir.path());
    let mut agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_dmagent"))
            .args(["--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("run")
            .env_remove("DMAGENT_CONFIG")
            .env("DMAGENT_BUS", "system")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.bus)
            .env("DMAGENT_LOG_LEVEL", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = dm_tests::process::lines(agent.0.stderr.take().unwrap());
    let logged = |needle: &str| loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the agent never logged {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    };
    dm_tests::agent::wait_for_control_api(&bus.bus);
    let dmagent = |args: &[&str]| -> Output {
        dm_tests::agent::cli_on_bus(env!("CARGO_BIN_EXE_dmagent"), &bus.bus, args)
    };
    let get = |path: &str| {
        let out = dmagent(&["get", path]);
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8(out.stderr).unwrap())
        }
    };

    let mut provider = Agent(
        Command::new("/usr/bin/python3")
            .args(["-c", PROVIDER])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.bus)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut steps = BufReader::new(provider.0.stdout.take().unwrap()).lines();
    let mut step = |name: &str| -> serde_json::Value {
        let line = steps.next().expect("the provider reports").unwrap();
        let step: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(step["step"], name, "{step}");
        step
    };
    let refused = |step: serde_json::Value, why: &str| {
        let error = step["error"].as_str().unwrap_or_else(|| panic!("{step}"));
        assert!(
            error.starts_with("org.freedesktop.DBus.Error.InvalidArgs") && error.contains(why),
            "{why:?} not in {error}"
        );
    };
    refused(step("built-in"), "not served by a D-Bus provider");
    refused(step("undeclared"), "not served by a D-Bus provider");
    refused(
        step("push before registering"),
        "is not its registered provider",
    );
    assert_eq!(step("register")["ok"], true);
    logged("D-Bus provider registered");
    // Nothing of a push with one bad value is taken.
    refused(step("push a string for a float"), "Sensor Value");
    refused(step("push an unknown resource"), "has no resource \"9999\"");
    refused(step("push a dictionary"), "is not a value");
    refused(step("push to a missing instance"), "/3303/5");
    assert_eq!(step("push")["ok"], true);
    assert_eq!(step("add")["ok"], true);
    assert_eq!(get("/3303/0/5700").unwrap(), "/3303/0/5700 30.5\n");
    assert_eq!(get("/3303/0/5750").unwrap(), "/3303/0/5750 lab\n");
    assert_eq!(get("/3303/7/5700").unwrap(), "/3303/7/5700 1.5\n");

    // Another connection cannot take the object over.
    let taken = Command::new("busctl")
        .args([
            "--system",
            "call",
            "org.dmagent.Agent1",
            "/org/dmagent/Agent1",
            "org.dmagent.Agent1",
            "RegisterProvider",
            "so",
            "/3303",
            "/other",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.bus)
        .output()
        .unwrap();
    assert!(!taken.status.success());
    let why = String::from_utf8_lossy(&taken.stderr);
    assert!(why.contains("is served by :"), "{why}");

    let input = provider.0.stdin.as_mut().unwrap();
    input.write_all(b"go\n").unwrap();
    input.flush().unwrap();
    assert_eq!(step("delete")["ok"], true);
    assert!(get("/3303/7/5700").is_err());

    // It leaves the bus: noticed, and its object is unavailable.
    drop(provider.0.stdin.take());
    let _ = provider.0.wait();
    logged("D-Bus provider left the bus");
    let away = get("/3303/0/5700").unwrap_err();
    assert!(away.contains("none is registered"), "{away}");
}

/// The control API's introspection data is well-formed XML (zbus puts
/// the methods' documentation in XML comments, where "--" may not be):
/// dbus-python and other strict clients parse it.
#[test]
fn the_control_api_introspects_as_well_formed_xml() {
    let bus = dm_tests::dbus_stack::Stack::mock();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(&config, "").unwrap();
    let _agent = dm_tests::agent::run_on_bus(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
        &bus.bus,
    );
    dm_tests::agent::wait_for_control_api(&bus.bus);
    let xml = Command::new("busctl")
        .args([
            "--system",
            "--xml-interface",
            "introspect",
            "org.dmagent.Agent1",
            "/org/dmagent/Agent1",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.bus)
        .output()
        .unwrap();
    assert!(xml.status.success());
    assert!(
        String::from_utf8_lossy(&xml.stdout).contains("RegisterProvider"),
        "{}",
        String::from_utf8_lossy(&xml.stdout)
    );
    let mut lint = Command::new("xmllint")
        .args(["--noout", "--nonet", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(&xml.stdout).unwrap();
    let linted = lint.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "{}",
        String::from_utf8_lossy(&linted.stderr)
    );
}

/// A D-Bus provider of /3303 that prints each call it gets as a JSON line,
/// answers a Set of "slow" only after 6 s (past the agent's 5 s), and
/// refuses "bad" with a D-Bus error of the standard's own vocabulary.
const RECORDER: &str = r#"
import dbus, dbus.service, json, sys, time
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
class Refused(dbus.DBusException):
    _dbus_error_name = "org.freedesktop.DBus.Error.InvalidArgs"
class Provider(dbus.service.Object):
    @dbus.service.method("org.dmagent.Provider1", in_signature="ua{sv}")
    def Set(self, instance, values):
        value = str(values.get("5750", ""))
        print(json.dumps({"call": "Set", "value": value}), flush=True)
        if value == "slow":
            time.sleep(6)
        if value == "bad":
            raise Refused("bad is not an application type")
Provider(bus, "/p")
agent = dbus.Interface(bus.get_object("org.dmagent.Agent1", "/org/dmagent/Agent1",
                                      introspect=False), "org.dmagent.Agent1")
agent.RegisterProvider("/3303", dbus.ObjectPath("/p"))
print(json.dumps({"call": "registered"}), flush=True)
GLib.MainLoop().run()
"#;

/// A provider that answers too late: the request gets 5.03 (here the
/// CLI's failure), and the change's inverse is sent after it, so the
/// provider ends where the tree is. A provider's own D-Bus error, even one
/// named org.freedesktop.DBus.Error.*, is a refusal with its message.
#[test]
fn a_dbus_provider_that_answers_too_late_is_sent_the_inverse() {
    let bus = dm_tests::dbus_stack::Stack::mock();
    let dir = tempfile::tempdir().unwrap();
    let config = provider_config(dir.path());
    let _agent = dm_tests::agent::run_on_bus(
        env!("CARGO_BIN_EXE_dmagent"),
        &config,
        &dir.path().join("state"),
        &bus.bus,
    );
    dm_tests::agent::wait_for_control_api(&bus.bus);
    let mut provider = Agent(
        Command::new("/usr/bin/python3")
            .args(["-c", RECORDER])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.bus)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut calls = BufReader::new(provider.0.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        serde_json::from_str(&calls.next().expect("the provider reports").unwrap()).unwrap()
    };
    assert_eq!(next()["call"], "registered");
    let set = |value: &str| {
        dm_tests::agent::cli_on_bus(
            env!("CARGO_BIN_EXE_dmagent"),
            &bus.bus,
            &["set", "/3303/0/5750", value],
        )
    };

    let late = set("slow");
    assert!(!late.status.success());
    let why = String::from_utf8_lossy(&late.stderr);
    assert!(why.contains("no answer within 5000 ms"), "{why}");
    assert_eq!(next()["value"], "slow");
    // The inverse, after it: back to the tree's value.
    assert_eq!(next()["value"], "room");

    let refused = set("bad");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("bad is not an application type") && !why.contains("not available"),
        "{why}"
    );
    assert_eq!(next()["value"], "bad");
    // Refused, not timed out: nothing is sent after it.
    let fine = set("hall");
    assert!(
        fine.status.success(),
        "{}",
        String::from_utf8_lossy(&fine.stderr)
    );
    assert_eq!(next()["value"], "hall");
}
