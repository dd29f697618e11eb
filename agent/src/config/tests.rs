//! Tests of the config module.

use super::*;
use dm_core::{InstanceId, ResourceId, ResourceValue, Value};

fn check(text: &str, expect: &str) {
    let got = match parse(text, "dmagent.toml", &Overrides::default()) {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect, "for:\n{text}");
}

#[test]
fn the_embedded_default_is_valid() {
    // In every build: it sets up the protocols the build carries.
    let config = embedded(Overrides::default()).unwrap();
    // Real values by default, never the invented ones.
    assert_eq!(config.platform, PlatformKind::Auto);
    assert_eq!(
        parse("", "empty.toml", &Overrides::default())
            .unwrap()
            .platform,
        PlatformKind::Auto
    );
    assert_eq!(config.cwmp.is_some(), cfg!(feature = "cwmp"));
    assert_eq!(config.lwm2m.is_some(), cfg!(feature = "lwm2m"));
}

/// A configuration that needs a feature the build left out is refused
/// with the feature's name; the same configuration is fine in a build
/// that has it. (CI runs this in the default and a reduced build.)
#[test]
fn what_the_build_left_out_is_refused_by_name() {
    let cases: [(&str, &str, bool); 9] = [
        (
            "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\n",
            "cwmp",
            cfg!(feature = "cwmp"),
        ),
        (
            "[lwm2m]\nserver_uri = \"coap://127.0.0.1\"\n",
            "lwm2m",
            cfg!(feature = "lwm2m"),
        ),
        (
            "[usp]\nbroker = \"mqtt://127.0.0.1\"\ncontroller_endpoint_id = \"self::c\"\n",
            "usp",
            cfg!(feature = "usp"),
        ),
        (
            "[lwm2m]\nserver_uri = \"coaps://127.0.0.1\"\npsk_identity = \"d\"\npsk_key = \"0011\"\n",
            "dtls",
            cfg!(all(feature = "lwm2m", feature = "dtls")),
        ),
        (
            "[cwmp]\nacs_url = \"https://127.0.0.1:7547/\"\n",
            "https",
            cfg!(all(feature = "cwmp", feature = "https")),
        ),
        (
            "[platform]\nkind = \"dbus\"\n",
            "dbus",
            cfg!(feature = "dbus"),
        ),
        (
            "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\nca_file = \"DEFINITION\"\n",
            "https",
            cfg!(all(feature = "cwmp", feature = "https")),
        ),
        ("[platform]\nkind = \"linux\"\n", "none", true),
        (
            "[[object]]\ndefinition = \"DEFINITION\"\nprovider = \"dbus\"\n",
            "dbus",
            cfg!(feature = "dbus"),
        ),
    ];
    let definition = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    );
    for (text, feature, built) in cases {
        let text = &text.replace("DEFINITION", definition);
        let named = format!("(cargo feature `{feature}`)");
        match parse(text, "dmagent.toml", &Overrides::default()) {
            Ok(_) => assert!(built, "{feature} is not built, yet accepted:\n{text}"),
            Err(e) => {
                let e = e.to_string();
                assert_eq!(e.contains(&named), !built, "{text}\n→ {e}");
                assert!(!built || !e.contains("cargo feature"), "{e}");
            }
        }
    }
}

#[test]
fn the_software_version_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("os-release");
    let plain = dir.path().join("version");
    std::fs::write(
        &release,
        "NAME=\"Demo\"\nVERSION_ID=\"4.2\"\nIMAGE_VERSION=4.2.1\n",
    )
    .unwrap();
    std::fs::write(&plain, "7.0-rc1\nbuilt today\n").unwrap();
    for (file, expect) in [(&release, "4.2.1"), (&plain, "7.0-rc1")] {
        let text = format!("[device]\nsoftware_version_file = \"{}\"\n", file.display());
        let config = parse(&text, "dmagent.toml", &Overrides::default()).unwrap();
        assert_eq!(config.identity.software_version, expect);
    }
    let missing = dir.path().join("missing");
    check(
        &format!(
            "[device]\nsoftware_version_file = \"{}\"\n",
            missing.display()
        ),
        &format!(
            "dmagent.toml:2: device.software_version_file: {}: No such file or directory (os error 2)",
            missing.display()
        ),
    );
}

#[test]
fn the_instance_limit_is_checked() {
    check(
        "[limits]\nmax_instances = 0\n",
        "dmagent.toml:2: limits.max_instances: must be from 1 to 65535 (instances)",
    );
    let config = parse(
        "[limits]\nmax_instances = 16\n",
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.max_instances, 16);
    let config = parse("", "dmagent.toml", &Overrides::default()).unwrap();
    assert_eq!(config.max_instances, dm_core::tree::DEFAULT_INSTANCE_LIMIT);
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn a_disabled_protocol_needs_no_server() {
    let config = parse(
        "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\n\n[lwm2m]\nenabled = false\n",
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap();
    assert!(config.lwm2m.is_none());
    assert!(config.cwmp.is_some());
    let config = parse(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1\"\n\n[cwmp]\nenabled = false\n",
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap();
    assert!(config.cwmp.is_none());
    assert!(config.lwm2m.is_some());
    check(
        "[cwmp]\nusername = \"u\"\n",
        "dmagent.toml:1: cwmp: acs_url is missing (or set enabled = false)",
    );
    // CRLF lines, a multi-byte comment, a header with spaces and a
    // comment: the right line, no panic.
    check(
        "# é\r\n[device]\r\nserial_number = \"S\"\r\n\r\n[ cwmp ] # ACS é\r\nusername = \"u\"\r\n",
        "dmagent.toml:5: cwmp: acs_url is missing (or set enabled = false)",
    );
}

#[test]
fn reboot_and_factory_reset_commands_are_argv() {
    let config = parse(
        "[platform]\nreboot_command = [\"/bin/systemctl\", \"reboot\"]\n",
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        config.reboot_command,
        Some(vec!["/bin/systemctl".to_owned(), "reboot".to_owned()])
    );
    assert_eq!(config.factory_reset_command, None);
    check(
        "[platform]\nfactory_reset_command = []\n",
        "dmagent.toml:2: platform.factory_reset_command: must name a program, e.g. [\"/sbin/reboot\"] (argv, no shell)",
    );
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn a_bad_value_names_the_file_line_key_and_what_is_allowed() {
    check(
        "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\nperiodic_interval = 0\n",
        "dmagent.toml:3: cwmp.periodic_interval: must be at least 1 (seconds)",
    );
    check(
        "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\nperiodic_interval = \"often\"\n",
        "dmagent.toml:3: cwmp.periodic_interval: invalid type: string \"often\", expected u32",
    );
    check(
        "[cwmp]\nacs_url = \"ftp://127.0.0.1/\"\n",
        "dmagent.toml:2: cwmp.acs_url: scheme \"ftp\" is not supported; allowed: http:// or https://",
    );
    check(
        "[device]\noui = \"00d09e\"\n",
        "dmagent.toml:2: device.oui: \"00d09e\" is not an OUI; allowed: six upper-case hexadecimal digits, e.g. \"00D09E\"",
    );
    check(
        "[platform]\nkind = \"ofono\"\n",
        "dmagent.toml:2: platform.kind: \"ofono\" is not a platform; allowed: \"auto\", \"linux\", \"dbus\", \"memory\"",
    );
    check(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:5683\"\nbinding = \"X\"\n",
        "dmagent.toml:3: lwm2m.binding: \"X\" is not a binding; allowed: letters from U, T, S, N and Q, e.g. \"U\" or \"UQ\"",
    );
    check(
        "[lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\npsk_identity = \"dev\"\npsk_key = \"xyz\"\n",
        "dmagent.toml:4: lwm2m.psk_key: must be an even number of hexadecimal digits, e.g. \"000102030405\"",
    );
    check(
        "[lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\n",
        // Both missing keys, at the table's line.
        "dmagent.toml:1: lwm2m.psk_identity: required when security is \"psk\"\n\
         dmagent.toml:1: lwm2m.psk_key: required when security is \"psk\"",
    );
    check(
        "[device]\nserial_number = \"SN1\"\n\n[lwm2m]\nendpoint = \"dev\"\n",
        "dmagent.toml:4: lwm2m: server_uri is missing (or set enabled = false)",
    );
    check(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:70000\"\n",
        "dmagent.toml:2: lwm2m.server_uri: \"coap://127.0.0.1:70000\": port \"70000\" is not 1 to 65535",
    );
    check(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:5683\"\nnat_timeout = 2\n",
        "dmagent.toml:3: lwm2m.nat_timeout: must be 0 (no NAT) or at least 4 (seconds)",
    );
    check("[log]\nlevel = \"dm_core=debug,warn\"\n", "ok");
    check(
        "[log]\nlevel = \"loud\"\n",
        "dmagent.toml:2: log.level: \"loud\" is not a log level; allowed: error, warn, info, debug, trace, or target=level directives",
    );
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn unknown_keys_and_broken_syntax_are_refused() {
    check(
        "[cwmp]\nacs_url = \"http://127.0.0.1/\"\nperiodic_intervl = 5\n",
        "dmagent.toml:3: cwmp.periodic_intervl: unknown field `periodic_intervl`, expected one of `enabled`, `acs_url`, `username`, `password`, `periodic_inform`, `periodic_interval`, `connection_request_port`, `connection_request_bind`, `ca_file`, `client_certificate`, `client_key`, `connection_request_username`, `connection_request_password`, `acs_url_from_dhcp`, `autonomous_transfer_complete`, `allow_basic_over_http`",
    );
    check(
        "state_dir = \n",
        "dmagent.toml:1: state_dir: string values must be quoted, expected literal string",
    );
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn overrides_win_and_are_checked() {
    let text = "[cwmp]\nacs_url = \"http://127.0.0.1:7547/\"\n";
    let overrides = Overrides {
        acs_url: Some(("--acs-url".into(), "https://[::1]:7548/acs".into())),
        ..Default::default()
    };
    let config = parse(text, "f", &overrides).unwrap();
    assert_eq!(
        config.cwmp.unwrap().settings.acs_url,
        "https://[::1]:7548/acs"
    );
    let bad = Overrides {
        acs_url: Some(("DMAGENT_ACS_URL".into(), "127.0.0.1".into())),
        ..Default::default()
    };
    assert_eq!(
        parse(text, "f", &bad).unwrap_err().to_string(),
        "DMAGENT_ACS_URL: \"127.0.0.1\" is not a URL; allowed: http:// or https://HOST[:PORT][/PATH]"
    );
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn defaults() {
    let config = parse(
        "[lwm2m]\nserver_uri = \"coap://127.0.0.1:5683\"\n[device]\nserial_number = \"SN1\"\noui = \"00D09E\"\n",
        "f",
        &Overrides::default(),
    )
    .unwrap();
    let lwm2m = config.lwm2m.unwrap();
    assert_eq!(lwm2m.endpoint, "urn:dev:ops:00D09E-LinuxGateway-SN1");
    assert_eq!(lwm2m.server.lifetime, 300);
    assert_eq!(lwm2m.server.security, SecurityMode::NoSec);
    assert!(config.cwmp.is_none());
    assert_eq!(config.log_level, "info");
    // Connection requests are served on both families by default.
    let config = parse(
        "[cwmp]\nacs_url = \"http://[2001:db8::1]:7547/\"\n",
        "f",
        &Overrides::default(),
    )
    .unwrap();
    let cwmp = config.cwmp.unwrap();
    assert_eq!(cwmp.connection_request_bind.to_string(), "::");
    assert_eq!(cwmp.connection_request_port, 7547);
}

proptest::proptest! {
    /// A configuration file of any shape is a configuration or an
    /// error naming where, never a panic (which would abort at start).
    #[test]
    fn any_file_parses_or_errs(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("[cwmp]".to_owned()),
                proptest::strategy::Just("[ lwm2m ] # é".to_owned()),
                proptest::strategy::Just("[device]".to_owned()),
                proptest::strategy::Just("enabled = false".to_owned()),
                proptest::strategy::Just("acs_url = \"http://127.0.0.1/\"".to_owned()),
                proptest::strategy::Just("server_uri = \"coap://[::1]\"".to_owned()),
                proptest::strategy::Just("# comment é".to_owned()),
                "[\\[\\]a-z_=\" #é.:/0-9]{0,30}",
            ],
            0..10,
        ),
        crlf in proptest::prelude::any::<bool>(),
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let _ = parse(&text, "dmagent.toml", &Overrides::default());
    }
}

/// `[[object]]`: a definition read relative to the configuration file,
/// its values checked against it, and every mistake named with the
/// configuration's line (and the definition's, when it is broken).
// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn declared_objects_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    );
    std::fs::copy(example, dir.path().join("3303.xml")).unwrap();
    std::fs::write(
        dir.path().join("broken.xml"),
        "<LWM2M>\n<Object>\n<ObjectID>32769\n</Object>\n</LWM2M>\n",
    )
    .unwrap();
    let config = dir.path().join("dmagent.toml");
    let parse_with = |objects: &str| {
        std::fs::write(&config, objects).unwrap();
        load(&config, &Overrides::default())
    };
    let good = parse_with(
        "[[object]]\ndefinition = \"3303.xml\"\n\
         values = { \"0/5700\" = 21.5, \"0/5701\" = \"Cel\", \"0/5601\" = 3 }\n",
    )
    .unwrap();
    let [declared] = good.objects.as_slice() else {
        panic!("{:?}", good.objects)
    };
    assert_eq!(declared.schema.id, dm_core::ObjectId(3303));
    assert_eq!(declared.instances, [InstanceId(0)]);
    // An integer given for a Float resource is that float.
    assert!(declared.values.contains(&(
        InstanceId(0),
        ResourceId(5601),
        ResourceValue::Single(Value::Float(3.0))
    )));
    assert_eq!(declared.provider, None);

    // Served by a D-Bus service, Sensor Value asked of it when read.
    let served = parse_with(
        "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"dbus\"\n\
         volatile = [\"Sensor Value\", 5602]\n",
    )
    .unwrap();
    assert_eq!(
        served.objects[0].provider,
        Some(dm_objects::declared::ProviderKind::Dbus)
    );
    assert_eq!(
        served.objects[0].volatile,
        [ResourceId(5700), ResourceId(5602)]
    );

    let name = config.display().to_string();
    for (objects, expect) in [
        (
            "[[object]]\ndefinition = \"missing.xml\"\n",
            "2: object.definition: cannot read {dir}/missing.xml: No such file or directory (os error 2)",
        ),
        (
            "[[object]]\ndefinition = \"broken.xml\"\n",
            "2: object.definition: {dir}/broken.xml: line 4: not well-formed XML: ill-formed document: \
             expected `</ObjectID>`, but `</Object>` was found",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvalues = { \"0/5700\" = \"warm\" }\n",
            "3: object.values: Sensor Value: expected a value of type float, got string",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvalues = { \"0/9999\" = 1 }\n",
            "3: object.values: Temperature has no resource 9999",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvalues = { \"1/5700\" = 1 }\n",
            "3: object.values: instance 1 is not among the object's instances",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvalues = { \"0/5605\" = 1 }\n",
            "3: object.values: Reset Min and Max Measured Values is executable: it has no value",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvalues = { \"0/5701\" = \"a\\u0001\" }\n",
            "3: object.values: Sensor Units: ",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\n[[object]]\ndefinition = \"3303.xml\"\n",
            "4: object.definition: object 3303 is declared twice",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"ubus\"\n",
            "3: object.provider: must name a program",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = [\"\"]\n",
            "3: object.provider: must name a program",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nvolatile = [5700]\n",
            "3: object.volatile: volatile values are asked of a provider: the object has none",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"dbus\"\nvolatile = [5750]\n",
            "4: object.volatile: Application Type is not read-only",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"dbus\"\nvolatile = [5605]\n",
            "4: object.volatile: Reset Min and Max Measured Values is not read-only",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"dbus\"\nvolatile = [\"Nothing\"]\n",
            "4: object.volatile: Temperature has no resource \"Nothing\"",
        ),
        (
            "[[object]]\ndefinition = \"3303.xml\"\nprovider = \"dbus\"\n\
             values = { \"0/5700\" = 1.0 }\nvolatile = [5700]\n",
            "5: object.volatile: Sensor Value is volatile: its provider gives it, not the configuration",
        ),
    ] {
        let e = parse_with(objects).unwrap_err().to_string();
        let expect = format!(
            "{name}:{}",
            expect.replace("{dir}", &dir.path().display().to_string())
        );
        assert!(e.starts_with(&expect), "{e}\nwanted {expect}");
    }
}

/// `[object.tr181]`: bindings checked against the definition, the
/// instances and the agent's own parameters.
#[test]
fn tr181_bindings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    );
    std::fs::copy(example, dir.path().join("3303.xml")).unwrap();
    let config = dir.path().join("dmagent.toml");
    let parse_with = |instances: &str, bindings: &str| {
        std::fs::write(
            &config,
            format!(
                "[[object]]\ndefinition = \"3303.xml\"\ninstances = {instances}\n\
                 [object.tr181]\n{bindings}\n"
            ),
        )
        .unwrap();
        load(&config, &Overrides::default())
    };
    let good = parse_with(
        "[1]",
        "\"Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.Value\" = { resource = 5700, type = \"int\" }\n\
         \"Device.DeviceInfo.TemperatureStatus.TemperatureSensor.{i}.Name\" = 5750",
    )
    .unwrap();
    assert_eq!(good.tr181.len(), 2);
    assert_eq!(good.tr181[0].syntax, dm_cwmp::mapping::Syntax::String);
    assert!(good.tr181[0].writable);
    assert_eq!(good.tr181[1].syntax, dm_cwmp::mapping::Syntax::Int);
    assert!(!good.tr181[1].writable);

    let name = config.display().to_string();
    for (instances, binding, expect) in [
        (
            "[0]",
            "\"Device.X_000000_T.{i}.Value\" = 5700",
            "TR-181 numbers instances from 1",
        ),
        (
            "[1]",
            "\"Device.X_000000_T.Value\" = 5700",
            "Temperature has several instances: the path needs one {i}",
        ),
        (
            "[1]",
            "\"Device.X_000000_T.{i}.Value\" = 9999",
            "Temperature has no resource 9999",
        ),
        (
            "[1]",
            "\"Device.X_000000_T.{i}.Reset\" = 5605",
            "Reset Min and Max Measured Values (none) has no TR-181 form",
        ),
        (
            "[1]",
            "\"Device.X_000000_T.{i}.Value\" = { resource = 5700, type = \"boolean\" }",
            "type \"boolean\" cannot carry Sensor Value (float); allowed: long, int, unsignedInt, unsignedLong",
        ),
        (
            "[1]",
            "\"Device.WiFi.SSID.{i}.X_000000_T\" = 5700",
            "Device.WiFi.SSID.{i}.X_000000_T: bound twice, or where the agent already serves an object",
        ),
        ("[1]", "\"Device.WiFi.SSID.{i}.SSID\" = 5750", "bound twice"),
        (
            "[1]",
            "\"Device..{i}.X\" = 5700",
            "not a TR-181 parameter path template",
        ),
    ] {
        let e = parse_with(instances, binding).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{name}:5: object.tr181")) && e.contains(expect),
            "{e}\nwanted {expect}"
        );
    }
}

/// A Broadband Forum DM document declares a TR-181 vendor object: its
/// parameters are bound from the document, LwM2M does not see it, values
/// may name parameters, and `[object.tr181]` is refused for it.
#[test]
fn a_dm_document_declares_a_tr181_object() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/vendor/example.xml"
    );
    std::fs::copy(example, dir.path().join("example.xml")).unwrap();
    let config = dir.path().join("dmagent.toml");
    std::fs::write(
        &config,
        "[[object]]\ndefinition = \"example.xml\"\nvalues = { \"0/Greeting\" = \"hi\" }\n",
    )
    .unwrap();
    let good = load(&config, &Overrides::default()).unwrap();
    let [declared] = good.objects.as_slice() else {
        panic!("{:?}", good.objects)
    };
    assert!(declared.schema.id.0 >= dm_cwmp::declare::FIRST_ID);
    let greeting = declared
        .schema
        .resources
        .iter()
        .find(|r| r.name == "Greeting")
        .unwrap();
    assert_eq!(
        declared.values,
        [(
            InstanceId(0),
            greeting.id,
            ResourceValue::Single(Value::String("hi".into()))
        )]
    );
    let mut paths: Vec<&str> = good.tr181.iter().map(|b| b.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "Device.X_000000_Example.Changes",
            "Device.X_000000_Example.Greeting"
        ]
    );
    assert!(
        dm_lwm2m::mapping::from_core(&dm_core::Path::object(declared.schema.id)).is_none(),
        "LwM2M must not see a TR-181-only object"
    );

    std::fs::write(
        &config,
        "[[object]]\ndefinition = \"example.xml\"\n[object.tr181]\n\"Device.X_000000_Other.A\" = 1\n",
    )
    .unwrap();
    let e = load(&config, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":4: ") && e.contains("a DM document declares its TR-181 paths itself"),
        "{e}"
    );
}

/// A declared value may come from a file (an asset tag), read when the
/// configuration is, typed as its resource is.
#[test]
fn declared_values_may_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/temperature/3303.xml"
    );
    std::fs::copy(example, dir.path().join("3303.xml")).unwrap();
    std::fs::write(dir.path().join("location"), "hall, 2nd floor\n").unwrap();
    std::fs::write(dir.path().join("reading"), "21.5\n").unwrap();
    std::fs::write(dir.path().join("word"), "warm\n").unwrap();
    let config = dir.path().join("dmagent.toml");
    let parse_with = |values: &str| {
        std::fs::write(
            &config,
            format!("[[object]]\ndefinition = \"3303.xml\"\nvalues = {{ {values} }}\n"),
        )
        .unwrap();
        load(&config, &Overrides::default())
    };
    let good =
        parse_with("\"0/5750\" = { file = \"location\" }, \"0/5700\" = { file = \"reading\" }")
            .unwrap();
    let values = &good.objects[0].values;
    assert!(values.contains(&(
        InstanceId(0),
        ResourceId(5750),
        ResourceValue::Single(Value::String("hall, 2nd floor".into()))
    )));
    assert!(values.contains(&(
        InstanceId(0),
        ResourceId(5700),
        ResourceValue::Single(Value::Float(21.5))
    )));
    for (values, expect) in [
        (
            "\"0/5700\" = { file = \"word\" }",
            "word: \"warm\" is not a number",
        ),
        ("\"0/5750\" = { file = \"missing\" }", "cannot read"),
        (
            "\"0/5750\" = { path = \"location\" }",
            "{ file = \"PATH\" }",
        ),
    ] {
        let e = parse_with(values).unwrap_err().to_string();
        assert!(
            e.contains(":3: object.values") && e.contains(expect),
            "{e}\nwanted {expect}"
        );
    }
}

/// The keys a table takes, as serde lists them when it meets one it does
/// not know: the configuration's own list, however it grows.
fn keys_of(table: &str) -> Vec<String> {
    let probe = format!("{table}\nzz_not_a_key = 1\n");
    let error = toml::from_str::<super::File>(&probe)
        .err()
        .expect("an unknown key is refused")
        .message()
        .to_owned();
    let expected = error
        .split_once("expected one of ")
        .or_else(|| error.split_once("expected "))
        .unwrap_or_else(|| panic!("{error}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// README's configuration reference names every key of every table, in
/// that table's section, and no key the configuration does not take.
#[test]
fn the_readme_reference_lists_every_key() {
    let readme = include_str!("../../../README.md");
    let reference = readme
        .split("## Configuration reference")
        .nth(1)
        .and_then(|r| r.split("\n## ").next())
        .expect("README has a configuration reference");
    let section = |title: &str| {
        reference
            .split(&format!("### {title}\n"))
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .unwrap_or_else(|| panic!("no section {title} in the reference"))
    };
    let tables = [
        ("Top level", ""),
        ("`[device]`", "[device]"),
        ("`[cwmp]`", "[cwmp]"),
        ("`[lwm2m]`", "[lwm2m]"),
        ("`[usp]`", "[usp]"),
        ("`[platform]`", "[platform]"),
        ("`[firmware]`", "[firmware]"),
        ("`[software]`", "[software]"),
        ("`[log]`", "[log]"),
        ("`[limits]`", "[limits]"),
        ("`[[object]]`", "[[object]]"),
    ];
    let top = keys_of("");
    for (title, table) in tables {
        let text = section(title);
        let keys = keys_of(table);
        for key in &keys {
            if table.is_empty()
                && tables
                    .iter()
                    .any(|(_, t)| t.trim_matches(['[', ']']) == key)
            {
                continue; // a table: its own section
            }
            assert!(
                text.contains(&format!("`{key}`")),
                "{table} {key} is not in README's reference"
            );
        }
        // The first column names real keys only.
        for row in text.lines().filter(|l| l.starts_with("| `")) {
            let cell = row.split('|').nth(1).unwrap_or_default();
            for named in cell.split('`').skip(1).step_by(2) {
                assert!(
                    keys.iter().any(|k| k == named),
                    "README names {table} {named}"
                );
            }
        }
        if !table.is_empty() {
            let name = table.trim_matches(['[', ']']);
            assert!(top.iter().any(|k| k == name), "{name} is not a table");
        }
    }
    // Every table of the file has a section.
    for key in top.iter().filter(|k| *k != "state_dir") {
        assert!(
            tables
                .iter()
                .any(|(_, t)| t.trim_matches(['[', ']']) == key),
            "table {key} has no section in README's reference"
        );
    }
}

/// The GenieACS quick start's configuration is valid as written.
// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn the_readme_quick_start_configuration_is_valid() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("**Against GenieACS**")
        .nth(1)
        .and_then(|r| r.split("```toml\n").nth(1))
        .and_then(|r| r.split("```").next())
        .expect("a TOML block in the GenieACS quick start");
    let config = parse(block, "README.md", &Overrides::default()).unwrap();
    assert!(config.lwm2m.is_none());
    assert_eq!(
        config.cwmp.unwrap().settings.acs_url,
        "http://GENIEACS_HOST:7547/"
    );
}

/// A key serde refuses is reported once: not again as missing, and a
/// table whose `enabled` was refused is not checked as if it were on.
// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn a_refused_key_is_not_reported_again_as_missing() {
    let text = "[cwmp]\nacs_url = 5\n\n[lwm2m]\nenabled = \"no\"\nlifetime = 1\n\n\
                [log]\nlevel = \"loud\"\n";
    let errors = parse(text, "f", &Overrides::default()).unwrap_err();
    let keys: Vec<(Option<usize>, &str)> =
        errors.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(2), "cwmp.acs_url"),
            (Some(5), "lwm2m.enabled"),
            (Some(9), "log.level")
        ],
        "{errors}"
    );
}

/// The MQTT side of a USP configuration.
fn mqtt(usp: &Usp) -> &UspMqtt {
    match &usp.mtp {
        UspMtp::Mqtt(mqtt) => mqtt,
        other => panic!("{other:?}"),
    }
}

// Sets up what a reduced build refuses.
#[cfg(dmagent_full)]
#[test]
fn usp_takes_its_defaults_from_the_identity_and_checks_its_keys() {
    let text = "[device]\noui = \"00D09E\"\nserial_number = \"SN9\"\n\n[usp]\n\
                broker = \"mqtt://broker.example:8883\"\n\
                controller_endpoint_id = \"self::c\"\ncontroller_topic = \"usp/c\"\n";
    let usp = parse(text, "dmagent.toml", &Overrides::default())
        .unwrap()
        .usp
        .unwrap();
    assert_eq!(usp.endpoint_id, "os::00D09E-SN9");
    let m = mqtt(&usp);
    assert_eq!(m.client_id, usp.endpoint_id);
    assert_eq!(m.agent_topic, "usp/agent/os::00D09E-SN9");
    assert_eq!(
        (m.broker_host.as_str(), m.broker_port),
        ("broker.example", 8883)
    );
    assert_eq!(usp.keep_alive, std::time::Duration::from_secs(60));
    let default_port = text.replace(":8883", "");
    let usp = parse(&default_port, "dmagent.toml", &Overrides::default())
        .unwrap()
        .usp
        .unwrap();
    assert_eq!(mqtt(&usp).broker_port, 1883);

    check(
        "[usp]\nbroker = \"mqtt://b\"\n",
        "dmagent.toml:1: usp: controller_endpoint_id is missing\n\
         dmagent.toml:1: usp: controller_topic is missing",
    );
    check(
        "[usp]\nbroker = \"http://b\"\ncontroller_endpoint_id = \"c\"\ncontroller_topic = \"t\"\n",
        "dmagent.toml:2: usp.broker: scheme \"http\" is not supported; allowed: mqtt:// or mqtts://",
    );
    check(
        "[usp]\nbroker = \"mqtt://b\"\ncontroller_endpoint_id = \"c\"\ncontroller_topic = \"t/#\"\n",
        "dmagent.toml:4: usp.controller_topic: a topic to send to has no + or # wildcard",
    );
    check(
        "[usp]\nbroker = \"mqtt://b\"\ncontroller_endpoint_id = \"c\"\ncontroller_topic = \"t\"\n\
         keep_alive = 0\n",
        "dmagent.toml:5: usp.keep_alive: must be from 5 to 65535 (seconds)",
    );
    assert_eq!(
        usp.controller_role,
        dm_objects::local_agent::ControllerRole::FullAccess
    );
    let untrusted = format!("{text}controller_role = \"untrusted\"\n");
    let usp = parse(&untrusted, "dmagent.toml", &Overrides::default())
        .unwrap()
        .usp
        .unwrap();
    assert_eq!(
        usp.controller_role,
        dm_objects::local_agent::ControllerRole::Untrusted
    );
    check(
        "[usp]\nbroker = \"mqtt://b\"\ncontroller_endpoint_id = \"c\"\ncontroller_topic = \"t\"\n\
         controller_role = \"admin\"\n",
        "dmagent.toml:5: usp.controller_role: \"admin\" is not a role: \"full-access\" or \"untrusted\"",
    );
    check("[usp]\nenabled = false\n", "ok");
    // WebSocket instead: no topic needed; not both.
    let usp = parse(
        "[usp]\ncontroller_url = \"ws://c.example:8080/usp\"\ncontroller_endpoint_id = \"c\"\n",
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap()
    .usp
    .unwrap();
    assert_eq!(
        usp.mtp,
        UspMtp::WebSocket {
            url: "ws://c.example:8080/usp".into()
        }
    );
    check(
        "[usp]\nbroker = \"mqtt://b\"\ncontroller_url = \"ws://c\"\ncontroller_endpoint_id = \"c\"\n",
        "dmagent.toml:1: usp: broker and controller_url are two ways to reach the controller: give one",
    );
    check(
        "[usp]\ncontroller_url = \"http://c\"\ncontroller_endpoint_id = \"c\"\n",
        "dmagent.toml:2: usp.controller_url: scheme \"http\" is not supported; allowed: ws:// or wss://",
    );
    // The flags stand for the keys, with or without the table.
    let flags = Overrides {
        usp_broker: Some(("--usp-broker".into(), "mqtt://10.0.0.1".into())),
        usp_controller: Some(("--usp-controller".into(), "self::c".into())),
        usp_controller_topic: Some(("--usp-controller-topic".into(), "usp/c".into())),
        ..Overrides::default()
    };
    let usp = parse("", "dmagent.toml", &flags).unwrap().usp.unwrap();
    let m = mqtt(&usp);
    assert_eq!(
        (
            m.broker_host.as_str(),
            m.broker_port,
            m.controller_topic.as_str()
        ),
        ("10.0.0.1", 1883, "usp/c")
    );
    let bad = Overrides {
        usp_broker: Some(("--usp-broker".into(), "tcp://b".into())),
        ..flags
    };
    let error = parse("", "dmagent.toml", &bad).unwrap_err().to_string();
    assert!(error.starts_with("--usp-broker: scheme \"tcp\""), "{error}");
    // A flag's transport wins over the file's other one, both ways.
    let file_websocket = "[usp]\ncontroller_url = \"ws://c/usp\"\ncontroller_endpoint_id = \"c\"\n\
                          controller_topic = \"t\"\n";
    let broker = Overrides {
        usp_broker: Some(("--usp-broker".into(), "mqtt://b".into())),
        ..Overrides::default()
    };
    let usp = parse(file_websocket, "dmagent.toml", &broker)
        .unwrap()
        .usp
        .unwrap();
    assert_eq!(mqtt(&usp).broker_host, "b");
    let websocket = Overrides {
        usp_controller_url: Some(("--usp-controller-url".into(), "ws://c/usp".into())),
        ..Overrides::default()
    };
    let usp = parse(text, "dmagent.toml", &websocket)
        .unwrap()
        .usp
        .unwrap();
    assert_eq!(
        usp.mtp,
        UspMtp::WebSocket {
            url: "ws://c/usp".into()
        }
    );
}

/// Security "certificate": the PEM files are read, checked and become
/// LwM2M Security Mode 2 material; each wrong file is refused at its key,
/// a key that is not the certificate's at `certificate`.
#[cfg(all(feature = "lwm2m", feature = "dtls"))]
#[test]
fn certificate_mode_reads_checks_and_refuses_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dm_tests::pki::Pki::new(dir.path());
    let text = |certificate: &std::path::Path, key: &std::path::Path, extra: &str| {
        format!(
            "[lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\nsecurity = \"certificate\"\n\
             certificate = {certificate:?}\nprivate_key = {key:?}\n\
             server_certificate = {:?}\n{extra}",
            pki.root
        )
    };
    let config = parse(
        &text(&pki.client, &pki.client_key, "certificate_usage = 2\n"),
        "dmagent.toml",
        &Overrides::default(),
    )
    .unwrap();
    let SecurityMode::Certificate {
        chain,
        private_key,
        server,
        usage,
    } = &config.lwm2m.as_ref().unwrap().server.security
    else {
        panic!("not certificate mode");
    };
    assert_eq!(*usage, 2);
    assert!(!chain.is_empty() && !private_key.is_empty() && !server.is_empty());
    // The key is not in what a log of the configuration would show.
    let shown = format!("{:?}", config.lwm2m.as_ref().unwrap().server);
    assert!(
        !shown.contains(&format!("{private_key:?}")[1..20]),
        "{shown}"
    );

    check(
        &text(&pki.client, &pki.server_key, ""),
        "dmagent.toml:5: lwm2m.private_key: our private key (/0/x/5) is not the key of our certificate (/0/x/3)",
    );
    let sec1 = dir.path().join("sec1.key");
    std::fs::write(
        &sec1,
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    check(
        &text(&pki.client, &sec1, ""),
        &format!(
            "dmagent.toml:5: lwm2m.private_key: {sec1:?} is not a PKCS#8 key (BEGIN PRIVATE KEY); \
             convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
        ),
    );
    check(
        &text(&pki.client_key, &pki.client_key, "certificate_usage = 4\n"),
        &format!(
            "dmagent.toml:4: lwm2m.certificate: {:?} holds no CERTIFICATE block\n\
             dmagent.toml:7: lwm2m.certificate_usage: must be 0 (CA constraint), 1 (service \
             certificate constraint), 2 (trust anchor assertion) or 3 (domain-issued certificate)",
            pki.client_key
        ),
    );
    check(
        &text(&pki.client, &pki.client_key, "certificate_usage = 1\n"),
        "dmagent.toml:1: lwm2m.ca_file: required when certificate_usage is 0 or 1",
    );
    check(
        "[lwm2m]\nserver_uri = \"coaps://127.0.0.1:5684\"\nsecurity = \"certificate\"\n",
        "dmagent.toml:1: lwm2m.certificate: required when security is \"certificate\"\n\
         dmagent.toml:1: lwm2m.private_key: required when security is \"certificate\"\n\
         dmagent.toml:1: lwm2m.server_certificate: required when security is \"certificate\"",
    );
}
